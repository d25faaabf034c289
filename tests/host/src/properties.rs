//! `proxy_get_property` as each host answers it.
//!
//! Envoy (CEL attributes): integers, durations and timestamps are 8-byte little-endian
//! integers (nanoseconds for times), addresses are `ip:port`, request properties are missing
//! (NotFound) outside a stream, but for an access logger's root context during `on_log`, which
//! reads the logged request's.
//!
//! Kong (ngx_wasm_module `ngx_proxy_wasm_properties.c`, table `pw2ngx`): every value is a
//! string, most are nginx variables: `response.code` is `$status` (`"500"`),
//! `request.duration` is `$request_time` (`"0.012"`, seconds with milliseconds),
//! `request.time` is `"%T.%03M"` of the request's start, `upstream.address` is the IP alone
//! (`upstream.port` separately), `source.address` is `$remote_addr`, `request.host` is nginx's
//! `$hostname` (the machine's name, not the Host header). `response.code_details`,
//! `response.flags`, `node`, `cluster_name`, `route_name`, ... log `"X" property not supported`
//! at `[error]` and answer NotFound. Outside a request (the root context), an nginx variable or
//! a `kong.*` property logs `cannot get ngx (host) properties outside of a request` at `[error]`
//! and answers InternalFailure (Kong 3.10: any dotted property, "cannot get scoped properties
//! outside of a request"). Before 3.10, the properties with a getter of their own
//! (`request.time`, `request.id`, `request.referer`, `request.headers.*`, `response.headers.*`,
//! `upstream.address`, `upstream.port`, `connection.id`) dereference the missing request in the
//! root context: the worker dies. `plugin_name` read in the root context looks the filter up in
//! a filter chain the root context does not have: the worker dies too (on every version; in
//! `on_tick` it works from 3.10). `kong.*` properties come from Kong's Lua
//! (`kong/runloop/wasm.lua`, Kong 3.6+), `kong.ctx.shared.<key>` among them ([`KONG_CTX_SHARED`]);
//! before 3.6 a `kong.*` property is not found.

use crate::envoy_state;
use crate::state::{HostState, Level, Origin, Step, Stream, header};

/// A property's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Value(Vec<u8>),
    NotFound,
    /// InternalFailure (10).
    Failure,
    /// SerializationFailure (3): Envoy cannot give the value as bytes.
    SerializationFailure,
    /// Kong's worker dies reading it (SIGSEGV in the host's `function`).
    Crash {
        function: &'static str,
        why: &'static str,
    },
}

/// The Kong node's `$hostname`.
pub const KONG_HOSTNAME: &str = "kong-node-1";
/// The Kong worker's `$pid`.
pub const KONG_PID: &str = "4242";
pub const KONG_NODE_ID: &str = "4d1b4c6c-1a33-4ad8-9a4e-3cf0b9bd4e11";

fn text(value: impl Into<String>) -> Answer {
    Answer::Value(value.into().into_bytes())
}

fn integer(value: u64) -> Answer {
    Answer::Value(value.to_le_bytes().to_vec())
}

fn split_path(stream: &Stream) -> (String, Option<String>) {
    let path = header(&stream.request_headers, ":path").unwrap_or("/");
    match path.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (path.to_string(), None),
    }
}

/// The response status the proxy is sending (the local response, else the upstream's), once
/// the response phase has started.
fn status(stream: &Stream) -> Option<u16> {
    stream.response_headers.as_ref()?;
    Some(
        stream
            .local_response
            .as_ref()
            .map_or(stream.upstream.status, |local| local.status),
    )
}

fn response_header<'a>(stream: &'a Stream, name: &str) -> Option<&'a str> {
    header(stream.response_headers.as_ref()?, name)
}

/// Answers `path` (segments joined by dots) for the current context.
pub fn get(state: &mut HostState, path: &str) -> Answer {
    if state.rules().is_kong() {
        kong(state, path)
    } else {
        envoy(state, path)
    }
}

/// Envoy: the plugin's own properties anywhere (`plugin_root_id` is the plugin's `root_id`,
/// readable from `on_configure` on), the request's in a stream's context, and in an access
/// logger's root context during `on_log` the logged request's (`Context::findValue` reads the
/// access log's stream info and header maps then); elsewhere in the root context, not found.
fn envoy(state: &mut HostState, path: &str) -> Answer {
    match path {
        "plugin_name" | "plugin_vm_id" => return text(state.options.filter_name.clone()),
        "plugin_root_id" => return text(state.options.root_id.clone()),
        _ => {}
    }
    let Some((context, stream)) = state.readable_stream() else {
        return Answer::NotFound;
    };
    if let Some(name) = path.strip_prefix("request.headers.") {
        return header(&stream.request_headers, name).map_or(Answer::NotFound, text);
    }
    if let Some(name) = path.strip_prefix("response.headers.") {
        return response_header(stream, name).map_or(Answer::NotFound, text);
    }
    let filter_state = |key: &str| {
        stream
            .filter_state
            .iter()
            .find(|(name, _)| name == key)
            .map_or(Answer::NotFound, |(_, bytes)| Answer::Value(bytes.clone()))
    };
    if let Some(key) = path.strip_prefix("filter_state.") {
        return filter_state(key);
    }
    let (url_path, query) = split_path(stream);
    let request = |name: &str| header(&stream.request_headers, name).map_or(Answer::NotFound, text);
    match path {
        "request.path" => request(":path"),
        "request.url_path" => text(url_path),
        "request.query" => text(query.unwrap_or_default()),
        "request.host" => request(":authority"),
        "request.scheme" => request(":scheme"),
        "request.method" => request(":method"),
        "request.id" => request("x-request-id"),
        "request.useragent" => request("user-agent"),
        "request.referer" => request("referer"),
        "request.protocol" => text("HTTP/1.1"),
        "request.time" => integer(stream.start_ns),
        "request.duration" => match stream.end_ns {
            Some(end) => integer(end.saturating_sub(stream.start_ns)),
            None => Answer::NotFound,
        },
        "request.size" => integer(stream.request_body.len() as u64),
        "response.code" => status(stream).map_or(Answer::NotFound, |code| integer(u64::from(code))),
        "response.code_details" if stream.response_headers.is_some() => {
            let details = match &stream.local_response {
                Some(local) => local.details.clone(),
                None => stream.upstream.code_details.clone(),
            };
            text(details)
        }
        "response.flags" if stream.response_headers.is_some() => integer(stream.upstream.flags),
        "response.size" if stream.response_headers.is_some() => {
            integer(stream.upstream.body.len() as u64)
        }
        "upstream.address" => match &stream.upstream.address {
            Some((ip, port)) => text(format!("{ip}:{port}")),
            None => Answer::NotFound,
        },
        "upstream.port" => match &stream.upstream.address {
            Some((_, port)) => integer(u64::from(*port)),
            None => Answer::NotFound,
        },
        "source.address" => text(format!("{}:{}", stream.source.0, stream.source.1)),
        "source.port" => integer(u64::from(stream.source.1)),
        "destination.address" => text("127.0.0.1:8000"),
        "destination.port" => integer(8000),
        "xds.cluster_name" => text(stream.cluster.clone()),
        "xds.route_name" => text(stream.route.clone()),
        "connection.id" => integer(u64::from(context)),
        "metadata" => Answer::Value(envoy_state::metadata(&stream.dynamic_metadata)),
        "filter_state" => Answer::SerializationFailure,
        // An unknown top-level name: `findValue` looks for the filter state `wasm.<name>`.
        name if !name.contains('.') => filter_state(&format!("wasm.{name}")),
        _ => Answer::NotFound,
    }
}

/// nginx's `%T.%03M`: seconds, a dot, three digits of milliseconds.
fn seconds_millis(ns: u64) -> String {
    let ms = ns / 1_000_000;
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Properties ngx_wasm_module answers without a request: no rctx check.
const KONG_NOT_SUPPORTED: &[&str] = &[
    "response.code_details",
    "response.flags",
    "connection.termination_details",
    "node",
    "cluster_name",
    "cluster_metadata",
    "listener_direction",
    "listener_metadata",
    "route_name",
    "route_metadata",
    "upstream_host_metadata",
];

const KONG_NYI: &[&str] = &[
    "response.grpc_status",
    "response.trailers",
    "upstream.tls_version",
    "upstream.subject_local_certificate",
    "upstream.subject_peer_certificate",
    "upstream.dns_san_local_certificate",
    "upstream.dns_san_peer_certificate",
    "upstream.uri_san_local_certificate",
    "upstream.uri_san_peer_certificate",
    "upstream.sha256_peer_certificate_digest",
    "upstream.local_address",
    "upstream.transport_failure_reason",
    "connection.subject_peer_certificate",
    "connection.dns_san_local_certificate",
    "connection.dns_san_peer_certificate",
    "connection.uri_san_local_certificate",
    "connection.uri_san_peer_certificate",
    "connection.sha256_peer_certificate_digest",
    "plugin_vm_id",
];

/// Properties mapped to nginx variables or to getters that need the request.
const KONG_REQUEST_SCOPED: &[&str] = &[
    "request.path",
    "request.url_path",
    "request.host",
    "request.scheme",
    "request.method",
    "request.useragent",
    "request.protocol",
    "request.query",
    "request.id",
    "request.referer",
    "request.time",
    "request.duration",
    "request.size",
    "request.total_size",
    "response.code",
    "response.size",
    "response.total_size",
    "upstream.address",
    "upstream.port",
    "destination.address",
    "destination.port",
    "connection.requested_server_name",
    "connection.tls_version",
    "connection.subject_local_certificate",
    "connection.id",
    "connection.mtls",
    "source.address",
    "source.port",
];

/// Properties whose getter reads the request context itself (no "outside of a request"
/// check before a376e67): read from the root context, the worker dies.
const KONG_ROOT_CRASHES: &[(&str, &str)] = &[
    ("request.time", "get_request_time"),
    ("request.id", "get_map_value"),
    ("request.referer", "get_map_value"),
    ("upstream.address", "get_upstream_address"),
    ("upstream.port", "get_upstream_port"),
    ("connection.id", "get_connection_id"),
];

/// Kong 3.6+'s property namespace over `kong.ctx.shared` (`kong/runloop/wasm.lua`): the rest
/// of the path, dots included, is the key (`kong/runloop/wasm/properties.lua`), its answer
/// `tostring` of the Lua value: a string as it is, a number as Lua prints it, a table as
/// `table: 0x...`; a nil value is not found.
const KONG_CTX_SHARED: &str = "kong.ctx.shared.";

fn kong(state: &mut HostState, path: &str) -> Answer {
    let Some(version) = state.rules().kong_version() else {
        return Answer::NotFound;
    };
    let in_request = state.stream().is_some();
    if !in_request && version.catches_scoped_properties() && path.contains('.') {
        // a376e67 (a31f6d87): every scoped property, before any lookup.
        state.log(
            Origin::Host,
            Level::Error,
            "[wasm] cannot get scoped properties outside of a request",
        );
        return Answer::Failure;
    }
    if !in_request {
        let getter = KONG_ROOT_CRASHES
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, getter)| *getter)
            .or_else(|| {
                (path.starts_with("request.headers.") || path.starts_with("response.headers."))
                    .then_some("get_map_value")
            });
        if let Some(function) = getter {
            return Answer::Crash {
                function,
                why: "null request context in the root context",
            };
        }
    }
    match path {
        "plugin_name" => {
            let readable_in_tick =
                state.step() == Some(Step::Tick) && version.plugin_name_in_tick();
            if !(in_request || readable_in_tick) {
                // get_filter_name: `pwctx->pwexecs` is empty in the root context.
                return Answer::Crash {
                    function: "get_filter_name",
                    why: "the root context has no filter chain",
                };
            }
            return text(state.options.filter_name.clone());
        }
        "plugin_root_id" => return text("0"),
        _ => {}
    }
    if KONG_NOT_SUPPORTED.contains(&path) {
        state.log(
            Origin::Host,
            Level::Error,
            format!("[wasm] \"{path}\" property not supported"),
        );
        return Answer::NotFound;
    }
    if KONG_NYI.contains(&path) {
        // NGX_LOG_WASM_NYI is NGX_LOG_ALERT.
        state.log(
            Origin::Host,
            Level::Critical,
            format!("[wasm] NYI - \"{path}\" property"),
        );
        return Answer::NotFound;
    }
    let ngx_variable = path.starts_with("ngx.")
        || KONG_REQUEST_SCOPED.contains(&path)
        || path.starts_with("request.headers.")
        || path.starts_with("response.headers.");
    let kong_property = path.starts_with("kong.");
    if !ngx_variable && !kong_property {
        // Neither mapped nor in a namespace (e.g. `xds.cluster_name`): not found, silently.
        return Answer::NotFound;
    }
    let now = state.now_ns;
    let Some(stream) = state.stream().cloned() else {
        let what = if kong_property { "host" } else { "ngx" };
        state.log(
            Origin::Host,
            Level::Error,
            format!("[wasm] cannot get {what} properties outside of a request"),
        );
        return Answer::Failure;
    };
    if kong_property {
        if !version.has_kong_properties() {
            return Answer::NotFound;
        }
        if let Some(key) = path.strip_prefix(KONG_CTX_SHARED) {
            // The namespace handler: `tostring(kong.ctx.shared[key])`, not found when nil.
            return stream
                .ctx_shared
                .iter()
                .enumerate()
                .rev()
                .find(|(_, (name, _))| name == key)
                .map_or(Answer::NotFound, |(index, (_, value))| {
                    Answer::Value(value.tostring(index))
                });
        }
        return match path {
            "kong.version" => text(version.to_string()),
            "kong.node.id" => text(KONG_NODE_ID),
            "kong.client.protocol" => text("http"),
            "kong.nginx.subsystem" => text("http"),
            "kong.request.port" => text(state.options.listen_port.to_string()),
            "kong.service_id" if !stream.service_id.is_empty() => text(stream.service_id.clone()),
            "kong.route_id" if !stream.route_id.is_empty() => text(stream.route_id.clone()),
            "kong.service_name" if version.has_kong_names() => text(stream.cluster.clone()),
            "kong.route_name" if version.has_kong_names() => text(stream.route.clone()),
            _ => Answer::NotFound,
        };
    }
    if let Some(name) = path.strip_prefix("request.headers.") {
        return header(&stream.request_headers, name).map_or(Answer::NotFound, text);
    }
    if let Some(name) = path.strip_prefix("response.headers.") {
        return response_header(&stream, name).map_or(Answer::NotFound, text);
    }
    let variable = match path {
        "request.path" => "request_uri",
        "request.url_path" => "uri",
        "request.host" => "hostname",
        "request.scheme" => "scheme",
        "request.method" => "request_method",
        "request.useragent" => "http_user_agent",
        "request.protocol" => "server_protocol",
        "request.query" => "args",
        "request.duration" => "request_time",
        "request.size" => "content_length",
        "request.total_size" => "request_length",
        "response.code" => "status",
        "response.size" => "body_bytes_sent",
        "response.total_size" => "bytes_sent",
        "source.address" => "remote_addr",
        "source.port" => "remote_port",
        "destination.address" => "proxy_protocol_addr",
        "destination.port" => "proxy_protocol_port",
        "connection.requested_server_name" => "ssl_server_name",
        "connection.tls_version" => "ssl_protocol",
        "connection.subject_local_certificate" => "ssl_client_s_dn",
        "request.id" => {
            return header(&stream.request_headers, "x-request-id").map_or(Answer::NotFound, text);
        }
        "request.referer" => {
            return header(&stream.request_headers, "referer").map_or(Answer::NotFound, text);
        }
        "request.time" => return text(seconds_millis(stream.start_ns)),
        "upstream.address" => {
            return stream
                .upstream
                .address
                .as_ref()
                .filter(|_| stream.local_response.is_none())
                .map_or(Answer::NotFound, |(ip, _)| text(ip.clone()));
        }
        "upstream.port" => {
            return stream
                .upstream
                .address
                .as_ref()
                .filter(|_| stream.local_response.is_none())
                .map_or(Answer::NotFound, |(_, port)| text(port.to_string()));
        }
        "connection.id" => return text(state.context().to_string()),
        "connection.mtls" => return text("false"),
        other => other.strip_prefix("ngx.").unwrap_or(other),
    };
    ngx_variable_value(state, &stream, variable, now).map_or(Answer::NotFound, text)
}

/// nginx's `$host`: the Host header's host lowercased, without its port (an IPv6 literal keeps
/// its brackets); the server name without one.
fn ngx_host(stream: &Stream, server_name: &str) -> String {
    let host = header(&stream.request_headers, "host").unwrap_or("");
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split(':').next().unwrap_or("")
    };
    if name.is_empty() {
        server_name.to_string()
    } else {
        name.to_ascii_lowercase()
    }
}

/// An nginx variable of the request (`None`: not found).
fn ngx_variable_value(
    state: &HostState,
    stream: &Stream,
    name: &str,
    now_ns: u64,
) -> Option<String> {
    let (uri, args) = split_path(stream);
    if let Some(header_name) = name.strip_prefix("http_") {
        let header_name = header_name.replace('_', "-");
        return header(&stream.request_headers, &header_name).map(str::to_string);
    }
    Some(match name {
        "pid" => KONG_PID.to_string(),
        "hostname" => KONG_HOSTNAME.to_string(),
        "request_uri" => header(&stream.request_headers, ":path")?.to_string(),
        "uri" => uri,
        "args" | "query_string" => args?,
        "scheme" => header(&stream.request_headers, ":scheme")
            .unwrap_or("http")
            .to_string(),
        "request_method" => header(&stream.request_headers, ":method")?.to_string(),
        "server_protocol" => "HTTP/1.1".to_string(),
        "host" => ngx_host(stream, &state.options.server_name),
        "nginx_version" => state.rules().kong_version()?.nginx_version().to_string(),
        "request_time" => seconds_millis(
            stream
                .end_ns
                .unwrap_or(now_ns)
                .saturating_sub(stream.start_ns),
        ),
        "content_length" => header(&stream.request_headers, "content-length")?.to_string(),
        "request_length" => (stream.request_body.len() + 100).to_string(),
        // `$status` before the response: "000".
        "status" => format!("{:03}", status(stream).unwrap_or(0)),
        "body_bytes_sent" => stream.upstream.body.len().to_string(),
        "bytes_sent" => (stream.upstream.body.len() + 150).to_string(),
        "remote_addr" => stream.source.0.clone(),
        "remote_port" => stream.source.1.to_string(),
        "upstream_addr" => {
            let (ip, port) = stream.upstream.address.as_ref()?;
            format!("{ip}:{port}")
        }
        "upstream_status" => stream.upstream.status.to_string(),
        "server_port" => state.options.listen_port.to_string(),
        "server_name" => state.options.server_name.clone(),
        "server_addr" => "127.0.0.1".to_string(),
        "https" => String::new(),
        _ => return None,
    })
}
