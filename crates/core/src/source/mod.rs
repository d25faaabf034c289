//! Event sources: what emits events, which events each one has, and their fields. One file per
//! built-in source, each a [`SourceKind`], listed by one line of [`BUILTIN`]; and the sources a
//! configuration publishes ([`published`]), which other filters emit the events of. A
//! configuration's [`Sources`] ([`registry`]) holds both.
//!
//! The catalog here is what a hook's `source` and `event` are validated against, what the
//! sources admin endpoint lists (Kong's `GET /event-hooks/sources` shape), what the JSON Schema
//! says and what each request must capture ([`crate::needs`]). Every source builds its events
//! from what the filter saw of one request ([`traffic::Capture`]).

pub mod balancer;
pub mod crud;
pub mod dead_letter;
pub mod published;
pub mod rate_limiting;
pub mod registry;
pub mod traffic;

use serde_json::Value;
#[cfg(feature = "schema")]
use serde_json::json;

use std::any::Any;

use crate::event::Event;
use crate::filter::Filter;
use crate::log::Level;
use crate::needs::{HookUse, Needs};
use crate::reader::Problems;
#[cfg(feature = "schema")]
use crate::reader::schema::Parts;
use crate::shared::Shared;
pub use crate::source_id::Source;
pub use registry::{Sources, Spec};
use traffic::{Capture, View};

/// What a source made of one finished request sees of it.
pub struct Request<'r> {
    pub capture: &'r Capture,
    /// Its traffic fields, read from the capture without building the event.
    pub view: &'r View<'r>,
    /// Its traffic event, built on first use (and then shared by every source).
    pub traffic: &'r dyn Fn() -> &'r Event,
    pub settings: &'r Settings,
    /// State every worker sees.
    pub store: &'r dyn Shared,
}

/// A counter a source may add to (the admin status shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// A `crud` entity left out: the body was larger than `max_body_bytes`.
    CrudBodyTooLarge,
    /// A `crud` entity left out: the body was not JSON.
    CrudBodyNotJson,
    /// A shared-state operation failed.
    SharedError,
}

/// Where a source's events go: routing to the hooks of the event, then delivery.
pub trait Emit {
    /// Routes `event`.
    fn event(&self, event: &Event);

    /// Routes event `name` of `source` whose filters are tested on `view`; `build` makes the
    /// event only once a hook's filter passed (what keeps a request that matches nothing from
    /// building anything).
    fn lazy<'e>(&self, source: Source, name: &str, view: &View<'_>, build: &dyn Fn() -> &'e Event);

    fn count(&self, what: Count);

    fn log(&self, level: Level, message: &str);
}

/// Every source this build has, in the order [`Source`]'s constants number them. A new
/// source is a file in this module (its [`SourceKind`]) and one line here.
pub const BUILTIN: &[&dyn SourceKind] = &[
    &traffic::Kind,
    &crud::CrudKind,
    &crud::DaoKind,
    &balancer::Kind,
    &rate_limiting::Kind,
    &dead_letter::Kind,
];

/// The sources' top-level settings (`crud`, `health`, `rate_limit`), each read by its source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `None`: no `crud` settings, so no `crud` or `dao:crud` events.
    pub crud: Option<crud::Settings>,
    pub health: balancer::Settings,
    pub rate_limit: rate_limiting::Settings,
}

/// A kind of source: what emits events, which events it has and their fields, the top-level
/// settings it reads, and what it needs captured of each request. The catalog listing, the
/// JSON Schema, validation and the needs of each request are derived from [`BUILTIN`].
pub trait SourceKind: Sync {
    /// The name hooks use (`"traffic"`).
    fn name(&self) -> &'static str;

    /// The events it lists.
    fn events(&self) -> &'static [EventSpec];

    /// The spec of event `name`, if the source has it.
    fn spec(&self, name: &str) -> Option<&'static EventSpec> {
        self.events().iter().find(|spec| spec.name == name)
    }

    /// What a hook's `event` may be, for messages.
    fn event_names(&self) -> String {
        self.events()
            .iter()
            .map(|spec| spec.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[cfg(feature = "schema")]
    /// The JSON Schema of a hook's `event` for this source.
    fn event_schema(&self) -> Value {
        json!({"enum": self.events().iter().map(|spec| spec.name).collect::<Vec<_>>()})
    }

    /// Whether its events come from proxied requests.
    fn made_from_requests(&self) -> bool {
        true
    }

    /// The top-level key of the settings it reads, if any.
    fn settings_key(&self) -> Option<&'static str> {
        None
    }

    /// Reads its top-level settings at `path` into `settings`.
    fn read_settings(
        &self,
        _value: &Value,
        _path: &str,
        _problems: &Problems,
        _settings: &mut Settings,
    ) {
    }

    #[cfg(feature = "schema")]
    /// The JSON Schema of its top-level settings.
    fn settings_schema(&self, _schema: &Parts) -> Option<Value> {
        None
    }

    /// Why a hook of this source cannot work with these settings, if it cannot.
    fn refuse_hook(&self, _settings: &Settings) -> Option<String> {
        None
    }

    /// Checks what only this source can check of a hook's filter at `path`.
    fn check_filter(&self, _filter: &Filter, _path: &str, _problems: &Problems) {}

    /// What the host must capture of each request for `hooks` (this source's enabled hooks,
    /// never empty).
    fn needs(&self, _hooks: &[HookUse<'_>], _settings: &Settings) -> Needs {
        Needs::default()
    }

    /// The source whose observation of a request makes this one's events too, if not itself
    /// (`dao:crud`'s are made with `crud`'s, from the same write).
    fn observed_by(&self) -> Option<Source> {
        None
    }

    /// Per-VM state it keeps between requests, made when a configuration loads.
    fn new_state(&self) -> Option<Box<dyn Any>> {
        None
    }

    /// Turns a finished request into its events, if any, and hands them to `emit`; `state`
    /// is what [`SourceKind::new_state`] made. Called only when a hook listens to the source.
    fn observe(&self, _request: &Request<'_>, _state: Option<&mut dyn Any>, _emit: &dyn Emit) {}
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
    /// How many built-in sources there are (published ones have the ids that follow).
    pub const COUNT: usize = BUILTIN.len();

    /// Every built-in source, in [`BUILTIN`]'s order (a configuration's [`Sources::all`] adds
    /// those it publishes).
    pub fn all() -> impl Iterator<Item = Source> {
        (0..Self::COUNT).filter_map(|index| u8::try_from(index).ok().map(Source))
    }

    /// Whether it is one of [`BUILTIN`] (not a published source).
    pub fn is_builtin(self) -> bool {
        self.index() < Self::COUNT
    }

    /// What it is: its entry of [`BUILTIN`], or for a published source [`published::Kind`],
    /// which observes nothing and has no settings (the registry knows its name and events).
    pub fn kind(self) -> &'static dyn SourceKind {
        BUILTIN
            .get(self.index())
            .copied()
            .unwrap_or(&published::Kind)
    }

    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::all().find(|source| source.name() == name)
    }

    /// The events the source lists.
    pub fn events(self) -> &'static [EventSpec] {
        self.kind().events()
    }

    /// The spec of event `name` of this source, if the source has it.
    pub fn spec(self, name: &str) -> Option<&'static EventSpec> {
        self.kind().spec(name)
    }

    /// What a hook's `event` may be, for messages.
    pub fn event_names(self) -> String {
        self.kind().event_names()
    }

    /// Whether events of this source come from proxied requests.
    pub fn from_requests(self) -> bool {
        self.kind().made_from_requests()
    }

    /// The names of every source, for messages.
    pub fn names() -> String {
        Source::all()
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
        let names: Vec<&str> = Source::all().map(Source::name).collect();
        assert_eq!(
            names,
            [
                "traffic",
                "crud",
                "dao:crud",
                "balancer",
                "rate-limiting-advanced",
                "event_hooks"
            ],
            "the constants number BUILTIN in its order"
        );
        for source in Source::all() {
            assert_eq!(Source::from_name(source.name()), Some(source));
            assert!(!source.events().is_empty());
        }
        assert_eq!(Source::from_name("nope"), None);
        assert!(Source::TRAFFIC.spec("request").is_some());
        assert!(Source::DAO_CRUD.spec("update").is_some());
        assert!(Source::DAO_CRUD.spec("consumers").is_none());
        assert!(Source::CRUD.spec("consumers").is_some());
        assert!(Source::CRUD.spec("consumers:delete").is_some());
        assert!(Source::CRUD.spec("consumers:upsert").is_none());
        assert_eq!(
            Source::RATE_LIMITING
                .spec("rate-limit-exceeded")
                .map(|s| s.unique),
            Some(&["consumer", "ip", "service"][..])
        );
    }
}
