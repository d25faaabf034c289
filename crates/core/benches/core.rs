//! Micro-benchmarks of the core's hot path: `cargo bench --bench core` (add `-- --quick` on a
//! busy machine). What each measures, and the numbers: benches/README.md.

// Benchmark code: a failed unwrap is a broken benchmark, as in a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

use event_hooks_core::config;
use event_hooks_core::delivery::{Attempt, Response, SendError, Transport};
use event_hooks_core::event::{Event, Redaction};
use event_hooks_core::ports::ManualClock;
use event_hooks_core::template::{Escape, Template};

mod workload;
use workload::{capture, configuration, envoy_bench_hook, runtime, runtime_of};

/// A transport that accepts every call (the benchmark answers them at once).
#[derive(Default)]
struct NullTransport {
    tokens: Vec<u32>,
    next: u32,
}

impl Transport for NullTransport {
    fn send(&mut self, _request: &Attempt, _timeout_ms: u64) -> Result<u32, SendError> {
        self.next = self.next.wrapping_add(1);
        self.tokens.push(self.next);
        Ok(self.next)
    }
}

/// The traffic event of [`capture`], for the handlers' benchmarks.
fn traffic() -> Event {
    event_hooks_core::source::traffic::event(&capture(), 1_795_378_513_002_000_000)
}

/// The whole observe path for a request that matches no hook, by number of hooks.
fn observe_nonmatching(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe/nonmatching");
    let capture = capture();
    for count in [0, 10, 100, 1_000] {
        let runtime = runtime(count, false);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, _| {
            b.iter(|| {
                runtime.observe(
                    black_box(&capture),
                    &ManualClock::at_ns(1_795_378_513_002_000_000),
                )
            });
        });
    }
    group.finish();
}

/// The same request with the 1,000 non-matching hooks of `make bench` (bench/run.py), a quarter
/// of which the index cannot key on a text.
fn observe_nonmatching_envoy_bench(c: &mut Criterion) {
    let runtime = runtime_of((0..1_000).map(envoy_bench_hook).collect());
    let capture = capture();
    c.bench_function("observe/nonmatching-envoy-bench/1000", |b| {
        b.iter(|| {
            runtime.observe(
                black_box(&capture),
                &ManualClock::at_ns(1_795_378_513_002_000_000),
            )
        });
    });
}

/// One request matching 1 hook of 1,000: matching, the body, queueing, the signed call and its
/// answer (the delivery queue stays empty from one iteration to the next).
fn observe_matching(c: &mut Criterion) {
    let runtime = runtime(1_000, true);
    let capture = capture();
    let mut transport = NullTransport::default();
    c.bench_function("observe/matching/1000", |b| {
        b.iter(|| {
            runtime.observe(
                black_box(&capture),
                &ManualClock::at_ns(1_795_378_513_002_000_000),
            );
            runtime.flush(&ManualClock::at_ms(1_795_378_513_002), &mut transport);
            for token in transport.tokens.drain(..) {
                runtime.complete(
                    token,
                    Response::Status(200),
                    b"",
                    None,
                    &ManualClock::at_ms(1_795_378_513_003),
                );
            }
        });
    });
    assert!(runtime.is_idle(), "every call answered");
}

/// A `webhook-custom` body template over the traffic event.
fn template(c: &mut Criterion) {
    let template = Template::parse(
        r#"{"text": "{{ request.method }} {{ request.path }} answered {{ response.status }}",
            "route": "{{ route }}", "team": "{{ request.headers.x-tenant }}",
            "latency_ms": {* latency_ms *}, "upstream": {* upstream *}}"#,
    )
    .unwrap();
    let event = traffic();
    let context = event.data_for(&Redaction::default());
    c.bench_function("template/render", |b| {
        b.iter(|| template.render(black_box(&context), Escape::Json));
    });
}

/// The signature headers of one attempt, per scheme, over a 1 KiB body.
fn signing(c: &mut Criterion) {
    let mut group = c.benchmark_group("signing");
    let body = vec![b'x'; 1024];
    let schemes = [
        ("kong", json!({"secret": "hunter2"})),
        (
            "standard-webhooks",
            json!({"signature": "standard-webhooks", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ),
        (
            "github",
            json!({"signature": "github", "secret": "hunter2"}),
        ),
    ];
    for (name, secret) in schemes {
        let mut config = json!({"url": "http://receiver:9000/hooks"});
        if let (Some(config), Some(secret)) = (config.as_object_mut(), secret.as_object()) {
            config.extend(secret.clone());
        }
        let document =
            json!({"hooks": [{"source": "traffic", "handler": "webhook", "config": config}]});
        let parsed = config::parse(document.to_string().as_bytes()).unwrap();
        let signing = parsed.hooks.get(0).unwrap().handler.signing().clone();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                signing.headers(
                    "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                    1_795_378_513,
                    black_box(&body),
                )
            });
        });
    }
    group.finish();
}

/// Parsing and validating a configuration of 1,000 hooks.
fn config_parse(c: &mut Criterion) {
    let bytes = configuration(1_000, false);
    c.bench_function("config/parse/1000", |b| {
        b.iter(|| config::parse(black_box(&bytes)).unwrap());
    });
}

/// One event through a `lambda` hook (was the ignored `cost_per_event` test).
#[cfg(feature = "lambda")]
fn lambda(c: &mut Criterion) {
    use event_hooks_core::event::Bodies;
    use event_hooks_core::handler::lambda::Lambda;
    use event_hooks_core::reader::Problems;
    use event_hooks_core::source::Source;

    let event = Event::new(
        Source::TRAFFIC,
        "request",
        json!({
            "request": {"method": "GET", "path": "/orders/7", "host": "shop",
                        "headers": {"authorization": "Bearer s3cr3t", "x-team": "payments"}},
            "response": {"status": 503, "flags": "UF", "headers": {"content-type": "text/plain"}},
            "latency_ms": 12,
            "route": "orders"
        })
        .as_object()
        .unwrap()
        .clone(),
    );
    let cases: [(&str, Vec<&str>); 3] = [
        ("unchanged", vec!["data"]),
        (
            "filter-transform-http",
            vec![
                r#"if data.response.status < 500 { return; }
                   #{status: data.response.status, path: data.request.path, team: data.request.headers["x-team"]}"#,
                r#"http(#{url: "http://receiver:9000/alerts", body: data})"#,
            ],
        ),
        ("loop-stopped", vec!["loop {}"]),
    ];
    let mut group = c.benchmark_group("lambda");
    for (name, functions) in cases {
        let problems = Problems::default();
        let lambda = Lambda::parse(&json!({"functions": functions}), "config", &problems).unwrap();
        assert!(problems.is_empty());
        group.bench_function(name, |b| {
            b.iter(|| lambda.outputs(&mut Bodies::new(black_box(&event)), &Redaction::default()));
        });
    }
    group.finish();
}

#[cfg(not(feature = "lambda"))]
fn lambda(_c: &mut Criterion) {}

criterion_group!(
    benches,
    observe_nonmatching,
    observe_nonmatching_envoy_bench,
    observe_matching,
    template,
    signing,
    config_parse,
    lambda
);
criterion_main!(benches);
