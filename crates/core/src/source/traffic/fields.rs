//! The traffic event's fields, in one table. Each row says where a field sits in the event,
//! how it is read from a request ([`View`]), which log-phase property gives it ([`Prop`]) and
//! which header map gives it first or holds it. Everything else is derived from the rows:
//!
//! * [`FIELDS`]: the names `GET {prefix}/sources` lists, the schema and the docs use;
//! * [`event_of`]: the event a request makes;
//! * the lazy [`View`]'s `Fields` (what filters and templates read without building the event);
//! * [`Needs::of_field`]: what the host must capture for a field, hence which properties the
//!   adapter reads (`crates/filter/src/differences.rs` knows each [`Prop`]'s name on each host).
//!
//! A new field is one row here, plus, when a new host property gives it, one [`Prop`] with its
//! [`super::Properties`] slot and its read on each host.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{View, capped_str, header_map};
use crate::event::{Event, Field, Fields, Redaction, Short};
use crate::needs::{Needs, Prop, Stage};
use crate::source::Source;

/// One of a request's two header maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// How a field's value is read from a request.
#[derive(Clone, Copy)]
pub enum Read {
    /// Text, capped at [`super::MAX_TEXT_BYTES`] in the event and in the view alike.
    Text(for<'v, 'c> fn(&'v View<'c>) -> Option<&'c str>),
    Number(for<'v, 'c> fn(&'v View<'c>) -> Option<u64>),
    /// Text the filter writes itself, short enough for the stack.
    Short(for<'v, 'c> fn(&'v View<'c>) -> Option<Short>),
    /// A whole header map (lowercase names, repeated headers joined); one header of it is
    /// `<name>.<header>`.
    Headers(Side),
}

/// A request-derived field of the traffic event.
pub struct TrafficField {
    /// Its dotted path in the event.
    pub name: &'static str,
    /// The same path, split.
    pub path: &'static [&'static str],
    pub read: Read,
    /// The log-phase property that gives it (or gives it when the headers do not).
    pub prop: Option<Prop>,
    /// The header map that gives it first (a pseudo-header, `x-request-id`) or holds it.
    pub headers: Option<Side>,
}

/// A row of [`TABLE`]: the path's segments give both its dotted name and its split form.
macro_rules! row {
    ([$first:literal $(, $more:literal)*], $read:expr, $prop:expr, $headers:expr $(,)?) => {
        TrafficField {
            name: concat!($first $(, ".", $more)*),
            path: &[$first $(, $more)*],
            read: $read,
            prop: $prop,
            headers: $headers,
        }
    };
}

/// Every field of the traffic event, in the order `/sources` lists them.
#[rustfmt::skip]
pub const TABLE: [TrafficField; 17] = [
    // path                             read                                  property                     header map
    row!(["request", "method"],        Read::Text(|v| v.method()),           Some(Prop::Method),          Some(Side::Request)),
    row!(["request", "path"],          Read::Text(|v| v.path()),             Some(Prop::Path),            Some(Side::Request)),
    row!(["request", "host"],          Read::Text(|v| v.host()),             Some(Prop::Host),            Some(Side::Request)),
    row!(["request", "scheme"],        Read::Text(|v| v.scheme()),           Some(Prop::Scheme),          Some(Side::Request)),
    row!(["request", "id"],            Read::Text(|v| v.id()),               Some(Prop::RequestId),       Some(Side::Request)),
    row!(["request", "query"],         Read::Text(|v| v.query()),            Some(Prop::Path),            Some(Side::Request)),
    row!(["request", "headers"],       Read::Headers(Side::Request),         None,                        Some(Side::Request)),
    row!(["response", "status"],       Read::Number(|v| v.status()),         Some(Prop::Status),          Some(Side::Response)),
    row!(["response", "flags"],        Read::Short(|v| v.flags()),           Some(Prop::Flags),           None),
    row!(["response", "code_details"], Read::Text(|v| v.code_details()),     Some(Prop::CodeDetails),     None),
    row!(["response", "headers"],      Read::Headers(Side::Response),        None,                        Some(Side::Response)),
    row!(["upstream", "address"],      Read::Text(|v| v.upstream_address()), Some(Prop::UpstreamAddress), None),
    row!(["upstream", "cluster"],      Read::Text(|v| v.cluster()),          Some(Prop::Cluster),         None),
    row!(["route"],                    Read::Text(|v| v.route()),            Some(Prop::Route),           None),
    // Latency and the start fall back to when the filter saw the request, always known.
    row!(["latency_ms"],               Read::Number(|v| v.latency_ms()),     Some(Prop::Duration),        None),
    row!(["client", "ip"],             Read::Text(|v| v.client_ip()),        Some(Prop::SourceAddress),   None),
    row!(["started_at"],               Read::Short(|v| v.started_at()),      Some(Prop::Start),           None),
];

/// The names of [`TABLE`]'s fields.
pub const FIELDS: &[&str] = &names();

// Evaluated by the compiler: an index out of range fails the build, never a request.
#[allow(clippy::indexing_slicing)]
const fn names() -> [&'static str; TABLE.len()] {
    let mut names = [""; TABLE.len()];
    let mut at = 0;
    while at < TABLE.len() {
        names[at] = TABLE[at].name;
        at += 1;
    }
    names
}

impl TrafficField {
    /// Whether this field is `path` exactly.
    fn is<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.path.len() == path.len() && self.starts(path)
    }

    /// Whether `path` is this field or lies inside it.
    fn holds<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.path.len() <= path.len() && self.starts(path)
    }

    /// Whether `path` begins with this field's segments.
    fn starts<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.path
            .iter()
            .zip(path)
            .all(|(own, segment)| *own == segment.as_ref())
    }

    /// Its value in the event of the request `view` reads.
    fn json(&self, view: &View<'_>) -> Option<Value> {
        match self.read {
            Read::Text(read) => read(view).map(|text| Value::String(capped_str(text).into_owned())),
            Read::Number(read) => read(view).map(Value::from),
            Read::Short(read) => read(view).map(|short| Value::String(short.as_str().to_string())),
            Read::Headers(side) => view
                .headers(side)
                .map(|headers| Value::Object(header_map(headers))),
        }
    }

    /// Its value as the view reads it, without building the event; `None` for a whole header
    /// map (the event decides).
    fn field<'c>(&self, view: &View<'c>) -> Option<Option<Field<'c>>> {
        Some(match self.read {
            Read::Text(read) => read(view).map(|text| Field::Text(capped_str(text))),
            Read::Number(read) => {
                read(view).map(|number| Field::Json(Cow::Owned(Value::from(number))))
            }
            Read::Short(read) => read(view).map(Field::Short),
            Read::Headers(_) => return None,
        })
    }
}

/// The traffic event of the request `view` reads.
pub fn event_of(view: &View<'_>) -> Event {
    let mut data = Map::new();
    for field in &TABLE {
        if let Some(value) = field.json(view) {
            insert(&mut data, field.name, value);
        }
    }
    Event::new(Source::TRAFFIC, "request", data)
}

/// Puts `value` at the dotted `name` (at most one dot: `section.key`), making the section.
fn insert(data: &mut Map<String, Value>, name: &str, value: Value) {
    match name.split_once('.') {
        None => {
            data.insert(name.to_string(), value);
        }
        Some((section, key)) => {
            let section = data
                .entry(section)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(section) = section {
                section.insert(key.to_string(), value);
            }
        }
    }
}

impl Fields for View<'_> {
    fn field<'a, S: AsRef<str>>(
        &'a self,
        path: &[S],
        redaction: &'a Redaction,
    ) -> Option<Field<'a>> {
        if let [side, headers, name] = path {
            let side = match side.as_ref() {
                "request" => Some(Side::Request),
                "response" => Some(Side::Response),
                _ => None,
            };
            if let (Some(side), "headers") = (side, headers.as_ref()) {
                let value = View::header(self.headers(side), name.as_ref())?;
                return Some(if redaction.covers(path) {
                    Field::Json(Cow::Borrowed(redaction.placeholder()))
                } else {
                    value
                });
            }
        }
        TABLE
            .iter()
            .find(|field| field.is(path))
            .and_then(|field| field.field(self))
            .unwrap_or_else(|| self.in_event(path, redaction))
    }
}

impl Needs {
    /// What reading traffic field `path` (split) takes: the property behind it, and the header
    /// map that gives it first or holds it ([`TABLE`]). A whole header map, any other whole
    /// object, or a path the event cannot have, takes everything.
    pub fn of_field<S: AsRef<str>>(path: &[S]) -> Needs {
        let Some(field) = TABLE.iter().find(|field| field.holds(path)) else {
            return Needs::EVERYTHING;
        };
        let headers = match (field.read, field.headers) {
            (Read::Headers(_), _) if path.len() <= 2 => return Needs::EVERYTHING,
            (_, headers) => headers,
        };
        let needs = Needs::of_prop(field.prop);
        // A field a property gives too needs its map only for the event; a header only the
        // map has needs it before deciding.
        let stage = match field.prop {
            Some(_) => Stage::Then,
            None => Stage::First,
        };
        match headers {
            Some(Side::Request) => needs.with_request_headers(stage),
            Some(Side::Response) => needs.with_response_headers(stage),
            None => needs,
        }
    }
}
