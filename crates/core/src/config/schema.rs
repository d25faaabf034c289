//! The configuration's JSON Schema (draft 4), built from the parser's own key lists, number
//! ranges and names, so that the two describe the same configuration.
//!
//! The schema is for what checks a configuration before the filter loads it: Kong's Admin API
//! and declarative loader (`kong/event_hooks.meta.json`), editors, CI. It is self-contained (no
//! `$ref`, which Kong's validator does not resolve across documents), refuses unknown keys
//! wherever the parser does, and is never stricter than the parser: what only the parser can
//! check (URLs in detail, templates, Rhai functions, environment variables, one hook naming
//! another) is left to it, so `event-hooks validate` remains the complete check.

use std::cell::RefCell;

use serde_json::{Map, Value, json};

use super::reader::Whole;
use super::{
    DELIVERY_KEYS, HOOK_KEYS, Host, MAX_HOOKS, MAX_NAME_LEN, SNOOZE, delivery_numbers, top_keys,
};
use crate::admin;
use crate::catalog::Catalog;
use crate::delivery::{breaker, retry};
use crate::filter::OPERATORS;
use crate::handler::HandlerKind;
use crate::signing::{self, MAX_SECRETS};
use crate::source::Source;

/// The `$schema` of a draft-4 schema, as Kong writes it.
pub const DRAFT_4: &str = "http://json-schema.org/draft-04/schema#";

/// How far a filter's `not` is described: deeper ones are left to the parser (a schema without
/// `$ref` cannot recurse).
const NOT_DEPTH: usize = 2;

/// The schema of the whole configuration.
pub fn schema() -> Value {
    schema_of(&Catalog::builtin())
}

/// The schema of a configuration whose hooks may name the kinds of `catalog`.
pub fn schema_of(catalog: &Catalog) -> Value {
    Builder {
        catalog: catalog.clone(),
        gaps: RefCell::default(),
    }
    .root()
}

/// `{"config_schema": <schema>}`: the `<filter>.meta.json` Kong (3.5 and later) reads next to
/// the filter's `.wasm` to validate a filter configuration written as JSON.
pub fn kong_meta() -> Value {
    json!({ "config_schema": schema() })
}

/// Where the schema and the parser's key lists disagree: a key the parser reads that the
/// schema does not type, or a typed key the parser does not read. Empty when they agree.
pub fn gaps() -> Vec<String> {
    let builder = Builder::default();
    builder.root();
    builder.gaps.into_inner()
}

/// Builds the schema, and records where it and the parser's key lists disagree. Handler and
/// source kinds describe their own settings with it.
pub struct Builder {
    catalog: Catalog,
    gaps: RefCell<Vec<String>>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            catalog: Catalog::builtin(),
            gaps: RefCell::default(),
        }
    }
}

impl Builder {
    fn gap(&self, text: String) {
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

    fn root(&self) -> Value {
        let mut types = vec![
            (
                "host",
                json!({
                    "description": "The proxy the filter runs in; left out, it is detected when the filter loads.",
                    "enum": Host::NAMES,
                }),
            ),
            ("hooks", self.hooks()),
            ("delivery", self.delivery()),
        ];
        for source in Source::all() {
            let kind = source.kind();
            if let (Some(key), Some(schema)) = (kind.settings_key(), kind.settings_schema(self)) {
                types.push((key, schema));
            }
        }
        types.push(("admin", self.admin()));
        let keys = top_keys();
        let mut root = self.object("$", &[&keys], types);
        root.insert("$schema".into(), json!(DRAFT_4));
        root.insert("title".into(), json!("event_hooks filter configuration"));
        root.insert(
            "description".into(),
            json!("Kong-style event hooks: when a source emits an event that passes a hook's filter, the hook's handler runs. `event-hooks validate` also checks what this schema cannot."),
        );
        root.insert("required".into(), json!(["hooks"]));
        Value::Object(root)
    }

    fn hooks(&self) -> Value {
        let mut hook = self.object(
            "hooks[]",
            &[HOOK_KEYS],
            vec![
                (
                    "name",
                    json!({
                        "type": "string",
                        "pattern": format!("^[A-Za-z0-9_.-]{{1,{MAX_NAME_LEN}}}$"),
                    }),
                ),
                ("enabled", json!({"type": "boolean"})),
                (
                    "source",
                    json!({"enum": Source::all().map(Source::name).collect::<Vec<_>>()}),
                ),
                ("event", json!({"type": "string"})),
                ("filter", filter()),
                ("handler", json!({"enum": self.catalog.handler_names()})),
                ("snooze", whole(SNOOZE)),
                ("on_change", json!({"type": "boolean"})),
                ("config", json!({"type": "object"})),
                (
                    "redact_headers",
                    json!({"type": ["boolean", "array"], "items": non_empty_string()}),
                ),
            ],
        );
        hook.insert("required".into(), json!(["source", "handler", "config"]));
        hook.insert(
            "allOf".into(),
            json!([
                {"oneOf": self.catalog.handlers().iter().map(|kind| self.handler(*kind)).collect::<Vec<_>>()},
                {"oneOf": Source::all().map(events).collect::<Vec<_>>()},
            ]),
        );
        json!({"type": "array", "maxItems": MAX_HOOKS, "items": Value::Object(hook)})
    }

    /// The hooks with handler `kind`, and what their `config` takes.
    fn handler(&self, kind: &dyn HandlerKind) -> Value {
        let name = kind.name();
        let config = kind.config_schema(self, &format!("hooks[].config ({name})"));
        json!({
            "required": ["handler"],
            "properties": {"handler": {"enum": [name]}, "config": Value::Object(config)},
        })
    }

    /// The keys every calling handler takes: signing and retries.
    pub fn call_types(&self) -> Vec<(&'static str, Value)> {
        let more_secrets = json!({
            "type": "array",
            "maxItems": MAX_SECRETS.saturating_sub(1),
            "items": {"type": "string"},
        });
        vec![
            ("secret", non_empty_string()),
            ("secret_env", non_empty_string()),
            ("secrets", more_secrets.clone()),
            ("secrets_env", more_secrets),
            (
                "signature",
                json!({"enum": signing::Scheme::NAMES.iter().map(|(name, _)| *name).collect::<Vec<_>>()}),
            ),
            ("retry", self.retry("hooks[].config.retry")),
        ]
    }

    fn retry(&self, at: &str) -> Value {
        Value::Object(self.object(
            at,
            &[retry::KEYS],
            vec![
                whole_entry(retry::MAX_ATTEMPTS),
                whole_entry(retry::MAX_AGE_MS),
                whole_entry(retry::BACKOFF_MS),
                whole_entry(retry::MAX_BACKOFF_MS),
            ],
        ))
    }

    fn delivery(&self) -> Value {
        use delivery_numbers as n;
        Value::Object(self.object(
            "delivery",
            &[DELIVERY_KEYS],
            vec![
                whole_entry(n::QUEUE_SIZE),
                whole_entry(n::MAX_QUEUE_BYTES_KEY),
                whole_entry(n::MAX_IN_FLIGHT),
                whole_entry(n::MAX_IN_FLIGHT_PER_DESTINATION),
                whole_entry(n::MAX_PENDING_RETRIES),
                whole_entry(n::TIMEOUT_MS),
                whole_entry(n::FLUSH_INTERVAL_MS),
                ("retry", self.retry("delivery.retry")),
                (
                    "breaker",
                    Value::Object(self.object(
                        "delivery.breaker",
                        &[breaker::KEYS],
                        vec![
                            whole_entry(breaker::FAILURES),
                            whole_entry(breaker::COOLDOWN_MS),
                        ],
                    )),
                ),
                ("dead_letter", json!({"type": "string"})),
            ],
        ))
    }

    fn admin(&self) -> Value {
        let mut admin = self.object(
            "admin",
            &[admin::KEYS],
            vec![
                ("prefix", json!({"type": "string", "pattern": "^/."})),
                ("token", non_empty_string()),
                ("token_env", non_empty_string()),
            ],
        );
        admin.insert(
            "oneOf".into(),
            json!([{"required": ["token"]}, {"required": ["token_env"]}]),
        );
        Value::Object(admin)
    }
}

/// The hooks of `source`, and the events they may name.
fn events(source: Source) -> Value {
    json!({
        "required": ["source"],
        "properties": {"source": {"enum": [source.name()]}, "event": source.kind().event_schema()},
    })
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

/// A filter: field paths to conditions.
pub fn filter() -> Value {
    json!({"type": "object", "additionalProperties": condition(NOT_DEPTH)})
}

/// A condition: a bare value (compared with `eq`), or an object of operators.
fn condition(depth: usize) -> Value {
    let any = json!({});
    let not = if depth == 0 {
        any.clone()
    } else {
        condition(depth - 1)
    };
    let operand = |operator: &str| match operator {
        "in" => json!({"type": "array", "minItems": 1}),
        "prefix" | "suffix" => json!({"type": "string"}),
        "gt" | "gte" | "lt" | "lte" => json!({"type": ["number", "string"]}),
        "exists" => json!({"type": "boolean"}),
        "contains" => json!({"not": {"type": "null"}}),
        "not" => not.clone(),
        _ => any.clone(),
    };
    let operators: Map<String, Value> = OPERATORS
        .iter()
        .map(|operator| (operator.to_string(), operand(operator)))
        .collect();
    json!({
        "anyOf": [
            {"type": ["array", "boolean", "integer", "null", "number", "string"]},
            {
                "type": "object",
                "minProperties": 1,
                "properties": operators,
                "additionalProperties": false,
            },
        ],
    })
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

#[cfg(test)]
mod tests;
