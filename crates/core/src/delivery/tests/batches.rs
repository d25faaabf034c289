//! The batch stage in the pipeline, with the fake clock: what closes a batch, what its call
//! carries, and the accounting per event through retries, drops and dead letters.

use super::*;
use crate::delivery::batching::{self, Batching, Choice};

impl Harness {
    /// Hook `hook` batching with `limits` (its own `config.batch`), or as `delivery.batch`
    /// says (`None`).
    fn batching(mut self, hook: usize, limits: Option<Value>) -> Self {
        let choice = match limits {
            Some(limits) => Choice::Own(
                batching::Settings::parse(&limits, "config.batch", &Problems::default()).unwrap(),
            ),
            None => Choice::Default,
        };
        let policy = (*self.policies[hook]).clone().batching(Batching {
            choice,
            content_type: "application/cloudevents-batch+json",
        });
        self.policies[hook] = Rc::new(policy);
        self
    }

    /// Event `n`'s delivery: its body `{"n":n}`.
    fn event(&self, n: u32, hook: usize) -> Delivery {
        self.sized(n, hook, format!("{{\"n\":{n}}}").as_bytes())
    }

    fn body(&self, call: usize) -> String {
        String::from_utf8(self.transport.sent[call].0.body.to_vec()).unwrap()
    }
}

#[test]
fn a_batch_closes_on_size_and_is_one_signed_call_holding_every_event() {
    let mut h =
        Harness::new(json!({})).batching(0, Some(json!({"max_size": 3, "max_delay_ms": 60_000})));
    for n in 0..7 {
        assert!(h.accept(h.event(n, 0)));
    }
    assert_eq!((h.delivery.depth(), h.delivery.batching()), (2, 1));
    h.tick();
    assert_eq!(h.metrics.value("event_hooks.queue.batching"), 1, "gauge");
    assert_eq!(h.sent(), 2);
    assert_eq!(h.body(0), r#"[{"n":0},{"n":1},{"n":2}]"#);
    assert_eq!(h.body(1), r#"[{"n":3},{"n":4},{"n":5}]"#);
    assert_eq!(
        h.header(0, "content-type"),
        "application/cloudevents-batch+json"
    );
    // One new id per batch, none of its events'; the signature is over the array.
    let id = h.header(0, "webhook-id");
    assert!(!id.starts_with("id-") && id != h.header(1, "webhook-id"));
    let expected = signing::kong_signature(&signing::Secret::new("hunter2"), h.body(0).as_bytes());
    assert_eq!(h.header(0, "x-kong-signature"), expected);
    // Counted per event.
    assert_eq!((h.stats(0).accepted, h.stats(0).pending), (7, 7));
    h.answer(1, Response::Status(200));
    h.answer(2, Response::Status(204));
    let stats = h.stats(0);
    assert_eq!((stats.delivered, stats.pending, stats.batches), (6, 1, 2));
    assert_eq!(h.metrics.value("event_hooks.deliveries.delivered"), 6);
    assert_eq!(h.metrics.value("event_hooks.batches"), 2);
    assert_eq!(h.metrics.value("event_hooks.batches.events"), 6);
    assert_eq!(h.metrics.value("event_hooks.hook.a.batches"), 2);
}

#[test]
fn a_batch_closes_when_its_first_event_has_waited_max_delay_ms() {
    let mut h =
        Harness::new(json!({})).batching(0, Some(json!({"max_size": 100, "max_delay_ms": 500})));
    h.accept(h.event(0, 0));
    h.clock.advance_ms(300);
    h.accept(h.event(1, 0));
    h.clock.advance_ms(199);
    h.pump();
    assert_eq!(h.sent(), 0, "499 ms after the first event");
    h.clock.advance_ms(1);
    h.pump();
    assert_eq!(h.sent(), 1);
    assert_eq!(h.body(0), r#"[{"n":0},{"n":1}]"#);
    // The next batch waits from its own first event.
    h.accept(h.event(2, 0));
    h.clock.advance_ms(499);
    h.pump();
    assert_eq!(h.sent(), 1);
    h.clock.advance_ms(1);
    h.pump();
    assert_eq!(h.body(1), r#"[{"n":2}]"#, "a batch of one is an array too");
}

#[test]
fn a_batch_closes_before_max_bytes_and_a_larger_event_goes_alone() {
    let mut h = Harness::new(json!({})).batching(
        0,
        Some(json!({"max_size": 100, "max_bytes": 1_024, "max_delay_ms": 60_000})),
    );
    let body = |n: u32| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(290));
    for n in 0..4 {
        h.accept(h.sized(n, 0, body(n).as_bytes()));
    }
    h.accept(h.sized(9, 0, &vec![b'y'; 2_000]));
    h.pump();
    // Three fit in 1,024 bytes (2 + 3 x 306 + 2); the fourth closed them and opened the next,
    // which the 2,000-byte event closed in turn before going alone.
    let lens: Vec<usize> = (0..h.sent()).map(|call| h.body(call).len()).collect();
    assert_eq!(lens, vec![922, 308, 2_002]);
    assert!(lens[..2].iter().all(|len| *len <= 1_024));
    assert_eq!(h.stats(0).pending, 5);
    // The byte budget holds what the events held.
    let held: usize = (0..4)
        .map(|n| h.sized(n, 0, body(n).as_bytes()).size())
        .sum();
    let big = h.sized(9, 0, &[b'y'; 2_000]).size();
    assert_eq!(h.delivery.bytes(), held + big);
}

#[test]
fn a_retried_batch_keeps_its_body_and_id() {
    let mut h = Harness::new(json!({"retry": {"backoff_ms": 1_000, "max_backoff_ms": 1_000}}))
        .batching(1, Some(json!({"max_size": 2})));
    h.accept(h.event(0, 1));
    h.accept(h.event(1, 1));
    h.pump();
    h.answer(1, Response::Status(500));
    assert_eq!(h.stats(1).retries, 1);
    h.clock.advance_ms(1_000);
    h.tick();
    assert_eq!(h.sent(), 2);
    assert_eq!(h.body(0), h.body(1));
    assert_eq!(h.header(0, "webhook-id"), h.header(1, "webhook-id"));
    h.answer(2, Response::Status(200));
    let stats = h.stats(1);
    assert_eq!((stats.delivered, stats.pending, stats.batches), (2, 0, 1));
    assert_eq!(h.metrics.value("event_hooks.attempts"), 2);
}

#[test]
fn a_batch_given_up_is_one_dead_letter_and_counts_each_event_failed() {
    let mut h = Harness::new(json!({"retry": {"max_attempts": 1}, "dead_letter": "dead"}))
        .batching(1, Some(json!({"max_size": 3})));
    for n in 0..3 {
        h.accept(h.event(n, 1));
    }
    h.pump();
    h.answer(1, Response::Status(503));
    let stats = h.stats(1);
    assert_eq!((stats.failed, stats.pending, stats.dead_letters), (3, 0, 1));
    assert_eq!(h.metrics.value("event_hooks.deliveries.failed"), 3);
    let letters = h.delivery.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body.as_ref(), br#"[{"n":0},{"n":1},{"n":2}]"#);
    assert_eq!(letters[0].webhook_id, h.header(0, "webhook-id"));
    assert_eq!(h.delivery.bytes(), 0);
}

#[test]
fn a_410_drops_what_the_hook_has_queued_or_open_counted_per_event() {
    let mut h = Harness::new(json!({"max_in_flight": 1}))
        .batching(0, Some(json!({"max_size": 2, "max_delay_ms": 60_000})));
    for n in 0..2 {
        h.accept(h.event(n, 0));
    }
    h.pump();
    // In flight: the first batch. Queued: two more. Open: one event.
    for n in 2..7 {
        h.accept(h.event(n, 0));
    }
    assert_eq!((h.delivery.depth(), h.delivery.batching()), (2, 1));
    h.answer(1, Response::Status(410));
    let stats = h.stats(0);
    assert_eq!(
        (stats.accepted, stats.failed, stats.dropped, stats.pending),
        (7, 2, 5, 0)
    );
    assert_eq!(h.delivery.batching(), 0);
    assert_eq!(h.metrics.value("event_hooks.drops.gone"), 5);
    assert_eq!(h.delivery.bytes(), 0);
    // The hook's next events are dropped at acceptance.
    assert!(!h.accept(h.event(7, 0)));
    assert_eq!(h.stats(0).dropped, 6);
}

#[test]
fn delivery_batch_is_the_default_and_hooks_that_do_not_batch_pass_through() {
    let mut h = Harness::new(json!({"batch": {"max_size": 2}})).batching(0, None);
    for n in 0..2 {
        h.accept(h.event(n, 0));
        h.accept(h.event(10 + n, 1));
    }
    h.pump();
    let bodies: Vec<String> = (0..h.sent()).map(|call| h.body(call)).collect();
    assert_eq!(
        bodies,
        vec![r#"{"n":10}"#, r#"[{"n":0},{"n":1}]"#, r#"{"n":11}"#]
    );
    // Without delivery.batch, a hook that batches by default sends its events alone.
    let mut h = Harness::new(json!({})).batching(0, None);
    h.accept(h.event(0, 0));
    h.pump();
    assert_eq!(h.body(0), r#"{"n":0}"#);
    assert_eq!(h.header(0, "webhook-id"), "id-0");
}

#[test]
fn stopping_closes_every_open_batch_at_once() {
    let mut h =
        Harness::new(json!({})).batching(0, Some(json!({"max_size": 100, "max_delay_ms": 60_000})));
    h.accept(h.event(0, 0));
    h.pump();
    assert_eq!(h.sent(), 0);
    let (pipeline, ports, transport) = h.parts();
    pipeline.close_batches(&ports);
    pipeline.pump(&ports, transport);
    assert_eq!(h.sent(), 1);
    assert_eq!(h.delivery.status()["batching"], json!(0));
}

#[test]
fn max_age_ms_counts_from_when_a_batch_closes_not_from_its_first_event() {
    // Both in range: a batch that waits longer than max_age_ms is still sent, and retried.
    let mut h = Harness::new(
        json!({"retry": {"max_age_ms": 1_000, "backoff_ms": 100, "max_backoff_ms": 100}}),
    )
    .batching(0, Some(json!({"max_size": 100, "max_delay_ms": 5_000})));
    h.accept(h.event(0, 0));
    h.clock.advance_ms(4_000);
    h.accept(h.event(1, 0));
    h.clock.advance_ms(1_000);
    h.pump();
    assert_eq!(h.sent(), 1, "the batch closed by its delay is sent");
    assert_eq!(h.body(0), r#"[{"n":0},{"n":1}]"#);
    h.answer(1, Response::Status(503));
    h.clock.advance_ms(100);
    h.tick();
    assert_eq!(h.sent(), 2, "and retried within max_age_ms of its closing");
    h.answer(2, Response::Status(200));
    let stats = h.stats(0);
    assert_eq!((stats.delivered, stats.failed, stats.pending), (2, 0, 0));
    // Past max_age_ms from its closing, it is given up as before.
    h.accept(h.event(2, 0));
    h.clock.advance_ms(5_000);
    h.pump();
    h.answer(3, Response::Status(503));
    h.clock.advance_ms(1_001);
    h.tick();
    assert_eq!(h.sent(), 3);
    assert_eq!(h.stats(0).failed, 1);
}
