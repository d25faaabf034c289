//! The events other filters emitted during a request ([`crate::emitted`]), made events of the
//! configuration's published sources and routed like any other.
//!
//! The host adapter reads the emission channel in the log phase only when [`Needs::emitted`]
//! says so (some enabled hook listens to a published source), decodes it, and hands the result
//! to [`Runtime::observe_emitted`]. Each emission becomes an event of its published source, its
//! data exactly what the emitter gave (with `with_request`, plus the request's `request`,
//! `response` and `upstream`), or is dropped, never breaking traffic: counted by reason
//! ([`Dropped`]: the status endpoint's `emissions`, the metrics `emissions.accepted` and
//! `emissions.dropped.<reason>`), and logged at most once per [`DROP_LOG_INTERVAL_MS`] per
//! reason, those held back summarized later.
//!
//! [`Needs::emitted`]: crate::needs::Needs::emitted

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::{Counters, Runtime};
use crate::delivery::warnings::Warnings;
use crate::emitted::{Emission, Emitted, Reason};
use crate::event::Event;
use crate::log::Level;
use crate::metrics;
use crate::ports::{Clock, Ports};
use crate::source::Source;
use crate::source::published::{Published, REQUEST_SECTIONS};
use crate::source::registry::source_name;
use crate::source::traffic::{Capture, Later};

/// The least time between two log lines about emissions dropped for the same reason.
pub const DROP_LOG_INTERVAL_MS: u64 = 10_000;

/// Why an emitted event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its source is not one the configuration publishes.
    UnknownSource,
    /// Its source is published, without this event.
    UnknownEvent,
    /// The decoder refused it, or the whole channel ([`Reason`]: not an object, over the size
    /// cap, malformed, ...).
    Decoder(Reason),
}

impl Dropped {
    pub const COUNT: usize = 2 + Reason::ALL.len();

    /// Every reason, in the order of [`Counters::emissions_dropped`].
    pub const ALL: [Dropped; Dropped::COUNT] = [
        Dropped::UnknownSource,
        Dropped::UnknownEvent,
        Dropped::Decoder(Reason::Malformed),
        Dropped::Decoder(Reason::NotObject),
        Dropped::Decoder(Reason::BadKey),
        Dropped::Decoder(Reason::TooLarge),
        Dropped::Decoder(Reason::TooDeep),
        Dropped::Decoder(Reason::BadNumber),
        Dropped::Decoder(Reason::TooMany),
    ];

    /// Its name in logs, the status endpoint and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::UnknownSource => "unknown_source",
            Dropped::UnknownEvent => "unknown_event",
            Dropped::Decoder(reason) => reason.as_str(),
        }
    }

    /// Its place in [`Dropped::ALL`].
    fn slot(self) -> usize {
        Dropped::ALL
            .iter()
            .position(|known| *known == self)
            .unwrap_or_default()
    }
}

/// The emissions' metric names, made once, and the throttle of their warnings.
pub(super) struct Emissions {
    /// `emissions.accepted`, then `emissions.dropped.<reason>` in [`Dropped::ALL`]'s order;
    /// empty when the configuration publishes nothing (no emission is ever read then).
    metrics: Vec<String>,
    warnings: RefCell<Warnings>,
    /// The reasons' names, as the throttle's summaries give them.
    names: Vec<Rc<str>>,
}

impl Emissions {
    pub(super) fn new(published: bool) -> Emissions {
        let names = if published {
            std::iter::once(metrics::name(&["emissions", "accepted"]))
                .chain(
                    Dropped::ALL
                        .iter()
                        .map(|dropped| metrics::name(&["emissions", "dropped", dropped.as_str()])),
                )
                .collect()
        } else {
            Vec::new()
        };
        Emissions {
            metrics: names,
            warnings: RefCell::new(Warnings::new(Dropped::COUNT, DROP_LOG_INTERVAL_MS)),
            names: Dropped::ALL
                .iter()
                .map(|dropped| Rc::from(dropped.as_str()))
                .collect(),
        }
    }

    /// The metrics defined when the configuration loads.
    pub(super) fn metric_names(&self) -> impl Iterator<Item = &String> {
        self.metrics.iter()
    }

    fn count(&self, ports: &Ports<'_>, at: usize) {
        if let Some(name) = self.metrics.get(at) {
            ports.metrics.count(name, 1);
        }
    }

    /// Logs that an emission (`key`, if it had one) was dropped, unless a line about the same
    /// reason was written less than [`DROP_LOG_INTERVAL_MS`] ago.
    fn warn(&self, dropped: Dropped, key: Option<&str>, ports: &Ports<'_>) {
        let slot = dropped.slot();
        let (Ok(mut warnings), Some(name)) = (self.warnings.try_borrow_mut(), self.names.get(slot))
        else {
            return;
        };
        if warnings.allow(slot, name, ports.now_ms()) {
            let what = key.map_or_else(
                || "emitted events".to_string(),
                |key| format!("emitted event {key:?}"),
            );
            ports.log.log(
                Level::Warn,
                &format!(
                    "{what} dropped: {} (logged at most every {} s)",
                    dropped.as_str(),
                    DROP_LOG_INTERVAL_MS / 1_000
                ),
            );
        }
    }

    /// Writes the summaries of the drop warnings held back whose interval has passed.
    pub(super) fn summarize(&self, ports: &Ports<'_>) {
        let Ok(mut warnings) = self.warnings.try_borrow_mut() else {
            return;
        };
        for (name, held) in warnings.overdue(ports.now_ms()) {
            ports.log.log(
                Level::Warn,
                &format!("emitted events dropped ({name}): {held} more since the last line"),
            );
        }
    }
}

/// The status endpoint's `emissions`: `{"accepted": n, "dropped": {"<reason>": n, ...}}`.
pub(super) fn status(counters: &Counters) -> Value {
    let dropped: Map<String, Value> = Dropped::ALL
        .iter()
        .zip(counters.emissions_dropped)
        .map(|(dropped, count)| (dropped.as_str().to_string(), count.into()))
        .collect();
    serde_json::json!({"accepted": counters.emissions_accepted, "dropped": dropped})
}

impl Runtime {
    /// Routes the events other filters emitted during the request `capture` describes:
    /// `decoded` is what [`crate::emitted::from_metadata`] or [`crate::emitted::from_json`]
    /// returned for the channel. Each emission of a published source and event becomes an
    /// event of that source (with `with_request`, the request's traffic fields added, `rest`
    /// reading the properties [`Runtime::needs`] left for then), the others are dropped and
    /// counted. Nothing emitted costs nothing.
    pub fn observe_emitted(
        &self,
        capture: &Capture,
        rest: &dyn Fn(&mut Later),
        decoded: Result<Emitted, Reason>,
        clock: &dyn Clock,
    ) {
        let now_ns = clock.now_ns();
        let built = OnceCell::new();
        let traffic = || built.get_or_init(|| self.traffic_event(capture, rest, now_ns));
        self.route_emitted(decoded, &traffic, clock);
    }

    /// [`Runtime::observe_emitted`] with the request's traffic event built by `traffic` (at
    /// most once, shared with the request's own sources).
    pub(super) fn route_emitted<'e>(
        &self,
        decoded: Result<Emitted, Reason>,
        traffic: &dyn Fn() -> &'e Event,
        clock: &dyn Clock,
    ) {
        let ports = self.ports(clock);
        let emitted = match decoded {
            Ok(emitted) if emitted.is_empty() => return,
            Ok(emitted) => emitted,
            Err(reason) => {
                self.drop_emission(Dropped::Decoder(reason), None, &ports);
                return;
            }
        };
        for rejected in &emitted.rejected {
            self.drop_emission(
                Dropped::Decoder(rejected.reason),
                Some(&rejected.key),
                &ports,
            );
        }
        for emission in emitted.emissions {
            let (source, published) = match self.published_of(&emission) {
                Ok(found) => found,
                Err(dropped) => {
                    let key = format!("{}.{}", emission.source, emission.event);
                    self.drop_emission(dropped, Some(&key), &ports);
                    continue;
                }
            };
            let mut data = emission.data;
            if published.with_request {
                with_request(&mut data, traffic());
            }
            self.count(|c| c.emissions_accepted = c.emissions_accepted.saturating_add(1));
            self.emissions.count(&ports, 0);
            let name = source_name(source, Some(published));
            let event = Event::of_source(source, name, emission.event.as_str(), data);
            self.emit_lazy(source, &event.name, &event, || &event, &ports);
        }
    }

    /// The published source of `emission`, if it is one and has the event.
    fn published_of(&self, emission: &Emission) -> Result<(Source, &Published), Dropped> {
        let sources = self.hooks.sources();
        let (source, published) = sources
            .published_sources()
            .find(|(_, published)| published.name == emission.source)
            .ok_or(Dropped::UnknownSource)?;
        published
            .event(&emission.event)
            .map(|_| (source, &**published))
            .ok_or(Dropped::UnknownEvent)
    }

    /// Counts a dropped emission, and logs it unless the throttle holds the line back.
    fn drop_emission(&self, dropped: Dropped, key: Option<&str>, ports: &Ports<'_>) {
        let slot = dropped.slot();
        self.count(|c| {
            if let Some(count) = c.emissions_dropped.get_mut(slot) {
                *count = count.saturating_add(1);
            }
        });
        self.emissions.count(ports, slot + 1);
        self.emissions.warn(dropped, key, ports);
    }
}

/// Adds the traffic event's `request`, `response` and `upstream` to `data`; a key the emitter
/// gave itself is kept.
fn with_request(data: &mut Map<String, Value>, traffic: &Event) {
    for section in REQUEST_SECTIONS {
        if let Some(value) = traffic.data.get(*section) {
            data.entry(*section).or_insert_with(|| value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
