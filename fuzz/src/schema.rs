//! A small JSON Schema (draft 4) validator, for the keywords `event-hooks schema` uses: enough
//! to check that the schema accepts every configuration the parser accepts (the schema must
//! never be stricter than the parser). An unknown keyword fails the check, so the validator
//! cannot silently ignore what a new schema asks.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

/// Keywords that say nothing about validity.
const ANNOTATIONS: &[&str] = &["$schema", "title", "description", "default"];

/// Why `instance` does not match `schema`, at which JSON path; `None` when it matches.
pub fn violation(schema: &Value, instance: &Value) -> Option<String> {
    check(schema, instance, "$")
}

fn check(schema: &Value, instance: &Value, path: &str) -> Option<String> {
    let Value::Object(schema) = schema else {
        return Some(format!("{path}: the schema is not an object"));
    };
    for (keyword, argument) in schema {
        if let Some(why) = keyword_holds(schema, keyword, argument, instance, path) {
            return Some(why);
        }
    }
    None
}

fn keyword_holds(
    schema: &Map<String, Value>,
    keyword: &str,
    argument: &Value,
    instance: &Value,
    path: &str,
) -> Option<String> {
    let fail = |what: &str| Some(format!("{path}: {keyword} {what}"));
    match keyword {
        k if ANNOTATIONS.contains(&k) => None,
        "type" => {
            let types: Vec<&str> = match argument {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => return fail("has a bad argument"),
            };
            (!types.iter().any(|t| is_type(instance, t)))
                .then(|| format!("{path}: not of type {types:?}"))
        }
        "enum" => {
            let Value::Array(options) = argument else {
                return fail("has a bad argument");
            };
            (!options.iter().any(|option| same(option, instance)))
                .then(|| format!("{path}: not in enum"))
        }
        "minimum" | "maximum" => {
            let (Some(limit), Some(number)) = (argument.as_f64(), instance.as_f64()) else {
                return None;
            };
            let exclusive = schema
                .get(if keyword == "minimum" {
                    "exclusiveMinimum"
                } else {
                    "exclusiveMaximum"
                })
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let below = if keyword == "minimum" {
                number < limit
            } else {
                number > limit
            };
            let at = number == limit;
            (below || (exclusive && at))
                .then(|| format!("{path}: {keyword} {limit} broken by {number}"))
        }
        "exclusiveMinimum" | "exclusiveMaximum" => None,
        "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties" | "maxProperties" => {
            // Strings count characters; arrays, items; objects, properties.
            let length = match (&keyword[3..], instance) {
                ("Length", Value::String(text)) => text.chars().count(),
                ("Items", Value::Array(items)) => items.len(),
                ("Properties", Value::Object(map)) => map.len(),
                _ => return None,
            };
            let limit = argument.as_u64()?;
            let broken = if keyword.starts_with("min") {
                (length as u64) < limit
            } else {
                length as u64 > limit
            };
            broken.then(|| format!("{path}: {keyword} {limit} broken"))
        }
        "pattern" => {
            let (Some(pattern), Value::String(text)) = (argument.as_str(), instance) else {
                return None;
            };
            match compiled(pattern) {
                Some(regex) => {
                    (!regex.is_match(text)).then(|| format!("{path}: does not match {pattern}"))
                }
                None => fail("has a pattern this validator cannot read"),
            }
        }
        "required" => {
            let (Value::Array(names), Value::Object(map)) = (argument, instance) else {
                return None;
            };
            names
                .iter()
                .filter_map(Value::as_str)
                .find(|name| !map.contains_key(*name))
                .map(|name| format!("{path}: required {name} missing"))
        }
        "properties" => {
            let (Value::Object(properties), Value::Object(map)) = (argument, instance) else {
                return None;
            };
            properties.iter().find_map(|(name, sub)| {
                map.get(name)
                    .and_then(|value| check(sub, value, &format!("{path}.{name}")))
            })
        }
        "additionalProperties" => {
            let Value::Object(map) = instance else {
                return None;
            };
            let declared = schema.get("properties").and_then(Value::as_object);
            let patterns = schema.get("patternProperties").and_then(Value::as_object);
            for (name, value) in map {
                if declared.is_some_and(|declared| declared.contains_key(name)) {
                    continue;
                }
                let by_pattern = patterns.is_some_and(|patterns| {
                    patterns
                        .keys()
                        .any(|p| compiled(p).is_some_and(|r| r.is_match(name)))
                });
                if by_pattern {
                    continue;
                }
                match argument {
                    Value::Bool(false) => return Some(format!("{path}: unknown key {name:?}")),
                    Value::Bool(true) => {}
                    sub => {
                        if let Some(why) = check(sub, value, &format!("{path}.{name}")) {
                            return Some(why);
                        }
                    }
                }
            }
            None
        }
        "patternProperties" => {
            let (Value::Object(patterns), Value::Object(map)) = (argument, instance) else {
                return None;
            };
            for (pattern, sub) in patterns {
                let Some(regex) = compiled(pattern) else {
                    return fail("has a pattern this validator cannot read");
                };
                for (name, value) in map.iter().filter(|(name, _)| regex.is_match(name)) {
                    if let Some(why) = check(sub, value, &format!("{path}.{name}")) {
                        return Some(why);
                    }
                }
            }
            None
        }
        "items" => {
            let Value::Array(items) = instance else {
                return None;
            };
            match argument {
                Value::Array(tuple) => tuple
                    .iter()
                    .zip(items)
                    .enumerate()
                    .find_map(|(index, (sub, item))| check(sub, item, &format!("{path}[{index}]"))),
                sub => items
                    .iter()
                    .enumerate()
                    .find_map(|(index, item)| check(sub, item, &format!("{path}[{index}]"))),
            }
        }
        "uniqueItems" => {
            let (Some(true), Value::Array(items)) = (argument.as_bool(), instance) else {
                return None;
            };
            let duplicate = items
                .iter()
                .enumerate()
                .any(|(i, a)| items.iter().skip(i + 1).any(|b| same(a, b)));
            duplicate.then(|| format!("{path}: items not unique"))
        }
        "allOf" => list(argument)?
            .iter()
            .find_map(|sub| check(sub, instance, path)),
        "anyOf" => {
            let subs = list(argument)?;
            let failures: Vec<String> = subs
                .iter()
                .filter_map(|sub| check(sub, instance, path))
                .collect();
            (failures.len() == subs.len())
                .then(|| format!("{path}: anyOf: none matches ({})", failures.join("; ")))
        }
        "oneOf" => {
            let subs = list(argument)?;
            let matching = subs
                .iter()
                .filter(|sub| check(sub, instance, path).is_none())
                .count();
            (matching != 1).then(|| format!("{path}: oneOf: {matching} match"))
        }
        "not" => check(argument, instance, path)
            .is_none()
            .then(|| format!("{path}: matches a `not`")),
        other => Some(format!("{path}: keyword {other} unknown to this validator")),
    }
}

/// A pattern compiled once (the schema has a handful).
fn compiled(pattern: &str) -> Option<Regex> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        cache
            .borrow_mut()
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok())
            .clone()
    })
}

fn list(argument: &Value) -> Option<&Vec<Value>> {
    argument.as_array()
}

/// Call 4 types; an integer is a number with no fractional part.
fn is_type(instance: &Value, name: &str) -> bool {
    match name {
        "null" => instance.is_null(),
        "boolean" => instance.is_boolean(),
        "string" => instance.is_string(),
        "array" => instance.is_array(),
        "object" => instance.is_object(),
        "number" => instance.is_number(),
        "integer" => {
            instance.is_i64()
                || instance.is_u64()
                || instance.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// JSON equality with numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
