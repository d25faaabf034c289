//! The log phase, wherever it runs: an HTTP context's `on_log`, or (Envoy's wasm access
//! logger) the root context's. Reads what the hooks need that the capture made so far does
//! not hold (the header maps where the log phase can read them, the properties, the channels
//! other filters emitted events on) and hands all of it to the core's one entry point
//! ([`Runtime::observe_request`]), which asks for the rest at most once, when an event is
//! built.

use proxy_wasm::types::MapType;

use super::abi::{self, HostClock, HostProperties};
use super::differences::{self, Host, Known, Maps};
use event_hooks_core::emitted::Emitted;
use event_hooks_core::needs::{Needs, Stage};
use event_hooks_core::ports::PropertyReader;
use event_hooks_core::runtime::Runtime;
use event_hooks_core::source::traffic::{Capture, Later, Side};

/// Observes the finished request `capture` describes: its header maps as captured
/// ([`Maps::Captured`]), or read here as the hooks need them ([`Maps::InLogPhase`]: those a
/// filter tests now, the others once an event is built); its properties read here, the same
/// way. The caller has learnt the host (`Known::learn`).
pub fn observe(runtime: &Runtime, known: &Known, needs: &Needs, mut capture: Capture, maps: Maps) {
    let host = known.host_or_envoy();
    let in_log_phase = maps == Maps::InLogPhase;
    if in_log_phase {
        if needs.request_headers == Stage::First {
            capture.request_headers = headers(host, Side::Request);
        }
        if needs.response_headers == Stage::First {
            capture.response_headers = headers(host, Side::Response);
        }
    }
    let headers_seen = capture.request_headers.is_some();
    let earlier = std::mem::take(&mut capture.properties);
    capture.properties =
        differences::log_properties(host, headers_seen, earlier, &HostProperties, needs.first);
    let clock = HostClock::read();
    // The rest, read only if the request's traffic event is built.
    let rest = |later: &mut Later| {
        if in_log_phase {
            if capture.request_headers.is_none() && needs.request_headers == Stage::Then {
                later.request_headers = headers(host, Side::Request);
            }
            if capture.response_headers.is_none() && needs.response_headers == Stage::Then {
                later.response_headers = headers(host, Side::Response);
            }
        }
        let seen = headers_seen || later.request_headers.is_some();
        let earlier = std::mem::take(&mut later.properties);
        later.properties =
            differences::log_properties(host, seen, earlier, &HostProperties, needs.then);
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

/// The request's or the response's header map, as the core reads it; `None` when the host
/// has none here.
pub fn headers(host: Host, side: Side) -> Option<Vec<(String, String)>> {
    let kind = match side {
        Side::Request => MapType::HttpRequestHeaders,
        Side::Response => MapType::HttpResponseHeaders,
    };
    let mut headers = abi::header_map(kind).ok().flatten()?;
    match side {
        Side::Request => differences::request_headers(host, &mut headers),
        Side::Response => differences::response_headers(host, &mut headers),
    }
    Some(headers)
}
