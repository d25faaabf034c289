//! The real filter (`target/wasm32-wasip1/release/event_hooks.wasm`) under both hosts' rules:
//! delivery timings on the virtual clock, properties as each host encodes them, Kong's TLS,
//! failed calls, zones, metrics and shutdown.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{assert_no_trap_nor_host_error, body, kong, start, start_with};

use event_hooks_testhost::state::{DispatchOutcome, Options};
use event_hooks_testhost::{Reply, Request, Rules};
use serde_json::{Value, json};

/// One test per host: Envoy, and Kong at the oldest version, the first with metrics, and the
/// first that reports failed calls (`<test>::envoy`, `<test>::kong_3_4`, ...).
macro_rules! per_host {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn envoy() {
                super::$name(Rules::Envoy);
            }
            #[test]
            fn kong_3_4() {
                super::$name(kong("3.4.2"));
            }
            #[test]
            fn kong_3_8() {
                super::$name(kong("3.8.1"));
            }
            #[test]
            fn kong_3_9() {
                super::$name(kong("3.9.1"));
            }
        }
    )*};
}

per_host!(
    properties_are_decoded,
    retries_follow_the_configured_backoff,
    a_delivery_is_given_up_after_max_attempts,
    snooze_is_a_fixed_window,
    a_refused_call_is_retried,
    a_silent_receiver_times_out_and_is_retried,
    failed_calls_do_not_block_later_deliveries,
    the_filter_loads,
);

/// One traffic hook on 5xx, posting to the receiver.
fn errors_hook(extra: Value) -> Value {
    let mut hook = json!({"name": "errors", "source": "traffic", "event": "request",
        "filter": {"response.status": {"gte": 500}},
        "handler": "webhook", "config": {"url": "http://receiver/hooks"}});
    for (key, value) in extra.as_object().unwrap() {
        if key == "config" {
            for (k, v) in value.as_object().unwrap() {
                hook["config"][k] = v.clone();
            }
        } else {
            hook.as_object_mut()
                .unwrap()
                .insert(key.clone(), value.clone());
        }
    }
    hook
}

fn properties_are_decoded(rules: Rules) {
    let mut proxy = start(rules, json!({"hooks": [errors_hook(json!({}))]}));
    let mut request = Request::get("/orders/7?expand=1").status(500);
    request.upstream.latency_ms = 12;
    proxy.request(&request);
    proxy.advance(1_000);
    assert_eq!(proxy.received().len(), 1, "{rules}\n{}", proxy.log_text());
    let event = body(&proxy.received()[0]);
    let expected = json!({
        "source": "traffic", "event": "request",
        "request": {"method": "GET", "path": "/orders/7", "query": "expand=1", "host": "localhost"},
        "response": {"status": 500},
        "client": {"ip": "10.0.0.1"},
        "upstream": {"address": "10.0.0.2:8080"},
        "latency_ms": 12,
        "started_at": "2026-01-01T00:00:00.000Z",
    });
    let mut problems = Vec::new();
    event_hooks_testhost::scenario::contains(&event, &expected, "$", &mut problems);
    assert!(problems.is_empty(), "{rules}: {problems:?}\n{event:#}");
    assert_no_trap_nor_host_error(&proxy);
}

fn retries_follow_the_configured_backoff(rules: Rules) {
    let config = json!({
        "delivery": {"flush_interval_ms": 100,
                     "retry": {"max_attempts": 4, "backoff_ms": 1000, "max_backoff_ms": 8000}},
        "hooks": [errors_hook(json!({}))]});
    let mut proxy = start(rules, config.clone());
    proxy.reply_with([503, 503, 503].map(Reply::status));
    proxy.request(&Request::get("/").status(500));
    proxy.advance(10 * 60 * 1000);
    let calls = proxy.received();
    assert_eq!(
        calls.len(),
        4,
        "{rules}: 1 attempt + 3 retries\n{}",
        proxy.log_text()
    );
    // Full jitter: retry n waits a random time in [0, min(8000, 1000 * 4^(n-1))], then
    // goes out with the next flush (every 100 ms).
    let windows = [1000, 4000, 8000];
    for (n, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].at_ms - pair[0].at_ms;
        assert!(
            gap <= windows[n] + 100,
            "{rules}: retry {} came {gap} ms after the attempt before (window {} ms)",
            n + 1,
            windows[n]
        );
    }
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c.header("webhook-id").unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one webhook-id: {ids:?}"
    );
    assert_no_trap_nor_host_error(&proxy);
}

fn a_delivery_is_given_up_after_max_attempts(rules: Rules) {
    let config = json!({
        "delivery": {"retry": {"max_attempts": 3, "backoff_ms": 500, "max_backoff_ms": 500}},
        "hooks": [errors_hook(json!({}))]});
    let mut proxy = start(rules, config.clone());
    proxy.reply_with([503, 503, 503, 503, 503].map(Reply::status));
    proxy.request(&Request::get("/").status(502));
    proxy.advance(20 * 60 * 1000);
    assert_eq!(proxy.received().len(), 3, "{rules}");
    assert!(proxy.log_text().contains("gave up"), "{}", proxy.log_text());
    assert_no_trap_nor_host_error(&proxy);
}

fn snooze_is_a_fixed_window(rules: Rules) {
    // Kong's semantics: with snooze 60, sent at t0, dropped at +50 s, sent at +70 s, dropped
    // at +100 s, sent at +131 s.
    let config = json!({"hooks": [errors_hook(json!({"snooze": 60}))]});
    let mut proxy = start(rules, config.clone());
    let mut last = 0;
    for at in [0u64, 50, 70, 100, 131] {
        proxy.advance(at * 1000 - last);
        last = at * 1000;
        proxy.request(&Request::get("/").status(500));
    }
    proxy.advance(10_000);
    let times: Vec<u64> = proxy.received().iter().map(|c| c.at_ms / 1000).collect();
    assert_eq!(times, vec![0, 70, 131], "{rules}\n{}", proxy.log_text());
    assert_no_trap_nor_host_error(&proxy);
}

#[test]
fn kong_needs_a_shared_memory_zone_for_snooze() {
    let config = json!({"hooks": [errors_hook(json!({"snooze": 60}))]});
    let mut options = Options::new(kong("3.9.1"));
    options.shm_zones.clear();
    let mut proxy = start_with(options, config);
    proxy.request(&Request::get("/").status(500));
    let traps = proxy.traps();
    assert_eq!(traps.len(), 1, "{}", proxy.log_text());
    assert!(
        traps[0].message.contains("could not resolve namespace"),
        "{}",
        traps[0]
    );
}

#[test]
fn kong_sends_https_webhooks_over_tls() {
    let config =
        json!({"hooks": [errors_hook(json!({"config": {"url": "https://receiver/hooks"}}))]});
    for version in ["3.4.2", "3.9.1"] {
        let mut proxy = start(kong(version), config.clone());
        proxy.request(&Request::get("/").status(500));
        proxy.advance(1_000);
        let calls = proxy.received();
        assert_eq!(calls.len(), 1, "Kong {version}\n{}", proxy.log_text());
        assert!(
            calls[0].tls,
            "Kong {version}: sent without TLS to {}",
            calls[0].upstream
        );
        assert_eq!(calls[0].port, 443);
        assert_no_trap_nor_host_error(&proxy);
    }
}

#[test]
fn kong_dispatches_to_host_and_port() {
    let config =
        json!({"hooks": [errors_hook(json!({"config": {"url": "http://receiver:8080/hooks"}}))]});
    let mut options = Options::new(kong("3.9.1"));
    options.receiver_ports = (8080, 8443);
    let mut proxy = start_with(options, config);
    proxy.request(&Request::get("/").status(500));
    proxy.advance(1_000);
    assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
    assert_eq!(proxy.received()[0].upstream, "receiver:8080");
    assert_no_trap_nor_host_error(&proxy);
}

fn a_refused_call_is_retried(rules: Rules) {
    // The receiver refuses the first connection: Envoy answers with no headers, Kong 3.9 with
    // `:dispatch_status`, Kong 3.4-3.8 not at all (the filter must notice by itself).
    let config = json!({
        "delivery": {"timeout_ms": 2000, "retry": {"backoff_ms": 1000, "max_backoff_ms": 1000}},
        "hooks": [errors_hook(json!({}))]});
    let mut proxy = start(rules, config.clone());
    proxy.reply_with([Reply::Refuse]);
    proxy.request(&Request::get("/").status(500));
    proxy.advance(60_000);
    let dispatched = proxy
        .state()
        .dispatches
        .iter()
        .filter(|d| matches!(d.outcome, DispatchOutcome::Accepted(_)))
        .count();
    assert_eq!(
        (dispatched, proxy.received().len()),
        (2, 1),
        "{rules}: the refused call is retried and the retry delivered\n{}",
        proxy.log_text()
    );
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
}

fn a_silent_receiver_times_out_and_is_retried(rules: Rules) {
    let config = json!({
        "delivery": {"timeout_ms": 2000, "retry": {"backoff_ms": 1000, "max_backoff_ms": 1000}},
        "hooks": [errors_hook(json!({}))]});
    let mut proxy = start(rules, config.clone());
    proxy.reply_with([Reply::Silence]);
    proxy.request(&Request::get("/").status(500));
    proxy.advance(60_000);
    assert_eq!(proxy.received().len(), 2, "{rules}\n{}", proxy.log_text());
    assert!(proxy.received()[1].at_ms >= 2_000, "after the timeout");
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
}

#[test]
fn kong_before_3_8_gets_no_metric_calls() {
    let config = json!({"hooks": [errors_hook(json!({}))]});
    for version in ["3.4.2", "3.7.1"] {
        let mut proxy = start(kong(version), config.clone());
        proxy.request(&Request::get("/").status(500));
        proxy.advance(1_000);
        let metric_calls: Vec<&String> = proxy
            .state()
            .calls_made
            .keys()
            .filter(|name| name.contains("metric"))
            .collect();
        assert!(metric_calls.is_empty(), "Kong {version}: {metric_calls:?}");
        assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
        assert_no_trap_nor_host_error(&proxy);
    }
}

#[test]
fn envoy_shutdown_delivers_what_is_outstanding_then_says_done() {
    let config = json!({"hooks": [errors_hook(json!({}))]});
    let mut proxy = start(Rules::Envoy, config);
    proxy.request(&Request::get("/").status(500));
    assert!(proxy.shutdown(30_000), "{}", proxy.log_text());
    assert_eq!(proxy.received().len(), 1);
    assert!(proxy.state().done_called);
    assert_no_trap_nor_host_error(&proxy);
}

/// Kong never calls the root context's `on_done` (so never hears `proxy_done`, which it does
/// not implement): nothing traps when Kong stops.
#[test]
fn kong_never_calls_the_root_on_done() {
    let config = json!({"hooks": [errors_hook(json!({}))]});
    let mut proxy = start(kong("3.9.1"), config);
    proxy.request(&Request::get("/").status(500));
    assert!(!proxy.shutdown(30_000));
    assert_no_trap_nor_host_error(&proxy);
}

/// As many unanswered calls as a destination may have in flight (16) must not stop every later
/// delivery to it.
fn failed_calls_do_not_block_later_deliveries(rules: Rules) {
    let config = json!({"delivery": {"timeout_ms": 1000}, "hooks": [errors_hook(json!({}))]});
    let mut proxy = start(rules, config);
    proxy.reply_with(std::iter::repeat_n(Reply::Silence, 16));
    for _ in 0..16 {
        proxy.request(&Request::get("/early").status(500));
    }
    proxy.advance(5_000);
    proxy.request(&Request::get("/late").status(500));
    proxy.advance(20 * 60 * 1000);
    let late = proxy
        .received()
        .iter()
        .filter(|call| body(call)["request"]["path"] == "/late")
        .count();
    assert_eq!(
        late,
        1,
        "{rules}: {} calls, {} dispatches",
        proxy.received().len(),
        proxy.state().dispatches.len()
    );
    assert!(proxy.traps().is_empty());
}

/// It imports only what the host has (Proxy::start refuses a module importing anything else),
/// and configures without trapping or making the host log an error.
fn the_filter_loads(rules: Rules) {
    let proxy = start(rules, json!({"hooks": [errors_hook(json!({}))]}));
    assert_no_trap_nor_host_error(&proxy);
}
