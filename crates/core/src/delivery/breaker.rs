//! A circuit breaker per destination (an Envoy cluster, or Kong's `host:port`).
//!
//! After `failures` consecutive failures (retryable ones: no answer, 408, 425, 429, 5xx) a
//! destination's breaker opens for `cooldown_ms`: its deliveries wait in the queue (and still
//! count against its bounds). Then it lets one probe through (half-open): a success closes it,
//! a failure opens it again. Other destinations are unaffected. At most
//! [`MAX_DESTINATIONS`] destinations are tracked; closed ones are forgotten first.
//!
//! [`Breakers::record_failure`] and [`Breakers::record_success`] are what the pipeline calls
//! after an answer: they also write the log lines and move the `breaker.<destination>.open`
//! gauge.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::log::Level;
use crate::metrics::{self, Metrics};
use crate::ports::Ports;
use crate::reader::{Object, Problems, Whole};

pub const KEYS: &[&str] = &["failures", "cooldown_ms"];
pub const FAILURES: Whole = Whole::new("failures", 1, 10_000);
pub const COOLDOWN_MS: Whole = Whole::new("cooldown_ms", 1, 3_600_000);
/// The most destinations tracked per VM.
pub const MAX_DESTINATIONS: usize = 1_024;

/// `delivery.breaker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub failures: u32,
    pub cooldown_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failures: 5,
            cooldown_ms: 30_000,
        }
    }
}

impl Settings {
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let object = Object::new(value, path, KEYS, problems)?;
        let defaults = Settings::default();
        let failures = object.whole(FAILURES, u64::from(defaults.failures));
        Some(Settings {
            failures: u32::try_from(failures).unwrap_or(defaults.failures),
            cooldown_ms: object.whole(COOLDOWN_MS, defaults.cooldown_ms),
        })
    }
}

/// One destination's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: u64,
    },
    /// One probe may go; `probing` once it has.
    HalfOpen {
        probing: bool,
    },
}

impl State {
    /// 0 closed, 1 open, 2 half-open (the metric's values).
    pub fn code(self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// What changed, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Closed,
}

/// The breakers of one VM.
#[derive(Debug, Default)]
pub struct Breakers {
    settings: Settings,
    states: HashMap<String, State>,
    /// Destinations counted in the breaker gauge: opened and not closed since (so tracked,
    /// at most [`MAX_DESTINATIONS`]).
    gauged: HashSet<String>,
}

impl Breakers {
    pub fn new(settings: Settings) -> Self {
        Breakers {
            settings,
            states: HashMap::new(),
            gauged: HashSet::new(),
        }
    }

    pub fn state(&self, destination: &str) -> State {
        self.states
            .get(destination)
            .copied()
            .unwrap_or(State::Closed { failures: 0 })
    }

    /// Whether a delivery to `destination` may start at `now_ms`; an open breaker whose
    /// cooldown has passed turns half-open and lets this one through as its probe.
    pub fn allow(&mut self, destination: &str, now_ms: u64) -> bool {
        match self.state(destination) {
            State::Closed { .. } => true,
            State::Open { until_ms } if now_ms >= until_ms => {
                self.states
                    .insert(destination.to_string(), State::HalfOpen { probing: true });
                true
            }
            State::Open { .. } | State::HalfOpen { probing: true } => false,
            State::HalfOpen { probing: false } => {
                self.states
                    .insert(destination.to_string(), State::HalfOpen { probing: true });
                true
            }
        }
    }

    /// Records a success: the breaker closes.
    pub fn success(&mut self, destination: &str) -> Option<Change> {
        let was_closed = matches!(self.state(destination), State::Closed { .. });
        // A closed breaker with no failure counted is the default: forget it.
        self.states.remove(destination);
        (!was_closed).then_some(Change::Closed)
    }

    /// Records a failure at `now_ms`; opens the breaker at the threshold, or again after a
    /// failed probe.
    pub fn failure(&mut self, destination: &str, now_ms: u64) -> Option<Change> {
        let open = State::Open {
            until_ms: now_ms.saturating_add(self.settings.cooldown_ms),
        };
        let (next, change) = match self.state(destination) {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failures {
                    (open, Some(Change::Opened))
                } else {
                    (State::Closed { failures }, None)
                }
            }
            State::HalfOpen { .. } => (open, Some(Change::Opened)),
            State::Open { until_ms } => (State::Open { until_ms }, None),
        };
        if !self.states.contains_key(destination) && self.states.len() >= MAX_DESTINATIONS {
            self.states
                .retain(|_, state| !matches!(state, State::Closed { .. }));
            if self.states.len() >= MAX_DESTINATIONS {
                // Every tracked destination is open: this one goes untracked.
                return None;
            }
        }
        self.states.insert(destination.to_string(), next);
        change
    }

    /// A probe that ended without an outcome (the host refused it): half-open again.
    pub fn release(&mut self, destination: &str) {
        if self.state(destination) == (State::HalfOpen { probing: true }) {
            self.states
                .insert(destination.to_string(), State::HalfOpen { probing: false });
        }
    }

    /// Records a failed attempt to `destination` at the callback's time: an opening is logged
    /// and gauged.
    pub fn record_failure(&mut self, destination: &str, ports: &Ports<'_>) {
        if self.failure(destination, ports.now_ms()) != Some(Change::Opened) {
            return;
        }
        ports.log.log(
            Level::Warn,
            &format!(
                "destination {destination}: circuit breaker open after {} consecutive failures; deliveries wait {} ms, then one probe",
                self.settings.failures, self.settings.cooldown_ms
            ),
        );
        if self.gauged.insert(destination.to_string()) {
            ports
                .metrics
                .gauge(&metrics::name(&["breaker", destination, "open"]), 1);
        }
    }

    /// Records an answer from `destination` that was not a failure: a closing is logged and
    /// gauged.
    pub fn record_success(&mut self, destination: &str, ports: &Ports<'_>) {
        if let Some(Change::Closed) = self.success(destination) {
            ports.log.log(
                Level::Info,
                &format!("destination {destination}: circuit breaker closed"),
            );
        }
        if self.gauged.remove(destination) {
            ports
                .metrics
                .gauge(&metrics::name(&["breaker", destination, "open"]), -1);
        }
    }

    /// This configuration is going away: its share of the breaker gauges back to zero.
    pub fn retire(&mut self, metrics: &dyn Metrics) {
        for destination in self.gauged.drain() {
            metrics.gauge(
                &metrics::name(&["breaker", destination.as_str(), "open"]),
                -1,
            );
        }
    }

    /// Every destination not closed, with its state.
    pub fn not_closed(&self) -> impl Iterator<Item = (&str, State)> {
        self.states
            .iter()
            .filter(|(_, state)| !matches!(state, State::Closed { .. }))
            .map(|(name, state)| (name.as_str(), *state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Breakers {
        Breakers::new(Settings {
            failures: 3,
            cooldown_ms: 1_000,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_once() {
        let mut b = breakers();
        assert_eq!(b.failure("a", 0), None);
        assert_eq!(b.failure("a", 0), None);
        assert!(b.allow("a", 0));
        assert_eq!(b.failure("a", 10), Some(Change::Opened));
        assert_eq!(b.state("a"), State::Open { until_ms: 1_010 });
        assert!(!b.allow("a", 500));
        assert!(!b.allow("a", 1_009));
        // The cooldown is over: one probe, and only one.
        assert!(b.allow("a", 1_010));
        assert_eq!(b.state("a"), State::HalfOpen { probing: true });
        assert!(!b.allow("a", 1_011));
        // The probe succeeds: closed.
        assert_eq!(b.success("a"), Some(Change::Closed));
        assert!(b.allow("a", 1_012));
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let mut b = breakers();
        for _ in 0..3 {
            b.failure("a", 0);
        }
        assert!(b.allow("a", 1_000));
        assert_eq!(b.failure("a", 1_000), Some(Change::Opened));
        assert_eq!(b.state("a"), State::Open { until_ms: 2_000 });
    }

    #[test]
    fn a_success_resets_the_count_and_other_destinations_are_unaffected() {
        let mut b = breakers();
        b.failure("a", 0);
        b.failure("a", 0);
        assert_eq!(b.success("a"), None);
        b.failure("a", 0);
        b.failure("a", 0);
        assert!(b.allow("a", 0));
        for _ in 0..3 {
            b.failure("b", 0);
        }
        assert!(!b.allow("b", 0));
        assert!(b.allow("a", 0));
        assert_eq!(
            b.not_closed().map(|(name, _)| name).collect::<Vec<_>>(),
            vec!["b"]
        );
    }

    #[test]
    fn a_refused_probe_is_released() {
        let mut b = breakers();
        for _ in 0..3 {
            b.failure("a", 0);
        }
        assert!(b.allow("a", 1_000));
        b.release("a");
        assert_eq!(b.state("a"), State::HalfOpen { probing: false });
        assert!(b.allow("a", 1_001));
    }

    #[test]
    fn destinations_are_bounded() {
        let mut b = breakers();
        for n in 0..(MAX_DESTINATIONS + 10) {
            b.failure(&n.to_string(), 0);
        }
        assert!(b.states.len() <= MAX_DESTINATIONS);
    }
}
