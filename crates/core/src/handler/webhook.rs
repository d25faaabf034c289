//! The `webhook` handler (Kong's): `POST` the event to `url` as JSON.
//!
//! Body: the event data's keys plus `"source"` and `"event"` at the top level, exactly Kong's
//! shape; or a CloudEvent (`format`, see [`cloudevents`](super::cloudevents)). Headers: the
//! configured ones and `content-type: application/json`; each attempt adds `user-agent`,
//! `webhook-id`, `webhook-timestamp` and, with a secret, `x-kong-signature`. With `batch`
//! (or `delivery.batch`), the events go several to a call, in a JSON array.

use std::any::Any;
use std::rc::Rc;

#[cfg(feature = "schema")]
use serde_json::Map;
use serde_json::{Value, json};

use super::cloudevents::{self, CloudEvents, Format, HEADER_PREFIX};
use super::endpoint::{self, Endpoint};
use super::{Handler, HandlerKind, Output};
use crate::delivery::Call;
use crate::delivery::batching::{self, Batching, Choice};
use crate::delivery::retry::Overrides;
use crate::event::{Bodies, Redaction};
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, endpoint_types, exclusive};
use crate::reader::{Object, Problems, child, kind};
use crate::signing::Signing;

pub const KEYS: &[&str] = &[
    "url",
    "headers",
    "ssl_verify",
    "cluster",
    "format",
    "cloudevents",
    "batch",
];

/// The `webhook` handler kind.
pub struct Kind;

pub static KIND: Kind = Kind;

impl HandlerKind for Kind {
    fn name(&self) -> &'static str {
        "webhook"
    }

    #[cfg(feature = "schema")]
    fn config_schema(&self, schema: &Parts, at: &str) -> Map<String, Value> {
        let batch = json!({"oneOf": [
            batching::schema(schema, &format!("{at}.batch")),
            {"enum": [false]},
        ]});
        let mut config = schema.object(
            at,
            &[KEYS, endpoint::CALL_KEYS],
            [
                endpoint_types(),
                endpoint::call_types(schema),
                cloudevents::schema_entries(schema, at),
                vec![("batch", batch)],
            ]
            .concat(),
        );
        config.insert("required".into(), json!(["url"]));
        exclusive(config, &[["secret", "secret_env"]])
    }

    fn parse(&self, config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>> {
        Webhook::parse(config, path, problems).map(|webhook| Rc::new(webhook) as Rc<dyn Handler>)
    }
}

impl Handler for Webhook {
    fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
        vec![Output::Call(self.draft(bodies, redaction))]
    }

    fn signing(&self) -> &Signing {
        &self.signing
    }

    fn retry(&self) -> Option<&Overrides> {
        self.retry.as_ref()
    }

    fn batching(&self) -> Batching {
        Batching {
            choice: self.batch,
            content_type: self.format.content_types().1,
        }
    }

    fn note(&self, hook: &str) -> Option<String> {
        self.endpoint.note(hook)
    }

    fn ping(&self, shown: &Value) -> Option<Call> {
        Some(self.ping_draft(shown))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A configured `webhook` handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub endpoint: Endpoint,
    /// Extra headers, lowercase names.
    pub headers: Vec<(String, String)>,
    pub signing: Signing,
    /// `config.retry`: what this hook changes of the global retry policy.
    pub retry: Option<crate::delivery::retry::Overrides>,
    /// `config.format`: Kong's body or a CloudEvent.
    pub format: Format,
    /// `config.cloudevents`.
    pub cloudevents: CloudEvents,
    /// `config.batch`: its own limits, none (`false`), or `delivery.batch`'s.
    pub batch: Choice,
}

impl Webhook {
    /// Reads a `webhook` handler's `config` object at `path`.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Webhook> {
        let config = Object::new_in(value, path, &[KEYS, super::endpoint::CALL_KEYS], problems)?;
        let endpoint = Endpoint::parse(&config, problems);
        let format = Format::parse(&config, problems);
        let headers = endpoint::parse_headers(&config, problems);
        if format == Format::Binary {
            for (name, _) in headers
                .iter()
                .filter(|(name, _)| name.starts_with(HEADER_PREFIX))
            {
                problems.add(
                    &child(&config.path_of("headers"), name),
                    "ce-* headers are set by format cloudevents-binary",
                );
            }
        }
        let signing = Signing::parse(&config, problems);
        let retry = endpoint::parse_retry(&config, problems);
        let cloudevents = cloudevents::parse_for(format, &config, problems);
        let batch = parse_batch(&config, format, problems);
        Some(Webhook {
            endpoint: endpoint?,
            headers,
            signing,
            retry,
            format,
            cloudevents: cloudevents?,
            batch: batch?,
        })
    }

    /// Kong's ping: `{"source": "kong:event_hooks", "event": "ping", "event_hooks": <the
    /// hook>}` to the hook's URL.
    pub fn ping_draft(&self, shown: &Value) -> Call {
        let body = json!({"source": "kong:event_hooks", "event": "ping", "event_hooks": shown});
        let mut headers = self.headers.clone();
        headers.push(("content-type".into(), "application/json".into()));
        Call {
            destination: self.endpoint.destination(),
            method: "POST".into(),
            path: self.endpoint.url.path.clone(),
            authority: self.endpoint.url.authority(),
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default().into(),
        }
    }

    /// The call for one event: `POST url` with its body in the hook's format.
    pub fn draft(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Call {
        let mut headers = self.headers.clone();
        let body = match self.format {
            Format::Kong => bodies.kong(redaction),
            Format::Structured => self.cloudevents.structured(bodies, redaction).into(),
            Format::Binary => {
                let (attributes, data) = self.cloudevents.binary(bodies, redaction);
                headers.extend(attributes);
                data.into()
            }
        };
        let content_type = self.format.content_types().0;
        headers.push(("content-type".to_string(), content_type.to_string()));
        Call {
            destination: self.endpoint.destination(),
            method: "POST".to_string(),
            path: self.endpoint.url.path.clone(),
            authority: self.endpoint.url.authority(),
            headers,
            body,
        }
    }
}

/// Reads `config.batch`: an object (its own limits), `false` (never), or absent (as
/// `delivery.batch` says). A binary-mode CloudEvent is one event per call: never batched.
fn parse_batch(config: &Object<'_, '_>, format: Format, problems: &Problems) -> Option<Choice> {
    let path = config.path_of("batch");
    match config.get("batch") {
        None | Some(Value::Bool(false)) if format == Format::Binary => Some(Choice::Never),
        None => Some(Choice::Default),
        Some(Value::Bool(false)) => Some(Choice::Never),
        Some(_) if format == Format::Binary => {
            problems.add(
                &path,
                "format cloudevents-binary sends one event per call; remove batch, or use format cloudevents",
            );
            None
        }
        Some(value @ Value::Object(_)) => {
            batching::Settings::parse(value, &path, problems).map(Choice::Own)
        }
        Some(other) => {
            problems.add(
                &path,
                format!("expected an object or false, found {}", kind(other)),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::source::Source;
    use serde_json::json;

    fn parse(value: Value) -> Result<Webhook, Vec<String>> {
        let problems = Problems::default();
        let webhook = Webhook::parse(&value, "config", &problems);
        if problems.is_empty() {
            Ok(webhook.unwrap())
        } else {
            Err(problems.messages())
        }
    }

    fn event() -> Event {
        let data = json!({"response": {"status": 500}})
            .as_object()
            .unwrap()
            .clone();
        Event::new(Source::TRAFFIC, "request", data)
    }

    #[test]
    fn an_attempt_carries_kong_headers_and_signature() {
        let webhook = parse(json!({
            "url": "http://receiver:9000/hooks",
            "cluster": "receiver",
            "headers": {"X-Team": "payments"},
            "secret": "hunter2"
        }))
        .unwrap();
        let event = event();
        let mut bodies = Bodies::new(&event);
        let mut draft = webhook.draft(&mut bodies, &Redaction::default());
        draft.body = b"foobar"[..].into();
        let request = draft.attempt("id-1", 1_700_000_000, &webhook.signing);
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(":method"), Some("POST"));
        assert_eq!(header(":path"), Some("/hooks"));
        assert_eq!(header(":authority"), Some("receiver:9000"));
        assert_eq!(header("x-team"), Some("payments"));
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(header("user-agent"), Some(crate::USER_AGENT));
        assert_eq!(header("webhook-id"), Some("id-1"));
        assert_eq!(header("webhook-timestamp"), Some("1700000000"));
        assert_eq!(
            header("x-kong-signature"),
            Some("sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62")
        );
        assert_eq!(request.destination.cluster, "receiver");
        assert_eq!(&request.body[..], b"foobar");
    }

    #[test]
    fn no_secret_means_no_signature() {
        let webhook = parse(json!({"url": "https://hooks.example.com:8443/x"})).unwrap();
        let event = event();
        let request = webhook
            .draft(&mut Bodies::new(&event), &Redaction::default())
            .attempt("id", 1, &webhook.signing);
        assert!(request.destination.tls);
        assert_eq!(request.destination.cluster, "hooks.example.com");
        assert!(!request.headers.iter().any(|(n, _)| n == "x-kong-signature"));
    }

    #[test]
    fn body_is_kong_shape() {
        let event = event();
        let webhook = parse(json!({"url": "http://r/"})).unwrap();
        let draft = webhook.draft(&mut Bodies::new(&event), &Redaction::default());
        let body: Value = serde_json::from_slice(&draft.body).unwrap();
        assert_eq!(
            body,
            json!({"response": {"status": 500}, "source": "traffic", "event": "request"})
        );
    }

    #[test]
    fn configuration_errors_name_their_paths() {
        let errors = parse(json!({
            "headers": {"Content-Type": "text/plain"},
            "secret": "",
            "ssl_verify": "yes",
            "retries": 3
        }))
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "config.retries: unknown field; expected one of: url, headers, ssl_verify, cluster, format, cloudevents, batch, secret, secrets, secret_env, secrets_env, signature, retry",
                "config.url: missing required field",
                "config.ssl_verify: expected true or false, found a string",
                "config.headers.Content-Type: is set by the handler and cannot be configured",
                "config.secret: must not be empty; remove it to send unsigned deliveries",
            ]
        );
        assert_eq!(
            parse(json!({"url": "ftp://x"})).unwrap_err(),
            vec!["config.url: must start with http:// or https://"]
        );
    }
}
