//! The HTTP context: captures what the log phase cannot see in the header and body callbacks,
//! builds the request's events in `on_log` and hands them to the root context's runtime. It
//! never changes a proxied request or response.
//!
//! Requests under the admin prefix are answered here instead (and never observed). The one
//! call of the admin `test` and `ping` endpoints is made from this context, in the request's
//! headers phase (allowed on every host), so that the answer can carry the receiver's; every
//! event delivery goes through the root context.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use serde_json::Value;

use super::abi::{self, CallAnswer, DISPATCH_STATUS, HostLog};
use super::differences::{self, Known};
use super::root::dispatch;
use event_hooks_core::admin::{self, Reply, Route};
use event_hooks_core::delivery::Call;
use event_hooks_core::handler::Output;
use event_hooks_core::log::Level;
use event_hooks_core::needs::Needs;
use event_hooks_core::runtime::Runtime;
use event_hooks_core::source::crud::{self, Body};
use event_hooks_core::source::traffic::{Capture, Properties};

/// Where an admin request is.
enum Admin {
    /// Answered (or being answered): nothing more to do.
    Answered,
    /// `test` or `ping`: waiting for the receiver's answer, to show it with `data`.
    Calling { data: Value },
}

pub struct Http {
    /// The host, learned by the first HTTP context of the VM.
    known: Rc<Known>,
    /// `None` before the filter is configured: the context then does nothing at all.
    runtime: Option<Rc<Runtime>>,
    /// Whether any hook listens to a source built from requests.
    observe: bool,
    /// What to capture of each request.
    needs: Needs,
    capture: Capture,
    /// While reading a response body for `crud`: the bytes so far and the most to read.
    body: Option<(Vec<u8>, usize)>,
    /// `Some` for a request to the admin endpoints.
    admin: Option<Admin>,
}

impl Http {
    pub fn new(runtime: Option<Rc<Runtime>>, known: Rc<Known>) -> Self {
        let observe = runtime
            .as_ref()
            .is_some_and(|runtime| runtime.observes_requests());
        let needs = runtime
            .as_ref()
            .map_or(Needs::default(), |runtime| runtime.needs());
        Http {
            known,
            runtime,
            observe,
            needs,
            capture: Capture::default(),
            body: None,
            admin: None,
        }
    }

    /// The first request header called `name`, in any case.
    fn header(&self, name: &str) -> Option<&str> {
        let headers = self.capture.request_headers.as_deref()?;
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether the request announces a body. Kong never says `end_of_stream` in the headers
    /// phase, so a bodiless request is recognised by its headers.
    fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|length| length.trim() != "0")
    }

    /// The log-phase properties the core reads before deciding, as this host gives them.
    fn properties(&mut self, headers_seen: bool) -> Properties {
        let earlier = std::mem::take(&mut self.capture.properties);
        differences::log_properties(
            self.known.host_or_envoy(),
            headers_seen,
            earlier,
            &read_property,
            self.needs.first,
        )
    }

    /// Answers the admin request.
    fn reply(&mut self, reply: &Reply) {
        self.admin = Some(Admin::Answered);
        let headers = [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
        ];
        let details = differences::local_response_details(self.known.host_or_envoy());
        if let Err(error) =
            abi::send_local_response(reply.status, details, &headers, &reply.bytes())
        {
            abi::log(Level::Error, &format!("admin: could not answer ({error})"));
        }
    }

    /// `test`: runs hook `hook`'s handler on the posted data; answers with the receiver's
    /// answer to the first call, queues the others, logs what the handler logs.
    fn test(&mut self, runtime: &Runtime, hook: usize, body: &[u8]) {
        let Some(config) = runtime.hooks().get(hook) else {
            return self.reply(&admin::failed_call("the hook is gone"));
        };
        let event = match admin::test_event(config, body) {
            Ok(event) => event,
            Err(reply) => return self.reply(&reply),
        };
        let mut calls = Vec::new();
        for output in admin::run(config, &event) {
            match output {
                Output::Call(call) => calls.push(call),
                Output::Log(level, line) => abi::log(level, &line),
            }
        }
        let data = event.data;
        if calls.is_empty() {
            return self.reply(&admin::result(data, None, &[], b""));
        }
        let first = calls.remove(0);
        let now_ms = abi::now_ns().unwrap_or(0) / 1_000_000;
        runtime.enqueue(hook, calls, now_ms, &HostLog);
        self.call(runtime, hook, &first, data);
    }

    /// Makes the call of `test` or `ping`, signed like a delivery.
    fn call(&mut self, runtime: &Runtime, hook: usize, call: &Call, data: Value) {
        let Some(config) = runtime.hooks().get(hook) else {
            return self.reply(&admin::failed_call("the hook is gone"));
        };
        let now_ns = abi::now_ns().unwrap_or(0);
        let id = runtime.next_id(now_ns / 1_000_000);
        let attempt = call.attempt(&id, now_ns / 1_000_000_000, config.handler.signing());
        let host = self.known.host_or_envoy();
        match dispatch(host, &attempt, runtime.timeout_ms()) {
            Ok(_) => self.admin = Some(Admin::Calling { data }),
            Err(status) => self.reply(&admin::failed_call(&format!(
                "the host refused the call to {} ({status:?})",
                differences::call(host, &attempt).upstream
            ))),
        }
    }

    /// Routes a request under the admin prefix.
    fn admin_request(
        &mut self,
        runtime: &Runtime,
        settings: &admin::Settings,
        rest: &str,
        end_of_stream: bool,
    ) {
        let method = self.header(":method").unwrap_or("GET").to_string();
        let authorization = self.header("authorization").map(str::to_string);
        let route = admin::route(
            settings,
            &method,
            rest,
            authorization.as_deref(),
            runtime.hooks(),
            || runtime.status(),
        );
        match route {
            Route::Reply(reply) => self.reply(&reply),
            // The event data comes in a header: Envoy never shows a request body to a filter
            // before the request has gone upstream (a paused filter is paused for its body too),
            // and an admin request must never go upstream.
            Route::Test { hook } => match self.header(admin::TEST_DATA_HEADER) {
                Some(data) => {
                    let data = data.as_bytes().to_vec();
                    self.test(runtime, hook, &data);
                }
                None if end_of_stream || !self.has_body() => self.test(runtime, hook, b"{}"),
                None => self.reply(&admin::body_not_readable()),
            },
            Route::Ping { hook } => match runtime.hooks().get(hook).and_then(admin::ping) {
                Some(call) => self.call(runtime, hook, &call, Value::Null),
                None => self.reply(&admin::failed_call("not a webhook hook")),
            },
        }
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(Admin::Calling { data }) = self.admin.take() else {
            return;
        };
        let answer = CallAnswer::read(
            body_size,
            admin::MAX_RESULT_BODY,
            self.known.reads_call_bodies(),
        );
        let reply = match answer.status {
            Some(status) => admin::result(data, Some(status), &answer.headers, &answer.body),
            None => admin::failed_call(answer.header(DISPATCH_STATUS).unwrap_or("no answer")),
        };
        self.reply(&reply);
    }
}

/// A property of the current stream, for [`differences`]: unreadable counts as absent.
fn read_property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path).ok().flatten()
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        self.known.learn(&read_property);
        self.capture.seen_ns = abi::now_ns();
        // The map is read when the hooks need it, or to recognise an admin request.
        if self.observe && self.needs.request_headers || runtime.admin().is_some() {
            self.capture.request_headers =
                abi::header_map(MapType::HttpRequestHeaders).ok().flatten();
            if let Some(headers) = &mut self.capture.request_headers {
                differences::request_headers(self.known.host_or_envoy(), headers);
            }
        }
        let admin = runtime.admin().and_then(|settings| {
            let rest = self.header(":path").and_then(|path| settings.rest(path))?;
            Some((settings, rest.to_string()))
        });
        if let Some((settings, rest)) = admin {
            self.admin_request(&runtime, settings, &rest, end_of_stream);
            // Nothing of an admin request is kept, and nothing goes upstream.
            self.capture = Capture::default();
            return Action::Pause;
        }
        if !self.observe {
            self.capture = Capture::default();
            return Action::Continue;
        }
        self.capture.properties = differences::request_properties(
            self.known.host_or_envoy(),
            &read_property,
            self.needs.first.union(self.needs.then),
        );
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        match self.admin {
            Some(_) => Action::Pause,
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self
            .runtime
            .clone()
            .filter(|_| self.observe && self.admin.is_none())
        else {
            return Action::Continue;
        };
        if self.needs.response_headers {
            self.capture.response_headers =
                abi::header_map(MapType::HttpResponseHeaders).ok().flatten();
            if let Some(headers) = &mut self.capture.response_headers {
                differences::response_headers(self.known.host_or_envoy(), headers);
            }
        }
        // A write that succeeded may be an entity change: read its body, capped, if crud.match
        // selects the request (which may need the properties, read now for these few).
        let status = self
            .capture
            .response_headers
            .as_deref()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(":status"))
            })
            .and_then(|(_, status)| status.parse::<u16>().ok());
        let candidate = self.header(":method").is_some_and(crud::is_write_method)
            && status.is_some_and(|status| (200..300).contains(&status));
        if candidate && !end_of_stream {
            self.capture.properties = self.properties(true);
            if let Some(limit) = runtime.crud_body_limit(&self.capture) {
                self.body = Some((Vec::new(), limit));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some((bytes, limit)) = &mut self.body else {
            return Action::Continue;
        };
        if bytes.len().saturating_add(body_size) > *limit {
            self.body = None;
            self.capture.response_body = Body::TooLarge;
            return Action::Continue;
        }
        if body_size > 0 {
            match abi::buffer_prefix(BufferType::HttpResponseBody, body_size) {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => {}
                Err(_) => {
                    // Unreadable: no entity rather than a wrong one.
                    self.body = None;
                    return Action::Continue;
                }
            }
        }
        if end_of_stream {
            if let Some((bytes, _)) = self.body.take() {
                self.capture.response_body = Body::Complete(bytes);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(runtime) = self
            .runtime
            .clone()
            .filter(|_| self.observe && self.admin.is_none())
        else {
            return;
        };
        self.known.learn(&read_property);
        let headers_seen = self.capture.request_headers.is_some();
        self.capture.properties = self.properties(headers_seen);
        let now_ns = abi::now_ns().unwrap_or(0);
        // The rest of the properties, read only if the request's traffic event is built.
        let (host, then) = (self.known.host_or_envoy(), self.needs.then);
        let rest = |properties: &mut Properties| {
            let earlier = std::mem::take(properties);
            *properties =
                differences::log_properties(host, headers_seen, earlier, &read_property, then);
        };
        runtime.observe_with(&self.capture, &rest, now_ns, &HostLog);
    }
}
