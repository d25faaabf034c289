use std::rc::Rc;

use serde_json::{Value, json};

use super::*;
use crate::admin::{self, Route};
use crate::config::{self, Config};
use crate::source::Source;

fn parse(config: Value) -> Result<Config, Vec<String>> {
    config::parse(config.to_string().as_bytes())
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn errors(config: Value) -> Vec<String> {
    match parse(config.clone()) {
        Ok(_) => panic!("expected errors for {config}"),
        Err(errors) => errors,
    }
}

/// The issue's example.
fn payments() -> Value {
    json!({"payments": {
        "description": "Events the payments filter emits",
        "events": {
            "refund-issued": {"description": "A refund was issued",
                              "fields": ["order_id", "amount", "currency"], "unique": ["order_id"]}
        }
    }})
}

fn log_hook(source: &str, event: Option<&str>) -> Value {
    let mut hook = json!({"source": source, "handler": "log", "config": {}});
    if let Some(event) = event {
        hook["event"] = json!(event);
    }
    hook
}

#[test]
fn the_issue_s_example_publishes_a_source_that_hooks_name() {
    let config = parse(json!({
        "publish": payments(),
        "hooks": [log_hook("payments", Some("refund-issued"))]
    }))
    .unwrap();
    let sources = config.hooks.sources();
    let id = sources.from_name("payments").unwrap();
    assert_eq!(
        id.index(),
        Source::COUNT,
        "published ids follow the built-in ones"
    );
    assert!(!id.is_builtin() && Source::TRAFFIC.is_builtin());
    assert_eq!(sources.len(), Source::COUNT + 1);
    let published = sources.published(id).unwrap();
    assert_eq!(
        **published,
        Published {
            name: "payments".into(),
            description: "Events the payments filter emits".into(),
            with_request: false,
            filter_state: false,
            events: vec![PublishedEvent {
                name: "refund-issued".into(),
                description: "A refund was issued".into(),
                fields: vec!["order_id".into(), "amount".into(), "currency".into()],
                unique: vec!["order_id".into()],
            }],
        }
    );
    let hook = config.hooks.get(0).unwrap();
    assert_eq!(hook.source, id);
    assert!(Rc::ptr_eq(hook.published.as_ref().unwrap(), published));
    assert_eq!(hook.source_name(), "payments");
    assert_eq!(hook.controls().published, Some(&**published));
    assert_eq!(
        sources.spec(id, "refund-issued").unwrap().unique,
        ["order_id"]
    );
    assert_eq!(sources.name(Source::CRUD), "crud");
    assert!(sources.published(Source::EVENT_HOOKS).is_none());
    // A built-in source asked through the registry answers as before.
    assert_eq!(
        sources
            .spec(Source::RATE_LIMITING, "rate-limit-exceeded")
            .unwrap()
            .unique,
        ["consumer", "ip", "service"]
    );
}

#[test]
fn defaults_and_a_source_without_fields() {
    let config = parse(json!({
        "publish": {"jobs": {"events": {"done": {}}}, "audit": {"with_request": true, "events": {"access": {"fields": ["user"]}}}},
        "hooks": [log_hook("jobs", None)]
    }))
    .unwrap();
    let sources = config.hooks.sources();
    // Ids in name order, as the configuration's object is read.
    let names: Vec<&str> = sources
        .all()
        .skip(Source::COUNT)
        .map(|s| sources.name(s))
        .collect();
    assert_eq!(names, ["audit", "jobs"]);
    let jobs = sources
        .published(sources.from_name("jobs").unwrap())
        .unwrap();
    assert_eq!((jobs.description.as_str(), jobs.with_request), ("", false));
    assert!(
        !jobs.filter_state,
        "dynamic metadata unless the source says otherwise"
    );
    assert_eq!(jobs.events[0].fields, Vec::<String>::new());
    let audit = sources
        .published(sources.from_name("audit").unwrap())
        .unwrap();
    assert!(audit.with_request);
}

#[test]
fn every_publish_error_names_its_json_path() {
    assert_eq!(
        errors(json!({"hooks": [], "publish": {
            "traffic": {"events": {"request": {}}},
            "pay.ments": {"events": {"e": {}}},
            "empty": {"events": {}},
            "noevents": {},
            "listed": {"events": []},
            "payments": {"description": 7, "with_request": "yes", "channel": "kafka", "extra": 1, "events": {
                "refund issued": {},
                "refund-issued": {"fields": ["order_id", "order_id", ""], "unique": ["amount"], "other": true}
            }}
        }})),
        [
            "publish.empty.events: publish at least one event",
            "publish.listed.events: expected an object of events, found an array",
            "publish.noevents.events: missing required field",
            "publish.pay.ments: a published source's name must be 1 to 128 characters of A-Z a-z 0-9 _ - (no `.`: emitters name events <source>.<event>)",
            "publish.payments.extra: unknown field; expected one of: description, with_request, channel, events",
            "publish.payments.description: expected a string, found a number",
            "publish.payments.with_request: expected true or false, found a string",
            "publish.payments.channel: expected one of: metadata, filter_state",
            "publish.payments.events.refund issued: an event's name must be 1 to 128 characters of A-Z a-z 0-9 _ . -",
            "publish.payments.events.refund-issued.other: unknown field; expected one of: description, fields, unique",
            "publish.payments.events.refund-issued.fields[2]: expected a field name (1 to 128 bytes), found a string",
            "publish.payments.events.refund-issued.fields[1]: listed twice, also at fields[0]",
            "publish.payments.events.refund-issued.unique[0]: not one of the event's fields; `unique` lists some of `fields`",
            "publish.traffic: a built-in source has this name; publish the source under another",
        ]
    );
    assert_eq!(
        errors(json!({"hooks": [], "publish": []})),
        ["publish: expected an object of published sources, found an array"]
    );
}

#[test]
fn every_built_in_name_is_refused() {
    for name in BUILTIN.iter().map(|kind| kind.name()) {
        let mut publish = serde_json::Map::new();
        publish.insert(name.into(), json!({"events": {"e": {}}}));
        let found = errors(json!({"hooks": [], "publish": publish}));
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert!(
            found[0].starts_with(&format!("publish.{name}: ")),
            "{found:?}"
        );
    }
}

#[test]
fn the_limits_are_enforced_where_they_are_exceeded() {
    let many = |count: usize, each: &dyn Fn(usize) -> (String, Value)| -> Value {
        Value::Object((0..count).map(each).collect())
    };
    let sources = many(MAX_SOURCES + 1, &|n| {
        (format!("s{n}"), json!({"events": {"e": {}}}))
    });
    assert_eq!(
        errors(json!({"hooks": [], "publish": sources})),
        ["publish: at most 32 sources may be published"]
    );
    let events = many(MAX_EVENTS + 1, &|n| (format!("e{n}"), json!({})));
    assert_eq!(
        errors(json!({"hooks": [], "publish": {"s": {"events": events}}})),
        ["publish.s.events: at most 64 events per published source"]
    );
    let fields: Vec<String> = (0..=MAX_FIELDS).map(|n| format!("f{n}")).collect();
    assert_eq!(
        errors(json!({"hooks": [], "publish": {"s": {"events": {"e": {"fields": fields}}}}})),
        ["publish.s.events.e.fields: at most 64 fields per event"]
    );
    let (source, event) = ("s".repeat(100), "e".repeat(28));
    let mut publish = serde_json::Map::new();
    let mut events = serde_json::Map::new();
    events.insert(
        event.clone(),
        json!({"description": "d".repeat(MAX_DESCRIPTION_LEN + 1)}),
    );
    publish.insert(source.clone(), json!({"events": events}));
    assert_eq!(
        errors(json!({"hooks": [], "publish": publish})),
        [
            format!(
                "publish.{source}.events.{event}: <source>.<event> is over 128 bytes, the longest key an emitter may give"
            ),
            format!("publish.{source}.events.{event}.description: at most 1024 bytes"),
        ]
    );
    // One byte less is a key an emitter can give.
    let mut events = serde_json::Map::new();
    events.insert("e".repeat(27), json!({}));
    let mut publish = serde_json::Map::new();
    publish.insert(source, json!({"events": events}));
    assert!(parse(json!({"hooks": [], "publish": publish})).is_ok());
}

#[test]
fn hooks_name_published_sources_and_events_that_exist() {
    assert_eq!(
        errors(json!({"publish": payments(), "hooks": [
            log_hook("payment", None),
            log_hook("payments", Some("refund")),
            log_hook("payments", None),
        ]})),
        [
            "hooks[0].source: unknown source \"payment\"; expected one of: traffic, crud, dao:crud, balancer, rate-limiting-advanced, event_hooks, payments",
            "hooks[1].event: unknown event \"refund\" of source payments; expected refund-issued",
        ]
    );
    // Without `publish`, the name is unknown.
    assert_eq!(
        errors(json!({"hooks": [log_hook("payments", None)]})),
        [
            "hooks[0].source: unknown source \"payments\"; expected one of: traffic, crud, dao:crud, balancer, rate-limiting-advanced, event_hooks"
        ]
    );
    // The dead-letter hook's message names a published source by its name.
    let mut hook = log_hook("payments", None);
    hook["name"] = json!("dl");
    assert_eq!(
        errors(json!({"publish": payments(), "hooks": [hook], "delivery": {"dead_letter": "dl"}})),
        [
            "delivery.dead_letter: hook \"dl\" has source payments; a dead-letter hook has source event_hooks (event dead_letter)"
        ]
    );
}

#[test]
fn the_sources_endpoint_lists_published_sources_in_kong_s_shape() {
    let config = parse(json!({
        "publish": payments(),
        "admin": {"prefix": "/event-hooks", "token": "t"},
        "hooks": [log_hook("payments", None)]
    }))
    .unwrap();
    let settings = config.admin.as_ref().unwrap();
    let get = |rest: &str| match admin::route(
        settings,
        "GET",
        rest,
        Some("Bearer t"),
        &config.hooks,
        || Value::Null,
    ) {
        Route::Reply(reply) => reply,
        other => panic!("unexpected {other:?}"),
    };
    let all = get("sources");
    assert_eq!(
        all.body["data"]["payments"],
        json!({"refund-issued": {"fields": ["order_id", "amount", "currency"], "unique": ["order_id"], "description": "A refund was issued"}})
    );
    let names: Vec<&String> = all.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), Source::COUNT + 1);
    assert!(all.body["data"]["traffic"]["request"]["fields"].is_array());
    let one = get("sources/payments");
    assert_eq!(
        (one.status, &one.body["data"]),
        (200, &all.body["data"]["payments"])
    );
    assert_eq!(get("sources/refunds").status, 404);
}

#[test]
fn a_test_event_of_a_published_source_carries_its_name() {
    let config = parse(json!({"publish": payments(), "hooks": [
        {"source": "payments", "handler": "webhook", "config": {"url": "http://r/"}}
    ]}))
    .unwrap();
    let hook = config.hooks.get(0).unwrap();
    let event = admin::test_event(hook, br#"{"order_id": "42"}"#).unwrap();
    assert_eq!(
        (event.source_name.as_ref(), event.name.as_str()),
        ("payments", "refund-issued")
    );
    assert_eq!(
        event.kong_payload(&hook.redaction),
        json!({"order_id": "42", "source": "payments", "event": "refund-issued"})
    );
}

#[test]
fn a_configuration_s_published_sources_go_with_it() {
    // No global registry: what a configuration publishes is freed with it (a reload drops it).
    let config =
        parse(json!({"publish": payments(), "hooks": [log_hook("payments", None)]})).unwrap();
    let id = config.hooks.sources().from_name("payments").unwrap();
    let weak = Rc::downgrade(config.hooks.sources().published(id).unwrap());
    let other = parse(json!({"hooks": []})).unwrap();
    assert!(other.hooks.sources().from_name("payments").is_none());
    drop(config);
    assert!(weak.upgrade().is_none());
}

#[cfg(feature = "schema")]
#[test]
fn the_schema_describes_publish() {
    let schema = crate::config::schema::schema();
    let publish = &schema["properties"]["publish"];
    let source = &publish["patternProperties"]["^[A-Za-z0-9_-]{1,128}$"];
    assert_eq!(source["required"], json!(["events"]));
    let event = &source["properties"]["events"]["patternProperties"]["^[A-Za-z0-9_.-]{1,128}$"];
    let mut keys: Vec<&String> = event["properties"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["description", "fields", "unique"]);
    assert_eq!(publish["maxProperties"], json!(MAX_SOURCES));
    assert_eq!(publish["not"]["anyOf"][0], json!({"required": ["traffic"]}));
    let hook = &schema["properties"]["hooks"]["items"];
    assert_eq!(
        hook["properties"]["source"]["anyOf"][1],
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"})
    );
}
