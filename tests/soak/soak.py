"""The soak test: mixed, hostile traffic through Envoy with the filter and, request for
request, through an identical Envoy without it.

Usage: `python tests/soak/soak.py --seconds 600 --results tests/soak/RESULTS.md` (`make soak`);
`tests/e2e/test_soak_short.py` runs it for 30 seconds in `make test`.

Both Envoys (1.40, from .venv, one worker each) proxy to the same deterministic upstream
written here, so every request sent to both must get the same status and body. The filter's
Envoy carries a configuration with every source and handler, three signature schemes, retries,
a circuit breaker and a dead-letter hook, and delivers to a receiver that misbehaves on
purpose (slow answers, 5xx, 429 with Retry-After, resets, garbage, closed connections, 400,
a 410 for one hook, and a 5-second outage every 20 seconds that fills the bounded queues). Traffic: random methods and paths, bytes that are not UTF-8, oversized
and too many headers, huge and chunked bodies, huge responses, slow clients, and connections
aborted or bodies truncated midway (those two only need both proxies to survive them).

It passes when:
* no request sent to both proxies got different answers (status and body);
* neither Envoy's log shows a VM failure (panic, trap, failed proxy_on_ call, VM failure),
  no Wasm VM was created after start (a restart or reload would create one) and Envoy's Wasm
  failure counters stay 0;
* the filter-Envoy's resident memory at the end is within 10% of its value at the end of the
  warm-up (the first fifth of the run);
* per hook, accepted = delivered + failed + dropped + pending (the admin status endpoint) at
  the end, the hooks' sums equal the filter's metrics, and once the receiver behaves, every
  pending delivery is settled;
* every delivery the receiver got from a signing hook carries a valid signature;
* the filter saw the traffic: at least 80% as many traffic events as requests it was sent
  (with FAIL_OPEN, a failed VM would let traffic pass unseen and unchanged).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from conftest import Envoy, envoy_config, static_cluster, wait_until  # noqa: E402

ADMIN_TOKEN = "soak-admin-token"
KONG_SECRET = "soak-kong-secret"
GITHUB_SECRET = "soak-github-secret"
# Standard Webhooks: the new key and the old one, both signing (rotation).
WHSEC_NEW = "whsec_" + base64.b64encode(b"soak-standard-key-new-32-bytes!!").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"soak-standard-key-old-32-bytes!!").decode()
# Envoy's Wasm failures, as its log writes them.
VM_FAILURE_SIGNS = ("Wasm VM failed", "panicked", "Function: proxy_on_", "wasm trap", "failed to load", "VM failed")


# --- the deterministic upstream ---------------------------------------------------------


def pattern(size: int) -> bytes:
    """`size` bytes that depend only on `size`."""
    block = hashlib.sha256(str(size).encode()).hexdigest().encode()
    return (block * (size // len(block) + 1))[:size]


# Headers Envoy adds or rewrites on the way upstream: left out of the digest of what the
# client sent, which must otherwise reach the upstream unchanged with and without the filter.
ENVOY_HEADERS = ("x-forwarded-", "x-request-id", "x-envoy-", "content-length", "transfer-encoding", "connection", "keep-alive", "te")


class Upstream:
    """Answers from the request alone: the status the path asks for, and a body naming the
    method, path, body length and digests of the body and of the client's headers. `/admin/`
    is a Kong-style admin API (JSON entities), `/limited/` answers 429 with rate-limit headers,
    `/big/N` N bytes, `/slow/` after 0.2 s, `/flap/N` 503 or 200 in runs of four."""

    def __init__(self):
        upstream = self
        self.requests = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self):
                body = self._read_body()
                with upstream._lock:
                    upstream.requests += 1
                status, headers, payload = upstream.answer(self.command, self.path, self.headers.items(), body)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if status not in (204, 304):
                    self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD" and status not in (204, 304):
                    self.wfile.write(payload)

            def __getattr__(self, name):
                if name.startswith("do_"):
                    return self._answer
                raise AttributeError(name)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients that go away mid-answer, on purpose

        Handler.disable_nagle_algorithm = True
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(method: str, path: str, headers, body: bytes):
        sent = sorted((name.lower(), value) for name, value in headers
                      if not name.lower().startswith(ENVOY_HEADERS) and name.lower() != "host")
        digest = hashlib.sha256(json.dumps(sent).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        summary = f"{method} {path} n={len(body)} body={hashlib.sha256(body).hexdigest()[:16]} headers={digest}\n".encode("utf-8", "surrogateescape")
        bare = path.split("?", 1)[0]
        parts = [part for part in bare.split("/") if part]
        head = parts[0] if parts else ""
        json_type = [("content-type", "application/json")]
        if head == "admin":
            entity_id = hashlib.sha256(body + bare.encode("utf-8", "surrogateescape")).hexdigest()[:12]
            if bare == "/admin/big":
                return 201, json_type, json.dumps({"id": entity_id, "blob": "x" * 100_000}).encode()
            if bare == "/admin/notjson":
                return 201, [], b"created, but not JSON\n"
            if method == "POST":
                return 201, json_type, json.dumps({"id": entity_id, "path": bare, "n": len(body)}).encode()
            if method in ("PUT", "PATCH"):
                status = 201 if method == "PUT" and entity_id[0] in "01234567" else 200
                return status, json_type, json.dumps({"id": parts[-1], "n": len(body)}).encode()
            if method == "DELETE":
                return 204, [], b""
            return 200, json_type, json.dumps({"data": [], "path": bare}).encode()
        if head == "limited":
            return 429, [("ratelimit-limit", "10"), ("ratelimit-remaining", "0"), ("ratelimit-reset", "30"),
                         ("ratelimit-policy", "10;w=60"), ("x-consumer-echo", "1")], summary
        if head == "big" and len(parts) > 1 and parts[1].isdigit():
            return 200, [("content-type", "application/octet-stream")], pattern(min(int(parts[1]), 8 << 20))
        if head == "slow":
            time.sleep(0.2)
        if head == "flap" and len(parts) > 1 and parts[1].isdigit():
            return (503 if (int(parts[1]) // 4) % 2 == 0 else 200), [], summary
        if head == "s" and len(parts) > 1 and parts[1].isdigit() and 200 <= int(parts[1]) <= 599:
            return int(parts[1]), [("content-type", "text/plain")], summary
        return 200, [("content-type", "text/plain")], summary

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- the misbehaving receiver -----------------------------------------------------------


@dataclass
class ReceiverStats:
    requests: int = 0
    behaviours: Counter = field(default_factory=Counter)
    verified: int = 0
    bad_signatures: list = field(default_factory=list)
    unsigned: int = 0
    by_hook: Counter = field(default_factory=Counter)
    ids: Counter = field(default_factory=Counter)


# How each hook's deliveries are signed: the receiver checks them all.
SIGNING = {
    "errors-kong": ("kong", KONG_SECRET),
    "all-standard": ("standard-webhooks", [WHSEC_NEW, WHSEC_OLD]),
    "custom-json": ("github", GITHUB_SECRET),
    "lambda": ("kong", KONG_SECRET),
    "consumers-created": ("kong", KONG_SECRET),
    "dead-letters": ("kong", KONG_SECRET),
    "health": ("standard-webhooks", [WHSEC_NEW]),
    "throttled": ("github", GITHUB_SECRET),
    "gone": ("kong", KONG_SECRET),
}


def signature_ok(scheme: str, secret, headers: dict[str, str], body: bytes) -> bool:
    if scheme == "kong":
        expected = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        return hmac.compare_digest(expected, headers.get("x-kong-signature", ""))
    if scheme == "github":
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers.get("x-hub-signature-256", ""))
    signed = f'{headers.get("webhook-id", "")}.{headers.get("webhook-timestamp", "")}.'.encode() + body
    entries = headers.get("webhook-signature", "").split(" ")
    for key in secret:
        raw = base64.b64decode(key.removeprefix("whsec_"))
        expected = "v1," + base64.b64encode(hmac.new(raw, signed, hashlib.sha256).digest()).decode()
        if not any(hmac.compare_digest(expected, entry) for entry in entries):
            return False
    return True


class Receiver:
    """A raw HTTP/1.1 receiver. In `chaos` mode it answers at random: 200 (most often), slowly
    (up to 2.5 s, past the filter's 1 s timeout), 500, 503 with Retry-After, 429, 400, a reset,
    garbage bytes, or a closed connection; and every 20 s it has a 5-second outage (only
    failures). `/hooks/gone` always answers 410. In `good` mode it answers 200 at once (but
    still 410 for `gone`)."""

    BEHAVIOURS = ["ok", "slow", "500", "503-retry-after", "429", "400", "reset", "garbage", "close"]
    WEIGHTS = [52, 8, 8, 4, 4, 2, 8, 7, 7]
    # Every OUTAGE_EVERY seconds, OUTAGE_FOR seconds of nothing but failures.
    OUTAGE_EVERY, OUTAGE_FOR = 20.0, 5.0

    def __init__(self, seed: int):
        self.mode = "chaos"
        self._began = time.monotonic()
        self.stats = ReceiverStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self._socket.getsockname()[1]
        self._open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self._open:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _choose(self, path: str) -> str:
        if path.startswith("/hooks/gone"):
            return "410"
        if self.mode == "good":
            return "ok"
        with self._lock:
            if (time.monotonic() - self._began) % self.OUTAGE_EVERY < self.OUTAGE_FOR:
                # An outage: nothing gets through, so queues and retries fill up to their bounds.
                return self._rng.choice(["reset", "close", "500", "slow"])
            return self._rng.choices(self.BEHAVIOURS, self.WEIGHTS)[0]

    def _serve(self, connection: socket.socket):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = connection.makefile("rb")
        try:
            while True:
                line = stream.readline(65536)
                if not line:
                    return
                parts = line.decode("latin-1").split()
                path = parts[1] if len(parts) > 1 else "/"
                headers: dict[str, str] = {}
                while True:
                    header = stream.readline(65536)
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = stream.read(int(headers.get("content-length") or 0))
                if not self._answer(connection, path, headers, body):
                    return
        except OSError:
            return
        finally:
            try:
                connection.close()
            except OSError:
                pass

    def _answer(self, connection: socket.socket, path: str, headers: dict[str, str], body: bytes) -> bool:
        """Answers one request; whether the connection stays open."""
        behaviour = self._choose(path)
        hook = path.split("?")[0].removeprefix("/hooks/")
        with self._lock:
            self.stats.requests += 1
            self.stats.behaviours[behaviour] += 1
            self.stats.by_hook[hook] += 1
            self.stats.ids[headers.get("webhook-id", "")] += 1
            signing = SIGNING.get(hook)
            if signing and body:
                if signature_ok(*signing, headers, body):
                    self.stats.verified += 1
                elif len(self.stats.bad_signatures) < 20:
                    self.stats.bad_signatures.append(f"{hook}: {headers}")
                else:
                    self.stats.bad_signatures.append(hook)
            else:
                self.stats.unsigned += 1

        def reply(status: str, extra: str = "") -> bool:
            connection.sendall(f"HTTP/1.1 {status}\r\n{extra}content-length: 0\r\n\r\n".encode())
            return True

        if behaviour == "ok":
            return reply("200 OK")
        if behaviour == "slow":
            time.sleep(self._rng.uniform(0.2, 2.5))
            return reply("200 OK")
        if behaviour == "500":
            return reply("500 Internal Server Error")
        if behaviour == "503-retry-after":
            return reply("503 Service Unavailable", "retry-after: 1\r\n")
        if behaviour == "429":
            return reply("429 Too Many Requests", "retry-after: 1\r\n")
        if behaviour == "400":
            return reply("400 Bad Request")
        if behaviour == "410":
            return reply("410 Gone")
        if behaviour == "reset":
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return False
        if behaviour == "garbage":
            connection.sendall(b"\x00\xffNOT HTTP\r\n\r\n" + bytes(self._rng.randrange(256) for _ in range(64)))
            return False
        return False  # close

    def close(self):
        self._open = False
        self._socket.close()


# --- the proxies ------------------------------------------------------------------------


def hooks() -> list[dict]:
    receiver = "http://receiver/hooks/"
    kong = {"secret": KONG_SECRET}
    return [
        {"name": "errors-kong", "source": "traffic", "filter": {"response.status": {"gte": 500}},
         "handler": "webhook", "config": {"url": receiver + "errors-kong", "cluster": "receiver", **kong}},
        {"name": "all-standard", "source": "traffic", "filter": {"request.method": {"ne": "OPTIONS"}},
         "redact_headers": ["authorization", "cookie", "x-api-key"],
         "handler": "webhook", "config": {"url": receiver + "all-standard", "cluster": "receiver",
                                          "signature": "standard-webhooks", "secret": WHSEC_NEW, "secrets": [WHSEC_OLD],
                                          "headers": {"x-team": "soak"}, "retry": {"max_attempts": 2}}},
        {"name": "custom-json", "source": "traffic", "filter": {"request.path": {"prefix": "/orders"}},
         "handler": "webhook-custom",
         "config": {"url": receiver + "custom-json", "cluster": "receiver", "method": "POST",
                    "headers_format": True,
                    "headers": {"content-type": "application/json", "x-path": "{{ request.path }}", "x-note": "{{ request.headers.x-note }}"},
                    "body": '{"note": "{{ request.headers.x-note }}", "status": {{ response.status }}, "headers": {* request.headers *}}',
                    "signature": "github", "secret": GITHUB_SECRET}},
        {"name": "custom-get", "source": "traffic", "filter": {"response.status": {"in": [404, 429]}},
         "handler": "webhook-custom",
         "config": {"url": receiver + "custom-get?from=soak", "cluster": "receiver", "method": "GET",
                    "payload": {"status": "{{ response.status }}", "path": "{{ request.path }}"}}},
        {"name": "gone", "source": "traffic", "filter": {"request.path": {"prefix": "/orders"}},
         "handler": "webhook", "config": {"url": receiver + "gone", "cluster": "receiver", **kong}},
        {"name": "log-lines", "source": "traffic", "filter": {"request.path": {"prefix": "/log/"}},
         "handler": "log", "config": {}},
        {"name": "lambda", "source": "traffic", "filter": {"request.path": {"prefix": "/lambda"}},
         "handler": "lambda",
         "config": {"cluster": "receiver", **kong, "max_operations": 20000, "functions": [
             "if data.response.status >= 400 { return; }\n#{path: data.request.path, status: data.response.status, note: data.request.headers[\"x-note\"]}",
             "http(#{url: \"http://receiver/hooks/lambda\", body: data});\nif data.path.contains(\"9\") { log(\"lambda saw \" + data.path); }",
         ]}},
        {"name": "disabled", "enabled": False, "source": "traffic", "handler": "log", "config": {}},
        {"name": "consumers-created", "source": "crud", "event": "consumers:create",
         "handler": "webhook", "config": {"url": receiver + "consumers-created", "cluster": "receiver", **kong}},
        {"name": "dao-all", "source": "dao:crud", "handler": "webhook-custom",
         "config": {"url": receiver + "dao-all", "cluster": "receiver", "method": "PUT",
                    "headers": {"content-type": "application/x-www-form-urlencoded"},
                    "payload": {"operation": "{{ operation }}", "schema": "{{ schema }}", "id": "{{ entity.id }}"}}},
        {"name": "health", "source": "balancer", "event": "health", "on_change": True,
         "handler": "webhook", "config": {"url": receiver + "health", "cluster": "receiver",
                                          "signature": "standard-webhooks", "secret": WHSEC_NEW}},
        {"name": "throttled", "source": "rate-limiting-advanced", "snooze": 1, "on_change": True,
         "handler": "webhook", "config": {"url": receiver + "throttled", "cluster": "receiver",
                                          "signature": "github", "secret": GITHUB_SECRET}},
        {"name": "dead-letters", "source": "event_hooks", "event": "dead_letter",
         "handler": "webhook", "config": {"url": receiver + "dead-letters", "cluster": "receiver", **kong,
                                          "retry": {"max_attempts": 2}}},
    ]


def filter_configuration() -> dict:
    return {
        "host": "envoy",
        "hooks": hooks(),
        "delivery": {
            "queue_size": 300, "max_queue_bytes": 256 << 10, "max_in_flight": 32, "max_in_flight_per_destination": 16,
            "max_pending_retries": 100, "timeout_ms": 1000, "flush_interval_ms": 20,
            "retry": {"max_attempts": 3, "max_age_ms": 8000, "backoff_ms": 100, "max_backoff_ms": 1000},
            "breaker": {"failures": 20, "cooldown_ms": 1000},
            "dead_letter": "dead-letters",
        },
        "crud": {"match": {"request.path": {"prefix": "/admin/"}}, "prefix": "/admin/", "max_body_bytes": 65536},
        "health": {"unhealthy_after": 3, "healthy_after": 2},
        "rate_limit": {"consumer_headers": ["x-consumer-username", "x-consumer-id"]},
        "admin": {"prefix": "/event-hooks", "token": ADMIN_TOKEN},
    }


def bootstrap(with_filter: bool, upstream: Upstream, flappy: Upstream, receiver: Receiver, dead_port: int) -> dict:
    routes = [
        {"name": "dead", "match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
        {"name": "flap", "match": {"prefix": "/flap"}, "route": {"cluster": "flappy"}},
        {"name": "upstream", "match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "30s"}},
    ]
    clusters = [static_cluster("upstream", upstream.port), static_cluster("flappy", flappy.port), static_cluster("dead", dead_port),
                static_cluster("receiver", receiver.port)]
    clusters[0]["circuit_breakers"] = {"thresholds": [{"max_connections": 10000, "max_pending_requests": 10000, "max_requests": 10000}]}
    # Envoy generates its own x-request-id (generate_request_id defaults to true).
    return envoy_config(filter_configuration() if with_filter else None, routes, clusters)


class QuietEnvoy(Envoy):
    """Envoy with the filter's log at info, not debug: a debug line per delivery would write
    hundreds of megabytes in ten minutes."""

    def command(self, *extra: str) -> list[str]:
        command = super().command(*extra)
        at = command.index("--component-log-level")
        command[at + 1] = "wasm:info"
        return command

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stats(self) -> dict[str, int]:
        stats = {}
        for line in self.get_admin("/stats").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                stats[name] = int(value)
        return stats


# --- traffic ----------------------------------------------------------------------------


@dataclass
class Spec:
    kind: str
    method: str
    wire: bytes
    # Compared: both proxies must answer it identically.
    compare: bool = True
    # Sent in this many pieces, this many seconds apart (a slow client).
    pieces: int = 1
    delay: float = 0.0
    # The connection is closed after sending this many bytes, without reading an answer.
    cut_at: int | None = None

    def describe(self) -> str:
        head = self.wire.split(b"\r\n", 1)[0][:200]
        return f"{self.kind}: {head!r} ({len(self.wire)} bytes)"


NOTES = ['plain', 'say "hi" \\ back', '{"json": [1, 2]}', "caf\u00e9 \u2603", "</script><b>", "{{ request.path }}", ""]
STATUSES = [200, 201, 204, 301, 302, 400, 401, 403, 404, 405, 409, 410, 418, 429, 500, 502, 503, 504]
KINDS = {
    "plain": 34, "admin": 12, "status": 12, "flap": 6, "big-response": 3, "huge-body": 2, "chunked": 4,
    "invalid-utf8": 6, "oversized-headers": 3, "weird": 5, "slow": 4, "aborted": 5, "truncated": 4,
}


class Traffic:
    """Request specs from a seeded random generator (thread-safe)."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._flap = 0

    def next(self) -> Spec:
        with self._lock:
            kind = self._rng.choices(list(KINDS), list(KINDS.values()))[0]
            seed = self._rng.getrandbits(64)
            if kind == "flap":
                self._flap += 1
                flap = self._flap
            else:
                flap = 0
        return make_spec(kind, random.Random(seed), flap)


def request(method: str, path: bytes | str, headers: list[tuple[bytes | str, bytes | str]], body: bytes = b"",
            chunked: bool = False) -> bytes:
    as_bytes = lambda text: text if isinstance(text, bytes) else text.encode()  # noqa: E731
    lines = [as_bytes(method) + b" " + as_bytes(path) + b" HTTP/1.1", b"host: soak.test", b"connection: close"]
    lines += [as_bytes(name) + b": " + as_bytes(value) for name, value in headers]
    if chunked:
        lines.append(b"transfer-encoding: chunked")
        pieces = [body[i:i + 7000] for i in range(0, len(body), 7000)]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
        return b"\r\n".join(lines) + b"\r\n\r\n" + encoded
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def common_headers(rng: random.Random) -> list[tuple[str, str]]:
    headers = [("user-agent", "soak/1"), ("x-note", rng.choice(NOTES))]
    if rng.random() < 0.3:
        headers.append(("authorization", f"Bearer secret-{rng.randrange(1000)}"))
    if rng.random() < 0.2:
        headers.append(("cookie", "session=abc; theme=dark"))
    if rng.random() < 0.3:
        headers.append(("x-consumer-username", rng.choice(["alice", "bob", "carol"])))
    if rng.random() < 0.1:
        headers.append(("x-note", "repeated"))
    return headers


def make_spec(kind: str, rng: random.Random, flap: int) -> Spec:
    headers = common_headers(rng)
    method = rng.choice(["GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    n = rng.randrange(100_000)
    prefix = rng.choice(["/orders", "/lambda", "/log", "/r", "/slow"])
    if kind == "plain":
        path = f"{prefix}/{n}" + (f"?q={n}&x=%20y" if rng.random() < 0.3 else "")
        body = pattern(rng.randrange(2000)) if method in ("POST", "PUT", "PATCH") else b""
        return Spec(kind, method, request(method, path, headers, body))
    if kind == "admin":
        method = rng.choice(["POST", "POST", "PUT", "PATCH", "DELETE", "GET"])
        collection = rng.choice(["/admin/consumers", "/admin/services/s1/routes", "/admin/plugins"])
        path = {"POST": collection, "GET": collection}.get(method, f"{collection}/{n}")
        if rng.random() < 0.1:
            path, method = rng.choice(["/admin/big", "/admin/notjson"]), "POST"
        body = json.dumps({"username": f"user-{n}", "tags": ["soak"]}).encode() if method != "DELETE" else b""
        return Spec(kind, method, request(method, path, headers + [("content-type", "application/json")], body))
    if kind == "status":
        choice = rng.random()
        if choice < 0.25:
            path = f"/limited/{n}"
        elif choice < 0.4:
            path = f"/dead/{n}"
        else:
            path = f"/s/{rng.choice(STATUSES)}"
        return Spec(kind, method, request(method, path, headers))
    if kind == "flap":
        return Spec(kind, "GET", request("GET", f"/flap/{flap}", headers))
    if kind == "big-response":
        size = rng.choice([70_000, 1 << 20, 3 << 20, rng.randrange(5 << 20)])
        return Spec(kind, "GET", request("GET", f"/big/{size}", headers))
    if kind == "huge-body":
        body = pattern(rng.randrange(1 << 20, 6 << 20))
        path = rng.choice(["/orders/upload", "/admin/consumers", "/r/upload"])
        return Spec(kind, "POST", request("POST", path, headers, body))
    if kind == "chunked":
        body = pattern(rng.randrange(1, 200_000))
        return Spec(kind, "POST", request("POST", f"{prefix}/chunked/{n}", headers, body, chunked=True))
    if kind == "invalid-utf8":
        raw = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 300)))
        headers_b: list[tuple[bytes | str, bytes | str]] = [*headers, (b"x-bin", b"caf\xe9 " + raw)]
        if rng.random() < 0.3:
            headers_b.append((b"x-note", raw))
        path: bytes | str = f"{prefix}/utf8/{n}?q=%ff%fe"
        if rng.random() < 0.2:
            path = b"/r/raw-\xc3\x28-" + str(n).encode()  # raw non-ASCII in the path: Envoy refuses it
        return Spec(kind, method, request(method, path, headers_b))
    if kind == "oversized-headers":
        if rng.random() < 0.5:
            big = [("x-big", "v" * rng.choice([8_000, 50_000, 70_000, 100_000]))]
        else:
            big = [(f"x-many-{i}", str(i)) for i in range(rng.choice([90, 101, 150]))]
        return Spec(kind, "GET", request("GET", f"/orders/big-headers/{n}", headers + big))
    if kind == "weird":
        method = rng.choice(["FOO", "get", "PROPFIND", "M-SEARCH", "TRACE", "BREW"])
        path = rng.choice([f"/r/{'a' * 5000}", "/r/%00%ff", "//double//slash", "/a/../b", f"/r/{n}#frag", "/r/;p=1?a=b;c",
                           "*", "/r/" + "".join(rng.choice("abc%20-._~!$&'()*+,;=:@") for _ in range(40))])
        return Spec(kind, method, request(method, path, headers))
    if kind == "slow":
        body = pattern(rng.randrange(5000)) if method in ("POST", "PUT", "PATCH") else b""
        wire = request(method, f"{prefix}/slow-client/{n}", headers, body)
        return Spec(kind, method, wire, pieces=rng.randrange(3, 8), delay=rng.uniform(0.05, 0.2))
    if kind == "aborted":
        body = pattern(rng.randrange(100, 300_000))
        wire = request("POST", f"{prefix}/aborted/{n}", headers, body)
        return Spec(kind, "POST", wire, compare=False, cut_at=rng.randrange(1, len(wire)))
    # truncated: the body is shorter than its content-length, then the client goes away
    body = pattern(rng.randrange(100, 100_000))
    wire = request("POST", f"{prefix}/truncated/{n}", headers, body)
    return Spec(kind, "POST", wire[: len(wire) - rng.randrange(1, len(body))], compare=False, cut_at=len(wire))


def exchange(port: int, spec: Spec, timeout: float = 60.0):
    """Sends `spec` on a new connection; the answer's (status, body), or ("error", why)."""
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as error:
        return ("error", f"connect: {type(error).__name__}")
    try:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = spec.wire if spec.cut_at is None else spec.wire[: spec.cut_at]
        if spec.pieces > 1:
            step = len(wire) // spec.pieces + 1
            for start in range(0, len(wire), step):
                connection.sendall(wire[start:start + step])
                time.sleep(spec.delay)
        else:
            connection.sendall(wire)
        if spec.cut_at is not None:
            return ("aborted", None)
        answer = http.client.HTTPResponse(connection, method=spec.method)
        answer.begin()
        return (answer.status, answer.read())
    except (OSError, http.client.HTTPException) as error:
        return ("error", type(error).__name__)
    finally:
        connection.close()


# --- the run ----------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    requests: int = 0
    compared: int = 0
    by_kind: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    differences: list = field(default_factory=list)
    difference_count: int = 0
    rss: list = field(default_factory=list)  # (t, filter kB, baseline kB)
    rss_start_kb: int = 0
    rss_end_kb: int = 0
    baseline_rss_start_kb: int = 0
    baseline_rss_end_kb: int = 0
    vm_signs: list = field(default_factory=list)
    wasm_stats: dict = field(default_factory=dict)
    status_at_end: dict = field(default_factory=dict)
    status_drained: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    accounting_failures: list = field(default_factory=list)
    receiver: ReceiverStats | None = None
    drain_seconds: float = 0.0
    failures: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def admin_status(port: int) -> dict:
    request_ = urllib.request.Request(f"http://127.0.0.1:{port}/event-hooks/status",
                                      headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request_, timeout=10) as answer:
        return json.loads(answer.read())


def accounting(status: dict) -> list[str]:
    problems = []
    for name, stats in status["hooks"].items():
        settled = stats["delivered"] + stats["failed"] + stats["dropped"] + stats["pending"]
        if stats["accepted"] != settled:
            problems.append(f"hook {name}: accepted {stats['accepted']} != delivered {stats['delivered']} + failed "
                            f"{stats['failed']} + dropped {stats['dropped']} + pending {stats['pending']}")
    return problems


def free_port() -> int:
    """A port nothing listens on (bound, then released): the dead upstream."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(seconds: float, workdir: Path, clients: int = 6, seed: int = 1, log=print) -> Result:
    result = Result(seconds=seconds)
    upstream = Upstream()
    # A host of its own for /flap/, so that its runs of failures and successes are the only
    # observations of that host: the balancer source sees it turn unhealthy and healthy.
    flappy = Upstream()
    receiver = Receiver(seed + 1)
    dead_port = free_port()
    with_filter = QuietEnvoy(bootstrap(True, upstream, flappy, receiver, dead_port), workdir)
    baseline = QuietEnvoy(bootstrap(False, upstream, flappy, receiver, dead_port), workdir)
    started: list[QuietEnvoy] = []
    try:
        for envoy in (with_filter, baseline):
            envoy.start()
            started.append(envoy)
        port_f, port_b = with_filter.listener_port(), baseline.listener_port()
        # The filter's first request teaches it the host; from here on no VM may be created.
        exchange(port_f, make_spec("plain", random.Random(0), 0))
        created_at_start = with_filter.stats().get("wasm.envoy.wasm.runtime.v8.created", 0)
        log(f"soak: {seconds:.0f} s, {clients} clients; filter Envoy :{port_f}, baseline Envoy :{port_b}")

        traffic = Traffic(seed)
        stop = threading.Event()
        lock = threading.Lock()
        began = time.monotonic()

        def client(index: int):
            while not stop.is_set():
                spec = traffic.next()
                order = (port_f, port_b) if index % 2 == 0 else (port_b, port_f)
                answers = {port: exchange(port, spec) for port in order}
                a, b = answers[port_f], answers[port_b]
                with lock:
                    result.requests += 2
                    result.by_kind[spec.kind] += 1
                    result.statuses[a[0]] += 1
                    if spec.compare:
                        result.compared += 1
                        if a != b:
                            result.difference_count += 1
                            if len(result.differences) < 20:
                                shorten = lambda x: (x[0], x[1][:300] if isinstance(x[1], bytes) else x[1])  # noqa: E731
                                result.differences.append(f"{spec.describe()}: with filter {shorten(a)!r}, without {shorten(b)!r}")

        def sample_rss():
            while not stop.wait(2.0):
                result.rss.append((round(time.monotonic() - began, 1), with_filter.rss_kb(), baseline.rss_kb()))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        threads.append(threading.Thread(target=sample_rss, daemon=True))
        for thread in threads:
            thread.start()
        next_report = began + 60
        while time.monotonic() - began < seconds:
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - began))))
            if time.monotonic() >= next_report:
                next_report += 60
                with lock:
                    log(f"soak: {time.monotonic() - began:.0f} s, {result.requests} requests, {result.difference_count} differences, "
                        f"RSS {with_filter.rss_kb()} kB")
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        result.rss.append((round(time.monotonic() - began, 1), with_filter.rss_kb(), baseline.rss_kb()))

        # Accounting, as the traffic stopped; then with a receiver that behaves, everything pending settles.
        result.status_at_end = admin_status(port_f)
        result.accounting_failures += accounting(result.status_at_end)
        receiver.mode = "good"
        drain_began = time.monotonic()
        try:
            wait_until(lambda: all(h["pending"] == 0 for h in admin_status(port_f)["hooks"].values()),
                       timeout=90, what="every pending delivery to settle")
        except AssertionError as error:
            result.failures.append(str(error))
        result.drain_seconds = time.monotonic() - drain_began
        result.status_drained = admin_status(port_f)
        result.accounting_failures += accounting(result.status_drained)
        # The filter saw the traffic (with FAIL_OPEN, a failed VM would let it pass unseen).
        seen = result.status_drained["events"]["traffic"]
        if seen < 0.8 * (result.requests // 2):
            result.failures.append(f"the filter made {seen} traffic events for {result.requests // 2} requests")
        # The gauges follow on the filter's next tick: nothing queued, waiting or in flight.
        gauges = ("queue.depth", "queue.bytes", "retries.pending", "in_flight")

        def settled() -> bool:
            stats = with_filter.stats()
            breakers = [v for k, v in stats.items() if k.startswith("wasmcustom.event_hooks.breaker.") and k.endswith(".open")]
            return all(stats.get(f"wasmcustom.event_hooks.{g}", 0) == 0 for g in gauges) and not any(breakers)

        try:
            wait_until(settled, timeout=10, what="the delivery and breaker gauges to return to 0")
        except AssertionError as error:
            result.failures.append(f"{error}: {result.status_drained['queue']}")
        stats = with_filter.stats()
        result.metrics = {name.removeprefix("wasmcustom.event_hooks."): value for name, value in stats.items()
                          if name.startswith("wasmcustom.event_hooks.") and not name.startswith("wasmcustom.event_hooks.hook.")}
        hooks_status = result.status_drained["hooks"]
        for outcome in ("delivered", "failed", "dropped"):
            total = sum(h[outcome] for h in hooks_status.values())
            metric = result.metrics.get(f"deliveries.{outcome}", -1)
            if total != metric:
                result.accounting_failures.append(f"hooks' {outcome} add up to {total}, the metric deliveries.{outcome} says {metric}")
        result.wasm_stats = {name: value for name, value in stats.items() if name.startswith("wasm.")}
        created = stats.get("wasm.envoy.wasm.runtime.v8.created", 0)
        if created != created_at_start:
            result.failures.append(f"Wasm VMs were created during the run ({created_at_start} at start, {created} at the end)")
        for name, value in result.wasm_stats.items():
            if value and any(word in name for word in ("fail", "reload")):
                result.failures.append(f"Envoy stat {name} = {value}")
    finally:
        for envoy in started:
            envoy.stop()
        upstream.close()
        flappy.close()
        receiver.close()

    for envoy, which in ((with_filter, "filter"), (baseline, "baseline")):
        text = envoy.log()
        for sign in VM_FAILURE_SIGNS:
            if sign in text:
                line = next(line for line in text.splitlines() if sign in line)
                result.vm_signs.append(f"{which} Envoy log: {line[:300]}")
    result.receiver = receiver.stats
    finish(result)
    return result


def finish(result: Result):
    """Derives the verdicts."""
    samples = result.rss
    if samples:
        warm = max(result.seconds / 5, 1.0)
        after = [s for s in samples if s[0] >= warm] or samples
        result.rss_start_kb, result.baseline_rss_start_kb = after[0][1], after[0][2]
        result.rss_end_kb, result.baseline_rss_end_kb = samples[-1][1], samples[-1][2]
    if result.difference_count:
        result.failures.append(f"{result.difference_count} answers differ between the Envoy with the filter and the one without")
    result.failures += result.vm_signs
    result.failures += result.accounting_failures
    if result.rss_end_kb > result.rss_start_kb * 1.10:
        result.failures.append(f"the filter Envoy's RSS grew from {result.rss_start_kb} kB after warm-up to {result.rss_end_kb} kB (> 10%)")
    if result.receiver and result.receiver.bad_signatures:
        result.failures.append(f"{len(result.receiver.bad_signatures)} deliveries with a bad signature, e.g. {result.receiver.bad_signatures[0]}")
    if result.compared == 0:
        result.failures.append("no request was compared")


def report(result: Result) -> str:
    """The results as Markdown."""
    receiver = result.receiver or ReceiverStats()
    hooks = result.status_at_end.get("hooks", {})
    drained = result.status_drained.get("hooks", {})
    growth = (result.rss_end_kb / result.rss_start_kb - 1) * 100 if result.rss_start_kb else 0.0
    baseline_growth = (result.baseline_rss_end_kb / result.baseline_rss_start_kb - 1) * 100 if result.baseline_rss_start_kb else 0.0
    duplicates = sum(1 for webhook_id, n in receiver.ids.items() if webhook_id and n > 1)
    lines = [
        f"**{'PASS' if result.passed else 'FAIL'}**: {result.seconds:.0f} s of traffic, "
        f"{result.requests:,} requests ({result.requests // 2:,} to each Envoy), {result.compared:,} pairs compared, "
        f"**{result.difference_count} differences**.",
        "",
        "| criterion | result |",
        "|---|---|",
        f"| answers differing with and without the filter | {result.difference_count} of {result.compared:,} compared |",
        f"| VM failures in Envoy's logs, VMs created during the run, Wasm failure stats | {len(result.vm_signs)}, "
        f"{'none' if not any('created' in f for f in result.failures) else 'some'}, "
        f"{sum(v for k, v in result.wasm_stats.items() if 'fail' in k or 'reload' in k)} |",
        f"| filter Envoy RSS after warm-up (the first fifth of the run) → end | {result.rss_start_kb:,} kB → {result.rss_end_kb:,} kB ({growth:+.1f}%) |",
        f"| baseline Envoy RSS after warm-up → end | {result.baseline_rss_start_kb:,} kB → {result.baseline_rss_end_kb:,} kB ({baseline_growth:+.1f}%) |",
        f"| accounting (accepted = delivered + failed + dropped + pending, per hook, at the end and drained; hooks' sums = metrics) | "
        f"{'holds' if not result.accounting_failures else '; '.join(result.accounting_failures)} |",
        f"| pending deliveries settled after the traffic stopped | in {result.drain_seconds:.1f} s |",
        f"| receiver: requests, signatures verified, bad signatures | {receiver.requests:,}, {receiver.verified:,}, {len(receiver.bad_signatures)} |",
        "",
        "Requests by kind: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(result.by_kind.items())) + ".",
        "",
        "Answers of the filter Envoy by status: " + ", ".join(f"{status} {n:,}" for status, n in sorted(result.statuses.items(), key=str)) + ".",
        "",
        "Receiver behaviours: " + ", ".join(f"{b} {n:,}" for b, n in sorted(receiver.behaviours.items())) +
        f"; webhook-ids received more than once (retries after a lost answer): {duplicates:,}.",
        "",
        "Per hook (admin status when the traffic stopped → after draining):",
        "",
        "| hook | accepted | delivered | failed | dropped | pending | retries | dead letters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in drained.items():
        before = hooks.get(name, {})
        cell = lambda key: f"{before.get(key, 0):,} → {stats[key]:,}" if before.get(key) != stats[key] else f"{stats[key]:,}"  # noqa: E731
        lines.append(f"| {name} | " + " | ".join(cell(key) for key in ("accepted", "delivered", "failed", "dropped", "pending", "retries", "dead_letters")) + " |")
    if result.rss:
        step = max(1, len(result.rss) // 12)
        series = result.rss[::step] + ([result.rss[-1]] if (len(result.rss) - 1) % step else [])
        lines += ["", "Resident memory (VmRSS, kB) over the run, filter / baseline Envoy: " +
                  ", ".join(f"{t:.0f} s {f:,} / {b:,}" for t, f, b in series) + "."]
    lines += ["", "Filter metrics at the end: " + ", ".join(f"`{k}` {v:,}" for k, v in sorted(result.metrics.items())) + "."]
    events = result.status_drained.get("events", {})
    if events:
        lines += ["", "Events per source: " + ", ".join(f"{k} {v:,}" for k, v in events.items()) + "."]
    dead_letters = drained.get("dead-letters", {}).get("accepted", 0)
    if dead_letters and not events.get("event_hooks"):
        lines += ["", f"Observed, not a pass criterion: the dead-letter hook accepted {dead_letters:,} events, yet the "
                  "`event_hooks` source's event count (admin status `events`, metric `events.event_hooks`) stays 0: "
                  "dead letters are routed without being counted as emitted, where the README's Metrics counts "
                  "`event_hooks` among the sources."]
    if result.failures:
        lines += ["", "Failures:", ""] + [f"- {failure}" for failure in result.failures]
    if result.differences:
        lines += ["", "First differences:", ""] + [f"- `{d}`" for d in result.differences]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results", type=Path, help="write the results (Markdown) here")
    arguments = parser.parse_args()
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        result = run(arguments.seconds, Path(workdir), arguments.clients, arguments.seed)
    text = report(result)
    print(text)
    if arguments.results:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began))
        header = (f"# Soak test results\n\n`make soak` (SOAK_SECONDS={arguments.seconds:.0f}), run {stamp}, "
                  f"{time.time() - began:.0f} s in all, Envoy 1.40 (one worker each), {arguments.clients} client threads, seed {arguments.seed}.\n"
                  f"What is sent and what passes: [tests/soak/soak.py](soak.py).\n\n")
        arguments.results.write_text(header + text)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
