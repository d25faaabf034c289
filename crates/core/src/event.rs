//! Events: a source, an event name and the event data, a JSON object.
//!
//! A dotted path addresses nested objects (`response.status` is `{"response": {"status": 500}}`);
//! a numeric segment indexes an array. Numbers stay numbers.

use std::borrow::Cow;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::source_id::Source;

/// Header values that are replaced by this text unless a hook opts out.
pub const REDACTED: &str = "[redacted]";

/// The request and response headers redacted by default.
pub const DEFAULT_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "set-cookie",
];

/// One event, as a source emitted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: Source,
    /// Its source's name, as payloads and log lines give it: borrowed for a built-in source,
    /// owned for a published one (whose name comes from the configuration, not the code).
    pub source_name: Cow<'static, str>,
    /// The event name within its source (`request` for traffic).
    pub name: String,
    /// Always a JSON object.
    pub data: Value,
}

/// Which header values a hook sees as `"[redacted]"`, in `request.headers` and
/// `response.headers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redaction {
    /// Lowercase header names.
    names: Vec<String>,
    placeholder: Value,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::headers(DEFAULT_REDACTED_HEADERS.iter().map(|name| name.to_string()))
    }
}

impl Redaction {
    /// Redacts nothing.
    pub fn none() -> Self {
        Redaction::headers(std::iter::empty())
    }

    /// [`Redaction::none`], made once: for code that runs on every request and must not
    /// allocate (a new one allocates its placeholder).
    pub fn none_shared() -> &'static Redaction {
        static NONE: std::sync::LazyLock<Redaction> = std::sync::LazyLock::new(Redaction::none);
        &NONE
    }

    /// Redacts these header names (matched without regard to case).
    pub fn headers(names: impl IntoIterator<Item = String>) -> Self {
        Redaction {
            names: names
                .into_iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            placeholder: Value::String(REDACTED.to_string()),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// What a redacted value reads as.
    pub fn placeholder(&self) -> &Value {
        &self.placeholder
    }

    /// Whether `path` holds redacted header values: the event itself, `request`, `response`,
    /// or their `headers` maps.
    pub fn contains<S: AsRef<str>>(&self, path: &[S]) -> bool {
        if self.names.is_empty() {
            return false;
        }
        match path {
            [] => true,
            [side] => matches!(side.as_ref(), "request" | "response"),
            [side, headers] => {
                matches!(side.as_ref(), "request" | "response") && headers.as_ref() == "headers"
            }
            _ => false,
        }
    }

    /// Whether `path` is a redacted header value.
    pub fn covers<S: AsRef<str>>(&self, path: &[S]) -> bool {
        match path {
            [side, headers, name] => {
                matches!(side.as_ref(), "request" | "response")
                    && headers.as_ref() == "headers"
                    && self.names.iter().any(|redacted| redacted == name.as_ref())
            }
            _ => false,
        }
    }

    /// Replaces the redacted header values in `data` in place.
    fn apply(&self, data: &mut Value) {
        if self.names.is_empty() {
            return;
        }
        for side in ["request", "response"] {
            let Some(Value::Object(headers)) = data
                .get_mut(side)
                .and_then(|section| section.get_mut("headers"))
            else {
                continue;
            };
            for name in &self.names {
                if let Some(value) = headers.get_mut(name) {
                    *value = self.placeholder.clone();
                }
            }
        }
    }
}

/// The value at a dotted path, split into segments.
pub fn lookup<'a, S: AsRef<str>>(root: &'a Value, path: &[S]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, segment| {
        let segment = segment.as_ref();
        match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        }
    })
}

/// Splits a dotted path into its segments.
pub fn split_path(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

/// A field's value as a filter sees it: JSON from an event, or text read straight from what
/// the host captured (borrowed when it can be, so that testing it allocates nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Json(Cow<'a, Value>),
    Text(Cow<'a, str>),
    /// Text formatted on the stack (response flags, a time).
    Short(Short),
}

impl Field<'_> {
    /// The text, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Json(value) => value.as_str(),
            Field::Text(text) => Some(text),
            Field::Short(short) => Some(short.as_str()),
        }
    }

    /// The number, for a non-negative whole number.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Field::Json(value) => value.as_u64(),
            _ => None,
        }
    }

    /// The value as JSON (text becomes a JSON string).
    pub fn into_value(self) -> Value {
        match self {
            Field::Json(value) => value.into_owned(),
            Field::Text(text) => Value::String(text.into_owned()),
            Field::Short(short) => Value::String(short.as_str().to_string()),
        }
    }
}

/// Text of at most [`Short::CAPACITY`] bytes, held on the stack.
#[derive(Clone, Copy)]
pub struct Short {
    bytes: [u8; Short::CAPACITY],
    len: usize,
}

impl Short {
    pub const CAPACITY: usize = 128;

    pub fn new() -> Self {
        Short {
            bytes: [0; Short::CAPACITY],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }
}

impl Default for Short {
    fn default() -> Self {
        Short::new()
    }
}

impl std::fmt::Debug for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq for Short {
    fn eq(&self, other: &Short) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Writing past the capacity is an error, and leaves what fit (whole characters).
impl std::fmt::Write for Short {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len.saturating_add(text.len());
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Something a filter reads fields from: an event, or a request not yet made into one.
pub trait Fields {
    /// The value at `path` (split) as a hook with `redaction` sees it; `None` when absent.
    fn field<'a, S: AsRef<str>>(
        &'a self,
        path: &[S],
        redaction: &'a Redaction,
    ) -> Option<Field<'a>>;
}

impl Fields for Event {
    fn field<'a, S: AsRef<str>>(
        &'a self,
        path: &[S],
        redaction: &'a Redaction,
    ) -> Option<Field<'a>> {
        self.lookup(path, redaction).map(Field::Json)
    }
}

impl Event {
    /// An event of built-in source `source`.
    pub fn new(source: Source, name: impl Into<String>, data: Map<String, Value>) -> Self {
        Event::of_source(source, Cow::Borrowed(source.name()), name, data)
    }

    /// An event of `source` called `source_name` (a published source's name).
    pub fn of_source(
        source: Source,
        source_name: Cow<'static, str>,
        name: impl Into<String>,
        data: Map<String, Value>,
    ) -> Self {
        Event {
            source,
            source_name,
            name: name.into(),
            data: Value::Object(data),
        }
    }

    /// The value at `path` as a hook with `redaction` sees it. Borrowed, except for a path
    /// above redacted header values (a whole `request.headers` map), which is copied redacted.
    pub fn lookup<'a, S: AsRef<str>>(
        &'a self,
        path: &[S],
        redaction: &'a Redaction,
    ) -> Option<Cow<'a, Value>> {
        let value = lookup(&self.data, path)?;
        if redaction.covers(path) {
            Some(Cow::Borrowed(&redaction.placeholder))
        } else if redaction.contains(path) {
            let redacted = self.data_for(redaction);
            lookup(&redacted, path).cloned().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(value))
        }
    }

    /// The event data as a hook with `redaction` sees it.
    pub fn data_for(&self, redaction: &Redaction) -> Value {
        let mut data = self.data.clone();
        redaction.apply(&mut data);
        data
    }

    /// Kong's body shape: the event data's keys plus `"source"` and `"event"` at the top level.
    /// Data that has one of these keys keeps it (a dead letter's `event` is the event given up).
    pub fn kong_payload(&self, redaction: &Redaction) -> Value {
        let mut data = self.data_for(redaction);
        if let Value::Object(map) = &mut data {
            map.entry("source")
                .or_insert_with(|| Value::String(self.source_name.to_string()));
            map.entry("event")
                .or_insert_with(|| Value::String(self.name.clone()));
        }
        data
    }
}

/// The Kong-shaped bodies of one event, serialized once per distinct redaction and shared by
/// every hook that sends the same bytes; and the [`Stamp`] of the hook whose handler runs.
pub struct Bodies<'e> {
    event: &'e Event,
    built: Vec<(Redaction, Rc<[u8]>)>,
    stamp: Stamp,
}

/// What one hook's delivery of an event is known by: the hook, the delivery's id (its
/// `webhook-id` when sent alone, its CloudEvents `id`) and when the event was routed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub hook: Rc<str>,
    pub id: String,
    pub time_ms: u64,
}

impl<'e> Bodies<'e> {
    pub fn new(event: &'e Event) -> Self {
        Bodies {
            event,
            built: Vec::new(),
            stamp: Stamp::default(),
        }
    }

    pub fn event(&self) -> &'e Event {
        self.event
    }

    /// The hook whose handler runs next, and its delivery's id and time.
    pub fn stamp(&mut self, stamp: Stamp) {
        self.stamp = stamp;
    }

    pub fn stamped(&self) -> &Stamp {
        &self.stamp
    }

    /// The stamped id, for the first call the handler made (later ones get their own).
    pub fn take_id(&mut self) -> Option<String> {
        Some(std::mem::take(&mut self.stamp.id)).filter(|id| !id.is_empty())
    }

    /// Kong's body (the event data plus `source` and `event`) as JSON bytes.
    pub fn kong(&mut self, redaction: &Redaction) -> Rc<[u8]> {
        if let Some((_, body)) = self.built.iter().find(|(seen, _)| seen == redaction) {
            return Rc::clone(body);
        }
        // Serializing a serde_json::Value to a Vec cannot fail.
        let bytes = serde_json::to_vec(&self.event.kong_payload(redaction)).unwrap_or_default();
        let body: Rc<[u8]> = bytes.into();
        self.built.push((redaction.clone(), Rc::clone(&body)));
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> Event {
        let Value::Object(map) = data else {
            panic!("not an object")
        };
        Event::new(Source::TRAFFIC, "request", map)
    }

    #[test]
    fn dotted_paths_address_nested_objects_and_arrays() {
        let data = json!({"response": {"status": 500}, "tags": ["a", "b"]});
        assert_eq!(
            lookup(&data, &split_path("response.status")),
            Some(&json!(500))
        );
        assert_eq!(lookup(&data, &split_path("tags.1")), Some(&json!("b")));
        assert_eq!(lookup(&data, &split_path("tags.9")), None);
        assert_eq!(lookup(&data, &split_path("response.status.x")), None);
        assert_eq!(lookup(&data, &split_path("missing")), None);
    }

    #[test]
    fn lookups_and_payloads_see_redacted_headers() {
        let e = event(json!({
            "request": {"headers": {"authorization": "Bearer s3cr3t", "x-team": "pay"}},
            "response": {"headers": {"set-cookie": "id=1"}}
        }));
        let redaction = Redaction::default();
        let auth = split_path("request.headers.authorization");
        assert_eq!(
            e.lookup(&auth, &redaction).as_deref(),
            Some(&json!(REDACTED))
        );
        assert_eq!(
            e.lookup(&split_path("request.headers.x-team"), &redaction)
                .as_deref(),
            Some(&json!("pay"))
        );
        // A whole map, or the event itself, is seen redacted too.
        assert_eq!(
            e.lookup(&split_path("request.headers"), &redaction)
                .as_deref(),
            Some(&json!({"authorization": REDACTED, "x-team": "pay"}))
        );
        let empty: [&str; 0] = [];
        assert!(
            !e.lookup(&empty, &redaction)
                .unwrap()
                .to_string()
                .contains("s3cr3t")
        );
        let payload = e.kong_payload(&redaction);
        assert_eq!(payload["request"]["headers"]["authorization"], REDACTED);
        assert_eq!(payload["response"]["headers"]["set-cookie"], REDACTED);
        assert_eq!(payload["source"], "traffic");
        assert_eq!(payload["event"], "request");
        assert!(!payload.to_string().contains("s3cr3t"));
    }

    #[test]
    fn bodies_are_built_once_per_redaction() {
        let e = event(json!({"request": {"headers": {"authorization": "Bearer t"}}}));
        let mut bodies = Bodies::new(&e);
        let a = bodies.kong(&Redaction::default());
        let b = bodies.kong(&Redaction::default());
        let c = bodies.kong(&Redaction::none());
        assert!(Rc::ptr_eq(&a, &b));
        assert!(!Rc::ptr_eq(&a, &c));
        let parsed: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(parsed, e.kong_payload(&Redaction::default()));
    }

    #[test]
    fn short_text_holds_what_fits() {
        use std::fmt::Write as _;
        let mut short = Short::new();
        assert_eq!(short.as_str(), "");
        let flag = "UF";
        write!(short, "{flag}-{}", 7).unwrap();
        assert_eq!(short.as_str(), "UF-7");
        assert!(short.write_str(&"x".repeat(Short::CAPACITY)).is_err());
        assert_eq!(short.as_str(), "UF-7", "what did not fit is not written");
        assert_eq!(format!("{short:?}"), "\"UF-7\"");
        assert_eq!(
            Field::Short(short).into_value(),
            Value::String("UF-7".into())
        );
    }

    #[test]
    fn opting_out_keeps_header_values() {
        let e = event(json!({"request": {"headers": {"authorization": "Bearer t"}}}));
        let payload = e.kong_payload(&Redaction::none());
        assert_eq!(payload["request"]["headers"]["authorization"], "Bearer t");
        let custom = Redaction::headers(["X-Api-Key".to_string()]);
        assert_eq!(custom.names(), ["x-api-key"]);
        assert_eq!(
            e.lookup(&split_path("request.headers.authorization"), &custom)
                .as_deref(),
            Some(&json!("Bearer t"))
        );
    }
}
