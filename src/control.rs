//! `snooze` and `on_change`, with Kong's exact semantics.
//!
//! Key = (hook, source, event). Digest = a hash of the event's `unique` fields, or of the whole
//! data (as the hook sees it) when the event has none.
//!
//! * `snooze = N` alone: the first event is sent, and every event with the same key is dropped
//!   for N seconds from that first one, whatever its content (a fixed window, not a debounce).
//! * `on_change` alone: an event whose digest equals the last one sent is dropped.
//! * both: each distinct digest gets its own N-second window; different data goes through.
//!
//! This state is per VM (per worker). Memory is bounded: at most [`MAX_KEYS`] keys and
//! [`MAX_DIGESTS`] windows per key; expired windows are pruned first, then the oldest.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{Event, lookup};
use crate::hooks::Hook;

/// The most (hook, event) keys remembered (a configuration has at most 10,000 hooks).
pub const MAX_KEYS: usize = 65_536;
/// The most per-digest windows remembered per key (snooze with on_change).
pub const MAX_DIGESTS: usize = 1_024;

#[derive(Debug, Default)]
struct KeyState {
    /// Snooze alone: when the current window started.
    window_start: Option<u64>,
    /// on_change alone: the digest last sent.
    last_digest: Option<u64>,
    /// Both: digest -> when its window started.
    windows: HashMap<u64, u64>,
}

/// The controls' state of one VM.
#[derive(Debug, Default)]
pub struct Controls {
    keys: HashMap<(usize, String), KeyState>,
}

impl Controls {
    /// Whether `event` may go through `hook` (at index `index`) at `now_ms`; records it if so.
    pub fn admit(&mut self, index: usize, hook: &Hook, event: &Event, now_ms: u64) -> bool {
        if hook.snooze == 0 && !hook.on_change {
            return true;
        }
        let window_ms = hook.snooze.saturating_mul(1_000);
        let key = (index, event.name.clone());
        if !self.keys.contains_key(&key) && self.keys.len() >= MAX_KEYS {
            // Forget everything rather than grow: at worst one extra event goes through.
            self.keys.clear();
        }
        let state = self.keys.entry(key).or_default();
        if !hook.on_change {
            return match state.window_start {
                Some(start) if within(start, now_ms, window_ms) => false,
                _ => {
                    state.window_start = Some(now_ms);
                    true
                }
            };
        }
        let digest = digest(event, hook);
        if hook.snooze == 0 {
            if state.last_digest == Some(digest) {
                return false;
            }
            state.last_digest = Some(digest);
            return true;
        }
        if let Some(&start) = state.windows.get(&digest) {
            if within(start, now_ms, window_ms) {
                return false;
            }
        }
        if state.windows.len() >= MAX_DIGESTS && !state.windows.contains_key(&digest) {
            state
                .windows
                .retain(|_, start| within(*start, now_ms, window_ms));
            if state.windows.len() >= MAX_DIGESTS {
                if let Some(oldest) = state
                    .windows
                    .iter()
                    .min_by_key(|(_, start)| **start)
                    .map(|(digest, _)| *digest)
                {
                    state.windows.remove(&oldest);
                }
            }
        }
        state.windows.insert(digest, now_ms);
        true
    }
}

/// Whether `now_ms` falls in the window of `window_ms` that began at `start`. A clock that
/// stepped back before the start ends the window rather than stretching it.
fn within(start: u64, now_ms: u64, window_ms: u64) -> bool {
    now_ms >= start && now_ms - start < window_ms
}

/// A stable digest of the event as the hook sees it: its unique fields, or all of its data.
fn digest(event: &Event, hook: &Hook) -> u64 {
    let unique = event
        .source
        .event(&event.name)
        .map_or(&[][..], |spec| spec.unique);
    let subject = if unique.is_empty() {
        event.data_for(&hook.redaction)
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
    let bytes = serde_json::to_vec(&subject).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash.iter()
        .take(8)
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
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
        Event::new(Source::Traffic, "request", data)
    }

    /// Which of `events` (seconds, tag) go through.
    fn sent(hook: &Hook, events: &[(u64, &str)]) -> Vec<(u64, String)> {
        let mut controls = Controls::default();
        events
            .iter()
            .filter(|(at, tag)| controls.admit(0, hook, &event(tag), at * 1_000))
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
    fn a_clock_stepping_back_ends_the_window() {
        let hook = hook(60, false);
        let mut controls = Controls::default();
        assert!(controls.admit(0, &hook, &event("a"), 10_000_000));
        assert!(!controls.admit(0, &hook, &event("a"), 10_030_000));
        // The clock steps back an hour: the window does not last an hour longer.
        assert!(controls.admit(0, &hook, &event("a"), 10_000_000 - 3_600_000));
    }

    #[test]
    fn neither_admits_everything() {
        let hook = hook(0, false);
        assert_eq!(sent(&hook, &[(0, "A"), (0, "A")]).len(), 2);
    }

    #[test]
    fn memory_is_bounded() {
        let hook = hook(60, true);
        let mut controls = Controls::default();
        for n in 0..(MAX_DIGESTS * 3) {
            assert!(controls.admit(0, &hook, &event(&n.to_string()), 0));
        }
        let state = controls.keys.values().next().unwrap();
        assert!(state.windows.len() <= MAX_DIGESTS);
        for n in 0..(MAX_KEYS + 10) {
            controls.admit(n, &hook, &event("x"), 0);
        }
        assert!(controls.keys.len() <= MAX_KEYS);
    }
}
