"""The webhook-custom handler in the real Envoy: templates render the event into a JSON body, a
query string and a form, each value escaped for where it lands, so the receiver reads back
exactly the text the request carried."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from conftest import envoy_config, http_get, static_cluster

# Quotes, backslashes, a tab and non-ASCII text travel in a header; a newline cannot (HTTP
# forbids it there), so it travels in the route's name, which the event carries as `route`.
NOTE = 'Deploy "v2" failed: C:\\builds\\app\\new\t✓ 100% & done=yes'
ROUTE = 'orders "eu"\\\nsecond line'
ROUTES = [{"name": ROUTE, "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]


def custom_hook(name: str, config: dict) -> dict:
    return {"name": name, "source": "traffic", "filter": {"request.path": {"prefix": "/orders"}},
            "handler": "webhook-custom", "config": {"cluster": "receiver", **config}}


def setup(receiver, upstream, hooks):
    configuration = {"hooks": hooks, "delivery": {"flush_interval_ms": 20}}
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port)]
    return envoy_config(configuration, ROUTES, clusters)


def request_with_note(envoy, path: str):
    # Sent as UTF-8 bytes: http.client would encode a str header as Latin-1.
    status, _ = http_get(envoy.listener_port(), path, {"x-note": NOTE.encode()})
    assert status == 200


def test_a_slack_style_json_body_carries_quotes_backslashes_and_newlines(start_envoy, receiver, upstream):
    hook = custom_hook("slack", {
        "url": "http://receiver/services/T0/B0",
        "method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": '{"text": "{{ request.headers.x-note }} on {{ request.path }} via {{ route }}", "status": {{ response.status }}}',
        "secret": "hunter2",
    })
    envoy = start_envoy(setup(receiver, upstream, [hook]))
    request_with_note(envoy, "/orders/42")
    delivery = receiver.wait_for(lambda d: d.path == "/services/T0/B0")
    assert delivery.method == "POST"
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.json() == {"text": f"{NOTE} on /orders/42 via {ROUTE}", "status": 200}
    expected = "sha1=" + hmac.new(b"hunter2", delivery.body, hashlib.sha1).hexdigest()
    assert hmac.compare_digest(delivery.headers["x-kong-signature"], expected)


def test_a_payload_becomes_the_query_of_a_get_and_the_form_of_a_post(start_envoy, receiver, upstream):
    # conftest's receiver answers POST; let it answer GET the same way.
    handler = receiver.server.RequestHandlerClass
    handler.do_GET = handler.do_POST
    payload = {"note": "{{ request.headers.x-note }}", "path": "{{ request.path }}",
               "status": "{{ response.status }}", "route": "{* route *}"}
    expected = {"note": [NOTE], "path": ["/orders/7"], "status": ["200"], "route": [ROUTE]}
    hooks = [
        custom_hook("query", {"url": "http://receiver/get?fixed=1", "method": "GET", "payload": payload,
                              "secret": "unused"}),
        custom_hook("form", {"url": "http://receiver/form", "method": "POST", "payload": payload,
                             "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    ]
    envoy = start_envoy(setup(receiver, upstream, hooks))
    request_with_note(envoy, "/orders/7")

    got = receiver.wait_for(lambda d: d.method == "GET", what="the GET delivery")
    url = urlsplit(got.path)
    assert url.path == "/get"
    assert parse_qs(url.query, keep_blank_values=True) == {"fixed": ["1"], **expected}
    assert got.body == b""
    assert "x-kong-signature" not in got.headers  # no body, nothing signed: as Kong

    form = receiver.wait_for(lambda d: d.path == "/form", what="the form delivery")
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(form.body.decode(), keep_blank_values=True) == expected
    assert "hook query: its GET calls have no body, so they are sent unsigned" in envoy.log()
