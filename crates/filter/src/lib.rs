//! `event_hooks.wasm`: the proxy-wasm filter, a thin host adapter over
//! [`event_hooks_core`], which holds every rule of the product. This crate is the only code
//! that talks to proxy-wasm; it moves bytes between the host and the core.
//!
//! * [`wire`]: the ABI's wire formats: property values (Envoy: 8-byte little-endian
//!   integers; Kong: decimal strings) and serialized header maps. Pure, so tested natively.
//! * [`differences`]: everything that differs between Envoy and Kong (call targets, property
//!   encodings, which calls exist), and how the host is detected. Pure, so tested natively.
//! * `abi` (wasm32 only): checked bindings to the host calls the filter uses. The SDK's own
//!   wrappers panic on unexpected statuses and on non-UTF-8 header values; these return errors.
//! * `shared` (wasm32 only): the proxy's shared data, for state every worker sees.
//! * `metrics` (wasm32 only): the core's metrics as the host's.
//! * `root` and `http` (wasm32 only): the root context, which owns the per-VM queue and alone
//!   dispatches calls, and the HTTP context, which captures a request and hands its event over
//!   in `on_log`; `log_phase` (wasm32 only): that hand-over, shared with the root context's
//!   own `on_log` when Envoy runs the filter as a wasm access logger.

pub mod differences;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod log_phase;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod shared;

// The module's entry point: register the root context, and log any panic before the VM aborts
// (there should be none; the lints forbid the usual causes).
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        abi::log(event_hooks_core::log::Level::Critical, &format!("event_hooks panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::new())
    });
}}
