//! When to try a failed delivery again: exponential backoff with full jitter, honouring the
//! receiver's `Retry-After`, bounded by a number of attempts and an age.
//!
//! Attempt `n` (1 for the first retry) waits a uniformly random time in
//! `[0, min(max_backoff_ms, backoff_ms * 4^(n-1))]` ("full jitter"), or the receiver's
//! `Retry-After` when that is later. A delivery is given up when it has made `max_attempts`
//! attempts, or when its next attempt would start more than `max_age_ms` after it was
//! accepted. With the defaults (5 attempts, 10 s growing fourfold to at most 5 min, 10 min in
//! all) the retries fall within about 8 minutes.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, whole_entry};

use crate::reader::{Object, Problems, Whole};

pub const KEYS: &[&str] = &["max_attempts", "max_age_ms", "backoff_ms", "max_backoff_ms"];
pub const MAX_ATTEMPTS: Whole = Whole::new("max_attempts", 1, 100);
pub const MAX_AGE_MS: Whole = Whole::new("max_age_ms", 1_000, 86_400_000);
pub const BACKOFF_MS: Whole = Whole::new("backoff_ms", 1, 3_600_000);
pub const MAX_BACKOFF_MS: Whole = Whole::new("max_backoff_ms", 1, 86_400_000);

/// The retry policy (`delivery.retry`, or a hook's `config.retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// The longest a delivery may wait from its acceptance to its last attempt.
    pub max_age_ms: u64,
    /// The jitter window of the first retry; it grows fourfold with each retry.
    pub backoff_ms: u64,
    /// The largest jitter window.
    pub max_backoff_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_attempts: 5,
            max_age_ms: 600_000,
            backoff_ms: 10_000,
            max_backoff_ms: 300_000,
        }
    }
}

impl Settings {
    /// Reads the global `delivery.retry`.
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
        let settings = Overrides::parse(value, path, problems)?.apply(&Settings::default());
        settings.check(path, problems);
        Some(settings)
    }

    /// Reports a policy whose windows cannot work.
    pub fn check(&self, path: &str, problems: &Problems) {
        if self.max_backoff_ms < self.backoff_ms {
            problems.add(
                &crate::reader::child(path, "max_backoff_ms"),
                "must not be less than backoff_ms",
            );
        }
    }

    /// The upper bound of the wait before retry `retry` (1 for the first).
    pub fn window_ms(&self, retry: u32) -> u64 {
        let growth = 4u64.saturating_pow(retry.saturating_sub(1));
        self.backoff_ms
            .saturating_mul(growth)
            .min(self.max_backoff_ms)
    }

    /// When to make attempt `attempts + 1`, after `attempts` attempts of a delivery accepted
    /// at `accepted_ms`, now `now_ms`, with the receiver's `retry_after_ms` if it sent one;
    /// `None` when the delivery is out of attempts or of time.
    pub fn next(
        &self,
        attempts: u32,
        accepted_ms: u64,
        now_ms: u64,
        retry_after_ms: Option<u64>,
        rng: &mut fastrand::Rng,
    ) -> Option<u64> {
        if attempts >= self.max_attempts {
            return None;
        }
        let jitter = rng.u64(0..=self.window_ms(attempts));
        let wait = jitter.max(retry_after_ms.unwrap_or(0));
        let at = now_ms.saturating_add(wait);
        (at.saturating_sub(accepted_ms) <= self.max_age_ms).then_some(at)
    }
}

/// A hook's `config.retry`: what it changes of the global policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub max_attempts: Option<u32>,
    pub max_age_ms: Option<u64>,
    pub backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
}

impl Overrides {
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<Overrides> {
        let object = Object::new(value, path, KEYS, problems)?;
        let number = |spec: Whole| object.get(spec.key).map(|_| object.whole(spec, spec.min));
        Some(Overrides {
            max_attempts: number(MAX_ATTEMPTS).and_then(|n| u32::try_from(n).ok()),
            max_age_ms: number(MAX_AGE_MS),
            backoff_ms: number(BACKOFF_MS),
            max_backoff_ms: number(MAX_BACKOFF_MS),
        })
    }

    /// `base` with these values over it.
    pub fn apply(&self, base: &Settings) -> Settings {
        Settings {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            max_age_ms: self.max_age_ms.unwrap_or(base.max_age_ms),
            backoff_ms: self.backoff_ms.unwrap_or(base.backoff_ms),
            max_backoff_ms: self.max_backoff_ms.unwrap_or(base.max_backoff_ms),
        }
    }
}

/// The wait a `Retry-After` value asks for, in milliseconds: seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, relative to `now_ms`). `None` when it says nothing usable.
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1_000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = u64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(at_ms.saturating_sub(now_ms))
}

/// The HTTP date of `unix_ms` (for tests and messages).
pub fn http_date(unix_ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(unix_ms))
}

#[cfg(feature = "schema")]
/// The JSON Schema of a `retry` object at `at`.
pub fn schema(parts: &Parts, at: &str) -> Value {
    Value::Object(parts.object(
        at,
        &[KEYS],
        vec![
            whole_entry(MAX_ATTEMPTS),
            whole_entry(MAX_AGE_MS),
            whole_entry(BACKOFF_MS),
            whole_entry(MAX_BACKOFF_MS),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_jitter_window_grows_fourfold_to_the_cap() {
        let settings = Settings::default();
        let windows: Vec<u64> = (1..=6).map(|retry| settings.window_ms(retry)).collect();
        assert_eq!(
            windows,
            vec![10_000, 40_000, 160_000, 300_000, 300_000, 300_000]
        );
        assert_eq!(settings.window_ms(200), 300_000);
    }

    #[test]
    fn full_jitter_stays_within_its_window_and_spreads_over_it() {
        let settings = Settings::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for retry in 1..5 {
            let window = settings.window_ms(retry);
            let waits: Vec<u64> = (0..2_000)
                .map(|_| settings.next(retry, 0, 0, None, &mut rng).unwrap())
                .collect();
            assert!(waits.iter().all(|wait| *wait <= window), "retry {retry}");
            // Spread over the window: some early, some late.
            assert!(
                waits.iter().any(|wait| *wait < window / 10),
                "retry {retry}"
            );
            assert!(
                waits.iter().any(|wait| *wait > window * 9 / 10),
                "retry {retry}"
            );
        }
    }

    #[test]
    fn attempts_and_age_bound_the_retries() {
        let settings = Settings::default();
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(settings.next(5, 0, 0, None, &mut rng), None);
        assert!(settings.next(4, 0, 0, None, &mut rng).is_some());
        // Past the age: out of time, whatever the attempts.
        assert_eq!(settings.next(1, 0, 600_001, None, &mut rng), None);
        // A Retry-After that lands beyond the age ends it too.
        assert_eq!(settings.next(1, 0, 100_000, Some(600_000), &mut rng), None);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let settings = Settings {
            backoff_ms: 10,
            max_backoff_ms: 10,
            ..Settings::default()
        };
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            assert_eq!(
                settings.next(1, 0, 1_000, Some(2_000), &mut rng),
                Some(3_000)
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after_ms("2", now), Some(2_000));
        assert_eq!(retry_after_ms(" 120 ", now), Some(120_000));
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30_000)
        );
        assert_eq!(retry_after_ms(&http_date(now + 5_000), now), Some(5_000));
        // A date in the past asks for no wait.
        assert_eq!(
            retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(retry_after_ms("soon", now), None);
        assert_eq!(retry_after_ms("-1", now), None);
    }

    #[test]
    fn overrides_change_only_what_they_set() {
        let problems = Problems::default();
        let overrides = Overrides::parse(&json!({"max_attempts": 2}), "retry", &problems).unwrap();
        let base = Settings {
            backoff_ms: 7,
            ..Settings::default()
        };
        assert_eq!(
            overrides.apply(&base),
            Settings {
                max_attempts: 2,
                ..base
            }
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn settings() {
        let problems = Problems::default();
        let parsed = Settings::parse(
            &json!({"max_attempts": 3, "backoff_ms": 100, "max_backoff_ms": 50}),
            "retry",
            &problems,
        )
        .unwrap();
        assert_eq!((parsed.max_attempts, parsed.max_age_ms), (3, 600_000));
        assert_eq!(
            problems.messages(),
            vec!["retry.max_backoff_ms: must not be less than backoff_ms"]
        );
        let problems = Problems::default();
        Settings::parse(&json!({"max_attempts": 0, "tries": 1}), "retry", &problems);
        assert_eq!(
            problems.messages(),
            vec![
                "retry.tries: unknown field; expected one of: max_attempts, max_age_ms, backoff_ms, max_backoff_ms",
                "retry.max_attempts: must be between 1 and 100",
            ]
        );
    }
}
