"""The filter in the real Envoy: what a receiver gets, byte for byte, and what Envoy refuses."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import time
from datetime import datetime, timezone

from conftest import ENVOY, ROOT, Envoy, envoy_config, http_get, static_cluster, wait_until

SECRET = "hunter2"
UUID_V7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def kong_signature(secret: str, body: bytes) -> str:
    """X-Kong-Signature as Kong documents it: sha1=<hex HMAC-SHA1(secret, raw body)>."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def traffic_config(receiver_cluster: str = "receiver") -> dict:
    return {
        "hooks": [
            {
                "name": "orders-5xx",
                "source": "traffic",
                "event": "request",
                "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
                "handler": "webhook",
                "snooze": 0,
                "on_change": False,
                "config": {
                    "url": "http://receiver:9000/hooks",
                    "cluster": receiver_cluster,
                    "headers": {"x-team": "payments"},
                    "secret": SECRET,
                },
            },
            # Sees every request: its delivery proves the filter has finished with a request.
            {"name": "all", "source": "traffic", "handler": "webhook", "config": {"url": "http://receiver/all"}},
        ],
        # One call at a time: a request's deliveries arrive in hook order.
        "delivery": {"queue_size": 1000, "max_in_flight": 1, "timeout_ms": 5000, "flush_interval_ms": 20},
    }


def proxy_setup(receiver, upstream, configuration=None):
    routes = [
        {"name": "down", "match": {"prefix": "/down"}, "route": {"cluster": "dead"}},
        {"name": "orders_route", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
    ]
    clusters = [
        static_cluster("upstream", upstream.port),
        static_cluster("receiver", receiver.port),
        # Nothing listens on port 1: connections are refused.
        static_cluster("dead", 1),
    ]
    return envoy_config(configuration or traffic_config(), routes, clusters)


def tagged(tag: str):
    return lambda delivery: delivery.json().get("request", {}).get("headers", {}).get("x-test-id") == tag


def test_a_5xx_delivers_a_signed_kong_webhook_and_a_200_does_not(start_envoy, receiver, upstream):
    envoy = start_envoy(proxy_setup(receiver, upstream))
    port = envoy.listener_port()

    # A 200 on /orders: seen by the filter (the catch-all hook delivers it) but not delivered
    # by orders-5xx.
    status, body = http_get(port, "/orders/1", {"x-test-id": "ok-1"})
    assert (status, body) == (200, b"upstream 200\n")
    receiver.wait_for(lambda d: d.path == "/all" and tagged("ok-1")(d), what="the 200's catch-all delivery")

    # A 503 on /orders, with credentials that must not leak.
    before = int(time.time())
    status, body = http_get(
        port,
        "/orders/2?status=503&x=1",
        {"x-test-id": "err-1", "authorization": "Bearer top-secret", "cookie": "sid=1", "x-forwarded-for": "1.2.3.4"},
    )
    assert (status, body) == (503, b"upstream 503\n")
    delivery = receiver.wait_for(lambda d: d.path == "/hooks" and tagged("err-1")(d), what="the 503's delivery")
    receiver.wait_for(lambda d: d.path == "/all" and tagged("err-1")(d), what="the 503's catch-all delivery")

    # Exactly one orders-5xx delivery, for the 503: none for the 200.
    hooks = receiver.matching(lambda d: d.path == "/hooks")
    assert [tagged("err-1")(d) for d in hooks] == [True]

    # Headers: Kong's, plus the delivery id and timestamp.
    headers = delivery.headers
    assert delivery.method == "POST"
    assert headers["host"] == "receiver:9000"
    assert headers["content-type"] == "application/json"
    assert headers["x-team"] == "payments"
    assert headers["user-agent"].startswith("event-hooks/")
    assert UUID_V7.match(headers["webhook-id"]), headers["webhook-id"]
    assert before - 1 <= int(headers["webhook-timestamp"]) <= time.time() + 1
    assert headers["x-kong-signature"] == kong_signature(SECRET, delivery.body)
    assert headers["x-kong-signature"] != kong_signature("wrong", delivery.body)

    # Body: Kong's shape (the event data plus source and event), with every traffic field.
    data = delivery.json()
    assert data["source"] == "traffic" and data["event"] == "request"
    request, response = data["request"], data["response"]
    assert request["method"] == "GET"
    assert request["path"] == "/orders/2"
    assert request["query"] == "status=503&x=1"
    assert request["host"] == f"127.0.0.1:{port}"
    assert request["scheme"] == "http"
    assert request["id"] == request["headers"]["x-request-id"]
    assert request["headers"]["authorization"] == "[redacted]"
    assert request["headers"]["cookie"] == "[redacted]"
    assert request["headers"]["x-test-id"] == "err-1"
    assert "top-secret" not in delivery.body.decode()
    assert response["status"] == 503
    assert response["flags"] == ""
    assert response["code_details"] == "via_upstream"
    assert response["headers"]["content-type"] == "text/plain"
    assert data["upstream"] == {"address": f"127.0.0.1:{upstream.port}", "cluster": "upstream"}
    assert data["route"] == "orders_route"
    assert isinstance(data["latency_ms"], int) and 0 <= data["latency_ms"] < 10_000
    assert data["client"] == {"ip": "127.0.0.1"}  # the peer, not x-forwarded-for
    started = datetime.fromisoformat(data["started_at"].replace("Z", "+00:00"))
    assert abs(started.timestamp() - before) < 5 and started.tzinfo == timezone.utc

    # Envoy keeps answering, unchanged.
    for n in range(20):
        assert http_get(port, f"/other/{n}") == (200, b"upstream 200\n")


def test_every_delivery_has_its_own_webhook_id(start_envoy, receiver, upstream):
    envoy = start_envoy(proxy_setup(receiver, upstream))
    port = envoy.listener_port()
    for n in range(10):
        assert http_get(port, f"/orders/{n}?status=500", {"x-test-id": f"n{n}"})[0] == 500
    wait_until(lambda: len(receiver.matching(lambda d: d.path == "/hooks")) == 10, what="10 deliveries")
    ids = [d.headers["webhook-id"] for d in receiver.matching(lambda d: d.path == "/hooks")]
    assert len(set(ids)) == 10


def test_a_refused_upstream_connection_carries_envoy_flags(start_envoy, receiver, upstream):
    envoy = start_envoy(proxy_setup(receiver, upstream))
    port = envoy.listener_port()
    status, _ = http_get(port, "/down/x", {"x-test-id": "down"})
    assert status == 503
    data = receiver.wait_for(lambda d: d.path == "/all" and tagged("down")(d)).json()
    assert data["response"]["status"] == 503
    assert data["response"]["flags"] == "UF"
    assert data["response"]["code_details"].startswith("upstream_reset_before_response_started")
    assert data["upstream"]["cluster"] == "dead"
    assert data["route"] == "down"


def test_a_delivery_to_an_undefined_cluster_fails_without_hurting_traffic(start_envoy, receiver, upstream):
    envoy = start_envoy(proxy_setup(receiver, upstream, traffic_config(receiver_cluster="no_such_cluster")))
    port = envoy.listener_port()
    assert http_get(port, "/orders/1?status=500", {"x-test-id": "lost"})[0] == 500
    wait_until(lambda: "the host refused the call to cluster no_such_cluster" in envoy.log(), what="the failure in the log")
    # The catch-all hook still delivers, and traffic still flows.
    receiver.wait_for(lambda d: d.path == "/all" and tagged("lost")(d))
    assert http_get(port, "/fine") == (200, b"upstream 200\n")
    assert SECRET not in envoy.log()


INVALID = {
    "hooks": [
        {"source": "traffic", "handler": "webhook", "config": {"url": "http://r/"}},
        {"source": "traffic", "handler": "webhook", "config": {"headers": {"x": "y"}}},
    ]
}


def test_an_invalid_configuration_is_refused_with_its_json_path(tmp_path, receiver, upstream):
    envoy = Envoy(proxy_setup(receiver, upstream, INVALID), tmp_path)
    process = subprocess.run(envoy.command(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    log = process.stdout + process.stderr + envoy.log()
    assert process.returncode != 0
    assert "invalid configuration: hooks[1].config.url: missing required field" in log
    assert "Unable to create Wasm plugin event_hooks" in log


def test_validate_mode_runs_the_filter_configuration(tmp_path, receiver, upstream):
    envoy = Envoy(proxy_setup(receiver, upstream, INVALID), tmp_path)
    bad = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(envoy.config_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "hooks[1].config.url: missing required field" in bad.stdout + bad.stderr
    broken_json = Envoy(proxy_setup(receiver, upstream, '{"hooks": ['), tmp_path)
    bad = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(broken_json.config_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "invalid configuration: $: invalid JSON: EOF while parsing" in bad.stdout + bad.stderr


def test_the_shipped_envoy_yaml_validates(demo_certs):
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", "envoy/envoy.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "configuration 'envoy/envoy.yaml' OK" in output
    # The access logger, and the HTTP filter serving the admin endpoints.
    assert "configured 2 hook(s) as an Envoy access logger" in output
    assert "configured 2 hook(s);" in output


def test_secrets_never_reach_the_log(start_envoy, receiver, upstream):
    configuration = traffic_config()
    configuration["hooks"][0]["config"]["secret"] = "zz-unique-secret-zz"
    envoy = start_envoy(proxy_setup(receiver, upstream, configuration))
    port = envoy.listener_port()
    receiver.status = 404  # every delivery fails for good and is logged
    http_get(port, "/orders/1?status=500", {"x-test-id": "s"})
    wait_until(lambda: "gave up on webhook-id" in envoy.log(), what="the failure log line")
    assert "zz-unique-secret-zz" not in envoy.log()
