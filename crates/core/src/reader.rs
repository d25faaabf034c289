//! A JSON reader that walks the configuration once, records every problem with the JSON path
//! where it occurs, and never stops at the first one.
//!
//! serde's derive stops at the first error and cannot name the path of a missing field
//! (`hooks[1].config.url`), so the configuration is read through this small reader instead.
//! Messages never echo the value that was given, only its JSON type: a misplaced secret must not
//! end up in a log line.

#[cfg(feature = "schema")]
pub mod schema;

use std::cell::RefCell;
use std::fmt;

use serde_json::{Map, Value};

/// One configuration problem: the JSON path where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted JSON path such as `hooks[1].config.url`; `$` for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Looks an environment variable up.
pub type Env = Box<dyn Fn(&str) -> Option<String>>;

/// A key that takes a whole number, and the numbers it takes: one place for the parser's check
/// and the schema's `minimum` and `maximum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole {
    pub key: &'static str,
    pub min: u64,
    pub max: u64,
}

impl Whole {
    pub const fn new(key: &'static str, min: u64, max: u64) -> Whole {
        Whole { key, min, max }
    }
}

/// The context of one configuration's parsing: every problem found (arrays in document order,
/// object keys sorted), and the environment `*_env` keys are read from.
#[derive(Default)]
pub struct Problems {
    found: RefCell<Vec<Problem>>,
    env: Option<Env>,
}

impl fmt::Debug for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.found.borrow().iter()).finish()
    }
}

impl Problems {
    /// A context whose `*_env` keys are looked up with `env`.
    pub fn with_env(env: Env) -> Self {
        Problems {
            found: RefCell::default(),
            env: Some(env),
        }
    }

    /// The value of environment variable `name` (none without an environment).
    pub fn env(&self, name: &str) -> Option<String> {
        self.env.as_ref().and_then(|env| env(name))
    }

    pub fn add(&self, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { "$" } else { path };
        self.found.borrow_mut().push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.found.borrow().is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.found.into_inner()
    }

    /// Every problem as its log line (`path: message`).
    pub fn messages(self) -> Vec<String> {
        self.into_vec().iter().map(ToString::to_string).collect()
    }
}

/// What a `*_env` key says when its variable is unset (or empty) in the VM's environment;
/// `instead` names the key that takes the value itself.
pub fn env_not_set(name: &str, instead: &str) -> String {
    format!(
        "environment variable {name} is not set (give it to the VM: Envoy's vm_config.environment_variables, Kong's nginx_main_env; Kong 3.4 to 3.6 give filters no environment variables: there, use {instead} instead)"
    )
}

/// The path of a key below `parent`.
pub fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of an array element below `parent`.
pub fn element(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The longest name a configuration gives: a hook's, a published source's or event's.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` is 1 to [`MAX_NAME_LEN`] characters of `A-Z a-z 0-9 _ -`, and `.` when `dot`.
pub fn is_name(name: &str, dot: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-') || (dot && c == '.'))
}

/// The JSON type of a value, for messages (`expected a string, found a number`).
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object being read at `path`. Keys not in the allowed list are reported once, when the
/// reader is created.
pub struct Object<'a, 'p> {
    map: &'a Map<String, Value>,
    path: String,
    problems: &'p Problems,
}

impl<'a, 'p> Object<'a, 'p> {
    /// Reads `value` as an object whose keys must all be in `allowed`. Reports a problem and
    /// returns `None` when it is not an object.
    pub fn new(
        value: &'a Value,
        path: &str,
        allowed: &[&str],
        problems: &'p Problems,
    ) -> Option<Self> {
        Object::new_in(value, path, &[allowed], problems)
    }

    /// Like [`Object::new`], with the allowed keys in groups (a handler's own keys, and those
    /// every calling handler takes).
    pub fn new_in(
        value: &'a Value,
        path: &str,
        groups: &[&[&str]],
        problems: &'p Problems,
    ) -> Option<Self> {
        let Value::Object(map) = value else {
            problems.add(path, format!("expected an object, found {}", kind(value)));
            return None;
        };
        let allowed: Vec<&str> = groups
            .iter()
            .flat_map(|group| group.iter().copied())
            .collect();
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let message = if allowed.is_empty() {
                    "unknown field; this object takes no fields".to_string()
                } else {
                    format!("unknown field; expected one of: {}", allowed.join(", "))
                };
                problems.add(&child(path, key), message);
            }
        }
        Some(Object {
            map,
            path: path.to_string(),
            problems,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn problems(&self) -> &'p Problems {
        self.problems
    }

    /// The path of `key` in this object.
    pub fn path_of(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// The raw value of `key`, if present (`null` counts as present).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// Reports `key` as missing when it is absent.
    pub fn required(&self, key: &str) -> Option<&'a Value> {
        let value = self.map.get(key);
        if value.is_none() {
            self.problems
                .add(&self.path_of(key), "missing required field");
        }
        value
    }

    fn expect_str(&self, key: &str, value: &'a Value) -> Option<&'a str> {
        match value {
            Value::String(text) => Some(text),
            other => {
                self.problems.add(
                    &self.path_of(key),
                    format!("expected a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn required_str(&self, key: &str) -> Option<&'a str> {
        let value = self.required(key)?;
        self.expect_str(key, value)
    }

    pub fn optional_str(&self, key: &str) -> Option<&'a str> {
        let value = self.map.get(key)?;
        self.expect_str(key, value)
    }

    pub fn optional_bool(&self, key: &str, default: bool) -> bool {
        match self.map.get(key) {
            None => default,
            Some(Value::Bool(flag)) => *flag,
            Some(other) => {
                self.problems.add(
                    &self.path_of(key),
                    format!("expected true or false, found {}", kind(other)),
                );
                default
            }
        }
    }

    /// An optional whole number in `min..=max`.
    pub fn optional_u64(&self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(value) = self.map.get(key) else {
            return default;
        };
        match value.as_u64() {
            Some(number) if (min..=max).contains(&number) => number,
            Some(_) => {
                self.problems.add(
                    &self.path_of(key),
                    format!("must be between {min} and {max}"),
                );
                default
            }
            None => {
                self.problems.add(
                    &self.path_of(key),
                    format!(
                        "expected a whole number between {min} and {max}, found {}",
                        describe_number(value)
                    ),
                );
                default
            }
        }
    }

    /// The whole number `spec` describes, `default` when absent.
    pub fn whole(&self, spec: Whole, default: u64) -> u64 {
        self.optional_u64(spec.key, default, spec.min, spec.max)
    }

    /// An optional array, `default()` when absent. `each` reads one element, or says what it
    /// expected (`an HTTP status`); bad elements are reported and left out.
    pub fn optional_list<T>(
        &self,
        key: &str,
        default: impl FnOnce() -> Vec<T>,
        each: impl Fn(&Value) -> Result<T, &'static str>,
    ) -> Vec<T> {
        let path = self.path_of(key);
        match self.map.get(key) {
            None => default(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| match each(item) {
                    Ok(value) => Some(value),
                    Err(expected) => {
                        self.problems.add(
                            &element(&path, index),
                            format!("expected {expected}, found {}", kind(item)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                self.problems
                    .add(&path, format!("expected an array, found {}", kind(other)));
                Vec::new()
            }
        }
    }

    /// An optional map of strings to strings (such as `headers`), in document order.
    pub fn optional_string_map(&self, key: &str) -> Vec<(String, &'a str)> {
        let Some(value) = self.map.get(key) else {
            return Vec::new();
        };
        let Value::Object(map) = value else {
            self.problems.add(
                &self.path_of(key),
                format!("expected an object of strings, found {}", kind(value)),
            );
            return Vec::new();
        };
        let path = self.path_of(key);
        let mut out = Vec::with_capacity(map.len());
        for (name, value) in map {
            match value {
                Value::String(text) => out.push((name.clone(), text.as_str())),
                other => self.problems.add(
                    &child(&path, name),
                    format!("expected a string, found {}", kind(other)),
                ),
            }
        }
        out
    }
}

fn describe_number(value: &Value) -> String {
    match value {
        Value::Number(number) if number.is_f64() => "a fractional number".to_string(),
        Value::Number(_) => "a negative number".to_string(),
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_dotted_with_indexes() {
        assert_eq!(child("", "hooks"), "hooks");
        assert_eq!(child(&element("hooks", 1), "config"), "hooks[1].config");
    }

    #[test]
    fn unknown_keys_and_missing_fields_are_all_reported() {
        let problems = Problems::default();
        let value = json!({"a": 1, "zz": 2, "yy": 3});
        let object = Object::new(&value, "root", &["a", "b"], &problems).unwrap();
        assert!(object.required_str("b").is_none());
        let found = problems.messages();
        assert_eq!(
            found,
            vec![
                "root.yy: unknown field; expected one of: a, b",
                "root.zz: unknown field; expected one of: a, b",
                "root.b: missing required field",
            ]
        );
    }

    #[test]
    fn wrong_types_name_the_type_never_the_value() {
        let problems = Problems::default();
        let value = json!({"secret": 12345678, "n": -3, "f": 1.5, "m": {"x": true}});
        let object = Object::new(&value, "", &["secret", "n", "f", "m"], &problems).unwrap();
        object.optional_str("secret");
        object.optional_u64("n", 1, 1, 10);
        object.optional_u64("f", 1, 1, 10);
        object.optional_string_map("m");
        let text = problems.messages();
        assert_eq!(
            text,
            vec![
                "secret: expected a string, found a number",
                "n: expected a whole number between 1 and 10, found a negative number",
                "f: expected a whole number between 1 and 10, found a fractional number",
                "m.x: expected a string, found a boolean",
            ]
        );
        assert!(!text.iter().any(|line| line.contains("12345678")));
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let problems = Problems::default();
        let value = json!({"n": 0});
        let object = Object::new(&value, "d", &["n"], &problems).unwrap();
        assert_eq!(object.optional_u64("n", 5, 1, 10), 5);
        assert_eq!(
            problems.into_vec()[0].to_string(),
            "d.n: must be between 1 and 10"
        );
    }
}
