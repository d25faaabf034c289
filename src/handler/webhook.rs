//! The `webhook` handler (Kong's): `POST` the event to `url` as JSON.
//!
//! Body: the event data's keys plus `"source"` and `"event"` at the top level, exactly Kong's
//! shape. Headers: the configured ones, `content-type: application/json`,
//! `user-agent: event-hooks/<version>`, `webhook-id`, `webhook-timestamp`, and
//! `x-kong-signature` when a secret is set.

use std::rc::Rc;

use serde_json::Value;

use crate::config::reader::{Object, Problems};
use crate::delivery::{Destination, Request};
use crate::event::{Event, Redaction};
use crate::signing::{self, Secret};

const KEYS: &[&str] = &["url", "headers", "secret", "ssl_verify", "cluster"];

/// Headers the handler sets itself, or that HTTP reserves for the connection; a hook may not
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

/// A configured `webhook` handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: Url,
    /// The Envoy cluster the call goes to: `config.cluster`, or the URL's host.
    pub cluster: String,
    /// Extra headers, lowercase names.
    pub headers: Vec<(String, String)>,
    pub secret: Option<Secret>,
    /// Accepted for Kong compatibility; TLS verification belongs to the host (see README).
    pub ssl_verify: bool,
}

impl Webhook {
    /// Reads a `webhook` handler's `config` object at `path`.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Webhook> {
        let config = Object::new(value, path, KEYS, problems)?;
        let url = config.required_str("url").and_then(|text| {
            Url::parse(text)
                .map_err(|why| problems.add(&config.path_of("url"), why))
                .ok()
        });
        let headers = parse_headers(&config, problems);
        let secret = match config.optional_str("secret") {
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
        let ssl_verify = config.optional_bool("ssl_verify", false);
        let cluster = match config.optional_str("cluster") {
            Some("") => {
                problems.add(&config.path_of("cluster"), "must not be empty");
                None
            }
            other => other.map(str::to_string),
        };
        let url = url?;
        Some(Webhook {
            cluster: cluster.unwrap_or_else(|| url.host.clone()),
            url,
            headers,
            secret,
            ssl_verify,
        })
    }

    /// TLS is the cluster's transport socket, not the URL's scheme: say so for `https` URLs and
    /// for `ssl_verify`, which the filter cannot enforce.
    pub fn note(&self, hook: &str) -> Option<String> {
        (self.url.scheme == Scheme::Https || self.ssl_verify).then(|| {
            format!(
                "hook {hook}: TLS to {} is what cluster {} does: give it a TLS transport socket that verifies the certificate (the filter cannot)",
                self.url.authority(),
                self.cluster
            )
        })
    }

    /// The body Kong sends: the event data plus `source` and `event`, as JSON bytes.
    pub fn body(&self, event: &Event, redaction: &Redaction) -> Vec<u8> {
        // Serializing a serde_json::Value to a Vec cannot fail.
        serde_json::to_vec(&event.kong_payload(redaction)).unwrap_or_default()
    }

    /// The request for one attempt, signed over the exact `body` bytes.
    pub fn request(&self, webhook_id: &str, body: &Rc<[u8]>, now_secs: u64) -> Request {
        let mut headers = Vec::with_capacity(self.headers.len() + 8);
        headers.push((":method".to_string(), "POST".to_string()));
        headers.push((":path".to_string(), self.url.path.clone()));
        headers.push((":authority".to_string(), self.url.authority()));
        headers.extend(self.headers.iter().cloned());
        headers.push(("content-type".to_string(), "application/json".to_string()));
        headers.push(("user-agent".to_string(), crate::USER_AGENT.to_string()));
        headers.push(("webhook-id".to_string(), webhook_id.to_string()));
        headers.push(("webhook-timestamp".to_string(), now_secs.to_string()));
        if let Some(secret) = &self.secret {
            headers.push((
                signing::KONG_SIGNATURE_HEADER.to_string(),
                signing::kong_signature(secret, body),
            ));
        }
        Request {
            destination: Destination {
                cluster: self.cluster.clone(),
                host_port: self.url.host_port(),
                tls: self.url.scheme == Scheme::Https,
            },
            headers,
            body: Rc::clone(body),
        }
    }
}

fn parse_headers(config: &Object<'_, '_>, problems: &Problems) -> Vec<(String, String)> {
    let path = config.path_of("headers");
    let mut headers = Vec::new();
    for (name, value) in config.optional_string_map("headers") {
        let here = crate::config::reader::child(&path, &name);
        let lower = name.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(is_token_byte) {
            problems.add(&here, "is not a valid header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with(RESERVED_HEADER_PREFIX)
        {
            problems.add(
                &here,
                "is set by the webhook handler and cannot be configured",
            );
        } else if value
            .chars()
            .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
        {
            problems.add(
                &here,
                "must not contain control characters such as CR or LF",
            );
        } else {
            headers.push((lower, value.to_string()));
        }
    }
    headers
}

/// RFC 9110 token characters.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;
    use serde_json::json;

    fn parse(value: Value) -> Result<Webhook, Vec<String>> {
        let problems = Problems::default();
        let webhook = Webhook::parse(&value, "config", &problems);
        if problems.is_empty() {
            Ok(webhook.unwrap())
        } else {
            Err(problems.into_vec().iter().map(|p| p.to_string()).collect())
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
    fn request_carries_kong_headers_and_signature() {
        let webhook = parse(json!({
            "url": "http://receiver:9000/hooks",
            "cluster": "receiver",
            "headers": {"X-Team": "payments"},
            "secret": "hunter2"
        }))
        .unwrap();
        let request = webhook.request("id-1", &Rc::from(&b"foobar"[..]), 1_700_000_000);
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(":method"), Some("POST"));
        assert_eq!(header(":path"), Some("/hooks"));
        assert_eq!(header(":authority"), Some("receiver:9000"));
        assert_eq!(header("x-team"), Some("payments"));
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(header("user-agent"), Some(crate::USER_AGENT));
        assert_eq!(header("webhook-id"), Some("id-1"));
        assert_eq!(header("webhook-timestamp"), Some("1700000000"));
        assert_eq!(
            header("x-kong-signature"),
            Some("sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62")
        );
        assert_eq!(request.destination.cluster, "receiver");
        assert_eq!(&request.body[..], b"foobar");
    }

    #[test]
    fn cluster_defaults_to_url_host_and_no_secret_means_no_signature() {
        let webhook = parse(json!({"url": "https://hooks.example.com:8443/x"})).unwrap();
        assert_eq!(webhook.cluster, "hooks.example.com");
        let request = webhook.request("id", &Rc::from(&b"{}"[..]), 1);
        assert!(request.destination.tls);
        assert_eq!(request.destination.host_port, "hooks.example.com:8443");
        assert!(!request.headers.iter().any(|(n, _)| n == "x-kong-signature"));
    }

    #[test]
    fn body_is_kong_shape() {
        let data = json!({"response": {"status": 500}})
            .as_object()
            .unwrap()
            .clone();
        let event = Event::new(Source::Traffic, "request", data);
        let webhook = parse(json!({"url": "http://r/"})).unwrap();
        let body: Value =
            serde_json::from_slice(&webhook.body(&event, &Redaction::default())).unwrap();
        assert_eq!(
            body,
            json!({"response": {"status": 500}, "source": "traffic", "event": "request"})
        );
    }

    #[test]
    fn configuration_errors_name_their_paths() {
        let errors = parse(json!({
            "headers": {"Content-Type": "text/plain", "bad name": "x", "x-ok": "a\r\nb", "x-n": 1},
            "secret": "",
            "cluster": "",
            "ssl_verify": "yes",
            "retries": 3
        }))
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "config.retries: unknown field; expected one of: url, headers, secret, ssl_verify, cluster",
                "config.url: missing required field",
                "config.headers.x-n: expected a string, found a number",
                "config.headers.Content-Type: is set by the webhook handler and cannot be configured",
                "config.headers.bad name: is not a valid header name",
                "config.headers.x-ok: must not contain control characters such as CR or LF",
                "config.secret: must not be empty; remove it to send unsigned deliveries",
                "config.ssl_verify: expected true or false, found a string",
                "config.cluster: must not be empty",
            ]
        );
        assert_eq!(
            parse(json!({"url": "ftp://x"})).unwrap_err(),
            vec!["config.url: must start with http:// or https://"]
        );
    }

    #[test]
    fn https_and_ssl_verify_get_a_note_about_the_cluster() {
        let note = parse(json!({"url": "https://h.example/", "cluster": "h"}))
            .unwrap()
            .note("n");
        assert_eq!(
            note.as_deref(),
            Some(
                "hook n: TLS to h.example is what cluster h does: give it a TLS transport socket that verifies the certificate (the filter cannot)"
            )
        );
        assert!(
            parse(json!({"url": "http://h/", "ssl_verify": true}))
                .unwrap()
                .note("n")
                .is_some()
        );
        assert!(
            parse(json!({"url": "http://h/"}))
                .unwrap()
                .note("n")
                .is_none()
        );
    }

    #[test]
    fn the_default_cluster_is_the_host_exactly_as_written() {
        let webhook = parse(json!({"url": "http://Receiver-A:9000/"})).unwrap();
        assert_eq!(webhook.cluster, "Receiver-A");
        assert_eq!(webhook.url.authority(), "Receiver-A:9000");
    }

    #[test]
    fn reserved_headers_are_refused() {
        for name in [
            "User-Agent",
            "webhook-foo",
            "Webhook-Id",
            "X-Kong-Signature",
            "TE",
        ] {
            let errors = parse(json!({"url": "http://r/", "headers": {name: "x"}})).unwrap_err();
            assert_eq!(
                errors,
                vec![format!(
                    "config.headers.{name}: is set by the webhook handler and cannot be configured"
                )]
            );
        }
    }
}
