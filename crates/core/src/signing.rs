//! Signing deliveries, per attempt, over the exact body bytes sent.
//!
//! | `signature` | header | value |
//! |---|---|---|
//! | `kong` (default) | `x-kong-signature` | `sha1=<lowercase hex HMAC-SHA1(secret, body)>` |
//! | `standard-webhooks` | `webhook-signature` | `v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`, one per secret, space-separated; the secret is `whsec_<base64 key>` |
//! | `github` | `x-hub-signature-256` | `sha256=<lowercase hex HMAC-SHA256(secret, body)>` |
//!
//! Secrets come from `secret` (or `secret_env`, an environment variable of the VM) and, for
//! rotation with `standard-webhooks`, `secrets` (or `secrets_env`). They never print: every
//! [`Secret`] debugs as `[redacted]`, and configuration messages never quote them.

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha1::Sha1;
use sha2::Sha256;

use crate::reader::{Object, Problems, element, kind};

/// The header carrying Kong's signature.
pub const KONG_SIGNATURE_HEADER: &str = "x-kong-signature";
/// The header carrying Standard Webhooks signatures.
pub const STANDARD_SIGNATURE_HEADER: &str = "webhook-signature";
/// The header carrying GitHub's signature.
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The keys of a handler's `config` that this module reads.
pub const KEYS: &[&str] = &[
    "secret",
    "secrets",
    "secret_env",
    "secrets_env",
    "signature",
];

/// The most secrets one hook signs with.
pub const MAX_SECRETS: usize = 8;

/// A signing secret: the HMAC key's bytes. It never prints: `Debug` shows `[redacted]`.
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

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    #[default]
    Kong,
    StandardWebhooks,
    GitHub,
}

impl Scheme {
    /// Every scheme, by the name `signature` gives it.
    pub const NAMES: &'static [(&'static str, Scheme)] = &[
        ("kong", Scheme::Kong),
        ("standard-webhooks", Scheme::StandardWebhooks),
        ("github", Scheme::GitHub),
    ];

    fn from_name(name: &str) -> Option<Scheme> {
        Scheme::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, scheme)| *scheme)
    }
}

/// How a hook signs its deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signing {
    scheme: Scheme,
    /// The first is the primary; the others (standard-webhooks) are for rotation.
    secrets: Vec<Secret>,
}

impl Signing {
    /// Signs nothing.
    pub const NONE: Signing = Signing {
        scheme: Scheme::Kong,
        secrets: Vec::new(),
    };

    /// Reads `secret`, `secrets`, `secret_env`, `secrets_env` and `signature` from a handler's
    /// `config`.
    pub fn parse(config: &Object<'_, '_>, problems: &Problems) -> Signing {
        let scheme = match config.optional_str("signature") {
            None => Scheme::Kong,
            Some(name) => Scheme::from_name(name).unwrap_or_else(|| {
                problems.add(
                    &config.path_of("signature"),
                    "unknown signature; expected one of: kong, standard-webhooks, github",
                );
                Scheme::Kong
            }),
        };
        let mut texts: Vec<(String, String)> = Vec::new();
        match (config.get("secret"), config.get("secret_env")) {
            (Some(_), Some(_)) => {
                problems.add(config.path(), "set secret or secret_env, not both");
            }
            (Some(_), None) => {
                if let Some(secret) = config.optional_str("secret") {
                    texts.push((config.path_of("secret"), secret.to_string()));
                }
            }
            (None, Some(_)) => {
                if let Some(text) = read_env(config, "secret_env", problems) {
                    texts.push((config.path_of("secret_env"), text));
                }
            }
            (None, None) => {}
        }
        let extra = extra_secrets(config, problems);
        if !extra.is_empty() && texts.is_empty() {
            problems.add(
                &config.path_of("secrets"),
                "extra secrets need a primary secret (secret or secret_env)",
            );
        }
        if !extra.is_empty() && scheme != Scheme::StandardWebhooks {
            problems.add(
                &config.path_of("secrets"),
                "only the standard-webhooks signature carries several secrets; kong and github sign with one",
            );
        }
        texts.extend(extra);
        if texts.is_empty() && config.get("signature").is_some() {
            problems.add(
                &config.path_of("signature"),
                "needs a secret (secret or secret_env)",
            );
        }
        if texts.len() > MAX_SECRETS {
            problems.add(config.path(), format!("at most {MAX_SECRETS} secrets"));
        }
        let secrets = texts
            .into_iter()
            .filter_map(|(path, text)| key(scheme, &text, &path, problems))
            .collect();
        Signing { scheme, secrets }
    }

    pub fn is_set(&self) -> bool {
        !self.secrets.is_empty()
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The signature headers of one attempt, computed over the exact `body` bytes sent.
    pub fn headers(&self, webhook_id: &str, timestamp: u64, body: &[u8]) -> Vec<(String, String)> {
        let Some(primary) = self.secrets.first() else {
            return Vec::new();
        };
        match self.scheme {
            Scheme::Kong => vec![(
                KONG_SIGNATURE_HEADER.to_string(),
                kong_signature(primary, body),
            )],
            Scheme::GitHub => vec![(
                GITHUB_SIGNATURE_HEADER.to_string(),
                github_signature(primary, body),
            )],
            Scheme::StandardWebhooks => {
                let signatures: Vec<String> = self
                    .secrets
                    .iter()
                    .map(|secret| standard_signature(secret, webhook_id, timestamp, body))
                    .collect();
                vec![(STANDARD_SIGNATURE_HEADER.to_string(), signatures.join(" "))]
            }
        }
    }
}

fn read_env(config: &Object<'_, '_>, key: &str, problems: &Problems) -> Option<String> {
    let name = config.optional_str(key)?;
    let value = problems.env(name).filter(|value| !value.is_empty());
    if value.is_none() {
        problems.add(
            &config.path_of(key),
            crate::reader::env_not_set(name, key.trim_end_matches("_env")),
        );
    }
    value
}

/// `secrets` (texts) or `secrets_env` (variable names), with the path of each.
fn extra_secrets(config: &Object<'_, '_>, problems: &Problems) -> Vec<(String, String)> {
    let list = |key: &str| -> Vec<(String, &str)> {
        match config.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    let here = element(&config.path_of(key), index);
                    match item.as_str() {
                        Some(text) => Some((here, text)),
                        None => {
                            problems.add(&here, format!("expected a string, found {}", kind(item)));
                            None
                        }
                    }
                })
                .collect(),
            Some(other) => {
                problems.add(
                    &config.path_of(key),
                    format!("expected an array, found {}", kind(other)),
                );
                Vec::new()
            }
        }
    };
    let mut out: Vec<(String, String)> = list("secrets")
        .into_iter()
        .map(|(path, text)| (path, text.to_string()))
        .collect();
    for (path, name) in list("secrets_env") {
        match problems.env(name).filter(|value| !value.is_empty()) {
            Some(value) => out.push((path, value)),
            None => problems.add(&path, crate::reader::env_not_set(name, "secrets")),
        }
    }
    out
}

/// The HMAC key of a secret's text: the text's bytes, or for standard-webhooks the key
/// `whsec_<base64>` encodes.
fn key(scheme: Scheme, text: &str, path: &str, problems: &Problems) -> Option<Secret> {
    if text.is_empty() {
        problems.add(
            path,
            "must not be empty; remove it to send unsigned deliveries",
        );
        return None;
    }
    if scheme != Scheme::StandardWebhooks {
        return Some(Secret::new(text));
    }
    let Some(encoded) = text.strip_prefix("whsec_") else {
        problems.add(
            path,
            "a standard-webhooks secret is whsec_ followed by the base64 of the key",
        );
        return None;
    };
    match STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
    {
        Ok(key) if !key.is_empty() => Some(Secret::new(key)),
        _ => {
            problems.add(
                path,
                "a standard-webhooks secret is whsec_ followed by the base64 of the key",
            );
            None
        }
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

/// HMAC-SHA1 and HMAC-SHA256 over `parts`. HMAC accepts keys of any length, so these never
/// fail; an empty result is never sent because configuration refuses empty secrets.
fn hmac_sha1(secret: &Secret, parts: &[&[u8]]) -> Vec<u8> {
    match <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            parts.iter().for_each(|part| mac.update(part));
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hmac_sha256(secret: &Secret, parts: &[&[u8]]) -> Vec<u8> {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            parts.iter().for_each(|part| mac.update(part));
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Kong's `X-Kong-Signature` value for `body`: `sha1=<hex HMAC-SHA1>`.
pub fn kong_signature(secret: &Secret, body: &[u8]) -> String {
    format!("sha1={}", hex(&hmac_sha1(secret, &[body])))
}

/// GitHub's `X-Hub-Signature-256` value for `body`: `sha256=<hex HMAC-SHA256>`.
pub fn github_signature(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret, &[body])))
}

/// One Standard Webhooks signature: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn standard_signature(key: &Secret, webhook_id: &str, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mac = hmac_sha256(
        key,
        &[
            webhook_id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

#[cfg(test)]
mod tests;
