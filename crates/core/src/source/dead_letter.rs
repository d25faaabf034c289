//! The `event_hooks` source: the filter's own operational events. Its one event,
//! `dead_letter`, is made for a delivery given up or dropped, and goes to the hook named by
//! `delivery.dead_letter` (see [`crate::delivery`]); it never comes from a proxied request.

use super::{EventSpec, SourceKind};

/// The `event_hooks` source's events.
pub const EVENTS: &[EventSpec] = &[EventSpec {
    name: "dead_letter",
    fields: &[
        "hook",
        "webhook_id",
        "attempts",
        "last_status",
        "last_error",
        "event",
        "events",
    ],
    unique: &[],
    description: "A delivery was given up or dropped (an operational webhook).",
}];

/// The `event_hooks` source.
pub struct Kind;

impl SourceKind for Kind {
    fn name(&self) -> &'static str {
        "event_hooks"
    }

    fn events(&self) -> &'static [EventSpec] {
        EVENTS
    }

    fn made_from_requests(&self) -> bool {
        false
    }
}
