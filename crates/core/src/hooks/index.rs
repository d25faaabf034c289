//! Which hooks of a source may match an event, found without trying them all: an event that
//! matches nothing costs about the same with 10 hooks or 10,000.
//!
//! Each enabled hook is filed under one condition of its filter (its *key*), chosen when the
//! configuration loads; an event can only match the hook if that condition holds. Keys are:
//!
//! * an exact text (`"request.method": "DELETE"`, `{"in": ["a", "b"]}` of strings): one hash
//!   table per field, looked up once per event;
//! * a text prefix (`"request.path": {"prefix": "/orders"}`): one hash table per field,
//!   looked up once per distinct prefix length;
//! * any other condition (`"response.status": {"gte": 500}`): tested once per event for every
//!   hook that has the same one, the field read once for all the conditions on it.
//!
//! Of its conditions, a hook is filed under the one fewest other hooks share (the most
//! selective), exact before prefix before other. A condition on header values that the hook
//! sees redacted is never a key (the index reads fields unredacted); a hook with no usable
//! condition is tried for every event. The candidates are then tried in configuration order,
//! each with its whole filter, exactly as without the index.
//!
//! An event's cost grows with the distinct fields and distinct other conditions the keys test
//! (each read or tested once), not with the hooks.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use super::Hook;
use crate::event::{Field, Fields, Redaction};
use crate::filter::Condition;

/// The index of one source's hooks.
#[derive(Debug, Default)]
pub struct Index {
    /// Hooks without a key: tried for every event.
    always: Vec<usize>,
    /// Exact texts and prefixes, per field.
    texts: Vec<Texts>,
    /// Other conditions, each with the hooks filed under it.
    shared: Vec<Shared>,
    /// While the index is built: where in `shared` each condition is, by [`Key::name`], and
    /// where in `texts` each field is.
    shared_at: HashMap<String, usize, BuildHasherDefault<Fnv>>,
    texts_at: HashMap<Vec<String>, usize, BuildHasherDefault<Fnv>>,
}

#[derive(Debug)]
struct Texts {
    path: Vec<String>,
    exact: Table,
    prefixes: Table,
    /// The distinct prefix lengths, in bytes, ascending.
    lengths: Vec<usize>,
}

/// Hooks by text. Only the configuration's texts are keys (a request's text is looked up,
/// never added), so a fast unkeyed hash will do.
type Table = HashMap<String, Vec<usize>, BuildHasherDefault<Fnv>>;

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Debug)]
struct Shared {
    path: Vec<String>,
    condition: Condition,
    hooks: Vec<usize>,
}

/// A key a hook may be filed under.
#[derive(Debug, Clone, Copy)]
enum Key<'h> {
    /// The field is one of these texts.
    Exact(&'h [String], &'h [Value]),
    Prefix(&'h [String], &'h str),
    Other(&'h [String], &'h Condition),
}

impl Key<'_> {
    /// A name for an other condition: equal conditions on equal paths have equal names (their
    /// Debug forms; Condition has no Hash, as JSON values have none).
    fn name(path: &[String], condition: &Condition) -> String {
        format!("{path:?} {condition:?}")
    }

    /// Exact before prefix before other, when as selective.
    fn rank(&self) -> u8 {
        match self {
            Key::Exact(..) => 0,
            Key::Prefix(..) => 1,
            Key::Other(..) => 2,
        }
    }
}

/// The key a condition on `path` offers: itself, or for `All` its first exact or prefix part.
fn key<'h>(path: &'h [String], condition: &'h Condition) -> Key<'h> {
    let texts = |items: &'h [Value]| items.iter().all(Value::is_string).then_some(items);
    let direct = |condition: &'h Condition| match condition {
        Condition::Eq(operand @ Value::String(_)) => {
            Some(Key::Exact(path, std::slice::from_ref(operand)))
        }
        Condition::In(items) => texts(items).map(|items| Key::Exact(path, items)),
        Condition::Prefix(prefix) => Some(Key::Prefix(path, prefix)),
        _ => None,
    };
    match condition {
        Condition::All(parts) => parts.iter().find_map(direct),
        _ => direct(condition),
    }
    .unwrap_or(Key::Other(path, condition))
}

/// The keys hook `hook` may be filed under, in its filter's order.
fn keys(hook: &Hook) -> Vec<Key<'_>> {
    hook.filter
        .entries()
        .filter(|(path, _)| !hook.redaction.covers(path) && !hook.redaction.contains(path))
        .map(|(path, condition)| key(path, condition))
        .collect()
}

impl Index {
    /// The index of the hooks `indexes` of `hooks` (one source's, in configuration order).
    pub fn new(hooks: &[Hook], indexes: &[usize]) -> Index {
        let filed: Vec<(usize, Vec<Key<'_>>)> = indexes
            .iter()
            .filter_map(|&index| Some((index, hooks.get(index)?)))
            .filter(|(_, hook)| hook.enabled)
            .map(|(index, hook)| (index, keys(hook)))
            .collect();
        // Every hook under every key it offers, to know how many share each.
        let mut all = Index::default();
        for (hook, keys) in &filed {
            for key in keys {
                all.file(*hook, *key);
            }
        }
        let mut index = Index::default();
        for (hook, keys) in &filed {
            match keys.iter().min_by_key(|key| (all.size(key), key.rank())) {
                Some(key) => index.file(*hook, *key),
                None => index.always.push(*hook),
            }
        }
        for texts in &mut index.texts {
            texts.lengths.sort_unstable();
            texts.lengths.dedup();
        }
        // Conditions on the same field side by side: an event reads each field once
        // (`candidates`), however many hooks test it with conditions of their own.
        index.shared.sort_by(|a, b| a.path.cmp(&b.path));
        index.shared_at = HashMap::default();
        index.texts_at = HashMap::default();
        index
    }

    fn file(&mut self, hook: usize, key: Key<'_>) {
        // Hooks are filed in order, so a repeat (`in` naming a text twice) is the last one.
        let add = |table: &mut Table, text: &str| {
            let hooks = table.entry(text.to_string()).or_default();
            if hooks.last() != Some(&hook) {
                hooks.push(hook);
            }
        };
        match key {
            Key::Exact(path, items) => {
                if let Some(texts) = self.texts_of(path) {
                    for text in items.iter().filter_map(Value::as_str) {
                        add(&mut texts.exact, text);
                    }
                }
            }
            Key::Prefix(path, prefix) => {
                if let Some(texts) = self.texts_of(path) {
                    add(&mut texts.prefixes, prefix);
                    texts.lengths.push(prefix.len());
                }
            }
            Key::Other(path, condition) => {
                let at = *self
                    .shared_at
                    .entry(Key::name(path, condition))
                    .or_insert(self.shared.len());
                // The name found is checked: a hook is only ever tried with its own condition.
                match self
                    .shared
                    .get_mut(at)
                    .filter(|shared| shared.path == path && shared.condition == *condition)
                {
                    Some(shared) => shared.hooks.push(hook),
                    None => self.shared.push(Shared {
                        path: path.to_vec(),
                        condition: condition.clone(),
                        hooks: vec![hook],
                    }),
                }
            }
        }
    }

    /// How many hooks are filed under `key` (under each of its texts, added up).
    fn size(&self, key: &Key<'_>) -> usize {
        let texts = |path: &[String]| self.texts_at.get(path).and_then(|at| self.texts.get(*at));
        let count = |table: &Table, text: &str| table.get(text).map_or(0, Vec::len);
        match *key {
            Key::Exact(path, items) => texts(path).map_or(0, |texts| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|text| count(&texts.exact, text))
                    .sum()
            }),
            Key::Prefix(path, prefix) => {
                texts(path).map_or(0, |texts| count(&texts.prefixes, prefix))
            }
            Key::Other(path, condition) => self
                .shared_at
                .get(&Key::name(path, condition))
                .and_then(|at| self.shared.get(*at))
                .map_or(0, |shared| shared.hooks.len()),
        }
    }

    fn texts_of(&mut self, path: &[String]) -> Option<&mut Texts> {
        let at = match self.texts_at.get(path) {
            Some(at) => *at,
            None => {
                self.texts_at.insert(path.to_vec(), self.texts.len());
                self.texts.push(Texts {
                    path: path.to_vec(),
                    exact: Table::default(),
                    prefixes: Table::default(),
                    lengths: Vec::new(),
                });
                self.texts.len().saturating_sub(1)
            }
        };
        self.texts.get_mut(at)
    }

    /// Appends the hooks that may match `fields` (unordered, possibly repeated) to `out`.
    pub fn candidates<F: Fields>(&self, fields: &F, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.always);
        let none = Redaction::none_shared();
        for texts in &self.texts {
            let Some(field) = fields.field(&texts.path, none) else {
                continue;
            };
            let Some(text) = field.as_str() else {
                continue;
            };
            if let Some(hooks) = texts.exact.get(text) {
                out.extend_from_slice(hooks);
            }
            for &length in &texts.lengths {
                if length > text.len() {
                    break;
                }
                if let Some(hooks) = text.get(..length).and_then(|head| texts.prefixes.get(head)) {
                    out.extend_from_slice(hooks);
                }
            }
        }
        // The field last read, for the conditions that follow on the same one.
        let mut read: Option<(&[String], Option<Field<'_>>)> = None;
        for shared in &self.shared {
            if read
                .as_ref()
                .is_none_or(|(path, _)| *path != shared.path.as_slice())
            {
                read = Some((&shared.path, fields.field(&shared.path, none)));
            }
            let field = read.as_ref().and_then(|(_, field)| field.as_ref());
            if shared.condition.holds(field) {
                out.extend_from_slice(&shared.hooks);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::HookSet;
    use crate::config;
    use crate::event::Event;
    use crate::source::Source;
    use serde_json::{Value, json};

    fn hook_set(hooks: Vec<Value>) -> HookSet {
        config::parse(json!({"hooks": hooks}).to_string().as_bytes())
            .unwrap()
            .hooks
    }

    fn candidates(set: &HookSet, event: &Event) -> Vec<usize> {
        let mut out = Vec::new();
        set.group(Source::TRAFFIC)
            .unwrap()
            .index
            .candidates(event, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn traffic(data: Value) -> Event {
        Event::new(
            Source::TRAFFIC,
            "request",
            data.as_object().unwrap().clone(),
        )
    }

    /// Every hook whose filter selects an event is among its candidates, whatever the filters,
    /// redactions and events: random ones, compared with trying every hook.
    #[test]
    fn every_selecting_hook_is_a_candidate() {
        let fields = [
            "request.method",
            "request.path",
            "response.status",
            "request.headers.x-team",
            "request.headers.authorization",
            "route",
        ];
        let conditions = [
            json!("GET"),
            json!("DELETE"),
            json!("/orders"),
            json!("[redacted]"),
            json!("Bearer t"),
            json!(500),
            json!({"eq": 503.0}),
            json!({"in": ["GET", "POST"]}),
            json!({"in": ["a", 503]}),
            json!({"prefix": "/orders"}),
            json!({"prefix": "/orders/"}),
            json!({"prefix": ""}),
            json!({"prefix": "Bearer"}),
            json!({"prefix": "[red"}),
            json!({"suffix": "7"}),
            json!({"gte": 500, "lt": 600}),
            json!({"gte": 500}),
            json!({"ne": "GET"}),
            json!({"not": {"prefix": "/users"}}),
            json!({"exists": false}),
            json!({"prefix": "/o", "suffix": "1"}),
            json!({"in": ["/orders/1", "/"]}),
        ];
        let values = [
            (
                "request.method",
                vec![json!("GET"), json!("POST"), json!("DELETE"), Value::Null],
            ),
            (
                "request.path",
                vec![
                    json!("/orders/1"),
                    json!("/orders"),
                    json!("/users/7"),
                    json!("/"),
                    json!(""),
                ],
            ),
            (
                "response.status",
                vec![
                    json!(200),
                    json!(404),
                    json!(503),
                    json!(500.0),
                    Value::Null,
                ],
            ),
            (
                "request.headers.x-team",
                vec![json!("a"), json!("GET"), Value::Null],
            ),
            (
                "request.headers.authorization",
                vec![json!("Bearer t"), Value::Null],
            ),
            (
                "route",
                vec![json!("orders"), json!("/orders/1"), Value::Null],
            ),
        ];
        let redactions = [json!(null), json!([]), json!(["x-team"])];
        let mut rng = fastrand::Rng::with_seed(6);
        let (mut selected, mut pruned) = (0, 0);
        for _round in 0..40 {
            let mut hooks = Vec::new();
            for n in 0..rng.usize(1..40) {
                let mut filter = serde_json::Map::new();
                for _ in 0..rng.usize(0..4) {
                    let field = fields[rng.usize(..fields.len())];
                    let condition = conditions[rng.usize(..conditions.len())].clone();
                    filter.insert(field.to_string(), condition);
                }
                let mut hook = json!({"name": format!("h{n}"), "source": "traffic",
                    "filter": filter, "enabled": rng.usize(..8) != 0,
                    "handler": "log", "config": {}});
                let redaction = &redactions[rng.usize(..redactions.len())];
                if !redaction.is_null() {
                    hook["redact_headers"] = redaction.clone();
                }
                hooks.push(hook);
            }
            let set = hook_set(hooks);
            for _ in 0..40 {
                let mut data = json!({});
                for (field, choices) in &values {
                    let value = &choices[rng.usize(..choices.len())];
                    if value.is_null() {
                        continue;
                    }
                    let mut at = &mut data;
                    let path: Vec<&str> = field.split('.').collect();
                    for segment in &path[..path.len() - 1] {
                        at = at
                            .as_object_mut()
                            .unwrap()
                            .entry(segment.to_string())
                            .or_insert(json!({}));
                    }
                    at[path[path.len() - 1]] = value.clone();
                }
                let event = traffic(data);
                let found = candidates(&set, &event);
                pruned += set.len() - found.len();
                for (index, hook) in set.iter().enumerate() {
                    if set.selects(index, "request", &event) {
                        selected += 1;
                        assert!(
                            found.contains(&index),
                            "hook {index} ({}) selects {} but is not a candidate",
                            hook.shown,
                            event.data
                        );
                    }
                }
            }
        }
        assert!(selected > 1_000 && pruned > 10_000, "{selected} {pruned}");
    }

    #[test]
    fn hooks_are_filed_under_their_most_selective_condition() {
        let mut hooks: Vec<Value> = (0..100)
            .map(|n| {
                json!({"source": "traffic", "handler": "log", "config": {},
                       "filter": {"response.status": {"gte": 500},
                                  "request.method": "DELETE",
                                  "request.path": {"prefix": format!("/svc-{n}/")}}})
            })
            .collect();
        hooks.push(json!({"source": "traffic", "handler": "log", "config": {},
                          "filter": {"response.status": {"gte": 500}}}));
        hooks.push(json!({"source": "traffic", "handler": "log", "config": {}}));
        hooks.push(json!({"source": "traffic", "handler": "log", "config": {},
                          "filter": {"request.headers.authorization": "x"}}));
        let set = hook_set(hooks);
        let index = &set.group(Source::TRAFFIC).unwrap().index;
        // One path table with 100 prefixes of 2 lengths; the status condition once; the hook
        // without a filter and the one on a redacted header always.
        assert_eq!(index.texts.len(), 1);
        assert_eq!(index.texts[0].prefixes.len(), 100);
        assert_eq!(index.texts[0].lengths, vec![7, 8]);
        assert_eq!(index.shared.len(), 1);
        assert_eq!(index.shared[0].hooks, vec![100]);
        assert_eq!(index.always, vec![101, 102]);
        let request = |path: &str, status: u64| {
            traffic(
                json!({"request": {"method": "DELETE", "path": path}, "response": {"status": status}}),
            )
        };
        assert_eq!(candidates(&set, &request("/orders", 200)), vec![101, 102]);
        assert_eq!(
            candidates(&set, &request("/svc-42/x", 200)),
            vec![42, 101, 102]
        );
        assert_eq!(
            candidates(&set, &request("/svc-4/x", 503)),
            vec![4, 100, 101, 102]
        );
    }

    /// Conditions the index cannot key on a text, on one field: the field is read once per
    /// event for all of them, whatever their number.
    #[test]
    fn a_field_is_read_once_for_all_the_conditions_on_it() {
        use crate::event::{Field, Fields, Redaction};
        use std::cell::Cell;

        struct Counting<'e> {
            event: &'e Event,
            reads: Cell<usize>,
        }
        impl Fields for Counting<'_> {
            fn field<'a, S: AsRef<str>>(
                &'a self,
                path: &[S],
                redaction: &'a Redaction,
            ) -> Option<Field<'a>> {
                self.reads.set(self.reads.get() + 1);
                self.event.field(path, redaction)
            }
        }
        // Interleaved: a host suffix, a latency, a host suffix, ...
        let hooks = (0..100)
            .map(|i| {
                let filter = if i % 2 == 0 {
                    json!({"request.host": {"suffix": format!(".svc{}.internal", i / 2)}})
                } else {
                    json!({"latency_ms": {"gte": 100 + i / 2}})
                };
                json!({"source": "traffic", "handler": "log", "config": {}, "filter": filter})
            })
            .collect();
        let set = hook_set(hooks);
        let index = &set.group(Source::TRAFFIC).unwrap().index;
        assert_eq!(index.shared.len(), 100);
        let event = traffic(json!({"request": {"host": "a.svc7.internal"}, "latency_ms": 120}));
        let counting = Counting {
            event: &event,
            reads: Cell::new(0),
        };
        let mut out = Vec::new();
        index.candidates(&counting, &mut out);
        out.sort_unstable();
        // The host suffix of hook 14; the latencies of hooks 1, 3, ... 41 (100 ms to 120 ms).
        let mut expected: Vec<usize> = (0..21).map(|k| 2 * k + 1).chain([14]).collect();
        expected.sort_unstable();
        assert_eq!(out, expected);
        assert_eq!(counting.reads.get(), 2, "one read per field");
    }
}
