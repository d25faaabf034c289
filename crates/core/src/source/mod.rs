//! Event sources: what emits events, which events each one has, and their fields.
//!
//! The catalog here is what a hook's `source` and `event` are validated against, and what the
//! sources admin endpoint lists (Kong's `GET /event-hooks/sources` shape). Every source builds
//! its events from what the filter saw of one request ([`traffic::Capture`]).

pub mod balancer;
pub mod crud;
pub mod rate_limiting;
pub mod traffic;

/// The sources' top-level settings (`crud`, `health`, `rate_limit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `None`: no `crud` settings, so no `crud` or `dao:crud` events.
    pub crud: Option<crud::Settings>,
    pub health: balancer::Settings,
    pub rate_limit: rate_limiting::Settings,
}

/// The `event_hooks` source's events.
pub const DEAD_LETTER_EVENTS: &[EventSpec] = &[EventSpec {
    name: "dead_letter",
    fields: &[
        "hook",
        "webhook_id",
        "attempts",
        "last_status",
        "last_error",
        "event",
    ],
    unique: &[],
    description: "A delivery was given up or dropped (an operational webhook).",
}];

/// A source of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// One event per completed proxied request.
    Traffic,
    /// Entity changes seen as admin API calls: `<schema>` and `<schema>:<operation>`.
    Crud,
    /// The same changes, one event per operation: `create`, `update`, `delete`.
    DaoCrud,
    /// Upstream hosts turning unhealthy or healthy, from passive checks on live traffic.
    Balancer,
    /// Requests refused with 429 by any rate limiter.
    RateLimiting,
    /// The filter's own operational events: `dead_letter`, for the hook named by
    /// `delivery.dead_letter`.
    EventHooks,
}

/// One event of a source: its name, the fields of its data, and the fields that identify it
/// for `on_change` (empty: the whole data).
#[derive(Debug)]
pub struct EventSpec {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub unique: &'static [&'static str],
    pub description: &'static str,
}

impl Source {
    pub const ALL: &'static [Source] = &[
        Source::Traffic,
        Source::Crud,
        Source::DaoCrud,
        Source::Balancer,
        Source::RateLimiting,
        Source::EventHooks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Traffic => "traffic",
            Source::Crud => "crud",
            Source::DaoCrud => "dao:crud",
            Source::Balancer => "balancer",
            Source::RateLimiting => "rate-limiting-advanced",
            Source::EventHooks => "event_hooks",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL
            .iter()
            .copied()
            .find(|source| source.name() == name)
    }

    /// The events the source lists. `crud`'s events are named after the entities (any
    /// schema); its list shows the forms with `<schema>` and Kong's entities.
    pub fn events(self) -> &'static [EventSpec] {
        match self {
            Source::Traffic => traffic::EVENTS,
            Source::Crud => crud::CRUD_EVENTS,
            Source::DaoCrud => crud::DAO_EVENTS,
            Source::Balancer => balancer::EVENTS,
            Source::RateLimiting => rate_limiting::EVENTS,
            Source::EventHooks => DEAD_LETTER_EVENTS,
        }
    }

    /// The spec of event `name` of this source, if the source has it.
    pub fn spec(self, name: &str) -> Option<&'static EventSpec> {
        match self {
            Source::Crud => crud::crud_spec(name),
            _ => self.events().iter().find(|spec| spec.name == name),
        }
    }

    /// What a hook's `event` may be, for messages.
    pub fn event_names(self) -> String {
        match self {
            Source::Crud => {
                "<schema> or <schema>:create, :update, :delete (a schema is A-Z a-z 0-9 _ -)"
                    .to_string()
            }
            _ => self
                .events()
                .iter()
                .map(|spec| spec.name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Whether events of this source come from proxied requests.
    pub fn from_requests(self) -> bool {
        self != Source::EventHooks
    }

    /// The names of every source, for messages.
    pub fn names() -> String {
        Source::ALL
            .iter()
            .map(|source| source.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_round_trip() {
        for source in Source::ALL {
            assert_eq!(Source::from_name(source.name()), Some(*source));
            assert!(!source.events().is_empty());
        }
        assert_eq!(Source::from_name("nope"), None);
        assert!(Source::Traffic.spec("request").is_some());
        assert!(Source::DaoCrud.spec("update").is_some());
        assert!(Source::DaoCrud.spec("consumers").is_none());
        assert!(Source::Crud.spec("consumers").is_some());
        assert!(Source::Crud.spec("consumers:delete").is_some());
        assert!(Source::Crud.spec("consumers:upsert").is_none());
        assert_eq!(
            Source::RateLimiting
                .spec("rate-limit-exceeded")
                .map(|s| s.unique),
            Some(&["consumer", "ip", "service"][..])
        );
    }
}
