//! The HTTP context: captures what the log phase cannot see in the header and body callbacks,
//! builds the request's events in `on_log` and hands them to the root context's runtime. It
//! never changes a proxied request or response.
//!
//! Requests under the admin prefix are answered here instead (and never observed): the core's
//! admin session decides; this context sends the answer, and makes the one call of the admin
//! `test` and `ping` endpoints, in the request's headers phase (allowed on every host), so
//! that the answer can carry the receiver's. Every event delivery goes through the root
//! context.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use serde_json::Value;

use super::abi::{self, CallAnswer, DISPATCH_STATUS, HostClock, HostProperties};
use super::differences::{self, Known, Maps};
use super::log_phase;
use super::root::dispatch;
use super::wire;
use event_hooks_core::admin::session::{self, Step};
use event_hooks_core::admin::{self, Reply};
use event_hooks_core::log::Level;
use event_hooks_core::needs::Needs;
use event_hooks_core::runtime::Runtime;
use event_hooks_core::source::crud::{self, Body};
use event_hooks_core::source::traffic::{Capture, Properties, Side};

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

    /// What follows the admin prefix in the request's path, for a request to the admin
    /// endpoints: from the map when captured, else (Envoy) from `:path` read alone.
    fn admin_rest(&self, settings: &admin::Settings) -> Option<String> {
        let path = match self.capture.request_headers {
            Some(_) => self.header(":path")?.to_string(),
            None => wire::string(
                &abi::header_value(MapType::HttpRequestHeaders, ":path")
                    .ok()
                    .flatten()?,
            ),
        };
        settings.rest(&path).map(str::to_string)
    }

    /// The log-phase properties the core reads before deciding, as this host gives them.
    fn properties(&mut self, headers_seen: bool) -> Properties {
        let earlier = std::mem::take(&mut self.capture.properties);
        differences::log_properties(
            self.known.host_or_envoy(),
            headers_seen,
            earlier,
            &HostProperties,
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

    /// A request under the admin prefix: the core's session decides; this makes its call.
    fn admin_request(
        &mut self,
        runtime: &Runtime,
        rest: &str,
        end_of_stream: bool,
        clock: &HostClock,
    ) {
        let method = self.header(":method").unwrap_or("GET").to_string();
        let header = |name: &str| self.header(name).map(str::to_string);
        let step = session::start(runtime, &method, rest, &header, end_of_stream, clock);
        match step {
            Step::Reply(reply) => self.reply(&reply),
            Step::Call {
                request,
                timeout_ms,
                data,
            } => {
                let host = self.known.host_or_envoy();
                match dispatch(host, &request, timeout_ms) {
                    Ok(_) => self.admin = Some(Admin::Calling { data }),
                    Err(status) => self.reply(&admin::failed_call(&format!(
                        "the host refused the call to {} ({status:?})",
                        differences::call(host, &request).upstream
                    ))),
                }
            }
        }
    }
}

/// Where this filter's log phase finds a request's header maps on `host`.
fn maps(runtime: &Runtime, host: differences::Host) -> Maps {
    differences::http_maps(host, runtime.reads_response_bodies())
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
        let reply = session::answered(
            data,
            answer.status,
            &answer.headers,
            &answer.body,
            answer.header(DISPATCH_STATUS),
        );
        self.reply(&reply);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        self.known.learn(&HostProperties);
        let host = self.known.host_or_envoy();
        let in_callbacks = maps(&runtime, host) == Maps::Captured;
        let captured = self.observe && in_callbacks;
        // The map is read here when the log phase cannot read it and the hooks may need it,
        // or (there) to recognise an admin request.
        if captured && self.needs.request_headers.any() || in_callbacks && runtime.admin().is_some()
        {
            self.capture.request_headers = log_phase::headers(host, Side::Request);
        }
        if let Some(rest) = runtime
            .admin()
            .and_then(|settings| self.admin_rest(settings))
        {
            if self.capture.request_headers.is_none() {
                self.capture.request_headers = log_phase::headers(host, Side::Request);
            }
            let clock = HostClock::read();
            self.admin_request(&runtime, &rest, end_of_stream, &clock);
            // Nothing of an admin request is kept, and nothing goes upstream.
            self.capture = Capture::default();
            return Action::Pause;
        }
        if !captured {
            self.capture = Capture::default();
            return Action::Continue;
        }
        self.capture.seen_ns = HostClock::read().reading();
        self.capture.properties = differences::request_properties(
            host,
            &HostProperties,
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
        let Some(runtime) = self.runtime.clone().filter(|runtime| {
            self.observe
                && self.admin.is_none()
                && maps(runtime, self.known.host_or_envoy()) == Maps::Captured
        }) else {
            return Action::Continue;
        };
        if self.needs.response_headers.any() {
            self.capture.response_headers =
                log_phase::headers(self.known.host_or_envoy(), Side::Response);
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
        self.known.learn(&HostProperties);
        let maps = maps(&runtime, self.known.host_or_envoy());
        let capture = std::mem::take(&mut self.capture);
        log_phase::observe(&runtime, &self.known, &self.needs, capture, maps);
    }
}
