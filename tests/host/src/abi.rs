//! The proxy-wasm 0.2.1 host functions (`env.*`), each following the rules of the host being
//! played: what Envoy does, or what ngx_wasm_module (Kong) does at the Kong version asked.
//!
//! Kong traps are reproduced with ngx_wasm_module's messages: a function it does not implement
//! traps with `host trap (function not yet implemented): <name>`; a refused use with
//! `host trap (bad usage): <why>`; `set_tick_period` twice with `tick_period already set`.

use wasmtime::{Error, FuncType, Linker, Result, ValType};

use crate::memory::{self, Ctx, Empty};
use crate::properties;
use crate::rules::Rules;
use crate::state::CRASH;
use crate::state::{
    Answer, CallResult, Dispatch, DispatchOutcome, HostState, Level, LocalResponse, Metric, Origin,
    Pending, Queue, Received, Reply, Step, header, status,
};

/// Every function of the proxy-wasm ABI 0.2.1 (and the 0.1.0/ngx extras a module may import)
/// this host defines. An `env` import outside this list makes both hosts refuse the module
/// (ngx_wasm_module: "missing host function"; proxy-wasm-cpp-host: a missing import).
pub const FUNCTIONS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_set_effective_context",
    "proxy_call_foreign_function",
    "proxy_done",
    "proxy_define_metric",
    "proxy_get_metric",
    "proxy_record_metric",
    "proxy_increment_metric",
];

/// A trap raised by the host: the message is kept for the record.
fn trap(caller: &mut Ctx<'_>, message: String) -> Error {
    caller.data_mut().host_trap = Some(message.clone());
    Error::msg(message)
}

/// ngx_wasm_module's `ngx_proxy_wasm_hfuncs_nop`.
fn kong_nyi(caller: &mut Ctx<'_>, name: &str) -> Error {
    trap(
        caller,
        format!("host trap (function not yet implemented): {name}"),
    )
}

/// ngx_wasm_module's `ngx_proxy_wasm_result_trap(..., NGX_WAVM_BAD_USAGE)`.
fn kong_bad_usage(caller: &mut Ctx<'_>, why: &str) -> Error {
    trap(caller, format!("host trap (bad usage): {why}"))
}

/// ngx_wasm_module's `ngx_proxy_wasm_result_trap(..., NGX_WAVM_ERROR)`.
fn kong_internal(caller: &mut Ctx<'_>, why: &str) -> Error {
    trap(caller, format!("host trap (internal error): {why}"))
}

/// Kong's worker dies in the host's C code (a SIGSEGV), not in the module: recorded as a trap
/// whose message says so ([`crate::state::TrapRecord::is_crash`]), and the VM is dead.
pub fn kong_crash(caller: &mut Ctx<'_>, function: &str, why: &str) -> Error {
    trap(caller, format!("{CRASH} (SIGSEGV in {function}: {why})"))
}

/// A function of the ABI this host does not model: a clear trap rather than a guess.
fn not_modelled(caller: &mut Ctx<'_>, name: &str) -> Error {
    let rules = caller.data().rules();
    trap(
        caller,
        format!(
            "the test host does not model {name} ({rules}); the filter is not expected to call it"
        ),
    )
}

fn note(caller: &mut Ctx<'_>, name: &str) {
    let state = caller.data_mut();
    *state.calls_made.entry(name.to_string()).or_default() += 1;
    if let Some(step) = state.step() {
        *state
            .calls_by_step
            .entry(format!("{} {name}", step.callback()))
            .or_default() += 1;
    }
    state.last_host_call = name.to_string();
}

fn kong(caller: &Ctx<'_>) -> bool {
    caller.data().rules().is_kong()
}

fn empty_style(caller: &Ctx<'_>) -> Empty {
    if kong(caller) {
        Empty::Allocate
    } else {
        Empty::Null
    }
}

/// Reads bytes the module passed; `Err(status)` for a bad pointer.
fn input(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<std::result::Result<Vec<u8>, i32>> {
    Ok(memory::read(caller, ptr, len)?.map_err(|_| 6))
}

fn input_string(
    caller: &mut Ctx<'_>,
    ptr: i32,
    len: i32,
) -> Result<std::result::Result<String, i32>> {
    Ok(input(caller, ptr, len)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

macro_rules! read_or_return {
    ($e:expr) => {
        match $e? {
            Ok(value) => value,
            Err(code) => return Ok(code),
        }
    };
}

/// As `read_or_return`, in a helper that passes the status on.
macro_rules! read_or_return_err {
    ($e:expr) => {
        match $e? {
            Ok(value) => value,
            Err(code) => return Ok(Err(code)),
        }
    };
}

/// Links host functions named as the imports they implement.
macro_rules! link_env {
    ($linker:expr, $($name:ident),* $(,)?) => {
        $($linker.func_wrap("env", stringify!($name), $name)?;)*
    };
}

pub fn link(linker: &mut Linker<HostState>) -> Result<()> {
    link_env!(
        linker,
        proxy_log,
        proxy_get_log_level,
        proxy_get_current_time_nanoseconds,
        proxy_set_tick_period_milliseconds,
        proxy_get_buffer_bytes,
        proxy_set_buffer_bytes,
        proxy_get_header_map_pairs,
        proxy_set_header_map_pairs,
        proxy_get_header_map_value,
        proxy_add_header_map_value,
        proxy_replace_header_map_value,
        proxy_remove_header_map_value,
        proxy_get_property,
        proxy_set_property,
        proxy_get_shared_data,
        proxy_set_shared_data,
        proxy_register_shared_queue,
        proxy_resolve_shared_queue,
        proxy_enqueue_shared_queue,
        proxy_dequeue_shared_queue,
        proxy_continue_stream,
        proxy_close_stream,
        proxy_continue_request,
        proxy_continue_response,
        proxy_send_local_response,
        proxy_http_call,
    );
    // gRPC calls: (name, number of i32 parameters); every one answers with an i32 status.
    const GRPC: &[(&str, usize)] = &[
        ("proxy_grpc_call", 12),
        ("proxy_grpc_stream", 9),
        ("proxy_grpc_send", 4),
        ("proxy_grpc_cancel", 1),
        ("proxy_grpc_close", 1),
    ];
    for (name, params) in GRPC {
        let ty = FuncType::new(
            linker.engine(),
            std::iter::repeat_n(ValType::I32, *params),
            [ValType::I32],
        );
        linker.func_new("env", name, ty, move |mut caller, _params, _results| {
            note(&mut caller, name);
            Err(grpc(&mut caller, name))
        })?;
    }
    link_env!(
        linker,
        proxy_get_status,
        proxy_set_effective_context,
        proxy_call_foreign_function,
        proxy_done,
        proxy_define_metric,
        proxy_get_metric,
        proxy_record_metric,
        proxy_increment_metric,
    );
    Ok(())
}

// --- integration ------------------------------------------------------------------------

fn proxy_log(mut caller: Ctx<'_>, level: i32, ptr: i32, len: i32) -> Result<i32> {
    note(&mut caller, "proxy_log");
    let message = read_or_return!(input_string(&mut caller, ptr, len));
    let Some(level) = Level::from_abi(level) else {
        return Ok(status::BAD_ARGUMENT);
    };
    caller.data_mut().log(Origin::Filter, level, message);
    Ok(status::OK)
}

fn proxy_get_log_level(mut caller: Ctx<'_>, out: i32) -> Result<i32> {
    note(&mut caller, "proxy_get_log_level");
    if kong(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_get_log_level"));
    }
    // Envoy: the wasm component's level, info by default.
    Ok(memory::write_u32(&mut caller, out, 2)?.map_or(6, |()| status::OK))
}

fn proxy_get_current_time_nanoseconds(mut caller: Ctx<'_>, out: i32) -> Result<i32> {
    note(&mut caller, "proxy_get_current_time_nanoseconds");
    let state = caller.data();
    // Kong: ngx_wasm_wall_time(), (sec * 1000 + msec) * 1e6: millisecond resolution.
    let now = if state.rules().is_kong() {
        state.now_ns / 1_000_000 * 1_000_000
    } else {
        state.now_ns
    };
    Ok(memory::write_u64(&mut caller, out, now)?.map_or(6, |()| status::OK))
}

fn proxy_set_tick_period_milliseconds(mut caller: Ctx<'_>, period: i32) -> Result<i32> {
    note(&mut caller, "proxy_set_tick_period_milliseconds");
    let period = period as u32;
    let state = caller.data();
    if let Rules::Kong(version) = state.rules() {
        if !state.in_root() {
            if version.tick_period_root_only_traps() {
                return Err(trap(
                    &mut caller,
                    "can only set tick_period in root context".to_string(),
                ));
            }
            return Ok(status::OK);
        }
        let already = state.tick_period_ms != 0;
        let refused = if version.allows_zero_tick_reset() {
            period != 0 && already
        } else {
            already
        };
        if refused {
            return Err(trap(&mut caller, "tick_period already set".to_string()));
        }
    }
    let state = caller.data_mut();
    state.tick_period_ms = period;
    state.next_tick_ns = (period != 0).then(|| state.now_ns + u64::from(period) * 1_000_000);
    Ok(status::OK)
}

// --- buffers --------------------------------------------------------------------------------

fn proxy_get_buffer_bytes(
    mut caller: Ctx<'_>,
    kind: i32,
    start: i32,
    max: i32,
    out_ptr: i32,
    out_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_get_buffer_bytes");
    let is_kong = kong(&caller);
    let state = caller.data();
    if let Rules::Kong(version) = state.rules() {
        // 21732b18: every buffer but the two configurations goes through
        // ngx_proxy_wasm_get_buffer_helper, which reads `rctx->r` first; the root context has
        // no request context.
        if version.crashes_reading_call_bodies()
            && kind != 6
            && kind != 7
            && state.stream().is_none()
        {
            return Err(kong_crash(
                &mut caller,
                "ngx_proxy_wasm_get_buffer_helper",
                "null request context (rctx->r) in the root context",
            ));
        }
    }
    let buffer: Option<Vec<u8>> = match kind {
        // HttpRequestBody
        0 => state
            .stream()
            .and_then(|stream| stream.request_chunk.clone()),
        // HttpResponseBody: Kong, only in on_response_body.
        1 => {
            if is_kong && state.step() != Some(Step::ResponseBody) {
                None
            } else {
                state
                    .stream()
                    .and_then(|stream| stream.response_chunk.clone())
            }
        }
        // HttpCallResponseBody
        4 => state
            .answer
            .as_ref()
            .filter(|_| state.step() == Some(Step::CallResponse))
            .map(|answer| answer.body.clone()),
        // VmConfiguration
        6 => Some(state.options.vm_config.clone()),
        // PluginConfiguration
        7 => Some(state.plugin_config.clone()),
        2 | 3 | 5 | 8 => None,
        _ => return Ok(status::BAD_ARGUMENT),
    };
    let Some(buffer) = buffer else {
        return Ok(status::NOT_FOUND);
    };
    // Kong ignores `start` (ngx_proxy_wasm_hfuncs_get_buffer copies from the beginning).
    let start = if is_kong { 0 } else { start.max(0) as usize };
    let end = start.saturating_add(max as u32 as usize).min(buffer.len());
    let slice = buffer.get(start.min(end)..end).unwrap_or_default().to_vec();
    if slice.is_empty() {
        if is_kong {
            // "eof": Ok without writing the reply.
            return Ok(status::OK);
        }
        if kind == 4 {
            return Ok(status::NOT_FOUND);
        }
    }
    let empty = empty_style(&caller);
    memory::reply(&mut caller, &slice, out_ptr, out_size, empty)
}

fn proxy_set_buffer_bytes(
    mut caller: Ctx<'_>,
    kind: i32,
    _start: i32,
    _size: i32,
    data: i32,
    data_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_set_buffer_bytes");
    let bytes = read_or_return!(input(&mut caller, data, data_size));
    let state = caller.data_mut();
    let Some(stream) = state.stream_mut() else {
        return Ok(status::BAD_ARGUMENT);
    };
    match kind {
        0 => stream.request_chunk = Some(bytes),
        1 => stream.response_chunk = Some(bytes),
        _ => return Ok(status::BAD_ARGUMENT),
    }
    Ok(status::OK)
}

// --- header maps ----------------------------------------------------------------------------

/// The pairs of a map, `Err(status)` when the host has no such map here: BadArgument, or in
/// Envoy's access log phase (any `on_log`: `Context::getHeaderMapValue`, "maps might point to
/// nullptr in the access log phase") NotFound. An access logger's root context reads the
/// logged request's maps ([`HostState::readable_stream`]); its request trailers are never
/// there (`getConstMap`: nullptr in the access log phase), its response trailers are the
/// response's (none here).
fn map_pairs(state: &HostState, kind: i32) -> std::result::Result<Vec<(String, String)>, i32> {
    let missing = if state.access_log_phase() {
        status::NOT_FOUND
    } else {
        status::BAD_ARGUMENT
    };
    let stream = state.readable_stream().map(|(_, stream)| stream);
    match kind {
        0 => stream
            .map(|stream| stream.request_headers.clone())
            .ok_or(missing),
        2 => stream
            .and_then(|stream| stream.response_headers.clone())
            .ok_or(missing),
        1 | 3 | 7 => Ok(Vec::new()),
        // gRPC initial and trailing metadata: this host makes no gRPC call.
        4 | 5 => Err(missing),
        6 => {
            let answer = state
                .answer
                .as_ref()
                .filter(|_| state.step() == Some(Step::CallResponse))
                .ok_or(missing)?;
            // Envoy: a failed call has no response headers at all.
            if answer.failed && !state.rules().is_kong() {
                return Err(status::BAD_ARGUMENT);
            }
            Ok(answer.pairs.clone())
        }
        _ => Err(status::BAD_ARGUMENT),
    }
}

/// Kong: the request's or response's header map read from the root context:
/// ngx_proxy_wasm_maps_get_map reads `rctx->r` of a request context the root context does not
/// have (every version).
fn kong_root_map_crash(caller: &mut Ctx<'_>, kind: i32) -> Option<Error> {
    let state = caller.data();
    if state.rules().is_kong() && (kind == 0 || kind == 2) && state.stream().is_none() {
        return Some(kong_crash(
            caller,
            "ngx_proxy_wasm_maps_get_map",
            "null request context (rctx->r) in the root context",
        ));
    }
    None
}

fn proxy_get_header_map_pairs(
    mut caller: Ctx<'_>,
    kind: i32,
    out_ptr: i32,
    out_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_get_header_map_pairs");
    if let Some(crash) = kong_root_map_crash(&mut caller, kind) {
        return Err(crash);
    }
    let pairs = match map_pairs(caller.data(), kind) {
        Ok(pairs) => pairs,
        // Envoy's `getHeaderMapPairs` of a map that is not there (the access log phase):
        // no pairs.
        Err(status::NOT_FOUND) => Vec::new(),
        Err(code) => return Ok(code),
    };
    let bytes = memory::encode_pairs(&pairs);
    memory::reply(&mut caller, &bytes, out_ptr, out_size, Empty::Allocate)
}

fn proxy_get_header_map_value(
    mut caller: Ctx<'_>,
    kind: i32,
    key: i32,
    key_size: i32,
    out_ptr: i32,
    out_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_get_header_map_value");
    let key = read_or_return!(input_string(&mut caller, key, key_size));
    if let Some(crash) = kong_root_map_crash(&mut caller, kind) {
        return Err(crash);
    }
    let state = caller.data();
    let hidden = if kind == 6 {
        state
            .answer
            .as_ref()
            .and_then(|answer| header(&answer.hidden, &key).map(str::to_string))
    } else {
        None
    };
    let value = match hidden {
        Some(value) => value,
        None => {
            let pairs = match map_pairs(state, kind) {
                Ok(pairs) => pairs,
                Err(code) => return Ok(code),
            };
            match header(&pairs, &key) {
                Some(value) => value.to_string(),
                None => return Ok(status::NOT_FOUND),
            }
        }
    };
    let empty = empty_style(&caller);
    memory::reply(&mut caller, value.as_bytes(), out_ptr, out_size, empty)
}

/// Changes a stream's request or response headers.
fn edit_map(
    caller: &mut Ctx<'_>,
    kind: i32,
    edit: impl FnOnce(&mut Vec<(String, String)>),
) -> Result<i32> {
    let step = caller.data().step();
    if let Rules::Kong(_) = caller.data().rules() {
        let allowed = match kind {
            0 => matches!(step, Some(Step::RequestHeaders | Step::RequestBody)),
            2 => matches!(
                step,
                Some(Step::RequestHeaders | Step::RequestBody | Step::ResponseHeaders)
            ),
            _ => false,
        };
        if !allowed && kind == 0 {
            return Err(kong_bad_usage(
                caller,
                "can only set request headers before response is produced",
            ));
        }
        if !allowed && kind == 2 {
            return Err(kong_bad_usage(
                caller,
                "can only set response headers before \"on_response_body\"",
            ));
        }
    }
    let state = caller.data_mut();
    let Some(stream) = state.stream_mut() else {
        return Ok(status::BAD_ARGUMENT);
    };
    match kind {
        0 => edit(&mut stream.request_headers),
        2 => match stream.response_headers.as_mut() {
            Some(headers) => edit(headers),
            None => return Ok(status::BAD_ARGUMENT),
        },
        _ => return Ok(status::BAD_ARGUMENT),
    }
    Ok(status::OK)
}

fn proxy_set_header_map_pairs(mut caller: Ctx<'_>, kind: i32, data: i32, size: i32) -> Result<i32> {
    note(&mut caller, "proxy_set_header_map_pairs");
    let bytes = read_or_return!(input(&mut caller, data, size));
    let Some(pairs) = memory::decode_pairs(&bytes) else {
        return Ok(status::SERIALIZATION_FAILURE);
    };
    edit_map(&mut caller, kind, |headers| *headers = pairs)
}

/// The key and value a header map edit passes.
fn key_value(
    caller: &mut Ctx<'_>,
    key: (i32, i32),
    value: (i32, i32),
) -> Result<std::result::Result<(String, String), i32>> {
    let key = read_or_return_err!(input_string(caller, key.0, key.1));
    let value = read_or_return_err!(input_string(caller, value.0, value.1));
    Ok(Ok((key, value)))
}

fn proxy_add_header_map_value(
    mut caller: Ctx<'_>,
    kind: i32,
    key: i32,
    key_size: i32,
    value: i32,
    value_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_add_header_map_value");
    let pair = read_or_return!(key_value(&mut caller, (key, key_size), (value, value_size)));
    edit_map(&mut caller, kind, |headers| headers.push(pair))
}

fn proxy_replace_header_map_value(
    mut caller: Ctx<'_>,
    kind: i32,
    key: i32,
    key_size: i32,
    value: i32,
    value_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_replace_header_map_value");
    let pair = read_or_return!(key_value(&mut caller, (key, key_size), (value, value_size)));
    edit_map(&mut caller, kind, |headers| {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&pair.0));
        headers.push(pair);
    })
}

fn proxy_remove_header_map_value(
    mut caller: Ctx<'_>,
    kind: i32,
    key: i32,
    key_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_remove_header_map_value");
    let key = read_or_return!(input_string(&mut caller, key, key_size));
    edit_map(&mut caller, kind, |headers| {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&key));
    })
}

// --- properties -----------------------------------------------------------------------------

fn proxy_get_property(
    mut caller: Ctx<'_>,
    path: i32,
    path_size: i32,
    out_ptr: i32,
    out_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_get_property");
    let bytes = read_or_return!(input(&mut caller, path, path_size));
    let dotted: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c == '\0' { '.' } else { c })
        .collect();
    *caller
        .data_mut()
        .calls_made
        .entry(format!("proxy_get_property({dotted})"))
        .or_default() += 1;
    match properties::get(caller.data_mut(), &dotted) {
        properties::Answer::Value(value) => {
            let empty = empty_style(&caller);
            memory::reply(&mut caller, &value, out_ptr, out_size, empty)
        }
        properties::Answer::NotFound => Ok(status::NOT_FOUND),
        properties::Answer::Failure => Ok(status::INTERNAL_FAILURE),
        properties::Answer::SerializationFailure => Ok(status::SERIALIZATION_FAILURE),
        properties::Answer::Crash { function, why } => Err(kong_crash(&mut caller, function, why)),
    }
}

fn proxy_set_property(
    mut caller: Ctx<'_>,
    path: i32,
    path_size: i32,
    _data: i32,
    _size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_set_property");
    let _ = read_or_return!(input(&mut caller, path, path_size));
    if caller.data().stream().is_none() {
        if kong(&caller) {
            caller
                .data_mut()
                .host_error("[wasm] cannot set host properties outside of a request");
            return Ok(status::INTERNAL_FAILURE);
        }
        // Envoy's `setProperty` writes the filter state of `getRequestStreamInfo()`, which a
        // root context has not, not even an access logger's during `on_log`.
        return Ok(status::NOT_FOUND);
    }
    Ok(status::OK)
}

// --- shared data ----------------------------------------------------------------------------

/// Kong: the `shm_kv` zone a key goes to (`ns/rest` to zone `ns` if configured, else `*`).
fn kong_zone(state: &HostState, key: &str) -> Option<String> {
    let zones = &state.options.shm_zones;
    if let Some((namespace, _)) = key.split_once('/') {
        if !namespace.is_empty() && zones.iter().any(|zone| zone == namespace) {
            return Some(namespace.to_string());
        }
    }
    zones
        .iter()
        .any(|zone| zone == "*")
        .then(|| "*".to_string())
}

fn proxy_get_shared_data(
    mut caller: Ctx<'_>,
    key: i32,
    key_size: i32,
    out_ptr: i32,
    out_size: i32,
    out_cas: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_get_shared_data");
    let key = read_or_return!(input_string(&mut caller, key, key_size));
    if kong(&caller) && kong_zone(caller.data(), &key).is_none() {
        return Err(kong_bad_usage(
            &mut caller,
            "failed getting value from shm (could not resolve namespace)",
        ));
    }
    let Some((value, cas)) = caller.data().shared.get(&key).cloned() else {
        return Ok(status::NOT_FOUND);
    };
    let empty = empty_style(&caller);
    let code = memory::reply(&mut caller, &value, out_ptr, out_size, empty)?;
    if code != status::OK {
        return Ok(code);
    }
    Ok(memory::write_u32(&mut caller, out_cas, cas)?.map_or(6, |()| status::OK))
}

fn proxy_set_shared_data(
    mut caller: Ctx<'_>,
    key: i32,
    key_size: i32,
    value: i32,
    value_size: i32,
    cas: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_set_shared_data");
    let key = read_or_return!(input_string(&mut caller, key, key_size));
    let bytes = read_or_return!(input(&mut caller, value, value_size));
    let cas = cas as u32;
    if kong(&caller) {
        if kong_zone(caller.data(), &key).is_none() {
            return Err(kong_bad_usage(
                &mut caller,
                "failed setting value to shm (could not resolve namespace)",
            ));
        }
        // ngx_wa_shm_kv_set_locked: `if (cas != (n == NULL ? 0 : n->cas))`: strict, and 0
        // means "only if absent"; a NULL value deletes.
        let state = caller.data_mut();
        let current = state.shared.get(&key).map(|(_, cas)| *cas);
        if cas != current.unwrap_or(0) {
            return Ok(status::CAS_MISMATCH);
        }
        if value == 0 && value_size == 0 {
            return Ok(match state.shared.remove(&key) {
                Some(_) => status::OK,
                None => status::CAS_MISMATCH,
            });
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        state.shared.insert(key, (bytes, next));
        return Ok(status::OK);
    }
    // Envoy: 0 writes unconditionally; otherwise the token must match an existing entry's.
    let state = caller.data_mut();
    if let Some((_, current)) = state.shared.get(&key) {
        if cas != 0 && cas != *current {
            return Ok(status::CAS_MISMATCH);
        }
    }
    let next = state.next_cas();
    state.shared.insert(key, (bytes, next));
    Ok(status::OK)
}

// --- shared queues --------------------------------------------------------------------------

fn proxy_register_shared_queue(
    mut caller: Ctx<'_>,
    name: i32,
    name_size: i32,
    out: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_register_shared_queue");
    let name = read_or_return!(input_string(&mut caller, name, name_size));
    if kong(&caller) {
        // No `shm_queue` zone in Kong's configuration.
        return Err(kong_bad_usage(&mut caller, "could not find queue"));
    }
    let state = caller.data_mut();
    let id = match state.queues.iter().position(|queue| queue.name == name) {
        Some(index) => index,
        None => {
            state.queues.push(Queue {
                name,
                items: Default::default(),
            });
            state.queues.len() - 1
        }
    };
    Ok(memory::write_u32(&mut caller, out, id as u32 + 1)?.map_or(6, |()| status::OK))
}

fn proxy_resolve_shared_queue(
    mut caller: Ctx<'_>,
    _vm: i32,
    _vm_size: i32,
    name: i32,
    name_size: i32,
    out: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_resolve_shared_queue");
    if kong(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_resolve_shared_queue"));
    }
    let name = read_or_return!(input_string(&mut caller, name, name_size));
    let Some(index) = caller
        .data()
        .queues
        .iter()
        .position(|queue| queue.name == name)
    else {
        return Ok(status::NOT_FOUND);
    };
    Ok(memory::write_u32(&mut caller, out, index as u32 + 1)?.map_or(6, |()| status::OK))
}

fn proxy_enqueue_shared_queue(mut caller: Ctx<'_>, id: i32, data: i32, size: i32) -> Result<i32> {
    note(&mut caller, "proxy_enqueue_shared_queue");
    if kong(&caller) {
        return Err(kong_bad_usage(&mut caller, "could not find queue"));
    }
    let bytes = read_or_return!(input(&mut caller, data, size));
    let state = caller.data_mut();
    let Some(queue) = (id as u32)
        .checked_sub(1)
        .and_then(|index| state.queues.get_mut(index as usize))
    else {
        return Ok(status::NOT_FOUND);
    };
    queue.items.push_back(bytes);
    state.ready_queues.push(id as u32);
    Ok(status::OK)
}

fn proxy_dequeue_shared_queue(
    mut caller: Ctx<'_>,
    id: i32,
    out_ptr: i32,
    out_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_dequeue_shared_queue");
    if kong(&caller) {
        return Err(kong_bad_usage(&mut caller, "could not find queue"));
    }
    let state = caller.data_mut();
    let Some(queue) = (id as u32)
        .checked_sub(1)
        .and_then(|index| state.queues.get_mut(index as usize))
    else {
        return Ok(status::NOT_FOUND);
    };
    let Some(item) = queue.items.pop_front() else {
        return Ok(status::EMPTY);
    };
    memory::reply(&mut caller, &item, out_ptr, out_size, Empty::Null)
}

// --- streams ----------------------------------------------------------------------------------

fn proxy_continue_stream(mut caller: Ctx<'_>, _kind: i32) -> Result<i32> {
    note(&mut caller, "proxy_continue_stream");
    Ok(status::OK)
}

fn proxy_close_stream(mut caller: Ctx<'_>, _kind: i32) -> Result<i32> {
    note(&mut caller, "proxy_close_stream");
    if kong(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_close_stream"));
    }
    Ok(status::OK)
}

fn proxy_continue_request(mut caller: Ctx<'_>) -> Result<i32> {
    note(&mut caller, "proxy_continue_request");
    Ok(status::OK)
}

fn proxy_continue_response(mut caller: Ctx<'_>) -> Result<i32> {
    note(&mut caller, "proxy_continue_response");
    if kong(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_continue_response"));
    }
    Ok(status::OK)
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut caller: Ctx<'_>,
    code: i32,
    details: i32,
    details_size: i32,
    body: i32,
    body_size: i32,
    headers: i32,
    headers_size: i32,
    _grpc: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_send_local_response");
    let details = read_or_return!(input_string(&mut caller, details, details_size));
    let body = read_or_return!(input(&mut caller, body, body_size));
    let headers = read_or_return!(input(&mut caller, headers, headers_size));
    let Some(headers) = memory::decode_pairs(&headers) else {
        return Ok(status::SERIALIZATION_FAILURE);
    };
    let is_kong = kong(&caller);
    let step = caller.data().step();
    let Some(stream) = caller.data_mut().stream_mut() else {
        return Ok(status::BAD_ARGUMENT);
    };
    if is_kong {
        if stream.local_response.is_some() {
            return Err(kong_bad_usage(
                &mut caller,
                "local response already stashed",
            ));
        }
        if matches!(step, Some(Step::ResponseBody | Step::Log | Step::Done)) {
            return Err(kong_bad_usage(&mut caller, "response already sent"));
        }
    } else if matches!(step, Some(Step::Log | Step::Done | Step::Delete)) {
        return Ok(status::BAD_ARGUMENT);
    }
    stream.local_response = Some(LocalResponse {
        status: code as u16,
        details,
        headers,
        body,
    });
    Ok(status::OK)
}

// --- HTTP calls -----------------------------------------------------------------------------

/// `host:port` as ngx_wasm_socket_tcp_init reads it: the port after the last `:` (outside
/// IPv6 brackets), else 80 (443 with TLS).
fn split_host(host: &str, tls: bool) -> (String, Option<u16>) {
    let default = if tls { 443 } else { 80 };
    let search_from = if host.starts_with('[') {
        host.find(']').unwrap_or(0)
    } else {
        0
    };
    match host[search_from..].find(':') {
        Some(at) => {
            let at = search_from + at;
            let port = host[at + 1..].parse::<u16>().ok();
            (host[..at].to_string(), port)
        }
        None => (host.to_string(), Some(default)),
    }
}

/// Headers the receiver sees: pseudo-headers gone, `host` first.
fn wire_headers(
    kong: bool,
    pairs: &[(String, String)],
    authority: &str,
    body_len: usize,
) -> Vec<(String, String)> {
    let mut headers = vec![("host".to_string(), authority.to_string())];
    if kong {
        headers.push(("connection".to_string(), "close".to_string()));
    }
    let has_length = pairs
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    if !has_length && (kong || body_len > 0) {
        headers.push(("content-length".to_string(), body_len.to_string()));
    }
    for (name, value) in pairs {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(':') {
            continue;
        }
        // Kong refuses to duplicate its own Host and Connection headers.
        if kong && (lower == "host" || lower == "connection") {
            continue;
        }
        headers.push((lower, value.clone()));
    }
    headers
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut caller: Ctx<'_>,
    upstream: i32,
    upstream_size: i32,
    headers: i32,
    headers_size: i32,
    body: i32,
    body_size: i32,
    trailers: i32,
    trailers_size: i32,
    timeout: i32,
    out_token: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_http_call");
    let upstream = read_or_return!(input_string(&mut caller, upstream, upstream_size));
    let header_bytes = read_or_return!(input(&mut caller, headers, headers_size));
    let body = read_or_return!(input(&mut caller, body, body_size));
    let _trailers = read_or_return!(input(&mut caller, trailers, trailers_size));
    let timeout_ms = timeout as u32;
    let pairs = memory::decode_pairs(&header_bytes);
    let state = caller.data();
    let step = state.step().unwrap_or(Step::Configure);
    let context = state.context();
    let in_root = state.in_root();
    let mut dispatch = Dispatch {
        at_ns: state.now_ns,
        context,
        step,
        upstream: upstream.clone(),
        headers: pairs.clone().unwrap_or_default(),
        body: body.clone(),
        timeout_ms,
        outcome: DispatchOutcome::Refused(status::BAD_ARGUMENT),
    };
    match state.rules() {
        Rules::Envoy => envoy_http_call(&mut caller, dispatch, pairs, out_token),
        Rules::Kong(version) => {
            // Every version: a call made while a call's answer is handled takes the connection
            // slot the finished call just freed; ngx_wasm_socket_tcp_destroy then writes into
            // it, and sending the new request (ngx_alloc_chain_link with a null pool) kills the
            // worker. Seen on every pin, still at ngx_wasm_module's newest commit.
            if step == Step::CallResponse {
                let error = kong_crash(
                    &mut caller,
                    "ngx_http_proxy_wasm_dispatch_request",
                    "the finished call's connection slot was reused",
                );
                dispatch.outcome = DispatchOutcome::Trapped(error.to_string());
                caller.data_mut().dispatches.push(dispatch);
                return Err(error);
            }
            // The step check (3.6+): ngx_proxy_wasm_hfuncs_dispatch_http_call.
            let allowed = matches!(
                step,
                Step::RequestHeaders | Step::RequestBody | Step::Tick | Step::CallResponse
            );
            if version.checks_dispatch_step() && !allowed {
                let why = "can only send HTTP dispatch during \"on_request_headers\", \
                           \"on_request_body\", \"on_dispatch_response\", \"on_tick\"";
                let error = kong_bad_usage(&mut caller, why);
                dispatch.outcome = DispatchOutcome::Trapped(error.to_string());
                caller.data_mut().dispatches.push(dispatch);
                return Err(error);
            }
            // In a hostcall of a real request a dispatch error traps; from the root context
            // (a fake request) it is logged and the call answers InternalFailure.
            let fail = |caller: &mut Ctx<'_>, mut dispatch: Dispatch, why: &str| -> Result<i32> {
                let message = format!("dispatch failed: {why}");
                if in_root {
                    let state = caller.data_mut();
                    if state.options.log_dispatch_errors || !version.reports_failed_calls() {
                        state.host_error(format!("[wasm] {message}"));
                    }
                    dispatch.outcome = DispatchOutcome::Refused(status::INTERNAL_FAILURE);
                    state.dispatches.push(dispatch);
                    return Ok(status::INTERNAL_FAILURE);
                }
                let error = trap(caller, message);
                dispatch.outcome = DispatchOutcome::Trapped(error.to_string());
                caller.data_mut().dispatches.push(dispatch);
                Err(error)
            };
            // 3.4/3.5: refused deeper, with the same effect for a real request.
            if matches!(step, Step::Log | Step::Done | Step::Delete) {
                return fail(&mut caller, dispatch, "bad step");
            }
            // A call of the root context first takes a connection slot for its fake request
            // (ngx_http_wasm_create_fake_connection); with none free, ngx_get_connection logs
            // its alert and the call is refused (InternalFailure).
            if in_root {
                let state = caller.data_mut();
                let limit = state.options.worker_connections as u64;
                if state.connections_in_use() + 1 > limit {
                    state.out_of_connections();
                    dispatch.outcome = DispatchOutcome::Refused(status::INTERNAL_FAILURE);
                    state.dispatches.push(dispatch);
                    return Ok(status::INTERNAL_FAILURE);
                }
            }
            let Some(pairs) = pairs else {
                return fail(&mut caller, dispatch, "marshalling error");
            };
            let method = header(&pairs, ":method").unwrap_or("").to_string();
            let path = header(&pairs, ":path").unwrap_or("").to_string();
            if method.is_empty() {
                return fail(&mut caller, dispatch, "no :method");
            }
            if path.is_empty() {
                return fail(&mut caller, dispatch, "no :path");
            }
            if upstream.is_empty() {
                return fail(&mut caller, dispatch, "tcp socket - no host");
            }
            let tls = header(&pairs, ":scheme") == Some("https");
            let (host, port) = split_host(&upstream, tls);
            let Some(port) = port else {
                return fail(&mut caller, dispatch, "tcp socket - invalid port");
            };
            let authority = header(&pairs, ":authority")
                .filter(|authority| !authority.is_empty())
                .map_or_else(|| upstream.clone(), str::to_string);
            let state = caller.data_mut();
            let token = state.next_token;
            state.next_token = state.next_token.wrapping_add(1);
            dispatch.outcome = DispatchOutcome::Accepted(token);
            let now = state.now_ns;
            let address = format!("{host}:{port}");
            let (plain_port, tls_port) = state.options.receiver_ports;
            let result = if !state.options.resolvable.contains(&host) {
                Some((
                    now,
                    CallResult::Failed {
                        status: "resolver failure",
                        log: "dispatch failed: tcp socket - resolver error: Host not found"
                            .to_string(),
                    },
                ))
            } else if port != plain_port && port != tls_port {
                Some((
                    now,
                    CallResult::Failed {
                        status: "broken connection",
                        log: "dispatch failed: tcp socket - Connection refused".to_string(),
                    },
                ))
            } else if tls && port == plain_port {
                Some((
                    now,
                    CallResult::Failed {
                        status: "tls handshake failure",
                        log: "dispatch failed: tcp socket - tls handshake failed".to_string(),
                    },
                ))
            } else {
                None
            };
            let result = match result {
                Some(failure) => failure,
                None => {
                    let headers = wire_headers(true, &pairs, &authority, body.len());
                    let reply = if !tls && port == tls_port {
                        // nginx: "The plain HTTP request was sent to HTTPS port".
                        Reply::status(400)
                    } else {
                        state.next_reply()
                    };
                    let answered = answer_at(state, &reply, timeout_ms, true, &address);
                    let at_ms = state.elapsed_ms();
                    if reply == Reply::Refuse {
                        // The connection is refused: nothing reaches the receiver.
                        answered
                    } else {
                        state.received.push(Received {
                            at_ns: now,
                            at_ms,
                            method,
                            path,
                            authority,
                            tls,
                            port,
                            upstream: upstream.clone(),
                            headers,
                            body,
                            reply,
                            context,
                            step,
                        });
                        answered
                    }
                }
            };
            state.pending.push(Pending {
                token,
                context,
                due_ns: result.0,
                result: result.1,
            });
            state.dispatches.push(dispatch);
            Ok(memory::write_u32(&mut caller, out_token, token)?.map_or(6, |()| status::OK))
        }
    }
}

/// When and how a call the receiver got is answered.
fn answer_at(
    state: &HostState,
    reply: &Reply,
    timeout_ms: u32,
    kong: bool,
    address: &str,
) -> (u64, CallResult) {
    let now = state.now_ns;
    let timeout_ns = u64::from(timeout_ms) * 1_000_000;
    let timed_out = CallResult::Failed {
        status: "timeout",
        log: format!("dispatch failed: tcp socket - timed out reading from \"{address}\""),
    };
    match reply {
        Reply::Status {
            status,
            headers,
            body,
        } => {
            let delay = state.plan.delay_ms * 1_000_000;
            if delay > timeout_ns {
                return (now + timeout_ns, timed_out);
            }
            let mut response = vec![(":status".to_string(), status.to_string())];
            if kong {
                response.push((":dispatch_status".to_string(), "ok".to_string()));
            }
            // The receiver's own names: Kong passes them as sent; Envoy lowercases every name.
            let length = if kong {
                "Content-Length"
            } else {
                "content-length"
            };
            response.push((length.to_string(), body.len().to_string()));
            response.extend(headers.iter().map(|(name, value)| {
                let name = if kong {
                    name.clone()
                } else {
                    name.to_ascii_lowercase()
                };
                (name, value.clone())
            }));
            (
                now + delay,
                CallResult::Response {
                    status: *status,
                    headers: response,
                    body: body.clone().into_bytes(),
                },
            )
        }
        Reply::Refuse => (
            now,
            CallResult::Failed {
                status: "broken connection",
                log: "dispatch failed: tcp socket - Connection reset by peer".to_string(),
            },
        ),
        Reply::Silence => (now + timeout_ns, timed_out),
    }
}

fn envoy_http_call(
    caller: &mut Ctx<'_>,
    mut dispatch: Dispatch,
    pairs: Option<Vec<(String, String)>>,
    out_token: i32,
) -> Result<i32> {
    let state = caller.data_mut();
    let refuse = |state: &mut HostState, mut dispatch: Dispatch, code: i32| -> Result<i32> {
        dispatch.outcome = DispatchOutcome::Refused(code);
        state.dispatches.push(dispatch);
        Ok(code)
    };
    let Some(pairs) = pairs else {
        return refuse(state, dispatch, status::BAD_ARGUMENT);
    };
    // Context::httpCall: an unknown cluster, or a missing :path, :method or :authority, is
    // BadArgument.
    if !state.options.clusters.contains(&dispatch.upstream) {
        return refuse(state, dispatch, status::BAD_ARGUMENT);
    }
    let (Some(method), Some(path), Some(authority)) = (
        header(&pairs, ":method").map(str::to_string),
        header(&pairs, ":path").map(str::to_string),
        header(&pairs, ":authority").map(str::to_string),
    ) else {
        return refuse(state, dispatch, status::BAD_ARGUMENT);
    };
    let token = state.next_token.wrapping_add(1).max(1);
    state.next_token = token;
    dispatch.outcome = DispatchOutcome::Accepted(token);
    let tls = header(&pairs, ":scheme") == Some("https");
    let reply = state.next_reply();
    let (due, mut result) = answer_at(state, &reply, dispatch.timeout_ms, false, "");
    // A stream's call made after its end: sent, but the answer never comes back.
    let finished_stream =
        !state.in_root() && matches!(dispatch.step, Step::Log | Step::Done | Step::Delete);
    if finished_stream {
        result = CallResult::Lost;
    }
    let headers = wire_headers(false, &pairs, &authority, dispatch.body.len());
    let at_ms = state.elapsed_ms();
    let refused = reply == Reply::Refuse;
    if !refused {
        state.received.push(Received {
            at_ns: state.now_ns,
            at_ms,
            method,
            path,
            authority,
            tls,
            port: if tls { 443 } else { 80 },
            upstream: dispatch.upstream.clone(),
            headers,
            body: dispatch.body.clone(),
            reply,
            context: dispatch.context,
            step: dispatch.step,
        });
    }
    state.pending.push(Pending {
        token,
        context: dispatch.context,
        due_ns: due,
        result,
    });
    state.dispatches.push(dispatch);
    Ok(memory::write_u32(caller, out_token, token)?.map_or(6, |()| status::OK))
}

// --- gRPC (Kong: not implemented; Envoy: not modelled) ------------------------------------------

fn grpc(caller: &mut Ctx<'_>, name: &str) -> Error {
    if kong(caller) {
        kong_nyi(caller, name)
    } else {
        not_modelled(caller, name)
    }
}

fn proxy_get_status(
    mut caller: Ctx<'_>,
    code: i32,
    message: i32,
    message_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_get_status");
    if kong(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_get_status"));
    }
    let a = memory::write_u32(&mut caller, code, 0)?;
    let b = memory::write_u32(&mut caller, message, 0)?;
    let c = memory::write_u32(&mut caller, message_size, 0)?;
    Ok(if a.and(b).and(c).is_ok() {
        status::OK
    } else {
        6
    })
}

// --- context, foreign functions, done -----------------------------------------------------------

fn proxy_set_effective_context(mut caller: Ctx<'_>, context: i32) -> Result<i32> {
    note(&mut caller, "proxy_set_effective_context");
    let context = context as u32;
    let state = caller.data_mut();
    // ngx_wasm_module: a no-op (debug log only).
    if state.rules().is_kong() {
        return Ok(status::OK);
    }
    if context != state.root_context && !state.streams.contains_key(&context) {
        return Ok(status::BAD_ARGUMENT);
    }
    if let Some(frame) = state.frame.as_mut() {
        frame.context = context;
    }
    Ok(status::OK)
}

#[allow(clippy::too_many_arguments)]
fn proxy_call_foreign_function(
    mut caller: Ctx<'_>,
    name: i32,
    name_size: i32,
    _args: i32,
    _args_size: i32,
    _out_ptr: i32,
    _out_size: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_call_foreign_function");
    let rules = caller.data().rules();
    match rules {
        Rules::Kong(version) if !version.has_foreign_functions() => {
            return Err(kong_nyi(&mut caller, "proxy_call_foreign_function"));
        }
        _ => {}
    }
    let name = read_or_return!(input_string(&mut caller, name, name_size));
    if rules.is_kong() {
        // a376e67: `resolve_lua` (Kong's Lua DNS resolver), anything else traps.
        if name == "resolve_lua" {
            return Err(not_modelled(
                &mut caller,
                "proxy_call_foreign_function(resolve_lua)",
            ));
        }
        return Err(kong_internal(&mut caller, "unknown foreign function"));
    }
    Ok(status::NOT_FOUND)
}

fn proxy_done(mut caller: Ctx<'_>) -> Result<i32> {
    note(&mut caller, "proxy_done");
    if kong(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_done"));
    }
    caller.data_mut().done_called = true;
    Ok(status::OK)
}

// --- metrics ----------------------------------------------------------------------------------

/// Kong: metrics are not implemented before 3.8.
fn kong_without_metrics(caller: &Ctx<'_>) -> bool {
    matches!(caller.data().rules(), Rules::Kong(version) if !version.has_metrics())
}

/// ngx_crc32_long, for Kong's metric ids.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn metric_index(state: &HostState, id: u32) -> Option<usize> {
    if state.rules().is_kong() {
        let filter = &state.options.filter_name;
        state
            .metrics
            .iter()
            .position(|metric| crc32(format!("pw.{filter}.{}", metric.name).as_bytes()) == id)
    } else {
        (id as usize)
            .checked_sub(1)
            .filter(|index| *index < state.metrics.len())
    }
}

fn proxy_define_metric(
    mut caller: Ctx<'_>,
    kind: i32,
    name: i32,
    name_size: i32,
    out: i32,
) -> Result<i32> {
    note(&mut caller, "proxy_define_metric");
    if kong_without_metrics(&caller) {
        return Err(kong_nyi(&mut caller, "proxy_define_metric"));
    }
    let name = read_or_return!(input_string(&mut caller, name, name_size));
    let is_kong = kong(&caller);
    if !(0..=2).contains(&kind) {
        if is_kong {
            return Err(kong_internal(
                &mut caller,
                &format!("could not define metric \"{name}\": unknown type \"{kind}\""),
            ));
        }
        return Ok(status::BAD_ARGUMENT);
    }
    let state = caller.data_mut();
    let id = if is_kong {
        let filter = state.options.filter_name.clone();
        // NGX_WA_METRICS_DEFAULT_MAX_NAME_LEN
        if 4 + filter.len() + name.len() > 256 {
            return Err(kong_internal(
                &mut caller,
                &format!("could not define metric: name \"{name}\" too long"),
            ));
        }
        if !state.metrics.iter().any(|metric| metric.name == name) {
            state.metrics.push(Metric {
                name: name.clone(),
                kind,
                value: 0,
            });
        }
        crc32(format!("pw.{filter}.{name}").as_bytes())
    } else {
        match state.metrics.iter().position(|metric| metric.name == name) {
            Some(index) => index as u32 + 1,
            None => {
                state.metrics.push(Metric {
                    name,
                    kind,
                    value: 0,
                });
                state.metrics.len() as u32
            }
        }
    };
    Ok(memory::write_u32(&mut caller, out, id)?.map_or(6, |()| status::OK))
}

/// The metric `id` names, for host function `name` ("could not {what} metric id ...").
/// Kong before 3.8 does not implement the function; Kong traps on an unknown id, Envoy
/// answers NotFound.
fn find_metric(
    caller: &mut Ctx<'_>,
    name: &str,
    id: u32,
    what: &str,
) -> Result<std::result::Result<usize, i32>> {
    note(caller, name);
    if kong_without_metrics(caller) {
        return Err(kong_nyi(caller, name));
    }
    match metric_index(caller.data(), id) {
        Some(index) => Ok(Ok(index)),
        None if kong(caller) => Err(kong_internal(
            caller,
            &format!("could not {what} metric id \"{id}\": metric not found"),
        )),
        None => Ok(Err(status::NOT_FOUND)),
    }
}

fn proxy_increment_metric(mut caller: Ctx<'_>, id: i32, offset: i64) -> Result<i32> {
    let id = id as u32;
    let index = read_or_return!(find_metric(
        &mut caller,
        "proxy_increment_metric",
        id,
        "increment"
    ));
    let kind = caller.data().metrics[index].kind;
    if kong(&caller) {
        if kind != 0 {
            // ngx_wa_metrics_increment: only counters.
            return Err(kong_internal(
                &mut caller,
                &format!("could not increment metric id \"{id}\": metric not a counter"),
            ));
        }
    } else if (kind == 0 && offset < 0) || kind == 2 {
        // Envoy: a counter only goes up; a histogram is recorded, not incremented.
        return Ok(status::BAD_ARGUMENT);
    }
    caller.data_mut().metrics[index].value += offset;
    Ok(status::OK)
}

fn proxy_record_metric(mut caller: Ctx<'_>, id: i32, value: i64) -> Result<i32> {
    let id = id as u32;
    let index = read_or_return!(find_metric(
        &mut caller,
        "proxy_record_metric",
        id,
        "record value in"
    ));
    if kong(&caller) && caller.data().metrics[index].kind == 0 {
        return Err(kong_internal(
            &mut caller,
            &format!("could not record value in metric id \"{id}\": metric is a counter"),
        ));
    }
    caller.data_mut().metrics[index].value = value;
    Ok(status::OK)
}

fn proxy_get_metric(mut caller: Ctx<'_>, id: i32, out: i32) -> Result<i32> {
    let id = id as u32;
    let index = read_or_return!(find_metric(&mut caller, "proxy_get_metric", id, "retrieve"));
    let metric = caller.data().metrics[index].clone();
    if metric.kind == 2 {
        if kong(&caller) {
            return Err(kong_internal(
                &mut caller,
                &format!("could not retrieve metric id \"{id}\": metric is a histogram"),
            ));
        }
        return Ok(status::BAD_ARGUMENT);
    }
    Ok(memory::write_u64(&mut caller, out, metric.value as u64)?.map_or(6, |()| status::OK))
}

/// Kong 3.4-3.8: a failed call is only logged.
pub fn kong_silent_failures(rules: Rules) -> bool {
    matches!(rules, Rules::Kong(version) if !version.reports_failed_calls())
}

/// The answer `on_http_call_response` reads, as each host builds it.
pub fn answer_for(rules: Rules, result: &CallResult) -> Answer {
    match result {
        CallResult::Response { headers, body, .. } => {
            let mut pairs = headers.clone();
            let mut hidden = Vec::new();
            if let Rules::Kong(version) = rules {
                // `:dispatch_status` exists from 9136e46 (3.9): a special key, in the pairs
                // when not empty ("ok").
                if !version.reports_failed_calls() {
                    pairs.retain(|(name, _)| name != ":dispatch_status");
                }
            } else {
                pairs.retain(|(name, _)| name != ":dispatch_status");
            }
            hidden.extend(
                pairs
                    .iter()
                    .filter(|(name, _)| name == ":dispatch_status")
                    .cloned(),
            );
            Answer {
                pairs,
                hidden,
                body: body.clone(),
                failed: false,
            }
        }
        CallResult::Failed { status, .. } => {
            let pairs = if rules.is_kong() {
                vec![(":dispatch_status".to_string(), status.to_string())]
            } else {
                Vec::new()
            };
            Answer {
                hidden: pairs.clone(),
                pairs,
                body: Vec::new(),
                failed: true,
            }
        }
        CallResult::Lost => Answer::default(),
    }
}
