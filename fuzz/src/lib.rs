//! Input generators and checks shared by the fuzz targets.
//!
//! The generators turn fuzzer bytes into JSON that looks like what the filter meets (event
//! data with the fields sources emit, filters with real operators, configurations with real
//! keys, boundary numbers), so that the fuzzer reaches the deep checks quickly instead of
//! spending its time on inputs the first check refuses. Every generator still produces
//! arbitrary values some of the time.

pub mod schema;

use arbitrary::Unstructured;
use serde_json::{Map, Value, json};

/// Marks every secret the configuration generator writes: no message, listing or call may
/// ever show it.
pub const SECRET_MARK: &str = "XyzzySecret";

/// How deep generated JSON nests at most.
const MAX_DEPTH: usize = 4;

/// One of `items` (the first when the input is exhausted).
pub fn pick<T: Copy>(u: &mut Unstructured<'_>, items: &[T]) -> T {
    let index = u.choose_index(items.len()).unwrap_or(0);
    items[index]
}

/// True about `numerator` times in `denominator`.
pub fn chance(u: &mut Unstructured<'_>, numerator: u32, denominator: u32) -> bool {
    u.ratio(numerator, denominator).unwrap_or(false)
}

/// A small count in `0..=max`.
pub fn count(u: &mut Unstructured<'_>, max: usize) -> usize {
    u.int_in_range(0..=max).unwrap_or(0)
}

/// Text the fuzzer made up, at most `max` bytes.
pub fn free_text(u: &mut Unstructured<'_>, max: usize) -> String {
    let text: String = u.arbitrary().unwrap_or_default();
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

/// Strings that matter to the filter: methods, paths, statuses, flags, escapes, non-ASCII,
/// long text.
const STRINGS: &[&str] = &[
    "",
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "get",
    "/",
    "/orders",
    "/orders/42",
    "/orders/42?status=503",
    "503",
    "500",
    "UF",
    "UF,URX",
    "via_upstream",
    "127.0.0.1:8080",
    "[::1]:80",
    "[redacted]",
    "application/json",
    "a\"b\\c\nd",
    "\u{0}\u{1}\r\n\t\u{7f}",
    "caf\u{e9} \u{1f600}",
    "{{ request.path }}",
    "{* response *}",
    "x-team",
    "payments",
    "consumers",
    "1795000000",
];

/// An interesting string, or made-up text.
pub fn string(u: &mut Unstructured<'_>) -> String {
    match count(u, 9) {
        0..=5 => pick(u, STRINGS).to_string(),
        6..=7 => free_text(u, 64),
        8 => pick(u, STRINGS).repeat(count(u, 600)),
        _ => "\u{fffd}".repeat(count(u, 2000)),
    }
}

/// Numbers at the edges of every range the filter checks.
pub fn number(u: &mut Unstructured<'_>) -> Value {
    match count(u, 15) {
        0 => json!(0),
        1 => json!(1),
        2 => json!(-1),
        3 => json!(500),
        4 => json!(500.0),
        5 => json!(503),
        6 => json!(i64::MIN),
        7 => json!(u64::MAX),
        8 => json!(9_007_199_254_740_993u64),
        9 => json!(9_007_199_254_740_992.0f64),
        10 => json!(0.5),
        11 => json!(1e300),
        12 => json!(-0.0),
        13 => json!(u.arbitrary::<i64>().unwrap_or(0)),
        14 => json!(u.arbitrary::<u32>().unwrap_or(0)),
        _ => {
            let float: f64 = u.arbitrary().unwrap_or(0.0);
            serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)
        }
    }
}

/// Any JSON value, nesting at most [`MAX_DEPTH`] levels below `depth`.
pub fn value(u: &mut Unstructured<'_>, depth: usize) -> Value {
    let leaf = depth >= MAX_DEPTH;
    match count(u, if leaf { 3 } else { 5 }) {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary().unwrap_or(false)),
        2 => number(u),
        3 => Value::String(string(u)),
        4 => Value::Array((0..count(u, 4)).map(|_| value(u, depth + 1)).collect()),
        _ => {
            let mut map = Map::new();
            for _ in 0..count(u, 4) {
                map.insert(key(u), value(u, depth + 1));
            }
            Value::Object(map)
        }
    }
}

/// A key of event data or of a filter path segment.
pub fn key(u: &mut Unstructured<'_>) -> String {
    const KEYS: &[&str] = &[
        "request",
        "response",
        "headers",
        "status",
        "path",
        "method",
        "tags",
        "0",
        "1",
        "entity",
        "id",
        "x-team",
        "authorization",
        "Authorization",
        "cookie",
        "set-cookie",
        "",
    ];
    if chance(u, 1, 6) {
        free_text(u, 12)
    } else {
        pick(u, KEYS).to_string()
    }
}

/// A header map as sources build them (lowercase names), with some secret ones.
fn headers(u: &mut Unstructured<'_>) -> Value {
    const NAMES: &[&str] = &[
        "authorization",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "x-team",
        "x-api-key",
        "content-type",
        "x-consumer-username",
        "ratelimit-limit",
        "x-ratelimit-remaining",
    ];
    let mut map = Map::new();
    for _ in 0..count(u, 5) {
        let name = if chance(u, 1, 8) {
            free_text(u, 16)
        } else {
            pick(u, NAMES).to_string()
        };
        map.insert(name, Value::String(string(u)));
    }
    Value::Object(map)
}

/// Event data shaped like a traffic event, parts left out or replaced by arbitrary values.
pub fn event_data(u: &mut Unstructured<'_>) -> Map<String, Value> {
    let mut request = Map::new();
    let mut response = Map::new();
    let mut data = Map::new();
    let maybe = |u: &mut Unstructured<'_>, map: &mut Map<String, Value>, key: &str, v: Value| {
        if chance(u, 3, 4) {
            map.insert(key.to_string(), v);
        }
    };
    let v = Value::String(string(u));
    maybe(u, &mut request, "method", v);
    let v = Value::String(string(u));
    maybe(u, &mut request, "path", v);
    let v = headers(u);
    maybe(u, &mut request, "headers", v);
    let v = number(u);
    maybe(u, &mut response, "status", v);
    let v = Value::String(string(u));
    maybe(u, &mut response, "flags", v);
    let v = headers(u);
    maybe(u, &mut response, "headers", v);
    let v = Value::Object(request);
    maybe(u, &mut data, "request", v);
    let v = Value::Object(response);
    maybe(u, &mut data, "response", v);
    let v = number(u);
    maybe(u, &mut data, "latency_ms", v);
    let v = Value::Array((0..count(u, 3)).map(|_| value(u, 2)).collect());
    maybe(u, &mut data, "tags", v);
    for _ in 0..count(u, 2) {
        data.insert(key(u), value(u, 1));
    }
    data
}

/// A dotted field path, mostly one that exists in [`event_data`].
pub fn field_path(u: &mut Unstructured<'_>) -> String {
    const PATHS: &[&str] = &[
        "request.method",
        "request.path",
        "request.headers",
        "request.headers.authorization",
        "request.headers.x-team",
        "request.headers.cookie",
        "response.status",
        "response.flags",
        "response.headers.set-cookie",
        "response",
        "request",
        "latency_ms",
        "tags",
        "tags.0",
        "tags.1",
        "missing.field",
        "",
        "a..b",
        ".",
        "request.headers.Authorization",
    ];
    if chance(u, 1, 5) {
        (0..count(u, 3) + 1)
            .map(|_| key(u))
            .collect::<Vec<_>>()
            .join(".")
    } else {
        pick(u, PATHS).to_string()
    }
}

/// The filter operators, and a few that are not.
pub const OPERATORS: &[&str] = &[
    "eq", "ne", "in", "prefix", "suffix", "contains", "gt", "gte", "lt", "lte", "exists", "not",
    "regex", "EQ",
];

/// A filter condition: a bare value, or operators with (mostly) operands of the right type.
pub fn condition(u: &mut Unstructured<'_>, depth: usize) -> Value {
    if chance(u, 1, 4) {
        // A bare value (an object here is read as operators).
        return value(u, MAX_DEPTH - 1);
    }
    let mut map = Map::new();
    for _ in 0..count(u, 2) + 1 {
        let operator = pick(u, OPERATORS);
        let operand = if chance(u, 1, 8) {
            value(u, 2)
        } else {
            match operator {
                "in" => Value::Array((0..count(u, 3)).map(|_| leaf(u)).collect()),
                "prefix" | "suffix" => Value::String(string(u)),
                "gt" | "gte" | "lt" | "lte" => {
                    if chance(u, 1, 2) {
                        number(u)
                    } else {
                        Value::String(string(u))
                    }
                }
                "exists" => Value::Bool(u.arbitrary().unwrap_or(true)),
                "not" if depth < 3 => condition(u, depth + 1),
                _ => leaf(u),
            }
        };
        map.insert(operator.to_string(), operand);
    }
    Value::Object(map)
}

/// A scalar, or now and then a small array or object.
fn leaf(u: &mut Unstructured<'_>) -> Value {
    match count(u, 5) {
        0 => number(u),
        1 => Value::Bool(u.arbitrary().unwrap_or(false)),
        2 => value(u, MAX_DEPTH - 1),
        _ => Value::String(string(u)),
    }
}

/// A filter object: field paths to conditions.
pub fn filter(u: &mut Unstructured<'_>) -> Value {
    let mut map = Map::new();
    for _ in 0..count(u, 3) {
        map.insert(field_path(u), condition(u, 0));
    }
    Value::Object(map)
}

/// Marks the value of a credential header (`authorization`): it is sent, but never shown in
/// a message or the admin listing.
pub const HEADER_MARK: &str = "PlughHeader";

/// Every mark that must never appear in a message or the admin listing.
pub const NEVER_SHOWN: &[&str] = &[SECRET_MARK, "WHl6enlTZWNyZXRLZXkhIQ", HEADER_MARK];

/// `whsec_` and the base64 of a key that starts with [`SECRET_MARK`]: a standard-webhooks
/// secret, never to be shown either.
pub const SECRET_WHSEC: &str = "whsec_WHl6enlTZWNyZXRLZXkhIQ==";

/// The environment the configuration generator's `*_env` names are looked up in.
pub fn env(name: &str) -> Option<String> {
    match name {
        "HOOK_SECRET" => Some(format!("{SECRET_MARK}-from-env")),
        "WHSEC_SECRET" => Some(SECRET_WHSEC.to_string()),
        "ADMIN_TOKEN" => Some(format!("{SECRET_MARK}-admin")),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// A whole number near the edges of the ranges the configuration takes, or anything else.
/// A `batch`: limits at the edges of their ranges, or `false`, or not an object.
fn batch(u: &mut Unstructured<'_>) -> Value {
    match count(u, 6) {
        0 => json!(false),
        1 => json!(true),
        _ => object_of(u, event_hooks_core::delivery::batching::KEYS, &mut |u, _| setting(u)),
    }
}

fn setting(u: &mut Unstructured<'_>) -> Value {
    const EDGES: &[i64] = &[
        0,
        1,
        2,
        3,
        5,
        9,
        10,
        100,
        1_000,
        5_000,
        10_000,
        30_000,
        65_535,
        65_536,
        100_000,
        600_000,
        1_000_000,
        1_000_001,
        3_600_000,
        31_536_000,
        31_536_001,
        86_400_000,
        268_435_456,
        268_435_457,
        -1,
    ];
    match count(u, 7) {
        0..=4 => json!(pick(u, EDGES)),
        5 => json!(pick(u, EDGES) as f64 + 0.5),
        6 => Value::String("10".into()),
        _ => number(u),
    }
}

/// An object with some of `keys`, each valued by `make`, and now and then an unknown key.
fn object_of(
    u: &mut Unstructured<'_>,
    keys: &[&str],
    make: &mut dyn FnMut(&mut Unstructured<'_>, &str) -> Value,
) -> Value {
    let mut map = Map::new();
    for &key in keys {
        if chance(u, 1, 2) {
            let value = make(u, key);
            map.insert(key.to_string(), value);
        }
    }
    if chance(u, 1, 16) {
        map.insert(free_text(u, 10), value(u, 3));
    }
    Value::Object(map)
}

const URLS: &[&str] = &[
    "http://receiver:9000/hooks",
    "https://hooks.example.com/in?x=1",
    "http://127.0.0.1:9000/",
    "http://receiver",
    "HTTP://Receiver:1/p%20q",
    "ftp://receiver/",
    "http://user@receiver/",
    "http://receiver/#frag",
    "http://receiver/a b",
    "http://[::1]:9000/",
    "http://receiver:99999/",
    "http:///nohost",
    "",
];

const SCRIPTS: &[&str] = &[
    "data",
    "data;",
    "if data.response.status < 500 { return; }\n#{status: data.response.status}",
    "data.x = `${event} ${source}`; data",
    "log(data); data",
    "http(#{url: \"http://receiver:9000/l\", body: data});",
    "http(#{url: \"http://receiver:9000/l\", method: \"put\", headers: #{\"x-n\": 1}, body: \"t\"});",
    "let s = \"a\"; for i in 0..20 { s += s; } #{s: s}",
    "loop { }",
    "fn f(n) { f(n + 1) } f(0)",
    "throw \"no\"",
    "42",
    "let m = #{}; for i in 0..1000 { m[`k${i}`] = i; } m",
    "data.request.headers[\"authorization\"]",
    "((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))",
    "syntax error (",
];

/// A configuration document: real keys with values of the right type most of the time, numbers
/// at the edges of their ranges, secrets marked with [`SECRET_MARK`].
pub fn config_document(u: &mut Unstructured<'_>) -> Value {
    let mut top = Map::new();
    if chance(u, 1, 6) {
        top.insert("host".into(), json!(pick(u, &["envoy", "kong", "nginx"])));
    }
    let hooks: Vec<Value> = (0..count(u, 4)).map(|index| hook(u, index)).collect();
    if chance(u, 15, 16) {
        top.insert("hooks".into(), Value::Array(hooks));
    }
    if chance(u, 1, 2) {
        let delivery = object_of(
            u,
            event_hooks_core::config::DELIVERY_KEYS,
            &mut |u, key| match key {
                "retry" => retry(u),
                "breaker" => object_of(u, &["failures", "cooldown_ms"], &mut |u, _| setting(u)),
                "dead_letter" => json!(pick(u, &["hook-0", "hook-1", "dead", "nope"])),
                "batch" => batch(u),
                _ => setting(u),
            },
        );
        top.insert("delivery".into(), delivery);
    }
    if chance(u, 1, 3) {
        let crud = object_of(
            u,
            &["match", "prefix", "max_body_bytes"],
            &mut |u, key| match key {
                "match" => filter(u),
                "prefix" => json!(pick(u, &["/", "/admin", "/admin/", "admin", ""])),
                _ => setting(u),
            },
        );
        top.insert("crud".into(), crud);
    }
    if chance(u, 1, 4) {
        let health = object_of(
            u,
            &["failure_statuses", "unhealthy_after", "healthy_after"],
            &mut |u, key| match key {
                "failure_statuses" => Value::Array((0..count(u, 3)).map(|_| setting(u)).collect()),
                _ => setting(u),
            },
        );
        top.insert("health".into(), health);
    }
    if chance(u, 1, 4) {
        let headers = Value::Array(
            (0..count(u, 3))
                .map(|_| json!(pick(u, &["x-consumer-id", "X-Upper", "", "a b"])))
                .collect(),
        );
        top.insert("rate_limit".into(), json!({"consumer_headers": headers}));
    }
    if chance(u, 1, 4) {
        let admin = object_of(
            u,
            &["prefix", "token", "token_env"],
            &mut |u, key| match key {
                "prefix" => json!(pick(u, &["/event-hooks", "/", "/a/", "x"])),
                "token" => json!(format!("{SECRET_MARK}-token")),
                _ => json!(pick(u, &["ADMIN_TOKEN", "EMPTY", "UNSET"])),
            },
        );
        top.insert("admin".into(), admin);
    }
    if chance(u, 1, 20) {
        top.insert(free_text(u, 8), value(u, 2));
    }
    Value::Object(top)
}

fn retry(u: &mut Unstructured<'_>) -> Value {
    object_of(
        u,
        &["max_attempts", "max_age_ms", "backoff_ms", "max_backoff_ms"],
        &mut |u, _| setting(u),
    )
}

fn hook(u: &mut Unstructured<'_>, index: usize) -> Value {
    const SOURCES: &[&str] = &[
        "traffic",
        "crud",
        "dao:crud",
        "balancer",
        "rate-limiting-advanced",
        "event_hooks",
        "kong",
    ];
    const HANDLERS: &[&str] = &["webhook", "webhook-custom", "log", "lambda", "lua"];
    let source = pick(u, SOURCES);
    let handler = pick(u, HANDLERS);
    let mut map = Map::new();
    if chance(u, 3, 4) {
        let names = [
            format!("hook-{index}"),
            "dead".into(),
            "a b".into(),
            "x".repeat(129),
        ];
        let name = names[count(u, 3)].clone();
        map.insert("name".into(), json!(name));
    }
    if chance(u, 1, 6) {
        map.insert("enabled".into(), Value::Bool(u.arbitrary().unwrap_or(true)));
    }
    if chance(u, 15, 16) {
        map.insert("source".into(), json!(source));
    }
    if chance(u, 1, 3) {
        let events: &[&str] = match source {
            "traffic" => &["request", "response"],
            "crud" => &["consumers", "consumers:create", "routes:delete", "a:b", ""],
            "dao:crud" => &["create", "update", "delete", "upsert"],
            "balancer" => &["health", "healthy"],
            "rate-limiting-advanced" => &["rate-limit-exceeded"],
            _ => &["dead_letter", "ping"],
        };
        map.insert("event".into(), json!(pick(u, events)));
    }
    if chance(u, 1, 2) {
        map.insert("filter".into(), filter(u));
    }
    if chance(u, 15, 16) {
        map.insert("handler".into(), json!(handler));
    }
    if chance(u, 1, 4) {
        map.insert("snooze".into(), setting(u));
    }
    if chance(u, 1, 6) {
        map.insert(
            "on_change".into(),
            Value::Bool(u.arbitrary().unwrap_or(true)),
        );
    }
    if chance(u, 1, 6) {
        let redact = match count(u, 2) {
            0 => Value::Bool(u.arbitrary().unwrap_or(false)),
            1 => json!(["authorization", "x-api-key"]),
            _ => json!(["X-Upper", ""]),
        };
        map.insert("redact_headers".into(), redact);
    }
    if chance(u, 15, 16) {
        map.insert("config".into(), handler_config(u, handler));
    }
    if chance(u, 1, 20) {
        map.insert(free_text(u, 8), value(u, 2));
    }
    Value::Object(map)
}

fn handler_config(u: &mut Unstructured<'_>, handler: &str) -> Value {
    // Signing and retries: the keys of every handler that makes calls.
    let mut keys: Vec<&str> = event_hooks_core::handler::endpoint::CALL_KEYS.to_vec();
    match handler {
        "webhook" => keys.extend([
            "url",
            "cluster",
            "headers",
            "ssl_verify",
            "format",
            "cloudevents",
            "batch",
        ]),
        "webhook-custom" => keys.extend([
            "url",
            "cluster",
            "headers",
            "ssl_verify",
            "method",
            "headers_format",
            "body",
            "body_format",
            "payload",
            "payload_format",
        ]),
        "lambda" => keys.extend(["functions", "cluster", "max_operations"]),
        _ => keys.clear(),
    }
    object_of(u, &keys, &mut |u, key| match key {
        "url" => json!(pick(u, URLS)),
        "cluster" => json!(pick(u, &["receiver", "outbound|9000||r.svc", ""])),
        "headers" => {
            let mut headers = Map::new();
            for _ in 0..count(u, 3) {
                let name = pick(
                    u,
                    &[
                        "x-team",
                        "Authorization",
                        "content-type",
                        "host",
                        "webhook-id",
                        "x-id",
                        "",
                    ],
                );
                let value = match count(u, 5) {
                    0 if name.eq_ignore_ascii_case("authorization") => {
                        format!("Bearer {HEADER_MARK}")
                    }
                    0 => "Bearer public".into(),
                    1 => "application/json".into(),
                    2 => "multipart/form-data; boundary=x".into(),
                    3 => "{{ request.headers.x-team }}".into(),
                    4 => "a\r\nb".into(),
                    _ => string(u),
                };
                headers.insert(name.to_string(), json!(value));
            }
            Value::Object(headers)
        }
        "secret" => {
            if chance(u, 1, 3) {
                json!(SECRET_WHSEC)
            } else {
                json!(format!("{SECRET_MARK}-{}", count(u, 9)))
            }
        }
        "secrets" => Value::Array(
            (0..count(u, 3))
                .map(|_| json!(pick(u, &[SECRET_WHSEC, SECRET_MARK, ""])))
                .collect(),
        ),
        "secret_env" => json!(pick(u, &["HOOK_SECRET", "WHSEC_SECRET", "EMPTY", "UNSET"])),
        "secrets_env" => json!(["WHSEC_SECRET"]),
        "signature" => json!(pick(u, &["kong", "standard-webhooks", "github", "svix"])),
        "retry" => retry(u),
        "method" => json!(pick(
            u,
            &["POST", "get", "HEAD", "DELETE", "CONNECT", "B@D", ""]
        )),
        "body" => json!(pick(
            u,
            &[
                "{\"text\": \"{{ request.path }}\", \"s\": {{ response.status }}}",
                "{* request.headers *}",
                "{{ }}",
                "{{ a",
                "{% x %}",
                "plain",
                "\\{{ escaped }}",
            ]
        )),
        "payload" => {
            let mut payload = Map::new();
            for _ in 0..count(u, 3) {
                let name = pick(u, &["status", "path", "a\"b", ""]);
                let value = pick(u, &["{{ response.status }}", "{* request *}", "hi", "{{"]);
                payload.insert(name.to_string(), json!(value));
            }
            Value::Object(payload)
        }
        "functions" => Value::Array((0..count(u, 3)).map(|_| json!(pick(u, SCRIPTS))).collect()),
        "format" => json!(pick(
            u,
            &["kong", "cloudevents", "cloudevents-binary", "xml", ""]
        )),
        "cloudevents" => object_of(u, event_hooks_core::handler::cloudevents::KEYS, &mut |u, key| {
            match key {
                "extensions" => {
                    let mut extensions = Map::new();
                    for _ in 0..count(u, 3) {
                        let name = pick(u, &["tenant", "partitionkey", "Tenant", "time", "", "x"]);
                        let value = pick(
                            u,
                            &[
                                "{{ request.headers.authorization }}",
                                "{{ request.headers.x-team }}",
                                "{* request *}",
                                "a \"b\" 100%",
                                "{{",
                            ],
                        );
                        extensions.insert(name.to_string(), json!(value));
                    }
                    Value::Object(extensions)
                }
                _ => json!(pick(u, &["//gateway.example.com/eu", "/x", "has space", "", "com.example"])),
            }
        }),
        "batch" => batch(u),
        "ssl_verify" | "headers_format" | "body_format" | "payload_format" => {
            Value::Bool(u.arbitrary().unwrap_or(false))
        }
        _ => setting(u),
    })
}
