//! Everything the host holds for one VM: the virtual clock, the log, the contexts and their
//! streams, the calls in flight, shared data, metrics. It is the wasmtime store's data.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use serde_json::Value;

use crate::rules::Rules;

/// proxy-wasm statuses (ABI 0.2.1 `WasmResult`).
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const SERIALIZATION_FAILURE: i32 = 3;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    pub const UNIMPLEMENTED: i32 = 12;
}

/// A log level, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl Level {
    pub fn from_abi(level: i32) -> Option<Level> {
        Some(match level {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            5 => Level::Critical,
            _ => return None,
        })
    }

    /// How nginx (Kong) and Envoy print it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "crit",
        }
    }
}

/// Who wrote a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The filter, through `proxy_log`.
    Filter,
    /// The host itself (a refused property, a failed call, a trap).
    Host,
    /// The module's standard output (WASI `fd_write` to fd 1).
    Stdout,
    /// The module's standard error (fd 2; both hosts log it as an error).
    Stderr,
}

#[derive(Debug, Clone)]
pub struct LogLine {
    /// Virtual time, milliseconds since the start of the run.
    pub at_ms: u64,
    pub origin: Origin,
    pub level: Level,
    pub message: String,
}

impl LogLine {
    /// An error the host reports itself (not one the filter chose to log): what the "no host
    /// error" checks look for.
    pub fn is_host_error(&self) -> bool {
        matches!(self.origin, Origin::Host | Origin::Stderr) && self.level >= Level::Error
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = match self.origin {
            Origin::Filter => "filter",
            Origin::Host => "host",
            Origin::Stdout => "stdout",
            Origin::Stderr => "stderr",
        };
        write!(
            f,
            "+{}ms [{}] ({origin}) {}",
            self.at_ms,
            self.level.name(),
            self.message
        )
    }
}

/// The callback being run, which decides what a host call may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Initialize,
    ContextCreate,
    VmStart,
    Configure,
    Tick,
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
    Done,
    Delete,
    /// `on_http_call_response` (Kong: "on_dispatch_response").
    CallResponse,
    QueueReady,
}

impl Step {
    pub fn callback(self) -> &'static str {
        match self {
            Step::Initialize => "_initialize",
            Step::ContextCreate => "proxy_on_context_create",
            Step::VmStart => "proxy_on_vm_start",
            Step::Configure => "proxy_on_configure",
            Step::Tick => "proxy_on_tick",
            Step::RequestHeaders => "proxy_on_request_headers",
            Step::RequestBody => "proxy_on_request_body",
            Step::ResponseHeaders => "proxy_on_response_headers",
            Step::ResponseBody => "proxy_on_response_body",
            Step::Log => "proxy_on_log",
            Step::Done => "proxy_on_done",
            Step::Delete => "proxy_on_delete",
            Step::CallResponse => "proxy_on_http_call_response",
            Step::QueueReady => "proxy_on_queue_ready",
        }
    }
}

/// The callback in progress: its context and step.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub context: u32,
    pub step: Step,
}

/// What the upstream answered a proxied request, and how the proxy saw it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The upstream's address, `None` when no connection was made.
    pub address: Option<(String, u16)>,
    /// Envoy's response flags (e.g. 0x20, UF: upstream connection failure).
    pub flags: u64,
    /// Envoy's response code details.
    pub code_details: String,
    /// How long the upstream took, in virtual milliseconds.
    pub latency_ms: u64,
}

/// One proxied request, as the host knows it (headers, bodies, properties).
#[derive(Debug, Clone)]
pub struct Stream {
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub upstream: Upstream,
    /// Response headers as sent downstream (with `:status`), once the response phase started.
    pub response_headers: Option<Vec<(String, String)>>,
    /// The body chunk the current `on_response_body` sees.
    pub response_chunk: Option<Vec<u8>>,
    /// The request body the current `on_request_body` sees.
    pub request_chunk: Option<Vec<u8>>,
    pub source: (String, u16),
    pub request_id: String,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    /// An answer the filter sent instead of the upstream's.
    pub local_response: Option<LocalResponse>,
    pub cluster: String,
    pub route: String,
    pub service_id: String,
    pub route_id: String,
    /// What Kong Lua plugins put in `kong.ctx.shared` during the request, in the order they
    /// set it (a key set twice: the last value holds). Kong 3.6+ answers a wasm filter's
    /// `kong.ctx.shared.<key>` with `tostring` of it ([`CtxValue::tostring`]).
    pub ctx_shared: Vec<(String, CtxValue)>,
    /// Envoy: the stream's dynamic metadata, `(namespace, key, value)` in the order other
    /// filters set it ([`crate::envoy_state::metadata`]).
    pub dynamic_metadata: Vec<(String, String, Value)>,
    /// Envoy: the stream's filter state, `(key, bytes)` (another wasm filter's
    /// `set_property([name])` stores `wasm.<name>`).
    pub filter_state: Vec<(String, Vec<u8>)>,
}

/// A Lua value a Kong plugin stored in `kong.ctx.shared`.
#[derive(Debug, Clone, PartialEq)]
pub enum CtxValue {
    /// A Lua string: bytes, given as they are (a plugin stores `cjson.encode(...)` for JSON).
    String(Vec<u8>),
    /// A Lua number (a double).
    Number(f64),
    Boolean(bool),
    /// A table: `tostring` gives its address, never its content.
    Table,
}

impl CtxValue {
    /// A Lua string holding `text`.
    pub fn string(text: &str) -> CtxValue {
        CtxValue::String(text.as_bytes().to_vec())
    }

    /// LuaJIT's `tostring(value)`, what Kong's `kong.ctx.shared` namespace handler gives a
    /// wasm filter (`kong/runloop/wasm.lua`). `index`, the value's place in
    /// [`Stream::ctx_shared`], makes each table's address its own.
    pub fn tostring(&self, index: usize) -> Vec<u8> {
        match self {
            CtxValue::String(bytes) => bytes.clone(),
            CtxValue::Number(number) => lua_number(*number).into_bytes(),
            CtxValue::Boolean(value) => value.to_string().into_bytes(),
            CtxValue::Table => {
                let address = 0x7f3a_2c01_e2a8_u64.wrapping_add(0x40 * index as u64);
                format!("table: 0x{address:012x}").into_bytes()
            }
        }
    }
}

/// LuaJIT's `tostring` of a number: C's `%.14g` (`300`, `1.5`, `1e+15`, `-0`), and `inf`,
/// `-inf`, `nan`, `-nan` (the sign of a NaN shows: `0/0` is `-nan` on x86-64).
pub fn lua_number(value: f64) -> String {
    const PRECISION: i32 = 14;
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string();
    }
    if value.is_infinite() {
        return if value < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    // `%g`: the exponent of the value rounded to the precision decides the style.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exponent.unsigned_abs()
        )
    } else {
        let digits = (PRECISION - 1 - exponent).max(0) as usize;
        trim_fraction(&format!("{value:.digits$}")).to_string()
    }
}

/// `%g` drops a fraction's trailing zeros, and the point when nothing is left after it.
fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How the host took one `proxy_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// Accepted: a token was returned.
    Accepted(u32),
    /// Refused with this status (the call was not made).
    Refused(i32),
    /// The host trapped (Kong).
    Trapped(String),
}

/// One `proxy_http_call` as the filter made it.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub at_ns: u64,
    pub context: u32,
    pub step: Step,
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
    pub outcome: DispatchOutcome,
}

impl Dispatch {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The answer a call gets, delivered later on the virtual clock.
#[derive(Debug, Clone)]
pub enum CallResult {
    /// An HTTP response.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No response: the call failed. `status` is Kong's `:dispatch_status`; `log` the error
    /// line Kong writes.
    Failed { status: &'static str, log: String },
    /// The response is never delivered (Envoy, a call made from a finished stream).
    Lost,
}

/// A call waiting for its answer.
#[derive(Debug, Clone)]
pub struct Pending {
    pub token: u32,
    pub context: u32,
    pub due_ns: u64,
    pub result: CallResult,
}

/// The answer `on_http_call_response` is reading.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Headers as the host returns them in the pairs (pseudo-headers included).
    pub pairs: Vec<(String, String)>,
    /// Pseudo-headers only `proxy_get_header_map_value` sees.
    pub hidden: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The call failed (Envoy: no headers at all; Kong 3.9+: only `:dispatch_status`).
    pub failed: bool,
}

/// A metric the filter defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    /// 0 counter, 1 gauge, 2 histogram.
    pub kind: i32,
    pub value: i64,
}

/// A trap: the module stopped in a callback.
#[derive(Debug, Clone)]
pub struct TrapRecord {
    pub at_ms: u64,
    pub callback: &'static str,
    pub context: u32,
    /// The host function that trapped (`None`: the module itself, e.g. a panic).
    pub host_function: Option<String>,
    pub message: String,
}

/// The start of the message of a crash record (the worker died, not only the module).
pub const CRASH: &str = "worker process exited on signal 11";

impl TrapRecord {
    /// Whether this is a crash of the host's worker (a SIGSEGV in the host) rather than a trap
    /// of the module.
    pub fn is_crash(&self) -> bool {
        self.message.starts_with(CRASH)
    }
}

impl fmt::Display for TrapRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{}ms trap in {} (context {}), {}: {}",
            self.at_ms,
            self.callback,
            self.context,
            self.host_function.as_deref().unwrap_or("in the module"),
            self.message
        )
    }
}

/// The receiver's answer to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An HTTP status (with optional headers and body). Header names as the receiver writes
    /// them: Kong hands them to the filter so, Envoy lowercases them.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The connection is refused.
    Refuse,
    /// No answer: the call times out.
    Silence,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Status {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

/// A call as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at_ns: u64,
    /// Virtual milliseconds since the start of the run.
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    /// The `Host` header the receiver saw.
    pub authority: String,
    /// Whether the connection used TLS (Kong: `:scheme: https`; Envoy: the cluster's).
    pub tls: bool,
    pub port: u16,
    /// What the filter passed as upstream (Envoy: a cluster; Kong: `host:port`).
    pub upstream: String,
    /// Lowercase names; pseudo-headers removed, `host` added as the receiver sees it.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub reply: Reply,
    /// The context and step the call was made from.
    pub context: u32,
    pub step: Step,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// How the receiver answers, call after call.
#[derive(Debug, Clone, Default)]
pub struct ReceiverPlan {
    /// Answers in order of arrival; 200 once used up.
    pub replies: VecDeque<Reply>,
    /// How long the receiver takes to answer (virtual milliseconds).
    pub delay_ms: u64,
}

/// A shared queue (Envoy).
#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub name: String,
    pub items: VecDeque<Vec<u8>>,
}

/// Options a run starts with.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules: Rules,
    /// The VM's environment (WASI `environ_get`).
    pub env: Vec<(String, String)>,
    /// Envoy: the clusters that exist. Kong: ignored.
    pub clusters: Vec<String>,
    /// Kong: the host names that resolve (all to the receiver).
    pub resolvable: Vec<String>,
    /// Kong: the receiver's plain-HTTP and TLS ports.
    pub receiver_ports: (u16, u16),
    /// Kong: the `shm_kv` zones configured (`nginx_wasm_shm_kv_<name>`; `*` for
    /// `nginx_wasm_shm_kv`).
    pub shm_zones: Vec<String>,
    /// Kong: whether a failed call is logged (`proxy_wasm_log_dispatch_errors`, default on).
    pub log_dispatch_errors: bool,
    /// The filter's name (Kong: the file's base name).
    pub filter_name: String,
    /// Virtual wall-clock time at the start of the run, unix nanoseconds.
    pub epoch_ns: u64,
    /// VM configuration bytes.
    pub vm_config: Vec<u8>,
    /// Kong: nginx's `worker_connections` (default 1024). Every connection slot a call leaks
    /// (Kong 3.7+, several calls in flight per root context) takes one for good; a client
    /// request needs two (downstream and upstream), a call from the root context one more for
    /// its fake request.
    pub worker_connections: usize,
    /// Kong: the proxy server's `server_name` (Kong's is `kong`): with the port, the
    /// `:authority` filters see.
    pub server_name: String,
    /// Kong: the port the proxy listens on (`proxy_listen`, default 8000).
    pub listen_port: u16,
    /// Where the filter is attached (Envoy only: Kong has no access logger).
    pub attachment: Attachment,
    /// Envoy: the plugin's `root_id` (`config.root_id`), what `plugin_root_id` answers.
    pub root_id: String,
}

/// Where Envoy runs the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attachment {
    /// `envoy.filters.http.wasm`: an HTTP context per request, its callbacks through every
    /// phase.
    #[default]
    HttpFilter,
    /// `envoy.access_loggers.wasm`: no HTTP context; once a request is over, the root
    /// context's `on_log` (`Wasm::log` -> `Context::log` of `getRootContext`), with the
    /// request's header maps and stream info readable for the length of that call.
    AccessLogger,
}

/// The `root_id` [`Options::access_logger`] gives the plugin (the one the e2e tests and
/// `docs/src/hosts/envoy.md` use: the filter takes a `root_id` ending with `access_log` for an
/// access logger's).
pub const ACCESS_LOG_ROOT_ID: &str = "event_hooks_access_log";

impl Options {
    pub fn new(rules: Rules) -> Options {
        Options {
            rules,
            env: Vec::new(),
            clusters: vec!["receiver".to_string()],
            resolvable: vec!["receiver".to_string()],
            receiver_ports: (80, 443),
            shm_zones: vec!["event_hooks".to_string()],
            log_dispatch_errors: true,
            filter_name: "event_hooks".to_string(),
            // 2026-01-01T00:00:00Z
            epoch_ns: 1_767_225_600_000_000_000,
            vm_config: Vec::new(),
            worker_connections: 1024,
            server_name: "kong".to_string(),
            listen_port: 8000,
            attachment: Attachment::HttpFilter,
            root_id: "event_hooks".to_string(),
        }
    }

    /// Envoy's rules, the filter attached as a wasm access logger whose plugin's `root_id` is
    /// [`ACCESS_LOG_ROOT_ID`].
    pub fn access_logger() -> Options {
        Options {
            attachment: Attachment::AccessLogger,
            root_id: ACCESS_LOG_ROOT_ID.to_string(),
            ..Options::new(Rules::Envoy)
        }
    }
}

/// The store's data.
pub struct HostState {
    pub options: Options,
    pub now_ns: u64,
    pub logs: Vec<LogLine>,
    pub traps: Vec<TrapRecord>,
    pub frame: Option<Frame>,
    pub root_context: u32,
    pub plugin_config: Vec<u8>,
    pub streams: HashMap<u32, Stream>,
    /// Kong: contexts whose request is over (properties are refused afterwards).
    pub tick_period_ms: u32,
    pub next_tick_ns: Option<u64>,
    pub dispatches: Vec<Dispatch>,
    pub received: Vec<Received>,
    pub pending: Vec<Pending>,
    pub next_token: u32,
    pub answer: Option<Answer>,
    pub plan: ReceiverPlan,
    pub shared: BTreeMap<String, (Vec<u8>, u32)>,
    pub next_cas: u32,
    pub metrics: Vec<Metric>,
    pub queues: Vec<Queue>,
    /// Queues that received items, for `on_queue_ready`.
    pub ready_queues: Vec<u32>,
    pub random_state: u64,
    /// The host call a trap came from, with its message, set by the host function.
    pub host_trap: Option<String>,
    /// The last host function the module called.
    pub last_host_call: String,
    /// Every host function the module called, by name, with how often.
    pub calls_made: BTreeMap<String, u64>,
    /// The same by the callback they were made in: `"proxy_on_log proxy_get_property"`.
    pub calls_by_step: BTreeMap<String, u64>,
    /// `proxy_done` was called.
    pub done_called: bool,
    /// Kong 3.7+: connection slots leaked by calls that ended while another call of the same
    /// root context was pending.
    pub leaked_slots: u64,
    /// Envoy's access logger: the stream (its HTTP context number, though no context was
    /// created for it) whose entry the root context's `on_log` is writing, for the length of
    /// that call only (Envoy's `Context::log` sets `access_log_phase_` and the stream's header
    /// maps and stream info, calls `onLog`, then clears them).
    pub access_log: Option<u32>,
    /// How many times each callback ran, by name and whether in the root context.
    pub callbacks: BTreeMap<(&'static str, bool), u64>,
}

impl HostState {
    pub fn new(options: Options) -> HostState {
        HostState {
            now_ns: options.epoch_ns,
            options,
            logs: Vec::new(),
            traps: Vec::new(),
            frame: None,
            root_context: 1,
            plugin_config: Vec::new(),
            streams: HashMap::new(),
            tick_period_ms: 0,
            next_tick_ns: None,
            dispatches: Vec::new(),
            received: Vec::new(),
            pending: Vec::new(),
            next_token: 0,
            answer: None,
            plan: ReceiverPlan::default(),
            shared: BTreeMap::new(),
            next_cas: 0,
            metrics: Vec::new(),
            queues: Vec::new(),
            ready_queues: Vec::new(),
            random_state: 0x9e37_79b9_7f4a_7c15,
            host_trap: None,
            last_host_call: String::new(),
            calls_made: BTreeMap::new(),
            calls_by_step: BTreeMap::new(),
            done_called: false,
            leaked_slots: 0,
            access_log: None,
            callbacks: BTreeMap::new(),
        }
    }

    pub fn rules(&self) -> Rules {
        self.options.rules
    }

    /// Virtual milliseconds since the start of the run.
    pub fn elapsed_ms(&self) -> u64 {
        (self.now_ns - self.options.epoch_ns) / 1_000_000
    }

    pub fn log(&mut self, origin: Origin, level: Level, message: impl Into<String>) {
        let at_ms = self.elapsed_ms();
        self.logs.push(LogLine {
            at_ms,
            origin,
            level,
            message: message.into(),
        });
    }

    /// An error line written by the host itself.
    pub fn host_error(&mut self, message: impl Into<String>) {
        self.log(Origin::Host, Level::Error, message);
    }

    pub fn step(&self) -> Option<Step> {
        self.frame.map(|frame| frame.step)
    }

    pub fn context(&self) -> u32 {
        self.frame.map_or(self.root_context, |frame| frame.context)
    }

    pub fn in_root(&self) -> bool {
        self.context() == self.root_context
    }

    /// The stream of the current context, if it is an HTTP context.
    pub fn stream(&self) -> Option<&Stream> {
        self.streams.get(&self.context())
    }

    /// The stream whose headers and properties reads see, with its HTTP context's number:
    /// the current context's, or, in the root context during an access log entry (Envoy's
    /// access logger, [`HostState::access_log`]), the logged stream's. Writes never reach the
    /// logged stream: Envoy's `getMap` and `getRequestStreamInfo` leave the access log's out.
    pub fn readable_stream(&self) -> Option<(u32, &Stream)> {
        let context = match self.access_log {
            Some(logged) if self.in_root() && self.step() == Some(Step::Log) => logged,
            _ => self.context(),
        };
        self.streams.get(&context).map(|stream| (context, stream))
    }

    /// Envoy's `access_log_phase_`: an `on_log` (an HTTP filter's, which Envoy also calls as
    /// an access log handler, or an access logger's root context's), where a header map that
    /// is not there is NotFound rather than BadArgument.
    pub fn access_log_phase(&self) -> bool {
        !self.rules().is_kong() && self.step() == Some(Step::Log)
    }

    pub fn stream_mut(&mut self) -> Option<&mut Stream> {
        let context = self.context();
        self.streams.get_mut(&context)
    }

    /// xorshift64*: deterministic "randomness" for `random_get`.
    pub fn random(&mut self) -> u64 {
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn next_cas(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.next_cas
    }

    /// Kong: the worker's connection slots in use besides the client's: the leaked ones, and
    /// for each call in flight its socket's connection (and the fake request's one for a call
    /// of the root context).
    pub fn connections_in_use(&self) -> u64 {
        let root = self.root_context;
        let calls: u64 = self
            .pending
            .iter()
            .filter(|pending| !matches!(pending.result, CallResult::Lost))
            .map(|pending| if pending.context == root { 2 } else { 1 })
            .sum();
        self.leaked_slots + calls
    }

    /// nginx's alert when no connection slot is free (`ngx_get_connection`).
    pub fn out_of_connections(&mut self) {
        let message = format!(
            "{} worker_connections are not enough",
            self.options.worker_connections
        );
        self.log(Origin::Host, Level::Critical, message);
    }

    /// The receiver's next answer.
    pub fn next_reply(&mut self) -> Reply {
        self.plan
            .replies
            .pop_front()
            .unwrap_or_else(|| Reply::status(200))
    }
}

/// The value of header `name` (case-insensitive) in a list of pairs.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_prints_numbers_with_percent_14g() {
        for (number, printed) in [
            (300.0, "300"),
            (-7.0, "-7"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (123_456_789_012_345.0, "1.2345678901234e+14"),
            (99_999_999_999_999.0, "99999999999999"),
            (1e15, "1e+15"),
            (1e300, "1e+300"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (9_007_199_254_740_993.0, "9.007199254741e+15"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-f64::NAN, "-nan"),
        ] {
            assert_eq!(lua_number(number), printed, "{number:?}");
        }
    }

    #[test]
    fn tostring_is_what_kong_hands_a_filter() {
        let json = r#"{"payments.refund-issued":{"order_id":"42"}}"#;
        assert_eq!(CtxValue::string(json).tostring(0), json.as_bytes());
        assert_eq!(CtxValue::Boolean(true).tostring(0), b"true");
        assert_eq!(CtxValue::Number(300.0).tostring(0), b"300");
        let table = String::from_utf8(CtxValue::Table.tostring(0)).unwrap_or_default();
        assert!(table.starts_with("table: 0x"), "{table}");
        assert_ne!(CtxValue::Table.tostring(0), CtxValue::Table.tostring(1));
    }
}
