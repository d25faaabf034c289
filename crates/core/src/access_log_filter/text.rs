//! Text fields read from request headers, as `header_filter`s: `request.method` (`:method`),
//! `request.host` (`:authority`), `request.path` (`:path`) and `request.headers.<name>`.
//!
//! What the event has is not always the header's value as Envoy matches it, and each
//! translation lets through at least every value the condition holds for:
//!
//! * text longer than [`MAX_TEXT_BYTES`] is cut at a character boundary and ends with
//!   [`TRUNCATED`]: an operand that could reach into the marker has no native form;
//! * `request.path` is `:path` without its query (from the first `?`): `eq P` is `:path`
//!   exactly `P` or beginning `P?`, `suffix S` is `:path` ending in `S` or holding `S?`, and
//!   an operand with a `?` never holds;
//! * a header given several times is one value, joined with `", "`, where Envoy joins them
//!   with `","`: each `", "` of an operand may be either in Envoy's value, so an operand is
//!   matched piece by piece between its `", "` (its first piece as a prefix for `eq` and
//!   `prefix`, its last as a suffix for `eq` and `suffix`, every other one as a substring);
//!   a leading space may be the end of a separator and is dropped (`suffix`, `contains`);
//!   and a value joined to exactly [`MAX_TEXT_BYTES`] takes no further values and no marker,
//!   so a suffix is also let through when it is followed by `,` (`eq` of that length becomes a
//!   prefix);
//! * bytes of a header that are not UTF-8 read as U+FFFD: an operand holding that character has
//!   no native form (one without it can only be found in the valid stretches, as they are).

use super::native::{Match, Native, and, header, or};
use crate::filter::Condition;
use crate::source::traffic::{MAX_TEXT_BYTES, TRUNCATED};
use serde_json::Value;

/// Where a text field comes from.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    /// A pseudo-header Envoy has once, read whole (`:method`, `:authority`).
    Pseudo(&'static str),
    /// `:path`, of which the field is the part before the first `?`.
    Path,
    /// A request header, by its lowercase name: every value, joined.
    Header(&'a str),
}

/// The filter for `condition` on the field `text` reads.
pub fn text(field: Text<'_>, condition: &Condition) -> Native {
    match of(field, condition) {
        // Nothing narrower (`ne` beside `exists: true`, say), but the field must be there.
        Native::Every if !condition.holds(None) => present(field),
        native => native,
    }
}

fn of(field: Text<'_>, condition: &Condition) -> Native {
    match condition {
        Condition::Eq(Value::String(operand)) => string(field, operand, eq),
        Condition::In(items) => or(items.iter().map(|item| match item {
            Value::String(operand) => string(field, operand, eq),
            _ => Native::No,
        })),
        Condition::Prefix(operand) => string(field, operand, prefix),
        Condition::Suffix(operand) => string(field, operand, suffix),
        Condition::Contains(Value::String(operand)) => string(field, operand, contains),
        // Text never equals, contains or orders against anything but a string.
        Condition::Eq(_)
        | Condition::Contains(_)
        | Condition::Gt(Value::Number(_))
        | Condition::Gte(Value::Number(_))
        | Condition::Lt(Value::Number(_))
        | Condition::Lte(Value::Number(_)) => Native::No,
        Condition::All(all) => and(all.iter().map(|inner| text(field, inner))),
        // `exists`, `ne`, `not` and orders of strings: no native form.
        _ => Native::Every,
    }
}

/// `translate` of a string operand, unless it holds U+FFFD: the filter reads bytes of a header
/// that are not UTF-8 as that character, where Envoy matches the bytes themselves.
fn string(field: Text<'_>, operand: &str, translate: fn(Text<'_>, &str) -> Native) -> Native {
    if operand.contains(char::REPLACEMENT_CHARACTER) {
        return present(field);
    }
    translate(field, operand)
}

/// A condition that holds on any value of the field, and only when there is one.
pub fn present(field: Text<'_>) -> Native {
    match field {
        // Always there on an HTTP request: a filter on them would only be noise.
        Text::Pseudo(_) | Text::Path => Native::Every,
        Text::Header(name) => header(name, Match::Present),
    }
}

fn name(field: Text<'_>) -> &str {
    match field {
        Text::Pseudo(name) => name,
        Text::Path => ":path",
        Text::Header(name) => name,
    }
}

fn eq(field: Text<'_>, operand: &str) -> Native {
    if operand.ends_with(TRUNCATED) {
        return present(field);
    }
    let at = name(field);
    match field {
        Text::Pseudo(_) => header(at, Match::Exact(operand.into())),
        Text::Path if operand.contains('?') => Native::No,
        Text::Path => either(
            at,
            Match::Exact(operand.into()),
            Match::Prefix(format!("{operand}?")),
        ),
        Text::Header(_) => {
            // A value joined up to exactly the cap may have lost what followed.
            let cut = operand.len() >= MAX_TEXT_BYTES;
            match pieces(operand).as_slice() {
                [whole] if !cut => header(at, Match::Exact(whole.to_string())),
                [first, middle @ .., last] if !cut => and(std::iter::once(starts(at, first))
                    .chain(middle.iter().map(|piece| holds(at, piece)))
                    .chain([ends(at, last, false)])),
                all => pieces_from(at, all, true),
            }
        }
    }
}

fn prefix(field: Text<'_>, operand: &str) -> Native {
    // The kept part of cut text is at least MAX_TEXT_BYTES - 3 bytes long.
    if operand.is_empty() || operand.len() > MAX_TEXT_BYTES - 4 {
        return present(field);
    }
    let at = name(field);
    match field {
        Text::Pseudo(_) => header(at, Match::Prefix(operand.into())),
        Text::Path if operand.contains('?') => Native::No,
        Text::Path => header(at, Match::Prefix(operand.into())),
        Text::Header(_) => pieces_from(at, &pieces(operand), true),
    }
}

fn suffix(field: Text<'_>, operand: &str) -> Native {
    if operand.is_empty() || TRUNCATED.ends_with(operand) || operand.ends_with(TRUNCATED) {
        return present(field);
    }
    let at = name(field);
    match field {
        Text::Pseudo(_) => header(at, Match::Suffix(operand.into())),
        Text::Path if operand.contains('?') => Native::No,
        Text::Path => either(
            at,
            Match::Suffix(operand.into()),
            Match::Contains(format!("{operand}?")),
        ),
        Text::Header(_) => {
            let all = pieces(operand.strip_prefix(' ').unwrap_or(operand));
            match all.split_last() {
                Some((last, rest)) if !last.is_empty() => and(rest
                    .iter()
                    .map(|piece| holds(at, piece))
                    .chain([ends(at, last, true)])),
                _ => pieces_from(at, &all, false),
            }
        }
    }
}

fn contains(field: Text<'_>, operand: &str) -> Native {
    if operand.is_empty() || overlaps_marker(operand) {
        return present(field);
    }
    let at = name(field);
    match field {
        Text::Pseudo(_) => header(at, Match::Contains(operand.into())),
        Text::Path if operand.contains('?') => Native::No,
        Text::Path => header(at, Match::Contains(operand.into())),
        Text::Header(_) => {
            let all = pieces(operand.strip_prefix(' ').unwrap_or(operand));
            pieces_from(at, &all, false)
        }
    }
}

/// Whether `operand` found in cut text may lie partly or wholly in the [`TRUNCATED`] marker:
/// it is part of the marker, or it ends with the marker's beginning.
fn overlaps_marker(operand: &str) -> bool {
    TRUNCATED.contains(operand)
        || (1..=TRUNCATED.len())
            .filter_map(|length| TRUNCATED.get(..length))
            .any(|start| operand.ends_with(start))
}

/// The parts of `operand` between its `", "`.
fn pieces(operand: &str) -> Vec<&str> {
    operand.split(", ").collect()
}

/// A header holding each piece, the first one at its start when `anchored`.
fn pieces_from(at: &str, pieces: &[&str], anchored: bool) -> Native {
    let found = and(pieces.iter().enumerate().map(|(index, piece)| {
        if index == 0 && anchored {
            starts(at, piece)
        } else {
            holds(at, piece)
        }
    }));
    match found {
        // Nothing to test but the header being there.
        Native::Every => header(at, Match::Present),
        found => found,
    }
}

fn starts(at: &str, piece: &str) -> Native {
    if piece.is_empty() {
        return Native::Every;
    }
    header(at, Match::Prefix(piece.into()))
}

fn holds(at: &str, piece: &str) -> Native {
    if piece.is_empty() {
        return Native::Every;
    }
    header(at, Match::Contains(piece.into()))
}

/// The header ends with `piece`, or (`cut`: its value may have been joined up to the cap) has
/// it just before a `,`.
fn ends(at: &str, piece: &str, cut: bool) -> Native {
    if piece.is_empty() {
        return Native::Every;
    }
    if cut {
        either(
            at,
            Match::Suffix(piece.into()),
            Match::Contains(format!("{piece},")),
        )
    } else {
        header(at, Match::Suffix(piece.into()))
    }
}

/// Header `at` matching `one` or `other`.
fn either(at: &str, one: Match, other: Match) -> Native {
    or([header(at, one), header(at, other)])
}
