//! Event sources: what emits events, which events each one has, and their fields.
//!
//! The catalog here is what a hook's `source` and `event` are validated against, and what the
//! sources admin endpoint lists (Kong's `GET /event-hooks/sources` shape).

pub mod traffic;

/// A source of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// One event per completed proxied request.
    Traffic,
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
    pub const ALL: &'static [Source] = &[Source::Traffic];

    pub fn name(self) -> &'static str {
        match self {
            Source::Traffic => "traffic",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL
            .iter()
            .copied()
            .find(|source| source.name() == name)
    }

    pub fn events(self) -> &'static [EventSpec] {
        match self {
            Source::Traffic => traffic::EVENTS,
        }
    }

    pub fn event(self, name: &str) -> Option<&'static EventSpec> {
        self.events().iter().find(|spec| spec.name == name)
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
        assert!(Source::Traffic.event("request").is_some());
    }
}
