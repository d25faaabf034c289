//! The root context: reads the configuration, owns the per-VM runtime (queue included), and is
//! the only context that dispatches deliveries, and receives every answer in
//! `on_http_call_response` (Kong traps on a dispatch from `on_log`; Envoy loses the answer to a
//! call made by a finished HTTP context). How it sends depends on the host
//! ([`differences::CallRules`]): on Envoy from `on_tick` and from each answer, up to
//! `delivery.max_in_flight`; on Kong from `on_tick` only, one call in flight at a time (a call
//! made from an answer crashes the worker; several in flight leak connection slots).

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, Status};

use super::abi::{self, CallAnswer, DISPATCH_STATUS, HostClock, HostLog, HostProperties};
use super::differences::{self, Host, Known, Maps};
use super::http::Http;
use super::log_phase;
use super::metrics::HostMetrics;
use super::shared::HostShared;
use super::wire;
use event_hooks_core::attachment::{self, Attachment};
use event_hooks_core::config;
use event_hooks_core::delivery::{Attempt, EXCERPT_BYTES, Response, SendError, Transport};
use event_hooks_core::log::Level;
use event_hooks_core::ports::Clock;
use event_hooks_core::reader::Problem;
use event_hooks_core::runtime::Runtime;
use event_hooks_core::source::traffic::Capture;

/// Runtimes of earlier configurations still delivering what they had accepted.
const MAX_RETIRING: usize = 4;

pub struct Root {
    /// The host and what it allows, shared with every HTTP context and the metrics.
    known: Rc<Known>,
    runtime: Option<Rc<Runtime>>,
    /// Earlier configurations' runtimes, kept until their queues drain.
    retiring: Vec<Rc<Runtime>>,
    /// The tick period set, ms: set once on Kong (a second call traps); on Envoy set again
    /// when the host, learned later, wants another.
    tick_ms: Option<u64>,
    /// After `on_done` answered false: until when (unix ms) to keep delivering.
    draining_until: Option<u64>,
}

impl Root {
    pub fn new() -> Self {
        Root {
            known: Rc::default(),
            runtime: None,
            retiring: Vec::new(),
            tick_ms: None,
            draining_until: None,
        }
    }

    /// Deliveries still queued or in flight, in every runtime.
    fn outstanding(&self) -> usize {
        self.runtimes().map(|runtime| runtime.outstanding()).sum()
    }

    /// While draining: tells the host the root context is done once nothing is outstanding or
    /// the deadline has passed (logging what is lost).
    fn finish_draining(&mut self, now: u64) {
        let Some(until) = self.draining_until else {
            return;
        };
        let outstanding = self.outstanding();
        if outstanding > 0 && now < until {
            return;
        }
        if outstanding > 0 {
            abi::log(
                Level::Warn,
                &format!(
                    "stopping with {outstanding} undelivered (calls queued or in flight, events in open batches)"
                ),
            );
        }
        self.draining_until = None;
        for runtime in self.runtimes() {
            runtime.retire();
        }
        self.runtime = None;
        self.retiring.clear();
        if self.known.host() == Some(Host::Kong) {
            return; // Kong never asked to wait: `on_done` answered true there.
        }
        if let Err(error) = abi::done() {
            abi::log(
                Level::Error,
                &format!("the host refused proxy_done ({error})"),
            );
        }
    }

    /// Where this root context runs: on Envoy, its plugin's `root_id` says (an access
    /// logger's ends with `access_log`); elsewhere, or unreadable, an HTTP filter.
    fn attachment(&self) -> Attachment {
        if self.known.host() != Some(Host::Envoy) {
            return Attachment::HttpFilter;
        }
        match abi::property(differences::PLUGIN_ROOT_ID) {
            Ok(Some(root_id)) => Attachment::of_root_id(&wire::string(&root_id)),
            _ => Attachment::HttpFilter,
        }
    }

    fn runtimes(&self) -> impl Iterator<Item = &Rc<Runtime>> {
        self.runtime.iter().chain(self.retiring.iter())
    }

    /// The host's callout, with the room this root context has for more calls.
    fn transport(&self) -> HostTransport {
        let rules = self.known.call_rules();
        let in_flight: usize = self.runtimes().map(|runtime| runtime.in_flight()).sum();
        HostTransport {
            host: self.known.host_or_envoy(),
            room: rules.max_in_flight.map(|max| max.saturating_sub(in_flight)),
        }
    }

    /// Sets the tick period the host's rules want for the current configuration, unless it is
    /// set already (on Kong, whose second call traps, it never changes once set).
    fn set_tick_period(&mut self) -> bool {
        let flush_ms = self
            .runtime
            .as_ref()
            .map_or(100, |runtime| runtime.flush_interval_ms());
        let wanted = self.known.call_rules().tick_ms(flush_ms);
        match self.tick_ms {
            Some(current) if current == wanted => return true,
            Some(_) if self.known.host() != Some(Host::Envoy) => return true,
            _ => {}
        }
        match abi::set_tick_period_ms(wanted) {
            Ok(()) => {
                self.tick_ms = Some(wanted);
                true
            }
            Err(error) => {
                abi::log(
                    Level::Error,
                    &format!("the host refused a tick period ({error}); nothing can be delivered"),
                );
                false
            }
        }
    }

    /// Sends the metric changes every runtime held since the last callback of this root
    /// context (the requests' log phases make no metrics call).
    fn flush_metrics(&self) {
        for runtime in self.runtimes() {
            runtime.flush_metrics();
        }
    }

    /// Forgets earlier runtimes once nothing is left to send and no HTTP context (a stream
    /// that began before the reload) can hand them another event.
    fn prune_retiring(&mut self) {
        self.retiring.retain(|runtime| {
            let keep = !runtime.is_idle() || Rc::strong_count(runtime) > 1;
            if !keep {
                runtime.retire();
            }
            keep
        });
    }
}

/// Makes `attempt` through the host's HTTP callout, addressed as `host` takes it.
pub fn dispatch(host: Host, attempt: &Attempt, timeout_ms: u64) -> Result<u32, Status> {
    let call = differences::call(host, attempt);
    proxy_wasm::hostcalls::dispatch_http_call(
        call.upstream,
        call.headers,
        Some(&attempt.body),
        Vec::new(),
        Duration::from_millis(timeout_ms),
    )
}

/// Dispatches through the host's HTTP callout.
struct HostTransport {
    host: Host,
    /// How many more calls the host takes now; `None`: as many as the queue's limits allow.
    room: Option<usize>,
}

impl Transport for HostTransport {
    fn has_room(&self) -> bool {
        self.room.is_none_or(|room| room > 0)
    }

    fn send(&mut self, attempt: &Attempt, timeout_ms: u64) -> Result<u32, SendError> {
        let sent = dispatch(self.host, attempt, timeout_ms);
        if sent.is_ok() {
            self.room = self.room.map(|room| room.saturating_sub(1));
        }
        sent.map_err(|status| match status {
            // Envoy: the call would fail at once (circuit breaker open, no healthy host).
            Status::InternalFailure => SendError::Busy(format!("{status:?}")),
            // Envoy: an unknown cluster or missing pseudo-headers; Kong: an upstream it
            // cannot parse.
            _ => SendError::Refused(format!("{status:?}")),
        })
    }
}

/// Logs each of `problems` after `what`, then the refusal; `false`, for `on_configure`.
fn refuse(problems: &[Problem], what: &str) -> bool {
    for problem in problems {
        abi::log(Level::Error, &format!("{what}: {problem}"));
    }
    abi::log(
        Level::Error,
        &format!(
            "configuration refused: {} problem(s); the filter did not start",
            problems.len()
        ),
    );
    false
}

/// A seed for webhook ids from the host's randomness, mixed with the clock so that a host
/// without `random_get` still gets distinct seeds per VM start.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    let random = getrandom::fill(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes));
    random ^ abi::now_ns().unwrap_or(0)
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        // Only the start of the body is read, for the log line of a failure (and never where
        // reading it crashes the host).
        let answer = CallAnswer::read(body_size, EXCERPT_BYTES + 1, self.known.reads_call_bodies());
        let response = match answer.status {
            // Envoy's own answer when the cluster's circuit breaker overflowed: never sent.
            Some(503) if answer.header("x-envoy-overloaded").is_some() => Response::Overloaded,
            Some(status) => Response::Status(status),
            // Kong reports why a call failed in `:dispatch_status`; Envoy sends no headers.
            None => Response::NoAnswer(answer.header(DISPATCH_STATUS).map(str::to_string)),
        };
        let clock = HostClock::read();
        if let Some(owner) = self.runtimes().find(|runtime| runtime.owns(token)) {
            let retry_after = answer.header("retry-after");
            owner.complete(token, response, &answer.body, retry_after, &clock);
            // Kong: the next call waits for the tick (one made here crashes the worker).
            if self.known.call_rules().send_from_answers {
                owner.send(&clock, &mut self.transport());
            }
        }
        self.flush_metrics();
        self.prune_retiring();
        self.finish_draining(clock.now_ms());
    }

    /// The host is removing this filter configuration (a configuration change, or shutdown):
    /// keep delivering what is outstanding, for up to the runtime's drain time.
    fn on_done(&mut self) -> bool {
        self.flush_metrics();
        let outstanding = self.outstanding();
        if outstanding == 0 {
            return true;
        }
        let clock = HostClock::read();
        for runtime in self.runtimes() {
            runtime.close_batches(&clock);
        }
        self.flush_metrics();
        if self.known.host() == Some(Host::Kong) {
            // ngx_wasm_module has no `proxy_done`: a root context cannot ask to wait.
            abi::log(
                Level::Warn,
                &format!(
                    "stopping with {outstanding} undelivered (calls queued or in flight, events in open batches)"
                ),
            );
            return true;
        }
        let drain_ms = self
            .runtimes()
            .map(|runtime| runtime.drain_ms())
            .max()
            .unwrap_or(30_000);
        abi::log(
            Level::Info,
            &format!(
                "delivering {outstanding} outstanding deliveries before stopping (up to {drain_ms} ms)"
            ),
        );
        self.draining_until = Some(clock.now_ms().saturating_add(drain_ms));
        false
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match abi::buffer(BufferType::PluginConfiguration) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(error) => {
                abi::log(
                    Level::Error,
                    &format!("invalid configuration: $: the host did not give it ({error})"),
                );
                return false;
            }
        };
        let config = match config::parse(&bytes) {
            Ok(config) => config,
            Err(problems) => return refuse(&problems, "invalid configuration"),
        };
        self.known.configure(config.host);
        if config.host.is_none() {
            // Before the tick period is set, which Kong allows once.
            let read_at = |offset: usize| abi::buffer_byte(BufferType::PluginConfiguration, offset);
            if let Some(host) = differences::host_by_buffer_offset(&bytes, &read_at) {
                self.known.detected(host);
            }
        }
        let attachment = self.attachment();
        let problems = attachment::check(&config, attachment);
        if !problems.is_empty() {
            return refuse(&problems, "invalid configuration for an access logger");
        }
        let runtime = Rc::new(Runtime::new(
            config,
            seed(),
            Box::new(HostShared),
            Box::new(HostMetrics::new(self.known.clone())),
            Box::new(HostLog),
        ));
        let rules = self.known.call_rules();
        let tick_ms = rules.tick_ms(runtime.flush_interval_ms());
        let sending = match rules.max_in_flight {
            None => format!("deliveries flushed every {tick_ms} ms"),
            Some(max) => format!(
                "deliveries sent every {tick_ms} ms, {max} call(s) in flight at most ({} host rules)",
                self.known.host().map_or("unknown", Host::name)
            ),
        };
        abi::log(
            Level::Info,
            &format!(
                "configured {} hook(s){}; {sending}",
                runtime.hooks().len(),
                match attachment {
                    Attachment::AccessLogger => " as an Envoy access logger",
                    Attachment::HttpFilter => "",
                }
            ),
        );
        for note in runtime.notes() {
            abi::log(Level::Info, &note);
        }
        if let Some(previous) = self.runtime.replace(runtime) {
            if self.retiring.len() >= MAX_RETIRING {
                self.retiring.remove(0).retire();
                abi::log(
                    Level::Warn,
                    "configuration reloaded repeatedly: the oldest configuration's undelivered events were dropped",
                );
            }
            previous.close_batches(&HostClock::read());
            self.retiring.push(previous);
            self.prune_retiring();
        }
        self.set_tick_period()
    }

    fn on_tick(&mut self) {
        // Envoy learned after the tick was set (the root context could not tell the host).
        self.set_tick_period();
        let clock = HostClock::read();
        let mut transport = self.transport();
        for runtime in self.runtimes() {
            runtime.flush(&clock, &mut transport);
        }
        self.flush_metrics();
        self.prune_retiring();
        self.finish_draining(clock.now_ms());
    }

    /// Envoy's wasm access logger: once per finished request, in this root context (an HTTP
    /// filter's root context never gets here). Only on Envoy: Kong has no access logger, and
    /// reading a request's headers from a root context crashes its worker.
    fn on_log(&mut self) {
        if self.known.host() != Some(Host::Envoy) {
            return;
        }
        let Some(runtime) = self
            .runtime
            .clone()
            .filter(|runtime| runtime.observes_requests())
        else {
            return;
        };
        self.known.learn(&HostProperties);
        let needs = runtime.needs();
        log_phase::observe(
            &runtime,
            &self.known,
            &needs,
            Capture::default(),
            Maps::InLogPhase,
        );
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Returning None would make the SDK panic: always return a context, an idle one when
        // no hook listens to a source built from requests and the admin endpoints are off.
        let runtime = self
            .runtime
            .as_ref()
            .filter(|runtime| runtime.observes_requests() || runtime.admin().is_some())
            .cloned();
        Some(Box::new(Http::new(runtime, self.known.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
