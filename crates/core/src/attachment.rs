//! Where the filter is attached on Envoy: as an HTTP filter (a context per request, every
//! source and the admin endpoints), or as a wasm access logger (`envoy.access_loggers.wasm`:
//! the root context's `on_log`, once per finished request, the request's and response's
//! headers and properties readable, no body and no way to answer the request).
//!
//! The same `event_hooks.wasm` and the same JSON configuration serve both; the access logger
//! is recognised by its plugin's `root_id`, which ends with [`ACCESS_LOG_ROOT_ID`]
//! (`event_hooks_access_log`, or `access_log`). What an access logger cannot serve is refused
//! when the configuration loads ([`check`]): the `crud` and `dao:crud` sources (they read the
//! response body) and the `admin` endpoints (they answer requests). Those go to an HTTP filter
//! attached to the routes that need it, beside the access logger.

use crate::config::Config;
use crate::reader::Problem;
use crate::source::Source;

/// A `root_id` ending with this names the access logger.
pub const ACCESS_LOG_ROOT_ID: &str = "access_log";

/// Where the filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attachment {
    /// An HTTP filter: a context per request.
    #[default]
    HttpFilter,
    /// A wasm access logger: the root context's `on_log`, once per finished request.
    AccessLogger,
}

impl Attachment {
    /// The attachment a plugin's `root_id` names.
    pub fn of_root_id(root_id: &str) -> Attachment {
        if root_id.ends_with(ACCESS_LOG_ROOT_ID) {
            Attachment::AccessLogger
        } else {
            Attachment::HttpFilter
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Attachment::HttpFilter => "HTTP filter",
            Attachment::AccessLogger => "access logger",
        }
    }
}

/// What `config` asks of `attachment` that it cannot do, each with its JSON path.
pub fn check(config: &Config, attachment: Attachment) -> Vec<Problem> {
    if attachment == Attachment::HttpFilter {
        return Vec::new();
    }
    let mut problems: Vec<Problem> = config
        .hooks
        .iter()
        .enumerate()
        .filter(|(_, hook)| matches!(hook.source, Source::CRUD | Source::DAO_CRUD))
        .map(|(index, hook)| Problem {
            path: format!("hooks[{index}].source"),
            message: format!(
                "{} reads the response body, which an Envoy access logger cannot: attach the event_hooks HTTP filter to the routes this hook watches (docs/src/hosts/envoy.md#two-attachments)",
                hook.source_name()
            ),
        })
        .collect();
    if config.admin.is_some() {
        problems.push(Problem {
            path: "admin".into(),
            message: "the admin endpoints answer requests, which an Envoy access logger cannot: configure admin on the event_hooks HTTP filter instead".into(),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use serde_json::json;

    fn problems(document: serde_json::Value, attachment: Attachment) -> Vec<String> {
        let config = config::parse(document.to_string().as_bytes()).unwrap();
        check(&config, attachment)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_root_id_names_the_attachment() {
        assert_eq!(
            Attachment::of_root_id("event_hooks_access_log"),
            Attachment::AccessLogger
        );
        assert_eq!(
            Attachment::of_root_id("access_log"),
            Attachment::AccessLogger
        );
        assert_eq!(
            Attachment::of_root_id("event_hooks"),
            Attachment::HttpFilter
        );
        assert_eq!(Attachment::of_root_id(""), Attachment::HttpFilter);
    }

    #[test]
    fn an_access_logger_refuses_what_needs_a_body_or_an_answer() {
        let hook = |source: &str| json!({"source": source, "handler": "log", "config": {}});
        let document = json!({
            "hooks": [hook("traffic"), hook("crud"), hook("balancer"), hook("dao:crud")],
            "crud": {"match": {"upstream.cluster": "kong_admin"}},
            "admin": {"token": "t0ken"}
        });
        assert_eq!(
            problems(document.clone(), Attachment::HttpFilter),
            Vec::<String>::new()
        );
        let found = problems(document, Attachment::AccessLogger);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("hooks[1].source: crud reads the response body"));
        assert!(found[1].starts_with("hooks[3].source: dao:crud reads the response body"));
        assert!(found[2].starts_with("admin: the admin endpoints answer requests"));
        let served =
            json!({"hooks": [hook("traffic"), hook("balancer"), hook("rate-limiting-advanced")]});
        assert_eq!(
            problems(served, Attachment::AccessLogger),
            Vec::<String>::new()
        );
    }
}
