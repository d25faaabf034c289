//! Hooks and routing: which hooks an event matches, and what follows.
//!
//! For an event, the enabled hooks of its source are tried in configuration order: the hook's
//! `event` (absent: every event of the source), its filter, then its snooze/on-change
//! controls. A hook that passes runs its handler; each call the handler prepares becomes a
//! [`Delivery`] with its own webhook id and the hook's call [`Policy`] (its name, signing and
//! retry), made once per configuration, so that delivery never needs the hooks.

mod index;

use std::cell::RefCell;
use std::rc::Rc;

use crate::control;
use crate::delivery::{Delivery, Policy};
use crate::event::{Bodies, Event, Fields, Redaction, Stamp};
use crate::filter::Filter;
use crate::handler::{Handler, Output};
use crate::id::IdGen;
use crate::log::Level;
use crate::needs::{HookUse, Needs};
use crate::shared::Shared;
use crate::source::published::Published;
use crate::source::{Source, Sources, registry};

/// One configured hook.
#[derive(Debug, Clone)]
pub struct Hook {
    pub name: String,
    pub source: Source,
    /// Its source, when the configuration publishes it (`None`: a built-in source).
    pub published: Option<Rc<Published>>,
    /// `None`: every event of the source.
    pub event: Option<String>,
    pub filter: Filter,
    pub handler: Rc<dyn Handler>,
    /// Seconds; 0 is off.
    pub snooze: u64,
    pub on_change: bool,
    pub redaction: Redaction,
    /// A disabled hook is kept (its name, its place) but matches nothing.
    pub enabled: bool,
    /// The hook as configured (with its name), every secret `"[redacted]"`: what the admin
    /// listing shows.
    pub shown: serde_json::Value,
}

impl Hook {
    /// Its snooze and on_change, as [`control`] applies them.
    pub fn controls(&self) -> control::Controls<'_> {
        control::Controls {
            name: &self.name,
            snooze: self.snooze,
            on_change: self.on_change,
            redaction: &self.redaction,
            published: self.published.as_deref(),
        }
    }

    /// The name of its source, as its events carry it.
    pub fn source_name(&self) -> std::borrow::Cow<'static, str> {
        registry::source_name(self.source, self.published.as_deref())
    }
}

/// What routing an event produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hook `index` matched the event (its outputs follow).
    Matched(usize),
    /// A call to queue for delivery.
    Deliver(Delivery),
    /// A line for the proxy's log.
    Log(Level, String),
}

/// Every hook of a configuration, indexed by source and, within a source, by the conditions of
/// their filters ([`index`]).
#[derive(Debug, Default)]
pub struct HookSet {
    hooks: Vec<Hook>,
    /// Every source the configuration has: the built-in ones and those it publishes.
    sources: Sources,
    /// Each hook's call policy, in the hooks' order, shared by its deliveries.
    policies: Vec<Rc<Policy>>,
    by_source: Vec<Group>,
    /// The candidates of the event being routed: kept from one event to the next, so that
    /// finding them allocates nothing (room for every hook of the largest source from the start).
    candidates: RefCell<Vec<usize>>,
}

/// The hooks of one source, in configuration order, and their index.
#[derive(Debug)]
struct Group {
    source: Source,
    hooks: Vec<usize>,
    index: index::Index,
}

impl HookSet {
    /// What a configuration's hooks and sources need of each request: what each source with an
    /// enabled hook says it needs ([`crate::source::SourceKind::needs`], and for a published
    /// source [`Published::needs`]).
    pub fn needs(&self, sources: &crate::source::Settings) -> Needs {
        let mut needs = Needs::default();
        for source in self.sources.all() {
            let uses: Vec<HookUse<'_>> = self
                .iter()
                .filter(|hook| hook.enabled && hook.source == source)
                .map(|hook| HookUse {
                    filter: &hook.filter,
                    handler_fields: hook.handler.event_fields(),
                    on_change: hook.on_change,
                })
                .collect();
            if uses.is_empty() {
                continue;
            }
            needs = needs.union(match self.sources.published(source) {
                Some(published) => published.needs(),
                None => source.kind().needs(&uses, sources),
            });
        }
        needs.then = needs.then.without(needs.first);
        needs
    }

    /// The hooks of a configuration whose sources are `sources`.
    pub fn new(hooks: Vec<Hook>, sources: Sources) -> Self {
        let mut by_source: Vec<Group> = Vec::new();
        for (at, hook) in hooks.iter().enumerate() {
            match by_source
                .iter_mut()
                .find(|group| group.source == hook.source)
            {
                Some(group) => group.hooks.push(at),
                None => by_source.push(Group {
                    source: hook.source,
                    hooks: vec![at],
                    index: index::Index::default(),
                }),
            }
        }
        for group in &mut by_source {
            group.index = index::Index::new(&hooks, &group.hooks);
        }
        let largest = by_source.iter().map(|group| group.hooks.len()).max();
        let policies = hooks
            .iter()
            .map(|hook| {
                let signing = hook.handler.signing().clone();
                Rc::new(
                    Policy::new(&hook.name, signing, hook.handler.retry().copied())
                        .batching(hook.handler.batching()),
                )
            })
            .collect();
        HookSet {
            hooks,
            sources,
            policies,
            by_source,
            candidates: RefCell::new(Vec::with_capacity(largest.unwrap_or(0))),
        }
    }

    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// Every source of the configuration.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Hook> {
        self.hooks.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Hook> {
        self.hooks.iter()
    }

    /// The hook's name, for log lines.
    pub fn name(&self, index: usize) -> &str {
        self.hooks.get(index).map_or("?", |hook| hook.name.as_str())
    }

    /// The call policy of hook `index`, for its deliveries.
    pub fn policy(&self, index: usize) -> Option<&Rc<Policy>> {
        self.policies.get(index)
    }

    /// The index of the hook called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.hooks.iter().position(|hook| hook.name == name)
    }

    fn group(&self, source: Source) -> Option<&Group> {
        self.by_source.iter().find(|group| group.source == source)
    }

    fn of_source(&self, source: Source) -> &[usize] {
        self.group(source)
            .map_or(&[], |group| group.hooks.as_slice())
    }

    /// Whether any hook listens to `source`.
    pub fn listens_to(&self, source: Source) -> bool {
        !self.of_source(source).is_empty()
    }

    /// What `event` produces at `now_ms`: the outputs of every matching hook that its
    /// controls let through.
    pub fn route(
        &self,
        event: &Event,
        now_ms: u64,
        store: &dyn Shared,
        ids: &mut IdGen,
    ) -> Vec<Action> {
        self.route_lazy(
            event.source,
            &event.name,
            event,
            || event,
            now_ms,
            store,
            ids,
        )
    }

    /// What event `name` of `source` produces, its hooks' filters tested on `fields` (the
    /// event, or what it would be built from): `event` builds it only once a hook's filter
    /// passes. An event that no hook's filter selects is never built.
    #[allow(clippy::too_many_arguments)]
    pub fn route_lazy<'e, F: Fields>(
        &self,
        source: Source,
        name: &str,
        fields: &F,
        event: impl FnOnce() -> &'e Event,
        now_ms: u64,
        store: &dyn Shared,
        ids: &mut IdGen,
    ) -> Vec<Action> {
        let Some(group) = self.group(source) else {
            return Vec::new();
        };
        let mut own = Vec::new();
        let mut kept = self.candidates.try_borrow_mut();
        let candidates = match &mut kept {
            Ok(kept) => kept,
            Err(_) => &mut own,
        };
        candidates.clear();
        group.index.candidates(fields, candidates);
        candidates.sort_unstable();
        candidates.dedup();
        let Some(first) = candidates
            .iter()
            .position(|&index| self.selects(index, name, fields))
        else {
            return Vec::new();
        };
        let rest = candidates.get(first..).unwrap_or_default().to_vec();
        drop(kept);
        self.route_hooks(&rest, event(), now_ms, store, ids)
    }

    /// Whether hook `index` is on, takes events called `name`, and its filter passes.
    fn selects<F: Fields>(&self, index: usize, name: &str, fields: &F) -> bool {
        self.hooks.get(index).is_some_and(|hook| {
            hook.enabled
                && hook.event.as_ref().is_none_or(|event| event == name)
                && hook.filter.matches(fields, &hook.redaction)
        })
    }

    /// What `event` produces for hook `index` alone (a dead letter for the dead-letter hook).
    pub fn route_to(
        &self,
        index: usize,
        event: &Event,
        now_ms: u64,
        store: &dyn Shared,
        ids: &mut IdGen,
    ) -> Vec<Action> {
        self.route_hooks(&[index], event, now_ms, store, ids)
    }

    fn route_hooks(
        &self,
        indexes: &[usize],
        event: &Event,
        now_ms: u64,
        store: &dyn Shared,
        ids: &mut IdGen,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        // Hooks that see the event alike send the same bytes: bodies are built once.
        let mut bodies = Bodies::new(event);
        for &index in indexes {
            self.run(index, event, now_ms, store, ids, &mut bodies, &mut actions);
        }
        actions
    }

    /// Hook `index` on `event`: its event name, filter and controls, then its handler.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        index: usize,
        event: &Event,
        now_ms: u64,
        store: &dyn Shared,
        ids: &mut IdGen,
        bodies: &mut Bodies<'_>,
        actions: &mut Vec<Action>,
    ) {
        let (Some(hook), Some(policy)) = (self.hooks.get(index), self.policies.get(index)) else {
            return;
        };
        if !self.selects(index, &event.name, event) {
            return;
        }
        match control::admit(store, &hook.controls(), event, now_ms) {
            Ok(true) => {}
            Ok(false) => return,
            // The shared state is unusable: let the event through rather than lose it.
            Err(why) => actions.push(Action::Log(
                Level::Warn,
                format!(
                    "hook {}: snooze/on_change state unavailable ({why}); event let through",
                    hook.name
                ),
            )),
        }
        actions.push(Action::Matched(index));
        // The delivery's id, before the handler runs (a CloudEvent carries it in its body);
        // none for a handler that makes no call.
        let id = if hook.handler.makes_calls() {
            ids.next(now_ms)
        } else {
            String::new()
        };
        bodies.stamp(Stamp {
            hook: Rc::clone(&policy.name),
            id,
            time_ms: now_ms,
        });
        for output in hook.handler.prepare(bodies, &hook.redaction) {
            actions.push(match output {
                Output::Call(call) => Action::Deliver(Delivery::new(
                    index,
                    Rc::clone(policy),
                    bodies.take_id().unwrap_or_else(|| ids.next(now_ms)),
                    Rc::new(call),
                    now_ms,
                )),
                Output::Log(level, line) => Action::Log(level, line),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use serde_json::{Value, json};

    fn hooks(config: Value) -> HookSet {
        config::parse(config.to_string().as_bytes()).unwrap().hooks
    }

    fn deliveries(actions: Vec<Action>) -> Vec<Delivery> {
        actions
            .into_iter()
            .filter_map(|action| match action {
                Action::Deliver(job) => Some(job),
                Action::Matched(_) => None,
                Action::Log(_, line) => panic!("unexpected log line {line}"),
            })
            .collect()
    }

    #[test]
    fn disabled_hooks_match_nothing() {
        let set = hooks(json!({"hooks": [
            {"source": "traffic", "enabled": false, "handler": "webhook", "config": {"url": "http://r/"}}
        ]}));
        let actions = set.route(
            &traffic(500, "/"),
            0,
            &crate::shared::Memory::default(),
            &mut IdGen::new(1),
        );
        assert!(actions.is_empty());
    }

    /// A `log` hook makes no call, so no delivery id is made for it: the webhook after it
    /// gets the id it would get alone.
    #[test]
    fn a_hook_that_makes_no_call_takes_no_id() {
        let webhook =
            json!({"source": "traffic", "handler": "webhook", "config": {"url": "http://a/"}});
        let log = json!({"source": "traffic", "handler": "log", "config": {}});
        let id = |config: Value| {
            let actions = hooks(config).route(
                &traffic(500, "/"),
                0,
                &crate::shared::Memory::default(),
                &mut IdGen::new(1),
            );
            let ids: Vec<String> = actions
                .into_iter()
                .filter_map(|action| match action {
                    Action::Deliver(job) => Some(job.webhook_id.clone()),
                    _ => None,
                })
                .collect();
            ids
        };
        let alone = id(json!({"hooks": [webhook.clone()]}));
        assert_eq!(alone.len(), 1);
        assert_eq!(id(json!({"hooks": [log, webhook]})), alone);
    }

    #[test]
    fn route_to_runs_one_hook() {
        let set = hooks(json!({"hooks": [
            {"source": "traffic", "handler": "webhook", "config": {"url": "http://a/"}},
            {"source": "traffic", "handler": "webhook", "config": {"url": "http://b/"}}
        ]}));
        let jobs = deliveries(set.route_to(
            1,
            &traffic(500, "/"),
            0,
            &crate::shared::Memory::default(),
            &mut IdGen::new(1),
        ));
        assert_eq!(jobs.iter().map(|job| job.hook).collect::<Vec<_>>(), vec![1]);
    }

    fn traffic(status: u64, path: &str) -> Event {
        let data = json!({"response": {"status": status}, "request": {"path": path}})
            .as_object()
            .unwrap()
            .clone();
        Event::new(Source::TRAFFIC, "request", data)
    }

    #[test]
    fn routes_matching_hooks_only_with_fresh_ids() {
        let set = hooks(json!({"hooks": [
            {"name": "orders-5xx", "source": "traffic", "event": "request",
             "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
             "handler": "webhook", "config": {"url": "http://r:9/a"}},
            {"source": "traffic", "handler": "webhook", "config": {"url": "http://r:9/b"}}
        ]}));
        let store = crate::shared::Memory::default();
        let mut ids = IdGen::new(3);
        let jobs = deliveries(set.route(&traffic(502, "/orders/7"), 1_000, &store, &mut ids));
        assert_eq!(
            jobs.iter().map(|job| job.hook).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_ne!(jobs[0].webhook_id, jobs[1].webhook_id);
        // Both hooks see the event alike: one body, shared.
        assert!(Rc::ptr_eq(&jobs[0].call.body, &jobs[1].call.body));
        assert_eq!(
            (jobs[0].call.path.as_str(), jobs[1].call.path.as_str()),
            ("/a", "/b")
        );
        let body: Value = serde_json::from_slice(&jobs[0].call.body).unwrap();
        assert_eq!(body["response"]["status"], 502);
        assert_eq!(body["source"], "traffic");
        let jobs = deliveries(set.route(&traffic(200, "/orders/7"), 1_000, &store, &mut ids));
        assert_eq!(jobs.iter().map(|job| job.hook).collect::<Vec<_>>(), vec![1]);
        assert_eq!(set.name(1), "hook-1");
        assert_eq!(set.position("orders-5xx"), Some(0));
    }
}
