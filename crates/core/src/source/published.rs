//! Published sources: the sources a configuration declares under `publish`, as a Kong plugin
//! calls `event_hooks.publish(source, event, {fields, unique, description})`. Other filters
//! emit their events ([`crate::emitted`]); hooks name them like built-in sources.
//!
//! ```json
//! "publish": {
//!   "payments": {
//!     "description": "Events the payments filter emits",
//!     "with_request": false,
//!     "events": {
//!       "refund-issued": {"description": "A refund was issued",
//!                         "fields": ["order_id", "amount", "currency"], "unique": ["order_id"]}
//!     }
//!   }
//! }
//! ```
//!
//! A published source is a value made from the configuration, not a [`super::SourceKind`]
//! (whose names are `'static`): its id comes after the built-in ones, and the configuration's
//! registry ([`super::Sources`]) answers for it. Nothing here is global: a configuration that
//! is reloaded drops its published sources with it.

use serde_json::Value;
#[cfg(feature = "schema")]
use serde_json::json;

use super::{BUILTIN, EventSpec, SourceKind};
use crate::emitted::MAX_KEY_BYTES;
use crate::needs::Needs;
#[cfg(feature = "schema")]
use crate::reader::schema::Parts;
use crate::reader::{MAX_NAME_LEN, Object, Problems, child, element, is_name, kind};

/// The most sources one configuration may publish.
pub const MAX_SOURCES: usize = 32;
/// The most events one published source may have.
pub const MAX_EVENTS: usize = 64;
/// The most fields one published event may list.
pub const MAX_FIELDS: usize = 64;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// The keys of a published source.
pub const SOURCE_KEYS: &[&str] = &["description", "with_request", "channel", "events"];
/// Where a published source's emitter leaves its events: `metadata` (Envoy's dynamic metadata,
/// from Lua or a native filter; Kong's `kong.ctx.shared`) or `filter_state` (Envoy's filter
/// state, from another wasm filter's `set_property`; on Kong the same `kong.ctx.shared`).
pub const CHANNELS: &[&str] = &["metadata", "filter_state"];
/// The keys of a published event.
pub const EVENT_KEYS: &[&str] = &["description", "fields", "unique"];
/// The traffic sections `with_request` adds to an emitted event's data.
pub const REQUEST_SECTIONS: &[&str] = &["request", "response", "upstream"];

/// A source the configuration publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// A name as hooks' names are, without `.` (emitters name events `<source>.<event>`).
    pub name: String,
    pub description: String,
    /// Its events' data also gets the request's traffic fields ([`REQUEST_SECTIONS`]).
    pub with_request: bool,
    /// Its emitter uses Envoy's filter state rather than dynamic metadata ([`CHANNELS`]).
    pub filter_state: bool,
    /// In the configuration's (key) order; never empty.
    pub events: Vec<PublishedEvent>,
}

/// One event of a published source.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedEvent {
    pub name: String,
    pub description: String,
    /// The fields of its data, as the sources listing shows them.
    pub fields: Vec<String>,
    /// The fields that identify it for `on_change` (a subset of `fields`; empty: all the data).
    pub unique: Vec<String>,
}

impl Published {
    /// Its event called `name`.
    pub fn event(&self, name: &str) -> Option<&PublishedEvent> {
        self.events.iter().find(|event| event.name == name)
    }

    /// What a hook's `event` may be, for messages.
    pub fn event_names(&self) -> String {
        self.events
            .iter()
            .map(|event| event.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What the host must capture for its hooks: the emitted events, and with `with_request`
    /// every traffic field, once an event is built (the emitter's data decides nothing the
    /// request's fields would, so nothing is read before).
    pub fn needs(&self) -> Needs {
        let needs = if self.with_request {
            Needs::EVERYTHING.at_then()
        } else {
            Needs::default()
        };
        if self.filter_state {
            needs.with_emitted_filter_state()
        } else {
            needs.with_emitted()
        }
    }
}

/// What a published source is to code that asks any [`Source`](super::Source) for its kind:
/// nothing observed from requests, no settings. The registry answers for its name and events.
pub struct Kind;

impl SourceKind for Kind {
    fn name(&self) -> &'static str {
        "published"
    }

    fn events(&self) -> &'static [EventSpec] {
        &[]
    }

    fn made_from_requests(&self) -> bool {
        false
    }
}

/// Reads `publish` at `path`: every problem reported with its path, the sources read well
/// returned (the configuration is refused anyway when there is a problem).
pub fn read(value: &Value, path: &str, problems: &Problems) -> Vec<Published> {
    let Value::Object(sources) = value else {
        problems.add(
            path,
            format!(
                "expected an object of published sources, found {}",
                kind(value)
            ),
        );
        return Vec::new();
    };
    if sources.len() > MAX_SOURCES {
        problems.add(
            path,
            format!("at most {MAX_SOURCES} sources may be published"),
        );
        return Vec::new();
    }
    sources
        .iter()
        .filter_map(|(name, value)| read_source(name, value, &child(path, name), problems))
        .collect()
}

fn read_source(name: &str, value: &Value, path: &str, problems: &Problems) -> Option<Published> {
    if !is_name(name, false) {
        problems.add(
            path,
            format!(
                "a published source's name must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ - (no `.`: emitters name events <source>.<event>)"
            ),
        );
    } else if BUILTIN.iter().any(|builtin| builtin.name() == name) {
        problems.add(
            path,
            "a built-in source has this name; publish the source under another",
        );
    }
    let source = Object::new(value, path, SOURCE_KEYS, problems)?;
    let description = description(&source);
    let with_request = source.optional_bool("with_request", false);
    let filter_state = match source.get("channel") {
        None => false,
        Some(Value::String(channel)) if channel == "metadata" => false,
        Some(Value::String(channel)) if channel == "filter_state" => true,
        Some(_) => {
            problems.add(
                &source.path_of("channel"),
                format!("expected one of: {}", CHANNELS.join(", ")),
            );
            false
        }
    };
    let events_path = source.path_of("events");
    let events = match source.required("events")? {
        Value::Object(events) if events.is_empty() => {
            problems.add(&events_path, "publish at least one event");
            return None;
        }
        Value::Object(events) if events.len() > MAX_EVENTS => {
            problems.add(
                &events_path,
                format!("at most {MAX_EVENTS} events per published source"),
            );
            return None;
        }
        Value::Object(events) => events,
        other => {
            problems.add(
                &events_path,
                format!("expected an object of events, found {}", kind(other)),
            );
            return None;
        }
    };
    let events: Vec<PublishedEvent> = events
        .iter()
        .filter_map(|(event, value)| {
            read_event(name, event, value, &child(&events_path, event), problems)
        })
        .collect();
    Some(Published {
        name: name.to_string(),
        description,
        with_request,
        filter_state,
        events,
    })
}

fn read_event(
    source: &str,
    name: &str,
    value: &Value,
    path: &str,
    problems: &Problems,
) -> Option<PublishedEvent> {
    if !is_name(name, true) {
        problems.add(
            path,
            format!("an event's name must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . -"),
        );
    } else if source.len() + 1 + name.len() > MAX_KEY_BYTES {
        problems.add(
            path,
            format!(
                "<source>.<event> is over {MAX_KEY_BYTES} bytes, the longest key an emitter may give"
            ),
        );
    }
    let event = Object::new(value, path, EVENT_KEYS, problems)?;
    let description = description(&event);
    let fields = names(&event, "fields");
    if fields.len() > MAX_FIELDS {
        problems.add(
            &event.path_of("fields"),
            format!("at most {MAX_FIELDS} fields per event"),
        );
    }
    let unique = names(&event, "unique");
    let unique_path = event.path_of("unique");
    for (index, field) in unique.iter().enumerate() {
        if !fields.contains(field) {
            problems.add(
                &element(&unique_path, index),
                "not one of the event's fields; `unique` lists some of `fields`",
            );
        }
    }
    Some(PublishedEvent {
        name: name.to_string(),
        description,
        fields,
        unique,
    })
}

/// An optional `description`, at most [`MAX_DESCRIPTION_LEN`] bytes.
fn description(object: &Object<'_, '_>) -> String {
    let text = object.optional_str("description").unwrap_or_default();
    if text.len() > MAX_DESCRIPTION_LEN {
        object.problems().add(
            &object.path_of("description"),
            format!("at most {MAX_DESCRIPTION_LEN} bytes"),
        );
    }
    text.to_string()
}

/// An optional list of field names at `key` (`fields`, `unique`): each a non-empty string of at
/// most [`MAX_NAME_LEN`] bytes (a dotted path into the data), listed once.
fn names(object: &Object<'_, '_>, key: &str) -> Vec<String> {
    let names = object.optional_list(key, Vec::new, |item| {
        item.as_str()
            .filter(|name| !name.is_empty() && name.len() <= MAX_NAME_LEN)
            .map(str::to_string)
            .ok_or("a field name (1 to 128 bytes)")
    });
    let path = object.path_of(key);
    for (index, name) in names.iter().enumerate() {
        match names.iter().position(|other| other == name) {
            Some(first) if first < index => object.problems().add(
                &element(&path, index),
                format!("listed twice, also at {key}[{first}]"),
            ),
            _ => {}
        }
    }
    names
}

/// The pattern of a published source's name (the parser also refuses built-in names).
#[cfg(feature = "schema")]
pub fn source_pattern() -> String {
    format!("^[A-Za-z0-9_-]{{1,{MAX_NAME_LEN}}}$")
}

/// The pattern of a published event's name.
#[cfg(feature = "schema")]
pub fn event_pattern() -> String {
    format!("^[A-Za-z0-9_.-]{{1,{MAX_NAME_LEN}}}$")
}

#[cfg(feature = "schema")]
/// The JSON Schema of `publish`.
pub fn schema(parts: &Parts) -> Value {
    let text = json!({"type": "string", "maxLength": MAX_DESCRIPTION_LEN});
    let names = json!({"type": "array", "maxItems": MAX_FIELDS, "uniqueItems": true,
                       "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN}});
    let event = parts.object(
        "publish.<source>.events.<event>",
        &[EVENT_KEYS],
        vec![
            ("description", text.clone()),
            ("fields", names.clone()),
            ("unique", names),
        ],
    );
    let mut source = parts.object(
        "publish.<source>",
        &[SOURCE_KEYS],
        vec![
            ("description", text),
            ("with_request", json!({"type": "boolean"})),
            ("channel", json!({"enum": CHANNELS})),
            (
                "events",
                json!({
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": MAX_EVENTS,
                    "patternProperties": {event_pattern(): Value::Object(event)},
                    "additionalProperties": false,
                }),
            ),
        ],
    );
    source.insert("required".into(), json!(["events"]));
    let builtin: Vec<Value> = BUILTIN
        .iter()
        .map(|kind| json!({"required": [kind.name()]}))
        .collect();
    json!({
        "description": "Sources other filters emit events of, as Kong's event_hooks.publish declares them.",
        "type": "object",
        "maxProperties": MAX_SOURCES,
        "patternProperties": {source_pattern(): Value::Object(source)},
        "additionalProperties": false,
        "not": {"anyOf": builtin},
    })
}

#[cfg(test)]
mod tests;
