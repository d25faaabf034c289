#!/usr/bin/env python3
"""`make run`: starts the demo receiver and Envoy with envoy/envoy.yaml, then prints what to try.

Run from the repository root after `make build envoy certs` (which `make run` does). Envoy's
log goes to .run/envoy.log; deliveries are printed here by the receiver. Ctrl-C stops both.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVOY = ROOT / ".venv" / "bin" / "envoy"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "event_hooks.wasm"
RUN = ROOT / ".run"
ADMIN = "http://127.0.0.1:9901"

TRY = """
event_hooks demo is up: Envoy on http://localhost:8000 (admin http://localhost:9901),
receiver on :9000 (HTTP) and :9443 (TLS). Envoy's log: .run/envoy.log

The hooks run in an Envoy access logger, behind a native filter that lets through only the
requests some hook could match. Try (each 5xx under /orders is delivered to the receiver,
signed; other requests are not):

  curl -i 'localhost:8000/orders/42?status=503'     # 503 from the upstream -> hook orders-5xx
  curl -i 'localhost:8000/orders/42'                # 200 -> no delivery (and no wasm at all)
  curl -i  localhost:8000/down/anything             # connection refused (flag UF) -> hook
                                                    #   upstream-unreachable, over verified TLS
                                                    #   (then snoozed for 10 s)
  curl -s 'localhost:9901/stats?filter=event_hooks' # requests the VM saw, deliveries

The filter's admin endpoints (token demo-admin-token), from the event_hooks HTTP filter on
the /event-hooks route (its status counts its own deliveries, such as tests):

  curl -s -H 'authorization: Bearer demo-admin-token' localhost:8000/event-hooks/status
  curl -s -X POST -H 'authorization: Bearer demo-admin-token' \\
       -H 'x-event-data: {"note": "hello"}' localhost:8000/event-hooks/orders-5xx/test

The configuration is the JSON inside envoy/envoy.yaml. Ctrl-C stops everything.
"""


def wait_ready(envoy: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if envoy.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{ADMIN}/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stop(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    # Stop cleanly on Ctrl-C or a plain kill, even when started with SIGINT ignored (as a
    # background job of a non-interactive shell is).
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    os.chdir(ROOT)
    for needed, how in ((ENVOY, "make envoy"), (WASM, "make build"), (ROOT / "envoy/certs/ca.pem", "make certs")):
        if not needed.exists():
            print(f"missing {needed.relative_to(ROOT)}: run `{how}` (or `make run`)", file=sys.stderr)
            return 1
    RUN.mkdir(exist_ok=True)
    receiver = subprocess.Popen(
        [sys.executable, "demo/receiver.py", "--secret", "hunter2",
         "--cert", "envoy/certs/receiver.pem", "--key", "envoy/certs/receiver-key.pem"]
    )
    with open(RUN / "envoy.log", "w") as log:
        envoy = subprocess.Popen(
            [str(ENVOY), "-c", "envoy/envoy.yaml", "--concurrency", "2", "--disable-hot-restart",
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        if not wait_ready(envoy, time.monotonic() + 30):
            print("Envoy did not start; the end of .run/envoy.log:", file=sys.stderr)
            print("".join((RUN / "envoy.log").read_text().splitlines(keepends=True)[-15:]), file=sys.stderr)
            print("(are ports 8000, 8001, 9000, 9443 and 9901 free?)", file=sys.stderr)
            return 1
        print(TRY, flush=True)
        while envoy.poll() is None and receiver.poll() is None:
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in (envoy, receiver):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (envoy, receiver):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
