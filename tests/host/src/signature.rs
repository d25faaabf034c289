//! Signature checks of the calls the receiver gets, written from each scheme's specification
//! (not from the filter's code):
//!
//! * `kong`: `X-Kong-Signature: sha1=<hex HMAC-SHA1(secret, body)>` (Kong Gateway Event Hooks).
//! * `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! * `standard-webhooks` (v1): `webhook-signature` holds space-separated `v1,<base64
//!   HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`; the secret is `whsec_`
//!   followed by the base64 of the key; the timestamp must be within 5 minutes of the receiver's
//!   clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::state::Received;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// `Ok(())` when the call's signature verifies with `scheme` and `secret`; else why not.
pub fn verify(scheme: &str, secret: &str, call: &Received) -> Result<(), String> {
    match scheme {
        "kong" => {
            let expected = format!("sha1={}", hex(&hmac_sha1(secret.as_bytes(), &call.body)?));
            let actual = call
                .header("x-kong-signature")
                .ok_or("no x-kong-signature header")?;
            if actual == expected {
                Ok(())
            } else {
                Err(format!("x-kong-signature is {actual}, expected {expected}"))
            }
        }
        "github" => {
            let expected = format!(
                "sha256={}",
                hex(&hmac_sha256(secret.as_bytes(), &call.body)?)
            );
            let actual = call
                .header("x-hub-signature-256")
                .ok_or("no x-hub-signature-256 header")?;
            if actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "x-hub-signature-256 is {actual}, expected {expected}"
                ))
            }
        }
        "standard-webhooks" => {
            let id = call.header("webhook-id").ok_or("no webhook-id header")?;
            let timestamp = call
                .header("webhook-timestamp")
                .ok_or("no webhook-timestamp header")?;
            let signatures = call
                .header("webhook-signature")
                .ok_or("no webhook-signature header")?;
            let seconds: u64 = timestamp
                .parse()
                .map_err(|_| format!("webhook-timestamp {timestamp:?} is not unix seconds"))?;
            let now = call.at_ns / 1_000_000_000;
            if seconds.abs_diff(now) > 300 {
                return Err(format!(
                    "webhook-timestamp {seconds} is more than 5 minutes from the receiver's clock ({now})"
                ));
            }
            let key = STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                .map_err(|e| format!("the secret is not whsec_<base64>: {e}"))?;
            let mut signed = format!("{id}.{timestamp}.").into_bytes();
            signed.extend_from_slice(&call.body);
            let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)?));
            if signatures.split(' ').any(|entry| entry == expected) {
                Ok(())
            } else {
                Err(format!(
                    "webhook-signature {signatures:?} has no entry {expected}"
                ))
            }
        }
        other => Err(format!("unknown signature scheme {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Reply, Step};

    fn call(headers: &[(&str, &str)], body: &str, at_secs: u64) -> Received {
        Received {
            at_ns: at_secs * 1_000_000_000,
            at_ms: 0,
            method: "POST".into(),
            path: "/".into(),
            authority: "receiver".into(),
            tls: false,
            port: 80,
            upstream: "receiver".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            reply: Reply::status(200),
            context: 1,
            step: Step::Tick,
        }
    }

    /// The published test vectors (Kong's docs, GitHub's docs, the Standard Webhooks spec).
    #[test]
    fn vectors() {
        let kong = call(
            &[(
                "x-kong-signature",
                "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62",
            )],
            "foobar",
            0,
        );
        verify("kong", "hunter2", &kong).unwrap();
        assert!(verify("kong", "hunter3", &kong).is_err());
        let github = call(
            &[(
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )],
            "Hello, World!",
            0,
        );
        verify("github", "It's a Secret to Everybody", &github).unwrap();
        let standard = call(
            &[
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265330"),
                (
                    "webhook-signature",
                    "v1,bogus v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ],
            r#"{"test": 2432232314}"#,
            1_614_265_330,
        );
        verify(
            "standard-webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &standard,
        )
        .unwrap();
        let late = Received {
            at_ns: (1_614_265_330 + 301) * 1_000_000_000,
            ..standard
        };
        assert!(
            verify(
                "standard-webhooks",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                &late
            )
            .is_err()
        );
    }
}
