"""The benchmark (`make bench`, bench/run.py) cannot silently rot: every Envoy configuration it
generates passes `envoy --mode validate`, which loads each wasm module (the filter, the empty
filter) and runs the filter's configuration check, and compiles the Lua filter. No load is run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

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
    bootstraps = {c.key: bench.proxy_bootstrap(c.filters, c.fail_percent, 9) for c in bench.configurations()}
    bootstraps["deliveries"] = bench.delivery_bootstrap(9)
    bootstraps["receiver"] = bench.receiver_bootstrap()
    assert {"none", "empty", "hooks-0", "hooks-10", "hooks-100", "hooks-1000", "match-1pct", "lua-1pct"} <= bootstraps.keys()
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
