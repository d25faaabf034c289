//! Drives a module like a proxy does: VM start and configuration, HTTP streams through every
//! phase, ticks at the period the filter asked for, answers to its HTTP calls, all on a virtual
//! clock.
//!
//! Order of callbacks, per host:
//! * Envoy: request headers (end of stream when there is no body), request body, response
//!   headers, response body (only when there is one), then `on_log`, `on_done`, `on_delete`.
//!   A call an HTTP context made is cancelled when its stream ends; one made from `on_log` is
//!   sent but never answered.
//! * Envoy with the filter as a wasm access logger ([`Options::access_logger`]): no HTTP
//!   context at all; once the response is sent, the root context's `on_log`, during which it
//!   reads that request's header maps and properties ([`HostState::readable_stream`]).
//!   Ticks, calls and their answers as for the HTTP filter.
//! * Kong (ngx_wasm_module): request and response header callbacks always get
//!   `end_of_stream = false`; `on_response_body` always runs (with end of stream on the last
//!   chunk, even an empty one); the log phase calls `on_done` then `on_log`
//!   (`ngx_proxy_wasm_on_log`), then `on_delete`. A request that made a call waits for its
//!   answer. Kong never calls the root context's `on_done`.
//!
//! Headers: Envoy lowercases every name (request, response, a call's answer); Kong keeps them as
//! the sender wrote them and writes its own as nginx does (`Content-Length`, `Date`,
//! `Server`); lookups by name are case-insensitive on both. Kong's `:authority` is
//! `server_name:port` ([`Options::server_name`], [`Options::listen_port`]); the client's Host
//! is a `Host` header. Kong's connection slots are counted ([`Options::worker_connections`]):
//! slots leaked by parallel calls (3.7+) end in 502s for clients.
//!
//! After a trap the VM is dead for the rest of the run (Envoy fails open without the filter;
//! Kong would start a fresh instance on the next request): every later callback is skipped,
//! and the trap is on record for the tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use wasmtime::{Config, Engine, Extern, Instance, Linker, Module, Store, Val};

use crate::abi;
use crate::rules::Rules;
use crate::state::{
    Attachment, CallResult, CtxValue, Frame, HostState, Level, LocalResponse, Options, Origin,
    Received, Reply, Step, Stream, TrapRecord, Upstream, header,
};
use crate::wasi;

/// A compiled module, ready to be instantiated any number of times.
pub struct Filter {
    engine: Engine,
    module: Module,
}

/// Where `make build` puts the filter.
pub fn filter_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    std::env::var_os("EVENT_HOOKS_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/wasm32-wasip1/release/event_hooks.wasm"))
}

fn engine() -> Result<Engine, String> {
    let config = Config::new();
    Engine::new(&config).map_err(|e| format!("wasmtime: {e}"))
}

impl Filter {
    /// Compiles a module from its bytes (binary or WAT text).
    pub fn new(bytes: &[u8]) -> Result<Filter, String> {
        let engine = engine()?;
        let module = Module::new(&engine, bytes).map_err(|e| format!("compiling: {e:#}"))?;
        Ok(Filter { engine, module })
    }

    pub fn load(path: &Path) -> Result<Filter, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{}: {e} (build it first: make build)", path.display()))?;
        Filter::new(&bytes)
    }

    /// The real filter, `target/wasm32-wasip1/release/event_hooks.wasm`, compiled once per
    /// test process.
    pub fn event_hooks() -> Result<&'static Filter, String> {
        static FILTER: OnceLock<Result<Filter, String>> = OnceLock::new();
        FILTER
            .get_or_init(|| Filter::load(&filter_path()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `(module, name)` of every import.
    pub fn imports(&self) -> Vec<(String, String)> {
        self.module
            .imports()
            .map(|import| (import.module().to_string(), import.name().to_string()))
            .collect()
    }
}

/// One proxied request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authority: String,
    pub scheme: String,
    /// Names as the client wrote them (Envoy lowercases them, Kong keeps them). The `Host`
    /// header is [`Request::authority`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub upstream: Upstream,
    /// The client's address.
    pub source: (String, u16),
    /// Envoy: the cluster and route the request took; Kong: the service and route names.
    pub cluster: String,
    pub route: String,
    /// Kong: what Lua plugins put in `kong.ctx.shared` before the filter's log phase
    /// ([`Stream::ctx_shared`]); Envoy has no such thing and ignores it.
    pub ctx_shared: Vec<(String, CtxValue)>,
    /// Envoy: what other filters set in the stream's dynamic metadata and filter state before
    /// the filter's log phase ([`Stream::dynamic_metadata`], [`Stream::filter_state`]); Kong
    /// has neither and ignores them.
    pub dynamic_metadata: Vec<(String, String, Value)>,
    pub filter_state: Vec<(String, Vec<u8>)>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request {
            method: "GET".to_string(),
            path: path.to_string(),
            authority: "localhost".to_string(),
            scheme: "http".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            upstream: Upstream {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
                address: Some(("10.0.0.2".to_string(), 8080)),
                flags: 0,
                code_details: "via_upstream".to_string(),
                latency_ms: 1,
            },
            source: ("10.0.0.1".to_string(), 53_412),
            cluster: "upstream".to_string(),
            route: "default".to_string(),
            ctx_shared: Vec::new(),
            dynamic_metadata: Vec::new(),
            filter_state: Vec::new(),
        }
    }

    /// Envoy: a filter sets `key` of dynamic metadata namespace `namespace` during the request
    /// (a Lua filter's `dynamicMetadata():set(namespace, key, value)`).
    pub fn dynamic_metadata(mut self, namespace: &str, key: &str, value: Value) -> Request {
        self.dynamic_metadata
            .push((namespace.to_string(), key.to_string(), value));
        self
    }

    /// Envoy: another wasm filter calls `set_property([name], bytes)` during the request
    /// (Envoy keeps the bytes in the filter state under `wasm.<name>`; a second call replaces
    /// them).
    pub fn wasm_property(mut self, name: &str, bytes: &[u8]) -> Request {
        let key = format!("wasm.{name}");
        self.filter_state.retain(|(other, _)| *other != key);
        self.filter_state.push((key, bytes.to_vec()));
        self
    }

    /// Kong: a Lua plugin sets `kong.ctx.shared[key] = value` during the request.
    pub fn ctx_shared(mut self, key: &str, value: CtxValue) -> Request {
        self.ctx_shared.push((key.to_string(), value));
        self
    }

    pub fn method(mut self, method: &str) -> Request {
        self.method = method.to_string();
        self
    }

    /// A request header, its name as the client writes it.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> Request {
        self.body = body.as_bytes().to_vec();
        self
    }

    /// The upstream answers with this status.
    pub fn status(mut self, status: u16) -> Request {
        self.upstream.status = status;
        self
    }

    /// A header of the upstream's response, its name as the upstream writes it.
    pub fn response_header(mut self, name: &str, value: &str) -> Request {
        self.upstream
            .headers
            .push((name.to_string(), value.to_string()));
        self
    }

    pub fn response_body(mut self, body: &str) -> Request {
        self.upstream.body = body.as_bytes().to_vec();
        self
    }
}

/// What became of a request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The HTTP context the filter saw; 0 when there was none: the request never reached the
    /// filter (Kong out of connection slots), or Envoy ran the filter as an access logger
    /// (only its root context saw the request, in `on_log`).
    pub context: u32,
    /// The status the client got.
    pub status: u16,
    /// The status line's reason phrase the client got (Kong: a local response's `details` when
    /// not empty).
    pub reason: String,
    pub local_response: Option<LocalResponse>,
    /// The filter paused the request and never let it go on (answered 500 by the harness).
    pub stuck: bool,
}

/// A running VM with the filter, its host and the receiver of its calls.
pub struct Proxy {
    store: Store<HostState>,
    instance: Instance,
    next_context: u32,
    dead: bool,
    /// Whether `on_vm_start` and `on_configure` both answered true.
    pub configured: bool,
    /// Streams that have ended, kept for inspection.
    pub finished: Vec<(u32, Stream)>,
}

/// What a proxy can fail at before running anything.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Proxy {
    /// Instantiates the filter, then starts the VM and configures the root context with
    /// `config` (the plugin configuration bytes).
    pub fn start(filter: &Filter, options: Options, config: &[u8]) -> Result<Proxy, LoadError> {
        let mut linker: Linker<HostState> = Linker::new(&filter.engine);
        abi::link(&mut linker).map_err(|e| LoadError(format!("linking env: {e}")))?;
        wasi::link(&mut linker).map_err(|e| LoadError(format!("linking WASI: {e}")))?;
        let rules = options.rules;
        if rules.is_kong() && options.attachment == Attachment::AccessLogger {
            return Err(LoadError(
                "Kong has no access logger: a proxy-wasm filter runs in a filter chain only"
                    .to_string(),
            ));
        }
        for import in filter.module.imports() {
            let (module, name) = (import.module(), import.name());
            let known = match module {
                "env" => abi::FUNCTIONS.contains(&name),
                wasi::MODULE => wasi::FUNCTIONS.contains(&name),
                _ => false,
            };
            if known {
                continue;
            }
            if module == wasi::MODULE {
                // Kong links wasmtime's whole WASI; anything beyond the usual set traps here.
                let Some(ty) = import.ty().func().cloned() else {
                    return Err(LoadError(format!("{module}.{name}: not a function")));
                };
                let label = format!("{module}.{name}");
                linker
                    .func_new(module, name, ty, move |_caller, _params, _results| {
                        Err(wasmtime::Error::msg(format!(
                            "the test host does not model WASI function {label}"
                        )))
                    })
                    .map_err(|e| LoadError(e.to_string()))?;
                continue;
            }
            // Both hosts refuse a module importing something they do not have
            // (ngx_wavm_module_link: "missing host function"; Envoy: a missing import).
            return Err(LoadError(match rules {
                Rules::Kong(_) => format!(
                    "[emerg] failed importing \"{module}.{name}\": missing host function \
                     (incompatible host interface)"
                ),
                Rules::Envoy => {
                    format!("Failed to load Wasm module due to a missing import: {module}.{name}")
                }
            }));
        }
        let plugin_config = config.to_vec();
        // Kong before 3.10 passes the root id (0) where the VM configuration's size goes.
        let vm_config_len = match rules {
            Rules::Kong(version) if !version.passes_vm_config_size() => 0,
            _ => options.vm_config.len(),
        };
        let mut state = HostState::new(options);
        state.plugin_config = plugin_config;
        let mut store = Store::new(&filter.engine, state);
        let instance = linker
            .instantiate(&mut store, &filter.module)
            .map_err(|e| LoadError(format!("instantiating: {e:#}")))?;
        let mut proxy = Proxy {
            store,
            instance,
            next_context: 2,
            dead: false,
            configured: false,
            finished: Vec::new(),
        };
        let root = proxy.store.data().root_context;
        for start in ["_initialize", "_start"] {
            if proxy.has_export(start) {
                proxy.call(Step::Initialize, root, start, &[]);
                break;
            }
        }
        proxy.call(
            Step::ContextCreate,
            root,
            "proxy_on_context_create",
            &[Val::I32(root as i32), Val::I32(0)],
        );
        let vm_started = proxy
            .call(
                Step::VmStart,
                root,
                "proxy_on_vm_start",
                &[Val::I32(root as i32), Val::I32(vm_config_len as i32)],
            )
            .is_some_and(|result| result != 0);
        let config_len = config.len() as i32;
        let configured = vm_started
            && proxy
                .call(
                    Step::Configure,
                    root,
                    "proxy_on_configure",
                    &[Val::I32(root as i32), Val::I32(config_len)],
                )
                .is_some_and(|result| result != 0);
        proxy.configured = configured;
        Ok(proxy)
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    pub fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    pub fn rules(&self) -> Rules {
        self.state().rules()
    }

    /// Whether a trap killed the VM.
    pub fn dead(&self) -> bool {
        self.dead
    }

    /// Kong 3.7+: connection slots leaked by calls that got their answer while another call of
    /// the root context was pending (each takes one of [`Options::worker_connections`] for
    /// good).
    pub fn leaked_slots(&self) -> u64 {
        self.state().leaked_slots
    }

    /// How many times the host called `callback` (`"proxy_on_log"`, ...) in the root context
    /// (`root`), or in HTTP contexts.
    pub fn callbacks(&self, callback: &str, root: bool) -> u64 {
        self.state()
            .callbacks
            .iter()
            .filter(|((name, in_root), _)| *name == callback && *in_root == root)
            .map(|(_, count)| count)
            .sum()
    }

    /// The worker crashed (a SIGSEGV in the host, not a trap of the module).
    pub fn crashed(&self) -> bool {
        self.traps().iter().any(TrapRecord::is_crash)
    }

    /// Every call the receiver got, in order.
    pub fn received(&self) -> &[Received] {
        &self.state().received
    }

    pub fn traps(&self) -> &[TrapRecord] {
        &self.state().traps
    }

    /// The whole log, one line per entry.
    pub fn log_text(&self) -> String {
        self.state()
            .logs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Errors the host itself reported.
    pub fn host_errors(&self) -> Vec<String> {
        self.state()
            .logs
            .iter()
            .filter(|line| line.is_host_error())
            .map(ToString::to_string)
            .collect()
    }

    /// How the receiver answers the next calls.
    pub fn reply_with(&mut self, replies: impl IntoIterator<Item = Reply>) {
        self.state_mut().plan.replies.extend(replies);
    }

    /// How long the receiver takes to answer.
    pub fn receiver_delay(&mut self, ms: u64) {
        self.state_mut().plan.delay_ms = ms;
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// Runs one callback. `None` when it is not exported, the VM is dead, or it trapped.
    fn call(&mut self, step: Step, context: u32, name: &'static str, args: &[Val]) -> Option<i32> {
        if self.dead {
            return None;
        }
        let function = match self.instance.get_export(&mut self.store, name) {
            Some(Extern::Func(function)) => function,
            _ => return None,
        };
        let results_len = function.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); results_len];
        let state = self.store.data_mut();
        let in_root = context == state.root_context;
        *state.callbacks.entry((name, in_root)).or_default() += 1;
        let previous = self.store.data_mut().frame.replace(Frame { context, step });
        let outcome = function.call(&mut self.store, args, &mut results);
        let state = self.store.data_mut();
        state.frame = previous;
        match outcome {
            Ok(()) => Some(match results.first() {
                Some(Val::I32(value)) => *value,
                _ => 0,
            }),
            Err(error) => {
                let host_function = state
                    .host_trap
                    .is_some()
                    .then(|| state.last_host_call.clone());
                let message = state
                    .host_trap
                    .take()
                    .unwrap_or_else(|| format!("{error:#}"));
                let at_ms = state.elapsed_ms();
                state.log(
                    Origin::Host,
                    Level::Critical,
                    format!("trap in {} (context {context}): {message}", step.callback()),
                );
                state.traps.push(TrapRecord {
                    at_ms,
                    callback: step.callback(),
                    context,
                    host_function,
                    message,
                });
                self.dead = true;
                None
            }
        }
    }

    // --- the clock ------------------------------------------------------------------------

    /// Virtual milliseconds since the start of the run.
    pub fn elapsed_ms(&self) -> u64 {
        self.state().elapsed_ms()
    }

    fn next_event_ns(&self) -> Option<u64> {
        let state = self.state();
        let call = state.pending.iter().map(|pending| pending.due_ns).min();
        let queue = (!state.ready_queues.is_empty()).then_some(state.now_ns);
        [call, state.next_tick_ns, queue]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the clock forward by `ms`, firing ticks and delivering call answers in order.
    pub fn advance(&mut self, ms: u64) {
        let deadline = self.state().now_ns + ms * 1_000_000;
        self.run_until(deadline, |_| false);
    }

    /// Runs the clock until `done` holds (checked after every event) or `max_ms` passed.
    /// Returns whether `done` held.
    pub fn advance_until(&mut self, max_ms: u64, done: impl Fn(&Proxy) -> bool) -> bool {
        let deadline = self.state().now_ns + max_ms * 1_000_000;
        self.run_until(deadline, done)
    }

    fn run_until(&mut self, deadline: u64, done: impl Fn(&Proxy) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            match self.next_event_ns() {
                Some(at) if at <= deadline && !self.dead => {
                    let state = self.state_mut();
                    state.now_ns = state.now_ns.max(at);
                    self.fire_events();
                }
                _ => break,
            }
        }
        let state = self.state_mut();
        state.now_ns = state.now_ns.max(deadline);
        done(self)
    }

    /// Everything due now: answers first (in order of arrival), queued items, then a tick.
    fn fire_events(&mut self) {
        let now = self.state().now_ns;
        loop {
            let due = {
                let state = self.state_mut();
                let next = state
                    .pending
                    .iter()
                    .enumerate()
                    .filter(|(_, pending)| pending.due_ns <= now)
                    .min_by_key(|(_, pending)| (pending.due_ns, pending.token))
                    .map(|(index, _)| index);
                next.map(|index| state.pending.remove(index))
            };
            let Some(pending) = due else { break };
            self.deliver(pending);
            if self.dead {
                return;
            }
        }
        let ready: Vec<u32> = std::mem::take(&mut self.state_mut().ready_queues);
        let root = self.state().root_context;
        for queue in ready {
            self.call(
                Step::QueueReady,
                root,
                "proxy_on_queue_ready",
                &[Val::I32(root as i32), Val::I32(queue as i32)],
            );
        }
        if self.state().next_tick_ns.is_some_and(|at| at <= now) {
            let state = self.state_mut();
            let period = u64::from(state.tick_period_ms) * 1_000_000;
            state.next_tick_ns = (period != 0).then_some(now + period);
            self.call(Step::Tick, root, "proxy_on_tick", &[Val::I32(root as i32)]);
        }
    }

    /// Hands a call's answer to the filter.
    fn deliver(&mut self, pending: crate::state::Pending) {
        let rules = self.rules();
        if let (Rules::Kong(version), CallResult::Response { .. }) = (rules, &pending.result) {
            // Kong 3.7+: a call of a root context that ends with an HTTP answer while another
            // call of that root context is pending never closes its fake request: its
            // connection slot leaks. The last one to end frees its slot.
            let state = self.state_mut();
            let others = state
                .pending
                .iter()
                .any(|other| other.context == pending.context);
            if version.leaks_parallel_calls() && pending.context == state.root_context && others {
                state.leaked_slots += 1;
                state.log(Origin::Host, Level::Debug, version.more_pending_message());
            }
        }
        let context_alive = {
            let state = self.state();
            pending.context == state.root_context || state.streams.contains_key(&pending.context)
        };
        if let CallResult::Failed { log, .. } = &pending.result {
            let state = self.state_mut();
            let logs = match rules {
                Rules::Kong(version) => {
                    !version.reports_failed_calls() || state.options.log_dispatch_errors
                }
                Rules::Envoy => false,
            };
            if logs {
                state.host_error(format!("[wasm] {log}"));
            }
            if abi::kong_silent_failures(rules) {
                // Kong 3.4-3.8: the call is destroyed; the filter is never told.
                return;
            }
        }
        if matches!(pending.result, CallResult::Lost) || !context_alive {
            return;
        }
        let answer = abi::answer_for(rules, &pending.result);
        let headers = match &pending.result {
            CallResult::Response { headers, .. } => headers
                .iter()
                .filter(|(name, _)| !name.starts_with(':'))
                .count(),
            _ => 0,
        };
        let body = answer.body.len();
        self.state_mut().answer = Some(answer);
        self.call(
            Step::CallResponse,
            pending.context,
            "proxy_on_http_call_response",
            &[
                Val::I32(pending.context as i32),
                Val::I32(pending.token as i32),
                Val::I32(headers as i32),
                Val::I32(body as i32),
                Val::I32(0),
            ],
        );
        self.state_mut().answer = None;
    }

    // --- streams ----------------------------------------------------------------------------

    /// Proxies one request through every phase; the clock moves by the upstream's latency.
    pub fn request(&mut self, request: &Request) -> Outcome {
        let kong = self.rules().is_kong();
        if kong {
            // nginx needs a connection slot for the client and one for the upstream; slots
            // leaked by parallel calls and calls in flight hold theirs.
            let state = self.state_mut();
            let limit = state.options.worker_connections as u64;
            if state.connections_in_use() + 2 > limit {
                state.out_of_connections();
                return Outcome {
                    context: 0,
                    status: 502,
                    reason: reason_phrase(502).to_string(),
                    local_response: None,
                    stuck: false,
                };
            }
        }
        let context = self.next_context;
        self.next_context += 1;
        let root = self.state().root_context;
        let host = header(&request.headers, "host")
            .unwrap_or(&request.authority)
            .to_string();
        let mut headers = if kong {
            // ngx_proxy_wasm_maps' special keys, then the client's headers as it sent them.
            let options = &self.state().options;
            let mut headers = vec![
                (":path".to_string(), request.path.clone()),
                (":method".to_string(), request.method.clone()),
                (":scheme".to_string(), request.scheme.clone()),
                (
                    ":authority".to_string(),
                    format!("{}:{}", options.server_name, options.listen_port),
                ),
            ];
            if header(&request.headers, "host").is_none() {
                headers.push(("Host".to_string(), host.clone()));
            }
            headers
        } else {
            // Envoy: the Host header becomes `:authority`.
            vec![
                (":authority".to_string(), host.clone()),
                (":path".to_string(), request.path.clone()),
                (":method".to_string(), request.method.clone()),
                (":scheme".to_string(), request.scheme.clone()),
            ]
        };
        let mut request_id = header(&request.headers, "x-request-id").map(str::to_string);
        if !kong {
            // Envoy's connection manager adds these before any filter runs.
            if request_id.is_none() {
                let id = format!(
                    "{:032x}",
                    u128::from(self.state_mut().random()) << 64 | u128::from(context)
                );
                let id = format!(
                    "{}-{}-{}-{}-{}",
                    &id[0..8],
                    &id[8..12],
                    &id[12..16],
                    &id[16..20],
                    &id[20..32]
                );
                headers.push(("x-request-id".to_string(), id.clone()));
                request_id = Some(id);
            }
            headers.push(("x-forwarded-proto".to_string(), request.scheme.clone()));
        }
        if kong {
            headers.extend(request.headers.iter().cloned());
        } else {
            headers.extend(
                request
                    .headers
                    .iter()
                    .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
                    .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
            );
        }
        if !request.body.is_empty() && header(&request.headers, "content-length").is_none() {
            let name = if kong {
                "Content-Length"
            } else {
                "content-length"
            };
            headers.push((name.to_string(), request.body.len().to_string()));
        }
        let now = self.state().now_ns;
        let stream = Stream {
            request_headers: headers,
            request_body: request.body.clone(),
            upstream: request.upstream.clone(),
            response_headers: None,
            response_chunk: None,
            request_chunk: None,
            source: request.source.clone(),
            request_id: request_id.unwrap_or_default(),
            start_ns: now,
            end_ns: None,
            local_response: None,
            cluster: request.cluster.clone(),
            route: request.route.clone(),
            service_id: "0b1c6b4a-7d1e-4d6f-9d6a-2f5c9e3b7a10".to_string(),
            route_id: "5e2f1a3c-8b4d-4c7e-a1f2-3d4e5f6a7b8c".to_string(),
            ctx_shared: if kong {
                request.ctx_shared.clone()
            } else {
                Vec::new()
            },
            dynamic_metadata: if kong {
                Vec::new()
            } else {
                request.dynamic_metadata.clone()
            },
            filter_state: if kong {
                Vec::new()
            } else {
                request.filter_state.clone()
            },
        };
        self.state_mut().streams.insert(context, stream);
        // Envoy's access logger: no HTTP context, no stream callback; the stream is only
        // numbered, for the host's bookkeeping.
        let http_filter = self.state().options.attachment == Attachment::HttpFilter;
        if http_filter {
            self.call(
                Step::ContextCreate,
                context,
                "proxy_on_context_create",
                &[Val::I32(context as i32), Val::I32(root as i32)],
            );
        }
        let n_headers = self
            .state()
            .streams
            .get(&context)
            .map_or(0, |s| s.request_headers.len());
        let end_of_stream = !kong && request.body.is_empty();
        let action = if http_filter {
            self.stream_call(Step::RequestHeaders, context, n_headers, end_of_stream)
        } else {
            None
        };
        let mut stuck = false;
        let paused = action == Some(1);
        if self.local_response(context).is_none() && (paused || kong) {
            // Wait for the calls this request made (Kong always does; Envoy while paused).
            self.advance_until(10 * 60 * 1000, |proxy| {
                proxy.local_response(context).is_some()
                    || !proxy.state().pending.iter().any(|p| p.context == context)
            });
            if paused && self.local_response(context).is_none() {
                stuck = true;
            }
        }
        if http_filter
            && self.local_response(context).is_none()
            && !stuck
            && !request.body.is_empty()
        {
            if let Some(stream) = self.state_mut().streams.get_mut(&context) {
                stream.request_chunk = Some(request.body.clone());
            }
            self.stream_call(Step::RequestBody, context, request.body.len(), true);
            if let Some(stream) = self.state_mut().streams.get_mut(&context) {
                stream.request_chunk = None;
            }
        }
        if self.local_response(context).is_none() && !stuck {
            self.advance(request.upstream.latency_ms);
        }
        // The response: the filter's own, the upstream's, or 500 for a stuck request.
        let local = self.local_response(context);
        let (status, mut response_headers, body) = match &local {
            Some(local) => (local.status, local.headers.clone(), local.body.clone()),
            None if stuck => (500, Vec::new(), Vec::new()),
            None => (
                request.upstream.status,
                request.upstream.headers.clone(),
                request.upstream.body.clone(),
            ),
        };
        let mut all = vec![(":status".to_string(), status.to_string())];
        if kong {
            // nginx's names. ngx_wasm_module puts its shim headers (Content-Length) before the
            // response's own list.
            if header(&response_headers, "content-length").is_none() {
                all.push(("Content-Length".to_string(), body.len().to_string()));
            }
            all.append(&mut response_headers);
            all.push((
                "Date".to_string(),
                "Thu, 01 Jan 2026 00:00:00 GMT".to_string(),
            ));
            all.push(("Server".to_string(), "kong".to_string()));
        } else {
            all.extend(
                response_headers
                    .drain(..)
                    .map(|(name, value)| (name.to_ascii_lowercase(), value)),
            );
            if header(&all, "content-length").is_none() {
                all.push(("content-length".to_string(), body.len().to_string()));
            }
            all.push((
                "date".to_string(),
                "Thu, 01 Jan 2026 00:00:00 GMT".to_string(),
            ));
            all.push(("server".to_string(), "envoy".to_string()));
            if local.is_none() && !stuck {
                all.push((
                    "x-envoy-upstream-service-time".to_string(),
                    request.upstream.latency_ms.to_string(),
                ));
            }
        }
        let n_response = all.len();
        if let Some(stream) = self.state_mut().streams.get_mut(&context) {
            stream.response_headers = Some(all);
        }
        let end_of_stream = !kong && body.is_empty();
        if http_filter {
            self.stream_call(Step::ResponseHeaders, context, n_response, end_of_stream);
        }
        if http_filter && (kong || !body.is_empty()) {
            if let Some(stream) = self.state_mut().streams.get_mut(&context) {
                stream.response_chunk = Some(body.clone());
            }
            self.stream_call(Step::ResponseBody, context, body.len(), true);
            if let Some(stream) = self.state_mut().streams.get_mut(&context) {
                stream.response_chunk = None;
            }
        }
        let now = self.state().now_ns;
        if let Some(stream) = self.state_mut().streams.get_mut(&context) {
            stream.end_ns = Some(now);
        }
        let id = [Val::I32(context as i32)];
        if !http_filter {
            // Envoy's `WasmAccessLog::log` -> `Wasm::log` -> the root context's
            // `Context::log`: the request's header maps and stream info are readable for the
            // length of `onLog` only.
            self.state_mut().access_log = Some(context);
            self.call(Step::Log, root, "proxy_on_log", &[Val::I32(root as i32)]);
            self.state_mut().access_log = None;
        } else if kong {
            self.call(Step::Done, context, "proxy_on_done", &id);
            self.call(Step::Log, context, "proxy_on_log", &id);
            self.call(Step::Delete, context, "proxy_on_delete", &id);
        } else {
            self.call(Step::Log, context, "proxy_on_log", &id);
            self.call(Step::Done, context, "proxy_on_done", &id);
            self.call(Step::Delete, context, "proxy_on_delete", &id);
        }
        let state = self.state_mut();
        if let Some(stream) = state.streams.remove(&context) {
            self.finished.push((context, stream));
        }
        // Envoy cancels what the stream still waits for (a call made from on_log is already
        // marked as lost).
        if !kong {
            let state = self.state_mut();
            for pending in state.pending.iter_mut() {
                if pending.context == context {
                    pending.result = CallResult::Lost;
                }
            }
        }
        let status = if stuck { 500 } else { status };
        // Kong (ngx_http_wasm_stash_local_response): a local response's `details`, when not
        // empty, is the status line's reason phrase. Envoy always sends the standard one.
        let reason = match &local {
            Some(local) if kong && !local.details.is_empty() && !stuck => local.details.clone(),
            _ => reason_phrase(status).to_string(),
        };
        Outcome {
            context: if http_filter { context } else { 0 },
            status,
            reason,
            local_response: local,
            stuck,
        }
    }

    /// A headers or body callback: (context, count or size, end of stream).
    fn stream_call(
        &mut self,
        step: Step,
        context: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Option<i32> {
        self.call(
            step,
            context,
            step.callback(),
            &[
                Val::I32(context as i32),
                Val::I32(size as i32),
                Val::I32(i32::from(end_of_stream)),
            ],
        )
    }

    fn local_response(&self, context: u32) -> Option<LocalResponse> {
        self.state()
            .streams
            .get(&context)
            .and_then(|stream| stream.local_response.clone())
    }

    /// The proxy removes the filter (reload or shutdown). Envoy calls the root context's
    /// `on_done` and, when it answers false, keeps the VM running until the filter calls
    /// `proxy_done` (up to `max_ms` here). Kong never calls the root's `on_done`.
    /// Returns whether the filter said it was done.
    pub fn shutdown(&mut self, max_ms: u64) -> bool {
        if self.rules().is_kong() {
            return false;
        }
        let root = self.state().root_context;
        let done = self.call(Step::Done, root, "proxy_on_done", &[Val::I32(root as i32)]);
        if done == Some(1) {
            return true;
        }
        self.advance_until(max_ms, |proxy| proxy.state().done_called)
    }
}

/// The standard reason phrase of a status (RFC 9110 and the ones nginx and Envoy know); empty
/// for a status without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(401), "Unauthorized");
        assert_eq!(reason_phrase(502), "Bad Gateway");
        assert_eq!(reason_phrase(599), "");
    }

    #[test]
    fn request_headers_keep_their_case() {
        let request = Request::get("/")
            .header("X-Event-Data", "1")
            .response_header("Retry-After", "5");
        assert_eq!(request.headers[0].0, "X-Event-Data");
        assert_eq!(request.upstream.headers[0].0, "Retry-After");
    }
}
