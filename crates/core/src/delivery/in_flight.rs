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
