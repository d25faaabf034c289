//! Templates over the event data, compatible with what Kong's event hooks accept (a subset of
//! lua-resty-template), but escaped for where the value lands.
//!
//! * `{{ path.to.field }}` inserts the field, escaped for its destination ([`Escape`]): JSON
//!   string escaping in a JSON body, percent-encoding in a form body, control characters
//!   stripped in a header. (Kong HTML-escapes here, which breaks JSON bodies.)
//! * `{* path.to.field *}` inserts the field as it is.
//! * `{# comment #}` is dropped (with the newline right after it, as lua-resty-template does).
//! * `\{{` writes `{{` (any tag opener can be escaped so); `\\{{` keeps both backslashes and the
//!   tag is rendered.
//!
//! An expression is a dotted field path only (whitespace around it is allowed); a numeric
//! segment indexes an array from 0. Lua (`{% %}`), includes (`{( )}`, `{[ ]}`) and blocks
//! (`{- -}`) cannot run in this filter and are refused when the template is parsed, as are an
//! unclosed tag, an empty expression and anything that is not a field path.
//!
//! Values render as: strings as their text (no quotes), numbers and booleans as JSON text,
//! objects and arrays as compact JSON, `null` and missing fields as nothing.
//!
//! Rendering never panics and never holds more than a limit: [`MAX_RENDERED`] (1 MiB) for
//! [`Template::render`], the caller's for [`Template::render_into`].

use std::io;

use serde_json::Value;

use crate::event::lookup;
use crate::reader::Problems;

/// The most bytes [`Template::render`] produces; a longer rendering is cut there.
pub const MAX_RENDERED: usize = 1024 * 1024;

/// How a `{{ }}` value is escaped for where it lands. `{* *}` values and the template's own text
/// are never escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Inside a JSON string: `"`, `\` and control characters are escaped (`\"`, `\\`, `\n`,
    /// `\u0001`); everything else, including non-ASCII text, is kept.
    Json,
    /// A form or query value: every byte but `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
    Percent,
    /// A header value: control characters (CR, LF, NUL, DEL, ...) are dropped; tab is kept.
    Header,
    /// As it is.
    None,
}

/// A rendering went past its byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field { path: Vec<String>, raw: bool },
}

/// A parsed template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Tag openers that cannot work here, and why.
const REFUSED: &[(char, &str)] = &[
    (
        '%',
        "Lua code cannot run in this filter; insert fields with {{ field.path }} or {* field.path *}",
    ),
    ('(', "template includes are not supported"),
    ('[', "template includes are not supported"),
    ('-', "template blocks are not supported"),
];

impl Template {
    /// A template that renders `text` exactly (for a `*_format: false` setting).
    pub fn literal(text: &str) -> Template {
        let parts = if text.is_empty() {
            Vec::new()
        } else {
            vec![Part::Text(text.to_string())]
        };
        Template { parts }
    }

    /// Parses `text`. The error says what is wrong and at which byte, never the text itself.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (before, tag) = rest.split_at_checked(open).unwrap_or((rest, ""));
            let at = text.len().saturating_sub(tag.len());
            let mut chars = tag.chars();
            chars.next();
            let kind = chars.next();
            let body = chars.as_str();
            let escapable = kind.is_some_and(|c| "{*#%([-".contains(c));
            let backslashes = before.len() - before.trim_end_matches('\\').len();
            if escapable && backslashes % 2 == 1 {
                // `\{{`: the backslash goes, the opener is text.
                literal.push_str(before.strip_suffix('\\').unwrap_or(before));
                literal.push('{');
                rest = tag.get(1..).unwrap_or("");
                continue;
            }
            literal.push_str(before);
            let (close, raw) = match kind {
                Some('{') => ("}}", false),
                Some('*') => ("*}", true),
                Some('#') => {
                    let Some((_, after)) = body.split_once("#}") else {
                        return Err(format!("unclosed {{# at byte {at}"));
                    };
                    rest = after.strip_prefix('\n').unwrap_or(after);
                    continue;
                }
                Some(other) => {
                    if let Some((_, why)) = REFUSED.iter().find(|(c, _)| *c == other) {
                        return Err(format!(
                            "{{{other} at byte {at}: {why} (write \\{{{other} for the text)"
                        ));
                    }
                    literal.push('{');
                    rest = tag.get(1..).unwrap_or("");
                    continue;
                }
                None => {
                    literal.push('{');
                    rest = "";
                    continue;
                }
            };
            let open = if raw { "{*" } else { "{{" };
            let Some((expression, after)) = body.split_once(close) else {
                return Err(format!("unclosed {open} at byte {at}"));
            };
            let path = parse_path(expression.trim()).map_err(|why| match why {
                PathError::Empty => format!("empty {open} {close} at byte {at}"),
                PathError::Invalid => format!(
                    "{open} at byte {at}: expected a dotted field path such as request.headers.x-team \
                     (names of A-Z a-z 0-9 _ -; a number indexes an array from 0); expressions cannot run here"
                ),
            })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Field { path, raw });
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Parses `text` found at the JSON path `path`, reporting a syntax error there.
    pub fn read(text: &str, path: &str, problems: &Problems) -> Option<Template> {
        Template::parse(text)
            .map_err(|why| problems.add(path, why))
            .ok()
    }

    /// The field paths the template reads, in order.
    pub fn fields(&self) -> impl Iterator<Item = &[String]> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field { path, .. } => Some(path.as_slice()),
            Part::Text(_) => None,
        })
    }

    /// Whether the template reads no field (it renders the same text for every event).
    pub fn is_literal(&self) -> bool {
        self.fields().next().is_none()
    }

    /// Renders over `context` with `{{ }}` values escaped by `escape`. The result is at most
    /// [`MAX_RENDERED`] bytes: a longer rendering is cut there (on a character boundary).
    pub fn render(&self, context: &Value, escape: Escape) -> String {
        let mut out = Vec::new();
        // Past the limit the output is cut; `render_into` leaves what fit.
        let _ = self.render_into(context, escape, &mut out, MAX_RENDERED);
        into_string(out)
    }

    /// Renders over `context`, appending to `out`, which it never lets grow past `limit`
    /// bytes: when the rendering does not fit it stops there and returns [`Overflow`]. The
    /// bytes are UTF-8 unless the rendering was cut.
    pub fn render_into(
        &self,
        context: &Value,
        escape: Escape,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Overflow> {
        for part in &self.parts {
            match part {
                Part::Text(text) => push(out, text.as_bytes(), Escape::None, limit)?,
                Part::Field { path, raw } => {
                    let escape = if *raw { Escape::None } else { escape };
                    if let Some(value) = lookup(context, path) {
                        write_value(out, value, escape, limit)?;
                    }
                }
            }
        }
        Ok(())
    }
}

enum PathError {
    Empty,
    Invalid,
}

fn parse_path(expression: &str) -> Result<Vec<String>, PathError> {
    if expression.is_empty() {
        return Err(PathError::Empty);
    }
    let segment_ok = |segment: &str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !expression.split('.').all(segment_ok) {
        return Err(PathError::Invalid);
    }
    Ok(crate::event::split_path(expression))
}

/// Whether a byte may stay in a header value: anything but control characters (tab is allowed).
pub fn header_safe(byte: u8) -> bool {
    byte == b'\t' || (byte >= 0x20 && byte != 0x7f)
}

/// Appends `bytes` escaped by `escape` to `out`, never letting it grow past `limit`: what does
/// not fit is cut (possibly inside a character) and reported as [`Overflow`].
pub fn push(out: &mut Vec<u8>, bytes: &[u8], escape: Escape, limit: usize) -> Result<(), Overflow> {
    if escape == Escape::None {
        let room = limit.saturating_sub(out.len());
        let fits = bytes.get(..room).unwrap_or(bytes);
        out.extend_from_slice(fits);
        return if fits.len() < bytes.len() {
            Err(Overflow)
        } else {
            Ok(())
        };
    }
    for &byte in bytes {
        let (buffer, len) = escape_byte(byte, escape);
        let escaped = buffer.get(..len).unwrap_or_default();
        if out.len().saturating_add(escaped.len()) > limit {
            return Err(Overflow);
        }
        out.extend_from_slice(escaped);
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_digit(nibble: u8) -> u8 {
    HEX.get(usize::from(nibble & 0x0f)).copied().unwrap_or(b'0')
}

/// One byte escaped: the bytes to write and how many. Escaping only ever replaces ASCII
/// bytes, so UTF-8 text stays UTF-8.
fn escape_byte(byte: u8, escape: Escape) -> ([u8; 6], usize) {
    let kept = ([byte, 0, 0, 0, 0, 0], 1);
    match escape {
        Escape::None => kept,
        Escape::Header if header_safe(byte) => kept,
        Escape::Header => ([0; 6], 0),
        Escape::Percent => {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                kept
            } else {
                ([b'%', hex_digit(byte >> 4), hex_digit(byte), 0, 0, 0], 3)
            }
        }
        Escape::Json => {
            let short = match byte {
                b'"' => b'"',
                b'\\' => b'\\',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x08 => b'b',
                0x0c => b'f',
                0x00..=0x1f => {
                    let unicode = [
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        hex_digit(byte >> 4),
                        hex_digit(byte),
                    ];
                    return (unicode, 6);
                }
                _ => return kept,
            };
            ([b'\\', short, 0, 0, 0, 0], 2)
        }
    }
}

/// Writes a value: strings as their text, `null` as nothing, the rest as compact JSON.
fn write_value(
    out: &mut Vec<u8>,
    value: &Value,
    escape: Escape,
    limit: usize,
) -> Result<(), Overflow> {
    match value {
        Value::Null => Ok(()),
        Value::String(text) => push(out, text.as_bytes(), escape, limit),
        other => {
            // Serialized straight into `out` through the escaper, so a large object never
            // exists twice and stops at the limit. Serializing a Value fails only when the
            // writer does, that is on overflow.
            let mut sink = Sink { out, escape, limit };
            serde_json::to_writer(&mut sink, other).map_err(|_| Overflow)
        }
    }
}

/// An `io::Write` that escapes into a byte buffer with a limit.
struct Sink<'a> {
    out: &'a mut Vec<u8>,
    escape: Escape,
    limit: usize,
}

impl io::Write for Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        push(self.out, bytes, self.escape, self.limit)
            .map_err(|_| io::Error::other("template output limit"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes as text, cut back to the last whole character if a limit cut one.
pub fn into_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let mut bytes = error.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests;
