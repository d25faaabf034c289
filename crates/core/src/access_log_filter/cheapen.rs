//! The same native filter, cheaper for Envoy to evaluate. Envoy runs an `or_filter`'s filters
//! one after the other until one lets the request through, and an `and_filter`'s until one
//! refuses it, so with many hooks the plain translation (one AND per hook, all ORed) tests
//! every hook's conditions on every request: 1,000 hooks are 1,000 header lookups at least.
//! Rewritten here, each step an identity of boolean algebra (so the filter lets through
//! exactly the same requests; the property test checks it on random configurations):
//!
//! * **cheapest first**: within an AND, response code, duration and flags (numbers Envoy has
//!   at hand), then pseudo-headers (`:method`, `:path`, `:authority`: fixed slots of Envoy's
//!   header map), then other headers (a lookup by name);
//! * **absorption**: `L OR (L AND x)` is `L`;
//! * **a shared condition first**: `(L AND a) OR (L AND b) OR c` is `(L AND (a OR b)) OR c`,
//!   for the condition `L` most of the ANDs share (a 5xx status, a method), so that one test
//!   refuses them all;
//! * **a shared prefix or suffix first**: header filters on one header whose exact values and
//!   prefixes all begin with `P` are behind `prefix P` (tenant ids `tenant-1`, `tenant-2`, ...),
//!   and suffixes all ending with `S` behind `suffix S` (`.svc1.internal`, `.svc2.internal`).

use super::native::{Leaf, Match, Native, and, header, or};

/// `native`, rewritten to let through the same requests at less cost.
pub fn cheapen(native: Native) -> Native {
    match native {
        Native::And(items) => {
            let mut items: Vec<Native> = items.into_iter().map(cheapen).collect();
            items.sort_by_key(cost);
            and(items)
        }
        Native::Or(items) => factor(items.into_iter().map(cheapen).collect()),
        other => other,
    }
}

/// How dear a filter is for Envoy to evaluate, in classes.
fn cost(native: &Native) -> u8 {
    match native {
        Native::Leaf(Leaf::Status(..) | Leaf::Duration(..) | Leaf::Flags(_)) => 0,
        Native::Leaf(Leaf::Header(name, _)) if name.starts_with(':') => 1,
        Native::Leaf(Leaf::Header(..)) => 2,
        _ => 3,
    }
}

/// The OR of `items` (each already cheapened).
fn factor(items: Vec<Native>) -> Native {
    let items = absorb(items);
    let Some(shared) = most_shared(&items) else {
        return or(common_affixes(items));
    };
    let (holding, others): (Vec<Native>, Vec<Native>) = items
        .into_iter()
        .partition(|item| conjuncts(item).contains(&shared));
    let rests: Vec<Native> = holding
        .into_iter()
        .map(|item| match item {
            Native::And(held) => and(held.into_iter().filter(|c| *c != shared)),
            // Never here: an item that is `shared` itself absorbed the ANDs holding it.
            other => other,
        })
        .collect();
    let grouped = and([shared, factor(rests)]);
    factor_rest(grouped, others)
}

/// `grouped` OR the rest, the rest factored in turn.
fn factor_rest(grouped: Native, others: Vec<Native>) -> Native {
    if others.is_empty() {
        return grouped;
    }
    or([grouped, factor(others)])
}

/// The conjuncts of an item of an OR: its filters if an AND, else itself.
fn conjuncts(item: &Native) -> &[Native] {
    match item {
        Native::And(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// `items` without the ANDs that hold a leaf the OR has on its own.
fn absorb(items: Vec<Native>) -> Vec<Native> {
    let alone: Vec<Native> = items
        .iter()
        .filter(|item| matches!(item, Native::Leaf(_)))
        .cloned()
        .collect();
    items
        .into_iter()
        .filter(|item| match item {
            Native::And(conjuncts) => !conjuncts.iter().any(|c| alone.contains(c)),
            _ => true,
        })
        .collect()
}

/// The leaf most ANDs of `items` hold, if two or more hold one (the cheapest, then the first,
/// on a tie).
fn most_shared(items: &[Native]) -> Option<Native> {
    let mut best: Option<(&Native, usize)> = None;
    for item in items {
        let Native::And(held) = item else {
            continue;
        };
        for leaf in held.iter().filter(|c| matches!(c, Native::Leaf(_))) {
            let count = items
                .iter()
                .filter(|other| matches!(other, Native::And(_)))
                .filter(|other| conjuncts(other).contains(leaf))
                .count();
            let better = match best {
                None => true,
                Some((held, most)) => count > most || count == most && cost(leaf) < cost(held),
            };
            if count >= 2 && better {
                best = Some((leaf, count));
            }
        }
    }
    best.map(|(leaf, _)| leaf.clone())
}

/// Header filters of `items` on one header, exact or by prefix, that share a prefix, behind
/// that prefix; suffixes sharing a suffix, behind that suffix; at least [`GROUP`] of them (fewer
/// would save less than the guard costs). The others as they are, in their order.
fn common_affixes(items: Vec<Native>) -> Vec<Native> {
    let key = |item: &Native| match item {
        Native::Leaf(Leaf::Header(name, matcher)) => side(matcher).map(|side| (name.clone(), side)),
        _ => None,
    };
    let keys: Vec<Option<(String, Side)>> = items.iter().map(key).collect();
    let mut out = Vec::new();
    let mut done: Vec<(String, Side)> = Vec::new();
    for (at, item) in items.iter().enumerate() {
        let Some(Some((name, side))) = keys.get(at) else {
            out.push(item.clone());
            continue;
        };
        if done.iter().any(|(held, s)| held == name && s == side) {
            continue;
        }
        done.push((name.clone(), *side));
        let members: Vec<Native> = items
            .iter()
            .zip(&keys)
            .filter(|(_, other)| other.as_ref().is_some_and(|(n, s)| n == name && s == side))
            .map(|(member, _)| member.clone())
            .collect();
        out.push(behind_affix(name, *side, members));
    }
    out
}

/// The fewest header filters worth a guard.
const GROUP: usize = 3;

/// `members` (header filters on `name` matching at `side`), behind what they share there.
fn behind_affix(name: &str, side: Side, members: Vec<Native>) -> Native {
    let texts: Vec<&str> = members.iter().filter_map(text).collect();
    let shared = match side {
        Side::Start => common_prefix(&texts),
        Side::End => common_suffix(&texts),
    };
    if members.len() < GROUP || shared.is_empty() {
        return or(members);
    }
    let guard = header(
        name,
        match side {
            Side::Start => Match::Prefix(shared.to_string()),
            Side::End => Match::Suffix(shared.to_string()),
        },
    );
    // A member that is the guard itself lets through all the others let through.
    if members.contains(&guard) {
        return guard;
    }
    and([guard, or(members)])
}

/// Which end of a value a match pins down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Start,
    End,
}

fn side(matcher: &Match) -> Option<Side> {
    match matcher {
        Match::Exact(_) | Match::Prefix(_) => Some(Side::Start),
        Match::Suffix(_) => Some(Side::End),
        Match::Present | Match::Contains(_) => None,
    }
}

fn text(item: &Native) -> Option<&str> {
    match item {
        Native::Leaf(Leaf::Header(
            _,
            Match::Exact(text) | Match::Prefix(text) | Match::Suffix(text),
        )) => Some(text),
        _ => None,
    }
}

/// The longest prefix of every text (at a character boundary).
fn common_prefix<'a>(texts: &[&'a str]) -> &'a str {
    let Some((first, rest)) = texts.split_first() else {
        return "";
    };
    let mut end = first.len();
    for other in rest {
        let same: usize = first
            .chars()
            .zip(other.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        end = end.min(same);
    }
    first.get(..end).unwrap_or("")
}

/// The longest suffix of every text (at a character boundary).
fn common_suffix<'a>(texts: &[&'a str]) -> &'a str {
    let Some((first, rest)) = texts.split_first() else {
        return "";
    };
    let mut start = 0;
    for other in rest {
        let same: usize = first
            .chars()
            .rev()
            .zip(other.chars().rev())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        start = start.max(first.len().saturating_sub(same));
    }
    first.get(start..).unwrap_or("")
}
