use super::*;
use crate::log::Lines;
use crate::metrics::Recorder;
use crate::ports::{Clock, ManualClock};
use crate::reader::{Object, Problems};
use crate::signing::{self, Signing};
use serde_json::{Value, json};

/// A transport that records attempts and hands out tokens, or answers with an error.
#[derive(Default)]
struct FakeTransport {
    sent: Vec<(Attempt, u64)>,
    next_token: u32,
    error: Option<SendError>,
    /// The host's own room for more calls (`None`: unlimited), taken by each call.
    room: Option<usize>,
}

impl Transport for FakeTransport {
    fn send(&mut self, attempt: &Attempt, timeout_ms: u64) -> Result<u32, SendError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if !self.has_room() {
            return Err(SendError::Refused(
                "a call sent while the host had no room".into(),
            ));
        }
        self.room = self.room.map(|room| room - 1);
        self.sent.push((attempt.clone(), timeout_ms));
        self.next_token += 1;
        Ok(self.next_token)
    }

    fn has_room(&self) -> bool {
        self.room.is_none_or(|room| room > 0)
    }
}

/// `delivery` settings from their JSON (valid values only: the configuration's own checks
/// are tested with it).
fn settings(delivery: &Value) -> Settings {
    let problems = Problems::default();
    let defaults = Settings::default();
    let number = |key: &str, default: usize| {
        delivery
            .get(key)
            .and_then(Value::as_u64)
            .map_or(default, |n| n as usize)
    };
    let settings = Settings {
        queue_size: number("queue_size", defaults.queue_size),
        max_queue_bytes: number("max_queue_bytes", defaults.max_queue_bytes),
        max_in_flight: number("max_in_flight", defaults.max_in_flight),
        max_in_flight_per_destination: number(
            "max_in_flight_per_destination",
            defaults.max_in_flight_per_destination,
        ),
        max_pending_retries: number("max_pending_retries", defaults.max_pending_retries),
        timeout_ms: number("timeout_ms", defaults.timeout_ms as usize) as u64,
        flush_interval_ms: number("flush_interval_ms", defaults.flush_interval_ms as usize) as u64,
        retry: delivery.get("retry").map_or(defaults.retry, |retry| {
            retry::Settings::parse(retry, "delivery.retry", &problems).unwrap()
        }),
        breaker: delivery.get("breaker").map_or(defaults.breaker, |breaker| {
            breaker::Settings::parse(breaker, "delivery.breaker", &problems).unwrap()
        }),
        dead_letter: delivery
            .get("dead_letter")
            .and_then(Value::as_str)
            .map(str::to_string),
        batch: delivery
            .get("batch")
            .map(|batch| batching::Settings::parse(batch, "delivery.batch", &problems).unwrap()),
    };
    assert!(problems.is_empty(), "{:?}", problems.messages());
    settings
}

/// A hook's policy: its name, signed with `secret` when there is one.
fn policy(name: &str, secret: Option<&str>) -> Rc<Policy> {
    let problems = Problems::default();
    let config = secret.map_or(json!({}), |secret| json!({"secret": secret}));
    let object = Object::new(&config, "config", signing::KEYS, &problems).unwrap();
    let signing = Signing::parse(&object, &problems);
    assert!(problems.is_empty(), "{:?}", problems.messages());
    Rc::new(Policy::new(name, signing, None))
}

/// One VM's delivery pipeline with a fake clock, a recording transport, log and metrics.
struct Harness {
    /// The policies of hooks `a` (cluster `a`, signed), `b` (cluster `b`) and `dead` (for
    /// dead letters).
    policies: Vec<Rc<Policy>>,
    delivery: Pipeline,
    log: Lines,
    metrics: Recorder,
    transport: FakeTransport,
    clock: ManualClock,
}

impl Harness {
    /// Hooks `a`, `b` and `dead`, and the given `delivery` settings (dead letters to `dead`
    /// unless they say otherwise).
    fn new(mut delivery: Value) -> Self {
        if delivery.get("dead_letter").is_none() {
            delivery["dead_letter"] = json!("dead");
        }
        let policies = vec![
            policy("a", Some("hunter2")),
            policy("b", None),
            policy("dead", None),
        ];
        Harness {
            delivery: Pipeline::new(settings(&delivery), policies.len(), 42),
            policies,
            log: Lines::default(),
            metrics: Recorder::default(),
            transport: FakeTransport::default(),
            clock: ManualClock::at_ms(1_700_000_000_000),
        }
    }

    fn job(&self, n: u32, hook: usize) -> Delivery {
        self.sized(n, hook, b"foobar")
    }

    fn sized(&self, n: u32, hook: usize, body: &[u8]) -> Delivery {
        let cluster = ["a", "b"].get(hook).copied().unwrap_or("a");
        let call = Call {
            destination: Destination {
                cluster: cluster.to_string(),
                host_port: format!("{cluster}:9000"),
                tls: false,
            },
            method: "POST".to_string(),
            path: "/hooks".to_string(),
            authority: format!("{cluster}:9000"),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.into(),
        };
        let policy = Rc::clone(&self.policies[hook]);
        Delivery::new(
            hook,
            policy,
            format!("id-{n}"),
            Rc::new(call),
            self.clock.now_ms(),
        )
    }

    /// The pipeline, the ports of a callback now, and the transport.
    fn parts(&mut self) -> (&mut Pipeline, Ports<'_>, &mut FakeTransport) {
        let ports = Ports {
            clock: &self.clock,
            log: &self.log,
            metrics: &self.metrics,
        };
        (&mut self.delivery, ports, &mut self.transport)
    }

    fn accept(&mut self, delivery: Delivery) -> bool {
        let (pipeline, ports, _) = self.parts();
        let accepted = pipeline.accept(delivery, &ports);
        self.check();
        accepted
    }

    fn pump(&mut self) {
        let (pipeline, ports, transport) = self.parts();
        pipeline.pump(&ports, transport);
        self.check();
    }

    /// The tick's chores, without sending.
    fn chores(&mut self) {
        let (pipeline, ports, _) = self.parts();
        pipeline.tick(&ports);
    }

    fn tick(&mut self) {
        self.chores();
        self.pump();
    }

    fn answer(&mut self, token: u32, response: Response) {
        self.answer_with(token, response, None);
    }

    fn answer_with(&mut self, token: u32, response: Response, retry_after: Option<&str>) {
        let (pipeline, ports, _) = self.parts();
        pipeline.complete(token, response, b"", retry_after, &ports);
        self.check();
    }

    /// The token of the last call sent.
    fn last(&self) -> u32 {
        self.transport.next_token
    }

    fn sent(&self) -> usize {
        self.transport.sent.len()
    }

    fn header(&self, call: usize, name: &str) -> String {
        self.transport.sent[call]
            .0
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// accepted = delivered + failed + dropped + pending, for every hook, at every step.
    fn check(&self) {
        for stat in self.delivery.stats() {
            assert_eq!(
                stat.accepted,
                stat.delivered + stat.failed + stat.dropped + stat.pending,
                "{stat:?}"
            );
        }
    }

    fn stats(&self, hook: usize) -> HookStats {
        self.delivery.stats()[hook]
    }
}

#[test]
fn the_queue_is_bounded_by_count_and_drops_the_newest() {
    let mut h = Harness::new(json!({"queue_size": 3}));
    for n in 0..5 {
        h.accept(h.job(n, 0));
    }
    assert_eq!(h.delivery.depth(), 3);
    let stats = h.stats(0);
    assert_eq!((stats.accepted, stats.dropped, stats.pending), (5, 2, 3));
    assert_eq!(h.metrics.value("event_hooks.drops.queue_full"), 2);
    // One warning for the first drop; the second is held back within the interval...
    assert_eq!(h.log.0.borrow().len(), 1);
    assert!(
        h.log
            .text()
            .contains("hook a: delivery queue full (3 jobs), dropped webhook-id id-3")
    );
    // ... and reported once the interval has passed, even though the burst is over.
    h.clock.advance_ms(1_000);
    h.chores();
    assert!(
        h.log
            .text()
            .ends_with("hook a: 1 more delivery warnings since the last one written")
    );
}

#[test]
fn the_queue_is_bounded_by_bytes_queued_waiting_or_in_flight() {
    let mut h = Harness::new(json!({"max_queue_bytes": 65_536, "max_in_flight": 1}));
    let big = vec![b'x'; 30_000];
    let one = h.sized(0, 0, &big).size();
    assert!(h.accept(h.sized(0, 0, &big)));
    assert!(h.accept(h.sized(1, 0, &big)));
    assert!(!h.accept(h.sized(2, 0, &big)));
    assert!(
        h.log
            .text()
            .contains("delivery queue full (65536 bytes), dropped webhook-id id-2")
    );
    assert_eq!(h.delivery.bytes(), 2 * one);
    // Sending does not free the bytes; the answer does.
    h.pump();
    assert_eq!(
        (
            h.delivery.depth(),
            h.delivery.in_flight(),
            h.delivery.bytes()
        ),
        (1, 1, 2 * one)
    );
    assert!(!h.accept(h.sized(3, 0, &big)));
    h.answer(1, Response::Status(200));
    assert_eq!(h.delivery.bytes(), one);
    assert!(h.accept(h.sized(4, 0, &big)));
    assert_eq!(h.metrics.value("event_hooks.drops.queue_bytes"), 2);
}

#[test]
fn in_flight_calls_are_bounded_in_total_and_per_destination() {
    let mut h = Harness::new(json!({"max_in_flight": 3, "max_in_flight_per_destination": 2}));
    for n in 0..4 {
        h.accept(h.job(n, 0));
    }
    h.accept(h.job(10, 1));
    h.pump();
    // Two to a (its own limit), one to b (the total limit), in queue order otherwise.
    let clusters: Vec<&str> = h
        .transport
        .sent
        .iter()
        .map(|(r, _)| r.destination.cluster.as_str())
        .collect();
    assert_eq!(clusters, vec!["a", "a", "b"]);
    assert_eq!((h.delivery.in_flight(), h.delivery.depth()), (3, 2));
    h.answer(1, Response::Status(200));
    h.pump();
    assert_eq!(h.header(3, "webhook-id"), "id-2");
}

#[test]
fn attempts_are_signed_and_timed_when_sent() {
    let mut h = Harness::new(json!({"timeout_ms": 1234}));
    h.accept(h.job(0, 0));
    h.pump();
    let (request, timeout) = &h.transport.sent[0];
    assert_eq!(*timeout, 1234);
    assert_eq!(request.destination.cluster, "a");
    assert_eq!(h.header(0, "webhook-id"), "id-0");
    assert_eq!(h.header(0, "webhook-timestamp"), "1700000000");
    assert_eq!(
        h.header(0, "x-kong-signature"),
        "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62"
    );
    assert_eq!(h.metrics.value("event_hooks.attempts"), 1);
}

#[test]
fn a_retry_waits_then_goes_with_the_same_id_and_a_fresh_timestamp() {
    let mut h = Harness::new(json!({"retry": {"backoff_ms": 5_000, "max_backoff_ms": 5_000}}));
    h.accept(h.job(0, 0));
    h.pump();
    h.answer(1, Response::Status(500));
    assert_eq!((h.delivery.pending_retries(), h.stats(0).retries), (1, 1));
    assert_eq!(h.metrics.value("event_hooks.retries"), 1);
    // Not before the window ends (full jitter: anywhere in [0, 5 s]).
    h.clock.advance_ms(5_001);
    h.tick();
    assert_eq!(h.sent(), 2);
    assert_eq!(h.header(1, "webhook-id"), "id-0");
    assert_ne!(
        h.header(1, "webhook-timestamp"),
        h.header(0, "webhook-timestamp")
    );
    h.answer(2, Response::Status(204));
    let stats = h.stats(0);
    assert_eq!((stats.delivered, stats.pending, stats.failed), (1, 0, 0));
}

#[test]
fn retry_after_is_honoured() {
    let mut h = Harness::new(json!({"retry": {"backoff_ms": 1, "max_backoff_ms": 1}}));
    h.accept(h.job(0, 0));
    h.pump();
    h.answer_with(1, Response::Status(429), Some("2"));
    h.clock.advance_ms(1_999);
    h.tick();
    assert_eq!(h.sent(), 1, "no attempt before Retry-After");
    h.clock.advance_ms(1);
    h.tick();
    assert_eq!(h.sent(), 2);
}

#[test]
fn every_status_class() {
    // status -> (delivered, failed, retried)
    let cases = [
        (200, (1, 0, 0)),
        (302, (0, 1, 0)),
        (404, (0, 1, 0)),
        (408, (0, 0, 1)),
        (425, (0, 0, 1)),
        (429, (0, 0, 1)),
        (503, (0, 0, 1)),
    ];
    for (status, (delivered, failed, retried)) in cases {
        let mut h = Harness::new(json!({}));
        h.accept(h.job(0, 0));
        h.pump();
        h.answer(1, Response::Status(status));
        let stats = h.stats(0);
        assert_eq!(
            (stats.delivered, stats.failed, stats.retries),
            (delivered, failed, retried),
            "{status}"
        );
    }
    let mut h = Harness::new(json!({}));
    h.accept(h.job(0, 0));
    h.pump();
    h.answer(1, Response::NoAnswer(Some("timeout".into())));
    assert_eq!(h.stats(0).retries, 1);
}

#[test]
fn out_of_attempts_or_age_a_delivery_is_given_up_as_a_dead_letter() {
    let mut h = Harness::new(
        json!({"retry": {"max_attempts": 3, "backoff_ms": 10, "max_backoff_ms": 10},
                                    "dead_letter": "dead"}),
    );
    h.accept(h.job(0, 1));
    for attempt in 1..=3 {
        h.clock.advance_ms(10);
        h.tick();
        assert_eq!(h.sent(), attempt);
        h.answer(h.last(), Response::Status(503));
    }
    let stats = h.stats(1);
    assert_eq!((stats.failed, stats.retries, stats.dead_letters), (1, 2, 1));
    let letters = h.delivery.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].hook, letters[0].attempts, letters[0].last_status),
        (1, 3, Some(503))
    );
    assert_eq!(letters[0].webhook_id, "id-0");
    assert_eq!(letters[0].last_error, "answered 503");
    assert!(
        h.log
            .text()
            .contains("hook b: gave up on webhook-id id-0 after 3 attempt(s): answered 503")
    );

    // Out of time: a retry that would land after max_age_ms.
    let mut h = Harness::new(
        json!({"retry": {"max_age_ms": 1_000, "backoff_ms": 5_000, "max_backoff_ms": 5_000}}),
    );
    h.accept(h.job(0, 0));
    h.pump();
    h.clock.advance_ms(900);
    h.answer_with(1, Response::Status(503), Some("1"));
    assert_eq!(h.stats(0).failed, 1);
    assert_eq!(h.metrics.value("event_hooks.dead_letters"), 1);
}

#[test]
fn a_dead_letter_never_makes_another() {
    let mut h = Harness::new(json!({"dead_letter": "dead"}));
    let mut job = h.job(0, 0);
    job.dead_letter = true;
    h.accept(job);
    h.pump();
    h.answer(1, Response::Status(400));
    assert_eq!(h.stats(0).failed, 1);
    assert!(h.delivery.take_dead_letters().is_empty());
}

#[test]
fn a_410_ends_the_hook_until_reload() {
    let mut h = Harness::new(json!({"max_in_flight": 1, "dead_letter": "dead"}));
    for n in 0..3 {
        h.accept(h.job(n, 0));
    }
    h.accept(h.job(9, 1));
    h.pump();
    h.answer(1, Response::Status(410));
    // The gone delivery is a dead letter; what the hook had queued is dropped, not sent.
    assert_eq!(h.delivery.take_dead_letters().len(), 1);
    let stats = h.stats(0);
    assert_eq!((stats.failed, stats.dropped, stats.pending), (1, 2, 0));
    assert!(!h.accept(h.job(5, 0)));
    assert_eq!(h.stats(0).dropped, 3);
    assert_eq!(h.metrics.value("event_hooks.drops.gone"), 3);
    // Other hooks go on.
    h.pump();
    assert_eq!(h.header(1, "webhook-id"), "id-9");
    let warnings = h.log.text().matches("410 Gone").count();
    assert_eq!(warnings, 1, "logged once: {}", h.log.text());
}

#[test]
fn the_breaker_opens_holds_probes_and_closes_without_touching_other_destinations() {
    let mut h = Harness::new(json!({"breaker": {"failures": 2, "cooldown_ms": 1_000},
                                    "retry": {"backoff_ms": 1, "max_backoff_ms": 1}}));
    h.accept(h.job(0, 0));
    h.accept(h.job(1, 0));
    h.pump();
    h.answer(1, Response::Status(503));
    h.answer(2, Response::Status(503));
    assert!(
        h.log
            .text()
            .contains("destination a: circuit breaker open after 2 consecutive failures")
    );
    assert_eq!(h.metrics.value("event_hooks.breaker.a.open"), 1);
    // While open: a's retries wait; b goes on.
    h.accept(h.job(5, 1));
    h.clock.advance_ms(10);
    h.tick();
    assert_eq!(h.sent(), 3);
    assert_eq!(h.transport.sent[2].0.destination.cluster, "b");
    // After the cooldown, one probe.
    h.clock.advance_ms(1_000);
    h.tick();
    assert_eq!(h.sent(), 4);
    assert_eq!(h.transport.sent[3].0.destination.cluster, "a");
    h.tick();
    assert_eq!(h.sent(), 4, "one probe at a time");
    // The probe succeeds: closed, the rest goes.
    h.answer(4, Response::Status(200));
    assert!(
        h.log
            .text()
            .contains("destination a: circuit breaker closed")
    );
    assert_eq!(h.metrics.value("event_hooks.breaker.a.open"), 0);
    h.tick();
    assert_eq!(h.sent(), 5);
}

#[test]
fn waiting_retries_are_bounded() {
    let mut h = Harness::new(json!({"max_pending_retries": 1, "dead_letter": "dead"}));
    h.accept(h.job(0, 0));
    h.accept(h.job(1, 0));
    h.pump();
    h.answer(1, Response::Status(500));
    h.answer(2, Response::Status(500));
    assert_eq!(h.delivery.pending_retries(), 1);
    assert_eq!(h.stats(0).dropped, 1);
    assert_eq!(h.metrics.value("event_hooks.drops.retry_queue_full"), 1);
    assert_eq!(
        h.delivery.take_dead_letters()[0].last_error,
        "dropped: retry_queue_full"
    );
}

#[test]
fn a_refused_call_fails_that_job_only() {
    let mut h = Harness::new(json!({}));
    h.transport.error = Some(SendError::Refused("BadArgument".into()));
    h.accept(h.job(0, 0));
    h.accept(h.job(1, 0));
    h.pump();
    assert_eq!((h.delivery.depth(), h.delivery.in_flight()), (0, 0));
    assert_eq!(h.stats(0).failed, 2);
    assert!(
        h.log.text().contains(
            "the host refused the call to cluster a (BadArgument); is the cluster defined?"
        )
    );
}

#[test]
fn a_busy_destination_keeps_its_jobs_in_order_for_the_next_round() {
    let mut h = Harness::new(json!({}));
    h.transport.error = Some(SendError::Busy("InternalFailure".into()));
    for n in 0..3 {
        h.accept(h.job(n, 0));
    }
    h.pump();
    assert_eq!(
        (
            h.delivery.depth(),
            h.delivery.in_flight(),
            h.stats(0).failed
        ),
        (3, 0, 0)
    );
    assert!(
        h.log
            .text()
            .contains("cluster a cannot take a call now (InternalFailure")
    );
    h.transport.error = None;
    h.pump();
    let ids: Vec<String> = (0..3).map(|call| h.header(call, "webhook-id")).collect();
    assert_eq!(ids, vec!["id-0", "id-1", "id-2"]);
}

#[test]
fn an_overloaded_answer_puts_the_job_back_without_counting_the_attempt() {
    let mut h = Harness::new(json!({}));
    h.accept(h.job(0, 0));
    h.accept(h.job(1, 0));
    h.pump();
    h.answer(1, Response::Overloaded);
    assert_eq!((h.delivery.depth(), h.delivery.in_flight()), (1, 1));
    assert!(h.log.text().contains("cluster a is overloaded"));
    h.pump();
    assert_eq!(h.sent(), 2, "not before the next tick");
    h.tick();
    assert_eq!(h.sent(), 3);
    assert_eq!(h.header(2, "webhook-id"), "id-0");
    assert_eq!(h.stats(0).retries, 0);
}

#[test]
fn gauges_sum_as_differences() {
    let mut h = Harness::new(json!({"max_in_flight": 1}));
    h.accept(h.job(0, 0));
    h.accept(h.job(1, 0));
    h.tick();
    // Gauges are reported at the start of a tick: the second tick shows the first's sends.
    h.chores();
    assert_eq!(h.metrics.value("event_hooks.queue.depth"), 1);
    assert_eq!(h.metrics.value("event_hooks.in_flight"), 1);
    assert!(h.metrics.value("event_hooks.queue.bytes") > 0);
    h.answer(1, Response::Status(200));
    h.answer(2, Response::Status(200));
    h.tick();
    h.answer(h.last(), Response::Status(200));
    h.tick();
    assert_eq!(h.metrics.value("event_hooks.queue.depth"), 0);
    assert_eq!(h.metrics.value("event_hooks.in_flight"), 0);
    assert_eq!(h.metrics.value("event_hooks.deliveries.delivered"), 2);
    // A retiring configuration takes its share back.
    h.accept(h.job(3, 0));
    h.tick();
    h.delivery.report(&h.metrics, true);
    assert_eq!(h.metrics.value("event_hooks.in_flight"), 0);
}

#[test]
fn a_call_the_host_never_answers_is_retried_after_its_timeout_and_a_late_answer_is_ignored() {
    // Kong before 3.9 never calls back for a call that failed: the slot must come back.
    let mut h = Harness::new(json!({"timeout_ms": 2_000, "max_in_flight_per_destination": 1}));
    h.accept(h.job(0, 0));
    h.accept(h.job(1, 0));
    h.pump();
    assert_eq!((h.sent(), h.delivery.in_flight()), (1, 1));
    let silent = h.last();

    h.clock.advance_ms(2_000 + ANSWER_GRACE_MS - 1);
    h.tick();
    assert_eq!(h.delivery.in_flight(), 1, "still within timeout and grace");
    assert_eq!(h.sent(), 1);

    h.clock.advance_ms(1);
    h.tick();
    assert!(!h.delivery.owns(silent));
    assert_eq!(
        h.sent(),
        2,
        "the destination's slot is free again: id-1 goes out"
    );
    assert_eq!(h.header(1, "webhook-id"), "id-1");
    assert_eq!(h.delivery.pending_retries(), 1, "id-0 waits for its retry");

    // The answer that finally comes for the expired call changes nothing.
    let before = h.stats(0);
    h.answer(silent, Response::Status(200));
    assert_eq!(h.stats(0), before);
    assert_eq!(h.delivery.pending_retries(), 1);
}

#[test]
fn the_host_room_caps_calls_in_flight_whatever_max_in_flight_says() {
    // Kong: one call in flight per root context, even with `max_in_flight: 64`.
    let mut h = Harness::new(json!({"max_in_flight": 64}));
    for n in 0..5 {
        assert!(h.accept(h.job(n, n as usize % 2)));
    }
    h.transport.room = Some(1);
    h.pump();
    assert_eq!(h.sent(), 1, "one call while the host has room for one");
    assert_eq!(h.delivery.depth(), 4, "the others keep their place");
    h.pump();
    assert_eq!(h.sent(), 1, "no room: nothing more, nothing lost");
    h.answer(h.last(), Response::Status(200));
    assert_eq!(h.sent(), 1, "an answer sends nothing by itself");
    for expected in 2..=5 {
        h.transport.room = Some(1);
        h.tick();
        assert_eq!(h.sent(), expected);
        h.answer(h.last(), Response::Status(200));
    }
    let delivered: u64 = h.delivery.stats().iter().map(|stat| stat.delivered).sum();
    assert_eq!(delivered, 5);
    assert_eq!(h.header(0, "webhook-id"), "id-0");
    assert_eq!(h.header(4, "webhook-id"), "id-4", "in order");
}

mod batches;
