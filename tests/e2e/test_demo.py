"""The shipped envoy/envoy.yaml, run as is but for its ports: its hooks deliver, signed, from the
access logger behind its native filter (the HTTP filter, on the admin route only, sees no
traffic), the admin endpoints answer, and its TLS cluster really verifies the receiver's
certificate."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Receiver, http_get, stat, wait_until


def demo_config(upstream_port: int, receiver_port: int, tls_receiver_port: int) -> dict:
    """envoy/envoy.yaml with admin and listeners on port 0 and the clusters pointed at the
    test's servers; everything else (the filter and its configuration, TLS) unchanged."""
    config = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = 0
    ports = {"demo_upstream": upstream_port, "receiver": receiver_port, "receiver_tls": tls_receiver_port}
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] in ports:
            endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            endpoint["address"]["socket_address"]["port_value"] = ports[cluster["name"]]
    return config


@pytest.fixture
def tls_receiver(demo_certs):
    server = Receiver(tls=(str(demo_certs / "receiver.pem"), str(demo_certs / "receiver-key.pem")))
    yield server
    server.close()


def signed_by(secret: str, delivery) -> bool:
    expected = "sha1=" + hmac.new(secret.encode(), delivery.body, hashlib.sha1).hexdigest()
    return delivery.headers.get("x-kong-signature") == expected


def demo_configurations() -> dict[str, dict]:
    """The filter's configuration in envoy/envoy.yaml, by role: `access_log`, `http_filter`."""
    config = yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    [access_log] = hcm["access_log"]
    http_filter = next(f for f in hcm["http_filters"] if f["name"] == "event_hooks")
    return {role: json.loads(entry["typed_config"]["config"]["configuration"]["value"])
            for role, entry in (("access_log", access_log), ("http_filter", http_filter))}


def test_the_demo_http_filter_has_the_access_loggers_hooks_and_the_admin_endpoints():
    """The HTTP filter is there for the admin endpoints, which list and test the hooks: the
    access logger's, which the HTTP filter (on the admin route only) never serves itself."""
    configurations = demo_configurations()
    http_filter = dict(configurations["http_filter"])
    assert http_filter.pop("admin")["token"] == "demo-admin-token"
    assert http_filter == configurations["access_log"]


def test_the_demo_configuration_delivers(start_envoy, receiver, tls_receiver, upstream):

    envoy = start_envoy(demo_config(upstream.port, receiver.port, tls_receiver.port))
    port = envoy.listener_port("proxy")

    # Neither hook can match a 200 without a flag: the native filter keeps it out of the VM.
    assert http_get(port, "/orders/41")[0] == 200
    assert http_get(port, "/orders/42?status=503")[0] == 503
    delivery = receiver.wait_for(lambda d: d.path == "/hooks")
    assert signed_by("hunter2", delivery)
    assert delivery.headers["x-team"] == "payments"
    assert delivery.json()["request"]["path"] == "/orders/42"

    # The refused connection goes to the TLS receiver, through Envoy's verified TLS.
    assert http_get(port, "/down/anything")[0] == 503
    alert = tls_receiver.wait_for(lambda d: d.path == "/alerts")
    assert signed_by("hunter2", alert)
    assert alert.headers["host"] == "receiver.local:9443"
    assert alert.json()["response"]["flags"] == "UF"

    # The admin endpoints, as make run prints them.
    auth = {"authorization": "Bearer demo-admin-token"}
    status, body = http_get(port, "/event-hooks/status", auth)
    assert status == 200 and set(json.loads(body)["hooks"]) == {"orders-5xx", "upstream-unreachable"}
    status, body = http_get(port, "/event-hooks/orders-5xx/test", {**auth, "x-event-data": '{"note": "hello"}'}, "POST")
    assert status == 200 and json.loads(body)["result"]["status"] == 200
    assert receiver.wait_for(lambda d: d.path == "/hooks" and d.json().get("note") == "hello")

    # The VM saw the two requests a hook matches, through the access logger: not the 200, and
    # nothing of the admin requests (the HTTP filter answers them, and they are never events).
    assert stat(envoy, "wasmcustom.event_hooks.events.traffic") == 2

    # Its metrics, with the hook as a Prometheus label (envoy.yaml's stats_tags).
    prometheus = envoy.get_admin("/stats/prometheus")
    assert 'event_hooks_hook_matched{hook="orders-5xx"} 1' in prometheus
    assert "event_hooks_deliveries_delivered" in prometheus


def test_the_demo_tls_cluster_refuses_a_certificate_from_another_ca(start_envoy, receiver, upstream, demo_certs, tmp_path: Path):
    other = tmp_path / "other-ca"
    subprocess.run([str(ROOT / "demo" / "certs.sh"), str(other)], check=True, capture_output=True)
    impostor = Receiver(tls=(str(other / "receiver.pem"), str(other / "receiver-key.pem")))
    try:
        envoy = start_envoy(demo_config(upstream.port, receiver.port, impostor.port))
        port = envoy.listener_port("proxy")
        assert http_get(port, "/down/anything")[0] == 503
        wait_until(
            lambda: "cluster.receiver_tls.ssl.fail_verify_error: 1" in envoy.get_admin("/stats"),
            what="Envoy to refuse the receiver's certificate",
        )
        # The refused handshake is an attempt that failed: retried, never delivered.
        wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.retries") >= 1, what="a retry")
        assert impostor.deliveries == []
    finally:
        impostor.close()
