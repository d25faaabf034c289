//! Delivery: the per-VM pipeline that carries each call a handler prepared to its destination,
//! with retries, circuit breakers, dead letters and their accounting.
//!
//! ## The words
//!
//! * A [`Call`] is the HTTP call a handler prepared for one event and one hook: destination,
//!   method, path, headers, body. It never changes (a batch is a new call, its members'
//!   bodies in a JSON array).
//! * A [`Delivery`] carries one call for one hook from its acceptance to its end (delivered,
//!   given up or dropped): its webhook id, its attempts, its last answer, and the hook's
//!   [`Policy`] (name, signing, retry, batching), so that no stage needs the hooks. The
//!   per-hook counters count the events it carries (one, or a batch's).
//! * An [`Attempt`] is one try of a delivery's call, exactly as the host sends it: the call's
//!   headers, then `user-agent`, `webhook-id`, `webhook-timestamp` and the signatures of that
//!   moment ([`Call::attempt`]).
//! * A [`DeadLetter`] is what is left of a delivery given up or dropped.
//!
//! ## The stages, one module each
//!
//! ```text
//! accept --> batch --> queue --> breaker, destination limit --> in flight --> outcome
//!   |                  ^  ^               |                                    |
//!   |                  |  +-- held back --+                                    +--> delivered
//!   |                  +------- due ------- schedule <---------- retry --------+
//!   |                                          | full                          +--> given up --+
//!   +--> dropped (hook gone, queue full, bytes) <-+                                            |
//!          |  (but after a 410)                                                                |
//!          +-------------------------> dead letters <------------------------------------------+
//! ```
//!
//! * [`call`] holds the call, the attempt and the host's [`Transport`]; [`unit`](mod@unit) the delivery
//!   and its policy. Every stage below moves deliveries.
//! * [`batch`] (with [`batching`], the limits a hook batches with): between acceptance and the queue: a hook that batches keeps its events in
//!   one open batch, closed on size, bytes or delay into one delivery (one call, one webhook
//!   id) that counts as the events it holds; other hooks' deliveries pass straight through.
//! * [`queue`]: deliveries ready to send, in order, at most `queue_size` new ones.
//! * [`in_flight`]: the calls under way, by the host's token, at most `max_in_flight` (and
//!   what [`Transport::has_room`] allows) and `max_in_flight_per_destination`, each with a
//!   deadline for hosts that never answer.
//! * [`outcome`]: what an answer means: delivered (2xx), retried (408, 425, 429, 5xx, no
//!   answer), the end of the hook (410) or a failure.
//! * [`schedule`]: the retries waiting, at most `max_pending_retries`, each due when the
//!   [`retry`] policy says (backoff with full jitter, `Retry-After`, `max_attempts`,
//!   `max_age_ms`).
//! * [`breaker`]: a circuit breaker per destination; a destination that cannot take a call
//!   now holds its deliveries in place, without holding up the others.
//! * [`accounting`]: the per-hook counters, the drops, the byte budget (`max_queue_bytes`,
//!   counted over the queue, the retries and the calls in flight) and the gauges.
//! * [`dead_letter`]: the dead letters waiting for the runtime, which sends them to the hook
//!   named by `delivery.dead_letter`; a dead letter's own delivery never makes another.
//! * [`warnings`]: at most one warning per hook per second, the rest summarized.
//!
//! [`Pipeline`] (this module) joins them. HTTP contexts hand deliveries to
//! [`Pipeline::accept`] in `on_log`. Only the root context sends: [`Pipeline::pump`] from
//! `on_tick` (and, where the host allows it, after an answer), and [`Pipeline::complete`] from
//! `on_http_call_response`, each with the callback's [`Ports`] (clock, log, metrics); the
//! host's HTTP callout is behind [`Transport`], so all of this is tested natively. The stage
//! modules import none of each other (only [`unit`](mod@unit), [`call`] and the [`retry`]
//! policy), nor this module: only it joins them. A stage takes only what it uses: the time as
//! a value, the metrics ([`accounting`]), or the [`Ports`] ([`breaker`], which logs and
//! gauges).
//!
//! Every buffer is bounded: the queue (`queue_size` new deliveries, plus the retries due and
//! the held ones put back), the byte budget, the calls in flight, the retries waiting, the
//! breakers ([`breaker::MAX_DESTINATIONS`]) and the dead letters
//! ([`dead_letter::MAX_DEAD_LETTERS`]). When one is full, the newest delivery is dropped,
//! counted by reason, and (but after a 410) made a dead letter.
//!
//! Per hook, at any moment, in events: `accepted = delivered + failed + dropped + pending`.

pub mod accounting;
pub mod batch;
pub mod batching;
pub mod breaker;
pub mod call;
pub mod dead_letter;
pub mod in_flight;
pub mod outcome;
pub mod queue;
pub mod retry;
pub mod schedule;
pub mod unit;
pub mod warnings;

use std::rc::Rc;

use crate::log::Level;
use crate::metrics::Metrics;
use crate::ports::Ports;
use accounting::{Accounts, Ending, Levels};
use batch::{Batches, Ready};
use breaker::Breakers;
use dead_letter::DeadLetters;
use in_flight::InFlight;
use outcome::Outcome;
use queue::Queue;
use schedule::{Planned, Schedule};
use warnings::Warnings;

pub use accounting::{DropReason, HookStats};
pub use call::{Attempt, Call, Destination, SendError, Transport};
pub use dead_letter::DeadLetter;
pub use in_flight::ANSWER_GRACE_MS;
pub use outcome::{EXCERPT_BYTES, Response, excerpt};
pub use unit::{Delivery, Policy};

/// `delivery` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Deliveries waiting to be sent, per VM (per worker).
    pub queue_size: usize,
    /// Payload bytes held by queued, waiting and in-flight deliveries, per VM.
    pub max_queue_bytes: usize,
    /// Calls in flight at once, per VM.
    pub max_in_flight: usize,
    /// Calls in flight at once to one destination, per VM.
    pub max_in_flight_per_destination: usize,
    /// Deliveries waiting for their next attempt, per VM.
    pub max_pending_retries: usize,
    /// How long the host waits for an answer.
    pub timeout_ms: u64,
    /// How often the root context sends what is queued.
    pub flush_interval_ms: u64,
    pub retry: retry::Settings,
    pub breaker: breaker::Settings,
    /// The hook dead letters go to.
    pub dead_letter: Option<String>,
    /// `delivery.batch`: how `webhook` hooks without their own `config.batch` batch.
    pub batch: Option<batching::Settings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_size: 10_000,
            max_queue_bytes: 32 * 1024 * 1024,
            max_in_flight: 64,
            max_in_flight_per_destination: 16,
            max_pending_retries: 10_000,
            timeout_ms: 5_000,
            flush_interval_ms: 100,
            retry: retry::Settings::default(),
            breaker: breaker::Settings::default(),
            dead_letter: None,
            batch: None,
        }
    }
}

impl Ready {
    /// The delivery to queue, a batch counted as one.
    fn counted(self, accounts: &mut Accounts, metrics: &dyn Metrics) -> Delivery {
        match self {
            Ready::Alone(delivery) => delivery,
            Ready::Batch(batch) => {
                accounts.batched(batch.hook, batch.name(), batch.events, metrics);
                batch
            }
        }
    }
}

/// How long a warning about a hook silences the next ones.
const WARNING_INTERVAL_MS: u64 = 1_000;

/// The delivery pipeline of one VM.
pub struct Pipeline {
    settings: Settings,
    batches: Batches,
    queue: Queue,
    schedule: Schedule,
    in_flight: InFlight,
    breakers: Breakers,
    /// Hooks whose endpoint answered 410 Gone.
    gone: Vec<bool>,
    accounts: Accounts,
    warnings: Warnings,
    dead_letters: DeadLetters,
}

impl Pipeline {
    pub fn new(settings: Settings, hooks: usize, seed: u64) -> Self {
        Pipeline {
            batches: Batches::new(settings.batch, hooks, seed.rotate_left(29) ^ 0x5eed_ba7c),
            queue: Queue::new(settings.queue_size),
            schedule: Schedule::new(settings.max_pending_retries, seed),
            in_flight: InFlight::new(
                settings.max_in_flight,
                settings.max_in_flight_per_destination,
                settings.timeout_ms,
            ),
            breakers: Breakers::new(settings.breaker),
            gone: vec![false; hooks],
            accounts: Accounts::new(hooks),
            warnings: Warnings::new(hooks, WARNING_INTERVAL_MS),
            dead_letters: DeadLetters::new(settings.dead_letter.is_some()),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Deliveries waiting to be sent now.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Events waiting in open batches.
    pub fn batching(&self) -> usize {
        self.batches.events()
    }

    /// Deliveries waiting for their next attempt.
    pub fn pending_retries(&self) -> usize {
        self.schedule.len()
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Payload bytes held by queued, waiting and in-flight deliveries.
    pub fn bytes(&self) -> usize {
        self.accounts.bytes()
    }

    /// Whether call `token` is one of this pipeline's.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.owns(token)
    }

    pub fn stats(&self) -> &[HookStats] {
        self.accounts.stats()
    }

    /// Drops so far, by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.accounts.drops()
    }

    /// Destinations whose breaker is open or half-open.
    pub fn breakers(&self) -> impl Iterator<Item = (&str, breaker::State)> {
        self.breakers.not_closed()
    }

    /// The pipeline's state as the admin status shows it (`queue`): its stages' levels, the
    /// drops by reason, and the destinations whose breaker is not closed.
    pub fn status(&self) -> serde_json::Value {
        let drops: serde_json::Map<String, serde_json::Value> = self
            .drops()
            .map(|(reason, count)| (reason.name().to_string(), count.into()))
            .collect();
        let breakers: serde_json::Map<String, serde_json::Value> = self
            .breakers()
            .map(|(destination, state)| {
                let state = match state {
                    breaker::State::Open { .. } => "open",
                    _ => "half-open",
                };
                (destination.to_string(), state.into())
            })
            .collect();
        serde_json::json!({
            "depth": self.depth(), "batching": self.batching(), "in_flight": self.in_flight(),
            "bytes": self.bytes(), "retries_pending": self.pending_retries(),
            "drops": drops, "breakers": breakers,
        })
    }

    /// The dead letters made since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.dead_letters.take()
    }

    /// Queues `delivery`. When the queue is full (by count or bytes), or the hook's endpoint is
    /// gone, the delivery (the newest) is dropped and counted.
    pub fn accept(&mut self, delivery: Delivery, ports: &Ports<'_>) -> bool {
        self.accounts.accepted(&delivery);
        let reason = if self.gone.get(delivery.hook).copied().unwrap_or(false) {
            Some(DropReason::Gone)
        } else if self.queue.is_full() {
            Some(DropReason::QueueFull)
        } else if self.accounts.bytes() > self.settings.max_queue_bytes {
            Some(DropReason::QueueBytes)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.drop_delivery(delivery, reason, ports);
            return false;
        }
        let (queue, accounts) = (&mut self.queue, &mut self.accounts);
        self.batches.add(delivery, &mut |ready| {
            queue.push(ready.counted(accounts, ports.metrics));
        });
        true
    }

    /// Closes every open batch now (the host is stopping the filter: what is batched is sent
    /// while it drains).
    pub fn close_batches(&mut self, ports: &Ports<'_>) {
        self.close_due(ports.now_ms(), true, ports);
    }

    /// Queues the batches whose wait is over at `now_ms` (every open batch, when `all`).
    fn close_due(&mut self, now_ms: u64, all: bool, ports: &Ports<'_>) {
        let (queue, accounts) = (&mut self.queue, &mut self.accounts);
        self.batches.close_due(now_ms, all, &mut |ready| {
            queue.push(ready.counted(accounts, ports.metrics));
        });
    }

    /// Sends queued deliveries, in order, while fewer than `max_in_flight` calls are under way
    /// and the transport has room; the retries that are due go first. A destination that
    /// cannot take a call now (its breaker open, its own limit reached, the host busy or
    /// overloaded) is skipped for the rest of this round; its deliveries keep their place.
    pub fn pump(&mut self, ports: &Ports<'_>, transport: &mut dyn Transport) {
        let now_ms = ports.now_ms();
        self.close_due(now_ms, false, ports);
        self.queue.put_back(self.schedule.take_due(now_ms));
        self.expire_calls(ports);
        let mut held: Vec<Delivery> = Vec::new();
        let mut blocked: Vec<String> = self.in_flight.overloaded().to_vec();
        while !self.in_flight.is_full() && transport.has_room() {
            let Some(mut delivery) = self.queue.pop() else {
                break;
            };
            let max_age_ms = delivery.policy.retry_over(&self.settings.retry).max_age_ms;
            if now_ms.saturating_sub(delivery.accepted_ms) > max_age_ms {
                delivery.last_error = Some(format!(
                    "{} (and could not be sent within max_age_ms {max_age_ms})",
                    delivery.last_error.as_deref().unwrap_or("waited"),
                ));
                self.give_up(delivery, ports);
                continue;
            }
            let call = Rc::clone(&delivery.call);
            let destination = call.destination.cluster.as_str();
            if blocked.iter().any(|name| name == destination) {
                held.push(delivery);
                continue;
            }
            if self.in_flight.is_full_for(destination) || !self.breakers.allow(destination, now_ms)
            {
                blocked.push(destination.to_string());
                held.push(delivery);
                continue;
            }
            let attempt = call.attempt(
                &delivery.webhook_id,
                now_ms / 1000,
                &delivery.policy.signing,
            );
            match transport.send(&attempt, self.settings.timeout_ms) {
                Ok(token) => {
                    delivery.attempts = delivery.attempts.saturating_add(1);
                    self.accounts.attempted(ports.metrics);
                    if let Some(mut previous) = self.in_flight.start(token, delivery, now_ms) {
                        // A host reusing a live token: the earlier call's answer is lost.
                        previous.last_error = Some("the host reused its call token".into());
                        self.give_up(previous, ports);
                    }
                }
                Err(SendError::Busy(why)) => {
                    self.breakers.release(destination);
                    let name = delivery.name();
                    self.warn(&delivery, ports, || {
                        format!(
                            "hook {name}: cluster {destination} cannot take a call now ({why}: its circuit breaker is open or it has no healthy host); deliveries wait"
                        )
                    });
                    blocked.push(destination.to_string());
                    held.push(delivery);
                }
                Err(SendError::Refused(why)) => {
                    self.breakers.release(destination);
                    delivery.last_error = Some(format!(
                        "the host refused the call to cluster {destination} ({why}); is the cluster defined?"
                    ));
                    self.give_up(delivery, ports);
                }
            }
        }
        self.queue.put_back(held);
    }

    /// Completes as unanswered every call still waiting past its deadline (see [`in_flight`]).
    fn expire_calls(&mut self, ports: &Ports<'_>) {
        for token in self.in_flight.expired(ports.now_ms()) {
            let detail = format!(
                "the host gave no answer within timeout_ms {} + {ANSWER_GRACE_MS} ms",
                self.settings.timeout_ms
            );
            let response = Response::NoAnswer(Some(detail));
            self.complete(token, response, b"", None, ports);
        }
    }

    /// Records the host's answer for call `token`: the start of its body (for a failure's log
    /// line) and its `Retry-After`. Unknown tokens are ignored.
    pub fn complete(
        &mut self,
        token: u32,
        response: Response,
        body: &[u8],
        retry_after: Option<&str>,
        ports: &Ports<'_>,
    ) {
        let Some(mut delivery) = self.in_flight.finish(token) else {
            return;
        };
        let destination = delivery.destination().to_string();
        if response == Response::Overloaded {
            delivery.attempts = delivery.attempts.saturating_sub(1);
            self.breakers.release(&destination);
            let name = delivery.name();
            self.warn(&delivery, ports, || {
                format!("hook {name}: cluster {destination} is overloaded (its circuit breaker overflowed); deliveries wait")
            });
            self.in_flight.overloaded_until_tick(destination);
            self.queue.put_back_one(delivery);
            return;
        }
        if let Response::Status(status) = response {
            delivery.last_status = Some(status);
        }
        delivery.last_error = Some(outcome::describe(&response, body));
        match outcome::classify(&response) {
            Outcome::Delivered => {
                self.breakers.record_success(&destination, ports);
                self.accounts
                    .ended(&delivery, Ending::Delivered, ports.metrics);
                ports.log.log(
                    Level::Debug,
                    &format!(
                        "hook {}: delivered webhook-id {} (attempt {})",
                        delivery.name(),
                        delivery.webhook_id,
                        delivery.attempts
                    ),
                );
            }
            Outcome::Retry => {
                self.breakers.record_failure(&destination, ports);
                let retry_after_ms =
                    retry_after.and_then(|value| retry::retry_after_ms(value, ports.now_ms()));
                self.retry(delivery, retry_after_ms, ports);
            }
            Outcome::Gone => {
                self.breakers.record_success(&destination, ports);
                self.end_hook(&delivery, ports);
                self.give_up(delivery, ports);
            }
            Outcome::Failed => {
                self.breakers.record_success(&destination, ports);
                self.give_up(delivery, ports);
            }
        }
    }

    /// Schedules the next attempt, or gives up.
    fn retry(&mut self, delivery: Delivery, retry_after_ms: Option<u64>, ports: &Ports<'_>) {
        let (hook, name) = (delivery.hook, Rc::clone(&delivery.policy.name));
        let now_ms = ports.now_ms();
        match self
            .schedule
            .plan(delivery, &self.settings.retry, retry_after_ms, now_ms)
        {
            Planned::Scheduled => self.accounts.retried(hook, &name, ports.metrics),
            Planned::Exhausted(delivery) => self.give_up(delivery, ports),
            Planned::Full(delivery) => {
                self.drop_delivery(delivery, DropReason::RetryQueueFull, ports);
            }
        }
    }

    /// A 410 to `delivery`: no more deliveries to its hook until the configuration reloads.
    /// What the hook has queued or waiting is dropped.
    fn end_hook(&mut self, delivery: &Delivery, ports: &Ports<'_>) {
        let hook = delivery.hook;
        if let Some(gone) = self.gone.get_mut(hook) {
            if !*gone {
                *gone = true;
                ports.log.log(
                    Level::Warn,
                    &format!(
                        "hook {}: the endpoint answered 410 Gone: no more deliveries to it until the configuration reloads",
                        delivery.name()
                    ),
                );
            }
        }
        let queued = self.queue.take_hook(hook);
        let waiting = self.schedule.take_hook(hook);
        let open = self.batches.take_hook(hook, ports.now_ms());
        for delivery in queued.into_iter().chain(waiting).chain(open) {
            self.drop_delivery(delivery, DropReason::Gone, ports);
        }
    }

    /// Gives a delivery up: counted as failed, logged, and a dead letter.
    fn give_up(&mut self, delivery: Delivery, ports: &Ports<'_>) {
        self.accounts
            .ended(&delivery, Ending::Failed, ports.metrics);
        let name = delivery.name();
        let error = delivery.last_error.as_deref().unwrap_or_default();
        let (attempts, id) = (delivery.attempts, &delivery.webhook_id);
        self.warn(&delivery, ports, || {
            format!("hook {name}: gave up on webhook-id {id} after {attempts} attempt(s): {error}")
        });
        self.dead_letter(delivery, ports.metrics);
    }

    /// Drops a delivery: counted by reason, logged, and (but after a 410) a dead letter.
    fn drop_delivery(&mut self, mut delivery: Delivery, reason: DropReason, ports: &Ports<'_>) {
        self.accounts
            .ended(&delivery, Ending::Dropped, ports.metrics);
        self.accounts.dropped(&delivery, reason, ports.metrics);
        if reason == DropReason::Gone {
            return;
        }
        let limit = match reason {
            DropReason::QueueFull => format!("{} jobs", self.settings.queue_size),
            DropReason::QueueBytes => format!("{} bytes", self.settings.max_queue_bytes),
            _ => format!("{} waiting retries", self.settings.max_pending_retries),
        };
        let name = delivery.name();
        let id = &delivery.webhook_id;
        self.warn(&delivery, ports, || {
            format!("hook {name}: delivery queue full ({limit}), dropped webhook-id {id}")
        });
        delivery.last_error = Some(format!("dropped: {}", reason.name()));
        self.dead_letter(delivery, ports.metrics);
    }

    /// Counts a dead letter and, when a dead-letter hook is configured, keeps it for the
    /// runtime.
    fn dead_letter(&mut self, delivery: Delivery, metrics: &dyn Metrics) {
        if delivery.dead_letter {
            return;
        }
        self.accounts.dead_lettered(&delivery, metrics);
        self.dead_letters.keep(delivery);
    }

    /// Called on every tick: clusters that reported overload may be tried again, the gauges
    /// are reported, and the warnings held back are summarized once their interval has
    /// passed, so a burst that ends is still reported.
    pub fn tick(&mut self, ports: &Ports<'_>) {
        self.in_flight.clear_overloaded();
        self.report(ports.metrics, false);
        for (name, held) in self.warnings.overdue(ports.now_ms()) {
            ports.log.log(
                Level::Warn,
                &format!("hook {name}: {held} more delivery warnings since the last one written"),
            );
        }
    }

    /// Reports the gauges as differences from what was reported (all to zero when `retiring`:
    /// this configuration is going away).
    pub fn report(&mut self, metrics: &dyn Metrics, retiring: bool) {
        let levels = Levels {
            depth: self.queue.len(),
            retries: self.schedule.len(),
            in_flight: self.in_flight.len(),
            batching: self.batches.events(),
        };
        self.accounts.report(levels, metrics, retiring);
        if retiring {
            self.breakers.retire(metrics);
        }
    }

    /// Writes a warning about `delivery`'s hook, unless one was written within the interval.
    fn warn(&mut self, delivery: &Delivery, ports: &Ports<'_>, message: impl FnOnce() -> String) {
        if self
            .warnings
            .allow(delivery.hook, &delivery.policy.name, ports.now_ms())
        {
            ports.log.log(Level::Warn, &message());
        }
    }
}

#[cfg(test)]
mod tests;
