//! Webhook ids: one per delivered event, unchanged across retries.
//!
//! Ids are UUIDv7 (RFC 9562): a 48-bit millisecond timestamp then 74 random bits, so they sort
//! by time and do not collide across workers. The generator is seeded once per VM from the
//! host's randomness; the clock is passed in.

/// Generates webhook ids.
pub struct IdGen {
    rng: fastrand::Rng,
}

impl IdGen {
    pub fn new(seed: u64) -> Self {
        IdGen {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// A new UUIDv7 for `now_ms` (unix milliseconds).
    pub fn next(&mut self, now_ms: u64) -> String {
        let random_a = self.rng.u64(..);
        let random_b = self.rng.u64(..);
        let time = now_ms & 0xffff_ffff_ffff;
        let version_and_rand = 0x7000 | (random_a & 0x0fff);
        let variant_and_rand = 0x8000 | ((random_a >> 12) & 0x3fff);
        let tail = random_b & 0xffff_ffff_ffff;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            time >> 16,
            time & 0xffff,
            version_and_rand,
            variant_and_rand,
            tail
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_uuid_v7_with_the_time_in_front() {
        let mut ids = IdGen::new(7);
        let id = ids.next(0x0190_1234_5678);
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("01901234-5678-7"), "{id}");
        let variant = id.chars().nth(19).unwrap();
        assert!("89ab".contains(variant), "{id}");
    }

    #[test]
    fn ids_are_unique() {
        let mut ids = IdGen::new(1);
        let all: HashSet<String> = (0..10_000).map(|_| ids.next(1_700_000_000_000)).collect();
        assert_eq!(all.len(), 10_000);
    }

    #[test]
    fn generators_with_different_seeds_differ() {
        assert_ne!(IdGen::new(1).next(5), IdGen::new(2).next(5));
    }
}
