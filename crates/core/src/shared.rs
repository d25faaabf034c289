//! State shared by every worker of the proxy: proxy-wasm shared data, a process-wide key-value
//! store where every value carries a compare-and-swap token.
//!
//! The core reads and writes it through [`Shared`]; the host adapter implements it with
//! `proxy_get_shared_data`/`proxy_set_shared_data`, and [`Memory`] implements the hosts'
//! semantics for tests. [`update`] is the read-modify-write loop every user goes through: it
//! re-reads and retries when another worker wrote in between, so a decision (such as "this
//! host just turned unhealthy") is taken exactly once across workers.
//!
//! A key that does not exist yet is created unconditionally (hosts ignore the token for a new
//! key): two workers creating the same key at the same instant may lose one write. Entries are
//! never removed (the ABI has no delete), so every user bounds its number of keys.

pub use crate::ports::{Shared, Written};

use std::cell::RefCell;
use std::collections::HashMap;

/// Every key the filter writes starts with this namespace. On Kong, ngx_wasm_module stores a key
/// `ns/rest` in the `shm_kv` zone named `ns` when one exists (else in the default zone `*`), so
/// `nginx_wasm_shm_kv_event_hooks = 12m` gives the filter a zone of its own.
pub const NAMESPACE: &str = "event_hooks/";

/// How often [`update`] retries after losing a race.
pub const MAX_TRIES: usize = 16;

/// One store for several users (tests give two runtimes, as two workers, the same store).
impl<T: Shared + ?Sized> Shared for std::rc::Rc<T> {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        (**self).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<Written, String> {
        (**self).set(key, value, cas)
    }
}

/// What an [`update`] step decides.
pub enum Change<T> {
    /// Leave the value as it is.
    Keep(T),
    /// Write this value (if nobody wrote in between; else the step runs again).
    Write(Vec<u8>, T),
}

/// Reads `key`, lets `step` decide from the current value, and writes its answer with
/// compare-and-swap, retrying from a fresh read when another worker wrote in between.
pub fn update<T>(
    store: &dyn Shared,
    key: &str,
    mut step: impl FnMut(Option<&[u8]>) -> Change<T>,
) -> Result<T, String> {
    for _ in 0..MAX_TRIES {
        let current = store.get(key)?;
        let (value, cas) = match &current {
            Some((value, cas)) => (Some(value.as_slice()), Some(*cas)),
            None => (None, None),
        };
        match step(value) {
            Change::Keep(result) => return Ok(result),
            Change::Write(bytes, result) => match store.set(key, &bytes, cas)? {
                Written::Ok => return Ok(result),
                Written::Conflict => continue,
            },
        }
    }
    Err(format!(
        "shared key {key} kept changing under {MAX_TRIES} tries"
    ))
}

/// An in-memory store with the hosts' semantics, for tests and native use: tokens increase
/// on every write; a conditional write to an existing key fails on a stale token; a write to a
/// new key always succeeds.
#[derive(Debug, Default)]
pub struct Memory {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: RefCell<u32>,
}

impl Memory {
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl Shared for Memory {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<Written, String> {
        let mut entries = self.entries.borrow_mut();
        if let (Some((_, current)), Some(expected)) = (entries.get(key), cas) {
            if *current != expected {
                return Ok(Written::Conflict);
            }
        }
        let mut next = self.next_cas.borrow_mut();
        *next = next.wrapping_add(1).max(1);
        entries.insert(key.to_string(), (value.to_vec(), *next));
        Ok(Written::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn counter(store: &dyn Shared) -> u32 {
        update(store, "n", |value| {
            let n = value
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, u32::from_le_bytes);
            Change::Write((n + 1).to_le_bytes().to_vec(), n + 1)
        })
        .unwrap()
    }

    #[test]
    fn updates_count() {
        let store = Memory::default();
        assert_eq!(counter(&store), 1);
        assert_eq!(counter(&store), 2);
        assert_eq!(store.len(), 1);
    }

    /// A store where another "worker" writes once between our read and our write.
    struct Racy {
        inner: Memory,
        raced: Cell<bool>,
    }

    impl Shared for Racy {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<Written, String> {
            if !self.raced.replace(true) {
                self.inner.set(key, &5u32.to_le_bytes(), None)?;
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn a_lost_race_is_retried_from_a_fresh_read() {
        let store = Racy {
            inner: Memory::default(),
            raced: Cell::new(false),
        };
        store.inner.set("n", &1u32.to_le_bytes(), None).unwrap();
        // Our first write loses to the other worker's 5; the retry reads 5 and writes 6.
        assert_eq!(counter(&store), 6);
    }

    #[test]
    fn keep_writes_nothing() {
        let store = Memory::default();
        assert_eq!(update(&store, "k", |_| Change::Keep(7)), Ok(7));
        assert!(store.is_empty());
    }

    #[test]
    fn endless_contention_gives_up_with_an_error() {
        struct AlwaysConflict;
        impl Shared for AlwaysConflict {
            fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
                Ok(Some((vec![], 1)))
            }
            fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<Written, String> {
                Ok(Written::Conflict)
            }
        }
        let result = update(&AlwaysConflict, "k", |_| Change::Write(vec![1], ()));
        assert!(result.unwrap_err().contains("kept changing"));
    }
}
