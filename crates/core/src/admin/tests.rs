use super::*;
use crate::config;
use crate::reader::Problems;
use serde_json::json;

fn setup() -> (Settings, HookSet) {
    let config = json!({
        "hooks": [
            {"name": "slack", "source": "traffic", "handler": "webhook",
             "config": {"url": "https://hooks.example/x", "secret": "hook-secret",
                        "headers": {"Authorization": "Bearer api-key", "x-team": "payments"}}},
            {"name": "audit", "source": "crud", "event": "consumers", "handler": "log", "config": {}}
        ],
        "crud": {"match": {"upstream.cluster": "admin"}},
        "admin": {"token": "s3cret-admin-token"}
    });
    let config = config::parse(config.to_string().as_bytes()).unwrap();
    (config.admin.unwrap(), config.hooks)
}

fn answer(method: &str, rest: &str, authorization: Option<&str>) -> Route {
    let (settings, hooks) = setup();
    route(
        &settings,
        method,
        rest,
        authorization,
        &hooks,
        || json!({"status": "here"}),
    )
}

const AUTH: Option<&str> = Some("Bearer s3cret-admin-token");

fn reply(route: Route) -> Reply {
    match route {
        Route::Reply(reply) => reply,
        other => panic!("not a reply: {other:?}"),
    }
}

#[test]
fn prefixes() {
    let (settings, _) = setup();
    assert_eq!(settings.prefix, "/event-hooks");
    assert_eq!(settings.rest("/event-hooks"), Some(""));
    assert_eq!(settings.rest("/event-hooks/"), Some(""));
    assert_eq!(settings.rest("/event-hooks?x"), Some(""));
    assert_eq!(
        settings.rest("/event-hooks/sources/crud"),
        Some("sources/crud")
    );
    assert_eq!(settings.rest("/event-hooksx"), None);
    assert_eq!(settings.rest("/orders"), None);
}

#[test]
fn every_request_needs_the_token() {
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-admin-token"),
        Some("Bearer "),
        Some("Basic czNjcmV0"),
    ] {
        let answer = reply(answer("GET", "", authorization));
        assert_eq!(answer.status, 401, "{authorization:?}");
        assert_eq!(answer.body, json!({"message": "unauthorized"}));
    }
    assert_eq!(reply(answer("GET", "", AUTH)).status, 200);
}

#[test]
fn the_listing_redacts_every_secret() {
    let body = reply(answer("GET", "", AUTH)).body;
    let slack = &body["data"][0];
    assert_eq!(slack["name"], "slack");
    assert_eq!(slack["config"]["secret"], "[redacted]");
    assert_eq!(slack["config"]["headers"]["Authorization"], "[redacted]");
    assert_eq!(slack["config"]["headers"]["x-team"], "payments");
    assert_eq!(body["data"][1]["name"], "audit");
    let text = body.to_string();
    for secret in ["hook-secret", "api-key", "s3cret-admin-token"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn sources_in_kong_s_shape() {
    let all = reply(answer("GET", "sources", AUTH)).body;
    assert_eq!(
        all["data"]["rate-limiting-advanced"]["rate-limit-exceeded"]["unique"],
        json!(["consumer", "ip", "service"])
    );
    assert_eq!(
        all["data"]["dao:crud"]["create"]["fields"],
        json!(["operation", "entity", "old_entity", "schema"])
    );
    let one = reply(answer("GET", "sources/balancer", AUTH)).body;
    assert_eq!(
        one["data"]["health"]["fields"],
        json!(["upstream_id", "ip", "port", "hostname", "health"])
    );
    let missing = reply(answer("GET", "sources/nope", AUTH));
    assert_eq!(
        (missing.status, missing.body),
        (404, json!({"message": "source not found"}))
    );
}

#[test]
fn routes() {
    assert_eq!(
        reply(answer("GET", "status", AUTH)).body,
        json!({"status": "here"})
    );
    assert_eq!(answer("POST", "slack/test", AUTH), Route::Test { hook: 0 });
    assert_eq!(answer("GET", "slack/ping", AUTH), Route::Ping { hook: 0 });
    assert_eq!(reply(answer("GET", "audit/ping", AUTH)).status, 400);
    assert_eq!(reply(answer("GET", "slack/test", AUTH)).status, 405);
    assert_eq!(reply(answer("POST", "nobody/test", AUTH)).status, 404);
    assert_eq!(reply(answer("GET", "what/ever/else", AUTH)).status, 404);
    assert_eq!(reply(answer("DELETE", "", AUTH)).status, 405);
}

#[test]
fn test_and_ping_payloads() {
    let (_, hooks) = setup();
    let slack = hooks.get(0).unwrap();
    let event = test_event(slack, br#"{"message": "hi"}"#).unwrap();
    assert_eq!(
        (event.source, event.name.as_str()),
        (Source::TRAFFIC, "request")
    );
    let outputs = run(slack, &event, crate::event::Stamp::default());
    let Some(Output::Call(draft)) = outputs.first() else {
        panic!("no draft")
    };
    let body: Value = serde_json::from_slice(&draft.body).unwrap();
    assert_eq!(
        body,
        json!({"message": "hi", "source": "traffic", "event": "request"})
    );
    assert_eq!(test_event(slack, b"[1]").unwrap_err().status, 400);
    assert_eq!(test_event(slack, b"not json").unwrap_err().status, 400);
    let audit = hooks.get(1).unwrap();
    assert_eq!(test_event(audit, b"{}").unwrap().name, "consumers");

    let pinged = ping(slack).unwrap();
    let body: Value = serde_json::from_slice(&pinged.body).unwrap();
    assert_eq!(body["source"], "kong:event_hooks");
    assert_eq!(body["event"], "ping");
    assert_eq!(body["event_hooks"]["name"], "slack");
    assert!(!body.to_string().contains("hook-secret"));
    assert!(ping(audit).is_none());
}

#[test]
fn results_in_kong_s_shape() {
    let headers = vec![
        (":status".to_string(), "201".to_string()),
        ("x-a".to_string(), "b".to_string()),
    ];
    let reply = result(json!({"k": 1}), Some(201), &headers, br#"{"ok": true}"#);
    assert_eq!(
        reply.body,
        json!({"data": {"k": 1}, "result": {"status": 201, "headers": {"x-a": "b"}, "body": {"ok": true}}})
    );
    let text = result(json!({}), Some(500), &[], b"oops");
    assert_eq!(text.body["result"]["body"], "oops");
}

#[test]
fn token_settings() {
    let env = || {
        Problems::with_env(Box::new(|name: &str| {
            (name == "ADMIN_TOKEN").then(|| "from-env".to_string())
        }))
    };
    let problems = env();
    let settings = Settings::parse(
        &json!({"token_env": "ADMIN_TOKEN", "prefix": "/hooks/"}),
        "admin",
        &problems,
    )
    .unwrap();
    assert!(problems.is_empty());
    assert_eq!(settings.prefix, "/hooks");
    assert!(settings.authorized(Some("Bearer from-env")));
    let problems = env();
    Settings::parse(&json!({"token_env": "MISSING"}), "admin", &problems);
    Settings::parse(
        &json!({"token": "a", "token_env": "ADMIN_TOKEN"}),
        "admin",
        &problems,
    );
    Settings::parse(&json!({"prefix": "hooks"}), "admin", &problems);
    assert_eq!(
        problems.messages(),
        vec![
            "admin.token_env: environment variable MISSING is not set (give it to the VM: Envoy's vm_config.environment_variables, Kong's nginx_main_env; Kong 3.4 to 3.6 give filters no environment variables: there, use token instead)",
            "admin: set token or token_env, not both",
            "admin.prefix: must start with / and name a path",
            "admin.token: missing required field (or token_env)",
        ]
    );
}

mod sessions {
    use super::super::session::{self, Step};
    use crate::config;
    use crate::log::Lines;
    use crate::ports::ManualClock;
    use crate::runtime::Runtime;
    use serde_json::{Value, json};

    fn runtime() -> Runtime {
        let config = json!({
            "hooks": [
                {"name": "slack", "source": "traffic", "handler": "webhook",
                 "config": {"url": "http://receiver:9000/x", "secret": "hook-secret"}},
                {"name": "audit", "source": "traffic", "handler": "log", "config": {}}
            ],
            "admin": {"token": "t0ken"}
        });
        Runtime::new(
            config::parse(config.to_string().as_bytes()).unwrap(),
            1,
            Box::new(crate::shared::Memory::default()),
            Box::new(crate::metrics::Null),
            Box::new(Lines::default()),
        )
    }

    fn start(method: &str, rest: &str, headers: &[(&str, &str)], end_of_stream: bool) -> Step {
        let runtime = runtime();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_string())
        };
        session::start(
            &runtime,
            method,
            rest,
            &header,
            end_of_stream,
            &ManualClock::at_ns(1_700_000_000_000_000_000),
        )
    }

    fn status(step: &Step) -> Option<u16> {
        match step {
            Step::Reply(reply) => Some(reply.status),
            Step::Call { .. } => None,
        }
    }

    #[test]
    fn a_test_calls_with_the_event_data_from_its_header_in_any_case() {
        let auth = ("Authorization", "Bearer t0ken");
        let step = start(
            "POST",
            "/slack/test",
            &[auth, ("X-Event-Data", r#"{"order": 7}"#)],
            false,
        );
        let Step::Call { request, data, .. } = step else {
            panic!("expected a call, got {step:?}")
        };
        assert_eq!(data, json!({"order": 7}));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["order"], 7);
        assert!(
            request
                .headers
                .iter()
                .any(|(name, _)| name == "x-kong-signature")
        );
        // A body it cannot read: 400; none: the empty event; the log handler makes no call.
        let step = start(
            "POST",
            "/slack/test",
            &[auth, ("Content-Length", "2")],
            false,
        );
        assert_eq!(status(&step), Some(400));
        assert!(matches!(
            start("POST", "/slack/test", &[auth], false),
            Step::Call { .. }
        ));
        assert_eq!(
            status(&start("POST", "/audit/test", &[auth], true)),
            Some(200)
        );
        assert_eq!(
            status(&start("GET", "/audit/ping", &[auth], true)),
            Some(400)
        );
        assert!(matches!(
            start("GET", "/slack/ping", &[auth], true),
            Step::Call { .. }
        ));
        assert_eq!(status(&start("GET", "/status", &[], true)), Some(401));
    }

    #[test]
    fn an_answer_shows_the_receiver_or_why_there_was_none() {
        let shown = session::answered(json!({"a": 1}), Some(201), &[], b"{\"ok\":true}", None);
        assert_eq!(shown.status, 200);
        assert_eq!(shown.body["result"]["status"], 201);
        assert_eq!(shown.body["result"]["body"]["ok"], true);
        let failed = session::answered(json!({}), None, &[], b"", Some("timeout"));
        assert_eq!(failed.status, 502);
        assert!(failed.body.to_string().contains("timeout"));
    }
}
