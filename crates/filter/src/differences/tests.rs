use super::*;
use event_hooks_core::delivery::Destination;
use event_hooks_core::needs::Props as Wanted;
use event_hooks_core::ports::PropertyMap;
use std::rc::Rc;

fn kong() -> PropertyMap {
    PropertyMap::new(&[
        ("ngx.pid", b"4242"),
        ("kong.version", b"3.9.1"),
        ("kong.service_id", b"5f1c-service"),
        ("kong.route_id", b"9a0e-route"),
        ("request.id", b"req-1"),
        ("response.code", b"503"),
        ("request.duration", b"0.250"),
        ("request.time", b"1795000000.123"),
        ("upstream.address", b"10.0.0.7"),
        ("upstream.port", b"8080"),
        ("source.address", b"192.0.2.1"),
        ("request.method", b"GET"),
        ("request.path", b"/orders?id=7"),
        ("request.scheme", b"http"),
        ("ngx.http_host", b"api.example.com:8443"),
        ("ngx.host", b"api.example.com"),
        ("request.host", b"kong-node-1"),
    ])
}

fn envoy() -> PropertyMap {
    let ns = |value: u64| value.to_le_bytes().to_vec();
    let mut props = PropertyMap::new(&[
        ("request.id", b"req-1"),
        ("response.code_details", b"via_upstream"),
        ("upstream.address", b"10.0.0.7:8080"),
        ("xds.cluster_name", b"orders"),
        ("xds.route_name", b"orders-route"),
        ("source.address", b"192.0.2.1:5555"),
    ]);
    props.values.insert("response.code".into(), ns(503));
    props.values.insert("response.flags".into(), ns(0x20));
    props
        .values
        .insert("request.duration".into(), ns(250_000_000));
    props
        .values
        .insert("request.time".into(), ns(1_795_000_000_123_000_000));
    props
}

#[test]
fn the_host_is_learned_once_from_an_nginx_variable() {
    let known = Known::default();
    assert_eq!(known.host(), None);
    assert_eq!(known.metrics(), None);
    let props = kong();
    known.learn(&props);
    assert_eq!(known.host(), Some(Host::Kong));
    assert_eq!(known.metrics(), Some(true));
    known.learn(&props);
    assert_eq!(
        *props.asked.borrow(),
        vec![
            "ngx.pid",
            "plugin_name",
            "kong.version",
            "ngx.nginx_version"
        ]
    );

    let known = Known::default();
    let props = envoy();
    known.learn(&props);
    assert_eq!(known.host(), Some(Host::Envoy));
    assert_eq!(known.metrics(), Some(true));
    assert_eq!(*props.asked.borrow(), vec!["ngx.pid"]);
}

#[test]
fn kong_metric_names_are_capped_by_the_filter_name() {
    let known = Known::default();
    assert!(
        known.metric_name_fits(&"x".repeat(1000)),
        "not known: no cap"
    );
    let props = PropertyMap::new(&[("ngx.pid", b"1"), ("plugin_name", b"event_hooks")]);
    known.learn(&props);
    // "pw:event_hooks:" is 15 bytes of Kong's 256.
    assert!(known.metric_name_fits(&"x".repeat(241)));
    assert!(!known.metric_name_fits(&"x".repeat(242)));

    let known = Known::default();
    known.learn(&envoy());
    assert!(
        known.metric_name_fits(&"x".repeat(1000)),
        "Envoy has no cap"
    );
}

#[test]
fn kong_metrics_start_with_3_9() {
    for (version, expected) in [
        ("3.4.2", false),
        ("3.8.1", false),
        ("3.9.0", true),
        ("3.10.0.2", true),
        ("4.0", true),
        ("3.9.1-enterprise", true),
        ("", false),
        ("next", false),
    ] {
        assert_eq!(kong_has_metrics(version), expected, "{version}");
    }
    let known = Known::default();
    let props = PropertyMap::new(&[("ngx.pid", b"1"), ("kong.version", b"3.4.2")]);
    known.learn(&props);
    assert_eq!(known.metrics(), Some(false));
    let known = Known::default();
    let props = PropertyMap::new(&[("ngx.pid", b"1")]);
    known.learn(&props);
    assert_eq!(known.metrics(), Some(false), "no version: no metrics");
}

#[test]
fn a_configured_host_wins_and_is_forgotten_when_no_longer_configured() {
    let known = Known::default();
    known.configure(Some(Host::Kong));
    assert_eq!(known.host(), Some(Host::Kong));
    assert_eq!(known.metrics(), None, "the version is still probed");
    let props = envoy();
    known.learn(&props);
    assert_eq!(known.host(), Some(Host::Kong), "no probe of the host");
    assert_eq!(
        *props.asked.borrow(),
        vec!["plugin_name", "kong.version", "ngx.nginx_version"]
    );

    known.configure(Some(Host::Envoy));
    assert_eq!(known.metrics(), Some(true));
    known.configure(None);
    assert_eq!(known.host(), None);
    assert_eq!(known.host_or_envoy(), Host::Envoy);
}

#[test]
fn kong_3_4_and_3_5_never_read_a_call_answer_body() {
    for (version, expected) in [
        ("1.21.4", false),
        ("1.25.3", true),
        ("1.27.1", true),
        ("2.0.0", true),
        ("1.25", true),
        ("", false),
        ("nginx/1.25.3", false),
    ] {
        assert_eq!(kong_reads_call_bodies(version), expected, "{version}");
    }
    let known = Known::default();
    assert!(!known.reads_call_bodies(), "not known: never read");
    for (version, expected) in [("1.21.4", false), ("1.25.3", true), ("1.27.1", true)] {
        let known = Known::default();
        let props =
            PropertyMap::new(&[("ngx.pid", b"1"), ("ngx.nginx_version", version.as_bytes())]);
        known.learn(&props);
        assert_eq!(known.reads_call_bodies(), expected, "{version}");
    }
    let known = Known::default();
    let props = PropertyMap::new(&[("ngx.pid", b"1")]);
    known.learn(&props);
    assert!(!known.reads_call_bodies(), "no version: never read");
    let known = Known::default();
    known.learn(&envoy());
    assert!(known.reads_call_bodies());
    let known = Known::default();
    known.configure(Some(Host::Envoy));
    assert!(
        known.reads_call_bodies(),
        "a configured Envoy reads at once"
    );
}

#[test]
fn the_root_context_tells_the_hosts_apart_by_the_buffer_offset() {
    // Envoy honours `start`; Kong reads from the first byte whatever `start` says.
    let honours = |config: &'static [u8]| move |at: usize| config.get(at).copied();
    let ignores = |config: &'static [u8]| move |_: usize| config.first().copied();
    for config in [
        &b"{\"hooks\": []}"[..],
        b"{}",
        b"   \n{\"hooks\":[]}",
        b"{{{{}",
    ] {
        assert_eq!(
            host_by_buffer_offset(config, &honours(config)),
            Some(Host::Envoy),
            "{config:?}"
        );
        assert_eq!(
            host_by_buffer_offset(config, &ignores(config)),
            Some(Host::Kong),
            "{config:?}"
        );
    }
    // Nothing to tell by: one repeated byte, an empty buffer, a failed read, another byte.
    assert_eq!(host_by_buffer_offset(b"aaaa", &honours(b"aaaa")), None);
    assert_eq!(host_by_buffer_offset(b"", &honours(b"")), None);
    assert_eq!(host_by_buffer_offset(b"{}", &|_| None), None);
    assert_eq!(host_by_buffer_offset(b"{}", &|_| Some(b'x')), None);

    let known = Known::default();
    known.detected(Host::Kong);
    assert_eq!(known.host(), Some(Host::Kong));
    let props = envoy();
    known.learn(&props);
    assert_eq!(known.host(), Some(Host::Kong), "detected: not probed again");
    let known = Known::default();
    known.configure(Some(Host::Envoy));
    known.detected(Host::Kong);
    assert_eq!(known.host(), Some(Host::Envoy), "a configured host wins");
}

#[test]
fn kong_sends_one_call_at_a_time_from_ticks_only() {
    let envoy = CallRules::of(Some(Host::Envoy));
    assert_eq!(envoy.max_in_flight, None);
    assert!(envoy.send_from_answers);
    assert_eq!(envoy.tick_ms(250), 250);
    let kong = CallRules::of(Some(Host::Kong));
    assert_eq!(kong.max_in_flight, Some(1));
    assert!(!kong.send_from_answers);
    assert_eq!(kong.tick_ms(250), KONG_TICK_MS);
    assert_eq!(kong.tick_ms(10), KONG_TICK_MS);
    // At least 50 deliveries a second per root context, one per tick.
    const { assert!(1_000 / KONG_TICK_MS >= 50) };
    assert_eq!(
        CallRules::of(None),
        kong,
        "unknown: the rules that crash no host"
    );
    let known = Known::default();
    assert_eq!(known.call_rules(), kong);
    known.configure(Some(Host::Envoy));
    assert_eq!(known.call_rules(), envoy);
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn kong_header_names_are_lowercased_and_the_authority_is_the_host_header() {
    let mut headers = owned(&[
        (":authority", "kong:8000"),
        (":path", "/orders"),
        ("Host", "api.example.com:8443"),
        ("Authorization", "Bearer t0ken"),
        ("X-Event-Data", "{}"),
        ("Content-Length", "2"),
    ]);
    request_headers(Host::Kong, &mut headers);
    assert_eq!(
        headers,
        owned(&[
            (":authority", "api.example.com:8443"),
            (":path", "/orders"),
            ("host", "api.example.com:8443"),
            ("authorization", "Bearer t0ken"),
            ("x-event-data", "{}"),
            ("content-length", "2"),
        ])
    );
    // No Host header (HTTP/1.0): nginx's authority stays.
    let mut headers = owned(&[(":authority", "kong:8000"), ("Accept", "*/*")]);
    request_headers(Host::Kong, &mut headers);
    assert_eq!(
        headers,
        owned(&[(":authority", "kong:8000"), ("accept", "*/*")])
    );
    let mut headers = owned(&[(":status", "200"), ("Retry-After", "5")]);
    response_headers(Host::Kong, &mut headers);
    assert_eq!(headers, owned(&[(":status", "200"), ("retry-after", "5")]));

    // Envoy's names are lowercase already, and `:authority` is the request's: untouched.
    let envoy = owned(&[(":authority", "api.example.com"), ("host", "other")]);
    let mut headers = envoy.clone();
    request_headers(Host::Envoy, &mut headers);
    response_headers(Host::Envoy, &mut headers);
    assert_eq!(headers, envoy);
}

#[test]
fn admin_answers_give_kong_no_reason_phrase() {
    assert_eq!(local_response_details(Host::Kong), "");
    assert_eq!(local_response_details(Host::Envoy), "event_hooks_admin");
}

fn attempt(tls: bool) -> Attempt {
    Attempt {
        destination: Destination {
            cluster: "receiver".into(),
            host_port: if tls {
                "hooks.example.com:443".into()
            } else {
                "[::1]:9000".into()
            },
            tls,
        },
        headers: vec![
            (":method".into(), "POST".into()),
            (":path".into(), "/hooks".into()),
            (":authority".into(), "hooks.example.com".into()),
        ],
        body: Rc::from(&b"{}"[..]),
    }
}

#[test]
fn envoy_calls_a_cluster_and_kong_a_host_and_port() {
    let plain = attempt(false);
    let envoy = call(Host::Envoy, &plain);
    assert_eq!(envoy.upstream, "receiver");
    assert_eq!(
        envoy.headers,
        vec![
            (":method", "POST"),
            (":path", "/hooks"),
            (":authority", "hooks.example.com")
        ]
    );
    let kong = call(Host::Kong, &plain);
    assert_eq!(kong.upstream, "[::1]:9000");
    assert_eq!(kong.headers.first(), Some(&(":scheme", "http")));
    assert_eq!(kong.headers.len(), 4);

    let tls = attempt(true);
    let kong = call(Host::Kong, &tls);
    assert_eq!(kong.upstream, "hooks.example.com:443");
    assert_eq!(kong.headers.first(), Some(&(":scheme", "https")));
    assert_eq!(call(Host::Envoy, &tls).upstream, "receiver");
}

#[test]
fn kong_properties_are_strings_and_seconds() {
    let props = kong();
    let early = request_properties(Host::Kong, &props, Wanted::ALL);
    assert_eq!(early.cluster.as_deref(), Some("5f1c-service"));
    assert_eq!(early.route.as_deref(), Some("9a0e-route"));
    props.asked.borrow_mut().clear();
    let log = log_properties(Host::Kong, true, early, &props, Wanted::ALL);
    assert_eq!(log.status, Some(503));
    assert_eq!(log.duration_ns, Some(250_000_000));
    assert_eq!(log.start_ns, Some(1_795_000_000_123_000_000));
    assert_eq!(log.upstream_address.as_deref(), Some("10.0.0.7:8080"));
    assert_eq!(log.source_address.as_deref(), Some("192.0.2.1"));
    assert_eq!(log.request_id.as_deref(), Some("req-1"));
    assert_eq!(log.cluster.as_deref(), Some("5f1c-service"));
    assert_eq!(log.route.as_deref(), Some("9a0e-route"));
    assert_eq!((log.flags, log.code_details), (None, None));
    assert_eq!(log.method, None, "the request headers were seen");
    let asked = props.asked.borrow().clone();
    for never in [
        "response.flags",
        "response.code_details",
        "xds.cluster_name",
    ] {
        assert!(
            !asked.iter().any(|path| path == never),
            "{never} read on Kong"
        );
    }

    let log = log_properties(
        Host::Kong,
        false,
        Properties::default(),
        &props,
        Wanted::ALL,
    );
    assert_eq!(log.method.as_deref(), Some("GET"));
    assert_eq!(log.path.as_deref(), Some("/orders?id=7"));
    assert_eq!(
        log.host.as_deref(),
        Some("api.example.com:8443"),
        "the Host header, not $hostname"
    );
    assert_eq!(log.scheme.as_deref(), Some("http"));
}

#[test]
fn envoy_properties_are_binary_and_nanoseconds() {
    let props = envoy();
    let early = request_properties(Host::Envoy, &props, Wanted::ALL);
    assert_eq!(early, Properties::default());
    assert!(props.asked.borrow().is_empty());
    let log = log_properties(Host::Envoy, true, early, &props, Wanted::ALL);
    assert_eq!(log.status, Some(503));
    assert_eq!(log.flags, Some(0x20));
    assert_eq!(log.code_details.as_deref(), Some("via_upstream"));
    assert_eq!(log.duration_ns, Some(250_000_000));
    assert_eq!(log.start_ns, Some(1_795_000_000_123_000_000));
    assert_eq!(log.upstream_address.as_deref(), Some("10.0.0.7:8080"));
    assert_eq!(log.cluster.as_deref(), Some("orders"));
    assert_eq!(log.route.as_deref(), Some("orders-route"));
    assert_eq!(log.source_address.as_deref(), Some("192.0.2.1:5555"));
}

#[test]
fn only_the_wanted_properties_are_read_and_later_reads_add_to_earlier_ones() {
    for (host, props) in [(Host::Envoy, envoy()), (Host::Kong, kong())] {
        let early = request_properties(host, &props, Wanted::of(&[Prop::Route]));
        let first = Wanted::of(&[Prop::Status]);
        let log = log_properties(host, true, early.clone(), &props, first);
        assert_eq!(log.status, Some(503));
        assert_eq!(log.route, early.route);
        let asked = props.asked.borrow().clone();
        let expected: &[&str] = match host {
            Host::Envoy => &["response.code"],
            Host::Kong => &["kong.route_id", "response.code"],
        };
        assert_eq!(asked, expected, "{host:?}");
        props.asked.borrow_mut().clear();
        let then = Wanted::ALL.without(first);
        let all = log_properties(host, true, log, &props, then);
        let asked = props.asked.borrow().clone();
        assert!(!asked.iter().any(|path| path == "response.code"));
        let at_once = log_properties(host, true, early, &props, Wanted::ALL);
        assert_eq!(all, at_once, "{host:?}");
    }
    let props = kong();
    let nothing = log_properties(
        Host::Kong,
        false,
        Properties::default(),
        &props,
        Wanted::NONE,
    );
    assert_eq!(nothing, Properties::default());
    assert!(props.asked.borrow().is_empty());
}

#[test]
fn kong_without_an_upstream_port_keeps_the_address() {
    let props = PropertyMap::new(&[("upstream.address", b"10.0.0.7")]);
    let log = log_properties(Host::Kong, true, Properties::default(), &props, Wanted::ALL);
    assert_eq!(log.upstream_address.as_deref(), Some("10.0.0.7"));
}

/// Other filters' events: Envoy's dynamic metadata, whole, and its filter state (another wasm
/// filter's); Kong's `kong.ctx.shared`, from 3.6 (the namespace does not exist before: never
/// read there); each decoded as its host gives it.
#[test]
fn emitted_events_are_read_where_each_host_has_them() {
    let kong = Some(Channel::KongCtxShared);
    for (version, expected) in [
        ("3.4.2", [None, None]),
        ("3.5.0", [None, None]),
        ("3.6.1", [kong, None]),
        ("3.10.0.2", [kong, None]),
        ("next", [None, None]),
    ] {
        let known = Known::default();
        let props = PropertyMap::new(&[("ngx.pid", b"1"), ("kong.version", version.as_bytes())]);
        known.learn(&props);
        assert_eq!(known.emitted_channels(true, true), expected, "{version}");
        assert_eq!(
            props
                .asked
                .borrow()
                .iter()
                .filter(|path| *path == "kong.version")
                .count(),
            1,
            "the version is read once"
        );
    }
    let known = Known::default();
    known.learn(&PropertyMap::new(&[
        ("ngx.pid", b"1"),
        ("kong.version", b"3.6.0"),
    ]));
    assert_eq!(
        known.emitted_channels(false, true),
        [kong, None],
        "one property on Kong"
    );
    assert_eq!(known.emitted_channels(false, false), [None, None]);
    let known = Known::default();
    known.learn(&envoy());
    assert_eq!(
        known.emitted_channels(true, true),
        [
            Some(Channel::EnvoyMetadata),
            Some(Channel::EnvoyFilterState)
        ]
    );
    assert_eq!(
        known.emitted_channels(true, false),
        [Some(Channel::EnvoyMetadata), None]
    );
    let known = Known::default();
    known.configure(Some(Host::Envoy));
    assert_eq!(
        known.emitted_channels(false, true),
        [None, Some(Channel::EnvoyFilterState)]
    );
    assert_eq!(
        Channel::EnvoyFilterState.path(),
        ["filter_state", "wasm.event_hooks"]
    );

    let text = br#"{"payments.refund-issued": {"order_id": "42", "amount": 300}}"#;
    for channel in [Channel::KongCtxShared, Channel::EnvoyFilterState] {
        let decoded = channel.decode(text).expect("JSON text");
        assert_eq!(decoded.emissions.len(), 1);
        assert_eq!(decoded.emissions[0].source, "payments");
        assert_eq!(decoded.emissions[0].event, "refund-issued");
        assert_eq!(
            serde_json::Value::Object(decoded.emissions[0].data.clone()),
            serde_json::json!({"order_id": "42", "amount": 300})
        );
    }
    // Envoy's metadata is protobuf: JSON text there is malformed, refused whole.
    assert!(Channel::EnvoyMetadata.decode(text).is_err());
}
