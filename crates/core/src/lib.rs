//! `event_hooks_core`: every rule of Kong Gateway's Event Hooks as the `event_hooks.wasm`
//! proxy-wasm filter runs them: configuration and its validation, events and their sources,
//! filters, handlers, signing, snooze/on-change controls and the delivery queue. It is plain
//! data in, plain data out, and reaches the host only through the traits of [`ports`] (clock,
//! transport, shared store, metrics, log, properties), so it builds and is unit-tested
//! natively with their fakes (`cargo test`). It does not depend on proxy-wasm: the host
//! adapter is the crate `event-hooks` (`crates/filter`), the command line `event-hooks-cli`.
//!
//! Nothing outside tests may panic (see the clippy lints in `Cargo.toml`): a panic kills the VM
//! and the proxy's traffic with it.

pub mod access_log_filter;
pub mod admin;
pub mod attachment;
pub mod catalog;
pub mod config;
pub mod control;
pub mod delivery;
pub mod emitted;
pub mod event;
pub mod filter;
pub mod handler;
pub mod hooks;
pub mod id;
pub mod log;
pub mod metrics;
pub mod needs;
pub mod ports;
pub mod reader;
pub mod runtime;
pub mod shared;
pub mod signing;
pub mod source;
pub mod source_id;
pub mod template;

/// Counts the heap's bytes, so that a `lambda` run can be stopped at its memory budget.
#[cfg(feature = "lambda")]
#[global_allocator]
static HEAP: handler::lambda::heap::Counting = handler::lambda::heap::Counting;

/// The `user-agent` of every delivery: `event-hooks/<crate version>`.
pub const USER_AGENT: &str = concat!("event-hooks/", env!("CARGO_PKG_VERSION"));
