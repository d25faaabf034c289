//! The pieces of the configuration's JSON Schema that handler and source kinds build their
//! own parts with: objects checked against the parser's key lists ([`Parts::object`], which
//! records every disagreement), and small schemas. A leaf: it knows no handler and no source.

use std::cell::RefCell;

use serde_json::{Map, Value, json};

use crate::reader::Whole;

/// Builds parts of the schema, and records where they and the parser's key lists disagree.
#[derive(Default)]
pub struct Parts {
    gaps: RefCell<Vec<String>>,
}

impl Parts {
    /// The disagreements recorded so far.
    pub fn gaps(&self) -> Vec<String> {
        self.gaps.borrow().clone()
    }

    pub fn gap(&self, text: String) {
        self.gaps.borrow_mut().push(text);
    }

    /// An object that takes exactly `keys` (the parser's list for it), each typed by `types`.
    pub fn object(
        &self,
        at: &str,
        keys: &[&[&str]],
        types: Vec<(&str, Value)>,
    ) -> Map<String, Value> {
        let keys: Vec<&str> = keys
            .iter()
            .flat_map(|group| group.iter().copied())
            .collect();
        let mut properties = Map::new();
        for (key, schema) in types {
            if !keys.contains(&key) {
                self.gap(format!(
                    "{at}.{key}: typed in the schema, not read by the parser"
                ));
            }
            properties.insert(key.to_string(), schema);
        }
        for key in &keys {
            if !properties.contains_key(*key) {
                self.gap(format!(
                    "{at}.{key}: read by the parser, not typed in the schema"
                ));
            }
        }
        let mut object = Map::new();
        object.insert("type".into(), json!("object"));
        object.insert("properties".into(), Value::Object(properties));
        object.insert("additionalProperties".into(), json!(false));
        object
    }
}

/// `url`, `cluster`, `headers` and `ssl_verify`: where a handler's calls go.
pub fn endpoint_types() -> Vec<(&'static str, Value)> {
    vec![
        (
            "url",
            json!({"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://."}),
        ),
        ("cluster", non_empty_string()),
        ("headers", string_map()),
        ("ssl_verify", json!({"type": "boolean"})),
    ]
}

/// `config` where the keys of each pair exclude each other.
pub fn exclusive(mut config: Map<String, Value>, pairs: &[[&str; 2]]) -> Map<String, Value> {
    let nots: Vec<Value> = pairs
        .iter()
        .map(|pair| json!({"not": {"required": pair}}))
        .collect();
    config.insert("allOf".into(), Value::Array(nots));
    config
}

pub fn whole(spec: Whole) -> Value {
    json!({"type": "integer", "minimum": spec.min, "maximum": spec.max})
}

pub fn whole_entry(spec: Whole) -> (&'static str, Value) {
    (spec.key, whole(spec))
}

pub fn non_empty_string() -> Value {
    json!({"type": "string", "minLength": 1})
}

pub fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}
