"""Scenario files (tests/scenarios/*.json): loading and validating them against the contract in
tests/scenarios/README.md, matching the calls a receiver got against the expected ones, and
verifying signatures.

Nothing here depends on a proxy: the real-Envoy runner (test_scenarios.py) uses it, and its
own unit tests (test_scenario_lib.py) prove the matching and the verifiers. The verifiers are
written from each scheme's specification, not from the filter's code:

- Kong: `X-Kong-Signature: sha1=<lowercase hex HMAC-SHA1(secret, body)>` (Kong Gateway's
  event hooks, webhook handler).
- Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
  entries separated by spaces, the key being the base64 after `whsec_`
  (https://www.standardwebhooks.com, "Verifying webhook authenticity").
- GitHub: `X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256(secret, body)>` (GitHub's
  "Validating webhook deliveries").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"
RUNNERS = ("harness-kong", "harness-envoy", "envoy")
SCHEMES = ("kong", "standard-webhooks", "github")
ANY = "<any>"

TOP_KEYS = {"description", "covers", "runs_on", "why_not", "env", "config", "receiver", "requests", "expect"}
REQUIRED_TOP = {"description", "covers", "config", "requests", "expect"}
REQUEST_KEYS = {"method", "path", "headers", "body", "response", "after_ms"}
RESPONSE_KEYS = {"status", "headers", "body"}
EXPECT_KEYS = {"calls", "logs"}
CALL_KEYS = {"method", "path", "headers", "json", "body", "signature"}
SIGNATURE_KEYS = {"scheme", "secret"}
ANSWER_KEYS = {"status", "headers"}

TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COVERS = re.compile(r"^[a-z_-]+(:[a-z0-9_:-]+)?$")


class ScenarioError(ValueError):
    """A scenario file that breaks the contract; the message lists every problem."""


# --- loading and validation -----------------------------------------------------------------


@dataclass
class Scenario:
    name: str  # the file name without .json
    description: str
    covers: list[str]
    runs_on: list[str]
    env: dict[str, str]
    config: dict
    answers: list[tuple[int, dict[str, str]]]  # receiver.statuses, normalized
    requests: list[dict]  # with every default filled in
    calls: list[dict]
    logs: list[str] = field(default_factory=list)

    def answer(self, index: int) -> tuple[int, dict[str, str]]:
        """What the receiver answers to its `index`th call (0-based): 200 once the list is used up."""
        return self.answers[index] if index < len(self.answers) else (200, {})

    @property
    def flush_interval_ms(self) -> int:
        return int(self.config.get("delivery", {}).get("flush_interval_ms", 100))


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.json"))


def load_all() -> list[Scenario]:
    return [load(path) for path in scenario_files()]


def load(path: Path) -> Scenario:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ScenarioError(f"{path.name}: {error}") from error
    return parse(document, path.stem)


class _Problems:
    def __init__(self, name: str):
        self.name = name
        self.items: list[str] = []

    def add(self, where: str, what: str):
        self.items.append(f"{where}: {what}")

    def keys(self, value, where: str, allowed: set[str], required: set[str] = frozenset()) -> bool:
        """Whether `value` is an object; reports unknown and missing keys."""
        if not isinstance(value, dict):
            self.add(where, "must be an object")
            return False
        for key in sorted(set(value) - allowed):
            self.add(f"{where}.{key}" if where != "$" else key, f"unknown key; expected one of {sorted(allowed)}")
        for key in sorted(required - set(value)):
            self.add(f"{where}.{key}" if where != "$" else key, "missing required key")
        return True

    def strings(self, value, where: str, name_pattern: re.Pattern | None = None, what: str = "") -> dict[str, str]:
        """An object of strings to strings (header maps, env); reports what is not."""
        if not isinstance(value, dict):
            self.add(where, "must be an object of strings")
            return {}
        for key, item in value.items():
            if not isinstance(item, str):
                self.add(f"{where}.{key}", "must be a string")
            if name_pattern and not name_pattern.match(key):
                self.add(f"{where}.{key}", what)
        return {key: item for key, item in value.items() if isinstance(item, str)}

    def raise_if_any(self):
        if self.items:
            raise ScenarioError(f"{self.name}: " + "; ".join(self.items))


def parse(document, name: str = "scenario") -> Scenario:
    """Validates one scenario document against the contract; raises ScenarioError listing every
    problem. Unknown keys are refused at every level."""
    problems = _Problems(name)
    if not problems.keys(document, "$", TOP_KEYS, REQUIRED_TOP):
        problems.raise_if_any()

    description = document.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.add("description", "must be a non-empty sentence")
    covers = document.get("covers")
    if not isinstance(covers, list) or not covers or not all(isinstance(c, str) and COVERS.match(c) for c in covers):
        problems.add("covers", "must be a non-empty list of names such as source:traffic, handler:webhook, retries")
        covers = []

    runs_on = _runs_on(document, problems)
    env = problems.strings(document.get("env", {}), "env", ENV_NAME, "not an environment variable name")
    config = document.get("config")
    if not isinstance(config, dict):
        problems.add("config", "must be an object (the filter's configuration)")
        config = {}
    _check_destinations(config, problems)
    answers = _answers(document.get("receiver", {}), problems)
    requests = _requests(document.get("requests"), problems)
    calls, logs = _expect(document.get("expect"), problems)
    problems.raise_if_any()
    return Scenario(name, description, covers, runs_on, env, config, answers, requests, calls, logs)


def _runs_on(document: dict, problems: _Problems) -> list[str]:
    runs_on = document.get("runs_on", list(RUNNERS))
    if not isinstance(runs_on, list) or not runs_on or any(r not in RUNNERS for r in runs_on) or len(set(runs_on)) != len(runs_on):
        problems.add("runs_on", f"must be a non-empty list of distinct runners among {list(RUNNERS)}")
        return []
    why_not = document.get("why_not", {})
    left_out = {runner for runner in RUNNERS if runner not in runs_on}
    if not isinstance(why_not, dict) or set(why_not) != left_out:
        problems.add("why_not", f"must give a reason for exactly the runners left out of runs_on: {sorted(left_out)}")
    elif not all(isinstance(reason, str) and reason.strip() for reason in why_not.values()):
        problems.add("why_not", "every reason must be a non-empty string")
    return runs_on


def _check_destinations(config: dict, problems: _Problems):
    """Every hook's url goes to the host `receiver`, with the cluster left out."""
    hooks = config.get("hooks", [])
    for index, hook in enumerate(hooks if isinstance(hooks, list) else []):
        settings = hook.get("config") if isinstance(hook, dict) else None
        if not isinstance(settings, dict):
            continue
        url = settings.get("url")
        if url is not None and not (isinstance(url, str) and url.startswith("http://receiver/")):
            problems.add(f"config.hooks[{index}].config.url", "every call goes to http://receiver/...")
        if "cluster" in settings:
            problems.add(f"config.hooks[{index}].config.cluster", "leave the cluster out: the runners name it receiver")


def _answers(receiver, problems: _Problems) -> list[tuple[int, dict[str, str]]]:
    if not problems.keys(receiver, "receiver", {"statuses"}):
        return []
    statuses = receiver.get("statuses", [])
    if not isinstance(statuses, list):
        problems.add("receiver.statuses", "must be a list")
        return []
    answers = []
    for index, entry in enumerate(statuses):
        where = f"receiver.statuses[{index}]"
        headers: dict[str, str] = {}
        if isinstance(entry, dict):
            if not problems.keys(entry, where, ANSWER_KEYS, {"status"}):
                continue
            headers = problems.strings(entry.get("headers", {}), f"{where}.headers", HEADER_NAME, "header names are lowercase")
            entry = entry.get("status")
        if not _is_status(entry):
            problems.add(where, "must be an HTTP status (100 to 599) or {\"status\": ..., \"headers\": {...}}")
            continue
        answers.append((entry, headers))
    return answers


def _is_status(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _requests(requests, problems: _Problems) -> list[dict]:
    if not isinstance(requests, list):
        problems.add("requests", "must be a list (may be empty)")
        return []
    filled = []
    for index, request in enumerate(requests):
        where = f"requests[{index}]"
        if not problems.keys(request, where, REQUEST_KEYS):
            continue
        method = request.get("method", "GET")
        if not isinstance(method, str) or not TOKEN.match(method):
            problems.add(f"{where}.method", "must be an HTTP method")
        path = request.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            problems.add(f"{where}.path", "must start with /")
        headers = problems.strings(request.get("headers", {}), f"{where}.headers", HEADER_NAME, "header names are lowercase")
        body = request.get("body", "")
        if not isinstance(body, str):
            problems.add(f"{where}.body", "must be text")
        after_ms = request.get("after_ms", 0)
        if not isinstance(after_ms, int) or isinstance(after_ms, bool) or after_ms < 0:
            problems.add(f"{where}.after_ms", "must be a whole number of milliseconds, 0 or more")
        response = request.get("response", {})
        status, response_headers, response_body = 200, {}, ""
        if problems.keys(response, f"{where}.response", RESPONSE_KEYS):
            status = response.get("status", 200)
            if not _is_status(status):
                problems.add(f"{where}.response.status", "must be an HTTP status (100 to 599)")
            response_headers = problems.strings(response.get("headers", {}), f"{where}.response.headers", HEADER_NAME, "header names are lowercase")
            response_body = response.get("body", "")
            if not isinstance(response_body, str):
                problems.add(f"{where}.response.body", "must be text")
        filled.append({"method": method, "path": path, "headers": headers, "body": body, "after_ms": after_ms,
                       "response": {"status": status, "headers": response_headers, "body": response_body}})
    return filled


def _expect(expect, problems: _Problems) -> tuple[list[dict], list[str]]:
    if not problems.keys(expect, "expect", EXPECT_KEYS, {"calls"}):
        return [], []
    calls = expect.get("calls")
    if not isinstance(calls, list):
        problems.add("expect.calls", "must be a list (may be empty)")
        calls = []
    for index, call in enumerate(calls):
        where = f"expect.calls[{index}]"
        if not problems.keys(call, where, CALL_KEYS):
            continue
        if "method" in call and not (isinstance(call["method"], str) and TOKEN.match(call["method"])):
            problems.add(f"{where}.method", "must be an HTTP method")
        if "path" in call and not (isinstance(call["path"], str) and call["path"].startswith("/")):
            problems.add(f"{where}.path", "must start with /")
        if "headers" in call:
            problems.strings(call["headers"], f"{where}.headers", HEADER_NAME, "header names are lowercase")
        if "json" in call and "body" in call:
            problems.add(where, "json or body, not both")
        if "body" in call and not isinstance(call["body"], str):
            problems.add(f"{where}.body", "must be text")
        if "signature" in call:
            signature = call["signature"]
            if problems.keys(signature, f"{where}.signature", SIGNATURE_KEYS, SIGNATURE_KEYS):
                if signature.get("scheme") not in SCHEMES:
                    problems.add(f"{where}.signature.scheme", f"must be one of {list(SCHEMES)}")
                if not isinstance(signature.get("secret"), str) or not signature.get("secret"):
                    problems.add(f"{where}.signature.secret", "must be a non-empty string")
    logs = expect.get("logs", [])
    if not isinstance(logs, list) or not all(isinstance(line, str) and line for line in logs):
        problems.add("expect.logs", "must be a list of non-empty strings")
        logs = []
    return [call for call in calls if isinstance(call, dict)], logs


# --- matching calls -----------------------------------------------------------------------------


@dataclass
class Call:
    """One call a receiver got: header names lowercase, repeated headers joined with ", "."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def summary(self) -> str:
        text = self.body.decode("utf-8", "replace")
        return f"{self.method} {self.path} {text[:300]}{'...' if len(text) > 300 else ''}"


def contains(expected, actual, where: str = "$") -> str | None:
    """None when `actual` contains `expected` (objects key by key, arrays element by element
    with the same length, other values equal, "<any>" for any value present); else where and
    why not."""
    if expected == ANY:
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {_kind(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}.{key}: absent"
            problem = contains(value, actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{where}: expected an array, got {_kind(actual)}"
        if len(expected) != len(actual):
            return f"{where}: expected {len(expected)} elements, got {len(actual)}"
        for index, (value, item) in enumerate(zip(expected, actual)):
            problem = contains(value, item, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if _scalar_equal(expected, actual):
        return None
    return f"{where}: expected {json.dumps(expected)}, got {json.dumps(actual)[:200]}"


def _scalar_equal(expected, actual) -> bool:
    # JSON types, not Python's: true is not 1, and 500 equals 500.0.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    numbers = (int, float)
    if isinstance(expected, numbers) or isinstance(actual, numbers):
        return isinstance(expected, numbers) and isinstance(actual, numbers) and expected == actual
    return type(expected) is type(actual) and expected == actual


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def mismatch(expected: dict, call: Call, tolerance: float | None = None) -> str | None:
    """None when `call` matches the expected call; else the first reason it does not."""
    if "method" in expected and call.method != expected["method"]:
        return f"method {call.method}, expected {expected['method']}"
    if "path" in expected and call.path != expected["path"]:
        return f"path {call.path}, expected {expected['path']}"
    for name, value in expected.get("headers", {}).items():
        if name not in call.headers:
            return f"header {name} absent"
        if value != ANY and call.headers[name] != value:
            return f"header {name}: {call.headers[name]!r}, expected {value!r}"
    if "body" in expected and call.body != expected["body"].encode():
        return f"body {call.body[:200]!r}, expected {expected['body']!r}"
    if "json" in expected:
        try:
            document = json.loads(call.body)
        except ValueError:
            return f"body is not JSON: {call.body[:200]!r}"
        problem = contains(expected["json"], document)
        if problem:
            return f"json {problem}"
    if "signature" in expected:
        scheme, secret = expected["signature"]["scheme"], expected["signature"]["secret"]
        if not verify(scheme, secret, call, tolerance):
            return f"signature does not verify with {scheme}"
    return None


def match(expected: list[dict], received: list[Call], tolerance: float | None = None) -> list[int | None]:
    """A maximum matching of expected calls to distinct received ones (Kuhn's augmenting paths
    on the bipartite graph of "matches"); element i is the index of the call assigned to
    expected[i], or None."""
    edges = [[j for j, call in enumerate(received) if mismatch(want, call, tolerance) is None] for want in expected]
    owner: dict[int, int] = {}  # received index -> expected index

    def augment(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(expected)):
        augment(i, set())
    assignment: list[int | None] = [None] * len(expected)
    for j, i in owner.items():
        assignment[i] = j
    return assignment


def matched_all(expected: list[dict], received: list[Call], tolerance: float | None = None) -> bool:
    """Whether every expected call has a distinct received call."""
    return all(j is not None for j in match(expected, received, tolerance))


def explain(expected: list[dict], received: list[Call], tolerance: float | None = None) -> str:
    """Why `received` is not exactly `expected`: what is missing, with each received call's
    reason not to match it, and what is extra."""
    assignment = match(expected, received, tolerance)
    lines = []
    for i, j in enumerate(assignment):
        if j is None:
            lines.append(f"expected call {i} ({expected[i].get('method', '?')} {expected[i].get('path', '?')}) not received:")
            for k, call in enumerate(received):
                lines.append(f"    received {k}: {mismatch(expected[i], call, tolerance) or 'matches, but is assigned to another expected call'}")
    extra = set(range(len(received))) - {j for j in assignment if j is not None}
    for k in sorted(extra):
        lines.append(f"extra call {k}: {received[k].summary()}")
    return "\n".join(lines) or "every call matched"


# --- signatures ---------------------------------------------------------------------------------


def verify(scheme: str, secret: str, call: Call, tolerance: float | None = None) -> bool:
    """Whether `call` carries a valid signature of `scheme` with `secret`. For
    standard-webhooks, `tolerance` (seconds) also bounds the timestamp's distance from now."""
    if scheme == "kong":
        return verify_kong(secret, call.body, call.headers)
    if scheme == "github":
        return verify_github(secret, call.body, call.headers)
    if scheme == "standard-webhooks":
        return verify_standard(secret, call.body, call.headers, tolerance)
    raise ValueError(f"unknown signature scheme {scheme!r}")


def verify_kong(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    expected = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected.encode(), headers.get("x-kong-signature", "").encode())


def verify_github(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), headers.get("x-hub-signature-256", "").encode())


def standard_key(secret: str) -> bytes:
    """The key of a Standard Webhooks secret: the base64 after `whsec_` (padding optional)."""
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def verify_standard(secret: str, body: bytes, headers: dict[str, str], tolerance: float | None = None) -> bool:
    message_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit():
        return False
    if tolerance is not None and abs(time.time() - int(timestamp)) > tolerance:
        return False
    try:
        key = standard_key(secret)
    except (binascii.Error, ValueError):
        return False
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for entry in headers.get("webhook-signature", "").split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(expected, signature.encode()):
            return True
    return False


# --- what the filter supports ---------------------------------------------------------------------


def supported() -> dict[str, list[str]]:
    """The source, handler and signature scheme names, read from the configuration's JSON Schema
    (kong/event_hooks.meta.json, which the code generates from its catalogs: `make schema`; a
    unit test fails when the committed file is stale)."""
    schema = json.loads((ROOT / "kong" / "event_hooks.meta.json").read_text())["config_schema"]
    hook = schema["properties"]["hooks"]["items"]
    configs = [variant["properties"]["config"] for variant in hook["allOf"][0]["oneOf"]]
    signatures = next(config["properties"]["signature"]["enum"] for config in configs
                      if "signature" in config.get("properties", {}))
    return {
        # The built-in sources (the other branch is the pattern a published source's name follows).
        "source": hook["properties"]["source"]["anyOf"][0]["enum"],
        "handler": hook["properties"]["handler"]["enum"],
        "signature": signatures,
    }
