//! Envoy's wasm access logger (`envoy.access_loggers.wasm`, [`Options::access_logger`]): no
//! HTTP context, the root context's `on_log` once per finished request with that request's
//! header maps and properties readable, its calls answered as any root context's.
//!
//! * `access_logger::scenarios::<scenario>`: every `tests/scenarios/*.json` that runs on
//!   `harness-envoy`, played with the filter as an HTTP filter and as an access logger: both
//!   pass, and the receiver gets the same deliveries, call for call. Ignored, with the reason,
//!   where an access logger refuses the configuration (`crud`, `dao:crud`, `admin`).
//! * The filter refuses what an access logger cannot do when it loads; no HTTP context is
//!   ever created; what the root context's `on_log` reads, and what it reads outside it;
//!   events other filters emitted (dynamic metadata, filter state) reach it; Kong never calls
//!   the root context's `on_log`.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{assert_no_trap_nor_host_error, body, filter, kong, start, start_with};
use crate::host_rules::{Callbacks, module};

use event_hooks_testhost::scenario;
use event_hooks_testhost::signature::verify;
use event_hooks_testhost::state::{Attachment, Origin};
use event_hooks_testhost::{Filter, Options, Proxy, Request, Rules};
use serde_json::{Value, json};

fn both_modes(name: &str) {
    match scenario::run_access_logger(name) {
        Ok(None) => {}
        Ok(Some(skipped)) => println!("{skipped}"),
        Err(failure) => panic!("{name}:\n{failure}"),
    }
}

include!(concat!(env!("OUT_DIR"), "/access_logger_tests.rs"));

/// The filter's own log lines.
fn filter_lines(proxy: &Proxy) -> Vec<String> {
    proxy
        .state()
        .logs
        .iter()
        .filter(|line| line.origin == Origin::Filter)
        .map(|line| line.message.clone())
        .collect()
}

/// Every scenario the access logger skips is one whose configuration the filter refuses as an
/// access logger, naming each refused place; every other scenario's it accepts. (The skip
/// list is decided from the scenario files when the tests are built: this keeps it honest.)
#[test]
fn the_skipped_scenarios_are_those_the_filter_refuses() {
    let mut skipped = Vec::new();
    for path in scenario::files() {
        let loaded = scenario::load(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !scenario::runs_on(&loaded)
            .iter()
            .any(|r| r == "harness-envoy")
        {
            continue;
        }
        let config = serde_json::to_vec(&loaded["config"]).unwrap();
        let mut options = Options::access_logger();
        options.env = loaded["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let proxy = Proxy::start(filter(), options, &config).unwrap();
        let refusals: Vec<String> = filter_lines(&proxy)
            .into_iter()
            .filter(|line| line.starts_with("invalid configuration for an access logger: "))
            .collect();
        match scenario::access_logger_skip(&loaded) {
            Some(why) => {
                assert!(!proxy.configured, "{name}: accepted\n{}", proxy.log_text());
                for (index, hook) in loaded["config"]["hooks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                {
                    let refused = ["crud", "dao:crud"].contains(&hook["source"].as_str().unwrap());
                    let named = refusals
                        .iter()
                        .any(|line| line.contains(&format!(": hooks[{index}].source: ")));
                    assert_eq!(refused, named, "{name} hooks[{index}]: {refusals:?}");
                }
                skipped.push(format!("{name}: {why}"));
            }
            None => {
                assert!(proxy.configured, "{name}: refused\n{}", proxy.log_text());
                assert!(refusals.is_empty(), "{name}: {refusals:?}");
            }
        }
    }
    println!("skipped in access-logger mode:\n{}", skipped.join("\n"));
    assert!(!skipped.is_empty());
}

/// No scenario the access logger plays makes the host log an error or trap.
#[test]
fn no_host_errors_access_logger() {
    let mut report = Vec::new();
    for path in scenario::files() {
        let loaded = scenario::load(&path).unwrap();
        if scenario::access_logger_skip(&loaded).is_some() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match scenario::play_access_logger(filter(), &loaded) {
            Ok(played) => {
                report.extend(
                    played
                        .proxy
                        .host_errors()
                        .iter()
                        .map(|e| format!("{name}: {e}")),
                );
                report.extend(played.proxy.traps().iter().map(|t| format!("{name}: {t}")));
            }
            Err(error) => report.push(format!("{name}: {error}")),
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

fn traffic_hook(name: &str, source: &str) -> Value {
    json!({"name": name, "source": source, "event": "request",
        "filter": {"response.status": {"gte": 500}},
        "handler": "webhook", "config": {"url": "http://receiver/hooks"}})
}

#[test]
fn an_access_logger_refuses_a_crud_hook_at_configure() {
    let config = json!({
        "hooks": [traffic_hook("errors", "traffic"),
                  {"name": "writes", "source": "crud", "handler": "log", "config": {}}],
        "crud": {"match": {"upstream.cluster": "kong_admin"}}
    });
    let proxy = Proxy::start(
        filter(),
        Options::access_logger(),
        config.to_string().as_bytes(),
    )
    .unwrap();
    assert!(!proxy.configured, "{}", proxy.log_text());
    let lines = filter_lines(&proxy);
    assert!(
        lines.iter().any(|line| line.starts_with(
            "invalid configuration for an access logger: hooks[1].source: crud reads the response body"
        )),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("configuration refused: 1 problem(s)")),
        "{lines:?}"
    );
    // The same configuration as an HTTP filter, whose root_id is not an access logger's.
    start(Rules::Envoy, config);
}

#[test]
fn an_access_logger_refuses_dao_crud_and_the_admin_endpoints() {
    let config = json!({
        "hooks": [{"name": "dao", "source": "dao:crud", "handler": "log", "config": {}},
                  traffic_hook("errors", "traffic")],
        "crud": {"match": {"upstream.cluster": "kong_admin"}},
        "admin": {"token": "t0ken"}
    });
    let proxy = Proxy::start(
        filter(),
        Options::access_logger(),
        config.to_string().as_bytes(),
    )
    .unwrap();
    assert!(!proxy.configured);
    let refusals: Vec<String> = filter_lines(&proxy)
        .into_iter()
        .filter(|line| line.starts_with("invalid configuration for an access logger: "))
        .collect();
    assert_eq!(refusals.len(), 2, "{}", proxy.log_text());
    assert!(refusals[0].contains(": hooks[0].source: dao:crud reads the response body"));
    assert!(refusals[1].contains(": admin: the admin endpoints answer requests"));
}

/// Requests of every kind (with bodies, failing, matching, not matching) and the deliveries
/// they cause: the host creates no HTTP context and calls no stream callback; the root
/// context's `on_log` runs once per request.
#[test]
fn no_http_context_is_ever_created() {
    let mut proxy = start_with(
        Options::access_logger(),
        json!({"hooks": [traffic_hook("errors", "traffic")]}),
    );
    assert!(
        proxy
            .log_text()
            .contains("configured 1 hook(s) as an Envoy access logger"),
        "{}",
        proxy.log_text()
    );
    let requests = [
        Request::get("/a").status(500),
        Request::get("/b"),
        Request::get("/c")
            .method("POST")
            .body("{\"qty\": 1}")
            .response_body("{\"error\": \"boom\"}")
            .status(503),
        Request::get("/event-hooks/status").header("Authorization", "Bearer t0ken"),
    ];
    for request in &requests {
        let outcome = proxy.request(request);
        assert_eq!(outcome.context, 0);
        assert!(outcome.local_response.is_none());
        proxy.advance(50);
    }
    proxy.advance(5_000);
    assert_eq!(proxy.received().len(), 2, "{}", proxy.log_text());
    for callback in [
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_delete",
        "proxy_on_http_call_response",
    ] {
        assert_eq!(
            proxy.callbacks(callback, false),
            0,
            "{callback} in an HTTP context"
        );
    }
    assert_eq!(proxy.callbacks("proxy_on_log", true), requests.len() as u64);
    assert_eq!(proxy.callbacks("proxy_on_context_create", true), 1);
    assert!(proxy.callbacks("proxy_on_tick", true) > 0);
    assert_eq!(proxy.callbacks("proxy_on_http_call_response", true), 2);
    assert!(proxy.state().streams.is_empty());
    assert_no_trap_nor_host_error(&proxy);
}

/// The real filter reads the logged request's and response's headers from the root context:
/// they are in the event, redacted as configured, and the headers the hook's filter tests
/// decide.
#[test]
fn the_root_context_reads_the_logged_requests_headers() {
    let hook = json!({"name": "team", "source": "traffic", "event": "request",
        "filter": {"request.headers.x-team": "payments",
                   "response.headers.content-type": {"prefix": "application/json"}},
        "handler": "webhook", "config": {"url": "http://receiver/hooks"}});
    let mut proxy = start_with(Options::access_logger(), json!({"hooks": [hook]}));
    proxy.request(
        &Request::get("/orders/1")
            .header("X-Team", "payments")
            .header("Authorization", "Bearer abc")
            .response_header("Content-Type", "application/json; charset=utf-8"),
    );
    proxy.request(
        &Request::get("/orders/2")
            .header("X-Team", "search")
            .response_header("Content-Type", "application/json"),
    );
    proxy.request(&Request::get("/orders/3").header("X-Team", "payments"));
    proxy.advance(5_000);
    assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
    let event = body(&proxy.received()[0]);
    assert_eq!(event["request"]["path"], "/orders/1");
    assert_eq!(event["request"]["headers"]["x-team"], "payments");
    assert_eq!(event["request"]["headers"]["authorization"], "[redacted]");
    assert_eq!(
        event["response"]["headers"]["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(proxy.callbacks("proxy_on_log", true), 3);
    assert!(
        proxy
            .state()
            .calls_made
            .get("proxy_get_header_map_pairs")
            .is_some_and(|calls| *calls >= 6),
        "{:?}",
        proxy.state().calls_made
    );
    assert_no_trap_nor_host_error(&proxy);
}

/// The statuses a test module logged (`status <digit>` lines), in order.
fn statuses(proxy: &Proxy) -> Vec<String> {
    filter_lines(proxy)
        .into_iter()
        .filter_map(|line| line.strip_prefix("status ").map(str::to_string))
        .collect()
}

fn start_module(filter: &Filter, options: Options) -> Proxy {
    let proxy = Proxy::start(filter, options, b"{}").unwrap();
    assert!(proxy.configured, "{}", proxy.log_text());
    proxy
}

/// A test module doing what `callbacks` say, as an access logger, after one request with a
/// request header and a response header.
fn logged(callbacks: Callbacks<'_>) -> Proxy {
    let filter = module(callbacks);
    let mut proxy = start_module(&filter, Options::access_logger());
    proxy.request(
        &Request::get("/orders/7?x=1")
            .header("X-Team", "payments")
            .response_header("Content-Type", "text/plain"),
    );
    assert_no_trap_nor_host_error(&proxy);
    proxy
}

/// What Envoy's `Context::log` gives a root context's `onLog` (context.cc, `getConstMap` and
/// `getHeaderMapValue` in the access log phase): the request's headers and the response's, no
/// request trailers (NotFound), the response's trailers (none here: NotFound), no gRPC
/// metadata nor call answer (NotFound, not BadArgument); pairs of a missing map are empty, not
/// an error.
#[test]
fn the_root_on_log_reads_what_envoy_gives_an_access_log() {
    let probe = |log: &'static str, header: &'static str| {
        logged(Callbacks {
            log,
            header,
            ..Default::default()
        })
    };
    let proxy = probe("(call $lookup (i32.const 0))", ":path");
    assert!(filter_lines(&proxy).contains(&"/orders/7?x=1".to_string()));
    let proxy = probe("(call $lookup (i32.const 0))", "x-team");
    assert!(filter_lines(&proxy).contains(&"payments".to_string()));
    let proxy = probe("(call $lookup (i32.const 2))", "content-type");
    assert!(filter_lines(&proxy).contains(&"text/plain".to_string()));
    let proxy = probe("(call $lookup (i32.const 2))", ":status");
    assert!(filter_lines(&proxy).contains(&"200".to_string()));
    let proxy = probe(
        "(call $lookup_status (i32.const 1)) (call $lookup_status (i32.const 3)) \
         (call $lookup_status (i32.const 4)) (call $lookup_status (i32.const 6)) \
         (call $pairs_status (i32.const 1)) (call $pairs_status (i32.const 6))",
        "x-team",
    );
    assert_eq!(statuses(&proxy), ["1", "1", "1", "1", "0", "0"]);
    let proxy = probe("(call $pairs (i32.const 0))", "");
    let lines = filter_lines(&proxy);
    assert!(
        lines
            .iter()
            .any(|line| line.contains(":path") && line.contains("x-team")),
        "{lines:?}"
    );
}

/// The logged request's properties, as an HTTP context's `on_log` reads them.
#[test]
fn the_root_on_log_reads_the_requests_properties() {
    for (property, expected) in [
        ("request\0path", "/orders/7?x=1"),
        ("request\0method", "GET"),
        ("request\0headers\0x-team", "payments"),
        ("response\0headers\0content-type", "text/plain"),
        ("xds\0cluster_name", "upstream"),
        ("upstream\0address", "10.0.0.2:8080"),
        ("plugin_root_id", "event_hooks_access_log"),
    ] {
        let proxy = logged(Callbacks {
            log: "(call $property)",
            property,
            ..Default::default()
        });
        assert!(
            filter_lines(&proxy).contains(&expected.to_string()),
            "{property:?}: {}",
            proxy.log_text()
        );
    }
}

/// Outside `on_log` (a tick), the root context reads no request data, as before: a header map
/// is BadArgument, a request property NotFound; and an HTTP filter's root context reads none
/// in its ticks either.
#[test]
fn outside_on_log_the_root_context_reads_no_request() {
    for options in [Options::access_logger(), Options::new(Rules::Envoy)] {
        let attachment = options.attachment;
        let filter = module(Callbacks {
            configure: "(drop (call $tick (i32.const 10)))",
            tick: "(call $lookup_status (i32.const 0)) (call $lookup_status (i32.const 2)) \
                   (call $property_status)",
            header: ":path",
            property: "request\0path",
            ..Default::default()
        });
        let mut proxy = start_module(&filter, options);
        proxy.request(&Request::get("/orders/7").status(500));
        proxy.advance(10);
        let seen = statuses(&proxy);
        assert!(seen.len() >= 3, "{attachment:?}: {}", proxy.log_text());
        assert!(
            seen.chunks(3).all(|tick| tick == ["2", "2", "1"]),
            "{attachment:?}: {seen:?}"
        );
    }
}

/// `plugin_root_id` is the plugin's `root_id` from `on_configure` on: the access logger's, or
/// the HTTP filter's.
#[test]
fn plugin_root_id_is_readable_in_on_configure() {
    let filter = module(Callbacks {
        configure: "(call $property)",
        property: "plugin_root_id",
        ..Default::default()
    });
    let proxy = start_module(&filter, Options::access_logger());
    assert!(filter_lines(&proxy).contains(&"event_hooks_access_log".to_string()));
    let proxy = start_module(&filter, Options::new(Rules::Envoy));
    assert!(filter_lines(&proxy).contains(&"event_hooks".to_string()));
}

/// The root context may call out from `on_log` and gets the answer (an HTTP context's call
/// from `on_log` is sent, but its answer is lost with the stream).
#[test]
fn a_call_from_the_root_on_log_is_answered() {
    let filter = module(Callbacks {
        log: "(call $dispatch)",
        ..Default::default()
    });
    for (options, answered) in [
        (Options::access_logger(), true),
        (Options::new(Rules::Envoy), false),
    ] {
        let attachment = options.attachment;
        let mut proxy = start_module(&filter, options);
        proxy.request(&Request::get("/"));
        proxy.advance(1_000);
        assert_eq!(proxy.received().len(), 1, "{attachment:?}");
        assert_eq!(
            proxy.log_text().contains("got the answer"),
            answered,
            "{attachment:?}: {}",
            proxy.log_text()
        );
    }
}

/// `payments` published on Envoy's `channel`, and a signed webhook on `refund-issued`.
fn published(channel: &str) -> Value {
    json!({
        "publish": {"payments": {"channel": channel,
                                 "events": {"refund-issued": {"fields": ["order_id", "amount", "currency"]}}}},
        "hooks": [{"name": "refunds", "source": "payments", "event": "refund-issued",
                   "handler": "webhook",
                   "config": {"url": "http://receiver/refunds", "secret": "hunter2"}}]
    })
}

/// Events another filter emitted during the request, in the stream's dynamic metadata (a Lua
/// filter) or filter state (another wasm filter), are read once per request and delivered by
/// the access logger exactly as by the HTTP filter.
#[test]
fn events_other_filters_emitted_reach_an_access_logger() {
    let refund = json!({"order_id": "42", "amount": 300, "currency": "EUR"});
    let emitted = Request::get("/refunds").method("POST").status(201);
    for (channel, read, request) in [
        (
            "metadata",
            "proxy_get_property(metadata)",
            emitted.clone().dynamic_metadata(
                "event_hooks",
                "payments.refund-issued",
                refund.clone(),
            ),
        ),
        (
            "filter_state",
            "proxy_get_property(filter_state.wasm.event_hooks)",
            emitted.clone().wasm_property(
                "event_hooks",
                json!({"payments.refund-issued": refund})
                    .to_string()
                    .as_bytes(),
            ),
        ),
    ] {
        let mut deliveries = Vec::new();
        for options in [Options::new(Rules::Envoy), Options::access_logger()] {
            let attachment = options.attachment;
            let mut proxy = start_with(options, published(channel));
            proxy.request(&request);
            proxy.request(&emitted);
            proxy.advance(5_000);
            assert_eq!(
                proxy.received().len(),
                1,
                "{channel}, {attachment:?}\n{}",
                proxy.log_text()
            );
            let call = &proxy.received()[0];
            assert_eq!(
                body(call),
                json!({"order_id": "42", "amount": 300, "currency": "EUR",
                       "source": "payments", "event": "refund-issued"})
            );
            verify("kong", "hunter2", call).unwrap();
            assert_eq!(
                proxy.state().calls_made.get(read),
                Some(&2),
                "{channel}, {attachment:?}: one read per request"
            );
            assert_no_trap_nor_host_error(&proxy);
            deliveries.push(proxy.received().to_vec());
        }
        let problems = scenario::different_deliveries(&deliveries[0], &deliveries[1]);
        assert!(problems.is_empty(), "{channel}: {problems:?}");
    }
}

/// Kong has no access logger: the emulator refuses to play one, and under Kong's rules the
/// root context's `on_log` is never called, only each HTTP context's.
#[test]
fn kong_never_calls_the_root_on_log() {
    for version in ["3.4.2", "3.9.1", "3.10.0"] {
        let options = Options {
            attachment: Attachment::AccessLogger,
            ..Options::new(kong(version))
        };
        let refused = Proxy::start(filter(), options, b"{\"hooks\": []}")
            .err()
            .unwrap();
        assert!(refused.0.contains("Kong has no access logger"), "{refused}");
        let mut proxy = start(
            kong(version),
            json!({"hooks": [traffic_hook("errors", "traffic")]}),
        );
        proxy.request(&Request::get("/orders").status(500));
        proxy.request(&Request::get("/orders"));
        proxy.advance(5_000);
        assert_eq!(proxy.received().len(), 1, "{}", proxy.log_text());
        assert_eq!(proxy.callbacks("proxy_on_log", true), 0);
        assert_eq!(proxy.callbacks("proxy_on_log", false), 2);
    }
}
