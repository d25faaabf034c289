"""Every source through the real Envoy: entity changes on an admin API (crud, dao:crud), an
upstream going down and coming back (balancer/health, two workers), a 429 from Envoy's local
rate limit (rate-limiting-advanced); and the log handler, and snooze across workers. The
balancer and rate-limit tests run with each attachment (the `attachment` fixture): the access
logger gives the same deliveries as the HTTP filter for the same traffic."""

from __future__ import annotations

import json
import socket
import uuid
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import BackgroundServer, envoy_config, http_get, static_cluster, wait_until


def hook(name: str, source: str, path: str, event: str | None = None, **extra) -> dict:
    hook = {"name": name, "source": source, "handler": "webhook",
            "config": {"url": f"http://receiver{path}", "cluster": "receiver"}, **extra}
    if event:
        hook["event"] = event
    return hook


CATCH_ALL = hook("all", "traffic", "/all")


def config(receiver, upstream_port: int, hooks: list[dict], delivery=None, after=(), attachment="http_filter", **top) -> dict:
    configuration = {"hooks": hooks, "delivery": {"flush_interval_ms": 20, "max_in_flight": 1, **(delivery or {})}, **top}
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream_port), static_cluster("receiver", receiver.port)]
    return envoy_config(configuration, routes, clusters, after=after, attachment=attachment)


def event_of(delivery) -> str:
    return delivery.json()["event"]


# --- an admin API -----------------------------------------------------------------------


class AdminApi(BackgroundServer):
    """A REST API in Kong's style: POST /consumers creates (201, the entity), PATCH
    /consumers/{id} updates (200), DELETE /consumers/{id} deletes (204, no body); POST /big
    answers an entity larger than the test's max_body_bytes."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self):
                length = int(self.headers.get("content-length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _answer(self, status: int, entity=None):
                body = json.dumps(entity).encode() if entity is not None else b""
                self.send_response(status)
                if body:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                sent = self._body()
                if self.path == "/big":
                    return self._answer(201, {"id": "b1", "blob": "x" * 500})
                self._answer(201, {"id": str(uuid.uuid4()), **sent})

            def do_PATCH(self):  # noqa: N802
                self._answer(200, {"id": self.path.rsplit("/", 1)[-1], **self._body()})

            def do_DELETE(self):  # noqa: N802
                self._answer(204)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


@pytest.fixture
def admin_api():
    server = AdminApi()
    yield server
    server.close()


def test_an_admin_api_create_and_delete_give_crud_events(start_envoy, receiver, admin_api):
    hooks = [
        hook("by-schema", "crud", "/schema", "consumers"),
        hook("on-create", "crud", "/create", "consumers:create"),
        hook("dao", "dao:crud", "/dao"),
        hook("on-delete", "crud", "/delete", "consumers:delete"),
    ]
    envoy = start_envoy(config(receiver, admin_api.port, hooks, crud={"match": {"upstream.cluster": "upstream"}}))
    port = envoy.listener_port()
    status, answer = http_get(port, "/consumers", {"content-type": "application/json"}, "POST", b'{"username": "bob"}')
    assert status == 201
    entity = json.loads(answer)
    created = receiver.wait_for(lambda d: d.path == "/create")
    assert created.json() == {"source": "crud", "event": "consumers:create", "operation": "create",
                              "schema": "consumers", "entity": entity, "old_entity": None}
    assert receiver.wait_for(lambda d: d.path == "/schema").json()["event"] == "consumers"
    assert receiver.wait_for(lambda d: d.path == "/dao").json()["event"] == "create"

    assert http_get(port, f"/consumers/{entity['id']}", method="DELETE")[0] == 204
    deleted = receiver.wait_for(lambda d: d.path == "/delete").json()
    assert deleted["entity"] == {"id": entity["id"]}
    assert deleted["operation"] == "delete"
    receiver.wait_for(lambda d: d.path == "/dao" and event_of(d) == "delete")
    # Reads are not changes.
    http_get(port, "/consumers")
    assert [d.json()["event"] for d in receiver.deliveries if d.path == "/schema"] == ["consumers", "consumers"]


def test_an_entity_larger_than_max_body_bytes_is_left_out(start_envoy, receiver, admin_api):
    crud = {"match": {"upstream.cluster": "upstream"}, "max_body_bytes": 64}
    envoy = start_envoy(config(receiver, admin_api.port, [hook("dao", "dao:crud", "/dao")], crud=crud))
    port = envoy.listener_port()
    status, answer = http_get(port, "/big", method="POST", body=b"{}")
    assert status == 201 and len(answer) > 64  # the client still gets the whole answer
    data = receiver.wait_for(lambda d: d.path == "/dao").json()
    assert data["schema"] == "big" and "entity" not in data


# --- an upstream that goes down and comes back --------------------------------------------


class Flaky:
    """An upstream on a fixed port that can be stopped and started again. HTTP/1.0, so every
    request is a new connection and a stopped upstream refuses them all."""

    def __init__(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.running: BackgroundServer | None = None
        self.start()

    def start(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("content-length", "3")
                self.end_headers()
                self.wfile.write(b"up\n")

            def log_message(self, *args):
                pass

        self.running = BackgroundServer(Handler, self.port)

    def stop(self):
        self.running.close()


def test_an_upstream_down_then_up_gives_one_event_each_across_two_workers(start_envoy, receiver, attachment):
    upstream = Flaky()
    try:
        hooks = [hook("health", "balancer", "/health", "health"), CATCH_ALL]
        envoy = start_envoy(config(receiver, upstream.port, hooks, attachment=attachment), concurrency=2)
        port = envoy.listener_port()
        for n in range(3):
            assert http_get(port, f"/up/{n}")[0] == 200
        upstream.stop()
        for n in range(6):
            assert http_get(port, f"/down/{n}")[0] == 503
        down = receiver.wait_for(lambda d: d.path == "/health").json()
        assert down == {"source": "balancer", "event": "health", "upstream_id": "upstream",
                        "ip": "127.0.0.1", "port": upstream.port, "health": "unhealthy"}
        upstream.start()
        for n in range(4):
            assert http_get(port, f"/back/{n}")[0] == 200
        receiver.wait_for(lambda d: d.path == "/health" and d.json()["health"] == "healthy")
        # Any duplicate would have been delivered before these requests' own deliveries.
        for n in range(20):
            assert http_get(port, f"/after/{n}")[0] == 200
        wait_until(lambda: len([d for d in receiver.deliveries if d.path == "/all"
                                and d.json()["request"]["path"].startswith("/after/")]) == 20,
                   what="the later requests' deliveries")
        assert [d.json()["health"] for d in receiver.deliveries if d.path == "/health"] == ["unhealthy", "healthy"]
    finally:
        upstream.stop()


# --- a 429 from Envoy's local rate limit -------------------------------------------------

LOCAL_RATE_LIMIT = {
    "name": "envoy.filters.http.local_ratelimit",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "local_rate_limit",
        "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "60s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_enabled"},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_enforced"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    },
}


def test_a_429_from_the_local_rate_limit_gives_a_rate_limit_event(start_envoy, receiver, upstream, attachment):
    hooks = [hook("limited", "rate-limiting-advanced", "/limited", "rate-limit-exceeded")]
    envoy = start_envoy(config(receiver, upstream.port, hooks, after=[LOCAL_RATE_LIMIT], attachment=attachment))
    port = envoy.listener_port()
    assert http_get(port, "/orders", {"x-consumer-username": "bob"})[0] == 200
    assert http_get(port, "/orders", {"x-consumer-username": "bob"})[0] == 429
    data = receiver.wait_for(lambda d: d.path == "/limited").json()
    # The whole event, the same from either attachment. Envoy sends x-ratelimit-limit,
    # -remaining and -reset, but no window.
    assert data == {"source": "rate-limiting-advanced", "event": "rate-limit-exceeded", "consumer": "bob",
                    "ip": "127.0.0.1", "service": "upstream", "limit": 1, "rate": 1, "reset": 60}
    assert len(receiver.deliveries) == 1


# --- the log handler, and snooze across workers -------------------------------------------


def test_the_log_handler_writes_one_line_per_event(start_envoy, receiver, upstream):
    hooks = [{"name": "audit", "source": "traffic", "handler": "log", "config": {}}]
    envoy = start_envoy(config(receiver, upstream.port, hooks))
    port = envoy.listener_port()
    http_get(port, "/logged?x=1", {"authorization": "Bearer hidden"})
    line = wait_until(
        lambda: next((l for l in envoy.log().splitlines() if "log callback: " in l), None),
        what="the log line",
    )
    entry = json.loads(line.split("log callback: ", 1)[1])
    assert entry["event"] == "request" and entry["source"] == "traffic"
    assert entry["data"]["request"]["path"] == "/logged"
    assert entry["data"]["request"]["headers"]["authorization"] == "[redacted]"
    assert "[info]" in line
    assert "hidden" not in envoy.log()


def test_snooze_holds_across_workers(start_envoy, receiver, upstream):
    hooks = [hook("snoozed", "traffic", "/snoozed", snooze=60), CATCH_ALL]
    envoy = start_envoy(config(receiver, upstream.port, hooks), concurrency=2)
    port = envoy.listener_port()
    for n in range(20):
        http_get(port, f"/s/{n}")
    wait_until(lambda: len([d for d in receiver.deliveries if d.path == "/all"]) == 20, what="20 deliveries")
    assert len([d for d in receiver.deliveries if d.path == "/snoozed"]) == 1
