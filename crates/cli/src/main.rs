//! `event-hooks`: checks a filter configuration offline with the filter's own parser, prints
//! the native pre-filter of an Envoy access log entry running the filter, and prints the
//! configuration's JSON Schema.
//!
//! ```text
//! event-hooks validate [--env NAME=VALUE]... <config.json | ->
//! event-hooks envoy-access-log-filter [--env NAME=VALUE]... <config.json | ->
//! event-hooks schema [--kong-meta]
//! ```

mod yaml;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use event_hooks_core::access_log_filter::{self, Generated, PreFilter};
use event_hooks_core::config::{self, Config};

const USAGE: &str = "\
usage: event-hooks validate [--env NAME=VALUE]... <config.json | ->
       event-hooks envoy-access-log-filter [--env NAME=VALUE]... <config.json | ->
       event-hooks schema [--kong-meta]

validate  Checks a filter configuration (JSON) with the filter's own parser and validator.
          Prints `ok: N hooks` and exits 0, or prints every problem as `<json path>: <message>`
          and exits 1. `-` reads the configuration from standard input.
          --env NAME=VALUE (repeatable) gives the filter's VM an environment variable, for the
          `secret_env`, `secrets_env` and `admin.token_env` keys. A VM sees only the variables
          the proxy gives it (Envoy: vm_config.environment_variables; Kong: nginx_main_env), so
          this shell's environment is never read.
envoy-access-log-filter
          Prints, as YAML to paste under an Envoy access log entry's `filter:`, the native
          filter that lets through every request some enabled hook could match, for the filter
          run as an access logger (envoy.access_loggers.wasm): Envoy then enters the VM for no
          other request. When every request must reach the filter (a hook on a source other
          than traffic, or with no condition Envoy can test), prints why, as comments, and no
          filter. Reads the configuration (and --env, and problems) as validate does.
schema    Prints the configuration's JSON Schema (draft 4). --kong-meta prints it as Kong's
          event_hooks.meta.json, {\"config_schema\": <schema>}.

Exit status: 0 valid, 1 invalid, 2 bad usage or unreadable input.
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Version,
    Validate {
        input: String,
        env: HashMap<String, String>,
    },
    AccessLogFilter {
        input: String,
        env: HashMap<String, String>,
    },
    Schema {
        kong_meta: bool,
    },
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = match parse_args(args) {
        Ok(command) => command,
        Err(why) => {
            // Nothing more can be said if stderr is gone.
            let _ = write!(io::stderr(), "event-hooks: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => print(USAGE.trim_end()),
        Command::Version => print(&format!("event-hooks {}", env!("CARGO_PKG_VERSION"))),
        Command::Schema { kong_meta } => {
            let schema = if kong_meta {
                config::schema::kong_meta()
            } else {
                config::schema::schema()
            };
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => print(&text),
                Err(error) => fail(&format!("cannot write the schema: {error}")),
            }
        }
        Command::Validate { input, env } => match load(&input, env) {
            Ok(config) => {
                let count = config.hooks.len();
                print(&format!(
                    "ok: {count} {}",
                    if count == 1 { "hook" } else { "hooks" }
                ))
            }
            Err(status) => status,
        },
        Command::AccessLogFilter { input, env } => match load(&input, env) {
            Ok(config) => print(&access_log_filter_yaml(
                &access_log_filter::generate(&config),
                &input,
            )),
            Err(status) => status,
        },
    }
}

/// The configuration in `input`, read with the filter's parser and `env` for its VM; else the
/// exit status, once the problems are printed (exit 1, one `<json path>: <message>` a line) or
/// the unreadable file is named (exit 2).
fn load(input: &str, env: HashMap<String, String>) -> Result<Config, ExitCode> {
    let bytes = match read(input) {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = writeln!(io::stderr(), "event-hooks: cannot read {input}: {error}");
            return Err(ExitCode::from(2));
        }
    };
    config::parse_with_env(&bytes, Box::new(move |name| env.get(name).cloned())).map_err(
        |problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            print(&lines.join("\n"));
            ExitCode::from(1)
        },
    )
}

/// The access log filter as YAML under comments saying what it is (or, when there is none,
/// only comments saying why); the notes as comments.
fn access_log_filter_yaml(generated: &Generated, input: &str) -> String {
    let from = if input == "-" {
        "standard input"
    } else {
        input
    };
    let mut lines = Vec::new();
    let filter = match &generated.filter {
        PreFilter::Filter(filter) => {
            lines.push(format!(
                "# event_hooks as an Envoy access logger, the native filter of {from}:"
            ));
            lines.push("# paste it under the access log entry's `filter:`.".to_string());
            Some(filter)
        }
        PreFilter::None(reasons) => {
            lines.push(format!(
                "# No access log filter for {from}: every request must reach event_hooks."
            ));
            lines.extend(reasons.iter().map(|reason| format!("# {reason}")));
            None
        }
        PreFilter::Nothing(filter) => {
            lines.push(format!(
                "# No enabled hook of {from} can match a request: this filter refuses every one."
            ));
            Some(filter)
        }
    };
    lines.extend(generated.notes.iter().map(|note| format!("# note: {note}")));
    let mut text: String = lines
        .iter()
        // One line per comment, whatever the file name holds.
        .map(|line| line.replace(['\n', '\r'], " ") + "\n")
        .collect();
    if let Some(filter) = filter {
        text.push_str(&yaml::to_yaml(filter));
    }
    text.trim_end().to_string()
}

fn read(input: &str) -> io::Result<Vec<u8>> {
    if input == "-" {
        let mut bytes = Vec::new();
        io::stdin().lock().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(input)
    }
}

/// Writes `text` and a newline to stdout; a closed stdout (`| head`) is not an error worth a
/// panic, as `println!` would make it.
fn print(text: &str) -> ExitCode {
    match writeln!(io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => fail(&format!("cannot write: {error}")),
    }
}

fn fail(why: &str) -> ExitCode {
    let _ = writeln!(io::stderr(), "event-hooks: {why}");
    ExitCode::from(1)
}

fn parse_args(args: Vec<OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().map(|arg| {
        arg.into_string()
            .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
    });
    let command = match args.next().transpose()? {
        None => return Err("no command given".to_string()),
        Some(command) => command,
    };
    let rest = args.collect::<Result<Vec<String>, String>>()?;
    match command.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        "validate" => {
            parse_config_args("validate", rest).map(|(input, env)| Command::Validate { input, env })
        }
        "envoy-access-log-filter" => parse_config_args("envoy-access-log-filter", rest)
            .map(|(input, env)| Command::AccessLogFilter { input, env }),
        "schema" => match rest.as_slice() {
            [] => Ok(Command::Schema { kong_meta: false }),
            [flag] if flag == "--kong-meta" => Ok(Command::Schema { kong_meta: true }),
            _ => Err(format!(
                "schema takes only --kong-meta, not {}",
                rest.join(" ")
            )),
        },
        other => Err(format!("unknown command {other:?}")),
    }
}

/// The configuration file and the `--env` variables of `command`.
fn parse_config_args(
    command: &str,
    args: Vec<String>,
) -> Result<(String, HashMap<String, String>), String> {
    let mut env = HashMap::new();
    let mut inputs = Vec::new();
    let mut args = args.into_iter();
    let mut options = true;
    while let Some(arg) = args.next() {
        if !options || arg == "-" || !arg.starts_with('-') {
            inputs.push(arg);
        } else if arg == "--" {
            options = false;
        } else if arg == "--env" || arg.starts_with("--env=") {
            let pair = match arg.strip_prefix("--env=") {
                Some(pair) => pair.to_string(),
                None => args
                    .next()
                    .ok_or_else(|| "--env needs NAME=VALUE".to_string())?,
            };
            let (name, value) = pair
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| "--env needs NAME=VALUE".to_string())?;
            env.insert(name.to_string(), value.to_string());
        } else {
            return Err(format!("unknown option {arg:?} for {command}"));
        }
    }
    match <[String; 1]>::try_from(inputs) {
        Ok([input]) => Ok((input, env)),
        Err(inputs) if inputs.is_empty() => Err(format!(
            "{command} needs a configuration file (or - for standard input)"
        )),
        Err(_) => Err(format!("{command} takes one configuration at a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn env_values_may_hold_equals_signs_and_the_last_one_wins() {
        let command = parse(&[
            "validate", "--env", "A=x=y", "c.json", "--env=B=", "--env", "A=z",
        ])
        .unwrap();
        let env = HashMap::from([
            ("A".to_string(), "z".to_string()),
            ("B".to_string(), String::new()),
        ]);
        assert_eq!(
            command,
            Command::Validate {
                input: "c.json".to_string(),
                env
            }
        );
    }

    #[test]
    fn a_file_named_like_an_option_comes_after_double_dash() {
        assert_eq!(
            parse(&["validate", "--", "--env"]).unwrap(),
            Command::Validate {
                input: "--env".to_string(),
                env: HashMap::new()
            }
        );
        assert!(parse(&["validate", "--envy", "c.json"]).is_err());
    }

    #[test]
    fn bad_usage_says_what_is_wrong() {
        assert_eq!(parse(&[]).unwrap_err(), "no command given");
        assert_eq!(parse(&["check"]).unwrap_err(), "unknown command \"check\"");
        assert_eq!(
            parse(&["validate", "--env", "NAME"]).unwrap_err(),
            "--env needs NAME=VALUE"
        );
        assert_eq!(
            parse(&["validate", "--env", "=x", "c.json"]).unwrap_err(),
            "--env needs NAME=VALUE"
        );
        assert_eq!(
            parse(&["validate", "--env"]).unwrap_err(),
            "--env needs NAME=VALUE"
        );
        assert_eq!(
            parse(&["validate", "a.json", "b.json"]).unwrap_err(),
            "validate takes one configuration at a time"
        );
        assert_eq!(
            parse(&["schema", "--json"]).unwrap_err(),
            "schema takes only --kong-meta, not --json"
        );
        assert_eq!(
            parse(&["envoy-access-log-filter", "--kong-meta", "c.json"]).unwrap_err(),
            "unknown option \"--kong-meta\" for envoy-access-log-filter"
        );
        assert_eq!(
            parse(&["envoy-access-log-filter"]).unwrap_err(),
            "envoy-access-log-filter needs a configuration file (or - for standard input)"
        );
    }
}
