//! The `webhook-custom` handler (Kong's): a call of any method to `url`, with headers, a body
//! or a payload written by the hook, rendered from the event by [templates](crate::template).
//!
//! * `body` (a template unless `body_format: false`) is sent as is. Its `{{ }}` values are
//!   escaped by the configured `content-type`: JSON-string escaping for JSON, percent-encoding
//!   for `application/x-www-form-urlencoded`, none otherwise.
//! * Otherwise `payload` (a map whose values are templates unless `payload_format: false`) is
//!   rendered raw, then encoded: for `GET` and `HEAD` as the URL's query string (no body);
//!   for other methods by the `content-type` header as a JSON object of strings, a form, or
//!   `multipart/form-data` (also when no content-type is configured, as in Kong).
//! * Header values are templates with `headers_format: true`; whatever they render, control
//!   characters (CR, LF) are stripped.
//!
//! Each attempt adds `user-agent`, `webhook-id`, `webhook-timestamp` and, with a secret and a
//! body, `x-kong-signature` over the exact body bytes.

use std::rc::Rc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use std::any::Any;

#[cfg(feature = "schema")]
use serde_json::json;

use super::endpoint::{self, Endpoint};
use super::{Handler, HandlerKind, Output};
use crate::delivery::Call;
use crate::delivery::retry::Overrides;
use crate::event::{Bodies, Redaction};
use crate::log::Level;
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, endpoint_types, exclusive, string_map};
use crate::reader::{Object, Problems, child};
use crate::signing::{self, Signing};
use crate::template::{self, Escape, MAX_RENDERED, Overflow, Template};

pub const KEYS: &[&str] = &[
    "url",
    "method",
    "headers",
    "headers_format",
    "body",
    "body_format",
    "payload",
    "payload_format",
    "ssl_verify",
    "cluster",
];

/// The `webhook-custom` handler kind.
pub struct Kind;

pub static KIND: Kind = Kind;

impl HandlerKind for Kind {
    fn name(&self) -> &'static str {
        "webhook-custom"
    }

    #[cfg(feature = "schema")]
    fn config_schema(&self, schema: &Parts, at: &str) -> Map<String, Value> {
        let mut types = endpoint_types();
        types.extend([
            (
                "method",
                json!({"type": "string", "minLength": 1, "maxLength": 32}),
            ),
            ("headers_format", json!({"type": "boolean"})),
            ("body", json!({"type": "string"})),
            ("body_format", json!({"type": "boolean"})),
            ("payload", string_map()),
            ("payload_format", json!({"type": "boolean"})),
        ]);
        types.extend(super::endpoint::call_types(schema));
        let mut config = schema.object(at, &[KEYS, endpoint::CALL_KEYS], types);
        config.insert("required".into(), json!(["url", "method"]));
        exclusive(config, &[["secret", "secret_env"], ["body", "payload"]])
    }

    fn parse(&self, config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>> {
        WebhookCustom::parse(config, path, problems)
            .map(|custom| Rc::new(custom) as Rc<dyn Handler>)
    }
}

impl Handler for WebhookCustom {
    fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
        vec![self.output(bodies, redaction)]
    }

    fn signing(&self) -> &Signing {
        &self.signing
    }

    fn retry(&self) -> Option<&Overrides> {
        self.retry.as_ref()
    }

    fn event_fields(&self) -> Option<Vec<&[String]>> {
        Some(self.fields().collect())
    }

    fn note(&self, hook: &str) -> Option<String> {
        self.note_for(hook)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

const CONTENT_TYPE: &str = "content-type";
const MULTIPART: &str = "multipart/form-data";
const FORM: &str = "application/x-www-form-urlencoded";

/// A configured `webhook-custom` handler.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCustom {
    pub endpoint: Endpoint,
    /// Uppercase.
    pub method: String,
    /// Lowercase names; literal templates unless `headers_format` is set.
    headers: Vec<(String, Template)>,
    content: Content,
    /// The hook's signature: Kong's only when the call has a body (as in Kong); the other
    /// schemes sign an empty body too.
    pub signing: Signing,
    /// `config.retry`: what this hook changes of the global retry policy.
    pub retry: Option<crate::delivery::retry::Overrides>,
    /// A secret is set but the call never has a body: sent unsigned, as Kong does.
    secret_unused: bool,
    /// The configuration's JSON path, naming the hook in log lines.
    path: String,
}

/// What the call carries.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    /// Neither `body` nor `payload`: no body.
    Nothing,
    Body {
        template: Template,
        escape: Escape,
    },
    Payload {
        fields: Vec<(String, Template)>,
        encoding: Encoding,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Encoding {
    /// Appended to the URL's query (`GET`, `HEAD`).
    Query,
    Json,
    Form,
    /// The content-type to send, to which `; boundary=...` is added.
    Multipart(String),
}

impl WebhookCustom {
    /// Reads a `webhook-custom` handler's `config` object at `path`.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<WebhookCustom> {
        let config = Object::new_in(value, path, &[KEYS, super::endpoint::CALL_KEYS], problems)?;
        let endpoint = Endpoint::parse(&config, problems);
        let method = parse_method(&config, problems);
        let headers_format = config.optional_bool("headers_format", false);
        let body_format = config.optional_bool("body_format", true);
        let payload_format = config.optional_bool("payload_format", true);
        let mut headers = parse_headers(&config, headers_format, problems);
        let content_type = content_type(&headers, &config.path_of("headers"), problems);
        let body = config
            .optional_str("body")
            .map(|text| template_of(text, body_format, &config.path_of("body"), problems));
        let payload = config
            .get("payload")
            .map(|_| parse_payload(&config, payload_format, problems));
        let signing = Signing::parse(&config, problems);
        let content = match (body, payload) {
            (Some(_), Some(_)) => {
                problems.add(
                    &config.path_of("payload"),
                    "set either body or payload, not both (Kong sends the body and ignores the payload, except with GET)",
                );
                None
            }
            (Some(template), None) => template.map(|template| Content::Body {
                template,
                escape: body_escape(content_type.as_deref()),
            }),
            (None, Some(fields)) => {
                let encoding = match method.as_deref() {
                    Some("GET" | "HEAD") => Some(Encoding::Query),
                    Some(_) => payload_encoding(content_type.as_deref(), &config, problems),
                    None => None,
                };
                encoding.map(|encoding| Content::Payload { fields, encoding })
            }
            (None, None) => Some(Content::Nothing),
        };
        let (endpoint, method, content) = (endpoint?, method?, content?);
        if let Content::Payload {
            encoding: Encoding::Multipart(_),
            ..
        } = &content
        {
            // Sent with its boundary, per call.
            headers.retain(|(name, _)| name != CONTENT_TYPE);
        }
        let has_body = match &content {
            Content::Nothing => false,
            Content::Body { .. } => true,
            Content::Payload { encoding, .. } => *encoding != Encoding::Query,
        };
        let kong = signing.scheme() == signing::Scheme::Kong;
        let secret_unused = signing.is_set() && !has_body && kong;
        let retry = super::endpoint::parse_retry(&config, problems);
        Some(WebhookCustom {
            endpoint,
            method,
            headers,
            content,
            signing: if has_body || !kong {
                signing
            } else {
                Signing::NONE
            },
            retry,
            secret_unused,
            path: path.to_string(),
        })
    }

    /// The field paths its templates read (of the Kong payload: the event data, `source` and
    /// `event`).
    pub fn fields(&self) -> impl Iterator<Item = &[String]> {
        let content: Vec<&Template> = match &self.content {
            Content::Nothing => Vec::new(),
            Content::Body { template, .. } => vec![template],
            Content::Payload { fields, .. } => {
                fields.iter().map(|(_, template)| template).collect()
            }
        };
        self.headers
            .iter()
            .map(|(_, template)| template)
            .chain(content)
            .flat_map(Template::fields)
    }

    /// The call for one event, or a warning when it would render more than [`MAX_RENDERED`]
    /// bytes (then nothing is sent).
    pub fn output(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Output {
        let context = bodies.event().kong_payload(redaction);
        let why = match self.draft(&context) {
            Ok(draft) => return Output::Call(draft),
            Err(Unsent::TooLarge) => format!("renders more than {MAX_RENDERED} bytes"),
            Err(Unsent::NoBoundary) => "has values that no multipart boundary fits".to_string(),
        };
        Output::Log(
            Level::Warn,
            format!(
                "{}: the call for an event {why}; it was not sent",
                self.path
            ),
        )
    }

    fn draft(&self, context: &Value) -> Result<Call, Unsent> {
        let mut budget = Budget(MAX_RENDERED);
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        for (name, template) in &self.headers {
            let mut value = budget.render(template, context, Escape::Header)?;
            // `{* *}` is raw everywhere, but never splits a header.
            value.retain(|&byte| template::header_safe(byte));
            headers.push((name.clone(), template::into_string(value)));
        }
        let mut path = self.endpoint.url.path.clone();
        let body = match &self.content {
            Content::Nothing => Vec::new(),
            Content::Body { template, escape } => budget.render(template, context, *escape)?,
            Content::Payload { fields, encoding } => {
                let mut values = Vec::with_capacity(fields.len());
                for (name, template) in fields {
                    let value = budget.render(template, context, Escape::None)?;
                    values.push((name.as_str(), template::into_string(value)));
                }
                match encoding {
                    Encoding::Query => {
                        path = with_query(&path, &form(&values));
                        Vec::new()
                    }
                    Encoding::Json => json(&values),
                    Encoding::Form => form(&values).into_bytes(),
                    Encoding::Multipart(content_type) => {
                        let (body, boundary) = multipart(&values).ok_or(Unsent::NoBoundary)?;
                        headers.push((
                            CONTENT_TYPE.to_string(),
                            format!("{content_type}; boundary={boundary}"),
                        ));
                        body
                    }
                }
            }
        };
        Ok(Call {
            destination: self.endpoint.destination(),
            method: self.method.clone(),
            path,
            authority: self.endpoint.url.authority(),
            headers,
            body: Rc::from(body),
        })
    }

    /// Notes for the log at load: TLS belongs to the cluster; a secret with nothing to sign.
    pub fn note_for(&self, hook: &str) -> Option<String> {
        let secret = self.secret_unused.then(|| {
            format!(
                "hook {hook}: its {} calls have no body, so they are sent unsigned (the signature covers the body only, as in Kong)",
                self.method
            )
        });
        match (self.endpoint.note(hook), secret) {
            (Some(tls), Some(secret)) => Some(format!("{tls}; {secret}")),
            (tls, secret) => tls.or(secret),
        }
    }
}

/// Why a call was not sent.
enum Unsent {
    TooLarge,
    NoBoundary,
}

impl From<Overflow> for Unsent {
    fn from(_: Overflow) -> Self {
        Unsent::TooLarge
    }
}

/// Renders templates within one call's byte budget.
struct Budget(usize);

impl Budget {
    fn render(
        &mut self,
        template: &Template,
        context: &Value,
        escape: Escape,
    ) -> Result<Vec<u8>, Overflow> {
        let mut out = Vec::new();
        template.render_into(context, escape, &mut out, self.0)?;
        self.0 = self.0.saturating_sub(out.len());
        Ok(out)
    }
}

fn template_of(text: &str, format: bool, path: &str, problems: &Problems) -> Option<Template> {
    if format {
        Template::read(text, path, problems)
    } else {
        Some(Template::literal(text))
    }
}

/// `method`: an HTTP method token, sent uppercase.
fn parse_method(config: &Object<'_, '_>, problems: &Problems) -> Option<String> {
    let text = config.required_str("method")?;
    let path = config.path_of("method");
    if text.is_empty() || text.len() > 32 || !text.bytes().all(endpoint::is_token_byte) {
        problems.add(&path, "must be an HTTP method such as GET or POST");
        return None;
    }
    let method = text.to_ascii_uppercase();
    if method == "CONNECT" {
        problems.add(&path, "CONNECT opens a tunnel; it cannot carry a webhook");
        return None;
    }
    Some(method)
}

/// `headers`, with `content-type` allowed: the hook decides how its body is encoded.
fn parse_headers(
    config: &Object<'_, '_>,
    format: bool,
    problems: &Problems,
) -> Vec<(String, Template)> {
    let headers = endpoint::parse_headers_allowing(config, problems, &[CONTENT_TYPE])
        .into_iter()
        .map(|header| (header.written, header.name, header.value));
    templates(&config.path_of("headers"), headers, format, problems)
}

/// The values of the map at `path` as templates (or literal), by name. Each entry is the name
/// as written (for the path of a problem), the name kept, and the value.
fn templates(
    path: &str,
    entries: impl IntoIterator<Item = (String, String, String)>,
    format: bool,
    problems: &Problems,
) -> Vec<(String, Template)> {
    entries
        .into_iter()
        .filter_map(|(written, name, value)| {
            let template = template_of(&value, format, &child(path, &written), problems)?;
            Some((name, template))
        })
        .collect()
}

/// The configured content-type, which must be the same for every event.
fn content_type(headers: &[(String, Template)], path: &str, problems: &Problems) -> Option<String> {
    let mut found = headers.iter().filter(|(name, _)| name == CONTENT_TYPE);
    let (_, template) = found.next()?;
    if found.next().is_some() {
        problems.add(&child(path, CONTENT_TYPE), "is configured twice");
    }
    if !template.is_literal() {
        problems.add(
            &child(path, CONTENT_TYPE),
            "must not be a template: it decides how the body is encoded when the configuration loads",
        );
    }
    Some(template.render(&Value::Null, Escape::None))
}

/// A content-type's media type, lowercase, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// How `{{ }}` values are escaped in a body of this content-type.
fn body_escape(content_type: Option<&str>) -> Escape {
    let media_type = content_type.map(media_type).unwrap_or_default();
    if is_json(&media_type) {
        Escape::Json
    } else if media_type == FORM {
        Escape::Percent
    } else {
        Escape::None
    }
}

/// How a payload is encoded in a body: by the content-type, multipart when there is none.
fn payload_encoding(
    content_type: Option<&str>,
    config: &Object<'_, '_>,
    problems: &Problems,
) -> Option<Encoding> {
    let Some(content_type) = content_type else {
        return Some(Encoding::Multipart(MULTIPART.to_string()));
    };
    let media_type = media_type(content_type);
    if is_json(&media_type) {
        Some(Encoding::Json)
    } else if media_type == FORM {
        Some(Encoding::Form)
    } else if media_type == MULTIPART {
        if content_type.to_ascii_lowercase().contains("boundary=") {
            problems.add(
                &child(&config.path_of("headers"), CONTENT_TYPE),
                "must not set a boundary: the handler chooses one for each call",
            );
            return None;
        }
        Some(Encoding::Multipart(content_type.trim().to_string()))
    } else {
        problems.add(
            &config.path_of("payload"),
            format!(
                "is encoded by the content-type header as application/json, {FORM} or {MULTIPART} (the default); for another content-type, write a body"
            ),
        );
        None
    }
}

/// `payload`: a map of names to (templates of) values.
fn parse_payload(
    config: &Object<'_, '_>,
    format: bool,
    problems: &Problems,
) -> Vec<(String, Template)> {
    let path = config.path_of("payload");
    let mut entries = Vec::new();
    for (name, value) in config.optional_string_map("payload") {
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
            problems.add(
                &child(&path, &name),
                "a payload name must not be empty or hold control characters or \"",
            );
        } else {
            entries.push((name.clone(), name, value.to_string()));
        }
    }
    templates(&path, entries, format, problems)
}

mod encode;
#[cfg(test)]
use encode::pick_boundary;
use encode::{form, json, multipart, with_query};

#[cfg(test)]
mod tests;
