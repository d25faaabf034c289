//! Accounting: the per-hook counters, the drops by reason, the byte budget's use, the counter
//! metrics of each step, and the gauges.
//!
//! Per hook, at any moment: `accepted = delivered + failed + dropped + pending`, in events.
//! Each event is counted once as accepted and once as its delivery (alone or in a batch)
//! ends ([`Ending`]); `pending` is the difference. Gauges are moved by differences from what this VM reported (every VM adds to
//! the same gauge), and all the way back to zero when its configuration retires.

use super::unit::Delivery;
use crate::metrics::{self, Metrics};

/// Counters of one hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookStats {
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub pending: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Dead letters made of this hook's deliveries (one per batch given up or dropped).
    pub dead_letters: u64,
    /// Batches closed (each one call, whatever its retries).
    pub batches: u64,
}

impl HookStats {
    /// The counters as the admin status shows them.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.accepted, "delivered": self.delivered,
            "failed": self.failed, "dropped": self.dropped,
            "pending": self.pending, "retries": self.retries,
            "dead_letters": self.dead_letters, "batches": self.batches,
        })
    }
}

/// Why a delivery was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    QueueBytes,
    RetryQueueFull,
    /// The hook's endpoint answered 410 Gone.
    Gone,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::QueueBytes,
        DropReason::RetryQueueFull,
        DropReason::Gone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::QueueBytes => "queue_bytes",
            DropReason::RetryQueueFull => "retry_queue_full",
            DropReason::Gone => "gone",
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Delivered,
    Failed,
    Dropped,
}

impl Ending {
    pub fn name(self) -> &'static str {
        match self {
            Ending::Delivered => "delivered",
            Ending::Failed => "failed",
            Ending::Dropped => "dropped",
        }
    }
}

/// How full each stage is, as the gauges show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Levels {
    /// Deliveries in the queue.
    pub depth: usize,
    /// Deliveries waiting for a retry.
    pub retries: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// Events waiting in open batches.
    pub batching: usize,
}

/// Gauge values last reported, to report differences.
#[derive(Debug, Default)]
struct Reported {
    depth: i64,
    bytes: i64,
    retries: i64,
    in_flight: i64,
    batching: i64,
}

/// The accounts of one VM.
#[derive(Debug, Default)]
pub struct Accounts {
    stats: Vec<HookStats>,
    drops: [u64; DropReason::ALL.len()],
    /// Payload bytes held by queued, waiting and in-flight deliveries.
    bytes: usize,
    reported: Reported,
}

impl Accounts {
    pub fn new(hooks: usize) -> Self {
        Accounts {
            stats: vec![HookStats::default(); hooks],
            ..Accounts::default()
        }
    }

    pub fn stats(&self) -> &[HookStats] {
        &self.stats
    }

    /// Drops so far, by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .copied()
            .zip(self.drops.iter().copied())
    }

    /// Payload bytes held by queued, waiting and in-flight deliveries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn stat(&mut self, hook: usize) -> Option<&mut HookStats> {
        self.stats.get_mut(hook)
    }

    /// A delivery accepted (whether it is then queued or dropped): counted, its bytes held.
    pub fn accepted(&mut self, delivery: &Delivery) {
        if let Some(stat) = self.stat(delivery.hook) {
            stat.accepted = stat.accepted.saturating_add(1);
            stat.pending = stat.pending.saturating_add(1);
        }
        self.bytes = self.bytes.saturating_add(delivery.size());
    }

    /// An attempt started.
    pub fn attempted(&mut self, metrics: &dyn Metrics) {
        metrics.count(&metrics::name(&["attempts"]), 1);
    }

    /// A retry scheduled for a delivery of hook `hook` (called `name`).
    pub fn retried(&mut self, hook: usize, name: &str, metrics: &dyn Metrics) {
        if let Some(stat) = self.stat(hook) {
            stat.retries = stat.retries.saturating_add(1);
        }
        metrics.count(&metrics::name(&["retries"]), 1);
        metrics.count(&metrics::name(&["hook", name, "retries"]), 1);
    }

    /// A delivery ended: its events no longer pending, its bytes freed.
    pub fn ended(&mut self, delivery: &Delivery, ending: Ending, metrics: &dyn Metrics) {
        self.bytes = self.bytes.saturating_sub(delivery.size());
        let events = u64::from(delivery.events);
        if let Some(stat) = self.stat(delivery.hook) {
            stat.pending = stat.pending.saturating_sub(events);
            let count = match ending {
                Ending::Delivered => &mut stat.delivered,
                Ending::Failed => &mut stat.failed,
                Ending::Dropped => &mut stat.dropped,
            };
            *count = count.saturating_add(events);
        }
        metrics.count(&metrics::name(&["deliveries", ending.name()]), events);
    }

    /// A batch of hook `hook` (called `name`) closed, of `events` events.
    pub fn batched(&mut self, hook: usize, name: &str, events: u32, metrics: &dyn Metrics) {
        if let Some(stat) = self.stat(hook) {
            stat.batches = stat.batches.saturating_add(1);
        }
        metrics.count(&metrics::name(&["batches"]), 1);
        metrics.count(&metrics::name(&["hook", name, "batches"]), 1);
        metrics.count(&metrics::name(&["batches", "events"]), u64::from(events));
    }

    /// A drop of `delivery`'s events, by reason (its end is counted by [`Accounts::ended`]).
    pub fn dropped(&mut self, delivery: &Delivery, reason: DropReason, metrics: &dyn Metrics) {
        let events = u64::from(delivery.events);
        if let Some(count) = DropReason::ALL
            .iter()
            .position(|candidate| *candidate == reason)
            .and_then(|index| self.drops.get_mut(index))
        {
            *count = count.saturating_add(events);
        }
        metrics.count(&metrics::name(&["drops", reason.name()]), events);
    }

    /// A dead letter made of `delivery`.
    pub fn dead_lettered(&mut self, delivery: &Delivery, metrics: &dyn Metrics) {
        if let Some(stat) = self.stat(delivery.hook) {
            stat.dead_letters = stat.dead_letters.saturating_add(1);
        }
        metrics.count(&metrics::name(&["dead_letters"]), 1);
        metrics.count(
            &metrics::name(&["hook", delivery.name(), "dead_letters"]),
            1,
        );
    }

    /// Reports the gauges as differences from what was reported (all to zero when `retiring`:
    /// this configuration is going away).
    pub fn report(&mut self, levels: Levels, metrics: &dyn Metrics, retiring: bool) {
        let size = |value: usize| {
            if retiring {
                0
            } else {
                i64::try_from(value).unwrap_or(i64::MAX)
            }
        };
        let current = Reported {
            depth: size(levels.depth),
            bytes: size(self.bytes),
            retries: size(levels.retries),
            in_flight: size(levels.in_flight),
            batching: size(levels.batching),
        };
        for (parts, now, before) in [
            (&["queue", "depth"][..], current.depth, self.reported.depth),
            (&["queue", "bytes"][..], current.bytes, self.reported.bytes),
            (
                &["retries", "pending"][..],
                current.retries,
                self.reported.retries,
            ),
            (
                &["in_flight"][..],
                current.in_flight,
                self.reported.in_flight,
            ),
            (
                &["queue", "batching"][..],
                current.batching,
                self.reported.batching,
            ),
        ] {
            if now != before {
                metrics.gauge(&metrics::name(parts), now - before);
            }
        }
        self.reported = current;
    }
}
