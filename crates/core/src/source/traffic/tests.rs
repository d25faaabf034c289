use super::*;
use crate::event::Fields;
use serde_json::json;

pub(crate) fn headers(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A request as Envoy gives it, every property read.
pub(crate) fn envoy_capture() -> Capture {
    Capture {
        request_headers: headers(&[
            (":method", "POST"),
            (":path", "/orders/42?expand=items"),
            (":authority", "shop.example.com"),
            (":scheme", "http"),
            ("x-request-id", "header-id"),
            ("authorization", "Bearer t"),
            ("accept", "a"),
            ("Accept", "b"),
        ]),
        response_headers: headers(&[(":status", "503"), ("content-type", "text/plain")]),
        seen_ns: Some(1_700_000_000_100_000_000),
        properties: Properties {
            request_id: Some("prop-id".into()),
            status: Some(503),
            flags: Some(0x20),
            code_details: Some("upstream_reset_before_response_started{connection_failure}".into()),
            upstream_address: Some("127.0.0.1:9999".into()),
            cluster: Some("orders".into()),
            route: Some("orders_route".into()),
            duration_ns: Some(12_345_678),
            start_ns: Some(1_700_000_000_000_000_000),
            source_address: Some("10.1.2.3:55000".into()),
            ..Properties::default()
        },
        ..Capture::default()
    }
}

#[test]
fn builds_every_field_of_the_contract() {
    let event = event(&envoy_capture(), 1_700_000_001_000_000_000);
    assert_eq!(event.source, Source::TRAFFIC);
    assert_eq!(event.name, "request");
    assert_eq!(
        event.data,
        json!({
            "request": {
                "method": "POST", "path": "/orders/42", "query": "expand=items",
                "host": "shop.example.com", "scheme": "http", "id": "prop-id",
                "headers": {"x-request-id": "header-id", "authorization": "Bearer t", "accept": "a, b"}
            },
            "response": {
                "status": 503, "flags": "UF",
                "code_details": "upstream_reset_before_response_started{connection_failure}",
                "headers": {"content-type": "text/plain"}
            },
            "upstream": {"address": "127.0.0.1:9999", "cluster": "orders"},
            "route": "orders_route",
            "latency_ms": 12,
            "client": {"ip": "10.1.2.3"},
            "started_at": "2023-11-14T22:13:20.000Z"
        })
    );
    for field in FIELDS {
        let path = crate::event::split_path(field);
        assert!(
            crate::event::lookup(&event.data, &path).is_some(),
            "{field}"
        );
    }
}

/// Every path a filter may name, as the view reads it and as the built event has it.
#[test]
fn the_view_reads_every_field_as_the_event_has_it() {
    let long = "é".repeat(3000);
    let mut many: Vec<(String, String)> = (0..150)
        .map(|n| (format!("x-{n}"), format!("v{n}")))
        .collect();
    many.push(("x-149".into(), "again".into()));
    let mut captures = vec![
        envoy_capture(),
        Capture::default(),
        Capture {
            properties: Properties {
                method: Some("GET".into()),
                path: Some("/x?".into()),
                host: Some(String::new()),
                status: Some(0),
                flags: Some(u64::MAX),
                request_id: Some(String::new()),
                source_address: Some("[::1]:80".into()),
                start_ns: Some(0),
                ..Properties::default()
            },
            seen_ns: Some(7_000_000),
            ..Capture::default()
        },
        Capture {
            request_headers: headers(&[
                (":method", ""),
                (":path", &format!("/{long}?{long}")),
                ("X-Team", "a"),
                ("x-team", "b"),
                ("x-long", &long),
                ("cookie", "c=1"),
                ("x-request-id", "from-header"),
            ]),
            response_headers: headers(&[(":status", "abc"), ("set-cookie", "s")]),
            properties: Properties {
                method: Some("PUT".into()),
                route: Some(long.clone()),
                ..Properties::default()
            },
            ..Capture::default()
        },
        Capture {
            request_headers: Some(many),
            response_headers: headers(&[(":status", "404")]),
            ..Capture::default()
        },
    ];
    captures.push(Capture {
        request_headers: Some(Vec::new()),
        ..captures[0].clone()
    });
    let mut paths: Vec<String> = FIELDS.iter().map(|field| field.to_string()).collect();
    for side in ["request", "response"] {
        for name in [
            "authorization",
            "cookie",
            "set-cookie",
            "accept",
            "x-team",
            "X-Team",
            "x-long",
            "x-0",
            "x-99",
            "x-100",
            "x-149",
            "content-type",
            ":path",
            "missing",
        ] {
            paths.push(format!("{side}.headers.{name}"));
        }
    }
    paths.extend(
        [
            "request",
            "response",
            "upstream",
            "client",
            "request.headers.x-team.0",
            "request.method.x",
            "latency_ms.x",
            "nothing",
            "response.nothing",
            "a.b.c.d",
        ]
        .map(str::to_string),
    );
    let redactions = [
        Redaction::default(),
        Redaction::none(),
        Redaction::headers(["x-team".to_string()]),
    ];
    for (at, capture) in captures.iter().enumerate() {
        let built = event(capture, 9_000_000_000);
        let view = View::new(capture, 9_000_000_000);
        for path in &paths {
            let path = crate::event::split_path(path);
            for redaction in &redactions {
                let expected = built.lookup(&path, redaction).map(|v| v.into_owned());
                let seen = view.field(&path, redaction).map(Field::into_value);
                assert_eq!(seen, expected, "capture {at}, {path:?}, {redaction:?}");
            }
        }
    }
    let empty: [String; 0] = [];
    assert_eq!(
        view_of(&captures[0])
            .field(&empty, &Redaction::none())
            .map(Field::into_value),
        Some(event(&captures[0], 9_000_000_000).data)
    );
}

fn view_of(capture: &Capture) -> View<'_> {
    View::new(capture, 9_000_000_000)
}

#[test]
fn header_names_in_any_case_are_found() {
    // ngx_wasm_module keeps the client's case; the adapter lowercases, and lookups do not
    // depend on it either.
    let capture = Capture {
        request_headers: Some(vec![
            (":Path".to_string(), "/orders?id=7".to_string()),
            (":method".to_string(), "GET".to_string()),
            ("X-Request-Id".to_string(), "req-7".to_string()),
            ("X-Tenant".to_string(), "acme".to_string()),
        ]),
        ..Capture::default()
    };
    assert_eq!(capture.path(), Some("/orders?id=7"));
    let view = View::new(&capture, 0);
    let none = Redaction::default();
    let text = |path: &[&str]| match view.field(path, &none) {
        Some(Field::Text(text)) => Some(text.into_owned()),
        _ => None,
    };
    assert_eq!(text(&["request", "id"]).as_deref(), Some("req-7"));
    assert_eq!(text(&["request", "path"]).as_deref(), Some("/orders"));
    assert_eq!(
        text(&["request", "headers", "x-tenant"]).as_deref(),
        Some("acme")
    );
    let data = event(&capture, 0).data;
    assert_eq!(data["request"]["headers"]["x-tenant"], "acme");
    assert_eq!(data["request"]["id"], "req-7");
}

#[test]
fn absent_host_fields_stay_absent() {
    let event = event(&Capture::default(), 5);
    assert_eq!(event.data, json!({}));
}

#[test]
fn properties_fill_in_when_headers_were_never_seen() {
    // A request answered before this filter's header callback (an earlier filter's local
    // reply): only on_log ran.
    let capture = Capture {
        properties: Properties {
            method: Some("GET".into()),
            path: Some("/x".into()),
            status: Some(429),
            ..Properties::default()
        },
        ..Capture::default()
    };
    assert_eq!(
        event(&capture, 0).data,
        json!({"request": {"method": "GET", "path": "/x"}, "response": {"status": 429}})
    );
}

#[test]
fn status_and_latency_fall_back_to_what_the_filter_saw() {
    let capture = Capture {
        response_headers: headers(&[(":status", "404")]),
        seen_ns: Some(1_000_000_000),
        ..Capture::default()
    };
    let data = event(&capture, 1_250_000_000).data;
    assert_eq!(data["response"]["status"], 404);
    assert_eq!(data["latency_ms"], 250);
    assert_eq!(data["started_at"], "1970-01-01T00:00:01.000Z");
}

#[test]
fn every_u64_time_formats() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709Z");
}

#[test]
fn flags_render_as_envoy_access_log_codes() {
    assert_eq!(response_flags(0), "");
    assert_eq!(response_flags(0x20), "UF");
    assert_eq!(response_flags(0x20 | 0x8000), "UF,URX");
    assert_eq!(response_flags(0x800), "RL");
    assert_eq!(response_flags(1 << 29), "UDO");
    assert_eq!(response_flags(1 << 40), "");
}

#[test]
fn text_from_the_host_is_capped() {
    let long = "é".repeat(3000); // 6000 bytes, 2-byte characters
    let mut many: Vec<(&str, String)> = vec![(":path", format!("/{long}?{long}"))];
    let names: Vec<String> = (0..150).map(|n| format!("x-{n}")).collect();
    for name in &names {
        many.push((name.as_str(), long.clone()));
    }
    many.push(("x-0", "again".into()));
    let capture = Capture {
        request_headers: Some(
            many.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Capture::default()
    };
    let data = event(&capture, 0).data;
    let path = data["request"]["path"].as_str().unwrap();
    assert!(path.ends_with(TRUNCATED) && path.len() <= MAX_TEXT_BYTES + TRUNCATED.len());
    assert!(
        data["request"]["query"]
            .as_str()
            .unwrap()
            .ends_with(TRUNCATED)
    );
    let headers = data["request"]["headers"].as_object().unwrap();
    assert_eq!(headers.len(), MAX_HEADERS);
    for value in headers.values() {
        assert!(value.as_str().unwrap().len() <= MAX_TEXT_BYTES + TRUNCATED.len());
    }
    assert_eq!(capped("short".into()), "short");
}

#[test]
fn client_ips() {
    assert_eq!(client_ip("10.0.0.1:443").as_deref(), Some("10.0.0.1"));
    assert_eq!(client_ip("[::1]:8080").as_deref(), Some("::1"));
    assert_eq!(client_ip("10.0.0.1").as_deref(), Some("10.0.0.1"));
    assert_eq!(client_ip("::1").as_deref(), Some("::1"));
    assert_eq!(client_ip(":80"), None);
    assert_eq!(client_ip("[oops"), None);
}

/// Fuzz finding (target `properties`): a `source.address` longer than 4,096 bytes went into
/// `client.ip` uncut, the one event field not bounded like all other text.
#[test]
fn fuzz_finding_client_ip_is_capped() {
    let capture = Capture {
        properties: Properties {
            source_address: Some("1".repeat(MAX_TEXT_BYTES * 2)),
            ..Properties::default()
        },
        ..Capture::default()
    };
    let ip = event(&capture, 0).data["client"]["ip"].clone();
    let ip = ip.as_str().unwrap();
    assert_eq!(ip.len(), MAX_TEXT_BYTES + TRUNCATED.len());
    assert!(ip.ends_with(TRUNCATED));
}

#[test]
fn uppercase_header_names_in_filters_are_refused() {
    let problems = Problems::default();
    let filter = Filter::compile(&json!({"request.headers.X-Team": "a"}), "f", &problems);
    check_filter(&filter, "f", &problems);
    assert_eq!(
        problems.into_vec()[0].to_string(),
        "f.request.headers.X-Team: header names are lowercase in events: use request.headers.x-team"
    );
}

#[test]
fn a_repeated_header_that_reaches_the_cap_exactly_is_cut_and_marked_not_silently_ended() {
    let exact = "a".repeat(MAX_TEXT_BYTES);
    let capture = Capture {
        request_headers: Some(vec![
            ("x-big".into(), exact.clone()),
            ("x-big".into(), "more".into()),
        ]),
        ..Capture::default()
    };
    let data = event(&capture, 0).data;
    let value = data["request"]["headers"]["x-big"].as_str().unwrap();
    assert_eq!(
        value,
        format!("{exact}{TRUNCATED}"),
        "the lost value is marked"
    );
    // One value of exactly the cap, alone, is whole.
    let capture = Capture {
        request_headers: Some(vec![("x-big".into(), exact.clone())]),
        ..Capture::default()
    };
    assert_eq!(
        event(&capture, 0).data["request"]["headers"]["x-big"],
        exact.as_str()
    );
}
