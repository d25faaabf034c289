use super::*;
use crate::config;
use crate::hooks::Action;
use crate::id::IdGen;
use crate::shared::Memory;
use crate::source::traffic::{self, Capture, MAX_TEXT_BYTES, Properties, TRUNCATED};
use serde_json::json;
use std::cell::OnceCell;

mod envoy;
mod random;

const NOW_NS: u64 = 1_700_000_000_000_000_000;

fn parse(config: &Value) -> Config {
    config::parse(config.to_string().as_bytes()).unwrap()
}

fn generated(hooks: Value) -> Generated {
    generate(&parse(&json!({ "hooks": hooks })))
}

/// The filter of a configuration whose hooks are traffic hooks with these filters.
fn filter_of(filters: &[Value]) -> Value {
    let hooks: Vec<Value> = filters.iter().map(hook).collect();
    match generated(Value::Array(hooks)).filter {
        PreFilter::Filter(filter) => filter,
        other => panic!("no filter: {other:?}"),
    }
}

fn hook(filter: &Value) -> Value {
    json!({"source": "traffic", "filter": filter, "handler": "log", "config": {}})
}

fn status(op: &str, value: u32) -> Value {
    json!({"status_code_filter": {"comparison": {"op": op, "value": {"default_value": value}}}})
}

fn header(name: &str, kind: &str, pattern: &str) -> Value {
    json!({"header_filter": {"header": {"name": name, "string_match": {kind: pattern}}}})
}

/// A request answered `code`, with these headers besides `:method GET`, `:path`.
fn request(code: Option<u32>, path: &str, headers: &[(&str, &str)]) -> envoy::Request {
    let mut all = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    envoy::Request {
        headers: all,
        response_code: code,
        flags: 0,
        duration_ns: 5_000_000,
    }
}

/// The capture the filter's access logger would make of `request`, header names as `case`
/// writes them.
fn capture(request: &envoy::Request, case: impl Fn(&str) -> String) -> Capture {
    let pseudo = |name: &str| {
        request
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    Capture {
        request_headers: Some(
            request
                .headers
                .iter()
                .map(|(name, value)| (case(name), value.clone()))
                .collect(),
        ),
        response_headers: request
            .response_code
            .map(|code| vec![(":status".to_string(), code.to_string())]),
        seen_ns: None,
        properties: Properties {
            method: pseudo(":method"),
            path: pseudo(":path"),
            host: pseudo(":authority"),
            status: request.response_code.map(u64::from),
            flags: Some(request.flags),
            duration_ns: Some(request.duration_ns),
            ..Properties::default()
        },
        ..Capture::default()
    }
}

/// Whether some hook of `config` matches the request of `capture`, as the runtime routes it.
fn core_matches(config: &Config, capture: &Capture) -> bool {
    let view = traffic::View::new(capture, NOW_NS);
    let built = OnceCell::new();
    let actions = config.hooks.route_lazy(
        Source::TRAFFIC,
        "request",
        &view,
        || built.get_or_init(|| traffic::event(capture, NOW_NS)),
        NOW_NS / 1_000_000,
        &Memory::default(),
        &mut IdGen::new(1),
    );
    actions
        .iter()
        .any(|action| matches!(action, Action::Matched(_)))
}

#[test]
fn a_5xx_hook_is_exactly_a_status_code_filter() {
    let filter = filter_of(&[json!({"response.status": {"gte": 500}})]);
    assert_eq!(filter, status("GE", 500));
    assert!(!envoy::passes(&filter, &request(Some(200), "/", &[])));
    assert!(!envoy::passes(&filter, &request(None, "/", &[])));
    assert!(envoy::passes(&filter, &request(Some(503), "/", &[])));
}

#[test]
fn status_conditions_become_the_ranges_they_hold_for() {
    let cases = [
        (json!({"gt": 499}), status("GE", 500)),
        (json!({"gte": 499.5}), status("GE", 500)),
        (
            json!({"lte": 499.5}),
            json!({"and_filter": {"filters": [status("GE", 1), status("LE", 499)]}}),
        ),
        (json!({"ne": 200}), status("NE", 200)),
        (
            json!({"not": {"lt": 500}}),
            json!({"or_filter": {"filters": [status("EQ", 0), status("GE", 500)]}}),
        ),
        (
            json!({"in": [500, 503]}),
            json!({"or_filter": {"filters": [status("EQ", 500), status("EQ", 503)]}}),
        ),
        (
            json!({"gte": 500, "lt": 600}),
            json!({"and_filter": {"filters": [status("GE", 500), status("LE", 599)]}}),
        ),
        (json!({"exists": false}), status("EQ", 0)),
    ];
    for (condition, expected) in cases {
        assert_eq!(
            filter_of(&[json!({"response.status": condition})]),
            expected,
            "{condition}"
        );
    }
}

#[test]
fn conditions_and_within_a_hook_and_hooks_or() {
    let orders = json!({"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}});
    let slow = json!({"latency_ms": {"gt": 1000}});
    // The cheaper first: the response code is at hand, a header is looked up.
    let both = and_of(&[status("GE", 500), header(":path", "prefix", "/orders")]);
    assert_eq!(filter_of(std::slice::from_ref(&orders)), both);
    let slow_filter =
        json!({"duration_filter": {"comparison": {"op": "GE", "value": {"default_value": 1001}}}});
    assert_eq!(
        filter_of(&[orders, slow]),
        json!({"or_filter": {"filters": [both, slow_filter]}})
    );
}

fn and_of(filters: &[Value]) -> Value {
    json!({"and_filter": {"filters": filters}})
}

#[test]
fn path_operands_allow_for_the_query() {
    let path = |condition: Value| filter_of(&[json!({"request.path": condition})]);
    assert_eq!(
        path(json!("/orders")),
        json!({"or_filter": {"filters": [header(":path", "exact", "/orders"), header(":path", "prefix", "/orders?")]}})
    );
    assert_eq!(
        path(json!({"suffix": "/1"})),
        json!({"or_filter": {"filters": [header(":path", "suffix", "/1"), header(":path", "contains", "/1?")]}})
    );
    let eq = path(json!("/orders"));
    assert!(envoy::passes(
        &eq,
        &request(Some(200), "/orders?page=2", &[])
    ));
    assert!(!envoy::passes(&eq, &request(Some(200), "/orders/1", &[])));
    // The field never holds a `?`: the hook matches nothing.
    let never = generated(json!([hook(&json!({"request.path": {"contains": "?"}}))]));
    assert!(matches!(never.filter, PreFilter::Nothing(_)));
}

#[test]
fn repeated_headers_are_matched_piece_by_piece() {
    let accept = |condition: Value| filter_of(&[json!({"request.headers.accept": condition})]);
    assert_eq!(accept(json!("a")), header("accept", "exact", "a"));
    assert_eq!(
        accept(json!("a, b")),
        and_of(&[
            header("accept", "prefix", "a"),
            header("accept", "suffix", "b")
        ])
    );
    let joined = accept(json!("a, b"));
    let twice = request(Some(200), "/", &[("accept", "a"), ("accept", "b")]);
    assert!(envoy::passes(&joined, &twice));
    assert!(core_matches(
        &parse(&json!({"hooks": [hook(&json!({"request.headers.accept": "a, b"}))]})),
        &capture(&twice, str::to_string)
    ));
    assert_eq!(
        accept(json!({"suffix": "json"})),
        json!({"or_filter": {"filters": [header("accept", "suffix", "json"), header("accept", "contains", "json,")]}})
    );
    for present in [json!({"gt": "m"}), json!({"ne": "a", "exists": true})] {
        assert_eq!(
            accept(present),
            json!({"header_filter": {"header": {"name": "accept", "present_match": true}}})
        );
    }
}

#[test]
fn text_that_may_be_cut_is_not_matched_past_the_cut() {
    let long = "x".repeat(MAX_TEXT_BYTES);
    let present = json!({"header_filter": {"header": {"name": "x-a", "present_match": true}}});
    let x_a = |condition: Value| filter_of(&[json!({"request.headers.x-a": condition})]);
    assert_eq!(x_a(json!(format!("{long}{TRUNCATED}"))), present);
    assert_eq!(x_a(json!({"contains": "x..."})), present);
    assert_eq!(x_a(json!({"suffix": "ted]"})), present);
    assert_eq!(x_a(json!(long.clone())), header("x-a", "prefix", &long));
    // What the filter reads of bytes that are not UTF-8.
    assert_eq!(x_a(json!({"prefix": "a\u{FFFD}"})), present);
}

#[test]
fn flags_become_the_flags_a_match_must_have_one_of() {
    let flags = |condition: Value| filter_of(&[json!({"response.flags": condition})]);
    assert_eq!(
        flags(json!("UF,URX")),
        json!({"response_flag_filter": {"flags": ["UF", "URX"]}})
    );
    assert_eq!(
        flags(json!({"in": ["UF", "LH"]})),
        json!({"response_flag_filter": {"flags": ["UF", "LH"]}})
    );
    assert_eq!(
        flags(json!({"prefix": "D"})),
        json!({"response_flag_filter": {"flags": ["DI", "DC", "DPE", "DT", "DF", "DO", "DR"]}})
    );
    for any in [
        json!({"ne": "UF", "exists": true, "gt": ""}),
        json!({"ne": "", "exists": true}),
    ] {
        assert_eq!(flags(any), json!({"response_flag_filter": {}}));
    }
    // Holds with no flag set: no native form.
    let none = generated(json!([hook(&json!({"response.flags": {"ne": "UF"}}))]));
    assert!(matches!(none.filter, PreFilter::None(_)));
}

#[test]
fn redacted_headers_are_tested_for_presence_only() {
    let filter = filter_of(&[json!({"request.headers.authorization": "[redacted]"})]);
    assert_eq!(
        filter,
        json!({"header_filter": {"header": {"name": "authorization", "present_match": true}}})
    );
    let never = generated(json!([hook(
        &json!({"request.headers.authorization": "Bearer t"})
    )]));
    assert!(matches!(never.filter, PreFilter::Nothing(_)));
}

#[test]
fn some_hooks_need_every_request() {
    let balancer = json!({"source": "balancer", "handler": "log", "config": {}});
    let unfiltered = json!({"name": "all", "source": "traffic", "handler": "log", "config": {}});
    let route = hook(&json!({"route": "orders"}));
    let five = hook(&json!({"response.status": {"gte": 500}}));
    let out = generated(json!([five, balancer, unfiltered, route]));
    assert_eq!(
        out.filter,
        PreFilter::None(vec![
            "hook hook-1 listens to balancer: only traffic hooks have native conditions".into(),
            "hook all has no filter: it matches every request".into(),
            "hook hook-3: no condition of its filter has a native form".into(),
        ])
    );
    assert_eq!(
        out.notes,
        ["hook hook-3: route {\"eq\":\"orders\"} has no native form (the hook tests it)"]
    );
}

#[test]
fn no_enabled_hook_refuses_everything() {
    let off = json!({"name": "off", "enabled": false, "source": "traffic", "handler": "log", "config": {}});
    for hooks in [json!([]), json!([off])] {
        let out = generated(hooks);
        let PreFilter::Nothing(filter) = &out.filter else {
            panic!("{out:?}")
        };
        for code in [None, Some(0), Some(1), Some(200), Some(u32::MAX)] {
            assert!(!envoy::passes(filter, &request(code, "/", &[])));
        }
    }
    assert_eq!(
        generated(json!([off])).notes,
        ["hook off matches no request"]
    );
}

/// Random configurations and requests: whenever the filter's own routing says some hook
/// matches a request, Envoy (the model) lets the request through.
#[test]
fn the_filter_never_refuses_a_request_a_hook_matches() {
    let stats = random::run(0x5eed_ac55_1065, 2_000, 40, false, false);
    // Not vacuous: hooks matched, filters refused requests no hook wanted, and each outcome
    // (a filter, no filter, nothing) came up.
    assert!(stats.matched > 20_000, "{stats:?}");
    assert!(stats.refused > 20_000, "{stats:?}");
    assert!(stats.filtered > 800, "{stats:?}");
    assert!(stats.everything > 200 && stats.nothing > 200, "{stats:?}");
}

/// The same for one condition at a time, its operands cut from a sample request's values
/// (at the `", "` of joined headers, the `?` of the path, the cap's marker).
#[test]
fn each_condition_lets_through_the_requests_it_matches() {
    let stats = random::run(0xc0de_f11e_7e55, 4_000, 16, true, false);
    assert!(stats.matched > 12_000, "{stats:?}");
    assert!(stats.refused > 10_000, "{stats:?}");
}

/// Many hooks sharing conditions and operands, the configurations the cheapened filter is
/// rewritten most for: it still never refuses a request a hook matches, and lets through
/// exactly the requests its plain translation lets through.
#[test]
fn a_cheapened_filter_lets_through_exactly_what_it_did() {
    let stats = random::run(0x0c4e_a9e7_2026, 500, 40, false, true);
    assert!(stats.cheapened > 15_000, "{stats:?}");
    assert!(stats.matched > 10_000 && stats.refused > 3_000, "{stats:?}");
    assert!(stats.rewritten > 300, "{stats:?}");
}

/// A POST of `path`, answered 200.
fn posted(path: &str) -> envoy::Request {
    let mut posted = request(Some(200), path, &[]);
    posted.headers[0].1 = "POST".to_string();
    posted
}

/// `make bench`'s 1,000 hooks (four shapes, each with its own values): a handful of tests
/// refuse a request none of them matches, instead of one per hook.
#[test]
fn a_thousand_bench_hooks_cost_a_handful_of_tests() {
    let shapes = [
        |i: usize| json!({"response.status": {"gte": 500}, "request.path": {"prefix": format!("/orders/{i}")}}),
        |i: usize| json!({"request.method": "POST", "request.path": {"prefix": format!("/api/v{i}/")}}),
        |i: usize| json!({"request.headers.x-tenant": {"eq": format!("tenant-{i}")}}),
        |i: usize| json!({"response.status": {"in": [502, 503, 504]}, "request.host": {"suffix": format!(".svc{i}.internal")}}),
    ];
    let filters: Vec<Value> = (0..1000).map(|i| shapes[i % 4](i)).collect();
    let filter = filter_of(&filters);
    let plain = crate::access_log_filter::uncheapened(&parse(
        &json!({"hooks": filters.iter().map(hook).collect::<Vec<_>>()}),
    ))
    .unwrap();
    let top = filter["or_filter"]["filters"].as_array().unwrap();
    assert_eq!(top.len(), 4, "{filter}");
    let bench = request(Some(200), "/", &[("x-tenant", "bench")]);
    assert_eq!(envoy::tests_run(&filter, &bench), 4);
    assert!(envoy::tests_run(&plain, &bench) >= 1000);
    for request in [
        bench,
        request(Some(503), "/orders/12/x", &[]),
        request(Some(503), "/", &[(":authority", "a.svc3.internal")]),
        request(Some(200), "/", &[("x-tenant", "tenant-2")]),
        request(Some(200), "/", &[("x-tenant", "tenant-3")]),
        posted("/api/v5/orders"),
        posted("/api/v6/orders"),
    ] {
        assert_eq!(
            envoy::passes(&filter, &request),
            envoy::passes(&plain, &request),
            "{request:?}"
        );
    }
    assert!(envoy::passes(
        &filter,
        &request(Some(200), "/", &[("x-tenant", "tenant-2")])
    ));
}
