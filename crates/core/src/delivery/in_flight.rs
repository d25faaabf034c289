//! The calls in flight: the deliveries whose attempt the host has started, by the host's token,
//! at most `max_in_flight` of them and `max_in_flight_per_destination` to one destination.
//!
//! Each call has a deadline, `timeout_ms` + [`ANSWER_GRACE_MS`] after it started: some hosts
//! never answer a call that failed (Kong before 3.9 only logs "dispatch failed"), and without
//! a deadline its slot would be held forever and its destination would stop getting calls.

use std::collections::{BTreeMap, HashMap};

use super::unit::Delivery;

/// How long after a call's `timeout_ms` the filter stops waiting for the host's answer (the
/// host's own timeout answer comes first).
pub const ANSWER_GRACE_MS: u64 = 1_000;

#[derive(Debug, Default)]
pub struct InFlight {
    /// By token: when to stop waiting for the answer, and the delivery.
    calls: BTreeMap<u32, (u64, Delivery)>,
    /// Calls per destination; a destination with none is absent (so at most `max` entries).
    per_destination: HashMap<String, usize>,
    /// Destinations that answered for the receiver that they are overloaded: none of their
    /// deliveries is sent until the next tick.
    overloaded: Vec<String>,
    max: usize,
    max_per_destination: usize,
    timeout_ms: u64,
}

impl InFlight {
    pub fn new(max: usize, max_per_destination: usize, timeout_ms: u64) -> Self {
        InFlight {
            calls: BTreeMap::new(),
            per_destination: HashMap::new(),
            overloaded: Vec::new(),
            max,
            max_per_destination,
            timeout_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Whether `max_in_flight` calls are under way.
    pub fn is_full(&self) -> bool {
        self.calls.len() >= self.max
    }

    /// Whether `destination` has its `max_in_flight_per_destination` calls under way.
    pub fn is_full_for(&self, destination: &str) -> bool {
        self.per_destination.get(destination).copied().unwrap_or(0) >= self.max_per_destination
    }

    /// Whether call `token` is one of these.
    pub fn owns(&self, token: u32) -> bool {
        self.calls.contains_key(&token)
    }

    /// Records the call the host started for `delivery` at `now_ms` as `token`. A host that
    /// reused the token of a call still under way loses that call's answer: its delivery is
    /// given back.
    pub fn start(&mut self, token: u32, delivery: Delivery, now_ms: u64) -> Option<Delivery> {
        *self
            .per_destination
            .entry(delivery.destination().to_string())
            .or_insert(0) += 1;
        let deadline = now_ms
            .saturating_add(self.timeout_ms)
            .saturating_add(ANSWER_GRACE_MS);
        let (_, previous) = self.calls.insert(token, (deadline, delivery))?;
        self.release(previous.destination());
        Some(previous)
    }

    /// The delivery of call `token`, which has ended; `None` for a token not in flight.
    pub fn finish(&mut self, token: u32) -> Option<Delivery> {
        let (_, delivery) = self.calls.remove(&token)?;
        self.release(delivery.destination());
        Some(delivery)
    }

    /// The tokens of the calls still waiting for an answer past their deadline.
    pub fn expired(&self, now_ms: u64) -> Vec<u32> {
        self.calls
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now_ms)
            .map(|(token, _)| *token)
            .collect()
    }

    /// The destinations overloaded since the last tick.
    pub fn overloaded(&self) -> &[String] {
        &self.overloaded
    }

    /// `destination` answered that it is overloaded: skipped until the next tick.
    pub fn overloaded_until_tick(&mut self, destination: String) {
        if !self.overloaded.contains(&destination) {
            self.overloaded.push(destination);
        }
    }

    /// A tick: the overloaded destinations may be tried again.
    pub fn clear_overloaded(&mut self) {
        self.overloaded.clear();
    }

    fn release(&mut self, destination: &str) {
        if let Some(count) = self.per_destination.get_mut(destination) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_destination.remove(destination);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::delivery::call::{Call, Destination};
    use crate::delivery::unit::Policy;
    use crate::signing::Signing;

    fn delivery(id: &str, cluster: &str) -> Delivery {
        let call = Call {
            destination: Destination {
                cluster: cluster.into(),
                host_port: format!("{cluster}:80"),
                tls: false,
            },
            method: "POST".into(),
            path: "/".into(),
            authority: cluster.into(),
            headers: Vec::new(),
            body: b"{}"[..].into(),
        };
        let policy = Rc::new(Policy::new("h", Signing::NONE, None));
        Delivery::new(0, policy, id.into(), Rc::new(call), 0)
    }

    #[test]
    fn slots_per_destination_are_taken_and_given_back() {
        let mut calls = InFlight::new(3, 2, 1_000);
        assert!(calls.start(1, delivery("1", "a"), 0).is_none());
        assert!(calls.start(2, delivery("2", "a"), 0).is_none());
        assert!(calls.is_full_for("a") && !calls.is_full_for("b") && !calls.is_full());
        assert!(calls.start(3, delivery("3", "b"), 0).is_none());
        assert!(calls.is_full());
        assert_eq!(calls.finish(1).map(|d| d.webhook_id), Some("1".into()));
        assert!(!calls.is_full_for("a"));
        assert!(calls.finish(1).is_none(), "a token ends once");
    }

    #[test]
    fn a_reused_token_gives_the_earlier_delivery_back_and_its_slot() {
        let mut calls = InFlight::new(3, 1, 1_000);
        calls.start(7, delivery("old", "a"), 0);
        let previous = calls.start(7, delivery("new", "b"), 0);
        assert_eq!(previous.map(|d| d.webhook_id), Some("old".into()));
        assert!(!calls.is_full_for("a") && calls.is_full_for("b"));
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn calls_expire_after_timeout_and_grace() {
        let mut calls = InFlight::new(3, 3, 1_000);
        calls.start(1, delivery("1", "a"), 0);
        calls.start(2, delivery("2", "a"), 500);
        assert!(calls.expired(1_000 + ANSWER_GRACE_MS - 1).is_empty());
        assert_eq!(calls.expired(1_000 + ANSWER_GRACE_MS), vec![1]);
        assert_eq!(calls.expired(1_500 + ANSWER_GRACE_MS), vec![1, 2]);
    }
}
