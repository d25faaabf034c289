//! What an answer to a delivery means.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | delivered |
//! | 410 | the endpoint is gone: stop delivering to the hook until the configuration reloads |
//! | 408, 425, 429, 5xx, no answer (timeout, connection failure, reset, Kong's `:dispatch_status`) | retry |
//! | 3xx (never followed), other 4xx, 1xx | failed for good |

use super::Response;

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
}
