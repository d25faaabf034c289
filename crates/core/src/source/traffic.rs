//! The `traffic` source: one `request` event per completed proxied request.
//!
//! The host adapter captures request and response headers in their callbacks and reads the
//! log-phase properties in `on_log` into a [`Capture`]; [`event`] turns that plain data into the
//! event. A field the host does not give is absent, never invented.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{EventSpec, SourceKind};
use crate::needs::{HookUse, Needs};

/// The `traffic` source: one `request` event per completed proxied request.
pub struct Kind;

impl SourceKind for Kind {
    fn name(&self) -> &'static str {
        "traffic"
    }

    fn events(&self) -> &'static [EventSpec] {
        EVENTS
    }

    fn check_filter(&self, filter: &Filter, path: &str, problems: &Problems) {
        check_filter(filter, path, problems);
    }

    fn observe(
        &self,
        request: &super::Request<'_>,
        _state: Option<&mut dyn std::any::Any>,
        emit: &dyn super::Emit,
    ) {
        emit.lazy(Source::TRAFFIC, "request", request.view, request.traffic);
    }

    /// What its hooks' filters test, before deciding; what their deliveries read of the event,
    /// once it is built.
    fn needs(&self, hooks: &[HookUse<'_>], _settings: &super::Settings) -> Needs {
        let mut needs = Needs::default();
        for hook in hooks {
            for path in hook.filter.fields() {
                needs = needs.union(Needs::of_field(path).at_first());
            }
            needs = needs.union(delivery_needs(hook).at_then());
        }
        needs
    }
}

/// What a traffic hook's deliveries read of the event: what its handler reads, or all of it
/// (with `on_change`, the whole event identifies it).
fn delivery_needs(hook: &HookUse<'_>) -> Needs {
    match &hook.handler_fields {
        Some(fields) if !hook.on_change => fields
            .iter()
            .filter(|path| !matches!(path, [only] if only == "source" || only == "event"))
            .fold(Needs::default(), |needs, path| {
                needs.union(Needs::of_field(path))
            }),
        _ => Needs::EVERYTHING,
    }
}
use crate::event::{Event, Field, Redaction, Short};
use crate::filter::Filter;
use crate::reader::{Problems, child};
use crate::source::Source;

pub const EVENTS: &[EventSpec] = &[EventSpec {
    name: "request",
    fields: FIELDS,
    unique: &[],
    description: "One event per completed proxied request, built in the log phase.",
}];

/// Envoy's response flags, bit `i` being flag `i` of `StreamInfo::CoreResponseFlag`, by the
/// short names of its access log's `%RESPONSE_FLAGS%`.
pub(crate) const RESPONSE_FLAGS: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// The longest text an event takes from the host (a header value, the path): longer text is
/// cut at a character boundary and ends with [`TRUNCATED`].
pub const MAX_TEXT_BYTES: usize = 4096;
/// Marks text cut at [`MAX_TEXT_BYTES`].
pub const TRUNCATED: &str = "...[truncated]";
/// The most headers an event keeps per map (Envoy's default `max_headers_count`).
pub const MAX_HEADERS: usize = 100;

/// Log-phase properties, as the host gave them (decoded).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Properties {
    pub method: Option<String>,
    /// `request.path`: path and query.
    pub path: Option<String>,
    pub host: Option<String>,
    pub scheme: Option<String>,
    pub request_id: Option<String>,
    pub status: Option<u64>,
    pub flags: Option<u64>,
    pub code_details: Option<String>,
    pub upstream_address: Option<String>,
    pub cluster: Option<String>,
    pub route: Option<String>,
    pub duration_ns: Option<u64>,
    /// `request.time`: when the request started, unix nanoseconds.
    pub start_ns: Option<u64>,
    /// `source.address`: the client's `ip:port`.
    pub source_address: Option<String>,
}

/// The response body as captured for a `crud` entity (the only body the filter reads).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Body {
    /// No body (or none read).
    #[default]
    Empty,
    /// The whole body, within `max_body_bytes`.
    Complete(Vec<u8>),
    /// The body was larger than `max_body_bytes`.
    TooLarge,
}

/// Everything captured for one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Capture {
    /// Request headers, pseudo-headers included; `None` when the header callback never ran.
    pub request_headers: Option<Vec<(String, String)>>,
    pub response_headers: Option<Vec<(String, String)>>,
    /// When the filter saw the request headers, unix nanoseconds.
    pub seen_ns: Option<u64>,
    pub properties: Properties,
    /// The response body, read for `crud` when the request may be an entity write.
    pub response_body: Body,
}

impl Capture {
    /// The request's path and query (`:path`, else the `request.path` property).
    pub fn path(&self) -> Option<&str> {
        self.request_headers
            .as_deref()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(":path"))
            })
            .map(|(_, value)| value.as_str())
            .or(self.properties.path.as_deref())
    }
}

/// What the log phase reads of a request once its traffic event is to be built: the
/// properties [`Needs::then`](crate::needs::Needs::then) names, added to a copy of the
/// capture's, and the header maps read only then
/// ([`Stage::Then`](crate::needs::Stage::Then)).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Later {
    pub properties: Properties,
    /// `None`: the capture's map stands.
    pub request_headers: Option<Vec<(String, String)>>,
    pub response_headers: Option<Vec<(String, String)>>,
}

impl Later {
    /// Nothing read yet: the capture's properties.
    pub fn of(capture: &Capture) -> Later {
        Later {
            properties: capture.properties.clone(),
            request_headers: None,
            response_headers: None,
        }
    }
}

/// A request's fields read straight from its [`Capture`], exactly as its traffic event would
/// give them, without building the event: what filters test on every request. Reading a field
/// allocates nothing, except text longer than [`MAX_TEXT_BYTES`] (cut and marked), a header
/// given more than once (joined) or one of more than [`MAX_HEADERS`], and a whole object
/// (`request`, `request.headers`, ...), for which the event is built.
#[derive(Debug, Clone, Copy)]
pub struct View<'c> {
    capture: &'c Capture,
    /// The capture's properties, or more of them (read once the event is to be built).
    props: &'c Properties,
    /// The capture's header maps, or those read once the event is to be built.
    request_headers: Option<&'c [(String, String)]>,
    response_headers: Option<&'c [(String, String)]>,
    now_ns: u64,
}

/// The first header called `name` (in any case), unless its value is empty.
fn pseudo<'c>(headers: Option<&'c [(String, String)]>, name: &str) -> Option<&'c str> {
    headers?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

impl<'c> View<'c> {
    /// The request of `capture`, finished at `now_ns`.
    pub fn new(capture: &'c Capture, now_ns: u64) -> Self {
        View {
            capture,
            props: &capture.properties,
            request_headers: capture.request_headers.as_deref(),
            response_headers: capture.response_headers.as_deref(),
            now_ns,
        }
    }

    /// The request of `capture` with what was read `later` (its properties in place of the
    /// capture's, its header maps where it has them): nothing of the capture is copied.
    pub fn later(capture: &'c Capture, later: &'c Later, now_ns: u64) -> Self {
        View {
            capture,
            props: &later.properties,
            request_headers: later
                .request_headers
                .as_deref()
                .or(capture.request_headers.as_deref()),
            response_headers: later
                .response_headers
                .as_deref()
                .or(capture.response_headers.as_deref()),
            now_ns,
        }
    }

    fn props(&self) -> &'c Properties {
        self.props
    }

    fn request_headers(&self) -> Option<&'c [(String, String)]> {
        self.request_headers
    }

    fn response_headers(&self) -> Option<&'c [(String, String)]> {
        self.response_headers
    }

    /// The header map of `side`, when its callback ran.
    fn headers(&self, side: Side) -> Option<&'c [(String, String)]> {
        match side {
            Side::Request => self.request_headers(),
            Side::Response => self.response_headers(),
        }
    }

    /// `request.method`, before capping.
    pub fn method(&self) -> Option<&'c str> {
        pseudo(self.request_headers(), ":method").or(self.props().method.as_deref())
    }

    /// The path with its query.
    fn full_path(&self) -> Option<&'c str> {
        pseudo(self.request_headers(), ":path").or(self.props().path.as_deref())
    }

    /// `request.path`, before capping.
    pub fn path(&self) -> Option<&'c str> {
        let full = self.full_path()?;
        Some(full.split_once('?').map_or(full, |(path, _)| path))
    }

    fn query(&self) -> Option<&'c str> {
        self.full_path()?.split_once('?').map(|(_, query)| query)
    }

    fn host(&self) -> Option<&'c str> {
        pseudo(self.request_headers(), ":authority").or(self.props().host.as_deref())
    }

    fn scheme(&self) -> Option<&'c str> {
        pseudo(self.request_headers(), ":scheme").or(self.props().scheme.as_deref())
    }

    fn id(&self) -> Option<&'c str> {
        non_empty(&self.props().request_id)
            .or_else(|| pseudo(self.request_headers(), "x-request-id"))
    }

    /// `response.status`.
    pub fn status(&self) -> Option<u64> {
        self.props()
            .status
            .filter(|status| *status > 0)
            .or_else(|| {
                pseudo(self.response_headers(), ":status")
                    .and_then(|status| status.parse::<u64>().ok())
            })
    }

    fn flags(&self) -> Option<Short> {
        self.props().flags.map(flags_short)
    }

    fn code_details(&self) -> Option<&'c str> {
        non_empty(&self.props().code_details)
    }

    fn upstream_address(&self) -> Option<&'c str> {
        non_empty(&self.props().upstream_address)
    }

    fn cluster(&self) -> Option<&'c str> {
        non_empty(&self.props().cluster)
    }

    fn route(&self) -> Option<&'c str> {
        non_empty(&self.props().route)
    }

    fn latency_ms(&self) -> Option<u64> {
        let latency_ns = self.props().duration_ns.or_else(|| {
            self.capture
                .seen_ns
                .map(|seen| self.now_ns.saturating_sub(seen))
        });
        latency_ns.map(|ns| ns / 1_000_000)
    }

    fn client_ip(&self) -> Option<&'c str> {
        self.props()
            .source_address
            .as_deref()
            .and_then(client_ip_str)
    }

    fn started_at(&self) -> Option<Short> {
        let start = self
            .props()
            .start_ns
            .filter(|ns| *ns > 0)
            .or(self.capture.seen_ns)?;
        Some(rfc3339_short(start))
    }

    /// Header `name` of a side as its event's `headers` map has it.
    fn header(headers: Option<&'c [(String, String)]>, name: &str) -> Option<Field<'c>> {
        let headers = headers?;
        if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return None;
        }
        let named =
            |(key, _): &&(String, String)| !key.starts_with(':') && key.eq_ignore_ascii_case(name);
        let mut found = headers.iter().filter(named);
        let (_, first) = found.next()?;
        let kept = headers
            .iter()
            .filter(|(key, _)| !key.starts_with(':'))
            .count();
        if kept <= MAX_HEADERS && found.next().is_none() && first.len() <= MAX_TEXT_BYTES {
            return Some(Field::Text(Cow::Borrowed(first.as_str())));
        }
        // Repeated, too long, or among too many: the map decides.
        header_map(headers)
            .remove(name)
            .map(|value| Field::Json(Cow::Owned(value)))
    }

    /// A field the accessors do not cover (a whole object, or a path that cannot exist): read
    /// from the event, built for it.
    fn in_event<S: AsRef<str>>(&self, path: &[S], redaction: &Redaction) -> Option<Field<'static>> {
        event_of(self)
            .lookup(path, redaction)
            .map(|value| Field::Json(Cow::Owned(value.into_owned())))
    }
}

fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|text| !text.is_empty())
}

/// The traffic event for `capture`, finished at `now_ns`.
pub fn event(capture: &Capture, now_ns: u64) -> Event {
    event_of(&View::new(capture, now_ns))
}

/// Headers as a JSON object: lowercase names, pseudo-headers left out, repeated headers joined
/// with `", "`; at most [`MAX_HEADERS`] names, each value capped like all text.
fn header_map(headers: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        if name.starts_with(':') {
            continue;
        }
        let name = name.to_ascii_lowercase();
        let full = map.len() >= MAX_HEADERS;
        match map.get_mut(&name) {
            Some(Value::String(existing)) => {
                // Not cut yet (a value of exactly MAX_TEXT_BYTES is whole): the next value
                // joins it, and cutting marks what was lost.
                if existing.len() <= MAX_TEXT_BYTES {
                    existing.push_str(", ");
                    existing.push_str(value);
                    *existing = capped(std::mem::take(existing));
                }
            }
            _ if full => {}
            _ => {
                map.insert(name, Value::String(capped(value.clone())));
            }
        }
    }
    map
}

/// Header names in filter paths must be lowercase, as the event has them.
pub fn check_filter(filter: &Filter, path: &str, problems: &Problems) {
    for field in filter.fields() {
        if let [side, headers, name, ..] = field {
            if matches!(side.as_str(), "request" | "response")
                && headers == "headers"
                && name.chars().any(|c| c.is_ascii_uppercase())
            {
                let written = field.join(".");
                problems.add(
                    &child(path, &written),
                    format!(
                        "header names are lowercase in events: use {side}.headers.{}",
                        name.to_ascii_lowercase()
                    ),
                );
            }
        }
    }
}

mod fields;
pub use fields::{FIELDS, Read, Side, TABLE, TrafficField, event_of};
mod format;
pub use format::*;
use format::{client_ip_str, flags_short, rfc3339_short};

#[cfg(test)]
pub(crate) mod tests;
