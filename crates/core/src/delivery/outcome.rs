//! What an answer to a delivery means.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | delivered |
//! | 410 | the endpoint is gone: stop delivering to the hook until the configuration reloads |
//! | 408, 425, 429, 5xx, no answer (timeout, connection failure, reset, Kong's `:dispatch_status`) | retry |
//! | 3xx (never followed), other 4xx, 1xx | failed for good |
//!
//! An answer that is not a success is also described for the log and the dead letter
//! ([`describe`]), with the start of its body ([`excerpt`]).

/// What the host reported for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An HTTP answer with this status.
    Status(u16),
    /// The host answered for the receiver without sending the call: the cluster's circuit
    /// breaker overflowed (Envoy: 503 with `x-envoy-overloaded`). The delivery waits for the
    /// next round, its attempt not counted.
    Overloaded,
    /// No HTTP answer: connection failure, reset or timeout; the host's detail when it gives one.
    NoAnswer(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry,
    Gone,
    Failed,
}

pub fn classify(response: &Response) -> Outcome {
    match response {
        Response::Status(status) => match status {
            200..=299 => Outcome::Delivered,
            410 => Outcome::Gone,
            408 | 425 | 429 | 500..=599 => Outcome::Retry,
            _ => Outcome::Failed,
        },
        Response::NoAnswer(_) | Response::Overloaded => Outcome::Retry,
    }
}

/// What an answer says went wrong, for a delivery's `last_error`: the status and the start of
/// the body, the overload, or why there was no answer.
pub fn describe(response: &Response, body: &[u8]) -> String {
    match response {
        Response::Status(status) => match excerpt(body) {
            // Envoy answers a call it could not make with its own 503 (504 on a timeout)
            // and the reason in the body: show it.
            Some(text) => format!("answered {status}: {text}"),
            None => format!("answered {status}"),
        },
        Response::Overloaded => "overloaded".to_string(),
        Response::NoAnswer(Some(detail)) => format!("no answer ({detail})"),
        Response::NoAnswer(None) => "no answer (connection failure, reset or timeout)".to_string(),
    }
}

/// The longest excerpt of an answer's body that a log line shows.
pub const EXCERPT_BYTES: usize = 160;

/// The start of a body for a log line: at most [`EXCERPT_BYTES`] bytes, control characters
/// replaced by spaces; `None` when empty.
pub fn excerpt(body: &[u8]) -> Option<String> {
    let cut = body.get(..EXCERPT_BYTES).unwrap_or(body);
    let text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| {
        if body.len() > EXCERPT_BYTES {
            format!("{text}...")
        } else {
            text.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_of_answer() {
        let cases = [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (299, Outcome::Delivered),
            (100, Outcome::Failed),
            (301, Outcome::Failed),
            (302, Outcome::Failed),
            (400, Outcome::Failed),
            (401, Outcome::Failed),
            (404, Outcome::Failed),
            (409, Outcome::Failed),
            (413, Outcome::Failed),
            (408, Outcome::Retry),
            (425, Outcome::Retry),
            (429, Outcome::Retry),
            (410, Outcome::Gone),
            (500, Outcome::Retry),
            (502, Outcome::Retry),
            (503, Outcome::Retry),
            (504, Outcome::Retry),
            (599, Outcome::Retry),
        ];
        for (status, outcome) in cases {
            assert_eq!(classify(&Response::Status(status)), outcome, "{status}");
        }
        assert_eq!(classify(&Response::NoAnswer(None)), Outcome::Retry);
        assert_eq!(
            classify(&Response::NoAnswer(Some("timeout".into()))),
            Outcome::Retry
        );
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt(b""), None);
        assert_eq!(excerpt(b"  \n"), None);
        assert_eq!(excerpt(b"a\nb").as_deref(), Some("a b"));
        let long = vec![b'x'; 500];
        let text = excerpt(&long).unwrap();
        assert_eq!(text.len(), EXCERPT_BYTES + 3);
        assert!(text.ends_with("..."));
        assert_eq!(excerpt(&[0xff, b'a']).as_deref(), Some("\u{fffd}a"));
    }
}
