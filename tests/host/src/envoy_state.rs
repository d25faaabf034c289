//! What other Envoy filters leave on a stream for a wasm filter to read, as Envoy 1.40 hands it
//! over (measured: `docs/src/emitted-wire.md`):
//!
//! * dynamic metadata (a Lua filter's `dynamicMetadata():set(namespace, key, value)`, a native
//!   filter's): the property `metadata` is the serialized `envoy.config.core.v3.Metadata`,
//!   every namespace a `google.protobuf.Struct`; Ok with no bytes when nothing was set;
//! * filter state (another wasm filter's `set_property([name], bytes)`, stored under
//!   `wasm.<name>`): `filter_state` `wasm.<name>` and the top-level `<name>` are the bytes as
//!   set, NotFound when not set; `filter_state` alone is SerializationFailure.
//!
//! The protobuf is written here from protobuf's wire format (proto3: a oneof member is written
//! even when it holds its default, so `null_value` is `08 00`), not from the filter's decoder.

use std::collections::BTreeMap;

use serde_json::Value;

/// A field's key: its number and wire type.
fn key(out: &mut Vec<u8>, number: u8, wire_type: u8) {
    out.push(number << 3 | wire_type);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field (wire type 2): a string or an embedded message.
fn bytes_field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    key(out, number, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A map entry of a string key (field 1) and a message value (field 2), as field `number`.
fn map_entry(out: &mut Vec<u8>, number: u8, name: &str, message: &[u8]) {
    let mut entry = Vec::new();
    bytes_field(&mut entry, 1, name.as_bytes());
    bytes_field(&mut entry, 2, message);
    bytes_field(out, number, &entry);
}

/// A `google.protobuf.Value`: `null_value` 1, `number_value` 2 (a double: every JSON number),
/// `string_value` 3, `bool_value` 4, `struct_value` 5, `list_value` 6.
fn protobuf_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Null => {
            key(&mut out, 1, 0);
            varint(&mut out, 0);
        }
        Value::Number(number) => {
            key(&mut out, 2, 1);
            out.extend_from_slice(&number.as_f64().unwrap_or(f64::NAN).to_le_bytes());
        }
        Value::String(text) => bytes_field(&mut out, 3, text.as_bytes()),
        Value::Bool(flag) => {
            key(&mut out, 4, 0);
            varint(&mut out, u64::from(*flag));
        }
        Value::Object(fields) => bytes_field(&mut out, 5, &protobuf_struct(fields.iter())),
        Value::Array(items) => {
            // ListValue: repeated Value values = 1.
            let mut list = Vec::new();
            for item in items {
                bytes_field(&mut list, 1, &protobuf_value(item));
            }
            bytes_field(&mut out, 6, &list);
        }
    }
    out
}

/// A `google.protobuf.Struct`: `map<string, Value> fields = 1`.
fn protobuf_struct<'a>(fields: impl Iterator<Item = (&'a String, &'a Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        map_entry(&mut out, 1, name, &protobuf_value(value));
    }
    out
}

/// The value of Envoy's property `metadata`: `Metadata { map<string, Struct> filter_metadata
/// = 1 }` of what was set, `(namespace, key, value)` in order (a key set again replaces its
/// value). No bytes when nothing was set.
pub fn metadata(set: &[(String, String, Value)]) -> Vec<u8> {
    let mut namespaces: BTreeMap<&String, BTreeMap<&String, &Value>> = BTreeMap::new();
    for (namespace, key, value) in set {
        namespaces.entry(namespace).or_default().insert(key, value);
    }
    let mut out = Vec::new();
    for (namespace, fields) in namespaces {
        let fields = protobuf_struct(fields.into_iter());
        map_entry(&mut out, 1, namespace, &fields);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The bytes Envoy 1.40 gave for `set("event_hooks", "payments.nil", nil)`
    /// (docs/src/emitted-wire.md), and nothing for nothing set.
    #[test]
    fn as_envoy_serializes_it() {
        let set = [(
            "event_hooks".to_string(),
            "payments.nil".to_string(),
            Value::Null,
        )];
        assert_eq!(
            hex(&metadata(&set)),
            "0a230a0b6576656e745f686f6f6b7312140a120a0c7061796d656e74732e6e696c12020800"
        );
        assert!(metadata(&[]).is_empty());
    }

    /// One value of each kind, in the field order of the captured refund (a Struct's entries
    /// came in hash order from Envoy; here in key order).
    #[test]
    fn every_kind_of_value() {
        let value = protobuf_value(&json!({"amount": 300, "ok": true, "tags": ["a"]}));
        assert_eq!(
            hex(&value),
            concat!(
                "2a30",
                "0a13",
                "0a06616d6f756e74",
                "1209",
                "110000000000c07240",
                "0a08",
                "0a026f6b",
                "12022001",
                "0a0f",
                "0a0474616773",
                "1207",
                "32050a031a0161",
            )
        );
    }
}
