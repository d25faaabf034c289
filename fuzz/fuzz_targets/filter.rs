//! Filters: compiled from a generated (or arbitrary JSON) filter object and evaluated against
//! a generated event, with and without header redaction.
//!
//! Beyond "no panic", differential checks against the semantics the docs state (docs/src/filter.md):
//! * a compiled filter matches exactly when every entry holds on the event data as the hook
//!   sees it (redacted), evaluated here by an independent reference implementation;
//! * wrapping an entry's condition in `not` inverts that entry;
//! * compiling is deterministic, and a filter that compiles reports no problem.
#![no_main]

use std::cmp::Ordering;

use arbitrary::Unstructured;
use event_hooks_core::reader::Problems;
use event_hooks_core::event::{Event, Redaction, lookup, split_path};
use event_hooks_core::filter::Filter;
use event_hooks_core::source::Source;
use event_hooks_fuzz::{chance, event_data, filter};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn compile(value: &Value) -> Option<Filter> {
    let problems = Problems::default();
    let filter = Filter::compile(value, "filter", &problems);
    problems.is_empty().then_some(filter)
}

/// Numbers by value: exactly when both are integers, else as floats.
fn number_order(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    let whole = |n: &serde_json::Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (whole(a), whole(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_order(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_order(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// The docs' semantics of one condition on a field (`None`: absent).
fn holds(condition: &Value, field: Option<&Value>) -> bool {
    let Value::Object(operators) = condition else {
        return field.is_some_and(|value| equal(value, condition));
    };
    operators.iter().all(|(operator, operand)| match (operator.as_str(), field) {
        ("exists", _) => operand.as_bool() == Some(field.is_some()),
        ("ne", None) => true,
        ("not", _) => !holds(operand, field),
        (_, None) => false,
        ("eq", Some(value)) => equal(value, operand),
        ("ne", Some(value)) => !equal(value, operand),
        ("in", Some(value)) => operand.as_array().is_some_and(|items| items.iter().any(|item| equal(value, item))),
        ("prefix", Some(value)) => matches!((value, operand), (Value::String(t), Value::String(p)) if t.starts_with(p.as_str())),
        ("suffix", Some(value)) => matches!((value, operand), (Value::String(t), Value::String(p)) if t.ends_with(p.as_str())),
        ("contains", Some(value)) => match (value, operand) {
            (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
            (Value::Array(items), _) => items.iter().any(|item| equal(item, operand)),
            (Value::Object(map), Value::String(key)) => map.contains_key(key),
            _ => false,
        },
        ("gt", Some(value)) => order(value, operand) == Some(Ordering::Greater),
        ("gte", Some(value)) => matches!(order(value, operand), Some(Ordering::Greater | Ordering::Equal)),
        ("lt", Some(value)) => order(value, operand) == Some(Ordering::Less),
        ("lte", Some(value)) => matches!(order(value, operand), Some(Ordering::Less | Ordering::Equal)),
        (other, _) => panic!("a filter with operator {other:?} compiled"),
    })
}

fn reference(filter: &Map<String, Value>, seen: &Value) -> bool {
    filter
        .iter()
        .all(|(path, condition)| holds(condition, lookup(seen, &split_path(path))))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let filter_value = if chance(&mut u, 1, 8) {
        // Arbitrary JSON text as the filter.
        let text = event_hooks_fuzz::free_text(&mut u, 512);
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(_) => return,
        }
    } else {
        filter(&mut u)
    };
    let event = Event::new(Source::TRAFFIC, "request", event_data(&mut u));
    let redaction = match event_hooks_fuzz::count(&mut u, 2) {
        0 => Redaction::default(),
        1 => Redaction::none(),
        _ => Redaction::headers(["x-team".to_string(), "Authorization".to_string()]),
    };
    let Some(compiled) = compile(&filter_value) else {
        return;
    };
    assert_eq!(
        Some(&compiled),
        compile(&filter_value).as_ref(),
        "compiling is not deterministic"
    );
    let Value::Object(entries) = &filter_value else {
        panic!("a filter that is not an object compiled");
    };
    let seen = event.data_for(&redaction);
    let matched = compiled.matches(&event, &redaction);
    assert_eq!(
        matched,
        reference(entries, &seen),
        "the filter disagrees with the reference semantics on {}",
        seen
    );
    // Negating one entry inverts it.
    for (path, condition) in entries {
        let single = json!({ path.clone(): condition.clone() });
        let negated = json!({ path.clone(): {"not": condition.clone()} });
        let (Some(single), Some(negated)) = (compile(&single), compile(&negated)) else {
            panic!("an entry of a filter that compiled does not compile alone or negated");
        };
        assert_ne!(
            single.matches(&event, &redaction),
            negated.matches(&event, &redaction),
            "`not` does not invert the entry {path}"
        );
    }
});
