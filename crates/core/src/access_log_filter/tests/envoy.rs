//! A model of how Envoy (1.40, `source/common/access_log/access_log_impl.cc` and
//! `source/common/http/header_utility.cc`) evaluates an `AccessLogFilter` on a finished
//! request, written from Envoy's code and independent of the generator: it reads the JSON, and
//! panics on anything Envoy would refuse or the generator should never write.

use serde_json::{Map, Value};

use crate::source::traffic::RESPONSE_FLAGS;

/// A finished request as Envoy's access log sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request header map: lowercase names (Envoy's codecs lower them), pseudo-headers
    /// included, a repeated header once per value, in order.
    pub headers: Vec<(String, String)>,
    /// `StreamInfo::responseCode()`.
    pub response_code: Option<u32>,
    /// The core response flags, bit `i` being `RESPONSE_FLAGS[i]`.
    pub flags: u64,
    /// `StreamInfo::currentDuration()` (the request is complete).
    pub duration_ns: u64,
}

/// Whether `filter` lets `request` through.
pub fn passes(filter: &Value, request: &Request) -> bool {
    let (kind, body) = only(filter);
    match kind {
        "status_code_filter" => {
            let code = request.response_code.map_or(0, u64::from);
            compare(code, &only_key(body, "comparison"))
        }
        "duration_filter" => compare(
            request.duration_ns / 1_000_000,
            &only_key(body, "comparison"),
        ),
        "and_filter" => operands(body).iter().all(|inner| passes(inner, request)),
        "or_filter" => operands(body).iter().any(|inner| passes(inner, request)),
        "header_filter" => header(&only_key(body, "header"), &request.headers),
        "response_flag_filter" => flags(body, request.flags),
        other => panic!("the generator wrote a filter it should not: {other}"),
    }
}

/// How many leaf filters Envoy evaluates to decide `request` (AND and OR stop at the first
/// filter that decides them, as `AndFilter::evaluate` and `OrFilter::evaluate` do).
pub fn tests_run(filter: &Value, request: &Request) -> usize {
    let (kind, body) = only(filter);
    let mut count = 0;
    match kind {
        "and_filter" | "or_filter" => {
            let deciding = kind == "or_filter";
            for inner in operands(body) {
                count += tests_run(&inner, request);
                if passes(&inner, request) == deciding {
                    break;
                }
            }
        }
        _ => count += 1,
    }
    count
}

/// The one key and value of a oneof.
fn only(value: &Value) -> (&str, &Map<String, Value>) {
    let map = value.as_object().expect("a filter is an object");
    assert_eq!(map.len(), 1, "one filter specifier: {value}");
    let (kind, body) = map.iter().next().unwrap();
    (
        kind.as_str(),
        body.as_object().expect("a filter's body is an object"),
    )
}

fn only_key(body: &Map<String, Value>, key: &str) -> Value {
    assert_eq!(body.len(), 1, "only {key}: {body:?}");
    body.get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} missing"))
}

/// AndFilter and OrFilter: at least two filters (PGV `min_items: 2`).
fn operands(body: &Map<String, Value>) -> Vec<Value> {
    let filters = only_key(body, "filters");
    let filters = filters.as_array().expect("filters is a list").clone();
    assert!(filters.len() >= 2, "and/or with fewer than two filters");
    filters
}

/// ComparisonFilter::compareAgainstValue, with no runtime key (the default value).
fn compare(lhs: u64, comparison: &Value) -> bool {
    let map = comparison.as_object().unwrap();
    assert_eq!(map.len(), 2, "op and value: {comparison}");
    let value = map["value"].as_object().unwrap();
    assert_eq!(
        value.len(),
        1,
        "default_value only, no runtime_key: {comparison}"
    );
    let rhs = value["default_value"].as_u64().unwrap();
    assert!(rhs <= u64::from(u32::MAX), "a RuntimeUInt32");
    match map["op"].as_str().unwrap() {
        "EQ" => lhs == rhs,
        "GE" => lhs >= rhs,
        "LE" => lhs <= rhs,
        "NE" => lhs != rhs,
        other => panic!("no ComparisonFilter op {other}"),
    }
}

/// HeaderUtility::matchHeaders: every value of the header joined with `,`; a missing header
/// matches nothing but `present_match: false` (no `invert_match`, no
/// `treat_missing_header_as_empty`).
fn header(matcher: &Value, headers: &[(String, String)]) -> bool {
    let map = matcher.as_object().unwrap();
    assert_eq!(map.len(), 2, "name and one match: {matcher}");
    let name = map["name"].as_str().unwrap().to_ascii_lowercase();
    let values: Vec<&str> = headers
        .iter()
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.as_str())
        .collect();
    if let Some(present) = map.get("present_match") {
        return present.as_bool().unwrap() != values.is_empty();
    }
    if values.is_empty() {
        return false;
    }
    let value = values.join(",");
    let string_match = map["string_match"].as_object().unwrap();
    assert_eq!(
        string_match.len(),
        1,
        "one pattern, no ignore_case: {matcher}"
    );
    let (kind, pattern) = string_match.iter().next().unwrap();
    let pattern = pattern.as_str().unwrap();
    match kind.as_str() {
        "exact" => value == pattern,
        _ if pattern.is_empty() => panic!("Envoy refuses an empty {kind}"),
        "prefix" => value.starts_with(pattern),
        "suffix" => value.ends_with(pattern),
        "contains" => value.contains(pattern),
        other => panic!("the generator wrote a string match it should not: {other}"),
    }
}

/// ResponseFlagFilter: any listed flag set; none listed: any flag set.
fn flags(body: &Map<String, Value>, set: u64) -> bool {
    let Some(names) = body.get("flags") else {
        assert!(body.is_empty());
        return set != 0;
    };
    assert_eq!(body.len(), 1);
    let names = names.as_array().unwrap();
    assert!(!names.is_empty(), "an empty list is written as no list");
    names.iter().any(|name| {
        let name = name.as_str().unwrap();
        let bit = RESPONSE_FLAGS
            .iter()
            .position(|known| *known == name)
            .unwrap_or_else(|| panic!("Envoy refuses flag {name}"));
        set & (1 << bit) != 0
    })
}
