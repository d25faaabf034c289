//! Delivery: the per-VM queue, the calls in flight, retries, circuit breakers, dead letters and
//! their accounting.
//!
//! HTTP contexts hand finished jobs to [`Pipeline::accept`] in `on_log`. Only the root context
//! sends: [`Pipeline::pump`] from `on_tick` (and, where the host allows it, after an answer),
//! and [`Pipeline::complete`] from `on_http_call_response`. The host's HTTP callout is behind
//! [`Transport`], the clock is passed in, so all of this is tested natively.
//!
//! * An answer is delivered (2xx), retried (408, 425, 429, 5xx, no answer), the end of the
//!   hook (410) or a failure ([`outcome`]). Retries wait with backoff and full jitter, honour
//!   `Retry-After`, and stop at `max_attempts` or `max_age_ms` ([`retry`]).
//! * Each destination has a circuit breaker ([`breaker`]) and at most
//!   `max_in_flight_per_destination` calls in flight; a destination that cannot take a call
//!   now holds its deliveries in place, without holding up the others.
//! * Every buffer is bounded: the queue (`queue_size` jobs, `max_queue_bytes` bytes counted
//!   with the calls in flight and the retries), the calls in flight (`max_in_flight`), and the
//!   retries waiting (`max_pending_retries`). When one is full, the newest delivery is dropped,
//!   counted by reason, and (but after a 410) reported as a dead letter.
//! * A delivery given up or dropped becomes a [`DeadLetter`], which the runtime sends to the
//!   hook named by `delivery.dead_letter`; a dead letter's own delivery never makes another.
//!
//! Per hook, at any moment: `accepted = delivered + failed + dropped + pending`.

pub mod breaker;
pub mod outcome;
pub mod retry;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use crate::hooks::HookSet;
use crate::log::{Level, Log};
use crate::metrics::{self, Metrics};
use crate::signing::Signing;
use breaker::{Breakers, Change};
use outcome::Outcome;

/// One event to deliver for one hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Index of the hook in the configuration.
    pub hook: usize,
    /// Unique per delivered event, the same on every attempt.
    pub webhook_id: String,
    /// The call, as the hook's handler prepared it for this event.
    pub call: Rc<Call>,
    /// When the job was accepted, unix milliseconds.
    pub accepted_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last answer's status, if there was one.
    pub last_status: Option<u16>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// A dead letter's own delivery: never makes another dead letter.
    pub dead_letter: bool,
}

impl Delivery {
    pub fn new(hook: usize, webhook_id: String, call: Rc<Call>, accepted_ms: u64) -> Self {
        Delivery {
            hook,
            webhook_id,
            call,
            accepted_ms,
            attempts: 0,
            last_status: None,
            last_error: None,
            dead_letter: false,
        }
    }

    /// The memory the job holds, as the byte budget counts it.
    pub fn size(&self) -> usize {
        self.call.size()
    }
}

/// What a handler prepared for one event: the whole call except the headers of each attempt
/// (`user-agent`, `webhook-id`, `webhook-timestamp`, signatures), which [`Call::attempt`] adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub destination: Destination,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authority: String,
    /// The configured headers, and those rendered for this event.
    pub headers: Vec<(String, String)>,
    /// The exact bytes sent, shared by the hooks that send the same body for one event.
    pub body: Rc<[u8]>,
}

impl Call {
    /// The bytes this draft holds (its body counted whole even when shared).
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.body.len() + headers + self.path.len() + self.authority.len() + self.method.len()
    }

    /// The request of one attempt at `now_secs`: pseudo-headers, the draft's headers, then
    /// `user-agent`, `webhook-id`, `webhook-timestamp` and the signatures over the exact body.
    pub fn attempt(&self, webhook_id: &str, now_secs: u64, signing: &Signing) -> Attempt {
        let mut headers = Vec::with_capacity(self.headers.len() + 8);
        headers.push((":method".to_string(), self.method.clone()));
        headers.push((":path".to_string(), self.path.clone()));
        headers.push((":authority".to_string(), self.authority.clone()));
        headers.extend(self.headers.iter().cloned());
        headers.push(("user-agent".to_string(), crate::USER_AGENT.to_string()));
        headers.push(("webhook-id".to_string(), webhook_id.to_string()));
        headers.push(("webhook-timestamp".to_string(), now_secs.to_string()));
        headers.extend(signing.headers(webhook_id, now_secs, &self.body));
        Attempt {
            destination: self.destination.clone(),
            headers,
            body: Rc::clone(&self.body),
        }
    }
}

/// Where a call goes. Envoy dispatches to a cluster; Kong to a literal `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub cluster: String,
    pub host_port: String,
    pub tls: bool,
}

/// One HTTP call, ready for the host: pseudo-headers (`:method`, `:path`, `:authority`)
/// first, then the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub destination: Destination,
    pub headers: Vec<(String, String)>,
    pub body: Rc<[u8]>,
}

/// `delivery` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Jobs waiting to be sent, per VM (per worker).
    pub queue_size: usize,
    /// Payload bytes held by queued, waiting and in-flight jobs, per VM.
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
        }
    }
}

/// Why the host did not start a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The call can never be made as asked (Envoy: `BadArgument`, an unknown cluster).
    Refused(String),
    /// The call cannot start now (Envoy: `InternalFailure`, e.g. the cluster's circuit breaker
    /// is open or it has no healthy host); the job waits for the next round.
    Busy(String),
}

/// The host's asynchronous HTTP callout.
pub trait Transport {
    /// Starts a call; returns the host's token for its response.
    fn send(&mut self, request: &Attempt, timeout_ms: u64) -> Result<u32, SendError>;

    /// Whether the host takes another call now, whatever the queue's own limits say (Kong: one
    /// call in flight per root context). Asked before each call.
    fn has_room(&self) -> bool {
        true
    }
}

/// What the host reported for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An HTTP answer with this status.
    Status(u16),
    /// The host answered for the receiver without sending the call: the cluster's circuit
    /// breaker overflowed (Envoy: 503 with `x-envoy-overloaded`). The job waits for the next
    /// round, its attempt not counted.
    Overloaded,
    /// No HTTP answer: connection failure, reset or timeout; the host's detail when it gives one.
    NoAnswer(Option<String>),
}

/// Why a delivery was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    QueueBytes,
    RetryQueueFull,
    /// The hook's endpoint answered 410 Gone.
    Gone,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::QueueBytes,
        DropReason::RetryQueueFull,
        DropReason::Gone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::QueueBytes => "queue_bytes",
            DropReason::RetryQueueFull => "retry_queue_full",
            DropReason::Gone => "gone",
        }
    }
}

/// Counters of one hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookStats {
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub pending: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Dead letters made of this hook's deliveries.
    pub dead_letters: u64,
}

/// A delivery given up (out of attempts or time, refused for good, or dropped): what its dead
/// letter says.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub hook: usize,
    pub webhook_id: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    /// The body the delivery carried (the event, for a webhook).
    pub body: Rc<[u8]>,
}

/// How long after a call's `timeout_ms` the filter stops waiting for the host's answer (the
/// host's own timeout answer comes first).
pub const ANSWER_GRACE_MS: u64 = 1_000;

/// The most dead letters waiting for the runtime at once (it takes them after every call).
const MAX_DEAD_LETTERS: usize = 1_024;

/// Gauge values last reported, to report differences.
#[derive(Debug, Default)]
struct Reported {
    depth: i64,
    bytes: i64,
    retries: i64,
    in_flight: i64,
}

/// The delivery state of one VM.
pub struct Pipeline {
    settings: Settings,
    queue: VecDeque<Delivery>,
    /// Deliveries waiting for their next attempt, by (when, sequence).
    retries: BTreeMap<(u64, u64), Delivery>,
    sequence: u64,
    /// Calls under way, by token, with when to stop waiting for their answer.
    in_flight: BTreeMap<u32, (u64, Delivery)>,
    per_destination: HashMap<String, usize>,
    bytes: usize,
    stats: Vec<HookStats>,
    drops: [u64; 4],
    /// Hooks whose endpoint answered 410 Gone.
    gone: Vec<bool>,
    breakers: Breakers,
    /// Destinations counted in the breaker gauge.
    open: HashSet<String>,
    warnings: Throttle,
    /// Clusters that reported overload, skipped until the next tick.
    overloaded: Vec<String>,
    dead_letters: Vec<DeadLetter>,
    rng: fastrand::Rng,
    reported: Reported,
}

impl Pipeline {
    pub fn new(settings: Settings, hooks: usize, seed: u64) -> Self {
        Pipeline {
            breakers: Breakers::new(settings.breaker),
            settings,
            queue: VecDeque::new(),
            retries: BTreeMap::new(),
            sequence: 0,
            in_flight: BTreeMap::new(),
            per_destination: HashMap::new(),
            bytes: 0,
            stats: vec![HookStats::default(); hooks],
            drops: [0; 4],
            gone: vec![false; hooks],
            open: HashSet::new(),
            warnings: Throttle::new(hooks, 1_000),
            overloaded: Vec::new(),
            dead_letters: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            reported: Reported::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Jobs waiting to be sent now.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Deliveries waiting for their next attempt.
    pub fn pending_retries(&self) -> usize {
        self.retries.len()
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Payload bytes held by queued, waiting and in-flight jobs.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether call `token` is one of this queue's.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.contains_key(&token)
    }

    pub fn stats(&self) -> &[HookStats] {
        &self.stats
    }

    /// Drops so far, by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .copied()
            .zip(self.drops.iter().copied())
    }

    /// Destinations whose breaker is open or half-open.
    pub fn breakers(&self) -> impl Iterator<Item = (&str, breaker::State)> {
        self.breakers.not_closed()
    }

    /// The dead letters made since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    fn stat(&mut self, hook: usize) -> Option<&mut HookStats> {
        self.stats.get_mut(hook)
    }

    /// The retry policy of a hook: its `config.retry` over the global one.
    fn policy(&self, hooks: &HookSet, hook: usize) -> retry::Settings {
        hooks
            .get(hook)
            .and_then(|hook| hook.handler.retry())
            .map_or(self.settings.retry, |overrides| {
                overrides.apply(&self.settings.retry)
            })
    }

    /// Queues `job`. When the queue is full (by count or bytes), or the hook's endpoint is
    /// gone, the job (the newest) is dropped and counted.
    pub fn accept(
        &mut self,
        job: Delivery,
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) -> bool {
        let hook = job.hook;
        if let Some(stat) = self.stat(hook) {
            stat.accepted = stat.accepted.saturating_add(1);
            stat.pending = stat.pending.saturating_add(1);
        }
        self.bytes = self.bytes.saturating_add(job.size());
        let reason = if self.gone.get(hook).copied().unwrap_or(false) {
            Some(DropReason::Gone)
        } else if self.queue.len() >= self.settings.queue_size {
            Some(DropReason::QueueFull)
        } else if self.bytes > self.settings.max_queue_bytes {
            Some(DropReason::QueueBytes)
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.drop_job(job, reason, hooks, now_ms, log, metrics);
                false
            }
            None => {
                self.queue.push_back(job);
                true
            }
        }
    }

    /// Moves the retries that are due to the front of the queue, earliest first.
    fn promote_due_retries(&mut self, now_ms: u64) {
        let due: Vec<(u64, u64)> = self
            .retries
            .range(..=(now_ms, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        let jobs: Vec<Delivery> = due
            .iter()
            .filter_map(|key| self.retries.remove(key))
            .collect();
        for job in jobs.into_iter().rev() {
            self.queue.push_front(job);
        }
    }

    /// Sends queued jobs, in order, while fewer than `max_in_flight` calls are under way and
    /// the transport has room. A destination that cannot take a call now (its breaker open, its own limit reached, the
    /// host busy) is skipped for the rest of this round; its jobs keep their place.
    pub fn pump(
        &mut self,
        hooks: &HookSet,
        now_ms: u64,
        transport: &mut dyn Transport,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) {
        self.promote_due_retries(now_ms);
        self.expire_calls(hooks, now_ms, log, metrics);
        let mut held: Vec<Delivery> = Vec::new();
        let mut blocked: Vec<String> = self.overloaded.clone();
        while self.in_flight.len() < self.settings.max_in_flight && transport.has_room() {
            let Some(mut job) = self.queue.pop_front() else {
                break;
            };
            let Some(hook) = hooks.get(job.hook) else {
                // Cannot happen: jobs only name hooks of this configuration. Count it, never panic.
                job.last_error = Some("unknown hook".into());
                self.give_up(job, hooks, now_ms, log, metrics);
                continue;
            };
            let policy = self.policy(hooks, job.hook);
            if now_ms.saturating_sub(job.accepted_ms) > policy.max_age_ms {
                job.last_error = Some(format!(
                    "{} (and could not be sent within max_age_ms {})",
                    job.last_error.as_deref().unwrap_or("waited"),
                    policy.max_age_ms
                ));
                self.give_up(job, hooks, now_ms, log, metrics);
                continue;
            }
            let draft = Rc::clone(&job.call);
            let destination = draft.destination.cluster.as_str();
            if blocked.iter().any(|name| name == destination) {
                held.push(job);
                continue;
            }
            let busy = self.per_destination.get(destination).copied().unwrap_or(0);
            if busy >= self.settings.max_in_flight_per_destination
                || !self.breakers.allow(destination, now_ms)
            {
                blocked.push(destination.to_string());
                held.push(job);
                continue;
            }
            let request = draft.attempt(&job.webhook_id, now_ms / 1000, hook.handler.signing());
            match transport.send(&request, self.settings.timeout_ms) {
                Ok(token) => {
                    job.attempts = job.attempts.saturating_add(1);
                    metrics.count(&metrics::name(&["attempts"]), 1);
                    *self
                        .per_destination
                        .entry(destination.to_string())
                        .or_insert(0) += 1;
                    let deadline = now_ms
                        .saturating_add(self.settings.timeout_ms)
                        .saturating_add(ANSWER_GRACE_MS);
                    if let Some((_, mut previous)) = self.in_flight.insert(token, (deadline, job)) {
                        // A host reusing a live token: the earlier call's answer is lost.
                        self.release_destination(&previous.call.destination.cluster);
                        previous.last_error = Some("the host reused its call token".into());
                        self.give_up(previous, hooks, now_ms, log, metrics);
                    }
                }
                Err(SendError::Busy(why)) => {
                    self.breakers.release(destination);
                    let name = hooks.name(job.hook).to_string();
                    self.warn(job.hook, now_ms, log, || {
                        format!(
                            "hook {name}: cluster {destination} cannot take a call now ({why}: its circuit breaker is open or it has no healthy host); deliveries wait"
                        )
                    });
                    blocked.push(destination.to_string());
                    held.push(job);
                }
                Err(SendError::Refused(why)) => {
                    self.breakers.release(destination);
                    job.last_error = Some(format!(
                        "the host refused the call to cluster {destination} ({why}); is the cluster defined?"
                    ));
                    self.give_up(job, hooks, now_ms, log, metrics);
                }
            }
        }
        for job in held.into_iter().rev() {
            self.queue.push_front(job);
        }
    }

    /// Completes as unanswered every call still waiting past its deadline. Some hosts never
    /// answer a call that failed (Kong before 3.9 only logs "dispatch failed"): without this
    /// its slot would be held forever, and its destination would stop getting calls.
    fn expire_calls(&mut self, hooks: &HookSet, now_ms: u64, log: &dyn Log, metrics: &dyn Metrics) {
        let expired: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now_ms)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            let detail = format!(
                "the host gave no answer within timeout_ms {} + {ANSWER_GRACE_MS} ms",
                self.settings.timeout_ms
            );
            self.complete(
                token,
                Response::NoAnswer(Some(detail)),
                b"",
                None,
                hooks,
                now_ms,
                log,
                metrics,
            );
        }
    }

    fn release_destination(&mut self, destination: &str) {
        if let Some(count) = self.per_destination.get_mut(destination) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_destination.remove(destination);
            }
        }
    }

    /// Records the host's answer for call `token`: the start of its body (for a failure's log
    /// line) and its `Retry-After`. Unknown tokens are ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &mut self,
        token: u32,
        response: Response,
        body: &[u8],
        retry_after: Option<&str>,
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) {
        let Some((_, mut job)) = self.in_flight.remove(&token) else {
            return;
        };
        let destination = job.call.destination.cluster.clone();
        self.release_destination(&destination);
        if response == Response::Overloaded {
            job.attempts = job.attempts.saturating_sub(1);
            self.breakers.release(&destination);
            let name = hooks.name(job.hook).to_string();
            self.warn(job.hook, now_ms, log, || {
                format!("hook {name}: cluster {destination} is overloaded (its circuit breaker overflowed); deliveries wait")
            });
            if !self.overloaded.contains(&destination) {
                self.overloaded.push(destination);
            }
            self.queue.push_front(job);
            return;
        }
        if let Response::Status(status) = response {
            job.last_status = Some(status);
        }
        job.last_error = Some(match &response {
            Response::Status(status) => match excerpt(body) {
                // Envoy answers a call it could not make with its own 503 (504 on a timeout)
                // and the reason in the body: show it.
                Some(text) => format!("answered {status}: {text}"),
                None => format!("answered {status}"),
            },
            Response::Overloaded => "overloaded".to_string(),
            Response::NoAnswer(Some(detail)) => format!("no answer ({detail})"),
            Response::NoAnswer(None) => {
                "no answer (connection failure, reset or timeout)".to_string()
            }
        });
        match outcome::classify(&response) {
            Outcome::Delivered => {
                self.breaker_success(&destination, log, metrics);
                self.finish(&job, Finished::Delivered, metrics);
                log.log(
                    Level::Debug,
                    &format!(
                        "hook {}: delivered webhook-id {} (attempt {})",
                        hooks.name(job.hook),
                        job.webhook_id,
                        job.attempts
                    ),
                );
            }
            Outcome::Retry => {
                if let Some(Change::Opened) = self.breakers.failure(&destination, now_ms) {
                    self.breaker_opened(&destination, log, metrics);
                }
                let retry_after_ms =
                    retry_after.and_then(|value| retry::retry_after_ms(value, now_ms));
                self.retry(job, retry_after_ms, hooks, now_ms, log, metrics);
            }
            Outcome::Gone => {
                self.breaker_success(&destination, log, metrics);
                self.end_hook(job.hook, hooks, now_ms, log, metrics);
                self.give_up(job, hooks, now_ms, log, metrics);
            }
            Outcome::Failed => {
                self.breaker_success(&destination, log, metrics);
                self.give_up(job, hooks, now_ms, log, metrics);
            }
        }
    }

    /// Schedules the next attempt, or gives up.
    fn retry(
        &mut self,
        job: Delivery,
        retry_after_ms: Option<u64>,
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) {
        let policy = self.policy(hooks, job.hook);
        match policy.next(
            job.attempts,
            job.accepted_ms,
            now_ms,
            retry_after_ms,
            &mut self.rng,
        ) {
            None => self.give_up(job, hooks, now_ms, log, metrics),
            Some(_) if self.retries.len() >= self.settings.max_pending_retries => {
                self.drop_job(job, DropReason::RetryQueueFull, hooks, now_ms, log, metrics);
            }
            Some(at) => {
                if let Some(stat) = self.stat(job.hook) {
                    stat.retries = stat.retries.saturating_add(1);
                }
                metrics.count(&metrics::name(&["retries"]), 1);
                metrics.count(
                    &metrics::name(&["hook", hooks.name(job.hook), "retries"]),
                    1,
                );
                self.sequence = self.sequence.wrapping_add(1);
                self.retries.insert((at, self.sequence), job);
            }
        }
    }

    /// A 410: no more deliveries to the hook until the configuration reloads. What it has
    /// queued or waiting is dropped.
    fn end_hook(
        &mut self,
        hook: usize,
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) {
        if let Some(gone) = self.gone.get_mut(hook) {
            if !*gone {
                *gone = true;
                log.log(
                    Level::Warn,
                    &format!(
                        "hook {}: the endpoint answered 410 Gone: no more deliveries to it until the configuration reloads",
                        hooks.name(hook)
                    ),
                );
            }
        }
        let (theirs, others): (Vec<Delivery>, Vec<Delivery>) =
            self.queue.drain(..).partition(|job| job.hook == hook);
        self.queue = others.into();
        let waiting: Vec<(u64, u64)> = self
            .retries
            .iter()
            .filter(|(_, job)| job.hook == hook)
            .map(|(key, _)| *key)
            .collect();
        let waiting: Vec<Delivery> = waiting
            .iter()
            .filter_map(|key| self.retries.remove(key))
            .collect();
        for job in theirs.into_iter().chain(waiting) {
            self.drop_job(job, DropReason::Gone, hooks, now_ms, log, metrics);
        }
    }

    fn breaker_opened(&mut self, destination: &str, log: &dyn Log, metrics: &dyn Metrics) {
        log.log(
            Level::Warn,
            &format!(
                "destination {destination}: circuit breaker open after {} consecutive failures; deliveries wait {} ms, then one probe",
                self.settings.breaker.failures, self.settings.breaker.cooldown_ms
            ),
        );
        if self.open.insert(destination.to_string()) {
            metrics.gauge(&metrics::name(&["breaker", destination, "open"]), 1);
        }
    }

    fn breaker_success(&mut self, destination: &str, log: &dyn Log, metrics: &dyn Metrics) {
        if let Some(Change::Closed) = self.breakers.success(destination) {
            log.log(
                Level::Info,
                &format!("destination {destination}: circuit breaker closed"),
            );
        }
        if self.open.remove(destination) {
            metrics.gauge(&metrics::name(&["breaker", destination, "open"]), -1);
        }
    }

    /// Gives a delivery up: counted as failed, logged, and a dead letter.
    fn give_up(
        &mut self,
        job: Delivery,
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) {
        self.finish(&job, Finished::Failed, metrics);
        let name = hooks.name(job.hook).to_string();
        let error = job.last_error.clone().unwrap_or_default();
        let attempts = job.attempts;
        let id = job.webhook_id.clone();
        self.warn(job.hook, now_ms, log, || {
            format!("hook {name}: gave up on webhook-id {id} after {attempts} attempt(s): {error}")
        });
        self.dead_letter(job, hooks, metrics);
    }

    /// Drops a delivery: counted by reason, logged, and (but after a 410) a dead letter.
    fn drop_job(
        &mut self,
        mut job: Delivery,
        reason: DropReason,
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
        metrics: &dyn Metrics,
    ) {
        self.finish(&job, Finished::Dropped, metrics);
        if let Some(count) = DropReason::ALL
            .iter()
            .position(|candidate| *candidate == reason)
            .and_then(|index| self.drops.get_mut(index))
        {
            *count = count.saturating_add(1);
        }
        metrics.count(&metrics::name(&["drops", reason.name()]), 1);
        if reason == DropReason::Gone {
            return;
        }
        let limit = match reason {
            DropReason::QueueFull => format!("{} jobs", self.settings.queue_size),
            DropReason::QueueBytes => format!("{} bytes", self.settings.max_queue_bytes),
            _ => format!("{} waiting retries", self.settings.max_pending_retries),
        };
        let name = hooks.name(job.hook).to_string();
        let id = job.webhook_id.clone();
        self.warn(job.hook, now_ms, log, || {
            format!("hook {name}: delivery queue full ({limit}), dropped webhook-id {id}")
        });
        job.last_error = Some(format!("dropped: {}", reason.name()));
        self.dead_letter(job, hooks, metrics);
    }

    /// Counts a dead letter and, when a dead-letter hook is configured, hands it to the runtime.
    fn dead_letter(&mut self, job: Delivery, hooks: &HookSet, metrics: &dyn Metrics) {
        if job.dead_letter {
            return;
        }
        if let Some(stat) = self.stat(job.hook) {
            stat.dead_letters = stat.dead_letters.saturating_add(1);
        }
        metrics.count(&metrics::name(&["dead_letters"]), 1);
        metrics.count(
            &metrics::name(&["hook", hooks.name(job.hook), "dead_letters"]),
            1,
        );
        if self.settings.dead_letter.is_some() && self.dead_letters.len() < MAX_DEAD_LETTERS {
            self.dead_letters.push(DeadLetter {
                hook: job.hook,
                webhook_id: job.webhook_id,
                attempts: job.attempts,
                last_status: job.last_status,
                last_error: job.last_error.unwrap_or_default(),
                body: Rc::clone(&job.call.body),
            });
        }
    }

    fn finish(&mut self, job: &Delivery, finished: Finished, metrics: &dyn Metrics) {
        self.bytes = self.bytes.saturating_sub(job.size());
        if let Some(stat) = self.stat(job.hook) {
            stat.pending = stat.pending.saturating_sub(1);
            let count = match finished {
                Finished::Delivered => &mut stat.delivered,
                Finished::Failed => &mut stat.failed,
                Finished::Dropped => &mut stat.dropped,
            };
            *count = count.saturating_add(1);
        }
        let outcome = finished.name();
        metrics.count(&metrics::name(&["deliveries", outcome]), 1);
    }

    /// Called on every tick: clusters that reported overload may be tried again, the gauges
    /// are reported, and the warnings held back by the throttle are summarized once their
    /// interval has passed, so a burst that ends is still reported.
    pub fn tick(&mut self, hooks: &HookSet, now_ms: u64, log: &dyn Log, metrics: &dyn Metrics) {
        self.overloaded.clear();
        self.report(metrics, false);
        for (hook, held) in self.warnings.overdue(now_ms) {
            log.log(
                Level::Warn,
                &format!(
                    "hook {}: {held} more delivery warnings since the last one written",
                    hooks.name(hook)
                ),
            );
        }
    }

    /// Reports the gauges as differences from what was reported (all to zero when `retiring`:
    /// this configuration is going away).
    pub fn report(&mut self, metrics: &dyn Metrics, retiring: bool) {
        let size = |value: usize| {
            if retiring {
                0
            } else {
                i64::try_from(value).unwrap_or(i64::MAX)
            }
        };
        let current = Reported {
            depth: size(self.queue.len()),
            bytes: size(self.bytes),
            retries: size(self.retries.len()),
            in_flight: size(self.in_flight.len()),
        };
        for (parts, now, before) in [
            (&["queue", "depth"][..], current.depth, self.reported.depth),
            (&["queue", "bytes"][..], current.bytes, self.reported.bytes),
            (
                &["retries", "pending"][..],
                current.retries,
                self.reported.retries,
            ),
            (
                &["in_flight"][..],
                current.in_flight,
                self.reported.in_flight,
            ),
        ] {
            if now != before {
                metrics.gauge(&metrics::name(parts), now - before);
            }
        }
        self.reported = current;
        if retiring {
            for destination in self.open.drain() {
                metrics.gauge(&metrics::name(&["breaker", &destination, "open"]), -1);
            }
        }
    }

    fn warn(&mut self, hook: usize, now_ms: u64, log: &dyn Log, message: impl FnOnce() -> String) {
        if self.warnings.allow(hook, now_ms) {
            log.log(Level::Warn, &message());
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy)]
enum Finished {
    Delivered,
    Failed,
    Dropped,
}

impl Finished {
    fn name(self) -> &'static str {
        match self {
            Finished::Delivered => "delivered",
            Finished::Failed => "failed",
            Finished::Dropped => "dropped",
        }
    }
}

/// The longest excerpt of an answer's body that a log line shows.
pub const EXCERPT_BYTES: usize = 160;

/// The start of a body for a log line: at most [`EXCERPT_BYTES`] bytes, control characters
/// replaced by spaces; `None` when empty.
pub fn excerpt(body: &[u8]) -> Option<String> {
    let cut = body.get(..EXCERPT_BYTES).unwrap_or(body);
    let text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| {
        if body.len() > EXCERPT_BYTES {
            format!("{text}...")
        } else {
            text.to_string()
        }
    })
}

/// At most one warning per hook per interval; the ones held back are counted and reported
/// when the interval has passed.
struct Throttle {
    interval_ms: u64,
    /// Per hook: when the last warning was written, and how many were held back since.
    slots: Vec<(Option<u64>, u64)>,
}

impl Throttle {
    fn new(hooks: usize, interval_ms: u64) -> Self {
        Throttle {
            interval_ms,
            slots: vec![(None, 0); hooks],
        }
    }

    /// Whether a warning written at `last` leaves the slot open at `now_ms`. A clock that
    /// stepped back opens it rather than silencing it.
    fn is_open(last: Option<u64>, now_ms: u64, interval_ms: u64) -> bool {
        last.is_none_or(|at| now_ms < at || now_ms - at >= interval_ms)
    }

    /// Whether a warning may be written now; counts it as held back if not.
    fn allow(&mut self, hook: usize, now_ms: u64) -> bool {
        let interval = self.interval_ms;
        let open = self
            .slots
            .get(hook)
            .is_none_or(|(last, _)| Self::is_open(*last, now_ms, interval));
        if let Some((last, held)) = self.slots.get_mut(hook) {
            if open {
                *last = Some(now_ms);
            } else {
                *held = held.saturating_add(1);
            }
        }
        open
    }

    /// The hooks whose held-back warnings are due for a summary, with their counts (reset).
    fn overdue(&mut self, now_ms: u64) -> Vec<(usize, u64)> {
        let mut due = Vec::new();
        let interval = self.interval_ms;
        for (hook, (last, held)) in self.slots.iter_mut().enumerate() {
            if *held > 0 && Self::is_open(*last, now_ms, interval) {
                due.push((hook, std::mem::take(held)));
                *last = Some(now_ms);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests;
