//! What goes over the wire: the [`Call`] a handler prepared, each [`Attempt`] at it, and the
//! host's callout that sends one ([`Transport`]).
//!
//! A call is made once per event and hook and never changes; an attempt is made from it each
//! time it is sent, because `webhook-timestamp` and the signatures over it are of that moment.

use std::rc::Rc;

use crate::signing::Signing;

/// The HTTP call a handler prepared for one event: everything but the headers each attempt
/// adds (`user-agent`, `webhook-id`, `webhook-timestamp`, signatures), which
/// [`Call::attempt`] adds when it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub destination: Destination,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authority: String,
    /// The configured headers, and those rendered for this event.
    pub headers: Vec<(String, String)>,
    /// The exact bytes sent, shared by the hooks that send the same body for one event.
    pub body: Rc<[u8]>,
}

impl Call {
    /// The bytes this call holds (its body counted whole even when shared).
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.body.len() + headers + self.path.len() + self.authority.len() + self.method.len()
    }

    /// The attempt at this call sent at `now_secs`: pseudo-headers, the call's headers, then
    /// `user-agent`, `webhook-id`, `webhook-timestamp` and the signatures over the exact body.
    pub fn attempt(&self, webhook_id: &str, now_secs: u64, signing: &Signing) -> Attempt {
        let mut headers = Vec::with_capacity(self.headers.len() + 8);
        headers.push((":method".to_string(), self.method.clone()));
        headers.push((":path".to_string(), self.path.clone()));
        headers.push((":authority".to_string(), self.authority.clone()));
        headers.extend(self.headers.iter().cloned());
        headers.push(("user-agent".to_string(), crate::USER_AGENT.to_string()));
        headers.push(("webhook-id".to_string(), webhook_id.to_string()));
        headers.push(("webhook-timestamp".to_string(), now_secs.to_string()));
        headers.extend(signing.headers(webhook_id, now_secs, &self.body));
        Attempt {
            destination: self.destination.clone(),
            headers,
            body: Rc::clone(&self.body),
        }
    }
}

pub use crate::ports::{Attempt, Destination, SendError, Transport};
