use super::*;
use crate::config;
use crate::log::Lines;
use serde_json::json;

/// A transport that records requests and hands out tokens, or answers with an error.
#[derive(Default)]
struct FakeTransport {
    sent: Vec<(Request, u64)>,
    next_token: u32,
    error: Option<SendError>,
}

impl FakeTransport {
    fn failing(error: SendError) -> Self {
        FakeTransport {
            error: Some(error),
            ..FakeTransport::default()
        }
    }
}

impl Transport for FakeTransport {
    fn send(&mut self, request: &Request, timeout_ms: u64) -> Result<u32, SendError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.sent.push((request.clone(), timeout_ms));
        self.next_token += 1;
        Ok(self.next_token)
    }
}

fn setup(delivery: serde_json::Value) -> (HookSet, Delivery) {
    let config = json!({
        "hooks": [{"name": "h", "source": "traffic", "handler": "webhook",
                   "config": {"url": "http://receiver:9000/hooks", "secret": "hunter2"}}],
        "delivery": delivery
    });
    let config = config::parse(config.to_string().as_bytes()).unwrap();
    let delivery = Delivery::new(config.delivery, config.hooks.len());
    (config.hooks, delivery)
}

fn job(n: u32) -> Job {
    sized_job(n, b"foobar")
}

/// A job for hook 0 (cluster receiver) whose body is `body`.
fn sized_job(n: u32, body: &[u8]) -> Job {
    job_to(n, 0, "receiver", body)
}

fn job_to(n: u32, hook: usize, cluster: &str, body: &[u8]) -> Job {
    Job {
        hook,
        webhook_id: format!("id-{n}"),
        draft: Rc::new(Draft {
            destination: Destination {
                cluster: cluster.to_string(),
                host_port: format!("{cluster}:80"),
                tls: false,
            },
            method: "POST".to_string(),
            path: "/hooks".to_string(),
            authority: "receiver:9000".to_string(),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.into(),
        }),
        accepted_ms: 0,
    }
}

fn check_accounting(delivery: &Delivery) {
    for stat in delivery.stats() {
        assert_eq!(
            stat.accepted,
            stat.delivered + stat.failed + stat.dropped + stat.pending,
            "{stat:?}"
        );
    }
}

#[test]
fn queue_is_bounded_by_count_and_drops_the_newest() {
    let (hooks, mut delivery) = setup(json!({"queue_size": 3}));
    let log = Lines::default();
    for n in 0..5 {
        delivery.accept(job(n), &hooks, 0, &log);
    }
    assert_eq!(delivery.depth(), 3);
    let stats = delivery.stats()[0];
    assert_eq!((stats.accepted, stats.dropped, stats.pending), (5, 2, 3));
    check_accounting(&delivery);
    // One warning for the first drop; the second is held back within the interval...
    assert_eq!(log.0.borrow().len(), 1);
    assert!(
        log.text()
            .contains("hook h: delivery queue full (3 jobs), dropped webhook-id id-3")
    );
    // ... and reported once the interval has passed, even though the burst is over.
    delivery.tick(&hooks, 500, &log);
    assert_eq!(log.0.borrow().len(), 1);
    delivery.tick(&hooks, 1_000, &log);
    assert!(
        log.text()
            .ends_with("hook h: 1 more delivery warnings since the last one written"),
        "{}",
        log.text()
    );
    delivery.tick(&hooks, 5_000, &log);
    assert_eq!(log.0.borrow().len(), 2);
}

#[test]
fn queue_is_bounded_by_bytes_queued_or_in_flight() {
    let (hooks, mut delivery) = setup(json!({"max_queue_bytes": 65_536, "max_in_flight": 1}));
    let log = Lines::default();
    let mut transport = FakeTransport::default();
    let big = vec![b'x'; 30_000];
    let one = sized_job(0, &big).size();
    assert!(one > 30_000 && one < 30_200, "{one}"); // the body, and the headers and path
    assert!(delivery.accept(sized_job(0, &big), &hooks, 0, &log));
    assert!(delivery.accept(sized_job(1, &big), &hooks, 0, &log));
    assert!(!delivery.accept(sized_job(2, &big), &hooks, 0, &log));
    assert!(
        log.text()
            .contains("delivery queue full (65536 bytes), dropped webhook-id id-2")
    );
    assert_eq!(delivery.bytes(), 2 * one);
    // Sending does not free the bytes; the answer does.
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!(
        (delivery.depth(), delivery.in_flight(), delivery.bytes()),
        (1, 1, 2 * one)
    );
    assert!(!delivery.accept(sized_job(3, &big), &hooks, 0, &log));
    delivery.complete(1, Response::Status(200), b"", &hooks, 0, &log);
    assert_eq!(delivery.bytes(), one);
    assert!(delivery.accept(sized_job(4, &big), &hooks, 0, &log));
    check_accounting(&delivery);
}

#[test]
fn pump_respects_max_in_flight_and_sends_signed_requests() {
    let (hooks, mut delivery) = setup(json!({"max_in_flight": 2, "timeout_ms": 1234}));
    let log = Lines::default();
    let mut transport = FakeTransport::default();
    for n in 0..5 {
        delivery.accept(job(n), &hooks, 0, &log);
    }
    delivery.pump(&hooks, 1_700_000_000_000, &mut transport, &log);
    assert_eq!(transport.sent.len(), 2);
    assert_eq!((delivery.in_flight(), delivery.depth()), (2, 3));
    let (request, timeout) = &transport.sent[0];
    assert_eq!(*timeout, 1234);
    assert_eq!(request.destination.cluster, "receiver");
    assert!(
        request
            .headers
            .contains(&("webhook-id".into(), "id-0".into()))
    );
    assert!(
        request
            .headers
            .contains(&("webhook-timestamp".into(), "1700000000".into()))
    );
    assert!(request.headers.contains(&(
        "x-kong-signature".into(),
        "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62".into()
    )));
    // Pumping again while full sends nothing more.
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!(transport.sent.len(), 2);
    // A response frees a slot; the next pump fills it, in order.
    delivery.complete(1, Response::Status(200), b"", &hooks, 0, &log);
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!(transport.sent.len(), 3);
    assert!(
        transport.sent[2]
            .0
            .headers
            .contains(&("webhook-id".into(), "id-2".into()))
    );
    check_accounting(&delivery);
}

#[test]
fn outcomes_are_counted_and_failures_logged() {
    let (hooks, mut delivery) = setup(json!({}));
    let log = Lines::default();
    let mut transport = FakeTransport::default();
    for n in 0..3 {
        delivery.accept(job(n), &hooks, 0, &log);
    }
    delivery.pump(&hooks, 0, &mut transport, &log);
    delivery.complete(1, Response::Status(204), b"", &hooks, 0, &log);
    delivery.complete(
        2,
        Response::Status(500),
        b"oops\r\nline two",
        &hooks,
        0,
        &log,
    );
    let timeout = Response::NoAnswer(Some("timeout".into()));
    delivery.complete(3, timeout, b"", &hooks, 5_000, &log);
    delivery.complete(99, Response::Status(200), b"", &hooks, 0, &log);
    let stats = delivery.stats()[0];
    assert_eq!((stats.delivered, stats.failed, stats.pending), (1, 2, 0));
    assert_eq!(delivery.bytes(), 0);
    check_accounting(&delivery);
    let text = log.text();
    assert!(
        text.contains("hook h: delivery of webhook-id id-1 failed: answered 500: oops  line two"),
        "{text}"
    );
    assert!(
        text.contains("hook h: delivery of webhook-id id-2 failed: no answer (timeout)"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
}

#[test]
fn a_refused_call_fails_that_job_only() {
    let (hooks, mut delivery) = setup(json!({}));
    let log = Lines::default();
    let mut transport = FakeTransport::failing(SendError::Refused("BadArgument".into()));
    delivery.accept(job(0), &hooks, 0, &log);
    delivery.accept(job(1), &hooks, 0, &log);
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!((delivery.depth(), delivery.in_flight()), (0, 0));
    assert_eq!(delivery.stats()[0].failed, 2);
    check_accounting(&delivery);
    assert!(log.text().contains(
        "failed: the host refused the call to cluster receiver (BadArgument); is the cluster defined?"
    ));
}

#[test]
fn a_busy_destination_keeps_its_jobs_in_order_for_the_next_round() {
    let (hooks, mut delivery) = setup(json!({}));
    let log = Lines::default();
    let mut transport = FakeTransport::failing(SendError::Busy("InternalFailure".into()));
    for n in 0..3 {
        delivery.accept(job(n), &hooks, 0, &log);
    }
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!((delivery.depth(), delivery.in_flight()), (3, 0));
    assert_eq!(delivery.stats()[0].failed, 0);
    assert!(
        log.text()
            .contains("cluster receiver cannot take a call now (InternalFailure"),
        "{}",
        log.text()
    );
    // The destination recovers: everything goes, in the original order.
    transport.error = None;
    delivery.pump(&hooks, 100, &mut transport, &log);
    let ids: Vec<String> = transport
        .sent
        .iter()
        .map(|(request, _)| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == "webhook-id")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(ids, vec!["id-0", "id-1", "id-2"]);
    check_accounting(&delivery);
}

#[test]
fn a_busy_destination_does_not_hold_up_others() {
    let config = json!({"hooks": [
        {"name": "a", "source": "traffic", "handler": "webhook", "config": {"url": "http://busy/"}},
        {"name": "b", "source": "traffic", "handler": "webhook", "config": {"url": "http://free/"}}
    ]});
    let config = config::parse(config.to_string().as_bytes()).unwrap();
    let hooks = config.hooks;
    let mut delivery = Delivery::new(config.delivery, hooks.len());
    let log = Lines::default();
    struct OneBusy(Vec<String>);
    impl Transport for OneBusy {
        fn send(&mut self, request: &Request, _: u64) -> Result<u32, SendError> {
            if request.destination.cluster == "busy" {
                return Err(SendError::Busy("InternalFailure".into()));
            }
            self.0.push(request.destination.cluster.clone());
            Ok(self.0.len() as u32)
        }
    }
    for n in 0..4 {
        let hook = (n % 2) as usize;
        let next = job_to(n, hook, ["busy", "free"][hook], b"{}");
        delivery.accept(next, &hooks, 0, &log);
    }
    let mut transport = OneBusy(Vec::new());
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!(transport.0, vec!["free", "free"]);
    assert_eq!((delivery.depth(), delivery.in_flight()), (2, 2));
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

#[test]
fn an_overloaded_answer_puts_the_job_back_and_rests_the_cluster_until_the_tick() {
    let (hooks, mut delivery) = setup(json!({}));
    let log = Lines::default();
    let mut transport = FakeTransport::default();
    delivery.accept(job(0), &hooks, 0, &log);
    delivery.accept(job(1), &hooks, 0, &log);
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!(transport.sent.len(), 2);
    delivery.complete(1, Response::Overloaded, b"", &hooks, 0, &log);
    assert_eq!((delivery.depth(), delivery.in_flight()), (1, 1));
    assert!(
        log.text().contains("cluster receiver is overloaded"),
        "{}",
        log.text()
    );
    // Not sent again before the next tick...
    delivery.pump(&hooks, 0, &mut transport, &log);
    assert_eq!(transport.sent.len(), 2);
    // ... then it is, with the same webhook-id.
    delivery.tick(&hooks, 20, &log);
    delivery.pump(&hooks, 20, &mut transport, &log);
    assert_eq!(transport.sent.len(), 3);
    assert!(
        transport.sent[2]
            .0
            .headers
            .contains(&("webhook-id".into(), "id-0".into()))
    );
    let stats = delivery.stats()[0];
    assert_eq!((stats.failed, stats.pending), (0, 2));
    check_accounting(&delivery);
}
