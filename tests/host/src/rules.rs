//! The rules of the two hosts the test host plays, and what changes between Kong versions.
//!
//! Kong's rules come from the source of ngx_wasm_module at the commit each Kong release bundles
//! (Kong's `.requirements`, `NGX_WASM_MODULE=`):
//!
//! | Kong | ngx_wasm_module, nginx | what changes for a filter |
//! |---|---|---|
//! | 3.4 | 21732b18, 1.21.4 | no check of the step of `proxy_http_call` (a call from `on_log` fails with the trap "dispatch failed: bad step"); `set_tick_period` outside the root context is ignored; reading a request-scoped buffer from the root context (a call's answer body) dereferences a null request context: SIGSEGV; no environment variables reach the VM |
//! | 3.5 | 21732b18, 1.21.4 | as 3.4 |
//! | 3.6 | a7087a3, 1.25.3 | `proxy_http_call` traps outside request headers/body, `on_tick` and a call's response; `kong.*` properties (Kong's `kong/runloop/wasm.lua`); answer bodies read safely; still no environment variables |
//! | 3.7 | 91d447f, 1.25.3 | several calls in flight per root context: every call that gets its answer while another of the same root context is pending leaks its connection slot; environment variables reach the VM |
//! | 3.8 | 96b4e27, 1.25.3 | metrics (`proxy_define_metric`, ...) implemented (before: traps, "function not yet implemented") |
//! | 3.9 | 9136e46, 1.25.3 | a failed call calls `on_http_call_response` with `:dispatch_status` (before: no callback at all, an `[error]` log line); a second `set_tick_period(0)` no longer traps; `kong.route_name`, `kong.service_name` |
//! | 3.10 | a376e67, 1.27.1 | any scoped (dotted) property read outside a request is refused ("cannot get scoped properties outside of a request"; before, some crashed); `plugin_name` readable in `on_tick`; `on_vm_start` gets the VM configuration's size (before: 0); `proxy_call_foreign_function` implemented |
//!
//! On every version: a call made from `on_http_call_response` crashes the worker (SIGSEGV: the
//! finished call's connection slot is reused), reading `plugin_name` in `on_configure` crashes
//! it (the root context has no filter chain), header names keep the sender's case, `:authority`
//! is `server_name:port`, and a local response's `details` is the status line's reason phrase.

use std::fmt;

/// Which host's rules the test host follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Envoy (and Istio): cluster upstreams, 8-byte integer properties.
    Envoy,
    /// Kong Gateway's ngx_wasm_module, at the given Kong version.
    Kong(KongVersion),
}

impl Rules {
    /// Kong at a version such as `"3.8.0"`.
    pub fn kong(version: &str) -> Result<Rules, String> {
        KongVersion::parse(version).map(Rules::Kong)
    }

    pub fn is_kong(&self) -> bool {
        matches!(self, Rules::Kong(_))
    }

    pub fn kong_version(&self) -> Option<KongVersion> {
        match self {
            Rules::Kong(version) => Some(*version),
            Rules::Envoy => None,
        }
    }
}

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rules::Envoy => write!(f, "envoy"),
            Rules::Kong(version) => write!(f, "kong {version}"),
        }
    }
}

/// A Kong Gateway release, 3.4 to 3.10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KongVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KongVersion {
    pub fn parse(text: &str) -> Result<KongVersion, String> {
        let mut parts = text.split('.').map(str::parse::<u32>);
        let mut next = || parts.next().transpose().map_err(|e| format!("{text}: {e}"));
        let major = next()?.ok_or_else(|| format!("{text}: no version"))?;
        let minor = next()?.unwrap_or(0);
        let patch = next()?.unwrap_or(0);
        let version = KongVersion {
            major,
            minor,
            patch,
        };
        if !(KongVersion::at(3, 4)..KongVersion::at(3, 11)).contains(&version) {
            return Err(format!(
                "Kong {text}: proxy-wasm filters run in Kong 3.4 to 3.10 only"
            ));
        }
        Ok(version)
    }

    const fn at(major: u32, minor: u32) -> KongVersion {
        KongVersion {
            major,
            minor,
            patch: 0,
        }
    }

    /// The ngx_wasm_module commit this release bundles.
    pub fn ngx_wasm_module(&self) -> &'static str {
        match self.minor {
            4 | 5 => "21732b18fc46f409962ae77ddf01c713b568d078",
            6 => "a7087a37f0d423707366a694630f1e09f4c21728",
            7 => "91d447ffd0e9bb08f11cc69d1aa9128ec36b4526",
            8 => "96b4e27e10c63b07ed40ea88a91c22f23981db35",
            9 => "9136e463a6f1d80755ce66c88c3ddecd0eb5e25d",
            _ => "a376e67ce02c916304cc9b9ef25a540865ee6740",
        }
    }

    /// The nginx this release bundles (`ngx.nginx_version`).
    pub fn nginx_version(&self) -> &'static str {
        match self.minor {
            4 | 5 => "1.21.4",
            6..=9 => "1.25.3",
            _ => "1.27.1",
        }
    }

    /// Several calls in flight per root context leak connection slots (91d447f, Kong 3.7: the
    /// change that allowed parallel calls): a call that gets its HTTP answer while another call
    /// of the same root context is pending never closes its fake request. Not fixed later.
    pub fn leaks_parallel_calls(&self) -> bool {
        *self >= KongVersion::at(3, 7)
    }

    /// The debug line ngx_http_proxy_wasm_dispatch_resume_handler writes when a call ends while
    /// others of its context are pending (the one whose slot leaks).
    pub fn more_pending_message(&self) -> &'static str {
        if *self >= KongVersion::at(3, 10) {
            "proxy_wasm more dispatch operations pending..."
        } else {
            "proxy_wasm more http dispatch calls pending..."
        }
    }

    /// 21732b18 (Kong 3.4, 3.5): `ngx_proxy_wasm_get_buffer_helper` dereferences the request
    /// context before looking at the buffer type, and the root context has none: reading a
    /// call's answer body (or any request-scoped buffer) from the root context is a SIGSEGV.
    /// Fixed in a7087a3 (3.6; upstream 0.2.0).
    pub fn crashes_reading_call_bodies(&self) -> bool {
        *self < KongVersion::at(3, 6)
    }

    /// Environment variables reach the VM's WASI (`environ_get`) from 91d447f (Kong 3.7;
    /// upstream 0.3.0). Before, the VM sees none.
    pub fn passes_env(&self) -> bool {
        *self >= KongVersion::at(3, 7)
    }

    /// `plugin_name` read in the root context's `on_tick` works from a376e67 (Kong 3.10,
    /// upstream fa0cd87c); before, it crashes as in `on_configure`.
    pub fn plugin_name_in_tick(&self) -> bool {
        *self >= KongVersion::at(3, 10)
    }

    /// Every scoped (dotted) property read outside a request is refused with "cannot get
    /// scoped properties outside of a request" (a376e67, Kong 3.10, upstream a31f6d87). Before,
    /// only `ngx.*` and host (`kong.*`) properties were caught; the others with a getter of
    /// their own dereference the missing request (SIGSEGV).
    pub fn catches_scoped_properties(&self) -> bool {
        *self >= KongVersion::at(3, 10)
    }

    /// `on_vm_start` gets the VM configuration's size (a376e67, Kong 3.10, upstream
    /// 715589a2); before, it gets the root id, 0.
    pub fn passes_vm_config_size(&self) -> bool {
        *self >= KongVersion::at(3, 10)
    }

    /// `proxy_call_foreign_function` is implemented (a376e67, Kong 3.10): `resolve_lua`, and a
    /// trap for any other name. Before, it traps as not implemented.
    pub fn has_foreign_functions(&self) -> bool {
        *self >= KongVersion::at(3, 10)
    }

    /// `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
    /// `proxy_get_metric`: implemented since ngx_wasm_module 96b4e27 (Kong 3.8).
    pub fn has_metrics(&self) -> bool {
        *self >= KongVersion::at(3, 8)
    }

    /// A call that fails (resolver, connection, timeout, TLS) still calls
    /// `on_http_call_response`, with `:dispatch_status` (9136e46, Kong 3.9). Before, the call
    /// is dropped with an `[error]` log line and the filter hears nothing.
    pub fn reports_failed_calls(&self) -> bool {
        *self >= KongVersion::at(3, 9)
    }

    /// `proxy_http_call` checks the step it is called from (a7087a3, Kong 3.6); before, only
    /// `on_log`/`on_done` are refused, deeper in the dispatch.
    pub fn checks_dispatch_step(&self) -> bool {
        *self >= KongVersion::at(3, 6)
    }

    /// `set_tick_period` outside the root context traps (3.6); before, it is ignored.
    pub fn tick_period_root_only_traps(&self) -> bool {
        *self >= KongVersion::at(3, 6)
    }

    /// A second `set_tick_period(0)` is accepted (3.9: `if (period && rexec->tick_period)`);
    /// before, any second call traps.
    pub fn allows_zero_tick_reset(&self) -> bool {
        *self >= KongVersion::at(3, 9)
    }

    /// Kong's `kong.*` properties (`kong/runloop/wasm.lua`, Kong 3.6).
    pub fn has_kong_properties(&self) -> bool {
        *self >= KongVersion::at(3, 6)
    }

    /// `kong.route_name`, `kong.service_name` (Kong 3.9).
    pub fn has_kong_names(&self) -> bool {
        *self >= KongVersion::at(3, 9)
    }
}

impl fmt::Display for KongVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = KongVersion::parse("3.8.1").unwrap();
        assert!(v.has_metrics() && !v.reports_failed_calls());
        assert!(KongVersion::parse("3.9").unwrap().reports_failed_calls());
        assert!(!KongVersion::parse("3.7.1").unwrap().has_metrics());
        assert!(KongVersion::parse("3.3.0").is_err());
        assert!(KongVersion::parse("3.11.0").is_err());
        assert!(KongVersion::parse("x").is_err());
        assert_eq!(Rules::kong("3.10.0").unwrap().to_string(), "kong 3.10.0");
    }

    #[test]
    fn pins() {
        let v = |text: &str| KongVersion::parse(text).unwrap();
        assert_eq!(v("3.4.2").ngx_wasm_module(), v("3.5.0").ngx_wasm_module());
        assert!(v("3.4.2").ngx_wasm_module().starts_with("21732b18"));
        assert!(v("3.10.0").ngx_wasm_module().starts_with("a376e67"));
        assert!(v("3.9.1").ngx_wasm_module().starts_with("9136e46"));
        let nginx: Vec<&str> = ["3.4", "3.5", "3.6", "3.9", "3.10"]
            .map(|text| v(text).nginx_version())
            .to_vec();
        assert_eq!(nginx, ["1.21.4", "1.21.4", "1.25.3", "1.25.3", "1.27.1"]);
        assert!(!v("3.6.1").leaks_parallel_calls() && v("3.7.0").leaks_parallel_calls());
        assert!(v("3.5.0").crashes_reading_call_bodies());
        assert!(!v("3.6.0").crashes_reading_call_bodies());
        assert!(!v("3.6.1").passes_env() && v("3.7.1").passes_env());
        assert!(!v("3.9.1").plugin_name_in_tick() && v("3.10.0").plugin_name_in_tick());
        assert!(v("3.10.0").more_pending_message().contains("operations"));
        assert!(
            v("3.9.1")
                .more_pending_message()
                .contains("http dispatch calls")
        );
    }
}
