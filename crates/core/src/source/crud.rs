//! The `crud` and `dao:crud` sources: entity changes, seen as the admin API calls that pass
//! through the proxy (Kong's Admin API, or any REST API).
//!
//! Top-level settings: `"crud": {"match": <filter on traffic fields selecting the admin API
//! requests>, "prefix": "/", "max_body_bytes": 65536}`. For a 2xx answer to a request that
//! `match` selects, the path after `prefix` maps to a write:
//!
//! | request | operation |
//! |---|---|
//! | `POST {prefix}{schema}` | create |
//! | `PUT {prefix}{schema}/{id}` | create when the status is 201, else update |
//! | `PATCH {prefix}{schema}/{id}` | update |
//! | `DELETE {prefix}{schema}/{id}` | delete |
//!
//! Nested paths (`/services/{s}/routes`, `/services/{s}/routes/{r}`) name the last collection
//! as the schema. Event data: `operation`, `entity` (the response's JSON body; for a delete
//! without a body, `{"id": "<id>"}`), `old_entity` (always null: the proxy never sees the
//! entity before the change) and `schema`. Like Kong, each write emits the `crud` events
//! `<schema>` and `<schema>:<operation>`, and the `dao:crud` event `<operation>`.

use serde_json::{Map, Value};

#[cfg(feature = "schema")]
use serde_json::json;

use super::{EventSpec, SourceKind};
use crate::event::Event;
use crate::filter::Filter;
use crate::needs::{HookUse, Needs};
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, whole_entry};
use crate::reader::{Object, Problems, Whole};
use crate::source::Source;

/// The `crud` source: `<schema>` and `<schema>:<operation>` events; reads the top-level `crud`
/// settings, which `dao:crud` shares.
pub struct CrudKind;

/// The `dao:crud` source: one event per operation.
pub struct DaoKind;

impl SourceKind for CrudKind {
    fn name(&self) -> &'static str {
        "crud"
    }

    fn events(&self) -> &'static [EventSpec] {
        CRUD_EVENTS
    }

    fn spec(&self, name: &str) -> Option<&'static EventSpec> {
        crud_spec(name)
    }

    fn event_names(&self) -> String {
        "<schema> or <schema>:create, :update, :delete (a schema is A-Z a-z 0-9 _ -)".to_string()
    }

    #[cfg(feature = "schema")]
    fn event_schema(&self) -> Value {
        let operations: Vec<&str> = DAO_EVENTS.iter().map(|spec| spec.name).collect();
        json!({
            "type": "string",
            "pattern": format!("^[A-Za-z0-9_-]{{1,{MAX_SCHEMA_LEN}}}(:({}))?$", operations.join("|")),
        })
    }

    fn settings_key(&self) -> Option<&'static str> {
        Some("crud")
    }

    fn read_settings(
        &self,
        value: &Value,
        path: &str,
        problems: &Problems,
        settings: &mut super::Settings,
    ) {
        settings.crud = Settings::parse(value, path, problems);
    }

    #[cfg(feature = "schema")]
    fn settings_schema(&self, schema: &Parts) -> Option<Value> {
        let mut crud = schema.object(
            "crud",
            &[KEYS],
            vec![
                ("match", crate::filter::schema()),
                ("prefix", json!({"type": "string", "pattern": "^/"})),
                whole_entry(BODY_BYTES),
            ],
        );
        crud.insert("required".into(), json!(["match"]));
        Some(Value::Object(crud))
    }

    fn refuse_hook(&self, settings: &super::Settings) -> Option<String> {
        refuse_without_settings(self.name(), settings)
    }

    fn needs(&self, _hooks: &[HookUse<'_>], settings: &super::Settings) -> Needs {
        needs(settings)
    }

    fn observe(
        &self,
        request: &super::Request<'_>,
        _state: Option<&mut dyn std::any::Any>,
        emit: &dyn super::Emit,
    ) {
        CrudKind::writes(request, emit);
    }
}

impl CrudKind {
    /// A write the admin API answered 2xx, that `crud.match` selects: its `crud` and
    /// `dao:crud` events (both sources' hooks are routed from here, once per request).
    fn writes(request: &super::Request<'_>, emit: &dyn super::Emit) {
        let Some(settings) = &request.settings.crud else {
            return;
        };
        let view = request.view;
        // The method uncapped: only a short one (POST, PUT, PATCH, DELETE) maps to a write.
        let (Some(method), Some(path), Some(status)) =
            (view.method(), request.capture.path(), view.status())
        else {
            return;
        };
        if !settings
            .matcher
            .matches(view, crate::event::Redaction::none_shared())
        {
            return;
        }
        let Some(write) = map(method, path, status, &settings.prefix) else {
            return;
        };
        let (events, missing) = events(&write, &request.capture.response_body);
        match missing {
            Some(Missing::TooLarge) => emit.count(super::Count::CrudBodyTooLarge),
            Some(Missing::NotJson) => emit.count(super::Count::CrudBodyNotJson),
            None => {}
        }
        for event in &events {
            emit.event(event);
        }
    }
}

impl SourceKind for DaoKind {
    fn name(&self) -> &'static str {
        "dao:crud"
    }

    fn observed_by(&self) -> Option<Source> {
        Some(Source::CRUD)
    }

    fn events(&self) -> &'static [EventSpec] {
        DAO_EVENTS
    }

    fn refuse_hook(&self, settings: &super::Settings) -> Option<String> {
        refuse_without_settings(self.name(), settings)
    }

    fn needs(&self, _hooks: &[HookUse<'_>], settings: &super::Settings) -> Needs {
        needs(settings)
    }
}

fn refuse_without_settings(source: &str, settings: &super::Settings) -> Option<String> {
    settings.crud.is_none().then(|| {
        format!(
            "source {source} needs the top-level crud settings (crud.match selects the admin API's requests)"
        )
    })
}

/// What both sources read of every request: the method, path and status, and what
/// `crud.match` tests.
fn needs(settings: &super::Settings) -> Needs {
    let Some(crud) = &settings.crud else {
        return Needs::default();
    };
    let mut needs = Needs::default();
    for field in [
        ["request", "method"],
        ["request", "path"],
        ["response", "status"],
    ] {
        needs = needs.union(Needs::of_field(&field).at_first());
    }
    for path in crud.matcher.fields() {
        needs = needs.union(Needs::of_field(path).at_first());
    }
    needs
}

pub const FIELDS: &[&str] = &["operation", "entity", "old_entity", "schema"];

/// `crud`'s events, by form: any schema name works (`consumers`, `consumers:create`, ...).
pub const CRUD_EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "<schema>",
        fields: FIELDS,
        unique: &[],
        description: "Any write to the entities of <schema> (consumers, services, routes, plugins, ...).",
    },
    EventSpec {
        name: "<schema>:create",
        fields: FIELDS,
        unique: &[],
        description: "An entity of <schema> was created.",
    },
    EventSpec {
        name: "<schema>:update",
        fields: FIELDS,
        unique: &[],
        description: "An entity of <schema> was updated.",
    },
    EventSpec {
        name: "<schema>:delete",
        fields: FIELDS,
        unique: &[],
        description: "An entity of <schema> was deleted.",
    },
];

pub const DAO_EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "create",
        fields: FIELDS,
        unique: &[],
        description: "An entity was created.",
    },
    EventSpec {
        name: "update",
        fields: FIELDS,
        unique: &[],
        description: "An entity was updated.",
    },
    EventSpec {
        name: "delete",
        fields: FIELDS,
        unique: &[],
        description: "An entity was deleted.",
    },
];

/// The spec of `crud` event `name`: `<schema>` or `<schema>:<operation>`, where a schema is
/// made of `A-Z a-z 0-9 _ -`.
pub fn crud_spec(name: &str) -> Option<&'static EventSpec> {
    let (schema, operation) = match name.split_once(':') {
        Some((schema, operation)) => (schema, Some(operation)),
        None => (name, None),
    };
    if !is_schema(schema) {
        return None;
    }
    let index = match operation {
        None => 0,
        Some("create") => 1,
        Some("update") => 2,
        Some("delete") => 3,
        Some(_) => return None,
    };
    CRUD_EVENTS.get(index)
}

/// The longest entity schema name an event may name.
pub const MAX_SCHEMA_LEN: usize = 128;

fn is_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCHEMA_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

pub const KEYS: &[&str] = &["match", "prefix", "max_body_bytes"];
/// The largest response body read for an entity.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The numbers `max_body_bytes` takes.
pub const BODY_BYTES: Whole = Whole::new("max_body_bytes", 1, MAX_BODY_BYTES);

/// The top-level `crud` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Selects the admin API's requests among all traffic.
    pub matcher: Filter,
    /// Where the admin API's paths start; always ends with `/`.
    pub prefix: String,
    /// The most bytes of a response body read for its entity.
    pub max_body_bytes: usize,
}

impl Settings {
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let object = Object::new(value, path, KEYS, problems)?;
        let matcher = object.required("match").map(|value| {
            let here = object.path_of("match");
            let filter = Filter::compile(value, &here, problems);
            crate::source::traffic::check_filter(&filter, &here, problems);
            filter
        });
        let prefix = match object.optional_str("prefix") {
            None => "/".to_string(),
            Some(prefix) if prefix.starts_with('/') => {
                if prefix.ends_with('/') {
                    prefix.to_string()
                } else {
                    format!("{prefix}/")
                }
            }
            Some(_) => {
                problems.add(&object.path_of("prefix"), "must start with /");
                "/".to_string()
            }
        };
        let max_body_bytes = object.whole(BODY_BYTES, 65_536);
        Some(Settings {
            matcher: matcher?,
            prefix,
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(65_536),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// An entity write, as the path and the status say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub operation: Operation,
    pub schema: String,
    /// The entity's id from the path (for `PUT`, `PATCH`, `DELETE`).
    pub id: Option<String>,
}

/// Whether a request with this method could be an entity write (its response body is then
/// worth reading).
pub fn is_write_method(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// The write a request made, if any: a 2xx answer to a write method on a path under `prefix`
/// (`path` may carry a query, which is ignored).
pub fn map(method: &str, path: &str, status: u64, prefix: &str) -> Option<Write> {
    if !(200..300).contains(&status) {
        return None;
    }
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let rest = path
        .strip_prefix(prefix)
        .or_else(|| (format!("{path}/") == prefix).then_some(""))?;
    let segments: Vec<&str> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let is_collection = segments.len() % 2 == 1;
    let (operation, schema, id) = match (method, is_collection) {
        ("POST", true) => (Operation::Create, segments.last()?, None),
        (_, true) | ("POST", false) => return None,
        ("PUT", false) if status == 201 => (
            Operation::Create,
            segments.iter().rev().nth(1)?,
            segments.last(),
        ),
        ("PUT" | "PATCH", false) => (
            Operation::Update,
            segments.iter().rev().nth(1)?,
            segments.last(),
        ),
        ("DELETE", false) => (
            Operation::Delete,
            segments.iter().rev().nth(1)?,
            segments.last(),
        ),
        _ => return None,
    };
    if !is_schema(schema) {
        return None;
    }
    Some(Write {
        operation,
        schema: schema.to_string(),
        id: id.map(|id| id.to_string()),
    })
}

pub use super::traffic::Body;

/// Why an event has no `entity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    TooLarge,
    NotJson,
}

/// The `crud` and `dao:crud` events of one write: `<schema>`, `<schema>:<op>` and `<op>`;
/// and why `entity` is absent, when it is.
pub fn events(write: &Write, body: &Body) -> (Vec<Event>, Option<Missing>) {
    let (entity, missing) = match body {
        Body::Complete(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => {
            match serde_json::from_slice::<Value>(bytes) {
                Ok(entity) => (Some(entity), None),
                Err(_) => (None, Some(Missing::NotJson)),
            }
        }
        Body::TooLarge => (None, Some(Missing::TooLarge)),
        _ => (
            write
                .id
                .as_ref()
                .filter(|_| write.operation == Operation::Delete)
                .map(|id| {
                    let mut entity = Map::new();
                    entity.insert("id".into(), Value::String(id.clone()));
                    Value::Object(entity)
                }),
            None,
        ),
    };
    let mut data = Map::new();
    data.insert(
        "operation".into(),
        Value::String(write.operation.name().into()),
    );
    if let Some(entity) = entity {
        data.insert("entity".into(), entity);
    }
    data.insert("old_entity".into(), Value::Null);
    data.insert("schema".into(), Value::String(write.schema.clone()));
    let operation = write.operation.name();
    let events = vec![
        Event::new(Source::CRUD, write.schema.clone(), data.clone()),
        Event::new(
            Source::CRUD,
            format!("{}:{operation}", write.schema),
            data.clone(),
        ),
        Event::new(Source::DAO_CRUD, operation, data),
    ];
    (events, missing)
}

#[cfg(test)]
mod tests;
