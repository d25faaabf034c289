//! The `balancer` source, event `health`: passive health checks on live traffic.
//!
//! Per upstream host (`upstream.address`), consecutive failures (connection failures, resets,
//! timeouts, and the statuses in `health.failure_statuses`) reaching `health.unhealthy_after`
//! mark it unhealthy; consecutive successes reaching `health.healthy_after` mark it healthy
//! again. The state of each host lives in the proxy's shared data and changes by
//! compare-and-swap, so every transition gives exactly one event whichever worker saw the
//! request that caused it.
//!
//! A host in steady state (healthy, no failure counted) costs one shared read per request and
//! no write. Each worker tracks at most [`MAX_HOSTS`] hosts (shared entries are never removed).

use std::collections::HashSet;

use serde_json::{Map, Value};

#[cfg(feature = "schema")]
use serde_json::json;

use super::{EventSpec, SourceKind};
use crate::event::{Event, Field, Fields, Redaction};
use crate::needs::{HookUse, Needs};
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, whole_entry};
use crate::reader::{Object, Problems, Whole};
use crate::shared::{Change, Shared, update};
use crate::source::Source;

/// The `balancer` source: upstream hosts turning unhealthy or healthy; reads the top-level
/// `health` settings.
pub struct Kind;

impl SourceKind for Kind {
    fn name(&self) -> &'static str {
        "balancer"
    }

    fn events(&self) -> &'static [EventSpec] {
        EVENTS
    }

    fn settings_key(&self) -> Option<&'static str> {
        Some("health")
    }

    fn read_settings(
        &self,
        value: &Value,
        path: &str,
        problems: &Problems,
        settings: &mut super::Settings,
    ) {
        settings.health = Settings::parse(value, path, problems).unwrap_or_default();
    }

    #[cfg(feature = "schema")]
    fn settings_schema(&self, schema: &Parts) -> Option<Value> {
        Some(Value::Object(schema.object(
            "health",
            &[KEYS],
            vec![
                (
                    "failure_statuses",
                    json!({
                        "type": "array",
                        "items": {"type": "integer", "minimum": STATUSES.start(), "maximum": STATUSES.end()},
                    }),
                ),
                whole_entry(UNHEALTHY_AFTER),
                whole_entry(HEALTHY_AFTER),
            ],
        )))
    }

    fn new_state(&self) -> Option<Box<dyn std::any::Any>> {
        Some(Box::new(Tracked::default()))
    }

    /// A passive health check of the request's upstream host: the `health` event when this
    /// observation changed the host's state (shared by every worker).
    fn observe(
        &self,
        request: &super::Request<'_>,
        state: Option<&mut dyn std::any::Any>,
        emit: &dyn super::Emit,
    ) {
        let Some(tracked) = state.and_then(|state| state.downcast_mut::<Tracked>()) else {
            return;
        };
        let was_full = tracked.full;
        let observed = observe(
            request.store,
            &request.settings.health,
            tracked,
            request.view,
        );
        if tracked.full && !was_full {
            emit.log(
                crate::log::Level::Warn,
                &format!(
                    "health: tracking the first {MAX_HOSTS} upstream hosts of this worker only"
                ),
            );
        }
        match observed {
            Ok(Some(event)) => emit.event(&event),
            Ok(None) => {}
            Err(why) => {
                emit.count(super::Count::SharedError);
                emit.log(
                    crate::log::Level::Warn,
                    &format!("health: shared state unavailable ({why})"),
                );
            }
        }
    }

    /// The traffic fields its passive checks read.
    fn needs(&self, _hooks: &[HookUse<'_>], _settings: &super::Settings) -> Needs {
        [
            ["upstream", "address"],
            ["upstream", "cluster"],
            ["response", "status"],
            ["response", "flags"],
        ]
        .iter()
        .fold(Needs::default(), |needs, field| {
            needs.union(Needs::of_field(field).at_first())
        })
    }
}

pub const EVENTS: &[EventSpec] = &[EventSpec {
    name: "health",
    fields: &["upstream_id", "ip", "port", "hostname", "health"],
    unique: &[],
    description: "An upstream host turned unhealthy or healthy (passive checks on live traffic).",
}];

/// Envoy's response flags that mean the upstream host failed at the connection level:
/// connection failure, connection termination, remote reset, timeout, local reset, retries
/// exhausted.
const FAILURE_FLAGS: &[&str] = &["UF", "UC", "UR", "UT", "LR", "URX"];

/// The most upstream hosts a worker tracks.
pub const MAX_HOSTS: usize = 4_096;

pub const KEYS: &[&str] = &["failure_statuses", "unhealthy_after", "healthy_after"];
pub const UNHEALTHY_AFTER: Whole = Whole::new("unhealthy_after", 1, 1_000);
pub const HEALTHY_AFTER: Whole = Whole::new("healthy_after", 1, 1_000);
/// The HTTP statuses `failure_statuses` may list.
pub const STATUSES: std::ops::RangeInclusive<u64> = 100..=599;

/// The top-level `health` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub failure_statuses: Vec<u64>,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failure_statuses: vec![500, 502, 503, 504],
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }
}

impl Settings {
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let object = Object::new(value, path, KEYS, problems)?;
        let defaults = Settings::default();
        let failure_statuses = object.optional_list(
            "failure_statuses",
            || defaults.failure_statuses.clone(),
            |item| {
                item.as_u64()
                    .filter(|status| STATUSES.contains(status))
                    .ok_or("an HTTP status (100 to 599)")
            },
        );
        let count = |spec: Whole, default: u32| {
            u32::try_from(object.whole(spec, u64::from(default))).unwrap_or(default)
        };
        Some(Settings {
            failure_statuses,
            unhealthy_after: count(UNHEALTHY_AFTER, defaults.unhealthy_after),
            healthy_after: count(HEALTHY_AFTER, defaults.healthy_after),
        })
    }
}

/// The state of one host, as shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct State {
    unhealthy: bool,
    failures: u32,
    successes: u32,
}

impl State {
    fn decode(bytes: &[u8]) -> State {
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|word| word.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        State {
            unhealthy: bytes.first() == Some(&1),
            failures: word(1),
            successes: word(5),
        }
    }

    fn encode(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(9);
        bytes.push(u8::from(self.unhealthy));
        bytes.extend_from_slice(&self.failures.to_le_bytes());
        bytes.extend_from_slice(&self.successes.to_le_bytes());
        bytes
    }

    /// The next state after one observation, and whether it is a transition.
    fn observe(self, failed: bool, settings: &Settings) -> (State, bool) {
        match (self.unhealthy, failed) {
            (false, true) => {
                let failures = self.failures.saturating_add(1);
                if failures >= settings.unhealthy_after {
                    (
                        State {
                            unhealthy: true,
                            failures: 0,
                            successes: 0,
                        },
                        true,
                    )
                } else {
                    (State { failures, ..self }, false)
                }
            }
            (false, false) => (
                State {
                    failures: 0,
                    ..self
                },
                false,
            ),
            (true, false) => {
                let successes = self.successes.saturating_add(1);
                if successes >= settings.healthy_after {
                    (State::default(), true)
                } else {
                    (State { successes, ..self }, false)
                }
            }
            (true, true) => (
                State {
                    successes: 0,
                    ..self
                },
                false,
            ),
        }
    }
}

/// Whether a request (its traffic fields) is a failure of its upstream host.
fn failed<F: Fields>(traffic: &F, settings: &Settings) -> bool {
    let none = Redaction::none_shared();
    let status = traffic
        .field(&["response", "status"], none)
        .and_then(|status| status.as_u64());
    let flags = traffic.field(&["response", "flags"], none);
    let flags = flags.as_ref().and_then(Field::as_str);
    status.is_some_and(|status| settings.failure_statuses.contains(&status))
        || flags.is_some_and(|flags| flags.split(',').any(|flag| FAILURE_FLAGS.contains(&flag)))
}

/// The hosts one worker tracks.
#[derive(Debug, Default)]
pub struct Tracked {
    keys: HashSet<String>,
    /// Set once the limit was hit (to warn once).
    pub full: bool,
}

/// Observes the request of `traffic` (its traffic fields: the event, or a request's view)
/// for its upstream host; the `health` event when this observation changed the host's state.
pub fn observe<F: Fields>(
    store: &dyn Shared,
    settings: &Settings,
    tracked: &mut Tracked,
    traffic: &F,
) -> Result<Option<Event>, String> {
    let none = Redaction::none_shared();
    let address = traffic.field(&["upstream", "address"], none);
    let Some(address) = address.as_ref().and_then(Field::as_str) else {
        return Ok(None);
    };
    let upstream_id = traffic.field(&["upstream", "cluster"], none);
    let upstream_id = upstream_id.as_ref().and_then(Field::as_str).unwrap_or("");
    let key = format!("{}health/{upstream_id}/{address}", crate::shared::NAMESPACE);
    if !tracked.keys.contains(&key) {
        if tracked.keys.len() >= MAX_HOSTS {
            tracked.full = true;
            return Ok(None);
        }
        tracked.keys.insert(key.clone());
    }
    let failed = failed(traffic, settings);
    let transition = update(store, &key, |value| {
        let state = value.map(State::decode).unwrap_or_default();
        let (next, transition) = state.observe(failed, settings);
        if next == state && value.is_some() {
            Change::Keep(None)
        } else {
            Change::Write(next.encode(), transition.then_some(next.unhealthy))
        }
    })?;
    Ok(transition.map(|unhealthy| event(upstream_id, address, unhealthy)))
}

fn event(upstream_id: &str, address: &str, unhealthy: bool) -> Event {
    let (ip, port) = split_address(address);
    let mut data = Map::new();
    if !upstream_id.is_empty() {
        data.insert("upstream_id".into(), Value::String(upstream_id.to_string()));
    }
    data.insert("ip".into(), Value::String(ip.to_string()));
    if let Some(port) = port {
        data.insert("port".into(), Value::from(port));
    }
    data.insert(
        "health".into(),
        Value::String(if unhealthy { "unhealthy" } else { "healthy" }.to_string()),
    );
    Event::new(Source::BALANCER, "health", data)
}

/// `ip:port` or `[ipv6]:port` into the IP and the port.
fn split_address(address: &str) -> (&str, Option<u16>) {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            return (
                ip,
                after.strip_prefix(':').and_then(|port| port.parse().ok()),
            );
        }
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') => (ip, port.parse().ok()),
        _ => (address, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Memory;
    use serde_json::json;

    fn traffic(status: u64, flags: &str, address: &str) -> Event {
        let data = json!({"response": {"status": status, "flags": flags},
                          "upstream": {"address": address, "cluster": "orders"}});
        Event::new(
            Source::TRAFFIC,
            "request",
            data.as_object().unwrap().clone(),
        )
    }

    /// The health events of a sequence of observations (true: a failure), spread over
    /// `workers` workers sharing one store.
    fn run(sequence: &[bool], workers: usize) -> Vec<String> {
        let store = Memory::default();
        let settings = Settings::default();
        let mut tracked: Vec<Tracked> = (0..workers).map(|_| Tracked::default()).collect();
        sequence
            .iter()
            .enumerate()
            .filter_map(|(n, failed)| {
                let observed = if *failed {
                    traffic(503, "", "10.0.0.1:8080")
                } else {
                    traffic(200, "", "10.0.0.1:8080")
                };
                observe(&store, &settings, &mut tracked[n % workers], &observed).unwrap()
            })
            .map(|event| event.data["health"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn consecutive_failures_then_successes_give_one_event_each() {
        let down_up = [false, true, true, true, true, true, false, false, false];
        assert_eq!(run(&down_up, 1), vec!["unhealthy", "healthy"]);
        // Whatever the number of workers, the same two events.
        assert_eq!(run(&down_up, 2), vec!["unhealthy", "healthy"]);
        assert_eq!(run(&down_up, 3), vec!["unhealthy", "healthy"]);
    }

    #[test]
    fn counts_are_consecutive() {
        // Two failures, a success (reset), two failures: never three in a row.
        assert!(run(&[true, true, false, true, true], 2).is_empty());
        // Unhealthy, then success, failure (reset), success: not yet healthy.
        assert_eq!(
            run(&[true, true, true, false, true, false], 1),
            vec!["unhealthy"]
        );
    }

    #[test]
    fn connection_level_flags_are_failures() {
        let settings = Settings::default();
        assert!(failed(&traffic(503, "UF", "a:1"), &settings));
        assert!(failed(&traffic(200, "UR", "a:1"), &settings));
        assert!(failed(&traffic(504, "UT", "a:1"), &settings));
        assert!(!failed(&traffic(404, "", "a:1"), &settings));
        assert!(!failed(&traffic(429, "RL", "a:1"), &settings));
    }

    #[test]
    fn the_event_has_kong_s_fields() {
        let store = Memory::default();
        let settings = Settings {
            unhealthy_after: 1,
            ..Settings::default()
        };
        let event = observe(
            &store,
            &settings,
            &mut Tracked::default(),
            &traffic(502, "", "10.0.0.1:8080"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (event.source, event.name.as_str()),
            (Source::BALANCER, "health")
        );
        assert_eq!(
            event.data,
            json!({"upstream_id": "orders", "ip": "10.0.0.1", "port": 8080, "health": "unhealthy"})
        );
        assert_eq!(split_address("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_address("10.0.0.1"), ("10.0.0.1", None));
    }

    #[test]
    fn steady_healthy_hosts_are_not_written() {
        let store = Memory::default();
        let mut tracked = Tracked::default();
        let settings = Settings::default();
        observe(&store, &settings, &mut tracked, &traffic(200, "", "a:1")).unwrap();
        let (_, cas) = store.get("event_hooks/health/orders/a:1").unwrap().unwrap();
        for _ in 0..10 {
            observe(&store, &settings, &mut tracked, &traffic(200, "", "a:1")).unwrap();
        }
        assert_eq!(
            store
                .get("event_hooks/health/orders/a:1")
                .unwrap()
                .unwrap()
                .1,
            cas
        );
    }

    #[test]
    fn requests_without_an_upstream_are_ignored_and_hosts_are_bounded() {
        let store = Memory::default();
        let mut tracked = Tracked::default();
        let settings = Settings::default();
        let local = Event::new(
            Source::TRAFFIC,
            "request",
            json!({"response": {"status": 503}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            observe(&store, &settings, &mut tracked, &local).unwrap(),
            None
        );
        for n in 0..(MAX_HOSTS + 5) {
            observe(
                &store,
                &settings,
                &mut tracked,
                &traffic(200, "", &format!("h{n}:1")),
            )
            .unwrap();
        }
        assert!(tracked.full);
        assert_eq!(store.len(), MAX_HOSTS);
    }

    #[test]
    fn settings() {
        let problems = Problems::default();
        let parsed = Settings::parse(
            &json!({"failure_statuses": [500, 42, "x"], "unhealthy_after": 0}),
            "health",
            &problems,
        );
        assert_eq!(parsed.unwrap().failure_statuses, vec![500]);
        assert_eq!(
            problems.messages(),
            vec![
                "health.failure_statuses[1]: expected an HTTP status (100 to 599), found a number",
                "health.failure_statuses[2]: expected an HTTP status (100 to 599), found a string",
                "health.unhealthy_after: must be between 1 and 1000",
            ]
        );
    }
}
