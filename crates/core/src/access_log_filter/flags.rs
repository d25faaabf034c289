//! `response.flags`: the short names of Envoy's response flags, comma-separated in Envoy's
//! order (`UF,URX`), `""` for none; as a `response_flag_filter`, which lets through a request
//! with any of its flags set (or, with none listed, any flag at all).
//!
//! A condition that holds when no flag is set has no native form: the filter never lets such
//! a request through. Any other condition holds only when some flag is set, so "any flag" is
//! always sound; the operators below narrow it to the flags a match must have one of.

use std::borrow::Cow;

use serde_json::Value;

use super::native::{Leaf, Native, and, or};
use crate::event::Field;
use crate::filter::Condition;
use crate::source::traffic::RESPONSE_FLAGS;

pub fn flags(condition: &Condition) -> Native {
    let none = Field::Text(Cow::Borrowed(""));
    if condition.holds(None) || condition.holds(Some(&none)) {
        return Native::Every;
    }
    match narrower(condition) {
        // Holds only when some flag is set, whichever.
        Native::Every => any_flag(),
        native => native,
    }
}

/// The flags a match of `condition` must have one of, where its operator says more than "any".
fn narrower(condition: &Condition) -> Native {
    match condition {
        // Exactly these flags: one of them.
        Condition::Eq(Value::String(text)) => exact(text),
        Condition::In(items) => or(items.iter().map(|item| match item {
            Value::String(text) => exact(text),
            _ => Native::No,
        })),
        // Not empty (it would hold for no flag): within one name, or the first name whole.
        Condition::Prefix(text) => match text.split_once(',') {
            None => named(|name| name.starts_with(text.as_str())),
            Some((first, _)) => named(|name| name == first),
        },
        Condition::Suffix(text) => match text.rsplit_once(',') {
            None => named(|name| name.ends_with(text.as_str())),
            Some((_, last)) => named(|name| name == last),
        },
        Condition::Contains(Value::String(text)) => match text.split_once(',') {
            None => named(|name| name.contains(text.as_str())),
            // Across names: what comes before the first comma ends one of them.
            Some((first, _)) if !first.is_empty() => named(|name| name.ends_with(first)),
            Some(_) => any_flag(),
        },
        Condition::Eq(_) | Condition::Contains(_) => Native::No,
        Condition::All(all) => and(all.iter().map(flags)),
        _ => Native::Every,
    }
}

fn any_flag() -> Native {
    Native::Leaf(Leaf::Flags(Vec::new()))
}

/// The flags whose names `keep` takes; none: the condition never holds.
fn named(keep: impl Fn(&str) -> bool) -> Native {
    let names: Vec<&'static str> = RESPONSE_FLAGS
        .iter()
        .copied()
        .filter(|name| keep(name))
        .collect();
    if names.is_empty() {
        Native::No
    } else {
        Native::Leaf(Leaf::Flags(names))
    }
}

/// The flags of `text` when it is how the event writes some set of flags (known names, in
/// Envoy's order, each once), else nothing: no request's flags read so.
fn exact(text: &str) -> Native {
    let mut names = Vec::new();
    let mut after = None;
    for name in text.split(',') {
        let Some(at) = RESPONSE_FLAGS.iter().position(|known| *known == name) else {
            return Native::No;
        };
        if after.is_some_and(|after| at <= after) {
            return Native::No;
        }
        after = Some(at);
        names.extend(RESPONSE_FLAGS.get(at).copied());
    }
    Native::Leaf(Leaf::Flags(names))
}
