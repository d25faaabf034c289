"""Your own sources through the real Envoy (issue 13): a Lua filter emits events of two
published sources through dynamic metadata (namespace `event_hooks`, key `<source>.<event>`),
the hooks on them deliver exactly the data the Lua code set; an emission of an unpublished
source or event is counted by reason and changes nothing else; snooze by the event's `unique`
field holds across two workers; another wasm filter emits through filter state. Each runs with
each attachment (the `attachment` fixture): the access logger reads the same emissions when
the request is logged and gives the same deliveries as the HTTP filter."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import ROOT, envoy_config, http_get, stat, static_cluster, wait_until, wasm_filter

# The emitter: remembers the request in the request phase, emits in the response phase (as the
# shipped example does: a refund is an event only once the upstream answered 201). Lua tables,
# nested tables, an array, integers, a float, booleans and a string: every shape Envoy hands over.
LUA = r"""
function envoy_on_request(handle)
  local meta = handle:streamInfo():dynamicMetadata()
  meta:set("refunds", "path", handle:headers():get(":path"))
  meta:set("refunds", "method", handle:headers():get(":method"))
  meta:set("refunds", "order", handle:headers():get("x-order-id") or "42")
end

function envoy_on_response(handle)
  local meta = handle:streamInfo():dynamicMetadata()
  local request = meta:get("refunds")
  if request == nil then
    return
  end
  local status = handle:headers():get(":status")
  if request.method == "POST" and string.sub(request.path, 1, 8) == "/refunds" and status == "201" then
    meta:set("event_hooks", "payments.refund-issued", {
      order_id = request.order, amount = 300, currency = "EUR", ratio = 0.25,
      card = {last4 = "4242", wallet = false}, tags = {"partial", "manual"}, refunded = true,
    })
    meta:set("event_hooks", "audit.refund", {actor = "lua", order_id = request.order})
  end
  if string.sub(request.path, 1, 12) == "/unpublished" then
    meta:set("event_hooks", "payments.chargeback", {order_id = request.order})
    meta:set("event_hooks", "nobody.anything", {order_id = request.order})
  end
end
"""

LUA_FILTER = {
    "name": "envoy.filters.http.lua",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": LUA},
    },
}

PUBLISH = {
    "payments": {
        "description": "Events the payments filter emits",
        "events": {
            "refund-issued": {"description": "A refund was issued", "fields": ["order_id", "amount", "currency"],
                              "unique": ["order_id"]},
        },
    },
    "audit": {"events": {"refund": {"fields": ["actor", "order_id"]}}},
}


def hook(name: str, source: str, event: str, path: str, **extra) -> dict:
    return {"name": name, "source": source, "event": event, "handler": "webhook",
            "config": {"url": f"http://receiver{path}", "cluster": "receiver", "secret": "s3cret"}, **extra}


def config(receiver, upstream_port: int, hooks: list[dict], attachment: str = "http_filter") -> dict:
    configuration = {"publish": PUBLISH, "hooks": hooks, "delivery": {"flush_interval_ms": 20}}
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream_port), static_cluster("receiver", receiver.port)]
    return envoy_config(configuration, routes, clusters, before=[LUA_FILTER], attachment=attachment)


def at(receiver, path: str) -> list:
    return [d for d in receiver.deliveries if d.path == path]


def test_two_published_sources_in_one_request_deliver_exactly_what_lua_set(start_envoy, receiver, upstream, attachment):
    hooks = [hook("refunds", "payments", "refund-issued", "/refunds"), hook("audit", "audit", "refund", "/audit")]
    envoy = start_envoy(config(receiver, upstream.port, hooks, attachment))
    port = envoy.listener_port()
    status, _ = http_get(port, "/refunds?status=201", method="POST", body=b"{}", headers={"x-order-id": "o-1"})
    assert status == 201
    refund = receiver.wait_for(lambda d: d.path == "/refunds", what="the refund")
    audit = receiver.wait_for(lambda d: d.path == "/audit", what="the audit event")
    # Kong's body: the emitter's data, plus its source and event. Lua's numbers arrive as
    # doubles; whole ones are JSON integers again.
    assert json.loads(refund.body) == {
        "source": "payments", "event": "refund-issued",
        "order_id": "o-1", "amount": 300, "currency": "EUR", "ratio": 0.25,
        "card": {"last4": "4242", "wallet": False}, "tags": ["partial", "manual"], "refunded": True,
    }
    assert b'"amount":300' in refund.body and b"300.0" not in refund.body
    assert json.loads(audit.body) == {"source": "audit", "event": "refund", "actor": "lua", "order_id": "o-1"}
    assert stat(envoy, "wasmcustom.event_hooks.events.payments") == 1
    assert stat(envoy, "wasmcustom.event_hooks.events.audit") == 1
    # A request answered otherwise emits nothing and delivers nothing.
    assert http_get(port, "/refunds?status=500", method="POST", body=b"{}")[0] == 500
    assert http_get(port, "/other")[0] == 200
    # One worker delivers in order: once a later refund has arrived, the two requests between
    # have had their chance.
    assert http_get(port, "/refunds?status=201", method="POST", body=b"{}", headers={"x-order-id": "o-9"})[0] == 201
    receiver.wait_for(lambda d: d.path == "/refunds" and d.json()["order_id"] == "o-9", what="the later refund")
    assert len(at(receiver, "/refunds")) == 2
    assert stat(envoy, "wasmcustom.event_hooks.emissions.accepted") == 4


def test_an_unpublished_emission_is_counted_and_changes_nothing_else(start_envoy, receiver, upstream, attachment):
    hooks = [hook("refunds", "payments", "refund-issued", "/refunds")]
    envoy = start_envoy(config(receiver, upstream.port, hooks, attachment))
    port = envoy.listener_port()
    assert http_get(port, "/unpublished", headers={"x-order-id": "o-2"})[0] == 200
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.emissions.dropped.unknown_event") == 1, what="the unknown event counted")
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.emissions.dropped.unknown_source") == 1, what="the unknown source counted")
    # Traffic and the published source go on as before.
    assert http_get(port, "/refunds?status=201", method="POST", body=b"{}", headers={"x-order-id": "o-3"})[0] == 201
    delivered = receiver.wait_for(lambda d: d.path == "/refunds", what="the refund")
    assert delivered.json()["order_id"] == "o-3"
    # The refund and its audit event: both published (no hook listens to the audit one here).
    assert stat(envoy, "wasmcustom.event_hooks.emissions.accepted") == 2
    assert len(receiver.deliveries) == 1
    assert "panicked" not in envoy.log() and "wasm trap" not in envoy.log()


def test_snooze_by_unique_holds_across_two_workers(start_envoy, receiver, upstream, attachment):
    # Snooze and on_change together: each distinct `unique` (the order) gets its own window.
    hooks = [hook("refunds", "payments", "refund-issued", "/refunds", snooze=60, on_change=True),
             hook("audit", "audit", "refund", "/audit")]
    envoy = start_envoy(config(receiver, upstream.port, hooks, attachment), concurrency=2)
    port = envoy.listener_port()
    orders = ["o-a", "o-b", "o-a", "o-a", "o-b", "o-c"] * 3
    for order in orders:
        assert http_get(port, "/refunds?status=201", method="POST", body=b"{}", headers={"x-order-id": order})[0] == 201
    # Every request's audit event arrives (no snooze there): then the refunds are settled.
    wait_until(lambda: len(at(receiver, "/audit")) == len(orders), what="every audit event")
    wait_until(lambda: len(at(receiver, "/refunds")) == 3, what="one refund per order")
    assert sorted(d.json()["order_id"] for d in at(receiver, "/refunds")) == ["o-a", "o-b", "o-c"]


def test_the_shipped_envoy_example_sends_slack_a_block_kit_message(start_envoy, receiver, upstream):
    """envoy/envoy-emit.yaml as shipped, but for where it sends: its ports, the payments API
    (the test's upstream, answering ?status=201) and Slack (the test's receiver, plain HTTP)."""
    import yaml

    bootstrap = yaml.safe_load((ROOT / "envoy" / "envoy-emit.yaml").read_text())
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = 0
    listeners = bootstrap["static_resources"]["listeners"]
    bootstrap["static_resources"]["listeners"] = [listener for listener in listeners if listener["name"] == "proxy"]
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = 0
    bootstrap["static_resources"]["clusters"] = [static_cluster("payments", upstream.port),
                                                 static_cluster("hooks_slack", receiver.port)]
    envoy = start_envoy(bootstrap)
    port = envoy.listener_port()
    for _ in range(2):  # the same order twice: snoozed by its unique order_id
        assert http_get(port, "/refunds?status=201", method="POST", body=b"{}", headers={"x-order-id": "42", "x-amount": "300"})[0] == 201
    assert http_get(port, "/refunds?status=201", method="POST", body=b"{}", headers={"x-order-id": "43", "x-amount": "12.5"})[0] == 201
    first = receiver.wait_for(lambda d: d.path.startswith("/services/") and b"42" in d.body, what="the first Slack message")
    assert first.path == "/services/T000/B000/XXXX"
    assert first.json() == {
        "text": "Refund issued for order 42",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Refund issued"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Order*\n42"}, {"type": "mrkdwn", "text": "*Amount*\n300 EUR"}]},
        ],
    }
    second = receiver.wait_for(lambda d: b"43" in d.body, what="the second order's message")
    assert second.json()["blocks"][1]["fields"][1]["text"] == "*Amount*\n12.5 EUR"
    assert len(receiver.deliveries) == 2, "the repeated order was snoozed"


# --- from another wasm filter: filter state --------------------------------------------------

EMITTER_CRATE = ROOT / "tests" / "e2e" / "emitter-filter"
EMITTER_TARGET = ROOT / "target" / "e2e-emitter"


@pytest.fixture(scope="module")
def emitter_wasm():
    """tests/e2e/emitter-filter built (a no-op once built): a wasm filter that puts the JSON of
    a request's `x-emit` header in filter state with `set_property(["event_hooks"], ...)`."""
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "--target-dir", str(EMITTER_TARGET)],
                   cwd=EMITTER_CRATE, check=True, timeout=900)
    return EMITTER_TARGET / "wasm32-wasip1" / "release" / "emitter_filter.wasm"


def test_another_wasm_filter_emits_through_filter_state(start_envoy, receiver, upstream, emitter_wasm, attachment):
    emitter = wasm_filter("{}")
    emitter["name"] = "emitter"
    vm = emitter["typed_config"]["config"]
    vm.update({"name": "emitter", "root_id": "emitter"})
    vm["vm_config"] = {**vm["vm_config"], "vm_id": "emitter", "code": {"local": {"filename": str(emitter_wasm)}}}
    publish = {"orders": {"channel": "filter_state", "events": {"shipped": {"fields": ["order_id", "carrier"], "unique": ["order_id"]}}}}
    configuration = {"publish": publish, "hooks": [hook("shipped", "orders", "shipped", "/shipped")],
                     "delivery": {"flush_interval_ms": 20}}
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port)]
    envoy = start_envoy(envoy_config(configuration, routes, clusters, before=[emitter], attachment=attachment))
    port = envoy.listener_port()
    events = {"orders.shipped": {"order_id": "7", "carrier": "post", "parcels": [1, 2], "insured": False},
              "orders.lost": {"order_id": "8"}}
    assert http_get(port, "/ship", headers={"x-emit": json.dumps(events)})[0] == 200
    shipped = receiver.wait_for(lambda d: d.path == "/shipped", what="the shipped event")
    assert shipped.json() == {"source": "orders", "event": "shipped", "order_id": "7", "carrier": "post",
                              "parcels": [1, 2], "insured": False}
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.emissions.dropped.unknown_event") == 1, what="the unpublished event counted")
    # Not JSON: dropped whole, counted, the request unharmed.
    assert http_get(port, "/ship", headers={"x-emit": "{not json"})[0] == 200
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.emissions.dropped.malformed") == 1, what="the malformed emission counted")
    assert stat(envoy, "wasmcustom.event_hooks.emissions.accepted") == 1
    assert len(receiver.deliveries) == 1
