//! The native filter as a tree: leaves Envoy evaluates in C++, joined by AND and OR, with the
//! two constants "every request" and "no request" that Envoy's `AccessLogFilter` has no leaf
//! for. The constructors simplify as they build, so that the YAML carries no `and_filter` or
//! `or_filter` of fewer than two filters (Envoy refuses them) and no constant at all.

use serde_json::{Map, Value, json};

/// What Envoy's `ComparisonFilter` compares with (`envoy.config.accesslog.v3.ComparisonFilter.Op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ge,
    Le,
    /// Envoy 1.37 and later.
    Ne,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "EQ",
            Op::Ge => "GE",
            Op::Le => "LE",
            Op::Ne => "NE",
        }
    }
}

/// How a `header_filter` matches the header's value (all of its values joined with `,`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The header is present, whatever its value.
    Present,
    Exact(String),
    /// Never empty (Envoy refuses an empty prefix, suffix or substring).
    Prefix(String),
    Suffix(String),
    Contains(String),
}

/// A filter Envoy evaluates itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// `status_code_filter`: the response code, 0 when there is none.
    Status(Op, u32),
    /// `duration_filter`: the request's duration in whole milliseconds.
    Duration(Op, u32),
    /// `header_filter` on a request header (or pseudo-header), by its lowercase name.
    Header(String, Match),
    /// `response_flag_filter`: any of these flags; empty: any flag at all.
    Flags(Vec<&'static str>),
}

/// A native filter, or one of the two constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Native {
    /// Lets every request through: no native filter.
    Every,
    /// Refuses every request.
    No,
    Leaf(Leaf),
    /// Two or more filters, each of them neither a constant nor an `And`.
    And(Vec<Native>),
    /// Two or more filters, each of them neither a constant nor an `Or`.
    Or(Vec<Native>),
}

/// Lets through what every one of `items` lets through.
pub fn and(items: impl IntoIterator<Item = Native>) -> Native {
    let mut all = Vec::new();
    for item in items {
        match item {
            Native::Every => {}
            Native::No => return Native::No,
            Native::And(inner) => all.extend(inner),
            other => all.push(other),
        }
    }
    join(all, Native::Every, Native::And)
}

/// Lets through what any one of `items` lets through. Response-flag filters become one
/// (any flag of any of them).
pub fn or(items: impl IntoIterator<Item = Native>) -> Native {
    let mut any = Vec::new();
    let mut flags: Option<Vec<&'static str>> = None;
    for item in items {
        match item {
            Native::Every => return Native::Every,
            Native::No => {}
            Native::Or(inner) => any.extend(inner),
            Native::Leaf(Leaf::Flags(more)) => {
                flags = Some(match flags {
                    // Any flag at all, on either side: any flag at all.
                    Some(some) if some.is_empty() || more.is_empty() => Vec::new(),
                    Some(mut some) => {
                        for name in more {
                            if !some.contains(&name) {
                                some.push(name);
                            }
                        }
                        some
                    }
                    None => more,
                });
            }
            other => any.push(other),
        }
    }
    if let Some(flags) = flags {
        any.push(Native::Leaf(Leaf::Flags(flags)));
    }
    join(any, Native::No, Native::Or)
}

/// `items` without repeats: none is `empty`, one is itself, more are `many`.
fn join(items: Vec<Native>, empty: Native, many: fn(Vec<Native>) -> Native) -> Native {
    let mut unique: Vec<Native> = Vec::with_capacity(items.len());
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    if unique.len() > 1 {
        return many(unique);
    }
    unique.pop().unwrap_or(empty)
}

/// A header filter.
pub fn header(name: &str, matcher: Match) -> Native {
    Native::Leaf(Leaf::Header(name.to_string(), matcher))
}

/// A filter no request passes (the response code is never both 0 or less and 1 or more), for
/// a configuration none of whose hooks can match a request.
pub fn refuse_all() -> Value {
    to_value(&and([
        Native::Leaf(Leaf::Status(Op::Le, 0)),
        Native::Leaf(Leaf::Status(Op::Ge, 1)),
    ]))
}

/// The filter as Envoy's JSON/YAML (`envoy.config.accesslog.v3.AccessLogFilter`); a constant
/// has none and gives `null`.
pub fn to_value(native: &Native) -> Value {
    match native {
        Native::Every | Native::No => Value::Null,
        Native::And(items) => json!({"and_filter": {"filters": values(items)}}),
        Native::Or(items) => json!({"or_filter": {"filters": values(items)}}),
        Native::Leaf(Leaf::Status(op, value)) => {
            json!({"status_code_filter": {"comparison": comparison(*op, *value)}})
        }
        Native::Leaf(Leaf::Duration(op, value)) => {
            json!({"duration_filter": {"comparison": comparison(*op, *value)}})
        }
        Native::Leaf(Leaf::Header(name, matcher)) => {
            let mut header = Map::new();
            header.insert("name".into(), Value::String(name.clone()));
            let (key, value) = match matcher {
                Match::Present => ("present_match", Value::Bool(true)),
                Match::Exact(text) => ("string_match", json!({"exact": text})),
                Match::Prefix(text) => ("string_match", json!({"prefix": text})),
                Match::Suffix(text) => ("string_match", json!({"suffix": text})),
                Match::Contains(text) => ("string_match", json!({"contains": text})),
            };
            header.insert(key.into(), value);
            json!({"header_filter": {"header": header}})
        }
        Native::Leaf(Leaf::Flags(flags)) if flags.is_empty() => json!({"response_flag_filter": {}}),
        Native::Leaf(Leaf::Flags(flags)) => json!({"response_flag_filter": {"flags": flags}}),
    }
}

fn values(items: &[Native]) -> Vec<Value> {
    items.iter().map(to_value).collect()
}

/// A comparison with a fixed value: no `runtime_key`, so that no runtime override can change
/// what the filter lets through (Envoy 1.35 and later take a `RuntimeUInt32` without one).
fn comparison(op: Op, value: u32) -> Value {
    json!({"op": op.name(), "value": {"default_value": value}})
}
