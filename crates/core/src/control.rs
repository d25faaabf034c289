//! `snooze` and `on_change`, with Kong's exact semantics, shared by every worker.
//!
//! Key = (hook, source, event). Digest = a hash of the event's `unique` fields, or of the whole
//! data (as the hook sees it) when the event has none.
//!
//! * `snooze = N` alone: the first event is sent, and every event with the same key is dropped
//!   for N seconds from that first one, whatever its content (a fixed window, not a debounce).
//! * `on_change` alone: an event whose digest equals the last one sent is dropped.
//! * both: each distinct digest gets its own N-second window; different data goes through.
//!
//! The state lives in the proxy's shared data ([`crate::shared`]), one entry per hook holding a
//! table of at most [`MAX_ENTRIES`] slots, updated with compare-and-swap: whichever worker sees
//! an event, the decision is the same as if one worker had seen them all. Expired windows are
//! dropped first when the table is full, then the least recently used slot.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{Event, Redaction, lookup};
use crate::shared::{Change, Shared, update};
use crate::source::published::Published;

/// What a hook's controls are: its name (the key of its shared state), `snooze` in seconds
/// (0: off), `on_change`, the redaction its events are compared under, and its source when
/// published (whose events' `unique` fields come from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Controls<'h> {
    pub name: &'h str,
    pub snooze: u64,
    pub on_change: bool,
    pub redaction: &'h Redaction,
    pub published: Option<&'h Published>,
}

/// The most slots (events, or event and data with both controls) remembered per hook.
pub const MAX_ENTRIES: usize = 256;
/// Bytes of one slot: its key and its value, two little-endian u64.
const ENTRY: usize = 16;

/// The shared-data key of a hook's controls.
pub fn key(hook: &Controls<'_>) -> String {
    format!("{}control/{}", crate::shared::NAMESPACE, hook.name)
}

/// Whether `event` may go through `hook` at `now_ms`, recording it if so. Hooks without
/// controls never touch the store.
pub fn admit(
    store: &dyn Shared,
    hook: &Controls<'_>,
    event: &Event,
    now_ms: u64,
) -> Result<bool, String> {
    if hook.snooze == 0 && !hook.on_change {
        return Ok(true);
    }
    let window_ms = hook.snooze.saturating_mul(1_000);
    let digest = hook.on_change.then(|| digest(event, hook));
    let slot = match digest {
        Some(digest) if hook.snooze > 0 => hash(&[event.name.as_bytes(), &digest.to_le_bytes()]),
        _ => hash(&[event.name.as_bytes()]),
    };
    update(store, &key(hook), |value| {
        let mut entries = decode(value.unwrap_or_default());
        let found = entries.iter().position(|(key, _)| *key == slot);
        let blocked = match (found.and_then(|at| entries.get(at)), digest) {
            // on_change alone: the slot holds the digest last sent.
            (Some((_, last)), Some(digest)) if hook.snooze == 0 => *last == digest,
            // a window: the slot holds when it began.
            (Some((_, start)), _) if hook.snooze > 0 => within(*start, now_ms, window_ms),
            _ => false,
        };
        if blocked {
            return Change::Keep(false);
        }
        let value = match digest {
            Some(digest) if hook.snooze == 0 => digest,
            _ => now_ms,
        };
        if let Some(at) = found {
            entries.remove(at);
        } else if entries.len() >= MAX_ENTRIES {
            if hook.snooze > 0 {
                entries.retain(|(_, start)| within(*start, now_ms, window_ms));
            }
            if entries.len() >= MAX_ENTRIES {
                entries.remove(0);
            }
        }
        entries.push((slot, value));
        Change::Write(encode(&entries), true)
    })
}

/// Whether `now_ms` falls in the window of `window_ms` that began at `start`. A clock that
/// stepped back before the start ends the window rather than stretching it.
fn within(start: u64, now_ms: u64, window_ms: u64) -> bool {
    now_ms >= start && now_ms - start < window_ms
}

fn decode(bytes: &[u8]) -> Vec<(u64, u64)> {
    bytes
        .chunks_exact(ENTRY)
        .filter_map(|chunk| {
            let (key, value) = chunk.split_at(ENTRY / 2);
            Some((
                u64::from_le_bytes(key.try_into().ok()?),
                u64::from_le_bytes(value.try_into().ok()?),
            ))
        })
        .collect()
}

fn encode(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY);
    for (key, value) in entries {
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// A stable 64-bit hash (the same in every worker): the first 8 bytes of SHA-256.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest
        .iter()
        .take(8)
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
}

/// The event as the hook sees it, for `on_change`: its unique fields, or all of its data.
fn digest(event: &Event, hook: &Controls<'_>) -> u64 {
    let unique: Vec<&str> = match hook.published {
        Some(published) => published.event(&event.name).map_or(Vec::new(), |spec| {
            spec.unique.iter().map(String::as_str).collect()
        }),
        None => event
            .source
            .spec(&event.name)
            .map_or(Vec::new(), |spec| spec.unique.to_vec()),
    };
    let subject = if unique.is_empty() {
        event.data_for(hook.redaction)
    } else {
        Value::Array(
            unique
                .iter()
                .map(|field| {
                    let path = crate::event::split_path(field);
                    lookup(&event.data, &path).cloned().unwrap_or(Value::Null)
                })
                .collect(),
        )
    };
    // serde_json objects are sorted by key, so equal data serializes to equal bytes.
    hash(&[&serde_json::to_vec(&subject).unwrap_or_default()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::hooks::Hook;
    use crate::shared::Memory;
    use crate::source::Source;
    use serde_json::json;

    fn hook(snooze: u64, on_change: bool) -> Hook {
        let config = json!({"hooks": [{"source": "traffic", "handler": "webhook",
            "snooze": snooze, "on_change": on_change, "config": {"url": "http://r/"}}]});
        config::parse(config.to_string().as_bytes())
            .unwrap()
            .hooks
            .get(0)
            .unwrap()
            .clone()
    }

    fn event(tag: &str) -> Event {
        let data = json!({"tag": tag}).as_object().unwrap().clone();
        Event::new(Source::TRAFFIC, "request", data)
    }

    /// Which of `events` (seconds, tag) go through, each seen by worker `n % workers` (all
    /// workers share one store, as in a proxy).
    fn sent(hook: &Hook, events: &[(u64, &str)]) -> Vec<(u64, String)> {
        let store = Memory::default();
        events
            .iter()
            .filter(|(at, tag)| admit(&store, &hook.controls(), &event(tag), at * 1_000).unwrap())
            .map(|(at, tag)| (*at, tag.to_string()))
            .collect()
    }

    #[test]
    fn snooze_alone_is_a_fixed_window_from_the_first_event() {
        // The reference's timeline with N=60: sent t0, dropped +50, sent +70, dropped +100,
        // sent +131.
        let hook = hook(60, false);
        let events = [(0, "a"), (50, "b"), (70, "c"), (100, "d"), (131, "e")];
        assert_eq!(
            sent(&hook, &events),
            vec![(0, "a".into()), (70, "c".into()), (131, "e".into())]
        );
    }

    #[test]
    fn on_change_alone_drops_repeats_of_the_last_sent() {
        let hook = hook(0, true);
        let events = [(0, "A"), (1, "A"), (2, "B"), (3, "B"), (4, "A")];
        let tags: Vec<String> = sent(&hook, &events).into_iter().map(|(_, t)| t).collect();
        assert_eq!(tags, vec!["A", "B", "A"]);
    }

    #[test]
    fn both_give_each_digest_its_own_window() {
        let hook = hook(60, true);
        let events = [
            (0, "A"),
            (10, "A"),
            (20, "B"),
            (30, "A"),
            (61, "A"),
            (70, "B"),
            (81, "B"),
        ];
        assert_eq!(
            sent(&hook, &events),
            vec![
                (0, "A".into()),
                (20, "B".into()),
                (61, "A".into()),
                (81, "B".into())
            ]
        );
    }

    #[test]
    fn neither_admits_everything_and_touches_nothing() {
        let hook = hook(0, false);
        let store = Memory::default();
        assert!(admit(&store, &hook.controls(), &event("A"), 0).unwrap());
        assert!(admit(&store, &hook.controls(), &event("A"), 0).unwrap());
        assert!(store.is_empty());
    }

    #[test]
    fn workers_share_one_window() {
        // Two VMs, one store: what one worker sent snoozes the other.
        let hook = hook(60, false);
        let store = Memory::default();
        assert!(admit(&store, &hook.controls(), &event("a"), 0).unwrap());
        assert!(!admit(&store, &hook.controls(), &event("a"), 30_000).unwrap());
        assert!(admit(&store, &hook.controls(), &event("a"), 60_000).unwrap());
    }

    #[test]
    fn a_clock_stepping_back_ends_the_window() {
        let hook = hook(60, false);
        let store = Memory::default();
        assert!(admit(&store, &hook.controls(), &event("a"), 10_000_000).unwrap());
        assert!(!admit(&store, &hook.controls(), &event("a"), 10_030_000).unwrap());
        // The clock steps back an hour: the window does not last an hour longer.
        assert!(
            admit(
                &store,
                &hook.controls(),
                &event("a"),
                10_000_000 - 3_600_000
            )
            .unwrap()
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let hook = hook(60, true);
        let store = Memory::default();
        for n in 0..(MAX_ENTRIES * 3) {
            assert!(admit(&store, &hook.controls(), &event(&n.to_string()), 0).unwrap());
        }
        let (bytes, _) = store.get(&key(&hook.controls())).unwrap().unwrap();
        assert_eq!(bytes.len(), MAX_ENTRIES * ENTRY);
        assert_eq!(store.len(), 1);
        // The most recent ones are remembered.
        let last = (MAX_ENTRIES * 3 - 1).to_string();
        assert!(!admit(&store, &hook.controls(), &event(&last), 1_000).unwrap());
    }
}
