#!/usr/bin/env python3
"""How each balancing method spreads load over two members, one three times slower than the other.

Two origins (`ringlb-load origin`): A answers after 2 ms, B after 6 ms. ringlb (1 worker, CPU 0)
balances over both with `method` = round_robin, least_busy and p2c in turn, under 64 keep-alive
connections for METHODS_SECONDS (10) from `ringlb-load` (CPU 1, with the origins). Reported per
method: requests per second, latency p50/p99 at the client, and each member's share of the requests
(ringlb's own `selected` counters from /status.json). Medians of METHODS_ROUNDS (3) rounds, methods
interleaved. Run it through scripts/bench-methods.sh. Prints a Markdown table.
"""

import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from procs import wait_port

ROOT = Path(__file__).resolve().parents[2]
RINGLB = ROOT / "target/release/ringlb"
LOAD = ROOT / "target/release/ringlb-load"
SECONDS = int(os.environ.get("METHODS_SECONDS", "10"))
ROUNDS = int(os.environ.get("METHODS_ROUNDS", "3"))
CONNS = int(os.environ.get("METHODS_CONNECTIONS", "64"))
METHODS = ["round_robin", "least_busy", "p2c"]
FAST, SLOW = 19301, 19302
PORT, ADMIN = 18200, 18290




def start(cmd, port):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        raise RuntimeError(f"{cmd[0]} on {port} did not start")
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run(method, tmp):
    cfg = tmp / f"{method}.toml"
    cfg.write_text(f"""
[server]
workers = 1
[admin]
address = "127.0.0.1:{ADMIN}"
[[listen]]
address = "127.0.0.1:{PORT}"
[[balancer]]
name = "app"
method = "{method}"
max_idle_per_member = 512
members = [{{ url = "http://127.0.0.1:{FAST}" }}, {{ url = "http://127.0.0.1:{SLOW}" }}]
[[route]]
path = "/"
balancer = "app"
""")
    proxy = start(["taskset", "-c", "0", str(RINGLB), "run", "--config", str(cfg), "--log-level", "warn"], PORT)
    try:
        out = tmp / "load.json"
        subprocess.run(["taskset", "-c", "1", str(LOAD), "-q", "-t", "1", "-c", str(CONNS), "-d", f"{SECONDS}s",
                        "--json", str(out), f"http://127.0.0.1:{PORT}/"], check=True, stdout=subprocess.DEVNULL)
        r = json.loads(out.read_text())
        time.sleep(1.2)  # one publication after the last request
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/status.json", timeout=2) as f:
            members = json.load(f)["balancers"][0]["members"]
    finally:
        stop(proxy)
    picked = [m["selected"] for m in members]
    return {"rps": r["requests_per_second"], "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
            "fast_share": picked[0] / max(sum(picked), 1)}


def main():
    origins = [start(["taskset", "-c", "1", str(LOAD), "origin", "--port", str(FAST), "--delay", "2ms"], FAST),
               start(["taskset", "-c", "1", str(LOAD), "origin", "--port", str(SLOW), "--delay", "6ms"], SLOW)]
    results = {m: [] for m in METHODS}
    try:
        with tempfile.TemporaryDirectory(prefix="ringlb-methods-") as t:
            for rnd in range(ROUNDS):
                for m in METHODS:
                    r = run(m, Path(t))
                    results[m].append(r)
                    print(f"round {rnd + 1} {m}: {r}", flush=True)
    finally:
        for o in origins:
            stop(o)
    print()
    print(f"| method | req/s | p50 (ms) | p99 (ms) | share of the fast member |")
    print("|---|---|---|---|---|")
    for m, rs in results.items():
        med = lambda k: statistics.median(x[k] for x in rs)
        print(f"| `{m}` | {med('rps'):,.0f} | {med('p50') / 1000:.1f} | {med('p99') / 1000:.1f} | "
              f"{med('fast_share') * 100:.0f} % |")


if __name__ == "__main__":
    main()
