//! The core's metrics as the host's (`proxy_define_metric`, `proxy_increment_metric`): Envoy
//! shows them in `/stats` and `/stats/prometheus`, Kong (3.9 and later) through its Prometheus
//! plugin. Each name is defined once per VM, on first use; a host that refuses a metric costs
//! the metric, never the request.
//!
//! Changes are held, summed per name, and sent when the root context flushes them, at the
//! end of each of its callbacks ([`HostMetrics::flush`]): a request's log phase then makes no
//! metrics call (each is a call out of the VM), and Envoy's `/stats` shows them at most one
//! tick (`delivery.flush_interval_ms`) later. Past [`MAX_HELD`] names a change is sent at
//! once.
//!
//! Kong before 3.9 traps on these calls, so none is made until the host is known
//! ([`Known::metrics`]): changes until then are held (a bounded number of names), and sent
//! once the host is known to take them, or dropped. Kong also traps on an
//! increment of a gauge and on a name too long: there a gauge's level is kept here and recorded
//! (`proxy_record_metric`; Kong shows the level of the worker that changed it last), and a name
//! over Kong's limit is not defined.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::differences::{Host, Known};
use event_hooks_core::metrics::Metrics;

/// The most metric names held while the host is not known yet.
const MAX_HELD: usize = 4096;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

const OK: u32 = 0;
const COUNTER: u32 = 0;
const GAUGE: u32 = 1;

/// The host's metrics, with the ids of those defined so far (`None`: the host refused it).
pub struct HostMetrics {
    known: Rc<Known>,
    ids: RefCell<HashMap<String, Option<u32>>>,
    /// Changes made before the host was known: kind and sum, by name.
    held: RefCell<HashMap<String, (u32, i64)>>,
    /// Kong: each gauge's level in this worker, by id.
    levels: RefCell<HashMap<u32, i64>>,
}

impl HostMetrics {
    pub fn new(known: Rc<Known>) -> Self {
        HostMetrics {
            known,
            ids: RefCell::default(),
            held: RefCell::default(),
            levels: RefCell::default(),
        }
    }

    fn id(&self, kind: u32, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.try_borrow().ok()?.get(name) {
            return *id;
        }
        let mut id = 0u32;
        // SAFETY: the name pointer and length describe `name`, alive for the call; `id` is a
        // valid place for the host to write the new metric's id.
        let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
        let id = (status == OK).then_some(id);
        if let Ok(mut ids) = self.ids.try_borrow_mut() {
            ids.insert(name.to_string(), id);
        }
        id
    }

    fn add(&self, kind: u32, name: &str, delta: i64) {
        match self.known.metrics() {
            Some(true) => {
                if !self.hold(kind, name, delta) {
                    self.send(kind, name, delta);
                }
            }
            Some(false) => {
                if let Ok(mut held) = self.held.try_borrow_mut() {
                    held.clear();
                }
            }
            None => {
                self.hold(kind, name, delta);
            }
        }
    }

    fn send(&self, kind: u32, name: &str, delta: i64) {
        if !self.known.metric_name_fits(name) {
            return;
        }
        let Some(id) = self.id(kind, name) else {
            return;
        };
        if kind == GAUGE && self.known.host() == Some(Host::Kong) {
            let Ok(mut levels) = self.levels.try_borrow_mut() else {
                return;
            };
            let level = levels.entry(id).or_insert(0);
            *level = level.saturating_add(delta);
            // Kong keeps a gauge's level as an unsigned count; ours never go below zero.
            let value = u64::try_from(*level).unwrap_or(0);
            // SAFETY: no pointers. A refused record loses that change only.
            let _ = unsafe { proxy_record_metric(id, value) };
        } else {
            // SAFETY: no pointers. A refused increment loses that increment only.
            let _ = unsafe { proxy_increment_metric(id, delta) };
        }
    }

    /// Holds a change; `false` when it cannot be held (too many names).
    fn hold(&self, kind: u32, name: &str, delta: i64) -> bool {
        let Ok(mut held) = self.held.try_borrow_mut() else {
            return false;
        };
        if let Some((_, sum)) = held.get_mut(name) {
            *sum = sum.saturating_add(delta);
        } else if held.len() < MAX_HELD {
            held.insert(name.to_string(), (kind, delta));
        } else {
            return false;
        }
        true
    }

    /// Sends what is held, once the host is known to take it.
    fn release(&self) {
        let held = match self.held.try_borrow_mut() {
            Ok(mut held) if !held.is_empty() => std::mem::take(&mut *held),
            _ => return,
        };
        for (name, (kind, delta)) in held {
            self.send(kind, &name, delta);
        }
    }
}

impl Metrics for HostMetrics {
    fn count(&self, name: &str, delta: u64) {
        self.add(COUNTER, name, i64::try_from(delta).unwrap_or(i64::MAX));
    }

    fn gauge(&self, name: &str, delta: i64) {
        self.add(GAUGE, name, delta);
    }

    fn flush(&self) {
        if self.known.metrics() == Some(true) {
            self.release();
        }
    }
}
