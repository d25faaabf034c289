"""End-to-end harness: the real Envoy (from .venv) with the freshly built event_hooks.wasm,
a webhook receiver and a stub upstream written here.

Every server binds port 0 and reports the port it got; Envoy's admin and listeners bind port 0
too and are discovered through the admin API, so parallel runs never collide. Nothing sleeps
for a fixed time: every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVOY = ROOT / ".venv" / "bin" / "envoy"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "event_hooks.wasm"
WAIT = 15.0


def wait_until(condition, timeout: float = WAIT, what: str = "condition"):
    """Polls `condition` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# --- servers ----------------------------------------------------------------------------


class BackgroundServer:
    """An HTTP server on 127.0.0.1 serving `handler` from a daemon thread (port 0 unless
    given: the port it got is `self.port`)."""

    def __init__(self, handler, port: int = 0, tls: tuple[str, str] | None = None):
        # Headers and body go out as separate small writes: with Nagle's algorithm the body
        # waits for Envoy's delayed ACK, 40 ms a response.
        handler.disable_nagle_algorithm = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- the webhook receiver ---------------------------------------------------------------


@dataclass
class Delivery:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body)


class Receiver(BackgroundServer):
    """Records every request it gets; answers `status` (200 by default)."""

    def __init__(self, tls: tuple[str, str] | None = None):
        self.deliveries: list[Delivery] = []
        self.status = 200
        self.delay = 0.0  # seconds to wait before answering
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                if receiver.delay:
                    time.sleep(receiver.delay)  # the receiver under test is slow, on purpose
                with receiver._changed:
                    receiver.deliveries.append(Delivery(self.command, self.path, headers, body))
                    receiver._changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(Handler, tls=tls)

    def matching(self, predicate) -> list[Delivery]:
        with self._changed:
            return [delivery for delivery in self.deliveries if predicate(delivery)]

    def wait_for(self, predicate, timeout: float = WAIT, what: str = "a delivery") -> Delivery:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for delivery in self.deliveries:
                    if predicate(delivery):
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {len(self.deliveries)} deliveries")
                self._changed.wait(remaining)


# --- a receiver that misbehaves on demand ----------------------------------------------


@dataclass
class Attempt:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")


class Chaos(BackgroundServer):
    """Records every attempt; `script(attempt, n)` (n: how many attempts this webhook-id had
    before) says what to do: a status (int), ("status", code, headers), ("sleep", seconds, code),
    or "reset" (close the connection with a TCP reset)."""

    def __init__(self, script=lambda attempt, n: 200, port: int = 0):
        self.attempts: list[Attempt] = []
        self.script = script
        self.lock = threading.Condition()
        chaos = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                attempt = Attempt(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with chaos.lock:
                    before = sum(1 for a in chaos.attempts if a.id == attempt.id)
                    chaos.attempts.append(attempt)
                    chaos.lock.notify_all()
                action = chaos.script(attempt, before)
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                headers = {}
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])  # slower than the filter's timeout, on purpose
                    action = action[2]
                if isinstance(action, tuple):
                    _, action, headers = action
                self.send_response(action)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(Handler, port)

    def at(self, path: str) -> list[Attempt]:
        """The attempts made to `path`, in the order they came."""
        with self.lock:
            return [attempt for attempt in self.attempts if attempt.path == path]

    def wait(self, predicate, timeout: float = 30, what: str = "attempts"):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self.attempts):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; {len(self.attempts)} attempts")
                self.lock.wait(remaining)


# --- the stub upstream ------------------------------------------------------------------


class Upstream(BackgroundServer):
    """Answers the status given in ?status=NNN (200 by default) with body `upstream <status>`."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                query = parse_qs(urlsplit(self.path).query)
                status = int(query.get("status", ["200"])[0])
                body = f"upstream {status}\n".encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        super().__init__(Handler)


# --- Envoy ------------------------------------------------------------------------------


def static_cluster(name: str, port: int, tls: dict | None = None) -> dict:
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", **tls},
        }
    return cluster


def plugin_config(configuration: dict | str, root_id: str) -> dict:
    """The proxy-wasm plugin `config` of event_hooks (HTTP filter or access logger)."""
    value = configuration if isinstance(configuration, str) else json.dumps(configuration)
    return {
        "name": "event_hooks",
        "root_id": root_id,
        "failure_policy": "FAIL_OPEN",
        "vm_config": {
            "vm_id": "event_hooks",
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(WASM)}},
        },
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value},
    }


def wasm_filter(configuration: dict | str) -> dict:
    return {
        "name": "event_hooks",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": plugin_config(configuration, "event_hooks"),
        },
    }


def wasm_access_log(configuration: dict | str, root_id: str = "event_hooks_access_log", log_filter: dict | None = None) -> dict:
    """event_hooks as Envoy's wasm access logger (the root context's `on_log` once per finished
    request), with the native `log_filter` in front when given."""
    entry = {
        "name": "event_hooks",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.wasm.v3.WasmAccessLog",
            "config": plugin_config(configuration, root_id),
        },
    }
    if log_filter:
        entry["filter"] = log_filter
    return entry


ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


# Where event_hooks runs in Envoy (docs/src/hosts/envoy.md#two-attachments): an HTTP filter (a
# context per request), or the access logger (the root context's on_log, once per finished request).
ATTACHMENTS = ("http_filter", "access_logger")


def listener(filter_configuration: dict | str | None, routes: list[dict], before: list[dict] = (), after: list[dict] = (),
             attachment: str = "http_filter", log_filter: dict | None = None) -> dict:
    """The `proxy` listener on port 0: filters `before`, event_hooks (none when its configuration
    is None), filters `after`, the router. With `attachment` "access_logger", event_hooks is the
    HTTP connection manager's access logger instead, behind the native `log_filter` if given."""
    assert attachment in ATTACHMENTS, attachment
    as_filter = filter_configuration is not None and attachment == "http_filter"
    filters = [wasm_filter(filter_configuration)] if as_filter else []
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "proxy",
        # The client is the peer, not whatever x-forwarded-for claims.
        "use_remote_address": True,
        "route_config": {"name": "proxy", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [*before, *filters, *after, ROUTER],
    }
    if filter_configuration is not None and attachment == "access_logger":
        hcm["access_log"] = [wasm_access_log(filter_configuration, log_filter=log_filter)]
    return {
        "name": "proxy",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


def envoy_config(filter_configuration: dict | str | None, routes: list[dict], clusters: list[dict], before: list[dict] = (), after: list[dict] = (),
                 attachment: str = "http_filter", log_filter: dict | None = None) -> dict:
    """A bootstrap with admin and one listener on port 0, the filter (attached as `attachment`
    says), and the given routes."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener(filter_configuration, routes, before, after, attachment, log_filter)], "clusters": clusters},
    }


def lds_config(lds_path: Path, clusters: list[dict]) -> dict:
    """A bootstrap whose listeners come from `lds_path` (Envoy reloads it when it is replaced)."""
    return {
        "node": {"id": "event-hooks-test", "cluster": "test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"lds_config": {"path_config_source": {"path": str(lds_path)}}},
        "static_resources": {"clusters": clusters},
    }


def write_lds(lds_path: Path, listeners: list[dict]):
    """Replaces the LDS file atomically, as Envoy's file watcher expects."""
    resources = [{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **item} for item in listeners]
    staging = lds_path.with_suffix(".next")
    staging.write_text(json.dumps({"resources": resources}))
    os.replace(staging, lds_path)


class Envoy:
    """One Envoy process; `start()` returns once it is ready, or raises with its log."""

    def __init__(self, config: dict | str | Path, workdir: Path, concurrency: int = 1, cwd: Path = ROOT, extra: tuple[str, ...] = ()):
        self.workdir = workdir
        self.log_path = workdir / f"envoy-{uuid.uuid4().hex[:8]}.log"
        self.admin_path = workdir / f"admin-{uuid.uuid4().hex[:8]}.txt"
        if isinstance(config, Path):
            self.config_path = config
        else:
            self.config_path = workdir / f"envoy-{uuid.uuid4().hex[:8]}.json"
            self.config_path.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
        self.concurrency = concurrency
        self.cwd = cwd
        self.extra = tuple(extra)
        self.process: subprocess.Popen | None = None
        self.admin = ""

    def command(self, *extra: str) -> list[str]:
        return [
            str(ENVOY), "-c", str(self.config_path), "--concurrency", str(self.concurrency),
            "--disable-hot-restart", "--admin-address-path", str(self.admin_path),
            "--log-level", "warn", "--component-log-level", "wasm:debug", "--log-path", str(self.log_path),
            "--file-flush-interval-msec", "50", *self.extra, *extra,
        ]

    def start(self) -> "Envoy":
        assert ENVOY.exists(), f"{ENVOY} is missing: run `make envoy`"
        assert WASM.exists(), f"{WASM} is missing: run `make build`"
        self.process = subprocess.Popen(self.command(), cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"Envoy exited with {self.process.returncode}:\n{self.output()}")
            if not self.admin_path.exists() or not self.admin_path.read_text().strip():
                return False
            self.admin = "http://" + self.admin_path.read_text().strip()
            try:
                return self.get_admin("/ready") == "LIVE"
            except OSError:
                return False

        wait_until(ready, 30, "Envoy to be ready")
        return self

    def get_admin(self, path: str) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=5) as answer:
            return answer.read().decode().strip()

    def listener_port(self, name: str = "proxy") -> int:
        listeners = json.loads(self.get_admin("/listeners?format=json"))
        for listener in listeners["listener_statuses"]:
            if listener["name"] == name:
                return listener["local_address"]["socket_address"]["port_value"]
        raise AssertionError(f"no listener {name}: {listeners}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def output(self) -> str:
        out = self.process.stdout.read().decode() if self.process and self.process.stdout else ""
        return out + self.log()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def stat(envoy: "Envoy", name: str) -> int:
    """One counter or gauge from Envoy's admin /stats (0 when absent)."""
    for line in envoy.get_admin(f"/stats?filter=^{name}$").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def get_many(port: int, paths: list[str], headers: dict[str, str] | None = None):
    """GETs each path in turn on one kept-alive connection; every answer must be a 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path in paths:
            connection.request("GET", path, headers=headers or {})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200, (path, answer.status)
    finally:
        connection.close()


def admin_status(envoy: "Envoy", token: str, prefix: str = "/event-hooks") -> dict:
    """The filter's admin status (this worker's), through the proxy listener."""
    code, body = http_get(envoy.listener_port(), f"{prefix}/status", {"authorization": f"Bearer {token}"})
    assert code == 200, body
    return json.loads(body)


def accounting(envoy: "Envoy", token: str) -> dict:
    """Checks accepted = delivered + failed + dropped + pending for every hook; returns them."""
    hooks = admin_status(envoy, token)["hooks"]
    for name, counts in hooks.items():
        assert counts["accepted"] == counts["delivered"] + counts["failed"] + counts["dropped"] + counts["pending"], (name, counts)
    return hooks


def settled(envoy: "Envoy", token: str, hook: str) -> dict:
    """Waits until nothing of `hook` is pending; returns its counts."""
    return wait_until(lambda: (counts := accounting(envoy, token)[hook])["pending"] == 0 and counts, what=f"nothing pending for {hook}")


def prometheus(envoy: "Envoy") -> dict[str, float]:
    """The filter's metrics as /stats/prometheus shows them, by name (labels left out)."""
    values = {}
    for line in envoy.get_admin("/stats/prometheus").splitlines():
        if line.startswith("event_hooks_"):
            name, _, value = line.partition(" ")
            values[name.split("{")[0]] = float(value)
    return values


def http_get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def chaos():
    """A Chaos receiver answering 200 until the test sets its `script`."""
    server = Chaos()
    yield server
    server.close()


@pytest.fixture(params=ATTACHMENTS)
def attachment(request) -> str:
    """Each attachment in turn: a test taking it runs once with event_hooks as an HTTP filter,
    once as the access logger, and expects the same of both."""
    return request.param


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="session")
def demo_certs() -> Path:
    """The demo CA and receiver certificate (demo/certs.sh, as `make certs` makes them)."""
    directory = ROOT / "envoy" / "certs"
    subprocess.run([str(ROOT / "demo" / "certs.sh"), str(directory)], check=True, cwd=ROOT, capture_output=True)
    return directory


@pytest.fixture
def start_envoy(tmp_path):
    started: list[Envoy] = []

    def start(config, **options) -> Envoy:
        envoy = Envoy(config, tmp_path, **options).start()
        started.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()
        # No VM may have crashed, whatever the test checked.
        log = envoy.log()
        for sign in ("panicked", "wasm trap", "Function: proxy_on", "failed to load"):
            assert sign not in log, f"Envoy log shows {sign!r}:\n{log[-4000:]}"
