//! The HTTP filter's lean path on Envoy (issue 15): Envoy's log phase has the stream's header
//! maps, so the header callbacks do nothing for events, and a request reads in `on_log` only
//! what deciding takes: a header map before deciding only when a hook tests a header no
//! property gives, the rest once an event is built; and no metrics call (counts are sent from
//! the root context's callbacks). On Kong the maps are still captured in their callbacks.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{assert_no_trap_nor_host_error, body, kong, start};

use event_hooks_testhost::{Proxy, Request, Rules};
use serde_json::{Value, json};

fn hook(name: &str, filter: Value) -> Value {
    json!({"name": name, "source": "traffic", "event": "request", "filter": filter,
           "handler": "webhook", "config": {"url": "http://receiver/hooks"}})
}

/// `make bench`'s shapes that no custom header is in: the status, the method, the path, the
/// host.
fn pseudo_header_hooks() -> Vec<Value> {
    vec![
        hook(
            "orders-5xx",
            json!({"response.status": {"gte": 500}, "request.path": {"prefix": "/orders/"}}),
        ),
        hook(
            "api-posts",
            json!({"request.method": "POST", "request.path": {"prefix": "/api/"}}),
        ),
        hook(
            "svc",
            json!({"response.status": {"in": [502, 503]}, "request.host": {"suffix": ".internal"}}),
        ),
    ]
}

/// How many times the filter called host function `name` in callback `callback`.
fn calls(proxy: &Proxy, callback: &str, name: &str) -> u64 {
    let key = format!("{callback} {name}");
    proxy.state().calls_by_step.get(&key).copied().unwrap_or(0)
}

/// Every host call the filter made in a request's header callbacks.
fn header_callback_calls(proxy: &Proxy) -> Vec<(String, u64)> {
    proxy
        .state()
        .calls_by_step
        .iter()
        .filter(|(key, _)| {
            key.starts_with("proxy_on_request_headers ")
                || key.starts_with("proxy_on_response_headers ")
        })
        .map(|(key, count)| (key.clone(), *count))
        .collect()
}

#[test]
fn envoy_reads_nothing_in_the_header_callbacks_and_no_map_for_pseudo_headers() {
    let mut proxy = start(Rules::Envoy, json!({"hooks": pseudo_header_hooks()}));
    for path in ["/", "/orders/1", "/api/v1/x"] {
        proxy.request(&Request::get(path).header("X-Team", "a"));
    }
    proxy.advance(1_000);
    assert!(proxy.received().is_empty(), "{}", proxy.log_text());
    assert_eq!(
        header_callback_calls(&proxy),
        vec![],
        "{:?}",
        proxy.state().calls_by_step
    );
    assert_eq!(
        calls(&proxy, "proxy_on_log", "proxy_get_header_map_pairs"),
        0
    );
    // The status, the method, the path and the host: one property each per request, read in
    // on_log.
    let properties = calls(&proxy, "proxy_on_log", "proxy_get_property");
    assert_eq!(properties, 3 * 4, "{:?}", proxy.state().calls_by_step);
    // The requests are counted, and the counts sent from the root context's next tick: the
    // log phase makes no metrics call.
    assert_eq!(calls(&proxy, "proxy_on_log", "proxy_increment_metric"), 0);
    let seen = proxy
        .state()
        .metrics
        .iter()
        .find(|metric| metric.name.ends_with("events.traffic"))
        .map(|metric| metric.value);
    assert_eq!(seen, Some(3), "{:?}", proxy.state().metrics);
    assert_no_trap_nor_host_error(&proxy);
}

#[test]
fn envoy_reads_a_map_before_deciding_only_for_a_header_no_property_gives() {
    let mut hooks = pseudo_header_hooks();
    hooks.push(hook(
        "team",
        json!({"request.headers.x-team": "payments, search"}),
    ));
    let mut proxy = start(Rules::Envoy, json!({"hooks": hooks}));
    // A repeated header is all its values joined, as the event has it: the map decides.
    proxy.request(&Request::get("/").header("X-Team", "payments"));
    proxy.request(
        &Request::get("/")
            .header("X-Team", "payments")
            .header("X-Team", "search"),
    );
    proxy.advance(5_000);
    assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
    assert_eq!(header_callback_calls(&proxy), vec![]);
    // One request map per request before deciding; the response map only for the event.
    assert_eq!(
        calls(&proxy, "proxy_on_log", "proxy_get_header_map_pairs"),
        2 + 1
    );
    let event = body(&proxy.received()[0]);
    assert_eq!(event["request"]["headers"]["x-team"], "payments, search");
    assert_no_trap_nor_host_error(&proxy);
}

/// A matched request's event is the whole event: both header maps and every property, read
/// once it is built.
#[test]
fn envoy_reads_the_rest_once_an_event_is_built() {
    let mut proxy = start(Rules::Envoy, json!({"hooks": pseudo_header_hooks()}));
    proxy.request(
        &Request::get("/orders/9?expand=1")
            .header("X-Team", "payments")
            .header("Authorization", "Bearer abc")
            .status(503)
            .response_header("Content-Type", "text/plain"),
    );
    proxy.request(&Request::get("/orders/10"));
    proxy.advance(5_000);
    assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
    let event = body(&proxy.received()[0]);
    assert_eq!(event["request"]["method"], "GET");
    assert_eq!(event["request"]["path"], "/orders/9");
    assert_eq!(event["request"]["query"], "expand=1");
    assert_eq!(event["request"]["headers"]["x-team"], "payments");
    assert_eq!(event["request"]["headers"]["authorization"], "[redacted]");
    assert_eq!(event["response"]["status"], 503);
    assert_eq!(event["response"]["headers"]["content-type"], "text/plain");
    assert!(event["request"]["id"].is_string(), "{event}");
    assert!(event["latency_ms"].is_u64(), "{event}");
    // Both maps, once, for the one request whose event was built.
    assert_eq!(
        calls(&proxy, "proxy_on_log", "proxy_get_header_map_pairs"),
        2
    );
    assert_eq!(header_callback_calls(&proxy), vec![]);
    assert_no_trap_nor_host_error(&proxy);
}

/// Kong's maps are captured in their callbacks (its log phase is not where this filter reads
/// them), so the same hooks read them there, and the same event arrives.
#[test]
fn kong_still_captures_the_maps_in_their_callbacks() {
    let mut proxy = start(kong("3.10.0"), json!({"hooks": pseudo_header_hooks()}));
    proxy.request(
        &Request::get("/orders/9")
            .status(503)
            .response_header("Content-Type", "text/plain"),
    );
    proxy.advance(5_000);
    assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
    assert_eq!(
        calls(
            &proxy,
            "proxy_on_request_headers",
            "proxy_get_header_map_pairs"
        ),
        1
    );
    assert_eq!(
        calls(
            &proxy,
            "proxy_on_response_headers",
            "proxy_get_header_map_pairs"
        ),
        1
    );
    assert_eq!(
        calls(&proxy, "proxy_on_log", "proxy_get_header_map_pairs"),
        0
    );
    let event = body(&proxy.received()[0]);
    assert_eq!(event["response"]["headers"]["content-type"], "text/plain");
    assert_no_trap_nor_host_error(&proxy);
}
