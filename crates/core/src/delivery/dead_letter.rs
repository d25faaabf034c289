//! Dead letters: what is left of a delivery given up (out of attempts or time, refused for
//! good) or dropped (but after a 410). The runtime takes them after every step and sends each
//! to the hook named by `delivery.dead_letter` as an `event_hooks`/`dead_letter` event; a dead
//! letter's own delivery never makes another.

use std::rc::Rc;

use super::unit::Delivery;

/// The most dead letters waiting for the runtime at once (it takes them after every call).
pub const MAX_DEAD_LETTERS: usize = 1_024;

/// A delivery given up or dropped: what its dead letter says.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub hook: usize,
    pub webhook_id: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    /// The body the delivery carried (the event, for a webhook; a batch's array).
    pub body: Rc<[u8]>,
    /// The events it carried: 1, or a batch's.
    pub events: u32,
}

impl DeadLetter {
    pub fn of(delivery: Delivery) -> Self {
        DeadLetter {
            hook: delivery.hook,
            webhook_id: delivery.webhook_id,
            attempts: delivery.attempts,
            last_status: delivery.last_status,
            last_error: delivery.last_error.unwrap_or_default(),
            body: Rc::clone(&delivery.call.body),
            events: delivery.events,
        }
    }
}

/// The dead letters made since the runtime last took them.
#[derive(Debug, Default)]
pub struct DeadLetters {
    letters: Vec<DeadLetter>,
    /// Whether a dead-letter hook is configured (without one, none is kept).
    wanted: bool,
}

impl DeadLetters {
    pub fn new(wanted: bool) -> Self {
        DeadLetters {
            letters: Vec::new(),
            wanted,
        }
    }

    /// Keeps the dead letter of `delivery` for the runtime, when one is wanted and fewer than
    /// [`MAX_DEAD_LETTERS`] wait.
    pub fn keep(&mut self, delivery: Delivery) {
        if self.wanted && self.letters.len() < MAX_DEAD_LETTERS {
            self.letters.push(DeadLetter::of(delivery));
        }
    }

    /// The dead letters made since the last call.
    pub fn take(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.letters)
    }
}
