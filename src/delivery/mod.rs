//! Delivery: the per-VM bounded queue of jobs, the calls in flight, and their accounting.
//!
//! HTTP contexts hand finished jobs to [`Delivery::accept`] in `on_log`. Only the root context
//! sends: [`Delivery::pump`] from `on_tick` and after every response, and
//! [`Delivery::complete`] from `on_http_call_response`. The host's HTTP callout is behind
//! [`Transport`] and the clock is passed in, so all of this is tested natively.
//!
//! Memory is bounded twice: by the number of jobs (`queue_size`) and by the bytes their
//! payloads hold, queued or in flight (`max_queue_bytes`). When either is full, the newest job
//! is dropped and counted.
//!
//! Per hook, at any moment: `accepted = delivered + failed + dropped + pending`.

pub mod outcome;

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use crate::hooks::HookSet;
use crate::log::{Level, Log};
use crate::signing::Signing;
use outcome::Outcome;

/// One event to deliver for one hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Index of the hook in the configuration.
    pub hook: usize,
    /// Unique per delivered event, the same on every attempt.
    pub webhook_id: String,
    /// The call, as the hook's handler prepared it for this event.
    pub draft: Rc<Draft>,
    /// When the job was accepted, unix milliseconds.
    pub accepted_ms: u64,
}

impl Job {
    /// The memory the job holds, as the byte budget counts it.
    pub fn size(&self) -> usize {
        self.draft.size()
    }
}

/// What a handler prepared for one event: the whole call except the headers of each attempt
/// (`user-agent`, `webhook-id`, `webhook-timestamp`, signatures), which [`Draft::attempt`] adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
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

impl Draft {
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
    pub fn attempt(&self, webhook_id: &str, now_secs: u64, signing: &Signing) -> Request {
        let mut headers = Vec::with_capacity(self.headers.len() + 8);
        headers.push((":method".to_string(), self.method.clone()));
        headers.push((":path".to_string(), self.path.clone()));
        headers.push((":authority".to_string(), self.authority.clone()));
        headers.extend(self.headers.iter().cloned());
        headers.push(("user-agent".to_string(), crate::USER_AGENT.to_string()));
        headers.push(("webhook-id".to_string(), webhook_id.to_string()));
        headers.push(("webhook-timestamp".to_string(), now_secs.to_string()));
        headers.extend(signing.headers(webhook_id, now_secs, &self.body));
        Request {
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
pub struct Request {
    pub destination: Destination,
    pub headers: Vec<(String, String)>,
    pub body: Rc<[u8]>,
}

/// `delivery` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Jobs waiting to be sent, per VM (per worker).
    pub queue_size: usize,
    /// Payload bytes held by queued and in-flight jobs, per VM.
    pub max_queue_bytes: usize,
    /// Calls in flight at once, per VM.
    pub max_in_flight: usize,
    /// How long the host waits for an answer.
    pub timeout_ms: u64,
    /// How often the root context sends what is queued.
    pub flush_interval_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_size: 10_000,
            max_queue_bytes: 32 * 1024 * 1024,
            max_in_flight: 64,
            timeout_ms: 5_000,
            flush_interval_ms: 100,
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
    fn send(&mut self, request: &Request, timeout_ms: u64) -> Result<u32, SendError>;
}

/// What the host reported for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An HTTP answer with this status.
    Status(u16),
    /// The host answered for the receiver without sending the call: the cluster's circuit
    /// breaker overflowed (Envoy: 503 with `x-envoy-overloaded`). The job waits for the next
    /// round.
    Overloaded,
    /// No HTTP answer: connection failure, reset or timeout; the host's detail when it gives one.
    NoAnswer(Option<String>),
}

/// Counters of one hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookStats {
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub pending: u64,
}

/// The delivery state of one VM.
pub struct Delivery {
    settings: Settings,
    queue: VecDeque<Job>,
    in_flight: BTreeMap<u32, Job>,
    /// Payload bytes of queued and in-flight jobs.
    bytes: usize,
    stats: Vec<HookStats>,
    warnings: Throttle,
    /// Clusters that reported overload, skipped until the next tick.
    overloaded: Vec<String>,
}

impl Delivery {
    pub fn new(settings: Settings, hooks: usize) -> Self {
        Delivery {
            settings,
            queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            bytes: 0,
            stats: vec![HookStats::default(); hooks],
            warnings: Throttle::new(hooks, 1_000),
            overloaded: Vec::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Jobs waiting to be sent.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Payload bytes held by queued and in-flight jobs.
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

    fn stat(&mut self, hook: usize) -> Option<&mut HookStats> {
        self.stats.get_mut(hook)
    }

    /// Queues `job`. When the queue is full, by count or by bytes, the job (the newest) is
    /// dropped and counted.
    pub fn accept(&mut self, job: Job, hooks: &HookSet, now_ms: u64, log: &dyn Log) -> bool {
        let hook = job.hook;
        if let Some(stat) = self.stat(hook) {
            stat.accepted = stat.accepted.saturating_add(1);
        }
        let size = job.size();
        let full = if self.queue.len() >= self.settings.queue_size {
            Some(format!("{} jobs", self.settings.queue_size))
        } else if self.bytes.saturating_add(size) > self.settings.max_queue_bytes {
            Some(format!("{} bytes", self.settings.max_queue_bytes))
        } else {
            None
        };
        if let Some(limit) = full {
            if let Some(stat) = self.stat(hook) {
                stat.dropped = stat.dropped.saturating_add(1);
            }
            self.warn(hook, now_ms, log, || {
                format!(
                    "hook {}: delivery queue full ({limit}), dropped webhook-id {}",
                    hooks.name(hook),
                    job.webhook_id
                )
            });
            return false;
        }
        if let Some(stat) = self.stat(hook) {
            stat.pending = stat.pending.saturating_add(1);
        }
        self.bytes = self.bytes.saturating_add(size);
        self.queue.push_back(job);
        true
    }

    /// Sends queued jobs, in order, while fewer than `max_in_flight` calls are under way. A
    /// destination the host reports busy is skipped for the rest of this round; its jobs keep
    /// their place.
    pub fn pump(
        &mut self,
        hooks: &HookSet,
        now_ms: u64,
        transport: &mut dyn Transport,
        log: &dyn Log,
    ) {
        let mut held: Vec<Job> = Vec::new();
        let mut busy: Vec<String> = self.overloaded.clone();
        while self.in_flight.len() < self.settings.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let Some(hook) = hooks.get(job.hook) else {
                // Cannot happen: jobs only name hooks of this configuration. Count it, never panic.
                self.finish(job, Outcome::Failed, now_ms, log, hooks, "unknown hook");
                continue;
            };
            let draft = Rc::clone(&job.draft);
            let cluster = draft.destination.cluster.as_str();
            if busy.iter().any(|name| name == cluster) {
                held.push(job);
                continue;
            }
            let request = job
                .draft
                .attempt(&job.webhook_id, now_ms / 1000, hook.handler.signing());
            match transport.send(&request, self.settings.timeout_ms) {
                Ok(token) => {
                    if let Some(previous) = self.in_flight.insert(token, job) {
                        // A host reusing a live token: the earlier call's answer is lost.
                        let detail = "the host reused its call token";
                        self.finish(previous, Outcome::Failed, now_ms, log, hooks, detail);
                    }
                }
                Err(SendError::Busy(why)) => {
                    let name = hooks.name(job.hook).to_string();
                    self.warn(job.hook, now_ms, log, || {
                        format!(
                            "hook {name}: cluster {cluster} cannot take a call now ({why}: its circuit breaker is open or it has no healthy host); deliveries wait"
                        )
                    });
                    busy.push(cluster.to_string());
                    held.push(job);
                }
                Err(SendError::Refused(why)) => {
                    let detail = format!(
                        "the host refused the call to cluster {cluster} ({why}); is the cluster defined?"
                    );
                    self.finish(job, Outcome::Failed, now_ms, log, hooks, &detail);
                }
            }
        }
        for job in held.into_iter().rev() {
            self.queue.push_front(job);
        }
    }

    /// Records the host's answer for call `token`, with the start of its body (for the log of
    /// a failure). Unknown tokens are ignored.
    pub fn complete(
        &mut self,
        token: u32,
        response: Response,
        body: &[u8],
        hooks: &HookSet,
        now_ms: u64,
        log: &dyn Log,
    ) {
        let Some(job) = self.in_flight.remove(&token) else {
            return;
        };
        if response == Response::Overloaded {
            let cluster = job.draft.destination.cluster.clone();
            let name = hooks.name(job.hook).to_string();
            self.warn(job.hook, now_ms, log, || {
                format!("hook {name}: cluster {cluster} is overloaded (its circuit breaker overflowed); deliveries wait")
            });
            if !self.overloaded.contains(&cluster) {
                self.overloaded.push(cluster);
            }
            self.queue.push_front(job);
            return;
        }
        let outcome = outcome::classify(&response);
        let detail = match &response {
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
        };
        self.finish(job, outcome, now_ms, log, hooks, &detail);
    }

    /// Called on every tick: clusters that reported overload may be tried again, and the
    /// warnings held back by the throttle are reported once their interval has passed, so a
    /// burst that ends is still reported.
    pub fn tick(&mut self, hooks: &HookSet, now_ms: u64, log: &dyn Log) {
        self.overloaded.clear();
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

    fn finish(
        &mut self,
        job: Job,
        outcome: Outcome,
        now_ms: u64,
        log: &dyn Log,
        hooks: &HookSet,
        detail: &str,
    ) {
        self.bytes = self.bytes.saturating_sub(job.size());
        if let Some(stat) = self.stat(job.hook) {
            stat.pending = stat.pending.saturating_sub(1);
            match outcome {
                Outcome::Delivered => stat.delivered = stat.delivered.saturating_add(1),
                Outcome::Failed => stat.failed = stat.failed.saturating_add(1),
            }
        }
        match outcome {
            Outcome::Delivered => log.log(
                Level::Debug,
                &format!(
                    "hook {}: delivered webhook-id {} ({detail})",
                    hooks.name(job.hook),
                    job.webhook_id
                ),
            ),
            Outcome::Failed => self.warn(job.hook, now_ms, log, || {
                format!(
                    "hook {}: delivery of webhook-id {} failed: {detail}",
                    hooks.name(job.hook),
                    job.webhook_id
                )
            }),
        }
    }

    fn warn(&mut self, hook: usize, now_ms: u64, log: &dyn Log, message: impl FnOnce() -> String) {
        if self.warnings.allow(hook, now_ms) {
            log.log(Level::Warn, &message());
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
