//! Handlers: what a hook does with a matching event. One module per handler.

pub mod webhook;

use serde_json::Value;

use crate::config::reader::Problems;
use crate::delivery::{Job, Request};
use crate::event::{Event, Redaction};

/// The handler names a hook may use.
pub const HANDLERS: &[&str] = &["webhook"];

#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    Webhook(webhook::Webhook),
}

impl Handler {
    /// Reads the `config` of handler `name` at `path`. The caller has checked that `name` is
    /// one of [`HANDLERS`].
    pub fn parse(name: &str, config: &Value, path: &str, problems: &Problems) -> Option<Handler> {
        match name {
            "webhook" => webhook::Webhook::parse(config, path, problems).map(Handler::Webhook),
            _ => None,
        }
    }

    /// The payload queued for delivery when `event` matched.
    pub fn payload(&self, event: &Event, redaction: &Redaction) -> Vec<u8> {
        match self {
            Handler::Webhook(webhook) => webhook.body(event, redaction),
        }
    }

    /// The request for one delivery attempt of `job` at `now_ms`.
    pub fn request(&self, job: &Job, now_ms: u64) -> Request {
        match self {
            Handler::Webhook(webhook) => {
                webhook.request(&job.webhook_id, &job.payload, now_ms / 1000)
            }
        }
    }

    /// A note for the log when the configuration loads, if the handler has one.
    pub fn note(&self, hook: &str) -> Option<String> {
        match self {
            Handler::Webhook(webhook) => webhook.note(hook),
        }
    }

    /// The Envoy cluster this handler's calls go to.
    pub fn cluster(&self) -> &str {
        match self {
            Handler::Webhook(webhook) => &webhook.cluster,
        }
    }
}
