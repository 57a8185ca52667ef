#!/usr/bin/env python3
"""What each proxy asks of the kernel per request, counted rather than timed: system calls,
io_uring entries and operations, the wake-ups it causes and its context switches. The system
calls and ring operations a request takes do not move with a noisy or slower host the way CPU
time does (a VM whose rounds differ by 20 % counts the same ones), so they show where a proxy's
kernel work differs from another's, and from the floor's, on any machine. Ring entries, wake-ups
and context switches depend on batching and scheduling, so on the host's load too.

Each proxy runs the scenario once, as in scripts/bench/compare.py (same configurations, ports,
origins and load; proxy on BENCH_PROXY_CPU, load and origins on BENCH_LOAD_CPU), while
`perf stat` counts these events in the proxy's processes (every thread) over the measured
seconds, divided by the requests the load generator answered in its measured seconds (perf
attaches a few ms after the generator's warm-up ends and stops as many ms after its end: the
windows differ by that, well under 1 % of 8 s):
  raw_syscalls:sys_enter               system calls of any kind (io_uring_enter included)
  syscalls:sys_enter_io_uring_enter    entries into the ring
  io_uring:io_uring_submit_req         operations submitted to the ring
  sched:sched_waking                   tasks the proxy woke (the load generator, the origins;
                                       counted in the waker, on whichever CPU the woken runs)
  context-switches                     (a software event) the proxy's threads going to sleep, or
                                       preempted
Counting tracepoints costs CPU, so these runs are not the timed ones: use compare.py for time.
A run with a failed or non-2xx answer, or none, is refused rather than counted.

Not a test: it measures. Needs `perf` (linux-perf) and root (tracepoints live in tracefs).
Environment: BENCH_PROXIES (ringlb,nginx,haproxy,floor), OPS_SCENARIOS (a,b,d; or f, (a)'s load
in open loop at OPS_RATE requests per second, 23000 unless set: compare.py sets (f)'s rate from
nginx's (a), which this script does not measure), BENCH_DURATION (8), BENCH_WARMUP (2),
BENCH_PROXY_CPU, BENCH_LOAD_CPU, CARGO_TARGET_DIR. Prints a Markdown table.

usage: python3 scripts/bench/ops.py   (after `cargo build --release --workspace`)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as c  # noqa: E402  (the proxies' configurations and the load, shared)
from procs import ports_in_use  # noqa: E402

EVENTS = [
    ("raw_syscalls:sys_enter", "system calls"),
    ("syscalls:sys_enter_io_uring_enter", "io_uring_enter"),
    ("io_uring:io_uring_submit_req", "ring operations"),
    ("sched:sched_waking", "wake-ups caused"),
    ("context-switches", "context switches"),
]
SCENARIOS = os.environ.get("OPS_SCENARIOS", "a,b,d").split(",")
RATE = int(os.environ.get("OPS_RATE", "23000"))
PROXIES = os.environ.get("BENCH_PROXIES", "ringlb,nginx,haproxy,floor").split(",")


def count(proxy, args, tmp):
    """Runs the load; returns {event: count per request} over the measured seconds."""
    out = Path(tmp) / "load.json"
    gen = subprocess.Popen(c.load_cmd(["--warmup", f"{c.WARMUP_S}s"] + args, out),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.05 + c.WARMUP_S)
        pids = ",".join(str(p) for p in proxy.pids())
        stat = subprocess.run(["perf", "stat", "-x", ",", "-e", ",".join(e for e, _ in EVENTS), "-p", pids,
                               "--", "sleep", str(c.DURATION)], capture_output=True, text=True)
        err = gen.communicate()[1]
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    if gen.returncode != 0:
        raise RuntimeError(f"ringlb-load {' '.join(args)}: {err}")
    if stat.returncode != 0:
        raise RuntimeError(f"perf stat: {stat.stderr}")
    r = json.loads(out.read_text())
    requests = r["requests"]
    failed = sum(r["errors"].values())
    if requests == 0 or failed or r["status"]["2xx"] != requests:
        raise RuntimeError(f"{proxy.name}: {requests} answers, {failed} errors, {r['status']}: not counted")
    counts = {}
    for line in stat.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in dict(EVENTS):
            if not fields[0].strip().isdigit():
                raise RuntimeError(f"perf could not count {fields[2]}: {line}")
            counts[fields[2]] = int(fields[0]) / requests
    missing = [e for e, _ in EVENTS if e not in counts]
    if missing:
        raise RuntimeError(f"perf stat gave no count for {missing}: {stat.stderr}")
    return counts


def main():
    if not set(SCENARIOS) <= {"a", "b", "d", "f"}:
        raise SystemExit(f"ops.py counts scenarios a, b, d and f, not {SCENARIOS}")
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian: linux-perf)")
    for tool in (c.RINGLB, c.LOAD):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: cargo build --release --workspace")
    busy = ports_in_use([*c.SMALL, *(c.PORTS[p] for p in PROXIES)])
    if busy:
        raise SystemExit(f"ports {busy} on 127.0.0.1 are in use by processes this run did not start: stop them first")
    tmp = tempfile.mkdtemp(prefix="ringlb-ops-")
    c.STAGED["ringlb"] = c.stage(c.RINGLB, tmp, "ringlb")
    body = c.small_body(tmp)
    origins = []
    rows = []
    try:
        origins = c.start_small_origins()
        for scenario, name in c.small_runs(SCENARIOS, PROXIES):
            proxy = c.Proxy(name, tmp)
            proxy.start()
            try:
                url = f"http://127.0.0.1:{proxy.port}/"
                per = count(proxy, c.small_load(scenario, url, body, RATE), tmp)
            finally:
                proxy.stop()
            rows.append((scenario, name, per))
            print(f"({scenario}) {name}: " + ", ".join(f"{e}={v:.2f}" for e, v in per.items()),
                  file=sys.stderr, flush=True)
    finally:
        for o in origins:
            o.kill()
            o.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| scenario | proxy | " + " | ".join(label for _, label in EVENTS) + " |")
    print("|---|---|" + "---|" * len(EVENTS))
    for scenario, name, per in rows:
        print(f"| ({scenario}) | {name} | " + " | ".join(f"{per[e]:.2f}" for e, _ in EVENTS) + " |")


if __name__ == "__main__":
    # A stop unwinds like an error, so the `finally` blocks stop what this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
