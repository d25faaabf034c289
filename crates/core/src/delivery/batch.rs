//! The batch stage, between acceptance and the queue: a hook that batches (`config.batch`, or
//! `delivery.batch` for every `webhook` hook without its own) keeps its accepted deliveries
//! in one open batch, sent as one call whose body is a JSON array of the bodies the events
//! would have had alone (Kong HTTP Log's batch shape).
//!
//! * A batch closes on whichever comes first: `max_size` events, `max_bytes` of body (an
//!   event that would take it past `max_bytes` closes it and opens the next; an event larger
//!   than `max_bytes` alone goes alone), or `max_delay_ms` after its first event was accepted
//!   (checked on every sending round: `Pipeline::pump`).
//! * A closed batch is one [`Delivery`]: one call, one new webhook id, attempted, retried,
//!   held by its breaker, given up and dead-lettered as a unit. It counts as the events it
//!   holds ([`Delivery::events`]) and holds the bytes they held ([`Delivery::held`]), so the
//!   accounting stays per event: `accepted = delivered + failed + dropped + pending`.
//! * A batch is a delivery from when it closes ([`Delivery::accepted_ms`]): `retry.max_age_ms`
//!   counts from then, as Kong's `max_retry_time` counts from a batch's first attempt. Counted
//!   from its first event, a batch waiting `max_delay_ms` longer than `max_age_ms` (both in
//!   range) would be given up unsent.
//! * Bounded: one open batch per hook, each within its limits; its events passed the queue's
//!   admission (gone hook, `queue_size`, byte budget) when they were accepted.
//! * A batching hook always sends an array, even of one event; a hook that does not batch
//!   (or whose handler cannot: only `webhook` does) passes straight through.
//!
//! Tested through the pipeline, with its fake clock: `delivery/tests/batches.rs`.

use std::rc::Rc;

use super::batching::{Choice, Settings};
use super::unit::Delivery;
use crate::id::IdGen;

/// What the batch stage hands on to the queue.
#[derive(Debug)]
pub enum Ready {
    /// A delivery of a hook that does not batch.
    Alone(Delivery),
    /// A closed batch.
    Batch(Delivery),
}

/// The open batch of one hook.
#[derive(Debug)]
struct Open {
    /// The first event's delivery: its call is every member's but for the body (one hook's
    /// `webhook` calls differ only in their bodies), its acceptance the batch's.
    first: Delivery,
    bodies: Vec<Rc<[u8]>>,
    /// The array's length so far: `[`, the bodies, the commas, `]`.
    body_bytes: usize,
    /// What the members hold, as the byte budget counted them.
    held: usize,
    settings: Settings,
}

impl Open {
    fn new(delivery: Delivery, settings: Settings) -> Self {
        let body = Rc::clone(&delivery.call.body);
        Open {
            body_bytes: body.len().saturating_add(2),
            held: delivery.held,
            bodies: vec![body],
            first: delivery,
            settings,
        }
    }

    /// Whether `delivery` would take the batch past `max_bytes`.
    fn overflows(&self, delivery: &Delivery) -> bool {
        let grown = self
            .body_bytes
            .saturating_add(delivery.call.body.len())
            .saturating_add(1);
        grown > self.settings.max_bytes
    }

    fn push(&mut self, delivery: Delivery) {
        self.body_bytes = self
            .body_bytes
            .saturating_add(delivery.call.body.len())
            .saturating_add(1);
        self.held = self.held.saturating_add(delivery.held);
        self.bodies.push(Rc::clone(&delivery.call.body));
    }

    fn is_full(&self) -> bool {
        self.bodies.len() >= self.settings.max_size || self.body_bytes >= self.settings.max_bytes
    }

    fn is_due(&self, now_ms: u64) -> bool {
        now_ms
            >= self
                .first
                .accepted_ms
                .saturating_add(self.settings.max_delay_ms)
    }

    /// The batch as one delivery, accepted at `closed_ms`: the JSON array of its bodies, a
    /// new webhook id.
    fn close(self, ids: &mut IdGen, closed_ms: u64) -> Delivery {
        let mut body = Vec::with_capacity(self.body_bytes);
        body.push(b'[');
        for (index, member) in self.bodies.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(member);
        }
        body.push(b']');
        let mut delivery = self.first;
        let mut call = (*delivery.call).clone();
        call.body = body.into();
        let content_type = delivery.policy.batching.content_type;
        match call
            .headers
            .iter_mut()
            .find(|(name, _)| name == "content-type")
        {
            Some((_, value)) => content_type.clone_into(value),
            None => call
                .headers
                .push(("content-type".into(), content_type.into())),
        }
        delivery.call = Rc::new(call);
        delivery.accepted_ms = closed_ms.max(delivery.accepted_ms);
        delivery.webhook_id = ids.next(delivery.accepted_ms);
        delivery.events = u32::try_from(self.bodies.len()).unwrap_or(u32::MAX);
        delivery.held = self.held;
        delivery
    }
}

/// The open batches of one VM, one per hook at most.
pub struct Batches {
    /// `delivery.batch`: the limits of hooks that batch by default.
    default: Option<Settings>,
    open: Vec<Option<Open>>,
    /// Batches' own webhook ids.
    ids: IdGen,
    /// Events in open batches.
    events: usize,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("default", &self.default)
            .field("open", &self.open)
            .field("events", &self.events)
            .finish()
    }
}

impl Batches {
    pub fn new(default: Option<Settings>, hooks: usize, seed: u64) -> Self {
        Batches {
            default,
            open: (0..hooks).map(|_| None).collect(),
            ids: IdGen::new(seed),
            events: 0,
        }
    }

    /// Events waiting in open batches.
    pub fn events(&self) -> usize {
        self.events
    }

    /// The limits `delivery`'s hook batches with, if it does.
    fn settings_of(&self, delivery: &Delivery) -> Option<Settings> {
        match delivery.policy.batching.choice {
            Choice::Never => None,
            Choice::Default => self.default,
            Choice::Own(settings) => Some(settings),
        }
    }

    /// Takes an accepted delivery: into its hook's open batch when the hook batches, else
    /// straight to `ready`. Every batch it closes (full, or making room) goes to `ready`.
    pub fn add(&mut self, delivery: Delivery, ready: &mut dyn FnMut(Ready)) {
        let settings = self.settings_of(&delivery);
        let (Some(settings), Some(slot)) = (settings, self.open.get_mut(delivery.hook)) else {
            ready(Ready::Alone(delivery));
            return;
        };
        // A batch it closes closes now, when it is accepted.
        let now_ms = delivery.accepted_ms;
        if slot.as_ref().is_some_and(|open| open.overflows(&delivery)) {
            if let Some(open) = slot.take() {
                self.events = self.events.saturating_sub(open.bodies.len());
                ready(Ready::Batch(open.close(&mut self.ids, now_ms)));
            }
        }
        self.events = self.events.saturating_add(1);
        let open = match slot.take() {
            Some(mut open) => {
                open.push(delivery);
                open
            }
            None => Open::new(delivery, settings),
        };
        if open.is_full() {
            self.events = self.events.saturating_sub(open.bodies.len());
            ready(Ready::Batch(open.close(&mut self.ids, now_ms)));
        } else {
            *slot = Some(open);
        }
    }

    /// Closes, at `now_ms`, every batch whose first event has waited `max_delay_ms` by then
    /// (every batch, when `all`).
    pub fn close_due(&mut self, now_ms: u64, all: bool, ready: &mut dyn FnMut(Ready)) {
        if self.events == 0 {
            return;
        }
        for slot in &mut self.open {
            if slot.as_ref().is_some_and(|open| all || open.is_due(now_ms)) {
                if let Some(open) = slot.take() {
                    self.events = self.events.saturating_sub(open.bodies.len());
                    ready(Ready::Batch(open.close(&mut self.ids, now_ms)));
                }
            }
        }
    }

    /// Takes hook `hook`'s open batch, closed at `now_ms` (its endpoint is gone).
    pub fn take_hook(&mut self, hook: usize, now_ms: u64) -> Option<Delivery> {
        let open = self.open.get_mut(hook)?.take()?;
        self.events = self.events.saturating_sub(open.bodies.len());
        Some(open.close(&mut self.ids, now_ms))
    }
}
