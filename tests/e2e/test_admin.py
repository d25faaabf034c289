"""The admin endpoints through the real Envoy: token checks, listings that never leak a secret,
sources, status, and the test and ping calls answered with the receiver's answer."""

from __future__ import annotations

import hashlib
import hmac
import json

from conftest import envoy_config, http_get, static_cluster

TOKEN = "admin-token-0123456789"
SECRET = "zz-hook-secret-zz"
HEADER_SECRET = "zz-header-credential-zz"


def setup(receiver, upstream, admin=None, env=None) -> dict:
    configuration = {
        "hooks": [
            {"name": "alerts", "source": "traffic", "handler": "webhook",
             "filter": {"response.status": {"gte": 500}},
             "config": {"url": "http://receiver/alerts", "cluster": "receiver", "secret": SECRET,
                        "headers": {"authorization": f"Bearer {HEADER_SECRET}", "x-team": "payments"}}},
            {"name": "all", "source": "traffic", "handler": "webhook",
             "config": {"url": "http://receiver/all", "cluster": "receiver"}},
            {"name": "audit", "source": "traffic", "handler": "log", "config": {}, "enabled": False},
        ],
        "admin": admin or {"token": TOKEN},
        "delivery": {"flush_interval_ms": 20},
    }
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port)]
    config = envoy_config(configuration, routes, clusters)
    if env:
        http_filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        http_filters[0]["typed_config"]["config"]["vm_config"]["environment_variables"] = {"key_values": env}
    return config


def admin(port: int, path: str, token: str | None = TOKEN, method: str = "GET", data: str | None = None, body: bytes | None = None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        headers["x-event-data"] = data
    status, answer = http_get(port, f"/event-hooks{path}", headers, method, body)
    return status, json.loads(answer) if answer else None


def test_a_missing_or_wrong_token_is_refused_and_nothing_goes_upstream(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream))
    port = envoy.listener_port()
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        assert admin(port, "", token) == (401, {"message": "unauthorized"})
        assert admin(port, "/status", token)[0] == 401
    # The stub upstream answers "upstream 200": none of these reached it, and none was an event.
    assert http_get(port, "/event-hooks/sources")[1] == b'{"message":"unauthorized"}'
    http_get(port, "/marker")
    receiver.wait_for(lambda d: d.path == "/all")
    assert [d.json()["request"]["path"] for d in receiver.deliveries] == ["/marker"]


def test_listings_never_show_a_secret(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream))
    port = envoy.listener_port()
    status, listing = admin(port, "")
    assert status == 200
    names = [hook["name"] for hook in listing["data"]]
    assert names == ["alerts", "all", "audit"]
    alerts = listing["data"][0]
    assert alerts["config"]["secret"] == "[redacted]"
    assert alerts["config"]["headers"] == {"authorization": "[redacted]", "x-team": "payments"}
    assert listing["data"][2]["enabled"] is False
    status, sources = admin(port, "/sources")
    assert sorted(sources["data"]) == ["balancer", "crud", "dao:crud", "event_hooks", "rate-limiting-advanced", "traffic"]
    assert admin(port, "/sources/dao:crud")[1]["data"]["delete"]["fields"] == ["operation", "entity", "old_entity", "schema"]
    assert admin(port, "/sources/nope") == (404, {"message": "source not found"})
    status, state = admin(port, "/status")
    assert status == 200 and state["scope"] == "this worker"
    assert set(state["hooks"]) == {"alerts", "all", "audit"}
    everything = json.dumps([listing, sources, state]) + envoy.log()
    for secret in (SECRET, HEADER_SECRET, TOKEN):
        assert secret not in everything


def test_test_runs_the_handler_now_and_answers_with_the_result(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream))
    port = envoy.listener_port()
    receiver.status = 202
    status, answer = admin(port, "/alerts/test", method="POST", data='{"note": "a \\"test\\" event"}')
    assert status == 200
    assert answer["data"] == {"note": 'a "test" event'}
    assert answer["result"]["status"] == 202
    delivery = receiver.wait_for(lambda d: d.path == "/alerts")
    assert delivery.json() == {"note": 'a "test" event', "source": "traffic", "event": "request"}
    expected = "sha1=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha1).hexdigest()
    assert delivery.headers["x-kong-signature"] == expected
    assert delivery.headers["x-team"] == "payments"
    assert admin(port, "/alerts/test", method="POST", data="[1]") == (400, {"message": "expected a JSON object: the event data"})
    assert admin(port, "/nobody/test", method="POST", data="{}")[0] == 404
    # A body cannot be read before the request goes upstream: refused, with the reason.
    status, answer = admin(port, "/alerts/test", method="POST", body=b'{"note": 1}')
    assert status == 400 and "x-event-data" in answer["message"]
    # A test ignores filters (and snooze, on_change): the hook's filter wants a 5xx.
    assert len(receiver.matching(lambda d: d.path == "/alerts")) == 1


def test_ping_sends_kong_s_ping_payload(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream))
    port = envoy.listener_port()
    status, answer = admin(port, "/alerts/ping")
    assert status == 200 and answer["result"]["status"] == 200
    ping = receiver.wait_for(lambda d: d.path == "/alerts").json()
    assert (ping["source"], ping["event"]) == ("kong:event_hooks", "ping")
    assert ping["event_hooks"]["name"] == "alerts"
    assert ping["event_hooks"]["config"]["secret"] == "[redacted]"
    assert admin(port, "/audit/ping") == (400, {"message": "ping is for webhook hooks"})


def test_the_token_can_come_from_the_vm_environment(start_envoy, receiver, upstream):
    env = {"EVENT_HOOKS_ADMIN_TOKEN": "from-the-environment-42"}
    envoy = start_envoy(setup(receiver, upstream, {"token_env": "EVENT_HOOKS_ADMIN_TOKEN", "prefix": "/event-hooks"}, env))
    port = envoy.listener_port()
    assert admin(port, "/status", "from-the-environment-42")[0] == 200
    assert admin(port, "/status", TOKEN)[0] == 401
    assert "from-the-environment-42" not in envoy.log()
