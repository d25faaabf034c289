"""The scenario library (scenarios.py) on its own, no proxy: every scenario file keeps the
contract, validation refuses what the contract refuses, call matching finds a distinct received
call for each expected one (where a greedy assignment would not), and each signature verifier
accepts its scheme's published test vector and refuses a flipped byte."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook as ReferenceVerifier

import scenarios
from scenarios import Call, ScenarioError, contains, match, matched_all, mismatch, verify

# --- the files ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", scenarios.scenario_files(), ids=lambda path: path.stem)
def test_every_scenario_file_keeps_the_contract(path):
    scenario = scenarios.load(path)
    assert scenario.description.rstrip().endswith("."), "one sentence, ending with a full stop"
    assert scenario.runs_on


def claims(scenario: scenarios.Scenario) -> set[str]:
    """The source:, handler: and signature: names a scenario's configuration really uses."""
    used = set()
    for hook in scenario.config.get("hooks", []):
        config = hook.get("config", {})
        used |= {f"source:{hook.get('source')}", f"handler:{hook.get('handler')}"}
        if any(key in config for key in ("secret", "secret_env")):
            used.add(f"signature:{config.get('signature', 'kong')}")
    return used


@pytest.mark.parametrize("scenario", scenarios.load_all(), ids=lambda scenario: scenario.name)
def test_what_a_scenario_says_it_covers_its_configuration_uses(scenario):
    supported = scenarios.supported()
    for item in scenario.covers:
        kind, _, name = item.partition(":")
        if kind in supported:
            assert name in supported[kind], f"{item}: the filter has no such {kind}"
            assert item in claims(scenario), f"{item}: no hook of the configuration uses it"


def test_there_are_scenarios_for_every_runner():
    loaded = scenarios.load_all()
    assert len(loaded) >= 10
    for runner in scenarios.RUNNERS:
        assert any(runner in scenario.runs_on for scenario in loaded), runner


# --- validation -----------------------------------------------------------------------------

VALID = {
    "description": "A 500 is delivered.",
    "covers": ["source:traffic", "handler:webhook"],
    "config": {"hooks": [{"source": "traffic", "handler": "webhook", "config": {"url": "http://receiver/hooks"}}]},
    "receiver": {"statuses": [503, {"status": 429, "headers": {"retry-after": "1"}}]},
    "requests": [{"path": "/x", "response": {"status": 500}}],
    "expect": {"calls": [{"method": "POST", "path": "/hooks", "json": {"response": {"status": 500}}}]},
}


def changed(edit) -> dict:
    document = copy.deepcopy(VALID)
    edit(document)
    return document


def test_a_valid_document_is_read_with_its_defaults():
    scenario = scenarios.parse(VALID)
    assert scenario.runs_on == list(scenarios.RUNNERS)
    assert scenario.requests == [{"method": "GET", "path": "/x", "headers": {}, "body": "", "after_ms": 0,
                                  "response": {"status": 500, "headers": {}, "body": ""}}]
    assert [scenario.answer(n) for n in range(3)] == [(503, {}), (429, {"retry-after": "1"}), (200, {})]
    assert scenario.flush_interval_ms == 100


@pytest.mark.parametrize("edit, complaint", [
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d["expect"]["calls"][0].update(jsn={}), "expect.calls[0].jsn: unknown key"),
    (lambda d: d["requests"][0]["response"].update(code=200), "requests[0].response.code: unknown key"),
    (lambda d: d["receiver"].update(status=[200]), "receiver.status: unknown key"),
    (lambda d: d["expect"]["calls"][0].update(signature={"scheme": "kong", "secret": "s", "alg": "x"}), "signature.alg: unknown key"),
    (lambda d: d.pop("expect"), "expect: missing required key"),
    (lambda d: d["expect"].pop("calls"), "expect.calls: missing required key"),
    (lambda d: d.update(runs_on=["harness-kong", "harness-envoy"]), "why_not: must give a reason"),
    (lambda d: d.update(runs_on=["envoy"], why_not={"harness-kong": "slow"}), "why_not: must give a reason"),
    (lambda d: d.update(runs_on=["nginx"]), "runs_on: must be"),
    (lambda d: d.update(covers=[]), "covers: must be"),
    (lambda d: d["expect"]["calls"][0].update(body="x"), "json or body, not both"),
    (lambda d: d["expect"]["calls"][0].update(headers={"Content-Type": "x"}), "header names are lowercase"),
    (lambda d: d["expect"]["calls"][0].update(signature={"scheme": "sha1", "secret": "s"}), "signature.scheme: must be one of"),
    (lambda d: d["receiver"].update(statuses=[700]), "receiver.statuses[0]: must be an HTTP status"),
    (lambda d: d["requests"][0].update(after_ms=-1), "after_ms: must be"),
    (lambda d: d["config"]["hooks"][0]["config"].update(cluster="receiver"), "leave the cluster out"),
    (lambda d: d["config"]["hooks"][0]["config"].update(url="http://elsewhere/x"), "every call goes to http://receiver/"),
    (lambda d: d.update(env={"NOT A NAME": "x"}), "not an environment variable name"),
])
def test_what_the_contract_refuses_is_refused(edit, complaint):
    with pytest.raises(ScenarioError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        scenarios.parse(changed(edit))


def test_every_problem_is_reported_at_once():
    document = changed(lambda d: (d.update(extra=1), d["expect"]["calls"][0].update(jsn={})))
    with pytest.raises(ScenarioError) as error:
        scenarios.parse(document, "both")
    assert "extra: unknown key" in str(error.value) and "jsn: unknown key" in str(error.value)


# --- matching -------------------------------------------------------------------------------


def call(path="/hooks", body=b"{}", method="POST", **headers) -> Call:
    return Call(method, path, {name.replace("_", "-"): value for name, value in headers.items()}, body)


@pytest.mark.parametrize("expected, actual", [
    ({"a": 1}, {"a": 1, "b": 2}),  # other keys may be there
    ({"a": {"b": [1, {"c": "x"}]}}, {"a": {"b": [1, {"c": "x", "d": 0}]}, "e": None}),
    ({"a": "<any>"}, {"a": None}),  # present, whatever its value
    ({"a": "<any>"}, {"a": {"deep": [1]}}),
    ({"status": 500}, {"status": 500.0}),  # numbers by value
    ([], []),
    (None, None),
])
def test_json_containment_holds(expected, actual):
    assert contains(expected, actual) is None


@pytest.mark.parametrize("expected, actual, why", [
    ({"a": 1}, {"b": 1}, "$.a: absent"),
    ({"a": "<any>"}, {}, "$.a: absent"),
    ({"a": [1, 2]}, {"a": [1, 2, 3]}, "expected 2 elements, got 3"),  # arrays keep their length
    ({"a": [2, 1]}, {"a": [1, 2]}, "$.a[0]"),  # and their order
    ({"a": True}, {"a": 1}, "expected true, got 1"),  # JSON types, not Python's
    ({"a": 1}, {"a": True}, "expected 1, got true"),
    ({"a": "1"}, {"a": 1}, 'expected "1", got 1'),
    ({"a": None}, {"a": 0}, "expected null"),
    ({"a": {}}, {"a": []}, "expected an object"),
])
def test_json_containment_fails_with_where_and_why(expected, actual, why):
    assert why in contains(expected, actual)


def test_a_call_matches_method_path_headers_body_and_json():
    got = call("/hooks?x=1", b'{"source": "traffic", "n": 2}', content_type="application/json", webhook_id="abc")
    assert mismatch({"method": "POST", "path": "/hooks?x=1", "headers": {"content-type": "application/json", "webhook-id": "<any>"},
                     "json": {"n": 2}}, got) is None
    assert mismatch({"body": '{"source": "traffic", "n": 2}'}, got) is None
    assert "method" in mismatch({"method": "PUT"}, got)
    assert "path" in mismatch({"path": "/hooks"}, got)  # the query is part of the path
    assert "header x-team absent" in mismatch({"headers": {"x-team": "<any>"}}, got)
    assert "header webhook-id" in mismatch({"headers": {"webhook-id": "abd"}}, got)
    assert "body" in mismatch({"body": '{"source": "traffic"}'}, got)
    assert "json $.n" in mismatch({"json": {"n": 3}}, got)
    assert "not JSON" in mismatch({"json": {}}, call(body=b"path=%2F"))


def test_matching_finds_a_distinct_call_for_each_expected_one_where_greedy_would_not():
    # The first expected call matches both received calls, the second only the first: a greedy
    # assignment in order takes the first for the first and leaves the second unmatched.
    loose = {"path": "/hooks"}
    strict = {"path": "/hooks", "json": {"n": 1}}
    received = [call(body=b'{"n": 1}'), call(body=b'{"n": 2}')]
    assert match([loose, strict], received) == [1, 0]
    assert matched_all([loose, strict], received)


def test_each_expected_call_needs_its_own_received_call():
    expected = [{"path": "/hooks"}, {"path": "/hooks"}]
    assert match(expected, [call()]).count(None) == 1
    assert not matched_all(expected, [call()])
    assert matched_all(expected, [call(), call()])
    assert matched_all([], [])


def test_explain_names_what_is_missing_and_what_is_extra():
    text = scenarios.explain([{"path": "/a"}], [call("/b")])
    assert "expected call 0" in text and "path /b, expected /a" in text and "extra call 0: POST /b" in text


# --- signatures -----------------------------------------------------------------------------

# Published test vectors (docs/src/signatures.md, "Verifying on the receiving side").
KONG = ("hunter2", b"foobar", {"x-kong-signature": "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62"})
GITHUB = ("It's a Secret to Everybody", b"Hello, World!",
          {"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"})
STANDARD = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", b'{"test": 2432232314}',
            {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
             "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="})
VECTORS = {"kong": KONG, "github": GITHUB, "standard-webhooks": STANDARD}
SIGNATURE_HEADER = {"kong": "x-kong-signature", "github": "x-hub-signature-256", "standard-webhooks": "webhook-signature"}


def flipped(text: bytes | str, index: int) -> bytes | str:
    """`text` with the bit 0x01 of one byte flipped (a character that stays ASCII)."""
    data = bytearray(text.encode() if isinstance(text, str) else text)
    data[index] ^= 0x01
    return data.decode() if isinstance(text, str) else bytes(data)


@pytest.mark.parametrize("scheme", scenarios.SCHEMES)
def test_each_scheme_verifies_its_test_vector(scheme):
    secret, body, headers = VECTORS[scheme]
    assert verify(scheme, secret, Call("POST", "/", headers, body))


@pytest.mark.parametrize("scheme", scenarios.SCHEMES)
@pytest.mark.parametrize("index", [0, 5, -1])
def test_each_scheme_fails_on_a_flipped_byte_of_the_body(scheme, index):
    secret, body, headers = VECTORS[scheme]
    assert not verify(scheme, secret, Call("POST", "/", headers, flipped(body, index)))


@pytest.mark.parametrize("scheme", scenarios.SCHEMES)
def test_each_scheme_fails_on_a_flipped_byte_of_the_signature_or_the_secret(scheme):
    secret, body, headers = VECTORS[scheme]
    name = SIGNATURE_HEADER[scheme]
    assert not verify(scheme, secret, Call("POST", "/", {**headers, name: flipped(headers[name], -3)}, body))
    other = flipped(secret, 1) if scheme != "standard-webhooks" else "whsec_" + base64.b64encode(b"another key").decode()
    assert not verify(scheme, other, Call("POST", "/", headers, body))
    assert not verify(scheme, secret, Call("POST", "/", {k: v for k, v in headers.items() if k != name}, body))


def test_standard_webhooks_binds_the_id_and_the_timestamp():
    secret, body, headers = STANDARD
    for name in ("webhook-id", "webhook-timestamp"):
        assert not verify("standard-webhooks", secret, Call("POST", "/", {**headers, name: flipped(headers[name], -1)}, body))


def standard_headers(keys: list[str], body: bytes, message_id: str = "msg_1", at: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers signed by the reference library, one entry per key."""
    at = int(time.time()) if at is None else at
    signatures = [ReferenceVerifier(key).sign(message_id, datetime.fromtimestamp(at, tz=timezone.utc), body.decode()) for key in keys]
    return {"webhook-id": message_id, "webhook-timestamp": str(at), "webhook-signature": " ".join(signatures)}


def test_standard_webhooks_agrees_with_the_reference_library_and_accepts_any_rotated_key():
    new, old = ("whsec_" + base64.b64encode(key).decode() for key in (b"the new key", b"the old key"))
    body = b'{"source": "traffic"}'
    headers = standard_headers([new, old], body)
    for key in (new, old):
        assert verify("standard-webhooks", key, Call("POST", "/", headers, body), tolerance=300)
        ReferenceVerifier(key).verify(body, headers)
    assert not verify("standard-webhooks", "whsec_" + base64.b64encode(b"a third key").decode(), Call("POST", "/", headers, body))
    # A key without its whsec_ prefix, or unpadded, is the same key.
    assert verify("standard-webhooks", new.removeprefix("whsec_").rstrip("="), Call("POST", "/", headers, body))


def test_standard_webhooks_tolerance_refuses_a_stale_timestamp_only_when_asked():
    secret, body, headers = STANDARD  # signed in 2021
    assert verify("standard-webhooks", secret, Call("POST", "/", headers, body))
    assert not verify("standard-webhooks", secret, Call("POST", "/", headers, body), tolerance=300)


def test_kong_and_github_are_hmacs_of_the_exact_body():
    body = b'{"a": 1}\n'
    kong = "sha1=" + hmac.new(b"k", body, hashlib.sha1).hexdigest()
    github = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify("kong", "k", Call("POST", "/", {"x-kong-signature": kong}, body))
    assert verify("github", "k", Call("POST", "/", {"x-hub-signature-256": github}, body))
    # Not the re-serialized JSON: a receiver must verify the bytes it got.
    assert not verify("kong", "k", Call("POST", "/", {"x-kong-signature": kong}, b'{"a":1}'))
    # Not each other's headers.
    assert not verify("kong", "k", Call("POST", "/", {"x-hub-signature-256": github}, body))


# --- what the filter supports ---------------------------------------------------------------


def test_the_catalogs_are_read_from_the_code():
    supported = scenarios.supported()
    assert {"traffic", "crud", "dao:crud", "balancer", "rate-limiting-advanced", "event_hooks"} <= set(supported["source"])
    assert {"webhook", "webhook-custom", "log", "lambda"} <= set(supported["handler"])
    assert {"kong", "standard-webhooks", "github"} <= set(supported["signature"])
