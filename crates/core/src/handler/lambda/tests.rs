use super::*;
use crate::config;
use crate::event::Event;
use crate::source::Source;
use serde_json::json;
use std::time::Instant;

fn parse(config: Value) -> Result<Lambda, Vec<String>> {
    let problems = Problems::default();
    let lambda = Lambda::parse(&config, "hooks[0].config", &problems);
    if problems.is_empty() {
        Ok(lambda.unwrap())
    } else {
        Err(problems.into_vec().iter().map(|p| p.to_string()).collect())
    }
}

fn lambda(functions: &[&str]) -> Lambda {
    parse(json!({"functions": functions})).unwrap()
}

fn event(data: Value) -> Event {
    Event::new(
        Source::TRAFFIC,
        "request",
        data.as_object().unwrap().clone(),
    )
}

fn traffic() -> Event {
    event(json!({
        "request": {"method": "GET", "path": "/orders/7", "host": "shop",
                    "headers": {"authorization": "Bearer s3cr3t", "x-team": "payments"}},
        "response": {"status": 503, "flags": "UF", "headers": {"content-type": "text/plain"}},
        "latency_ms": 12,
        "route": "orders"
    }))
}

fn run(lambda: &Lambda, event: &Event) -> Vec<Output> {
    lambda.outputs(&mut Bodies::new(event), &Redaction::default())
}

fn lines(outputs: &[Output]) -> Vec<(Level, String)> {
    outputs
        .iter()
        .map(|output| match output {
            Output::Log(level, line) => (*level, line.clone()),
            Output::Call(draft) => panic!("unexpected draft {draft:?}"),
        })
        .collect()
}

fn drafts(outputs: Vec<Output>) -> Vec<Call> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Call(draft) => Some(draft),
            Output::Log(..) => None,
        })
        .collect()
}

/// The warning of a stopped run.
fn stopped(outputs: &[Output]) -> String {
    match outputs.last() {
        Some(Output::Log(Level::Warn, line)) => line.clone(),
        other => panic!("expected a warning last, got {other:?}"),
    }
}

#[test]
fn each_function_gets_the_data_the_previous_one_returned() {
    let lambda = lambda(&[
        r#"data.status = data.response.status; data.seen = [event, source]; data"#,
        r#"log(`${data.status} ${data.seen} ${data.request.headers.authorization}`);
           let next = #{status: data.status + 1}; next"#,
        r#"log(data.status); log(data.response); data"#,
    ]);
    let outputs = run(&lambda, &traffic());
    assert_eq!(
        lines(&outputs),
        vec![
            (
                Level::Info,
                r#"lambda hooks[0].config.functions[1]: 503 ["request", "traffic"] [redacted]"#
                    .to_string()
            ),
            (
                Level::Info,
                "lambda hooks[0].config.functions[2]: 504".to_string()
            ),
            (
                Level::Info,
                "lambda hooks[0].config.functions[2]: ()".to_string()
            ),
        ]
    );
    assert_eq!(lambda.error_count(), 0);
}

/// The example of the docs (docs/src/handlers/lambda.md), as written there.
#[test]
fn the_readme_example() {
    let lambda = parse(json!({"secret": "change-me", "cluster": "receiver", "functions": [
        "if data.response.status < 500 { return; }\n#{status: data.response.status, path: data.request.path, team: data.request.headers[\"x-team\"]}",
        "data.text = `${data.path} answered ${data.status}`;\nhttp(#{url: \"http://receiver:9000/alerts\", body: data});\nlog(\"alert sent for \" + data.path);"
    ]}))
    .unwrap();
    let outputs = run(&lambda, &traffic());
    assert_eq!(outputs.len(), 2);
    let Some(Output::Call(draft)) = outputs.first() else {
        panic!("{outputs:?}")
    };
    assert_eq!(
        std::str::from_utf8(&draft.body).unwrap(),
        r#"{"path":"/orders/7","status":503,"team":"payments","text":"/orders/7 answered 503"}"#
    );
    assert_eq!(draft.destination.cluster, "receiver");
    // A script's value is its last statement's, semicolon or not.
    let ends = self::lambda(&["data;", r#"log("reached"); data.x = 1;"#, r#"log("never")"#]);
    assert_eq!(lines(&run(&ends, &traffic())).len(), 1);
}

#[test]
fn returning_nothing_stops_the_chain_quietly() {
    let lambda = lambda(&[
        r#"if data.response.status < 500 { return; } data"#,
        r#"log("5xx"); ()"#,
        r#"log("never"); data"#,
    ]);
    let ok = event(json!({"response": {"status": 200}}));
    assert!(run(&lambda, &ok).is_empty());
    assert_eq!(lines(&run(&lambda, &traffic())).len(), 1);
    assert_eq!(lambda.error_count(), 0);
}

#[test]
fn a_runtime_error_stops_the_chain_and_is_counted() {
    let lambda = lambda(&[
        "log(\"before\");\nlet x = 1;\n  throw \"boom \" + data.latency_ms;",
        r#"log("never"); data"#,
    ]);
    let outputs = run(&lambda, &traffic());
    assert_eq!(outputs.len(), 2);
    assert_eq!(
        stopped(&outputs),
        "lambda hooks[0].config.functions[0] stopped: thrown: boom 12 at line 3, column 3 (error 1 of this hook; the 1st, 2nd, 4th... and every 10,000th are logged)"
    );
    assert_eq!(lambda.error_count(), 1);
    // Errors are counted every time and logged at 1, 2, 4, 8...
    let logged: Vec<usize> = (2..=9)
        .filter(|_| {
            run(&lambda, &traffic())
                .iter()
                .any(|output| matches!(output, Output::Log(Level::Warn, _)))
        })
        .collect();
    assert_eq!(lambda.error_count(), 9);
    assert_eq!(logged.len(), 3);

    let wrong = self::lambda(&["42"]);
    assert!(stopped(&run(&wrong, &traffic())).contains(
        "stopped: returned a value of type i64; a function returns a map (the next data) or nothing (to stop)"
    ));
    let missing = self::lambda(&["data.nothing.deeper"]);
    assert!(stopped(&run(&missing, &traffic())).contains("at line 1, column"));
    let unknown = self::lambda(&["fn f(x) { x.nope() } f(1)"]);
    assert!(
        stopped(&run(&unknown, &traffic()))
            .contains("function not found: nope (i64) at line 1, column 13 in function f")
    );
}

#[test]
fn syntax_errors_fail_the_configuration_with_their_path_and_position() {
    let config = json!({"hooks": [{"source": "traffic", "handler": "lambda", "config": {
        "functions": ["data", "let secret = \"hunter2\";\nlet x = ;", 7, ""]
    }}]});
    let errors: Vec<String> = config::parse(config.to_string().as_bytes())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec![
            "hooks[0].config.functions[2]: expected a string of Rhai, found a number",
            "hooks[0].config.functions[3]: must not be empty",
        ]
    );
    let config = json!({"hooks": [{"source": "traffic", "handler": "lambda", "config": {
        "functions": ["data", "let secret = \"hunter2\";\nlet x = ;", "eval(\"1\")", "\"hunter2"]
    }}]});
    let errors: Vec<String> = config::parse(config.to_string().as_bytes())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec![
            "hooks[0].config.functions[1]: syntax error at line 2, column 9: unexpected ';'",
            "hooks[0].config.functions[2]: syntax error at line 1, column 1: 'eval' is not available in this sandbox",
            "hooks[0].config.functions[3]: syntax error at line 1, column 1: unterminated string",
        ]
    );
    assert!(!errors.iter().any(|line| line.contains("hunter2")));
}

#[test]
fn configuration_errors_name_their_paths() {
    assert_eq!(
        parse(json!({"function": "x"})).unwrap_err(),
        vec![
            "hooks[0].config.function: unknown field; expected one of: functions, cluster, max_operations, secret, secrets, secret_env, secrets_env, signature, retry",
            "hooks[0].config.functions: missing required field",
        ]
    );
    assert_eq!(
        parse(json!({"functions": [], "cluster": "", "secret": "", "max_operations": 10}))
            .unwrap_err(),
        vec![
            "hooks[0].config.secret: must not be empty; remove it to send unsigned deliveries",
            "hooks[0].config.cluster: must not be empty",
            "hooks[0].config.max_operations: must be between 1000 and 1000000",
            "hooks[0].config.functions: must hold 1 to 16 functions",
        ]
    );
    assert_eq!(
        parse(json!({"functions": "data"})).unwrap_err(),
        vec![
            "hooks[0].config.functions: expected a list of functions (strings of Rhai), found a string"
        ]
    );
    let long = "1;".repeat(MAX_SOURCE_BYTES);
    assert_eq!(
        parse(json!({"functions": [long]})).unwrap_err(),
        vec!["hooks[0].config.functions[0]: is longer than 65536 bytes"]
    );
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(
        parse(json!({"functions": [deep]})).unwrap_err(),
        vec![
            "hooks[0].config.functions[0]: syntax error at line 1, column 16: expressions nested too deeply (at most 32 levels, 16 inside functions)"
        ]
    );
}

#[test]
fn a_loop_that_never_ends_is_stopped_by_the_operation_budget() {
    let lambda = lambda(&["loop { }"]);
    let start = Instant::now();
    let outputs = run(&lambda, &traffic());
    assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
    assert_eq!(
        stopped(&outputs),
        "lambda hooks[0].config.functions[0] stopped: operation budget exceeded (max_operations 100000 per event) at line 1, column 6 (error 1 of this hook; the 1st, 2nd, 4th... and every 10,000th are logged)"
    );
    // The next event gets a fresh budget, and so does every event.
    assert_eq!(run(&lambda, &traffic()).len(), 1);
    assert_eq!(lambda.error_count(), 2);
}

#[test]
fn the_operation_budget_is_shared_by_the_chain() {
    let spend = "let n = 0; while n < 80 { n += 1; } data";
    let config = json!({"functions": [spend, spend, spend], "max_operations": 1000});
    let lambda = parse(config).unwrap();
    let outputs = run(&lambda, &traffic());
    assert!(
        stopped(&outputs).starts_with(
            "lambda hooks[0].config.functions[2] stopped: operation budget exceeded (max_operations 1000 per event)"
        ),
        "{outputs:?}"
    );
    let two = parse(json!({"functions": [spend, spend], "max_operations": 1000})).unwrap();
    assert!(run(&two, &traffic()).is_empty());
}

#[test]
fn deep_recursion_is_stopped() {
    let lambda = lambda(&["fn down(n) { down(n + 1) } down(0)"]);
    let line = stopped(&run(&lambda, &traffic()));
    assert!(
        line.contains("stopped: calls nested too deeply (at most 32 levels)"),
        "{line}"
    );
}

#[test]
fn huge_values_are_stopped() {
    for (script, why) in [
        (
            r#"let s = "x"; loop { s += s; }"#,
            "a string over 262144 bytes",
        ),
        (
            r#"let s = "x"; s.pad(2000000, "y"); s"#,
            "a string over 262144 bytes",
        ),
        (
            "let a = []; loop { a.push(1); }",
            "an array over 256 elements",
        ),
        (
            "let a = [1]; loop { a += a; }",
            "an array over 256 elements",
        ),
        (
            "let a = []; a.pad(1000000, 0); a",
            "an array over 256 elements",
        ),
        (
            "let m = #{}; let i = 0; while i < 1000 { m.set(`k${i}`, i); i += 1; } m",
            "a map over 512 properties",
        ),
        (
            "let a = []; loop { a = [a]; }",
            "an array over 256 elements",
        ),
        (
            "let m = #{}; loop { m = #{m: m}; }",
            "a map over 512 properties",
        ),
        (
            r#"let s = "x"; let a = []; loop { a.push(s); s += s; }"#,
            "a string over 262144 bytes",
        ),
    ] {
        let lambda = parse(json!({"functions": [script], "max_operations": MAX_MAX_OPERATIONS}));
        let line = stopped(&run(&lambda.unwrap(), &traffic()));
        assert!(line.contains(why), "{script}: {line}");
    }
}

/// Rhai's limits bound each value, not their sum, nor map keys, nor a map grown with
/// `m[key] = value` (unchecked by Rhai): the heap budget bounds them all.
#[test]
fn the_heap_budget_bounds_what_value_limits_do_not() {
    let big = r#"let s = "x"; s.pad(200000, "x");"#;
    let variables: String = (0..60)
        .map(|n| format!("let v{n} = s + \"{n}\";\n"))
        .collect();
    let keys: String = (0..60)
        .map(|n| format!("m[s + \"{n}\"] = {n};\n"))
        .collect();
    for script in [
        r#"let k = "k"; k.pad(1000, "k"); let m = #{}; let i = 0; loop { m[`${i}${k}`] = i; i += 1; }"#.to_string(),
        format!("{big}\n{variables}"),
        format!("{big} let m = #{{}};\n{keys}"),
    ] {
        let lambda =
            parse(json!({"functions": [script], "max_operations": MAX_MAX_OPERATIONS}));
        let start = Instant::now();
        let line = stopped(&run(&lambda.unwrap(), &traffic()));
        assert!(
            line.contains("stopped: memory budget exceeded (8 MiB per event)"),
            "{script}: {line}"
        );
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }
}

#[test]
fn at_most_16_calls_per_event() {
    let lambda = lambda(&[
        "for i in 0..10 { log(i) } data",
        r#"for i in 0..10 { http(#{url: "http://r/"}) } data"#,
    ]);
    let outputs = run(&lambda, &traffic());
    assert_eq!(outputs.len(), 17);
    assert_eq!(drafts(outputs.clone()).len(), 6);
    assert!(
        stopped(&outputs).contains(
            "functions[1] stopped: http: more than 16 http and log calls in one event at line 1, column 18"
        ),
        "{outputs:?}"
    );
    // The count starts again with the next event.
    assert_eq!(run(&lambda, &traffic()).len(), 17);
}

#[test]
fn log_lines_are_cleaned_and_bounded() {
    let lambda =
        lambda(&[r#"log("a\nb\u0000c"); let s = "é"; s.pad(5000, "é"); log(s); log(#{x: 1})"#]);
    let lines = lines(&run(&lambda, &traffic()));
    assert_eq!(lines[0].1, "lambda hooks[0].config.functions[0]: a b c");
    assert!(lines[1].1.ends_with("é...[truncated]"));
    assert!(lines[1].1.len() < MAX_LOG_BYTES + 64);
    assert_eq!(
        lines[2].1,
        "lambda hooks[0].config.functions[0]: #{\"x\": 1}"
    );
}

#[test]
fn http_drafts_a_call_signed_with_the_hooks_secret() {
    let lambda = parse(json!({"secret": "hunter2", "cluster": "hooks", "functions": [
        r#"let body = #{status: data.response.status, path: data.request.path, n: (), ok: true, list: [1, "a"]};
           http(#{url: "http://receiver:9000/a?x=1", method: "PUT", body: body,
                  headers: #{"X-Team": data.request.headers["x-team"], "x-n": 7}});
           http(#{url: "https://Other.example/b", cluster: "other", body: "plain", headers: #{"Content-Type": "text/csv"}});
           http(#{url: "http://third/"});"#
    ]}))
    .unwrap();
    let mut made = drafts(run(&lambda, &traffic()));
    assert_eq!(made.len(), 3);
    let first = made.remove(0);
    assert_eq!(first.method, "PUT");
    assert_eq!(first.path, "/a?x=1");
    assert_eq!(first.authority, "receiver:9000");
    assert_eq!(first.destination.cluster, "hooks");
    assert_eq!(first.destination.host_port, "receiver:9000");
    assert_eq!(
        first.headers,
        vec![
            ("x-team".to_string(), "payments".to_string()),
            ("x-n".to_string(), "7".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ]
    );
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        body,
        json!({"status": 503, "path": "/orders/7", "n": null, "ok": true, "list": [1, "a"]})
    );
    let request = first.attempt("id-1", 1_700_000_000, &lambda.signing);
    let mac =
        crate::signing::kong_signature(&crate::signing::Secret::new("hunter2"), &request.body);
    assert!(
        request
            .headers
            .contains(&("x-kong-signature".to_string(), mac))
    );

    let second = made.remove(0);
    assert_eq!(
        (
            second.method.as_str(),
            second.path.as_str(),
            &second.body[..]
        ),
        ("POST", "/b", &b"plain"[..])
    );
    assert_eq!(second.destination.cluster, "other");
    assert!(second.destination.tls);
    assert_eq!(second.destination.host_port, "Other.example:443");
    assert_eq!(
        second.headers,
        vec![("content-type".to_string(), "text/csv".to_string())]
    );

    let third = made.remove(0);
    assert_eq!(third.destination.cluster, "hooks");
    assert!(third.body.is_empty() && third.headers.is_empty());

    // Without a configured cluster, the URL's host is the cluster, as for webhooks.
    let plain = self::lambda(&[r#"http(#{url: "http://Receiver-A:9000/"})"#]);
    let draft = drafts(run(&plain, &traffic())).remove(0);
    assert_eq!(draft.destination.cluster, "Receiver-A");

    // The method is sent uppercase, whatever case the function wrote (as webhook-custom's).
    let lower = self::lambda(&[r#"http(#{url: "http://receiver/", method: "put"})"#]);
    assert_eq!(drafts(run(&lower, &traffic())).remove(0).method, "PUT");
}

#[test]
fn a_bad_http_request_is_a_runtime_error() {
    for (request, why) in [
        ("#{}", "http: url is required"),
        ("#{url: 7}", "http: url must be a string, not i64"),
        (
            r#"#{url: "ftp://x/"}"#,
            "http: url must start with http:// or https://",
        ),
        (
            r#"#{url: "http://u:p@x/"}"#,
            "http: url must not contain credentials",
        ),
        (
            r#"#{url: "http://x/", method: "GE T"}"#,
            "http: method must be an HTTP method",
        ),
        (
            r#"#{url: "http://x/", cluster: ""}"#,
            "http: cluster must not be empty",
        ),
        (
            r#"#{url: "http://x/", urll: 1}"#,
            "http: unknown key 'urll'; expected one of: url, method, headers, body, cluster",
        ),
        (
            r#"#{url: "http://x/", headers: #{"x-a": "1\r\nx-b: 2"}}"#,
            "http: headers: 'x-a' must not contain control characters",
        ),
        (
            r#"#{url: "http://x/", headers: #{"bad name": "1"}}"#,
            "http: headers: 'bad name' is not a valid header name",
        ),
        (
            r#"#{url: "http://x/", headers: #{"Webhook-Id": "1"}}"#,
            "http: headers: 'webhook-id' is set by the handler",
        ),
        (
            r#"#{url: "http://x/", headers: #{"x-kong-signature": "1"}}"#,
            "http: headers: 'x-kong-signature' is set by the handler",
        ),
        (
            r#"#{url: "http://x/", headers: #{"x-a": [1]}}"#,
            "http: headers: 'x-a' must be a string, not array",
        ),
        (
            r#"#{url: "http://x/", headers: "x"}"#,
            "http: headers must be a map, not string",
        ),
        (
            r#"#{url: "http://x/", body: Fn("f")}"#,
            "http: body: a value of type Fn has no JSON form",
        ),
    ] {
        let lambda = lambda(&[&format!("http({request})")]);
        let outputs = run(&lambda, &traffic());
        assert_eq!(outputs.len(), 1, "{request}");
        let line = stopped(&outputs);
        assert!(line.contains(why), "{request}: {line}");
    }
    let line = stopped(&run(&lambda(&[r#"http("http://x/")"#]), &traffic()));
    assert!(line.contains("function not found: http ("), "{line}");
}

/// Scripts that try to break the sandbox: each ends in a value or an error, never a panic
/// (a panic would fail this test), and within the budget.
#[test]
fn nothing_a_script_does_panics() {
    let hostile = [
        "9223372036854775807 + 1",
        "-9223372036854775807 - 2",
        "9223372036854775807 * 2",
        "1 / 0",
        "1 % 0",
        "(-9223372036854775807 - 1) / -1",
        "(-9223372036854775807 - 1) % -1",
        "abs(-9223372036854775807 - 1)",
        "2 ** 64",
        "2 ** -1",
        "1 << 64",
        "1 >> -1",
        "1 << -1",
        r#""abc".sub_string(-5, 100)"#,
        r#""abc".sub_string(2, -100)"#,
        r#""abc"[-9223372036854775807]"#,
        r#""abc"[99]"#,
        r#""é".chars()"#,
        r#""abc".split(-1)"#,
        r#""abc".crop(-9223372036854775807, 9223372036854775807)"#,
        r#""a".pad(9223372036854775807, "b")"#,
        r#""a".pad(-1, "b")"#,
        r#""abc".truncate(-1)"#,
        r#""abc".index_of("b", -9223372036854775807)"#,
        r#""abc".get(-9223372036854775807)"#,
        r#"let s = "abc"; s[-1] = 'x'; s"#,
        r#"let s = "abc"; s[9] = 'x'; s"#,
        "[1, 2][99]",
        "[1, 2][-9223372036854775807]",
        "[1, 2].extract(-9223372036854775807, 9223372036854775807)",
        "[1, 2].splice(9223372036854775807, 9223372036854775807, [3])",
        "[1, 2].drain(-9223372036854775807, 9223372036854775807)",
        "[1, 2].pad(9223372036854775807, 0)",
        "[1, 2].truncate(-1)",
        "[1, 2].chop(-1)",
        "[1, 2].remove(-9223372036854775807)",
        "[1, 2].insert(9223372036854775807, 0)",
        "[3, 1, 2].sort()",
        "[3, (), \"a\", #{}].sort()",
        "[1, 2].split(-9223372036854775807)",
        "let a = [1]; a.push(a); a.push(a); a",
        "range(0, 9223372036854775807).len()",
        "for x in range(0, 9223372036854775807, 9223372036854775807) { }",
        "for x in range(9223372036854775807, 0, -1) { }",
        "for x in 0..9223372036854775807 { }",
        r#"parse_int("zzz")"#,
        r#"parse_int("99999999999999999999")"#,
        r#"parse_int("10", 99)"#,
        r#"to_int("x")"#,
        "to_char(-1)",
        "to_char(1114112)",
        r#"to_hex(-1) + to_binary(-9223372036854775807 - 1) + to_octal(-1)"#,
        r#"Fn("")"#,
        r#"Fn("nope").call()"#,
        r#"call(Fn("log"), 1)"#,
        "type_of(data) + data.to_string()",
        "data.keys().len() + data.values().len()",
        "data.remove(\"request\"); data.request.x",
        "let m = #{}; m.a.b.c = 1",
        "#{a: 1} + #{b: 2}",
        "let a = []; a[0] = 1",
        "let x; x.y",
        "data[()]",
        "data[1]",
        "this",
        "fn f() { this.x = 1 } f()",
        "return",
        "exit(1)",
        "exit()",
        "break",
        "throw",
        "throw #{}",
        "try { throw 1 } catch (e) { e }",
        "try { loop {} } catch (e) { e }",
        "switch 9223372036854775807 { 0..9223372036854775807 => 1, _ => 2 }",
        "let x = 1; is_def_var(\"x\") && is_def_fn(\"f\", 1)",
        "'\\u{10FFFF}' + \"\\u{10FFFF}\"",
        "`${`${`${1}`}`}`",
        "\"x\".to_blob()",
        "blob(10)",
        "timestamp()",
        "print(1)",
        "debug(1)",
        "sleep(1)",
        "import \"x\" as y;",
        "\"a\" in \"abc\"",
        "1 in [1]",
        "1 in #{}",
        "\"x\" in data",
        "data.request.headers.values().map(|v| v.len()).reduce(|a, b| a + b)",
        "[1, 2].map(|x| x.nope())",
        "[1, 2].filter(\"nope\")",
        "[1, 2].reduce(|a, b| a + b, 0)",
        "[1, 2].sort(|a, b| a)",
        "[1, 2].sort(|a, b| 1 / 0)",
        "let f = |x| x; f.call(f)",
        "fn f(x) { x.call(x) } f(Fn(\"f\"))",
        "fn f() { f() } f()",
        "fn f(a) { [a, a] } let x = 1; loop { x = f(x) }",
        "let x = #{}; x.to_json()",
        "#{a: [1, #{b: ()}]}.to_json()",
        "parse_json(\"{\")",
        "parse_json(\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\")",
        "event = 1",
        "source.x = 1",
        "let data = 1; data",
        "const x = 1; x = 2",
        "let s = \"\"; for i in 0..100000 { s += \"aaaaaaaaaa\" }",
        "let a = []; for i in 0..3000 { a = [a, a] }",
        "let a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]; a == a",
        "let a = []; loop { a = [a]; } ",
        r#"http(#{url: "http://x/", body: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})"#,
    ];
    for script in hostile {
        let lambda = match parse(json!({"functions": [script]})) {
            Ok(lambda) => lambda,
            // A script refused at load is fine too: it never runs.
            Err(_) => continue,
        };
        let start = Instant::now();
        let _ = run(&lambda, &traffic());
        assert!(
            start.elapsed().as_secs() < 5,
            "{script}: {:?}",
            start.elapsed()
        );
    }
}

/// The worst a script can do to the stack: the deepest calls, each in the deepest
/// expression; and values nested as deeply as the size limits allow (about 750 levels),
/// copied, compared, written, converted, thrown and dropped. Natively (`--release`) this
/// takes under 192 KiB; a wasm32 module has 1 MiB (the end-to-end test runs it in Envoy).
#[test]
fn the_worst_case_fits_in_a_small_stack() {
    // The recursive call inside the most parentheses a function body allows.
    let nested_call = (0..MAX_FUNCTION_EXPR_DEPTH)
        .rev()
        .map(|depth| {
            format!(
                "fn f(n) {{ {}if n > 0 {{ f(n - 1) }} else {{ 0 }}{} }} f(1000)",
                "(".repeat(depth),
                ")".repeat(depth)
            )
        })
        .find(|script| parse(json!({"functions": [script]})).is_ok())
        .unwrap();
    let mut scripts = vec![
        nested_call,
        "let a = []; loop { a = [a]; }".to_string(),
        "let m = #{}; loop { m = #{m: m}; }".to_string(),
    ];
    for then in [
        "let y = x; y.len()",
        "x == x",
        "x != [m, a]",
        "log(x)",
        "`${x}`",
        "x.to_string() + x.to_debug()",
        "x.contains(a) || m in x || x.index_of(m) > 0",
        "m.to_json()",
        r#"http(#{url: "http://x/", body: x})"#,
        "throw x",
        "switch x { _ => 1 }",
        "x.dedup(); x.sort()",
        "x[0].m.m = 1",
        "x = ()",
    ] {
        scripts.push(format!("{DEEP_VALUES} let x = [m, a]; {then}"));
    }
    let stack = if cfg!(debug_assertions) { 8192 } else { 256 } * 1024;
    let handle = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            for script in &scripts {
                let lambda =
                    parse(json!({"functions": [script], "max_operations": MAX_MAX_OPERATIONS}));
                let outputs = run(&lambda.unwrap(), &traffic());
                // The deep values were built whole: no limit stopped them early.
                let early = |line: &String| line.contains(" over ") || line.contains("budget");
                assert!(
                    !script.contains("while")
                        || !outputs
                            .iter()
                            .any(|output| matches!(output, Output::Log(_, line) if early(line))),
                    "{script}: {outputs:?}"
                );
            }
        })
        .unwrap();
    handle.join().unwrap();
}

/// Long chains of operators, properties, indexes and calls nest the syntax tree as deeply
/// as they are long: the expression depth limit refuses them when the configuration loads,
/// before anything recursive (parsing on, evaluating, dropping) can take the stack.
#[test]
fn long_chains_are_refused_at_load_within_a_small_stack() {
    let n = 5_000;
    let chains = [
        format!("1{}", "+1".repeat(n)),
        format!("true{}", "&&true".repeat(n)),
        format!("data{}", ".a".repeat(n)),
        format!("data{}", "[0]".repeat(n)),
        format!("{}true", "!".repeat(n)),
        format!("data{}", ".len()".repeat(n)),
        format!("1{}", " ?? 1".repeat(n)),
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        format!("{}1{}", "#{a:".repeat(n), "}".repeat(n)),
        format!("{}{}", "{".repeat(n), "}".repeat(n)),
        format!("{}1{}", "if true { ".repeat(n), " }".repeat(n)),
    ];
    let stack = if cfg!(debug_assertions) { 8192 } else { 256 } * 1024;
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            for chain in &chains {
                let errors =
                    parse(json!({"functions": [format!("let x = {chain}; data")]})).unwrap_err();
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert!(errors[0].contains("syntax error"), "{errors:?}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// An array and a map nested as deeply as the size limits allow.
const DEEP_VALUES: &str = "let a = []; let i = 0; while i < 250 { a = [a]; i += 1; }
    let m = #{}; i = 0; while i < 500 { m = #{m: m}; i += 1; }";

#[test]
fn a_handler_compares_by_its_sources_and_settings() {
    let a = lambda(&["data"]);
    assert_eq!(a, lambda(&["data"]));
    assert_eq!(a, a.clone());
    assert_ne!(a, lambda(&["data;"]));
    assert_ne!(
        a,
        parse(json!({"functions": ["data"], "max_operations": 5000})).unwrap()
    );
    let debug = format!(
        "{:?}",
        parse(json!({"functions": ["\"hunter2\""], "secret": "s3"})).unwrap()
    );
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3\""),
        "{debug}"
    );
}

#[test]
fn routing_runs_the_chain_and_queues_its_calls() {
    let config = json!({"hooks": [{"name": "l", "source": "traffic", "handler": "lambda",
        "config": {"secret": "k", "functions": [r#"http(#{url: "http://r/x", body: data.response})"#]}}]});
    let config = config::parse(config.to_string().as_bytes()).unwrap();
    let hook = config.hooks.get(0).unwrap();
    assert!(hook.handler.as_any().downcast_ref::<Lambda>().is_some());
    assert!(hook.handler.signing().is_set());
    assert_eq!(hook.handler.note("l"), None);
    let actions = config.hooks.route(
        &traffic(),
        0,
        &crate::shared::Memory::default(),
        &mut crate::id::IdGen::new(1),
    );
    let delivered = actions
        .iter()
        .filter(|action| matches!(action, crate::hooks::Action::Deliver(_)))
        .count();
    assert_eq!(delivered, 1);
}
