"""The filter as Envoy's wasm access logger (`envoy.access_loggers.wasm`): the same
event_hooks.wasm and JSON configuration, entered once per finished request in its root
context, delivering through the same queue; behind the native pre-filter that
`event-hooks envoy-access-log-filter` generates; and refusing what an access logger cannot do.
The other request-driven sources run through both attachments where their HTTP-filter tests
are (the `attachment` fixture): balancer and rate-limiting-advanced in test_sources.py,
published sources in test_published.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

import yaml

from conftest import ROOT, WASM, Envoy, envoy_config, get_many, http_get, stat, static_cluster, wait_until

SECRET = "hunter2"


def hooks() -> list[dict]:
    return [
        {"name": "errors", "source": "traffic", "filter": {"response.status": {"gte": 500}, "request.path": {"prefix": "/orders"}},
         "handler": "webhook", "config": {"url": "http://receiver/errors", "cluster": "receiver", "secret": SECRET}},
        {"name": "teams", "source": "traffic", "filter": {"request.headers.x-team": "payments"},
         "handler": "webhook", "config": {"url": "http://receiver/teams", "cluster": "receiver"}},
    ]


def access_logger_setup(receiver, upstream, configuration: dict, log_filter: dict | None = None) -> dict:
    """Envoy with event_hooks as the listener's access logger (no wasm HTTP filter), behind the
    native `log_filter` if given: routes answer as `upstream` does."""
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port)]
    return envoy_config(configuration, routes, clusters, attachment="access_logger", log_filter=log_filter)


def generated_filter(tmp_path, configuration: dict) -> dict | None:
    """What `event-hooks envoy-access-log-filter` prints for `configuration`, parsed."""
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps(configuration))
    printed = subprocess.run([str(ROOT / "target" / "debug" / "event-hooks"), "envoy-access-log-filter", str(path)],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    return yaml.safe_load(printed)


def test_the_access_logger_delivers_what_the_http_filter_would(start_envoy, receiver, upstream):
    configuration = {"hooks": hooks(), "delivery": {"flush_interval_ms": 20}}
    envoy = start_envoy(access_logger_setup(receiver, upstream, configuration))
    # Envoy writes its log file asynchronously: the line may follow its readiness.
    wait_until(lambda: "configured 2 hook(s) as an Envoy access logger" in envoy.log(), what="the access logger's start line")
    port = envoy.listener_port()
    http_get(port, "/orders/7?status=503", headers={"authorization": "Bearer s3cr3t", "x-team": "payments"})
    http_get(port, "/users/1?status=503")
    http_get(port, "/orders/8", headers={"x-team": "payments"})
    http_get(port, "/orders/9")
    wait_until(lambda: len(receiver.deliveries) >= 3, what="three deliveries")
    errors = [d for d in receiver.deliveries if d.path == "/errors"]
    teams = sorted(d.json()["request"]["path"] for d in receiver.deliveries if d.path == "/teams")
    assert [d.json()["request"]["path"] for d in errors] == ["/orders/7"]
    assert teams == ["/orders/7", "/orders/8"]
    body = errors[0].json()
    assert (body["response"]["status"], body["request"]["query"]) == (503, "status=503")
    assert body["request"]["headers"]["authorization"] == "[redacted]"
    assert (body["source"], body["event"]) == ("traffic", "request")
    expected = "sha1=" + hmac.new(SECRET.encode(), errors[0].body, hashlib.sha1).hexdigest()
    assert errors[0].headers["x-kong-signature"] == expected
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.events.traffic") == 4, what="four requests seen")
    # Nothing else arrives: /users/1 (503, no team) and /orders/9 (200, no team) match nothing.
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.in_flight") == 0 and stat(envoy, "wasmcustom.event_hooks.queue.depth") == 0,
               what="an idle queue")
    assert len(receiver.deliveries) == 3


def test_the_generated_pre_filter_gives_the_same_deliveries_for_fewer_vm_entries(start_envoy, receiver, upstream, tmp_path):
    configuration = {"hooks": hooks(), "delivery": {"flush_interval_ms": 20}}
    log_filter = generated_filter(tmp_path, configuration)
    assert log_filter, "two traffic hooks with native conditions have a native filter"
    paths = ["/orders/1", "/orders/2", "/users/3", "/health", "/orders/4"]
    delivered = {}
    entered = {}
    # The VM sees all 15 requests without the pre-filter; with it, only the 8 some hook matches.
    expected_entries = {"without": 15, "with": 8}
    for name, native in (("without", None), ("with", log_filter)):
        receiver.deliveries.clear()
        envoy = start_envoy(access_logger_setup(receiver, upstream, configuration, log_filter=native))
        port = envoy.listener_port()
        get_many(port, paths, headers={"x-team": "payments"})
        get_many(port, paths)
        for path in paths:
            http_get(port, f"{path}?status=503")
        wait_until(lambda: len(receiver.deliveries) >= 8, what=f"deliveries {name} the pre-filter")
        delivered[name] = sorted((d.path, d.json()["request"]["path"], d.json()["response"]["status"]) for d in receiver.deliveries)
        wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.events.traffic") == expected_entries[name],
                   what=f"{expected_entries[name]} requests seen {name} the pre-filter")
        entered[name] = stat(envoy, "wasmcustom.event_hooks.events.traffic")
        envoy.stop()
    assert delivered["with"] == delivered["without"]
    # Every x-team request, and the three /orders answered 503.
    assert len(delivered["with"]) == 5 + 3
    assert entered == expected_entries


def test_an_access_logger_refuses_what_it_cannot_serve(tmp_path, receiver, upstream):
    configuration = {"hooks": [*hooks(), {"name": "entities", "source": "crud", "handler": "log", "config": {}}],
                     "crud": {"match": {"request.path": {"prefix": "/admin"}}}, "admin": {"token": "t0ken"}}
    envoy = Envoy(access_logger_setup(receiver, upstream, configuration), tmp_path)
    process = subprocess.run(envoy.command(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    log = process.stdout + process.stderr + envoy.log()
    assert process.returncode != 0
    assert "invalid configuration for an access logger: hooks[2].source: crud reads the response body" in log
    assert "invalid configuration for an access logger: admin: the admin endpoints answer requests" in log


# --- the Istio EnvoyFilter ---------------------------------------------------------------------

ISTIO_ENVOYFILTER = ROOT / "envoy" / "istio-envoyfilter-access-log.yaml"
ISTIO_RECEIVER_CLUSTER = "outbound|9000||receiver.hooks.svc.cluster.local"


def istio_sidecar_setup(receiver, upstream, tmp_path) -> dict:
    """What envoy/istio-envoyfilter-access-log.yaml makes of a sidecar's inbound HTTP connection
    manager: its patch merged (access_log appended) into one that already has an access log of
    its own, as Istio's; the wasm file where the sidecar mounts it replaced by the build's, and
    the receiver's Istio cluster name pointed at the test's receiver."""
    document = yaml.safe_load(ISTIO_ENVOYFILTER.read_text())
    [patch] = document["spec"]["configPatches"]
    assert (patch["applyTo"], patch["match"]["context"], patch["patch"]["operation"]) == ("NETWORK_FILTER", "SIDECAR_INBOUND", "MERGE")
    assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
    merged = patch["patch"]["value"]["typed_config"]
    [entry] = merged["access_log"]
    plugin = entry["typed_config"]["config"]
    assert plugin["vm_config"]["code"]["local"]["filename"] == "/var/local/lib/event-hooks/plugin.wasm"
    plugin["vm_config"]["code"]["local"]["filename"] = str(WASM)
    routes = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    clusters = [static_cluster("upstream", upstream.port), static_cluster(ISTIO_RECEIVER_CLUSTER, receiver.port)]
    config = envoy_config(None, routes, clusters)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["@type"] == merged["@type"]
    istio_log = {"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog", "path": str(tmp_path / "access.log")}}
    hcm["access_log"] = [istio_log, entry]
    return config


def test_the_istio_envoyfilter_access_logger_delivers_behind_its_native_filter(start_envoy, receiver, upstream, tmp_path, monkeypatch):
    # The secret reaches the VM from the proxy's environment (host_env_keys), as the
    # istio-proxy container's would.
    monkeypatch.setenv("HOOK_SECRET", "s3cr3t-from-the-sidecar")
    envoy = start_envoy(istio_sidecar_setup(receiver, upstream, tmp_path))
    wait_until(lambda: "configured 1 hook(s) as an Envoy access logger" in envoy.log(), what="the access logger configured")
    port = envoy.listener_port()
    assert http_get(port, "/orders/1")[0] == 200
    assert http_get(port, "/users/1?status=503")[0] == 503
    assert http_get(port, "/orders/2?status=503")[0] == 503
    delivery = receiver.wait_for(lambda d: d.path == "/hooks", what="the orders-5xx delivery")
    assert delivery.json()["request"]["path"] == "/orders/2"
    expected = "sha1=" + hmac.new(b"s3cr3t-from-the-sidecar", delivery.body, hashlib.sha1).hexdigest()
    assert delivery.headers["x-kong-signature"] == expected
    # The native filter let one request of three into the VM; the access log already there
    # (Istio's own) still writes every request.
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.events.traffic") == 1, what="one request seen")
    wait_until(lambda: len((tmp_path / "access.log").read_text().splitlines()) == 3, what="three lines in the other access log")
    wait_until(lambda: stat(envoy, "wasmcustom.event_hooks.in_flight") == 0, what="nothing in flight")
    assert len(receiver.deliveries) == 1
