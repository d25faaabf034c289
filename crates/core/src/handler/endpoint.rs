//! Where a handler's calls go: the URL (`http://` or `https://`), the Envoy cluster, and the
//! headers a hook may add. Shared by every handler that makes HTTP calls.

use crate::delivery::Destination;
#[cfg(feature = "schema")]
use crate::delivery::retry;
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, non_empty_string};
use crate::reader::{Object, Problems, child};
use crate::signing;
#[cfg(feature = "schema")]
use crate::signing::MAX_SECRETS;
#[cfg(feature = "schema")]
use serde_json::{Value, json};

/// Headers a handler sets itself, or that HTTP reserves for the connection; a hook may not
/// configure them. Every `webhook-*` name is reserved too (the Standard Webhooks namespace).
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "user-agent",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    signing::KONG_SIGNATURE_HEADER,
];
pub const RESERVED_HEADER_PREFIX: &str = "webhook-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP address exactly as written (IPv6 without brackets).
    pub host: String,
    pub port: Option<u16>,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses a URL strictly: `http(s)://host[:port][/path][?query]`. No credentials, no
    /// fragment; the path and query hold only URL characters (RFC 3986) and `%XX` escapes.
    pub fn parse(text: &str) -> Result<Url, String> {
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("https://") {
            (Scheme::Https, text.get(8..).unwrap_or(""))
        } else if lower.starts_with("http://") {
            (Scheme::Http, text.get(7..).unwrap_or(""))
        } else {
            return Err("must start with http:// or https://".to_string());
        };
        if text.contains('#') {
            return Err("must not have a #fragment (it is never sent)".to_string());
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(
                "must not contain spaces or control characters (percent-encode them)".to_string(),
            );
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("must not contain credentials; send them in `headers`".to_string());
        }
        let (host, port) = split_host_port(authority)?;
        if !is_url_text(path) {
            return Err(
                "has characters a URL cannot carry in its path or query (percent-encode them)"
                    .to_string(),
            );
        }
        let path = match path.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        Ok(Url {
            scheme,
            host,
            port,
            path,
        })
    }

    /// `host[:port]` as written, for the `:authority` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// `host:port` with the scheme's default port filled in (Kong's dispatch target).
    pub fn host_port(&self) -> String {
        let port = self.port.unwrap_or(match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// RFC 3986 path and query characters: unreserved, sub-delims, `:@/?`, and `%XX` escapes.
fn is_url_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(index + 1) && hex(index + 2)) {
                return false;
            }
            index += 3;
            continue;
        }
        if !(byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&byte)) {
            return false;
        }
        index += 1;
    }
    true
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "has an unclosed [ in its host".to_string())?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("has an invalid IPv6 address".to_string());
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("has characters after its IPv6 address".to_string()),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if !authority.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("has an invalid host name".to_string());
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => return Err("has an invalid port (1 to 65535)".to_string()),
        },
    };
    Ok((host.to_string(), port))
}

/// The keys every handler that makes calls takes: how its calls are signed, and retried.
pub const CALL_KEYS: &[&str] = &[
    "secret",
    "secrets",
    "secret_env",
    "secrets_env",
    "signature",
    "retry",
];

/// The `config.retry` of a handler that makes calls.
pub fn parse_retry(
    config: &Object<'_, '_>,
    problems: &Problems,
) -> Option<crate::delivery::retry::Overrides> {
    let value = config.get("retry")?;
    crate::delivery::retry::Overrides::parse(value, &config.path_of("retry"), problems)
}

/// A call target: the URL and the Envoy cluster that carries the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: Url,
    /// `config.cluster`, or the URL's host exactly as written.
    pub cluster: String,
    /// Accepted for Kong compatibility; TLS verification belongs to the host (see docs/src/tls.md).
    pub ssl_verify: bool,
}

impl Endpoint {
    /// Reads `url` (required), `cluster` and `ssl_verify` from a handler's `config`.
    pub fn parse(config: &Object<'_, '_>, problems: &Problems) -> Option<Endpoint> {
        let url = config.required_str("url").and_then(|text| {
            Url::parse(text)
                .map_err(|why| problems.add(&config.path_of("url"), why))
                .ok()
        });
        let ssl_verify = config.optional_bool("ssl_verify", false);
        let cluster = match config.optional_str("cluster") {
            Some("") => {
                problems.add(&config.path_of("cluster"), "must not be empty");
                None
            }
            other => other.map(str::to_string),
        };
        let url = url?;
        Some(Endpoint {
            cluster: cluster.unwrap_or_else(|| url.host.clone()),
            url,
            ssl_verify,
        })
    }

    pub fn destination(&self) -> Destination {
        Destination {
            cluster: self.cluster.clone(),
            host_port: self.url.host_port(),
            tls: self.url.scheme == Scheme::Https,
        }
    }

    /// TLS and its verification belong to the host, which the filter cannot check: on Envoy
    /// the cluster's transport socket, on Kong the `wasm` block's `tls_*` settings (the call
    /// carries `:scheme: https`). Said for `https` URLs and for `ssl_verify`.
    pub fn note(&self, hook: &str) -> Option<String> {
        (self.url.scheme == Scheme::Https || self.ssl_verify).then(|| {
            format!(
                "hook {hook}: TLS to {} is the host's: on Envoy cluster {} needs a TLS transport socket that verifies the certificate, on Kong set nginx_wasm_tls_verify_cert and nginx_wasm_tls_trusted_certificate (the filter cannot verify)",
                self.url.authority(),
                self.cluster
            )
        })
    }
}

/// Whether a configured header value is acceptable: no control characters but tab.
pub fn header_value_ok(value: &str) -> bool {
    !value
        .chars()
        .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
}

/// Reads `headers`, a map of header names to values: names must be HTTP tokens and not
/// reserved (sent lowercase), values free of control characters.
pub fn parse_headers(config: &Object<'_, '_>, problems: &Problems) -> Vec<(String, String)> {
    parse_headers_allowing(config, problems, &[])
        .into_iter()
        .map(|header| (header.name, header.value))
        .collect()
}

/// A configured header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredHeader {
    /// The name as written, for the JSON path of a problem.
    pub written: String,
    /// The name sent: lowercase.
    pub name: String,
    pub value: String,
}

/// [`parse_headers`] for a handler that leaves some reserved headers to the hook: the
/// lowercase names in `allowed` may be configured.
pub fn parse_headers_allowing(
    config: &Object<'_, '_>,
    problems: &Problems,
    allowed: &[&str],
) -> Vec<ConfiguredHeader> {
    let path = config.path_of("headers");
    let mut headers = Vec::new();
    for (name, value) in config.optional_string_map("headers") {
        let here = child(&path, &name);
        let lower = name.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(is_token_byte) {
            problems.add(&here, "is not a valid header name");
        } else if is_reserved(&lower) && !allowed.contains(&lower.as_str()) {
            problems.add(&here, "is set by the handler and cannot be configured");
        } else if !header_value_ok(value) {
            problems.add(
                &here,
                "must not contain control characters such as CR or LF",
            );
        } else {
            headers.push(ConfiguredHeader {
                written: name,
                name: lower,
                value: value.to_string(),
            });
        }
    }
    headers
}

/// Whether a (lowercase) header name is reserved.
pub fn is_reserved(lower: &str) -> bool {
    RESERVED_HEADERS.contains(&lower) || lower.starts_with(RESERVED_HEADER_PREFIX)
}

/// RFC 9110 token characters.
pub fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(feature = "schema")]
/// The schema of the keys every calling handler takes: signing and retries.
pub fn call_types(parts: &Parts) -> Vec<(&'static str, Value)> {
    let more_secrets = json!({
        "type": "array",
        "maxItems": MAX_SECRETS.saturating_sub(1),
        "items": {"type": "string"},
    });
    vec![
        ("secret", non_empty_string()),
        ("secret_env", non_empty_string()),
        ("secrets", more_secrets.clone()),
        ("secrets_env", more_secrets),
        (
            "signature",
            json!({"enum": signing::Scheme::NAMES.iter().map(|(name, _)| *name).collect::<Vec<_>>()}),
        ),
        ("retry", retry::schema(parts, "hooks[].config.retry")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    type Parsed = (Endpoint, Vec<(String, String)>);

    fn endpoint(value: Value) -> Result<Parsed, Vec<String>> {
        let problems = Problems::default();
        let object = Object::new(
            &value,
            "config",
            &["url", "cluster", "ssl_verify", "headers"],
            &problems,
        )
        .unwrap();
        let parsed = Endpoint::parse(&object, &problems);
        let headers = parse_headers(&object, &problems);
        if problems.is_empty() {
            Ok((parsed.unwrap(), headers))
        } else {
            Err(problems.messages())
        }
    }

    #[test]
    fn urls() {
        let url = Url::parse("http://receiver:9000/hooks?x=1").unwrap();
        assert_eq!(
            url,
            Url {
                scheme: Scheme::Http,
                host: "receiver".into(),
                port: Some(9000),
                path: "/hooks?x=1".into()
            }
        );
        assert_eq!(url.authority(), "receiver:9000");
        assert_eq!(url.host_port(), "receiver:9000");
        let url = Url::parse("HTTPS://Hooks.Slack.com").unwrap();
        assert_eq!(
            (url.scheme, url.host.as_str(), url.path.as_str()),
            (Scheme::Https, "Hooks.Slack.com", "/")
        );
        assert_eq!(url.host_port(), "Hooks.Slack.com:443");
        let url = Url::parse("http://h/a%20b/c-d_e.f~g!$&'()*+,;=:@?q=%2F&r=/?").unwrap();
        assert_eq!(url.path, "/a%20b/c-d_e.f~g!$&'()*+,;=:@?q=%2F&r=/?");
        assert_eq!(Url::parse("http://h?q=1").unwrap().path, "/?q=1");
        let v6 = Url::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.authority()),
            ("::1", Some(8080), "[::1]:8080".to_string())
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://a b/",
            "http://user:pw@host/",
            "http://host:0/",
            "http://host:99999/",
            "http://host/#frag",
            "http://[::1/",
            "http://ho$t/",
            "http://h/caf\u{e9}",
            "http://h/{x}",
            "http://h/a\"b",
            "http://h/a<b>",
            "http://h/%zz",
            "http://h/%2",
            "http://h/?q=a|b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_cluster_is_the_host_exactly_as_written() {
        let (written, _) = endpoint(json!({"url": "http://Receiver-A:9000/"})).unwrap();
        assert_eq!(written.cluster, "Receiver-A");
        assert_eq!(written.url.authority(), "Receiver-A:9000");
        let (named, _) =
            endpoint(json!({"url": "https://h.example:8443/x", "cluster": "c"})).unwrap();
        let destination = named.destination();
        assert_eq!(
            (
                destination.cluster.as_str(),
                destination.host_port.as_str(),
                destination.tls
            ),
            ("c", "h.example:8443", true)
        );
    }

    #[test]
    fn https_and_ssl_verify_get_a_note_about_the_hosts_tls() {
        let (https, _) = endpoint(json!({"url": "https://h.example/", "cluster": "h"})).unwrap();
        assert_eq!(
            https.note("n").as_deref(),
            Some(
                "hook n: TLS to h.example is the host's: on Envoy cluster h needs a TLS transport socket that verifies the certificate, on Kong set nginx_wasm_tls_verify_cert and nginx_wasm_tls_trusted_certificate (the filter cannot verify)"
            )
        );
        let (verify, _) = endpoint(json!({"url": "http://h/", "ssl_verify": true})).unwrap();
        assert!(verify.note("n").is_some());
        let (plain, _) = endpoint(json!({"url": "http://h/"})).unwrap();
        assert!(plain.note("n").is_none());
    }

    #[test]
    fn headers_are_checked() {
        let errors = endpoint(json!({"url": "http://r/", "cluster": "",
            "headers": {"bad name": "x", "x-ok": "a\r\nb", "x-n": 1}}))
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "config.cluster: must not be empty",
                "config.headers.x-n: expected a string, found a number",
                "config.headers.bad name: is not a valid header name",
                "config.headers.x-ok: must not contain control characters such as CR or LF",
            ]
        );
        for name in [
            "User-Agent",
            "webhook-foo",
            "Webhook-Id",
            "X-Kong-Signature",
            "TE",
            "Content-Type",
            "Host",
        ] {
            let errors = endpoint(json!({"url": "http://r/", "headers": {name: "x"}})).unwrap_err();
            assert_eq!(
                errors,
                vec![format!(
                    "config.headers.{name}: is set by the handler and cannot be configured"
                )]
            );
        }
        let (_, headers) =
            endpoint(json!({"url": "http://r/", "headers": {"X-Team": "payments"}})).unwrap();
        assert_eq!(
            headers,
            vec![("x-team".to_string(), "payments".to_string())]
        );
    }

    #[test]
    fn a_handler_may_allow_some_reserved_headers() {
        let problems = Problems::default();
        let value = json!({"headers": {"Content-Type": "text/plain", "Host": "h"}});
        let object = Object::new(&value, "config", &["headers"], &problems).unwrap();
        let headers = parse_headers_allowing(&object, &problems, &["content-type"]);
        assert_eq!(
            headers,
            vec![ConfiguredHeader {
                written: "Content-Type".to_string(),
                name: "content-type".to_string(),
                value: "text/plain".to_string(),
            }]
        );
        assert_eq!(
            problems.into_vec()[0].to_string(),
            "config.headers.Host: is set by the handler and cannot be configured"
        );
    }
}
