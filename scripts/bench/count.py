#!/usr/bin/env python3
"""Instructions per request, counted rather than timed: each proxy runs a small-request scenario
under valgrind's callgrind, which counts every user-space instruction its threads execute (the
kernel's work is not counted: scripts/bench/ops.py counts what a proxy asks of the kernel). A
count does not move with a noisy or slower host the way CPU time does: the same binary and
scenario give the same count within 0.2 %, with the other core busy or not,
so a change of 1-2 % to the request path, which no timed run on a VM can see, shows here. It is
not time: a cache miss costs no instruction, so compare counts alongside compare.py's CPU.

Each proxy starts under callgrind with compare.py's configuration (proxy on BENCH_PROXY_CPU,
origins and load on BENCH_LOAD_CPU), takes a warm-up run of the load (its pools and buffers
grow), then callgrind's counters are zeroed (`callgrind_control -z`), the measured run goes, and
the counters are dumped (`callgrind_control -d`). Before each, the script waits until the
proxy has gone quiet (its CPU time all but stops moving): what the dump holds is then the
measured run, its requests with its connections' opening and closing (64 in all in (a) and (b),
under 0.3 % of the count; one per request in (d), which is what (d) measures), and the idle
work of those seconds (the deadline wheel's turns, the statistics' merges). Under callgrind a
proxy runs some 30-50 x slower, so the load generator is never what limits it. A run with a
failed or non-2xx answer is refused. The floor has no (d) (`compare.FLOOR_SCENARIOS`).
(h), Tomcat over AJP13, starts compare.py's Tomcat (Tomcat 10 and javac) and counts ringlb's
instructions for its requests (Tomcat's own are not counted); the floor has no (h) either
(`compare.small_runs` leaves it out).

Not a test: it measures. Needs valgrind (Debian: valgrind). ringlb and ringlb-load find the
vDSO through libc (rustix's `use-libc-auxv`), which is what lets them run under valgrind at all:
a base binary built before that (commit 1f78797) dies at its first clock read, and is refused.
Environment: BENCH_PROXIES (ringlb,floor; ringlb-base with BENCH_BASE_BIN; no other proxy),
COUNT_SCENARIOS (a,b,d; or h), COUNT_SECONDS (5: the measured run), COUNT_WARMUP (3: a separate run
before it, not counted), COUNT_TOP (0: with N, the N functions with the most instructions of
their own, per run), COUNT_KEEP (a folder: each run's callgrind dump is copied there as
SCENARIO-PROXY.callgrind, for callgrind_annotate), BENCH_PROXY_CPU, BENCH_LOAD_CPU,
CARGO_TARGET_DIR. Prints a Markdown table.

usage: python3 scripts/bench/count.py   (after `cargo build --release --workspace`)
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as c  # noqa: E402  (the proxies' configurations and the load, shared)
from procs import ports_in_use, stop, wait_port  # noqa: E402

SCENARIOS = os.environ.get("COUNT_SCENARIOS", "a,b,d").split(",")
PROXIES = os.environ.get("BENCH_PROXIES", "ringlb,floor").split(",")
SECONDS = int(os.environ.get("COUNT_SECONDS", "5"))
WARMUP = int(os.environ.get("COUNT_WARMUP", "3"))
COUNTED = ("ringlb", "ringlb-base", "floor")
TOP = int(os.environ.get("COUNT_TOP", "0"))
KEEP = os.environ.get("COUNT_KEEP")


def self_costs(dump):
    """{function: instructions of its own} from a callgrind dump (names are compressed: `(id)
    name` the first time, `(id)` after; a cost line after `calls=` is the call's, not the
    caller's own)."""
    names, costs = {}, collections.Counter()
    fn, after_call = None, False
    for line in Path(dump).read_text().splitlines():
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
            if m.group(2) is not None:
                names[m.group(1)] = m.group(2)
            if line.startswith("fn="):
                fn = names[m.group(1)]
        elif line.startswith("calls="):
            after_call = True
        elif line[:1] in "0123456789+-*" and fn is not None:
            fields = line.split()
            if after_call:
                after_call = False
            elif len(fields) > 1:
                costs[fn] += int(fields[1])
    return costs


def settle(pid):
    """Waits (at most 20 s) until the process uses under a tenth of a core over half a second:
    the connections of the run before are closed, and under callgrind that takes a while."""
    quiet = c.CLK_TCK // 20
    before = c.cpu_ticks([pid])
    for _ in range(40):
        time.sleep(0.5)
        now = c.cpu_ticks([pid])
        if now - before <= quiet:
            return
        before = now
    raise RuntimeError(f"pid {pid} did not go quiet within 20 s")


def count(proxy, args, tmp):
    """Runs the measured load against `proxy` under callgrind; returns (instructions per request,
    requests, the dump's path)."""
    out = Path(tmp) / proxy.name / "callgrind.out"
    log_path = Path(tmp) / proxy.name / "valgrind.log"
    with open(log_path, "w") as log:
        vg = subprocess.Popen(["taskset", "-c", c.PROXY_CPU, "valgrind", "--tool=callgrind", "--vgdb=yes",
                               f"--callgrind-out-file={out}"] + proxy.config(),
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        if not wait_port(proxy.port, 120):
            raise RuntimeError(f"{proxy.name} did not start under valgrind: see {log_path}")
        c.DURATION = WARMUP
        c.load(args, Path(tmp) / "warm.json")
        settle(vg.pid)
        subprocess.run(["callgrind_control", "-z", str(vg.pid)], check=True, stdout=subprocess.DEVNULL)
        c.DURATION = SECONDS
        r = c.load(args, Path(tmp) / "load.json")
        settle(vg.pid)
        subprocess.run(["callgrind_control", "-d", str(vg.pid)], check=True, stdout=subprocess.DEVNULL)
        if vg.poll() is not None:
            raise RuntimeError(f"{proxy.name} exited under valgrind: see {log_path}")
    finally:
        stop(vg)
    requests = r["requests"]
    failed = sum(r["errors"].values())
    if requests == 0 or failed or r["status"]["2xx"] != requests:
        raise RuntimeError(f"{proxy.name}: {requests} answers, {failed} errors, {r['status']}: not counted")
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {proxy.name}")
    totals = re.search(r"^totals: (\d+)", dumps[0].read_text(), re.M)
    return int(totals.group(1)) / requests, requests, dumps[0]


def main():
    if not set(SCENARIOS) <= {"a", "b", "d", "h"}:
        raise SystemExit(f"count.py counts scenarios a, b, d and h, not {SCENARIOS}")
    if not set(PROXIES) <= set(COUNTED):
        raise SystemExit(f"count.py counts {', '.join(COUNTED)}, not {PROXIES}")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: valgrind)")
    for tool in (c.RINGLB, c.LOAD):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: cargo build --release --workspace")
    if "ringlb-base" in PROXIES and not c.BASE_BIN:
        raise SystemExit("ringlb-base needs BENCH_BASE_BIN")
    ours = [*c.SMALL, *(c.PORTS[p] for p in PROXIES), c.FLOOR_BIG_PORT, *c.ADMIN_PORTS.values()]
    if "h" in SCENARIOS:
        ours += [c.AJP_PORT, c.TOMCAT_HTTP]
    busy = ports_in_use(ours)
    if busy:
        raise SystemExit(f"ports {busy} on 127.0.0.1 are in use by processes this run did not start: stop them first")
    tmp = tempfile.mkdtemp(prefix="ringlb-count-")
    origins = []
    tomcat = None
    rows = []
    try:
        c.STAGED["ringlb"] = c.stage(c.RINGLB, tmp, "ringlb")
        if c.BASE_BIN:
            c.STAGED["ringlb-base"] = c.stage(c.BASE_BIN, tmp, "ringlb-base")
        body = c.small_body(tmp)
        origins = c.start_small_origins()
        if "h" in SCENARIOS:
            tomcat = c.start_tomcat(tmp)
            if tomcat is None:
                raise SystemExit("(h) needs Tomcat 10 and javac")
        runs = c.small_runs(SCENARIOS, PROXIES)
        if not runs:
            raise SystemExit(f"nothing to count: the floor has no {SCENARIOS}")
        for scenario, name in runs:
            proxy = c.Proxy(name, tmp)
            url = f"http://127.0.0.1:{proxy.port}/"
            per, requests, dump = count(proxy, c.small_load(scenario, url, body), tmp)
            rows.append((scenario, name, per, requests))
            print(f"({scenario}) {name}: {per:,.0f} instructions per request ({requests} requests)",
                  file=sys.stderr, flush=True)
            if KEEP:
                Path(KEEP).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dump, Path(KEEP) / f"{scenario}-{name}.callgrind")
            for fn, n in self_costs(dump).most_common(TOP):
                print(f"    {n / requests:8.0f}  {fn[:140]}", file=sys.stderr)
    finally:
        for o in origins:
            o.kill()
            o.wait()
        if tomcat is not None:
            stop(tomcat)
        shutil.rmtree(tmp, ignore_errors=True)
    print("| scenario | proxy | instructions per request | requests counted |")
    print("|---|---|---|---|")
    for scenario, name, per, requests in rows:
        print(f"| ({scenario}) | {name} | {per:,.0f} | {requests} |")


if __name__ == "__main__":
    # A stop unwinds like an error, so the `finally` blocks stop what this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
