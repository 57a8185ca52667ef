#!/usr/bin/env python3
"""Memory per open WebSocket tunnel: ringlb and nginx (HAProxy too when installed), one worker
each, in front of the same Python `websockets` echo server (tests/it/support/ws_peer.py). For each
proxy, in turn: its resident memory (VmRSS, all its processes) when idle, then while N WebSockets
(default 1,000) are held open through it for HOLD seconds (each echoes a message before and after
the hold), and the difference divided by N. Interleaved over ROUNDS rounds; medians reported.

Needs Debian's python3-websockets (/usr/bin/python3), nginx, and target/release/ringlb (build it
first). Environment: TUNNELS_N (1000), TUNNELS_HOLD (10), TUNNELS_ROUNDS (3), TUNNELS_PROXIES
("ringlb,nginx,haproxy"). Stops only the processes it started (by pid).
"""

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import wait_port

ROOT = Path(__file__).resolve().parents[2]
RINGLB = ROOT / (os.environ.get("CARGO_TARGET_DIR") or "target") / "release/ringlb"
PEER = ROOT / "tests/it/support/ws_peer.py"
PYTHON = "/usr/bin/python3"
N = int(os.environ.get("TUNNELS_N", "1000"))
HOLD = float(os.environ.get("TUNNELS_HOLD", "10"))
ROUNDS = int(os.environ.get("TUNNELS_ROUNDS", "3"))
PROXIES = os.environ.get("TUNNELS_PROXIES", "ringlb,nginx,haproxy").split(",")
PORTS = {"ringlb": 18500, "nginx": 18501, "haproxy": 18502}


def rss_kib(pid):
    """VmRSS of `pid` and of its child processes (nginx's and HAProxy's workers)."""
    total = 0
    pids = [pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(p))
            except OSError:
                pass
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def config(name, d, echo):
    port = PORTS[name]
    if name == "ringlb":
        (d / "ringlb.toml").write_text(f"""
[server]
workers = 1
[limits]
max_connections = 20000
[[listen]]
address = "127.0.0.1:{port}"
[[balancer]]
name = "ws"
members = [{{ url = "http://127.0.0.1:{echo}" }}]
[[route]]
path = "/"
balancer = "ws"
upgrade = ["websocket"]
""")
        return [str(RINGLB), "run", "--config", str(d / "ringlb.toml")]
    if name == "nginx":
        (d / "nginx.conf").write_text(f"""
worker_processes 1;
worker_rlimit_nofile 100000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{echo};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
    }}
  }}
}}
""")
        return ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]
    (d / "haproxy.cfg").write_text(f"""
global
  nbthread 1
  maxconn 9900
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend fe
  bind 127.0.0.1:{port}
  default_backend ws
backend ws
  server s1 127.0.0.1:{echo}
""")
    return ["haproxy", "-f", str(d / "haproxy.cfg")]


def measure(name, d, echo):
    proc = subprocess.Popen(config(name, d, echo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(PORTS[name]) or proc.poll() is not None:
            raise SystemExit(f"{name} did not start")
        time.sleep(1)
        idle = rss_kib(proc.pid)
        client = subprocess.Popen(
            [PYTHON, str(PEER), "hold", f"ws://127.0.0.1:{PORTS[name]}/", str(N), str(HOLD)],
            stdout=subprocess.PIPE, text=True)
        first = client.stdout.readline()
        if not first.startswith(f"open {N}"):
            raise SystemExit(f"{name}: the client could not open {N} WebSockets: {first!r}")
        time.sleep(HOLD / 2)
        held = rss_kib(proc.pid)
        rest = client.stdout.read()
        if client.wait() != 0 or f"held {N}" not in rest:
            raise SystemExit(f"{name}: a WebSocket failed during the hold: {rest!r}")
        return idle, held
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proxies = [p for p in PROXIES if p == "ringlb" or shutil.which(p)]
    missing = set(PROXIES) - set(proxies)
    if missing:
        print(f"!!! not installed, left out: {', '.join(sorted(missing))}", file=sys.stderr)
    echo = subprocess.Popen([PYTHON, str(PEER), "serve"], stdout=subprocess.PIPE, text=True)
    try:
        echo_port = int(echo.stdout.readline())
        results = {p: [] for p in proxies}
        with tempfile.TemporaryDirectory(prefix="ringlb-tunnels-") as tmp:
            for r in range(ROUNDS):
                for p in proxies:
                    d = Path(tmp) / f"{p}-{r}"
                    d.mkdir()
                    idle, held = measure(p, d, echo_port)
                    results[p].append((idle, held))
                    print(f"round {r + 1} {p}: idle {idle} KiB, {N} open {held} KiB", flush=True)
        print(f"\n| proxy | idle RSS (KiB) | RSS with {N:,} WebSockets open (KiB) | per tunnel (KiB) |")
        print("|---|---|---|---|")
        for p, runs in results.items():
            idle = statistics.median(i for i, _ in runs)
            held = statistics.median(h for _, h in runs)
            per = statistics.median((h - i) / N for i, h in runs)
            print(f"| {p} | {idle:,.0f} | {held:,.0f} | {per:.1f} |")
    finally:
        echo.terminate()
        echo.wait()


if __name__ == "__main__":
    main()
