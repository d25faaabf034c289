//! The host's rules, proved with small deliberately wrong filters written in WAT: what Kong
//! (ngx_wasm_module) refuses and Envoy accepts.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_hooks_testhost::memory::encode_pairs;
use event_hooks_testhost::state::{CtxValue, DispatchOutcome, Options, Origin, Step};
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
const HEADER_KEY: u32 = 2752;
const DETAILS: u32 = 2816;
const MISSING: u32 = 3072;
const HAS_ENV: u32 = 3104;
const NO_ENV: u32 = 3120;
const STATUS: u32 = 3136;
const OUT: u32 = 4000;
const OUT_SIZE: u32 = 4008;
const ENV_COUNT: u32 = 4016;

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The callbacks' bodies (WAT instructions, leaving nothing on the stack).
#[derive(Default)]
pub(crate) struct Callbacks<'a> {
    pub configure: &'a str,
    pub tick: &'a str,
    pub request_headers: &'a str,
    pub response_headers: &'a str,
    pub log: &'a str,
    pub call_response: &'a str,
    /// The property `(call $property)` reads (segments separated by NUL); its value is logged.
    /// `(call $property_status)` logs the status of that read: `status <digit>` (0 Ok,
    /// 1 NotFound, 2 BadArgument, ...).
    pub property: &'a str,
    /// The header name `(call $lookup (i32.const <map>))` looks up; its value is logged, or
    /// "header missing". `(call $lookup_status (i32.const <map>))` logs the status of that
    /// lookup, `(call $pairs_status (i32.const <map>))` of reading the whole map: `status
    /// <digit>`.
    pub header: &'a str,
    /// The `details` of `(call $local_response)` (a 401).
    pub details: &'a str,
}

/// A minimal proxy-wasm module whose callbacks do what `callbacks` says. `(call $dispatch)`
/// posts to `receiver` (a cluster on Envoy, a host on Kong); `(call $call_body)` reads a call's
/// answer body and logs it; `(call $pairs (i32.const <map>))` logs a header map as serialized
/// (names and values, NUL-separated); `(call $env)` logs "has env" or "no env" (WASI
/// `environ_sizes_get`).
pub(crate) fn module(callbacks: Callbacks<'_>) -> Filter {
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
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $get_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $send_local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes (param i32 i32) (result i32)))
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
  (data (i32.const {HEADER_KEY}) "{header}")
  (data (i32.const {DETAILS}) "{details}")
  (data (i32.const {MISSING}) "header missing")
  (data (i32.const {HAS_ENV}) "has env")
  (data (i32.const {NO_ENV}) "no env")
  (data (i32.const {STATUS}) "status ?")
  (func $log_status (param $status i32)
    (i32.store8 (i32.const {status_digit}) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $log (i32.const 2) (i32.const {STATUS}) (i32.const 8))))
  (func $property_status
    (call $log_status (call $get_property (i32.const {PROPERTY}) (i32.const {property_len})
      (i32.const {OUT}) (i32.const {OUT_SIZE}))))
  (func $lookup_status (param $map i32)
    (call $log_status (call $get_header (local.get $map) (i32.const {HEADER_KEY})
      (i32.const {header_len}) (i32.const {OUT}) (i32.const {OUT_SIZE}))))
  (func $pairs_status (param $map i32)
    (call $log_status (call $get_pairs (local.get $map) (i32.const {OUT}) (i32.const {OUT_SIZE}))))
  (func $log_out
    (drop (call $log (i32.const 2) (i32.load (i32.const {OUT})) (i32.load (i32.const {OUT_SIZE})))))
  (func $property
    (if (i32.eqz (call $get_property (i32.const {PROPERTY}) (i32.const {property_len})
      (i32.const {OUT}) (i32.const {OUT_SIZE})))
      (then (call $log_out))))
  (func $call_body
    (if (i32.eqz (call $get_buffer (i32.const 4) (i32.const 0) (i32.const 1000)
      (i32.const {OUT}) (i32.const {OUT_SIZE})))
      (then (call $log_out))))
  (func $lookup (param $map i32)
    (if (i32.eqz (call $get_header (local.get $map) (i32.const {HEADER_KEY}) (i32.const {header_len})
      (i32.const {OUT}) (i32.const {OUT_SIZE})))
      (then (call $log_out))
      (else (drop (call $log (i32.const 2) (i32.const {MISSING}) (i32.const 14))))))
  (func $pairs (param $map i32)
    (if (i32.eqz (call $get_pairs (local.get $map) (i32.const {OUT}) (i32.const {OUT_SIZE})))
      (then (call $log_out))))
  (func $local_response
    (drop (call $send_local (i32.const 401) (i32.const {DETAILS}) (i32.const {details_len})
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1))))
  (func $env
    (drop (call $environ_sizes (i32.const {ENV_COUNT}) (i32.const {OUT_SIZE})))
    (if (i32.load (i32.const {ENV_COUNT}))
      (then (drop (call $log (i32.const 2) (i32.const {HAS_ENV}) (i32.const 7))))
      (else (drop (call $log (i32.const 2) (i32.const {NO_ENV}) (i32.const 6))))))
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
    (call $log_end_of_stream (local.get 2)) {response_headers} (i32.const 0))
  (func (export "proxy_on_log") (param i32) {log})
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $log (i32.const 2) (i32.const {MESSAGE}) (i32.const {message_len}))) {call_response})
)"#,
        headers = escape(&headers),
        headers_len = headers.len(),
        status_digit = STATUS + 7,
        upstream = escape(upstream),
        upstream_len = upstream.len(),
        zoned = escape(zoned),
        other = escape(other),
        metric = escape(metric),
        message = escape(message),
        message_len = message.len(),
        property = escape(callbacks.property.as_bytes()),
        property_len = callbacks.property.len(),
        header = escape(callbacks.header.as_bytes()),
        header_len = callbacks.header.len(),
        details = escape(callbacks.details.as_bytes()),
        details_len = callbacks.details.len(),
        response_headers = callbacks.response_headers,
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

// --- Kong, as observed on the real host -------------------------------------------------------

const KONG_PINS: [&str; 7] = [
    "3.4.2", "3.5.0", "3.6.1", "3.7.1", "3.8.1", "3.9.1", "3.10.0",
];

/// One call per second from `on_tick`, plus what `tick` adds.
fn ticking<'a>(tick: &'a str, call_response: &'a str) -> Filter {
    module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000)))",
        tick,
        call_response,
        ..Default::default()
    })
}

#[test]
fn kong_crashes_on_a_call_made_from_a_call_answer() {
    let filter = ticking("(call $dispatch)", "(call $dispatch)");
    for version in KONG_PINS {
        let mut proxy = start(&filter, kong(version));
        proxy.advance(5_000);
        let traps = proxy.traps();
        assert_eq!(traps.len(), 1, "Kong {version}: {}", proxy.log_text());
        assert!(traps[0].is_crash(), "{}", traps[0]);
        assert_eq!(
            traps[0].message,
            "worker process exited on signal 11 (SIGSEGV in \
             ngx_http_proxy_wasm_dispatch_request: the finished call's connection slot was reused)"
        );
        assert_eq!(traps[0].callback, "proxy_on_http_call_response");
        assert_eq!(traps[0].host_function.as_deref(), Some("proxy_http_call"));
        assert!(proxy.dead() && proxy.crashed());
        assert!(
            proxy
                .host_errors()
                .iter()
                .any(|line| line.contains("[crit]") && line.contains("SIGSEGV")),
            "{:?}",
            proxy.host_errors()
        );
        let dispatches = &proxy.state().dispatches;
        assert_eq!(dispatches.len(), 2);
        assert_eq!(dispatches[1].step, Step::CallResponse);
        assert!(matches!(dispatches[1].outcome, DispatchOutcome::Trapped(_)));
        assert_eq!(proxy.received().len(), 1, "the second call is never sent");
    }
    // Envoy sends from a call's answer (each answer 100 ms after its call).
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.receiver_delay(100);
    proxy.advance(1_250);
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
    let times: Vec<u64> = proxy.received().iter().map(|r| r.at_ms).collect();
    assert_eq!(times, vec![1_000, 1_100, 1_200]);
}

#[test]
fn kong_3_7_and_later_leak_a_slot_per_parallel_call_of_a_root_context() {
    let filter = ticking("(call $dispatch) (call $dispatch)", "");
    for version in ["3.7.1", "3.8.1", "3.9.1", "3.10.0"] {
        let mut proxy = start(&filter, kong(version));
        proxy.advance(5_000);
        assert_eq!(proxy.received().len(), 10, "Kong {version}");
        // Of the two calls of each tick, the one that ends first leaks.
        assert_eq!(
            proxy.leaked_slots(),
            5,
            "Kong {version}\n{}",
            proxy.log_text()
        );
        let message = kong(version).kong_version().unwrap().more_pending_message();
        assert_eq!(proxy.log_text().matches(message).count(), 5);
        assert!(proxy.host_errors().is_empty(), "{:?}", proxy.host_errors());
        assert!(proxy.traps().is_empty());
    }
    assert!(
        proxy_log(&filter, "3.10.0").contains("proxy_wasm more dispatch operations pending...")
    );
    // 3.6 and earlier, and Envoy: nothing leaks.
    for rules in [kong("3.4.2"), kong("3.6.1"), Rules::Envoy] {
        let mut proxy = start(&filter, rules);
        proxy.advance(5_000);
        assert_eq!(proxy.received().len(), 10, "{rules}");
        assert_eq!(proxy.leaked_slots(), 0, "{rules}");
    }
    // One call in flight at a time leaks nothing.
    let mut proxy = start(&ticking("(call $dispatch)", ""), kong("3.10.0"));
    proxy.advance(5_000);
    assert_eq!(proxy.leaked_slots(), 0);
}

fn proxy_log(filter: &Filter, version: &str) -> String {
    let mut proxy = start(filter, kong(version));
    proxy.advance(1_000);
    proxy.log_text()
}

#[test]
fn kong_failed_calls_leak_nothing() {
    use event_hooks_testhost::Reply;
    let filter = ticking("(call $dispatch) (call $dispatch)", "");
    for reply in [Reply::Refuse, Reply::Silence] {
        for version in ["3.7.1", "3.9.1", "3.10.0"] {
            let mut proxy = start(&filter, kong(version));
            proxy.reply_with(std::iter::repeat_n(reply.clone(), 20));
            proxy.advance(5_000);
            assert_eq!(proxy.leaked_slots(), 0, "Kong {version}, {reply:?}");
        }
    }
    // Only a call of a root context leaks: two calls of a request leak nothing.
    let filter = module(Callbacks {
        request_headers: "(call $dispatch) (call $dispatch)",
        ..Default::default()
    });
    let mut proxy = start(&filter, kong("3.10.0"));
    proxy.request(&Request::get("/"));
    assert_eq!(proxy.received().len(), 2);
    assert_eq!(proxy.leaked_slots(), 0);
}

#[test]
fn kong_runs_out_of_worker_connections_when_slots_leak() {
    let filter = ticking("(call $dispatch) (call $dispatch)", "");
    let mut options = Options::new(kong("3.10.0"));
    options.worker_connections = 6;
    let mut proxy = Proxy::start(&filter, options, b"{}").unwrap();
    proxy.receiver_delay(500);
    // Each tick's first call to end leaks: 4 slots by 4.5 s. From then on, a tick's second call
    // finds no free slot for its fake request (4 leaked, 2 held by the first call).
    proxy.advance(4_600);
    assert_eq!(proxy.leaked_slots(), 4, "{}", proxy.log_text());
    assert!(proxy.host_errors().is_empty(), "{:?}", proxy.host_errors());
    // 4 leaked + 2 for the client: just enough.
    let outcome = proxy.request(&Request::get("/"));
    assert_eq!(outcome.status, 200);
    proxy.advance(500);
    let refused = &proxy.state().dispatches.last().unwrap().outcome;
    assert_eq!(
        *refused,
        DispatchOutcome::Refused(10),
        "{}",
        proxy.log_text()
    );
    assert_eq!(
        proxy.host_errors(),
        vec!["+5000ms [crit] (host) 6 worker_connections are not enough".to_string()]
    );
    // With a call in flight (2 slots), a client gets 502 without the filter seeing it.
    let contexts = proxy.state().calls_made.len();
    let outcome = proxy.request(&Request::get("/"));
    assert_eq!(
        (outcome.status, outcome.reason.as_str()),
        (502, "Bad Gateway")
    );
    assert_eq!(outcome.context, 0);
    assert_eq!(proxy.state().calls_made.len(), contexts);
    assert_eq!(proxy.host_errors().len(), 2);
    assert_eq!(proxy.leaked_slots(), 4, "no leak with one call in flight");
    // Kong 3.6 leaks nothing: the same traffic is served.
    let mut options = Options::new(kong("3.6.1"));
    options.worker_connections = 6;
    let mut proxy = Proxy::start(&filter, options, b"{}").unwrap();
    proxy.receiver_delay(500);
    proxy.advance(5_100);
    assert_eq!(proxy.request(&Request::get("/")).status, 200);
    assert!(proxy.host_errors().is_empty(), "{:?}", proxy.host_errors());
}

#[test]
fn kong_keeps_the_case_of_header_names_and_envoy_lowercases_them() {
    use event_hooks_testhost::Reply;
    let filter = module(Callbacks {
        request_headers: "(call $pairs (i32.const 0))",
        response_headers: "(call $pairs (i32.const 2))",
        ..Default::default()
    });
    let request = Request::get("/")
        .header("X-Event-Data", "1")
        .body("{}")
        .response_header("X-Upstream", "2");
    let mut proxy = start(&filter, kong("3.9.1"));
    proxy.request(&request);
    let log = proxy.log_text();
    for name in [
        "\0X-Event-Data\0",
        "\0Content-Length\0",
        "\0X-Upstream\0",
        "\0Date\0",
    ] {
        assert!(log.contains(name), "Kong: {name:?} in {log:?}");
    }
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.request(&request);
    let log = proxy.log_text();
    for name in [
        "\0x-event-data\0",
        "\0content-length\0",
        "\0x-upstream\0",
        "\0date\0",
    ] {
        assert!(log.contains(name), "Envoy: {name:?} in {log:?}");
    }
    assert!(!log.contains("X-Event-Data") && !log.contains("X-Upstream"));

    // A call's answer: the receiver's names as sent on Kong, lowercased by Envoy.
    let filter = ticking("(call $dispatch)", "(call $pairs (i32.const 6))");
    let reply = Reply::Status {
        status: 429,
        headers: vec![("Retry-After".to_string(), "5".to_string())],
        body: String::new(),
    };
    let mut proxy = start(&filter, kong("3.9.1"));
    proxy.reply_with([reply.clone()]);
    proxy.advance(1_000);
    assert!(
        proxy.log_text().contains("\0Retry-After\0"),
        "{}",
        proxy.log_text()
    );
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.reply_with([reply]);
    proxy.advance(1_000);
    assert!(
        proxy.log_text().contains("\0retry-after\0"),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn header_lookups_by_name_are_case_insensitive_on_both_hosts() {
    for (map, callbacks) in [
        (
            "request",
            Callbacks {
                request_headers: "(call $lookup (i32.const 0))",
                header: "x-event-data",
                ..Default::default()
            },
        ),
        (
            "response",
            Callbacks {
                response_headers: "(call $lookup (i32.const 2))",
                header: "content-length",
                ..Default::default()
            },
        ),
    ] {
        let filter = module(callbacks);
        for rules in [kong("3.4.2"), kong("3.10.0"), Rules::Envoy] {
            let mut proxy = start(&filter, rules);
            proxy.request(
                &Request::get("/")
                    .header("X-Event-Data", "v1")
                    .response_body("ok"),
            );
            let log = proxy.log_text();
            assert!(!log.contains("header missing"), "{rules}, {map}: {log}");
        }
    }
}

#[test]
fn kong_authority_is_the_server_name_and_port() {
    let filter = module(Callbacks {
        request_headers: "(call $pairs (i32.const 0))",
        ..Default::default()
    });
    let mut request = Request::get("/");
    request.authority = "API.example.com:8443".to_string();
    let mut proxy = start(&filter, kong("3.9.1"));
    proxy.request(&request);
    let log = proxy.log_text();
    assert!(log.contains(":authority\0kong:8000\0"), "{log:?}");
    assert!(log.contains("\0Host\0API.example.com:8443\0"), "{log:?}");
    let mut options = Options::new(kong("3.9.1"));
    options.server_name = "edge".to_string();
    options.listen_port = 9000;
    let mut proxy = Proxy::start(&filter, options, b"{}").unwrap();
    proxy.request(&request);
    assert!(proxy.log_text().contains(":authority\0edge:9000\0"));
    // Envoy: the Host header is `:authority`.
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.request(&request);
    let log = proxy.log_text();
    assert!(
        log.contains(":authority\0API.example.com:8443\0"),
        "{log:?}"
    );
    assert!(!log.contains("Host\0"), "{log:?}");

    // nginx variables: $host (lowercased, no port), $http_host (verbatim), $server_port.
    for (property, expected) in [
        ("ngx\0host", "api.example.com"),
        ("ngx\0http_host", "API.example.com:8443"),
        ("ngx\0server_port", "9000"),
        ("kong\0request\0port", "9000"),
    ] {
        let filter = module(Callbacks {
            request_headers: "(call $property)",
            property,
            ..Default::default()
        });
        let mut options = Options::new(kong("3.9.1"));
        options.listen_port = 9000;
        let mut proxy = Proxy::start(&filter, options, b"{}").unwrap();
        proxy.request(&request);
        let value = proxy
            .state()
            .logs
            .iter()
            .rev()
            .find(|l| l.message == expected);
        assert!(value.is_some(), "{property:?}: {}", proxy.log_text());
    }
    // Without a Host header, $host is the server name.
    let filter = module(Callbacks {
        request_headers: "(call $property)",
        property: "ngx\0host",
        ..Default::default()
    });
    let mut proxy = start(&filter, kong("3.9.1"));
    let mut bare = Request::get("/");
    bare.authority = String::new();
    proxy.request(&bare);
    assert!(proxy.state().logs.iter().any(|l| l.message == "kong"));
}

#[test]
fn kong_nginx_version_is_readable_in_a_request_only() {
    let filter = module(Callbacks {
        request_headers: "(call $property)",
        property: "ngx\0nginx_version",
        ..Default::default()
    });
    for (version, nginx) in [
        ("3.4.2", "1.21.4"),
        ("3.5.0", "1.21.4"),
        ("3.6.1", "1.25.3"),
        ("3.9.1", "1.25.3"),
        ("3.10.0", "1.27.1"),
    ] {
        let mut proxy = start(&filter, kong(version));
        proxy.request(&Request::get("/"));
        assert!(
            proxy.state().logs.iter().any(|line| line.message == nginx),
            "Kong {version}: {}",
            proxy.log_text()
        );
    }
    // Envoy has no nginx variables.
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.request(&Request::get("/"));
    assert!(!proxy.log_text().contains("1."));
    // The root context: the "outside of a request" error.
    refused_outside_a_request(
        "ngx\0nginx_version",
        &[("3.9.1", "ngx"), ("3.10.0", "scoped")],
    );
}

#[test]
fn kong_3_4_and_3_5_crash_reading_a_call_answer_body_in_the_root_context() {
    use event_hooks_testhost::Reply;
    let filter = ticking("(call $dispatch)", "(call $call_body)");
    let reply = Reply::Status {
        status: 200,
        headers: Vec::new(),
        body: "delivered".to_string(),
    };
    for version in ["3.4.2", "3.5.0"] {
        let mut proxy = start(&filter, kong(version));
        proxy.reply_with([reply.clone()]);
        proxy.advance(3_000);
        let traps = proxy.traps();
        assert_eq!(traps.len(), 1, "Kong {version}: {}", proxy.log_text());
        assert!(traps[0].is_crash());
        assert!(
            traps[0]
                .message
                .contains("SIGSEGV in ngx_proxy_wasm_get_buffer_helper"),
            "{}",
            traps[0]
        );
        assert_eq!(traps[0].callback, "proxy_on_http_call_response");
        assert_eq!(
            traps[0].host_function.as_deref(),
            Some("proxy_get_buffer_bytes")
        );
        assert!(proxy.dead());
        assert_eq!(proxy.received().len(), 1, "no tick after the crash");
    }
    for rules in [kong("3.6.1"), kong("3.10.0"), Rules::Envoy] {
        let mut proxy = start(&filter, rules);
        proxy.reply_with([reply.clone()]);
        proxy.advance(3_000);
        assert!(proxy.traps().is_empty(), "{rules}: {}", proxy.log_text());
        assert!(proxy.log_text().contains("delivered"));
    }
    // Status and headers stay safe on 3.4.
    let filter = ticking("(call $dispatch)", "(call $pairs (i32.const 6))");
    let mut proxy = start(&filter, kong("3.4.2"));
    proxy.reply_with([reply.clone()]);
    proxy.advance(3_000);
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
    // A request's own call has a request context: its answer body is read safely.
    let filter = module(Callbacks {
        request_headers: "(call $dispatch)",
        call_response: "(call $call_body)",
        ..Default::default()
    });
    let mut proxy = start(&filter, kong("3.4.2"));
    proxy.reply_with([reply]);
    proxy.request(&Request::get("/"));
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
    assert!(proxy.log_text().contains("delivered"));
}

#[test]
fn kong_before_3_7_gives_the_vm_no_environment() {
    let filter = module(Callbacks {
        configure: "(call $env)",
        ..Default::default()
    });
    for (rules, expected) in [
        (kong("3.4.2"), "no env"),
        (kong("3.6.1"), "no env"),
        (kong("3.7.1"), "has env"),
        (kong("3.10.0"), "has env"),
        (Rules::Envoy, "has env"),
    ] {
        let mut options = Options::new(rules);
        options.env = vec![("EVENT_HOOKS_SECRET".to_string(), "s3cr3t".to_string())];
        let proxy = Proxy::start(&filter, options, b"{}").unwrap();
        assert!(
            proxy.state().logs.iter().any(|l| l.message == expected),
            "{rules}: {}",
            proxy.log_text()
        );
    }
}

#[test]
fn kong_crashes_reading_plugin_name_in_the_root_context() {
    let filter = module(Callbacks {
        configure: "(call $property)",
        property: "plugin_name",
        ..Default::default()
    });
    for version in KONG_PINS {
        let proxy = start(&filter, kong(version));
        assert_eq!(proxy.traps().len(), 1, "Kong {version}");
        assert!(proxy.traps()[0].is_crash());
        assert!(proxy.traps()[0].message.contains("get_filter_name"));
        assert_eq!(proxy.traps()[0].callback, "proxy_on_configure");
        assert!(!proxy.configured);
    }
    let proxy = start(&filter, Rules::Envoy);
    assert!(proxy.traps().is_empty() && proxy.configured);
    // In a request it is the filter's name.
    let filter = module(Callbacks {
        request_headers: "(call $property)",
        property: "plugin_name",
        ..Default::default()
    });
    let mut proxy = start(&filter, kong("3.4.2"));
    proxy.request(&Request::get("/"));
    assert!(proxy.traps().is_empty());
    assert!(
        proxy
            .state()
            .logs
            .iter()
            .any(|l| l.message == "event_hooks")
    );
    // In on_tick: a crash until 3.10 (ngx_wasm_module fa0cd87c).
    let filter_in_tick = module(Callbacks {
        configure: "(drop (call $tick (i32.const 1000)))",
        tick: "(call $property)",
        property: "plugin_name",
        ..Default::default()
    });
    let mut proxy = start(&filter_in_tick, kong("3.9.1"));
    proxy.advance(1_000);
    assert!(proxy.crashed(), "{}", proxy.log_text());
    let mut proxy = start(&filter_in_tick, kong("3.10.0"));
    proxy.advance(1_000);
    assert!(proxy.traps().is_empty(), "{}", proxy.log_text());
}

#[test]
fn kong_reason_phrase_is_the_local_response_details() {
    let filter = module(Callbacks {
        request_headers: "(call $local_response)",
        details: "event_hooks_admin",
        ..Default::default()
    });
    for version in ["3.4.2", "3.10.0"] {
        let mut proxy = start(&filter, kong(version));
        let outcome = proxy.request(&Request::get("/"));
        assert_eq!(outcome.status, 401, "{}", proxy.log_text());
        assert_eq!(outcome.reason, "event_hooks_admin", "Kong {version}");
    }
    let mut proxy = start(&filter, Rules::Envoy);
    let outcome = proxy.request(&Request::get("/"));
    assert_eq!(
        (outcome.status, outcome.reason.as_str()),
        (401, "Unauthorized")
    );
    // Empty details: the standard phrase.
    let filter = module(Callbacks {
        request_headers: "(call $local_response)",
        ..Default::default()
    });
    let mut proxy = start(&filter, kong("3.9.1"));
    assert_eq!(proxy.request(&Request::get("/")).reason, "Unauthorized");
    // The upstream's answer.
    let mut proxy = start(&module(Callbacks::default()), kong("3.9.1"));
    assert_eq!(
        proxy.request(&Request::get("/").status(503)).reason,
        "Service Unavailable"
    );
}

#[test]
fn kong_3_4_and_3_5_share_one_pin() {
    // 21732b18: no step check up front (a call from on_log fails deeper, as a trap), and
    // set_tick_period outside the root context is ignored.
    let on_log = module(Callbacks {
        log: "(call $dispatch)",
        ..Default::default()
    });
    let tick_in_request = module(Callbacks {
        request_headers: "(drop (call $tick (i32.const 1000)))",
        ..Default::default()
    });
    for version in ["3.4.2", "3.5.0"] {
        let mut proxy = start(&on_log, kong(version));
        proxy.request(&Request::get("/"));
        assert_eq!(proxy.traps()[0].message, "dispatch failed: bad step");
        let mut proxy = start(&tick_in_request, kong(version));
        proxy.request(&Request::get("/"));
        assert!(proxy.traps().is_empty());
    }
}

#[test]
fn kong_crashes_reading_request_state_from_the_root_context() {
    // The request's headers: every version (ngx_proxy_wasm_maps_get_map reads rctx->r).
    let filter = module(Callbacks {
        configure: "(call $lookup (i32.const 0))",
        header: "host",
        ..Default::default()
    });
    for version in ["3.4.2", "3.10.0"] {
        let proxy = start(&filter, kong(version));
        assert!(proxy.crashed(), "Kong {version}: {}", proxy.log_text());
        assert!(
            proxy.traps()[0]
                .message
                .contains("ngx_proxy_wasm_maps_get_map")
        );
    }
    let proxy = start(&filter, Rules::Envoy);
    assert!(proxy.traps().is_empty());
    // A property with a getter of its own: a crash before 3.10, the scoped error from 3.10.
    let filter = module(Callbacks {
        configure: "(call $property)",
        property: "request\0id",
        ..Default::default()
    });
    let proxy = start(&filter, kong("3.9.1"));
    assert!(proxy.crashed(), "{}", proxy.log_text());
    let proxy = start(&filter, kong("3.10.0"));
    assert!(proxy.traps().is_empty());
    assert!(proxy.host_errors()[0].contains("cannot get scoped properties outside of a request"));
}

/// What the filter logged (its `$property` reads), "end of stream" notes left out.
fn filter_lines(proxy: &Proxy) -> Vec<String> {
    proxy
        .state()
        .logs
        .iter()
        .filter(|line| line.origin == Origin::Filter && line.message != "end of stream")
        .map(|line| line.message.clone())
        .collect()
}

#[test]
fn kong_3_6_and_later_answer_kong_ctx_shared_with_tostring() {
    let filter = module(Callbacks {
        log: "(call $property)",
        property: "kong\0ctx\0shared\0event_hooks",
        ..Default::default()
    });
    let emitted = r#"{"payments.refund-issued":{"order_id":"42"}}"#;
    let cases = [
        (CtxValue::string(emitted), emitted),
        (CtxValue::Number(300.0), "300"),
        (CtxValue::Number(1.5), "1.5"),
        (CtxValue::Boolean(false), "false"),
        (CtxValue::Table, "table: 0x"),
    ];
    for version in KONG_PINS {
        let rules = kong(version);
        let answers = rules.kong_version().unwrap().has_kong_properties();
        for (value, printed) in &cases {
            let mut proxy = start(&filter, rules);
            proxy.request(
                &Request::get("/")
                    .ctx_shared("authenticated_groups", CtxValue::Table)
                    .ctx_shared("event_hooks", value.clone()),
            );
            let lines = filter_lines(&proxy);
            if answers {
                assert_eq!(lines.len(), 1, "Kong {version}: {lines:?}");
                assert!(lines[0].starts_with(printed), "Kong {version}: {lines:?}");
            } else {
                // No `kong.*` namespace: not found, silently.
                assert!(lines.is_empty(), "Kong {version}: {lines:?}");
            }
            assert!(proxy.host_errors().is_empty(), "Kong {version}");
        }
        // Nothing stored (another key only): not found. Stored twice: the last value holds.
        let mut proxy = start(&filter, rules);
        proxy.request(&Request::get("/").ctx_shared("event_hook", CtxValue::string("{}")));
        proxy.request(
            &Request::get("/")
                .ctx_shared("event_hooks", CtxValue::string("first"))
                .ctx_shared("event_hooks", CtxValue::string("last")),
        );
        let expected: Vec<String> = if answers {
            vec!["last".to_string()]
        } else {
            Vec::new()
        };
        assert_eq!(filter_lines(&proxy), expected, "Kong {version}");
        assert!(proxy.host_errors().is_empty(), "Kong {version}");
    }
    // Envoy has no kong.ctx.shared.
    let mut proxy = start(&filter, Rules::Envoy);
    proxy.request(&Request::get("/").ctx_shared("event_hooks", CtxValue::string("{}")));
    assert!(filter_lines(&proxy).is_empty());
    // The root context: the "outside of a request" error, as for any `kong.*` property.
    refused_outside_a_request(
        "kong\0ctx\0shared\0event_hooks",
        &[("3.6.1", "host"), ("3.10.0", "scoped")],
    );
}

/// Read from the root context (`on_configure`), `property` makes each Kong version log its
/// "cannot get <what> properties outside of a request" error, without a trap.
fn refused_outside_a_request(property: &str, versions: &[(&str, &str)]) {
    let filter = module(Callbacks {
        configure: "(call $property)",
        property,
        ..Default::default()
    });
    for (version, what) in versions {
        let proxy = start(&filter, kong(version));
        assert_eq!(
            proxy.host_errors(),
            vec![format!(
                "+0ms [error] (host) [wasm] cannot get {what} properties outside of a request"
            )],
            "Kong {version}"
        );
        assert!(proxy.traps().is_empty(), "Kong {version}");
    }
}
