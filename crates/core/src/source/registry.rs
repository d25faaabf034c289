//! Every source of one configuration: the built-in ones ([`BUILTIN`], ids `0..Source::COUNT`)
//! and those it publishes ([`super::published`], ids from `Source::COUNT` on, in the order of
//! `publish`). A configuration owns its registry (in its [`crate::hooks::HookSet`]), so a
//! reloaded configuration brings its own and drops the old one: nothing global, nothing leaked.
//!
//! What asks "which sources are there" (validation of hooks, the sources listing, the
//! per-source metrics and status, the needs of each request) asks the registry, never
//! [`Source::all`], which knows only the built-in ones.

use std::borrow::Cow;
use std::rc::Rc;

use super::published::{Published, PublishedEvent};
use super::{EventSpec, Source};

/// One event's spec as listings and controls read it, whichever kind of source it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec<'a> {
    pub name: &'a str,
    pub fields: Vec<&'a str>,
    /// The fields that identify it for `on_change` (empty: the whole data).
    pub unique: Vec<&'a str>,
    pub description: &'a str,
}

impl<'a> From<&'a EventSpec> for Spec<'a> {
    fn from(spec: &'a EventSpec) -> Self {
        Spec {
            name: spec.name,
            fields: spec.fields.to_vec(),
            unique: spec.unique.to_vec(),
            description: spec.description,
        }
    }
}

impl<'a> From<&'a PublishedEvent> for Spec<'a> {
    fn from(event: &'a PublishedEvent) -> Self {
        Spec {
            name: &event.name,
            fields: event.fields.iter().map(String::as_str).collect(),
            unique: event.unique.iter().map(String::as_str).collect(),
            description: &event.description,
        }
    }
}

/// The sources of one configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    /// Shared with the hooks of each (for their controls and test events).
    published: Vec<Rc<Published>>,
}

impl Sources {
    /// The built-in sources and `published`, ids given in this order.
    pub fn new(published: Vec<Published>) -> Sources {
        Sources {
            published: published.into_iter().map(Rc::new).collect(),
        }
    }

    /// How many sources there are.
    pub fn len(&self) -> usize {
        Source::COUNT + self.published.len()
    }

    /// Never: the built-in sources are always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every source: the built-in ones, then the published ones.
    pub fn all(&self) -> impl Iterator<Item = Source> + use<> {
        (0..self.len()).filter_map(|index| u8::try_from(index).ok().map(Source))
    }

    /// The published source `source` is, if it is one.
    pub fn published(&self, source: Source) -> Option<&Rc<Published>> {
        source
            .index()
            .checked_sub(Source::COUNT)
            .and_then(|at| self.published.get(at))
    }

    /// The published sources with their ids.
    pub fn published_sources(&self) -> impl Iterator<Item = (Source, &Rc<Published>)> {
        self.all().skip(Source::COUNT).zip(&self.published)
    }

    /// Whether the configuration publishes any source.
    pub fn has_published(&self) -> bool {
        !self.published.is_empty()
    }

    pub fn name(&self, source: Source) -> &str {
        match self.published(source) {
            Some(published) => &published.name,
            None => source.name(),
        }
    }

    /// The source called `name`.
    pub fn from_name(&self, name: &str) -> Option<Source> {
        self.all().find(|source| self.name(*source) == name)
    }

    /// The names of every source, for messages.
    pub fn names(&self) -> String {
        self.all()
            .map(|source| self.name(source))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The events `source` lists.
    pub fn events(&self, source: Source) -> Vec<Spec<'_>> {
        match self.published(source) {
            Some(published) => published.events.iter().map(Spec::from).collect(),
            None => source.events().iter().map(Spec::from).collect(),
        }
    }

    /// The spec of event `name` of `source`, if the source has it.
    pub fn spec(&self, source: Source, name: &str) -> Option<Spec<'_>> {
        match self.published(source) {
            Some(published) => published.event(name).map(Spec::from),
            None => source.spec(name).map(Spec::from),
        }
    }

    /// What a hook's `event` may be, for messages.
    pub fn event_names(&self, source: Source) -> String {
        match self.published(source) {
            Some(published) => published.event_names(),
            None => source.event_names(),
        }
    }
}

/// The name events of `source` carry ([`crate::event::Event::source_name`]): borrowed for a
/// built-in source, the published one's own otherwise.
pub fn source_name(source: Source, published: Option<&Published>) -> Cow<'static, str> {
    match published {
        Some(published) => Cow::Owned(published.name.clone()),
        None => Cow::Borrowed(source.name()),
    }
}
