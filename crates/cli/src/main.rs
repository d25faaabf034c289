//! `event-hooks`: checks a filter configuration offline with the filter's own parser, and
//! prints the configuration's JSON Schema.
//!
//! ```text
//! event-hooks validate [--env NAME=VALUE]... <config.json | ->
//! event-hooks schema [--kong-meta]
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use event_hooks_core::config;

const USAGE: &str = "\
usage: event-hooks validate [--env NAME=VALUE]... <config.json | ->
       event-hooks schema [--kong-meta]

validate  Checks a filter configuration (JSON) with the filter's own parser and validator.
          Prints `ok: N hooks` and exits 0, or prints every problem as `<json path>: <message>`
          and exits 1. `-` reads the configuration from standard input.
          --env NAME=VALUE (repeatable) gives the filter's VM an environment variable, for the
          `secret_env`, `secrets_env` and `admin.token_env` keys. A VM sees only the variables
          the proxy gives it (Envoy: vm_config.environment_variables; Kong: nginx_main_env), so
          this shell's environment is never read.
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
        Command::Validate { input, env } => validate(&input, env),
    }
}

fn validate(input: &str, env: HashMap<String, String>) -> ExitCode {
    let bytes = match read(input) {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = writeln!(io::stderr(), "event-hooks: cannot read {input}: {error}");
            return ExitCode::from(2);
        }
    };
    match config::parse_with_env(&bytes, Box::new(move |name| env.get(name).cloned())) {
        Ok(config) => {
            let count = config.hooks.len();
            print(&format!(
                "ok: {count} {}",
                if count == 1 { "hook" } else { "hooks" }
            ));
            ExitCode::SUCCESS
        }
        Err(problems) => {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            print(&lines.join("\n"));
            ExitCode::from(1)
        }
    }
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
        "validate" => parse_validate(rest),
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

fn parse_validate(args: Vec<String>) -> Result<Command, String> {
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
            return Err(format!("unknown option {arg:?} for validate"));
        }
    }
    match <[String; 1]>::try_from(inputs) {
        Ok([input]) => Ok(Command::Validate { input, env }),
        Err(inputs) if inputs.is_empty() => {
            Err("validate needs a configuration file (or - for standard input)".to_string())
        }
        Err(_) => Err("validate takes one configuration at a time".to_string()),
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
    }
}
