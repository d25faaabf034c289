//! The per-VM state a root context owns for one configuration: the hooks, the controls'
//! state, the id generator and the delivery queue. It is what the host adapter calls into:
//! [`Runtime::emit`] from `on_log` (through the HTTP context), [`Runtime::flush`] from
//! `on_tick`, and [`Runtime::complete`] from `on_http_call_response`.
//!
//! Callbacks of one VM run one at a time, so the inner `RefCell`s are never borrowed twice; a
//! borrow that fails anyway is logged and the event counted as dropped, never a panic.

use std::cell::{Cell, RefCell};

use crate::config::Config;
use crate::control::Controls;
use crate::delivery::{Delivery, Response, Transport};
use crate::event::Event;
use crate::hooks::{Action, HookSet};
use crate::id::IdGen;
use crate::log::{Level, Log};
use crate::source::Source;

pub struct Runtime {
    hooks: HookSet,
    delivery: RefCell<Delivery>,
    controls: RefCell<Controls>,
    ids: RefCell<IdGen>,
    /// Events emitted per source since start (for status and metrics).
    emitted: Cell<u64>,
    /// Events lost to a failed borrow (should stay 0).
    busy: Cell<u64>,
}

impl Runtime {
    pub fn new(config: Config, seed: u64) -> Self {
        Runtime {
            delivery: RefCell::new(Delivery::new(config.delivery, config.hooks.len())),
            hooks: config.hooks,
            controls: RefCell::new(Controls::default()),
            ids: RefCell::new(IdGen::new(seed)),
            emitted: Cell::new(0),
            busy: Cell::new(0),
        }
    }

    pub fn hooks(&self) -> &HookSet {
        &self.hooks
    }

    /// Whether any hook listens to `source` (when none does, HTTP contexts capture nothing).
    pub fn listens_to(&self, source: Source) -> bool {
        self.hooks.listens_to(source)
    }

    pub fn flush_interval_ms(&self) -> u64 {
        self.delivery
            .try_borrow()
            .map_or(100, |delivery| delivery.settings().flush_interval_ms)
    }

    pub fn emitted(&self) -> u64 {
        self.emitted.get()
    }

    /// Routes `event` to its hooks and queues the resulting jobs.
    pub fn emit(&self, event: &Event, now_ms: u64, log: &dyn Log) {
        self.emitted.set(self.emitted.get().saturating_add(1));
        let (Ok(mut controls), Ok(mut ids), Ok(mut delivery)) = (
            self.controls.try_borrow_mut(),
            self.ids.try_borrow_mut(),
            self.delivery.try_borrow_mut(),
        ) else {
            self.busy.set(self.busy.get().saturating_add(1));
            log.log(
                Level::Error,
                "event dropped: runtime state busy (re-entrant callback)",
            );
            return;
        };
        for action in self.hooks.route(event, now_ms, &mut controls, &mut ids) {
            match action {
                Action::Deliver(job) => {
                    delivery.accept(job, &self.hooks, now_ms, log);
                }
                Action::Log(level, line) => log.log(level, &line),
            }
        }
    }

    /// Sends what is queued, up to the in-flight limit.
    pub fn flush(&self, now_ms: u64, transport: &mut dyn Transport, log: &dyn Log) {
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.tick(&self.hooks, now_ms, log);
            delivery.pump(&self.hooks, now_ms, transport, log);
        }
    }

    /// Whether call `token` is one of this runtime's.
    pub fn owns(&self, token: u32) -> bool {
        self.delivery
            .try_borrow()
            .is_ok_and(|delivery| delivery.owns(token))
    }

    /// Records the answer to call `token`, then sends what the freed slot allows.
    pub fn complete(
        &self,
        token: u32,
        response: Response,
        body: &[u8],
        now_ms: u64,
        transport: &mut dyn Transport,
        log: &dyn Log,
    ) {
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.complete(token, response, body, &self.hooks, now_ms, log);
            delivery.pump(&self.hooks, now_ms, transport, log);
        }
    }

    /// Deliveries queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.delivery
            .try_borrow()
            .map_or(0, |delivery| delivery.depth() + delivery.in_flight())
    }

    /// How long to keep delivering after the host asks the filter to stop: twice the call
    /// timeout, and at least 30 s.
    pub fn drain_ms(&self) -> u64 {
        self.delivery.try_borrow().map_or(30_000, |delivery| {
            delivery.settings().timeout_ms.saturating_mul(2).max(30_000)
        })
    }

    /// Notes for the log when the configuration loads: what the filter cannot enforce itself.
    pub fn notes(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter_map(|hook| hook.handler.note(&hook.name))
            .collect()
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.delivery
            .try_borrow()
            .is_ok_and(|delivery| delivery.depth() == 0 && delivery.in_flight() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::delivery::{Request, SendError};
    use crate::log::Lines;
    use crate::source::traffic::{Capture, Properties, event};
    use serde_json::{Value, json};

    #[derive(Default)]
    struct Recorder {
        sent: Vec<Request>,
    }

    impl Transport for Recorder {
        fn send(&mut self, request: &Request, _timeout_ms: u64) -> Result<u32, SendError> {
            self.sent.push(request.clone());
            Ok(self.sent.len() as u32)
        }
    }

    fn runtime() -> Runtime {
        let config = json!({"hooks": [{
            "name": "orders-5xx", "source": "traffic", "event": "request",
            "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
            "handler": "webhook",
            "config": {"url": "http://receiver:9000/hooks", "secret": "hunter2"}
        }]});
        Runtime::new(config::parse(config.to_string().as_bytes()).unwrap(), 42)
    }

    fn request(status: u64, path: &str) -> Event {
        let capture = Capture {
            request_headers: Some(vec![
                (":method".into(), "GET".into()),
                (":path".into(), path.into()),
                ("authorization".into(), "Bearer secret-token".into()),
            ]),
            properties: Properties {
                status: Some(status),
                ..Properties::default()
            },
            ..Capture::default()
        };
        event(&capture, 0)
    }

    #[test]
    fn a_5xx_on_orders_is_delivered_signed_and_a_200_is_not() {
        let runtime = runtime();
        let log = Lines::default();
        let mut transport = Recorder::default();
        runtime.emit(&request(200, "/orders/1"), 1_000, &log);
        runtime.emit(&request(503, "/orders/2"), 1_000, &log);
        runtime.flush(2_000, &mut transport, &log);
        assert_eq!(transport.sent.len(), 1);
        let sent = &transport.sent[0];
        let body: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(body["response"]["status"], 503);
        assert_eq!(body["request"]["path"], "/orders/2");
        assert_eq!(body["request"]["headers"]["authorization"], "[redacted]");
        assert_eq!(
            (body["source"].as_str(), body["event"].as_str()),
            (Some("traffic"), Some("request"))
        );
        let signature = sent
            .headers
            .iter()
            .find(|(name, _)| name == "x-kong-signature")
            .map(|(_, value)| value.clone())
            .unwrap();
        // Computed here with the hmac crate directly, over the exact bytes sent.
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"hunter2").unwrap();
        mac.update(&sent.body);
        let expected = crate::signing::hex(&mac.finalize().into_bytes());
        assert_eq!(signature, format!("sha1={expected}"));
        assert!(!runtime.is_idle());
        assert!(runtime.owns(1));
        runtime.complete(1, Response::Status(200), b"", 2_100, &mut transport, &log);
        assert!(runtime.is_idle());
        assert_eq!(runtime.emitted(), 2);
        assert!(!log.text().contains("secret-token"));
    }
}
