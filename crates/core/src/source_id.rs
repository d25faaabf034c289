//! The identity of a source: which entry of `source::BUILTIN` it is, or, from
//! `Source::COUNT` on, which of the configuration's published sources. A leaf (events name
//! their source with it without depending on what sources do); what a source is and does
//! (`Source::kind`, `Source::name`, ...) is in `crate::source`, and for a published source in
//! the configuration's registry (`source::Sources`).

/// A source of events: which entry of `source::BUILTIN` it is, or which published source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(pub(crate) u8);

impl Source {
    /// One event per completed proxied request.
    pub const TRAFFIC: Source = Source(0);
    /// Entity changes seen as admin API calls: `<schema>` and `<schema>:<operation>`.
    pub const CRUD: Source = Source(1);
    /// The same changes, one event per operation: `create`, `update`, `delete`.
    pub const DAO_CRUD: Source = Source(2);
    /// Upstream hosts turning unhealthy or healthy, from passive checks on live traffic.
    pub const BALANCER: Source = Source(3);
    /// Requests refused with 429 by any rate limiter.
    pub const RATE_LIMITING: Source = Source(4);
    /// The filter's own operational events: `dead_letter`, for the hook named by
    /// `delivery.dead_letter`.
    pub const EVENT_HOOKS: Source = Source(5);

    /// Its place in `source::BUILTIN`, then the published sources (and in per-source tables).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}
