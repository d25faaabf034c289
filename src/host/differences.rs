//! Everything that differs between the hosts the filter runs in, in one place. Pure: the
//! adapter hands in a property reader, so every rule here is tested natively.
//!
//! | | Envoy (and Istio) | Kong 3.4 to 3.10 (ngx_wasm_module) |
//! | --- | --- | --- |
//! | detected by | `ngx.pid` is not found | `ngx.pid` (an nginx variable) is found |
//! | call target | a cluster name | a literal `host:port`, `:scheme: https` for TLS |
//! | why a call failed | no headers (Envoy answers 503/504 itself otherwise) | `:dispatch_status`, read with `get_header_map_value` |
//! | numbers and times | 8-byte little-endian integers, nanoseconds | decimal strings, times in seconds with milliseconds |
//! | upstream address | `ip:port` | `upstream.address` (ip) and `upstream.port` |
//! | cluster / route | `xds.cluster_name`, `xds.route_name` | `kong.service_id`, `kong.route_id` (read in request headers) |
//! | `response.flags`, `response.code_details` | read | never read: ngx_wasm_module logs an error for each |
//! | metrics | always; gauges by increments | from Kong 3.9 (`kong.version`), gauges recorded as levels (an increment traps), names at most 256 bytes with `pw:<filter>:`; before 3.9 the calls trap |
//! | `proxy_done`, root `on_done` | drains on removal | never called: both are unimplemented |
//!
//! Common to both, and relied on everywhere: only the root context dispatches deliveries (from
//! `on_tick` and `on_http_call_response`; Kong traps on a dispatch from `on_log`),
//! `set_tick_period` is called once per root context (Kong traps on a second call), no shared
//! queues, no `proxy_get_log_level`, and every shared-data key lives under
//! [`crate::shared::NAMESPACE`].
//!
//! The host is the configuration's `"host"` when it names one; otherwise it is learned at the
//! first HTTP callback of the VM (a scoped property read outside a request is an error on
//! Kong, so the root context never probes). Until then metrics are held back.

use std::cell::Cell;

pub use crate::config::Host;
use crate::delivery::Request;
use crate::needs::{Prop, Props};
use crate::source::traffic::Properties;

use super::wire;

/// An nginx variable: found on Kong only.
pub const KONG_PROBE: &[&str] = &["ngx", "pid"];
/// Kong's host property with its version.
pub const KONG_VERSION: &[&str] = &["kong", "version"];
/// The first Kong version whose metrics calls are worth making: its Prometheus plugin exports
/// filter metrics from 3.9 (ngx_wasm_module implements the calls from 3.8 and traps before).
pub const KONG_METRICS_SINCE: (u32, u32) = (3, 9);
/// The filter's name in Kong's filter chain (`event_hooks` unless the file was renamed).
pub const PLUGIN_NAME: &[&str] = &["plugin_name"];
/// Kong stores a metric as `pw:<filter name>:<name>` and traps when that is longer than
/// `max_metric_name_length` (256 unless configured lower).
pub const KONG_METRIC_NAME_MAX: usize = 256;

/// Reads a property of the current stream: its raw value, `None` when absent or unreadable.
pub type Read<'a> = &'a dyn Fn(&[&str]) -> Option<Vec<u8>>;

/// What the adapter knows about its host: shared by the root context, every HTTP context and
/// the metrics.
#[derive(Debug, Default)]
pub struct Known {
    host: Cell<Option<Host>>,
    /// Whether the host's metrics calls may be made; `None` until known.
    metrics: Cell<Option<bool>>,
    /// Set when the configuration named the host.
    forced: Cell<bool>,
    /// Kong: the longest metric name it takes from this filter.
    metric_name_max: Cell<Option<usize>>,
}

impl Known {
    pub fn host(&self) -> Option<Host> {
        self.host.get()
    }

    /// The host for a call: Envoy's rules until the host is known (no call is made before an
    /// HTTP context has run, which learns it).
    pub fn host_or_envoy(&self) -> Host {
        self.host.get().unwrap_or(Host::Envoy)
    }

    pub fn metrics(&self) -> Option<bool> {
        self.metrics.get()
    }

    /// Whether the host takes a metric of this name (Kong traps on one too long).
    pub fn metric_name_fits(&self, name: &str) -> bool {
        self.metric_name_max
            .get()
            .is_none_or(|max| name.len() <= max)
    }

    /// Applies a configuration's `"host"`: a named host is taken as is; without one, a host
    /// named by an earlier configuration is forgotten, to be learned again.
    pub fn configure(&self, host: Option<Host>) {
        match host {
            Some(host) => {
                if self.host.get() != Some(host) {
                    self.metrics.set(None);
                }
                self.host.set(Some(host));
                self.forced.set(true);
                if host == Host::Envoy {
                    self.metrics.set(Some(true));
                }
            }
            None if self.forced.get() => {
                self.host.set(None);
                self.metrics.set(None);
                self.forced.set(false);
            }
            None => {}
        }
    }

    /// Learns what is not known yet from the current stream's properties. Only in an HTTP
    /// context; a no-op once everything is known.
    pub fn learn(&self, read: Read<'_>) {
        let host = match self.host.get() {
            Some(host) => host,
            None => {
                let host = if read(KONG_PROBE).is_some() {
                    Host::Kong
                } else {
                    Host::Envoy
                };
                self.host.set(Some(host));
                host
            }
        };
        if self.metrics.get().is_none() {
            let metrics = match host {
                Host::Envoy => {
                    self.metric_name_max.set(None);
                    true
                }
                Host::Kong => {
                    let filter = read(PLUGIN_NAME).map_or(11, |name| name.len());
                    let prefix = "pw::".len().saturating_add(filter);
                    self.metric_name_max
                        .set(Some(KONG_METRIC_NAME_MAX.saturating_sub(prefix)));
                    read(KONG_VERSION)
                        .map(|version| wire::string(&version))
                        .is_some_and(|version| kong_has_metrics(&version))
                }
            };
            self.metrics.set(Some(metrics));
        }
    }
}

/// Whether a Kong version (`3.9.1`, `3.10.0.2`) implements the proxy-wasm metrics calls.
pub fn kong_has_metrics(version: &str) -> bool {
    let mut parts = version
        .trim()
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= KONG_METRICS_SINCE,
        _ => false,
    }
}

/// A call as the host takes it: where to, and the headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Call<'a> {
    /// Envoy: the cluster; Kong: `host:port`.
    pub upstream: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
}

/// The call for `request` on `host`.
pub fn call(host: Host, request: &Request) -> Call<'_> {
    let mut headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let destination = &request.destination;
    match host {
        Host::Envoy => Call {
            upstream: &destination.cluster,
            headers,
        },
        Host::Kong => {
            let scheme = if destination.tls { "https" } else { "http" };
            headers.insert(0, (":scheme", scheme));
            Call {
                upstream: &destination.host_port,
                headers,
            }
        }
    }
}

/// Properties read in the request headers phase: on Kong, the route and service ids (Kong's
/// host properties are answered by its Lua code, set up before the filter chain runs), those
/// of them in `wanted`.
pub fn request_properties(host: Host, read: Read<'_>, wanted: Props) -> Properties {
    let text = |prop: Prop, path: &[&str]| {
        if wanted.has(prop) {
            read(path).map(|bytes| wire::string(&bytes))
        } else {
            None
        }
    };
    match host {
        Host::Envoy => Properties::default(),
        Host::Kong => Properties {
            cluster: text(Prop::Cluster, &["kong", "service_id"]),
            route: text(Prop::Route, &["kong", "route_id"]),
            ..Properties::default()
        },
    }
}

/// The log-phase properties of `wanted` on `host`, read into `earlier` (what the request
/// headers phase, or an earlier read, gave); the others are kept as they were. Request fields
/// are read only when the header callback did not run (a reply sent by an earlier filter).
pub fn log_properties(
    host: Host,
    headers_seen: bool,
    earlier: Properties,
    read: Read<'_>,
    wanted: Props,
) -> Properties {
    let text = |path: &[&str]| read(path).map(|bytes| wire::string(&bytes));
    let number = |path: &[&str]| read(path).and_then(|bytes| wire::integer(&bytes));
    let seconds = |path: &[&str]| read(path).and_then(|bytes| wire::decimal_seconds_ns(&bytes));
    let mut props = earlier;
    let set = |prop: Prop, field: &mut dyn FnMut()| {
        if wanted.has(prop) {
            field();
        }
    };
    if !headers_seen {
        // `request.host` is Envoy's `:authority`; on Kong it is nginx's `$hostname` (the
        // machine's name), and the request's is `ngx.host`.
        let host_path: &[&str] = match host {
            Host::Envoy => &["request", "host"],
            Host::Kong => &["ngx", "host"],
        };
        set(Prop::Method, &mut || {
            props.method = text(&["request", "method"])
        });
        set(Prop::Path, &mut || props.path = text(&["request", "path"]));
        set(Prop::Host, &mut || props.host = text(host_path));
        set(Prop::Scheme, &mut || {
            props.scheme = text(&["request", "scheme"])
        });
    }
    set(Prop::RequestId, &mut || {
        props.request_id = text(&["request", "id"])
    });
    set(Prop::Status, &mut || {
        props.status = number(&["response", "code"])
    });
    set(Prop::SourceAddress, &mut || {
        props.source_address = text(&["source", "address"])
    });
    match host {
        Host::Envoy => {
            set(Prop::Flags, &mut || {
                props.flags = number(&["response", "flags"])
            });
            set(Prop::CodeDetails, &mut || {
                props.code_details = text(&["response", "code_details"])
            });
            set(Prop::UpstreamAddress, &mut || {
                props.upstream_address = text(&["upstream", "address"])
            });
            set(Prop::Cluster, &mut || {
                props.cluster = text(&["xds", "cluster_name"])
            });
            set(Prop::Route, &mut || {
                props.route = text(&["xds", "route_name"])
            });
            set(Prop::Duration, &mut || {
                props.duration_ns = number(&["request", "duration"])
            });
            set(Prop::Start, &mut || {
                props.start_ns = number(&["request", "time"])
            });
        }
        // Never `response.flags` or `response.code_details`: Kong logs an error for each. The
        // cluster and the route were read in the request headers phase.
        Host::Kong => {
            set(Prop::UpstreamAddress, &mut || {
                props.upstream_address = text(&["upstream", "address"]).map(|address| {
                    match text(&["upstream", "port"]).filter(|port| !port.is_empty()) {
                        Some(port) => format!("{address}:{port}"),
                        None => address,
                    }
                })
            });
            set(Prop::Duration, &mut || {
                props.duration_ns = seconds(&["request", "duration"])
            });
            set(Prop::Start, &mut || {
                props.start_ns = seconds(&["request", "time"])
            });
        }
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Destination;
    use crate::needs::Props as Wanted;
    use std::collections::HashMap;
    use std::rc::Rc;

    /// A reader over fixed property values; it records every path asked for.
    struct Props {
        values: HashMap<String, Vec<u8>>,
        asked: std::cell::RefCell<Vec<String>>,
    }

    impl Props {
        fn new(values: &[(&str, &[u8])]) -> Self {
            Props {
                values: values
                    .iter()
                    .map(|(path, value)| (path.to_string(), value.to_vec()))
                    .collect(),
                asked: Default::default(),
            }
        }

        fn read(&self, path: &[&str]) -> Option<Vec<u8>> {
            let path = path.join(".");
            self.asked.borrow_mut().push(path.clone());
            self.values.get(&path).cloned()
        }
    }

    fn kong() -> Props {
        Props::new(&[
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
            ("ngx.host", b"api.example.com"),
            ("request.host", b"kong-node-1"),
        ])
    }

    fn envoy() -> Props {
        let ns = |value: u64| value.to_le_bytes().to_vec();
        let mut props = Props::new(&[
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
        known.learn(&|path| props.read(path));
        assert_eq!(known.host(), Some(Host::Kong));
        assert_eq!(known.metrics(), Some(true));
        known.learn(&|path| props.read(path));
        assert_eq!(
            *props.asked.borrow(),
            vec!["ngx.pid", "plugin_name", "kong.version"]
        );

        let known = Known::default();
        let props = envoy();
        known.learn(&|path| props.read(path));
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
        let props = Props::new(&[("ngx.pid", b"1"), ("plugin_name", b"event_hooks")]);
        known.learn(&|path| props.read(path));
        // "pw:event_hooks:" is 15 bytes of Kong's 256.
        assert!(known.metric_name_fits(&"x".repeat(241)));
        assert!(!known.metric_name_fits(&"x".repeat(242)));

        let known = Known::default();
        known.learn(&|path| envoy().read(path));
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
        let props = Props::new(&[("ngx.pid", b"1"), ("kong.version", b"3.4.2")]);
        known.learn(&|path| props.read(path));
        assert_eq!(known.metrics(), Some(false));
        let known = Known::default();
        let props = Props::new(&[("ngx.pid", b"1")]);
        known.learn(&|path| props.read(path));
        assert_eq!(known.metrics(), Some(false), "no version: no metrics");
    }

    #[test]
    fn a_configured_host_wins_and_is_forgotten_when_no_longer_configured() {
        let known = Known::default();
        known.configure(Some(Host::Kong));
        assert_eq!(known.host(), Some(Host::Kong));
        assert_eq!(known.metrics(), None, "the version is still probed");
        let props = envoy();
        known.learn(&|path| props.read(path));
        assert_eq!(known.host(), Some(Host::Kong), "no probe of the host");
        assert_eq!(*props.asked.borrow(), vec!["plugin_name", "kong.version"]);

        known.configure(Some(Host::Envoy));
        assert_eq!(known.metrics(), Some(true));
        known.configure(None);
        assert_eq!(known.host(), None);
        assert_eq!(known.host_or_envoy(), Host::Envoy);
    }

    fn request(tls: bool) -> Request {
        Request {
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
        let plain = request(false);
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

        let tls = request(true);
        let kong = call(Host::Kong, &tls);
        assert_eq!(kong.upstream, "hooks.example.com:443");
        assert_eq!(kong.headers.first(), Some(&(":scheme", "https")));
        assert_eq!(call(Host::Envoy, &tls).upstream, "receiver");
    }

    #[test]
    fn kong_properties_are_strings_and_seconds() {
        let props = kong();
        let early = request_properties(Host::Kong, &|path| props.read(path), Wanted::ALL);
        assert_eq!(early.cluster.as_deref(), Some("5f1c-service"));
        assert_eq!(early.route.as_deref(), Some("9a0e-route"));
        props.asked.borrow_mut().clear();
        let log = log_properties(
            Host::Kong,
            true,
            early,
            &|path| props.read(path),
            Wanted::ALL,
        );
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
            &|path| props.read(path),
            Wanted::ALL,
        );
        assert_eq!(log.method.as_deref(), Some("GET"));
        assert_eq!(log.path.as_deref(), Some("/orders?id=7"));
        assert_eq!(
            log.host.as_deref(),
            Some("api.example.com"),
            "$host, not $hostname"
        );
        assert_eq!(log.scheme.as_deref(), Some("http"));
    }

    #[test]
    fn envoy_properties_are_binary_and_nanoseconds() {
        let props = envoy();
        let early = request_properties(Host::Envoy, &|path| props.read(path), Wanted::ALL);
        assert_eq!(early, Properties::default());
        assert!(props.asked.borrow().is_empty());
        let log = log_properties(
            Host::Envoy,
            true,
            early,
            &|path| props.read(path),
            Wanted::ALL,
        );
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
            let read = |path: &[&str]| props.read(path);
            let early = request_properties(host, &read, Wanted::of(&[Prop::Route]));
            let first = Wanted::of(&[Prop::Status]);
            let log = log_properties(host, true, early.clone(), &read, first);
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
            let all = log_properties(host, true, log, &read, then);
            let asked = props.asked.borrow().clone();
            assert!(!asked.iter().any(|path| path == "response.code"));
            let at_once = log_properties(host, true, early, &read, Wanted::ALL);
            assert_eq!(all, at_once, "{host:?}");
        }
        let props = kong();
        let nothing = log_properties(
            Host::Kong,
            false,
            Properties::default(),
            &|path| props.read(path),
            Wanted::NONE,
        );
        assert_eq!(nothing, Properties::default());
        assert!(props.asked.borrow().is_empty());
    }

    #[test]
    fn kong_without_an_upstream_port_keeps_the_address() {
        let props = Props::new(&[("upstream.address", b"10.0.0.7")]);
        let log = log_properties(
            Host::Kong,
            true,
            Properties::default(),
            &|path| props.read(path),
            Wanted::ALL,
        );
        assert_eq!(log.upstream_address.as_deref(), Some("10.0.0.7"));
    }
}
