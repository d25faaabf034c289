//! Plays `tests/scenarios/*.json` (the contract is `tests/scenarios/README.md`): the filter
//! configured as the scenario says, its requests proxied one after the other, the receiver
//! answering with its statuses; then the virtual clock runs for up to ten minutes until every
//! expected call came, and ten minutes more to prove no other call comes.
//!
//! On Envoy a scenario can also be played with the filter as a wasm access logger
//! ([`run_access_logger`]): the same configuration and traffic must give the same deliveries
//! as the HTTP filter, call for call.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::proxy::{Filter, Proxy, Request};
use crate::rules::Rules;
use crate::signature;
use crate::state::{Attachment, Options, Received, Reply, header};

/// The scenario directory.
pub fn directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

pub use crate::scenario_files::{access_logger_skip, runs_on, why_not};

/// Every scenario file, sorted.
pub fn files() -> Vec<PathBuf> {
    crate::scenario_files::json_files(&directory())
}

pub fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What a played scenario left behind.
pub struct Played {
    pub proxy: Proxy,
    pub expected: Vec<Value>,
}

/// The virtual time a runner waits for the expected calls, then for unexpected ones.
pub const WAIT_MS: u64 = 10 * 60 * 1000;

/// A JSON object of strings as pairs, names lowercased (headers).
fn string_map(value: Option<&Value>) -> Vec<(String, String)> {
    pairs(value)
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect()
}

/// A JSON object of strings as pairs, names as they are.
fn pairs(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_object)
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: Option<&Value>, default: &str) -> String {
    value.and_then(Value::as_str).unwrap_or(default).to_string()
}

/// A scenario request as the proxy gets it.
fn request(spec: &Value) -> Request {
    let mut request = Request::get(&text(spec.get("path"), "/"));
    request.method = text(spec.get("method"), "GET");
    // Names as the scenario writes them (Kong passes them on as the client sent them).
    let headers = pairs(spec.get("headers"));
    if let Some(host) = header(&headers, "host") {
        request.authority = host.to_string();
    }
    request.headers = headers
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
        .collect();
    request.body = text(spec.get("body"), "").into_bytes();
    if let Some(response) = spec.get("response") {
        request.upstream.status = response
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|status| u16::try_from(status).ok())
            .unwrap_or(200);
        request.upstream.headers = pairs(response.get("headers"));
        request.upstream.body = text(response.get("body"), "").into_bytes();
    }
    request
}

/// A receiver answer: a status, or `{"status": 429, "headers": {...}}`.
fn reply(entry: &Value) -> Reply {
    let status = entry
        .as_u64()
        .or_else(|| entry.get("status").and_then(Value::as_u64))
        .and_then(|status| u16::try_from(status).ok())
        .unwrap_or(200);
    Reply::Status {
        status,
        headers: pairs(entry.get("headers")),
        body: text(entry.get("body"), ""),
    }
}

/// Plays a scenario under `rules`: everything up to the end of the second ten minutes.
pub fn play(filter: &Filter, scenario: &Value, rules: Rules) -> Result<Played, String> {
    play_with(filter, scenario, Options::new(rules))
}

/// Plays a scenario with the filter as Envoy's wasm access logger.
pub fn play_access_logger(filter: &Filter, scenario: &Value) -> Result<Played, String> {
    play_with(filter, scenario, Options::access_logger())
}

/// Plays a scenario with `options` (rules, attachment); its `env` is added to them.
pub fn play_with(
    filter: &Filter,
    scenario: &Value,
    mut options: Options,
) -> Result<Played, String> {
    options.env = pairs(scenario.get("env"));
    let config = scenario.get("config").ok_or("the scenario has no config")?;
    let bytes = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    let mut proxy = Proxy::start(filter, options, &bytes).map_err(|e| e.to_string())?;
    if !proxy.configured {
        return Err(format!(
            "the filter refused the configuration\n--- log\n{}",
            proxy.log_text()
        ));
    }
    if let Some(receiver) = scenario.get("receiver") {
        if let Some(statuses) = receiver.get("statuses").and_then(Value::as_array) {
            proxy.reply_with(statuses.iter().map(reply));
        }
        if let Some(delay) = receiver.get("delay_ms").and_then(Value::as_u64) {
            proxy.receiver_delay(delay);
        }
    }
    let empty = Vec::new();
    let requests = scenario
        .get("requests")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for spec in requests {
        if let Some(wait) = spec.get("after_ms").and_then(Value::as_u64) {
            proxy.advance(wait);
        }
        proxy.request(&request(spec));
    }
    let expected: Vec<Value> = scenario
        .pointer("/expect/calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let count = expected.len();
    proxy.advance_until(WAIT_MS, |proxy| proxy.received().len() >= count);
    proxy.advance(WAIT_MS);
    Ok(Played { proxy, expected })
}

/// Why `call` does not match `expected` (empty: it matches).
/// JSON fields the filter takes from Kong's `kong.service_id` and `kong.route_id`, which Kong
/// has only from 3.6 (`kong/runloop/wasm.lua`): before, they are absent from events, as the
/// README says ("a field the host does not give is absent, never invented"). On those Kong
/// versions an expected `"<any>"` for them also accepts their absence.
const KONG_3_6_FIELDS: &[&str] = &[
    "$.upstream.cluster",
    "$.route",
    "$.upstream_id",
    "$.service",
];

/// The expected `"<any>"` fields that may be absent under `rules`.
pub fn may_be_absent(rules: Rules) -> &'static [&'static str] {
    match rules {
        Rules::Kong(version) if !version.has_kong_properties() => KONG_3_6_FIELDS,
        _ => &[],
    }
}

pub fn mismatches(expected: &Value, call: &Received, rules: Rules) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(method) = expected.get("method").and_then(Value::as_str) {
        if method != call.method {
            problems.push(format!("method {} != {method}", call.method));
        }
    }
    if let Some(path) = expected.get("path").and_then(Value::as_str) {
        if path != call.path {
            problems.push(format!("path {} != {path}", call.path));
        }
    }
    for (name, value) in string_map(expected.get("headers")) {
        match call.header(&name) {
            None => problems.push(format!("no header {name}")),
            Some(_) if value == "<any>" => {}
            Some(actual) if actual == value => {}
            Some(actual) => problems.push(format!("header {name}: {actual:?} != {value:?}")),
        }
    }
    if let Some(json) = expected.get("json") {
        match serde_json::from_slice::<Value>(&call.body) {
            Ok(actual) => {
                let mut found = Vec::new();
                contains(&actual, json, "$", &mut found);
                let optional = may_be_absent(rules);
                problems.extend(found.into_iter().filter(|problem| {
                    !problem
                        .strip_suffix(" missing")
                        .is_some_and(|at| optional.contains(&at))
                }));
            }
            Err(e) => problems.push(format!("the body is not JSON ({e})")),
        }
    }
    if let Some(body) = expected.get("body").and_then(Value::as_str) {
        if call.body != body.as_bytes() {
            problems.push(format!(
                "body {:?} != {body:?}",
                String::from_utf8_lossy(&call.body)
            ));
        }
    }
    if let Some(check) = expected.get("signature") {
        let scheme = text(check.get("scheme"), "");
        let secret = text(check.get("secret"), "");
        if let Err(why) = signature::verify(&scheme, &secret, call) {
            problems.push(format!("signature ({scheme}): {why}"));
        }
    }
    problems
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `actual` contains `expected` (objects key by key, arrays element by element with
/// the same length, `"<any>"` for any value present).
pub fn contains(actual: &Value, expected: &Value, at: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::String(any), _) if any == "<any>" => {}
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                match actual.get(key) {
                    Some(inner) => contains(inner, value, &format!("{at}.{key}"), problems),
                    None => problems.push(format!("{at}.{key} missing")),
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if expected.len() != actual.len() {
                problems.push(format!(
                    "{at}: {} elements != {}",
                    actual.len(),
                    expected.len()
                ));
                return;
            }
            for (index, (e, a)) in expected.iter().zip(actual).enumerate() {
                contains(a, e, &format!("{at}[{index}]"), problems);
            }
        }
        (Value::Number(_), Value::Number(_)) if numbers_equal(actual, expected) => {}
        _ if actual == expected => {}
        _ => problems.push(format!("{at}: {actual} != {expected}")),
    }
}

/// A perfect matching of expected calls to distinct received calls (Kuhn's algorithm).
fn assign(ok: &[Vec<bool>], received: usize) -> Vec<Option<usize>> {
    fn try_assign(
        e: usize,
        ok: &[Vec<bool>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for r in 0..owner.len() {
            if ok[e][r] && !seen[r] {
                seen[r] = true;
                if owner[r].is_none_or(|other| try_assign(other, ok, seen, owner)) {
                    owner[r] = Some(e);
                    return true;
                }
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; received];
    for e in 0..ok.len() {
        let mut seen = vec![false; received];
        try_assign(e, ok, &mut seen, &mut owner);
    }
    let mut assigned = vec![None; ok.len()];
    for (r, e) in owner.iter().enumerate() {
        if let Some(e) = e {
            assigned[*e] = Some(r);
        }
    }
    assigned
}

fn describe(call: &Received) -> String {
    format!(
        "+{}ms {} {} (upstream {}, from {}) headers {:?}\n      body {}",
        call.at_ms,
        call.method,
        call.path,
        call.upstream,
        call.step.callback(),
        call.headers,
        String::from_utf8_lossy(&call.body)
    )
}

/// Checks a played scenario against its expectations: the calls (and no other), the log lines,
/// and that the module never trapped.
pub fn check(played: &Played, scenario: &Value) -> Result<(), String> {
    let proxy = &played.proxy;
    let received = proxy.received();
    let mut problems = Vec::new();
    for trap in proxy.traps() {
        problems.push(format!("the module trapped: {trap}"));
    }
    let ok: Vec<Vec<bool>> = played
        .expected
        .iter()
        .map(|expected| {
            received
                .iter()
                .map(|call| mismatches(expected, call, proxy.rules()).is_empty())
                .collect()
        })
        .collect();
    let assigned = assign(&ok, received.len());
    for (index, (expected, got)) in played.expected.iter().zip(&assigned).enumerate() {
        if got.is_some() {
            continue;
        }
        let mut why = format!("expected call #{index} never came: {expected}");
        for call in received {
            why.push_str(&format!(
                "\n    not {}: {}",
                describe(call),
                mismatches(expected, call, proxy.rules()).join("; ")
            ));
        }
        problems.push(why);
    }
    let matched: Vec<usize> = assigned.iter().flatten().copied().collect();
    for (index, call) in received.iter().enumerate() {
        if !matched.contains(&index) && received.len() > played.expected.len() {
            problems.push(format!("unexpected call: {}", describe(call)));
        }
    }
    if received.len() != played.expected.len() {
        problems.push(format!(
            "the receiver got {} call(s), the scenario expects {}",
            received.len(),
            played.expected.len()
        ));
    }
    let log = proxy.log_text();
    if let Some(lines) = scenario.pointer("/expect/logs").and_then(Value::as_array) {
        for line in lines.iter().filter_map(Value::as_str) {
            if !proxy
                .state()
                .logs
                .iter()
                .any(|entry| entry.message.contains(line))
            {
                problems.push(format!("no log line contains {line:?}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} ({}{})\n{}\n--- log\n{log}",
            scenario
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or(""),
            proxy.rules(),
            match proxy.state().options.attachment {
                Attachment::AccessLogger => ", access logger",
                Attachment::HttpFilter => "",
            },
            problems.join("\n")
        ))
    }
}

/// The rules a runner plays, with the Kong version asked (`harness-kong` defaults to 3.9.1).
pub fn rules_for(runner: &str, kong_version: Option<&str>) -> Result<Rules, String> {
    match runner {
        "harness-envoy" => Ok(Rules::Envoy),
        "harness-kong" => Rules::kong(kong_version.unwrap_or("3.9.1")),
        other => Err(format!("unknown runner {other}")),
    }
}

/// Why a scenario cannot be played under `rules` although its runner is listed (`None`: it
/// can): Kong 3.4 to 3.6 give the VM no environment variables, so a scenario that needs its
/// `env` cannot configure the filter there (the filter refuses the configuration, as on the
/// real host).
pub fn unplayable(scenario: &Value, rules: Rules) -> Option<String> {
    let needs_env = scenario
        .get("env")
        .and_then(Value::as_object)
        .is_some_and(|env| !env.is_empty());
    match rules {
        Rules::Kong(version) if needs_env && !version.passes_env() => Some(format!(
            "it needs environment variables, which Kong {version} does not give the VM \
             (from 3.7)"
        )),
        _ => None,
    }
}

/// Plays scenario file `name` on `runner` and checks it. `Ok(None)` when the scenario does
/// not run there (with the reason), or not under this version's rules ([`unplayable`]).
pub fn run(name: &str, runner: &str, kong_version: Option<&str>) -> Result<Option<String>, String> {
    let scenario = load(&directory().join(name))?;
    if !runs_on(&scenario).iter().any(|r| r == runner) {
        let why = why_not(&scenario, runner);
        return Ok(Some(format!("{name} does not run on {runner}: {why}")));
    }
    let filter = Filter::event_hooks()?;
    let rules = rules_for(runner, kong_version)?;
    if let Some(why) = unplayable(&scenario, rules) {
        return Ok(Some(format!("{name} does not run on {rules}: {why}")));
    }
    let played = play(filter, &scenario, rules)?;
    check(&played, &scenario)?;
    Ok(None)
}

/// A delivery as the receiver got it, without what says where in the proxy it was made.
pub fn delivery(call: &Received) -> String {
    format!(
        "+{}ms {} {} {} (upstream {}) headers {:?} body {}",
        call.at_ms,
        call.method,
        call.authority,
        call.path,
        call.upstream,
        call.headers,
        String::from_utf8_lossy(&call.body)
    )
}

/// Where two runs' deliveries differ (empty: call for call the same, at the same virtual
/// time, same headers and same bytes).
pub fn different_deliveries(a: &[Received], b: &[Received]) -> Vec<String> {
    let mut problems = Vec::new();
    if a.len() != b.len() {
        problems.push(format!("{} deliveries != {}", a.len(), b.len()));
    }
    for (index, (a, b)) in a.iter().zip(b).enumerate() {
        let (a, b) = (delivery(a), delivery(b));
        if a != b {
            problems.push(format!("delivery #{index}:\n  {a}\n  {b}"));
        }
    }
    problems
}

/// Plays scenario file `name` on Envoy with the filter as an HTTP filter and as an access
/// logger, checks both against the scenario, and checks that they gave the same deliveries.
/// `Ok(Some(why))` when an access logger cannot play it ([`access_logger_skip`]).
pub fn run_access_logger(name: &str) -> Result<Option<String>, String> {
    let scenario = load(&directory().join(name))?;
    if let Some(why) = access_logger_skip(&scenario) {
        return Ok(Some(format!(
            "{name} does not run in an access logger: {why}"
        )));
    }
    let filter = Filter::event_hooks()?;
    let http = play(filter, &scenario, Rules::Envoy)?;
    check(&http, &scenario)?;
    let logger = play_access_logger(filter, &scenario)?;
    check(&logger, &scenario)?;
    let problems = different_deliveries(http.proxy.received(), logger.proxy.received());
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(format!(
            "{name}: the access logger's deliveries differ from the HTTP filter's (first: HTTP \
             filter, second: access logger)\n{}\n--- access logger's log\n{}",
            problems.join("\n"),
            logger.proxy.log_text()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_subset() {
        let actual = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": 5.0});
        let mut problems = Vec::new();
        contains(
            &actual,
            &json!({"b": {"c": [1, "<any>"]}, "e": 5}),
            "$",
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        contains(
            &actual,
            &json!({"b": {"c": [1]}, "z": "<any>"}),
            "$",
            &mut problems,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn scenarios_needing_env_do_not_play_before_kong_3_7() {
        let with_env = json!({"env": {"KEY": "v"}, "config": {}});
        let kong = |v: &str| Rules::kong(v).unwrap();
        assert!(unplayable(&with_env, kong("3.6.1")).is_some());
        assert!(unplayable(&with_env, kong("3.7.0")).is_none());
        assert!(unplayable(&with_env, Rules::Envoy).is_none());
        assert!(unplayable(&json!({"env": {}}), kong("3.4.2")).is_none());
    }

    #[test]
    fn matching_is_a_perfect_assignment() {
        // e0 fits r0 and r1, e1 only r0: a greedy pass would fail.
        let ok = vec![vec![true, true], vec![true, false]];
        assert_eq!(assign(&ok, 2), vec![Some(1), Some(0)]);
    }
}
