//! The unit every stage moves: a [`Delivery`], one [`Call`] carried to its end for one hook,
//! with the hook's call [`Policy`], so that no stage needs the hooks.

use std::rc::Rc;

use super::batching::Batching;
use super::call::Call;
use super::retry;
use crate::signing::Signing;

/// How a hook's calls are made, shared by all of its deliveries: what the stages would
/// otherwise look up in the hooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The hook's name, for log lines and metric names.
    pub name: Rc<str>,
    /// How each attempt is signed.
    pub signing: Signing,
    /// The hook's `config.retry`, applied over `delivery.retry`.
    pub retry: Option<retry::Overrides>,
    /// Whether and how its deliveries are batched.
    pub batching: Batching,
}

impl Policy {
    pub fn new(name: &str, signing: Signing, retry: Option<retry::Overrides>) -> Self {
        Policy {
            name: name.into(),
            signing,
            retry,
            batching: Batching::NEVER,
        }
    }

    /// This policy, batching as `batching` says.
    pub fn batching(self, batching: Batching) -> Self {
        Policy { batching, ..self }
    }

    /// The retry policy: the hook's overrides over `base` (`delivery.retry`).
    pub fn retry_over(&self, base: &retry::Settings) -> retry::Settings {
        self.retry.map_or(*base, |overrides| overrides.apply(base))
    }
}

/// One call to deliver for one hook, from its acceptance to its end (delivered, given up or
/// dropped), through every attempt: one event's, or a batch's. The per-hook counters count
/// the events it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Index of the hook in the configuration.
    pub hook: usize,
    /// The hook's call policy.
    pub policy: Rc<Policy>,
    /// Unique per delivery, the same on every attempt.
    pub webhook_id: String,
    /// The call, as the hook's handler prepared it for this event.
    pub call: Rc<Call>,
    /// When the delivery was accepted (a batch: when it closed), unix milliseconds.
    pub accepted_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last answer's status, if there was one.
    pub last_status: Option<u16>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// A dead letter's own delivery: never makes another dead letter.
    pub dead_letter: bool,
    /// The events it carries: 1, or a batch's.
    pub events: u32,
    /// The bytes the byte budget counts it for: its call's size when it was accepted, or its
    /// members' for a batch.
    pub held: usize,
}

impl Delivery {
    pub fn new(
        hook: usize,
        policy: Rc<Policy>,
        webhook_id: String,
        call: Rc<Call>,
        accepted_ms: u64,
    ) -> Self {
        Delivery {
            hook,
            policy,
            webhook_id,
            held: call.size(),
            call,
            accepted_ms,
            attempts: 0,
            last_status: None,
            last_error: None,
            dead_letter: false,
            events: 1,
        }
    }

    /// The memory the delivery holds, as the byte budget counts it.
    pub fn size(&self) -> usize {
        self.held
    }

    /// The hook's name, for log lines and metric names.
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// Where its calls go (Envoy's cluster; the breakers and the per-destination limit key).
    pub fn destination(&self) -> &str {
        &self.call.destination.cluster
    }
}
