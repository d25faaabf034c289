//! Values between JSON and Rhai: conversion both ways within the sandbox's bounds (depth,
//! sizes), comparison and display of Rhai values, and text cleaned for log lines.

use super::*;

/// `text` for a log line: control characters replaced by spaces, at most `max` bytes (cut at
/// a character boundary and marked).
pub(super) fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            out.push_str("...[truncated]");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// What a value holds, counted as Rhai's limits count it (nested values included).
#[derive(Default)]
pub(super) struct Sizes {
    arrays: usize,
    maps: usize,
    strings: usize,
}

/// JSON to Rhai: objects become maps, arrays arrays, `null` nothing (`()`). Numbers stay
/// integers when they fit an `i64`, else floats. Refused past the sandbox's limits.
pub(super) fn to_dynamic(
    value: &Value,
    depth: usize,
    sizes: &mut Sizes,
) -> Result<Dynamic, String> {
    if depth > MAX_DEPTH {
        return Err(format!("it is nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(flag) => Dynamic::from_bool(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Dynamic::from_int(integer),
            None => Dynamic::from_float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => {
            sizes.strings = sizes.strings.saturating_add(text.len());
            if sizes.strings > MAX_STRING_BYTES {
                return Err(format!("its strings hold over {MAX_STRING_BYTES} bytes"));
            }
            Dynamic::from(text.clone())
        }
        Value::Array(items) => {
            sizes.arrays = sizes.arrays.saturating_add(items.len());
            if sizes.arrays > MAX_ARRAY_SIZE {
                return Err(format!("its arrays hold over {MAX_ARRAY_SIZE} elements"));
            }
            let items = items
                .iter()
                .map(|item| to_dynamic(item, depth + 1, sizes))
                .collect::<Result<_, _>>()?;
            Dynamic::from_array(items)
        }
        Value::Object(map) => {
            sizes.maps = sizes.maps.saturating_add(map.len());
            if sizes.maps > MAX_MAP_SIZE {
                return Err(format!("its maps hold over {MAX_MAP_SIZE} properties"));
            }
            let map = map
                .iter()
                .map(|(key, item)| Ok((key.as_str().into(), to_dynamic(item, depth + 1, sizes)?)))
                .collect::<Result<_, String>>()?;
            Dynamic::from_map(map)
        }
    })
}

/// Rhai's `==`, without Rhai's recursion through its engine for arrays and maps (whose
/// stack cost per level of nesting is large): values nested deeper than [`MAX_DEPTH`] are an
/// error. Numbers compare by value (`1 == 1.0`); other values of different types differ.
pub(super) fn equal(a: &Dynamic, b: &Dynamic, depth: usize) -> Result<bool, Box<EvalAltResult>> {
    if let (Ok(a), Ok(b)) = (a.as_array_ref(), b.as_array_ref()) {
        return equal_arrays(&a, &b, depth);
    }
    if let (Ok(a), Ok(b)) = (a.as_map_ref(), b.as_map_ref()) {
        return equal_maps(&a, &b, depth);
    }
    Ok(match (a.as_int(), b.as_int(), a.as_float(), b.as_float()) {
        (Ok(a), Ok(b), ..) => a == b,
        (Ok(a), _, _, Ok(b)) => (a as f64) == b,
        (_, Ok(b), Ok(a), _) => a == (b as f64),
        (_, _, Ok(a), Ok(b)) => a == b,
        _ => match (a.as_immutable_string_ref(), b.as_immutable_string_ref()) {
            (Ok(a), Ok(b)) => *a == *b,
            _ => match (a.as_bool(), b.as_bool(), a.as_char(), b.as_char()) {
                (Ok(a), Ok(b), ..) => a == b,
                (_, _, Ok(a), Ok(b)) => a == b,
                _ => a.is_unit() && b.is_unit(),
            },
        },
    })
}

pub(super) fn too_deep(depth: usize) -> Result<(), Box<EvalAltResult>> {
    if depth > MAX_DEPTH {
        return Err(failure(
            "==",
            format!("values nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

pub(super) fn equal_arrays(a: &Array, b: &Array, depth: usize) -> Result<bool, Box<EvalAltResult>> {
    too_deep(depth)?;
    if a.len() != b.len() {
        return Ok(false);
    }
    for (a, b) in a.iter().zip(b.iter()) {
        if !equal(a, b, depth + 1)? {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) fn equal_maps(a: &Map, b: &Map, depth: usize) -> Result<bool, Box<EvalAltResult>> {
    too_deep(depth)?;
    if a.len() != b.len() {
        return Ok(false);
    }
    for (key, a) in a.iter() {
        match b.get(key) {
            Some(b) if equal(a, b, depth + 1)? => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// A value as Rhai's `to_debug` writes it (`[1, "a", #{"k": ()}]`), without Rhai's recursion
/// through its engine: values nested deeper than [`MAX_DEPTH`] are written `...`.
pub(super) fn show(value: &Dynamic, depth: usize, out: &mut String) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    if let Ok(items) = value.as_array_ref() {
        show_array(&items, depth, out);
    } else if let Ok(map) = value.as_map_ref() {
        show_map(&map, depth, out);
    } else if let Ok(text) = value.as_immutable_string_ref() {
        let _ = write!(out, "{:?}", text.as_str());
    } else if let Ok(c) = value.as_char() {
        let _ = write!(out, "{c:?}");
    } else if value.is_unit() {
        out.push_str("()");
    } else {
        let _ = write!(out, "{value}");
    }
}

pub(super) fn show_array(items: &Array, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        out.push_str("[...]");
        return;
    }
    out.push('[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        show(item, depth + 1, out);
    }
    out.push(']');
}

pub(super) fn show_map(map: &Map, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        out.push_str("#{...}");
        return;
    }
    out.push_str("#{");
    for (index, (key, item)) in map.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("{:?}: ", key.as_str()));
        show(item, depth + 1, out);
    }
    out.push('}');
}

/// A value as text: a string is itself, anything else is written as [`show`] does.
pub(super) fn text_of(value: &Dynamic) -> String {
    if let Ok(text) = value.as_immutable_string_ref() {
        return text.to_string();
    }
    let mut out = String::new();
    show(value, 0, &mut out);
    out
}

/// Rhai to JSON: maps become objects, arrays arrays, nothing `null`, characters strings.
/// Floats that are not finite become `null`. Other types are refused.
pub(super) fn to_json(value: &Dynamic, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.as_bool() {
        return Ok(Value::Bool(flag));
    }
    if let Ok(integer) = value.as_int() {
        return Ok(Value::Number(integer.into()));
    }
    if let Ok(float) = value.as_float() {
        return Ok(Number::from_f64(float).map_or(Value::Null, Value::Number));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Ok(text) = value.as_immutable_string_ref() {
        return Ok(Value::String(text.to_string()));
    }
    if let Ok(items) = value.as_array_ref() {
        return items
            .iter()
            .map(|item| to_json(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Ok(map) = value.as_map_ref() {
        return map
            .iter()
            .map(|(key, item)| Ok((key.to_string(), to_json(item, depth + 1)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object);
    }
    Err(format!(
        "a value of type {} has no JSON form",
        value.type_name()
    ))
}
