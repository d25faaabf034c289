//! Dead letters: what the delivery pipeline gave up or dropped, sent to the hook that
//! `delivery.dead_letter` names as `event_hooks`/`dead_letter` events.

use super::Runtime;
use crate::delivery::DeadLetter;
use crate::event::Event;
use crate::hooks::HookSet;
use crate::ports::Ports;
use crate::source::Source;

impl Runtime {
    /// Sends the dead letters the last delivery step made to the dead-letter hook, as
    /// `event_hooks`/`dead_letter` events.
    pub(super) fn send_dead_letters(&self, ports: &Ports<'_>) {
        let letters = match self.delivery.try_borrow_mut() {
            Ok(mut delivery) => delivery.take_dead_letters(),
            Err(_) => return,
        };
        let Some(target) = self.dead_letter else {
            return;
        };
        for letter in letters {
            let event = dead_letter_event(&self.hooks, &letter);
            self.count_emitted(Source::EVENT_HOOKS);
            let actions = match self.ids.try_borrow_mut() {
                Ok(mut ids) => self.hooks.route_to(
                    target,
                    &event,
                    ports.now_ms(),
                    self.store.as_ref(),
                    &mut ids,
                ),
                Err(_) => continue,
            };
            self.act(actions, true, ports);
        }
    }
}

/// A dead letter as the dead-letter hook sees it: `hook`, `webhook_id`, `attempts`,
/// `last_status`, `last_error`, `event` (the body the delivery carried: JSON when it was; a
/// batch's array) and `events` (how many it carried).
fn dead_letter_event(hooks: &HookSet, letter: &DeadLetter) -> Event {
    let body = serde_json::from_slice::<serde_json::Value>(&letter.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&letter.body).into_owned())
    });
    let mut data = serde_json::Map::new();
    data.insert("hook".into(), hooks.name(letter.hook).into());
    data.insert("webhook_id".into(), letter.webhook_id.clone().into());
    data.insert("attempts".into(), letter.attempts.into());
    data.insert(
        "last_status".into(),
        letter
            .last_status
            .map_or(serde_json::Value::Null, Into::into),
    );
    data.insert("last_error".into(), letter.last_error.clone().into());
    data.insert("event".into(), body);
    data.insert("events".into(), letter.events.into());
    Event::new(Source::EVENT_HOOKS, "dead_letter", data)
}
