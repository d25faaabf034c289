//! The identity of a source: which entry of [`super::BUILTIN`] it is. A leaf, so that events
//! can name their source without depending on what sources do; what a source is and does
//! ([`Source::kind`], [`Source::name`], ...) is in [`super`].

/// A source of events: which entry of [`super::BUILTIN`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(u8);

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

    /// How many sources there are.
    pub const COUNT: usize = super::BUILTIN.len();

    /// Every source, in [`super::BUILTIN`]'s order.
    pub fn all() -> impl Iterator<Item = Source> {
        (0..Self::COUNT).filter_map(|index| u8::try_from(index).ok().map(Source))
    }

    /// Its place in [`super::BUILTIN`] (and in per-source tables).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}
