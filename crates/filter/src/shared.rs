//! The proxy's shared data (process-wide, across workers) behind the core's [`Shared`] trait.

use std::ptr::null_mut;

use super::abi::{HostError, take};
use event_hooks_core::shared::{Shared, Written};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// The host's shared data.
pub struct HostShared;

impl Shared for HostShared {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        let mut data = null_mut();
        let mut size = 0usize;
        let mut cas = 0u32;
        // SAFETY: the key pointer and length describe `key`, alive for the call; the other
        // pointers are valid places for the host to write its reply.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            // SAFETY: on Ok the host wrote an allocation of `size` bytes (or null) to `data`.
            OK => Ok(Some((unsafe { take(data, size) }, cas))),
            NOT_FOUND => Ok(None),
            status => Err(format!("get_shared_data: {}", HostError(status))),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<Written, String> {
        // SAFETY: the pointers and lengths describe `key` and `value`, alive for the call.
        let status = unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        };
        match status {
            OK => Ok(Written::Ok),
            CAS_MISMATCH => Ok(Written::Conflict),
            status => Err(format!("set_shared_data: {}", HostError(status))),
        }
    }
}
