//! The `traffic` source: one `request` event per completed proxied request.
//!
//! The host adapter captures request and response headers in their callbacks and reads the
//! log-phase properties in `on_log` into a [`Capture`]; [`event`] turns that plain data into the
//! event. A field the host does not give is absent, never invented.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::EventSpec;
use crate::config::reader::{Problems, child};
use crate::event::Event;
use crate::filter::Filter;
use crate::source::Source;

pub const FIELDS: &[&str] = &[
    "request.method",
    "request.path",
    "request.host",
    "request.scheme",
    "request.id",
    "request.query",
    "request.headers",
    "response.status",
    "response.flags",
    "response.code_details",
    "response.headers",
    "upstream.address",
    "upstream.cluster",
    "route",
    "latency_ms",
    "client.ip",
    "started_at",
];

pub const EVENTS: &[EventSpec] = &[EventSpec {
    name: "request",
    fields: FIELDS,
    unique: &[],
    description: "One event per completed proxied request, built in the log phase.",
}];

/// Envoy's response flags, bit `i` being flag `i` of `StreamInfo::CoreResponseFlag`, by the
/// short names of its access log's `%RESPONSE_FLAGS%`.
const RESPONSE_FLAGS: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// The longest text an event takes from the host (a header value, the path): longer text is
/// cut at a character boundary and ends with [`TRUNCATED`].
pub const MAX_TEXT_BYTES: usize = 4096;
/// Marks text cut at [`MAX_TEXT_BYTES`].
pub const TRUNCATED: &str = "...[truncated]";
/// The most headers an event keeps per map (Envoy's default `max_headers_count`).
pub const MAX_HEADERS: usize = 100;

/// Log-phase properties, as the host gave them (decoded).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Properties {
    pub method: Option<String>,
    /// `request.path`: path and query.
    pub path: Option<String>,
    pub host: Option<String>,
    pub scheme: Option<String>,
    pub request_id: Option<String>,
    pub status: Option<u64>,
    pub flags: Option<u64>,
    pub code_details: Option<String>,
    pub upstream_address: Option<String>,
    pub cluster: Option<String>,
    pub route: Option<String>,
    pub duration_ns: Option<u64>,
    /// `request.time`: when the request started, unix nanoseconds.
    pub start_ns: Option<u64>,
    /// `source.address`: the client's `ip:port`.
    pub source_address: Option<String>,
}

/// Everything captured for one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Capture {
    /// Request headers, pseudo-headers included; `None` when the header callback never ran.
    pub request_headers: Option<Vec<(String, String)>>,
    pub response_headers: Option<Vec<(String, String)>>,
    /// When the filter saw the request headers, unix nanoseconds.
    pub seen_ns: Option<u64>,
    pub properties: Properties,
    /// The response body, read for `crud` when the request may be an entity write.
    pub response_body: crate::source::crud::Body,
}

impl Capture {
    /// The request's path and query (`:path`, else the `request.path` property).
    pub fn path(&self) -> Option<&str> {
        self.request_headers
            .as_deref()
            .and_then(|headers| headers.iter().find(|(name, _)| name == ":path"))
            .map(|(_, value)| value.as_str())
            .or(self.properties.path.as_deref())
    }
}

/// The traffic event for `capture`, finished at `now_ns`.
pub fn event(capture: &Capture, now_ns: u64) -> Event {
    let props = &capture.properties;
    let request_headers = capture.request_headers.as_deref().unwrap_or(&[]);
    let response_headers = capture.response_headers.as_deref().unwrap_or(&[]);
    let pseudo = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };

    let mut request = Map::new();
    put(
        &mut request,
        "method",
        pseudo(request_headers, ":method").or_else(|| props.method.clone()),
    );
    if let Some(full) = pseudo(request_headers, ":path").or_else(|| props.path.clone()) {
        match full.split_once('?') {
            Some((path, query)) => {
                put(&mut request, "path", Some(path.to_string()));
                put(&mut request, "query", Some(query.to_string()));
            }
            None => put(&mut request, "path", Some(full)),
        }
    }
    put(
        &mut request,
        "host",
        pseudo(request_headers, ":authority").or_else(|| props.host.clone()),
    );
    put(
        &mut request,
        "scheme",
        pseudo(request_headers, ":scheme").or_else(|| props.scheme.clone()),
    );
    put(
        &mut request,
        "id",
        props
            .request_id
            .clone()
            .filter(|id| !id.is_empty())
            .or_else(|| pseudo(request_headers, "x-request-id")),
    );
    if capture.request_headers.is_some() {
        request.insert("headers".into(), Value::Object(header_map(request_headers)));
    }

    let mut response = Map::new();
    let status = props.status.filter(|status| *status > 0).or_else(|| {
        pseudo(response_headers, ":status").and_then(|status| status.parse::<u64>().ok())
    });
    if let Some(status) = status {
        response.insert("status".into(), Value::from(status));
    }
    if let Some(flags) = props.flags {
        response.insert("flags".into(), Value::String(response_flags(flags)));
    }
    put(
        &mut response,
        "code_details",
        props.code_details.clone().filter(|d| !d.is_empty()),
    );
    if capture.response_headers.is_some() {
        response.insert(
            "headers".into(),
            Value::Object(header_map(response_headers)),
        );
    }

    let mut upstream = Map::new();
    put(
        &mut upstream,
        "address",
        props.upstream_address.clone().filter(|a| !a.is_empty()),
    );
    put(
        &mut upstream,
        "cluster",
        props.cluster.clone().filter(|c| !c.is_empty()),
    );

    let mut data = Map::new();
    for (key, section) in [
        ("request", request),
        ("response", response),
        ("upstream", upstream),
    ] {
        if !section.is_empty() {
            data.insert(key.into(), Value::Object(section));
        }
    }
    put(
        &mut data,
        "route",
        props.route.clone().filter(|r| !r.is_empty()),
    );
    let latency_ns = props
        .duration_ns
        .or_else(|| capture.seen_ns.map(|seen| now_ns.saturating_sub(seen)));
    if let Some(latency_ns) = latency_ns {
        data.insert("latency_ms".into(), Value::from(latency_ns / 1_000_000));
    }
    if let Some(ip) = props.source_address.as_deref().and_then(client_ip) {
        let mut client = Map::new();
        // Capped like all text from the host (found by fuzzing: `source.address` was the one
        // string an event took uncut).
        client.insert("ip".into(), Value::String(capped(ip)));
        data.insert("client".into(), Value::Object(client));
    }
    if let Some(start) = props.start_ns.filter(|ns| *ns > 0).or(capture.seen_ns) {
        data.insert("started_at".into(), Value::String(rfc3339(start)));
    }
    Event::new(Source::Traffic, "request", data)
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(value) = value {
        map.insert(key.to_string(), Value::String(capped(value)));
    }
}

/// `text` cut to at most [`MAX_TEXT_BYTES`] (plus the [`TRUNCATED`] marker).
pub fn capped(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(TRUNCATED);
    }
    text
}

/// Headers as a JSON object: lowercase names, pseudo-headers left out, repeated headers joined
/// with `", "`; at most [`MAX_HEADERS`] names, each value capped like all text.
fn header_map(headers: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        if name.starts_with(':') {
            continue;
        }
        let name = name.to_ascii_lowercase();
        let full = map.len() >= MAX_HEADERS;
        match map.get_mut(&name) {
            Some(Value::String(existing)) => {
                if existing.len() < MAX_TEXT_BYTES {
                    existing.push_str(", ");
                    existing.push_str(value);
                    *existing = capped(std::mem::take(existing));
                }
            }
            _ if full => {}
            _ => {
                map.insert(name, Value::String(capped(value.clone())));
            }
        }
    }
    map
}

/// Envoy's response flags bitmask as its access log writes them (`UF,URX`); `""` for none.
pub fn response_flags(bits: u64) -> String {
    RESPONSE_FLAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The IP of an `ip:port` or `[ipv6]:port` address.
pub fn client_ip(address: &str) -> Option<String> {
    let ip = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']').map(|(ip, _)| ip)?
    } else if address.matches(':').count() == 1 {
        address.split_once(':').map(|(ip, _)| ip)?
    } else {
        address
    };
    (!ip.is_empty()).then(|| ip.to_string())
}

/// RFC 3339 UTC with milliseconds, from unix nanoseconds. Formatted with `write!`, which
/// reports an unformattable time as an error (empty text) where `to_string` would panic.
pub fn rfc3339(unix_ns: u64) -> String {
    let mut text = String::new();
    if let Some(time) = UNIX_EPOCH.checked_add(Duration::from_nanos(unix_ns)) {
        if write!(text, "{}", humantime::format_rfc3339_millis(time)).is_err() {
            text.clear();
        }
    }
    text
}

/// Header names in filter paths must be lowercase, as the event has them.
pub fn check_filter(filter: &Filter, path: &str, problems: &Problems) {
    for field in filter.fields() {
        if let [side, headers, name, ..] = field {
            if matches!(side.as_str(), "request" | "response")
                && headers == "headers"
                && name.chars().any(|c| c.is_ascii_uppercase())
            {
                let written = field.join(".");
                problems.add(
                    &child(path, &written),
                    format!(
                        "header names are lowercase in events: use {side}.headers.{}",
                        name.to_ascii_lowercase()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn envoy_capture() -> Capture {
        Capture {
            request_headers: headers(&[
                (":method", "POST"),
                (":path", "/orders/42?expand=items"),
                (":authority", "shop.example.com"),
                (":scheme", "http"),
                ("x-request-id", "header-id"),
                ("authorization", "Bearer t"),
                ("accept", "a"),
                ("Accept", "b"),
            ]),
            response_headers: headers(&[(":status", "503"), ("content-type", "text/plain")]),
            seen_ns: Some(1_700_000_000_100_000_000),
            properties: Properties {
                request_id: Some("prop-id".into()),
                status: Some(503),
                flags: Some(0x20),
                code_details: Some(
                    "upstream_reset_before_response_started{connection_failure}".into(),
                ),
                upstream_address: Some("127.0.0.1:9999".into()),
                cluster: Some("orders".into()),
                route: Some("orders_route".into()),
                duration_ns: Some(12_345_678),
                start_ns: Some(1_700_000_000_000_000_000),
                source_address: Some("10.1.2.3:55000".into()),
                ..Properties::default()
            },
            ..Capture::default()
        }
    }

    #[test]
    fn builds_every_field_of_the_contract() {
        let event = event(&envoy_capture(), 1_700_000_001_000_000_000);
        assert_eq!(event.source, Source::Traffic);
        assert_eq!(event.name, "request");
        assert_eq!(
            event.data,
            json!({
                "request": {
                    "method": "POST", "path": "/orders/42", "query": "expand=items",
                    "host": "shop.example.com", "scheme": "http", "id": "prop-id",
                    "headers": {"x-request-id": "header-id", "authorization": "Bearer t", "accept": "a, b"}
                },
                "response": {
                    "status": 503, "flags": "UF",
                    "code_details": "upstream_reset_before_response_started{connection_failure}",
                    "headers": {"content-type": "text/plain"}
                },
                "upstream": {"address": "127.0.0.1:9999", "cluster": "orders"},
                "route": "orders_route",
                "latency_ms": 12,
                "client": {"ip": "10.1.2.3"},
                "started_at": "2023-11-14T22:13:20.000Z"
            })
        );
        for field in FIELDS {
            let path = crate::event::split_path(field);
            assert!(
                crate::event::lookup(&event.data, &path).is_some(),
                "{field}"
            );
        }
    }

    #[test]
    fn absent_host_fields_stay_absent() {
        let event = event(&Capture::default(), 5);
        assert_eq!(event.data, json!({}));
    }

    #[test]
    fn properties_fill_in_when_headers_were_never_seen() {
        // A request answered before this filter's header callback (an earlier filter's local
        // reply): only on_log ran.
        let capture = Capture {
            properties: Properties {
                method: Some("GET".into()),
                path: Some("/x".into()),
                status: Some(429),
                ..Properties::default()
            },
            ..Capture::default()
        };
        assert_eq!(
            event(&capture, 0).data,
            json!({"request": {"method": "GET", "path": "/x"}, "response": {"status": 429}})
        );
    }

    #[test]
    fn status_and_latency_fall_back_to_what_the_filter_saw() {
        let capture = Capture {
            response_headers: headers(&[(":status", "404")]),
            seen_ns: Some(1_000_000_000),
            ..Capture::default()
        };
        let data = event(&capture, 1_250_000_000).data;
        assert_eq!(data["response"]["status"], 404);
        assert_eq!(data["latency_ms"], 250);
        assert_eq!(data["started_at"], "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn every_u64_time_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709Z");
    }

    #[test]
    fn flags_render_as_envoy_access_log_codes() {
        assert_eq!(response_flags(0), "");
        assert_eq!(response_flags(0x20), "UF");
        assert_eq!(response_flags(0x20 | 0x8000), "UF,URX");
        assert_eq!(response_flags(0x800), "RL");
        assert_eq!(response_flags(1 << 29), "UDO");
        assert_eq!(response_flags(1 << 40), "");
    }

    #[test]
    fn text_from_the_host_is_capped() {
        let long = "é".repeat(3000); // 6000 bytes, 2-byte characters
        let mut many: Vec<(&str, String)> = vec![(":path", format!("/{long}?{long}"))];
        let names: Vec<String> = (0..150).map(|n| format!("x-{n}")).collect();
        for name in &names {
            many.push((name.as_str(), long.clone()));
        }
        many.push(("x-0", "again".into()));
        let capture = Capture {
            request_headers: Some(
                many.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            ..Capture::default()
        };
        let data = event(&capture, 0).data;
        let path = data["request"]["path"].as_str().unwrap();
        assert!(path.ends_with(TRUNCATED) && path.len() <= MAX_TEXT_BYTES + TRUNCATED.len());
        assert!(
            data["request"]["query"]
                .as_str()
                .unwrap()
                .ends_with(TRUNCATED)
        );
        let headers = data["request"]["headers"].as_object().unwrap();
        assert_eq!(headers.len(), MAX_HEADERS);
        for value in headers.values() {
            assert!(value.as_str().unwrap().len() <= MAX_TEXT_BYTES + TRUNCATED.len());
        }
        assert_eq!(capped("short".into()), "short");
    }

    #[test]
    fn client_ips() {
        assert_eq!(client_ip("10.0.0.1:443").as_deref(), Some("10.0.0.1"));
        assert_eq!(client_ip("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(client_ip("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(client_ip("::1").as_deref(), Some("::1"));
        assert_eq!(client_ip(":80"), None);
        assert_eq!(client_ip("[oops"), None);
    }

    /// Fuzz finding (target `properties`): a `source.address` longer than 4,096 bytes went into
    /// `client.ip` uncut, the one event field not bounded like all other text.
    #[test]
    fn fuzz_finding_client_ip_is_capped() {
        let capture = Capture {
            properties: Properties {
                source_address: Some("1".repeat(MAX_TEXT_BYTES * 2)),
                ..Properties::default()
            },
            ..Capture::default()
        };
        let ip = event(&capture, 0).data["client"]["ip"].clone();
        let ip = ip.as_str().unwrap();
        assert_eq!(ip.len(), MAX_TEXT_BYTES + TRUNCATED.len());
        assert!(ip.ends_with(TRUNCATED));
    }

    #[test]
    fn uppercase_header_names_in_filters_are_refused() {
        let problems = Problems::default();
        let filter = Filter::compile(&json!({"request.headers.X-Team": "a"}), "f", &problems);
        check_filter(&filter, "f", &problems);
        assert_eq!(
            problems.into_vec()[0].to_string(),
            "f.request.headers.X-Team: header names are lowercase in events: use request.headers.x-team"
        );
    }
}
