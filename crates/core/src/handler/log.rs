//! The `log` handler (Kong's): one line per event in the proxy's log, at info level:
//! `log callback: ` then `{"event": ..., "source": ..., "data": ...}` as JSON (the data as the
//! hook sees it, redacted). Its `config` takes no keys: `{}`.

use std::any::Any;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::{Handler, HandlerKind, Output};
use crate::event::{Bodies, Event, Redaction};
use crate::log::Level;
#[cfg(feature = "schema")]
use crate::reader::schema::Parts;
use crate::reader::{Object, Problems};

/// The `log` handler kind.
pub struct Kind;

pub static KIND: Kind = Kind;

impl HandlerKind for Kind {
    fn name(&self) -> &'static str {
        "log"
    }

    #[cfg(feature = "schema")]
    fn config_schema(&self, schema: &Parts, at: &str) -> Map<String, Value> {
        schema.object(at, &[], Vec::new())
    }

    fn parse(&self, config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>> {
        LogHandler::parse(config, path, problems).map(|handler| Rc::new(handler) as Rc<dyn Handler>)
    }
}

impl Handler for LogHandler {
    fn makes_calls(&self) -> bool {
        false
    }

    fn prepare(&self, bodies: &mut Bodies<'_>, redaction: &Redaction) -> Vec<Output> {
        vec![Output::Log(
            Level::Info,
            self.line(bodies.event(), redaction),
        )]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The `log` handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHandler;

impl LogHandler {
    pub fn parse(value: &Value, path: &str, problems: &Problems) -> Option<LogHandler> {
        Object::new(value, path, &[], problems).map(|_| LogHandler)
    }

    /// The line for one event.
    pub fn line(&self, event: &Event, redaction: &Redaction) -> String {
        let mut entry = Map::new();
        entry.insert("event".into(), Value::String(event.name.clone()));
        entry.insert(
            "source".into(),
            Value::String(event.source_name.to_string()),
        );
        entry.insert("data".into(), event.data_for(redaction));
        format!("log callback: {}", Value::Object(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;
    use serde_json::json;

    #[test]
    fn one_line_with_event_source_and_redacted_data() {
        let data = json!({"request": {"headers": {"authorization": "Bearer t"}}});
        let event = Event::new(
            Source::TRAFFIC,
            "request",
            data.as_object().unwrap().clone(),
        );
        assert_eq!(
            LogHandler.line(&event, &Redaction::default()),
            r#"log callback: {"data":{"request":{"headers":{"authorization":"[redacted]"}}},"event":"request","source":"traffic"}"#
        );
    }

    #[test]
    fn its_config_takes_no_keys() {
        let problems = Problems::default();
        assert!(LogHandler::parse(&json!({}), "config", &problems).is_some());
        LogHandler::parse(&json!({"level": "debug"}), "config", &problems);
        assert_eq!(
            problems.into_vec()[0].to_string(),
            "config.level: unknown field; this object takes no fields"
        );
    }
}
