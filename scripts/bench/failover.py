#!/usr/bin/env python3
"""Failover measured side by side: ringlb, nginx and HAProxy in front of the same two origins
(`ringlb-load origin`), each proxy pinned to CPU 0 with one worker, load generator and origins on
CPU 1. Run it through scripts/failover.sh (which installs the peers and builds ringlb).

kill: one origin is killed with SIGKILL 3 s into a 10 s run of 64 keep-alive connections; errors and
      non-2xx answers the clients got, per run, FAILOVER_RUNS (5) runs per proxy.
stop: one origin is stopped (SIGSTOP) 4 s into a 24 s open-loop run (400 requests per second over
      up to 1024 connections, so that requests keep coming while some wait) and continued (SIGCONT)
      10 s later; health checks every second, two failures take a member out (ringlb `hcinterval =
      "1s"`, `hcfails = 2`; HAProxy `check inter 1s fall 2`), response timeout 5 s in both. Measured
      by polling each proxy's own counters every 100 ms (ringlb /status.json, HAProxy's stats
      socket): the time from SIGSTOP until the member's pick counter stopped growing, the time
      until the proxy reported it down, the requests that got a 504 (waited out the timeout), and
      the time from SIGCONT until it took requests again. Both proxies retry an idempotent request
      on another member after a connection failure or a close without response, neither after a
      response timeout (HAProxy `retry-on conn-failure empty-response junk-response`).

Environment: FAILOVER_RUNS (5), FAILOVER_TESTS ("kill,stop"), FAILOVER_PROXIES
("ringlb,nginx,haproxy"; nginx has no active checks, so it takes part in "kill" only), BENCH_OUT
(docs: writes failover.json there). Prints a Markdown summary for docs/benchmarks.md.
"""

import csv
import io
import json
import shutil
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from procs import stop, wait_port

ROOT = Path(__file__).resolve().parents[2]
RINGLB = ROOT / "target/release/ringlb"
LOAD = ROOT / "target/release/ringlb-load"
RUNS = int(os.environ.get("FAILOVER_RUNS", "5"))
TESTS = os.environ.get("FAILOVER_TESTS", "kill,stop").split(",")
PROXIES = os.environ.get("FAILOVER_PROXIES", "ringlb,nginx,haproxy").split(",")
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "docs"))
PROXY_CPU, LOAD_CPU = "0", "1"
# The stop test runs open loop, so that requests keep coming while some wait on the stopped member.
STOP_RATE, STOP_CONNS = 400, 1024
ORIGINS = [19201, 19202]
PORTS = {"ringlb": 18100, "nginx": 18101, "haproxy": 18102}
ADMIN = 18190




def start_origin(port):
    p = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(LOAD), "origin", "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        raise RuntimeError(f"origin on {port} did not start")
    return p


def ringlb_config(d, checks):
    o1, o2 = ORIGINS
    hc = 'hcmethod = "get"\nhcinterval = "1s"\nhcfails = 2\nhcpasses = 1\n' if checks else ""
    (d / "ringlb.toml").write_text(f"""
[server]
workers = 1
[admin]
address = "127.0.0.1:{ADMIN}"
[[listen]]
address = "127.0.0.1:{PORTS['ringlb']}"
[[balancer]]
name = "app"
response_timeout = "5s"
max_idle_per_member = 512
{hc}members = [{{ url = "http://127.0.0.1:{o1}" }}, {{ url = "http://127.0.0.1:{o2}" }}]
[[route]]
path = "/"
balancer = "app"
""")
    return [str(RINGLB), "run", "--config", str(d / "ringlb.toml"), "--log-level", "warn"]


def nginx_config(d, checks):
    o1, o2 = ORIGINS
    (d / "logs").mkdir(exist_ok=True)
    (d / "nginx.conf").write_text(f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{o1}; server 127.0.0.1:{o2}; keepalive 512; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_read_timeout 5s; }}
  }}
}}
""")
    return ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]


def haproxy_config(d, checks):
    o1, o2 = ORIGINS
    chk = " check inter 1s fall 2 rise 1" if checks else ""
    (d / "haproxy.cfg").write_text(f"""
global
  nbthread 1
  stats socket {d}/admin.sock mode 600 level admin
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 5s
  timeout check 1s
  option http-keep-alive
  http-reuse always
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response junk-response
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  default_backend app
backend app
  balance roundrobin
  option httpchk GET /
  server s1 127.0.0.1:{o1}{chk}
  server s2 127.0.0.1:{o2}{chk}
""")
    return ["haproxy", "-f", str(d / "haproxy.cfg"), "-db"]


CONFIGS = {"ringlb": ringlb_config, "nginx": nginx_config, "haproxy": haproxy_config}


def start_proxy(name, d, checks):
    d.mkdir(parents=True, exist_ok=True)
    cmd = ["taskset", "-c", PROXY_CPU] + CONFIGS[name](d, checks)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "w"))
    if not wait_port(PORTS[name]):
        raise RuntimeError(f"{name} did not start: {(d / 'stderr.log').read_text()}")
    time.sleep(0.3)
    return p


def start_load(name, conns, seconds, json_path, rate=None):
    cmd = ["taskset", "-c", LOAD_CPU, str(LOAD), "-q", "-t", "1", "-c", str(conns), "-d", f"{seconds}s",
           "--timeout", "30s", "--json", str(json_path), f"http://127.0.0.1:{PORTS[name]}/"]
    if rate:
        cmd += ["--rate", str(rate)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def failures(r):
    """Errors (resets, timeouts at the client) and non-2xx answers of one load run."""
    errors = sum(r["errors"].values())
    non2xx = sum(v for k, v in r["status"].items() if k != "2xx")
    return errors + non2xx


def kill_run(name, tmp):
    origins = [start_origin(p) for p in ORIGINS]
    proxy = start_proxy(name, tmp / name, checks=False)
    out = tmp / f"{name}-kill.json"
    try:
        load = start_load(name, 64, 10, out)
        time.sleep(3)
        origins[1].kill()
        origins[1].wait()
        load.wait()
        r = json.loads(out.read_text())
        return {"failures": failures(r), "requests": r["requests"], "status": r["status"],
                "errors": r["errors"]}
    finally:
        stop(proxy)
        for o in origins:
            stop(o)


def ringlb_member(i):
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/status.json", timeout=2) as f:
        m = json.load(f)["balancers"][0]["members"][i]
    check = m.get("health") or {}
    return m["selected"], check.get("state") == "down"


def haproxy_member(d, i):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(str(d / "admin.sock"))
    s.sendall(b"show stat\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    text = data.decode().lstrip("# ")
    for row in csv.DictReader(io.StringIO(text)):
        if row["pxname"] == "app" and row["svname"] == f"s{i + 1}":
            return int(row["stot"]), row["status"].startswith("DOWN")
    raise RuntimeError("no s2 in HAProxy's stats")


def stop_run(name, tmp):
    d = tmp / name
    origins = [start_origin(p) for p in ORIGINS]
    proxy = start_proxy(name, d, checks=True)
    probe = (lambda: ringlb_member(1)) if name == "ringlb" else (lambda: haproxy_member(d, 1))
    out = tmp / f"{name}-stop.json"
    samples = []
    try:
        load = start_load(name, STOP_CONNS, 24, out, rate=STOP_RATE)
        t0 = time.time()
        time.sleep(4)
        os.kill(origins[1].pid, signal.SIGSTOP)
        t_stop = time.time()
        cont_at = t_stop + 10
        t_cont = None
        while load.poll() is None:
            now = time.time()
            if t_cont is None and now >= cont_at:
                os.kill(origins[1].pid, signal.SIGCONT)
                t_cont = time.time()
            try:
                picked, down = probe()
                samples.append((now, picked, down))
            except OSError:
                pass
            time.sleep(0.1)
        r = json.loads(out.read_text())
    finally:
        stop(proxy)
        for o in origins:
            stop(o)
    during = [s for s in samples if t_stop <= s[0] < t_cont]
    after = [s for s in samples if s[0] >= t_cont]
    last_growth = t_stop
    for prev, cur in zip(during, during[1:]):
        if cur[1] > prev[1]:
            last_growth = cur[0]
    down_at = next((s[0] for s in during if s[2]), None)
    base = after[0][1] if after else 0
    back_at = next((s[0] for s in after if s[1] > base and not s[2]), None)
    return {
        "stopped_taking_s": round(last_growth - t_stop, 2),
        "marked_down_s": round(down_at - t_stop, 2) if down_at else None,
        "timeouts_504": r["status"].get("5xx", 0),
        "client_errors": sum(r["errors"].values()),
        "recovered_s": round(back_at - t_cont, 2) if back_at else None,
        "requests": r["requests"],
        "load_started_s_before_stop": round(t_stop - t0, 2),
    }


def main():
    for tool in ["taskset"] + [p for p in PROXIES if p != "ringlb"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run scripts/failover.sh, which installs it")
    results = {"kill": {}, "stop": {}}
    with tempfile.TemporaryDirectory(prefix="ringlb-failover-") as t:
        tmp = Path(t)
        if "kill" in TESTS:
            for run in range(RUNS):
                for name in PROXIES:
                    r = kill_run(name, tmp)
                    results["kill"].setdefault(name, []).append(r)
                    print(f"kill run {run + 1} {name}: {r['failures']} failed of {r['requests']}", flush=True)
        if "stop" in TESTS:
            for name in [p for p in PROXIES if p != "nginx"]:
                r = stop_run(name, tmp)
                results["stop"][name] = r
                print(f"stop {name}: {r}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "failover.json").write_text(json.dumps(results, indent=1) + "\n")
    print()
    if results["kill"]:
        print("| proxy | failed requests per run (member killed at 3 s of 10 s, 64 connections) | median |")
        print("|---|---|---|")
        for name, runs in results["kill"].items():
            f = [r["failures"] for r in runs]
            print(f"| {name} | {', '.join(map(str, f))} | {statistics.median(f):g} |")
        print()
    if results["stop"]:
        print("| proxy | stopped sending it (s after SIGSTOP) | reported down (s) | 504s | client errors | "
              "taking requests again (s after SIGCONT) |")
        print("|---|---|---|---|---|---|")
        for name, r in results["stop"].items():
            print(f"| {name} | {r['stopped_taking_s']} | {r['marked_down_s']} | {r['timeouts_504']} | "
                  f"{r['client_errors']} | {r['recovered_s']} |")


if __name__ == "__main__":
    main()
