//! Metrics, through the host's (`proxy_define_metric`): in Envoy they appear in `/stats` and
//! `/stats/prometheus`.
//!
//! Every VM (every Envoy worker) adds to the same metrics: counters add up, and gauges are
//! moved by differences (never set), so that a gauge is the sum over workers (the queue depth
//! of the whole proxy, say). Names are built here, from parts made safe for stats names.

pub use crate::ports::Metrics;

use std::cell::RefCell;
use std::collections::BTreeMap;

/// The prefix of every metric.
pub const PREFIX: &str = "event_hooks";

/// The counters that exist from the start (at zero), whatever happens.
pub const COUNTERS: &[&[&str]] = &[
    &["attempts"],
    &["retries"],
    &["dead_letters"],
    &["deliveries", "delivered"],
    &["deliveries", "failed"],
    &["deliveries", "dropped"],
    &["drops", "queue_full"],
    &["drops", "queue_bytes"],
    &["drops", "retry_queue_full"],
    &["drops", "gone"],
    &["batches"],
    &["batches", "events"],
];

/// The gauges that exist from the start (at zero).
pub const GAUGES: &[&[&str]] = &[
    &["queue", "depth"],
    &["queue", "bytes"],
    &["retries", "pending"],
    &["in_flight"],
    &["queue", "batching"],
];

/// Defines every fixed metric (adding zero), so that they show before anything happens.
pub fn define(metrics: &dyn Metrics) {
    for parts in COUNTERS {
        metrics.count(&name(parts), 0);
    }
    for parts in GAUGES {
        metrics.gauge(&name(parts), 0);
    }
}

/// Metrics that go nowhere.
pub struct Null;

impl Metrics for Null {
    fn count(&self, _name: &str, _delta: u64) {}
    fn gauge(&self, _name: &str, _delta: i64) {}
}

/// Metrics kept in memory, for tests: `value(name)` is a counter's total or a gauge's value.
#[derive(Debug, Default)]
pub struct Recorder(RefCell<BTreeMap<String, i64>>);

impl Recorder {
    pub fn value(&self, name: &str) -> i64 {
        self.0.borrow().get(name).copied().unwrap_or(0)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }
}

impl Metrics for Recorder {
    fn count(&self, name: &str, delta: u64) {
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        let mut values = self.0.borrow_mut();
        let value = values.entry(name.to_string()).or_insert(0);
        *value = value.saturating_add(delta);
    }

    fn gauge(&self, name: &str, delta: i64) {
        let mut values = self.0.borrow_mut();
        let value = values.entry(name.to_string()).or_insert(0);
        *value = value.saturating_add(delta);
    }
}

/// A name part safe in a stats name: letters, digits, `_` and `-` kept, anything else `_`.
pub fn part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `event_hooks.<parts joined by dots>`, each part made safe.
pub fn name(parts: &[&str]) -> String {
    let mut name = PREFIX.to_string();
    for item in parts {
        name.push('.');
        name.push_str(&part(item));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        assert_eq!(name(&["events", "dao:crud"]), "event_hooks.events.dao_crud");
        assert_eq!(
            name(&["hook", "orders.5xx", "delivered"]),
            "event_hooks.hook.orders_5xx.delivered"
        );
        assert_eq!(part("hooks.example.com:443"), "hooks_example_com_443");
    }

    #[test]
    fn gauges_sum_over_workers() {
        let recorder = Recorder::default();
        recorder.gauge("g", 3);
        recorder.gauge("g", 2);
        recorder.gauge("g", -4);
        recorder.count("c", 2);
        assert_eq!((recorder.value("g"), recorder.value("c")), (1, 2));
    }
}
