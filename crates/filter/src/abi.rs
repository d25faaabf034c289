//! Checked bindings to the proxy-wasm host calls the filter makes itself.
//!
//! The SDK's `hostcalls` panic on any status they do not expect and on header values that are
//! not UTF-8; a panic would kill the VM. These bindings return every status to the caller
//! instead. Only `dispatch_http_call` goes through the SDK, which must register the call's
//! token to route its response back to the root context.

use std::ptr::null_mut;

use proxy_wasm::types::{BufferType, MapType};

use super::wire;
use event_hooks_core::log::Level;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_done() -> u32;
    fn proxy_send_local_response(
        response_code: u32,
        response_code_details_data: *const u8,
        response_code_details_size: usize,
        response_body_data: *const u8,
        response_body_size: usize,
        additional_headers_map_data: *const u8,
        additional_headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;

/// A status other than Ok from the host, or a reply that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            12 => "Unimplemented",
            u32::MAX => "undecodable reply",
            _ => "unknown status",
        };
        write!(f, "{name} ({})", self.0)
    }
}

/// Takes ownership of memory the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or point to `size` bytes allocated by this module's allocator for the
/// host's reply.
pub unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the host allocated `size` bytes with the SDK's `proxy_on_memory_allocate`
        // (a `Vec<u8>` of that capacity, forgotten) and filled them.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

/// Writes one line to the proxy's log. A failing log call is ignored: there is nowhere else to
/// report it.
pub fn log(level: Level, message: &str) {
    // SAFETY: the pointer and length describe `message`, alive for the call.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// The host's clock, unix nanoseconds.
pub fn now_ns() -> Option<u64> {
    let mut now = 0u64;
    // SAFETY: `now` is a valid place for the host to write a u64.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut now) };
    (status == OK).then_some(now)
}

/// The host's clock as one callback sees it: read once, when the callback starts, so that
/// every entry point of the core it calls agrees on the time.
pub struct HostClock(Option<u64>);

impl HostClock {
    pub fn read() -> Self {
        HostClock(now_ns())
    }

    /// The time read, ns; `None` when the host did not give it.
    pub fn reading(&self) -> Option<u64> {
        self.0
    }
}

impl event_hooks_core::ports::Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.0.unwrap_or(0)
    }
}

pub fn set_tick_period_ms(period_ms: u64) -> Result<(), HostError> {
    let period = u32::try_from(period_ms).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    match unsafe { proxy_set_tick_period_milliseconds(period) } {
        OK => Ok(()),
        status => Err(HostError(status)),
    }
}

/// Answers the current request from the filter (it never goes upstream). `details`: what the
/// host makes of them differs ([`super::differences::local_response_details`]).
pub fn send_local_response(
    status: u16,
    details: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), HostError> {
    let headers = wire::encode_header_map(headers);
    // SAFETY: every pointer and length describes a buffer alive for the call.
    let result = unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    match result {
        OK => Ok(()),
        status => Err(HostError(status)),
    }
}

/// Tells the host that a root context which answered `false` to `on_done` has finished.
pub fn done() -> Result<(), HostError> {
    // SAFETY: no pointers.
    match unsafe { proxy_done() } {
        OK => Ok(()),
        status => Err(HostError(status)),
    }
}

/// The whole of a buffer (such as the plugin configuration); `None` when the host has none.
pub fn buffer(kind: BufferType) -> Result<Option<Vec<u8>>, HostError> {
    buffer_prefix(kind, usize::MAX)
}

/// At most the first `max_size` bytes of a buffer; `None` when the host has none.
pub fn buffer_prefix(kind: BufferType, max_size: usize) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: `data` and `size` are valid places for the host to write its reply.
    let status = unsafe { proxy_get_buffer_bytes(kind as u32, 0, max_size, &mut data, &mut size) };
    match status {
        // SAFETY: on Ok the host wrote an allocation of `size` bytes (or null) to `data`.
        OK => Ok(Some(unsafe { take(data, size) })),
        NOT_FOUND => Ok(None),
        status => Err(HostError(status)),
    }
}

/// The byte of a buffer at `offset`, as the host reads it: `proxy_get_buffer_bytes` with
/// `start = offset` and one byte at most. (ngx_wasm_module ignores `start`: how the root
/// context tells Kong from Envoy.) `None` when the host gives no byte.
pub fn buffer_byte(kind: BufferType, offset: usize) -> Option<u8> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: `data` and `size` are valid places for the host to write its reply.
    let status = unsafe { proxy_get_buffer_bytes(kind as u32, offset, 1, &mut data, &mut size) };
    if status != OK {
        return None;
    }
    // SAFETY: on Ok the host wrote an allocation of `size` bytes (or null) to `data`.
    let bytes = unsafe { take(data, size) };
    bytes.first().copied()
}

/// A header map (request, response, or a call's response); `None` when the host has none.
pub fn header_map(kind: MapType) -> Result<Option<Vec<(String, String)>>, HostError> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: `data` and `size` are valid places for the host to write its reply.
    let status = unsafe { proxy_get_header_map_pairs(kind as u32, &mut data, &mut size) };
    match status {
        OK => {
            // SAFETY: on Ok the host wrote an allocation of `size` bytes (or null) to `data`.
            let bytes = unsafe { take(data, size) };
            wire::header_map(&bytes)
                .map(Some)
                .ok_or(HostError(u32::MAX))
        }
        NOT_FOUND => Ok(None),
        status => Err(HostError(status)),
    }
}

/// One header of a map, as bytes; `None` when absent. Kong's `:dispatch_status` (why a call
/// failed) is only readable this way: it is not among the map's pairs.
pub fn header_value(kind: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: the name pointer and length describe `name`, alive for the call; `data` and
    // `size` are valid places for the host to write its reply.
    let status = unsafe {
        proxy_get_header_map_value(kind as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match status {
        // SAFETY: on Ok the host wrote an allocation of `size` bytes (or null) to `data`.
        OK => Ok(Some(unsafe { take(data, size) })),
        NOT_FOUND => Ok(None),
        status => Err(HostError(status)),
    }
}

/// A property's raw value; `None` when the host does not have it.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let serialized = path.join("\0");
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: the path pointer and length describe `serialized`, alive for the call; `data`
    // and `size` are valid places for the host to write its reply.
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match status {
        // SAFETY: on Ok the host wrote an allocation of `size` bytes (or null) to `data`.
        OK => Ok(Some(unsafe { take(data, size) })),
        NOT_FOUND => Ok(None),
        status => Err(HostError(status)),
    }
}

/// Kong's reason for a failed call (`tcp socket - timeout`, `resolver failure`, ...).
pub const DISPATCH_STATUS: &str = ":dispatch_status";

/// The host's answer to an HTTP call: its headers, its status, and the start of its body.
pub struct CallAnswer {
    pub headers: Vec<(String, String)>,
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

impl CallAnswer {
    /// Reads the answer in `on_http_call_response`, at most `max_body` bytes of its body, and
    /// none of it unless `read_body` (Kong 3.4 and 3.5 crash reading an answer's body).
    pub fn read(body_size: usize, max_body: usize, read_body: bool) -> CallAnswer {
        let headers = header_map(MapType::HttpCallResponseHeaders)
            .ok()
            .flatten()
            .unwrap_or_default();
        let body = if read_body && body_size > 0 {
            buffer_prefix(BufferType::HttpCallResponseBody, max_body)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut answer = CallAnswer {
            headers,
            status: None,
            body,
        };
        answer.status = answer
            .header(":status")
            .and_then(|status| status.parse().ok());
        if answer.status.is_none() && answer.header(DISPATCH_STATUS).is_none() {
            // Kong: a call that failed has no `:status`, and its reason is not in the pairs.
            if let Ok(Some(reason)) =
                header_value(MapType::HttpCallResponseHeaders, DISPATCH_STATUS)
            {
                if !reason.is_empty() {
                    answer
                        .headers
                        .push((DISPATCH_STATUS.to_string(), wire::string(&reason)));
                }
            }
        }
        answer
    }

    /// The first header called `name`, in any case (Kong keeps the receiver's: `Retry-After`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The core's log, written to the proxy's log.
pub struct HostLog;

impl event_hooks_core::log::Log for HostLog {
    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }
}

/// The current stream's properties: one unreadable counts as absent.
pub struct HostProperties;

impl event_hooks_core::ports::PropertyReader for HostProperties {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path).ok().flatten()
    }
}
