//! Events other filters emit (`event_hooks_core::emitted`): Envoy's `metadata` property
//! (protobuf Metadata/Struct/Value), and the JSON text of filter state and `kong.ctx.shared`.
//!
//! The first byte picks the input: the rest as `metadata` bytes, as a Struct, as JSON text, or
//! (most of the time) a generated map of keys to values written both as protobuf, the way
//! Envoy encodes a Lua table, and as JSON text.
//!
//! Beyond "no panic":
//! * decoding is bounded: at most `MAX_EMISSIONS` events, never more entries than input bytes;
//!   every event's source and event are non-empty (the source without a `.`), its key at most
//!   `MAX_KEY_BYTES`, its data a JSON object at most `MAX_DEPTH` deep whose compact encoding
//!   is at most `MAX_DATA_BYTES`, and no whole float within ±2^53 is left (they are integers);
//!   events come in strict key order; a rejected key is at most `MAX_KEY_BYTES`;
//! * the JSON text form round-trips: `from_json(to_json(events))` gives the same events and
//!   rejects none (or is `TooLarge` when the text is over `MAX_INPUT_BYTES`);
//! * the channels agree: the generated map decoded from protobuf and from JSON text gives the
//!   same events and the same rejections.
#![no_main]

use arbitrary::Unstructured;
use event_hooks_core::emitted::{
    self, Emission, Emitted, MAX_DATA_BYTES, MAX_DEPTH, MAX_EMISSIONS, MAX_INPUT_BYTES,
    MAX_KEY_BYTES, writer,
};
use event_hooks_fuzz::{chance, count, pick, string, value};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    match mode % 8 {
        0 => check(emitted::from_metadata(rest), rest.len()),
        1 => check(emitted::from_struct(rest), rest.len()),
        2 => check(emitted::from_json(rest), rest.len()),
        _ => channels(&mut Unstructured::new(rest)),
    }
});

/// The invariants of any decoded input of `len` bytes.
fn check(decoded: Result<Emitted, emitted::Reason>, len: usize) {
    let Ok(emitted) = decoded else { return };
    assert!(emitted.emissions.len() <= MAX_EMISSIONS);
    assert!(emitted.emissions.len() + emitted.rejected.len() <= len);
    let mut previous: Option<String> = None;
    for emission in &emitted.emissions {
        assert!(!emission.source.is_empty() && !emission.event.is_empty());
        assert!(!emission.source.contains('.'));
        let key = format!("{}.{}", emission.source, emission.event);
        assert!(key.len() <= MAX_KEY_BYTES);
        if let Some(previous) = &previous {
            assert!(previous < &key, "{previous} then {key}");
        }
        previous = Some(key);
        let text = serde_json::to_string(&emission.data).unwrap();
        assert!(text.len() <= MAX_DATA_BYTES, "{} bytes", text.len());
        for value in emission.data.values() {
            assert!(depth(value) < MAX_DEPTH);
            assert!(no_whole_floats(value));
        }
    }
    for rejected in &emitted.rejected {
        assert!(rejected.key.len() <= MAX_KEY_BYTES);
    }
    let text = emitted::to_json(&emitted.emissions);
    if text.len() > MAX_INPUT_BYTES {
        assert_eq!(emitted::from_json(text.as_bytes()), Err(emitted::Reason::TooLarge));
        return;
    }
    let again = emitted::from_json(text.as_bytes()).unwrap();
    assert!(again.rejected.is_empty(), "{:?}", again.rejected);
    assert!(same_emissions(&again.emissions, &emitted.emissions), "{text}");
}

/// The levels of nesting of `value`: 0 for a scalar.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(object) => 1 + object.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn no_whole_floats(value: &Value) -> bool {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => {
                float.fract() != 0.0 || float.abs() > 9_007_199_254_740_992.0
            }
            _ => true,
        },
        Value::Array(items) => items.iter().all(no_whole_floats),
        Value::Object(object) => object.values().all(no_whole_floats),
        _ => true,
    }
}

/// Equal, numbers within a relative 1e-14: serde_json parses floats from text only to within
/// a few units in the last place unless its `float_roundtrip` feature is on (measured here: 2
/// units for `-1.5494739391785505e231`), and a whole float the decoder then makes an integer
/// keeps that unit (found by this target: `8917573965741180.0` read as `...181`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}

fn same_emissions(a: &[Emission], b: &[Emission]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.source == b.source
                && a.event == b.event
                && same(&Value::Object(a.data.clone()), &Value::Object(b.data.clone()))
        })
}

// --- the channels agree -------------------------------------------------------------------

/// A generated map written as `metadata` protobuf and as JSON text decodes to the same.
fn channels(u: &mut Unstructured<'_>) {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for _ in 0..count(u, 6) {
        entries.push((event_key(u), data(u)));
    }
    // Each key once: the protobuf keeps the last of a repeated key, and so does JSON.
    let mut map = Map::new();
    for (key, value) in &entries {
        map.insert(key.clone(), value.clone());
    }
    let metadata = pb_metadata(&entries);
    let text = serde_json::to_string(&map).unwrap();
    let from_pb = emitted::from_metadata(&metadata);
    let from_text = emitted::from_json(text.as_bytes());
    check(from_pb.clone(), metadata.len());
    check(from_text.clone(), text.len());
    // The inputs' own caps differ (protobuf and JSON text are not the same size).
    let (Ok(from_pb), Ok(from_text)) = (from_pb, from_text) else {
        return;
    };
    assert_eq!(from_pb.rejected, from_text.rejected, "{text}");
    assert!(same_emissions(&from_pb.emissions, &from_text.emissions), "{text}");
}

fn event_key(u: &mut Unstructured<'_>) -> String {
    const KEYS: &[&str] = &[
        "payments.refund-issued",
        "orders.created",
        "a.b",
        "a.b.c",
        "nodot",
        "",
        ".x",
        "x.",
        "caf\u{e9}.\u{1f600}",
    ];
    match count(u, 5) {
        0..=3 => pick(u, KEYS).to_string(),
        4 => format!("s.{}", "e".repeat(count(u, MAX_KEY_BYTES + 2))),
        _ => string(u),
    }
}

/// An event's data: mostly an object, sometimes deep, sometimes a string holding JSON, or not
/// an object at all. Numbers are doubles, as Lua gives them.
fn data(u: &mut Unstructured<'_>) -> Value {
    let mut data = match count(u, 9) {
        0 => value(u, 0),
        1 => {
            let mut deep = Value::Object(Map::new());
            for _ in 1..count(u, MAX_DEPTH + 2).max(1) {
                deep = if chance(u, 1, 2) {
                    Value::Array(vec![deep])
                } else {
                    Value::Object(Map::from_iter([("a".to_string(), deep)]))
                };
            }
            if chance(u, 1, 2) { deep } else { Value::Array(vec![deep]) }
        }
        _ => {
            let mut object = Map::new();
            for _ in 0..count(u, 5) {
                object.insert(string(u), value(u, 1));
            }
            Value::Object(object)
        }
    };
    as_doubles(&mut data);
    if chance(u, 1, 5) {
        return Value::String(data.to_string());
    }
    data
}

/// Every number as the double Lua would give.
fn as_doubles(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64() {
                *value = Number::from_f64(float).map_or(Value::Null, Value::Number);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_doubles),
        Value::Object(object) => object.values_mut().for_each(as_doubles),
        _ => {}
    }
}

// --- protobuf, as Envoy writes it ----------------------------------------------------------

/// `Metadata` with namespace `event_hooks` holding `entries` (a repeated key written each
/// time), after another namespace.
fn pb_metadata(entries: &[(String, Value)]) -> Vec<u8> {
    let other = writer::pb_struct(&[(b"x", writer::pb_string(b"y"))]);
    let mut out = Vec::new();
    writer::len_field(1, &writer::entry(b"someone_else", &other), &mut out);
    let fields: Vec<(&[u8], Vec<u8>)> = entries
        .iter()
        .map(|(key, value)| (key.as_bytes(), writer::pb_value(value)))
        .collect();
    out.extend(writer::pb_metadata(&fields));
    out
}
