//! The log phase, wherever it runs: an HTTP context's `on_log`, or (Envoy's wasm access
//! logger) the root context's. Reads the properties the hooks need on the capture made so
//! far, the channels other filters emitted events on, and hands all of it to the core's one
//! entry point ([`Runtime::observe_request`]), which reads the late properties at most once.

use proxy_wasm::types::MapType;

use super::abi::{self, HostClock, HostProperties};
use super::differences::{self, Known};
use event_hooks_core::emitted::Emitted;
use event_hooks_core::needs::Needs;
use event_hooks_core::ports::PropertyReader;
use event_hooks_core::runtime::Runtime;
use event_hooks_core::source::traffic::{Capture, Properties};

/// Observes the finished request `capture` describes (its header maps as captured; its
/// properties read here).
pub fn observe(runtime: &Runtime, known: &Known, needs: &Needs, mut capture: Capture) {
    known.learn(&HostProperties);
    let host = known.host_or_envoy();
    let headers_seen = capture.request_headers.is_some();
    let earlier = std::mem::take(&mut capture.properties);
    capture.properties =
        differences::log_properties(host, headers_seen, earlier, &HostProperties, needs.first);
    let clock = HostClock::read();
    // The rest of the properties, read only if the request's traffic event is built.
    let then = needs.then;
    let rest = |properties: &mut Properties| {
        let earlier = std::mem::take(properties);
        *properties =
            differences::log_properties(host, headers_seen, earlier, &HostProperties, then);
    };
    // Events other filters emitted: one read per channel, and only when a hook listens to a
    // published source.
    let emitted = known
        .emitted_channels(needs.emitted, needs.emitted_filter_state)
        .into_iter()
        .flatten()
        .map(|channel| match HostProperties.property(channel.path()) {
            Some(bytes) => channel.decode(&bytes),
            None => Ok(Emitted::default()),
        })
        .collect();
    runtime.observe_request(&capture, &rest, emitted, &clock);
}

/// Envoy's wasm access logger: the finished request's header maps, as the hooks need them,
/// read from the root context (where Envoy allows it for an access log entry).
pub fn access_log_capture(known: &Known, needs: &Needs) -> Capture {
    let host = known.host_or_envoy();
    let mut capture = Capture::default();
    if needs.request_headers {
        capture.request_headers = abi::header_map(MapType::HttpRequestHeaders).ok().flatten();
        if let Some(headers) = &mut capture.request_headers {
            differences::request_headers(host, headers);
        }
    }
    if needs.response_headers {
        capture.response_headers = abi::header_map(MapType::HttpResponseHeaders).ok().flatten();
        if let Some(headers) = &mut capture.response_headers {
            differences::response_headers(host, headers);
        }
    }
    capture
}
