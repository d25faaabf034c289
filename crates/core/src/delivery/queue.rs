//! The queue: deliveries ready to be sent, in order, at most `queue_size` of them.
//!
//! New deliveries join at the back; retries that are due, and deliveries a sending round had
//! to hold back (their destination could not take a call), go back to the front in their
//! order, so that a destination's deliveries keep theirs.

use std::collections::VecDeque;

use super::unit::Delivery;

#[derive(Debug, Default)]
pub struct Queue {
    deliveries: VecDeque<Delivery>,
    /// `queue_size`: what [`Queue::is_full`] compares with.
    capacity: usize,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Queue {
            deliveries: VecDeque::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.deliveries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Whether a new delivery must be dropped. Only new deliveries are refused: one put back
    /// (a retry, a held one) had its place counted when it was accepted.
    pub fn is_full(&self) -> bool {
        self.deliveries.len() >= self.capacity
    }

    /// A new delivery, at the back. The caller has checked [`Queue::is_full`].
    pub fn push(&mut self, delivery: Delivery) {
        self.deliveries.push_back(delivery);
    }

    /// The next delivery to send.
    pub fn pop(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// Puts `deliveries` back at the front, in their order.
    pub fn put_back(&mut self, deliveries: Vec<Delivery>) {
        for delivery in deliveries.into_iter().rev() {
            self.deliveries.push_front(delivery);
        }
    }

    /// Puts one delivery back at the front.
    pub fn put_back_one(&mut self, delivery: Delivery) {
        self.deliveries.push_front(delivery);
    }

    /// Takes out every delivery of hook `hook` (its endpoint is gone).
    pub fn take_hook(&mut self, hook: usize) -> Vec<Delivery> {
        let (theirs, others): (Vec<Delivery>, Vec<Delivery>) = self
            .deliveries
            .drain(..)
            .partition(|delivery| delivery.hook == hook);
        self.deliveries = others.into();
        theirs
    }
}
