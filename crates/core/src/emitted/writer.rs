//! A protobuf writer of Envoy's `metadata` property (`Metadata`, `google.protobuf.Struct`,
//! `Value`), for the decoder's tests and the `emitted` fuzz target: the shapes a Lua table
//! takes, and those Lua cannot make. Never in the filter (`cfg(any(test, fuzzing))`).

use serde_json::Value;

use super::NAMESPACE;

pub fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field's tag: its number and wire type.
pub fn tag(number: u64, wire: u64, out: &mut Vec<u8>) {
    varint((number << 3) | wire, out);
}

/// A length-delimited field.
pub fn len_field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
    tag(number, 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A map entry: key (field 1), value (field 2).
pub fn entry(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    len_field(1, key, &mut out);
    len_field(2, value, &mut out);
    out
}

/// A `Struct` of `(key, Value bytes)`.
pub fn pb_struct(fields: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        len_field(1, &entry(key, value), &mut out);
    }
    out
}

/// A `Value` holding a number (a double).
pub fn pb_number(float: f64) -> Vec<u8> {
    let mut out = Vec::new();
    tag(2, 1, &mut out);
    out.extend_from_slice(&float.to_le_bytes());
    out
}

/// A `Value` holding a string (any bytes, for the cases that are not UTF-8).
pub fn pb_string(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    len_field(3, text, &mut out);
    out
}

/// A `Value` holding a `Struct`.
pub fn pb_object(fields: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    len_field(5, &pb_struct(fields), &mut out);
    out
}

/// A `Value` holding a list of `Value`s.
pub fn pb_list(items: &[Vec<u8>]) -> Vec<u8> {
    let mut list = Vec::new();
    for item in items {
        len_field(1, item, &mut list);
    }
    let mut out = Vec::new();
    len_field(6, &list, &mut out);
    out
}

/// The `Value` of a JSON value, numbers as doubles (as Envoy writes a Lua table).
pub fn pb_value(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => vec![0x08, 0x00],
        Value::Bool(flag) => vec![0x20, u8::from(*flag)],
        Value::Number(number) => pb_number(number.as_f64().unwrap_or(0.0)),
        Value::String(text) => pb_string(text.as_bytes()),
        Value::Object(object) => pb_object(&fields_of(object)),
        Value::Array(items) => pb_list(&items.iter().map(pb_value).collect::<Vec<_>>()),
    }
}

/// A JSON object's fields as `Struct` fields.
pub fn fields_of(object: &serde_json::Map<String, Value>) -> Vec<(&[u8], Vec<u8>)> {
    object
        .iter()
        .map(|(key, value)| (key.as_bytes(), pb_value(value)))
        .collect()
}

/// `Metadata` whose namespace `event_hooks` is the `Struct` of `fields`.
pub fn pb_metadata(fields: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    len_field(
        1,
        &entry(NAMESPACE.as_bytes(), &pb_struct(fields)),
        &mut out,
    );
    out
}
