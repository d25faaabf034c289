//! Batched delivery under each host's rules: on Kong, one call in flight per root context and
//! only from ticks, batches are what makes throughput possible; every event arrives once,
//! in signed arrays, with no crash and no leaked connection slot.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{assert_clean, body, kong, start, status};

use std::collections::BTreeSet;

use event_hooks_testhost::signature::verify;
use event_hooks_testhost::state::Step;
use event_hooks_testhost::{Proxy, Reply, Request, Rules};
use serde_json::{Value, json};

const SECRET: &str = "whsec_aHVudGVyMg==";

/// One traffic hook on every request, batching with `batch`, signed (Standard Webhooks).
fn every_request(batch: Value) -> Value {
    json!({
        "hooks": [{"name": "log", "source": "traffic", "handler": "webhook",
                   "config": {"url": "http://receiver/log", "secret": SECRET,
                              "signature": "standard-webhooks", "batch": batch}}],
        "delivery": {"queue_size": 10_000},
        "admin": {"token": "t0ken"}
    })
}

/// `count` requests at once, each with its own path `/orders/<n>`.
fn send(proxy: &mut Proxy, from: usize, count: usize) {
    for n in from..from + count {
        let mut request = Request::get(&format!("/orders/{n}")).status(200);
        request.upstream.latency_ms = 0;
        proxy.request(&request);
    }
}

/// The request paths of every event the receiver got, in arrays, each call's signature
/// verified; panics on a call that is not a signed array.
fn delivered_paths(proxy: &Proxy) -> Vec<String> {
    let mut paths = Vec::new();
    for call in proxy.received() {
        verify("standard-webhooks", SECRET, call)
            .unwrap_or_else(|why| panic!("{}: {why}", proxy.rules()));
        assert_eq!(call.header("content-type"), Some("application/json"));
        let Value::Array(events) = body(call) else {
            panic!("{}: not an array: {:?}", proxy.rules(), body(call));
        };
        for event in events {
            paths.push(event["request"]["path"].as_str().unwrap().to_string());
        }
    }
    paths
}

fn events_received(proxy: &Proxy) -> usize {
    proxy
        .received()
        .iter()
        .map(|call| body(call).as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn a_thousand_events_arrive_in_ten_signed_batches_on_every_host() {
    for rules in hosts() {
        let mut proxy = start(rules, every_request(json!({"max_size": 100})));
        send(&mut proxy, 0, 1_000);
        assert!(
            proxy.advance_until(60_000, |proxy| events_received(proxy) == 1_000),
            "{rules}: {} events\n{}",
            events_received(&proxy),
            proxy.log_text()
        );
        let paths = delivered_paths(&proxy);
        let unique: BTreeSet<&String> = paths.iter().collect();
        assert_eq!((paths.len(), unique.len()), (1_000, 1_000), "{rules}");
        assert_eq!(proxy.received().len(), 10, "{rules}");
        let ids: BTreeSet<&str> = proxy
            .received()
            .iter()
            .map(|call| call.header("webhook-id").unwrap())
            .collect();
        assert_eq!(ids.len(), 10, "{rules}: one id per batch");
        if rules.is_kong() {
            assert!(
                proxy.received().iter().all(|call| call.step == Step::Tick),
                "{rules}: Kong sends from ticks only"
            );
        }
        // The last answer is in a tick later.
        proxy.advance(1_000);
        let hook = &status(&mut proxy)["hooks"]["log"];
        assert_eq!(
            (
                &hook["accepted"],
                &hook["delivered"],
                &hook["pending"],
                &hook["batches"]
            ),
            (&json!(1_000), &json!(1_000), &json!(0), &json!(10)),
            "{rules}"
        );
        assert_clean(&proxy);
    }
}

#[test]
fn a_batch_answered_500_comes_again_whole_with_its_id_on_every_host() {
    let config = every_request(json!({"max_size": 5, "max_delay_ms": 60_000}));
    for rules in hosts() {
        let mut proxy = start(rules, config.clone());
        proxy.reply_with([Reply::status(500)]);
        send(&mut proxy, 0, 5);
        assert!(proxy.advance_until(120_000, |proxy| proxy.received().len() == 2));
        let (first, retry) = (&proxy.received()[0], &proxy.received()[1]);
        assert_eq!(first.body, retry.body, "{rules}");
        assert_eq!(first.header("webhook-id"), retry.header("webhook-id"));
        assert_ne!(first.header("webhook-timestamp"), None);
        verify("standard-webhooks", SECRET, retry).unwrap();
        proxy.advance(1_000);
        let hook = &status(&mut proxy)["hooks"]["log"];
        assert_eq!(
            (&hook["delivered"], &hook["retries"], &hook["batches"]),
            (&json!(5), &json!(1), &json!(1)),
            "{rules}"
        );
        assert_clean(&proxy);
    }
}

/// Events delivered per second of (virtual) time by one root context: `events` at once, then
/// the time until the last one is received.
fn events_per_second(rules: Rules, batch: Value, events: usize) -> f64 {
    let mut proxy = start(rules, every_request(batch));
    proxy.receiver_delay(2);
    let from = proxy.elapsed_ms();
    send(&mut proxy, 0, events);
    assert!(proxy.advance_until(600_000, |proxy| events_received(proxy) == events));
    assert_clean(&proxy);
    events as f64 * 1_000.0 / (proxy.elapsed_ms() - from).max(1) as f64
}

#[test]
fn on_kong_batches_multiply_what_one_root_context_delivers() {
    for version in ["3.4.2", "3.10.0"] {
        let one = events_per_second(kong(version), json!({"max_size": 1}), 200);
        let hundred = events_per_second(kong(version), json!({"max_size": 100}), 2_000);
        println!(
            "Kong {version}: {one:.0} events/s one per call, {hundred:.0} events/s in batches of 100"
        );
        assert!(
            hundred >= 50.0 * one,
            "Kong {version}: {one:.0} -> {hundred:.0}"
        );
    }
}

fn hosts() -> Vec<Rules> {
    ["envoy", "3.4.2", "3.7.1", "3.10.0"]
        .iter()
        .map(|name| {
            if *name == "envoy" {
                Rules::Envoy
            } else {
                kong(name)
            }
        })
        .collect()
}
