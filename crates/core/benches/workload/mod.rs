//! The workload shared by the benchmarks (benches/core.rs) and the allocation test
//! (tests/no_alloc.rs): a configuration of many traffic hooks and a request none matches.

#![allow(dead_code)]

use serde_json::{Value, json};

use event_hooks_core::config;
use event_hooks_core::log::{Level, Log};
use event_hooks_core::runtime::Runtime;
use event_hooks_core::shared::Memory;
use event_hooks_core::source::traffic::{Capture, Properties};

/// A log that drops every line.
pub struct NullLog;

impl Log for NullLog {
    fn log(&self, _level: Level, _message: &str) {}
}

/// Hook `i` of a large configuration: four shapes in turn, none of which matches [`capture`].
pub fn hook(i: usize) -> Value {
    let filter = match i % 4 {
        0 => {
            json!({"response.status": {"gte": 500}, "request.path": {"prefix": format!("/svc-{i}/")}})
        }
        1 => json!({"request.method": "DELETE", "request.path": {"prefix": format!("/svc-{i}/")}}),
        2 => {
            json!({"request.path": {"prefix": format!("/svc-{i}/")}, "response.status": {"in": [401, 403]}})
        }
        _ => json!({"request.headers.x-tenant": format!("tenant-{i}")}),
    };
    json!({
        "name": format!("hook-{i}"), "source": "traffic", "filter": filter,
        "handler": "webhook",
        "config": {"url": format!("http://receiver:9000/hooks/{i}"), "secret": "hunter2"}
    })
}

/// Hook `i` of `make bench`'s configurations (`nonmatching_hooks` in bench/run.py), none of
/// which matches [`capture`] either. A quarter of them (`request.host` suffix and
/// `response.status in [...]`) have no condition the index can key on a text: the index tests
/// their conditions one by one, each reading its field.
pub fn envoy_bench_hook(i: usize) -> Value {
    let filter = match i % 4 {
        0 => {
            json!({"response.status": {"gte": 500}, "request.path": {"prefix": format!("/orders/{i}")}})
        }
        1 => json!({"request.method": "POST", "request.path": {"prefix": format!("/api/v{i}/")}}),
        2 => json!({"request.headers.x-tenant": {"eq": format!("tenant-{i}")}}),
        _ => {
            json!({"response.status": {"in": [502, 503, 504]}, "request.host": {"suffix": format!(".svc{i}.internal")}})
        }
    };
    json!({
        "name": format!("quiet-{i}"), "source": "traffic", "filter": filter,
        "handler": "webhook",
        "config": {"url": format!("http://receiver:9000/quiet/{i}"), "secret": "hunter2"}
    })
}

/// A runtime of `hooks`.
pub fn runtime_of(hooks: Vec<Value>) -> Runtime {
    let config = config::parse(json!({"hooks": hooks}).to_string().as_bytes()).unwrap();
    Runtime::new(
        config,
        7,
        Box::new(Memory::default()),
        Box::new(event_hooks_core::metrics::Null),
        Box::new(NullLog),
    )
}

/// A configuration of `count` traffic hooks; with `matching`, hook `count / 2` is replaced by
/// one that matches [`capture`].
pub fn configuration(count: usize, matching: bool) -> Vec<u8> {
    let mut hooks: Vec<Value> = (0..count).map(hook).collect();
    if matching {
        if let Some(middle) = hooks.get_mut(count / 2) {
            *middle = json!({
                "name": "orders", "source": "traffic",
                "filter": {"request.path": {"prefix": "/orders"}, "response.status": 200},
                "handler": "webhook",
                "config": {"url": "http://receiver:9000/orders", "secret": "hunter2"}
            });
        }
    }
    json!({"hooks": hooks}).to_string().into_bytes()
}

pub fn runtime(count: usize, matching: bool) -> Runtime {
    let config = config::parse(&configuration(count, matching)).unwrap();
    Runtime::new(
        config,
        7,
        Box::new(Memory::default()),
        Box::new(event_hooks_core::metrics::Null),
        Box::new(NullLog),
    )
}

/// A typical proxied request as the host captures it (Envoy): `GET /orders/42` answered 200.
pub fn capture() -> Capture {
    let headers = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    };
    Capture {
        request_headers: headers(&[
            (":method", "GET"),
            (":path", "/orders/42?expand=items"),
            (":authority", "shop.example.com"),
            (":scheme", "https"),
            ("user-agent", "curl/8.5.0"),
            ("accept", "application/json"),
            ("authorization", "Bearer s3cr3t"),
            ("x-tenant", "tenant-none"),
            ("x-request-id", "0b6a3f1e-4c1d-4a8e-9d55-1f0e5a7c2b10"),
            ("x-forwarded-for", "203.0.113.9"),
        ]),
        response_headers: headers(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "512"),
            ("date", "Sun, 22 Nov 2026 20:15:13 GMT"),
        ]),
        seen_ns: Some(1_795_378_513_000_000_000),
        properties: Properties {
            request_id: Some("0b6a3f1e-4c1d-4a8e-9d55-1f0e5a7c2b10".into()),
            status: Some(200),
            flags: Some(0),
            code_details: Some("via_upstream".into()),
            upstream_address: Some("10.0.0.7:8080".into()),
            cluster: Some("orders".into()),
            route: Some("orders_route".into()),
            duration_ns: Some(2_345_678),
            start_ns: Some(1_795_378_513_000_000_000),
            source_address: Some("203.0.113.9:55000".into()),
            ..Properties::default()
        },
        ..Capture::default()
    }
}
