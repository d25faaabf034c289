//! The configuration's JSON Schema (draft 4), built from the parser's own key lists, number
//! ranges and names, so that the two describe the same configuration.
//!
//! The schema is for what checks a configuration before the filter loads it: Kong's Admin API
//! and declarative loader (`kong/event_hooks.meta.json`), editors, CI. It is self-contained (no
//! `$ref`, which Kong's validator does not resolve across documents), refuses unknown keys
//! wherever the parser does, and is never stricter than the parser: what only the parser can
//! check (URLs in detail, templates, Rhai functions, environment variables, one hook naming
//! another) is left to it, so `event-hooks validate` remains the complete check.

use serde_json::{Value, json};

use crate::reader::schema::{Parts, non_empty_string, whole, whole_entry};

use super::admin;
use super::{
    DELIVERY_KEYS, HOOK_KEYS, Host, MAX_HOOKS, MAX_NAME_LEN, SNOOZE, delivery_numbers, top_keys,
};
use crate::catalog::Catalog;
use crate::delivery::{batching, breaker, retry};
use crate::handler::HandlerKind;
use crate::source::{Source, published};

/// The `$schema` of a draft-4 schema, as Kong writes it.
pub const DRAFT_4: &str = "http://json-schema.org/draft-04/schema#";

/// The schema of the whole configuration.
pub fn schema() -> Value {
    schema_of(&Catalog::builtin())
}

/// The schema of a configuration whose hooks may name the kinds of `catalog`.
pub fn schema_of(catalog: &Catalog) -> Value {
    Builder {
        catalog: catalog.clone(),
        parts: Parts::default(),
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
    builder.gaps()
}

/// Builds the schema from the catalog's kinds (each describes its own part with [`Parts`]),
/// and records where it and the parser's key lists disagree.
struct Builder {
    catalog: Catalog,
    parts: Parts,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            catalog: Catalog::builtin(),
            parts: Parts::default(),
        }
    }
}

impl std::ops::Deref for Builder {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl Builder {
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
            if let (Some(key), Some(schema)) =
                (kind.settings_key(), kind.settings_schema(&self.parts))
            {
                types.push((key, schema));
            }
        }
        types.push(("publish", published::schema(&self.parts)));
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
                // A built-in source, or one the configuration publishes.
                (
                    "source",
                    json!({"anyOf": [
                        {"enum": Source::all().map(Source::name).collect::<Vec<_>>()},
                        {"type": "string", "pattern": published::source_pattern()},
                    ]}),
                ),
                ("event", json!({"type": "string"})),
                ("filter", crate::filter::schema()),
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
                {"oneOf": Source::all().map(events).chain([published_events()]).collect::<Vec<_>>()},
            ]),
        );
        json!({"type": "array", "maxItems": MAX_HOOKS, "items": Value::Object(hook)})
    }

    /// The hooks with handler `kind`, and what their `config` takes.
    fn handler(&self, kind: &dyn HandlerKind) -> Value {
        let name = kind.name();
        let config = kind.config_schema(&self.parts, &format!("hooks[].config ({name})"));
        json!({
            "required": ["handler"],
            "properties": {"handler": {"enum": [name]}, "config": Value::Object(config)},
        })
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
                ("retry", retry::schema(self, "delivery.retry")),
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
                ("batch", batching::schema(self, "delivery.batch")),
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

/// The hooks of a published source (not a built-in one), and the events they may name (the
/// parser checks them against `publish`).
fn published_events() -> Value {
    json!({
        "required": ["source"],
        "properties": {
            "source": {"not": {"enum": Source::all().map(Source::name).collect::<Vec<_>>()}},
            "event": {"type": "string", "pattern": published::event_pattern()},
        },
    })
}

#[cfg(test)]
mod tests;
