//! The admin endpoints, off unless `"admin": {"prefix": "/event-hooks", "token": "…"}` (or
//! `token_env`) is configured. Every request under the prefix must carry
//! `Authorization: Bearer <token>` (compared in constant time; 401 otherwise), is answered by
//! the filter and never passed upstream:
//!
//! | request | answer |
//! |---|---|
//! | `GET {prefix}` | the hooks, every secret `"[redacted]"` |
//! | `GET {prefix}/sources` | every source (built-in and published), its events, their fields (Kong's shape) |
//! | `GET {prefix}/sources/{source}` | one source (404 when unknown) |
//! | `GET {prefix}/status` | this worker's queue depth, calls in flight, per-hook counts |
//! | `POST {prefix}/{name}/test` | runs the hook's handler now on the JSON object in the `x-event-data` header (no snooze, no on_change) |
//! | `GET {prefix}/{name}/ping` | sends Kong's ping payload (webhook hooks) |
//!
//! Kong takes `test`'s event data as the request body; a proxy-wasm filter in Envoy can never
//! read a request body before the request has gone upstream (a filter paused on the headers
//! is paused for the body too), so the data comes in the `x-event-data` header instead, and a
//! `test` request with a body is answered 400 with that explanation.
//!
//! This module decides and builds the answers ([`session`] carries one request from its
//! headers to its answer); the HTTP context sends them, and makes the one call of `test` and
//! `ping` itself, to answer with its result.

pub mod session;

use serde_json::{Map, Value, json};

pub use crate::config::admin::{KEYS, Settings, shown};
use crate::delivery::Call;
use crate::event::{Bodies, Event, Stamp};
use crate::handler::Output;
use crate::hooks::{Hook, HookSet};
use crate::source::{Source, Sources};

/// The request header carrying `test`'s event data (a JSON object).
pub const TEST_DATA_HEADER: &str = "x-event-data";
/// The most bytes of the receiver's answer `test` and `ping` show.
pub const MAX_RESULT_BODY: usize = 64 * 1024;

/// An answer: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: json!({ "message": message }),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

/// What to do with an admin request.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Answer now.
    Reply(Reply),
    /// Run hook `hook`'s handler on the request's body.
    Test { hook: usize },
    /// Send Kong's ping to hook `hook`.
    Ping { hook: usize },
}

/// The route of an admin request at `rest` (the path under the prefix).
pub fn route(
    settings: &Settings,
    method: &str,
    rest: &str,
    authorization: Option<&str>,
    hooks: &HookSet,
    status: impl FnOnce() -> Value,
) -> Route {
    if !settings.authorized(authorization) {
        return Route::Reply(Reply::error(401, "unauthorized"));
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let reply = match (method, segments.as_slice()) {
        ("GET", []) => Reply::ok(
            json!({ "data": hooks.iter().map(|hook| hook.shown.clone()).collect::<Vec<_>>(), "next": null }),
        ),
        ("GET", ["sources"]) => Reply::ok(json!({ "data": sources(hooks.sources()) })),
        ("GET", ["sources", name]) => match hooks.sources().from_name(name) {
            Some(source) => Reply::ok(json!({ "data": events(hooks.sources(), source) })),
            None => Reply::error(404, "source not found"),
        },
        ("GET", ["status"]) => Reply::ok(status()),
        (_, [name, action @ ("test" | "ping")]) => match hooks.position(name) {
            None => Reply::error(404, "hook not found"),
            Some(hook) => match (method, *action) {
                ("POST", "test") => return Route::Test { hook },
                ("GET", "ping") => match hooks.get(hook).and_then(ping) {
                    Some(_) => return Route::Ping { hook },
                    None => Reply::error(400, "ping is for webhook hooks"),
                },
                _ => Reply::error(405, "method not allowed"),
            },
        },
        ("GET", _) => Reply::error(404, "not found"),
        _ => Reply::error(405, "method not allowed"),
    };
    Route::Reply(reply)
}

/// Kong's sources listing: `{source: {event: {"fields": [...], "unique": [...]?, "description": ...}}}`,
/// the built-in sources and those of `registry`'s configuration.
pub fn sources(registry: &Sources) -> Value {
    Value::Object(
        registry
            .all()
            .map(|source| (registry.name(source).to_string(), events(registry, source)))
            .collect(),
    )
}

fn events(registry: &Sources, source: Source) -> Value {
    Value::Object(
        registry
            .events(source)
            .iter()
            .map(|spec| {
                let mut entry = Map::new();
                entry.insert("fields".into(), json!(spec.fields));
                if !spec.unique.is_empty() {
                    entry.insert("unique".into(), json!(spec.unique));
                }
                entry.insert("description".into(), json!(spec.description));
                (spec.name.to_string(), Value::Object(entry))
            })
            .collect(),
    )
}

/// The event `test` runs a hook's handler on: the given JSON object as its data, the hook's
/// source and event (its source's first event when the hook takes them all).
pub fn test_event(hook: &Hook, body: &[u8]) -> Result<Event, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(data)) => Ok(event_for(hook, data)),
        _ => Err(Reply::error(400, "expected a JSON object: the event data")),
    }
}

/// An event that `hook` takes, with `data`: the hook's source and event (its source's first
/// event when the hook takes them all).
pub fn event_for(hook: &Hook, data: serde_json::Map<String, Value>) -> Event {
    let name = hook
        .event
        .clone()
        .or_else(|| match &hook.published {
            Some(published) => published.events.first().map(|event| event.name.clone()),
            None => hook
                .source
                .events()
                .first()
                .map(|spec| spec.name.to_string()),
        })
        .unwrap_or_default();
    Event::of_source(hook.source, hook.source_name(), name, data)
}

/// What the hook's handler makes of a test event, for the delivery `stamp` names.
pub fn run(hook: &Hook, event: &Event, stamp: Stamp) -> Vec<Output> {
    let mut bodies = Bodies::new(event);
    bodies.stamp(stamp);
    hook.handler.prepare(&mut bodies, &hook.redaction)
}

/// Kong's ping: `{"source": "kong:event_hooks", "event": "ping", "event_hooks": <the hook>}`,
/// to a webhook hook's URL.
pub fn ping(hook: &Hook) -> Option<Call> {
    hook.handler.ping(&hook.shown)
}

/// Kong's answer to `test` and `ping`: the data, and the receiver's answer (status, headers,
/// body; the body as JSON when it is, else as text, cut at [`MAX_RESULT_BODY`]).
pub fn result(
    data: Value,
    status: Option<u16>,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let cut = body.get(..MAX_RESULT_BODY).unwrap_or(body);
    let body = serde_json::from_slice::<Value>(cut)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(cut).into_owned()));
    let headers: Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| !name.starts_with(':'))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    Reply::ok(json!({
        "data": data,
        "result": {"status": status, "headers": headers, "body": body},
    }))
}

/// The answer to a `test` request that carries its data as a body.
pub fn body_not_readable() -> Reply {
    Reply::error(
        400,
        "send the event data in the x-event-data header: a filter cannot read a request body before it goes upstream",
    )
}

/// The answer when the call of `test` or `ping` could not be made.
pub fn failed_call(why: &str) -> Reply {
    Reply::error(502, &format!("the call failed: {why}"))
}

#[cfg(test)]
mod tests;
