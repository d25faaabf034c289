//! One request to the admin endpoints, from its headers to its answer: routing, `test` (the
//! hook's handler run on the posted event data; the first call it makes is sent at once and
//! its answer shown, the others queued) and `ping`. The host adapter only moves bytes: it
//! hands the request's method, path and header lookup to [`start`], makes the one call a
//! [`Step::Call`] asks for, and gives its answer to [`answered`].

use serde_json::Value;

use super::{Reply, Route, TEST_DATA_HEADER};
use crate::delivery::Attempt;
use crate::event::Stamp;
use crate::handler::Output;
use crate::ports::Clock;
use crate::runtime::Runtime;

/// What the adapter does next for an admin request.
#[derive(Debug)]
pub enum Step {
    /// Answer with this.
    Reply(Reply),
    /// Make this call (`test`'s first, or the ping) with the call timeout, then give its
    /// answer to [`answered`] with `data` (what the answer shows as the event data).
    Call {
        request: Attempt,
        timeout_ms: u64,
        data: Value,
    },
}

/// A request under the admin prefix: `rest` is its path after the prefix, `header` finds one
/// of its headers by name (in any case), `end_of_stream` says the headers ended the request;
/// `clock` is the callback's.
pub fn start(
    runtime: &Runtime,
    method: &str,
    rest: &str,
    header: &dyn Fn(&str) -> Option<String>,
    end_of_stream: bool,
    clock: &dyn Clock,
) -> Step {
    let Some(settings) = runtime.admin() else {
        return Step::Reply(Reply::error(404, "not found"));
    };
    let authorization = header("authorization");
    let route = super::route(
        settings,
        method,
        rest,
        authorization.as_deref(),
        runtime.hooks(),
        || runtime.status(),
    );
    match route {
        Route::Reply(reply) => Step::Reply(reply),
        // The event data comes in a header: Envoy never shows a request body to a filter
        // before the request has gone upstream (a paused filter is paused for its body too),
        // and an admin request must never go upstream. Kong never says `end_of_stream` in the
        // headers phase, so a bodiless request is recognised by its headers.
        Route::Test { hook } => match header(TEST_DATA_HEADER) {
            Some(data) => test(runtime, hook, data.as_bytes(), clock),
            None if end_of_stream || !announces_body(header) => test(runtime, hook, b"{}", clock),
            None => Step::Reply(super::body_not_readable()),
        },
        Route::Ping { hook } => match runtime.hooks().get(hook).and_then(super::ping) {
            Some(draft) => {
                let id = runtime.next_id(clock.now_ms());
                call(runtime, hook, &draft, &id, Value::Null, clock)
            }
            None => Step::Reply(super::failed_call("not a webhook hook")),
        },
    }
}

/// The answer to the call a [`Step::Call`] made: its status (`None`: no HTTP answer, with the
/// host's reason when it gives one), headers and body.
pub fn answered(
    data: Value,
    status: Option<u16>,
    headers: &[(String, String)],
    body: &[u8],
    why_not: Option<&str>,
) -> Reply {
    match status {
        Some(status) => super::result(data, Some(status), headers, body),
        None => super::failed_call(why_not.unwrap_or("no answer")),
    }
}

/// Whether the request announces a body.
fn announces_body(header: &dyn Fn(&str) -> Option<String>) -> bool {
    header("transfer-encoding").is_some()
        || header("content-length").is_some_and(|length| length.trim() != "0")
}

/// `test`: runs hook `hook`'s handler on `body`; calls with the first call it makes, queues
/// the others, logs what the handler logs.
fn test(runtime: &Runtime, hook: usize, body: &[u8], clock: &dyn Clock) -> Step {
    let Some(config) = runtime.hooks().get(hook) else {
        return Step::Reply(super::failed_call("the hook is gone"));
    };
    let event = match super::test_event(config, body) {
        Ok(event) => event,
        Err(reply) => return Step::Reply(reply),
    };
    let stamp = Stamp {
        hook: config.name.as_str().into(),
        id: runtime.next_id(clock.now_ms()),
        time_ms: clock.now_ms(),
    };
    let id = stamp.id.clone();
    let mut drafts = Vec::new();
    for output in super::run(config, &event, stamp) {
        match output {
            Output::Call(draft) => drafts.push(draft),
            Output::Log(level, line) => runtime.log().log(level, &line),
        }
    }
    let data = event.data;
    if drafts.is_empty() {
        return Step::Reply(super::result(data, None, &[], b""));
    }
    let first = drafts.remove(0);
    runtime.enqueue(hook, drafts, clock);
    call(runtime, hook, &first, &id, data, clock)
}

/// The call of `test` or `ping` (webhook id `id`), signed like a delivery.
fn call(
    runtime: &Runtime,
    hook: usize,
    draft: &crate::delivery::Call,
    id: &str,
    data: Value,
    clock: &dyn Clock,
) -> Step {
    let Some(config) = runtime.hooks().get(hook) else {
        return Step::Reply(super::failed_call("the hook is gone"));
    };
    let request = draft.attempt(id, clock.now_ms() / 1_000, config.handler.signing());
    Step::Call {
        request,
        timeout_ms: runtime.timeout_ms(),
        data,
    }
}
