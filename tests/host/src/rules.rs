//! The rules of the two hosts the test host plays, and what changes between Kong versions.
//!
//! Kong's rules come from the source of ngx_wasm_module at the commit each Kong release bundles
//! (Kong's `.requirements`, `NGX_WASM_MODULE=`):
//!
//! | Kong | ngx_wasm_module | what changes for a filter |
//! |---|---|---|
//! | 3.4 | prerelease-0.1.0 | no check of the step of `proxy_http_call` (a call from `on_log` fails with the trap "dispatch failed: bad step"); `set_tick_period` outside the root context is ignored |
//! | 3.5 | 21732b1 | as 3.4 |
//! | 3.6 | a7087a3 | `proxy_http_call` traps outside request headers/body, `on_tick` and a call's response; `kong.*` properties (Kong's `kong/runloop/wasm.lua`) |
//! | 3.7 | 91d447f | as 3.6 |
//! | 3.8 | 96b4e27 | metrics (`proxy_define_metric`, ...) implemented (before: traps, "function not yet implemented") |
//! | 3.9 | 9136e46 | a failed call calls `on_http_call_response` with `:dispatch_status` (before: no callback at all, an `[error]` log line); a second `set_tick_period(0)` no longer traps; `kong.route_name`, `kong.service_name` |
//! | 3.10 | (Enterprise only, not in the public repository) | taken as 3.9 |

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
            4 => "prerelease-0.1.0",
            5 => "21732b18fc46f409962ae77ddf01c713b568d078",
            6 => "a7087a37f0d423707366a694630f1e09f4c21728",
            7 => "91d447ffd0e9bb08f11cc69d1aa9128ec36b4526",
            8 => "96b4e27e10c63b07ed40ea88a91c22f23981db35",
            _ => "9136e463a6f1d80755ce66c88c3ddecd0eb5e25d",
        }
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
}
