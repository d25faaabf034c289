use std::cell::Cell;

use super::*;
use crate::config;
use crate::delivery::{Attempt, SendError, Transport};
use crate::event::{Fields, Redaction, split_path};
use crate::log::Lines;
use crate::ports::ManualClock;
use crate::runtime::Runtime;
use crate::shared::Memory;
use crate::source::traffic::tests::{envoy_capture, headers};
use crate::source::traffic::{self, Capture, Later, Properties, View};
use serde_json::{Value, json};

/// A request as Envoy gives it, every property read, answered `status`.
fn full(status: u64) -> Capture {
    let mut capture = envoy_capture();
    capture.properties.status = Some(status);
    if let Some(headers) = &mut capture.request_headers {
        headers.push(("x-consumer-username".into(), "bob".into()));
    }
    capture.response_headers = headers(&[
        (":status", &status.to_string()),
        ("content-type", "application/json"),
        ("ratelimit-limit", "10"),
        ("ratelimit-remaining", "0"),
    ]);
    capture
}

/// A request answered before the filter saw its headers: the request's properties stand in.
fn unseen() -> Capture {
    Capture {
        request_headers: None,
        response_headers: None,
        seen_ns: None,
        properties: Properties {
            method: Some("GET".into()),
            path: Some("/x?y=1".into()),
            host: Some("h".into()),
            scheme: Some("http".into()),
            ..full(429).properties
        },
        ..Capture::default()
    }
}

/// `capture`'s properties as Envoy's log phase gives them without the request's header map:
/// its pseudo-headers, read on their own, stand in for the request's method, path, host and
/// scheme.
fn without_request_map(capture: &Capture) -> Properties {
    let mut properties = capture.properties.clone();
    if let Some(headers) = &capture.request_headers {
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        properties.method = properties.method.or_else(|| pseudo(":method"));
        properties.path = properties.path.or_else(|| pseudo(":path"));
        properties.host = properties.host.or_else(|| pseudo(":authority"));
        properties.scheme = properties.scheme.or_else(|| pseudo(":scheme"));
    }
    properties
}

/// `capture` as a host that read only the properties of `props` and the header maps `needs`
/// asks for at `stage` or earlier gives it (a map not read: [`without_request_map`]).
fn restricted(capture: &Capture, needs: Needs, props: Props, stage: Stage) -> Capture {
    let kept = |map: &Option<Vec<(String, String)>>, need: Stage| {
        map.clone().filter(|_| need.any() && need >= stage)
    };
    let request_headers = kept(&capture.request_headers, needs.request_headers);
    let properties = match request_headers {
        Some(_) => capture.properties.clone(),
        None => without_request_map(capture),
    };
    Capture {
        request_headers,
        response_headers: kept(&capture.response_headers, needs.response_headers),
        seen_ns: capture.seen_ns,
        properties: only(&properties, props),
        response_body: capture.response_body.clone(),
    }
}

#[test]
fn every_field_reads_the_same_from_what_it_needs() {
    let mut paths: Vec<String> = traffic::FIELDS.iter().map(|f| f.to_string()).collect();
    for name in ["authorization", "x-request-id", "content-type", "missing"] {
        paths.push(format!("request.headers.{name}"));
        paths.push(format!("response.headers.{name}"));
    }
    paths.extend(["request", "response.headers", "nothing"].map(str::to_string));
    for capture in [full(503), full(200), unseen(), Capture::default()] {
        for path in &paths {
            let path = split_path(path);
            let needs = Needs::of_field(&path);
            // Read before deciding (a filter's field), and once the event is built.
            let first = restricted(&capture, needs, needs.first, Stage::First);
            let all = restricted(&capture, needs, needs.first.union(needs.then), Stage::Then);
            for redaction in [Redaction::default(), Redaction::none()] {
                let view = View::new(&capture, 9);
                let expected = view.field(&path, &redaction);
                assert_eq!(
                    View::new(&first, 9).field(&path, &redaction),
                    expected,
                    "{path:?}"
                );
                assert_eq!(
                    View::new(&all, 9).field(&path, &redaction),
                    expected,
                    "{path:?}"
                );
            }
        }
    }
}

fn needs_of(config: Value) -> Needs {
    let config = config::parse(config.to_string().as_bytes()).unwrap();
    config.hooks.needs(&config.sources)
}

fn hook(source: &str, filter: Value, handler: &str, config: Value) -> Value {
    json!({"source": source, "filter": filter, "handler": handler, "config": config})
}

#[test]
fn configurations_need_what_their_hooks_and_sources_read() {
    assert_eq!(needs_of(json!({"hooks": []})), Needs::default());
    let webhook = json!({"url": "http://r/"});
    // A webhook sends the whole event: everything, the status first.
    let needs = needs_of(json!({"hooks": [
        hook("traffic", json!({"response.status": {"gte": 500}}), "webhook", webhook.clone())
    ]}));
    assert_eq!(needs.first, Props::of(&[Prop::Status]));
    assert_eq!(needs.then, Props::ALL.without(needs.first));
    assert_eq!(
        (needs.request_headers, needs.response_headers),
        (Stage::Then, Stage::Then)
    );
    // webhook-custom: what its filter and its templates read, nothing more.
    let needs = needs_of(json!({"hooks": [
        hook("traffic", json!({"request.path": {"prefix": "/orders"}}), "webhook-custom",
             json!({"url": "http://r/", "method": "POST",
                    "body": "{{ event }} {{ route }} {{ latency_ms }}"}))
    ]}));
    assert_eq!(needs.first, Props::of(&[Prop::Path]));
    assert_eq!(needs.then, Props::of(&[Prop::Route, Prop::Duration]));
    assert_eq!(
        (needs.request_headers, needs.response_headers),
        (Stage::Then, Stage::Never)
    );
    // ... unless it has on_change, which digests the whole event.
    let needs = needs_of(json!({"hooks": [{"source": "traffic", "on_change": true,
        "handler": "webhook-custom", "config": {"url": "http://r/", "method": "GET"}}]}));
    assert_eq!(needs.then, Props::ALL);
    // Sources read what they read; a disabled hook reads nothing.
    let needs = needs_of(json!({"hooks": [
        hook("balancer", json!({}), "log", json!({})),
        {"source": "traffic", "enabled": false, "handler": "log", "config": {}}
    ]}));
    assert_eq!(
        needs,
        Needs {
            first: Props::of(&[
                Prop::UpstreamAddress,
                Prop::Cluster,
                Prop::Status,
                Prop::Flags
            ]),
            then: Props::NONE,
            request_headers: Stage::Never,
            response_headers: Stage::Then,
            ..Needs::default()
        }
    );
    let needs = needs_of(json!({"hooks": [hook("crud", json!({}), "log", json!({}))],
                                "crud": {"match": {"request.host": "admin"}}}));
    assert_eq!(
        needs.first,
        Props::of(&[Prop::Method, Prop::Path, Prop::Status, Prop::Host])
    );
    assert_eq!(needs.then, Props::NONE);
    let needs = needs_of(json!({"hooks": [
        hook("rate-limiting-advanced", json!({}), "log", json!({}))
    ]}));
    assert_eq!(needs.first, Props::of(&[Prop::Status]));
    assert_eq!(
        needs.then,
        Props::of(&[Prop::SourceAddress, Prop::Cluster, Prop::Route])
    );
}

#[derive(Default)]
struct Recorder(Vec<Attempt>);

impl Transport for Recorder {
    fn send(&mut self, request: &Attempt, _timeout_ms: u64) -> Result<u32, SendError> {
        self.0.push(request.clone());
        Ok(self.0.len() as u32)
    }
}

/// What a runtime sends for `captures`, observed from everything or from what it needs.
fn sent(config: &Value, captures: &[Capture], as_needed: bool) -> (Vec<Attempt>, usize) {
    let runtime = Runtime::new(
        config::parse(config.to_string().as_bytes()).unwrap(),
        1,
        Box::new(Memory::default()),
        Box::new(crate::metrics::Null),
        Box::new(Lines::default()),
    );
    let needs = runtime.needs();
    let rests = Cell::new(0);
    for (n, capture) in captures.iter().enumerate() {
        let now = 1_700_000_001_000_000_000 + n as u64;
        if as_needed {
            let first = restricted(capture, needs, needs.first, Stage::First);
            let rest = |later: &mut Later| {
                rests.set(rests.get() + 1);
                assert_eq!(
                    later.properties, first.properties,
                    "the rest adds to the first"
                );
                let properties = match first.request_headers {
                    Some(_) => capture.properties.clone(),
                    None => without_request_map(capture),
                };
                later.properties = only(&properties, needs.first.union(needs.then));
                let then = |map: &Option<Vec<(String, String)>>, read: bool, need: Stage| {
                    map.clone().filter(|_| !read && need == Stage::Then)
                };
                later.request_headers = then(
                    &capture.request_headers,
                    first.request_headers.is_some(),
                    needs.request_headers,
                );
                later.response_headers = then(
                    &capture.response_headers,
                    first.response_headers.is_some(),
                    needs.response_headers,
                );
            };
            runtime.observe_with(&first, &rest, &ManualClock::at_ns(now));
        } else {
            runtime.observe(capture, &ManualClock::at_ns(now));
        }
    }
    let mut transport = Recorder::default();
    runtime.flush(&ManualClock::at_ms(1_700_000_002_000), &mut transport);
    (transport.0, rests.get())
}

#[test]
fn requests_read_as_needed_give_the_same_deliveries() {
    let captures = [full(200), full(503), full(429), unseen(), full(404)];
    let webhook = json!({"url": "http://r:9/hooks", "secret": "s"});
    let configs = [
        json!({"hooks": [hook("traffic", json!({"response.status": {"gte": 500}}), "webhook", webhook.clone())]}),
        json!({"hooks": [hook("traffic", json!({"request.method": "POST", "request.headers.x-consumer-username": "bob"}),
                              "webhook-custom",
                              json!({"url": "http://r:9/c", "method": "POST",
                                     "body": "{{ request.path }} {{ route }} {{ started_at }} {{ response.headers.content-type }}"}))]}),
        json!({"hooks": [hook("rate-limiting-advanced", json!({}), "webhook", webhook.clone())]}),
        json!({"hooks": [hook("traffic", json!({"client.ip": {"prefix": "10."}}), "webhook", webhook.clone()),
                         hook("traffic", json!({}), "log", json!({}))]}),
    ];
    for config in &configs {
        let (expected, _) = sent(config, &captures, false);
        let (seen, _) = sent(config, &captures, true);
        assert!(!expected.is_empty(), "{config}");
        assert_eq!(seen, expected, "{config}");
    }
    // A request no hook selects never reads the rest.
    let (seen, rests) = sent(&configs[0], &[full(200), full(404)], true);
    assert_eq!((seen.len(), rests), (0, 0));
    let (_, rests) = sent(&configs[0], &[full(503)], true);
    assert_eq!(rests, 1);
}

/// `properties` with only the properties of `props` (what a host that read only those gives).
fn only(properties: &Properties, props: Props) -> Properties {
    let keep = |prop: Prop, value: &Option<String>| value.clone().filter(|_| props.has(prop));
    let number = |prop: Prop, value: Option<u64>| value.filter(|_| props.has(prop));
    Properties {
        method: keep(Prop::Method, &properties.method),
        path: keep(Prop::Path, &properties.path),
        host: keep(Prop::Host, &properties.host),
        scheme: keep(Prop::Scheme, &properties.scheme),
        request_id: keep(Prop::RequestId, &properties.request_id),
        status: number(Prop::Status, properties.status),
        flags: number(Prop::Flags, properties.flags),
        code_details: keep(Prop::CodeDetails, &properties.code_details),
        upstream_address: keep(Prop::UpstreamAddress, &properties.upstream_address),
        cluster: keep(Prop::Cluster, &properties.cluster),
        route: keep(Prop::Route, &properties.route),
        duration_ns: number(Prop::Duration, properties.duration_ns),
        start_ns: number(Prop::Start, properties.start_ns),
        source_address: keep(Prop::SourceAddress, &properties.source_address),
    }
}
