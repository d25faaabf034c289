"""Delivery you can trust, through the real Envoy, against a receiver told to misbehave: down
then up, 500 then 200, slower than the timeout, a reset connection, 429 with Retry-After, 410,
never answering. Every test checks, through the admin status, that per hook
accepted = delivered + failed + dropped + pending. Then the signature schemes, checked by
verifiers written from their specs (and Standard Webhooks' reference library), the metrics in
/stats/prometheus, and secrets kept out of everything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import socket
import time

import pytest
from standardwebhooks.webhooks import Webhook as ReferenceVerifier

from conftest import (
    Attempt,
    Chaos,
    accounting,
    admin_status,
    envoy_config,
    http_get,
    prometheus,
    settled,
    stat,
    static_cluster,
    wait_until,
)

TOKEN = "admin-token-for-delivery-tests"
# Fast retries, so that each test runs in seconds.
FAST = {"max_attempts": 8, "backoff_ms": 200, "max_backoff_ms": 400, "max_age_ms": 60_000}


def event_path(attempt: Attempt) -> str:
    return json.loads(attempt.body).get("request", {}).get("path", "")


# --- the proxy ---------------------------------------------------------------------------


def config(receiver_port: int, upstream, hooks=None, delivery=None, env=None) -> dict:
    hooks = hooks or [{"name": "orders", "source": "traffic", "handler": "webhook",
                       "filter": {"request.path": {"prefix": "/orders"}},
                       "config": {"url": "http://receiver/hooks", "cluster": "receiver", "secret": "hunter2"}}]
    configuration = {
        "hooks": hooks,
        "delivery": {"flush_interval_ms": 20, "timeout_ms": 2_000, "retry": FAST,
                     "breaker": {"failures": 100, "cooldown_ms": 200}, **(delivery or {})},
        "admin": {"token": TOKEN},
    }
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver_port)]
    result = envoy_config(configuration, routes, clusters)
    if env:
        http_filters = result["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        http_filters[0]["typed_config"]["config"]["vm_config"]["environment_variables"] = {"key_values": env}
    return result


def kong_ok(attempt: Attempt, secret: str = "hunter2") -> bool:
    expected = "sha1=" + hmac.new(secret.encode(), attempt.body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(attempt.headers.get("x-kong-signature", ""), expected)


# --- chaos ---------------------------------------------------------------------------------


def test_down_then_up_every_event_arrives_once_it_is_back(start_envoy, upstream):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens: connections are refused
    envoy = start_envoy(config(port, upstream))
    proxy = envoy.listener_port()
    for n in range(5):
        assert http_get(proxy, f"/orders/{n}")[0] == 200
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.retries") >= 10, what="failed attempts")
    receiver = Chaos(port=port)
    try:
        receiver.wait(lambda attempts: len({a.id for a in attempts}) == 5, what="every event")
        counts = settled(envoy, TOKEN, "orders")
        assert (counts["delivered"], counts["failed"], counts["accepted"]) == (5, 0, 5)
        assert sorted(event_path(a) for a in receiver.attempts) == [f"/orders/{n}" for n in range(5)]
        assert all(kong_ok(a) for a in receiver.attempts)
    finally:
        receiver.close()


def test_500_then_200_retries_with_the_same_id_and_fresh_signatures(start_envoy, upstream):
    secret = "whsec_" + base64.b64encode(b"a key for standard webhooks").decode()
    hooks = [{"name": "orders", "source": "traffic", "handler": "webhook",
              "config": {"url": "http://receiver/hooks", "cluster": "receiver",
                         "signature": "standard-webhooks", "secret": secret}}]
    # The 500 asks for a second's wait, so that the retry's timestamp differs.
    receiver = Chaos(lambda attempt, n: ("status", 500, {"retry-after": "1"}) if n == 0 else 200)
    try:
        envoy = start_envoy(config(receiver.port, upstream, hooks))
        http_get(envoy.listener_port(), "/orders/1")
        receiver.wait(lambda attempts: len(attempts) == 2, what="two attempts")
        first, second = receiver.attempts
        assert first.id == second.id
        assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
        assert first.body == second.body
        for attempt in (first, second):
            assert standard_ok(attempt, secret)
            ReferenceVerifier(secret).verify(attempt.body, attempt.headers)
        assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
        counts = settled(envoy, TOKEN, "orders")
        assert (counts["delivered"], counts["retries"]) == (1, 1)
    finally:
        receiver.close()


def test_a_receiver_slower_than_the_timeout_is_retried(start_envoy, upstream):
    receiver = Chaos(lambda attempt, n: ("sleep", 1.0, 200) if n == 0 else 200)
    try:
        envoy = start_envoy(config(receiver.port, upstream, delivery={"timeout_ms": 300}))
        http_get(envoy.listener_port(), "/orders/slow")
        counts = settled(envoy, TOKEN, "orders")
        assert (counts["delivered"], counts["retries"]) == (1, 1)
        # At least once: the slow attempt reached the receiver too, with the same id.
        assert len(receiver.attempts) == 2 and receiver.attempts[0].id == receiver.attempts[1].id
    finally:
        receiver.close()


def test_a_reset_connection_is_retried(start_envoy, upstream):
    receiver = Chaos(lambda attempt, n: "reset" if n == 0 else 200)
    try:
        envoy = start_envoy(config(receiver.port, upstream))
        http_get(envoy.listener_port(), "/orders/reset")
        counts = settled(envoy, TOKEN, "orders")
        assert (counts["delivered"], counts["retries"]) == (1, 1)
        assert receiver.attempts[0].id == receiver.attempts[1].id
    finally:
        receiver.close()


def test_429_with_retry_after_2_is_not_retried_before_2_seconds(start_envoy, upstream):
    receiver = Chaos(lambda attempt, n: ("status", 429, {"retry-after": "2"}) if n == 0 else 200)
    try:
        envoy = start_envoy(config(receiver.port, upstream))
        http_get(envoy.listener_port(), "/orders/limited")
        receiver.wait(lambda attempts: len(attempts) == 2, what="the retry")
        first, second = receiver.attempts
        assert second.at - first.at >= 2.0, second.at - first.at
        assert settled(envoy, TOKEN, "orders")["delivered"] == 1
    finally:
        receiver.close()


def test_410_stops_every_delivery_to_the_hook(start_envoy, upstream):
    receiver = Chaos(lambda attempt, n: 410)
    try:
        envoy = start_envoy(config(receiver.port, upstream))
        proxy = envoy.listener_port()
        http_get(proxy, "/orders/1")
        receiver.wait(lambda attempts: len(attempts) == 1, what="the first delivery")
        wait_until(lambda: accounting(envoy, TOKEN)["orders"]["failed"] == 1, what="the 410")
        for n in range(2, 6):
            assert http_get(proxy, f"/orders/{n}")[0] == 200
        wait_until(lambda: accounting(envoy, TOKEN)["orders"]["dropped"] == 4, what="the drops")
        assert len(receiver.attempts) == 1
        state = admin_status(envoy, TOKEN)
        assert state["queue"]["drops"]["gone"] == 4
        wait_until(lambda: "410 Gone" in envoy.log(), what="the 410 in the log")
        assert envoy.log().count("410 Gone") == 1
    finally:
        receiver.close()


class Blackhole:
    """A receiver that never answers: it listens, and never accepts (no threads, no replies)."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(4096)
        self.port = self.socket.getsockname()[1]

    def close(self):
        self.socket.close()


def test_a_receiver_that_never_answers_costs_bounded_memory_and_no_traffic(start_envoy, upstream):
    receiver = Blackhole()
    try:
        delivery = {"timeout_ms": 200, "queue_size": 50, "max_in_flight": 8, "max_pending_retries": 50}
        envoy = start_envoy(config(receiver.port, upstream, delivery=delivery))
        connection = http.client.HTTPConnection("127.0.0.1", envoy.listener_port(), timeout=10)
        pad = {"x-pad": "p" * 3000}

        def flood(count: int) -> float:
            slowest = 0.0
            for n in range(count):
                started = time.monotonic()
                connection.request("GET", f"/orders/{n}", headers=pad)
                answer = connection.getresponse()
                assert (answer.status, answer.read()) == (200, b"upstream 200\n")
                slowest = max(slowest, time.monotonic() - started)
            return slowest

        flood(500)  # warm up: the queue and the retries fill
        wait_until(lambda: accounting(envoy, TOKEN)["orders"]["dropped"] > 0, what="drops")
        before = int(json.loads(envoy.get_admin("/memory"))["allocated"])
        slowest = flood(3_000)
        after = int(json.loads(envoy.get_admin("/memory"))["allocated"])
        assert after - before < 4 * 1024 * 1024, (before, after)
        assert slowest < 1.0, f"a proxied request took {slowest:.2f} s"
        counts = accounting(envoy, TOKEN)["orders"]
        assert counts["dropped"] > 3_000 and counts["pending"] <= 50 + 50 + 8
        drops = admin_status(envoy, TOKEN)["queue"]["drops"]
        assert drops["queue_full"] + drops["retry_queue_full"] == counts["dropped"]
        # Counts reach Envoy's stats from the root context's next tick (docs/src/metrics.md).
        wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.drops.queue_full") == drops["queue_full"],
                   what="the drops in /stats")
        connection.close()
    finally:
        receiver.close()


def test_dead_letters_go_to_the_dead_letter_hook(start_envoy, upstream):
    receiver = Chaos(lambda attempt, n: 400 if attempt.path == "/hooks" else 200)
    hooks = [
        {"name": "orders", "source": "traffic", "handler": "webhook", "filter": {"request.path": {"prefix": "/orders"}},
         "config": {"url": "http://receiver/hooks", "cluster": "receiver"}},
        {"name": "dead", "source": "event_hooks", "event": "dead_letter", "handler": "webhook",
         "config": {"url": "http://receiver/dead", "cluster": "receiver"}},
    ]
    try:
        envoy = start_envoy(config(receiver.port, upstream, hooks, {"dead_letter": "dead"}))
        http_get(envoy.listener_port(), "/orders/9")
        receiver.wait(lambda attempts: any(a.path == "/dead" for a in attempts), what="the dead letter")
        letter = json.loads(next(a for a in receiver.attempts if a.path == "/dead").body)
        original = next(a for a in receiver.attempts if a.path == "/hooks")
        assert letter["source"] == "event_hooks"
        assert (letter["hook"], letter["attempts"], letter["last_status"]) == ("orders", 1, 400)
        assert letter["webhook_id"] == original.id
        assert letter["last_error"] == "answered 400"
        assert letter["event"]["request"]["path"] == "/orders/9"
        counts = accounting(envoy, TOKEN)
        assert (counts["orders"]["failed"], counts["orders"]["dead_letters"]) == (1, 1)
        # The receiver has the dead letter; its 200 may still be on its way to the filter.
        assert settled(envoy, TOKEN, "dead")["delivered"] == 1
    finally:
        receiver.close()


# --- signatures ----------------------------------------------------------------------------


def standard_ok(attempt: Attempt, secret: str) -> bool:
    """Standard Webhooks, from the spec: HMAC-SHA256 with the key in whsec_<base64>, over
    "{webhook-id}.{webhook-timestamp}.{body}", base64; any of the space-separated v1 entries."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{attempt.id}.{attempt.headers['webhook-timestamp']}.".encode() + attempt.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    entries = attempt.headers.get("webhook-signature", "").split(" ")
    return any(hmac.compare_digest(entry, f"v1,{expected}") for entry in entries)


def github_ok(attempt: Attempt, secret: str) -> bool:
    """GitHub, from its documentation: sha256=<hex HMAC-SHA256(secret, body)>."""
    expected = "sha256=" + hmac.new(secret.encode(), attempt.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(attempt.headers.get("x-hub-signature-256", ""), expected)


def test_every_signature_scheme_verifies_on_the_receiving_side(start_envoy, upstream):
    old = "whsec_" + base64.b64encode(b"the old key").decode()
    new = "whsec_" + base64.b64encode(b"the new key").decode()
    env = {"GITHUB_SECRET": "zz-github-secret-zz", "NEW_KEY": new}

    def hook(name, **signing):
        return {"name": name, "source": "traffic", "handler": "webhook",
                "config": {"url": f"http://receiver/{name}", "cluster": "receiver", **signing}}

    hooks = [
        hook("kong", secret="zz-kong-secret-zz"),
        hook("standard", signature="standard-webhooks", secret_env="NEW_KEY", secrets=[old]),
        hook("github", signature="github", secret_env="GITHUB_SECRET"),
    ]
    receiver = Chaos()
    try:
        envoy = start_envoy(config(receiver.port, upstream, hooks, env=env))
        http_get(envoy.listener_port(), "/anything")
        receiver.wait(lambda attempts: len(attempts) == 3, what="three deliveries")
        by_path = {a.path: a for a in receiver.attempts}
        assert kong_ok(by_path["/kong"], "zz-kong-secret-zz")
        assert github_ok(by_path["/github"], "zz-github-secret-zz")
        standard = by_path["/standard"]
        # Rotation: one v1 signature per secret; a receiver holding either key accepts it.
        assert len(standard.headers["webhook-signature"].split(" ")) == 2
        for key in (new, old):
            assert standard_ok(standard, key)
            ReferenceVerifier(key).verify(standard.body, standard.headers)
        with pytest.raises(Exception):
            ReferenceVerifier("whsec_" + base64.b64encode(b"another key").decode()).verify(standard.body, standard.headers)
        # The secrets never show: not in the log, the admin listing, the status or the stats.
        code, listing = http_get(envoy.listener_port(), "/event-hooks", {"authorization": f"Bearer {TOKEN}"})
        seen = envoy.log() + listing.decode() + json.dumps(admin_status(envoy, TOKEN)) + envoy.get_admin("/stats")
        for secret in ("zz-kong-secret-zz", "zz-github-secret-zz", "the new key", new, old):
            assert secret not in seen
    finally:
        receiver.close()


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_show_in_prometheus(start_envoy, upstream):
    receiver = Chaos(lambda attempt, n: 500 if event_path(attempt) == "/orders/bad" else 200)
    try:
        envoy = start_envoy(config(receiver.port, upstream, delivery={"retry": {**FAST, "max_attempts": 2}}))
        proxy = envoy.listener_port()
        http_get(proxy, "/orders/good")
        http_get(proxy, "/orders/bad")
        http_get(proxy, "/elsewhere")
        wait_until(lambda: accounting(envoy, TOKEN)["orders"]["failed"] == 1, what="the failure")
        text = envoy.get_admin("/stats/prometheus")
        values = prometheus(envoy)
        assert values["event_hooks_events_traffic"] == 3
        assert values["event_hooks_hook_orders_matched"] == 2
        assert values["event_hooks_deliveries_delivered"] == 1
        assert values["event_hooks_deliveries_failed"] == 1
        assert values["event_hooks_attempts"] == 3
        assert values["event_hooks_retries"] == 1
        assert values["event_hooks_dead_letters"] == 1
        assert values["event_hooks_queue_depth"] == 0
        assert "event_hooks_in_flight" in values
        assert "# TYPE event_hooks_queue_depth gauge" in text
        assert "# TYPE event_hooks_attempts counter" in text
    finally:
        receiver.close()
