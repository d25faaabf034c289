//! Handlers: what a hook does with a matching event. One file per handler kind, each a
//! [`HandlerKind`] (its name, its `config`'s schema and parser) making [`Handler`]s, listed by
//! one line of [`builtin`]; [`endpoint`] holds what the handlers that make HTTP calls share.
//!
//! A handler turns an event into [`Output`]s: drafts of HTTP calls, which the delivery queue
//! sends (signed, per attempt), and log lines, written at once.

pub mod cloudevents;
pub mod endpoint;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod lambda_config;
pub mod lambda_kind;
pub mod log;
pub mod webhook;
pub mod webhook_custom;

use std::any::Any;
use std::fmt;
use std::rc::Rc;

#[cfg(feature = "schema")]
use serde_json::Map;
use serde_json::Value;

use crate::delivery::Call;
use crate::delivery::batching::Batching;
use crate::delivery::retry::Overrides;
use crate::event::{Bodies, Redaction};
use crate::log::Level;
use crate::reader::Problems;
#[cfg(feature = "schema")]
use crate::reader::schema::Parts;
use crate::signing::Signing;

/// How handlers that make no call sign (they do not).
static NO_SIGNING: Signing = Signing::NONE;

/// A kind of handler: what a hook's `"handler"` names. Each kind lives in its own file and is
/// one line of [`builtin`]; configuration parsing, the JSON Schema, the needs of each request
/// and the admin endpoints all read the catalog, never a list of names of their own.
pub trait HandlerKind: Sync {
    /// The name hooks use (`"webhook"`).
    fn name(&self) -> &'static str;

    #[cfg(feature = "schema")]
    /// The JSON Schema of its `config` at `at`, built with `schema` (which records where the
    /// schema and the parser's key lists disagree).
    fn config_schema(&self, schema: &Parts, at: &str) -> Map<String, Value>;

    /// Reads its `config` at `path` (`hooks[N].config`), reporting every problem.
    fn parse(&self, config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>>;
}

/// A configured handler: what a hook does with each event that matches it.
pub trait Handler: fmt::Debug {
    /// What it makes of the event in `bodies`, as a hook with `redaction` sees it.
    fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output>;

    /// Whether it may make calls, each a delivery with its own id (the default). One that
    /// never does (`log`) gets no id: the routing makes none for it.
    fn makes_calls(&self) -> bool {
        true
    }

    /// How its calls are signed (the default: they are not).
    fn signing(&self) -> &Signing {
        &NO_SIGNING
    }

    /// The hook's `config.retry`, if it has one.
    fn retry(&self) -> Option<&Overrides> {
        None
    }

    /// Whether and how its calls are batched (the default: never).
    fn batching(&self) -> Batching {
        Batching::NEVER
    }

    /// The field paths of the event it reads; `None`: the whole event (the default).
    fn event_fields(&self) -> Option<Vec<&[String]>> {
        None
    }

    /// Runs that failed or exceeded a budget, for the admin status (only `lambda` counts).
    fn errors(&self) -> Option<u64> {
        None
    }

    /// A note for the log when the configuration loads, if it has one.
    fn note(&self, _hook: &str) -> Option<String> {
        None
    }

    /// Kong's `ping` to this handler's endpoint, with `shown` (the hook as listed), if the
    /// handler has one (only `webhook`).
    fn ping(&self, _shown: &Value) -> Option<Call> {
        None
    }

    /// For tests and tools that look inside a handler of a known kind.
    fn as_any(&self) -> &dyn Any;
}

/// Every handler kind this build has, in the order messages list them. A new handler is a
/// file in this module and one line here.
pub fn builtin() -> Vec<&'static dyn HandlerKind> {
    vec![
        &webhook::KIND,
        &webhook_custom::KIND,
        &log::KIND,
        &lambda_kind::KIND,
    ]
}

/// The handler names a hook may use, for messages and the schema.
pub fn names(kinds: &[&dyn HandlerKind]) -> Vec<&'static str> {
    kinds.iter().map(|kind| kind.name()).collect()
}

/// What a handler makes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An HTTP call to queue for delivery.
    Call(Call),
    /// A line for the proxy's log.
    Log(Level, String),
}

#[cfg(all(test, not(feature = "lambda")))]
mod tests {
    use serde_json::json;

    #[test]
    fn a_build_without_lambda_refuses_lambda_hooks_by_name() {
        let config = json!({"hooks": [
            {"source": "traffic", "handler": "webhook", "config": {"url": "http://r/"}},
            {"source": "traffic", "handler": "lambda", "config": {"functions": ["data"]}}
        ]});
        let problems: Vec<String> = crate::config::parse(config.to_string().as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            vec![
                "hooks[1].handler: this build has no lambda support (built without the lambda feature)"
            ]
        );
    }
}
