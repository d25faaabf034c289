//! Which scenario files exist and where each runs: shared by build.rs (which generates one test
//! per file and runner) and the library (which plays them).

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
