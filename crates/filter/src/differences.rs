//! Everything that differs between the hosts the filter runs in, in one place. Pure: the
//! adapter hands in the host's properties as a [`PropertyReader`], so every rule here is tested
//! natively (with [`event_hooks_core::ports::PropertyMap`]).
//!
//! | | Envoy (and Istio) | Kong 3.4 to 3.10 (ngx_wasm_module) |
//! | --- | --- | --- |
//! | detected by (root context) | `proxy_get_buffer_bytes` honours its `start` offset | the offset is ignored: the buffer is read from its first byte |
//! | detected by (HTTP context) | `ngx.pid` is not found | `ngx.pid` (an nginx variable) is found |
//! | call target | a cluster name | a literal `host:port`, `:scheme: https` for TLS |
//! | calls in flight per root context | `delivery.max_in_flight` | one: when several are, every call but the last to finish leaks its connection slot (3.7 and later) |
//! | when the root context sends | from `on_tick` and from `on_http_call_response` | from `on_tick` only: a call made from a call's answer crashes the worker (SIGSEGV) |
//! | tick period | `delivery.flush_interval_ms` | [`KONG_TICK_MS`], so that one call per tick still makes 100 deliveries a second |
//! | why a call failed | no headers (Envoy answers 503/504 itself otherwise) | `:dispatch_status`, read with `get_header_map_value` |
//! | reading a call's answer body | always | never on nginx 1.21.4 (Kong 3.4, 3.5: SIGSEGV when the answer has a body) |
//! | header names | lowercase | as the sender wrote them: lowercased when captured, every lookup case-insensitive |
//! | `request.host` | `:authority` | the `Host` header (`:authority` is nginx's `server_name:port`) |
//! | numbers and times | 8-byte little-endian integers, nanoseconds | decimal strings, times in seconds with milliseconds |
//! | upstream address | `ip:port` | `upstream.address` (ip) and `upstream.port` |
//! | cluster / route | `xds.cluster_name`, `xds.route_name` | `kong.service_id`, `kong.route_id` (read in request headers) |
//! | `response.flags`, `response.code_details` | read | never read: ngx_wasm_module logs an error for each |
//! | metrics | always; gauges by increments | from Kong 3.9 (`kong.version`), gauges recorded as levels (an increment traps), names at most 256 bytes with `pw:<filter>:`; before 3.9 the calls trap |
//! | a local response's `details` | response code details (access logs) | the status line's reason phrase: left empty, so the standard one is sent |
//! | `proxy_done`, root `on_done` | drains on removal | never called: both are unimplemented |
//!
//! Common to both, and relied on everywhere: only the root context dispatches deliveries (Kong
//! traps on a dispatch from `on_log`; Envoy loses the answer to a call made by a finished
//! stream), `set_tick_period` is called once per root context on Kong (it traps on a second
//! call), no shared queues, no `proxy_get_log_level`, and every shared-data key lives under
//! [`event_hooks_core::shared::NAMESPACE`].
//!
//! The host is the configuration's `"host"` when it names one; otherwise the root context
//! tells it from how the configuration buffer is read ([`host_by_buffer_offset`]), before it
//! sets its tick period; failing that it is learned at the first HTTP callback of the VM (a
//! scoped property read outside a request is an error on Kong, and reading `plugin_name` in
//! `on_configure` crashes it, so the root context never reads a property). Until the host is
//! known, calls follow Kong's rules (the ones that never crash either host) and metrics are
//! held back.

use std::cell::Cell;

pub use event_hooks_core::config::Host;
use event_hooks_core::delivery::Attempt;
use event_hooks_core::emitted::{self, Emitted, Reason};
use event_hooks_core::needs::{Prop, Props};
use event_hooks_core::ports::PropertyReader;
use event_hooks_core::source::traffic::Properties;

use super::wire;

/// An nginx variable: found on Kong only.
pub const KONG_PROBE: &[&str] = &["ngx", "pid"];
/// Kong's host property with its version.
pub const KONG_VERSION: &[&str] = &["kong", "version"];
/// The first Kong version whose metrics calls are worth making: its Prometheus plugin exports
/// filter metrics from 3.9 (ngx_wasm_module implements the calls from 3.8 and traps before).
pub const KONG_METRICS_SINCE: (u32, u32) = (3, 9);
/// The first Kong whose wasm filters read `kong.ctx.shared.<key>` (a namespace of host
/// properties its Lua code answers with `tostring(kong.ctx.shared[key])`).
pub const KONG_CTX_SHARED_SINCE: (u32, u32) = (3, 6);
/// Where other filters leave the events they emit for this one: Envoy's dynamic metadata,
/// whole (`metadata`: one call tells whether anything was set; the namespace `event_hooks`
/// is decoded from it, docs/src/emitted-wire.md says why), and on Kong 3.6 and later the
/// JSON text a Lua plugin put in `kong.ctx.shared.event_hooks`.
pub const ENVOY_EMITTED: &[&str] = &["metadata"];
pub const KONG_EMITTED: &[&str] = &["kong", "ctx", "shared", "event_hooks"];
/// Envoy's filter state under the key another wasm filter's `set_property(["event_hooks"])`
/// writes (Envoy stores it as `wasm.event_hooks`): JSON text, as on Kong.
pub const ENVOY_EMITTED_FILTER_STATE: &[&str] = &["filter_state", "wasm.event_hooks"];

/// A place where other filters leave events for this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Envoy's dynamic metadata (Lua, native filters): protobuf.
    EnvoyMetadata,
    /// Envoy's filter state (another wasm filter): JSON text.
    EnvoyFilterState,
    /// Kong's `kong.ctx.shared` (Lua plugins; a wasm filter's `set_property` too): JSON text.
    KongCtxShared,
}

impl Channel {
    /// The property it is read from.
    pub fn path(self) -> &'static [&'static str] {
        match self {
            Channel::EnvoyMetadata => ENVOY_EMITTED,
            Channel::EnvoyFilterState => ENVOY_EMITTED_FILTER_STATE,
            Channel::KongCtxShared => KONG_EMITTED,
        }
    }

    /// The events in what it held.
    pub fn decode(self, bytes: &[u8]) -> Result<Emitted, Reason> {
        match self {
            Channel::EnvoyMetadata => emitted::from_metadata(bytes),
            Channel::EnvoyFilterState | Channel::KongCtxShared => emitted::from_json(bytes),
        }
    }
}
/// The filter's name in Kong's filter chain (`event_hooks` unless the file was renamed).
pub const PLUGIN_NAME: &[&str] = &["plugin_name"];
/// The plugin's `root_id` (read on Envoy only, in `on_configure`: it tells an access logger).
pub const PLUGIN_ROOT_ID: &[&str] = &["plugin_root_id"];
/// Kong stores a metric as `pw:<filter name>:<name>` and traps when that is longer than
/// `max_metric_name_length` (256 unless configured lower).
pub const KONG_METRIC_NAME_MAX: usize = 256;
/// nginx's version, an nginx variable (readable in a request context only): 1.21.4 on Kong
/// 3.4 and 3.5, 1.25.3 on 3.6 to 3.9, 1.27.1 on 3.10.
pub const NGINX_VERSION: &[&str] = &["ngx", "nginx_version"];
/// The first nginx that Kong bundles with an ngx_wasm_module that reads a call's answer body
/// safely: the one of Kong 3.4 and 3.5 (nginx 1.21.4, ngx_wasm_module 21732b18) dereferences a
/// null request context in `ngx_proxy_wasm_get_buffer_helper` when the answer has a body.
pub const KONG_CALL_BODIES_SINCE: (u32, u32) = (1, 25);
/// The root context's tick period on Kong: one call in flight per root context, sent from
/// `on_tick` only, makes one delivery per tick: 100 a second at 10 ms (measured on the real
/// host: 98/s, 0.6% of a core per worker at idle; 49.6/s at 20 ms).
pub const KONG_TICK_MS: u64 = 10;

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
    /// Whether a call's answer body may be read; `None` until known.
    call_bodies: Cell<Option<bool>>,
    /// Whether other filters' events can be read (never on Kong before 3.6); `None` until
    /// known.
    emitted: Cell<Option<bool>>,
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

    /// Whether a call's answer body may be read (never on Kong 3.4 and 3.5, nor while the host
    /// is not known).
    pub fn reads_call_bodies(&self) -> bool {
        self.call_bodies.get().unwrap_or(false)
    }

    /// Where this host has the events other filters emitted, for published sources whose
    /// emitters use `metadata` and `filter_state` (each channel read once; on Kong both are
    /// `kong.ctx.shared`, never read before 3.6).
    pub fn emitted_channels(&self, metadata: bool, filter_state: bool) -> [Option<Channel>; 2] {
        match (self.host.get(), self.emitted.get()) {
            (Some(Host::Envoy), _) => [
                metadata.then_some(Channel::EnvoyMetadata),
                filter_state.then_some(Channel::EnvoyFilterState),
            ],
            (Some(Host::Kong), Some(true)) => [
                (metadata || filter_state).then_some(Channel::KongCtxShared),
                None,
            ],
            _ => [None, None],
        }
    }

    /// How calls are made on this host ([`CallRules::of`]).
    pub fn call_rules(&self) -> CallRules {
        CallRules::of(self.host.get())
    }

    /// The host told apart in the root context ([`host_by_buffer_offset`]): taken unless the
    /// host is already known.
    pub fn detected(&self, host: Host) {
        if self.host.get().is_none() {
            self.host.set(Some(host));
        }
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
                    self.call_bodies.set(None);
                    self.emitted.set(None);
                }
                self.host.set(Some(host));
                self.forced.set(true);
                if host == Host::Envoy {
                    self.metrics.set(Some(true));
                    self.call_bodies.set(Some(true));
                    self.emitted.set(Some(true));
                }
            }
            None if self.forced.get() => {
                self.host.set(None);
                self.metrics.set(None);
                self.call_bodies.set(None);
                self.emitted.set(None);
                self.forced.set(false);
            }
            None => {}
        }
    }

    /// Learns what is not known yet from the current stream's properties. Only where a
    /// stream is readable (an HTTP context, Envoy's access logger in `on_log`); a no-op once
    /// everything is known.
    pub fn learn(&self, properties: &dyn PropertyReader) {
        let host = match self.host.get() {
            Some(host) => host,
            None => {
                let host = if properties.property(KONG_PROBE).is_some() {
                    Host::Kong
                } else {
                    Host::Envoy
                };
                self.host.set(Some(host));
                host
            }
        };
        // Kong's version, read at most once here whatever needs it.
        let version = std::cell::OnceCell::new();
        let kong_version = || {
            version
                .get_or_init(|| {
                    properties
                        .property(KONG_VERSION)
                        .map(|version| wire::string(&version))
                })
                .clone()
        };
        if self.metrics.get().is_none() {
            let metrics = match host {
                Host::Envoy => {
                    self.metric_name_max.set(None);
                    true
                }
                Host::Kong => {
                    let filter = properties
                        .property(PLUGIN_NAME)
                        .map_or(11, |name| name.len());
                    let prefix = "pw::".len().saturating_add(filter);
                    self.metric_name_max
                        .set(Some(KONG_METRIC_NAME_MAX.saturating_sub(prefix)));
                    kong_version().is_some_and(|version| kong_has_metrics(&version))
                }
            };
            self.metrics.set(Some(metrics));
        }
        if self.call_bodies.get().is_none() {
            let bodies = match host {
                Host::Envoy => true,
                Host::Kong => properties
                    .property(NGINX_VERSION)
                    .map(|version| wire::string(&version))
                    .is_some_and(|version| kong_reads_call_bodies(&version)),
            };
            self.call_bodies.set(Some(bodies));
        }
        if self.emitted.get().is_none() {
            let emitted = match host {
                Host::Envoy => true,
                Host::Kong => kong_version()
                    .is_some_and(|version| kong_at_least(&version, KONG_CTX_SHARED_SINCE)),
            };
            self.emitted.set(Some(emitted));
        }
    }
}

/// Whether Kong's nginx (`1.25.3`) comes with an ngx_wasm_module that reads a call's answer
/// body without crashing. An unknown version is taken as one that does not.
pub fn kong_reads_call_bodies(nginx_version: &str) -> bool {
    let mut parts = nginx_version
        .trim()
        .split('.')
        .map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= KONG_CALL_BODIES_SINCE,
        _ => false,
    }
}

/// Tells the hosts apart in the root context, where Kong allows no property read: by reading
/// one byte of the plugin configuration (`config`) at an offset. proxy-wasm-cpp-host (Envoy)
/// honours the `start` of `proxy_get_buffer_bytes`; ngx_wasm_module (Kong, every version from
/// 3.4 to 3.10) ignores it and copies from the first byte. `read_at(offset)` reads that byte.
/// `None` when the answer tells nothing (a configuration of one repeated byte, a failed read).
pub fn host_by_buffer_offset(config: &[u8], read_at: &dyn Fn(usize) -> Option<u8>) -> Option<Host> {
    let first = *config.first()?;
    let offset = config.iter().position(|byte| *byte != first)?;
    let there = *config.get(offset)?;
    match read_at(offset)? {
        byte if byte == there => Some(Host::Envoy),
        byte if byte == first => Some(Host::Kong),
        _ => None,
    }
}

/// How the root context makes calls on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRules {
    /// The most calls in flight per root context, whatever `delivery.max_in_flight` says.
    pub max_in_flight: Option<usize>,
    /// Whether the next queued call may be sent from `on_http_call_response`.
    pub send_from_answers: bool,
    /// The root context's tick period for a configured `flush_interval_ms`.
    tick_ms: Option<u64>,
}

impl CallRules {
    /// Envoy: `max_in_flight`, sending from ticks and answers, ticking every
    /// `flush_interval_ms`. Kong, and a host not known yet: one call in flight per root
    /// context (Kong 3.7 and later leak a connection slot for every call but the last of
    /// several), sending from ticks only (a call made from an answer crashes every Kong from
    /// 3.4 to 3.10), every [`KONG_TICK_MS`].
    pub fn of(host: Option<Host>) -> CallRules {
        match host {
            Some(Host::Envoy) => CallRules {
                max_in_flight: None,
                send_from_answers: true,
                tick_ms: None,
            },
            Some(Host::Kong) | None => CallRules {
                max_in_flight: Some(1),
                send_from_answers: false,
                tick_ms: Some(KONG_TICK_MS),
            },
        }
    }

    /// The tick period for a configuration that flushes every `flush_interval_ms`.
    pub fn tick_ms(&self, flush_interval_ms: u64) -> u64 {
        self.tick_ms.unwrap_or(flush_interval_ms)
    }
}

/// Where the log phase finds a request's header maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maps {
    /// Captured in their header callbacks, whenever the hooks may need them.
    Captured,
    /// Read in the log phase itself, as the hooks need them: before deciding only for a
    /// header no property gives, else once an event is built
    /// ([`Stage`](event_hooks_core::needs::Stage)).
    InLogPhase,
}

/// Where an HTTP context's log phase finds the header maps. Envoy's has both (it calls the
/// filter's `on_log` as an access log handler, with the stream's maps), so on Envoy the
/// header callbacks do nothing for events and a request that matches nothing reads only what
/// deciding takes. On Kong they are captured in their callbacks (this filter has never been
/// run reading them from Kong's log phase), and so are they where `crud` may read a response
/// body (whether to read it is decided when the response headers arrive).
pub fn http_maps(host: Host, reads_response_bodies: bool) -> Maps {
    match host {
        Host::Envoy if !reads_response_bodies => Maps::InLogPhase,
        _ => Maps::Captured,
    }
}

/// Request headers as the core reads them, from the host's map: on Kong, names lowercased
/// (ngx_wasm_module keeps the client's case; Envoy's are lowercase already) and `:authority`
/// the `Host` header (ngx_wasm_module builds `:authority` from `server_name` and the port).
pub fn request_headers(host: Host, headers: &mut [(String, String)]) {
    if host != Host::Kong {
        return;
    }
    lowercase_names(headers);
    let Some(sent) = headers
        .iter()
        .find(|(name, value)| name == "host" && !value.is_empty())
        .map(|(_, value)| value.clone())
    else {
        return;
    };
    if let Some((_, authority)) = headers.iter_mut().find(|(name, _)| name == ":authority") {
        *authority = sent;
    }
}

/// Response headers as the core reads them: on Kong, names lowercased.
pub fn response_headers(host: Host, headers: &mut [(String, String)]) {
    if host == Host::Kong {
        lowercase_names(headers);
    }
}

fn lowercase_names(headers: &mut [(String, String)]) {
    for (name, _) in headers.iter_mut() {
        name.make_ascii_lowercase();
    }
}

/// The `details` of an admin answer (`send_local_response`): Envoy keeps them as the response
/// code details its access logs show; Kong makes them the status line's reason phrase
/// (`HTTP/1.1 401 event_hooks_admin`), so none are given there and nginx sends the standard
/// phrase.
pub fn local_response_details(host: Host) -> &'static str {
    match host {
        Host::Envoy => "event_hooks_admin",
        Host::Kong => "",
    }
}

/// Whether a Kong version (`3.9.1`, `3.10.0.2`) implements the proxy-wasm metrics calls.
pub fn kong_has_metrics(version: &str) -> bool {
    kong_at_least(version, KONG_METRICS_SINCE)
}

/// Whether a Kong version (`3.9.1`, `3.10.0.2`) is `since` (major, minor) or later; an
/// unknown version is taken as an older one.
pub fn kong_at_least(version: &str, since: (u32, u32)) -> bool {
    let mut parts = version
        .trim()
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= since,
        _ => false,
    }
}

/// An attempt as the host takes it: where to, and the headers.
#[derive(Debug, PartialEq, Eq)]
pub struct HostCall<'a> {
    /// Envoy: the cluster; Kong: `host:port`.
    pub upstream: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
}

/// How `host` takes `attempt`.
pub fn call(host: Host, attempt: &Attempt) -> HostCall<'_> {
    let mut headers: Vec<(&str, &str)> = attempt
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let destination = &attempt.destination;
    match host {
        Host::Envoy => HostCall {
            upstream: &destination.cluster,
            headers,
        },
        Host::Kong => {
            let scheme = if destination.tls { "https" } else { "http" };
            headers.insert(0, (":scheme", scheme));
            HostCall {
                upstream: &destination.host_port,
                headers,
            }
        }
    }
}

/// Properties read in the request headers phase: on Kong, the route and service ids (Kong's
/// host properties are answered by its Lua code, set up before the filter chain runs), those
/// of them in `wanted`.
pub fn request_properties(
    host: Host,
    properties: &dyn PropertyReader,
    wanted: Props,
) -> Properties {
    let text = |prop: Prop, path: &[&str]| {
        if wanted.has(prop) {
            properties.property(path).map(|bytes| wire::string(&bytes))
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
    properties: &dyn PropertyReader,
    wanted: Props,
) -> Properties {
    let read = |path: &[&str]| properties.property(path);
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
        // machine's name), and the request's Host header is `ngx.http_host`.
        let host_path: &[&str] = match host {
            Host::Envoy => &["request", "host"],
            Host::Kong => &["ngx", "http_host"],
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
mod tests;
