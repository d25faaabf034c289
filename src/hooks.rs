//! Hooks and routing: which hooks an event matches, and the jobs that follow.
//!
//! For an event, the hooks of its source are tried in configuration order: the hook's `event`
//! (absent: every event of the source), its filter, then its snooze/on-change controls.

use std::rc::Rc;

use crate::control::Controls;
use crate::delivery::Job;
use crate::event::{Event, Redaction};
use crate::filter::Filter;
use crate::handler::Handler;
use crate::id::IdGen;
use crate::source::Source;

/// One configured hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub name: String,
    pub source: Source,
    /// `None`: every event of the source.
    pub event: Option<String>,
    pub filter: Filter,
    pub handler: Handler,
    /// Seconds; 0 is off.
    pub snooze: u64,
    pub on_change: bool,
    pub redaction: Redaction,
}

/// Every hook of a configuration, indexed by source.
#[derive(Debug, Default)]
pub struct HookSet {
    hooks: Vec<Hook>,
    by_source: Vec<(Source, Vec<usize>)>,
}

impl HookSet {
    pub fn new(hooks: Vec<Hook>) -> Self {
        let mut by_source: Vec<(Source, Vec<usize>)> = Vec::new();
        for (index, hook) in hooks.iter().enumerate() {
            match by_source
                .iter_mut()
                .find(|(source, _)| *source == hook.source)
            {
                Some((_, indexes)) => indexes.push(index),
                None => by_source.push((hook.source, vec![index])),
            }
        }
        HookSet { hooks, by_source }
    }

    pub fn len(&self) -> usize {
        self.hooks.len()
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

    /// The index of the hook called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.hooks.iter().position(|hook| hook.name == name)
    }

    fn of_source(&self, source: Source) -> &[usize] {
        self.by_source
            .iter()
            .find(|(candidate, _)| *candidate == source)
            .map_or(&[], |(_, indexes)| indexes.as_slice())
    }

    /// Whether any hook listens to `source`.
    pub fn listens_to(&self, source: Source) -> bool {
        !self.of_source(source).is_empty()
    }

    /// The jobs `event` produces at `now_ms`: one per matching hook that its controls let
    /// through.
    pub fn route(
        &self,
        event: &Event,
        now_ms: u64,
        controls: &mut Controls,
        ids: &mut IdGen,
    ) -> Vec<Job> {
        let mut jobs = Vec::new();
        // Hooks that see the event alike send the same bytes: build them once.
        let mut payloads: Vec<(&Redaction, Rc<[u8]>)> = Vec::new();
        for &index in self.of_source(event.source) {
            let Some(hook) = self.hooks.get(index) else {
                continue;
            };
            if hook.event.as_ref().is_some_and(|name| *name != event.name) {
                continue;
            }
            if !hook.filter.matches(event, &hook.redaction) {
                continue;
            }
            if !controls.admit(index, hook, event, now_ms) {
                continue;
            }
            let payload = match payloads.iter().find(|(seen, _)| **seen == hook.redaction) {
                Some((_, payload)) => Rc::clone(payload),
                None => {
                    let payload: Rc<[u8]> = hook.handler.payload(event, &hook.redaction).into();
                    payloads.push((&hook.redaction, Rc::clone(&payload)));
                    payload
                }
            };
            jobs.push(Job {
                hook: index,
                webhook_id: ids.next(now_ms),
                payload,
                accepted_ms: now_ms,
            });
        }
        jobs
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

    fn traffic(status: u64, path: &str) -> Event {
        let data = json!({"response": {"status": status}, "request": {"path": path}})
            .as_object()
            .unwrap()
            .clone();
        Event::new(Source::Traffic, "request", data)
    }

    #[test]
    fn routes_matching_hooks_only_with_fresh_ids() {
        let set = hooks(json!({"hooks": [
            {"name": "orders-5xx", "source": "traffic", "event": "request",
             "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
             "handler": "webhook", "config": {"url": "http://r:9/a"}},
            {"source": "traffic", "handler": "webhook", "config": {"url": "http://r:9/b"}}
        ]}));
        let mut controls = Controls::default();
        let mut ids = IdGen::new(3);
        let jobs = set.route(&traffic(502, "/orders/7"), 1_000, &mut controls, &mut ids);
        assert_eq!(
            jobs.iter().map(|job| job.hook).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_ne!(jobs[0].webhook_id, jobs[1].webhook_id);
        // Both hooks see the event alike: one payload, shared.
        assert!(Rc::ptr_eq(&jobs[0].payload, &jobs[1].payload));
        let body: Value = serde_json::from_slice(&jobs[0].payload).unwrap();
        assert_eq!(body["response"]["status"], 502);
        assert_eq!(body["source"], "traffic");
        let jobs = set.route(&traffic(200, "/orders/7"), 1_000, &mut controls, &mut ids);
        assert_eq!(jobs.iter().map(|job| job.hook).collect::<Vec<_>>(), vec![1]);
        assert_eq!(set.name(1), "hook-1");
        assert_eq!(set.position("orders-5xx"), Some(0));
    }
}
