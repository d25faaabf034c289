use super::*;
use crate::config::MAX_SNOOZE;
use crate::delivery::retry;
use crate::filter::OPERATORS;
use crate::handler::endpoint::CALL_KEYS;
use crate::handler::{lambda_config, webhook, webhook_custom};
use crate::source::{balancer, crud, rate_limiting};

fn keys(object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn sorted(groups: &[&[&str]]) -> Vec<String> {
    let mut keys: Vec<String> = groups
        .iter()
        .flat_map(|group| group.iter().map(|key| key.to_string()))
        .collect();
    keys.sort();
    keys
}

/// The `config` schema of the hooks with `handler`.
fn handler_config(schema: &Value, handler: &str) -> Value {
    schema["properties"]["hooks"]["items"]["allOf"][0]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|branch| branch["properties"]["handler"]["enum"] == json!([handler]))
        .unwrap()["properties"]["config"]
        .clone()
}

#[test]
fn the_schema_types_every_key_the_parser_reads_and_no_other() {
    assert_eq!(gaps(), Vec::<String>::new());
}

#[test]
fn every_object_takes_exactly_the_parser_s_keys() {
    let schema = schema();
    let properties = &schema["properties"];
    let hook = &properties["hooks"]["items"];
    let cases: Vec<(&str, &Value, Vec<String>)> = vec![
        ("$", &schema, sorted(&[&top_keys()])),
        ("hooks[]", hook, sorted(&[HOOK_KEYS])),
        (
            "delivery",
            &properties["delivery"],
            sorted(&[DELIVERY_KEYS]),
        ),
        (
            "delivery.retry",
            &properties["delivery"]["properties"]["retry"],
            sorted(&[retry::KEYS]),
        ),
        (
            "delivery.breaker",
            &properties["delivery"]["properties"]["breaker"],
            sorted(&[breaker::KEYS]),
        ),
        ("crud", &properties["crud"], sorted(&[crud::KEYS])),
        ("health", &properties["health"], sorted(&[balancer::KEYS])),
        (
            "rate_limit",
            &properties["rate_limit"],
            sorted(&[rate_limiting::KEYS]),
        ),
        ("admin", &properties["admin"], sorted(&[admin::KEYS])),
    ];
    for (at, object, expected) in cases {
        assert_eq!(keys(object), expected, "{at}");
        assert_eq!(object["additionalProperties"], json!(false), "{at}");
    }
    let handlers: Vec<(&str, Vec<String>)> = vec![
        ("webhook", sorted(&[webhook::KEYS, CALL_KEYS])),
        ("webhook-custom", sorted(&[webhook_custom::KEYS, CALL_KEYS])),
        ("log", Vec::new()),
        ("lambda", sorted(&[lambda_config::KEYS, CALL_KEYS])),
    ];
    for (handler, expected) in handlers {
        let config = handler_config(&schema, handler);
        assert_eq!(keys(&config), expected, "{handler}");
        assert_eq!(config["additionalProperties"], json!(false), "{handler}");
        if handler != "log" {
            let retry = &config["properties"]["retry"];
            assert_eq!(keys(retry), sorted(&[retry::KEYS]), "{handler}");
        }
    }
}

#[test]
fn names_are_the_parser_s() {
    let schema = schema();
    let hook = &schema["properties"]["hooks"]["items"];
    assert_eq!(
        hook["properties"]["handler"]["enum"],
        json!(crate::handler::names(&crate::handler::builtin()))
    );
    // A built-in source, or one the configuration publishes (the parser checks which).
    assert_eq!(
        hook["properties"]["source"]["anyOf"][0]["enum"],
        json!([
            "traffic",
            "crud",
            "dao:crud",
            "balancer",
            "rate-limiting-advanced",
            "event_hooks"
        ])
    );
    assert_eq!(
        schema["properties"]["host"]["enum"],
        json!(["envoy", "kong"])
    );
    assert_eq!(
        handler_config(&schema, "webhook")["properties"]["signature"]["enum"],
        json!(["kong", "standard-webhooks", "github"])
    );
    let events: Vec<(Value, Value)> = hook["allOf"][1]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|branch| {
            (
                branch["properties"]["source"]["enum"][0].clone(),
                branch["properties"]["event"].clone(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (json!("traffic"), json!({"enum": ["request"]})),
            (
                json!("crud"),
                json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}(:(create|update|delete))?$"})
            ),
            (
                json!("dao:crud"),
                json!({"enum": ["create", "update", "delete"]})
            ),
            (json!("balancer"), json!({"enum": ["health"]})),
            (
                json!("rate-limiting-advanced"),
                json!({"enum": ["rate-limit-exceeded"]})
            ),
            (json!("event_hooks"), json!({"enum": ["dead_letter"]})),
            // Any other source: a published one, whose events `publish` lists.
            (
                Value::Null,
                json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"})
            ),
        ]
    );
    let operators = keys(&crate::filter::schema()["additionalProperties"]["anyOf"][1]);
    assert_eq!(operators, sorted(&[OPERATORS]));
}

#[test]
fn numbers_take_the_parser_s_ranges() {
    let schema = schema();
    let delivery = &schema["properties"]["delivery"]["properties"];
    assert_eq!(
        delivery["max_queue_bytes"],
        json!({"type": "integer", "minimum": 65_536, "maximum": 256 * 1024 * 1024})
    );
    assert_eq!(
        delivery["flush_interval_ms"],
        json!({"type": "integer", "minimum": 10, "maximum": 60_000})
    );
    assert_eq!(
        schema["properties"]["hooks"]["items"]["properties"]["snooze"],
        json!({"type": "integer", "minimum": 0, "maximum": MAX_SNOOZE})
    );
    // The bounds are the parser's: one past them is refused with the same numbers.
    let too_big = json!({"hooks": [], "delivery": {"flush_interval_ms": 60_001}});
    assert_eq!(
        crate::config::parse(too_big.to_string().as_bytes())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["delivery.flush_interval_ms: must be between 10 and 60000"]
    );
}

#[test]
fn the_committed_kong_meta_json_is_the_generated_one() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../kong/event_hooks.meta.json"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = format!("{}\n", serde_json::to_string_pretty(&kong_meta()).unwrap());
    assert!(
        committed == generated,
        "kong/event_hooks.meta.json is not the schema this code generates: run `make schema` and commit it"
    );
}
