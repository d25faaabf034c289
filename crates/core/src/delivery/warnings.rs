//! The delivery warnings' throttle: at most one warning per hook per interval; the ones held
//! back are counted, and summarized once the interval has passed, so that a burst that ends is
//! still reported.

use std::rc::Rc;

#[derive(Debug, Clone, Default)]
struct Slot {
    /// When the last warning was written.
    last: Option<u64>,
    /// How many were held back since.
    held: u64,
    /// The hook's name, for the summary.
    name: Option<Rc<str>>,
}

/// One slot per hook.
#[derive(Debug)]
pub struct Warnings {
    interval_ms: u64,
    slots: Vec<Slot>,
}

impl Warnings {
    pub fn new(hooks: usize, interval_ms: u64) -> Self {
        Warnings {
            interval_ms,
            slots: vec![Slot::default(); hooks],
        }
    }

    /// Whether a warning written at `last` leaves the slot open at `now_ms`. A clock that
    /// stepped back opens it rather than silencing it.
    fn is_open(last: Option<u64>, now_ms: u64, interval_ms: u64) -> bool {
        last.is_none_or(|at| now_ms < at || now_ms - at >= interval_ms)
    }

    /// Whether a warning about hook `hook` (called `name`) may be written now; counts it as
    /// held back if not.
    pub fn allow(&mut self, hook: usize, name: &Rc<str>, now_ms: u64) -> bool {
        let interval = self.interval_ms;
        let open = self
            .slots
            .get(hook)
            .is_none_or(|slot| Self::is_open(slot.last, now_ms, interval));
        if let Some(slot) = self.slots.get_mut(hook) {
            if open {
                slot.last = Some(now_ms);
            } else {
                slot.held = slot.held.saturating_add(1);
                if slot.name.is_none() {
                    slot.name = Some(Rc::clone(name));
                }
            }
        }
        open
    }

    /// The hooks whose held-back warnings are due for a summary, by name, with their counts
    /// (reset).
    pub fn overdue(&mut self, now_ms: u64) -> Vec<(Rc<str>, u64)> {
        let mut due = Vec::new();
        let interval = self.interval_ms;
        for slot in &mut self.slots {
            if slot.held > 0 && Self::is_open(slot.last, now_ms, interval) {
                let name = slot.name.clone().unwrap_or_else(|| "?".into());
                due.push((name, std::mem::take(&mut slot.held)));
                slot.last = Some(now_ms);
            }
        }
        due
    }
}
