//! Events a Kong Lua plugin emits for the filter (issue 13), through the property namespace
//! `kong.ctx.shared` Kong 3.6+ gives wasm filters (`kong/runloop/wasm.lua`): the filter reads
//! `kong.ctx.shared.event_hooks` in its log phase and gets `tostring` of what the plugin
//! stored, so the plugin stores JSON text (`cjson.encode`). Kong 3.4 and 3.5 have no such
//! namespace: the filter never reads it there. Envoy's channels (dynamic metadata, filter
//! state) are in `access_logger.rs`, as an HTTP filter and as an access logger; the e2e tests
//! prove them through the real Envoy.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{assert_clean, body, kong, start, status};

use event_hooks_testhost::signature::verify;
use event_hooks_testhost::state::{CtxValue, Level};
use event_hooks_testhost::{Outcome, Proxy, Request, Rules};
use serde_json::{Value, json};

/// The property the filter reads on Kong.
const READ: &str = "proxy_get_property(kong.ctx.shared.event_hooks)";

/// A plugin's `cjson.encode({["payments.refund-issued"] = {...}})` (cjson writes a whole
/// double without a fraction).
const REFUND: &str =
    r#"{"payments.refund-issued":{"order_id":"42","amount":300,"currency":"EUR"}}"#;

/// `payments` published (`refund-issued`), and a signed webhook on it.
fn published() -> Value {
    json!({
        "publish": {
            "payments": {
                "description": "Events the refund-events plugin emits",
                "events": {
                    "refund-issued": {"fields": ["order_id", "amount", "currency"],
                                      "unique": ["order_id"]}
                }
            }
        },
        "hooks": [
            {"name": "refunds", "source": "payments", "event": "refund-issued",
             "handler": "webhook", "config": {"url": "http://receiver/refunds", "secret": "hunter2"}}
        ],
        "admin": {"token": "t0ken"}
    })
}

/// `POST /refunds` answered 201, with what the Lua plugins stored in `kong.ctx.shared`.
fn refund(shared: &[(&str, CtxValue)]) -> Request {
    shared.iter().fold(
        Request::get("/refunds").method("POST").status(201),
        |request, (key, value)| request.ctx_shared(key, value.clone()),
    )
}

/// How often the filter has read `kong.ctx.shared.event_hooks` so far.
fn reads(proxy: &Proxy) -> u64 {
    proxy.state().calls_made.get(READ).copied().unwrap_or(0)
}

/// Sends `request`; the number of reads of the property it made, and its outcome.
fn send(proxy: &mut Proxy, request: &Request) -> (u64, Outcome) {
    let before = reads(proxy);
    let outcome = proxy.request(request);
    (reads(proxy) - before, outcome)
}

/// Traffic goes on as if nothing had been emitted: the upstream's 201, no local answer.
fn assert_untouched(rules: Rules, outcome: &Outcome) {
    assert_eq!(outcome.status, 201, "{rules}");
    assert!(outcome.local_response.is_none(), "{rules}: {outcome:?}");
}

/// The status endpoint's count of emissions dropped for `reason`, and the accepted ones.
fn emissions(proxy: &mut Proxy, reason: &str) -> (u64, u64) {
    let shown = status(proxy);
    let emissions = &shown["emissions"];
    (
        emissions["accepted"].as_u64().unwrap(),
        emissions["dropped"][reason].as_u64().unwrap(),
    )
}

/// The value of the metric whose name ends with `suffix` (the filter makes metrics on Kong
/// 3.9 and later).
fn metric(proxy: &Proxy, suffix: &str) -> i64 {
    let metric = proxy
        .state()
        .metrics
        .iter()
        .find(|metric| metric.name.ends_with(suffix));
    metric
        .unwrap_or_else(|| panic!("no metric {suffix}: {:?}", proxy.state().metrics))
        .value
}

/// Runs `test` under each Kong `versions` on a filter started with `config`, then checks that
/// nothing trapped, crashed, logged a host error or leaked a connection slot.
fn on_kong(versions: &[&str], config: &Value, test: impl Fn(&str, Rules, &mut Proxy)) {
    for version in versions {
        let rules = kong(version);
        let mut proxy = start(rules, config.clone());
        test(version, rules, &mut proxy);
        assert_clean(&proxy);
    }
}

#[test]
fn kong_3_6_and_later_deliver_what_a_lua_plugin_emitted() {
    on_kong(&["3.6.1", "3.10.0"], &published(), |_, rules, proxy| {
        let (read, outcome) = send(
            proxy,
            &refund(&[
                // What other plugins keep there is none of the filter's business.
                ("authenticated_groups", CtxValue::Table),
                ("event_hooks", CtxValue::string(REFUND)),
            ]),
        );
        assert_eq!(read, 1, "{rules}: one read per request");
        assert_untouched(rules, &outcome);
        assert!(
            proxy.advance_until(60_000, |proxy| proxy.received().len() == 1),
            "{rules}\n{}",
            proxy.log_text()
        );
        let call = &proxy.received()[0];
        assert_eq!(call.path, "/refunds", "{rules}");
        assert_eq!(
            body(call),
            json!({"order_id": "42", "amount": 300, "currency": "EUR",
                   "source": "payments", "event": "refund-issued"}),
            "{rules}"
        );
        verify("kong", "hunter2", call).unwrap_or_else(|why| panic!("{rules}: {why}"));
        assert_eq!(emissions(proxy, "malformed"), (1, 0), "{rules}");
        proxy.advance(60_000);
        assert_eq!(proxy.received().len(), 1, "{rules}: delivered once");
    });
}

#[test]
fn kong_hands_over_tostring_so_a_table_is_malformed_and_traffic_goes_on() {
    on_kong(
        &["3.6.1", "3.10.0"],
        &published(),
        |version, rules, proxy| {
            // `kong.ctx.shared.event_hooks = {...}` without cjson: the filter gets `table: 0x...`.
            let (read, outcome) = send(proxy, &refund(&[("event_hooks", CtxValue::Table)]));
            assert_eq!(read, 1, "{rules}");
            assert_untouched(rules, &outcome);
            // A number or a boolean comes as Lua prints it: JSON, but not an object.
            for value in [CtxValue::Number(300.0), CtxValue::Boolean(true)] {
                let (_, outcome) = send(proxy, &refund(&[("event_hooks", value)]));
                assert_untouched(rules, &outcome);
            }
            proxy.advance(60_000);
            assert!(proxy.received().is_empty(), "{rules}: nothing delivered");
            assert_eq!(emissions(proxy, "malformed"), (0, 1), "{rules}");
            assert_eq!(emissions(proxy, "not_object"), (0, 2), "{rules}");
            if version == "3.10.0" {
                assert_eq!(metric(proxy, "emissions.dropped.malformed"), 1, "{rules}");
                assert_eq!(metric(proxy, "emissions.dropped.not_object"), 2, "{rules}");
                assert_eq!(metric(proxy, "emissions.accepted"), 0, "{rules}");
            }
        },
    );
}

#[test]
fn kong_counts_an_unpublished_event_and_delivers_the_others() {
    on_kong(
        &["3.6.1", "3.10.0"],
        &published(),
        |version, rules, proxy| {
            let both = r#"{"payments.refund-voided":{"order_id":"41"},"payments.refund-issued":{"order_id":"43","amount":1.5,"currency":"EUR"}}"#;
            let (read, outcome) = send(proxy, &refund(&[("event_hooks", CtxValue::string(both))]));
            assert_eq!(read, 1, "{rules}");
            assert_untouched(rules, &outcome);
            assert!(proxy.advance_until(60_000, |proxy| proxy.received().len() == 1));
            assert_eq!(body(&proxy.received()[0])["order_id"], "43", "{rules}");
            assert_eq!(body(&proxy.received()[0])["amount"], 1.5, "{rules}");
            assert_eq!(emissions(proxy, "unknown_event"), (1, 1), "{rules}");
            if version == "3.10.0" {
                assert_eq!(
                    metric(proxy, "emissions.dropped.unknown_event"),
                    1,
                    "{rules}"
                );
                assert_eq!(metric(proxy, "emissions.accepted"), 1, "{rules}");
            }
            proxy.advance(60_000);
            assert_eq!(proxy.received().len(), 1, "{rules}");
        },
    );
}

#[test]
fn kong_3_4_and_3_5_never_read_it() {
    on_kong(&["3.4.2", "3.5.0"], &published(), |_, rules, proxy| {
        let (read, outcome) = send(proxy, &refund(&[("event_hooks", CtxValue::string(REFUND))]));
        assert_untouched(rules, &outcome);
        assert_eq!(read, 0, "{rules}");
        proxy.advance(60_000);
        assert!(proxy.received().is_empty(), "{rules}: nothing delivered");
        assert_eq!(emissions(proxy, "malformed"), (0, 0), "{rules}");
        assert_eq!(reads(proxy), 0, "{rules}: not even for the admin request");
        // Nothing logged an error or a warning about it, the filter included.
        let noisy: Vec<String> = proxy
            .state()
            .logs
            .iter()
            .filter(|line| line.level >= Level::Warn)
            .map(ToString::to_string)
            .collect();
        assert!(noisy.is_empty(), "{rules}: {noisy:?}");
    });
}

#[test]
fn a_request_with_nothing_emitted_reads_once_and_delivers_nothing() {
    on_kong(&["3.6.1", "3.10.0"], &published(), |_, rules, proxy| {
        let (read, outcome) = send(proxy, &refund(&[]));
        assert_eq!(read, 1, "{rules}");
        assert_untouched(rules, &outcome);
        // Another plugin's key only.
        let (read, _) = send(
            proxy,
            &refund(&[("authenticated_groups", CtxValue::string("admin"))]),
        );
        assert_eq!(read, 1, "{rules}");
        proxy.advance(60_000);
        assert!(proxy.received().is_empty(), "{rules}");
        let shown = status(proxy);
        assert_eq!(shown["emissions"]["accepted"], 0, "{rules}");
        let dropped = shown["emissions"]["dropped"].as_object().unwrap();
        assert!(dropped.values().all(|count| count == 0), "{rules}: {shown}");
    });
}

#[test]
fn nothing_published_or_listened_to_never_reads_it() {
    let traffic_only = json!({
        "hooks": [{"name": "errors", "source": "traffic", "filter": {"response.status": {"gte": 500}},
                   "handler": "webhook", "config": {"url": "http://receiver/errors"}}]
    });
    // Published, but no enabled hook listens to it.
    let mut unheard = published();
    unheard["hooks"][0]["enabled"] = json!(false);
    for config in [traffic_only, unheard] {
        on_kong(&["3.6.1", "3.10.0"], &config, |_, rules, proxy| {
            let (read, outcome) =
                send(proxy, &refund(&[("event_hooks", CtxValue::string(REFUND))]));
            assert_eq!(read, 0, "{rules}: {config}");
            assert_untouched(rules, &outcome);
            proxy.advance(60_000);
            assert!(proxy.received().is_empty(), "{rules}");
        });
    }
}
