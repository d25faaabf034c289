//! How a hook batches: the limits of `config.batch` and `delivery.batch` ([`Settings`]), and
//! a hook's [`Batching`] as its handler asks for it, carried by its delivery policy. The batch
//! stage that applies them is [`batch`](super::batch).

use serde_json::Value;

#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, whole_entry};
use crate::reader::{Object, Problems, Whole};

pub const KEYS: &[&str] = &["max_size", "max_delay_ms", "max_bytes"];
pub const MAX_SIZE: Whole = Whole::new("max_size", 1, 10_000);
pub const MAX_DELAY_MS: Whole = Whole::new("max_delay_ms", 0, 60_000);
pub const MAX_BYTES: Whole = Whole::new("max_bytes", 1_024, 16 * 1024 * 1024);

/// A batch's limits (`config.batch`, `delivery.batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Events per call.
    pub max_size: usize,
    /// How long the first event of a batch may wait for the others.
    pub max_delay_ms: u64,
    /// The most bytes of body a batch grows to.
    pub max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_size: 100,
            max_delay_ms: 1_000,
            max_bytes: 1024 * 1024,
        }
    }
}

impl Settings {
    /// Reads a `batch` object at `path`; absent keys take the defaults.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let object = Object::new(value, path, KEYS, problems)?;
        let defaults = Settings::default();
        let size = |spec: Whole, default: usize| {
            usize::try_from(object.whole(spec, default as u64)).unwrap_or(default)
        };
        Some(Settings {
            max_size: size(MAX_SIZE, defaults.max_size),
            max_delay_ms: object.whole(MAX_DELAY_MS, defaults.max_delay_ms),
            max_bytes: size(MAX_BYTES, defaults.max_bytes),
        })
    }
}

#[cfg(feature = "schema")]
/// The JSON Schema of a `batch` object at `at`.
pub fn schema(parts: &Parts, at: &str) -> Value {
    Value::Object(parts.object(
        at,
        &[KEYS],
        vec![
            whole_entry(MAX_SIZE),
            whole_entry(MAX_DELAY_MS),
            whole_entry(MAX_BYTES),
        ],
    ))
}

/// Whether and how a hook batches, as its handler asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// One event per call, whatever `delivery.batch` says.
    Never,
    /// As `delivery.batch` says (one event per call when it is not set).
    Default,
    /// Its own limits.
    Own(Settings),
}

/// A hook's batching: its [`Choice`] and the `content-type` its batches are sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub choice: Choice,
    pub content_type: &'static str,
}

impl Batching {
    /// A hook that never batches.
    pub const NEVER: Batching = Batching {
        choice: Choice::Never,
        content_type: "application/json",
    };
}
