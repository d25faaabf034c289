//! Signing deliveries.
//!
//! Kong's scheme: `X-Kong-Signature: sha1=<lowercase hex HMAC-SHA1(secret, exact body bytes)>`.
//! The signature is always computed over the exact bytes sent.

use std::fmt;
use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::config::reader::{Object, Problems};

/// The header carrying Kong's signature.
pub const KONG_SIGNATURE_HEADER: &str = "x-kong-signature";

/// A signing secret. It never prints: `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How a hook signs its deliveries: today Kong's scheme when a `secret` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signing {
    kong: Option<Secret>,
}

impl Signing {
    /// Signs nothing.
    pub const NONE: Signing = Signing { kong: None };

    /// Reads `secret` from a handler's `config`.
    pub fn parse(config: &Object<'_, '_>, problems: &Problems) -> Signing {
        let kong = match config.optional_str("secret") {
            Some("") => {
                problems.add(
                    &config.path_of("secret"),
                    "must not be empty; remove it to send unsigned deliveries",
                );
                None
            }
            Some(secret) => Some(Secret::new(secret)),
            None => None,
        };
        Signing { kong }
    }

    pub fn is_set(&self) -> bool {
        self.kong.is_some()
    }

    /// The signature headers of one attempt, computed over the exact `body` bytes sent.
    pub fn headers(
        &self,
        _webhook_id: &str,
        _timestamp: u64,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(secret) = &self.kong {
            headers.push((
                KONG_SIGNATURE_HEADER.to_string(),
                kong_signature(secret, body),
            ));
        }
        headers
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Kong's `X-Kong-Signature` value for `body`: `sha1=<hex HMAC-SHA1>`.
pub fn kong_signature(secret: &Secret, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never fails; an empty result is never sent
    // because configuration refuses empty secrets.
    match <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha1={}", hex(&mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_test_vector() {
        // The reference's vector: secret `hunter2`, body `foobar`.
        assert_eq!(
            kong_signature(&Secret::new("hunter2"), b"foobar"),
            "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62"
        );
    }

    #[test]
    fn rfc2202_hmac_sha1_vector() {
        // RFC 2202 test case 2.
        assert_eq!(
            kong_signature(&Secret::new("Jefe"), b"what do ya want for nothing?"),
            "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }
}
