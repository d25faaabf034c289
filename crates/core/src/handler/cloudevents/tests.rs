use super::*;
use crate::delivery::batching::{self, Choice};
use crate::event::{Bodies, Event, Stamp};
use crate::handler::Handler;
use crate::handler::webhook::Webhook;
use crate::source::Source;
use serde_json::json;
use std::rc::Rc;

fn webhook(config: Value) -> Result<Webhook, Vec<String>> {
    let problems = Problems::default();
    let webhook = Webhook::parse(&config, "config", &problems);
    if problems.is_empty() {
        Ok(webhook.unwrap())
    } else {
        Err(problems.messages())
    }
}

fn event() -> Event {
    let data = json!({
        "request": {"method": "POST", "headers": {"authorization": "Bearer s3cr3t", "x-tenant": "acme \"eu\" 100%"}},
        "response": {"status": 502},
    });
    Event::new(
        Source::TRAFFIC,
        "request",
        data.as_object().unwrap().clone(),
    )
}

/// The call hook `hook` makes of [`event`], stamped as routing stamps it.
fn draft(webhook: &Webhook, hook: &str) -> crate::delivery::Call {
    let event = event();
    let mut bodies = Bodies::new(&event);
    bodies.stamp(Stamp {
        hook: Rc::from(hook),
        id: "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b".into(),
        time_ms: 1_700_000_000_123,
    });
    webhook.draft(&mut bodies, &crate::event::Redaction::default())
}

fn header<'a>(call: &'a crate::delivery::Call, name: &str) -> Option<&'a str> {
    call.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_structured_event_carries_every_attribute_and_the_redacted_data() {
    let hook = webhook(json!({
        "url": "http://receiver/events",
        "format": "cloudevents",
        "cloudevents": {
            "source": "//gateway.example.com/eu-1",
            "type_prefix": "com.example.gateway",
            "extensions": {"tenant": "{{ request.headers.x-tenant }}", "absent": "{{ nope }}"}
        }
    }))
    .unwrap();
    let call = draft(&hook, "audit");
    assert_eq!(header(&call, "content-type"), Some(STRUCTURED));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        json!({
            "specversion": "1.0",
            "id": "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
            "source": "//gateway.example.com/eu-1",
            "type": "com.example.gateway.traffic.request",
            "time": "2023-11-14T22:13:20.123Z",
            "datacontenttype": "application/json",
            "tenant": "acme \"eu\" 100%",
            "data": {
                "request": {"method": "POST", "headers": {"authorization": "[redacted]", "x-tenant": "acme \"eu\" 100%"}},
                "response": {"status": 502},
            },
        })
    );
    assert_eq!(hook.batching().content_type, STRUCTURED_BATCH);
}

#[test]
fn the_default_source_names_the_filter_and_the_hook_and_the_type_its_prefix() {
    let hook = webhook(json!({"url": "http://r/", "format": "cloudevents"})).unwrap();
    let body: Value = serde_json::from_slice(&draft(&hook, "audit.v1").body).unwrap();
    assert_eq!(body["source"], json!("/event_hooks/audit.v1"));
    assert_eq!(body["type"], json!("event_hooks.traffic.request"));
    assert_eq!(percent_encode("a b/ü", false), "a%20b%2F%C3%BC");
}

#[test]
fn a_binary_event_sends_its_attributes_as_percent_encoded_headers_and_the_data_as_body() {
    let hook = webhook(json!({
        "url": "http://r/",
        "format": "cloudevents-binary",
        "headers": {"X-Team": "payments"},
        "cloudevents": {"extensions": {"tenant": "{{ request.headers.x-tenant }}"}}
    }))
    .unwrap();
    let call = draft(&hook, "audit");
    let ce: Vec<(&str, &str)> = call
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("ce-"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        ce,
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"),
            ("ce-source", "/event_hooks/audit"),
            ("ce-type", "event_hooks.traffic.request"),
            ("ce-time", "2023-11-14T22:13:20.123Z"),
            ("ce-tenant", "acme%20%22eu%22%20100%25"),
        ]
    );
    assert_eq!(header(&call, "content-type"), Some("application/json"));
    assert_eq!(header(&call, "x-team"), Some("payments"));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["response"], json!({"status": 502}));
    assert_eq!(
        body["request"]["headers"]["authorization"],
        json!("[redacted]")
    );
    assert_eq!(hook.batching().choice, Choice::Never, "never batched");
}

#[test]
fn a_hook_batches_with_its_own_limits_by_default_or_never() {
    let choice = |config: Value| webhook(config).unwrap().batching().choice;
    assert_eq!(choice(json!({"url": "http://r/"})), Choice::Default);
    assert_eq!(
        choice(json!({"url": "http://r/", "batch": false})),
        Choice::Never
    );
    assert_eq!(
        choice(json!({"url": "http://r/", "batch": {"max_size": 10}})),
        Choice::Own(batching::Settings {
            max_size: 10,
            ..batching::Settings::default()
        })
    );
    assert_eq!(
        webhook(json!({"url": "http://r/", "batch": {}}))
            .unwrap()
            .batching()
            .content_type,
        "application/json"
    );
}

#[test]
fn configuration_errors_name_their_paths() {
    let errors = |config: Value| webhook(config).unwrap_err();
    assert_eq!(
        errors(json!({"url": "http://r/", "format": "xml"})),
        vec!["config.format: expected one of: kong, cloudevents, cloudevents-binary"]
    );
    assert_eq!(
        errors(json!({"url": "http://r/", "cloudevents": {"source": "/x"}})),
        vec!["config.cloudevents: applies to format cloudevents or cloudevents-binary only"]
    );
    assert_eq!(
        errors(
            json!({"url": "http://r/", "format": "cloudevents-binary", "batch": {"max_size": 10}})
        ),
        vec![
            "config.batch: format cloudevents-binary sends one event per call; remove batch, or use format cloudevents"
        ]
    );
    assert_eq!(
        errors(
            json!({"url": "http://r/", "format": "cloudevents-binary", "headers": {"CE-Id": "x"}})
        ),
        vec!["config.headers.ce-id: ce-* headers are set by format cloudevents-binary"]
    );
    assert_eq!(
        errors(json!({"url": "http://r/", "batch": true})),
        vec!["config.batch: expected an object or false, found a boolean"]
    );
    assert_eq!(
        errors(json!({"url": "http://r/", "batch": {"max_size": 0, "max_bytes": 10}})),
        vec![
            "config.batch.max_size: must be between 1 and 10000",
            "config.batch.max_bytes: must be between 1024 and 16777216",
        ]
    );
    assert_eq!(
        errors(
            json!({"url": "http://r/", "format": "cloudevents", "cloudevents": {
                "source": "has space", "kind": "x",
                "extensions": {"Tenant": "x", "time": "x", "ok": "{{ unclosed"}
            }})
        ),
        vec![
            "config.cloudevents.kind: unknown field; expected one of: source, type_prefix, extensions",
            "config.cloudevents.source: must be a non-empty URI reference or name without spaces or control characters",
            "config.cloudevents.extensions.Tenant: an extension attribute's name is 1 to 20 lowercase letters and digits",
            "config.cloudevents.extensions.ok: unclosed {{ at byte 0",
            "config.cloudevents.extensions.time: time is a CloudEvents attribute the filter sets",
        ]
    );
}
