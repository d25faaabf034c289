//! The per-VM state a root context owns for one configuration: the hooks, the sources'
//! settings, the host's store, metrics and log, the id generator and the delivery queue. It is what the host
//! adapter calls into: [`Runtime::observe`] from `on_log` (through the HTTP context),
//! [`Runtime::flush`] from `on_tick`, and [`Runtime::complete`] (then, where the host allows
//! it, [`Runtime::send`]) from `on_http_call_response`; [`Runtime::observe_emitted`] from
//! `on_log` too, with the events other filters emitted ([`emissions`]).
//!
//! Callbacks of one VM run one at a time, so the inner `RefCell`s are never borrowed twice; a
//! borrow that fails anyway is logged and the event counted as dropped, never a panic.

mod dead_letters;
mod emissions;

use std::cell::{OnceCell, RefCell};

use crate::config::Config;
use crate::config::admin;
use crate::delivery::{Call, Delivery, Pipeline, Response, Transport};
use crate::emitted::{Emitted, Reason};
use crate::event::{Event, Fields, Redaction};
use crate::hooks::{Action, HookSet};
use crate::id::IdGen;
use crate::log::{Level, Log};
use crate::metrics::{self, Metrics};
use crate::needs::Needs;
use crate::ports::{Clock, Ports};
use crate::shared::Shared;
use crate::source::traffic::{self, Capture, Later};
use crate::source::{self, Count, Emit, Source, crud};
pub use emissions::Dropped;

/// What the runtime counted since it started (per VM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events emitted, per source, in the order of the configuration's
    /// [`Sources::all`](crate::source::Sources::all) (built-in sources, then published ones).
    pub emitted: Vec<u64>,
    /// Events other filters emitted that became events of a published source.
    pub emissions_accepted: u64,
    /// Those dropped, per reason, in [`Dropped::ALL`]'s order.
    pub emissions_dropped: [u64; Dropped::COUNT],
    /// `crud` events whose entity is absent: the body was larger than `max_body_bytes`.
    pub crud_body_too_large: u64,
    /// `crud` events whose entity is absent: the body was not JSON.
    pub crud_body_not_json: u64,
    /// Shared-state operations that failed (the event went through or was skipped).
    pub shared_errors: u64,
    /// Events lost to a re-entrant callback (should stay 0).
    pub busy: u64,
}

pub struct Runtime {
    hooks: HookSet,
    sources: source::Settings,
    admin: Option<admin::Settings>,
    store: Box<dyn Shared>,
    metrics: Box<dyn Metrics>,
    log: Box<dyn Log>,
    /// The hook dead letters go to.
    dead_letter: Option<usize>,
    delivery: RefCell<Pipeline>,
    ids: RefCell<IdGen>,
    /// The sources whose observation of a request makes the events some hook listens to,
    /// once each, in [`source::BUILTIN`]'s order.
    observers: Vec<Source>,
    /// Each source's state between requests ([`source::SourceKind::new_state`]), by index.
    states: RefCell<Vec<Option<Box<dyn std::any::Any>>>>,
    counters: RefCell<Counters>,
    /// The metric names counted per event, built once: `events.<source>` in the order of
    /// [`Sources::all`](crate::source::Sources::all), and `hook.<name>.matched` per hook.
    event_metrics: Vec<String>,
    matched_metrics: Vec<String>,
    /// What the host captures of each request.
    needs: Needs,
    /// The emitted events' metric names and the throttle of their drop warnings.
    emissions: emissions::Emissions,
}

impl Runtime {
    pub fn new(
        config: Config,
        seed: u64,
        store: Box<dyn Shared>,
        metrics: Box<dyn Metrics>,
        log: Box<dyn Log>,
    ) -> Self {
        metrics::define(metrics.as_ref());
        let matched_metrics: Vec<String> = config
            .hooks
            .iter()
            .map(|hook| metrics::name(&["hook", &hook.name, "matched"]))
            .collect();
        let registry = config.hooks.sources();
        let event_metrics: Vec<String> = registry
            .all()
            .map(|source| metrics::name(&["events", registry.name(source)]))
            .collect();
        let emissions = emissions::Emissions::new(registry.has_published());
        for name in matched_metrics
            .iter()
            .chain(&event_metrics)
            .chain(emissions.metric_names())
        {
            metrics.count(name, 0);
        }
        let counters = Counters {
            emitted: vec![0; registry.len()],
            ..Counters::default()
        };
        let needs = config.hooks.needs(&config.sources);
        let mut observers: Vec<Source> = Vec::new();
        for source in Source::all()
            .filter(|source| source.from_requests() && config.hooks.listens_to(*source))
        {
            let observer = source.kind().observed_by().unwrap_or(source);
            if !observers.contains(&observer) {
                observers.push(observer);
            }
        }
        observers.sort();
        let dead_letter = config
            .delivery
            .dead_letter
            .as_deref()
            .and_then(|name| config.hooks.position(name));
        Runtime {
            delivery: RefCell::new(Pipeline::new(
                config.delivery,
                config.hooks.len(),
                seed.rotate_left(17),
            )),
            hooks: config.hooks,
            sources: config.sources,
            admin: config.admin,
            store,
            metrics,
            log,
            dead_letter,
            ids: RefCell::new(IdGen::new(seed)),
            observers,
            states: RefCell::new(
                Source::all()
                    .map(|source| source.kind().new_state())
                    .collect(),
            ),
            counters: RefCell::new(counters),
            event_metrics,
            matched_metrics,
            needs,
            emissions,
        }
    }

    /// What the host adapter must capture of each request: the properties to read before
    /// [`Runtime::observe_with`] decides, those its `rest` reads once an event is built, and
    /// the header maps.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    pub fn hooks(&self) -> &HookSet {
        &self.hooks
    }

    pub fn admin(&self) -> Option<&admin::Settings> {
        self.admin.as_ref()
    }

    /// Where this runtime writes its log lines.
    pub fn log(&self) -> &dyn Log {
        self.log.as_ref()
    }

    /// This runtime's ports for an entry point called at `clock`.
    fn ports<'a>(&'a self, clock: &'a dyn Clock) -> Ports<'a> {
        Ports {
            clock,
            log: self.log.as_ref(),
            metrics: self.metrics.as_ref(),
        }
    }

    /// This worker's state, for `GET {prefix}/status`: the queue, the calls in flight, and per
    /// hook `accepted = delivered + failed + dropped + pending`.
    pub fn status(&self) -> serde_json::Value {
        let counters = self.counters();
        let registry = self.hooks.sources();
        let emitted: serde_json::Map<String, serde_json::Value> = registry
            .all()
            .zip(counters.emitted.iter())
            .map(|(source, count)| (registry.name(source).to_string(), (*count).into()))
            .collect();
        let (queue, hooks) = match self.delivery.try_borrow() {
            Ok(delivery) => {
                let hooks: serde_json::Map<String, serde_json::Value> = self
                    .hooks
                    .iter()
                    .zip(delivery.stats())
                    .map(|(hook, stats)| {
                        let mut entry = stats.status();
                        if let (Some(errors), Some(map)) =
                            (hook.handler.errors(), entry.as_object_mut())
                        {
                            map.insert("errors".into(), errors.into());
                        }
                        (hook.name.clone(), entry)
                    })
                    .collect();
                (delivery.status(), hooks)
            }
            Err(_) => (serde_json::Value::Null, serde_json::Map::new()),
        };
        serde_json::json!({
            "scope": "this worker",
            "queue": queue,
            "hooks": hooks,
            "events": emitted,
            "crud_body_too_large": counters.crud_body_too_large,
            "crud_body_not_json": counters.crud_body_not_json,
            "shared_errors": counters.shared_errors,
            "emissions": emissions::status(&counters),
        })
    }

    /// Queues calls a handler prepared outside routing (the admin `test` endpoint's extra
    /// calls).
    pub fn enqueue(&self, hook: usize, calls: Vec<Call>, clock: &dyn Clock) {
        let (ports, now_ms) = (self.ports(clock), clock.now_ms());
        let (Ok(mut ids), Ok(mut delivery), Some(policy)) = (
            self.ids.try_borrow_mut(),
            self.delivery.try_borrow_mut(),
            self.hooks.policy(hook),
        ) else {
            return;
        };
        for call in calls {
            let call = std::rc::Rc::new(call);
            let policy = std::rc::Rc::clone(policy);
            let queued = Delivery::new(hook, policy, ids.next(now_ms), call, now_ms);
            delivery.accept(queued, &ports);
        }
    }

    /// A new webhook id (for the admin `test` and `ping` calls).
    pub fn next_id(&self, now_ms: u64) -> String {
        self.ids
            .try_borrow_mut()
            .map(|mut ids| ids.next(now_ms))
            .unwrap_or_default()
    }

    pub fn counters(&self) -> Counters {
        self.counters
            .try_borrow()
            .map(|counters| counters.clone())
            .unwrap_or_default()
    }

    fn count(&self, change: impl FnOnce(&mut Counters)) {
        if let Ok(mut counters) = self.counters.try_borrow_mut() {
            change(&mut counters);
        }
    }

    /// Whether any hook listens to one of the sources built from proxied requests, or to a
    /// published one (when none does, HTTP contexts capture nothing).
    pub fn observes_requests(&self) -> bool {
        self.hooks
            .sources()
            .all()
            .any(|source| self.hooks.listens_to(source))
    }

    /// Whether response bodies may be read (a `crud` or `dao:crud` hook, and `crud.match`):
    /// the only work an HTTP context does in its response callbacks.
    pub fn reads_response_bodies(&self) -> bool {
        self.sources.crud.is_some() && self.listens_to_crud()
    }

    fn listens_to_crud(&self) -> bool {
        self.hooks.listens_to(Source::CRUD) || self.hooks.listens_to(Source::DAO_CRUD)
    }

    /// The most response-body bytes to read for a request seen so far (its headers and
    /// response status), when it may be an entity write that `crud.match` selects.
    pub fn crud_body_limit(&self, capture: &Capture) -> Option<usize> {
        let settings = self
            .sources
            .crud
            .as_ref()
            .filter(|_| self.listens_to_crud())?;
        let view = traffic::View::new(capture, 0);
        let (method, status) = (view.method()?, view.status()?);
        (crud::is_write_method(method)
            && (200..300).contains(&status)
            && settings.matcher.matches(&view, Redaction::none_shared()))
        .then_some(settings.max_body_bytes)
    }

    /// Sends the metric changes held since the last flush (the root context does, at the end
    /// of each of its callbacks).
    pub fn flush_metrics(&self) {
        self.metrics.flush();
    }

    /// How long the host waits for a call's answer.
    pub fn timeout_ms(&self) -> u64 {
        self.delivery
            .try_borrow()
            .map_or(5_000, |delivery| delivery.settings().timeout_ms)
    }

    pub fn flush_interval_ms(&self) -> u64 {
        self.delivery
            .try_borrow()
            .map_or(100, |delivery| delivery.settings().flush_interval_ms)
    }

    /// Builds every event one finished request gives (traffic, crud, rate limiting, health)
    /// and routes each to its hooks, for a capture of every property.
    pub fn observe(&self, capture: &Capture, clock: &dyn Clock) {
        self.observe_with(capture, &|_| {}, clock);
    }

    /// [`Runtime::observe`] for a capture of what [`Runtime::needs`] says: the properties of
    /// `first`, and the header maps it asks for. Filters test the request's fields where the
    /// host captured them; its traffic event is built only once a hook needs it, and `rest`
    /// then adds the properties of `then` to a copy of the capture's, and the header maps
    /// needed only then ([`Stage::Then`](crate::needs::Stage::Then)) where the capture has none.
    pub fn observe_with(&self, capture: &Capture, rest: &dyn Fn(&mut Later), clock: &dyn Clock) {
        self.observe_request(capture, rest, Vec::new(), clock);
    }

    /// The log phase's one entry point: [`Runtime::observe_with`], then the events other
    /// filters emitted during the request (`emitted`: each channel's decoding, see
    /// [`Runtime::observe_emitted`]). The request's traffic event is built at most once for
    /// both, and `rest` reads the host at most once.
    pub fn observe_request(
        &self,
        capture: &Capture,
        rest: &dyn Fn(&mut Later),
        emitted: Vec<Result<Emitted, Reason>>,
        clock: &dyn Clock,
    ) {
        let now_ns = clock.now_ns();
        let built = OnceCell::new();
        let traffic = || built.get_or_init(|| self.traffic_event(capture, rest, now_ns));
        let view = traffic::View::new(capture, now_ns);
        let request = source::Request {
            capture,
            view: &view,
            traffic: &traffic,
            settings: &self.sources,
            store: self.store.as_ref(),
        };
        let emit = Emitter {
            runtime: self,
            ports: self.ports(clock),
        };
        if let Ok(mut states) = self.states.try_borrow_mut() {
            for source in &self.observers {
                let state = states
                    .get_mut(source.index())
                    .and_then(|state| state.as_deref_mut());
                source.kind().observe(&request, state, &emit);
            }
        }
        for decoded in emitted {
            self.route_emitted(decoded, &traffic, clock);
        }
    }

    /// The traffic event of a request captured as [`Runtime::needs`] says, `rest` adding the
    /// properties read once an event is built.
    fn traffic_event(&self, capture: &Capture, rest: &dyn Fn(&mut Later), now_ns: u64) -> Event {
        if !self.needs.reads_later() {
            return traffic::event(capture, now_ns);
        }
        let mut later = Later::of(capture);
        rest(&mut later);
        traffic::event_of(&traffic::View::later(capture, &later, now_ns))
    }

    /// Routes `event` to its hooks, queues the calls and writes the log lines that follow.
    pub fn emit(&self, event: &Event, clock: &dyn Clock) {
        let ports = self.ports(clock);
        self.emit_lazy(event.source, &event.name, event, || event, &ports);
    }

    /// [`Runtime::emit`] for event `name` of `source`, its hooks' filters tested on `fields`:
    /// `event` builds it once one passes.
    fn emit_lazy<'e, F: Fields>(
        &self,
        source: Source,
        name: &str,
        fields: &F,
        event: impl FnOnce() -> &'e Event,
        ports: &Ports<'_>,
    ) {
        self.count_emitted(source);
        let actions = match self.ids.try_borrow_mut() {
            Ok(mut ids) => self.hooks.route_lazy(
                source,
                name,
                fields,
                event,
                ports.now_ms(),
                self.store.as_ref(),
                &mut ids,
            ),
            Err(_) => {
                self.count(|c| c.busy += 1);
                ports.log.log(
                    Level::Error,
                    "event dropped: runtime state busy (re-entrant callback)",
                );
                return;
            }
        };
        self.act(actions, false, ports);
    }

    /// Counts an event of `source` (admin status `events`, metric `events.<source>`).
    fn count_emitted(&self, source: Source) {
        let at = source.index();
        self.count(|c| {
            if let Some(count) = c.emitted.get_mut(at) {
                *count = count.saturating_add(1);
            }
        });
        if let Some(name) = self.event_metrics.get(at) {
            self.metrics.count(name, 1);
        }
    }

    /// Carries routing's actions out: counts the matches, queues the calls (marked as dead
    /// letters' own when `dead_letter`), writes the log lines.
    fn act(&self, actions: Vec<Action>, dead_letter: bool, ports: &Ports<'_>) {
        let Ok(mut pipeline) = self.delivery.try_borrow_mut() else {
            self.count(|c| c.busy += 1);
            ports.log.log(
                Level::Error,
                "event dropped: runtime state busy (re-entrant callback)",
            );
            return;
        };
        for action in actions {
            match action {
                Action::Matched(hook) => {
                    if let Some(name) = self.matched_metrics.get(hook) {
                        ports.metrics.count(name, 1);
                    }
                }
                Action::Deliver(mut delivery) => {
                    delivery.dead_letter = dead_letter;
                    pipeline.accept(delivery, ports);
                }
                Action::Log(level, line) => ports.log.log(level, &line),
            }
        }
    }

    /// Sends what is queued, up to the in-flight limit (and what is due for a retry).
    pub fn flush(&self, clock: &dyn Clock, transport: &mut dyn Transport) {
        let ports = self.ports(clock);
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.tick(&ports);
            delivery.pump(&ports, transport);
        }
        self.send_dead_letters(&ports);
        self.emissions.summarize(&ports);
    }

    /// Whether call `token` is one of this runtime's.
    pub fn owns(&self, token: u32) -> bool {
        self.delivery
            .try_borrow()
            .is_ok_and(|delivery| delivery.owns(token))
    }

    /// Records the answer to call `token` (its body's start and its `Retry-After`). Nothing is
    /// sent: the host adapter calls [`Runtime::send`] next where the host allows a call from
    /// an answer (Envoy; not Kong).
    pub fn complete(
        &self,
        token: u32,
        response: Response,
        body: &[u8],
        retry_after: Option<&str>,
        clock: &dyn Clock,
    ) {
        let ports = self.ports(clock);
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.complete(token, response, body, retry_after, &ports);
        }
        self.send_dead_letters(&ports);
    }

    /// Sends what is queued, up to the in-flight limits, without the tick's chores: after an
    /// answer freed a slot.
    pub fn send(&self, clock: &dyn Clock, transport: &mut dyn Transport) {
        let ports = self.ports(clock);
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.pump(&ports, transport);
        }
        self.send_dead_letters(&ports);
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.delivery
            .try_borrow()
            .map_or(0, |delivery| delivery.in_flight())
    }

    /// This configuration is going away: its gauges return to zero.
    pub fn retire(&self) {
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.report(self.metrics.as_ref(), true);
        }
    }

    /// Deliveries queued or in flight, and events waiting in open batches.
    pub fn outstanding(&self) -> usize {
        self.delivery.try_borrow().map_or(0, |delivery| {
            delivery.depth() + delivery.in_flight() + delivery.batching()
        })
    }

    /// Closes every open batch now, for the next sending round: the configuration is going
    /// away (a reload, or the host stopping the filter) and what it batched should not wait.
    pub fn close_batches(&self, clock: &dyn Clock) {
        let ports = self.ports(clock);
        if let Ok(mut delivery) = self.delivery.try_borrow_mut() {
            delivery.close_batches(&ports);
        }
    }

    /// How long to keep delivering after the host asks the filter to stop: twice the call
    /// timeout, and at least 30 s.
    pub fn drain_ms(&self) -> u64 {
        self.delivery.try_borrow().map_or(30_000, |delivery| {
            delivery.settings().timeout_ms.saturating_mul(2).max(30_000)
        })
    }

    /// Notes for the log when the configuration loads: what the filter cannot enforce itself.
    pub fn notes(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter_map(|hook| hook.handler.note(&hook.name))
            .collect()
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.outstanding() == 0
    }
}

/// Where the sources' events go for one request: routing, then delivery.
struct Emitter<'a> {
    runtime: &'a Runtime,
    ports: Ports<'a>,
}

impl Emit for Emitter<'_> {
    fn event(&self, event: &Event) {
        self.runtime.emit(event, self.ports.clock);
    }

    fn lazy<'e>(
        &self,
        source: Source,
        name: &str,
        view: &traffic::View<'_>,
        build: &dyn Fn() -> &'e Event,
    ) {
        self.runtime
            .emit_lazy(source, name, view, build, &self.ports);
    }

    fn count(&self, what: Count) {
        self.runtime.count(|counters| match what {
            Count::CrudBodyTooLarge => counters.crud_body_too_large += 1,
            Count::CrudBodyNotJson => counters.crud_body_not_json += 1,
            Count::SharedError => counters.shared_errors += 1,
        });
    }

    fn log(&self, level: Level, message: &str) {
        self.ports.log.log(level, message);
    }
}

#[cfg(test)]
mod tests;
