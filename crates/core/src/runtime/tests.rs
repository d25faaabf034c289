use std::rc::Rc;

use super::*;
use crate::config;
use crate::delivery::{Attempt, SendError};
use crate::log::Lines;
use crate::ports::ManualClock;
use crate::shared::Memory;
use crate::source::crud::Body;
use crate::source::traffic::Properties;
use serde_json::{Value, json};

#[derive(Default)]
struct Recorder {
    sent: Vec<Attempt>,
}

impl Transport for Recorder {
    fn send(&mut self, request: &Attempt, _timeout_ms: u64) -> Result<u32, SendError> {
        self.sent.push(request.clone());
        Ok(self.sent.len() as u32)
    }
}

impl Recorder {
    fn bodies(&self) -> Vec<Value> {
        self.sent
            .iter()
            .map(|request| serde_json::from_slice(&request.body).unwrap())
            .collect()
    }
}

fn runtime_with(config: Value, store: Box<dyn Shared>, log: Lines) -> Runtime {
    Runtime::new(
        config::parse(config.to_string().as_bytes()).unwrap(),
        42,
        store,
        Box::new(crate::metrics::Null),
        Box::new(log),
    )
}

fn runtime(config: Value) -> Runtime {
    runtime_logged(config, Lines::default())
}

fn runtime_logged(config: Value, log: Lines) -> Runtime {
    runtime_with(config, Box::new(Memory::default()), log)
}

fn request(method: &str, path: &str, status: u64) -> Capture {
    Capture {
        request_headers: Some(vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
            (":authority".into(), "admin.internal".into()),
            ("authorization".into(), "Bearer secret-token".into()),
        ]),
        properties: Properties {
            status: Some(status),
            ..Properties::default()
        },
        ..Capture::default()
    }
}

fn hook(source: &str, event: Option<&str>, path: &str) -> Value {
    let mut hook = json!({"source": source, "handler": "webhook",
                          "config": {"url": format!("http://receiver:9000{path}"), "secret": "hunter2"}});
    if let Some(event) = event {
        hook["event"] = json!(event);
    }
    hook
}

#[test]
fn a_5xx_on_orders_is_delivered_signed_and_a_200_is_not() {
    let log = Lines::default();
    let runtime = runtime_logged(
        json!({"hooks": [{
            "name": "orders-5xx", "source": "traffic", "event": "request",
            "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
            "handler": "webhook",
            "config": {"url": "http://receiver:9000/hooks", "secret": "hunter2"}
        }]}),
        log.clone(),
    );
    let mut transport = Recorder::default();
    runtime.observe(
        &request("GET", "/orders/1", 200),
        &ManualClock::at_ns(1_000_000_000),
    );
    runtime.observe(
        &request("GET", "/orders/2", 503),
        &ManualClock::at_ns(1_000_000_000),
    );
    runtime.flush(&ManualClock::at_ms(2_000), &mut transport);
    assert_eq!(transport.sent.len(), 1);
    let sent = &transport.sent[0];
    let body = &transport.bodies()[0];
    assert_eq!(body["response"]["status"], 503);
    assert_eq!(body["request"]["path"], "/orders/2");
    assert_eq!(body["request"]["headers"]["authorization"], "[redacted]");
    assert_eq!(
        (body["source"].as_str(), body["event"].as_str()),
        (Some("traffic"), Some("request"))
    );
    let signature = sent
        .headers
        .iter()
        .find(|(name, _)| name == "x-kong-signature")
        .map(|(_, value)| value.clone())
        .unwrap();
    // Computed here with the hmac crate directly, over the exact bytes sent.
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"hunter2").unwrap();
    mac.update(&sent.body);
    let expected = crate::signing::hex(&mac.finalize().into_bytes());
    assert_eq!(signature, format!("sha1={expected}"));
    assert!(!runtime.is_idle());
    assert!(runtime.owns(1));
    runtime.complete(
        1,
        Response::Status(200),
        b"",
        None,
        &ManualClock::at_ms(2_100),
    );
    assert!(runtime.is_idle());
    assert_eq!(runtime.counters().emitted[0], 2);
    assert!(!log.text().contains("secret-token"));
}

#[test]
fn an_admin_api_create_gives_crud_and_dao_crud_events() {
    let runtime = runtime(json!({
        "hooks": [
            hook("crud", Some("consumers"), "/schema"),
            hook("crud", Some("consumers:create"), "/create"),
            hook("dao:crud", Some("create"), "/dao"),
            hook("crud", Some("consumers:delete"), "/deleted")
        ],
        "crud": {"match": {"request.host": "admin.internal"}}
    }));
    let mut transport = Recorder::default();
    let mut post = request("POST", "/consumers", 201);
    // The host reads the body only for a request that may be an entity write.
    assert_eq!(runtime.crud_body_limit(&post), Some(65_536));
    assert_eq!(
        runtime.crud_body_limit(&request("GET", "/consumers", 200)),
        None
    );
    assert_eq!(
        runtime.crud_body_limit(&request("POST", "/consumers", 409)),
        None
    );
    post.response_body = Body::Complete(br#"{"id": "c1", "username": "bob"}"#.to_vec());
    runtime.observe(&post, &ManualClock::at_ns(0));
    runtime.flush(&ManualClock::at_ms(0), &mut transport);
    let paths: Vec<&str> = transport
        .sent
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .find(|(n, _)| n == ":path")
                .unwrap()
                .1
                .as_str()
        })
        .collect();
    assert_eq!(paths, vec!["/schema", "/create", "/dao"]);
    for body in transport.bodies() {
        assert_eq!(body["entity"]["username"], "bob");
        assert_eq!(body["operation"], "create");
        assert_eq!(body["schema"], "consumers");
        assert!(body["old_entity"].is_null());
    }
    assert_eq!(transport.bodies()[1]["event"], "consumers:create");
    assert_eq!(transport.bodies()[2]["source"], "dao:crud");
    // Another host's writes are not the admin API's.
    let mut elsewhere = request("POST", "/consumers", 201);
    elsewhere.request_headers.as_mut().unwrap()[2].1 = "shop.example".into();
    assert_eq!(runtime.crud_body_limit(&elsewhere), None);
    runtime.observe(&elsewhere, &ManualClock::at_ns(0));
    runtime.flush(&ManualClock::at_ms(0), &mut transport);
    assert_eq!(transport.sent.len(), 3);
}

#[test]
fn unusable_entity_bodies_are_counted() {
    let runtime = runtime(json!({
        "hooks": [hook("dao:crud", None, "/dao")],
        "crud": {"match": {"request.host": "admin.internal"}}
    }));
    let mut too_large = request("PATCH", "/consumers/bob", 200);
    too_large.response_body = Body::TooLarge;
    runtime.observe(&too_large, &ManualClock::at_ns(0));
    let mut html = request("PATCH", "/consumers/bob", 200);
    html.response_body = Body::Complete(b"<html>".to_vec());
    runtime.observe(&html, &ManualClock::at_ns(0));
    let counters = runtime.counters();
    assert_eq!(
        (counters.crud_body_too_large, counters.crud_body_not_json),
        (1, 1)
    );
    assert_eq!(counters.emitted[2], 2);
}

#[test]
fn a_429_gives_a_rate_limit_event() {
    let runtime = runtime(json!({"hooks": [hook("rate-limiting-advanced", None, "/rl")]}));
    let mut transport = Recorder::default();
    let mut limited = request("GET", "/orders", 429);
    limited
        .request_headers
        .as_mut()
        .unwrap()
        .push(("x-consumer-username".into(), "bob".into()));
    limited.response_headers = Some(vec![("x-ratelimit-limit".into(), "5, 5;w=60".into())]);
    runtime.observe(&limited, &ManualClock::at_ns(0));
    runtime.observe(&request("GET", "/orders", 200), &ManualClock::at_ns(0));
    runtime.flush(&ManualClock::at_ms(0), &mut transport);
    let bodies = transport.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["event"], "rate-limit-exceeded");
    assert_eq!(bodies[0]["consumer"], "bob");
    assert_eq!(
        (bodies[0]["limit"].clone(), bodies[0]["window"].clone()),
        (json!(5), json!(60))
    );
}

#[test]
fn two_workers_sharing_a_store_send_one_health_event_per_transition() {
    let store = Rc::new(Memory::default());
    let config = json!({"hooks": [hook("balancer", Some("health"), "/health")]});
    let workers = [
        runtime_with(
            config.clone(),
            Box::new(Rc::clone(&store)),
            Lines::default(),
        ),
        runtime_with(config, Box::new(Rc::clone(&store)), Lines::default()),
    ];
    let upstream = |status: u64| {
        let mut capture = request("GET", "/orders", status);
        capture.properties.upstream_address = Some("10.0.0.1:8080".into());
        capture.properties.cluster = Some("orders".into());
        capture
    };
    let statuses = [200, 503, 503, 503, 503, 503, 200, 200, 200, 200];
    for (n, status) in statuses.iter().enumerate() {
        workers[n % 2].observe(&upstream(*status), &ManualClock::at_ns(0));
    }
    let mut sent = Vec::new();
    for worker in &workers {
        let mut transport = Recorder::default();
        worker.flush(&ManualClock::at_ms(0), &mut transport);
        sent.extend(transport.bodies());
    }
    let health: Vec<&str> = sent.iter().map(|b| b["health"].as_str().unwrap()).collect();
    assert_eq!(health.len(), 2);
    assert!(health.contains(&"unhealthy") && health.contains(&"healthy"));
    assert_eq!(sent[0]["upstream_id"], "orders");
    assert_eq!(sent[0]["port"], 8080);
}

#[test]
fn snooze_is_shared_by_workers() {
    let store = Rc::new(Memory::default());
    let mut snoozed = hook("traffic", None, "/t");
    snoozed["snooze"] = json!(60);
    snoozed["name"] = json!("snoozed");
    let config = json!({"hooks": [snoozed]});
    let workers = [
        runtime_with(
            config.clone(),
            Box::new(Rc::clone(&store)),
            Lines::default(),
        ),
        runtime_with(config, Box::new(Rc::clone(&store)), Lines::default()),
    ];
    workers[0].observe(
        &request("GET", "/a", 500),
        &ManualClock::at_ns(1_000_000_000),
    );
    workers[1].observe(
        &request("GET", "/b", 500),
        &ManualClock::at_ns(2_000_000_000),
    );
    let mut count = 0;
    for worker in &workers {
        let mut transport = Recorder::default();
        worker.flush(&ManualClock::at_ms(0), &mut transport);
        count += transport.sent.len();
    }
    assert_eq!(count, 1);
}

#[cfg(feature = "lambda")]
#[test]
fn the_status_counts_lambda_errors() {
    let log = Lines::default();
    let runtime = runtime_logged(
        json!({"hooks": [{"name": "loops", "source": "traffic", "handler": "lambda",
        "config": {"functions": ["loop {}"], "max_operations": 1000}}]}),
        log.clone(),
    );
    runtime.observe(&request("GET", "/a", 200), &ManualClock::at_ns(0));
    runtime.observe(&request("GET", "/b", 200), &ManualClock::at_ns(0));
    let status = runtime.status();
    assert_eq!(status["hooks"]["loops"]["errors"], 2);
    assert_eq!(status["hooks"]["loops"]["accepted"], 0);
    assert!(
        log.text().contains("operation budget exceeded"),
        "{}",
        log.text()
    );
}

#[test]
fn dead_letters_reach_the_dead_letter_hook_once() {
    let runtime = runtime(json!({
        "hooks": [
            {"name": "orders", "source": "traffic", "handler": "webhook",
             "config": {"url": "http://receiver:9000/orders", "retry": {"max_attempts": 1}}},
            {"name": "dead", "source": "event_hooks", "event": "dead_letter", "handler": "webhook",
             "config": {"url": "http://receiver:9000/dead"}}
        ],
        "delivery": {"dead_letter": "dead"}
    }));
    let mut transport = Recorder::default();
    runtime.observe(&request("GET", "/orders/1", 500), &ManualClock::at_ns(0));
    runtime.flush(&ManualClock::at_ms(0), &mut transport);
    assert_eq!(transport.sent.len(), 1);
    // The only attempt fails: the dead letter goes to hook `dead`.
    runtime.complete(1, Response::Status(503), b"", None, &ManualClock::at_ms(0));
    runtime.flush(&ManualClock::at_ms(0), &mut transport);
    let bodies = transport.bodies();
    assert_eq!(bodies.len(), 2);
    let letter = &bodies[1];
    // Kong's shape adds source and event; the summary's own `event` (the event given up) stays.
    assert_eq!(letter["source"], "event_hooks");
    assert_eq!(letter["hook"], "orders");
    assert_eq!(letter["attempts"], 1);
    assert_eq!(letter["last_status"], 503);
    assert_eq!(letter["last_error"], "answered 503");
    assert_eq!(
        letter["webhook_id"].as_str(),
        transport.sent[0]
            .headers
            .iter()
            .find(|(n, _)| n == "webhook-id")
            .map(|(_, v)| v.as_str())
    );
    assert_eq!(letter["event"]["request"]["path"], "/orders/1");
    // The dead letter is an event of source `event_hooks`, counted like any other.
    let events = &runtime.status()["events"];
    assert_eq!(events["traffic"], 1);
    assert_eq!(events["event_hooks"], 1);
    // The dead letter's own failure makes no other.
    runtime.complete(2, Response::Status(500), b"", None, &ManualClock::at_ms(0));
    runtime.flush(&ManualClock::at_ms(60_000_000), &mut transport);
    assert!(transport.sent.len() <= 3);
    assert!(
        transport
            .bodies()
            .iter()
            .skip(2)
            .all(|b| b["source"] == "event_hooks")
    );
}
