//! One test per scenario file and runner, so that `cargo test` reports each on its own:
//! writes `$OUT_DIR/scenario_tests.rs`, included by `tests/all/scenarios.rs`. A scenario whose
//! `runs_on` leaves a runner out becomes an ignored test there, with its `why_not`. And one
//! test per scenario file for Envoy's access logger, `$OUT_DIR/access_logger_tests.rs`,
//! included by `tests/all/access_logger.rs`: ignored, with the reason, where an access logger
//! cannot play it (`scenario_files::access_logger_skip`).

use std::fmt::Write as _;
use std::path::Path;

#[path = "src/scenario_files.rs"]
mod scenario_files;

/// (module, runner, Kong version): the runners and, for Kong, the versions played. Kong 3.9
/// is the default; 3.10 (the last pin, which leaks a connection slot per parallel call as
/// 3.7 to 3.9 do), 3.8 (metrics, but failed calls go unreported), 3.6 (no environment, no
/// leak) and 3.4 (no metrics, no `kong.*` properties, a crash on reading an answer's body)
/// bound the range of Kong behaviours.
const RUNNERS: &[(&str, &str, Option<&str>)] = &[
    ("harness_envoy", "harness-envoy", None),
    ("harness_kong", "harness-kong", Some("3.9.1")),
    ("harness_kong_3_10", "harness-kong", Some("3.10.0")),
    ("harness_kong_3_8", "harness-kong", Some("3.8.1")),
    ("harness_kong_3_6", "harness-kong", Some("3.6.1")),
    ("harness_kong_3_4", "harness-kong", Some("3.4.2")),
];

/// A test's name for a scenario file: its stem, lowercase, `_` for anything else.
fn ident(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A scenario file's JSON; an unreadable scenario still gets its test, which reports why it
/// fails.
fn scenario(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("../scenarios");
    println!("cargo::rerun-if-changed=../scenarios");
    let files = scenario_files::json_files(dir);
    let mut out = String::new();
    for (module, runner, version) in RUNNERS {
        writeln!(out, "mod {module} {{")?;
        for path in &files {
            println!("cargo::rerun-if-changed={}", path.display());
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let ident = ident(path);
            let scenario = scenario(path);
            if !scenario_files::runs_on(&scenario)
                .iter()
                .any(|r| r == runner)
            {
                let why = scenario_files::why_not(&scenario, runner);
                writeln!(out, "    #[ignore = {:?}]", format!("{runner}: {why}"))?;
            }
            writeln!(out, "    #[test]")?;
            writeln!(out, "    fn {ident}() {{")?;
            writeln!(
                out,
                "        super::play({name:?}, {runner:?}, {version:?});"
            )?;
            writeln!(out, "    }}")?;
        }
        writeln!(out, "}}")?;
    }
    let out_dir = std::env::var("OUT_DIR")?;
    std::fs::write(Path::new(&out_dir).join("scenario_tests.rs"), out)?;
    let mut out = String::new();
    writeln!(out, "mod scenarios {{")?;
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if let Some(why) = scenario_files::access_logger_skip(&scenario(path)) {
            writeln!(out, "    #[ignore = {:?}]", format!("access logger: {why}"))?;
        }
        writeln!(out, "    #[test]")?;
        writeln!(out, "    fn {}() {{", ident(path))?;
        writeln!(out, "        super::both_modes({name:?});")?;
        writeln!(out, "    }}")?;
    }
    writeln!(out, "}}")?;
    std::fs::write(Path::new(&out_dir).join("access_logger_tests.rs"), out)?;
    Ok(())
}
