//! Handlers: what a hook does with a matching event. One module per handler; [`endpoint`]
//! holds what the handlers that make HTTP calls share.
//!
//! A handler turns an event into [`Output`]s: HTTP calls to make, which the delivery pipeline
//! sends (signed, per attempt), and log lines, written at once.

pub mod endpoint;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod log;
pub mod webhook;
pub mod webhook_custom;

use serde_json::Value;

use crate::config::reader::Problems;
use crate::delivery::Call;
use crate::event::{Bodies, Redaction};
use crate::log::Level;
use crate::signing::Signing;

/// How handlers that make no call sign (they do not).
static NO_SIGNING: Signing = Signing::NONE;

/// What the `lambda` handler's `config` takes. Outside [`lambda`] so that a build without the
/// feature still describes it (the configuration's schema is the same in every build).
pub mod lambda_config {
    use crate::config::reader::Whole;

    pub const KEYS: &[&str] = &["functions", "cluster", "max_operations"];
    /// The most functions one hook may chain.
    pub const MAX_FUNCTIONS: usize = 16;
    /// The longest function, in bytes of source.
    pub const MAX_SOURCE_BYTES: usize = 65_536;
    /// Operations one event may spend across the whole chain, by default and at most.
    pub const DEFAULT_MAX_OPERATIONS: u64 = 100_000;
    pub const MIN_MAX_OPERATIONS: u64 = 1_000;
    pub const MAX_MAX_OPERATIONS: u64 = 1_000_000;
    pub const MAX_OPERATIONS: Whole =
        Whole::new("max_operations", MIN_MAX_OPERATIONS, MAX_MAX_OPERATIONS);
}

/// The handler names a hook may use.
pub const HANDLERS: &[&str] = &["webhook", "webhook-custom", "log", "lambda"];

#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    Webhook(webhook::Webhook),
    WebhookCustom(webhook_custom::WebhookCustom),
    Log(log::LogHandler),
    #[cfg(feature = "lambda")]
    Lambda(lambda::Lambda),
}

/// What a handler makes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An HTTP call to queue for delivery.
    Call(Call),
    /// A line for the proxy's log.
    Log(Level, String),
}

impl Handler {
    /// Reads the `config` of handler `name` at `path`. The caller has checked that `name` is
    /// one of [`HANDLERS`].
    pub fn parse(name: &str, config: &Value, path: &str, problems: &Problems) -> Option<Handler> {
        match name {
            "webhook" => webhook::Webhook::parse(config, path, problems).map(Handler::Webhook),
            "webhook-custom" => webhook_custom::WebhookCustom::parse(config, path, problems)
                .map(Handler::WebhookCustom),
            "log" => log::LogHandler::parse(config, path, problems).map(Handler::Log),
            #[cfg(feature = "lambda")]
            "lambda" => lambda::Lambda::parse(config, path, problems).map(Handler::Lambda),
            #[cfg(not(feature = "lambda"))]
            "lambda" => {
                // `path` is the hook's `config`: the problem is its `handler`.
                let hook = path.strip_suffix(".config").unwrap_or(path);
                problems.add(
                    &crate::config::reader::child(hook, "handler"),
                    "this build has no lambda support (built without the lambda feature)",
                );
                None
            }
            _ => None,
        }
    }

    /// What the handler makes of the event in `bodies`, as a hook with `redaction` sees it.
    pub fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
        match self {
            Handler::Webhook(webhook) => vec![Output::Call(webhook.prepare(bodies, redaction))],
            Handler::WebhookCustom(custom) => vec![custom.prepare(bodies, redaction)],
            Handler::Log(handler) => {
                vec![Output::Log(
                    Level::Info,
                    handler.line(bodies.event(), redaction),
                )]
            }
            #[cfg(feature = "lambda")]
            Handler::Lambda(lambda) => lambda.prepare(bodies, redaction),
        }
    }

    /// How the handler's calls are signed.
    pub fn signing(&self) -> &Signing {
        match self {
            Handler::Webhook(webhook) => &webhook.signing,
            Handler::WebhookCustom(custom) => &custom.signing,
            Handler::Log(_) => &NO_SIGNING,
            #[cfg(feature = "lambda")]
            Handler::Lambda(lambda) => &lambda.signing,
        }
    }

    /// The hook's `config.retry`, if it has one.
    pub fn retry(&self) -> Option<&crate::delivery::retry::Overrides> {
        match self {
            Handler::Webhook(webhook) => webhook.retry.as_ref(),
            Handler::WebhookCustom(custom) => custom.retry.as_ref(),
            Handler::Log(_) => None,
            #[cfg(feature = "lambda")]
            Handler::Lambda(lambda) => lambda.retry.as_ref(),
        }
    }

    /// Runs that failed or exceeded a budget (lambda), for the admin status.
    pub fn errors(&self) -> Option<u64> {
        match self {
            #[cfg(feature = "lambda")]
            Handler::Lambda(lambda) => Some(lambda.errors()),
            _ => None,
        }
    }

    /// A note for the log when the configuration loads, if the handler has one.
    pub fn note(&self, hook: &str) -> Option<String> {
        match self {
            Handler::Webhook(webhook) => webhook.endpoint.note(hook),
            Handler::WebhookCustom(custom) => custom.note(hook),
            Handler::Log(_) => None,
            #[cfg(feature = "lambda")]
            Handler::Lambda(_) => None,
        }
    }
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
