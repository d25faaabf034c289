//! How `webhook-custom` encodes a payload: a form (`name=value&...`), a JSON object of
//! strings, a `multipart/form-data` body with a boundary that occurs in no value, and a query
//! string added to a path.

use super::*;

/// `name=value&...`, both percent-encoded (Kong leaves form values unencoded, so a `&` in a
/// value would break its form).
pub(super) fn form(values: &[(&str, String)]) -> String {
    let mut out = Vec::new();
    for (index, (name, value)) in values.iter().enumerate() {
        if index > 0 {
            out.push(b'&');
        }
        // Unlimited: the values were rendered within the call's budget.
        let _ = template::push(&mut out, name.as_bytes(), Escape::Percent, usize::MAX);
        out.push(b'=');
        let _ = template::push(&mut out, value.as_bytes(), Escape::Percent, usize::MAX);
    }
    template::into_string(out)
}

/// A JSON object of strings.
pub(super) fn json(values: &[(&str, String)]) -> Vec<u8> {
    let mut object = Map::new();
    for (name, value) in values {
        object.insert(name.to_string(), Value::String(value.clone()));
    }
    // Serializing a serde_json Map cannot fail.
    serde_json::to_vec(&object).unwrap_or_default()
}

/// `path` with `query` added to its query string, if any.
pub(super) fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    match path.split_once('?') {
        None => format!("{path}?{query}"),
        Some((_, "")) => format!("{path}{query}"),
        Some((_, existing)) if existing.ends_with('&') => format!("{path}{query}"),
        Some(_) => format!("{path}&{query}"),
    }
}

/// A `multipart/form-data` body (Kong's layout: one part per value, no part headers but
/// `Content-Disposition`) and its boundary. The boundary is derived from the values, so the
/// same values give the same bytes, and it is checked not to occur in them; `None` if no
/// candidate fits (practically never).
pub(super) fn multipart(values: &[(&str, String)]) -> Option<(Vec<u8>, String)> {
    let boundary = pick_boundary(values, (0u8..8).map(|salt| boundary(values, salt)))?;
    if values.is_empty() {
        // As Kong: no parts, no body.
        return Some((Vec::new(), boundary));
    }
    let mut body = Vec::new();
    for (name, value) in values {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Some((body, boundary))
}

/// The first candidate that occurs in no name and no value.
pub(super) fn pick_boundary(
    values: &[(&str, String)],
    candidates: impl IntoIterator<Item = String>,
) -> Option<String> {
    candidates.into_iter().find(|boundary| {
        values
            .iter()
            .all(|(name, value)| !name.contains(boundary) && !value.contains(boundary))
    })
}

/// A boundary candidate: a hash of the values (and a salt, to get another one).
pub(super) fn boundary(values: &[(&str, String)], salt: u8) -> String {
    let mut bytes = vec![salt];
    for (name, value) in values {
        for text in [*name, value.as_str()] {
            bytes.extend_from_slice(&(text.len() as u64).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    let digest = Sha256::digest(&bytes);
    format!(
        "event-hooks-{}",
        signing::hex(digest.get(..12).unwrap_or_default())
    )
}
