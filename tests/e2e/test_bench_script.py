"""The benchmark (`make bench`, bench/run.py) cannot silently rot: every Envoy configuration it
generates passes `envoy --mode validate`, which loads each wasm module (the filter, the empty
filter) and runs the filter's configuration check, and compiles the Lua filter. No load is run.
The log rows' two receivers (bench/receiver in Rust, the Python one in bench/run.py) are checked
to verify and count calls alike.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import ENVOY, ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    module.build_empty_filter()  # a no-op once built (its own small crate, bench/empty-filter)
    return module


def test_every_bench_configuration_is_valid_to_envoy(bench, tmp_path):
    bootstraps = {c.key: c.bootstrap(9) for c in bench.configurations()}
    bootstraps["deliveries"] = bench.delivery_bootstrap(9)
    bootstraps["receiver"] = bench.receiver_bootstrap()
    assert {"none", "empty", "hooks-0", "hooks-10", "hooks-100", "hooks-1000", "match-1pct", "lua-1pct", "log-unbatched",
            "log-batch-10", "log-batch-100", "log-batch-1000", "al-hooks-0", "al-hooks-1000", "al-match-1pct", "alpf-hooks-10",
            "alpf-hooks-1000", "alpf-match-1pct"} <= bootstraps.keys()
    # One Envoy validates them all, each bootstrap's listener under its own name (the wasm
    # modules compile once: seconds instead of a minute).
    combined = {"admin": bootstraps["none"]["admin"], "static_resources": {"listeners": [], "clusters": []}}
    for key, bootstrap in bootstraps.items():
        for listener in bootstrap["static_resources"]["listeners"]:
            combined["static_resources"]["listeners"].append({**listener, "name": f"{key}-{listener['name']}"})
        for cluster in bootstrap["static_resources"]["clusters"]:
            assert cluster == bootstraps["none"]["static_resources"]["clusters"][0], "a bench bootstrap has a cluster of its own: validate it"
    combined["static_resources"]["clusters"] = bootstraps["none"]["static_resources"]["clusters"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(combined))
    result = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_bench_hooks_are_all_different(bench):
    hooks = bench.nonmatching_hooks(1000)
    assert len({json.dumps(hook["filter"], sort_keys=True) for hook in hooks}) == 1000
    assert len({hook["name"] for hook in hooks}) == 1000


def test_a_baseline_twins_every_filter_row_next_to_it(bench, monkeypatch):
    """`--baseline REV`: each event_hooks row is followed by its twin running REV's filter (same
    hooks, same traffic), the other rows have none, and only this tree's rows are plotted."""
    baseline = ROOT / "target" / "bench-baseline" / "wasm32-wasip1" / "release" / "event_hooks.wasm"
    monkeypatch.setitem(bench.BASELINE, "wasm", baseline)
    monkeypatch.setitem(bench.BASELINE, "rev", "v0")
    rows = bench.configurations()
    keys = [c.key for c in rows]
    assert keys == ["none", "empty", "hooks-0", "hooks-0@baseline", "hooks-10", "hooks-10@baseline", "hooks-100",
                    "hooks-100@baseline", "hooks-1000", "hooks-1000@baseline", "match-1pct", "match-1pct@baseline", "lua-1pct",
                    # The access logger's rows (issue 15) have no twins: a baseline may predate it.
                    "al-hooks-0", "al-hooks-10", "al-hooks-100", "al-hooks-1000", "al-match-1pct",
                    "alpf-hooks-10", "alpf-hooks-100", "alpf-hooks-1000", "alpf-match-1pct",
                    "log-unbatched", "log-batch-10", "log-batch-100", "log-batch-1000"]
    by_key = {c.key: c for c in rows}
    for key in ("hooks-100", "match-1pct"):
        own, twin = by_key[key], by_key[key + "@baseline"]
        own_config, twin_config = own.filters[0]["typed_config"]["config"], twin.filters[0]["typed_config"]["config"]
        assert twin_config["vm_config"]["code"]["local"]["filename"] == str(baseline)
        assert own_config["vm_config"]["code"]["local"]["filename"] == str(bench.WASM)
        assert twin_config["configuration"] == own_config["configuration"]
        assert (twin.fail_percent, twin.delivers, twin.hooks) == (own.fail_percent, own.delivers, None)
        assert "at baseline v0" in twin.label


def test_the_log_rows_log_every_request_signed_with_batches_closed_by_size(bench):
    """The log rows (issue 14): one signed traffic hook without a filter, on the delivery
    benchmark's settings; unbatched, then batches of 10, 100 and 1,000 whose delay and byte
    limits leave size to close them (max_bytes at its maximum, well above 1,000 events)."""
    rows = {c.key: c for c in bench.configurations() if c.delivers == "every"}
    assert list(rows) == ["log-unbatched", "log-batch-10", "log-batch-100", "log-batch-1000"]
    for key, row in rows.items():
        configuration = json.loads(row.filters[0]["typed_config"]["config"]["configuration"]["value"])
        assert configuration["delivery"] == bench.DELIVERY_SETTINGS
        (hook,) = configuration["hooks"]
        assert (hook["source"], hook["handler"], "filter" in hook) == ("traffic", "webhook", False)
        assert hook["config"]["secret"] == bench.SECRET
        batch = hook["config"].get("batch")
        assert (batch or {}).get("max_size") == row.batch
        if batch:
            assert batch["max_bytes"] == 16 * 1024 * 1024 and batch["max_delay_ms"] >= 1000


def test_the_receivers_count_events_alike(bench, tmp_path):
    """bench/receiver (Rust) and the Python receiver verify and count the same way: signature
    over the exact body, webhook-id, events by request id, duplicates, calls turned down."""
    def calls(port: int):
        def post(body: bytes, signed: bool = True, webhook_id: bool = True):
            headers = {"content-type": "application/json"}
            if signed:
                headers["x-kong-signature"] = "sha1=" + hmac.new(bench.SECRET.encode(), body, hashlib.sha1).hexdigest()
            if webhook_id:
                headers["webhook-id"] = "id"
            try:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/log", data=body, headers=headers), timeout=10)
            except urllib.error.HTTPError:
                pass

        post(b'{"request": {"id": "a"}, "response": {"status": 200}}')
        post(b'[{"request": {"id": "b", "path": "/\\u0041"}}, {"request": {"id": "c"}}, {"request": {"id": "a"}}]')
        post(b'[{"request": {"id": "d"}}]', signed=False)
        post(b'[{"request": {"id": "d"}}]', webhook_id=False)
        post(b'[{"request": {}}]')
        post(b'[{"request": {"id": "d"}}')

    bench.build_receiver()
    rust = bench.RustReceiver(None)
    python = bench.Receiver()
    try:
        for receiver in (rust, python):
            receiver.reset()
            calls(receiver.port)
        assert rust.stats() == python.stats() == {
            "calls": 6, "verified_calls": 2, "arrays": 1, "events": 4, "distinct": 3, "duplicates": 1, "bytes": rust.stats()["bytes"],
            "unsigned": 1, "bad_signature": 0, "no_webhook_id": 1, "bad_body": 2, "sizes": {"1": 1, "3": 1}}
        rust.reset()
        assert rust.stats()["calls"] == 0
    finally:
        rust.close()
        python.close()
