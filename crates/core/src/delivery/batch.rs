//! The batch stage, between acceptance and the queue: a pass-through for now (one event, one
//! call, one delivery).
//!
//! The seam, for batched delivery (several events per call):
//!
//! * [`Batches::add`] is where an accepted delivery goes once it passed the queue's admission
//!   (gone hook, `queue_size`, byte budget). A batching hook would keep it in an open batch
//!   of its own (bounded in events and bytes, and in open batches per VM) and answer `None`;
//!   a batch that fills up would come out here as one delivery whose call carries every
//!   event's body.
//! * A batch whose wait is over would come out on the round (`Pipeline::pump`, before the
//!   due retries go to the front of the queue); a 410 would take the hook's open batches
//!   along with its queued and waiting deliveries (`Pipeline::end_hook`).
//! * From the queue on, a batch is one delivery: one call, one webhook id, attempted,
//!   retried, held by its breaker, given up and dead-lettered as a unit. Only accounting
//!   would count it per event (a delivery would carry how many events it holds), so that
//!   `accepted = delivered + failed + dropped + pending` stays a count of events.

use super::unit::Delivery;

/// The open batches of one VM: none yet.
#[derive(Debug, Default)]
pub struct Batches;

impl Batches {
    /// Takes an accepted delivery; gives back what is ready for the queue now. Today: the
    /// delivery itself.
    pub fn add(&mut self, delivery: Delivery) -> Option<Delivery> {
        Some(delivery)
    }
}
