use super::*;
use crate::event::DEFAULT_REDACTED_HEADERS;
use crate::handler::endpoint::Scheme;
use crate::handler::webhook::Webhook;
use serde_json::json;

fn errors(config: Value) -> Vec<String> {
    match parse(config.to_string().as_bytes()) {
        Ok(_) => panic!("expected errors for {config}"),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

fn issue_example() -> Value {
    json!({
      "hooks": [
        {
          "name": "orders-5xx",
          "source": "traffic",
          "event": "request",
          "filter": { "response.status": {"gte": 500}, "request.path": {"prefix": "/orders"} },
          "handler": "webhook",
          "snooze": 0,
          "on_change": false,
          "config": {
            "url": "http://receiver:9000/hooks",
            "cluster": "receiver",
            "headers": { "x-team": "payments" },
            "secret": "hunter2"
          }
        }
      ],
      "delivery": { "queue_size": 10000, "max_in_flight": 64, "timeout_ms": 5000, "flush_interval_ms": 100 }
    })
}

#[test]
fn the_contract_example_parses() {
    let config = parse(issue_example().to_string().as_bytes()).unwrap();
    assert_eq!(config.hooks.len(), 1);
    let hook = config.hooks.get(0).unwrap();
    assert_eq!(hook.name, "orders-5xx");
    assert_eq!(hook.source, Source::TRAFFIC);
    assert_eq!(hook.event.as_deref(), Some("request"));
    assert_eq!((hook.snooze, hook.on_change), (0, false));
    assert_eq!(hook.redaction.names(), DEFAULT_REDACTED_HEADERS);
    let Some(webhook) = hook.handler.as_any().downcast_ref::<Webhook>() else {
        panic!("expected a webhook handler, got {:?}", hook.handler)
    };
    assert_eq!(webhook.endpoint.url.scheme, Scheme::Http);
    assert_eq!(webhook.endpoint.url.authority(), "receiver:9000");
    assert_eq!(webhook.endpoint.cluster, "receiver");
    assert_eq!(
        webhook.headers,
        vec![("x-team".to_string(), "payments".to_string())]
    );
    assert!(webhook.signing.is_set());
    assert_eq!(
        config.delivery,
        Settings {
            queue_size: 10_000,
            max_queue_bytes: 32 * 1024 * 1024,
            max_in_flight: 64,
            timeout_ms: 5_000,
            flush_interval_ms: 100,
            ..Settings::default()
        }
    );
}

#[test]
fn defaults() {
    let config = parse(
        br#"{"hooks": [{"source": "traffic", "handler": "webhook", "config": {"url": "http://r/"}},
                       {"source": "traffic", "handler": "webhook", "config": {"url": "http://r/"}}]}"#,
    )
    .unwrap();
    assert_eq!(config.hooks.name(0), "hook-0");
    assert_eq!(config.hooks.name(1), "hook-1");
    assert_eq!(config.delivery, Settings::default());
    let hook = config.hooks.get(0).unwrap();
    assert_eq!(hook.event, None);
    assert_eq!(hook.filter, Filter::default());
    assert_eq!((hook.snooze, hook.on_change), (0, false));
    assert!(parse(br#"{"hooks": []}"#).is_ok());
}

#[test]
fn the_issue_message_for_a_missing_url() {
    let mut config = issue_example();
    config["hooks"]
        .as_array_mut()
        .unwrap()
        .push(json!({"source": "traffic", "handler": "webhook", "config": {}}));
    assert_eq!(
        errors(config),
        vec!["hooks[1].config.url: missing required field"]
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let found = errors(json!({
        "hooks": [
            {"name": "a b", "source": "trafic", "handler": "webhok", "config": {}, "extra": 1},
            {"source": "traffic", "event": "response", "handler": "webhook",
             "snooze": -1, "on_change": "yes", "config": {"url": "http://r/"},
             "filter": {"response.status": {"gte": "x", "between": 1}}},
            "not a hook",
            {"name": "dup", "source": "traffic", "handler": "webhook", "config": {"url": "http://r/"}},
            {"name": "dup", "source": "traffic", "handler": "webhook", "config": {"url": "http://r/"}}
        ],
        "delivery": {"queue_size": 0, "max_in_flight": 1.5, "flush_interval_ms": 5, "retries": 1,
                     "max_queue_bytes": 1024},
        "surprise": true
    }));
    // Every handler is listed, whichever this build has (see handler::builtin).
    let unknown_handler = format!(
        "hooks[0].handler: unknown handler \"webhok\"; expected one of: {}",
        crate::handler::names(&crate::handler::builtin()).join(", ")
    );
    assert_eq!(
        found,
        vec![
            "surprise: unknown field; expected one of: host, hooks, delivery, crud, health, rate_limit, publish, admin",
            "hooks[0].extra: unknown field; expected one of: name, enabled, source, event, filter, handler, snooze, on_change, config, redact_headers",
            "hooks[0].name: must be 1 to 128 characters of A-Z a-z 0-9 _ . -",
            "hooks[0].source: unknown source \"trafic\"; expected one of: traffic, crud, dao:crud, balancer, rate-limiting-advanced, event_hooks",
            unknown_handler.as_str(),
            "hooks[1].event: unknown event \"response\" of source traffic; expected request",
            "hooks[1].filter.response.status.between: unknown operator; expected one of: eq, ne, in, prefix, suffix, contains, gt, gte, lt, lte, exists, not",
            "hooks[1].snooze: expected a whole number between 0 and 31536000, found a negative number",
            "hooks[1].on_change: expected true or false, found a string",
            "hooks[2]: expected an object, found a string",
            "hooks[4].name: duplicate name \"dup\", also used by hooks[3]",
            "delivery.retries: unknown field; expected one of: queue_size, max_queue_bytes, max_in_flight, max_in_flight_per_destination, max_pending_retries, timeout_ms, flush_interval_ms, retry, breaker, dead_letter, batch",
            "delivery.queue_size: must be between 1 and 1000000",
            "delivery.max_queue_bytes: must be between 65536 and 268435456",
            "delivery.max_in_flight: expected a whole number between 1 and 10000, found a fractional number",
            "delivery.flush_interval_ms: must be between 10 and 60000",
        ]
    );
}

#[test]
fn the_document_itself() {
    assert_eq!(
        errors(json!([])),
        vec!["$: expected an object, found an array"]
    );
    assert_eq!(errors(json!({})), vec!["hooks: missing required field"]);
    assert_eq!(
        errors(json!({"hooks": {}})),
        vec!["hooks: expected an array of hooks, found an object"]
    );
    let empty = parse(b"  \n").unwrap_err();
    assert_eq!(
        empty[0].to_string(),
        "$: the configuration is empty; expected a JSON object such as {\"hooks\": [...]}"
    );
    let broken = parse(br#"{"hooks": [}"#).unwrap_err();
    assert_eq!(broken.len(), 1);
    assert!(
        broken[0]
            .to_string()
            .starts_with("$: invalid JSON: expected value at line 1 column 12"),
        "{}",
        broken[0]
    );
}

#[test]
fn missing_required_hook_fields() {
    assert_eq!(
        errors(json!({"hooks": [{}]})),
        vec![
            "hooks[0].source: missing required field",
            "hooks[0].handler: missing required field",
            "hooks[0].config: missing required field",
        ]
    );
}

#[test]
fn redact_headers_forms() {
    let hook = |redact: Value| {
        json!({"hooks": [{"source": "traffic", "handler": "webhook", "config": {"url": "http://r/"},
                          "redact_headers": redact}]})
    };
    let names = |redact: Value| {
        parse(hook(redact).to_string().as_bytes())
            .unwrap()
            .hooks
            .get(0)
            .unwrap()
            .redaction
            .names()
            .to_vec()
    };
    assert_eq!(names(json!(true)), DEFAULT_REDACTED_HEADERS);
    assert!(names(json!(false)).is_empty());
    assert_eq!(names(json!(["X-Api-Key"])), vec!["x-api-key"]);
    assert_eq!(
        errors(hook(json!("all"))),
        vec![
            "hooks[0].redact_headers: expected true, false or a list of header names, found a string"
        ]
    );
    assert_eq!(
        errors(hook(json!(["ok", 3]))),
        vec!["hooks[0].redact_headers[1]: expected a header name, found a number"]
    );
}

#[test]
fn secrets_never_appear_in_messages() {
    let secret = "s3cr3t-value-123";
    let found = errors(json!({"hooks": [
        {"source": "traffic", "handler": "webhook",
         "config": {"url": "http://r/", "secret": 42, "headers": {"x-token": secret, "Content-Type": secret}}},
        {"source": "traffic", "handler": "webhook", "config": {"url": "http://r/", "secret": [secret]}}
    ]}))
    .join("\n");
    assert!(!found.contains(secret), "{found}");
    assert!(
        found.contains("hooks[1].config.secret: expected a string, found an array"),
        "{found}"
    );
}

#[test]
fn filters_on_header_names_must_be_lowercase() {
    assert_eq!(
        errors(
            json!({"hooks": [{"source": "traffic", "handler": "webhook", "config": {"url": "http://r/"},
                                 "filter": {"request.headers.X-Team": "a"}}]})
        ),
        vec![
            "hooks[0].filter.request.headers.X-Team: header names are lowercase in events: use request.headers.x-team"
        ]
    );
}

#[test]
fn every_source_and_its_settings() {
    let config = json!({
        "hooks": [
            {"source": "crud", "event": "consumers:create", "handler": "webhook", "config": {"url": "http://r/"}},
            {"source": "dao:crud", "event": "delete", "handler": "webhook", "config": {"url": "http://r/"}},
            {"source": "balancer", "event": "health", "handler": "webhook", "config": {"url": "http://r/"}},
            {"source": "rate-limiting-advanced", "event": "rate-limit-exceeded", "handler": "webhook", "config": {"url": "http://r/"}}
        ],
        "crud": {"match": {"upstream.cluster": "kong_admin"}},
        "health": {"unhealthy_after": 5},
        "rate_limit": {"consumer_headers": ["x-user"]}
    });
    let config = parse(config.to_string().as_bytes()).unwrap();
    assert_eq!(config.hooks.len(), 4);
    assert_eq!(config.sources.crud.unwrap().prefix, "/");
    assert_eq!(config.sources.health.unhealthy_after, 5);
    assert_eq!(config.sources.rate_limit.consumer_headers, vec!["x-user"]);
}

#[test]
fn crud_hooks_need_crud_settings_and_valid_event_names() {
    assert_eq!(
        errors(json!({"hooks": [
            {"source": "crud", "event": "consumers:upsert", "handler": "webhook", "config": {"url": "http://r/"}},
            {"source": "dao:crud", "handler": "webhook", "config": {"url": "http://r/"}}
        ]})),
        vec![
            "hooks[0].event: unknown event \"consumers:upsert\" of source crud; expected <schema> or <schema>:create, :update, :delete (a schema is A-Z a-z 0-9 _ -)",
            "hooks[0].source: source crud needs the top-level crud settings (crud.match selects the admin API's requests)",
            "hooks[1].source: source dao:crud needs the top-level crud settings (crud.match selects the admin API's requests)",
        ]
    );
}

#[test]
fn the_host_can_be_forced_or_left_to_detection() {
    let parse = |host: Value| {
        let mut config = json!({"hooks": []});
        if !host.is_null() {
            config["host"] = host;
        }
        parse(config.to_string().as_bytes()).map(|config| config.host)
    };
    assert_eq!(parse(Value::Null).unwrap(), None);
    assert_eq!(parse(json!("envoy")).unwrap(), Some(Host::Envoy));
    assert_eq!(parse(json!("kong")).unwrap(), Some(Host::Kong));
    assert_eq!(
        errors(json!({"host": "nginx", "hooks": []})),
        vec![
            "host: unknown host \"nginx\"; expected \"envoy\" or \"kong\" (or leave it out to detect the host)"
        ]
    );
    assert_eq!(
        errors(json!({"host": 1, "hooks": []})),
        vec!["host: expected a string, found a number"]
    );
}
