//! `response.status` and `latency_ms`: the whole numbers a condition holds for, found with the
//! filter's own evaluator, as `status_code_filter` and `duration_filter` comparisons.
//!
//! A condition on a whole-number field can only change its answer at the numbers its operands
//! name (a number `n` of `eq`, `ne`, `in`, `gt`, `gte`, `lt`, `lte`, anywhere under `not` or
//! beside other operators; a fraction at the whole numbers either side of it): between two
//! such numbers every comparison with every operand comes out the same. So the condition is
//! asked ([`Condition::holds`]) at each of those numbers and at one number of each gap
//! between them, which gives exactly the ranges of Envoy's value it holds for, whatever the
//! operators, their nesting and their operands (strings, fractions, negative or huge numbers).

use std::borrow::Cow;

use serde_json::Value;

use super::native::{Leaf, Native, Op, and, or};
use crate::event::Field;
use crate::filter::Condition;

/// The most ranges a comparison is written as; more are joined into the smallest range
/// holding them all (which lets more through, never less).
const MAX_RANGES: usize = 8;

/// The largest value a comparison takes (`RuntimeUInt32`).
const MAX_VALUE: u64 = u32::MAX as u64;

/// `response.status`: the event's status is Envoy's response code (the `response.code`
/// property, which the HTTP connection manager sets from the `:status` it sends), and is
/// absent when there is none, where `status_code_filter` compares 0.
pub fn status(condition: &Condition) -> Native {
    let field = |code: u64| (code > 0).then(|| number(code));
    comparisons(
        &holds_on(condition, MAX_VALUE, field),
        MAX_VALUE,
        Leaf::Status,
    )
}

/// `latency_ms`: the `request.duration` property in whole milliseconds, the value
/// `duration_filter` compares once the request is complete.
pub fn duration(condition: &Condition) -> Native {
    comparisons(
        &holds_on(condition, u64::MAX, |ms| Some(number(ms))),
        u64::MAX,
        Leaf::Duration,
    )
}

fn number(value: u64) -> Field<'static> {
    Field::Json(Cow::Owned(Value::from(value)))
}

/// The ranges of `0..=max` whose values make `condition` hold, `field` giving what the filter
/// sees for each value.
fn holds_on(
    condition: &Condition,
    max: u64,
    field: impl Fn(u64) -> Option<Field<'static>>,
) -> Vec<(u64, u64)> {
    let mut points = vec![0, max];
    operands(condition, max, &mut points);
    points.sort_unstable();
    points.dedup();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut add = |from: u64, to: u64| {
        if !condition.holds(field(from).as_ref()) {
            return;
        }
        match ranges.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(from) => last.1 = to,
            _ => ranges.push((from, to)),
        }
    };
    let mut before: Option<u64> = None;
    for &point in &points {
        if let Some(gap) = before.and_then(|before| before.checked_add(1)) {
            if gap < point {
                add(gap, point - 1);
            }
        }
        add(point, point);
        before = Some(point);
    }
    ranges
}

/// The whole numbers in `0..=max` at which a comparison of `condition` may change its answer.
fn operands(condition: &Condition, max: u64, points: &mut Vec<u64>) {
    let mut add = |operand: &Value| {
        let Value::Number(number) = operand else {
            return;
        };
        if let Some(whole) = number.as_u64() {
            points.extend((whole <= max).then_some(whole));
        } else if let Some(fraction) = number.as_f64().filter(|f| *f >= 0.0) {
            for whole in [fraction.floor(), fraction.ceil()] {
                // `as` saturates: a number past u64::MAX is past `max` too.
                let whole = whole as u64;
                points.extend((whole <= max).then_some(whole));
            }
        }
    };
    match condition {
        Condition::Eq(operand)
        | Condition::Ne(operand)
        | Condition::Gt(operand)
        | Condition::Gte(operand)
        | Condition::Lt(operand)
        | Condition::Lte(operand) => add(operand),
        Condition::In(items) => items.iter().for_each(add),
        Condition::Not(inner) => operands(inner, max, points),
        Condition::All(all) => all.iter().for_each(|inner| operands(inner, max, points)),
        Condition::Prefix(_)
        | Condition::Suffix(_)
        | Condition::Contains(_)
        | Condition::Exists(_) => {}
    }
}

/// The comparisons that let through exactly the values of `ranges` (of `0..=max`), or more
/// where a comparison cannot say it (a bound past [`MAX_VALUE`], more than [`MAX_RANGES`]).
fn comparisons(ranges: &[(u64, u64)], max: u64, leaf: fn(Op, u32) -> Leaf) -> Native {
    let compare = |op: Op, value: u64| {
        Native::Leaf(leaf(
            op,
            u32::try_from(value.min(MAX_VALUE)).unwrap_or(u32::MAX),
        ))
    };
    match ranges {
        [] => return Native::No,
        [(0, last)] if *last == max => return Native::Every,
        [(0, below), (above, last)]
            if *last == max && below.checked_add(2) == Some(*above) && *above - 1 <= MAX_VALUE =>
        {
            return compare(Op::Ne, *above - 1);
        }
        _ => {}
    }
    let hull;
    let ranges = match (ranges.first(), ranges.last()) {
        (Some(first), Some(last)) if ranges.len() > MAX_RANGES => {
            hull = [(first.0, last.1)];
            &hull[..]
        }
        _ => ranges,
    };
    or(ranges.iter().map(|&(from, to)| {
        if from == to && to <= MAX_VALUE {
            return compare(Op::Eq, from);
        }
        // A value past MAX_VALUE bounds nothing a comparison can write: a lower bound there
        // becomes MAX_VALUE (lets more through), an upper one goes.
        let lower = if from == 0 {
            Native::Every
        } else {
            compare(Op::Ge, from)
        };
        let upper = if to >= max || to > MAX_VALUE {
            Native::Every
        } else {
            compare(Op::Le, to)
        };
        and([lower, upper])
    }))
}
