//! How the traffic event writes what the host gave: text capped at [`super::MAX_TEXT_BYTES`],
//! Envoy's response flags by their short names, the client's IP, times in RFC 3339.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::{MAX_TEXT_BYTES, RESPONSE_FLAGS, TRUNCATED};
use crate::event::Short;
use std::borrow::Cow;

/// `text` cut to at most [`MAX_TEXT_BYTES`] (plus the [`TRUNCATED`] marker); borrowed when it
/// fits.
pub fn capped_str(text: &str) -> Cow<'_, str> {
    if text.len() > MAX_TEXT_BYTES {
        Cow::Owned(capped(text.to_string()))
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` cut to at most [`MAX_TEXT_BYTES`] (plus the [`TRUNCATED`] marker).
pub fn capped(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(TRUNCATED);
    }
    text
}

/// Envoy's response flags bitmask as its access log writes them (`UF,URX`); `""` for none.
pub fn response_flags(bits: u64) -> String {
    flags_short(bits).as_str().to_string()
}

/// [`response_flags`], on the stack (every flag together takes 104 bytes).
pub(super) fn flags_short(bits: u64) -> Short {
    let mut text = Short::new();
    let mut names = RESPONSE_FLAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1u64 << bit) != 0)
        .map(|(_, name)| *name);
    if let Some(first) = names.next() {
        let _ = text.write_str(first);
        for name in names {
            let _ = text.write_str(",");
            let _ = text.write_str(name);
        }
    }
    text
}

/// The IP of an `ip:port` or `[ipv6]:port` address.
pub fn client_ip(address: &str) -> Option<String> {
    client_ip_str(address).map(str::to_string)
}

pub(super) fn client_ip_str(address: &str) -> Option<&str> {
    let ip = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']').map(|(ip, _)| ip)?
    } else if address.matches(':').count() == 1 {
        address.split_once(':').map(|(ip, _)| ip)?
    } else {
        address
    };
    (!ip.is_empty()).then_some(ip)
}

/// RFC 3339 UTC with milliseconds, from unix nanoseconds. Formatted with `write!`, which
/// reports an unformattable time as an error (empty text) where `to_string` would panic.
pub fn rfc3339(unix_ns: u64) -> String {
    rfc3339_short(unix_ns).as_str().to_string()
}

/// [`rfc3339`], on the stack.
pub(super) fn rfc3339_short(unix_ns: u64) -> Short {
    let mut text = Short::new();
    if let Some(time) = UNIX_EPOCH.checked_add(Duration::from_nanos(unix_ns)) {
        if write!(text, "{}", humantime::format_rfc3339_millis(time)).is_err() {
            text = Short::new();
        }
    }
    text
}
