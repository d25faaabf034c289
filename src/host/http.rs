//! The HTTP context: captures what the log phase cannot see in the header and body callbacks,
//! builds the request's events in `on_log` and hands them to the root context's runtime. It
//! never dispatches and never changes the request or response.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::abi::{self, HostLog};
use crate::runtime::Runtime;
use crate::source::crud::{self, Body};
use crate::source::traffic::{Capture, Properties};

pub struct Http {
    /// `None` when no hook listens to a source built from requests: the context then does
    /// nothing at all.
    runtime: Option<Rc<Runtime>>,
    capture: Capture,
    /// While reading a response body for `crud`: the bytes so far and the most to read.
    body: Option<(Vec<u8>, usize)>,
}

impl Http {
    pub fn new(runtime: Option<Rc<Runtime>>) -> Self {
        Http {
            runtime,
            capture: Capture::default(),
            body: None,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        let headers = self.capture.request_headers.as_deref()?;
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Context for Http {}

/// Log-phase properties (Envoy's attribute names). Request fields are read only when the
/// header callback did not run (a reply sent by an earlier filter).
fn properties(headers_seen: bool) -> Properties {
    let text = |path: &[&str]| abi::string_property(path);
    let number = |path: &[&str]| abi::integer_property(path);
    let (method, path, host, scheme) = if headers_seen {
        (None, None, None, None)
    } else {
        (
            text(&["request", "method"]),
            text(&["request", "path"]),
            text(&["request", "host"]),
            text(&["request", "scheme"]),
        )
    };
    Properties {
        method,
        path,
        host,
        scheme,
        request_id: text(&["request", "id"]),
        status: number(&["response", "code"]),
        flags: number(&["response", "flags"]),
        code_details: text(&["response", "code_details"]),
        upstream_address: text(&["upstream", "address"]),
        cluster: text(&["xds", "cluster_name"]),
        route: text(&["xds", "route_name"]),
        duration_ns: number(&["request", "duration"]),
        start_ns: number(&["request", "time"]),
        source_address: text(&["source", "address"]),
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.runtime.is_some() {
            self.capture.seen_ns = abi::now_ns();
            self.capture.request_headers =
                abi::header_map(MapType::HttpRequestHeaders).ok().flatten();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        self.capture.response_headers =
            abi::header_map(MapType::HttpResponseHeaders).ok().flatten();
        // A write that succeeded may be an entity change: read its body, capped, if crud.match
        // selects the request (which may need the properties, read now for these few).
        let status = self
            .capture
            .response_headers
            .as_deref()
            .and_then(|headers| headers.iter().find(|(key, _)| key == ":status"))
            .and_then(|(_, status)| status.parse::<u16>().ok());
        let candidate = self.header(":method").is_some_and(crud::is_write_method)
            && status.is_some_and(|status| (200..300).contains(&status));
        if candidate && !end_of_stream {
            self.capture.properties = properties(true);
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
        let Some(runtime) = &self.runtime else {
            return;
        };
        self.capture.properties = properties(self.capture.request_headers.is_some());
        let now_ns = abi::now_ns().unwrap_or(0);
        runtime.observe(&self.capture, now_ns, &HostLog);
    }
}
