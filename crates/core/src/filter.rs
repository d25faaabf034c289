//! Filters: a map from a dotted field path to a condition; every entry must hold.
//!
//! ```json
//! { "response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}, "request.method": "POST" }
//! ```
//!
//! Operators: `eq`, `ne`, `in`, `prefix`, `suffix`, `contains`, `gt`, `gte`, `lt`, `lte`,
//! `exists`, and `not` (wrapping another condition). A bare value means `eq`; an object is
//! always read as operators (compare with an object through `{"eq": {...}}`), and one with
//! several operators holds when all of them hold (`{"gte": 500, "lt": 600}`). Filters are
//! compiled when the configuration loads; evaluating one allocates nothing.
//!
//! Semantics on a missing field: `exists: false`, `ne` and `not` hold; every other operator
//! fails. Numbers compare as numbers (`500` equals `500.0`); `gt`/`gte`/`lt`/`lte` compare two
//! numbers or two strings, and fail on anything else.

use std::cmp::Ordering;

use serde_json::Value;
#[cfg(feature = "schema")]
use serde_json::{Map, json};

use crate::event::{Field, Fields, Redaction};
use crate::reader::{Problems, child, kind};

/// The operators, for messages and documentation.
pub const OPERATORS: &[&str] = &[
    "eq", "ne", "in", "prefix", "suffix", "contains", "gt", "gte", "lt", "lte", "exists", "not",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Prefix(String),
    Suffix(String),
    Contains(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    Exists(bool),
    Not(Box<Condition>),
    All(Vec<Condition>),
}

/// A compiled filter. The empty filter matches every event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    entries: Vec<(Vec<String>, Condition)>,
}

impl Filter {
    /// Compiles `value` (the `filter` object of a hook) found at `path`.
    pub fn compile(value: &Value, path: &str, problems: &Problems) -> Filter {
        let Value::Object(map) = value else {
            problems.add(
                path,
                format!(
                    "expected an object mapping field paths to conditions, found {}",
                    kind(value)
                ),
            );
            return Filter::default();
        };
        let mut entries = Vec::with_capacity(map.len());
        for (field, condition) in map {
            let here = child(path, field);
            if field.is_empty() || field.split('.').any(str::is_empty) {
                problems.add(
                    &here,
                    "a field path is dot-separated names such as response.status",
                );
                continue;
            }
            if let Some(condition) = compile_condition(condition, &here, problems) {
                entries.push((crate::event::split_path(field), condition));
            }
        }
        Filter { entries }
    }

    /// The field paths this filter reads.
    pub fn fields(&self) -> impl Iterator<Item = &[String]> {
        self.entries.iter().map(|(path, _)| path.as_slice())
    }

    /// The entries: a field path and its condition.
    pub fn entries(&self) -> impl Iterator<Item = (&[String], &Condition)> {
        self.entries
            .iter()
            .map(|(path, condition)| (path.as_slice(), condition))
    }

    /// Whether every entry holds for `fields` (an event, or a request not yet made into one) as
    /// a hook with `redaction` sees them.
    pub fn matches<F: Fields + ?Sized>(&self, fields: &F, redaction: &Redaction) -> bool {
        self.entries
            .iter()
            .all(|(path, condition)| condition.holds(fields.field(path, redaction).as_ref()))
    }
}

fn compile_condition(value: &Value, path: &str, problems: &Problems) -> Option<Condition> {
    let Value::Object(map) = value else {
        return Some(Condition::Eq(value.clone()));
    };
    if map.is_empty() {
        problems.add(
            path,
            format!("empty condition; use an operator: {}", OPERATORS.join(", ")),
        );
        return None;
    }
    let mut all = Vec::with_capacity(map.len());
    let mut ok = true;
    for (operator, operand) in map {
        match compile_operator(operator, operand, &child(path, operator), problems) {
            Some(condition) => all.push(condition),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if all.len() == 1 {
        all.pop()
    } else {
        Some(Condition::All(all))
    }
}

fn compile_operator(
    operator: &str,
    operand: &Value,
    path: &str,
    problems: &Problems,
) -> Option<Condition> {
    let expected = |what: &str| {
        problems.add(path, format!("expected {what}, found {}", kind(operand)));
        None
    };
    match operator {
        "eq" => Some(Condition::Eq(operand.clone())),
        "ne" => Some(Condition::Ne(operand.clone())),
        "in" => match operand {
            Value::Array(items) if !items.is_empty() => Some(Condition::In(items.clone())),
            Value::Array(_) => {
                problems.add(path, "expected a non-empty array");
                None
            }
            _ => expected("an array"),
        },
        "prefix" | "suffix" => match operand {
            Value::String(text) if operator == "prefix" => Some(Condition::Prefix(text.clone())),
            Value::String(text) => Some(Condition::Suffix(text.clone())),
            _ => expected("a string"),
        },
        "contains" => match operand {
            Value::Null => expected("a value"),
            _ => Some(Condition::Contains(operand.clone())),
        },
        "gt" | "gte" | "lt" | "lte" => match operand {
            Value::Number(_) | Value::String(_) => Some(match operator {
                "gt" => Condition::Gt(operand.clone()),
                "gte" => Condition::Gte(operand.clone()),
                "lt" => Condition::Lt(operand.clone()),
                _ => Condition::Lte(operand.clone()),
            }),
            _ => expected("a number or a string"),
        },
        "exists" => match operand {
            Value::Bool(flag) => Some(Condition::Exists(*flag)),
            _ => expected("true or false"),
        },
        "not" => {
            compile_condition(operand, path, problems).map(|inner| Condition::Not(Box::new(inner)))
        }
        _ => {
            problems.add(
                path,
                format!(
                    "unknown operator; expected one of: {}",
                    OPERATORS.join(", ")
                ),
            );
            None
        }
    }
}

impl Condition {
    /// Whether the condition holds for a field's value (`None`: the field is absent).
    pub fn holds(&self, value: Option<&Field<'_>>) -> bool {
        match self {
            Condition::Exists(expected) => value.is_some() == *expected,
            Condition::Ne(operand) => !value.is_some_and(|value| field_eq(value, operand)),
            Condition::Not(inner) => !inner.holds(value),
            Condition::All(all) => all.iter().all(|condition| condition.holds(value)),
            _ => value.is_some_and(|value| self.holds_on(value)),
        }
    }

    fn holds_on(&self, value: &Field<'_>) -> bool {
        match self {
            Condition::Eq(operand) => field_eq(value, operand),
            Condition::In(items) => items.iter().any(|item| field_eq(value, item)),
            Condition::Prefix(prefix) => value
                .as_str()
                .is_some_and(|text| text.starts_with(prefix.as_str())),
            Condition::Suffix(suffix) => value
                .as_str()
                .is_some_and(|text| text.ends_with(suffix.as_str())),
            Condition::Contains(operand) => match value {
                Field::Json(value) => contains(value, operand),
                _ => text_contains(value.as_str(), operand),
            },
            Condition::Gt(operand) => field_compare(value, operand) == Some(Ordering::Greater),
            Condition::Gte(operand) => matches!(
                field_compare(value, operand),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Condition::Lt(operand) => field_compare(value, operand) == Some(Ordering::Less),
            Condition::Lte(operand) => {
                matches!(
                    field_compare(value, operand),
                    Some(Ordering::Less | Ordering::Equal)
                )
            }
            Condition::Exists(_) | Condition::Ne(_) | Condition::Not(_) | Condition::All(_) => {
                self.holds(Some(value))
            }
        }
    }
}

/// [`json_eq`] for a field: text equals a JSON string of the same text, and nothing else.
fn field_eq(field: &Field<'_>, operand: &Value) -> bool {
    match field {
        Field::Json(value) => json_eq(value, operand),
        _ => field.as_str() == operand.as_str(),
    }
}

/// [`compare`] for a field: text orders against a JSON string only.
fn field_compare(field: &Field<'_>, operand: &Value) -> Option<Ordering> {
    match (field, operand) {
        (Field::Json(value), _) => compare(value, operand),
        (_, Value::String(other)) => Some(field.as_str()?.cmp(other.as_str())),
        _ => None,
    }
}

/// [`contains`] for text: a substring only.
fn text_contains(text: Option<&str>, operand: &Value) -> bool {
    match (text, operand) {
        (Some(text), Value::String(part)) => text.contains(part.as_str()),
        _ => false,
    }
}

/// JSON equality where numbers compare by value (`500 == 500.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| json_eq(value, other)))
        }
        _ => a == b,
    }
}

/// Orders two numbers (exactly when both are integers) or two strings.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let whole = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (whole(x), whole(y)) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A substring of a string, an element of an array, or a key of an object.
fn contains(value: &Value, operand: &Value) -> bool {
    match (value, operand) {
        (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
        (Value::Array(items), _) => items.iter().any(|item| json_eq(item, operand)),
        (Value::Object(map), Value::String(key)) => map.contains_key(key),
        _ => false,
    }
}

/// How far a filter's `not` is described: deeper ones are left to the parser (a schema without
/// `$ref` cannot recurse).
#[cfg(feature = "schema")]
const SCHEMA_NOT_DEPTH: usize = 2;

/// The JSON Schema of a filter (field paths to conditions), for the configuration's schema.
#[cfg(feature = "schema")]
pub fn schema() -> Value {
    json!({"type": "object", "additionalProperties": condition(SCHEMA_NOT_DEPTH)})
}

#[cfg(feature = "schema")]
/// A condition: a bare value (compared with `eq`), or an object of operators.
fn condition(depth: usize) -> Value {
    let any = json!({});
    let not = if depth == 0 {
        any.clone()
    } else {
        condition(depth - 1)
    };
    let operand = |operator: &str| match operator {
        "in" => json!({"type": "array", "minItems": 1}),
        "prefix" | "suffix" => json!({"type": "string"}),
        "gt" | "gte" | "lt" | "lte" => json!({"type": ["number", "string"]}),
        "exists" => json!({"type": "boolean"}),
        "contains" => json!({"not": {"type": "null"}}),
        "not" => not.clone(),
        _ => any.clone(),
    };
    let operators: Map<String, Value> = OPERATORS
        .iter()
        .map(|operator| (operator.to_string(), operand(operator)))
        .collect();
    json!({
        "anyOf": [
            {"type": ["array", "boolean", "integer", "null", "number", "string"]},
            {
                "type": "object",
                "minProperties": 1,
                "properties": operators,
                "additionalProperties": false,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::source::Source;
    use serde_json::json;

    fn compile(value: Value) -> Result<Filter, Vec<String>> {
        let problems = Problems::default();
        let filter = Filter::compile(&value, "filter", &problems);
        if problems.is_empty() {
            Ok(filter)
        } else {
            Err(problems.messages())
        }
    }

    fn event(data: Value) -> Event {
        let Value::Object(map) = data else {
            panic!("not an object")
        };
        Event::new(Source::TRAFFIC, "request", map)
    }

    fn matches(filter: Value, data: Value) -> bool {
        compile(filter)
            .unwrap()
            .matches(&event(data), &Redaction::default())
    }

    #[test]
    fn issue_example_matches_5xx_on_orders_only() {
        let filter =
            json!({"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}});
        let hit = json!({"response": {"status": 503}, "request": {"path": "/orders/1"}});
        let ok = json!({"response": {"status": 200}, "request": {"path": "/orders/1"}});
        let elsewhere = json!({"response": {"status": 500}, "request": {"path": "/users"}});
        assert!(matches(filter.clone(), hit));
        assert!(!matches(filter.clone(), ok));
        assert!(!matches(filter, elsewhere));
    }

    #[test]
    fn every_operator() {
        let data = json!({
            "n": 500, "f": 2.5, "s": "/orders/42", "b": true, "z": null,
            "list": ["a", 1], "obj": {"k": 1}
        });
        let cases = [
            (json!({"n": 500}), true),
            (json!({"n": 500.0}), true),
            (json!({"n": {"eq": "500"}}), false),
            (json!({"n": {"ne": 404}}), true),
            (json!({"n": {"ne": 500}}), false),
            (json!({"n": {"in": [404, 500]}}), true),
            (json!({"n": {"in": [404]}}), false),
            (json!({"s": {"prefix": "/orders"}}), true),
            (json!({"s": {"prefix": "/users"}}), false),
            (json!({"s": {"suffix": "42"}}), true),
            (json!({"s": {"contains": "ders/4"}}), true),
            (json!({"list": {"contains": 1}}), true),
            (json!({"list": {"contains": "b"}}), false),
            (json!({"obj": {"contains": "k"}}), true),
            (json!({"n": {"contains": "5"}}), false),
            (json!({"n": {"gt": 499}}), true),
            (json!({"n": {"gt": 500}}), false),
            (json!({"n": {"gte": 500}}), true),
            (json!({"n": {"lt": 501}}), true),
            (json!({"n": {"lte": 499}}), false),
            (json!({"f": {"gt": 2, "lt": 3}}), true),
            (json!({"f": {"gte": 2.5}}), true),
            (json!({"s": {"gt": "/a"}}), true),
            (json!({"s": {"gt": 1}}), false),
            (json!({"n": {"gte": 500, "lt": 600}}), true),
            (json!({"n": {"gte": 500, "lt": 501, "ne": 500}}), false),
            (json!({"b": true}), true),
            (json!({"z": null}), true),
            (json!({"z": {"exists": true}}), true),
            (json!({"missing": {"exists": false}}), true),
            (json!({"missing": {"exists": true}}), false),
            (json!({"s": {"not": {"prefix": "/users"}}}), true),
            (json!({"n": {"not": 500}}), false),
            (json!({"obj": {"eq": {"k": 1.0}}}), true),
            (json!({"list": ["a", 1]}), true),
            (json!({"obj.k": 1}), true),
            (json!({"list.0": "a"}), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter.clone(), data.clone()), expected, "{filter}");
        }
    }

    /// Strings as text fields (as a request not yet made into an event gives them).
    struct AsText(Event);

    impl Fields for AsText {
        fn field<'a, S: AsRef<str>>(
            &'a self,
            path: &[S],
            redaction: &'a Redaction,
        ) -> Option<Field<'a>> {
            let value = self.0.lookup(path, redaction)?;
            Some(match value {
                std::borrow::Cow::Borrowed(Value::String(text)) => {
                    Field::Text(std::borrow::Cow::Borrowed(text.as_str()))
                }
                other => Field::Json(other),
            })
        }
    }

    #[test]
    fn text_fields_hold_exactly_as_json_strings() {
        let data = json!({"s": "/orders/42", "e": "", "n": 500});
        let operands = [
            json!("/orders/42"),
            json!(""),
            json!("/orders"),
            json!(42),
            json!(null),
            json!(["/orders/42"]),
            json!({"k": 1}),
            json!(true),
        ];
        let mut filters = vec![
            json!({"s": {"exists": true}}),
            json!({"e": {"exists": false}}),
        ];
        for operand in &operands {
            for operator in ["eq", "ne", "contains", "gt", "gte", "lt", "lte"] {
                if operator == "contains" && operand.is_null() {
                    continue;
                }
                let numeric = matches!(operator, "gt" | "gte" | "lt" | "lte");
                if numeric && !(operand.is_string() || operand.is_number()) {
                    continue;
                }
                for field in ["s", "e", "n"] {
                    filters.push(json!({field: {operator: operand}}));
                    filters.push(json!({field: {"not": {operator: operand}}}));
                }
            }
            if let Some(text) = operand.as_str() {
                filters.push(json!({"s": {"prefix": text}, "e": {"suffix": text}}));
                filters.push(json!({"s": {"in": [1, text]}}));
            }
        }
        for filter in filters {
            let compiled = compile(filter.clone()).unwrap();
            let as_json = compiled.matches(&event(data.clone()), &Redaction::default());
            let as_text = compiled.matches(&AsText(event(data.clone())), &Redaction::default());
            assert_eq!(as_json, as_text, "{filter}");
        }
    }

    #[test]
    fn missing_fields_fail_all_but_negations() {
        let data = json!({});
        assert!(!matches(json!({"x": 1}), data.clone()));
        assert!(!matches(json!({"x": {"gt": 1}}), data.clone()));
        assert!(!matches(json!({"x": {"prefix": ""}}), data.clone()));
        assert!(matches(json!({"x": {"ne": 1}}), data.clone()));
        assert!(matches(json!({"x": {"not": {"eq": 1}}}), data.clone()));
        assert!(matches(json!({}), data));
    }

    #[test]
    fn large_integers_compare_exactly() {
        let data = json!({"id": 9007199254740993u64});
        assert!(!matches(json!({"id": 9007199254740992u64}), data.clone()));
        assert!(matches(json!({"id": {"gt": 9007199254740992u64}}), data));
    }

    #[test]
    fn filters_see_redacted_values() {
        let data = json!({"request": {"headers": {"authorization": "Bearer t"}}});
        assert!(matches(
            json!({"request.headers.authorization": "[redacted]"}),
            data.clone()
        ));
        assert!(!matches(
            json!({"request.headers.authorization": "Bearer t"}),
            data
        ));
    }

    #[test]
    fn bad_filters_report_every_problem_with_its_path() {
        let errors = compile(json!({
            "a": {"gte": true},
            "b": {"between": [1, 2]},
            "c": {},
            "d": {"in": []},
            "e": {"not": {"exists": "yes"}},
            "f..g": 1,
            "h": {"prefix": 3}
        }))
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "filter.a.gte: expected a number or a string, found a boolean",
                "filter.b.between: unknown operator; expected one of: eq, ne, in, prefix, suffix, contains, gt, gte, lt, lte, exists, not",
                "filter.c: empty condition; use an operator: eq, ne, in, prefix, suffix, contains, gt, gte, lt, lte, exists, not",
                "filter.d.in: expected a non-empty array",
                "filter.e.not.exists: expected true or false, found a string",
                "filter.f..g: a field path is dot-separated names such as response.status",
                "filter.h.prefix: expected a string, found a number",
            ]
        );
        assert_eq!(
            compile(json!([1])).unwrap_err(),
            vec!["filter: expected an object mapping field paths to conditions, found an array"]
        );
    }
}
