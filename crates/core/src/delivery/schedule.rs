//! The retry schedule: the deliveries waiting for their next attempt, by when it is due, at
//! most `max_pending_retries` of them. When each waits is the retry policy's ([`retry`]);
//! the jitter's randomness is the schedule's own, seeded per VM.

use std::collections::BTreeMap;

use super::retry;
use super::unit::Delivery;

/// What [`Schedule::plan`] did with a delivery that failed an attempt.
#[derive(Debug)]
pub enum Planned {
    /// It waits for its next attempt.
    Scheduled,
    /// Out of attempts, or its next attempt would come after `max_age_ms`: give it up.
    Exhausted(Delivery),
    /// It could wait, but `max_pending_retries` deliveries already do: drop it.
    Full(Delivery),
}

#[derive(Debug)]
pub struct Schedule {
    /// By (when due, unix ms; arrival), so that deliveries due at once keep their order.
    waiting: BTreeMap<(u64, u64), Delivery>,
    arrivals: u64,
    capacity: usize,
    rng: fastrand::Rng,
}

impl Schedule {
    pub fn new(capacity: usize, seed: u64) -> Self {
        Schedule {
            waiting: BTreeMap::new(),
            arrivals: 0,
            capacity,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Schedules the next attempt of `delivery`, which failed one at `now_ms`, under its
    /// hook's policy over `base` (`delivery.retry`) and the receiver's `retry_after_ms`.
    pub fn plan(
        &mut self,
        delivery: Delivery,
        base: &retry::Settings,
        retry_after_ms: Option<u64>,
        now_ms: u64,
    ) -> Planned {
        let policy = delivery.policy.retry_over(base);
        let next = policy.next(
            delivery.attempts,
            delivery.accepted_ms,
            now_ms,
            retry_after_ms,
            &mut self.rng,
        );
        match next {
            None => Planned::Exhausted(delivery),
            Some(_) if self.waiting.len() >= self.capacity => Planned::Full(delivery),
            Some(at) => {
                self.arrivals = self.arrivals.wrapping_add(1);
                self.waiting.insert((at, self.arrivals), delivery);
                Planned::Scheduled
            }
        }
    }

    /// Takes out the deliveries due at `now_ms`, earliest first.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Delivery> {
        let due: Vec<(u64, u64)> = self
            .waiting
            .range(..=(now_ms, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        due.iter()
            .filter_map(|key| self.waiting.remove(key))
            .collect()
    }

    /// Takes out every delivery of hook `hook` (its endpoint is gone), earliest first.
    pub fn take_hook(&mut self, hook: usize) -> Vec<Delivery> {
        let theirs: Vec<(u64, u64)> = self
            .waiting
            .iter()
            .filter(|(_, delivery)| delivery.hook == hook)
            .map(|(key, _)| *key)
            .collect();
        theirs
            .iter()
            .filter_map(|key| self.waiting.remove(key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::delivery::call::{Call, Destination};
    use crate::delivery::unit::Policy;
    use crate::signing::Signing;

    fn delivery(hook: usize, id: &str) -> Delivery {
        let call = Call {
            destination: Destination {
                cluster: "a".into(),
                host_port: "a:80".into(),
                tls: false,
            },
            method: "POST".into(),
            path: "/".into(),
            authority: "a".into(),
            headers: Vec::new(),
            body: b"{}"[..].into(),
        };
        let policy = Rc::new(Policy::new("h", Signing::NONE, None));
        let mut delivery = Delivery::new(hook, policy, id.into(), Rc::new(call), 0);
        delivery.attempts = 1;
        delivery
    }

    fn ids(deliveries: Vec<Delivery>) -> Vec<String> {
        deliveries.into_iter().map(|d| d.webhook_id).collect()
    }

    /// A policy whose every retry waits exactly `Retry-After`.
    fn exact() -> retry::Settings {
        retry::Settings {
            backoff_ms: 1,
            max_backoff_ms: 1,
            ..retry::Settings::default()
        }
    }

    #[test]
    fn due_deliveries_come_out_earliest_first_in_arrival_order() {
        let mut schedule = Schedule::new(10, 1);
        for (id, wait) in [("late", 300), ("first", 100), ("second", 100)] {
            let planned = schedule.plan(delivery(0, id), &exact(), Some(wait), 0);
            assert!(matches!(planned, Planned::Scheduled));
        }
        assert!(schedule.take_due(99).is_empty());
        assert_eq!(ids(schedule.take_due(300)), vec!["first", "second", "late"]);
        assert!(schedule.is_empty());
    }

    #[test]
    fn a_full_schedule_or_a_spent_delivery_is_handed_back() {
        let mut schedule = Schedule::new(1, 1);
        schedule.plan(delivery(0, "a"), &exact(), None, 0);
        let full = schedule.plan(delivery(0, "b"), &exact(), None, 0);
        assert!(matches!(full, Planned::Full(d) if d.webhook_id == "b"));
        let mut spent = delivery(0, "c");
        spent.attempts = exact().max_attempts;
        let planned = schedule.plan(spent, &exact(), None, 0);
        assert!(matches!(planned, Planned::Exhausted(d) if d.webhook_id == "c"));
    }

    #[test]
    fn a_gone_hook_takes_its_deliveries_out() {
        let mut schedule = Schedule::new(10, 1);
        schedule.plan(delivery(0, "a"), &exact(), Some(10), 0);
        schedule.plan(delivery(1, "b"), &exact(), Some(5), 0);
        schedule.plan(delivery(0, "c"), &exact(), Some(1), 0);
        assert_eq!(ids(schedule.take_hook(0)), vec!["c", "a"]);
        assert_eq!(schedule.len(), 1);
    }
}
