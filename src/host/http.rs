//! The HTTP context: captures what the log phase cannot see in the header callbacks, builds
//! the traffic event in `on_log` and hands it to the root context's runtime. It never
//! dispatches and never changes the request or response.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::abi::{self, HostLog};
use crate::runtime::Runtime;
use crate::source::traffic::{self, Capture, Properties};

pub struct Http {
    /// `None` when no hook listens to traffic: the context then does nothing at all.
    runtime: Option<Rc<Runtime>>,
    capture: Capture,
}

impl Http {
    pub fn new(runtime: Option<Rc<Runtime>>) -> Self {
        Http {
            runtime,
            capture: Capture::default(),
        }
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

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.runtime.is_some() {
            self.capture.response_headers =
                abi::header_map(MapType::HttpResponseHeaders).ok().flatten();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        self.capture.properties = properties(self.capture.request_headers.is_some());
        let now_ns = abi::now_ns().unwrap_or(0);
        let event = traffic::event(&self.capture, now_ns);
        runtime.emit(&event, now_ns / 1_000_000, &HostLog);
    }
}
