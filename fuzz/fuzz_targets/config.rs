//! The configuration parser and validator, on arbitrary bytes and on generated documents.
//!
//! Beyond "no panic":
//! * a document re-serialized canonically validates identically (the same configuration, or
//!   the same problems): parsing depends on the document, never on its layout or on chance;
//! * a refused configuration has at least one problem, each with a path;
//! * the JSON Schema accepts every configuration the parser accepts (it must never be stricter);
//! * secrets never show: no problem message, admin listing or ping carries a secret; no log
//!   line, call body or call header of a hook carries one, unless the hook's own view of the
//!   event (its redacted headers left out) shows it, and a configured header's value goes out
//!   in that header only;
//! * what each hook's handler makes of an event is a well-formed call: an uppercase method, a
//!   path starting with `/`, lowercase header names, no control characters in header values.
#![no_main]

use arbitrary::Unstructured;
use event_hooks_core::config::{self, Config};
use event_hooks_core::handler::Output;
use event_hooks_core::reader::Problem;
use event_hooks_fuzz::{
    HEADER_MARK, NEVER_SHOWN, chance, config_document, env, event_data, schema,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::OnceLock;

fn parse(bytes: &[u8]) -> Result<Config, Vec<Problem>> {
    config::parse_with_env(bytes, Box::new(env))
}

/// What a parse gave, to compare two parses: the configuration's Debug form with every float
/// cut to 12 significant digits. serde_json (without its `float_roundtrip` feature, 44 KiB of
/// wasm) may read a long decimal a unit or two off in the last place, and the canonical form
/// written from that double then reads back as its neighbour (found by this target: a filter
/// operand `1.1609631343373116e-28` became `...114e-28`). Exactness to the last place is not
/// what a configuration's numbers are for; everything else must agree.
fn summary(result: &Result<Config, Vec<Problem>>) -> Result<String, Vec<Problem>> {
    static FLOAT: OnceLock<regex::Regex> = OnceLock::new();
    let float = FLOAT.get_or_init(|| {
        regex::Regex::new(r"Number\((-?[0-9]+\.[0-9]+(?:e[-+]?[0-9]+)?|-?[0-9]+e[-+]?[0-9]+)\)")
            .expect("a valid pattern")
    });
    match result {
        Ok(config) => {
            let text = format!("{config:?}");
            Ok(float
                .replace_all(&text, |found: &regex::Captures<'_>| {
                    match found[1].parse::<f64>() {
                        Ok(value) => format!("Number({value:.11e})"),
                        Err(_) => found[0].to_string(),
                    }
                })
                .into_owned())
        }
        Err(problems) => Err(problems.clone()),
    }
}

fn the_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(config::schema::schema)
}

fn shows_a_secret(text: &str) -> Option<&'static str> {
    NEVER_SHOWN.iter().copied().find(|mark| text.contains(mark))
}

/// The configured headers whose values are credentials, as the admin listing redacts them
/// (`crates/core/src/config/admin.rs`; docs/src/admin.md: "credential headers such as
/// `authorization`"). Any other header's value is shown as configured.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// Whether a mark appears where the document does not keep it secret. Its secret places:
/// `admin.token`, each hook's `config.secret` and `config.secrets`, and the values of its
/// credential headers in `config.headers`. A mark anywhere else (a source's name, a
/// non-credential header's value, a payload field named `token`) may be shown as what it is
/// (a message may quote the name, the listing shows the header); only marks kept to secret
/// places must never be.
fn marks_outside_secrets(document: &Value) -> bool {
    let mut rest = document.clone();
    if let Some(Value::Object(admin)) = rest.get_mut("admin") {
        admin.remove("token");
    }
    if let Some(Value::Array(hooks)) = rest.get_mut("hooks") {
        for config in hooks.iter_mut().filter_map(|hook| hook.get_mut("config")) {
            let Value::Object(config) = config else {
                continue;
            };
            config.remove("secret");
            config.remove("secrets");
            if let Some(Value::Object(headers)) = config.get_mut("headers") {
                headers.retain(|name, _| {
                    !CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                });
            }
        }
    }
    shows_a_secret(&rest.to_string()).is_some()
}

fn check(bytes: &[u8], rest: &mut Unstructured<'_>) {
    let first = parse(bytes);
    let first_summary = summary(&first);
    // Text that is not JSON gets messages from the JSON parser, which quote nothing of it.
    let secrets_kept_secret = serde_json::from_slice::<Value>(bytes)
        .map_or(true, |document| !marks_outside_secrets(&document));
    if let Err(problems) = &first {
        assert!(!problems.is_empty(), "refused without a problem");
        for problem in problems {
            assert!(
                !problem.path.is_empty(),
                "a problem without a path: {problem}"
            );
            if let Some(mark) = shows_a_secret(&problem.message).filter(|_| secrets_kept_secret) {
                panic!("a problem message shows a secret ({mark}): {problem}");
            }
        }
    }
    let Ok(document) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let canonical = serde_json::to_vec(&document).expect("a Value serializes");
    assert_eq!(
        first_summary,
        summary(&parse(&canonical)),
        "the canonical form of the document validates differently"
    );
    let Ok(config) = first else {
        return;
    };
    if let Some(why) = schema::violation(the_schema(), &document) {
        panic!("the parser accepts a configuration its JSON Schema refuses: {why}");
    }
    let mut data = event_data(rest);
    mark_credentials(&mut data, rest);
    for (index, hook) in config.hooks.iter().enumerate() {
        let shown = hook.shown.to_string();
        if let Some(mark) = shows_a_secret(&shown).filter(|_| secrets_kept_secret) {
            panic!("the admin listing shows a secret ({mark}): {shown}");
        }
        if let Some(ping) = event_hooks_core::admin::ping(hook) {
            let body = String::from_utf8_lossy(&ping.body);
            assert!(
                shows_a_secret(&body).is_none() || !secrets_kept_secret,
                "a ping shows a secret: {body}"
            );
        }
        // Lambda functions may be given a budget of a million operations: a few such runs per
        // input would make the target too slow to explore anything else.
        let operations = hook
            .shown
            .pointer("/config/max_operations")
            .and_then(Value::as_u64);
        if operations.is_some_and(|operations| operations > 100_000) {
            continue;
        }
        // The hooks are in the document's order: this one is `hooks[index]`.
        let configured = document.pointer(&format!("/hooks/{index}"));
        let secrets = Secrets {
            shown: if secrets_kept_secret {
                marks_seen(&data, &redacted_names(configured))
            } else {
                NEVER_SHOWN.to_vec()
            },
            headers: configured_headers(configured),
        };
        let event = event_hooks_core::admin::event_for(hook, data.clone());
        let stamp = event_hooks_core::event::Stamp {
            hook: hook.name.as_str().into(),
            id: "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b".into(),
            time_ms: 1_700_000_000_000,
        };
        for output in event_hooks_core::admin::run(hook, &event, stamp) {
            match output {
                Output::Log(_, line) => {
                    if let Some(mark) = secrets.hidden(&line) {
                        panic!("a log line shows a secret ({mark}): {line}");
                    }
                }
                Output::Call(draft) => check_draft(&draft, &secrets),
            }
        }
    }
}

/// The event's header maps, `request.headers` and `response.headers`, where they are objects.
fn header_maps(data: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    data.iter_mut()
        .filter(|(side, _)| matches!(side.as_str(), "request" | "response"))
        .filter_map(|(_, side)| match side.get_mut("headers") {
            Some(Value::Object(headers)) => Some(headers),
            _ => None,
        })
}

/// Marks (about half the time each) the values of the event's credential headers with
/// [`HEADER_MARK`], from the bytes after the event data: no output of a hook that redacts them
/// may carry the mark. The generator gives these headers values without marks.
fn mark_credentials(data: &mut Map<String, Value>, u: &mut Unstructured<'_>) {
    const CREDENTIALS: &[&str] = &[
        "authorization",
        "cookie",
        "proxy-authorization",
        "set-cookie",
        "x-api-key",
    ];
    for headers in header_maps(data) {
        for (name, value) in headers.iter_mut() {
            if CREDENTIALS.contains(&name.as_str()) && chance(u, 1, 2) {
                *value = Value::String(format!("Bearer {HEADER_MARK}"));
            }
        }
    }
}

/// The header names a hook's `redact_headers` redacts, as the documentation gives them: absent
/// or `true`, `authorization`, `cookie`, `proxy-authorization` and `set-cookie`; `false`, none;
/// a list, its names in lowercase (sources give header names in lowercase).
fn redacted_names(hook: Option<&Value>) -> Vec<String> {
    match hook.and_then(|hook| hook.get("redact_headers")) {
        None | Some(Value::Bool(true)) => [
            "authorization",
            "cookie",
            "proxy-authorization",
            "set-cookie",
        ]
        .map(String::from)
        .to_vec(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .collect(),
        Some(_) => Vec::new(),
    }
}

/// The marks a hook's view of the event shows: the event data without the values of the
/// headers it redacts (in `request.headers` and `response.headers`: the event's secret places),
/// as JSON text and, for header values (which drop control characters), each key and string
/// without control characters. Only these a hook may send or log; every other mark it carries
/// comes from a secret.
fn marks_seen(data: &Map<String, Value>, redacted: &[String]) -> Vec<&'static str> {
    fn push(text: &mut String, piece: &str) {
        text.push('\n');
        text.extend(
            piece
                .chars()
                .filter(|&c| c == '\t' || !c.is_ascii_control()),
        );
    }
    fn strings(value: &Value, text: &mut String) {
        match value {
            Value::String(piece) => push(text, piece),
            Value::Array(items) => items.iter().for_each(|item| strings(item, text)),
            Value::Object(entries) => {
                for (key, value) in entries {
                    push(text, key);
                    strings(value, text);
                }
            }
            _ => {}
        }
    }
    let mut seen = data.clone();
    for headers in header_maps(&mut seen) {
        headers.retain(|name, _| !redacted.contains(name));
    }
    let seen = Value::Object(seen);
    let mut text = seen.to_string();
    strings(&seen, &mut text);
    NEVER_SHOWN
        .iter()
        .copied()
        .filter(|mark| text.contains(mark))
        .collect()
}

/// The headers a hook's `config.headers` sets (lowercase names), with their values as written.
fn configured_headers(hook: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(headers)) = hook.and_then(|hook| hook.pointer("/config/headers")) else {
        return Vec::new();
    };
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_ascii_lowercase(), value.as_str()?.to_string())))
        .collect()
}

/// What one hook's outputs may carry of the input's marks.
struct Secrets {
    /// The marks the hook may show: those its view of the event shows, or every one when the
    /// document has one outside a secret place.
    shown: Vec<&'static str>,
    /// Its configured headers: each may carry the marks of its value, in that header only.
    headers: Vec<(String, String)>,
}

impl Secrets {
    /// A mark in `text` the hook may not show.
    fn hidden(&self, text: &str) -> Option<&'static str> {
        NEVER_SHOWN
            .iter()
            .copied()
            .find(|mark| text.contains(mark) && !self.shown.contains(mark))
    }
}

fn check_draft(draft: &event_hooks_core::delivery::Call, secrets: &Secrets) {
    assert!(
        !draft.method.is_empty()
            && draft
                .method
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_lowercase()),
        "a call's method is not an uppercase token: {:?}",
        draft.method
    );
    assert!(
        draft.path.starts_with('/'),
        "a call's path does not start with /: {:?}",
        draft.path
    );
    assert!(
        !draft
            .path
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' '),
        "a call's path holds a space or control character: {:?}",
        draft.path
    );
    assert!(
        !draft.authority.is_empty()
            && !draft
                .authority
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' '),
        "a call's authority is empty or holds a space or control character: {:?}",
        draft.authority
    );
    for (name, value) in &draft.headers {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "a call's header name is not a lowercase token: {name:?}"
        );
        assert!(
            value.bytes().all(event_hooks_core::template::header_safe),
            "a call's header {name} holds a control character: {value:?}"
        );
        if let Some(mark) = secrets.hidden(value) {
            // A credential header's value (HEADER_MARK, configured for `authorization`) goes
            // out in its own header, and nowhere else.
            assert!(
                secrets
                    .headers
                    .iter()
                    .any(|(configured, given)| configured == name && given.contains(mark)),
                "a call's header {name} carries a secret ({mark}) not configured for it"
            );
        }
    }
    let body = String::from_utf8_lossy(&draft.body);
    if let Some(mark) = secrets.hidden(&body) {
        panic!("a call's body carries a secret ({mark})");
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte even: the bytes are the configuration. Odd: they drive the generator.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check(rest, &mut Unstructured::new(&[]));
    } else {
        let mut u = Unstructured::new(rest);
        let document = config_document(&mut u);
        let bytes = serde_json::to_vec(&document).expect("a Value serializes");
        check(&bytes, &mut u);
    }
});
