"""Every scenario of tests/scenarios/ that runs on `envoy`, played through the real Envoy.

One Envoy serves them all, one listener (so one filter configuration, with the scenario's `env`
as its VM's environment) per scenario; one receiver (cluster `receiver`) answers the current
scenario's `receiver.statuses` in order of arrival, and one upstream answers each request with
its `response`. The scenarios play one after the other: the requests go in order; then the test
waits (at most 15 s) for every expected call, waits until the filter's queued,
waiting-for-retry and in-flight gauges read zero at a flush tick after the last request, and
checks that the receiver got exactly the expected calls (a bipartite matching,
scenarios.match), that every call the filter made arrived, and that the log holds every
expected line and no trap.

Plus: every source, handler and signature scheme the filter supports, and retries, are covered
by some scenario; every scenario file keeps the contract (test_scenario_lib.py checks that).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import pytest

import scenarios
from conftest import WAIT, BackgroundServer, Envoy, envoy_config, static_cluster, wait_until

ALL = scenarios.load_all()
ON_ENVOY = [scenario for scenario in ALL if "envoy" in scenario.runs_on]
GAUGES = ("queue.depth", "queue.bytes", "retries.pending", "in_flight")
# A standard-webhooks timestamp farther than this from the receiver's clock is refused, as the
# reference libraries do.
TOLERANCE = 300


class AnyMethod(BaseHTTPRequestHandler):
    """Serves every method (webhook-custom sends GET, PUT, DELETE, ...): `answer(body)` gives
    the status, headers and body to answer."""

    protocol_version = "HTTP/1.1"

    def handle_one_request(self):
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            self.close_connection = True
            return
        status, headers, body = self.answer(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def answer(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def log_message(self, *args):
        pass


class ScenarioReceiver(BackgroundServer):
    """Records every call; answers the current scenario's statuses in order of arrival, then
    200. One receiver serves every scenario, one after the other: `reset` starts the next."""

    def __init__(self):
        self.calls: list[scenarios.Call] = []
        self.scenario: scenarios.Scenario | None = None
        self.changed = threading.Condition()
        receiver = self

        class Handler(AnyMethod):
            def answer(self, body):
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    name = name.lower()
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
                with receiver.changed:
                    status, answer_headers = receiver.scenario.answer(len(receiver.calls)) if receiver.scenario else (200, {})
                    receiver.calls.append(scenarios.Call(self.command, self.path, headers, body))
                    receiver.changed.notify_all()
                return status, answer_headers, b""

        super().__init__(Handler)

    def reset(self, scenario: scenarios.Scenario):
        with self.changed:
            self.calls, self.scenario = [], scenario

    def received(self) -> list[scenarios.Call]:
        with self.changed:
            return list(self.calls)

    def wait_for_all(self, expected: list[dict], timeout: float) -> list[scenarios.Call]:
        """Waits until every expected call has a distinct received one."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not scenarios.matched_all(expected, self.calls, TOLERANCE):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for the expected calls:\n"
                                         + scenarios.explain(expected, self.calls, TOLERANCE))
                self.changed.wait(remaining)
            return list(self.calls)


class ScriptedUpstream(BackgroundServer):
    """Answers the requests in the order they come with the current scenario's responses, and
    records what it got so that the test can check each request reached it in order."""

    def __init__(self):
        self.responses: list[dict] = []
        self.got: list[tuple[str, str]] = []
        upstream = self

        class Handler(AnyMethod):
            def answer(self, body):
                index = len(upstream.got)
                upstream.got.append((self.command, self.path))
                if index >= len(upstream.responses):
                    return 599, {}, b"unexpected request"
                response = upstream.responses[index]
                bodyless = response["status"] in (204, 304)
                return response["status"], response["headers"], b"" if bodyless else response["body"].encode()

        super().__init__(Handler)

    def reset(self, scenario: scenarios.Scenario):
        self.responses, self.got = [request["response"] for request in scenario.requests], []


# --- one Envoy for every scenario -------------------------------------------------------------
#
# Compiling the filter takes V8 about 3 s, so every scenario gets its own listener (its own
# filter configuration, so its own root context) in one Envoy, and listeners share a VM when
# they can. Scenarios in one VM share its environment and its shared data (snooze and on_change
# windows are kept per hook name), so a scenario goes to another VM when its environment
# disagrees with the VM's or a hook name is already taken there. Each scenario also has its own
# upstream cluster (upstream-<n>, all to one scripted server), so that balancer state, kept per
# cluster and host, is its own.


def vm_groups(played: list[scenarios.Scenario]) -> tuple[list[int], list[dict[str, str]]]:
    """The VM of each scenario (the first whose environment and hook names it does not clash
    with), and each VM's environment."""
    groups: list[tuple[dict[str, str], set[str]]] = []
    chosen = []
    for scenario in played:
        names = {hook.get("name", f"hook-{index}") for index, hook in enumerate(scenario.config.get("hooks", []))}
        for number, (env, taken) in enumerate(groups):
            if not names & taken and all(env.get(key, value) == value for key, value in scenario.env.items()):
                env.update(scenario.env)
                taken.update(names)
                break
        else:
            groups.append((dict(scenario.env), set(names)))
            number = len(groups) - 1
        chosen.append(number)
    return chosen, [env for env, _ in groups]


def scenario_listener(index: int, scenario: scenarios.Scenario, vm: int, env: dict[str, str]) -> dict:
    routes = [{"name": "scenario", "match": {"prefix": "/"}, "route": {"cluster": f"upstream-{index}"}}]
    listener = envoy_config(scenario.config, routes, [])["static_resources"]["listeners"][0]
    listener["name"] = f"scenario-{index}"
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["stat_prefix"] = f"scenario-{index}"
    vm_config = manager["http_filters"][0]["typed_config"]["config"]["vm_config"]
    vm_config["vm_id"] = f"event_hooks-{vm}"
    if env:
        vm_config["environment_variables"] = {"key_values": env}
    return listener


@dataclass
class Stage:
    envoy: Envoy
    receiver: ScenarioReceiver
    upstream: ScriptedUpstream
    index: dict[str, int]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    receiver, upstream = ScenarioReceiver(), ScriptedUpstream()
    vms, envs = vm_groups(ON_ENVOY)
    listeners = [scenario_listener(index, scenario, vms[index], envs[vms[index]]) for index, scenario in enumerate(ON_ENVOY)]
    clusters = [static_cluster("receiver", receiver.port)]
    clusters += [static_cluster(f"upstream-{index}", upstream.port) for index in range(len(ON_ENVOY))]
    config = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
              "static_resources": {"listeners": listeners, "clusters": clusters}}
    envoy = Envoy(config, tmp_path_factory.mktemp("scenarios"))
    try:
        envoy.start()
        yield Stage(envoy, receiver, upstream, {scenario.name: index for index, scenario in enumerate(ON_ENVOY)})
    finally:
        envoy.stop()
        receiver.close()
        upstream.close()


def send(connection: http.client.HTTPConnection, request: dict) -> int:
    """Sends one request exactly as the scenario says (`:authority` localhost unless `host` is
    given, no header added but content-length) and reads the whole answer."""
    connection.putrequest(request["method"], request["path"], skip_host=True, skip_accept_encoding=True)
    headers = {"host": "localhost", **request["headers"]}
    body = request["body"].encode()
    for name, value in headers.items():
        connection.putheader(name, value)
    if body or request["method"] in ("POST", "PUT", "PATCH"):
        connection.putheader("content-length", str(len(body)))
    connection.endheaders(body or None)
    answer = connection.getresponse()
    answer.read()
    return answer.status


def proxy_stats(envoy: Envoy, index: int) -> dict[str, int]:
    """The filter's counters and gauges (summed over every VM, without the wasmcustom.
    prefix), and the scenario listener's completed requests."""
    values = {}
    wanted = f"^(wasmcustom\\.event_hooks\\.|http\\.scenario-{index}\\.downstream_rq_completed$)"
    for line in envoy.get_admin("/stats?filter=" + urllib.parse.quote(wanted)).splitlines():
        name, _, value = line.partition(": ")
        if value.strip().lstrip("-").isdigit():
            values[name.removeprefix("wasmcustom.").removeprefix(f"http.scenario-{index}.")] = int(value)
    return values


def idle(stats: dict[str, int]) -> bool:
    return all(stats.get(f"event_hooks.{gauge}", 0) == 0 for gauge in GAUGES)


@pytest.mark.parametrize("scenario", ON_ENVOY, ids=[scenario.name for scenario in ON_ENVOY])
def test_scenario(scenario: scenarios.Scenario, stage: Stage):
    envoy, receiver, upstream, index = stage.envoy, stage.receiver, stage.upstream, stage.index[scenario.name]
    # Whatever an earlier scenario left (if it failed) must not reach this one's receiver.
    wait_until(lambda: idle(proxy_stats(envoy, index)), WAIT, "the filter to be idle")
    receiver.reset(scenario)
    upstream.reset(scenario)
    log_start = len(envoy.log())
    before = proxy_stats(envoy, index)

    connection = http.client.HTTPConnection("127.0.0.1", envoy.listener_port(f"scenario-{index}"), timeout=10)
    try:
        for request in scenario.requests:
            if request["after_ms"]:
                time.sleep(request["after_ms"] / 1000)  # the scenario asks this much time to pass
            status = send(connection, request)
            assert status == request["response"]["status"], (request, status)
    finally:
        connection.close()
    assert upstream.got == [(r["method"], r["path"]) for r in scenario.requests], "the upstream got other requests"

    # Every request has been logged (its events emitted) once the listener counts it completed.
    wait_until(lambda: proxy_stats(envoy, index).get("downstream_rq_completed", 0) >= len(scenario.requests),
               what="the requests to complete")
    emitted = time.monotonic()
    receiver.wait_for_all(scenario.calls, WAIT)

    # The gauges are reported on the filter's tick: zero at a tick after the last event was
    # emitted means nothing is queued, waiting for a retry or in flight.
    settled_after = emitted + 2 * scenario.flush_interval_ms / 1000 + 0.05

    def settled():
        stats = proxy_stats(envoy, index)
        return time.monotonic() >= settled_after and idle(stats) and stats

    stats = wait_until(settled, WAIT, "the filter's queue, retries and calls in flight to drain")
    received = receiver.received()
    if len(received) != len(scenario.calls) or not scenarios.matched_all(scenario.calls, received, TOLERANCE):
        pytest.fail(f"the receiver got other calls than expected:\n{scenarios.explain(scenario.calls, received, TOLERANCE)}")
    # Every call the filter made reached the receiver: none was lost on the way.
    attempts = stats.get("event_hooks.attempts", 0) - before.get("event_hooks.attempts", 0)
    assert attempts == len(received), (attempts, len(received))

    for line in scenario.logs:
        wait_until(lambda: line in envoy.log()[log_start:], 5, f"the log line {line!r}")
    log = envoy.log()[log_start:]
    for sign in ("panicked", "wasm trap", "Function: proxy_on", "failed to load"):
        assert sign not in log, f"Envoy log shows {sign!r}:\n{log[-4000:]}"


# --- coverage ---------------------------------------------------------------------------------


def test_every_source_handler_and_signature_scheme_is_covered_and_retries_too():
    covered = {item for scenario in ALL for item in scenario.covers}
    supported = scenarios.supported()
    wanted = {f"{kind}:{name}" for kind, names in supported.items() for name in names} | {"retries"}
    assert len(supported["source"]) >= 6 and len(supported["handler"]) >= 4 and len(supported["signature"]) >= 3
    assert not wanted - covered, f"not covered by any scenario: {sorted(wanted - covered)}"


def test_the_supported_names_are_the_ones_the_readme_documents():
    """The catalog read from the code is the one users read (the README and the book in
    docs/src), so the coverage test above cannot pass by reading too little."""
    pages = [scenarios.ROOT / "README.md", *sorted((scenarios.ROOT / "docs" / "src").rglob("*.md"))]
    readme = "\n".join(page.read_text() for page in pages)
    supported = scenarios.supported()
    hooks_table = next(line for line in readme.splitlines() if line.startswith("| `source` | yes |"))
    handlers_table = next(line for line in readme.splitlines() if line.startswith("| `handler` | yes |"))
    for name in supported["source"]:
        assert f"`{name}`" in hooks_table or name == "event_hooks", name
    assert '"source": "event_hooks"' in readme
    for name in supported["handler"]:
        assert f"`{name}`" in handlers_table, name
    for name in supported["signature"]:
        assert f"| `{name}`" in readme, name
