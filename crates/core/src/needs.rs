//! What the host adapter must capture of each request for the core, decided when the
//! configuration loads: the log-phase properties and the header maps that the hooks' filters,
//! the sources and the handlers read. Every property read is a call into the host, so a request
//! that matches nothing reads only what deciding that takes.
//!
//! * [`Needs::first`]: read in the log phase before anything is decided (what the filters of
//!   traffic hooks and `crud.match` test, and what the crud, balancer and rate-limiting sources
//!   read on every request).
//! * [`Needs::then`]: read only for a request whose traffic event is built (some traffic hook
//!   selected it, or a rate-limiting hook saw a 429): the rest of what the event's deliveries
//!   use. A hook whose handler sends the whole event (`webhook`, `log`, `lambda`, or any with
//!   `on_change`) needs all of it; `webhook-custom` alone, what its templates read.
//! * [`Needs::request_headers`], [`Needs::response_headers`]: when each header map is read
//!   ([`Stage`]). Where only the header callbacks can capture a map (Kong), it is captured
//!   whenever either stage may need it; where the log phase can read it (Envoy), it is read
//!   before deciding only when a filter tests a header no property gives
//!   ([`Stage::First`]), else once the event is built ([`Stage::Then`]), the request's
//!   pseudo-headers and status read on their own meanwhile.
//! * [`Needs::emitted`]: whether to read the events other filters emitted ([`crate::emitted`]):
//!   only when an enabled hook listens to a published source, so that a configuration that
//!   publishes nothing (or whose published sources no hook uses) makes no host call for them.
//!
//! The event built for a request is then exactly the event built from everything, as far as
//! any hook can tell.

use crate::filter::Filter;

/// A log-phase property of a request, by what it means (the host adapter knows its name and
/// encoding on each host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prop {
    Method,
    Path,
    Host,
    Scheme,
    RequestId,
    Status,
    Flags,
    CodeDetails,
    UpstreamAddress,
    Cluster,
    Route,
    Duration,
    Start,
    SourceAddress,
}

impl Prop {
    pub const ALL: [Prop; 14] = [
        Prop::Method,
        Prop::Path,
        Prop::Host,
        Prop::Scheme,
        Prop::RequestId,
        Prop::Status,
        Prop::Flags,
        Prop::CodeDetails,
        Prop::UpstreamAddress,
        Prop::Cluster,
        Prop::Route,
        Prop::Duration,
        Prop::Start,
        Prop::SourceAddress,
    ];

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of [`Prop`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Props(u16);

impl Props {
    pub const NONE: Props = Props(0);
    pub const ALL: Props = Props((1 << Prop::ALL.len()) - 1);

    pub fn of(props: &[Prop]) -> Props {
        Props(props.iter().fold(0, |bits, prop| bits | prop.bit()))
    }

    pub fn has(self, prop: Prop) -> bool {
        self.0 & prop.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Props) -> Props {
        Props(self.0 | other.0)
    }

    pub fn without(self, other: Props) -> Props {
        Props(self.0 & !other.0)
    }
}

/// When the log phase needs a header map. Ordered: the union of two needs reads the map at
/// the earlier stage (`First` over `Then`, `Then` over `Never`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Never read.
    #[default]
    Never,
    /// Only once the request's traffic event is to be built: the event's deliveries read the
    /// map, or a filter tests a field a property gives too (the pseudo-headers, the status,
    /// the request id), which the host can read on its own.
    Then,
    /// Before deciding: a filter tests a header only the map has (a repeated header's value
    /// is all of them joined, which a single-header read cannot give), or the whole map.
    First,
}

impl Stage {
    /// Whether the map is read at all (where only the header callbacks capture it).
    pub fn any(self) -> bool {
        self != Stage::Never
    }
}

/// What the host adapter captures of each request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Properties read in the log phase, before the core decides anything.
    pub first: Props,
    /// Properties read, besides `first`, only for a request whose traffic event is built.
    pub then: Props,
    pub request_headers: Stage,
    pub response_headers: Stage,
    /// Read the emission channel in the log phase ([`crate::runtime::Runtime::observe_emitted`]):
    /// Envoy's dynamic metadata, Kong's `kong.ctx.shared`.
    pub emitted: bool,
    /// Read Envoy's filter state too, where another wasm filter's `set_property` puts events
    /// (a published source's `"channel": "filter_state"`; on Kong the same `kong.ctx.shared`).
    pub emitted_filter_state: bool,
}

impl Needs {
    /// Everything the request gives: every property first, both header maps (emitted events
    /// are not the request's: [`Needs::with_emitted`]).
    pub const EVERYTHING: Needs = Needs {
        first: Props::ALL,
        then: Props::NONE,
        request_headers: Stage::First,
        response_headers: Stage::First,
        emitted: false,
        emitted_filter_state: false,
    };

    fn props(props: &[Prop]) -> Needs {
        Needs {
            first: Props::of(props),
            ..Needs::default()
        }
    }

    /// Property `prop` (if any), first. What a traffic field needs is
    /// `Needs::of_field`, derived from the field table (`source/traffic/fields.rs`).
    pub fn of_prop(prop: Option<Prop>) -> Needs {
        Needs::props(prop.as_slice())
    }

    /// The same needs, and the request's header map read at `stage` (or earlier, if they
    /// said so).
    pub fn with_request_headers(self, stage: Stage) -> Needs {
        Needs {
            request_headers: self.request_headers.max(stage),
            ..self
        }
    }

    /// The same needs, and the response's header map read at `stage` (or earlier).
    pub fn with_response_headers(self, stage: Stage) -> Needs {
        Needs {
            response_headers: self.response_headers.max(stage),
            ..self
        }
    }

    /// The same needs, and the events other filters emitted.
    pub fn with_emitted(self) -> Needs {
        Needs {
            emitted: true,
            ..self
        }
    }

    /// The same needs, and the events other wasm filters left in Envoy's filter state.
    pub fn with_emitted_filter_state(self) -> Needs {
        Needs {
            emitted_filter_state: true,
            ..self
        }
    }

    pub fn union(self, other: Needs) -> Needs {
        Needs {
            first: self.first.union(other.first),
            then: self.then.union(other.then),
            request_headers: self.request_headers.max(other.request_headers),
            response_headers: self.response_headers.max(other.response_headers),
            emitted: self.emitted || other.emitted,
            emitted_filter_state: self.emitted_filter_state || other.emitted_filter_state,
        }
    }

    /// Whether anything is left to read once an event is built: properties of `then`, or a
    /// header map of [`Stage::Then`].
    pub fn reads_later(self) -> bool {
        !self.then.is_empty()
            || self.request_headers == Stage::Then
            || self.response_headers == Stage::Then
    }

    /// The same needs, all of their properties met before deciding (for what must be read up
    /// front; a header map keeps its stage: a field a property gives too needs the map only
    /// for the event).
    pub fn at_first(self) -> Needs {
        Needs {
            first: self.first.union(self.then),
            then: Props::NONE,
            ..self
        }
    }

    /// The same needs, met once the event is built (for what deliveries use).
    pub fn at_then(self) -> Needs {
        Needs {
            first: Props::NONE,
            then: self.first.union(self.then),
            request_headers: self.request_headers.min(Stage::Then),
            response_headers: self.response_headers.min(Stage::Then),
            ..self
        }
    }
}

/// What a source's needs depend on of one of its hooks: its filter, the fields of the event
/// its handler reads (`None`: all of it) and `on_change` (which reads the whole event).
pub struct HookUse<'h> {
    pub filter: &'h Filter,
    pub handler_fields: Option<Vec<&'h [String]>>,
    pub on_change: bool,
}

#[cfg(test)]
mod tests;
