use super::*;
use crate::delivery::Attempt;
use crate::event::Event;
use crate::source::Source;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

const NOTE: &str = "say \"hi\"\\ to C:\\temp\nand\r\nbye\t✓";

fn parse(config: Value) -> Result<WebhookCustom, Vec<String>> {
    let problems = Problems::default();
    let handler = WebhookCustom::parse(&config, "config", &problems);
    if problems.is_empty() {
        Ok(handler.unwrap())
    } else {
        Err(problems
            .into_vec()
            .iter()
            .map(ToString::to_string)
            .collect())
    }
}

fn event() -> Event {
    let data = json!({
        "request": {
            "method": "POST",
            "path": "/orders/42",
            "headers": {"x-note": NOTE, "authorization": "Bearer s3cr3t"},
        },
        "response": {"status": 503},
        "upstream": {"cluster": "shop"},
    });
    Event::new(
        Source::TRAFFIC,
        "request",
        data.as_object().unwrap().clone(),
    )
}

fn draft(config: Value) -> Call {
    let handler = parse(config).unwrap();
    let event = event();
    match handler.output(&mut Bodies::new(&event), &Redaction::default()) {
        Output::Call(draft) => draft,
        Output::Log(_, line) => panic!("no draft: {line}"),
    }
}

fn request(config: Value) -> Attempt {
    let handler = parse(config.clone()).unwrap();
    draft(config).attempt("id-1", 1_700_000_000, &handler.signing)
}

fn header<'r>(request: &'r Attempt, name: &str) -> Option<&'r str> {
    let mut values = request.headers.iter().filter(|(n, _)| n == name);
    let value = values.next().map(|(_, v)| v.as_str());
    assert!(values.next().is_none(), "{name} sent twice");
    value
}

fn text(body: &[u8]) -> &str {
    std::str::from_utf8(body).unwrap()
}

#[test]
fn a_slack_style_json_body_carries_any_text_intact() {
    let request = request(json!({
        "url": "https://hooks.slack.com/services/T0/B0?x=1",
        "method": "post",
        "headers": {"Content-Type": "application/json"},
        "body": r#"{"text": "{{ request.headers.x-note }} on {{ request.path }}", "status": {{ response.status }}}"#,
        "secret": "hunter2"
    }));
    assert_eq!(header(&request, ":method"), Some("POST"));
    assert_eq!(header(&request, ":path"), Some("/services/T0/B0?x=1"));
    assert_eq!(header(&request, ":authority"), Some("hooks.slack.com"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(header(&request, "user-agent"), Some(crate::USER_AGENT));
    assert_eq!(header(&request, "webhook-id"), Some("id-1"));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"text": format!("{NOTE} on /orders/42"), "status": 503})
    );
    // Signed over the exact bytes sent (checked with an independent HMAC).
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"hunter2").unwrap();
    mac.update(&request.body);
    let expected = format!("sha1={}", signing::hex(&mac.finalize().into_bytes()));
    assert_eq!(
        header(&request, "x-kong-signature"),
        Some(expected.as_str())
    );
}

#[test]
fn the_body_is_escaped_by_its_content_type() {
    let body = |content_type: Option<&str>, template: &str| {
        let mut config = json!({"url": "http://r/", "method": "POST", "body": template});
        if let Some(content_type) = content_type {
            config["headers"] = json!({"content-type": content_type});
        }
        text(&draft(config).body).to_string()
    };
    let template = "note={{ request.headers.x-note }}&raw={* response.status *}";
    assert_eq!(
        body(Some("application/x-www-form-urlencoded"), template),
        "note=say%20%22hi%22%5C%20to%20C%3A%5Ctemp%0Aand%0D%0Abye%09%E2%9C%93&raw=503"
    );
    assert_eq!(
        body(
            Some("application/vnd.api+json; charset=utf-8"),
            "\"{{ request.headers.x-note }}\""
        ),
        serde_json::to_string(NOTE).unwrap()
    );
    let raw = format!("note={NOTE}&raw=503");
    assert_eq!(body(Some("text/plain"), template), raw);
    assert_eq!(body(None, template), raw);
    // Templates see the event as the hook does: redacted, with source and event.
    assert_eq!(
        body(
            None,
            "{{ request.headers.authorization }} {{ source }}/{{ event }}"
        ),
        "[redacted] traffic/request"
    );
}

#[test]
fn kong_defaults_body_and_payload_are_templates_headers_are_not() {
    let draft = draft(json!({
        "url": "http://r/",
        "method": "POST",
        "headers": {"x-literal": "{{ request.path }}"},
        "body": "{{ request.path }}"
    }));
    assert_eq!(text(&draft.body), "/orders/42");
    assert_eq!(
        draft.headers,
        vec![("x-literal".to_string(), "{{ request.path }}".to_string())]
    );
    let payload = request(json!({
        "url": "http://r/", "method": "GET", "payload": {"p": "{{ request.path }}"}
    }));
    assert_eq!(header(&payload, ":path"), Some("/?p=%2Forders%2F42"));
}

#[test]
fn formats_switch_templates_on_and_off() {
    let draft = draft(json!({
        "url": "http://r/",
        "method": "POST",
        "headers": {"X-Path": "at {{ request.path }}", "X-Note": "{* request.headers.x-note *}"},
        "headers_format": true,
        "body": "{{ request.path }} {% not parsed %}",
        "body_format": false
    }));
    assert_eq!(
        draft.headers,
        vec![
            // CR, LF and other control characters are stripped, even from raw values.
            (
                "x-note".to_string(),
                "say \"hi\"\\ to C:\\tempandbye\t✓".to_string()
            ),
            ("x-path".to_string(), "at /orders/42".to_string()),
        ]
    );
    assert_eq!(text(&draft.body), "{{ request.path }} {% not parsed %}");
    let literal = request(json!({
        "url": "http://r/", "method": "GET",
        "payload": {"p": "{{ request.path }}"}, "payload_format": false
    }));
    assert_eq!(
        header(&literal, ":path"),
        Some("/?p=%7B%7B%20request.path%20%7D%7D")
    );
}

fn payload(content_type: Option<&str>) -> Attempt {
    let mut config = json!({
        "url": "http://r/hooks",
        "method": "PUT",
        "payload": {"text": "{{ request.headers.x-note }}", "status": "{{ response.status }}", "a&b=c": "x y"},
        "secret": "hunter2"
    });
    if let Some(content_type) = content_type {
        config["headers"] = json!({"Content-Type": content_type});
    }
    request(config)
}

#[test]
fn a_payload_is_encoded_as_json_by_content_type() {
    let request = payload(Some("application/json"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(
        text(&request.body),
        format!(
            r#"{{"a&b=c":"x y","status":"503","text":{}}}"#,
            serde_json::to_string(NOTE).unwrap()
        )
    );
    assert!(header(&request, "x-kong-signature").is_some());
}

#[test]
fn a_payload_is_encoded_as_a_form_by_content_type() {
    let request = payload(Some("application/x-www-form-urlencoded"));
    assert_eq!(
        text(&request.body),
        "a%26b%3Dc=x%20y&status=503&text=say%20%22hi%22%5C%20to%20C%3A%5Ctemp%0Aand%0D%0Abye%09%E2%9C%93"
    );
}

#[test]
fn a_payload_is_multipart_by_default_with_a_deterministic_boundary() {
    let request = payload(None);
    let content_type = header(&request, "content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap();
    assert!(boundary.starts_with("event-hooks-") && boundary.len() == 12 + 24);
    let expected = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"a&b=c\"\r\n\r\nx y\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"status\"\r\n\r\n503\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n{NOTE}\r\n\
         --{boundary}--\r\n"
    );
    assert_eq!(text(&request.body), expected);
    // The same event gives the same bytes; other values another boundary.
    assert_eq!(payload(None).body, request.body);
    let values = [("k", "v".to_string())];
    let (_, other) = multipart(&values).unwrap();
    assert_ne!(other, boundary);
    // A configured multipart content-type keeps its parameters and gets the boundary.
    let configured = payload(Some("Multipart/Form-Data; charset=utf-8"));
    assert_eq!(
        header(&configured, "content-type"),
        Some(format!("Multipart/Form-Data; charset=utf-8; boundary={boundary}").as_str())
    );
    assert_eq!(configured.body, request.body);
}

#[test]
fn a_multipart_boundary_never_occurs_in_the_parts() {
    let values = [("k", "v --b-- v".to_string())];
    let candidates = ["b", "b--", "c"].map(String::from);
    assert_eq!(
        pick_boundary(&values, candidates.clone()),
        Some("c".to_string())
    );
    assert_eq!(pick_boundary(&values, candidates.into_iter().take(2)), None);
    let (body, chosen) = multipart(&values).unwrap();
    assert!(!values[0].1.contains(&chosen));
    assert!(text(&body).starts_with(&format!("--{chosen}\r\n")));
    assert_eq!(multipart(&[]).unwrap().0, b"");
}

#[test]
fn get_and_head_send_the_payload_as_the_query_and_no_body() {
    for (url, path) in [
        ("http://r/hooks", "/hooks?a%26b%3Dc=x%20y&n=%2Forders%2F42"),
        (
            "http://r/hooks?k=1",
            "/hooks?k=1&a%26b%3Dc=x%20y&n=%2Forders%2F42",
        ),
        ("http://r/hooks?", "/hooks?a%26b%3Dc=x%20y&n=%2Forders%2F42"),
        (
            "http://r/hooks?k=1&",
            "/hooks?k=1&a%26b%3Dc=x%20y&n=%2Forders%2F42",
        ),
        ("http://r", "/?a%26b%3Dc=x%20y&n=%2Forders%2F42"),
    ] {
        for method in ["GET", "head"] {
            let config = json!({
                "url": url, "method": method, "secret": "hunter2",
                "headers": {"content-type": "application/json"},
                "payload": {"n": "{{ request.path }}", "a&b=c": "x y"}
            });
            let request = request(config);
            assert_eq!(header(&request, ":path"), Some(path), "{url}");
            assert!(request.body.is_empty());
            assert_eq!(
                header(&request, "x-kong-signature"),
                None,
                "no body, no signature"
            );
        }
    }
    let empty = request(json!({"url": "http://r/h?k=1", "method": "GET", "payload": {}}));
    assert_eq!(header(&empty, ":path"), Some("/h?k=1"));
}

#[test]
fn a_secret_with_nothing_to_sign_gets_a_note() {
    let get = parse(json!({"url": "https://r/", "cluster": "c", "method": "GET",
        "payload": {"a": "b"}, "secret": "hunter2"}))
    .unwrap();
    let note = get.note("pings").unwrap();
    assert!(note.starts_with("hook pings: TLS to r is the host's: on Envoy cluster c needs"));
    assert!(note.ends_with(
        "hook pings: its GET calls have no body, so they are sent unsigned (the signature covers the body only, as in Kong)"
    ));
    assert!(!note.contains("hunter2"));
    let post = parse(json!({"url": "http://r/", "method": "POST", "secret": "s"})).unwrap();
    assert!(
        post.note("p")
            .unwrap()
            .contains("its POST calls have no body")
    );
    let signed =
        parse(json!({"url": "http://r/", "method": "GET", "body": "x", "secret": "s"})).unwrap();
    assert!(signed.note("s").is_none());
    assert!(signed.signing.is_set());
}

#[test]
fn neither_body_nor_payload_sends_an_empty_call() {
    let request = request(json!({"url": "http://r/ping", "method": "delete"}));
    assert_eq!(header(&request, ":method"), Some("DELETE"));
    assert_eq!(header(&request, "content-type"), None);
    assert!(request.body.is_empty());
}

#[test]
fn a_call_that_renders_too_much_is_logged_not_sent() {
    let handler = parse(json!({
        "url": "http://r/", "method": "POST",
        "body": "{{ request.headers }}".repeat(20_000)
    }))
    .unwrap();
    let event = event();
    match handler.output(&mut Bodies::new(&event), &Redaction::default()) {
        Output::Log(Level::Warn, line) => assert_eq!(
            line,
            "config: the call for an event renders more than 1048576 bytes; it was not sent"
        ),
        Output::Log(level, line) => panic!("expected a warning, got {level:?} {line}"),
        Output::Call(draft) => panic!("expected a warning, got {} bytes", draft.body.len()),
    }
}

#[test]
fn configuration_errors_name_their_paths_never_their_values() {
    let errors = parse(json!({
        "url": "http://r/",
        "method": "PO ST",
        "headers": {"X-Note": "{{ unclosed", "Host": "h", "User-Agent": "u", "x-ok": "a\nb"},
        "headers_format": true,
        "body": "{\"t\": \"{{ hunter2 \"}",
        "body_format": "yes",
        "retries": 1
    }))
    .unwrap_err();
    assert_eq!(
        errors,
        vec![
            "config.retries: unknown field; expected one of: url, method, headers, headers_format, body, body_format, payload, payload_format, ssl_verify, cluster, secret, secrets, secret_env, secrets_env, signature, retry",
            "config.method: must be an HTTP method such as GET or POST",
            "config.body_format: expected true or false, found a string",
            "config.headers.Host: is set by the handler and cannot be configured",
            "config.headers.User-Agent: is set by the handler and cannot be configured",
            "config.headers.x-ok: must not contain control characters such as CR or LF",
            "config.headers.X-Note: unclosed {{ at byte 0",
            "config.body: unclosed {{ at byte 7",
        ]
    );
    assert!(
        !errors
            .iter()
            .any(|e| e.contains("hunter2") || e.contains("PO ST"))
    );
    assert_eq!(
        parse(json!({"payload": {"p": "{% lua %}", "q\"": "x", "": "y"}})).unwrap_err(),
        vec![
            "config.url: missing required field",
            "config.method: missing required field",
            "config.payload.: a payload name must not be empty or hold control characters or \"",
            "config.payload.q\": a payload name must not be empty or hold control characters or \"",
            "config.payload.p: {% at byte 0: Lua code cannot run in this filter; insert fields with {{ field.path }} or {* field.path *} (write \\{% for the text)",
        ]
    );
    assert_eq!(
        parse(json!({"url": "http://r/", "method": "connect"})).unwrap_err(),
        vec!["config.method: CONNECT opens a tunnel; it cannot carry a webhook"]
    );
}

#[test]
fn body_and_payload_exclude_each_other() {
    assert_eq!(
        parse(json!({"url": "http://r/", "method": "POST", "body": "", "payload": {}}))
            .unwrap_err(),
        vec![
            "config.payload: set either body or payload, not both (Kong sends the body and ignores the payload, except with GET)"
        ]
    );
}

#[test]
fn the_content_type_is_configurable_but_fixed() {
    for (headers, extra, expected) in [
        (
            json!({"content-type": "application/{{ source }}"}),
            json!({"headers_format": true, "body": "x"}),
            "config.headers.content-type: must not be a template: it decides how the body is encoded when the configuration loads",
        ),
        (
            json!({"Content-Type": "application/json", "content-type": "text/plain"}),
            json!({"body": "x"}),
            "config.headers.content-type: is configured twice",
        ),
        (
            json!({"content-type": "multipart/form-data; boundary=x"}),
            json!({"payload": {"a": "b"}}),
            "config.headers.content-type: must not set a boundary: the handler chooses one for each call",
        ),
        (
            json!({"content-type": "text/plain"}),
            json!({"payload": {"a": "b"}}),
            "config.payload: is encoded by the content-type header as application/json, application/x-www-form-urlencoded or multipart/form-data (the default); for another content-type, write a body",
        ),
    ] {
        let mut config = json!({"url": "http://r/", "method": "POST", "headers": headers});
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        assert_eq!(parse(config).unwrap_err(), vec![expected]);
    }
    // With a body, any content-type goes, boundary included; a literal template is fine.
    let draft = draft(
        json!({"url": "http://r/", "method": "POST", "headers_format": true,
        "headers": {"content-type": "multipart/form-data; boundary=b{# fixed #}"}, "body": "--b--\r\n"}),
    );
    assert_eq!(
        draft.headers,
        vec![(
            "content-type".to_string(),
            "multipart/form-data; boundary=b".to_string()
        )]
    );
}

#[test]
fn the_webhook_handler_still_refuses_a_content_type() {
    let problems = Problems::default();
    let config = json!({"url": "http://r/", "headers": {"content-type": "text/plain"}});
    super::super::webhook::Webhook::parse(&config, "config", &problems);
    assert_eq!(
        problems.into_vec()[0].to_string(),
        "config.headers.content-type: is set by the handler and cannot be configured"
    );
}

#[test]
fn hooks_use_it_by_name_and_template_errors_carry_the_hook_path() {
    let config = json!({"hooks": [
        {"source": "traffic", "handler": "webhook-custom",
         "config": {"url": "http://r/", "method": "POST", "body": "{\"text\": \"{{ request.path"}}
    ]});
    let problems = crate::config::parse(config.to_string().as_bytes()).unwrap_err();
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        vec!["hooks[0].config.body: unclosed {{ at byte 10"]
    );
    let config = json!({"hooks": [
        {"name": "slack", "source": "traffic", "handler": "webhook-custom",
         "config": {"url": "http://r/", "method": "POST", "body": "{{ request.path }}"}}
    ]});
    let parsed = crate::config::parse(config.to_string().as_bytes()).unwrap();
    let hook = parsed.hooks.get(0).unwrap();
    let event = event();
    let outputs = hook
        .handler
        .prepare(&mut Bodies::new(&event), &hook.redaction);
    let [Output::Call(draft)] = outputs.as_slice() else {
        panic!("expected one draft, got {outputs:?}")
    };
    assert_eq!(text(&draft.body), "/orders/42");
}
