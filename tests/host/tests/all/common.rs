//! What the tests of the real filter share: the filter, a started proxy, a call's JSON body.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use event_hooks_testhost::state::Options;
use event_hooks_testhost::{Filter, Proxy, Received, Rules};
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
