//! A proxy-wasm host on wasmtime for testing `event_hooks.wasm` under the rules of the hosts it
//! runs in: Envoy, and Kong Gateway 3.4 to 3.10 (ngx_wasm_module), which cannot be run here.
//!
//! * [`rules`]: the two hosts, and what changes between Kong versions.
//! * [`proxy`]: drives a module like a proxy (VM start, configuration, HTTP streams, ticks on a
//!   virtual clock, answers to its calls).
//! * [`abi`], [`wasi`], [`properties`]: the host functions, per host; [`envoy_state`]: Envoy's
//!   dynamic metadata and filter state as a wasm filter reads them.
//! * [`scenario`], [`signature`]: plays `tests/scenarios/*.json`.

pub mod abi;
pub mod envoy_state;
pub mod memory;
pub mod properties;
pub mod proxy;
pub mod rules;
pub mod scenario;
pub mod scenario_files;
pub mod signature;
pub mod state;
pub mod wasi;

pub use proxy::{Filter, LoadError, Outcome, Proxy, Request};
pub use rules::{KongVersion, Rules};
pub use state::{Attachment, Options, Received, Reply};
