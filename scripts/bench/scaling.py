#!/usr/bin/env python3
"""Throughput as workers grow: ringlb, nginx and HAProxy with 1, 2, 4 and 8 workers, each worker
pinned to its own CPU (CPUs 0..N-1), the load generator and the origins on the CPUs above them,
scenarios interleaved over rounds, medians reported. Issue 16's "scaling past one core"; it needs a
machine with at least max(workers) + 3 CPUs (the device machine's 16), not the 2-core CI box.

The proxies' configurations are compare.py's (`Proxy`, with `workers` and `cpus`): ringlb
`workers = N` (it pins worker i to the i-th CPU it may run on), nginx `worker_processes N` with
`worker_cpu_affinity auto` (worker i on CPU i), HAProxy `nbthread N` with `cpu-map auto:1/1-N
0-(N-1)`.
Connections grow with the workers (SCALE_CONNS_PER_WORKER each, 64), so that every worker has the
same work at every count.

Scenarios: (a) small keep-alive GETs, closed loop; (d) a new connection per request; (f), asked
for, (a) in open loop at half of nginx's (a) rate at the same worker count (one calibration run of
nginx per count, not counted), for the tail (p99, p99.9) with the harness off the proxy's CPUs. For each run:
requests/s, the proxy's CPU per request (its processes' utime+stime over the counted window), p99,
and how busy the harness was (the load generator's and the origins' CPU over the window, as a
share of the CPUs they were given): a run whose harness was near 100 % measured the harness, and
the report says so. After each run, the share of the TIME_WAIT sockets (of connections to that
proxy's port) that the clients hold: who closed first. For (f), where the tail is the question:
each CPU's busy and stolen share over the counted window (the proxy's and the harness's), the
proxy's established connections to the origins after the run, and for ringlb its own view of the
same requests (its `/status.json` histograms read before the load starts and after it ends, so the
reads cost no request anything): p99 and p99.9 from a request's head read to its answer's last
byte written ("inside") and from the request sent to the member's head received ("member"), and
how many member connections it opened. The load generator's latency less "inside" is the time a
request spent before ringlb read it and after ringlb wrote its answer.

Environment: SCALE_WORKERS (1,2,4,8), SCALE_PROXIES (ringlb,nginx,haproxy), SCALE_SCENARIOS (a,d),
SCALE_ROUNDS (2), SCALE_DURATION (seconds counted, 4), SCALE_WARMUP (seconds not counted, 1),
SCALE_CONNS_PER_WORKER (64), SCALE_RATE ((f)'s rate in requests per second instead of half of
nginx's (a) rate), BENCH_BASE_BIN (with "ringlb-base" in SCALE_PROXIES: a ringlb
built from an earlier commit, run beside the current one), SCALE_OUT (folder for scaling.json and scaling.md; the current one),
and compare.py's CARGO_TARGET_DIR / BENCH_RINGLB for the binaries. nginx and haproxy are found on
PATH. Results are written after every run, so a run cut short leaves what it measured.
"""

import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import compare as c
from procs import ports_in_use, stop, wait_port

WORKERS = [int(w) for w in os.environ.get("SCALE_WORKERS", "1,2,4,8").split(",")]
PROXIES = os.environ.get("SCALE_PROXIES", "ringlb,nginx,haproxy").split(",")
SCENARIOS = os.environ.get("SCALE_SCENARIOS", "a,d").split(",")
ROUNDS = int(os.environ.get("SCALE_ROUNDS", "2"))
DURATION = int(os.environ.get("SCALE_DURATION", "4"))
WARMUP = int(os.environ.get("SCALE_WARMUP", "1"))
CONNS = int(os.environ.get("SCALE_CONNS_PER_WORKER", "64"))
OUT = Path(os.environ.get("SCALE_OUT", "."))


def layout():
    """CPUs for the load generator and the two origins: the ones above the most workers, half
    (rounded up) to the load generator, a quarter to each origin. SCALE_LOAD_CPUS ("8,9") and
    SCALE_ORIGIN_CPUS ("10,11;12,13") set them instead (a trial run of the script on a small box)."""
    if os.environ.get("SCALE_LOAD_CPUS"):
        if not os.environ.get("SCALE_ORIGIN_CPUS"):
            sys.exit("SCALE_LOAD_CPUS needs SCALE_ORIGIN_CPUS too (the two origins' CPUs, e.g. \"10,11;12,13\")")
        return ([int(x) for x in os.environ["SCALE_LOAD_CPUS"].split(",")],
                [[int(x) for x in o.split(",")] for o in os.environ["SCALE_ORIGIN_CPUS"].split(";")])
    n, top = os.cpu_count(), max(WORKERS)
    rest = list(range(top, n))
    if len(rest) < 3:
        sys.exit(f"{n} CPUs: scaling to {top} workers needs at least {top + 3} (the harness's own)")
    half = (len(rest) + 1) // 2
    load, origins = rest[:half], rest[half:]
    mid = max(1, len(origins) // 2)
    return load, [origins[:mid], origins[mid:] or origins[:mid]]


def io_uring_works():
    """Whether this kernel sets up an io_uring (gVisor answers ENOSYS; ringlb then falls back to
    epoll, and its figures are not the product's)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(425, 4, params)  # io_uring_setup
    if fd >= 0:
        os.close(fd)
        return True
    return False


def time_waits(port):
    """The TIME_WAIT sockets of connections to `port`, as (local, remote) address pairs: those on
    the server's side and those on the clients' side. Who holds them tells who closed first; a
    client holding them pays in its connects."""
    server, client = set(), set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] != "06":
            continue
        if int(f[1].split(":")[1], 16) == port:
            server.add((f[1], f[2]))
        if int(f[2].split(":")[1], 16) == port:
            client.add((f[1], f[2]))
    return server, client


def ringlb_view(proxy):
    """ringlb's histograms since start, summed over its members ({µs: count} for `total` and
    `response_head`) and its member connects; None for another proxy."""
    port = c.ADMIN_PORTS.get(proxy.name)
    if port is None:
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as r:
        report = json.load(r)
    view = {"total": {}, "response_head": {}, "connects": 0}
    for b in report["balancers"]:
        for m in b["members"]:
            for k in ("total", "response_head"):
                for v, n in m["histograms"][k]["buckets"]:
                    view[k][v] = view[k].get(v, 0) + n
            view["connects"] += m["connect"]["lifetime"]["count"]
    return view


def quantile(hist, q):
    """The value at quantile q of a {value: count} histogram (0 when empty)."""
    total, seen = sum(hist.values()), 0
    if total <= 0:
        return 0
    for v in sorted(hist):
        seen += hist[v]
        if seen >= q * total:
            return v
    return 0


def view_between(before, after):
    """What ringlb saw between two `ringlb_view` readings: its quantiles, in µs."""
    if before is None:
        return {}
    d = {k: {v: n - before[k].get(v, 0) for v, n in after[k].items()} for k in ("total", "response_head")}
    return {"inside_p99": quantile(d["total"], 0.99), "inside_p999": quantile(d["total"], 0.999),
            "member_p99": quantile(d["response_head"], 0.99), "member_p999": quantile(d["response_head"], 0.999),
            "connects": after["connects"] - before["connects"]}


def cpu_times():
    """Per CPU: (busy, steal, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            idle = v[3] + v[4]
            steal = v[7] if len(v) > 7 else 0
            out[int(f[0][3:])] = (sum(v[:8]) - idle - steal, steal, sum(v[:8]))
    return out


def cpu_shares(before, after, cpus):
    """Each of `cpus`' busy and stolen share of the window between two `cpu_times` readings."""
    shares = {}
    for x in cpus:
        total = max(after[x][2] - before[x][2], 1)
        shares[x] = (round((after[x][0] - before[x][0]) / total, 3), round((after[x][1] - before[x][1]) / total, 3))
    return shares


def established_to(ports):
    """How many established TCP connections on 127.0.0.1 go to one of `ports` (their client side)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "01" and int(f[2].split(":")[1], 16) in ports:
            n += 1
    return n


def cpus_arg(cpus):
    return ",".join(str(x) for x in cpus)


def run_one(proxy, scenario, workers, load_cpus, origin_pids, harness_cpus, tmp, rate=None):
    """One load against a started proxy; `harness_cpus`: the load generator's and origins' CPUs."""
    url = f"http://127.0.0.1:{proxy.port}/"
    conns = ["-c", str(CONNS * workers)]
    mode = {"d": ["--connect-per-request"], "f": ["--rate", str(rate)]}.get(scenario, [])
    out = Path(tmp) / "load.json"
    cmd = ["taskset", "-c", cpus_arg(load_cpus), str(c.LOAD), "-q", "-t", str(len(load_cpus)), "--cpus",
           cpus_arg(load_cpus), "-d", f"{DURATION}s", "--warmup", f"{WARMUP}s", "--json", str(out)] + conns + mode + [url]
    pids = proxy.pids()
    # TIME_WAIT sockets last a minute, longer than a run: only those this run leaves count.
    before_server, before_client = time_waits(proxy.port)
    view0 = ringlb_view(proxy) if scenario == "f" else None
    gen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.05 + WARMUP)
        t0, h0, w0 = c.cpu_ticks(pids), c.cpu_ticks([gen.pid] + origin_pids), time.time()
        s0 = cpu_times()
        # The harness is read while the load generator still runs (once it exits, its ticks are gone).
        time.sleep(max(DURATION - 0.3, 0.1))
        h1, w1 = c.cpu_ticks([gen.pid] + origin_pids), time.time()
        s1 = cpu_times()
        err = gen.communicate()[1]
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    t1 = c.cpu_ticks(pids)
    if gen.returncode != 0:
        raise RuntimeError(f"ringlb-load against {proxy.name}: {err}")
    r = json.loads(out.read_text())
    extra = {}
    if scenario == "f":
        if view0 is not None:
            time.sleep(1.2)  # the workers publish their figures to the board once a second
        extra = view_between(view0, ringlb_view(proxy))
        extra["upstream_conns"] = established_to(c.SMALL)
        # The slowest requests, and whether the load generator itself fell behind its schedule.
        extra["max"] = r["latency_us"]["max"]
        extra["over_10ms"] = sum(n for v, n in r["histogram"] if v >= 10_000)
        extra["gen_lag_max"] = (r.get("schedule") or {}).get("wakeup_lag_us", {}).get("max")
        extra["sent_behind"] = (r.get("schedule") or {}).get("behind")
        extra["cpus"] = cpu_shares(s0, s1, sorted(set(range(workers)) | set(harness_cpus)))
    after_server, after_client = time_waits(proxy.port)
    tw_server, tw_client = len(after_server - before_server), len(after_client - before_client)
    requests = max(r["requests"], 1)
    return {
        "rps": r["requests_per_second"],
        "cpu_us": (t1 - t0) / c.CLK_TCK * 1e6 / requests,
        "p99": r["latency_us"]["p99"],
        "p999": r["latency_us"]["p99.9"],
        "errors": sum(r["errors"].values()),
        "non2xx": requests - r["status"]["2xx"] if r["requests"] else 0,
        "harness_busy": (h1 - h0) / c.CLK_TCK / max(w1 - w0, 1e-3) / len(harness_cpus),
        "client_tw_share": tw_client / max(tw_server + tw_client, 1),
        **extra,
    }


def report(results, machine):
    lines = [f"Machine: {machine}", "",
             "| scenario | workers | proxy | req/s | vs 1 worker | CPU µs/req | p99 ms | p99.9 ms | vs nginx req/s | harness busy "
             "| clients' TIME_WAIT |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    med = {k: {m: statistics.median(f[m] for f in v) for m in v[0]
               if all(isinstance(f.get(m), (int, float)) for f in v)}
           for k, v in results.items()}
    for s in SCENARIOS:
        for w in WORKERS:
            for p in PROXIES:
                m = med.get(f"{s}/{w}/{p}")
                if not m:
                    continue
                one = med.get(f"{s}/1/{p}")
                ng = med.get(f"{s}/{w}/nginx")
                vs_one = f"{m['rps'] / one['rps']:.2f}×" if one else "—"
                vs_nginx = f"{m['rps'] / ng['rps']:.2f}×" if ng else "—"
                lines.append(f"| {s} | {w} | {p} | {m['rps']:,.0f} | {vs_one} | {m['cpu_us']:.1f} | "
                             f"{m['p99'] / 1000:.2f} | {m['p999'] / 1000:.2f} | {vs_nginx} | {m['harness_busy']:.0%} | "
                             f"{m['client_tw_share']:.0%} |")
    return "\n".join(lines) + "\n"


def main():
    for tool in (c.RINGLB, c.LOAD):
        if not tool.exists():
            sys.exit(f"{tool} is missing: build with `cargo build --release --workspace`")
    load_cpus, origin_cpus = layout()
    busy = ports_in_use([*c.SMALL, *c.PORTS.values(), *c.ADMIN_PORTS.values()])
    if busy:
        sys.exit(f"ports {busy} on 127.0.0.1 are in use by processes this run did not start: stop them first")
    uring = io_uring_works()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), os.uname().machine)
    machine = (f"{os.cpu_count()} CPUs, kernel {os.uname().release}, {model}, "
               f"io_uring {'available' if uring else 'NOT available (ringlb ran on epoll)'}; "
               f"proxy workers on CPUs 0..N-1, load generator on {cpus_arg(load_cpus)}, origins on "
               f"{' and '.join(cpus_arg(o) for o in origin_cpus)}")
    print(machine, flush=True)
    tmp = tempfile.mkdtemp(prefix="ringlb-scaling-")
    c.STAGED["ringlb"] = c.stage(c.RINGLB, tmp, "ringlb")
    if "ringlb-base" in PROXIES:
        if not c.BASE_BIN:
            sys.exit("SCALE_PROXIES names ringlb-base: set BENCH_BASE_BIN to a ringlb built from an earlier commit")
        c.STAGED["ringlb-base"] = c.stage(Path(c.BASE_BIN), tmp, "ringlb-base")
    origins = [subprocess.Popen([str(c.LOAD), "origin", "--port", str(port), "--threads", str(len(cpus)),
                                 "--cpus", cpus_arg(cpus)], stderr=subprocess.DEVNULL)
               for port, cpus in zip(c.SMALL, origin_cpus)]
    harness = sorted(set(load_cpus) | {x for o in origin_cpus for x in o})

    def measured(name, scenario, w, rate=None):
        """Starts proxy `name` with `w` workers, runs one load, stops it: its figures."""
        proxy = c.Proxy(name, tmp, workers=w, cpus=f"0-{w - 1}")
        try:
            proxy.start()
            return run_one(proxy, scenario, w, load_cpus, [o.pid for o in origins], harness, tmp, rate)
        finally:
            proxy.stop()

    results = {}
    try:
        for port in c.SMALL:
            if not wait_port(port):
                raise RuntimeError(f"origin on {port} did not start")
        # One run that is not counted: the first load after the origins start ran ~20 % slower
        # than the same one a round later, whichever proxy met it.
        measured(PROXIES[0], "a", 1)
        # (f)'s rate at each worker count: half of nginx's (a) rate there, from one run that is
        # not counted (as compare.py sets it from nginx's (a) median).
        rates = {}
        if "f" in SCENARIOS and os.environ.get("SCALE_RATE"):
            rates = {w: int(os.environ["SCALE_RATE"]) for w in WORKERS}
        elif "f" in SCENARIOS:
            for w in WORKERS:
                rates[w] = int(measured("nginx", "a", w)["rps"] / 2)
                print(f"(f) at {w} workers: {rates[w]:,} req/s", flush=True)
        for rnd in range(ROUNDS):
            for s in SCENARIOS:
                for w in WORKERS:
                    # The order of the proxies turns with the round: none always follows the same one.
                    for name in PROXIES[rnd % len(PROXIES):] + PROXIES[:rnd % len(PROXIES)]:
                        fig = measured(name, s, w, rates.get(w))
                        results.setdefault(f"{s}/{w}/{name}", []).append(fig)
                        print(f"round {rnd + 1} {s} workers={w} {name}: {fig['rps']:,.0f} req/s, "
                              f"{fig['cpu_us']:.1f} µs/req, p99 {fig['p99'] / 1000:.2f} ms, "
                              f"p99.9 {fig['p999'] / 1000:.2f} ms, "
                              f"harness {fig['harness_busy']:.0%}, TIME_WAIT on the client's side "
                              f"{fig['client_tw_share']:.0%}, errors {fig['errors']}", flush=True)
                        if s == "f":
                            print(f"  inside p99/p99.9 {fig.get('inside_p99')}/{fig.get('inside_p999')} µs, "
                                  f"member {fig.get('member_p99')}/{fig.get('member_p999')} µs, "
                                  f"connects {fig.get('connects')}, upstream conns {fig['upstream_conns']}, "
                                  f"max {fig['max']} µs, {fig['over_10ms']} requests ≥ 10 ms, "
                                  f"generator's lag max {fig['gen_lag_max']} µs, {fig['sent_behind']} sent behind a busy "
                                  f"connection, "
                                  f"CPU busy/steal {fig['cpus']}", flush=True)
                        OUT.mkdir(parents=True, exist_ok=True)
                        (OUT / "scaling.json").write_text(json.dumps({"machine": machine, "runs": results}, indent=1))
                        (OUT / "scaling.md").write_text(report(results, machine))
    finally:
        for o in origins:
            stop(o)
        shutil.rmtree(tmp, ignore_errors=True)
    print(report(results, machine))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
