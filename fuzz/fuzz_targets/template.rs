//! Templates: parsed from text made of tag pieces and arbitrary text, rendered over generated
//! event data with every escaping and with output limits.
//!
//! Beyond "no panic":
//! * parsing is deterministic;
//! * a rendering under a limit never passes it, fails exactly when the whole rendering is
//!   longer, and is then a prefix of the whole rendering; `render` is the whole rendering
//!   (cut at `MAX_RENDERED`);
//! * each escaping is reversible or does exactly what it says: a `{{ }}` value rendered for
//!   JSON is a valid JSON string body holding the value's text; for a form, only unreserved
//!   bytes and `%XX`, decoding to the text; for a header, the text without control characters;
//! * a template without fields renders the same whatever the data.
#![no_main]

use arbitrary::Unstructured;
use event_hooks_core::template::{Escape, MAX_RENDERED, Template, header_safe};
use event_hooks_fuzz::{chance, count, event_data, field_path, free_text, pick, string, value};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PIECES: &[&str] = &[
    "{{",
    "}}",
    "{*",
    "*}",
    "{#",
    "#}",
    "\\",
    "\\\\",
    "{%",
    "%}",
    "{(",
    "{[",
    "{-",
    "{",
    "}",
    " ",
    "\n",
    "request.path",
    "response.status",
    "request.headers",
    "tags.0",
    "a..b",
    "é",
    "\"",
];

fn template_text(u: &mut Unstructured<'_>) -> String {
    let mut text = String::new();
    for _ in 0..count(u, 12) {
        match count(u, 4) {
            0 => text.push_str(&free_text(u, 8)),
            1 => {
                let path = field_path(u);
                text.push_str(&format!("{{{{ {path} }}}}"));
            }
            _ => text.push_str(pick(u, PIECES)),
        }
    }
    text
}

/// A `{{ }}` value's text before escaping: strings as is, null as nothing, the rest as JSON.
fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn render(template: &Template, context: &Value, escape: Escape, limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let fitted = template
        .render_into(context, escape, &mut out, limit)
        .is_ok();
    (out, fitted)
}

fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = text.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'%' {
            let hex = [*bytes.next()?, *bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            if !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte);
        } else {
            return None;
        }
    }
    Some(out)
}

fn check_escape(context: &Value, path: &str, escape: Escape) {
    let Ok(template) = Template::parse(&format!("{{{{{path}}}}}")) else {
        return;
    };
    let (out, fitted) = render(&template, context, escape, usize::MAX);
    assert!(fitted);
    let value = event_hooks_core::event::lookup(context, &event_hooks_core::event::split_path(path.trim()));
    let text = text_of(value);
    match escape {
        Escape::Json => {
            let quoted = [b"\"".as_slice(), &out, b"\""].concat();
            let parsed: String = serde_json::from_slice(&quoted).unwrap_or_else(|e| {
                panic!(
                    "JSON escaping made an invalid string ({e}): {}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(parsed, text, "JSON escaping changed the text");
        }
        Escape::Percent => {
            let decoded = percent_decode(&out).unwrap_or_else(|| {
                panic!(
                    "percent-encoding left other bytes: {}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(
                decoded,
                text.as_bytes(),
                "percent-encoding changed the text"
            );
        }
        Escape::Header => {
            let kept: Vec<u8> = text.bytes().filter(|b| header_safe(*b)).collect();
            assert_eq!(
                out, kept,
                "header escaping did more than drop control characters"
            );
        }
        Escape::None => assert_eq!(out, text.as_bytes(), "no escaping changed the text"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let text = if chance(&mut u, 1, 6) {
        free_text(&mut u, 256)
    } else {
        template_text(&mut u)
    };
    let mut context = Value::Object(event_data(&mut u));
    if chance(&mut u, 1, 8) {
        context = value(&mut u, 0);
    }
    if let Value::Object(map) = &mut context {
        map.insert("note".into(), Value::String(string(&mut u)));
    }
    let escape = pick(
        &mut u,
        &[Escape::Json, Escape::Percent, Escape::Header, Escape::None],
    );
    let parsed = Template::parse(&text);
    assert_eq!(
        parsed,
        Template::parse(&text),
        "parsing is not deterministic"
    );
    for path in [
        "note",
        "request.headers",
        "response.status",
        "tags.0",
        " request.path ",
    ] {
        check_escape(&context, path, escape);
    }
    let Ok(template) = parsed else {
        return;
    };
    let (whole, fitted) = render(&template, &context, escape, usize::MAX);
    assert!(fitted, "a rendering without a limit overflowed");
    if whole.len() <= MAX_RENDERED {
        let rendered = template.render(&context, escape);
        assert_eq!(
            rendered.as_bytes(),
            whole.as_slice(),
            "render differs from render_into"
        );
    }
    let limit = count(&mut u, whole.len() + 8);
    let (cut, fitted) = render(&template, &context, escape, limit);
    assert!(cut.len() <= limit, "a rendering passed its limit");
    assert_eq!(fitted, whole.len() <= limit, "overflow reported wrongly");
    assert!(
        whole.starts_with(&cut),
        "a cut rendering is not a prefix of the whole one"
    );
    if template.is_literal() {
        let (other, _) = render(&template, &Value::Null, escape, usize::MAX);
        assert_eq!(
            other, whole,
            "a template without fields depends on the data"
        );
    }
    let literal = Template::literal(&text);
    assert_eq!(
        literal.render(&context, escape),
        text,
        "a literal template changed its text"
    );
});
