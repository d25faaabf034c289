"""The filter under hostile or unlucky conditions, in the real Envoy: floods of large events,
bytes that are not UTF-8, a busy or slow receiver, several workers, snooze, replies made by
other filters, and configuration changes. Whatever happens, traffic is unaffected and no VM
crashes (every test's teardown checks Envoy's log for panics and traps)."""

from __future__ import annotations

from conftest import (
    Envoy,
    envoy_config,
    http_get,
    lds_config,
    listener,
    stat,
    static_cluster,
    wait_until,
    write_lds,
)

ROUTES = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]


def hook(name: str, path: str = "/all", cluster: str = "receiver", **extra) -> dict:
    return {"name": name, "source": "traffic", "handler": "webhook",
            "config": {"url": f"http://receiver{path}", "cluster": cluster}, **extra}


def setup(receiver, upstream, hooks, delivery=None, clusters=(), before=()):
    configuration = {"hooks": hooks, "delivery": {"flush_interval_ms": 20, **(delivery or {})}}
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port), *clusters]
    return envoy_config(configuration, ROUTES, clusters, before)


def path_of(delivery) -> str:
    return delivery.json()["request"]["path"]


def test_a_flood_of_large_events_stays_within_the_byte_budget(start_envoy, receiver, upstream):
    # Each request carries 14 headers of 4,000 bytes that are not UTF-8: every byte becomes a
    # 3-byte replacement character, so each event is capped, and the 1 MiB budget fills fast
    # while the receiver is slow.
    receiver.delay = 1.0
    budget = 1_048_576
    envoy = start_envoy(setup(receiver, upstream, [hook("all")],
                              {"max_queue_bytes": budget, "max_in_flight": 2, "timeout_ms": 20_000}))
    port = envoy.listener_port()
    big = {f"x-big-{n}": "\xff" * 4000 for n in range(14)}
    for n in range(60):
        assert http_get(port, f"/flood/{n}", big) == (200, b"upstream 200\n")
    wait_until(lambda: f"delivery queue full ({budget} bytes)" in envoy.log(), what="drops at the byte budget")
    first = receiver.wait_for(lambda d: True, timeout=30)
    value = first.json()["request"]["headers"]["x-big-0"]
    assert value.startswith("\ufffd") and value.endswith("...[truncated]")
    assert len(value.encode()) <= 4096 + len("...[truncated]")
    # Traffic is unaffected, and the VM is alive: a fresh event is still accepted once the
    # queue has drained.
    assert http_get(port, "/after") == (200, b"upstream 200\n")
    receiver.delay = 0
    http_get(port, "/after-drain")
    receiver.wait_for(lambda d: path_of(d) == "/after-drain", timeout=60)
    assert len(receiver.deliveries) < 60


def test_header_values_that_are_not_utf8_are_delivered_replaced(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream, [hook("all")]))
    assert http_get(envoy.listener_port(), "/bin", {"x-bin": "caf\xe9"})[0] == 200
    delivery = receiver.wait_for(lambda d: path_of(d) == "/bin")
    assert delivery.json()["request"]["headers"]["x-bin"] == "caf\ufffd"


def test_a_busy_cluster_holds_deliveries_until_it_can_take_them(start_envoy, receiver, upstream):
    # The receiver's cluster takes one request at a time. Envoy refuses the rest, at once
    # (InternalFailure) or with its own 503 marked x-envoy-overloaded; they must wait, not fail.
    narrow = static_cluster("narrow", receiver.port)
    narrow["circuit_breakers"] = {"thresholds": [{"max_requests": 1, "max_pending_requests": 1}]}
    receiver.delay = 0.05
    envoy = start_envoy(setup(receiver, upstream, [hook("all", cluster="narrow")],
                              {"max_in_flight": 64}, clusters=[narrow]))
    port = envoy.listener_port()
    for n in range(20):
        assert http_get(port, f"/busy/{n}")[0] == 200
    wait_until(lambda: len(receiver.deliveries) == 20, timeout=30, what="all 20 deliveries")
    assert sorted(path_of(d) for d in receiver.deliveries) == sorted(f"/busy/{n}" for n in range(20))
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 20
    overflows = stat(envoy, "cluster.narrow.upstream_rq_pending_overflow") + stat(envoy, "cluster.narrow.upstream_rq_active_overflow")
    assert overflows > 0
    log = envoy.log()
    assert "cluster narrow cannot take a call now (InternalFailure" in log or "cluster narrow is overloaded" in log
    assert "failed" not in log


def test_a_receiver_slower_than_the_timeout_fails_the_attempt(start_envoy, receiver, upstream):
    # One attempt only, to see the failure itself (retries are tested in test_delivery.py).
    receiver.delay = 1.5
    envoy = start_envoy(setup(receiver, upstream, [hook("all")], {"timeout_ms": 200, "retry": {"max_attempts": 1}}))
    port = envoy.listener_port()
    assert http_get(port, "/slow")[0] == 200
    wait_until(lambda: "after 1 attempt(s): answered 504: upstream request timeout" in envoy.log(), what="the timeout in the log")
    assert http_get(port, "/still-fine") == (200, b"upstream 200\n")


def test_two_workers_deliver_every_event_exactly_once(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream, [hook("all")]), concurrency=2)
    port = envoy.listener_port()
    for n in range(40):
        assert http_get(port, f"/w/{n}")[0] == 200
    wait_until(lambda: len(receiver.deliveries) >= 40, what="40 deliveries")
    # Let any duplicate show itself: one more event, delivered after the others.
    http_get(port, "/last")
    receiver.wait_for(lambda d: path_of(d) == "/last")
    paths = [path_of(d) for d in receiver.deliveries if path_of(d) != "/last"]
    assert sorted(paths) == sorted(f"/w/{n}" for n in range(40))


def test_snooze_lets_one_event_through_per_window(start_envoy, receiver, upstream):
    hooks = [
        hook("snoozed", "/snoozed", snooze=60, filter={"request.path": {"prefix": "/s/"}}),
        hook("all"),
    ]
    envoy = start_envoy(setup(receiver, upstream, hooks, {"max_in_flight": 1}))
    port = envoy.listener_port()
    for n in range(3):
        http_get(port, f"/s/{n}")
    # With one call in flight, an event's deliveries arrive in hook order: once the catch-all
    # has delivered the third request, any snoozed delivery for it would have arrived.
    receiver.wait_for(lambda d: d.path == "/all" and path_of(d) == "/s/2")
    snoozed = [path_of(d) for d in receiver.deliveries if d.path == "/snoozed"]
    assert snoozed == ["/s/0"]


def test_a_reply_from_an_earlier_filter_is_still_an_event(start_envoy, receiver, upstream):
    # The fault filter runs before event_hooks and answers 429 itself: event_hooks' header
    # callbacks never run, but its log phase does, and reads the request there (Envoy's log
    # phase has the request's headers, as an access logger's has).
    fault = {
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": {"http_status": 429, "percentage": {"numerator": 100, "denominator": "HUNDRED"}},
            "headers": [{"name": "x-fault", "string_match": {"exact": "1"}}],
        },
    }
    envoy = start_envoy(setup(receiver, upstream, [hook("all")], before=[fault]))
    port = envoy.listener_port()
    assert http_get(port, "/limited?x=1", {"x-fault": "1"})[0] == 429
    data = receiver.wait_for(lambda d: path_of(d) == "/limited").json()
    assert data["response"]["status"] == 429
    assert data["response"]["flags"] == "FI"
    assert data["request"]["method"] == "GET"
    assert data["request"]["query"] == "x=1"
    assert data["request"]["headers"]["x-fault"] == "1"


def test_a_configuration_change_delivers_what_the_old_one_had_queued(tmp_path, receiver, upstream):
    receiver.delay = 0.3
    lds = tmp_path / "lds.json"

    def proxy(name: str) -> dict:
        configuration = {"hooks": [hook(name)], "delivery": {"max_in_flight": 1, "flush_interval_ms": 20}}
        return listener(configuration, ROUTES)

    write_lds(lds, [proxy("before")])
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port)]
    envoy = Envoy(lds_config(lds, clusters), tmp_path, extra=("--drain-time-s", "1")).start()
    try:
        port = wait_until(lambda: envoy.listener_port(), what="the listener")
        for n in range(6):
            assert http_get(port, f"/before/{n}")[0] == 200
        write_lds(lds, [proxy("after")])
        wait_until(lambda: stat(envoy, "listener_manager.lds.update_success") >= 2, what="the reload")
        assert http_get(envoy.listener_port(), "/after/0")[0] == 200
        wait_until(lambda: len(receiver.deliveries) == 7, timeout=30, what="every delivery")
        assert sorted(path_of(d) for d in receiver.deliveries) == sorted([f"/before/{n}" for n in range(6)] + ["/after/0"])
        assert "outstanding deliveries before stopping" in envoy.log()
        assert "undelivered" not in envoy.log()
    finally:
        envoy.stop()
        for sign in ("panicked", "wasm trap", "Function: proxy_on"):
            assert sign not in envoy.log()
