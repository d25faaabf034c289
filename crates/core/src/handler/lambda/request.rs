//! The calls a function asks for with `http`: the map it gives, checked and turned into a
//! call (method, URL, headers, body) for the delivery queue.

use super::*;

/// The call `http` asked for, checked as a webhook's configuration is.
pub(super) fn draft(request: &Map, cluster: Option<&str>) -> Result<Call, String> {
    if let Some(key) = request
        .keys()
        .find(|key| !REQUEST_KEYS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown key '{}'; expected one of: {}",
            clean(key, 32),
            REQUEST_KEYS.join(", ")
        ));
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match request.get(key) {
            None => Ok(None),
            Some(value) if value.is_unit() => Ok(None),
            Some(value) => value
                .as_immutable_string_ref()
                .map(|text| Some(text.to_string()))
                .map_err(|actual| format!("{key} must be a string, not {actual}")),
        }
    };
    let url = text("url")?.ok_or_else(|| "url is required".to_string())?;
    let url = Url::parse(&url).map_err(|why| format!("url {why}"))?;
    let method = text("method")?.unwrap_or_else(|| "POST".to_string());
    if method.is_empty() || method.len() > 32 || !method.bytes().all(endpoint::is_token_byte) {
        return Err("method must be an HTTP method such as POST".to_string());
    }
    // Sent uppercase, as webhook-custom sends its method (found by fuzzing: `put` went as is).
    let method = method.to_ascii_uppercase();
    let cluster = match text("cluster")? {
        Some(name) if name.is_empty() => return Err("cluster must not be empty".to_string()),
        Some(name) => name,
        None => cluster.map_or_else(|| url.host.clone(), str::to_string),
    };
    let mut headers = request_headers(request.get("headers"))?;
    let (body, content_type) = match request.get("body") {
        None => (Vec::new(), None),
        Some(value) if value.is_unit() => (Vec::new(), None),
        Some(value) => match value.as_immutable_string_ref() {
            Ok(text) => (text.as_bytes().to_vec(), Some("text/plain; charset=utf-8")),
            Err(_) => {
                let json = to_json(value, 0).map_err(|why| format!("body: {why}"))?;
                // Serializing a serde_json::Value to a Vec cannot fail.
                let bytes = serde_json::to_vec(&json).unwrap_or_default();
                (bytes, Some("application/json"))
            }
        },
    };
    if let Some(content_type) = content_type {
        if !headers.iter().any(|(name, _)| name == "content-type") {
            headers.push(("content-type".to_string(), content_type.to_string()));
        }
    }
    let endpoint = Endpoint {
        cluster,
        url,
        ssl_verify: false,
    };
    Ok(Call {
        destination: endpoint.destination(),
        method,
        path: endpoint.url.path.clone(),
        authority: endpoint.url.authority(),
        headers,
        body: body.into(),
    })
}

/// `headers` of an `http` request: a map of names to strings (numbers and booleans are
/// written as text). Names are sent lowercase; reserved ones are refused, except
/// `content-type`, which a lambda may set.
pub(super) fn request_headers(value: Option<&Dynamic>) -> Result<Vec<(String, String)>, String> {
    let Some(value) = value.filter(|value| !value.is_unit()) else {
        return Ok(Vec::new());
    };
    let map = value
        .as_map_ref()
        .map_err(|actual| format!("headers must be a map, not {actual}"))?;
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map.iter() {
        let lower = name.to_ascii_lowercase();
        let shown = clean(&lower, 64);
        if lower.is_empty() || !lower.bytes().all(endpoint::is_token_byte) {
            return Err(format!("headers: '{shown}' is not a valid header name"));
        }
        if lower != "content-type" && endpoint::is_reserved(&lower) {
            return Err(format!("headers: '{shown}' is set by the handler"));
        }
        let text = if value.is_string() || value.is_int() || value.is_float() || value.is_bool() {
            value.to_string()
        } else {
            return Err(format!(
                "headers: '{shown}' must be a string, not {}",
                value.type_name()
            ));
        };
        if !endpoint::header_value_ok(&text) {
            return Err(format!(
                "headers: '{shown}' must not contain control characters such as CR or LF"
            ));
        }
        headers.push((lower, text));
    }
    Ok(headers)
}
