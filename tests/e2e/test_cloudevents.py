"""CloudEvents bodies (`config.format`) through the real Envoy, read by the CloudEvents Python
SDK as a receiver would: structured (`cloudevents`), batched structured
(`application/cloudevents-batch+json`) and binary (`cloudevents-binary`). Every event carries
the attributes the contract names, its data is the event's (redacted) data, byte for byte what
a Kong-format hook gets for the same request, and every call is signed over its exact body."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

from cloudevents.http import CloudEvent, from_dict, from_http
from standardwebhooks.webhooks import Webhook as ReferenceVerifier

from conftest import envoy_config, get_many, http_get, static_cluster

TOKEN = "admin-token-for-cloudevents-tests"
SECRET = "whsec_" + base64.b64encode(b"a key for the cloudevents tests").decode()
UUID_V7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# A header value with what CloudEvents' HTTP binding percent-encodes: spaces, quotes, %.
TENANT = 'acme "eu" 100% off'
# Extension templates; `note` adds non-ASCII text of its own, `absent` renders empty.
EXTENSIONS = {"tenant": "{{ request.headers.x-tenant }}", "note": "café ✓ {{ request.headers.x-tenant }}",
              "absent": "{{ request.headers.x-missing }}"}
EXPECTED_EXTENSIONS = {"tenant": TENANT, "note": f"café ✓ {TENANT}"}
GATEWAY = {"source": "//gateway.example.com/eu-1", "type_prefix": "com.example.gateway", "extensions": EXTENSIONS}


def hook(name: str, **config) -> dict:
    """A traffic hook posting to the receiver at /<name>, signed with Standard Webhooks."""
    return {"name": name, "source": "traffic", "handler": "webhook",
            "config": {"url": f"http://receiver/{name}", "cluster": "receiver",
                       "signature": "standard-webhooks", "secret": SECRET, **config}}


def setup(chaos, upstream, hooks: list[dict], delivery=None) -> dict:
    # A Kong-format hook gets every event too, one a call: what the CloudEvents' data must equal.
    configuration = {"hooks": [hook("kong", batch=False), *hooks], "delivery": {"flush_interval_ms": 20, **(delivery or {})},
                     "admin": {"token": TOKEN}}
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", chaos.port)]
    return envoy_config(configuration, routes, clusters)


def send(envoy, count: int) -> list[str]:
    """`count` requests carrying credentials and the tenant header; returns their paths."""
    paths = [f"/orders/{n}" for n in range(count)]
    get_many(envoy.listener_port(), paths, {"authorization": "Bearer top-secret", "x-tenant": TENANT})
    return paths


def kong_data(chaos) -> dict[str, dict]:
    """The event data the Kong-format hook got (its body without `source` and `event`), by
    request id."""
    events = {}
    for attempt in chaos.attempts:
        if attempt.path == "/kong":
            body = json.loads(attempt.body)
            assert (body.pop("source"), body.pop("event")) == ("traffic", "request")
            events[body["request"]["id"]] = body
    return events


def verified(attempt) -> bool:
    ReferenceVerifier(SECRET).verify(attempt.body, attempt.headers)
    return True


def check_event(event: CloudEvent, kong: dict[str, dict], source: str, type_prefix: str, extensions: dict[str, str], since: float):
    """`event` has every attribute the filter sets, and the data the Kong hook got."""
    assert event["specversion"] == "1.0"
    assert UUID_V7.match(event["id"]), event["id"]
    assert event["source"] == source
    assert event["type"] == f"{type_prefix}.traffic.request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"]), event["time"]
    moment = datetime.fromisoformat(event["time"])
    assert datetime.fromtimestamp(since, timezone.utc) - timedelta(seconds=1) <= moment <= datetime.now(timezone.utc), event["time"]
    assert event["datacontenttype"] == "application/json"
    data = event.get_data()
    assert data["request"]["headers"]["authorization"] == "[redacted]"
    assert data["request"]["headers"]["x-tenant"] == TENANT
    assert data == kong[data["request"]["id"]]
    found = {name: value for name, value in event.get_attributes().items() if name in EXTENSIONS}
    assert found == extensions


def test_structured_events_parse_with_the_sdk_and_carry_every_attribute(start_envoy, upstream, chaos):
    hooks = [hook("structured", format="cloudevents", cloudevents=GATEWAY),
             hook("plain", format="cloudevents")]  # every attribute its default
    envoy = start_envoy(setup(chaos, upstream, hooks))
    since = time.time()
    paths = send(envoy, 3)
    chaos.wait(lambda attempts: len(attempts) == 3 * 3, what="three calls to each hook")
    kong = kong_data(chaos)
    assert sorted(event["request"]["path"] for event in kong.values()) == paths
    ids = []
    for name, source, prefix, extensions in [
        ("structured", GATEWAY["source"], GATEWAY["type_prefix"], EXPECTED_EXTENSIONS),
        ("plain", "/event_hooks/plain", "event_hooks", {}),
    ]:
        for attempt in chaos.at(f"/{name}"):
            assert attempt.headers["content-type"] == "application/cloudevents+json"
            assert verified(attempt)
            assert b"top-secret" not in attempt.body
            event = from_http(attempt.headers, attempt.body)
            check_event(event, kong, source, prefix, extensions, since)
            assert event["id"] == attempt.id  # sent alone: the CloudEvents id is the webhook-id
            ids.append(event["id"])
    assert len(set(ids)) == 6


def test_a_batch_of_structured_events_is_a_cloudevents_batch(start_envoy, upstream, chaos):
    batched = hook("batched", format="cloudevents", cloudevents=GATEWAY, batch={"max_size": 3, "max_delay_ms": 60_000})
    envoy = start_envoy(setup(chaos, upstream, [batched]))
    since = time.time()
    send(envoy, 3)
    chaos.wait(lambda attempts: len(chaos.at("/batched")) == 1 and len(chaos.at("/kong")) == 3, what="the batch")
    [call] = chaos.at("/batched")
    assert call.headers["content-type"] == "application/cloudevents-batch+json"
    assert verified(call)
    members = json.loads(call.body)
    assert isinstance(members, list) and len(members) == 3
    kong = kong_data(chaos)
    events = [from_dict(member) for member in members]
    for event in events:
        check_event(event, kong, GATEWAY["source"], GATEWAY["type_prefix"], EXPECTED_EXTENSIONS, since)
    ids = {event["id"] for event in events}
    assert len(ids) == 3 and call.id not in ids  # each event its own id; the batch has another

    # The admin test call goes alone, as one structured event, even for a batching hook.
    answer = http_get(envoy.listener_port(), "/event-hooks/batched/test", {"authorization": f"Bearer {TOKEN}",
                      "x-event-data": json.dumps({"note": "hello"})}, method="POST")
    assert answer[0] == 200, answer
    assert json.loads(answer[1])["result"]["status"] == 200
    chaos.wait(lambda attempts: len(chaos.at("/batched")) == 2, what="the test call")
    test_call = chaos.at("/batched")[1]
    assert test_call.headers["content-type"] == "application/cloudevents+json"
    assert verified(test_call)
    event = from_http(test_call.headers, test_call.body)
    assert (event["id"], event["type"], event.get_data()) == (test_call.id, "com.example.gateway.traffic.request", {"note": "hello"})


def header_encoded(text: str) -> str:
    """CloudEvents' HTTP binding (3.1.3.2): a header value percent-encodes space, `"`, `%` and
    every byte of the UTF-8 text outside printable ASCII."""
    return "".join(chr(byte) if 0x21 <= byte <= 0x7E and byte not in b'"%' else f"%{byte:02X}" for byte in text.encode())


def test_binary_events_carry_their_attributes_in_percent_encoded_headers(start_envoy, upstream, chaos):
    # Binary mode is one event a call: delivery.batch does not apply to it.
    binary = hook("binary", format="cloudevents-binary", cloudevents=GATEWAY)
    envoy = start_envoy(setup(chaos, upstream, [binary], {"batch": {"max_size": 3, "max_delay_ms": 60_000}}))
    since = time.time()
    send(envoy, 3)
    chaos.wait(lambda attempts: len(chaos.at("/binary")) == 3 and len(chaos.at("/kong")) == 3, what="the calls")
    kong = kong_data(chaos)
    for attempt in chaos.at("/binary"):
        headers = attempt.headers
        assert headers["content-type"] == "application/json"
        assert verified(attempt)
        assert json.loads(attempt.body) == kong[json.loads(attempt.body)["request"]["id"]]  # the body is the data
        for name, value in EXPECTED_EXTENSIONS.items():
            assert headers[f"ce-{name}"] == header_encoded(value)
            # Printable ASCII only; no space or `"`, and `%` only to start an escape.
            assert re.fullmatch(r"(?:[!#$&-~]|%[0-9A-F]{2})+", headers[f"ce-{name}"]), headers[f"ce-{name}"]
        assert "ce-absent" not in headers
        event = from_http(headers, attempt.body)
        assert event["id"] == attempt.id
        # The SDK leaves percent-encoding to its user: decode, as the binding says receivers do.
        decoded = {name: unquote(value, errors="strict") for name, value in event.get_attributes().items()}
        check_event(from_dict({**decoded, "data": event.get_data()}), kong, GATEWAY["source"], GATEWAY["type_prefix"],
                    EXPECTED_EXTENSIONS, since)
