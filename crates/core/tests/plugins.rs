//! A handler added from outside the crate: one file (this one: its kind and what it does) and
//! one catalog line. The configuration's parser, its JSON Schema and the runtime then take it
//! like a built-in one.

// Tests stop at the first surprise: unwrapping is how they say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::any::Any;
use std::rc::Rc;

use event_hooks_core::catalog::Catalog;
use event_hooks_core::config;
#[cfg(feature = "schema")]
use event_hooks_core::config::schema;
use event_hooks_core::event::{Bodies, Redaction};
use event_hooks_core::handler::{Handler, HandlerKind, Output};
use event_hooks_core::log::{Level, Lines};
use event_hooks_core::ports::ManualClock;
use event_hooks_core::reader::Problems;
use event_hooks_core::runtime::Runtime;
use event_hooks_core::source::traffic::{Capture, Properties};
#[cfg(feature = "schema")]
use serde_json::Map;
use serde_json::{Value, json};

/// `shout`: logs the event's name in capitals, with a configured prefix.
struct ShoutKind;

static SHOUT: ShoutKind = ShoutKind;

#[derive(Debug)]
struct Shout {
    prefix: String,
}

impl HandlerKind for ShoutKind {
    fn name(&self) -> &'static str {
        "shout"
    }

    #[cfg(feature = "schema")]
    fn config_schema(
        &self,
        schema: &event_hooks_core::reader::schema::Parts,
        at: &str,
    ) -> Map<String, Value> {
        schema.object(
            at,
            &[&["prefix"]],
            vec![("prefix", json!({"type": "string"}))],
        )
    }

    fn parse(&self, config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>> {
        let config = event_hooks_core::reader::Object::new(config, path, &["prefix"], problems)?;
        let prefix = config.optional_str("prefix").unwrap_or("!").to_string();
        Some(Rc::new(Shout { prefix }))
    }
}

impl Handler for Shout {
    fn prepare(&self, bodies: &mut Bodies<'_>, _redaction: &Redaction) -> Vec<Output> {
        let name = bodies.event().name.to_uppercase();
        vec![Output::Log(Level::Warn, format!("{} {name}", self.prefix))]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn shouting() -> Catalog {
    // The one line that adds the handler.
    Catalog::builtin().with_handler(&SHOUT)
}

#[test]
fn a_handler_added_in_one_file_and_one_line_runs_like_a_built_in_one() {
    let configuration = json!({"hooks": [
        {"name": "loud", "source": "traffic", "filter": {"response.status": 503},
         "handler": "shout", "config": {"prefix": ">>"}}
    ]});
    let bytes = configuration.to_string();
    // Unknown to the product's catalog...
    let problems = config::parse(bytes.as_bytes()).unwrap_err();
    assert!(
        problems[0]
            .to_string()
            .starts_with("hooks[0].handler: unknown handler \"shout\""),
        "{problems:?}"
    );
    // ...known to one with the extra line, checked like any handler's config.
    let catalog = shouting();
    let bad =
        json!({"hooks": [{"source": "traffic", "handler": "shout", "config": {"volume": 11}}]});
    let problems =
        config::parse_in(bad.to_string().as_bytes(), Box::new(|_| None), &catalog).unwrap_err();
    assert_eq!(
        problems[0].to_string(),
        "hooks[0].config.volume: unknown field; expected one of: prefix"
    );
    let parsed = config::parse_in(bytes.as_bytes(), Box::new(|_| None), &catalog).unwrap();
    let log = Lines::default();
    let runtime = Runtime::new(
        parsed,
        7,
        Box::new(event_hooks_core::shared::Memory::default()),
        Box::new(event_hooks_core::metrics::Null),
        Box::new(log.clone()),
    );
    for status in [200, 503] {
        let capture = Capture {
            properties: Properties {
                status: Some(status),
                ..Properties::default()
            },
            ..Capture::default()
        };
        runtime.observe(&capture, &ManualClock::at_ns(1_000_000_000));
    }
    assert_eq!(
        log.text().matches(">> REQUEST").count(),
        1,
        "{}",
        log.text()
    );
    // The schema lists it, with its config.
    #[cfg(feature = "schema")]
    schema_lists_it(&catalog);
}

#[cfg(feature = "schema")]
fn schema_lists_it(catalog: &Catalog) {
    let schema = schema::schema_of(catalog);
    let hooks = &schema["properties"]["hooks"]["items"];
    assert!(
        hooks["properties"]["handler"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("shout"))
    );
    assert!(
        hooks["allOf"][0]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .any(|variant| {
                variant["properties"]["config"]["properties"]["prefix"] == json!({"type": "string"})
            })
    );
}
