"""Batched deliveries through the real Envoy (`config.batch`, `delivery.batch`): a thousand
requests arrive as a few signed calls holding every event once; a batch is retried whole, with
one webhook-id and the same bytes, and counted per event; a batch that does not fill waits
`max_delay_ms` and no less, and is sent even when that is longer than `retry.max_age_ms`;
`max_bytes` closes a batch and a larger event goes alone; a hook opts out of `delivery.batch`;
Envoy's /stats count the batches and the events in them; a batch given up is one dead letter;
and a configuration change sends the open batch at once."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

from standardwebhooks.webhooks import Webhook as ReferenceVerifier

from conftest import (
    accounting,
    admin_status,
    envoy_config,
    get_many,
    lds_config,
    listener,
    prometheus,
    settled,
    stat,
    static_cluster,
    wait_until,
    write_lds,
)

TOKEN = "admin-token-for-batch-tests"
SECRET = "whsec_" + base64.b64encode(b"a key for the batch tests").decode()
FAST = {"max_attempts": 5, "backoff_ms": 100, "max_backoff_ms": 200, "max_age_ms": 60_000}
ROUTES = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]


def hook(name: str, **config) -> dict:
    """A traffic hook posting to the receiver at /<name>, signed with Standard Webhooks."""
    return {"name": name, "source": "traffic", "handler": "webhook",
            "config": {"url": f"http://receiver/{name}", "cluster": "receiver",
                       "signature": "standard-webhooks", "secret": SECRET, **config}}


def configuration(hooks: list[dict], delivery=None) -> dict:
    return {
        "hooks": hooks,
        "delivery": {"flush_interval_ms": 20, "retry": FAST, **(delivery or {})},
        "admin": {"token": TOKEN},
    }


def clusters(chaos, upstream) -> list[dict]:
    return [static_cluster("upstream", upstream.port), static_cluster("receiver", chaos.port)]


def setup(chaos, upstream, hooks: list[dict], delivery=None) -> dict:
    return envoy_config(configuration(hooks, delivery), ROUTES, clusters(chaos, upstream))


def paths_in(attempt) -> list[str]:
    """The request paths of the events a batch holds (its body is a JSON array)."""
    events = json.loads(attempt.body)
    assert isinstance(events, list), attempt.body[:200]
    return [event["request"]["path"] for event in events]


def verified(attempt) -> bool:
    """The call is signed over its exact body (Standard Webhooks' reference library)."""
    ReferenceVerifier(SECRET).verify(attempt.body, attempt.headers)
    return True


def events_at(chaos, path: str) -> int:
    return sum(len(json.loads(a.body)) for a in chaos.at(path))


def test_a_thousand_requests_arrive_as_a_few_signed_batches_holding_every_event_once(start_envoy, upstream, chaos):
    envoy = start_envoy(setup(chaos, upstream, [hook("audit", batch={"max_size": 100, "max_delay_ms": 1000})]))
    sent = [f"/items/{n}" for n in range(1000)]
    get_many(envoy.listener_port(), sent)
    chaos.wait(lambda attempts: sum(len(paths_in(a)) for a in attempts) >= 1000, what="1,000 events")
    counts = settled(envoy, TOKEN, "audit")
    calls = list(chaos.attempts)
    assert len(calls) <= 15, [len(paths_in(a)) for a in calls]
    assert stat(envoy, "wasmcustom.event_hooks.attempts") == len(calls)  # no call the receiver missed
    received = Counter(path for call in calls for path in paths_in(call))
    assert received == Counter(sent)  # every event, exactly once
    assert all(len(paths_in(call)) <= 100 for call in calls)
    assert len({call.id for call in calls}) == len(calls)  # one webhook-id per batch
    for call in calls:
        assert call.path == "/audit"
        assert call.headers["content-type"] == "application/json"
        assert verified(call)
    assert (counts["accepted"], counts["delivered"], counts["batches"]) == (1000, 1000, len(calls))
    queue = admin_status(envoy, TOKEN)["queue"]
    assert (queue["batching"], queue["depth"], queue["bytes"], sum(queue["drops"].values())) == (0, 0, 0, 0), queue


def test_a_batch_answered_500_then_200_is_sent_twice_with_one_id_and_counted_per_event(start_envoy, upstream, chaos):
    # Batches close on size only (the delay is longer than the test): 150 events, 3 batches.
    chaos.script = lambda attempt, n: 500 if n == 0 else 200
    envoy = start_envoy(setup(chaos, upstream, [hook("audit", batch={"max_size": 50, "max_delay_ms": 60_000})]))
    sent = [f"/retried/{n}" for n in range(150)]
    get_many(envoy.listener_port(), sent)
    chaos.wait(lambda attempts: len(attempts) == 6, what="two attempts of each of three batches")
    by_id: dict[str, list] = {}
    for attempt in chaos.attempts:
        by_id.setdefault(attempt.id, []).append(attempt)
    assert len(by_id) == 3
    for first, second in by_id.values():
        assert first.body == second.body
        assert len(paths_in(first)) == 50
        assert verified(first) and verified(second)
    assert Counter(path for first, _ in by_id.values() for path in paths_in(first)) == Counter(sent)
    counts = settled(envoy, TOKEN, "audit")
    assert counts == {"accepted": 150, "delivered": 150, "failed": 0, "dropped": 0, "pending": 0,
                      "retries": 3, "dead_letters": 0, "batches": 3}


def test_a_batch_that_does_not_fill_waits_max_delay_ms_and_no_less(start_envoy, upstream, chaos):
    delay = 1.0
    envoy = start_envoy(setup(chaos, upstream, [hook("audit", batch={"max_size": 100, "max_delay_ms": int(delay * 1000)})]))
    port = envoy.listener_port()
    sent = [f"/few/{n}" for n in range(5)]
    started = time.monotonic()  # no event can have been accepted before this
    get_many(port, sent)
    answered = time.monotonic()
    chaos.wait(lambda attempts: len(attempts) >= 1, what="the batch")
    assert settled(envoy, TOKEN, "audit")["batches"] == 1
    [call] = chaos.attempts
    assert paths_in(call) == sent
    assert call.at - started >= delay - 0.05, call.at - started
    # About max_delay_ms after the last event at most: the sending rounds are 20 ms apart.
    assert call.at - answered < delay + 1.5, call.at - answered


def test_a_batch_that_waits_longer_than_max_age_ms_is_still_sent(start_envoy, upstream, chaos):
    # Both in range; retry.max_age_ms counts from when the batch closes, not from its first event.
    audit = hook("audit", batch={"max_size": 100, "max_delay_ms": 1500}, retry={"max_age_ms": 1000})
    envoy = start_envoy(setup(chaos, upstream, [audit]))
    sent = [f"/patient/{n}" for n in range(3)]
    get_many(envoy.listener_port(), sent)
    counts = settled(envoy, TOKEN, "audit")
    assert (counts["delivered"], counts["failed"]) == (3, 0), counts
    assert [paths_in(call) for call in chaos.attempts] == [sent]


def test_max_bytes_closes_a_batch_and_a_larger_event_goes_alone(start_envoy, upstream, chaos):
    limit = 4096
    envoy = start_envoy(setup(chaos, upstream, [hook("audit", batch={"max_bytes": limit, "max_delay_ms": 300})]))
    port = envoy.listener_port()
    small = [f"/small/{n}" for n in range(8)]
    get_many(port, small[:5], {"x-pad": "p" * 800})
    get_many(port, ["/large"], {"x-pad": "p" * (2 * limit)})
    get_many(port, small[5:], {"x-pad": "p" * 800})
    counts = settled(envoy, TOKEN, "audit")
    calls = list(chaos.attempts)
    assert Counter(path for call in calls for path in paths_in(call)) == Counter([*small, "/large"])
    assert counts["batches"] == len(calls)
    # Within max_bytes, several to a call; the event larger than max_bytes alone, in an array.
    assert all(len(call.body) <= limit for call in calls if paths_in(call) != ["/large"])
    assert [len(call.body) > limit for call in calls if "/large" in paths_in(call)] == [True]
    assert max(len(paths_in(call)) for call in calls) >= 2


def test_delivery_batch_is_the_default_and_a_hook_opts_out_with_false(start_envoy, upstream, chaos):
    hooks = [hook("default"), hook("single", batch=False), hook("own", batch={"max_size": 5, "max_delay_ms": 60_000})]
    delivery = {"batch": {"max_size": 10, "max_delay_ms": 60_000}}
    envoy = start_envoy(setup(chaos, upstream, hooks, delivery))
    sent = [f"/mixed/{n}" for n in range(10)]
    get_many(envoy.listener_port(), sent)
    chaos.wait(lambda attempts: len(attempts) == 1 + 10 + 2, what="every call")
    default, single, own = chaos.at("/default"), chaos.at("/single"), chaos.at("/own")
    assert [paths_in(a) for a in default] == [sent]
    # Calls go side by side: the two batches may arrive in either order.
    assert sorted(paths_in(a) for a in own) == [sent[:5], sent[5:]]
    # Opted out: one JSON object per call, each its own webhook-id.
    objects = [json.loads(a.body) for a in single]
    assert all(isinstance(event, dict) for event in objects)
    assert sorted(event["request"]["path"] for event in objects) == sorted(sent)
    assert len({a.id for a in single}) == 10
    assert all(verified(a) for a in chaos.attempts)
    counts = accounting(envoy, TOKEN)
    assert {name: counts[name]["batches"] for name in counts} == {"default": 1, "single": 0, "own": 2}


def test_envoy_stats_count_the_batches_and_the_events_in_them(start_envoy, upstream, chaos):
    hooks = [hook("audit", batch={"max_size": 10, "max_delay_ms": 200}), hook("single", batch=False)]
    envoy = start_envoy(setup(chaos, upstream, hooks))
    get_many(envoy.listener_port(), [f"/counted/{n}" for n in range(25)])
    # 10, 10, then 5 when their wait is over; and 25 calls to the hook that does not batch.
    chaos.wait(lambda attempts: events_at(chaos, "/audit") == 25 and len(attempts) == 3 + 25, what="every call")
    settled(envoy, TOKEN, "audit")
    settled(envoy, TOKEN, "single")
    assert stat(envoy, "wasmcustom.event_hooks.batches") == 3
    assert stat(envoy, "wasmcustom.event_hooks.batches.events") == 25
    # Calls are counted as calls, deliveries as events.
    assert stat(envoy, "wasmcustom.event_hooks.attempts") == 3 + 25
    assert stat(envoy, "wasmcustom.event_hooks.deliveries.delivered") == 50
    values = prometheus(envoy)
    assert (values["event_hooks_batches"], values["event_hooks_batches_events"]) == (3, 25)
    assert "# TYPE event_hooks_batches counter" in envoy.get_admin("/stats/prometheus")


def test_a_batch_given_up_is_one_dead_letter_holding_its_events(start_envoy, upstream, chaos):
    chaos.script = lambda attempt, n: 400 if attempt.path == "/audit" else 200
    hooks = [hook("audit", batch={"max_size": 4, "max_delay_ms": 60_000}),
             {**hook("dead"), "source": "event_hooks", "event": "dead_letter"}]
    envoy = start_envoy(setup(chaos, upstream, hooks, {"dead_letter": "dead"}))
    get_many(envoy.listener_port(), [f"/refused/{n}" for n in range(4)])
    chaos.wait(lambda attempts: chaos.at("/dead"), what="the dead letter")
    counts = settled(envoy, TOKEN, "audit")
    assert (counts["failed"], counts["delivered"], counts["batches"], counts["dead_letters"]) == (4, 0, 1, 1)
    settled(envoy, TOKEN, "dead")
    [batch], [dead] = chaos.at("/audit"), chaos.at("/dead")
    letter = json.loads(dead.body)
    assert (letter["hook"], letter["webhook_id"], letter["attempts"], letter["last_status"]) == ("audit", batch.id, 1, 400)
    assert (letter["events"], letter["event"]) == (4, json.loads(batch.body))


def test_a_configuration_change_sends_the_open_batch_at_once(tmp_path, start_envoy, upstream, chaos):
    lds = tmp_path / "lds.json"
    waiting = {"max_size": 100, "max_delay_ms": 60_000}  # longer than the test may take

    def proxy(name: str) -> dict:
        return listener(configuration([hook(name, batch=waiting)]), ROUTES)

    write_lds(lds, [proxy("before")])
    envoy = start_envoy(lds_config(lds, clusters(chaos, upstream)), extra=("--drain-time-s", "1"))
    port = wait_until(lambda: envoy.listener_port(), what="the listener")
    sent = [f"/before/{n}" for n in range(3)]
    get_many(port, sent)
    # The status shows the events waiting in the open batch, pending.
    state = wait_until(lambda: (state := admin_status(envoy, TOKEN))["queue"]["batching"] == 3 and state, what="the open batch")
    assert (state["hooks"]["before"]["pending"], state["hooks"]["before"]["batches"], state["queue"]["depth"]) == (3, 0, 0)
    changed = time.monotonic()
    write_lds(lds, [proxy("after")])
    chaos.wait(lambda attempts: len(attempts) >= 1, timeout=30, what="the open batch")
    [call] = chaos.attempts
    assert (call.path, paths_in(call)) == ("/before", sent)
    assert verified(call)
    assert call.at - changed < 15, call.at - changed  # at once, not after max_delay_ms
