//! Every test of the test host in one binary: each test binary links wasmtime and compiles the
//! 2 MB filter with cranelift once, so one binary instead of four saves three links and three
//! compilations of the filter (`make hosts` times in the root `Cargo.toml`, profile `hosts`).
//!
//! * `scenarios`: every `tests/scenarios/*.json` on each runner.
//! * `emitted`: events a Kong Lua plugin emits through `kong.ctx.shared`.
//! * `filter`: the real filter per host.
//! * `kong`: the real filter under every Kong pin's rules, and the Kong soak.
//! * `host_rules`: the host's own rules, with small deliberately wrong filters in WAT.
//! * `lean_path`: what the HTTP filter reads of a request on Envoy, and where.
//! * `access_logger`: Envoy's wasm access logger: the scenarios as an HTTP filter and as an
//!   access logger, what the root context's `on_log` reads, the refusals, no HTTP context.

mod access_logger;
mod batches;
mod common;
mod emitted;
mod filter;
mod host_rules;
mod kong;
mod lean_path;
mod scenarios;
