"""The `lambda` handler in the real Envoy: user functions in Rhai, chained, sandboxed.

A function that never ends, one that recurses and nests values as deeply as the sandbox lets
it, and one that hoards memory are each stopped at their budget, logged, and traffic flows on
with the VM alive (every test's teardown checks Envoy's log for panics and traps). A chain that
transforms the event and calls `http` reaches the receiver with the transformed body, signed.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import time

from conftest import ENVOY, ROOT, Envoy, envoy_config, http_get, static_cluster, wait_until

ROUTES = [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]

FOREVER = "loop { }"

# The first returns a new map (the next function's data); the second makes the call.
TRANSFORM = [
    """if data.response.status < 500 { return; }
       #{status: data.response.status, path: data.request.path,
         team: data.request.headers["x-team"], auth: data.request.headers.authorization}""",
    """data.alert = `${data.path} answered ${data.status} (${event} from ${source})`;
       http(#{url: "http://receiver/lambda", body: data, headers: #{"x-hook": "lambda"}});
       log("sent " + data.path);""",
]

# Values nested as deeply as the size limits allow, copied, compared, written and dropped;
# then calls nested to the limit inside the deepest expression a function allows.
DEEP = [
    """let a = []; let i = 0; while i < 250 { a = [a]; i += 1; }
       let m = #{}; i = 0; while i < 500 { m = #{m: m}; i += 1; }
       let x = [m, a]; let y = x;
       let compared = (); try { compared = x == y; } catch { compared = "refused"; }
       let found = (); try { found = x.contains(a); } catch { found = "refused"; }
       log(`deep: ${compared} ${found} ${x.to_string().len()} ${m.to_json().len()}`);
       data""",
    # The recursive call is as deep in its expression as a function body allows (unit tests
    # find it); the calls go as deep as the sandbox allows.
    "fn f(n) { ((if n > 0 { f(n - 1) } else { 0 })) } f(1000)",
]

# Rhai does not check a map grown with `m[key] = value`: the heap budget stops it.
HOG = 'let k = "k"; k.pad(1000, "k"); let m = #{}; let i = 0; loop { m[`${i}${k}`] = i; i += 1; }'


def lambda_hook(name: str, prefix: str, functions, **config) -> dict:
    return {"name": name, "source": "traffic", "filter": {"request.path": {"prefix": prefix}},
            "handler": "lambda", "config": {"functions": functions, **config}}


def setup(receiver, upstream, hooks) -> dict:
    configuration = {"hooks": hooks, "delivery": {"flush_interval_ms": 20}}
    clusters = [static_cluster("upstream", upstream.port), static_cluster("receiver", receiver.port)]
    return envoy_config(configuration, ROUTES, clusters)


def test_a_lambda_that_loops_forever_is_stopped_and_traffic_flows(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream, [
        lambda_hook("forever", "/loop", [FOREVER]),
        lambda_hook("alerts", "/orders", TRANSFORM, secret="hunter2", cluster="receiver"),
    ]))
    port = envoy.listener_port()
    started = time.monotonic()
    for n in range(40):
        assert http_get(port, f"/loop/{n}") == (200, b"upstream 200\n")
    looping = time.monotonic() - started
    wait_until(lambda: "lambda hooks[0].config.functions[0] stopped: operation budget exceeded "
                       "(max_operations 100000 per event)" in envoy.log(), what="the budget error in the log")
    # Errors are counted, and logged at the 1st, 2nd, 4th...: 40 errors, 6 lines.
    wait_until(lambda: "(error 32 of this hook;" in envoy.log(), what="the 32nd error")
    assert envoy.log().count("operation budget exceeded") == 6
    # The VM is alive and its other hooks work: a delivery still arrives.
    assert http_get(port, "/orders/1?status=503")[0] == 503
    receiver.wait_for(lambda d: d.path == "/lambda", what="a delivery after the loops")
    print(f"40 requests through a hook that loops forever: {looping * 1000 / 40:.2f} ms each")


def test_a_lambda_transforms_the_event_and_its_http_call_arrives_signed(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream, [
        lambda_hook("alerts", "/orders", TRANSFORM, secret="hunter2", cluster="receiver"),
    ]))
    port = envoy.listener_port()
    headers = {"x-team": "payments", "authorization": "Bearer s3cr3t"}
    # A 200 stops the chain at the first function: nothing is sent.
    assert http_get(port, "/orders/1", headers)[0] == 200
    assert http_get(port, "/orders/42?status=503", headers)[0] == 503
    delivery = receiver.wait_for(lambda d: d.path == "/lambda")
    assert delivery.method == "POST"
    assert delivery.json() == {
        "status": 503, "path": "/orders/42", "team": "payments", "auth": "[redacted]",
        "alert": "/orders/42 answered 503 (request from traffic)",
    }
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["x-hook"] == "lambda"
    assert delivery.headers["webhook-id"]
    expected = "sha1=" + hmac.new(b"hunter2", delivery.body, hashlib.sha1).hexdigest()
    assert hmac.compare_digest(delivery.headers["x-kong-signature"], expected)
    wait_until(lambda: "lambda hooks[0].config.functions[1]: sent /orders/42" in envoy.log(),
               what="the function's log line")
    # The 200 sent nothing, and nothing was logged as an error.
    assert len(receiver.deliveries) == 1
    assert "s3cr3t" not in delivery.body.decode()
    assert "stopped:" not in envoy.log()


def test_deep_values_deep_calls_and_memory_hoarding_are_stopped_in_the_vm(start_envoy, receiver, upstream):
    envoy = start_envoy(setup(receiver, upstream, [
        lambda_hook("deep", "/deep", DEEP),
        lambda_hook("hog", "/hog", [HOG], max_operations=1_000_000),
        lambda_hook("alerts", "/orders", TRANSFORM, cluster="receiver"),
    ]))
    port = envoy.listener_port()
    for n in range(3):
        assert http_get(port, f"/deep/{n}") == (200, b"upstream 200\n")
        assert http_get(port, f"/hog/{n}") == (200, b"upstream 200\n")
    # Comparing values nested deeper than 32 levels is refused (an error a script may catch);
    # writing them stops at 32 levels.
    wait_until(lambda: "lambda hooks[0].config.functions[0]: deep: refused refused 3" in envoy.log(),
               what="the deep values compared and written")
    wait_until(lambda: "lambda hooks[0].config.functions[1] stopped: calls nested too deeply" in envoy.log(),
               what="the call depth error")
    wait_until(lambda: "lambda hooks[1].config.functions[0] stopped: memory budget exceeded" in envoy.log(),
               what="the memory budget error")
    assert http_get(port, "/orders/7?status=502")[0] == 502
    receiver.wait_for(lambda d: d.path == "/lambda" and d.json()["path"] == "/orders/7")


def test_a_syntax_error_refuses_the_configuration_with_its_path(tmp_path, receiver, upstream):
    functions = ["data", "let secret = \"hunter2\";\nlet x = ;"]
    envoy = Envoy(setup(receiver, upstream, [lambda_hook("bad", "/", functions)]), tmp_path)
    result = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(envoy.config_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "hooks[0].config.functions[1]: syntax error at line 2, column 9: unexpected ';'" in output
    assert "hunter2" not in output
