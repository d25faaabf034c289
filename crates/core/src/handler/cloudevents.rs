//! The bodies a `webhook` hook sends (`config.format`): Kong's (the default), or a CloudEvent
//! 1.0 over HTTP, structured (`cloudevents`: the event as one JSON object, content type
//! `application/cloudevents+json`; a batch is `application/cloudevents-batch+json`, an array)
//! or binary (`cloudevents-binary`: the attributes as `ce-*` headers, percent-encoded as the
//! HTTP binding says, the body the event data; never batched).
//!
//! Attributes: `specversion` `1.0`; `id` the delivery's own id ([`Stamp`]: stable across
//! retries, and the `webhook-id` of an event sent alone); `source` `config.cloudevents.source`
//! (default `/event_hooks/<hook name>`, percent-encoded); `type`
//! `<type_prefix>.<source>.<event>` (`type_prefix` default `event_hooks`); `time` when the
//! event was routed (RFC 3339, milliseconds); `datacontenttype` `application/json`; `data`
//! the event data, as the hook sees it (redacted); and `config.cloudevents.extensions`, each
//! a template rendered from the event (an empty rendering is left out).

#[cfg(feature = "schema")]
use serde_json::json;
use serde_json::{Map, Value};

use crate::event::{Bodies, Redaction, Stamp};
#[cfg(feature = "schema")]
use crate::reader::schema::Parts;
use crate::reader::{Object, Problems, child};
use crate::source::traffic::rfc3339;
use crate::template::{self, Escape, Template};

/// `config.format`'s values.
pub const FORMATS: &[&str] = &["kong", "cloudevents", "cloudevents-binary"];
/// The keys of `config.cloudevents`.
pub const KEYS: &[&str] = &["source", "type_prefix", "extensions"];
pub const DEFAULT_TYPE_PREFIX: &str = "event_hooks";
/// The most extension attributes a hook adds.
pub const MAX_EXTENSIONS: usize = 16;
/// The longest extension attribute name (CloudEvents: SHOULD NOT exceed 20).
pub const MAX_EXTENSION_NAME: usize = 20;
/// Attribute names an extension may not take (the spec's own, and `data_base64`).
pub const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];
pub const STRUCTURED: &str = "application/cloudevents+json";
pub const STRUCTURED_BATCH: &str = "application/cloudevents-batch+json";
/// The header prefix of binary mode's attributes.
pub const HEADER_PREFIX: &str = "ce-";

/// What a `webhook` hook's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Kong's: the event data plus `source` and `event`.
    #[default]
    Kong,
    /// A structured-mode CloudEvent.
    Structured,
    /// A binary-mode CloudEvent.
    Binary,
}

impl Format {
    /// Reads `config.format` (absent: Kong's).
    pub fn parse(config: &Object<'_, '_>, problems: &Problems) -> Format {
        match config.optional_str("format") {
            None | Some("kong") => Format::Kong,
            Some("cloudevents") => Format::Structured,
            Some("cloudevents-binary") => Format::Binary,
            Some(_) => {
                problems.add(
                    &config.path_of("format"),
                    format!("expected one of: {}", FORMATS.join(", ")),
                );
                Format::Kong
            }
        }
    }

    /// The `content-type` of one event's body, and of a batch's.
    pub fn content_types(self) -> (&'static str, &'static str) {
        match self {
            Format::Kong | Format::Binary => ("application/json", "application/json"),
            Format::Structured => (STRUCTURED, STRUCTURED_BATCH),
        }
    }
}

/// `config.cloudevents`: how a hook's CloudEvents are attributed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CloudEvents {
    /// `source`; `None`: `/event_hooks/<hook name>`.
    pub source: Option<String>,
    pub type_prefix: Option<String>,
    /// Extension attributes: lowercase names, templates over the event.
    pub extensions: Vec<(String, Template)>,
}

impl CloudEvents {
    /// Reads `config.cloudevents` at `path`.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<CloudEvents> {
        let object = Object::new(value, path, KEYS, problems)?;
        let attribute = |key: &str| {
            let text = object.optional_str(key)?;
            if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.add(
                    &object.path_of(key),
                    "must be a non-empty URI reference or name without spaces or control characters",
                );
                return None;
            }
            Some(text.to_string())
        };
        let (source, type_prefix) = (attribute("source"), attribute("type_prefix"));
        let mut extensions = Vec::new();
        let at = object.path_of("extensions");
        for (name, text) in object.optional_string_map("extensions") {
            let here = child(&at, &name);
            if let Some(why) = extension_name_problem(&name) {
                problems.add(&here, why);
            } else if let Some(template) = Template::read(text, &here, problems) {
                extensions.push((name, template));
            }
        }
        if extensions.len() > MAX_EXTENSIONS {
            problems.add(
                &at,
                format!("at most {MAX_EXTENSIONS} extension attributes"),
            );
        }
        Some(CloudEvents {
            source,
            type_prefix,
            extensions,
        })
    }

    /// The attributes of the event in `bodies` for its stamped delivery, `data` aside, in
    /// the order binary mode sends them.
    fn attributes(&self, bodies: &Bodies<'_>, redaction: &Redaction) -> Vec<(String, String)> {
        let event = bodies.event();
        let Stamp { hook, id, time_ms } = bodies.stamped();
        let source = self
            .source
            .clone()
            .unwrap_or_else(|| format!("/event_hooks/{}", percent_encode(hook, false)));
        let prefix = self.type_prefix.as_deref().unwrap_or(DEFAULT_TYPE_PREFIX);
        let mut attributes = vec![
            ("specversion".to_string(), "1.0".to_string()),
            ("id".to_string(), id.clone()),
            ("source".to_string(), source),
            (
                "type".to_string(),
                format!("{prefix}.{}.{}", event.source_name, event.name),
            ),
            (
                "time".to_string(),
                rfc3339(time_ms.saturating_mul(1_000_000)),
            ),
        ];
        if !self.extensions.is_empty() {
            let context = event.kong_payload(redaction);
            for (name, template) in &self.extensions {
                let value = template.render(&context, Escape::None);
                if !value.is_empty() {
                    attributes.push((name.clone(), value));
                }
            }
        }
        attributes
    }

    /// A structured-mode event: one JSON object.
    pub fn structured(&self, bodies: &Bodies<'_>, redaction: &Redaction) -> Vec<u8> {
        let mut object: Map<String, Value> = self
            .attributes(bodies, redaction)
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        object.insert("datacontenttype".into(), "application/json".into());
        object.insert("data".into(), bodies.event().data_for(redaction));
        // Serializing a serde_json::Value to a Vec cannot fail.
        serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
    }

    /// A binary-mode event: its `ce-*` headers and its body (the data).
    pub fn binary(
        &self,
        bodies: &Bodies<'_>,
        redaction: &Redaction,
    ) -> (Vec<(String, String)>, Vec<u8>) {
        let headers = self
            .attributes(bodies, redaction)
            .into_iter()
            .map(|(name, value)| {
                (
                    format!("{HEADER_PREFIX}{name}"),
                    percent_encode(&value, true),
                )
            })
            .collect();
        let body = serde_json::to_vec(&bodies.event().data_for(redaction)).unwrap_or_default();
        (headers, body)
    }
}

/// Why `name` cannot be an extension attribute's, if it cannot.
fn extension_name_problem(name: &str) -> Option<String> {
    if name.is_empty()
        || name.len() > MAX_EXTENSION_NAME
        || !name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    {
        return Some(format!(
            "an extension attribute's name is 1 to {MAX_EXTENSION_NAME} lowercase letters and digits"
        ));
    }
    RESERVED
        .contains(&name)
        .then(|| format!("{name} is a CloudEvents attribute the filter sets"))
}

/// Percent-encodes `text`: in a header value (`header`), as CloudEvents' HTTP binding asks
/// (space, `"`, `%` and everything outside printable ASCII); otherwise every byte but
/// RFC 3986's unreserved characters (for a path segment: the templates' [`Escape::Percent`]).
pub fn percent_encode(text: &str, header: bool) -> String {
    let mut out = Vec::with_capacity(text.len());
    if !header {
        // Unbounded: it cannot overflow.
        let _ = template::push(&mut out, text.as_bytes(), Escape::Percent, usize::MAX);
        return template::into_string(out);
    }
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    template::into_string(out)
}

/// Reads `config.cloudevents` for a hook of `format`: only CloudEvents formats take it.
pub fn parse_for(
    format: Format,
    config: &Object<'_, '_>,
    problems: &Problems,
) -> Option<CloudEvents> {
    let value = config.get("cloudevents");
    match (format, value) {
        (_, None) => Some(CloudEvents::default()),
        (Format::Kong, Some(_)) => {
            problems.add(
                &config.path_of("cloudevents"),
                "applies to format cloudevents or cloudevents-binary only",
            );
            None
        }
        (_, Some(value)) => CloudEvents::parse(value, &config.path_of("cloudevents"), problems),
    }
}

#[cfg(feature = "schema")]
/// The JSON Schema of `config.format` and `config.cloudevents` (at `at`, the hook's config).
pub fn schema_entries(parts: &Parts, at: &str) -> Vec<(&'static str, Value)> {
    // Draft 4 (Kong's validator) has no propertyNames: names by pattern, the attribute names
    // the filter sets are refused by the parser only.
    let extensions = json!({
        "type": "object",
        "maxProperties": MAX_EXTENSIONS,
        "patternProperties": {"^[a-z0-9]{1,20}$": {"type": "string"}},
        "additionalProperties": false,
    });
    let attribute = json!({"type": "string", "pattern": "^[^\\s]+$"});
    let cloudevents = parts.object(
        &format!("{at}.cloudevents"),
        &[KEYS],
        vec![
            ("source", attribute.clone()),
            ("type_prefix", attribute),
            ("extensions", extensions),
        ],
    );
    vec![
        ("format", json!({"enum": FORMATS, "default": "kong"})),
        ("cloudevents", Value::Object(cloudevents)),
    ]
}

#[cfg(test)]
mod tests;
