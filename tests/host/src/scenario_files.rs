//! Which scenario files exist and where each runs: shared by build.rs (which generates one test
//! per file and runner) and the library (which plays them).
//!
//! The Envoy access logger ([`access_logger_skip`]) plays every scenario the `harness-envoy`
//! runner plays but for those whose configuration an access logger refuses.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The `*.json` files of `dir`, sorted.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The runners a scenario plays on (default: all three).
pub fn runs_on(scenario: &Value) -> Vec<String> {
    match scenario.get("runs_on").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => ["harness-kong", "harness-envoy", "envoy"]
            .map(str::to_string)
            .to_vec(),
    }
}

/// Why a scenario leaves `runner` out (its `why_not` entry).
pub fn why_not(scenario: &Value, runner: &str) -> String {
    scenario
        .pointer(&format!("/why_not/{runner}"))
        .and_then(Value::as_str)
        .unwrap_or("not in runs_on")
        .to_string()
}

/// The sources an Envoy access logger refuses (they read the response body: the filter's
/// `crates/core/src/attachment.rs`).
pub const ACCESS_LOGGER_REFUSED_SOURCES: &[&str] = &["crud", "dao:crud"];

/// Why a scenario cannot be played with the filter as Envoy's wasm access logger (`None`: it
/// can): it does not run on `harness-envoy`, or its configuration asks for what an access
/// logger cannot do, which the filter refuses when it loads: a `crud` or `dao:crud` hook
/// (they read the response body, which no access logger sees) or the `admin` endpoints (they
/// answer requests, which needs an HTTP context).
pub fn access_logger_skip(scenario: &Value) -> Option<String> {
    if !runs_on(scenario)
        .iter()
        .any(|runner| runner == "harness-envoy")
    {
        return Some(format!(
            "not on harness-envoy: {}",
            why_not(scenario, "harness-envoy")
        ));
    }
    let config = scenario.get("config")?;
    let mut reasons: Vec<String> = config
        .get("hooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, hook)| {
            let source = hook.get("source").and_then(Value::as_str)?;
            ACCESS_LOGGER_REFUSED_SOURCES.contains(&source).then(|| {
                format!("hooks[{index}].source is {source}, which reads the response body")
            })
        })
        .collect();
    if config.get("admin").is_some() {
        reasons.push("admin endpoints answer requests".to_string());
    }
    (!reasons.is_empty()).then(|| {
        format!(
            "an access logger refuses it (no HTTP context): {}",
            reasons.join("; ")
        )
    })
}
