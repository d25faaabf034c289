//! The real filter under the rules of the real Kong hosts (ngx_wasm_module at each Kong pin),
//! as they were observed (../shared/reference/proxy-wasm-hosts.md, "Kong, observed on the real
//! host"): sending from ticks only, one call in flight per root context, header names in the
//! sender's case, `request.host` from the Host header, what Kong 3.4 to 3.6 cannot do, admin
//! status lines; and a soak of 10,000 requests through a receiver that is fast, slow, down and
//! back. Envoy runs the same checks where they apply, so nothing here is Kong-only by accident.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{assert_clean, body, filter, kong, start, start_with, status};

use std::collections::{BTreeMap, BTreeSet};

use event_hooks_testhost::state::{DispatchOutcome, Options, Step};
use event_hooks_testhost::{Outcome, Proxy, Reply, Request, Rules};
use serde_json::{Value, json};

/// Every Kong line's pin, and Envoy.
const HOSTS: &[&str] = &[
    "envoy", "3.4.2", "3.5.0", "3.6.1", "3.7.1", "3.8.1", "3.9.1", "3.10.0",
];

fn rules(name: &str) -> Rules {
    if name == "envoy" {
        Rules::Envoy
    } else {
        kong(name)
    }
}

/// Two traffic hooks on 5xx (Kong's body, and Standard Webhooks), posting to the receiver.
fn two_hooks(delivery: Value) -> Value {
    json!({
        "hooks": [
            {"name": "errors", "source": "traffic", "filter": {"response.status": {"gte": 500}},
             "handler": "webhook", "config": {"url": "http://receiver/errors", "secret": "hunter2"}},
            {"name": "audit", "source": "traffic", "filter": {"response.status": {"gte": 500}},
             "handler": "webhook", "config": {"url": "http://receiver/audit", "secret": "whsec_aHVudGVyMg==",
                                               "signature": "standard-webhooks"}}
        ],
        "delivery": delivery,
        "admin": {"token": "t0ken"}
    })
}

/// Most root-context calls ever in flight at once, when the receiver answers every call
/// `delay_ms` after it was made.
fn most_root_calls_in_flight(proxy: &Proxy, delay_ms: u64) -> usize {
    let state = proxy.state();
    let root = state.root_context;
    let mut events: Vec<(u64, i32)> = Vec::new();
    for dispatch in state.dispatches.iter().filter(|d| d.context == root) {
        if let DispatchOutcome::Accepted(_) = dispatch.outcome {
            events.push((dispatch.at_ns, 1));
            events.push((dispatch.at_ns + delay_ms * 1_000_000, -1));
        }
    }
    // At one instant, answers come before the next dispatch (the host runs them first).
    events.sort_by_key(|(at, delta)| (*at, *delta));
    let mut now = 0i64;
    let mut most = 0i64;
    for (_, delta) in events {
        now += i64::from(delta);
        most = most.max(now);
    }
    most as usize
}

#[test]
fn kong_sends_from_ticks_only_one_call_at_a_time() {
    for name in HOSTS {
        for max_in_flight in [1, 64] {
            let rules = rules(name);
            let mut proxy = start(rules, two_hooks(json!({"max_in_flight": max_in_flight})));
            // Answers come within a tick: one call per tick never overlaps the next.
            proxy.receiver_delay(5);
            // Deliveries queue up between ticks: the case that crashed the real worker.
            for _ in 0..20 {
                proxy.request(&Request::get("/orders").status(503));
            }
            proxy.advance_until(60_000, |proxy| proxy.received().len() == 40);
            assert_eq!(proxy.received().len(), 40, "{rules}\n{}", proxy.log_text());
            assert_clean(&proxy);
            let steps: BTreeSet<String> = proxy
                .state()
                .dispatches
                .iter()
                .map(|d| format!("{:?}", d.step))
                .collect();
            if rules.is_kong() {
                assert_eq!(steps, BTreeSet::from(["Tick".to_string()]), "{rules}");
                assert_eq!(most_root_calls_in_flight(&proxy, 5), 1, "{rules}");
            } else {
                assert!(
                    steps.contains("CallResponse"),
                    "Envoy sends from answers too"
                );
                assert_eq!(
                    most_root_calls_in_flight(&proxy, 5) > 1,
                    max_in_flight > 1,
                    "Envoy follows max_in_flight ({max_in_flight})"
                );
            }
        }
    }
}

/// Deliveries a second one root context makes on Kong to a receiver that answers at once.
fn kong_delivery_rate(version: &str) -> f64 {
    let mut proxy = start(kong(version), two_hooks(json!({"queue_size": 10_000})));
    // 500 events (1,000 deliveries) at once, then time the queue draining.
    for _ in 0..500 {
        let mut request = Request::get("/orders").status(500);
        request.upstream.latency_ms = 0;
        proxy.request(&request);
    }
    let from = proxy.elapsed_ms();
    assert!(proxy.advance_until(600_000, |proxy| proxy.received().len() == 1_000));
    let took_ms = proxy.elapsed_ms() - from;
    assert_clean(&proxy);
    1_000.0 * 1_000.0 / took_ms as f64
}

#[test]
fn kong_delivers_at_least_50_a_second_per_root_context() {
    for version in ["3.4.2", "3.6.1", "3.7.1", "3.10.0"] {
        let rate = kong_delivery_rate(version);
        println!("Kong {version}: {rate:.1} deliveries/s per root context");
        assert!(rate >= 50.0, "Kong {version}: {rate:.1} deliveries/s");
    }
}

#[test]
fn header_names_are_case_insensitive_everywhere() {
    let config = json!({
        "hooks": [{"name": "orders", "source": "traffic", "filter": {"response.status": {"gte": 500}},
                   "handler": "webhook", "config": {"url": "http://receiver/orders",
                                                    "retry": {"max_attempts": 3, "backoff_ms": 100}}}],
        "admin": {"token": "t0ken"}
    });
    for name in HOSTS {
        let rules = rules(name);
        let mut proxy = start(rules, config.clone());
        // Authorization, as clients write it.
        let outcome = proxy
            .request(&Request::get("/event-hooks/status").header("Authorization", "Bearer t0ken"));
        assert_eq!(outcome.status, 200, "{rules}: {:?}", outcome.local_response);
        let outcome = proxy
            .request(&Request::get("/event-hooks/status").header("Authorization", "Bearer wrong"));
        assert_eq!(outcome.status, 401, "{rules}");
        // X-Event-Data is the event the test sends.
        let outcome = proxy.request(
            &Request::get("/event-hooks/orders/test")
                .method("POST")
                .header("Authorization", "Bearer t0ken")
                .header("X-Event-Data", r#"{"marker": "from-the-header"}"#),
        );
        assert_eq!(outcome.status, 200, "{rules}: {:?}", outcome.local_response);
        let sent = proxy.received().last().unwrap();
        assert_eq!(body(sent)["marker"], "from-the-header", "{rules}");
        // A body announced by Content-Length cannot be read: 400, nothing sent.
        let before = proxy.received().len();
        let outcome = proxy.request(
            &Request::get("/event-hooks/orders/test")
                .method("POST")
                .header("Authorization", "Bearer t0ken")
                .header("Content-Length", "2")
                .body("{}"),
        );
        assert_eq!(outcome.status, 400, "{rules}: {:?}", outcome.local_response);
        assert_eq!(proxy.received().len(), before, "{rules}");
        // Retry-After on the receiver's 503 sets when the retry goes.
        proxy.reply_with([Reply::Status {
            status: 503,
            headers: vec![("Retry-After".to_string(), "7".to_string())],
            body: String::new(),
        }]);
        proxy.request(&Request::get("/orders").status(502));
        assert!(proxy.advance_until(60_000, |proxy| proxy.received().len() == before + 2));
        let first = &proxy.received()[before];
        let retry = &proxy.received()[before + 1];
        assert_eq!(first.header("webhook-id"), retry.header("webhook-id"));
        let waited = retry.at_ms - first.at_ms;
        assert!(
            (7_000..7_200).contains(&waited),
            "{rules}: the retry waited {waited} ms, not Retry-After's 7 s"
        );
        assert_clean(&proxy);
    }
}

#[test]
fn request_host_is_the_host_header() {
    let config = json!({"hooks": [{"name": "all", "source": "traffic", "handler": "webhook",
                                   "config": {"url": "http://receiver/all"}}]});
    for name in HOSTS {
        let rules = rules(name);
        let mut proxy = start(rules, config.clone());
        let mut request = Request::get("/orders/7").status(200);
        request.authority = "127.0.0.1:18080".to_string();
        proxy.request(&request);
        assert!(proxy.advance_until(1_000, |proxy| proxy.received().len() == 1));
        let event = body(&proxy.received()[0]);
        assert_eq!(
            event["request"]["host"], "127.0.0.1:18080",
            "{rules}: {event}"
        );
        assert_clean(&proxy);
    }
}

#[test]
fn kong_3_4_and_3_5_never_read_an_answer_body() {
    let config = json!({
        "hooks": [{"name": "orders", "source": "traffic", "filter": {"response.status": {"gte": 500}},
                   "handler": "webhook", "config": {"url": "http://receiver/orders", "retry": {"max_attempts": 1}}}],
        "admin": {"token": "t0ken"}
    });
    for name in HOSTS {
        let rules = rules(name);
        let mut proxy = start(rules, config.clone());
        let answer = |status| Reply::Status {
            status,
            headers: vec![("Content-Type".to_string(), "text/plain".to_string())],
            body: "the receiver's own words".to_string(),
        };
        // A delivery the receiver refuses with a body: its log line quotes the body where it can.
        proxy.reply_with([answer(400)]);
        proxy.request(&Request::get("/orders").status(500));
        proxy.advance(1_000);
        // The admin `test`, which shows the receiver's answer.
        proxy.reply_with([answer(200)]);
        let outcome = proxy.request(
            &Request::get("/event-hooks/orders/test")
                .method("POST")
                .header("Authorization", "Bearer t0ken"),
        );
        assert_eq!(outcome.status, 200, "{rules}: {}", proxy.log_text());
        let shown: Value = serde_json::from_slice(&outcome.local_response.unwrap().body).unwrap();
        let log = proxy.log_text();
        let old = matches!(rules.kong_version(), Some(v) if v.minor <= 5);
        if old {
            assert!(!log.contains("the receiver's own words"), "{rules}\n{log}");
            assert_eq!(shown["result"]["status"], 200, "{rules}: {shown}");
            assert_eq!(shown["result"]["body"], "", "{rules}: {shown}");
        } else {
            assert!(
                log.contains("answered 400: the receiver's own words"),
                "{rules}\n{log}"
            );
            assert_eq!(
                shown["result"]["body"], "the receiver's own words",
                "{rules}: {shown}"
            );
        }
        assert_clean(&proxy);
    }
}

#[test]
fn kong_3_4_to_3_6_give_no_environment_variables() {
    let config = json!({"hooks": [{"name": "orders", "source": "traffic", "handler": "webhook",
                                   "config": {"url": "http://receiver/orders", "secret_env": "HOOK_SECRET"}}]});
    for name in HOSTS {
        let rules = rules(name);
        let mut options = Options::new(rules);
        options.env = vec![("HOOK_SECRET".to_string(), "hunter2".to_string())];
        let proxy = Proxy::start(filter(), options, config.to_string().as_bytes()).unwrap();
        let without = matches!(rules.kong_version(), Some(v) if v.minor <= 6);
        assert_eq!(proxy.configured, !without, "{rules}\n{}", proxy.log_text());
        if without {
            let log = proxy.log_text();
            assert!(
                log.contains(
                    "hooks[0].config.secret_env: environment variable HOOK_SECRET is not set"
                ) && log.contains("Kong 3.4 to 3.6 give filters no environment variables: there, use secret instead"),
                "{rules}\n{log}"
            );
            assert!(!log.contains("hunter2"));
        }
    }
}

#[test]
fn admin_answers_have_the_standard_reason_phrase() {
    let config = json!({"hooks": [], "admin": {"token": "t0ken"}});
    for name in HOSTS {
        let rules = rules(name);
        let mut proxy = start(rules, config.clone());
        let reason = |outcome: &Outcome| outcome.reason.clone();
        let outcome = proxy.request(&Request::get("/event-hooks/status"));
        assert_eq!(
            (outcome.status, reason(&outcome).as_str()),
            (401, "Unauthorized"),
            "{rules}"
        );
        let outcome = proxy
            .request(&Request::get("/event-hooks/status").header("Authorization", "Bearer t0ken"));
        assert_eq!(
            (outcome.status, reason(&outcome).as_str()),
            (200, "OK"),
            "{rules}"
        );
        let outcome = proxy.request(
            &Request::get("/event-hooks/nothing/here").header("Authorization", "Bearer t0ken"),
        );
        assert_eq!(
            (outcome.status, reason(&outcome).as_str()),
            (404, "Not Found"),
            "{rules}"
        );
        assert_clean(&proxy);
    }
}

/// The soak: 10,000 requests with two hooks on Kong, 2,500 each while the receiver is fast,
/// slow (80 ms an answer: slower than the deliveries come), down (every connection refused)
/// and back. No trap, no leaked slot, every event delivered or accounted for, and one
/// webhook-id per event and hook, kept across retries.
fn soak(version: &str) {
    let rules = kong(version);
    let mut options = Options::new(rules);
    // The real host ran out of connections after about 60 leaked slots with these.
    options.worker_connections = 64;
    let delivery = json!({"queue_size": 2_000, "max_in_flight": 64,
                          "retry": {"max_attempts": 6, "backoff_ms": 200, "max_backoff_ms": 5_000},
                          "breaker": {"failures": 5, "cooldown_ms": 2_000}});
    let mut proxy = start_with(options, two_hooks(delivery));
    let mut sent = 0u32;
    for phase in ["fast", "slow", "down", "back"] {
        match phase {
            "slow" => proxy.receiver_delay(80),
            "down" => {
                proxy.receiver_delay(0);
                proxy.reply_with(std::iter::repeat_n(Reply::Refuse, 1_000_000));
            }
            "back" => proxy.state_mut().plan.replies.clear(),
            _ => {}
        }
        for _ in 0..2_500 {
            sent += 1;
            let mut request = Request::get(&format!("/orders/{sent}"))
                .status(503)
                .header("X-Request-Id", &format!("req-{sent}"));
            // 25 ms apart: two deliveries per request, one per 10 ms tick when all is well.
            request.upstream.latency_ms = 25;
            let outcome = proxy.request(&request);
            assert_eq!(
                outcome.status,
                503,
                "request {sent} ({phase}): {}",
                proxy.log_text()
            );
            assert!(proxy.traps().is_empty(), "{phase}: {:?}", proxy.traps());
        }
    }
    // Drain: everything still queued or waiting for a retry is delivered or given up.
    proxy.advance(120_000);
    assert!(proxy.state().pending.is_empty(), "calls still in flight");
    assert!(proxy.traps().is_empty(), "{:?}", proxy.traps());
    assert_eq!(proxy.leaked_slots(), 0, "leaked slots");
    // The host logs each refused call, as nginx does; nothing else.
    let unexpected: Vec<String> = proxy
        .host_errors()
        .into_iter()
        .filter(|line| {
            !line.contains("[wasm] dispatch failed: tcp socket - Connection reset by peer")
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let refused = proxy.host_errors().len();
    let status = status(&mut proxy);
    let mut delivered = 0;
    for hook in ["errors", "audit"] {
        let stats = &status["hooks"][hook];
        let count = |key: &str| stats[key].as_u64().unwrap();
        assert_eq!(count("accepted"), 10_000, "{hook}: {stats}");
        assert_eq!(count("pending"), 0, "{hook}: {stats}");
        assert_eq!(
            count("accepted"),
            count("delivered") + count("failed") + count("dropped"),
            "{hook}: {stats}"
        );
        assert!(count("delivered") >= 5_000, "{hook}: {stats}");
        delivered += count("delivered");
    }
    // The receiver's side: one webhook-id per (hook, event), one event per webhook-id, and
    // as many ids answered 2xx as deliveries counted.
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut events: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut answered_ok: BTreeSet<String> = BTreeSet::new();
    for call in proxy.received() {
        let id = call.header("webhook-id").unwrap().to_string();
        let event = body(call);
        let request = event["request"]["id"].as_str().unwrap().to_string();
        ids.entry((call.path.clone(), request.clone()))
            .or_default()
            .insert(id.clone());
        events.entry(id.clone()).or_default().insert(request);
        if matches!(
            call.reply,
            Reply::Status {
                status: 200..=299,
                ..
            }
        ) {
            answered_ok.insert(id);
        }
    }
    for (key, set) in &ids {
        assert_eq!(set.len(), 1, "{key:?} had webhook-ids {set:?}");
    }
    for (id, set) in &events {
        assert_eq!(set.len(), 1, "webhook-id {id} carried events {set:?}");
    }
    assert_eq!(answered_ok.len() as u64, delivered);
    let calls = proxy
        .state()
        .dispatches
        .iter()
        .filter(|d| d.step != Step::Tick && d.context == proxy.state().root_context)
        .count();
    assert_eq!(calls, 0, "every delivery was sent from a tick");
    println!(
        "Kong {version} soak: 20,000 deliveries accepted, {delivered} delivered, {} calls answered, {refused} refused, {} virtual s\n{status}",
        proxy.received().len(),
        proxy.elapsed_ms() / 1_000
    );
}

#[test]
fn kong_soak_3_10() {
    soak("3.10.0");
}

#[test]
fn kong_soak_3_4() {
    soak("3.4.2");
}
