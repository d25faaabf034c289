//! The `lambda` handler kind: what its `config` takes and its schema, in every build (the
//! configuration's schema is the same with or without the feature), and its parser: the Rhai
//! sandbox of [`super::lambda`] when the build has the `lambda` feature, a clear refusal when
//! it does not.

use std::rc::Rc;

use serde_json::Value;
#[cfg(feature = "schema")]
use serde_json::{Map, json};

#[cfg(feature = "schema")]
use super::lambda_config::{KEYS, MAX_FUNCTIONS, MAX_OPERATIONS, MAX_SOURCE_BYTES};
use super::{Handler, HandlerKind};
use crate::reader::Problems;
#[cfg(feature = "schema")]
use crate::reader::schema::{Parts, exclusive, non_empty_string, whole};

/// The `lambda` handler kind.
pub struct Kind;

pub static KIND: Kind = Kind;

impl HandlerKind for Kind {
    fn name(&self) -> &'static str {
        "lambda"
    }

    #[cfg(feature = "schema")]
    fn config_schema(&self, schema: &Parts, at: &str) -> Map<String, Value> {
        let mut types = vec![
            (
                "functions",
                json!({
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_FUNCTIONS,
                    "items": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_BYTES},
                }),
            ),
            ("cluster", non_empty_string()),
            ("max_operations", whole(MAX_OPERATIONS)),
        ];
        types.extend(super::endpoint::call_types(schema));
        let mut config = schema.object(at, &[KEYS, super::endpoint::CALL_KEYS], types);
        config.insert("required".into(), json!(["functions"]));
        exclusive(config, &[["secret", "secret_env"]])
    }

    #[cfg(feature = "lambda")]
    fn parse(&self, config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>> {
        super::lambda::Lambda::parse(config, path, problems)
            .map(|lambda| Rc::new(lambda) as Rc<dyn Handler>)
    }

    #[cfg(not(feature = "lambda"))]
    fn parse(&self, _config: &Value, path: &str, problems: &Problems) -> Option<Rc<dyn Handler>> {
        // `path` is the hook's `config`: the problem is its `handler`.
        let hook = path.strip_suffix(".config").unwrap_or(path);
        problems.add(
            &crate::reader::child(hook, "handler"),
            "this build has no lambda support (built without the lambda feature)",
        );
        None
    }
}
