//! The host's rules, proved with small deliberately wrong filters written in WAT: what Kong
//! (ngx_wasm_module) refuses and Envoy accepts.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_hooks_testhost::memory::encode_pairs;
use event_hooks_testhost::state::{DispatchOutcome, Options, Step};
use event_hooks_testhost::{Filter, Proxy, Request, Rules};

/// Where things are in the test module's memory.
const HEADERS: u32 = 1024;
const UPSTREAM: u32 = 2048;
const KEY_ZONED: u32 = 2304;
const KEY_OTHER: u32 = 2368;
const METRIC: u32 = 2432;
const MESSAGE: u32 = 2496;
const EOS: u32 = 2560;
const PROPERTY: u32 = 2624;
const OUT: u32 = 4000;

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The callbacks' bodies (WAT instructions, leaving nothing on the stack).
#[derive(Default)]
struct Callbacks<'a> {
    configure: &'a str,
    tick: &'a str,
    request_headers: &'a str,
    log: &'a str,
    call_response: &'a str,
    /// The property `(call $property)` reads (segments separated by NUL).
    property: &'a str,
}

/// A minimal proxy-wasm module whose callbacks do what `callbacks` says. `(call $dispatch)`
/// posts to `receiver` (a cluster on Envoy, a host on Kong).
fn module(callbacks: Callbacks<'_>) -> Filter {
    let headers = encode_pairs(&[
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), "/hook".to_string()),
        (":authority".to_string(), "receiver".to_string()),
    ]);
    let upstream = b"receiver";
    let zoned = b"event_hooks/k";
    let other = b"other/k";
    let metric = b"calls";
    let message = b"got the answer";
    let wat = format!(
        r#"(module
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 32768))
  (data (i32.const {HEADERS}) "{headers}")
  (data (i32.const {UPSTREAM}) "{upstream}")
  (data (i32.const {KEY_ZONED}) "{zoned}")
  (data (i32.const {KEY_OTHER}) "{other}")
  (data (i32.const {METRIC}) "{metric}")
  (data (i32.const {MESSAGE}) "{message}")
  (data (i32.const {EOS}) "end of stream")
  (data (i32.const {PROPERTY}) "{property}")
  (func $property
    (drop (call $get_property (i32.const {PROPERTY}) (i32.const {property_len})
      (i32.const {OUT}) (i32.const 4008))))
  (func $log_end_of_stream (param $eos i32)
    (if (local.get $eos)
      (then (drop (call $log (i32.const 2) (i32.const {EOS}) (i32.const 13))))))
  (func $dispatch
    (drop (call $http_call (i32.const {UPSTREAM}) (i32.const {upstream_len})
      (i32.const {HEADERS}) (i32.const {headers_len}) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const {OUT}))))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $size) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) {configure} (i32.const 1))
  (func (export "proxy_on_tick") (param i32) {tick})
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $log_end_of_stream (local.get 2)) {request_headers} (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $log_end_of_stream (local.get 2)) (i32.const 0))
  (func (export "proxy_on_log") (param i32) {log})
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $log (i32.const 2) (i32.const {MESSAGE}) (i32.const {message_len}))) {call_response})
)"#,
        headers = escape(&headers),
        headers_len = headers.len(),
        upstream = escape(upstream),
        upstream_len = upstream.len(),
        zoned = escape(zoned),
        other = escape(other),
        metric = escape(metric),
        message = escape(message),
        message_len = message.len(),
        property = escape(callbacks.property.as_bytes()),
        property_len = callbacks.property.len(),
        configure = callbacks.configure,
        tick = callbacks.tick,
        request_headers = callbacks.request_headers,
        log = callbacks.log,
        call_response = callbacks.call_response,
    );
    Filter::new(wat.as_bytes()).unwrap()
}

fn kong(version: &str) -> Rules {
    Rules::kong(version).unwrap()
}

fn start(filter: &Filter, rules: Rules) -> Proxy {
    Proxy::start(filter, Options::new(rules), b"{}").unwrap()
}

fn answered(proxy: &Proxy) -> bool {
    proxy.log_text().contains("got the answer")
}

#[test]
fn kong_traps_a_call_from_on_log_naming_proxy_http_call() {
    let filter = module(Callbacks {
        log: "(call $dispatch)",
        ..Default::default()
    });
    for version in ["3.6.0", "3.8.1", "3.9.1", "3.10.0"] {
        let mut proxy = start(&filter, kong(version));
        proxy.request(&Request::get("/"));
        let traps = proxy.traps();
        assert_eq!(traps.len(), 1, "Kong {version}: {}", proxy.log_text());
        assert_eq!(traps[0].callback, "proxy_on_log");
        assert_eq!(traps[0].host_function.as_deref(), Some("proxy_http_call"));
        assert!(
            traps[0]
                .message
                .contains("can only send HTTP dispatch during"),
            "{}",
            traps[0].message
        );
        assert!(proxy.received().is_empty(), "nothing is sent");
    }
    // Kong 3.4 and 3.5 check no step up front; the dispatch is refused deeper, as a trap too.
    let mut proxy = start(&filter, kong("3.4.2"));
    proxy.request(&Request::get("/"));
    assert_eq!(proxy.traps().len(), 1);
    assert_eq!(proxy.traps()[0].message, "dispatch failed: bad step");
    assert_eq!(
        proxy.traps()[0].host_function.as_deref(),
        Some("proxy_http_call")
    );
}

#[test]
fn envoy_sends_a_call_from_on_log_but_never_answers_it() {
    let filter = module(Callbacks {
        log: "(call $dispatch)",
        ..Default::default()
    });
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.request(&Request::get("/"));
    proxy.advance(60_000);
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
    let dispatch = &proxy.state().dispatches[0];
    assert_eq!(dispatch.step, Step::Log);
    assert!(matches!(dispatch.outcome, DispatchOutcome::Accepted(_)));
    assert_eq!(proxy.received().len(), 1, "the call is sent");
    assert!(!answered(&proxy), "but its answer never comes back");
}

#[test]
fn a_call_from_the_root_tick_is_answered_on_every_host() {
    let filter = module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000)))",
        tick: "(call $dispatch)",
        ..Default::default()
    });
    for rules in [Rules::Envoy, kong("3.4.2"), kong("3.9.1")] {
        let mut proxy = start(&filter, rules);
        proxy.advance(1_000);
        assert_eq!(proxy.received().len(), 1, "{rules}");
        assert_eq!(proxy.received()[0].at_ms, 1_000);
        assert!(answered(&proxy), "{rules}: {}", proxy.log_text());
        assert!(proxy.traps().is_empty());
        assert!(proxy.host_errors().is_empty(), "{:?}", proxy.host_errors());
    }
}

#[test]
fn kong_traps_a_call_from_on_configure() {
    let filter = module(Callbacks {
        configure: "(call $dispatch)",
        ..Default::default()
    });
    let proxy = start(&filter, kong("3.9.1"));
    assert_eq!(proxy.traps()[0].callback, "proxy_on_configure");
    assert!(!proxy.configured);
    let proxy = start(&filter, Rules::Envoy);
    assert!(proxy.traps().is_empty());
    assert!(proxy.configured);
}

#[test]
fn ticks_fire_at_the_period_the_filter_set() {
    let filter = module(Callbacks {
        configure: "(drop (call $tick (i32.const 250)))",
        tick: "(call $dispatch)",
        ..Default::default()
    });
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.advance(1_000);
    let times: Vec<u64> = proxy.received().iter().map(|r| r.at_ms).collect();
    assert_eq!(times, vec![250, 500, 750, 1_000]);
}

#[test]
fn kong_traps_a_second_tick_period() {
    let filter = module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000))) (drop (call $tick (i32.const 500)))",
        ..Default::default()
    });
    for version in ["3.4.2", "3.8.1", "3.9.1"] {
        let proxy = start(&filter, kong(version));
        assert_eq!(proxy.traps().len(), 1, "Kong {version}");
        assert_eq!(proxy.traps()[0].message, "tick_period already set");
        assert_eq!(
            proxy.traps()[0].host_function.as_deref(),
            Some("proxy_set_tick_period_milliseconds")
        );
    }
    let proxy = start(&filter, Rules::Envoy);
    assert!(proxy.traps().is_empty());
    assert_eq!(proxy.state().tick_period_ms, 500);
    // Kong 3.9 accepts a second call that stops the ticks (period 0); 3.8 does not.
    let stop = module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000))) (drop (call $tick (i32.const 0)))",
        ..Default::default()
    });
    assert!(start(&stop, kong("3.9.1")).traps().is_empty());
    assert_eq!(start(&stop, kong("3.8.1")).traps().len(), 1);
}

#[test]
fn kong_traps_a_tick_period_set_outside_the_root_context() {
    let filter = module(Callbacks {
        request_headers: "(drop (call $tick (i32.const 1000)))",
        ..Default::default()
    });
    let mut proxy = start(&filter, kong("3.9.1"));
    proxy.request(&Request::get("/"));
    assert_eq!(
        proxy.traps()[0].message,
        "can only set tick_period in root context"
    );
    // Kong 3.4 ignores it.
    let mut proxy = start(&filter, kong("3.4.2"));
    proxy.request(&Request::get("/"));
    assert!(proxy.traps().is_empty());
    assert_eq!(proxy.state().tick_period_ms, 0);
}

fn set_shared(key: u32, len: usize) -> String {
    format!(
        "(drop (call $set_shared (i32.const {key}) (i32.const {len}) (i32.const {MESSAGE}) (i32.const 3) (i32.const 0)))"
    )
}

#[test]
fn kong_shared_data_needs_a_zone() {
    let zoned = set_shared(KEY_ZONED, "event_hooks/k".len());
    let filter = module(Callbacks {
        configure: &zoned,
        ..Default::default()
    });
    // The harness configures zone `event_hooks` (nginx_wasm_shm_kv_event_hooks).
    let proxy = start(&filter, kong("3.9.1"));
    assert!(proxy.traps().is_empty());
    assert_eq!(proxy.state().shared["event_hooks/k"].1, 1);
    // Without it (and without the default `*` zone), the write traps.
    let mut options = Options::new(kong("3.9.1"));
    options.shm_zones.clear();
    let proxy = Proxy::start(&filter, options, b"{}").unwrap();
    assert_eq!(proxy.traps().len(), 1);
    assert_eq!(
        proxy.traps()[0].message,
        "host trap (bad usage): failed setting value to shm (could not resolve namespace)"
    );
    // A key of another namespace falls back to `*` only when that zone exists.
    let other = set_shared(KEY_OTHER, "other/k".len());
    let filter = module(Callbacks {
        configure: &other,
        ..Default::default()
    });
    assert_eq!(start(&filter, kong("3.9.1")).traps().len(), 1);
    let mut options = Options::new(kong("3.9.1"));
    options.shm_zones.push("*".to_string());
    assert!(
        Proxy::start(&filter, options, b"{}")
            .unwrap()
            .traps()
            .is_empty()
    );
    // Envoy has no zones.
    assert!(start(&filter, Rules::Envoy).traps().is_empty());
}

#[test]
fn kong_cas_is_strict() {
    // Two unconditional writes (cas 0) of the same key: Envoy overwrites, Kong refuses the
    // second (0 means "only if absent" in ngx_wa_shm_kv_set_locked).
    let twice = format!(
        "{} {}",
        set_shared(KEY_ZONED, 13),
        set_shared(KEY_ZONED, 13)
    );
    let filter = module(Callbacks {
        configure: &twice,
        ..Default::default()
    });
    assert_eq!(
        start(&filter, kong("3.9.1")).state().shared["event_hooks/k"].1,
        1
    );
    assert_eq!(
        start(&filter, Rules::Envoy).state().shared["event_hooks/k"].1,
        2
    );
}

const DEFINE_COUNTER: &str =
    "(drop (call $define_metric (i32.const 0) (i32.const 2432) (i32.const 5) (i32.const 4000)))";
const DEFINE_GAUGE: &str =
    "(drop (call $define_metric (i32.const 1) (i32.const 2432) (i32.const 5) (i32.const 4000)))";
const INCREMENT: &str = "(drop (call $increment_metric (i32.load (i32.const 4000)) (i64.const 1)))";

#[test]
fn kong_before_3_8_traps_on_metrics() {
    let filter = module(Callbacks {
        configure: DEFINE_COUNTER,
        ..Default::default()
    });
    for version in ["3.4.2", "3.7.1"] {
        let proxy = start(&filter, kong(version));
        assert_eq!(proxy.traps().len(), 1, "Kong {version}");
        assert_eq!(
            proxy.traps()[0].message,
            "host trap (function not yet implemented): proxy_define_metric"
        );
    }
    for rules in [kong("3.8.0"), kong("3.9.1"), Rules::Envoy] {
        assert!(start(&filter, rules).traps().is_empty(), "{rules}");
    }
}

#[test]
fn kong_increments_counters_only() {
    let counter = format!("{DEFINE_COUNTER} {INCREMENT} {INCREMENT}");
    let filter = module(Callbacks {
        configure: &counter,
        ..Default::default()
    });
    let proxy = start(&filter, kong("3.9.1"));
    assert!(proxy.traps().is_empty());
    assert_eq!(proxy.state().metrics[0].value, 2);
    let gauge = format!("{DEFINE_GAUGE} {INCREMENT}");
    let filter = module(Callbacks {
        configure: &gauge,
        ..Default::default()
    });
    let proxy = start(&filter, kong("3.9.1"));
    assert_eq!(proxy.traps().len(), 1);
    assert!(
        proxy.traps()[0].message.ends_with("metric not a counter"),
        "{}",
        proxy.traps()[0].message
    );
    // Envoy adds to a gauge.
    let proxy = start(&filter, Rules::Envoy);
    assert!(proxy.traps().is_empty());
    assert_eq!(proxy.state().metrics[0].value, 1);
}

#[test]
fn kong_3_9_reports_a_failed_call_with_dispatch_status() {
    use event_hooks_testhost::Reply;
    let filter = module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000)))",
        tick: "(call $dispatch)",
        ..Default::default()
    });
    // 3.9: the answer comes, without :status, with :dispatch_status; Kong logs the failure.
    let mut proxy = start(&filter, kong("3.9.1"));
    proxy.reply_with([Reply::Refuse]);
    proxy.advance(1_000);
    assert!(answered(&proxy));
    assert_eq!(proxy.host_errors().len(), 1, "{:?}", proxy.host_errors());
    assert!(proxy.host_errors()[0].contains("dispatch failed: tcp socket"));
    // 3.8: only the log line; the filter never hears of its call again.
    let mut proxy = start(&filter, kong("3.8.1"));
    proxy.reply_with([Reply::Refuse]);
    proxy.advance(1_000);
    assert!(!answered(&proxy));
    assert_eq!(proxy.host_errors().len(), 1);
    // Envoy: the answer comes, with no headers.
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.reply_with([Reply::Refuse]);
    proxy.advance(1_000);
    assert!(answered(&proxy));
    assert!(proxy.host_errors().is_empty());
}

#[test]
fn envoy_refuses_an_unknown_cluster_and_kong_fails_to_resolve_it() {
    let filter = module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000)))",
        tick: "(call $dispatch)",
        ..Default::default()
    });
    let mut options = Options::new(Rules::Envoy);
    options.clusters = vec!["other".to_string()];
    let mut proxy = Proxy::start(&filter, options, b"{}").unwrap();
    proxy.advance(1_000);
    assert_eq!(
        proxy.state().dispatches[0].outcome,
        DispatchOutcome::Refused(2)
    );
    let mut options = Options::new(kong("3.9.1"));
    options.resolvable.clear();
    let mut proxy = Proxy::start(&filter, options, b"{}").unwrap();
    proxy.advance(1_000);
    assert!(matches!(
        proxy.state().dispatches[0].outcome,
        DispatchOutcome::Accepted(_)
    ));
    assert!(proxy.received().is_empty());
    assert!(proxy.host_errors()[0].contains("resolver"));
    assert!(answered(&proxy), "3.9 reports the failure to the filter");
}

#[test]
fn a_module_importing_an_unknown_host_function_does_not_load() {
    let wat = r#"(module
      (import "env" "proxy_teleport" (func (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1")))"#;
    let filter = Filter::new(wat.as_bytes()).unwrap();
    let error = Proxy::start(&filter, Options::new(kong("3.9.1")), b"")
        .err()
        .unwrap();
    assert!(error.0.contains("missing host function"), "{error}");
    let error = Proxy::start(&filter, Options::new(Rules::Envoy), b"")
        .err()
        .unwrap();
    assert!(error.0.contains("env.proxy_teleport"), "{error}");
}

#[test]
fn kong_header_callbacks_never_see_end_of_stream() {
    let filter = module(Callbacks::default());
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.request(&Request::get("/"));
    assert_eq!(proxy.log_text().matches("end of stream").count(), 2);
    let mut proxy = start(&filter, kong("3.9.1"));
    proxy.request(&Request::get("/"));
    assert_eq!(proxy.log_text().matches("end of stream").count(), 0);
}

#[test]
fn kong_refuses_request_properties_outside_a_request() {
    let filter = module(Callbacks {
        configure: "(call $property)",
        property: "response\0code",
        ..Default::default()
    });
    let proxy = start(&filter, kong("3.9.1"));
    assert_eq!(proxy.host_errors().len(), 1, "{}", proxy.log_text());
    assert!(proxy.host_errors()[0].contains("cannot get ngx properties outside of a request"));
    assert!(start(&filter, Rules::Envoy).host_errors().is_empty());
}

#[test]
fn kong_logs_an_error_for_envoy_only_properties() {
    for property in ["response\0flags", "response\0code_details"] {
        let filter = module(Callbacks {
            request_headers: "(call $property)",
            property,
            ..Default::default()
        });
        let mut proxy = start(&filter, kong("3.9.1"));
        proxy.request(&Request::get("/"));
        assert_eq!(proxy.host_errors().len(), 1, "{property}");
        assert!(proxy.host_errors()[0].contains("property not supported"));
        let mut proxy = start(&filter, Rules::Envoy);
        proxy.request(&Request::get("/"));
        assert!(proxy.host_errors().is_empty());
    }
}
