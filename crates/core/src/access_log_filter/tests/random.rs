//! The property test's generators: configurations of traffic hooks with random conditions on
//! every field the generator translates (and some it does not), with every operator, and
//! requests whose values collide with the operands (repeated headers, names in any case,
//! paths with and without a query, text at and past the cap, response flags, durations).

use fastrand::Rng;
use serde_json::{Map, Value, json};

use super::{NOW_NS, capture, core_matches, envoy, parse};
use crate::access_log_filter::{PreFilter, generate, uncheapened};
use crate::event::{lookup, split_path};
use crate::source::traffic::{self, MAX_TEXT_BYTES, TRUNCATED};

/// What a run saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests some hook matched (each let through).
    pub matched: usize,
    /// Requests a filter refused (not counting configurations that match nothing).
    pub refused: usize,
    /// Configurations that got a filter, that need every request, that match nothing.
    pub filtered: usize,
    pub everything: usize,
    pub nothing: usize,
    /// Requests a cheapened filter and its plain translation were both asked about.
    pub cheapened: usize,
    /// Configurations whose filter cheapening rewrote.
    pub rewritten: usize,
}

/// `configs` random configurations, each with `requests` requests: a sample request whose
/// field values the configuration's operands are often taken from (whole or in part), that
/// request changed a little, and random ones. `focused`: each configuration one hook with one
/// condition whose operands all come from the sample (which it then often matches).
/// `many`: each configuration 4 to 40 hooks, half their conditions taken again from hooks
/// before them (what [`crate::access_log_filter::cheapen`] rewrites: shared conditions, shared
/// prefixes).
pub fn run(seed: u64, configs: usize, requests: usize, focused: bool, many: bool) -> Stats {
    let mut rng = Rng::with_seed(seed);
    let pools = Pools::new();
    let mut stats = Stats::default();
    for _ in 0..configs {
        let sample = request(&mut rng, &pools);
        let event = traffic::event(&capture(&sample, str::to_string), NOW_NS).data;
        let config = configuration(&mut Draw {
            rng: &mut rng,
            pools: &pools,
            event: &event,
            focused,
            many,
        });
        let parsed = parse(&config);
        let (filter, nothing) = match generate(&parsed).filter {
            PreFilter::Filter(filter) => {
                stats.filtered += 1;
                (Some(filter), false)
            }
            PreFilter::Nothing(filter) => {
                stats.nothing += 1;
                (Some(filter), true)
            }
            PreFilter::None(_) => {
                stats.everything += 1;
                (None, false)
            }
        };
        let uncheapened = uncheapened(&parsed);
        stats.rewritten += usize::from(filter.is_some() && !nothing && filter != uncheapened);
        for at in 0..requests {
            let request = match at % 4 {
                0 => sample.clone(),
                1 => vary(&mut rng, &pools, &sample),
                _ => request(&mut rng, &pools),
            };
            let case = rng.u8(..);
            let capture = capture(&request, |name| recase(name, case));
            let matched = core_matches(&parsed, &capture);
            let passes = filter
                .as_ref()
                .is_none_or(|filter| envoy::passes(filter, &request));
            // Cheapened, it lets through exactly what it did as translated.
            if let (Some(filter), Some(plain)) = (&filter, &uncheapened) {
                assert_eq!(
                    passes,
                    envoy::passes(plain, &request),
                    "cheapened differently\nconfig: {config}\nfilter: {filter}\nplain: {plain}\nrequest: {request:?}"
                );
                stats.cheapened += 1;
            }
            assert!(
                passes || !matched,
                "refused a request a hook matches\nconfig: {config}\nfilter: {}\nrequest: {request:?}",
                filter.as_ref().map_or("none".to_string(), Value::to_string)
            );
            stats.matched += usize::from(matched);
            stats.refused += usize::from(!passes && !nothing);
        }
    }
    stats
}

/// A header name in some case (Envoy gives them lowercase; the filter must not care).
fn recase(name: &str, case: u8) -> String {
    match case % 4 {
        0 => name.to_ascii_uppercase(),
        1 => name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or(String::new(), |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect::<Vec<_>>()
            .join("-"),
        _ => name.to_string(),
    }
}

struct Pools {
    /// Short text that requests and operands share often: header values, paths, methods,
    /// string operands alike.
    common: Vec<String>,
    /// The rest: text at and past the cap, the marker, queries.
    rare: Vec<String>,
    numbers: Vec<Value>,
    flags: Vec<&'static str>,
}

const HEADERS: &[&str] = &["x-a", "x-b", "accept"];
/// Every header a request may have: the redacted ones too.
const REQUEST_HEADERS: &[&str] = &["x-a", "x-b", "accept", "authorization", "cookie"];
/// Flags the requests set: bits of LH, UF, UAEX, URX, DO, UDO.
const FLAG_BITS: &[u32] = &[0, 5, 12, 15, 27, 29];

impl Pools {
    fn new() -> Self {
        let owned = |all: &[&str]| all.iter().map(|text| text.to_string()).collect::<Vec<_>>();
        let cap = MAX_TEXT_BYTES;
        let mut common = owned(&[
            "",
            " ",
            ",",
            ", ",
            "a",
            "b",
            "a, b",
            "a,b",
            " b",
            "b,",
            "a, ",
            "v",
            "GET",
            "/orders",
            "/orders/1",
            "?",
            "[redacted]",
        ]);
        common.push("v".repeat(cap));
        let mut rare = owned(&[
            "x, y, z",
            "POST",
            "get",
            "/",
            "orders",
            "/1",
            "1?",
            "?x=1",
            "shop",
            "json",
            "application/json",
            "UF",
            "...",
            "ted]",
            "a...[",
            TRUNCATED,
        ]);
        // At and around the cap; and cut text as the event writes it.
        for length in [cap - 4, cap - 3, cap - 2, cap - 1, cap + 1, cap + 20] {
            rare.push("v".repeat(length));
        }
        rare.push(format!("{}{TRUNCATED}", "v".repeat(cap)));
        rare.push(format!("{}...[", "v".repeat(cap)));
        rare.push("v...".to_string());
        rare.push(format!("{}, {TRUNCATED}", "v".repeat(cap - 2)));
        rare.push(format!("{}é", "v".repeat(cap - 1)));
        let numbers = [
            json!(0),
            json!(1),
            json!(99),
            json!(100),
            json!(101),
            json!(199),
            json!(200),
            json!(200.0),
            json!(299),
            json!(404),
            json!(499),
            json!(499.5),
            json!(500),
            json!(503),
            json!(599),
            json!(600),
            json!(999),
            json!(1000),
            json!(1001),
            json!(-1),
            json!(-0.5),
            json!(4294967295u64),
            json!(4294967296u64),
            json!(1e20),
        ]
        .to_vec();
        let flags = vec![
            "", "UF", "URX", "UF,URX", "LH,UF", "UF,LH", "U", "F,U", "F", ",", "UF,", ",URX", "DO",
            "UDO", "O", "XX", "UAEX", "LH",
        ];
        Pools {
            common,
            rare,
            numbers,
            flags,
        }
    }

    fn pick(&self, rng: &mut Rng) -> String {
        let pool = if rng.u8(..3) > 0 {
            &self.common
        } else {
            &self.rare
        };
        pool[rng.usize(..pool.len())].clone()
    }

    fn text(&self, rng: &mut Rng) -> String {
        match rng.u8(..10) {
            // Two joined as a repeated header or a path and query would be.
            0 => format!(
                "{}{}{}",
                self.pick(rng),
                [", ", ",", "?", ""][rng.usize(..4)],
                self.pick(rng)
            ),
            // A part of one.
            1 => {
                let whole = self.pick(rng);
                let cut = rng.usize(..=whole.len());
                let part = if rng.bool() {
                    whole.get(..cut)
                } else {
                    whole.get(cut..)
                };
                part.unwrap_or_default().to_string()
            }
            _ => self.pick(rng),
        }
    }
}

/// What generating a configuration takes: the sample request's event gives operands.
struct Draw<'a> {
    rng: &'a mut Rng,
    pools: &'a Pools,
    event: &'a Value,
    focused: bool,
    many: bool,
}

fn configuration(draw: &mut Draw<'_>) -> Value {
    // A third of them one hook with one condition, which matches far more often.
    let single = !draw.many && (draw.focused || draw.rng.u8(..3) == 0);
    let count = match () {
        _ if single => 1,
        _ if draw.many => draw.rng.usize(4..=40),
        _ => draw.rng.usize(1..=3),
    };
    let mut drawn: Vec<(String, Value)> = Vec::new();
    let hooks: Vec<Value> = (0..count)
        .map(|_| {
            let mut hook = json!({"source": "traffic", "handler": "log", "config": {}});
            // Now and then a hook that matches every request (the filter is then none).
            let conditions = match draw.rng.u8(..16) {
                _ if single => 1,
                0 => 0,
                _ => draw.rng.usize(1..=3),
            };
            if conditions > 0 || draw.rng.bool() {
                let mut filter = Map::new();
                for _ in 0..conditions {
                    let again = draw.many && !drawn.is_empty() && draw.rng.bool();
                    let (field, condition) = match drawn.get(draw.rng.usize(..drawn.len().max(1))) {
                        Some(earlier) if again => earlier.clone(),
                        _ => condition(draw),
                    };
                    drawn.push((field.clone(), condition.clone()));
                    filter.insert(field, condition);
                }
                hook["filter"] = Value::Object(filter);
            }
            if draw.rng.u8(..10) == 0 {
                hook["enabled"] = json!(false);
            }
            match draw.rng.u8(..6) {
                0 => hook["redact_headers"] = json!(false),
                1 => hook["redact_headers"] = json!(["x-a"]),
                _ => {}
            }
            hook
        })
        .collect();
    // Many: only hooks with a native form (one without makes the whole filter none).
    let hooks: Vec<Value> = hooks
        .into_iter()
        .filter(|hook| {
            !draw.many
                || !matches!(
                    generate(&parse(&json!({ "hooks": [hook] }))).filter,
                    PreFilter::None(_)
                )
        })
        .collect();
    json!({ "hooks": hooks })
}

#[derive(Clone, Copy)]
enum Kind {
    Number,
    Text,
    Flags,
}

/// A field path and a condition on it.
fn condition(draw: &mut Draw<'_>) -> (String, Value) {
    let rng = &mut *draw.rng;
    // Focused: mostly the headers, where text is joined and cut.
    let roll = match rng.u8(..8) {
        0..=2 if draw.focused => 14,
        3 if draw.focused => 18,
        // Many: fields with a native form.
        _ if draw.many => rng.u8(..19),
        _ => rng.u8(..20),
    };
    let (field, kind) = match roll {
        0..=3 => ("response.status".to_string(), Kind::Number),
        4..=5 => ("latency_ms".to_string(), Kind::Number),
        6..=7 => ("response.flags".to_string(), Kind::Flags),
        8..=9 => ("request.method".to_string(), Kind::Text),
        10 => ("request.host".to_string(), Kind::Text),
        11..=13 => ("request.path".to_string(), Kind::Text),
        // Mostly headers that are not redacted by default.
        14..=17 => (
            format!("request.headers.{}", HEADERS[rng.usize(..HEADERS.len())]),
            Kind::Text,
        ),
        18 => (
            format!(
                "request.headers.{}",
                ["authorization", "cookie"][rng.usize(..2)]
            ),
            Kind::Text,
        ),
        // No native form (rarely: a hook with only these needs every request).
        _ if rng.bool() => ("response.headers.x-a".to_string(), Kind::Text),
        _ => ("request.query".to_string(), Kind::Text),
    };
    let sample = lookup(draw.event, &split_path(&field)).cloned();
    let mut field_gen = Field {
        kind,
        sample,
        redacted: field.ends_with("authorization") || field.ends_with("cookie"),
    };
    (field.clone(), operators(draw, &mut field_gen, 0))
}

/// The field a condition is on: its kind, and the sample request's value of it.
struct Field {
    kind: Kind,
    sample: Option<Value>,
    /// Redacted by default: hooks see `[redacted]` where it is.
    redacted: bool,
}

/// A condition: a bare value, one operator, several, or `not`.
fn operators(draw: &mut Draw<'_>, field: &mut Field, depth: u8) -> Value {
    match draw.rng.u8(..10) {
        0 => operand(draw, field),
        1 if depth < 2 => json!({"not": operators(draw, field, depth + 1)}),
        2 => {
            let mut all = Map::new();
            for _ in 0..draw.rng.usize(2..=3) {
                let (name, value) = operator(draw, field);
                all.insert(name.to_string(), value);
            }
            Value::Object(all)
        }
        _ => {
            let (name, value) = operator(draw, field);
            json!({ name: value })
        }
    }
}

fn operator(draw: &mut Draw<'_>, field: &Field) -> (&'static str, Value) {
    let names = [
        "eq", "ne", "in", "gt", "gte", "lt", "lte", "exists", "prefix", "suffix", "contains",
    ];
    let rng = &mut *draw.rng;
    // Text operators on numbers never hold: now and then only. Focused on text: mostly the
    // operators that match text.
    let name = match field.kind {
        Kind::Number if rng.u8(..8) > 0 => names[rng.usize(..8)],
        Kind::Text | Kind::Flags if draw.focused && rng.u8(..5) > 0 => {
            ["eq", "in", "prefix", "suffix", "contains"][rng.usize(..5)]
        }
        _ => names[rng.usize(..names.len())],
    };
    // Orders: numbers for numbers, mostly strings for text.
    let text_order = match field.kind {
        Kind::Number => rng.u8(..8) == 0,
        _ => rng.u8(..6) > 0,
    };
    let value = match name {
        "in" => Value::Array(
            (0..draw.rng.usize(1..=3))
                .map(|_| operand(draw, field))
                .collect(),
        ),
        "prefix" | "suffix" => Value::String(string(draw, field)),
        "exists" => Value::Bool(draw.rng.bool()),
        "gt" | "gte" | "lt" | "lte" if text_order => Value::String(string(draw, field)),
        "gt" | "gte" | "lt" | "lte" => number(draw, field),
        "contains" => match operand(draw, field) {
            Value::Null => json!("a"),
            other => other,
        },
        _ => operand(draw, field),
    };
    (name, value)
}

/// An operand of the field's kind, now and then of another (which never matches).
fn operand(draw: &mut Draw<'_>, field: &Field) -> Value {
    match (field.kind, draw.rng.u8(..24)) {
        (_, 0) => [json!(null), json!(true), json!([1]), json!("500")][draw.rng.usize(..4)].clone(),
        (Kind::Number, _) | (_, 1) => number(draw, field),
        _ => Value::String(string(draw, field)),
    }
}

/// A number: the sample's (or one either side, or a fraction past it) half of the time.
fn number(draw: &mut Draw<'_>, field: &Field) -> Value {
    let rng = &mut *draw.rng;
    match field.sample.as_ref().and_then(Value::as_u64) {
        Some(sample) if draw.focused || rng.bool() => match rng.u8(..4) {
            0 => json!(sample + 1),
            1 => json!(sample.saturating_sub(1)),
            2 => json!(sample as f64 + 0.5),
            _ => json!(sample),
        },
        _ => draw.pools.numbers[rng.usize(..draw.pools.numbers.len())].clone(),
    }
}

/// A string: part of the sample's half of the time.
fn string(draw: &mut Draw<'_>, field: &Field) -> String {
    let rng = &mut *draw.rng;
    match (field.kind, field.sample.as_ref().and_then(Value::as_str)) {
        _ if field.redacted && rng.bool() => part(rng, crate::event::REDACTED),
        (_, Some(sample)) if draw.focused || rng.bool() => part(rng, sample),
        (Kind::Flags, _) => draw.pools.flags[rng.usize(..draw.pools.flags.len())].to_string(),
        _ => draw.pools.text(rng),
    }
}

/// The whole of `text`, its beginning, its end or some middle, cut at character boundaries,
/// often near either end or either side of a `,`, ` ` or `?`.
fn part(rng: &mut Rng, text: &str) -> String {
    let mut bounds: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
    bounds.push(text.len());
    let marks: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| matches!(c, ',' | ' ' | '?'))
        .flat_map(|(at, _)| [at, at + 1])
        .collect();
    let near = |rng: &mut Rng| match rng.u8(..6) {
        0 => bounds[rng.usize(..bounds.len().min(20))],
        1 => bounds[bounds.len() - 1 - rng.usize(..bounds.len().min(20))],
        2..=4 if !marks.is_empty() => marks[rng.usize(..marks.len())],
        _ => bounds[rng.usize(..bounds.len())],
    };
    let (a, b) = (near(rng), near(rng));
    let (from, to) = (a.min(b), a.max(b));
    match rng.u8(..4) {
        0 => text.to_string(),
        1 => text.get(..to).unwrap().to_string(),
        2 => text.get(from..).unwrap().to_string(),
        _ => text.get(from..to).unwrap().to_string(),
    }
}

/// `sample` with one thing changed.
fn vary(rng: &mut Rng, pools: &Pools, sample: &envoy::Request) -> envoy::Request {
    let mut changed = sample.clone();
    let other = request(rng, pools);
    match rng.u8(..5) {
        0 => changed.response_code = other.response_code,
        1 => changed.flags = other.flags,
        2 => changed.duration_ns = other.duration_ns,
        3 => {
            let at = rng.usize(..changed.headers.len());
            changed.headers[at].1 = pools.text(rng);
        }
        _ => changed.headers.push(("x-a".to_string(), pools.text(rng))),
    }
    changed
}

fn request(rng: &mut Rng, pools: &Pools) -> envoy::Request {
    let text = |rng: &mut Rng| pools.text(rng);
    let method = ["GET", "POST", "get", ""][rng.usize(..4)].to_string();
    let mut path = match rng.u8(..4) {
        0 => text(rng),
        _ => ["/", "/orders", "/orders/1", "/a, b"][rng.usize(..4)].to_string(),
    };
    if rng.bool() {
        path = format!("{path}?{}", text(rng));
    }
    let mut headers = vec![
        (":method".to_string(), method),
        (":path".to_string(), path),
        (
            ":authority".to_string(),
            ["shop", "", "a, b"][rng.usize(..3)].to_string(),
        ),
        (":scheme".to_string(), "http".to_string()),
    ];
    let mut name = "x-a";
    for _ in 0..rng.usize(0..=6) {
        // Often the same header again.
        if rng.bool() {
            name = REQUEST_HEADERS[rng.usize(..REQUEST_HEADERS.len())];
        }
        headers.push((name.to_string(), text(rng)));
    }
    // A header joined up to exactly the cap, then given once more: the event keeps the first
    // part only, without the marker.
    if rng.u8(..8) == 0 {
        let name = HEADERS[rng.usize(..HEADERS.len())].to_string();
        let first = if rng.bool() {
            vec!["v".repeat(MAX_TEXT_BYTES)]
        } else {
            vec!["v".repeat(MAX_TEXT_BYTES - 3), "a".to_string()]
        };
        for value in first.into_iter().chain([text(rng)]) {
            headers.push((name.clone(), value));
        }
    }
    let codes = [
        None,
        Some(200),
        Some(204),
        Some(404),
        Some(499),
        Some(500),
        Some(503),
        Some(599),
        Some(1),
        Some(999),
    ];
    let mut flags = 0;
    if rng.bool() {
        for _ in 0..rng.usize(1..=3) {
            flags |= 1 << FLAG_BITS[rng.usize(..FLAG_BITS.len())];
        }
    }
    let ms = [0, 1, 99, 100, 101, 999, 1000, 1001, 5000][rng.usize(..9)];
    envoy::Request {
        headers,
        response_code: codes[rng.usize(..codes.len())],
        flags,
        duration_ns: ms * 1_000_000 + rng.u64(..1_000_000),
    }
}
