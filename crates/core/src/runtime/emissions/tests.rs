use std::rc::Rc;

use serde_json::{Value, json};

use super::*;
use crate::config;
use crate::emitted::{self, Rejected};
use crate::log::Lines;
use crate::metrics::{Metrics, Recorder};
use crate::needs::{Needs, Props};
use crate::ports::{ManualClock, Recorded};
use crate::shared::Memory;
use crate::source::traffic::Properties;

/// Metrics the test reads after handing them to the runtime.
#[derive(Clone, Default)]
struct Counted(Rc<Recorder>);

impl Metrics for Counted {
    fn count(&self, name: &str, delta: u64) {
        self.0.count(name, delta);
    }

    fn gauge(&self, name: &str, delta: i64) {
        self.0.gauge(name, delta);
    }
}

struct Setup {
    runtime: Runtime,
    log: Lines,
    metrics: Counted,
}

fn setup(config: Value) -> Setup {
    let (log, metrics) = (Lines::default(), Counted::default());
    let runtime = Runtime::new(
        config::parse(config.to_string().as_bytes()).unwrap(),
        7,
        Box::new(Memory::default()),
        Box::new(metrics.clone()),
        Box::new(log.clone()),
    );
    Setup {
        runtime,
        log,
        metrics,
    }
}

/// Two published sources: `payments` (the issue's, and one more event) and `audit`, whose
/// events carry the request.
fn publish() -> Value {
    json!({
        "payments": {"description": "Events the payments filter emits", "events": {
            "refund-issued": {"description": "A refund was issued",
                              "fields": ["order_id", "amount", "currency"], "unique": ["order_id"]},
            "charge-failed": {"fields": ["order_id", "reason"]}
        }},
        "audit": {"with_request": true, "events": {"access": {"fields": ["user"]}}}
    })
}

fn webhook(name: &str, source: &str, event: Option<&str>) -> Value {
    let mut hook = json!({"name": name, "source": source, "handler": "webhook",
                          "config": {"url": format!("http://receiver:9000/{name}")}});
    if let Some(event) = event {
        hook["event"] = json!(event);
    }
    hook
}

/// A `POST /refunds` answered 201, with a secret header.
fn request() -> Capture {
    Capture {
        request_headers: Some(vec![
            (":method".into(), "POST".into()),
            (":path".into(), "/refunds".into()),
            (":authority".into(), "shop.example".into()),
            ("authorization".into(), "Bearer secret-token".into()),
        ]),
        response_headers: Some(vec![(":status".into(), "201".into())]),
        properties: Properties {
            status: Some(201),
            ..Properties::default()
        },
        ..Capture::default()
    }
}

/// What an emitter set, as the JSON channel carries it, decoded.
fn emitted(events: Value) -> Result<Emitted, Reason> {
    emitted::from_json(events.to_string().as_bytes())
}

fn observe(setup: &Setup, events: Value, at_ms: u64) {
    setup.runtime.observe_emitted(
        &request(),
        &|_| {},
        emitted(events),
        &ManualClock::at_ms(at_ms),
    );
}

/// The calls sent, as (path, JSON body).
fn sent(setup: &Setup, at_ms: u64) -> Vec<(String, Value)> {
    let mut transport = Recorded::default();
    setup
        .runtime
        .flush(&ManualClock::at_ms(at_ms), &mut transport);
    transport
        .sent
        .into_inner()
        .iter()
        .map(|call| {
            let path = call
                .headers
                .iter()
                .find(|(name, _)| name == ":path")
                .unwrap();
            (path.1.clone(), serde_json::from_slice(&call.body).unwrap())
        })
        .collect()
}

fn id(setup: &Setup, name: &str) -> usize {
    setup
        .runtime
        .hooks()
        .sources()
        .from_name(name)
        .unwrap()
        .index()
}

#[test]
fn an_emission_reaches_its_hook_with_exactly_the_emitter_s_data() {
    let setup = setup(json!({"publish": publish(), "hooks": [
        webhook("refunds", "payments", Some("refund-issued")),
        webhook("failures", "payments", Some("charge-failed")),
        {"name": "lines", "source": "payments", "handler": "log", "config": {}}
    ]}));
    observe(
        &setup,
        json!({"payments.refund-issued": {"order_id": "42", "amount": 300, "currency": "EUR",
                                          "items": [{"sku": "a", "qty": 1.5}], "note": null}}),
        1_000,
    );
    assert_eq!(
        sent(&setup, 1_100),
        [(
            "/refunds".to_string(),
            json!({"order_id": "42", "amount": 300, "currency": "EUR",
                   "items": [{"sku": "a", "qty": 1.5}], "note": null,
                   "source": "payments", "event": "refund-issued"})
        )]
    );
    assert!(
        setup.log.text().contains("\"source\":\"payments\""),
        "{}",
        setup.log.text()
    );
    let counters = setup.runtime.counters();
    assert_eq!(counters.emitted.len(), Source::COUNT + 2);
    assert_eq!(counters.emitted[id(&setup, "payments")], 1);
    assert_eq!(counters.emitted[id(&setup, "audit")], 0);
    assert_eq!(counters.emissions_accepted, 1);
    assert_eq!(counters.emissions_dropped, [0; Dropped::COUNT]);
    let metrics = &setup.metrics.0;
    assert_eq!(metrics.value("event_hooks.events.payments"), 1);
    assert_eq!(metrics.value("event_hooks.emissions.accepted"), 1);
    assert_eq!(metrics.value("event_hooks.hook.refunds.matched"), 1);
    let status = setup.runtime.status();
    assert_eq!(status["events"]["payments"], 1);
    assert_eq!(status["events"]["audit"], 0);
    assert_eq!(status["events"]["traffic"], 0);
    assert_eq!(status["emissions"]["accepted"], 1);
    assert_eq!(status["emissions"]["dropped"]["unknown_source"], 0);
}

#[test]
fn two_events_of_two_sources_in_one_request() {
    let setup = setup(json!({"publish": publish(), "hooks": [
        webhook("payments", "payments", None),
        webhook("audit", "audit", None)
    ]}));
    observe(
        &setup,
        json!({"payments.charge-failed": {"order_id": "7", "reason": "card declined"},
               "audit.access": {"user": "ana"}}),
        1_000,
    );
    let paths: Vec<String> = sent(&setup, 1_100)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(paths, ["/audit", "/payments"], "in key order");
}

#[test]
fn with_request_adds_the_request_s_traffic_fields() {
    let setup = setup(json!({"publish": publish(), "hooks": [{
        "name": "audit", "source": "audit", "event": "access",
        "filter": {"request.path": {"prefix": "/refunds"}, "user": "ana"},
        "handler": "webhook", "config": {"url": "http://receiver:9000/audit"}
    }]}));
    observe(&setup, json!({"audit.access": {"user": "ana"}}), 1_000);
    observe(&setup, json!({"audit.access": {"user": "bo"}}), 1_000);
    let sent = sent(&setup, 1_100);
    assert_eq!(
        sent.len(),
        1,
        "the filter reads the emitter's data and the request's"
    );
    let body = &sent[0].1;
    assert_eq!(body["user"], "ana");
    assert_eq!(body["request"]["method"], "POST");
    assert_eq!(body["request"]["path"], "/refunds");
    assert_eq!(body["request"]["headers"]["authorization"], "[redacted]");
    assert_eq!(body["response"]["status"], 201);
    assert_eq!(
        (body["source"].as_str(), body["event"].as_str()),
        (Some("audit"), Some("access"))
    );
    // Only the three sections: not the traffic event's other fields.
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["event", "request", "response", "source", "user"]);
    // A key the emitter gave is its own.
    let setup2 =
        self::setup(json!({"publish": publish(), "hooks": [webhook("audit", "audit", None)]}));
    observe(
        &setup2,
        json!({"audit.access": {"user": "ana", "request": "mine"}}),
        1_000,
    );
    let body = &self::sent(&setup2, 1_100)[0].1;
    assert_eq!(
        (&body["request"], &body["response"]["status"]),
        (&json!("mine"), &json!(201))
    );
    // Without with_request, the data is the emitter's alone.
    let setup3 =
        self::setup(json!({"publish": publish(), "hooks": [webhook("p", "payments", None)]}));
    observe(
        &setup3,
        json!({"payments.charge-failed": {"order_id": "7"}}),
        1_000,
    );
    assert_eq!(
        self::sent(&setup3, 1_100)[0].1,
        json!({"order_id": "7", "source": "payments", "event": "charge-failed"})
    );
}

#[test]
fn templates_read_published_events() {
    let setup = setup(json!({"publish": publish(), "hooks": [{
        "source": "payments", "event": "refund-issued", "filter": {"amount": {"gte": 100}},
        "handler": "webhook-custom",
        "config": {"url": "http://receiver:9000/slack", "method": "POST",
                   "body": "{\"text\": \"{{ source }}: refund of {{ amount }} {{ currency }} on order {{ order_id }}\"}"}
    }]}));
    observe(
        &setup,
        json!({"payments.refund-issued": {"order_id": "41", "amount": 50, "currency": "EUR"}}),
        1_000,
    );
    observe(
        &setup,
        json!({"payments.refund-issued": {"order_id": "42", "amount": 300, "currency": "EUR"}}),
        1_000,
    );
    assert_eq!(
        sent(&setup, 1_100),
        [(
            "/slack".to_string(),
            json!({"text": "payments: refund of 300 EUR on order 42"})
        )]
    );
}

#[test]
fn on_change_and_snooze_go_by_the_unique_fields() {
    let mut hook = webhook("refunds", "payments", Some("refund-issued"));
    hook["on_change"] = json!(true);
    let setup = setup(json!({"publish": publish(), "hooks": [hook.clone()]}));
    // Same order (the unique field), another amount: not a change.
    for (order, amount) in [("42", 300), ("42", 301), ("43", 301), ("42", 302)] {
        observe(
            &setup,
            json!({"payments.refund-issued": {"order_id": order, "amount": amount}}),
            1_000,
        );
    }
    let amounts: Vec<Value> = sent(&setup, 1_100)
        .into_iter()
        .map(|(_, body)| body["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(300), json!(301), json!(302)]);
    // snooze with on_change: each order gets its own window.
    hook["snooze"] = json!(60);
    let setup = self::setup(json!({"publish": publish(), "hooks": [hook]}));
    for (at_s, order, amount) in [(0, "42", 1), (10, "42", 2), (10, "43", 3), (70, "42", 4)] {
        observe(
            &setup,
            json!({"payments.refund-issued": {"order_id": order, "amount": amount}}),
            at_s * 1_000,
        );
    }
    let amounts: Vec<Value> = self::sent(&setup, 80_000)
        .into_iter()
        .map(|(_, body)| body["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(1), json!(3), json!(4)]);
}

#[test]
fn drops_are_counted_by_reason_and_logged_at_most_once_per_interval() {
    let setup = setup(json!({"publish": publish(), "hooks": [webhook("p", "payments", None)]}));
    // Every reason once: the runtime's own two, and each of the decoder's.
    let every = Emitted {
        emissions: vec![
            Emission {
                source: "orders".into(),
                event: "placed".into(),
                data: Map::new(),
            },
            Emission {
                source: "payments".into(),
                event: "refunded".into(),
                data: Map::new(),
            },
        ],
        rejected: Reason::ALL
            .iter()
            .map(|reason| Rejected {
                key: format!("payments.{reason}"),
                reason: *reason,
            })
            .collect(),
    };
    let clock = ManualClock::at_ms(1_000);
    setup
        .runtime
        .observe_emitted(&request(), &|_| {}, Ok(every.clone()), &clock);
    let counters = setup.runtime.counters();
    assert_eq!(counters.emissions_dropped, [1; Dropped::COUNT]);
    assert_eq!(counters.emissions_accepted, 0);
    assert!(counters.emitted.iter().all(|count| *count == 0));
    for dropped in Dropped::ALL {
        let name = format!("event_hooks.emissions.dropped.{}", dropped.as_str());
        assert_eq!(setup.metrics.0.value(&name), 1, "{name}");
        assert_eq!(
            setup.runtime.status()["emissions"]["dropped"][dropped.as_str()],
            1
        );
    }
    let lines = setup.log.text();
    assert_eq!(lines.lines().count(), Dropped::COUNT, "{lines}");
    assert!(
        lines.contains("emitted event \"orders.placed\" dropped: unknown_source"),
        "{lines}"
    );
    assert!(
        lines.contains("emitted event \"payments.refunded\" dropped: unknown_event"),
        "{lines}"
    );
    assert!(
        lines.contains("emitted event \"payments.too_large\" dropped: too_large"),
        "{lines}"
    );
    // The same again within the interval: counted, not logged.
    setup.runtime.observe_emitted(
        &request(),
        &|_| {},
        Ok(every.clone()),
        &ManualClock::at_ms(5_000),
    );
    setup.runtime.observe_emitted(
        &request(),
        &|_| {},
        Err(Reason::Malformed),
        &ManualClock::at_ms(6_000),
    );
    let counters = setup.runtime.counters();
    assert_eq!(
        counters.emissions_dropped[Dropped::Decoder(Reason::Malformed).slot()],
        3
    );
    assert_eq!(counters.emissions_dropped[Dropped::UnknownSource.slot()], 2);
    assert_eq!(setup.log.text().lines().count(), Dropped::COUNT);
    assert!(sent(&setup, 9_000).is_empty());
    assert_eq!(
        setup.log.text().lines().count(),
        Dropped::COUNT,
        "no summary before the interval"
    );
    // Once the interval has passed, the held-back lines are summarized.
    assert!(sent(&setup, 1_000 + DROP_LOG_INTERVAL_MS).is_empty());
    let lines = setup.log.text();
    assert!(
        lines.contains("emitted events dropped (malformed): 2 more since the last line"),
        "{lines}"
    );
    assert!(
        lines.contains("emitted events dropped (unknown_source): 1 more since the last line"),
        "{lines}"
    );
    // And a new drop after the interval is logged again.
    let before = setup.log.text().lines().count();
    observe(&setup, json!({"nope.x": {}}), 30_000);
    assert_eq!(setup.log.text().lines().count(), before + 1);
}

#[test]
fn what_the_decoder_refuses_is_dropped_and_the_rest_goes_through() {
    let setup = setup(json!({"publish": publish(), "hooks": [webhook("p", "payments", None)]}));
    observe(
        &setup,
        json!({
            "payments.refund-issued": 7,
            "payments.charge-failed": {"big": "x".repeat(emitted::MAX_DATA_BYTES)},
            "nodot": {},
            "traffic.request": {"a": 1},
            "payments": {"order_id": "1"},
            "audit.access": "{\"user\": \"ana\"}"
        }),
        1_000,
    );
    let counters = setup.runtime.counters();
    let count = |dropped: Dropped| counters.emissions_dropped[dropped.slot()];
    assert_eq!(count(Dropped::Decoder(Reason::NotObject)), 1);
    assert_eq!(count(Dropped::Decoder(Reason::TooLarge)), 1);
    assert_eq!(count(Dropped::Decoder(Reason::BadKey)), 2);
    assert_eq!(
        count(Dropped::UnknownSource),
        1,
        "a built-in source is not emitted to"
    );
    assert_eq!(
        counters.emissions_accepted, 1,
        "audit.access, a string holding JSON"
    );
    assert!(sent(&setup, 1_100).is_empty(), "no hook on audit");
}

#[test]
fn nothing_emitted_costs_nothing() {
    let setup = setup(json!({"publish": publish(), "hooks": [webhook("p", "payments", None)]}));
    setup.runtime.observe_emitted(
        &request(),
        &|_| panic!("no property read"),
        Ok(Emitted::default()),
        &ManualClock::at_ms(1),
    );
    assert_eq!(setup.runtime.counters().emissions_accepted, 0);
    assert_eq!(setup.log.text(), "");
    // Nor does an emission to a source without with_request read the request.
    setup.runtime.observe_emitted(
        &request(),
        &|_| panic!("no property read"),
        emitted(json!({"payments.charge-failed": {}})),
        &ManualClock::at_ms(1),
    );
    assert_eq!(setup.runtime.counters().emissions_accepted, 1);
}

#[test]
fn the_adapter_reads_emissions_only_for_hooks_on_published_sources() {
    let needs = |config: Value| setup(config).runtime.needs();
    let traffic = webhook("t", "traffic", None);
    assert!(!needs(json!({"hooks": [traffic.clone()]})).emitted);
    assert!(
        !needs(json!({"publish": publish(), "hooks": [traffic.clone()]})).emitted,
        "published, unused"
    );
    let mut disabled = webhook("p", "payments", None);
    disabled["enabled"] = json!(false);
    assert!(!needs(json!({"publish": publish(), "hooks": [disabled]})).emitted);
    let plain = needs(json!({"publish": publish(), "hooks": [webhook("p", "payments", None)]}));
    assert_eq!(
        plain,
        Needs::default().with_emitted(),
        "the emitter's data only: nothing of the request"
    );
    // with_request: every traffic field, read once an event is built.
    let enriched = needs(json!({"publish": publish(), "hooks": [webhook("a", "audit", None)]}));
    assert!(enriched.emitted && enriched.request_headers.any() && enriched.response_headers.any());
    assert_eq!((enriched.first, enriched.then), (Props::NONE, Props::ALL));
    // A source another wasm filter emits: Envoy's filter state instead of dynamic metadata.
    let mut published = publish();
    published["payments"]["channel"] = json!("filter_state");
    let state =
        needs(json!({"publish": published.clone(), "hooks": [webhook("p", "payments", None)]}));
    assert_eq!(state, Needs::default().with_emitted_filter_state());
    let both = needs(
        json!({"publish": published, "hooks": [webhook("p", "payments", None), webhook("a", "audit", None)]}),
    );
    assert!(
        both.emitted && both.emitted_filter_state,
        "one channel per source"
    );
    let setup = setup(json!({"publish": publish(), "hooks": [webhook("p", "payments", None)]}));
    assert!(setup.runtime.observes_requests());
}

#[test]
fn metrics_exist_from_the_start_for_what_is_published() {
    let setup = setup(json!({"publish": publish(), "hooks": []}));
    let names = setup.metrics.0.names();
    for name in [
        "event_hooks.events.payments",
        "event_hooks.events.audit",
        "event_hooks.events.traffic",
        "event_hooks.emissions.accepted",
        "event_hooks.emissions.dropped.unknown_source",
        "event_hooks.emissions.dropped.unknown_event",
        "event_hooks.emissions.dropped.malformed",
        "event_hooks.emissions.dropped.not_object",
        "event_hooks.emissions.dropped.bad_key",
        "event_hooks.emissions.dropped.too_large",
        "event_hooks.emissions.dropped.too_deep",
        "event_hooks.emissions.dropped.bad_number",
        "event_hooks.emissions.dropped.too_many",
    ] {
        assert!(
            names.iter().any(|known| known == name),
            "{name} in {names:?}"
        );
    }
    // Nothing published: no emission metrics.
    let plain = self::setup(json!({"hooks": []}));
    assert!(
        !plain
            .metrics
            .0
            .names()
            .iter()
            .any(|name| name.contains("emissions"))
    );
}

#[test]
fn one_request_builds_its_traffic_event_once_for_its_sources_and_its_emissions() {
    let setup = setup(json!({"publish": publish(), "hooks": [
        webhook("all", "traffic", None),
        webhook("audit", "audit", Some("access"))
    ]}));
    assert!(
        !setup.runtime.needs().then.is_empty(),
        "the traffic event reads properties once it is built"
    );
    let reads = std::cell::Cell::new(0);
    let rest = |_: &mut Later| reads.set(reads.get() + 1);
    setup.runtime.observe_request(
        &request(),
        &rest,
        vec![emitted(json!({"audit.access": {"user": "ana"}}))],
        &ManualClock::at_ms(1_000),
    );
    assert_eq!(reads.get(), 1, "the host's properties are read once");
    let sent = sent(&setup, 1_100);
    let paths: Vec<&str> = sent.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["/all", "/audit"]);
    assert_eq!(sent[0].1["request"], sent[1].1["request"]);
}
