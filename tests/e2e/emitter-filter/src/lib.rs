//! Emits the events a request's `x-emit` header holds (JSON text, `{"<source>.<event>": {...}}`)
//! into Envoy's filter state for event_hooks, as a wasm filter of one's own would: one
//! `set_property(["event_hooks"], json)` per request.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmitterRoot) });
}}

struct EmitterRoot;

impl Context for EmitterRoot {}

impl RootContext for EmitterRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Emitter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Emitter;

impl Context for Emitter {}

impl HttpContext for Emitter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(events) = self.get_http_request_header("x-emit") {
            self.set_property(vec!["event_hooks"], Some(events.as_bytes()));
        }
        Action::Continue
    }
}
