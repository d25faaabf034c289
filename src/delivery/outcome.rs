//! Classifying the host's answer to a delivery.
//!
//! A 2xx answer is a delivery; anything else, including a redirect (never followed) and no
//! answer at all, is a failure.

use super::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed,
}

pub fn classify(response: &Response) -> Outcome {
    match response {
        Response::Status(status) if (200..300).contains(status) => Outcome::Delivered,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2xx_is_delivered() {
        for (status, outcome) in [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (299, Outcome::Delivered),
            (199, Outcome::Failed),
            (301, Outcome::Failed),
            (404, Outcome::Failed),
            (500, Outcome::Failed),
        ] {
            assert_eq!(classify(&Response::Status(status)), outcome, "{status}");
        }
        assert_eq!(classify(&Response::NoAnswer(None)), Outcome::Failed);
    }
}
