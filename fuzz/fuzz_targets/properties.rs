//! What hosts hand the filter: property values in Envoy's encoding (8-byte little-endian
//! integers, nanoseconds) and Kong's (decimal strings, decimal seconds), serialized header
//! maps, and state other workers left in shared data; then the events built from them.
//!
//! Beyond "no panic":
//! * each decoder agrees with an independent statement of its format (`integer`,
//!   `decimal_seconds_ns`), and encodings round-trip (integers both ways, Kong seconds,
//!   header maps);
//! * a decoded header map is exactly what its buffer says: re-encoded, it is the start of the
//!   buffer (when no invalid UTF-8 was replaced), so decoding never reads past an item;
//! * the host rules hold for any input: Kong's header names come out lowercase with
//!   `:authority` the Host header, nothing added or lost; an answer's body is read only on
//!   Envoy and on a Kong whose nginx is 1.25 or later; the root context's buffer probe names
//!   Envoy only for a host that honours the offset, Kong only for one that ignores it;
//! * the traffic event built from any properties and headers is bounded as documented: text
//!   at most 4,096 bytes plus the truncation mark, at most 100 header names per map, names
//!   lowercase without pseudo-headers; the rate-limit and health sources take any such event.
#![no_main]

use std::collections::HashMap;

use arbitrary::Unstructured;
use event_hooks::differences::{self, Host, Known};
use event_hooks::wire;
use event_hooks_core::needs::Props;
use event_hooks_core::shared::{Memory, NAMESPACE, Shared};
use event_hooks_core::source::traffic::{self, Capture, MAX_HEADERS, MAX_TEXT_BYTES, TRUNCATED};
use event_hooks_core::source::{balancer, rate_limiting};
use event_hooks_fuzz::{chance, count, pick, string};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `integer`, as its documentation states it.
fn integer_oracle(bytes: &[u8]) -> Option<u64> {
    if !bytes.is_empty() && bytes.len() <= 20 && bytes.iter().all(u8::is_ascii_digit) {
        let mut n: u128 = 0;
        for b in bytes {
            n = n * 10 + u128::from(b - b'0');
        }
        return u64::try_from(n).ok();
    }
    (bytes.len() == 8).then(|| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b))
    })
}

/// `decimal_seconds_ns`, as its documentation states it: trimmed `S[.F]`, at most 12 digits of
/// seconds and 9 of fraction.
fn seconds_oracle(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let (whole, fraction) = match text.find('.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || fraction.len() > 9
        || !digits(whole)
        || !digits(fraction)
    {
        return None;
    }
    let padded = format!("{fraction:0<9}");
    let ns = u128::from(whole.parse::<u64>().ok()?) * 1_000_000_000
        + u128::from(padded.parse::<u64>().ok()?);
    u64::try_from(ns).ok()
}

fn check_decoders(raw: &[u8]) {
    assert_eq!(wire::integer(raw), integer_oracle(raw), "integer({raw:?})");
    assert_eq!(
        wire::decimal_seconds_ns(raw),
        seconds_oracle(raw),
        "decimal_seconds_ns({raw:?})"
    );
    assert_eq!(wire::string(raw), String::from_utf8_lossy(raw));
    if let Some(pairs) = wire::header_map(raw) {
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let replaced = pairs
            .iter()
            .any(|(k, v)| k.contains('\u{fffd}') || v.contains('\u{fffd}'));
        if !replaced && !raw.is_empty() {
            let encoded = wire::encode_header_map(&borrowed);
            assert!(
                raw.starts_with(&encoded),
                "a decoded header map is not what its buffer holds"
            );
        }
    }
}

fn check_round_trips(u: &mut Unstructured<'_>) {
    let n: u64 = u.arbitrary().unwrap_or(0);
    let le = n.to_le_bytes();
    if !le.iter().all(u8::is_ascii_digit) {
        assert_eq!(wire::integer(&le), Some(n), "Envoy's encoding of {n}");
    }
    assert_eq!(
        wire::integer(n.to_string().as_bytes()),
        Some(n),
        "Kong's encoding of {n}"
    );
    let (seconds, nanos) = (n / 1_000_000_000, n % 1_000_000_000);
    let digits = count(u, 9);
    let fraction = format!("{nanos:09}");
    let text = if digits == 0 {
        format!("{seconds}")
    } else {
        format!("{seconds}.{}", &fraction[..digits])
    };
    let expected = seconds * 1_000_000_000
        + fraction[..digits].parse::<u64>().unwrap_or(0) * 10u64.pow(9 - digits as u32);
    assert_eq!(
        wire::decimal_seconds_ns(text.as_bytes()),
        Some(expected),
        "Kong seconds {text}"
    );
    let pairs: Vec<(String, String)> = (0..count(u, 6)).map(|_| (string(u), string(u))).collect();
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let encoded = wire::encode_header_map(&borrowed);
    assert_eq!(
        wire::header_map(&encoded),
        Some(pairs),
        "a header map does not round-trip"
    );
}

/// A property value in one of the encodings hosts use, or garbage.
fn property(u: &mut Unstructured<'_>) -> Option<Vec<u8>> {
    let n: u64 = u.arbitrary().unwrap_or(0);
    match count(u, 7) {
        0 => None,
        1 => Some(n.to_le_bytes().to_vec()),
        2 => Some(n.to_string().into_bytes()),
        3 => Some(format!("{}.{:03}", n % 10_000_000_000, n % 1000).into_bytes()),
        4 => Some(string(u).into_bytes()),
        5 => Some(
            pick(
                u,
                &[
                    &b"3.9.1"[..],
                    b"3.10.0.2",
                    b"envoy",
                    b"",
                    b"127.0.0.1:80",
                    b"[::1]:8080",
                    b"200",
                ],
            )
            .to_vec(),
        ),
        _ => {
            let len = count(u, 24);
            Some(u.bytes(len).unwrap_or_default().to_vec())
        }
    }
}

const PATHS: &[&str] = &[
    "ngx.pid",
    "ngx.host",
    "ngx.http_host",
    "ngx.nginx_version",
    "kong.version",
    "plugin_name",
    "kong.service_id",
    "kong.route_id",
    "request.method",
    "request.path",
    "request.host",
    "request.scheme",
    "request.id",
    "request.duration",
    "request.time",
    "response.code",
    "response.flags",
    "response.code_details",
    "source.address",
    "upstream.address",
    "upstream.port",
    "xds.cluster_name",
    "xds.route_name",
];

fn headers(u: &mut Unstructured<'_>) -> Option<Vec<(String, String)>> {
    match count(u, 3) {
        0 => None,
        1 => {
            let len = count(u, 256);
            wire::header_map(u.bytes(len).unwrap_or_default())
        }
        _ => {
            const NAMES: &[&str] = &[
                ":method",
                ":path",
                ":authority",
                ":scheme",
                ":status",
                "x-request-id",
                "X-Team",
                "x-team",
                "ratelimit-limit",
                "x-ratelimit-limit-minute",
                "ratelimit-policy",
                "x-ratelimit-remaining",
                "ratelimit-reset",
                "x-consumer-id",
                "authorization",
            ];
            let many = chance(u, 1, 16);
            let n = if many { 150 } else { count(u, 8) };
            Some(
                (0..n)
                    .map(|i| {
                        let name = if many {
                            format!("h-{}", i % 120)
                        } else {
                            pick(u, NAMES).to_string()
                        };
                        (name, string(u))
                    })
                    .collect(),
            )
        }
    }
}

fn check_bounded(value: &Value, path: &str) {
    match value {
        Value::String(text) => assert!(
            text.len() <= MAX_TEXT_BYTES + TRUNCATED.len(),
            "{path} holds {} bytes",
            text.len()
        ),
        Value::Object(map) => {
            if path.ends_with(".headers") {
                assert!(map.len() <= MAX_HEADERS, "{path} holds {} names", map.len());
                for name in map.keys() {
                    assert!(!name.starts_with(':'), "{path} holds a pseudo-header");
                    assert_eq!(
                        name,
                        &name.to_ascii_lowercase(),
                        "{path} holds an uppercase name"
                    );
                }
            }
            for (key, value) in map {
                check_bounded(value, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|item| check_bounded(item, path)),
        _ => {}
    }
}

/// `request_headers` and `response_headers` on any map: Envoy's untouched; Kong's names
/// lowercased (nothing else changed but `:authority`, which takes the first non-empty Host).
fn check_header_rules(host: Host, headers: &mut Vec<(String, String)>) {
    let before = headers.clone();
    let mut response = headers.clone();
    differences::response_headers(host, &mut response);
    differences::request_headers(host, headers);
    assert_eq!(headers.len(), before.len());
    if host == Host::Envoy {
        assert_eq!(*headers, before);
        assert_eq!(response, before);
        return;
    }
    let sent = before
        .iter()
        .find(|(name, value)| name.eq_ignore_ascii_case("host") && !value.is_empty())
        .map(|(_, value)| value.clone());
    for (((name, value), (old_name, old_value)), (response_name, response_value)) in
        headers.iter().zip(&before).zip(&response)
    {
        assert_eq!(*name, old_name.to_ascii_lowercase());
        assert_eq!(response_name, name);
        assert_eq!(response_value, old_value);
        match (&sent, name.as_str()) {
            (Some(sent), ":authority") => assert_eq!(value, sent),
            _ => assert_eq!(value, old_value),
        }
    }
}

/// The root context's probe on any configuration bytes: an honest reader of either kind is
/// never taken for the other.
fn check_buffer_probe(u: &mut Unstructured<'_>) {
    let len = count(u, 32);
    let config = u.bytes(len).unwrap_or_default().to_vec();
    let honours = |at: usize| config.get(at).copied();
    let ignores = |_: usize| config.first().copied();
    assert_ne!(
        differences::host_by_buffer_offset(&config, &honours),
        Some(Host::Kong)
    );
    assert_ne!(
        differences::host_by_buffer_offset(&config, &ignores),
        Some(Host::Envoy)
    );
    let distinct = config.iter().any(|byte| Some(byte) != config.first());
    assert_eq!(
        differences::host_by_buffer_offset(&config, &honours).is_some(),
        distinct
    );
    let other: Option<u8> = u.arbitrary().unwrap_or(None);
    let _ = differences::host_by_buffer_offset(&config, &|_| other);
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let len = count(&mut u, 64);
    check_decoders(u.bytes(len).unwrap_or_default());
    check_round_trips(&mut u);

    let props: HashMap<&str, Vec<u8>> = PATHS
        .iter()
        .filter_map(|path| property(&mut u).map(|value| (*path, value)))
        .collect();
    let read = |path: &[&str]| props.get(path.join(".").as_str()).cloned();
    let known = Known::default();
    known.learn(&read);
    let host = known.host().unwrap_or(Host::Envoy);
    assert_eq!(
        host == Host::Kong,
        props.contains_key("ngx.pid"),
        "host detection"
    );
    let nginx = props
        .get("ngx.nginx_version")
        .map(|version| wire::string(version));
    let bodies_oracle = match host {
        Host::Envoy => true,
        Host::Kong => nginx.as_deref().is_some_and(|version| {
            let mut parts = version.trim().split('.');
            let major = parts.next().and_then(|p| p.parse::<u32>().ok());
            let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
            matches!((major, minor), (Some(major), Some(minor)) if (major, minor) >= (1, 25))
        }),
    };
    assert_eq!(known.reads_call_bodies(), bodies_oracle, "answer bodies");
    check_buffer_probe(&mut u);
    let mut request_headers = headers(&mut u);
    if let Some(headers) = &mut request_headers {
        check_header_rules(host, headers);
    }
    let headers_seen = request_headers.is_some();
    // Every property, as a configuration that needs the whole event reads them.
    let earlier = differences::request_properties(host, &read, Props::ALL);
    let properties = differences::log_properties(host, headers_seen, earlier, &read, Props::ALL);
    let capture = Capture {
        request_headers,
        response_headers: headers(&mut u),
        seen_ns: u.arbitrary().unwrap_or(None),
        properties,
        ..Capture::default()
    };
    let now: u64 = u.arbitrary().unwrap_or(0);
    let event = traffic::event(&capture, now);
    check_bounded(&event.data, "");
    serde_json::to_vec(&event.data).expect("an event serializes");

    let _ = rate_limiting::event(&rate_limiting::Settings::default(), &event);
    let store = Memory::default();
    let cluster = event
        .data
        .pointer("/upstream/cluster")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(address) = event
        .data
        .pointer("/upstream/address")
        .and_then(Value::as_str)
    {
        let state = property(&mut u).unwrap_or_default();
        let _ = store.set(
            &format!("{NAMESPACE}health/{cluster}/{address}"),
            &state,
            None,
        );
    }
    let mut tracked = balancer::Tracked::default();
    for _ in 0..3 {
        let _ = balancer::observe(&store, &balancer::Settings::default(), &mut tracked, &event);
    }
});
