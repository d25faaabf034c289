//! Envoy's native pre-filter for the filter as an access logger: from a configuration, the
//! `AccessLogFilter` (`envoy.config.accesslog.v3.AccessLogFilter`, in Envoy's JSON/YAML field
//! names) that lets through every request some enabled hook could match, and as few others as
//! it can. Envoy evaluates it in C++ before it enters the VM, so a request no hook wants costs
//! no wasm at all (`event-hooks envoy-access-log-filter`).
//!
//! **Sound first.** The filter must never refuse a request a hook would match: a translation
//! that cannot be exact is made weaker (lets more through), never stronger. Within a hook,
//! each condition of its `filter` becomes a native filter where one exists, and a condition
//! without one is simply not tested natively (the hook tests it); the conditions are ANDed
//! (`and_filter`), the hooks ORed (`or_filter`), and one filter alone stands without either.
//!
//! | hook condition | native filter |
//! |---|---|
//! | `response.status` (any operators) | `status_code_filter`s: the ranges of codes it holds for, each `EQ n`, `GE a`, `LE b` or `GE a` AND `LE b`, ORed; their complement of one code is `NE n`; absent status is code 0 |
//! | `latency_ms` (any operators) | `duration_filter`s, the same way (whole milliseconds) |
//! | `response.flags` `eq`/`in` | `response_flag_filter` with the flags of the value(s) |
//! | `response.flags` `prefix`/`suffix`/`contains` | `response_flag_filter` with the flags whose names could make it hold |
//! | `response.flags`, any other condition that fails with no flag | `response_flag_filter: {}` (any flag) |
//! | `request.method` / `request.host` `eq`, `in` | `header_filter` `:method` / `:authority` `exact` (ORed for `in`) |
//! | `request.method` / `request.host` `prefix`, `suffix`, `contains` | `header_filter` with the same `string_match` |
//! | `request.path` `eq P` | `:path` `exact P` OR `prefix P?` (the field has no query) |
//! | `request.path` `prefix P` / `contains P` | `:path` `prefix P` / `contains P` |
//! | `request.path` `suffix P` | `:path` `suffix P` OR `contains P?` |
//! | `request.headers.<name>` `eq`, `in`, `prefix`, `suffix`, `contains` | `header_filter` `<name>`: the same match when the operand has no `", "`, else its pieces (see below) |
//! | `request.headers.<name>`, any other condition that fails on a missing header | `header_filter` `<name>` `present_match` |
//! | a redacted header (`redact_headers`) | `present_match` when the condition holds on `"[redacted]"`, else never |
//!
//! Exactness, field by field (each was checked against how [`crate::source::traffic`] reads
//! the field and how Envoy 1.40 evaluates the filter; the property test in `tests.rs` runs
//! both on random configurations and requests):
//!
//! * `response.status` is Envoy's response code (the `response.code` property; the HTTP
//!   connection manager sets it from the `:status` it sends), absent when there is none, where
//!   `status_code_filter` compares 0. The ranges come from the filter's own evaluator
//!   ([`numbers`]), so `gt 499` is `GE 500`, `ne 200` is `NE 200`, `in [500, 503]` is two
//!   `EQ`, `"500"` (a string) never matches, and a range past 2^32 - 1 is cut there.
//! * `latency_ms` is `request.duration` in whole milliseconds, what `duration_filter` compares
//!   once the request is complete (Envoy's final access log entry; a periodic or intermediate
//!   entry, `access_log_flush_interval`, sees a duration still growing).
//! * Text is cut at 4096 bytes and marked `...[truncated]`: an operand that could reach into
//!   the marker is not tested natively.
//! * `request.path` is `:path` up to its first `?`: an operand holding `?` never matches.
//! * The adapter reads bytes of a header that are not UTF-8 as U+FFFD: an operand holding that
//!   character is not tested natively.
//! * A header given several times: the event joins the values with `", "`, Envoy's
//!   `header_filter` with `","`. An operand without `", "` matches as it is; one with it is
//!   cut at each `", "` (either joint may be Envoy's `","`), its first piece a `prefix` (for
//!   `eq` and `prefix`), its last a `suffix` (`eq`, `suffix`), the others `contains`, ANDed. A
//!   `suffix` is also let through before a `,` (a value joined to exactly 4096 bytes takes no
//!   further values, and no marker), and a leading space of a `suffix`/`contains` operand is
//!   dropped (it may end a joint).
//! * `ne`, `not`, `exists: false`, and orders of strings (`gt "a"`) have no native form
//!   (`AccessLogFilter` has no NOT; `invert_match` cannot tell a header the event dropped, past
//!   100 names, from one that is absent), except on numbers, where the ranges say them.
//! * A condition that can never hold (`request.method: 5`, `response.flags: "XX"`) makes its
//!   hook match nothing, and the hook drops out of the OR.
//!
//! **Everything goes through** (no filter) when some enabled hook may match any request:
//!
//! * a hook on a source other than `traffic`: `balancer` counts successes too,
//!   `rate-limiting-advanced`, `crud` and published sources read what no native filter sees,
//!   and the dead-letter source is not fed by requests at all;
//! * a `traffic` hook without a filter, or none of whose conditions has a native form
//!   (`request.route`, `upstream.cluster`, `response.headers.*`, `request.query`, ...: Envoy's
//!   `header_filter` reads request headers only).
//!
//! **Cheap for Envoy.** The filter is then rewritten ([`cheapen`]) to let through exactly the
//! same requests with fewer tests: the cheapest conditions first, a condition many hooks share
//! tested once for all of them, header values sharing a prefix behind that prefix. 1,000 hooks
//! of `make bench` cost Envoy a handful of tests per request instead of over a thousand.
//!
//! A configuration with no enabled hook that can match gives a filter refusing everything.
//! The filter is made from the configuration as it is: a hook enabled or changed later
//! needs a new one.

mod cheapen;
mod flags;
mod native;
mod numbers;
mod text;

use std::borrow::Cow;

use serde_json::Value;

use crate::config::Config;
use crate::event::{Field, Redaction};
use crate::filter::Condition;
use crate::hooks::Hook;
use crate::source::Source;
use native::{Match, Native, and, header, or};
use text::Text;

/// The native filter of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum PreFilter {
    /// What to put under the access log entry's `filter:`.
    Filter(Value),
    /// No filter: some hook may match any request. Why, one line per such hook.
    None(Vec<String>),
    /// No enabled hook can match a request: this filter refuses every one.
    Nothing(Value),
}

/// The filter, and what it leaves to the hooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub filter: PreFilter,
    /// One line per condition that is not tested natively and per hook that matches nothing.
    pub notes: Vec<String>,
}

/// The access logger's native filter for `config`'s hooks.
pub fn generate(config: &Config) -> Generated {
    let mut notes = Vec::new();
    let filter = match plain(config, &mut notes) {
        Err(everything) => PreFilter::None(everything),
        Ok(Native::No) => PreFilter::Nothing(native::refuse_all()),
        // Every hook's Native::Every was an Err.
        Ok(Native::Every) => PreFilter::None(Vec::new()),
        Ok(native) => PreFilter::Filter(native::to_value(&cheapen::cheapen(native))),
    };
    Generated { filter, notes }
}

/// The hooks' filters ORed as they are, before [`cheapen`]; or why every request must go
/// through.
fn plain(config: &Config, notes: &mut Vec<String>) -> Result<Native, Vec<String>> {
    let mut everything = Vec::new();
    let mut hooks = Vec::new();
    for hook in config.hooks.iter() {
        match of_hook(hook, notes) {
            Ok(Native::No) => notes.push(format!("hook {} matches no request", hook.name)),
            Ok(native) => hooks.push(native),
            Err(why) => everything.push(why),
        }
    }
    if everything.is_empty() {
        Ok(or(hooks))
    } else {
        Err(everything)
    }
}

/// The filter before [`cheapen`] (for the test that it lets through the same requests).
#[cfg(test)]
pub(crate) fn uncheapened(config: &Config) -> Option<Value> {
    plain(config, &mut Vec::new())
        .ok()
        .map(|native| native::to_value(&native))
        .filter(|value| !value.is_null())
}

/// What `hook` lets through, or why it needs every request.
fn of_hook(hook: &Hook, notes: &mut Vec<String>) -> Result<Native, String> {
    let name = &hook.name;
    if !hook.enabled {
        return Ok(Native::No);
    }
    if hook.source != Source::TRAFFIC || hook.published.is_some() {
        return Err(format!(
            "hook {name} listens to {}: only traffic hooks have native conditions",
            hook.source_name()
        ));
    }
    if hook.event.as_ref().is_some_and(|event| event != "request") {
        return Ok(Native::No);
    }
    let mut conditions = Vec::new();
    for (path, condition) in hook.filter.entries() {
        let native = of_condition(path, condition, &hook.redaction);
        if native == Native::Every {
            notes.push(format!(
                "hook {name}: {} {} has no native form (the hook tests it)",
                path.join("."),
                Value::from(&Operand(condition))
            ));
        }
        conditions.push(native);
    }
    match and(conditions) {
        Native::Every if hook.filter.entries().next().is_none() => Err(format!(
            "hook {name} has no filter: it matches every request"
        )),
        Native::Every => Err(format!(
            "hook {name}: no condition of its filter has a native form"
        )),
        native => Ok(native),
    }
}

/// The native filter for one condition of a traffic hook's filter.
fn of_condition(path: &[String], condition: &Condition, redaction: &Redaction) -> Native {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["response", "status"] => numbers::status(condition),
        ["latency_ms"] => numbers::duration(condition),
        ["response", "flags"] => flags::flags(condition),
        ["request", "method"] => text::text(Text::Pseudo(":method"), condition),
        ["request", "host"] => text::text(Text::Pseudo(":authority"), condition),
        ["request", "path"] => text::text(Text::Path, condition),
        ["request", "headers", name] if is_header_name(name) => {
            if redaction.covers(path) {
                redacted(name, condition, redaction.placeholder())
            } else {
                text::text(Text::Header(name), condition)
            }
        }
        _ => Native::Every,
    }
}

/// A lowercase HTTP token (RFC 9110), as Envoy's header maps have names; the event has no
/// pseudo-header among its headers.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
        })
}

/// A redacted header reads as the placeholder wherever it is there.
fn redacted(name: &str, condition: &Condition, placeholder: &Value) -> Native {
    if condition.holds(None) {
        Native::Every
    } else if condition.holds(Some(&Field::Json(Cow::Borrowed(placeholder)))) {
        header(name, Match::Present)
    } else {
        Native::No
    }
}

/// A condition as the configuration writes it, for notes.
struct Operand<'a>(&'a Condition);

impl From<&Operand<'_>> for Value {
    fn from(operand: &Operand<'_>) -> Value {
        let op = |name: &str, value: Value| serde_json::json!({ name: value });
        match operand.0 {
            Condition::Eq(value) => op("eq", value.clone()),
            Condition::Ne(value) => op("ne", value.clone()),
            Condition::In(items) => op("in", Value::Array(items.clone())),
            Condition::Prefix(text) => op("prefix", Value::String(text.clone())),
            Condition::Suffix(text) => op("suffix", Value::String(text.clone())),
            Condition::Contains(value) => op("contains", value.clone()),
            Condition::Gt(value) => op("gt", value.clone()),
            Condition::Gte(value) => op("gte", value.clone()),
            Condition::Lt(value) => op("lt", value.clone()),
            Condition::Lte(value) => op("lte", value.clone()),
            Condition::Exists(flag) => op("exists", Value::Bool(*flag)),
            Condition::Not(inner) => op("not", Value::from(&Operand(inner))),
            Condition::All(all) => {
                let mut merged = serde_json::Map::new();
                for inner in all {
                    if let Value::Object(map) = Value::from(&Operand(inner)) {
                        merged.extend(map);
                    }
                }
                Value::Object(merged)
            }
        }
    }
}

#[cfg(test)]
mod tests;
