//! The host boundary: everything the core asks of the proxy, as a few small traits. The host
//! adapter (`crates/filter`) implements them with proxy-wasm calls; tests use the fakes.
//!
//! | port | what the core asks | fake |
//! |---|---|---|
//! | [`Clock`] | the time, in ms or ns | [`ManualClock`] |
//! | [`Log`] | write a line at a [`Level`] | `log::Lines` |
//! | [`Metrics`] | add to a counter or a gauge | `metrics::Recorder`, `metrics::Null` |
//! | [`Shared`] | read and compare-and-swap the store every worker shares | `shared::Memory` |
//! | [`Transport`] | start an HTTP call ([`Attempt`]), say whether there is room for one | [`Recorded`] |
//! | [`PropertyReader`] | a property of the current stream, by path | [`PropertyMap`] |
//!
//! One callback sees one time: the adapter reads the host's clock once, when a callback starts
//! (its `HostClock`), and hands that reading to each entry point of the core it calls from the
//! callback, so every stage of a callback agrees on the time; tests set it ([`ManualClock`]).
//!
//! The runtime owns the ports that live as long as it does (shared store, metrics, log); an
//! entry point takes the callback's clock (and, to send, its transport), and hands the calls
//! below it one [`Ports`]: the clock, the log and the metrics. A stage that only needs the
//! time takes it as a plain value (`now_ms`).
//!
//! Properties are read by the adapter alone, through [`PropertyReader`]: which paths to read,
//! and how to decode them, differ between hosts (`crates/filter/src/differences.rs`); the core
//! gets a plain [`crate::source::traffic::Capture`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The host's clock: unix time.
pub trait Clock {
    /// Nanoseconds since the epoch.
    fn now_ns(&self) -> u64;

    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }
}

/// A clock that says what it was set to: the fake of [`Clock`].
#[derive(Debug, Default)]
pub struct ManualClock(Cell<u64>);

impl ManualClock {
    pub fn at_ns(ns: u64) -> Self {
        ManualClock(Cell::new(ns))
    }

    pub fn at_ms(ms: u64) -> Self {
        Self::at_ns(ms.saturating_mul(1_000_000))
    }

    /// Moves the clock `ms` forward.
    pub fn advance_ms(&self, ms: u64) {
        self.0
            .set(self.0.get().saturating_add(ms.saturating_mul(1_000_000)));
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.get()
    }
}

/// Log levels, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Where the core writes its log lines.
pub trait Log {
    fn log(&self, level: Level, message: &str);
}

/// Where the core's metrics go.
pub trait Metrics {
    /// Adds `delta` to the counter `name`.
    fn count(&self, name: &str, delta: u64);
    /// Adds `delta` (possibly negative) to the gauge `name`.
    fn gauge(&self, name: &str, delta: i64);
    /// Sends what the implementation holds back, if it does (the host adapter sums changes
    /// between the root context's callbacks, so that a request's log phase makes no metrics
    /// call: [`crate::runtime::Runtime::flush_metrics`]).
    fn flush(&self) {}
}

/// The ports an entry point of the core hands down its calls, as one argument: the callback's
/// clock, the log and the metrics.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub clock: &'a dyn Clock,
    pub log: &'a dyn Log,
    pub metrics: &'a dyn Metrics,
}

impl Ports<'_> {
    /// The callback's time, ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Ok,
    /// Another worker wrote since the read: read again.
    Conflict,
}

/// The proxy's shared key-value store.
pub trait Shared {
    /// The value of `key` and its token; `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String>;
    /// Writes `value` if the key's token is still `cas` (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<Written, String>;
}

/// Where a call goes. Envoy dispatches to a cluster; Kong to a literal `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub cluster: String,
    pub host_port: String,
    pub tls: bool,
}

/// One attempt at a call, exactly as the host sends it: pseudo-headers (`:method`, `:path`,
/// `:authority`) first, then the rest, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub destination: Destination,
    pub headers: Vec<(String, String)>,
    pub body: Rc<[u8]>,
}

/// Why the host did not start a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The call can never be made as asked (Envoy: `BadArgument`, an unknown cluster).
    Refused(String),
    /// The call cannot start now (Envoy: `InternalFailure`, e.g. the cluster's circuit breaker
    /// is open or it has no healthy host); the delivery waits for the next round.
    Busy(String),
}

/// The host's asynchronous HTTP callout.
pub trait Transport {
    /// Starts an attempt; returns the host's token for its response.
    fn send(&mut self, attempt: &Attempt, timeout_ms: u64) -> Result<u32, SendError>;

    /// Whether the host takes another call now, whatever the pipeline's own limits say (Kong:
    /// one call in flight per root context). Asked before each call.
    fn has_room(&self) -> bool {
        true
    }
}

/// A transport that records every attempt and hands out tokens 1, 2, 3, ...: the fake of
/// [`Transport`].
#[derive(Debug, Default)]
pub struct Recorded {
    pub sent: RefCell<Vec<Attempt>>,
}

impl Transport for Recorded {
    fn send(&mut self, attempt: &Attempt, _timeout_ms: u64) -> Result<u32, SendError> {
        let mut sent = self.sent.borrow_mut();
        sent.push(attempt.clone());
        Ok(u32::try_from(sent.len()).unwrap_or(u32::MAX))
    }
}

/// The host's properties of the current stream (Envoy's attributes, Kong's host properties and
/// nginx variables), by path: `["request", "path"]`.
pub trait PropertyReader {
    /// The property's raw value; `None` when it is absent or cannot be read.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
}

/// A function of the path reads properties too (the fuzz targets' readers are closures).
impl<F: Fn(&[&str]) -> Option<Vec<u8>>> PropertyReader for F {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self(path)
    }
}

/// Properties from a map, by dotted path (`request.path`), that records every path asked for:
/// the fake of [`PropertyReader`].
#[derive(Debug, Default)]
pub struct PropertyMap {
    pub values: BTreeMap<String, Vec<u8>>,
    pub asked: RefCell<Vec<String>>,
}

impl PropertyMap {
    pub fn new(values: &[(&str, &[u8])]) -> Self {
        PropertyMap {
            values: values
                .iter()
                .map(|(path, value)| (path.to_string(), value.to_vec()))
                .collect(),
            asked: RefCell::default(),
        }
    }
}

impl PropertyReader for PropertyMap {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path = path.join(".");
        let value = self.values.get(&path).cloned();
        self.asked.borrow_mut().push(path);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_fake_records_attempts_and_numbers_them() {
        let mut transport = Recorded::default();
        let attempt = Attempt {
            destination: Destination {
                cluster: "receiver".into(),
                host_port: "receiver:80".into(),
                tls: false,
            },
            headers: vec![(":method".into(), "POST".into())],
            body: Rc::from(&b"{}"[..]),
        };
        assert!(transport.has_room());
        assert_eq!(transport.send(&attempt, 1_000), Ok(1));
        assert_eq!(transport.send(&attempt, 1_000), Ok(2));
        assert_eq!(
            transport.sent.borrow().as_slice(),
            [attempt.clone(), attempt]
        );
    }

    #[test]
    fn the_clock_fake_says_what_it_was_set_to() {
        let clock = ManualClock::at_ms(1_700_000_000_000);
        assert_eq!(clock.now_ns(), 1_700_000_000_000_000_000);
        clock.advance_ms(1_500);
        assert_eq!(clock.now_ms(), 1_700_000_001_500);
        assert_eq!(ManualClock::at_ns(2_999_999).now_ms(), 2);
    }

    #[test]
    fn the_property_fake_reads_its_map_and_records_what_was_asked() {
        let properties = PropertyMap::new(&[("request.path", b"/orders")]);
        assert_eq!(
            properties.property(&["request", "path"]),
            Some(b"/orders".to_vec())
        );
        assert_eq!(properties.property(&["ngx", "pid"]), None);
        assert_eq!(*properties.asked.borrow(), ["request.path", "ngx.pid"]);
    }
}
