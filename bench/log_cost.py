#!/usr/bin/env python3
"""Where the "log every request" rows' time goes (BENCHMARKS.md, "Logging every request").

Runs bench/run.py's own measurement (`measure`: a fresh Envoy per configuration, warm-up, wrk,
Envoy's CPU time per request; the log rows drain and verify every event) over the log rows and
over configurations that stop part of the way, in interleaved rounds, and prints each one's
median as a Markdown table:

    props      a hook that reads what an event needs from Envoy (both header maps and the ten
               log-phase properties: request.id, response.code and .flags and .code_details,
               upstream.address, xds.cluster_name, xds.route_name, request.duration and .time,
               source.address) and matches nothing: no event is built
    log        the `log` handler on every request: the event built and written as a log line
               (which Envoy, at log level warn, drops): everything but the delivery
    batch-10000  batches of 10,000 (the most allowed): the calls' cost spread thinnest
    py-*       the log rows with the Python receiver of bench/run.py instead of bench/receiver

With --perf, each configuration is then profiled once with `perf record` (Envoy's process, 5 s
under wrk), and the table splits Envoy's CPU per request into the wasm code (V8's JIT code),
Envoy's own code (the binary is stripped: no finer names) and the kernel.

    .venv/bin/python bench/log_cost.py [--rounds 5] [--seconds 5] [--perf] [--only KEY,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).with_name("run.py"))
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_run"] = bench
spec.loader.exec_module(bench)

# Conditions on the event's log-phase properties and both header maps, none of which a
# benchmark request meets: the filter reads them all, as it does to build the event.
READS_EVERYTHING = {
    "response.status": {"eq": 999}, "response.flags": {"eq": "x"}, "response.code_details": {"eq": "x"},
    "upstream.address": {"eq": "x"}, "upstream.cluster": {"eq": "x"}, "route": {"eq": "x"}, "latency_ms": {"gte": 99999999},
    "client.ip": {"eq": "x"}, "started_at": {"eq": "x"}, "request.id": {"eq": "x"},
    "request.headers.x-none": {"eq": "x"}, "response.headers.x-none": {"eq": "x"},
}


def configurations() -> list[bench.Configuration]:
    rows = {c.key: c for c in bench.configurations()}

    def one_hook(key: str, label: str, hook: dict, **rest) -> bench.Configuration:
        return bench.Configuration(key, label, [bench.event_hooks(0, hook, bench.DELIVERY_SETTINGS)], **rest)

    logs = [rows[bench.log_key(batch)] for batch in bench.LOG_BATCHES]
    return [
        rows["empty"], rows["hooks-0"],
        one_hook("props", "reads what an event needs, matches nothing", {
            "name": "props", "source": "traffic", "event": "request", "filter": READS_EVERYTHING,
            "handler": "webhook", "config": bench.webhook("props")}),
        one_hook("log", "every request to the `log` handler (the event built, no delivery)", {
            "name": "log", "source": "traffic", "event": "request", "handler": "log", "config": {}}),
        *logs,
        one_hook("batch-10000", "log every request, batches of 10,000 (signed)", bench.log_hook(10000), delivers="every", batch=10000),
        *(dataclasses.replace(c, key="py-" + c.key, label=c.label + ", Python receiver") for c in logs),
    ]


def perf_split(configuration: bench.Configuration, receiver, workdir: Path, cpu: tuple[int, int]) -> dict[str, float]:
    """Envoy's samples under wrk, by where they ran: wasm (JIT), envoy, kernel, other (shares)."""
    envoy = bench.Envoy(bench.proxy_bootstrap(configuration.filters, configuration.fail_percent, receiver.port), workdir,
                        configuration.key, cpu[0]).start()
    data = workdir / f"{configuration.key}.perf"
    try:
        port = envoy.port()
        bench.wrk(port, 2, 32, cpu[1])
        load = threading.Thread(target=bench.wrk, args=(port, 9, 32, cpu[1]))
        load.start()
        time.sleep(2)
        subprocess.run(bench.pinned(["perf", "record", "-q", "-F", "1999", "-p", str(envoy.process.pid), "-o", str(data), "--", "sleep", "5"],
                                    cpu[1]), check=True, capture_output=True)
        load.join()
    finally:
        envoy.stop()
    report = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso", "--stdio"], capture_output=True, text=True, check=True).stdout
    split = {"wasm": 0.0, "envoy": 0.0, "kernel": 0.0, "other": 0.0}
    for share, dso in re.findall(r"^\s+([\d.]+)%\s+(.+?)\s*$", report, re.MULTILINE):
        part = "wasm" if dso.startswith("[JIT]") else "envoy" if dso == "envoy" else "kernel" if dso.startswith("[kernel") else "other"
        split[part] += float(share) / 100
    return split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--perf", action="store_true", help="also split each configuration's CPU with perf (by DSO)")
    parser.add_argument("--only", help="comma-separated keys: " + ", ".join(c.key for c in configurations()))
    args = parser.parse_args()
    if args.perf and not shutil.which("perf"):
        sys.exit("--perf: perf is not installed")
    wanted = [c for c in configurations() if not args.only or c.key in args.only.split(",") or c.key == "empty"]
    cpus = sorted(os.sched_getaffinity(0))
    envoy_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    settings = bench.Settings(quick=True, seconds=args.seconds, warmup=2, rounds=args.rounds, connections=32, memory_requests=0,
                              envoy_cpu=envoy_cpu, client_cpu=client_cpu, custom=True)
    bench.build_empty_filter()
    bench.build_receiver()
    bench.wait_for_quiet()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    python, rust = bench.Receiver(), bench.RustReceiver(client_cpu)
    runs: dict[str, list[bench.Run]] = {c.key: [] for c in wanted}
    splits: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="event-hooks-log-cost-") as directory:
        try:
            for round_number in range(args.rounds):
                for c in wanted:
                    run = bench.measure(c, settings, python, Path(directory), python if c.key.startswith("py-") else rust)
                    runs[c.key].append(run)
                    log = run.log
                    extra = (f"  {log.stats['distinct']:,}/{log.requests:,} events verified, receiver {log.receiver_cpu_s / max(1, log.stats['events']) * 1e6:.1f} us/event"
                             if log else "")
                    print(f"round {round_number + 1} {c.key:22} {run.load.rps:9,.0f} req/s  CPU {run.cpu_us:6.1f} us{extra}", flush=True)
            if args.perf:
                for c in wanted:
                    splits[c.key] = perf_split(c, python if c.key.startswith("py-") else rust, Path(directory), (envoy_cpu, client_cpu))
        finally:
            python.close()
            rust.close()
            bench._stop_all()
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    median = {key: statistics.median(r.cpu_us for r in rs) for key, rs in runs.items()}
    floor = median["empty"]
    print("| configuration | requests/s | Envoy CPU per request (range) | over the floor |"
          + (" wasm (JIT) | Envoy's code | kernel | other |" if splits else "") + " receiver CPU per event |")
    print("|---|---:|---:|---:|" + ("---:|" * 4 if splits else "") + "---:|")
    for c in wanted:
        rs = runs[c.key]
        rps = statistics.median(r.load.rps for r in rs)
        line = (f"| {c.label} | {rps:,.0f} | {median[c.key]:.1f} µs ({min(r.cpu_us for r in rs):.1f}–{max(r.cpu_us for r in rs):.1f}) | "
                f"{median[c.key] - floor:+.1f} µs |")
        if splits:
            line += "".join(f" {splits[c.key][part] * median[c.key]:.1f} µs |" for part in ("wasm", "envoy", "kernel", "other"))
        logs = [r.log for r in rs if r.log]
        line += (f" {statistics.median(l.receiver_cpu_s / max(1, l.stats['events']) for l in logs) * 1e6:.1f} µs |" if logs else " |")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
