//! Delivery: the per-VM bounded queue of jobs, the calls in flight, and their accounting.
//!
//! HTTP contexts hand finished jobs to [`Delivery::accept`] in `on_log`. Only the root context
//! sends: [`Delivery::pump`] from `on_tick` and after every response, and
//! [`Delivery::complete`] from `on_http_call_response`. The host's HTTP callout is behind
//! [`Transport`] and the clock is passed in, so all of this is tested natively.
//!
//! Per hook, at any moment: `accepted = delivered + failed + dropped + pending`.

pub mod outcome;

use std::collections::{BTreeMap, VecDeque};

use crate::hooks::HookSet;
use crate::log::{Level, Log};
use outcome::Outcome;

/// One event to deliver for one hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Index of the hook in the configuration.
    pub hook: usize,
    /// Unique per delivered event, the same on every attempt.
    pub webhook_id: String,
    /// The handler's payload (for webhooks, the exact body bytes).
    pub payload: Vec<u8>,
    /// When the job was accepted, unix milliseconds.
    pub accepted_ms: u64,
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
    pub body: Vec<u8>,
}

/// `delivery` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Jobs waiting to be sent, per VM (per worker).
    pub queue_size: usize,
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
            max_in_flight: 64,
            timeout_ms: 5_000,
            flush_interval_ms: 100,
        }
    }
}

/// The host's asynchronous HTTP callout.
pub trait Transport {
    /// Starts a call; returns the host's token for its response, or why the host refused it.
    fn send(&mut self, request: &Request, timeout_ms: u64) -> Result<u32, String>;
}

/// What the host reported for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An HTTP answer with this status.
    Status(u16),
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

#[derive(Debug)]
struct InFlight {
    job: Job,
}

/// The delivery state of one VM.
pub struct Delivery {
    settings: Settings,
    queue: VecDeque<Job>,
    in_flight: BTreeMap<u32, InFlight>,
    stats: Vec<HookStats>,
    warnings: Throttle,
}

impl Delivery {
    pub fn new(settings: Settings, hooks: usize) -> Self {
        Delivery {
            settings,
            queue: VecDeque::new(),
            in_flight: BTreeMap::new(),
            stats: vec![HookStats::default(); hooks],
            warnings: Throttle::new(hooks, 1_000),
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

    /// Queues `job`. When the queue is full the job (the newest) is dropped and counted.
    pub fn accept(&mut self, job: Job, hooks: &HookSet, now_ms: u64, log: &dyn Log) -> bool {
        let hook = job.hook;
        if let Some(stat) = self.stat(hook) {
            stat.accepted = stat.accepted.saturating_add(1);
        }
        if self.queue.len() >= self.settings.queue_size {
            if let Some(stat) = self.stat(hook) {
                stat.dropped = stat.dropped.saturating_add(1);
            }
            let size = self.settings.queue_size;
            self.warn(hook, now_ms, log, || {
                format!(
                    "hook {}: delivery queue full ({size} jobs), dropped webhook-id {}",
                    hooks.name(hook),
                    job.webhook_id
                )
            });
            return false;
        }
        if let Some(stat) = self.stat(hook) {
            stat.pending = stat.pending.saturating_add(1);
        }
        self.queue.push_back(job);
        true
    }

    /// Sends queued jobs while fewer than `max_in_flight` calls are under way.
    pub fn pump(
        &mut self,
        hooks: &HookSet,
        now_ms: u64,
        transport: &mut dyn Transport,
        log: &dyn Log,
    ) {
        while self.in_flight.len() < self.settings.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let Some(hook) = hooks.get(job.hook) else {
                // Cannot happen: jobs only name hooks of this configuration. Count it, never panic.
                self.finish(&job, Outcome::Failed, now_ms, log, hooks, "unknown hook");
                continue;
            };
            let request = hook.handler.request(&job, now_ms);
            match transport.send(&request, self.settings.timeout_ms) {
                Ok(token) => {
                    if let Some(previous) = self.in_flight.insert(token, InFlight { job }) {
                        // A host reusing a live token: the earlier call's answer is lost.
                        self.finish(
                            &previous.job,
                            Outcome::Failed,
                            now_ms,
                            log,
                            hooks,
                            "the host reused its call token",
                        );
                    }
                }
                Err(why) => {
                    let detail = format!(
                        "the host refused the call to cluster {} ({why}); is the cluster defined?",
                        request.destination.cluster
                    );
                    self.finish(&job, Outcome::Failed, now_ms, log, hooks, &detail);
                }
            }
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
        let Some(InFlight { job }) = self.in_flight.remove(&token) else {
            return;
        };
        let outcome = outcome::classify(&response);
        let detail = match &response {
            Response::Status(status) => match excerpt(body) {
                // Envoy answers a call it could not make with its own 503 and the reason in
                // the body ("upstream connect error ... reset reason: ..."): show it.
                Some(text) => format!("answered {status}: {text}"),
                None => format!("answered {status}"),
            },
            Response::NoAnswer(Some(detail)) => format!("no answer ({detail})"),
            Response::NoAnswer(None) => {
                "no answer (connection failure, reset or timeout)".to_string()
            }
        };
        self.finish(&job, outcome, now_ms, log, hooks, &detail);
    }

    fn finish(
        &mut self,
        job: &Job,
        outcome: Outcome,
        now_ms: u64,
        log: &dyn Log,
        hooks: &HookSet,
        detail: &str,
    ) {
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
        if let Some(suppressed) = self.warnings.allow(hook, now_ms) {
            let mut line = message();
            if suppressed > 0 {
                line.push_str(&format!(" ({suppressed} similar warnings suppressed)"));
            }
            log.log(Level::Warn, &line);
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

/// At most one warning per hook per interval, counting what it holds back.
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

    /// `Some(suppressed)` when a warning may be written now.
    fn allow(&mut self, hook: usize, now_ms: u64) -> Option<u64> {
        let interval = self.interval_ms;
        let Some((last, suppressed)) = self.slots.get_mut(hook) else {
            return Some(0);
        };
        match last {
            Some(at) if now_ms.saturating_sub(*at) < interval => {
                *suppressed = suppressed.saturating_add(1);
                None
            }
            _ => {
                *last = Some(now_ms);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests;
