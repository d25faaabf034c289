//! The top-level `admin` settings, and what the admin listing shows of each hook (computed
//! when the configuration loads): read here so that the configuration does not depend on the
//! admin endpoints ([`crate::admin`]), which answer with them.

use serde_json::Value;

use crate::reader::{Object, Problems};
use sha2::{Digest, Sha256};

use crate::signing::Secret;

pub const KEYS: &[&str] = &["prefix", "token", "token_env"];

/// Keys whose values are secrets wherever they appear in a hook's configuration.
const SECRET_KEYS: &[&str] = &["secret", "secrets", "token", "password"];
/// Header names whose configured values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// The top-level `admin` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where the endpoints live; starts with `/`, never ends with one.
    pub prefix: String,
    token: Secret,
}

impl Settings {
    /// Reads `admin`; `token_env` is looked up in the parsing's environment.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let object = Object::new(value, path, KEYS, problems)?;
        let prefix = match object.optional_str("prefix") {
            None => Some("/event-hooks".to_string()),
            Some(prefix) if prefix.starts_with('/') && prefix.len() > 1 => {
                Some(prefix.trim_end_matches('/').to_string())
            }
            Some(_) => {
                problems.add(
                    &object.path_of("prefix"),
                    "must start with / and name a path",
                );
                None
            }
        };
        let token = match (
            object.optional_str("token"),
            object.optional_str("token_env"),
        ) {
            (Some(_), Some(_)) => {
                problems.add(object.path(), "set token or token_env, not both");
                None
            }
            (Some(""), None) => {
                problems.add(&object.path_of("token"), "must not be empty");
                None
            }
            (Some(token), None) => Some(Secret::new(token)),
            (None, Some(name)) => match problems.env(name).filter(|token| !token.is_empty()) {
                Some(token) => Some(Secret::new(token)),
                None => {
                    problems.add(
                        &object.path_of("token_env"),
                        crate::reader::env_not_set(name, "token"),
                    );
                    None
                }
            },
            (None, None) => {
                problems.add(
                    &object.path_of("token"),
                    "missing required field (or token_env)",
                );
                None
            }
        };
        Some(Settings {
            prefix: prefix?,
            token: token?,
        })
    }

    /// The path under the prefix (`""` for the prefix itself), or `None` for another path.
    pub fn rest<'p>(&self, path: &'p str) -> Option<&'p str> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let rest = path.strip_prefix(self.prefix.as_str())?;
        if rest.is_empty() || rest.starts_with('/') {
            Some(rest.trim_matches('/'))
        } else {
            None
        }
    }

    /// Whether `authorization` is `Bearer <token>`, compared in constant time.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        // Comparing digests hides the token's length as well as its bytes.
        let expected = Sha256::digest(self.token.as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        let difference = expected
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0 && !presented.is_empty()
    }
}

/// A hook's configuration as the listing shows it: every secret `"[redacted]"`.
pub fn shown(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let shown = if SECRET_KEYS.contains(&key.as_str()) {
                        redacted(value)
                    } else if key == "headers" {
                        secret_headers(value)
                    } else {
                        shown(value)
                    };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(shown).collect()),
        other => other.clone(),
    }
}

fn redacted(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        _ => Value::String(crate::event::REDACTED.to_string()),
    }
}

fn secret_headers(value: &Value) -> Value {
    match value {
        Value::Object(headers) => Value::Object(
            headers
                .iter()
                .map(|(name, value)| {
                    let secret = SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str());
                    (
                        name.clone(),
                        if secret {
                            redacted(value)
                        } else {
                            value.clone()
                        },
                    )
                })
                .collect(),
        ),
        other => shown(other),
    }
}
