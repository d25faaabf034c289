//! A JSON value as block-style YAML, the way Envoy configurations are written by hand: two
//! spaces a level, list items at their key's indentation, strings plain where YAML reads them
//! back as the same string and JSON-quoted (a valid YAML double-quoted scalar) everywhere else.

use serde_json::{Map, Value};

/// `value` as YAML lines, each ending with a newline; a mapping or a list at the top level.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn mapping(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        let mut lines = String::new();
        match item {
            Value::Object(map) if !map.is_empty() => mapping(&mut lines, map, indent + 2),
            Value::Array(inner) if !inner.is_empty() => sequence(&mut lines, inner, indent + 2),
            scalar => {
                lines.push_str(&" ".repeat(indent + 2));
                lines.push_str(&inline(scalar));
                lines.push('\n');
            }
        }
        // The item's first line starts after its dash.
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        out.push_str(lines.get(indent + 2..).unwrap_or_default());
    }
}

/// A scalar, or an empty mapping or list, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => string(text),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

/// `text` plain when it is a name-like string YAML cannot read as anything else, else quoted.
fn string(text: &str) -> String {
    let plain = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null" | ".inf" | ".nan"
        );
    if plain {
        text.to_string()
    } else {
        Value::String(text.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_mappings_and_lists_are_block_style() {
        let value = json!({"or_filter": {"filters": [
            {"status_code_filter": {"comparison": {"op": "GE", "value": {"default_value": 500}}}},
            {"header_filter": {"header": {"name": ":path", "string_match": {"prefix": "/orders?"}}}},
            {"response_flag_filter": {}},
            {"response_flag_filter": {"flags": ["UF", "URX"]}}
        ]}});
        assert_eq!(
            to_yaml(&value),
            "\
or_filter:
  filters:
  - status_code_filter:
      comparison:
        op: GE
        value:
          default_value: 500
  - header_filter:
      header:
        name: \":path\"
        string_match:
          prefix: \"/orders?\"
  - response_flag_filter: {}
  - response_flag_filter:
      flags:
      - UF
      - URX
"
        );
    }

    #[test]
    fn strings_yaml_would_read_otherwise_are_quoted() {
        for (text, written) in [
            ("GE", "GE"),
            ("/orders/1", "/orders/1"),
            ("x-request-id", "x-request-id"),
            ("", "\"\""),
            ("on", "\"on\""),
            ("No", "\"No\""),
            ("500", "\"500\""),
            ("a, b", "\"a, b\""),
            (" b", "\" b\""),
            ("a: b", "\"a: b\""),
            ("#x", "\"#x\""),
            ("say \"hi\"\n", "\"say \\\"hi\\\"\\n\""),
            ("é", "\"é\""),
        ] {
            assert_eq!(string(text), written, "{text:?}");
        }
        assert_eq!(
            to_yaml(&json!({"a": [[1, null], []]})),
            "a:\n- - 1\n  - null\n- []\n"
        );
    }
}
