//! The `rate-limiting-advanced` source, event `rate-limit-exceeded`: a request refused with
//! 429, by any limiter (Envoy's local rate limit, Kong's plugins, the upstream).
//!
//! Fields: `consumer` (the first of the configured request headers present, by default
//! `x-consumer-username` then `x-consumer-id`), `ip` (the client's), `service` (the upstream
//! cluster, else the route), and from the answer's rate-limit headers when present: `limit`,
//! `window` (seconds) and `rate` (requests counted in the window: limit minus remaining), and,
//! beyond Kong's fields, `reset` (seconds until the limit resets). Envoy's local rate limit
//! gives a limit, the remaining count and a reset but no window: `window` is then absent.
//! Header conventions read: IETF `RateLimit-Limit`/`-Remaining`/`-Policy` (`10;w=60`),
//! `X-RateLimit-Limit`/`-Remaining` (Envoy's local rate limit; draft-03 values such as
//! `10, 10;w=60`), and Kong's `X-RateLimit-Limit-Minute`/`X-RateLimit-Remaining-Minute` (named
//! windows: second, minute, hour, day, month, year).

use serde_json::{Map, Value};

#[cfg(feature = "schema")]
use serde_json::json;

use super::{EventSpec, SourceKind};
use crate::event::{Event, lookup};
use crate::needs::{HookUse, Needs, Stage};
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, non_empty_string};
use crate::reader::{Object, Problems};
use crate::source::Source;

/// The `rate-limiting-advanced` source: requests refused with 429 by any rate limiter; reads
/// the top-level `rate_limit` settings.
pub struct Kind;

impl SourceKind for Kind {
    fn name(&self) -> &'static str {
        "rate-limiting-advanced"
    }

    fn events(&self) -> &'static [EventSpec] {
        EVENTS
    }

    fn settings_key(&self) -> Option<&'static str> {
        Some("rate_limit")
    }

    fn read_settings(
        &self,
        value: &Value,
        path: &str,
        problems: &Problems,
        settings: &mut super::Settings,
    ) {
        settings.rate_limit = Settings::parse(value, path, problems).unwrap_or_default();
    }

    #[cfg(feature = "schema")]
    fn settings_schema(&self, schema: &Parts) -> Option<Value> {
        Some(Value::Object(schema.object(
            "rate_limit",
            &[KEYS],
            vec![(
                "consumer_headers",
                json!({"type": "array", "items": non_empty_string()}),
            )],
        )))
    }

    /// A request refused with 429: its event, from the traffic event.
    fn observe(
        &self,
        request: &super::Request<'_>,
        _state: Option<&mut dyn std::any::Any>,
        emit: &dyn super::Emit,
    ) {
        if request.view.status() == Some(429) {
            if let Some(event) = event(&request.settings.rate_limit, (request.traffic)()) {
                emit.event(&event);
            }
        }
    }

    /// The status first; the event's fields ([`event`]: its consumer headers among the request
    /// headers, its limits among the response headers) once it is a 429.
    fn needs(&self, _hooks: &[HookUse<'_>], _settings: &super::Settings) -> Needs {
        let fields = [
            &["client", "ip"][..],
            &["upstream", "cluster"],
            &["route"],
            &["response", "status"],
        ]
        .iter()
        .fold(Needs::default(), |needs, field| {
            needs.union(Needs::of_field(field))
        })
        .with_request_headers(Stage::Then)
        .with_response_headers(Stage::Then);
        Needs::of_field(&["response", "status"])
            .at_first()
            .union(fields.at_then())
    }
}

pub const EVENTS: &[EventSpec] = &[EventSpec {
    name: "rate-limit-exceeded",
    fields: &[
        "consumer", "ip", "service", "rate", "limit", "window", "reset",
    ],
    unique: &["consumer", "ip", "service"],
    description: "A request was refused with 429 by a rate limiter.",
}];

pub const KEYS: &[&str] = &["consumer_headers"];

/// Kong's named windows, in seconds.
const WINDOWS: &[(&str, u64)] = &[
    ("second", 1),
    ("minute", 60),
    ("hour", 3_600),
    ("day", 86_400),
    ("month", 2_592_000),
    ("year", 31_536_000),
];

/// The top-level `rate_limit` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Request headers naming the consumer, first match wins (lowercase).
    pub consumer_headers: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            consumer_headers: vec!["x-consumer-username".into(), "x-consumer-id".into()],
        }
    }
}

impl Settings {
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let object = Object::new(value, path, KEYS, problems)?;
        let consumer_headers = object.optional_list(
            "consumer_headers",
            || Settings::default().consumer_headers,
            |item| {
                item.as_str()
                    .filter(|name| !name.is_empty())
                    .map(str::to_ascii_lowercase)
                    .ok_or("a header name")
            },
        );
        Some(Settings { consumer_headers })
    }
}

/// The `rate-limit-exceeded` event of a traffic event answered 429.
pub fn event(settings: &Settings, traffic: &Event) -> Option<Event> {
    let data = &traffic.data;
    if lookup(data, &["response", "status"]).and_then(Value::as_u64) != Some(429) {
        return None;
    }
    let text = |path: &[&str]| lookup(data, path).and_then(Value::as_str);
    let mut out = Map::new();
    if let Some(consumer) = settings
        .consumer_headers
        .iter()
        .find_map(|name| text(&["request", "headers", name]))
    {
        out.insert("consumer".into(), Value::String(consumer.to_string()));
    }
    if let Some(ip) = text(&["client", "ip"]) {
        out.insert("ip".into(), Value::String(ip.to_string()));
    }
    if let Some(service) = text(&["upstream", "cluster"]).or_else(|| text(&["route"])) {
        out.insert("service".into(), Value::String(service.to_string()));
    }
    let headers = lookup(data, &["response", "headers"]).and_then(Value::as_object);
    if let Some(headers) = headers {
        let limits = Limits::read(headers);
        if let Some(limit) = limits.limit {
            out.insert("limit".into(), Value::from(limit));
            if let Some(remaining) = limits.remaining {
                out.insert("rate".into(), Value::from(limit.saturating_sub(remaining)));
            }
        }
        if let Some(window) = limits.window {
            out.insert("window".into(), Value::from(window));
        }
        if let Some(reset) = limits.reset {
            out.insert("reset".into(), Value::from(reset));
        }
    }
    Some(Event::new(
        Source::RATE_LIMITING,
        "rate-limit-exceeded",
        out,
    ))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Limits {
    limit: Option<u64>,
    remaining: Option<u64>,
    window: Option<u64>,
    reset: Option<u64>,
}

impl Limits {
    fn read(headers: &Map<String, Value>) -> Limits {
        let header = |name: &str| headers.get(name).and_then(Value::as_str);
        let mut limits = Limits {
            limit: header("ratelimit-limit")
                .or_else(|| header("x-ratelimit-limit"))
                .and_then(first_number),
            remaining: header("ratelimit-remaining")
                .or_else(|| header("x-ratelimit-remaining"))
                .and_then(first_number),
            window: header("ratelimit-policy")
                .or_else(|| header("x-ratelimit-limit"))
                .and_then(policy_window),
            reset: header("ratelimit-reset")
                .or_else(|| header("x-ratelimit-reset"))
                .and_then(first_number),
        };
        if limits.limit.is_none() {
            // Kong's named windows: the shortest one present.
            for (name, seconds) in WINDOWS {
                if let Some(limit) =
                    header(&format!("x-ratelimit-limit-{name}")).and_then(first_number)
                {
                    limits.limit = Some(limit);
                    limits.remaining =
                        header(&format!("x-ratelimit-remaining-{name}")).and_then(first_number);
                    limits.window = Some(*seconds);
                    break;
                }
            }
        }
        limits
    }
}

/// The leading whole number of a header value (`10`, `10, 10;w=60`).
fn first_number(value: &str) -> Option<u64> {
    let digits: String = value
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The `w=` parameter of a rate-limit policy (`10;w=60`, `10, 10;w=60`).
fn policy_window(value: &str) -> Option<u64> {
    value
        .split([';', ','])
        .filter_map(|part| part.trim().strip_prefix("w="))
        .find_map(first_number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn traffic(status: u64, response_headers: Value) -> Event {
        let data = json!({
            "request": {"headers": {"x-consumer-id": "c-42"}},
            "response": {"status": status, "headers": response_headers},
            "upstream": {"cluster": "orders"},
            "client": {"ip": "10.0.0.7"}
        });
        Event::new(
            Source::TRAFFIC,
            "request",
            data.as_object().unwrap().clone(),
        )
    }

    #[test]
    fn only_429_is_an_event() {
        assert!(event(&Settings::default(), &traffic(200, json!({}))).is_none());
        assert!(event(&Settings::default(), &traffic(503, json!({}))).is_none());
    }

    #[test]
    fn envoy_local_rate_limit_headers() {
        let e = event(
            &Settings::default(),
            &traffic(
                429,
                json!({"x-ratelimit-limit": "10, 10;w=60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "42"}),
            ),
        )
        .unwrap();
        assert_eq!(
            (e.source, e.name.as_str()),
            (Source::RATE_LIMITING, "rate-limit-exceeded")
        );
        assert_eq!(
            e.data,
            json!({"consumer": "c-42", "ip": "10.0.0.7", "service": "orders",
                   "limit": 10, "rate": 10, "window": 60, "reset": 42})
        );
    }

    #[test]
    fn ietf_and_kong_headers() {
        let ietf = json!({"ratelimit-limit": "100", "ratelimit-remaining": "3", "ratelimit-policy": "100;w=3600"});
        let e = event(&Settings::default(), &traffic(429, ietf)).unwrap();
        assert_eq!(
            (
                e.data["limit"].clone(),
                e.data["rate"].clone(),
                e.data["window"].clone()
            ),
            (json!(100), json!(97), json!(3600))
        );
        let kong = json!({"x-ratelimit-limit-minute": "5", "x-ratelimit-remaining-minute": "0", "x-ratelimit-limit-hour": "100"});
        let e = event(&Settings::default(), &traffic(429, kong)).unwrap();
        assert_eq!(
            (
                e.data["limit"].clone(),
                e.data["rate"].clone(),
                e.data["window"].clone()
            ),
            (json!(5), json!(5), json!(60))
        );
    }

    #[test]
    fn absent_headers_leave_fields_absent() {
        let e = event(&Settings::default(), &traffic(429, json!({}))).unwrap();
        assert_eq!(
            e.data,
            json!({"consumer": "c-42", "ip": "10.0.0.7", "service": "orders"})
        );
        let settings = Settings {
            consumer_headers: vec!["x-user".into()],
        };
        assert!(
            event(&settings, &traffic(429, json!({})))
                .unwrap()
                .data
                .get("consumer")
                .is_none()
        );
    }

    #[test]
    fn settings() {
        let problems = Problems::default();
        let parsed = Settings::parse(
            &json!({"consumer_headers": ["X-User", 3]}),
            "rate_limit",
            &problems,
        )
        .unwrap();
        assert_eq!(parsed.consumer_headers, vec!["x-user"]);
        assert_eq!(
            problems.into_vec()[0].to_string(),
            "rate_limit.consumer_headers[1]: expected a header name, found a number"
        );
    }
}
