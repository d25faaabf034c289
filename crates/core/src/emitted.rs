//! Events other filters hand to this one ("emitted" events), decoded from what the host returns.
//!
//! An emitter names each event `<source>.<event>` (split at the first `.`) and gives its data, a
//! JSON object. Three channels carry the same thing, a map from `<source>.<event>` to data:
//!
//! * Envoy's dynamic metadata, namespace [`NAMESPACE`] (a Lua filter:
//!   `dynamicMetadata():set("event_hooks", "payments.refund-issued", {...})`). The filter reads
//!   the property `metadata`: the serialized `envoy.config.core.v3.Metadata` (protobuf), whose
//!   namespace holds a `google.protobuf.Struct`: [`from_metadata`]. Each value is a Struct (a
//!   Lua table) or a string holding JSON.
//! * Envoy's filter state `wasm.event_hooks` (another wasm filter's `set_property`) and Kong's
//!   `kong.ctx.shared`: JSON text `{"<source>.<event>": {...}, ...}`: [`from_json`].
//!
//! What Envoy 1.40 gives, measured: docs/src/emitted-wire.md.
//!
//! Numbers: Lua gives every number as a double (`300` arrives as 300.0). A whole double within
//! ±2^53 becomes a JSON integer, so `300` stays `300`; any other finite double stays a float;
//! NaN and infinities are [`Reason::BadNumber`]. The same rule applies to JSON text
//! (`300.0` becomes `300`), so every channel gives the same data for the same event.
//!
//! Bounds: the namespace's bytes or the JSON text at most [`MAX_INPUT_BYTES`] (else the whole
//! input is [`Reason::TooLarge`]); one event's data at most [`MAX_DEPTH`] levels deep and at most
//! [`MAX_DATA_BYTES`] as compact JSON; at most [`MAX_EMISSIONS`] events per request (in key
//! order, the rest [`Reason::TooMany`]). A bad event is rejected alone, with its reason; the
//! others are kept. Errors are values: nothing here panics.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

/// The dynamic-metadata namespace (Envoy) and the filter-state key (`wasm.event_hooks`) the
/// filter reads.
pub const NAMESPACE: &str = "event_hooks";
/// The most bytes of the namespace's Struct, or of the JSON text, that are decoded.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// The most bytes of one event's data, encoded as compact JSON.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// The deepest one event's data may nest: the data object is level 1, each object or array
/// inside it one more.
pub const MAX_DEPTH: usize = 16;
/// The most events one request may carry.
pub const MAX_EMISSIONS: usize = 32;
/// The longest key `<source>.<event>`, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Nesting that JSON text may have at all before it is parsed (serde_json stops at 128).
const MAX_TEXT_DEPTH: usize = 100;
/// 2^53: up to this, every whole double is an exact integer.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Why an input or one of its events was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Bytes that are not what the channel carries: broken protobuf, invalid UTF-8, invalid
    /// JSON (also in a string that should hold JSON).
    Malformed,
    /// The data (or the JSON text as a whole) is not a JSON object.
    NotObject,
    /// The key is not `<source>.<event>` with both parts non-empty, or is too long.
    BadKey,
    /// Over [`MAX_INPUT_BYTES`] (the input) or [`MAX_DATA_BYTES`] (one event's data).
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A number JSON cannot hold (NaN, an infinity).
    BadNumber,
    /// Beyond the first [`MAX_EMISSIONS`] events of the request.
    TooMany,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Malformed,
        Reason::NotObject,
        Reason::BadKey,
        Reason::TooLarge,
        Reason::TooDeep,
        Reason::BadNumber,
        Reason::TooMany,
    ];

    /// Its name in logs, the status endpoint and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::NotObject => "not_object",
            Reason::BadKey => "bad_key",
            Reason::TooLarge => "too_large",
            Reason::TooDeep => "too_deep",
            Reason::BadNumber => "bad_number",
            Reason::TooMany => "too_many",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event another filter emitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    /// Before the key's first `.`; never empty.
    pub source: String,
    /// After the key's first `.` (may hold more dots); never empty.
    pub event: String,
    /// What the emitter gave, numbers as described in the module's documentation.
    pub data: Map<String, Value>,
}

/// An event that was not taken, for counting and logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The key as given (invalid UTF-8 replaced), cut to [`MAX_KEY_BYTES`].
    pub key: String,
    pub reason: Reason,
}

/// What one request carried: its events in key order, and those rejected.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Emitted {
    pub emissions: Vec<Emission>,
    pub rejected: Vec<Rejected>,
}

impl Emitted {
    /// Nothing emitted, nothing rejected.
    pub fn is_empty(&self) -> bool {
        self.emissions.is_empty() && self.rejected.is_empty()
    }
}

/// Splits `<source>.<event>` at the first `.`.
pub fn split_key(key: &str) -> Result<(&str, &str), Reason> {
    match key.split_once('.') {
        Some((source, event))
            if !source.is_empty() && !event.is_empty() && key.len() <= MAX_KEY_BYTES =>
        {
            Ok((source, event))
        }
        _ => Err(Reason::BadKey),
    }
}

/// The events in the value of Envoy's property `metadata` (a serialized
/// `envoy.config.core.v3.Metadata`): those of namespace [`NAMESPACE`]. Other namespaces are
/// skipped unread. Empty bytes (what Envoy gives when no metadata was set) carry nothing.
pub fn from_metadata(bytes: &[u8]) -> Result<Emitted, Reason> {
    let mut namespace = None;
    // filter_metadata: map<string, google.protobuf.Struct>.
    for_each_entry(bytes, |key, value| {
        if key == NAMESPACE.as_bytes() {
            namespace = Some(value);
        }
        Ok(())
    })?;
    match namespace {
        Some(value) => from_struct(value),
        None => Ok(Emitted::default()),
    }
}

/// The events in a serialized `google.protobuf.Struct` mapping `<source>.<event>` to data (the
/// namespace's value inside [`from_metadata`]).
pub fn from_struct(bytes: &[u8]) -> Result<Emitted, Reason> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(Reason::TooLarge);
    }
    // Last entry wins for a repeated key, as protobuf maps have it; BTreeMap: key order.
    let mut entries = BTreeMap::new();
    for_each_entry(bytes, |key, value| {
        entries.insert(key, value);
        Ok(())
    })?;
    let mut emitted = Emitted::default();
    for (key, value) in entries {
        let key = String::from_utf8_lossy(key);
        emitted.take(&key, || top_value(value));
    }
    Ok(emitted)
}

/// The events in JSON text `{"<source>.<event>": data, ...}` (Envoy's filter state, Kong's
/// `kong.ctx.shared`), data an object or a string holding one. Empty text carries nothing.
pub fn from_json(text: &[u8]) -> Result<Emitted, Reason> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Reason::TooLarge);
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Emitted::default());
    }
    if text_depth_over(text, MAX_TEXT_DEPTH) {
        return Err(Reason::TooDeep);
    }
    let entries = match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(entries)) => entries,
        Ok(_) => return Err(Reason::NotObject),
        Err(_) => return Err(Reason::Malformed),
    };
    let mut emitted = Emitted::default();
    for (key, value) in entries {
        emitted.take(&key, move || match value {
            Value::Object(data) => normalize_object(data, 1),
            Value::String(text) => json_data(&text),
            _ => Err(Reason::NotObject),
        });
    }
    Ok(emitted)
}

/// The JSON text form of `emissions`: `{"<source>.<event>": data, ...}`, what [`from_json`]
/// reads (a wasm emitter's filter state; Kong's `kong.ctx.shared`).
pub fn to_json(emissions: &[Emission]) -> String {
    let entries: BTreeMap<String, &Map<String, Value>> = emissions
        .iter()
        .map(|emission| {
            (
                format!("{}.{}", emission.source, emission.event),
                &emission.data,
            )
        })
        .collect();
    serde_json::to_string(&entries).unwrap_or_default()
}

impl Emitted {
    /// Keeps the event `key` with its data (decoded only if the key is taken), or rejects it.
    fn take(&mut self, key: &str, data: impl FnOnce() -> Result<Map<String, Value>, Reason>) {
        let taken = self.emissions.len() + self.rejected.len();
        let checked = if taken >= MAX_EMISSIONS {
            Err(Reason::TooMany)
        } else {
            split_key(key).and_then(|(source, event)| {
                let data = data()?;
                if compact_len_over(&data, MAX_DATA_BYTES) {
                    return Err(Reason::TooLarge);
                }
                Ok(Emission {
                    source: source.to_owned(),
                    event: event.to_owned(),
                    data,
                })
            })
        };
        match checked {
            Ok(emission) => self.emissions.push(emission),
            Err(reason) => self.rejected.push(Rejected {
                key: cut(key, MAX_KEY_BYTES).to_owned(),
                reason,
            }),
        }
    }
}

/// The data an event's `google.protobuf.Value` holds: a Struct, or a string holding a JSON
/// object.
fn top_value(bytes: &[u8]) -> Result<Map<String, Value>, Reason> {
    match kind(bytes)? {
        Kind::Struct(bytes) => decode_struct(bytes, 1),
        Kind::String(bytes) => {
            json_data(std::str::from_utf8(bytes).map_err(|_| Reason::Malformed)?)
        }
        _ => Err(Reason::NotObject),
    }
}

/// A JSON object given as text, numbers normalized.
fn json_data(text: &str) -> Result<Map<String, Value>, Reason> {
    if text_depth_over(text.as_bytes(), MAX_DEPTH) {
        return Err(Reason::TooDeep);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(data)) => normalize_object(data, 1),
        Ok(_) => Err(Reason::NotObject),
        Err(_) => Err(Reason::Malformed),
    }
}

/// `object` at nesting level `depth`, whole floats within ±2^53 made integers, depth checked.
fn normalize_object(
    mut object: Map<String, Value>,
    depth: usize,
) -> Result<Map<String, Value>, Reason> {
    if depth > MAX_DEPTH {
        return Err(Reason::TooDeep);
    }
    for value in object.values_mut() {
        normalize(value, depth)?;
    }
    Ok(object)
}

fn normalize(value: &mut Value, depth: usize) -> Result<(), Reason> {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64() {
                *value = double(float)?;
            }
        }
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(Reason::TooDeep);
            }
            for item in items {
                normalize(item, depth + 1)?;
            }
        }
        Value::Object(object) => {
            if depth + 1 > MAX_DEPTH {
                return Err(Reason::TooDeep);
            }
            for item in object.values_mut() {
                normalize(item, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A double as JSON: an integer when whole and within ±2^53, else a float; NaN and
/// infinities are not JSON.
fn double(float: f64) -> Result<Value, Reason> {
    if !float.is_finite() {
        return Err(Reason::BadNumber);
    }
    if float.fract() == 0.0 && float.abs() <= MAX_SAFE_INTEGER {
        // Exact: whole and within ±2^53 (-0.0 becomes 0).
        return Ok(Value::from(float as i64));
    }
    Number::from_f64(float)
        .map(Value::Number)
        .ok_or(Reason::BadNumber)
}

/// Whether JSON text nests `[`/`{` deeper than `max` (outside strings). Malformed text is
/// left to the parser.
fn text_depth_over(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether `data`'s compact JSON is longer than `max` bytes (counted, not built; stops early).
fn compact_len_over(data: &Map<String, Value>, max: usize) -> bool {
    struct Counter {
        len: usize,
        max: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.len = self.len.saturating_add(bytes.len());
            if self.len > self.max {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { len: 0, max }, data).is_err()
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = 0;
    for (at, c) in text.char_indices() {
        if at + c.len_utf8() > max {
            break;
        }
        end = at + c.len_utf8();
    }
    text.get(..end).unwrap_or_default()
}

// --- protobuf: just enough of the wire format for Metadata, Struct, Value and ListValue ---

/// A field's payload by wire type.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Field<'a> {
    fn bytes(self) -> Result<&'a [u8], Reason> {
        match self {
            Field::Bytes(bytes) => Ok(bytes),
            _ => Err(Reason::Malformed),
        }
    }
}

/// Reads one message's fields in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Reason> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or(Reason::Malformed)?;
            self.0 = rest;
            // The tenth byte may only carry the top bit.
            if shift == 63 && byte > 1 {
                return Err(Reason::Malformed);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Reason::Malformed)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Reason> {
        let (taken, rest) = self.0.split_at_checked(len).ok_or(Reason::Malformed)?;
        self.0 = rest;
        Ok(taken)
    }

    /// The next field's number and payload; `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, Reason> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(Reason::Malformed);
        }
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let bytes = self.take(8)?;
                Field::Fixed64(bytes.try_into().map_err(|_| Reason::Malformed)?)
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Reason::Malformed)?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            // Groups (3, 4) are not in these messages; 6 and 7 do not exist.
            _ => return Err(Reason::Malformed),
        };
        Ok(Some((number, field)))
    }
}

/// Calls `each` with the key and value of every entry of the protobuf map in field 1 of
/// `bytes` (a `Struct`'s fields, `Metadata`'s filter_metadata), in the order written.
fn for_each_entry<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), Reason>,
) -> Result<(), Reason> {
    let mut fields = Reader(bytes);
    while let Some((number, field)) = fields.next()? {
        if number == 1 {
            let (key, value) = map_entry(field.bytes()?)?;
            each(key, value)?;
        }
    }
    Ok(())
}

/// A map entry of a string key (field 1) and a message value (field 2); either may be absent
/// (then empty).
fn map_entry(bytes: &[u8]) -> Result<(&[u8], &[u8]), Reason> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    let mut fields = Reader(bytes);
    while let Some((number, field)) = fields.next()? {
        match number {
            1 => key = field.bytes()?,
            2 => value = field.bytes()?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The kind of a `google.protobuf.Value` (a oneof: the last one given wins; none is null).
enum Kind<'a> {
    Null,
    Number(f64),
    String(&'a [u8]),
    Bool(bool),
    Struct(&'a [u8]),
    List(&'a [u8]),
}

fn kind(bytes: &[u8]) -> Result<Kind<'_>, Reason> {
    let mut kind = Kind::Null;
    let mut fields = Reader(bytes);
    while let Some((number, field)) = fields.next()? {
        kind = match (number, field) {
            (1, Field::Varint(_)) => Kind::Null,
            (2, Field::Fixed64(bits)) => Kind::Number(f64::from_le_bytes(bits)),
            (3, Field::Bytes(text)) => Kind::String(text),
            (4, Field::Varint(flag)) => Kind::Bool(flag != 0),
            (5, Field::Bytes(object)) => Kind::Struct(object),
            (6, Field::Bytes(list)) => Kind::List(list),
            (1..=6, _) => return Err(Reason::Malformed),
            _ => continue,
        };
    }
    Ok(kind)
}

/// A `google.protobuf.Struct` at nesting level `depth` as a JSON object.
fn decode_struct(bytes: &[u8], depth: usize) -> Result<Map<String, Value>, Reason> {
    if depth > MAX_DEPTH {
        return Err(Reason::TooDeep);
    }
    let mut object = Map::new();
    for_each_entry(bytes, |key, value| {
        let key = std::str::from_utf8(key).map_err(|_| Reason::Malformed)?;
        object.insert(key.to_owned(), decode_value(value, depth)?);
        Ok(())
    })?;
    Ok(object)
}

/// A `google.protobuf.Value` inside an object or list at level `depth`.
fn decode_value(bytes: &[u8], depth: usize) -> Result<Value, Reason> {
    Ok(match kind(bytes)? {
        Kind::Null => Value::Null,
        Kind::Number(float) => double(float)?,
        Kind::String(text) => Value::String(
            std::str::from_utf8(text)
                .map_err(|_| Reason::Malformed)?
                .to_owned(),
        ),
        Kind::Bool(flag) => Value::Bool(flag),
        Kind::Struct(object) => Value::Object(decode_struct(object, depth + 1)?),
        Kind::List(list) => {
            if depth + 1 > MAX_DEPTH {
                return Err(Reason::TooDeep);
            }
            let mut items = Vec::new();
            let mut fields = Reader(list);
            while let Some((number, field)) = fields.next()? {
                if number == 1 {
                    items.push(decode_value(field.bytes()?, depth + 1)?);
                }
            }
            Value::Array(items)
        }
    })
}

#[cfg(any(test, fuzzing))]
pub mod writer;

#[cfg(test)]
mod tests;
