//! What the tests of the real filter share: the filter, a started proxy, a call's JSON body.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_hooks_testhost::state::Options;
use event_hooks_testhost::{Filter, Proxy, Received, Request, Rules};
use serde_json::Value;

/// `target/wasm32-wasip1/release/event_hooks.wasm`, compiled once per test process.
pub fn filter() -> &'static Filter {
    Filter::event_hooks().unwrap()
}

pub fn kong(version: &str) -> Rules {
    Rules::kong(version).unwrap()
}

/// The filter started with `config`, which it must accept.
pub fn start_with(options: Options, config: Value) -> Proxy {
    let proxy = Proxy::start(filter(), options, config.to_string().as_bytes()).unwrap();
    assert!(proxy.configured, "{}", proxy.log_text());
    proxy
}

pub fn start(rules: Rules, config: Value) -> Proxy {
    start_with(Options::new(rules), config)
}

/// The JSON body a receiver got.
pub fn body(call: &Received) -> Value {
    serde_json::from_slice(&call.body).unwrap()
}

/// No trap, no crash, no error the host logged itself.
pub fn assert_no_trap_nor_host_error(proxy: &Proxy) {
    assert!(
        proxy.traps().is_empty(),
        "{}: traps {:?}\n{}",
        proxy.rules(),
        proxy.traps(),
        proxy.log_text()
    );
    assert!(
        proxy.host_errors().is_empty(),
        "{}: host errors {:?}\n{}",
        proxy.rules(),
        proxy.host_errors(),
        proxy.log_text()
    );
}

/// No trap, no crash, no error the host logged itself, no leaked connection slot.
pub fn assert_clean(proxy: &Proxy) {
    assert_no_trap_nor_host_error(proxy);
    assert_eq!(proxy.leaked_slots(), 0, "{}: leaked slots", proxy.rules());
}

/// The admin status of this worker (its root context).
pub fn status(proxy: &mut Proxy) -> Value {
    let outcome =
        proxy.request(&Request::get("/event-hooks/status").header("Authorization", "Bearer t0ken"));
    assert_eq!(outcome.status, 200, "{}", proxy.log_text());
    serde_json::from_slice(&outcome.local_response.unwrap().body).unwrap()
}
