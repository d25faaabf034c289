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
//! What Envoy 1.40 gives, measured: docs/src/sources/emitted-wire.md.
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
    let mut fields = Reader(bytes);
    while let Some((number, field)) = fields.next()? {
        // filter_metadata: map<string, google.protobuf.Struct>, one entry per field.
        if number == 1 {
            let (key, value) = map_entry(field.bytes()?)?;
            if key == NAMESPACE.as_bytes() {
                namespace = Some(value);
            }
        }
    }
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
    let mut fields = Reader(bytes);
    while let Some((number, field)) = fields.next()? {
        if number == 1 {
            let (key, value) = map_entry(field.bytes()?)?;
            entries.insert(key, value);
        }
    }
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
    let mut fields = Reader(bytes);
    while let Some((number, field)) = fields.next()? {
        if number == 1 {
            let (key, value) = map_entry(field.bytes()?)?;
            let key = std::str::from_utf8(key).map_err(|_| Reason::Malformed)?;
            object.insert(key.to_owned(), decode_value(value, depth)?);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // What Envoy 1.40 returned for the property `metadata` in a wasm filter's `on_log` after an
    // `envoy.filters.http.lua` filter set dynamic metadata (docs/src/sources/emitted-wire.md).
    // The Lua of each is in the test that uses it.
    const TABLE: &str = concat!(
        "0a670a0b6576656e745f686f6f6b7312580a560a167061796d656e74732e726566756e642d69737375656412",
        "3c2a3a0a110a0863757272656e637912051a034555520a100a086f726465725f696412041a0234320a130a06",
        "616d6f756e741209110000000000c07240",
    );
    const SHAPES: &str = concat!(
        "0ad0020a0b6576656e745f686f6f6b7312c0020abd020a0a7368617065732e616c6c12ae022aab020a2f0a06",
        "6e657374656412252a230a210a0161121c2a1a0a080a016212031a01630a0e0a016e120911000000000000f0",
        "3f0a110a047a65726f12091100000000000000000a080a026661120220000a0b0a05656d70747912022a000a",
        "100a036e65671209110000000000001cc00a2d0a03617272122632240a0911000000000000f03f0a051a0374",
        "776f0a0220010a0c2a0a0a080a016b12031a01760a070a0174120220010a0e0a01691209110000000000c072",
        "400a0e0a0166120911000000000000f83f0a110a04687567651209119c7500883ce4377e0a080a017312031a",
        "01780a100a0362696712091100000000000040430a0e0a08656d70747973747212021a000a120a0375746612",
        "0b1a09c3a9e282acf09f98800a110a046e65677a1209110000000000000080",
    );
    const SCALARS: &str = concat!(
        "0a680a0b6576656e745f686f6f6b7312590a0c0a05732e6f6e6512031a01780a0c0a06732e626f6f6c120220",
        "010a150a07732e6569676874120a1a0861626364656667680a120a05732e6e756d1209110000000000c07240",
        "0a100a05732e73747212071a0568656c6c6f",
    );
    const JSON_STRING: &str = concat!(
        "0a5c0a0b6576656e745f686f6f6b73124d0a4b0a167061796d656e74732e726566756e642d69737375656412",
        "311a2f7b226f726465725f6964223a223432222c22616d6f756e74223a3330302c2263757272656e6379223a",
        "22455552227d",
    );
    const NIL: &str = "0a230a0b6576656e745f686f6f6b7312140a120a0c7061796d656e74732e6e696c12020800";
    const TWO: &str = concat!(
        "0a660a0b6576656e745f686f6f6b7312570a250a0e6f72646572732e6372656174656412132a110a0f0a0269",
        "641209110000000000001c400a2e0a167061796d656e74732e726566756e642d69737375656412142a120a10",
        "0a086f726465725f696412041a023432",
    );
    const OTHER_NAMESPACE: &str = "0a1a0a0c736f6d656f6e655f656c7365120a0a080a017812031a0179";
    const NO_DOT: &str = concat!(
        "0a2c0a0b6576656e745f686f6f6b73121d0a1b0a056e6f646f7412122a100a0e0a0161120911000000000000",
        "f03f",
    );
    const EDGE: &str = concat!(
        "0a93010a0b6576656e745f686f6f6b731283010a80010a06656467652e7812762a740a0b0a0362616412041a",
        "02fffe0a410a046465657012392a370a350a016112302a2e0a2c0a016212272a250a230a0163121e2a1c0a1a",
        "0a016412152a130a110a0165120c2a0a0a080a016612031a01670a100a036e616e120911000000000000f8ff",
        "0a100a03696e66120911000000000000f07f",
    );
    const SPARSE: &str = concat!(
        "0a3e0a0b6576656e745f686f6f6b73122f0a2d0a0b656467652e737061727365121e2a1c0a1a0a0673706172",
        "73651210320e0a031a01610a0208000a031a0163",
    );
    const ARRAY_TABLE: &str = concat!(
        "0a2c0a0b6576656e745f686f6f6b73121d0a1b0a0b656467652e6e756d6b6579120c320a0a031a01610a031a",
        "0162",
    );
    const RESPONSE_PHASE: &str = concat!(
        "0a2b0a0b6576656e745f686f6f6b73121c0a1a0a08726573702e736574120e2a0c0a0a0a046c617465120220",
        "010a1b0a0570726f626512120a100a0977616e745f7265737012031a0131",
    );

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(text.get(at..at + 2).unwrap(), 16).unwrap())
            .collect()
    }

    fn metadata(text: &str) -> Emitted {
        from_metadata(&hex(text)).unwrap()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => panic!("not an object"),
        }
    }

    fn emission(source: &str, event: &str, data: Value) -> Emission {
        Emission {
            source: source.into(),
            event: event.into(),
            data: object(data),
        }
    }

    fn rejected(key: &str, reason: Reason) -> Rejected {
        Rejected {
            key: key.into(),
            reason,
        }
    }

    // A protobuf encoder for the cases Lua cannot make.
    fn tag(number: u64, wire: u64, out: &mut Vec<u8>) {
        varint((number << 3) | wire, out);
    }
    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    fn len_field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        tag(number, 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn entry(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        len_field(1, key, &mut out);
        len_field(2, value, &mut out);
        out
    }
    /// A Struct of `(key, Value bytes)`.
    fn pb_struct(fields: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in fields {
            len_field(1, &entry(key, value), &mut out);
        }
        out
    }
    fn pb_number(float: f64) -> Vec<u8> {
        let mut out = Vec::new();
        tag(2, 1, &mut out);
        out.extend_from_slice(&float.to_le_bytes());
        out
    }
    fn pb_string(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        len_field(3, text, &mut out);
        out
    }
    fn pb_object(fields: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        len_field(5, &pb_struct(fields), &mut out);
        out
    }
    fn pb_list(items: &[Vec<u8>]) -> Vec<u8> {
        let mut list = Vec::new();
        for item in items {
            len_field(1, item, &mut list);
        }
        let mut out = Vec::new();
        len_field(6, &list, &mut out);
        out
    }
    /// Metadata with namespace `event_hooks` = Struct of `fields`.
    fn pb_metadata(fields: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        len_field(
            1,
            &entry(NAMESPACE.as_bytes(), &pb_struct(fields)),
            &mut out,
        );
        out
    }
    /// Value bytes nesting `levels` objects: {"a": {"a": ... {}}}.
    fn nested_objects(levels: usize) -> Vec<u8> {
        let mut value = pb_object(&[]);
        for _ in 1..levels {
            value = pb_object(&[(b"a", value)]);
        }
        value
    }

    #[test]
    fn a_lua_table_of_strings_and_numbers() {
        // {order_id = "42", amount = 300, currency = "EUR"}: 300 came as the double 300.0.
        assert_eq!(
            metadata(TABLE),
            Emitted {
                emissions: vec![emission(
                    "payments",
                    "refund-issued",
                    json!({"order_id": "42", "amount": 300, "currency": "EUR"})
                )],
                rejected: vec![],
            }
        );
        let emitted = metadata(TABLE);
        assert_eq!(
            serde_json::to_string(&emitted.emissions[0].data).unwrap(),
            r#"{"amount":300,"currency":"EUR","order_id":"42"}"#
        );
    }

    #[test]
    fn every_shape_of_a_lua_table() {
        // {s = "x", i = 300, neg = -7, f = 1.5, big = 9007199254740993, huge = 1e300, t = true,
        //  fa = false, nested = {a = {b = "c", n = 1}}, arr = {1, "two", true, {k = "v"}},
        //  empty = {}, emptystr = "", utf = "é€😀", zero = 0, negz = -0.0}
        // Lua's numbers are doubles: 9007199254740993 arrived as 2^53; an empty table is a
        // Struct; an array-like table a ListValue.
        let emitted = metadata(SHAPES);
        assert_eq!(emitted.rejected, vec![]);
        assert_eq!(
            emitted.emissions,
            vec![emission(
                "shapes",
                "all",
                json!({
                    "s": "x", "i": 300, "neg": -7, "f": 1.5, "big": 9007199254740992_i64,
                    "huge": 1e300, "t": true, "fa": false,
                    "nested": {"a": {"b": "c", "n": 1}},
                    "arr": [1, "two", true, {"k": "v"}],
                    "empty": {}, "emptystr": "", "utf": "é€😀", "zero": 0, "negz": 0
                })
            )]
        );
        let data = &emitted.emissions[0].data;
        assert!(data["i"].is_i64() && data["negz"].is_i64() && data["big"].is_i64());
        assert!(data["f"].is_f64() && data["huge"].is_f64());
    }

    #[test]
    fn several_keys_of_scalars_are_not_objects() {
        // "s.str" = "hello", "s.num" = 300, "s.bool" = true, "s.one" = "x",
        // "s.eight" = "abcdefgh": only a table or a string holding a JSON object is data.
        let emitted = metadata(SCALARS);
        assert_eq!(emitted.emissions, vec![]);
        assert_eq!(
            emitted.rejected,
            vec![
                rejected("s.bool", Reason::NotObject),
                rejected("s.eight", Reason::Malformed),
                rejected("s.num", Reason::NotObject),
                rejected("s.one", Reason::Malformed),
                rejected("s.str", Reason::Malformed),
            ]
        );
    }

    #[test]
    fn a_string_holding_json_is_parsed() {
        // '{"order_id":"42","amount":300,"currency":"EUR"}'
        assert_eq!(
            metadata(JSON_STRING).emissions,
            vec![emission(
                "payments",
                "refund-issued",
                json!({"order_id": "42", "amount": 300, "currency": "EUR"})
            )]
        );
    }

    #[test]
    fn nil_is_null_and_not_an_object() {
        // set("event_hooks", "payments.nil", nil): a Value with null_value.
        assert_eq!(
            metadata(NIL),
            Emitted {
                emissions: vec![],
                rejected: vec![rejected("payments.nil", Reason::NotObject)],
            }
        );
    }

    #[test]
    fn two_events_of_two_sources_in_key_order() {
        // "payments.refund-issued" = {order_id = "42"}, "orders.created" = {id = 7}
        assert_eq!(
            metadata(TWO).emissions,
            vec![
                emission("orders", "created", json!({"id": 7})),
                emission("payments", "refund-issued", json!({"order_id": "42"})),
            ]
        );
    }

    #[test]
    fn other_namespaces_and_nothing_carry_nothing() {
        // set("someone_else", "x", "y"); and Envoy's empty answer when nothing was set.
        assert!(metadata(OTHER_NAMESPACE).is_empty());
        assert!(from_metadata(&[]).unwrap().is_empty());
        assert!(from_json(b"").unwrap().is_empty());
        assert!(from_json(b" \n").unwrap().is_empty());
        assert!(from_json(b"{}").unwrap().is_empty());
    }

    #[test]
    fn a_key_without_a_dot_is_a_bad_key() {
        // set("event_hooks", "nodot", {a = 1})
        assert_eq!(
            metadata(NO_DOT).rejected,
            vec![rejected("nodot", Reason::BadKey)]
        );
    }

    #[test]
    fn sparse_and_array_tables_are_lists() {
        // {sparse = {[1] = "a", [3] = "c"}}: the hole is null; {[1] = "a", [2] = "b"} is a
        // list, so not an object.
        assert_eq!(
            metadata(SPARSE).emissions,
            vec![emission(
                "edge",
                "sparse",
                json!({"sparse": ["a", null, "c"]})
            )]
        );
        assert_eq!(
            metadata(ARRAY_TABLE).rejected,
            vec![rejected("edge.numkey", Reason::NotObject)]
        );
    }

    #[test]
    fn set_in_the_response_phase_and_beside_another_namespace() {
        // envoy_on_response: set("event_hooks", "resp.set", {late = true}), with namespace
        // "probe" set too.
        assert_eq!(
            metadata(RESPONSE_PHASE).emissions,
            vec![emission("resp", "set", json!({"late": true}))]
        );
    }

    #[test]
    fn invalid_utf8_from_lua_is_malformed() {
        // {bad = "\255\254", nan = 0/0, inf = 1/0, deep = {a={b={c={d={e={f="g"}}}}}}}:
        // Lua passes any bytes as a protobuf string.
        assert_eq!(
            metadata(EDGE).rejected,
            vec![rejected("edge.x", Reason::Malformed)]
        );
    }

    #[test]
    fn nan_and_infinities_are_bad_numbers() {
        for float in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let bytes = pb_metadata(&[(b"a.b", pb_object(&[(b"n", pb_number(float))]))]);
            assert_eq!(
                from_metadata(&bytes).unwrap().rejected,
                vec![rejected("a.b", Reason::BadNumber)]
            );
        }
    }

    #[test]
    fn whole_doubles_within_2_pow_53_are_integers() {
        let cases = [
            (300.0, json!(300)),
            (-0.0, json!(0)),
            (-9007199254740992.0, json!(-9007199254740992_i64)),
            (9007199254740994.0, json!(9007199254740994.0)),
            (0.1, json!(0.1)),
            (-2.5, json!(-2.5)),
        ];
        for (float, want) in cases {
            let bytes = pb_metadata(&[(b"a.b", pb_object(&[(b"n", pb_number(float))]))]);
            let emitted = from_metadata(&bytes).unwrap();
            assert_eq!(emitted.emissions[0].data["n"], want, "{float}");
        }
        let emitted =
            from_json(br#"{"a.b": {"i": 300.0, "f": 1.5, "big": 18446744073709551615}}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&emitted.emissions[0].data).unwrap(),
            r#"{"big":18446744073709551615,"f":1.5,"i":300}"#
        );
    }

    #[test]
    fn depth_is_capped() {
        let at_cap = pb_metadata(&[(b"a.b", nested_objects(MAX_DEPTH))]);
        assert_eq!(from_metadata(&at_cap).unwrap().emissions.len(), 1);
        let over = pb_metadata(&[(b"a.b", nested_objects(MAX_DEPTH + 1))]);
        assert_eq!(
            from_metadata(&over).unwrap().rejected,
            vec![rejected("a.b", Reason::TooDeep)]
        );
        // Lists count as levels too.
        let mut list = pb_list(&[]);
        for _ in 2..MAX_DEPTH {
            list = pb_list(&[list]);
        }
        let ok = pb_metadata(&[(b"a.b", pb_object(&[(b"l", list.clone())]))]);
        assert_eq!(from_metadata(&ok).unwrap().emissions.len(), 1);
        let over = pb_metadata(&[(b"a.b", pb_object(&[(b"l", pb_list(&[list]))]))]);
        assert_eq!(
            from_metadata(&over).unwrap().rejected[0].reason,
            Reason::TooDeep
        );

        let text = |levels: usize| {
            format!(
                "{}{{}}{}",
                "{\"a\":".repeat(levels - 1),
                "}".repeat(levels - 1)
            )
        };
        for wrap in [
            |data: String| format!("{{\"a.b\": {data}}}"),
            |data: String| format!("{{\"a.b\": {}}}", Value::String(data)),
        ] {
            let ok = from_json(wrap(text(MAX_DEPTH)).as_bytes()).unwrap();
            assert_eq!(ok.emissions.len(), 1);
            let over = from_json(wrap(text(MAX_DEPTH + 1)).as_bytes()).unwrap();
            assert_eq!(over.rejected, vec![rejected("a.b", Reason::TooDeep)]);
        }
        let deep_text = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(from_json(deep_text.as_bytes()), Err(Reason::TooDeep));
    }

    #[test]
    fn sizes_are_capped() {
        // The data's compact JSON: {"s":"xxx..."} is 8 bytes more than the string.
        let fits = "x".repeat(MAX_DATA_BYTES - 8);
        let over = "x".repeat(MAX_DATA_BYTES - 7);
        let bytes = pb_metadata(&[
            (b"a.fits", pb_object(&[(b"s", pb_string(fits.as_bytes()))])),
            (b"a.over", pb_object(&[(b"s", pb_string(over.as_bytes()))])),
        ]);
        let emitted = from_metadata(&bytes).unwrap();
        assert_eq!(emitted.emissions.len(), 1);
        assert_eq!(emitted.rejected, vec![rejected("a.over", Reason::TooLarge)]);
        // Whole doubles may grow when they become integers: 1e15 is 16 digits.
        let text = format!(r#"{{"a.b": {{"n": [{}]}}}}"#, vec!["1e15"; 1500].join(","));
        assert!(text.len() < MAX_DATA_BYTES);
        assert_eq!(
            from_json(text.as_bytes()).unwrap().rejected[0].reason,
            Reason::TooLarge
        );

        let big = "x".repeat(MAX_INPUT_BYTES);
        let namespace = pb_metadata(&[(b"a.b", pb_string(big.as_bytes()))]);
        assert_eq!(from_metadata(&namespace), Err(Reason::TooLarge));
        assert_eq!(
            from_json(format!(r#"{{"a.b":"{big}"}}"#).as_bytes()),
            Err(Reason::TooLarge)
        );
        // Another namespace of any size is skipped.
        let mut other = Vec::new();
        len_field(
            1,
            &entry(
                b"someone_else",
                &pb_struct(&[(b"x", pb_string(big.as_bytes()))]),
            ),
            &mut other,
        );
        other.extend(pb_metadata(&[(b"a.b", pb_object(&[]))]));
        assert_eq!(from_metadata(&other).unwrap().emissions.len(), 1);
    }

    #[test]
    fn at_most_max_emissions_per_request() {
        let keys: Vec<String> = (0..MAX_EMISSIONS + 2)
            .map(|n| format!("s.e{n:03}"))
            .collect();
        let fields: Vec<(&[u8], Vec<u8>)> = keys
            .iter()
            .map(|key| (key.as_bytes(), pb_object(&[])))
            .collect();
        let emitted = from_metadata(&pb_metadata(&fields)).unwrap();
        assert_eq!(emitted.emissions.len(), MAX_EMISSIONS);
        assert_eq!(
            emitted.rejected,
            vec![
                rejected(&keys[MAX_EMISSIONS], Reason::TooMany),
                rejected(&keys[MAX_EMISSIONS + 1], Reason::TooMany),
            ]
        );
    }

    #[test]
    fn keys() {
        assert_eq!(
            split_key("payments.refund-issued"),
            Ok(("payments", "refund-issued"))
        );
        assert_eq!(split_key("a.b.c"), Ok(("a", "b.c")));
        for bad in ["", ".", "a.", ".b", "ab"] {
            assert_eq!(split_key(bad), Err(Reason::BadKey), "{bad}");
        }
        let long = format!("s.{}", "e".repeat(MAX_KEY_BYTES - 1));
        assert_eq!(split_key(&long), Err(Reason::BadKey));
        assert!(split_key(long.get(..MAX_KEY_BYTES).unwrap()).is_ok());
        // A rejected key is kept cut, at a character boundary.
        let emitted = from_json(format!(r#"{{"{}": {{}}}}"#, "é".repeat(100)).as_bytes()).unwrap();
        assert_eq!(
            emitted.rejected,
            vec![rejected(&"é".repeat(64), Reason::BadKey)]
        );
        let bytes = pb_metadata(&[(b"s.\xff", pb_object(&[]))]);
        assert_eq!(
            from_metadata(&bytes).unwrap().emissions,
            vec![emission("s", "\u{fffd}", json!({}))]
        );
    }

    #[test]
    fn json_text_from_filter_state() {
        // What another wasm filter's set_property(["event_hooks"], ...) gave back on Envoy.
        let text = hex(concat!(
            "7b227061796d656e74732e726566756e642d697373756564223a207b226f726465725f6964223a2022",
            "3432222c2022616d6f756e74223a203330307d7d"
        ));
        assert_eq!(
            from_json(&text).unwrap().emissions,
            vec![emission(
                "payments",
                "refund-issued",
                json!({"order_id": "42", "amount": 300})
            )]
        );
        let emitted = from_json(
            br#"{"a.obj": {"x": 1}, "a.text": "{\"y\": 2}", "a.list": [1], "a.null": null,
                "a.badtext": "{", "a.num": 1, "nodot": {}}"#,
        )
        .unwrap();
        assert_eq!(
            emitted,
            Emitted {
                emissions: vec![
                    emission("a", "obj", json!({"x": 1})),
                    emission("a", "text", json!({"y": 2})),
                ],
                rejected: vec![
                    rejected("a.badtext", Reason::Malformed),
                    rejected("a.list", Reason::NotObject),
                    rejected("a.null", Reason::NotObject),
                    rejected("a.num", Reason::NotObject),
                    rejected("nodot", Reason::BadKey),
                ],
            }
        );
        assert_eq!(from_json(b"[1]"), Err(Reason::NotObject));
        assert_eq!(from_json(b"\"x\""), Err(Reason::NotObject));
        assert_eq!(from_json(b"{"), Err(Reason::Malformed));
        assert_eq!(from_json(b"\xff"), Err(Reason::Malformed));
    }

    #[test]
    fn json_text_round_trips() {
        for fixture in [TABLE, SHAPES, TWO, SPARSE, RESPONSE_PHASE, JSON_STRING] {
            let emitted = metadata(fixture);
            let text = to_json(&emitted.emissions);
            assert_eq!(
                from_json(text.as_bytes()).unwrap().emissions,
                emitted.emissions
            );
        }
        assert_eq!(
            to_json(&metadata(TWO).emissions),
            r#"{"orders.created":{"id":7},"payments.refund-issued":{"order_id":"42"}}"#
        );
        assert_eq!(to_json(&[]), "{}");
    }

    #[test]
    fn malformed_protobuf_is_an_error_not_a_panic() {
        let table = hex(TABLE);
        for len in 0..table.len() {
            // Every cut of a valid message: an error or fewer events, never a panic.
            let _ = from_metadata(&table[..len]);
        }
        for bad in [
            &b"\x0a"[..],                                // length missing
            b"\x0a\x05\x0a",                             // length past the end
            b"\x08",                                     // varint missing
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", // varint over 64 bits
            b"\x0b",                                     // a group
            b"\x0e",                                     // wire type 6
            b"\x00",                                     // field 0
            b"\x09\x01",                                 // fixed64 cut
            b"\x0d\x01\x02",                             // fixed32 cut
            b"\x08\x01",                                 // filter_metadata as a varint
        ] {
            assert_eq!(from_metadata(bad), Err(Reason::Malformed), "{bad:?}");
        }
        // A Value whose number is not fixed64, inside the data: that event only.
        let mut wrong = Vec::new();
        tag(2, 0, &mut wrong);
        varint(1, &mut wrong);
        let bytes = pb_metadata(&[
            (b"a.b", pb_object(&[(b"n", wrong)])),
            (b"a.c", pb_object(&[])),
        ]);
        assert_eq!(
            from_metadata(&bytes).unwrap(),
            Emitted {
                emissions: vec![emission("a", "c", json!({}))],
                rejected: vec![rejected("a.b", Reason::Malformed)],
            }
        );
        // Unknown fields are skipped; the last of a oneof wins; a Value with no kind is null.
        let mut value = pb_number(1.0);
        tag(9, 5, &mut value);
        value.extend_from_slice(&[0; 4]);
        value.extend(pb_object(&[(b"k", Vec::new())]));
        let bytes = pb_metadata(&[(b"a.b", value)]);
        assert_eq!(
            from_metadata(&bytes).unwrap().emissions,
            vec![emission("a", "b", json!({"k": null}))]
        );
    }

    #[test]
    fn reasons_have_names() {
        let names: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
        assert_eq!(
            names,
            [
                "malformed",
                "not_object",
                "bad_key",
                "too_large",
                "too_deep",
                "bad_number",
                "too_many"
            ]
        );
        assert_eq!(Reason::TooDeep.to_string(), "too_deep");
    }
}
