//! The filter's JSON configuration: parsing and validation.
//!
//! [`parse`] either returns a configuration in which everything works, or every problem it
//! found, each naming its JSON path (`hooks[1].config.url: missing required field`). Unknown
//! keys are refused. The proxy never runs a configuration that half-works.

pub mod admin;
#[cfg(feature = "schema")]
pub mod schema;

use serde_json::Value;

use crate::catalog::Catalog;
use crate::delivery::{Settings, batching, breaker, retry};
use crate::event::Redaction;
use crate::filter::Filter;
use crate::handler::HandlerKind;
use crate::hooks::{Hook, HookSet};
use crate::reader::{self, Object, Problem, Problems, Whole, child, element, kind};
use crate::source::{self, Source, Sources, published};

/// The top-level keys: `host`, `hooks`, `delivery`, each source's settings (in
/// [`source::BUILTIN`]'s order), `publish`, `admin`.
pub(crate) fn top_keys() -> Vec<&'static str> {
    let mut keys = vec!["host", "hooks", "delivery"];
    keys.extend(Source::all().filter_map(|source| source.kind().settings_key()));
    keys.extend(["publish", "admin"]);
    keys
}
const HOOK_KEYS: &[&str] = &[
    "name",
    "enabled",
    "source",
    "event",
    "filter",
    "handler",
    "snooze",
    "on_change",
    "config",
    "redact_headers",
];
/// The keys of `delivery`.
pub const DELIVERY_KEYS: &[&str] = &[
    "queue_size",
    "max_queue_bytes",
    "max_in_flight",
    "max_in_flight_per_destination",
    "max_pending_retries",
    "timeout_ms",
    "flush_interval_ms",
    "retry",
    "breaker",
    "dead_letter",
    "batch",
];

/// The whole-number keys of `delivery`, with the numbers each takes.
mod delivery_numbers {
    use super::{MAX_QUEUE_BYTES, Whole};

    pub const QUEUE_SIZE: Whole = Whole::new("queue_size", 1, 1_000_000);
    pub const MAX_QUEUE_BYTES_KEY: Whole = Whole::new("max_queue_bytes", 65_536, MAX_QUEUE_BYTES);
    pub const MAX_IN_FLIGHT: Whole = Whole::new("max_in_flight", 1, 10_000);
    pub const MAX_IN_FLIGHT_PER_DESTINATION: Whole =
        Whole::new("max_in_flight_per_destination", 1, 10_000);
    pub const MAX_PENDING_RETRIES: Whole = Whole::new("max_pending_retries", 1, 1_000_000);
    pub const TIMEOUT_MS: Whole = Whole::new("timeout_ms", 1, 600_000);
    pub const FLUSH_INTERVAL_MS: Whole = Whole::new("flush_interval_ms", 10, 60_000);
}

/// The most hooks one configuration may declare.
pub const MAX_HOOKS: usize = 10_000;
/// The longest hook name.
pub const MAX_NAME_LEN: usize = reader::MAX_NAME_LEN;
/// The largest per-VM byte budget of the delivery queue (the VM's memory is finite).
pub const MAX_QUEUE_BYTES: u64 = 256 * 1024 * 1024;
/// The longest snooze: one year, in seconds.
pub const MAX_SNOOZE: u64 = 365 * 24 * 3600;
const SNOOZE: Whole = Whole::new("snooze", 0, MAX_SNOOZE);

/// The proxy the filter runs in, when the configuration names it (`"host"`); otherwise the
/// host adapter detects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Envoy,
    Kong,
}

impl Host {
    pub const NAMES: &[&str] = &["envoy", "kong"];

    pub fn name(self) -> &'static str {
        match self {
            Host::Envoy => "envoy",
            Host::Kong => "kong",
        }
    }

    fn parse(top: &Object<'_, '_>, problems: &Problems) -> Option<Host> {
        let text = top.optional_str("host")?;
        match text {
            "envoy" => Some(Host::Envoy),
            "kong" => Some(Host::Kong),
            _ => {
                problems.add(
                    &top.path_of("host"),
                    format!(
                        "unknown host {text:?}; expected \"envoy\" or \"kong\" (or leave it out to detect the host)"
                    ),
                );
                None
            }
        }
    }
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// `None`: detect the host.
    pub host: Option<Host>,
    pub hooks: HookSet,
    pub delivery: Settings,
    pub sources: source::Settings,
    /// `None`: the admin endpoints are off.
    pub admin: Option<admin::Settings>,
}

/// Parses and validates a configuration; `*_env` keys read the process environment (in a
/// proxy, the VM's: Envoy's `vm_config.environment_variables`, what Kong's `nginx_main_env`
/// passes to nginx workers).
pub fn parse(bytes: &[u8]) -> Result<Config, Vec<Problem>> {
    parse_with_env(bytes, Box::new(|name| std::env::var(name).ok()))
}

/// Parses and validates a configuration, looking environment variables up with `env`.
pub fn parse_with_env(bytes: &[u8], env: reader::Env) -> Result<Config, Vec<Problem>> {
    parse_in(bytes, env, &Catalog::builtin())
}

/// Parses and validates a configuration whose hooks may name the kinds of `catalog`.
pub fn parse_in(bytes: &[u8], env: reader::Env, catalog: &Catalog) -> Result<Config, Vec<Problem>> {
    let problems = Problems::with_env(env);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        problems.add(
            "",
            "the configuration is empty; expected a JSON object such as {\"hooks\": [...]}",
        );
        return Err(problems.into_vec());
    }
    let document: Value = match serde_json::from_slice(bytes) {
        Ok(document) => document,
        Err(error) => {
            problems.add("", format!("invalid JSON: {error}"));
            return Err(problems.into_vec());
        }
    };
    let config = read(&document, &problems, catalog);
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(problems.into_vec()),
    }
}

fn read(document: &Value, problems: &Problems, catalog: &Catalog) -> Option<Config> {
    let keys = top_keys();
    let top = Object::new(document, "", &keys, problems)?;
    let host = Host::parse(&top, problems);
    let registry = Sources::new(top.get("publish").map_or_else(Vec::new, |value| {
        published::read(value, &top.path_of("publish"), problems)
    }));
    let hooks = read_hooks(&top, problems, catalog, &registry);
    let delivery = match top.get("delivery") {
        Some(value) => read_delivery(value, &top.path_of("delivery"), problems),
        None => Some(Settings::default()),
    };
    if let (Some(hooks), Some(delivery)) = (&hooks, &delivery) {
        check_delivery(hooks, delivery, &top, problems);
    }
    let sources = read_sources(&top, problems);
    let admin = top
        .get("admin")
        .and_then(|value| admin::Settings::parse(value, &top.path_of("admin"), problems));
    if let Some(hooks) = &hooks {
        for (index, hook) in hooks.iter().enumerate() {
            if let Some(why) = hook.source.kind().refuse_hook(&sources) {
                problems.add(
                    &child(&element(&top.path_of("hooks"), index), "source"),
                    why,
                );
            }
        }
    }
    Some(Config {
        host,
        hooks: HookSet::new(hooks?, registry),
        delivery: delivery?,
        sources,
        admin,
    })
}

/// The sources' top-level settings, each read by its source; a bad one is reported and
/// replaced by its default (the configuration is refused anyway).
fn read_sources(top: &Object<'_, '_>, problems: &Problems) -> source::Settings {
    let mut settings = source::Settings::default();
    for source in Source::all() {
        let kind = source.kind();
        if let Some(value) = kind
            .settings_key()
            .and_then(|key| top.get(key).map(|value| (key, value)))
        {
            let (key, value) = value;
            kind.read_settings(value, &top.path_of(key), problems, &mut settings);
        }
    }
    settings
}

fn read_hooks(
    top: &Object<'_, '_>,
    problems: &Problems,
    catalog: &Catalog,
    sources: &Sources,
) -> Option<Vec<Hook>> {
    let value = top.required("hooks")?;
    let path = top.path_of("hooks");
    let Value::Array(items) = value else {
        problems.add(
            &path,
            format!("expected an array of hooks, found {}", kind(value)),
        );
        return None;
    };
    if items.len() > MAX_HOOKS {
        problems.add(&path, format!("at most {MAX_HOOKS} hooks are allowed"));
        return None;
    }
    let mut hooks = Vec::with_capacity(items.len());
    let mut names: Vec<(String, usize)> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let here = element(&path, index);
        let hook = read_hook(item, index, &here, problems, (catalog, sources));
        if let Some(hook) = hook {
            if let Some((_, first)) = names.iter().find(|(name, _)| *name == hook.name) {
                problems.add(
                    &child(&here, "name"),
                    format!(
                        "duplicate name {:?}, also used by hooks[{first}]",
                        hook.name
                    ),
                );
            }
            names.push((hook.name.clone(), index));
            hooks.push(hook);
        }
    }
    Some(hooks)
}

/// Hook `index` at `path`, whose handler is one of the catalog's and whose source is one of
/// `sources`.
fn read_hook(
    value: &Value,
    index: usize,
    path: &str,
    problems: &Problems,
    (catalog, sources): (&Catalog, &Sources),
) -> Option<Hook> {
    let hook = Object::new(value, path, HOOK_KEYS, problems)?;
    let name = match hook.optional_str("name") {
        Some(name) => {
            check_name(name, &hook.path_of("name"), problems);
            name.to_string()
        }
        None => format!("hook-{index}"),
    };
    let source = hook.required_str("source").and_then(|name| {
        let source = sources.from_name(name);
        if source.is_none() {
            problems.add(
                &hook.path_of("source"),
                format!(
                    "unknown source {}; expected one of: {}",
                    quoted(name),
                    sources.names()
                ),
            );
        }
        source
    });
    let event = hook.optional_str("event").map(str::to_string);
    if let (Some(source), Some(event)) = (source, &event) {
        if sources.spec(source, event).is_none() {
            problems.add(
                &hook.path_of("event"),
                format!(
                    "unknown event {} of source {}; expected {}",
                    quoted(event),
                    sources.name(source),
                    sources.event_names(source)
                ),
            );
        }
    }
    let filter = match hook.get("filter") {
        Some(value) => {
            let filter_path = hook.path_of("filter");
            let filter = Filter::compile(value, &filter_path, problems);
            if let Some(source) = source {
                source.kind().check_filter(&filter, &filter_path, problems);
            }
            filter
        }
        None => Filter::default(),
    };
    let kind: Option<&dyn HandlerKind> = hook.required_str("handler").and_then(|name| {
        let kind = catalog.handler(name);
        if kind.is_none() {
            problems.add(
                &hook.path_of("handler"),
                format!(
                    "unknown handler {}; expected one of: {}",
                    quoted(name),
                    catalog.handler_names().join(", ")
                ),
            );
        }
        kind
    });
    let config = hook.required("config");
    let handler = match (kind, config) {
        (Some(kind), Some(config)) => kind.parse(config, &hook.path_of("config"), problems),
        _ => None,
    };
    let snooze = hook.whole(SNOOZE, 0);
    let on_change = hook.optional_bool("on_change", false);
    let enabled = hook.optional_bool("enabled", true);
    let mut shown = value.clone();
    if let Value::Object(map) = &mut shown {
        map.entry("name")
            .or_insert_with(|| Value::String(name.clone()));
    }
    let redaction = read_redaction(&hook, problems);
    let source = source?;
    Some(Hook {
        name,
        source,
        published: sources.published(source).cloned(),
        event,
        filter,
        handler: handler?,
        snooze,
        on_change,
        redaction: redaction?,
        enabled,
        shown: admin::shown(&shown),
    })
}

fn check_name(name: &str, path: &str, problems: &Problems) {
    if !reader::is_name(name, true) {
        problems.add(
            path,
            format!("must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . -"),
        );
    }
}

/// `redact_headers`: `true` (the default list), `false` (nothing), or a list of header names
/// that replaces the default list.
fn read_redaction(hook: &Object<'_, '_>, problems: &Problems) -> Option<Redaction> {
    match hook.get("redact_headers") {
        None | Some(Value::Bool(true)) => Some(Redaction::default()),
        Some(Value::Bool(false)) => Some(Redaction::none()),
        Some(Value::Array(_)) => Some(Redaction::headers(hook.optional_list(
            "redact_headers",
            Vec::new,
            |item| {
                item.as_str()
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .ok_or("a header name")
            },
        ))),
        Some(other) => {
            problems.add(
                &hook.path_of("redact_headers"),
                format!(
                    "expected true, false or a list of header names, found {}",
                    kind(other)
                ),
            );
            None
        }
    }
}

fn read_delivery(value: &Value, path: &str, problems: &Problems) -> Option<Settings> {
    use delivery_numbers as n;
    let delivery = Object::new(value, path, DELIVERY_KEYS, problems)?;
    let defaults = Settings::default();
    let size = |spec: Whole, default: usize| {
        usize::try_from(delivery.whole(spec, default as u64)).unwrap_or(default)
    };
    let retry = match delivery.get("retry") {
        Some(value) => retry::Settings::parse(value, &delivery.path_of("retry"), problems)?,
        None => defaults.retry,
    };
    let breaker = match delivery.get("breaker") {
        Some(value) => breaker::Settings::parse(value, &delivery.path_of("breaker"), problems)?,
        None => defaults.breaker,
    };
    let batch = match delivery.get("batch") {
        Some(value) => Some(batching::Settings::parse(
            value,
            &delivery.path_of("batch"),
            problems,
        )?),
        None => None,
    };
    Some(Settings {
        queue_size: size(n::QUEUE_SIZE, defaults.queue_size),
        max_queue_bytes: size(n::MAX_QUEUE_BYTES_KEY, defaults.max_queue_bytes),
        max_in_flight: size(n::MAX_IN_FLIGHT, defaults.max_in_flight),
        max_in_flight_per_destination: size(
            n::MAX_IN_FLIGHT_PER_DESTINATION,
            defaults.max_in_flight_per_destination,
        ),
        max_pending_retries: size(n::MAX_PENDING_RETRIES, defaults.max_pending_retries),
        timeout_ms: delivery.whole(n::TIMEOUT_MS, defaults.timeout_ms),
        flush_interval_ms: delivery.whole(n::FLUSH_INTERVAL_MS, defaults.flush_interval_ms),
        retry,
        breaker,
        dead_letter: delivery.optional_str("dead_letter").map(str::to_string),
        batch,
    })
}

/// What can only be checked with the hooks and the delivery settings together: each hook's
/// retry policy over the global one, and the dead-letter hook.
fn check_delivery(hooks: &[Hook], delivery: &Settings, top: &Object<'_, '_>, problems: &Problems) {
    let hooks_path = top.path_of("hooks");
    for (index, hook) in hooks.iter().enumerate() {
        if let Some(overrides) = hook.handler.retry() {
            let here = child(&child(&element(&hooks_path, index), "config"), "retry");
            overrides.apply(&delivery.retry).check(&here, problems);
        }
        if hook.source == Source::EVENT_HOOKS && delivery.dead_letter.as_deref() != Some(&hook.name)
        {
            problems.add(
                &child(&element(&hooks_path, index), "source"),
                "event_hooks events go to the hook named by delivery.dead_letter only",
            );
        }
    }
    let Some(name) = &delivery.dead_letter else {
        return;
    };
    let path = child(&top.path_of("delivery"), "dead_letter");
    match hooks.iter().find(|hook| hook.name == *name) {
        None => problems.add(&path, format!("no hook is named {}", quoted(name))),
        Some(hook) if hook.source != Source::EVENT_HOOKS => problems.add(
            &path,
            format!(
                "hook {} has source {}; a dead-letter hook has source event_hooks (event dead_letter)",
                quoted(name),
                hook.source_name()
            ),
        ),
        Some(_) => {}
    }
}

/// A value from the configuration quoted for a message, cut short if long.
fn quoted(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    format!("{short:?}")
}

#[cfg(test)]
mod tests;
