//! The `event-hooks` command as a user runs it: exit statuses, what it prints, and what it
//! never prints.

// Test code: a failed unwrap is a failed test (clippy.toml allows it only inside #[test] fns).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const CONFIG: &str = r#"{
  "hooks": [
    {"name": "orders-5xx", "source": "traffic", "filter": {"response.status": {"gte": 500}},
     "handler": "webhook", "config": {"url": "http://receiver:9000/hooks", "secret_env": "HOOK_SECRET"}},
    {"name": "deletions", "source": "traffic", "handler": "log", "config": {}}
  ]
}"#;

fn event_hooks(args: &[&str], stdin: &str) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_event-hooks")).args(args),
        stdin,
    )
}

fn run(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn a_valid_file_says_how_many_hooks() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-valid.json");
    std::fs::write(&path, CONFIG).unwrap();
    let output = event_hooks(
        &[
            "validate",
            "--env",
            "HOOK_SECRET=s3cret",
            path.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(stdout(&output), "ok: 2 hooks\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let output = event_hooks(&["validate", "-"], r#"{"hooks": []}"#);
    assert_eq!(stdout(&output), "ok: 0 hooks\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn every_problem_is_printed_with_its_json_path() {
    let config = r#"{"hooks": [{"source": "trafic", "handler": "webhook", "config": {"secret": 12345678}}],
                     "delivery": {"timeout_ms": 0}, "surprise": true}"#;
    let output = event_hooks(&["validate", "-"], config);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "surprise: unknown field; expected one of: host, hooks, delivery, crud, health, rate_limit, publish, admin",
            "hooks[0].source: unknown source \"trafic\"; expected one of: traffic, crud, dao:crud, balancer, rate-limiting-advanced, event_hooks",
            "hooks[0].config.url: missing required field",
            "hooks[0].config.secret: expected a string, found a number",
            "delivery.timeout_ms: must be between 1 and 600000",
        ]
    );
    assert!(
        !text.contains("12345678"),
        "a misplaced secret is never printed"
    );
}

#[test]
fn published_sources_are_validated_like_the_rest() {
    let config = r#"{"publish": {"payments": {"events": {"refund-issued": {"fields": ["order_id"], "unique": ["order_id"]}}}},
                     "hooks": [{"source": "payments", "event": "refund-issued", "handler": "log", "config": {}}]}"#;
    let output = event_hooks(&["validate", "-"], config);
    assert_eq!(stdout(&output), "ok: 1 hook\n");
    assert_eq!(output.status.code(), Some(0));
    let config = r#"{"publish": {"payments": {"events": {"refund-issued": {"unique": ["order_id"]}}}},
                     "hooks": [{"source": "payments", "event": "refund", "handler": "log", "config": {}}]}"#;
    let output = event_hooks(&["validate", "-"], config);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output).lines().collect::<Vec<_>>(),
        [
            "publish.payments.events.refund-issued.unique[0]: not one of the event's fields; `unique` lists some of `fields`",
            "hooks[0].event: unknown event \"refund\" of source payments; expected refund-issued",
        ]
    );
    let output = event_hooks(&["schema"], "");
    let schema: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(schema["properties"]["publish"]["patternProperties"].is_object());
}

#[test]
fn env_variables_come_from_the_flag_never_from_the_shell() {
    // The shell has the variable: a VM would not, so it does not count.
    let output = run(
        Command::new(env!("CARGO_BIN_EXE_event-hooks"))
            .args(["validate", "-"])
            .env("HOOK_SECRET", "from-the-shell"),
        CONFIG,
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "hooks[0].config.secret_env: environment variable HOOK_SECRET is not set (give it to the VM: Envoy's vm_config.environment_variables, Kong's nginx_main_env; Kong 3.4 to 3.6 give filters no environment variables: there, use secret instead)\n"
    );

    let output = event_hooks(&["validate", "--env=HOOK_SECRET=s3cret", "-"], CONFIG);
    assert_eq!(stdout(&output), "ok: 2 hooks\n");
    assert!(!stderr(&output).contains("s3cret"));

    // Empty is as good as unset, as in the filter.
    let output = event_hooks(&["validate", "--env", "HOOK_SECRET=", "-"], CONFIG);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn bad_usage_prints_the_usage_and_exits_2() {
    for args in [
        &[][..],
        &["check", "c.json"],
        &["validate"],
        &["validate", "--env", "HOOK_SECRET", "-"],
        &["validate", "a.json", "b.json"],
        &["schema", "--yaml"],
        &["envoy-access-log-filter"],
        &["envoy-access-log-filter", "--env", "A", "-"],
        &["envoy-access-log-filter", "a.json", "b.json"],
    ] {
        let output = event_hooks(args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains("usage: event-hooks validate"),
            "{args:?}"
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
    let output = event_hooks(&["--help"], "");
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with("usage: event-hooks validate"));
}

#[test]
fn an_unreadable_file_is_named_and_exits_2() {
    let output = event_hooks(&["validate", "no/such/config.json"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("event-hooks: cannot read no/such/config.json: "));
}

#[test]
fn schema_prints_a_draft_4_schema_and_kong_meta_wraps_it() {
    let output = event_hooks(&["schema"], "");
    assert_eq!(output.status.code(), Some(0));
    let schema: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(schema["required"], serde_json::json!(["hooks"]));

    let output = event_hooks(&["schema", "--kong-meta"], "");
    let meta: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(meta, serde_json::json!({ "config_schema": schema }));
}

#[test]
fn the_access_log_filter_is_yaml_to_paste_under_filter() {
    let config = r#"{"hooks": [
      {"name": "orders-5xx", "source": "traffic", "handler": "webhook",
       "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
       "config": {"url": "http://receiver:9000/hooks", "secret_env": "HOOK_SECRET"}},
      {"name": "slow", "source": "traffic", "handler": "log", "config": {},
       "filter": {"latency_ms": {"gt": 1000}, "route": "api"}}
    ]}"#;
    let output = event_hooks(
        &[
            "envoy-access-log-filter",
            "--env",
            "HOOK_SECRET=s3cret",
            "-",
        ],
        config,
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        r#"# event_hooks as an Envoy access logger, the native filter of standard input:
# paste it under the access log entry's `filter:`.
# note: hook slow: route {"eq":"api"} has no native form (the hook tests it)
or_filter:
  filters:
  - and_filter:
      filters:
      - status_code_filter:
          comparison:
            op: GE
            value:
              default_value: 500
      - header_filter:
          header:
            name: ":path"
            string_match:
              prefix: /orders
  - duration_filter:
      comparison:
        op: GE
        value:
          default_value: 1001
"#
    );
    assert!(!stderr(&output).contains("s3cret"));
}

#[test]
fn no_access_log_filter_when_a_hook_needs_every_request() {
    let config = r#"{"hooks": [
      {"name": "5xx", "source": "traffic", "filter": {"response.status": {"gte": 500}}, "handler": "log", "config": {}},
      {"name": "health", "source": "balancer", "handler": "log", "config": {}}
    ]}"#;
    let output = event_hooks(&["envoy-access-log-filter", "-"], config);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "# No access log filter for standard input: every request must reach event_hooks.\n\
         # hook health listens to balancer: only traffic hooks have native conditions\n"
    );
    // A configuration the filter would refuse gets no filter, only its problems.
    let output = event_hooks(&["envoy-access-log-filter", "-"], CONFIG);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output)
            .starts_with("hooks[0].config.secret_env: environment variable HOOK_SECRET is not set")
    );
}
