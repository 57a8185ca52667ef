#!/usr/bin/env python3
"""Configuration reload (and binary upgrade) under load, side by side: ringlb, nginx and HAProxy
(issue 12). Run it through scripts/reload-compare.sh, or directly.

For each system, one after the other, on 127.0.0.1:
- three origins A, B, C (`ringlb-load origin`), the proxy in front of A and B (round robin) with
  one worker (ringlb `--workers 1`, nginx `worker_processes 1`, HAProxy `nbthread 1`);
- for `--duration` seconds (20) four clients at once, each counting failures (connection errors
  by kind, non-2xx answers): `ringlb-load` closed loop with `--connections` (64) keep-alive
  connections; `ringlb-load --connect-per-request` with `--churn-connections` (16), a NEW
  connection for every request (what a reload can refuse or reset); and two Python clients of
  `--py-threads` (4) threads, one keep-alive (it also counts `Connection: close` answers), one
  with a new connection per request, which keep each failure with its time into the run;
- meanwhile, every second, the proxy's configuration file is rewritten with the next member set of
  {A,B} -> {B,C} -> {A,B,C weights 1,2,3} -> {A,C} -> {A,B} -> ... and the proxy reloaded:
    ringlb   POST /api/reload on its admin listener (what `ringlb reload` does; answers when every
             core runs the new generation), or SIGHUP with `--ringlb-reload hup` (then
             /status.json's config.generation is polled until it moves);
    nginx    SIGHUP to the master (what `nginx -s reload` sends); done when a new worker appears;
    haproxy  master-worker mode (-W, master CLI socket -S), SIGUSR2 to the master; done when a new
             worker appears;
  ringlb-upgrade: no reloads but three binary upgrades (at 1/4, 1/2 and 3/4 of the run):
  `ringlb run --config <same file> --upgrade --workers 1` ([server] upgrade_socket), done when it
  logs "ringlb ready" and the old process has exited by itself.

Only processes this script started are signalled, by PID (and a PID only while its start time
still matches). Everything runs in a temporary directory, removed at the end; the configurations,
logs and results are copied to --out (default: a new temporary directory), with results.json and
results.md (the Markdown table).

Binaries: $BIN_DIR/ringlb and $BIN_DIR/ringlb-load (BIN_DIR default: target/release).
"""

import argparse
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/bench
from procs import wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("BIN_DIR") or ROOT / "target/release")
if not BIN_DIR.is_absolute():
    BIN_DIR = ROOT / BIN_DIR
RINGLB = BIN_DIR / "ringlb"
LOAD = BIN_DIR / "ringlb-load"
SYSTEMS = ["ringlb", "nginx", "haproxy", "ringlb-upgrade"]

# Member sets cycled through, by origin index (0 = A, 1 = B, 2 = C), with weights.
MEMBER_SETS = [
    [(0, 1), (1, 1)],
    [(1, 1), (2, 1)],
    [(0, 1), (1, 2), (2, 3)],
    [(0, 1), (2, 1)],
]
NAMES = "ABC"


def set_text(members):
    return "{" + ",".join(NAMES[i] + (f"x{w}" if w != 1 else "") for i, w in members) + "}"


# ---- processes: start times, so that a PID is signalled only while it is still ours ----

def proc_stat(pid):
    """(ppid, starttime) of a live process, or None (none, or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def children(pid):
    """The live child PIDs of `pid` (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] == pid:
                out.append(int(entry))
    return out


class Owned:
    """Every process this script started or saw its processes start: (pid, starttime)."""

    def __init__(self):
        self.known = {}

    def add(self, pid):
        st = proc_stat(pid)
        if st and pid not in self.known:
            self.known[pid] = st[1]

    def add_tree(self, pid):
        self.add(pid)
        for c in children(pid):
            self.add_tree(c)

    def alive(self, pid):
        st = proc_stat(pid)
        return st is not None and self.known.get(pid) == st[1]

    def signal(self, pid, sig):
        if self.alive(pid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def stop_all(self):
        """SIGTERM to every known process still alive, then SIGKILL to what remains after 10 s."""
        pids = [p for p in self.known if self.alive(p)]
        for p in pids:
            self.signal(p, signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline and any(self.alive(p) for p in pids):
            time.sleep(0.1)
        for p in pids:
            self.signal(p, signal.SIGKILL)
        self.known.clear()


OWNED = Owned()


def spawn(cmd, log, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "ab"), **kw)
    OWNED.add(p.pid)
    return p


def reap(p, timeout=10):
    """Waits for a Popen (ours) to exit; SIGKILL after `timeout`."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        OWNED.signal(p.pid, signal.SIGKILL)
        return p.wait()


def port_free(port):
    """Whether nothing listens on 127.0.0.1:port (a bind with SO_REUSEADDR, as the servers do, so
    that connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---- the proxies ----

class Proxy:
    """One system under test: writes its configuration, starts, reloads (or upgrades), stops."""

    def __init__(self, system, d, port, admin_port, origins, ringlb_reload):
        self.system = system
        self.kind = "ringlb" if system.startswith("ringlb") else system
        self.d = d
        self.port = port
        self.admin_port = admin_port
        self.origins = origins
        self.ringlb_reload = ringlb_reload
        self.proc = None  # the master (nginx, HAProxy) or the serving ringlb
        self.generation = 1
        self.upgrades = 0

    @property
    def conf(self):
        return self.d / {"ringlb": "ringlb.toml", "nginx": "nginx.conf", "haproxy": "haproxy.cfg"}[self.kind]

    def write_config(self, members):
        d, port = self.d, self.port
        if self.kind == "ringlb":
            ms = ", ".join(f'{{ url = "http://127.0.0.1:{self.origins[i]}", weight = {w} }}' for i, w in members)
            upgrade = f'upgrade_socket = "{d}/up.sock"\n' if self.system == "ringlb-upgrade" else ""
            text = f"""[server]
workers = 1
shutdown_grace = "5s"
{upgrade}[admin]
address = "127.0.0.1:{self.admin_port}"
[[listen]]
address = "127.0.0.1:{port}"
[[balancer]]
name = "pool"
method = "round_robin"
max_idle_per_member = 512
members = [{ms}]
[[route]]
path = "/"
balancer = "pool"
"""
        elif self.kind == "nginx":
            ms = " ".join(f"server 127.0.0.1:{self.origins[i]} weight={w};" for i, w in members)
            text = f"""worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 10000; }}
http {{
  access_log off;
  upstream pool {{ {ms} keepalive 512; }}
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""
        else:
            ms = "\n".join(f"  server {NAMES[i]} 127.0.0.1:{self.origins[i]} weight {w}" for i, w in members)
            text = f"""global
  nbthread 1
  maxconn 9900
  pidfile {d}/haproxy.pid
  hard-stop-after 30s
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend pool
backend pool
  balance roundrobin
{ms}
"""
        write_atomic(self.conf, text)

    def command(self, upgrade=False):
        if self.kind == "ringlb":
            cmd = [str(RINGLB), "run", "--config", str(self.conf), "--workers", "1", "--log-level", "info"]
            return cmd + (["--upgrade"] if upgrade else [])
        if self.kind == "nginx":
            (self.d / "logs").mkdir(exist_ok=True)
            return ["nginx", "-p", str(self.d), "-c", str(self.conf), "-g", "daemon off;"]
        return ["haproxy", "-W", "-db", "-S", f"{self.d}/master.sock", "-f", str(self.conf)]

    def start(self):
        self.proc = spawn(self.command(), self.d / "proxy-0.log")
        if not wait_port(self.port, 15):
            raise RuntimeError(f"{self.system} did not start: {(self.d / 'proxy-0.log').read_text()[-2000:]}")
        if self.kind == "ringlb" and not wait_port(self.admin_port, 5):
            raise RuntimeError(f"{self.system}: no admin listener")
        time.sleep(0.3)
        OWNED.add_tree(self.proc.pid)

    def reload(self):
        """Reloads the configuration file as it is now; returns (ok, detail)."""
        if self.kind == "ringlb":
            if self.ringlb_reload == "hup":
                before = self.status_generation()
                OWNED.signal(self.proc.pid, signal.SIGHUP)
                deadline = time.time() + 5
                while time.time() < deadline:
                    g = self.status_generation()
                    if g is not None and before is not None and g > before:
                        return True, f"generation {g}"
                    time.sleep(0.02)
                return False, "generation did not move within 5 s"
            req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/api/reload", data=b"", method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    body = json.loads(r.read())
                return True, f"generation {body.get('generation')}"
            except urllib.error.HTTPError as e:
                return False, f"HTTP {e.code}: {e.read()[:300]!r}"
            except (OSError, ValueError) as e:
                return False, repr(e)
        # nginx, HAProxy: signal the master, wait until a worker that was not there appears.
        before = set(children(self.proc.pid))
        OWNED.signal(self.proc.pid, signal.SIGHUP if self.kind == "nginx" else signal.SIGUSR2)
        deadline = time.time() + 5
        while time.time() < deadline:
            now = set(children(self.proc.pid))
            for c in now - before:
                OWNED.add(c)
            if now - before:
                time.sleep(0.05)  # a worker forked; let the master settle
                OWNED.add_tree(self.proc.pid)
                return True, f"new worker {sorted(now - before)}"
            if self.proc.poll() is not None:
                return False, f"master exited ({self.proc.returncode})"
            time.sleep(0.02)
        return False, "no new worker within 5 s"

    def status_generation(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/status.json", timeout=2) as r:
                return json.loads(r.read())["config"]["generation"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def upgrade(self, t0):
        """ringlb-upgrade: starts the new process with --upgrade; returns a record."""
        self.upgrades += 1
        n = self.upgrades
        log = self.d / f"proxy-{n}.log"
        old = self.proc
        t_start = time.monotonic() - t0
        new = spawn(self.command(upgrade=True), log)
        rec = {"n": n, "old_pid": old.pid, "new_pid": new.pid, "t_start_s": round(t_start, 3)}
        deadline = time.time() + 15
        ready = False
        while time.time() < deadline:
            if "ringlb ready" in log.read_text(errors="replace"):
                ready = True
                break
            if new.poll() is not None:
                break
            time.sleep(0.01)
        rec["t_ready_s"] = round(time.monotonic() - t0, 3) if ready else None
        if not ready:
            rec.update(ok=False, detail=f"new process not ready (exit {new.poll()}): "
                                        f"{log.read_text(errors='replace')[-1000:]}")
            if new.poll() is None:
                OWNED.signal(new.pid, signal.SIGTERM)
            reap(new)
            return rec
        self.proc = new
        try:
            code = old.wait(timeout=15)  # shutdown_grace is 5 s
            rec["t_old_exit_s"] = round(time.monotonic() - t0, 3)
            rec["old_exit_code"] = code
            rec["ok"] = code == 0
            rec["detail"] = f"old pid {old.pid} exited {code}"
        except subprocess.TimeoutExpired:
            rec.update(ok=False, detail=f"old pid {old.pid} still running 15 s after the new one was ready")
        return rec

    def stop(self):
        if self.proc is None:
            return
        OWNED.add_tree(self.proc.pid)
        OWNED.signal(self.proc.pid, signal.SIGTERM)
        reap(self.proc, timeout=10)
        self.proc = None


# ---- the new-connection client ----

def classify(exc, phase):
    if isinstance(exc, ConnectionRefusedError):
        kind = "refused"
    elif isinstance(exc, ConnectionResetError):
        kind = "reset"
    elif isinstance(exc, BrokenPipeError):
        kind = "broken pipe"
    elif isinstance(exc, http.client.RemoteDisconnected):
        kind = "closed without response"
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        kind = "timeout"
    elif isinstance(exc, http.client.IncompleteRead):
        kind = "incomplete body"
    elif isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        kind = "client out of ports (EADDRNOTAVAIL)"
    elif isinstance(exc, OSError) and exc.errno:
        kind = errno.errorcode.get(exc.errno, str(exc.errno))
    else:
        kind = type(exc).__name__
    return f"{phase}: {kind}"


class PyClient:
    """`threads` threads sending GET / one after the other until stopped, each on a new connection
    (keepalive=False: connect, request, read the whole answer, close) or on one keep-alive
    connection (keepalive=True: a new one only after a failure or a `Connection: close` answer,
    which is counted, not a failure). Every failure is kept with its time into the run."""

    def __init__(self, port, threads, keepalive, timeout=5.0):
        self.port = port
        self.keepalive = keepalive
        self.timeout = timeout
        self.stop = threading.Event()
        self.stats = [{"ok": 0, "closes": 0, "failures": []} for _ in range(threads)]
        self.threads = [threading.Thread(target=self.run, args=(s,), daemon=True) for s in self.stats]

    def start(self, t0):
        self.t0 = t0
        for t in self.threads:
            t.start()

    def run(self, stats):
        c = None
        while not self.stop.is_set():
            t = time.monotonic() - self.t0
            phase = "connect"
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                    c.connect()
                phase = "request"
                c.request("GET", "/")
                phase = "response"
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    stats["ok"] += 1
                else:
                    stats["failures"].append((t, f"status {r.status}", time.monotonic() - self.t0))
                if r.will_close or not self.keepalive:
                    if self.keepalive:
                        stats["closes"] += 1
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException) as e:
                stats["failures"].append((t, classify(e, phase), time.monotonic() - self.t0))
                c.close()
                c = None
        if c is not None:
            c.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)
        failures = sorted(f for s in self.stats for f in s["failures"])
        return {"ok": sum(s["ok"] for s in self.stats), "closes": sum(s["closes"] for s in self.stats),
                "failures": failures}


# ---- one system ----

def summarize_load(r):
    errors = {k: v for k, v in r["errors"].items() if v}
    non2xx = {k: v for k, v in r["status"].items() if k != "2xx" and v}
    return {"requests": r["requests"], "requests_per_second": r["requests_per_second"],
            "errors": errors, "error_total": sum(errors.values()), "non2xx": non2xx,
            "non2xx_total": sum(non2xx.values()), "latency_us": r["latency_us"]}


def py_summary(name, r, since_action, which_action):
    kinds, per_action = {}, {}
    for t, k, _ in r["failures"]:
        kinds[k] = kinds.get(k, 0) + 1
        n = str(which_action(t))
        per_action[n] = per_action.get(n, 0) + 1
    return {
        "client": name,
        "requests": r["ok"] + len(r["failures"]),
        "ok": r["ok"],
        "failed": len(r["failures"]),
        "failures_by_kind": kinds,
        "connection_close_answers": r["closes"],
        "failures_per_action": per_action,  # by the number of the reload/upgrade before (0: none)
        # each failure: when its request began and when it failed (s into the run), and the ms from
        # the start of the last reload/upgrade before the request began
        "failures": [{"t_s": round(t, 3), "failed_at_s": round(te, 3), "ms_after_action": since_action(t), "kind": k}
                     for t, k, te in r["failures"][:1000]],
    }


def run_system(system, args, tmp, out):
    d = tmp / system
    d.mkdir()
    base = args.base_port
    origins = [base + 1, base + 2, base + 3]
    port, admin_port = base, base + 90
    for p in origins + [port, admin_port]:
        deadline = time.time() + 10  # the previous system's sockets may take a moment to go
        while not port_free(p) and time.time() < deadline:
            time.sleep(0.2)
        if not port_free(p):
            ss = subprocess.run(["ss", "-tanp", f"sport = :{p}"], capture_output=True, text=True).stdout
            raise RuntimeError(f"port {p} is in use already (pick another --base-port):\n{ss}")
    procs = []  # origins
    clients = []  # ringlb-load runs: (name, Popen, json path)
    py = []  # Python clients: (name, PyClient)
    proxy = None
    try:
        for p in origins:
            procs.append(spawn([str(LOAD), "origin", "--port", str(p)], d / f"origin-{p}.log"))
        for p in origins:
            if not wait_port(p):
                raise RuntimeError(f"origin on {p} did not start")
        proxy = Proxy(system, d, port, admin_port, origins, args.ringlb_reload)
        proxy.write_config(MEMBER_SETS[0])
        proxy.start()
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        probe.request("GET", "/")
        status = probe.getresponse().status
        probe.close()
        if status != 200:
            raise RuntimeError(f"{system}: first request got {status}")

        url = f"http://127.0.0.1:{port}/"
        for name, conns, extra in (("keepalive", args.connections, []),
                                   ("newconn", args.churn_connections, ["--connect-per-request"])):
            if conns:
                j = d / f"{name}.json"
                clients.append((name, spawn([str(LOAD), "-q", "-t", "1", "-c", str(conns), *extra, "-d",
                                             f"{args.duration}s", "--json", str(j), url], d / f"{name}.log"), j))
        t0 = time.monotonic()
        if args.py_threads:
            py = [("py_keepalive", PyClient(port, args.py_threads, keepalive=True)),
                  ("py_newconn", PyClient(port, args.py_threads, keepalive=False))]
        for _, c in py:
            c.start(t0)

        actions = []
        if system == "ringlb-upgrade":
            times = [args.duration * k / 4 for k in (1, 2, 3)]
        else:
            times = [float(k) for k in range(1, int(args.duration))]
        for i, at in enumerate(times):
            wait = t0 + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if system == "ringlb-upgrade":
                rec = proxy.upgrade(t0)
                print(f"  upgrade {rec['n']}: {'ok' if rec['ok'] else 'FAILED'} ({rec['detail']}; started at "
                      f"{rec['t_start_s']} s, ready at {rec['t_ready_s']} s, old gone at {rec.get('t_old_exit_s')} s)",
                      flush=True)
            else:
                members = MEMBER_SETS[(i + 1) % len(MEMBER_SETS)]
                proxy.write_config(members)
                t = time.monotonic() - t0
                ok, detail = proxy.reload()
                rec = {"n": i + 1, "t_s": round(t, 3), "took_ms": round((time.monotonic() - t0 - t) * 1000, 1),
                       "members": set_text(members), "ok": ok, "detail": detail}
                if not ok:
                    print(f"  reload {i + 1} FAILED: {detail}", flush=True)
            actions.append(rec)

        loads = {}
        for name, proc, j in clients:
            code = proc.wait(timeout=args.duration + 30)
            if code != 0 or not j.exists():
                raise RuntimeError(f"ringlb-load ({name}) exited {code}: {(d / (name + '.log')).read_text()[-2000:]}")
            loads[name] = summarize_load(json.loads(j.read_text()))
        marks = [a.get("t_s", a.get("t_start_s")) for a in actions]

        def since_action(t):
            before = [m for m in marks if m is not None and m <= t]
            return round((t - before[-1]) * 1000, 1) if before else None

        def which_action(t):
            return sum(1 for m in marks if m is not None and m <= t)

        pys = {name: py_summary(name, c.finish(), since_action, which_action) for name, c in py}
        return {
            "system": system,
            "action": "upgrade" if system == "ringlb-upgrade" else "reload",
            "actions_ok": sum(1 for a in actions if a["ok"]),
            "actions_tried": len(actions),
            "actions": actions,
            "keepalive": loads.get("keepalive"),  # ringlb-load, --connections keep-alive connections
            "newconn": loads.get("newconn"),  # ringlb-load --connect-per-request
            "py_keepalive": pys.get("py_keepalive"),
            "py_newconn": pys.get("py_newconn"),
            "origins_alive": all(p.poll() is None for p in procs),
        }
    finally:
        for _, c in py:
            c.stop.set()
        for _, c, _ in clients:
            if c.poll() is None:
                OWNED.signal(c.pid, signal.SIGTERM)
            reap(c)
        if proxy is not None:
            proxy.stop()
        for p in procs:
            if p.poll() is None:
                OWNED.signal(p.pid, signal.SIGTERM)
            reap(p)
        OWNED.stop_all()  # anything of this system's still alive (a worker of an old generation)
        keep = out / system
        keep.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            if f.is_file() and f.suffix in (".log", ".toml", ".conf", ".cfg", ".json"):
                shutil.copy(f, keep / f.name)


# ---- report ----

def kinds_text(kinds):
    return ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))


def cell(r, key):
    """'failed / requests (kinds)' for one client of one system."""
    c = r.get(key)
    if not c:
        return "-"
    if "ok" in c:  # a Python client
        failed, kinds = c["failed"], c["failures_by_kind"]
    else:  # ringlb-load: errors by kind and non-2xx answers
        failed, kinds = c["error_total"] + c["non2xx_total"], {**c["errors"], **c["non2xx"]}
    text = f"{failed:,} / {c['requests']:,}"
    return text + (f" ({kinds_text(kinds)})" if failed else "")


def table(results, args):
    lines = ["| system | done | keep-alive, ringlb-load "
             f"x{args.connections}: failed / requests | keep-alive, Python x{args.py_threads} | "
             f"new connection per request, ringlb-load x{args.churn_connections} | "
             f"new connection per request, Python x{args.py_threads} |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['system']} | run failed: {r['error'].splitlines()[0]} | | | | |")
            continue
        lines.append(f"| {r['system']} | {r['actions_ok']}/{r['actions_tried']} {r['action']}s | "
                     f"{cell(r, 'keepalive')} | {cell(r, 'py_keepalive')} | {cell(r, 'newconn')} | "
                     f"{cell(r, 'py_newconn')} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=20, help="seconds of load per system (20)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {','.join(SYSTEMS)}")
    ap.add_argument("--out", help="where results.json, results.md and each system's files go (default: a new temp dir)")
    ap.add_argument("--connections", type=int, default=64, help="keep-alive connections of ringlb-load (64)")
    ap.add_argument("--churn-connections", type=int, default=16,
                    help="connections of ringlb-load --connect-per-request, the second client (16; 0: none)")
    ap.add_argument("--py-threads", type=int, default=4,
                    help="threads of each Python client (one keep-alive, one new connection per request), "
                         "which keep each failure with its time (4; 0: none)")
    ap.add_argument("--base-port", type=int, default=18400,
                    help="proxy port; origins on +1..+3, ringlb's admin on +90 (18400)")
    ap.add_argument("--ringlb-reload", choices=["api", "hup"], default="api",
                    help="how ringlb is reloaded: POST /api/reload (api) or SIGHUP (hup)")
    args = ap.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}")
    if len(set(systems)) != len(systems):
        ap.error("a system is listed twice")
    for b in (RINGLB, LOAD):
        if not b.exists():
            sys.exit(f"missing {b} (set BIN_DIR)")
    for s in systems:
        if s in ("nginx", "haproxy") and not shutil.which(s):
            sys.exit(f"{s} is not installed (bash scripts/bench/install-peers.sh nginx:nginx haproxy:haproxy)")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="reload-compare-"))
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))

    tmp = Path(tempfile.mkdtemp(prefix="reload-compare-run-"))
    results = []
    try:
        for system in systems:
            print(f"{system}: {args.duration} s; keep-alive: ringlb-load x{args.connections}, Python "
                  f"x{args.py_threads}; new connection per request: ringlb-load x{args.churn_connections}, "
                  f"Python x{args.py_threads}", flush=True)
            try:
                r = run_system(system, args, tmp, out)
            except (RuntimeError, OSError, subprocess.SubprocessError, http.client.HTTPException) as e:
                print(f"  FAILED: {e}", flush=True)
                r = {"system": system, "error": str(e)}
            results.append(r)
            if "error" in r:
                continue
            print(f"  {r['actions_ok']}/{r['actions_tried']} {r['action']}s", flush=True)
            for key in ("keepalive", "py_keepalive", "newconn", "py_newconn"):
                print(f"  {key:13} failed / requests: {cell(r, key)}", flush=True)
            for key in ("py_keepalive", "py_newconn"):
                c = r.get(key)
                if c and c["connection_close_answers"]:
                    print(f"  {key}: {c['connection_close_answers']} answers with Connection: close", flush=True)
                if c and c["failures_per_action"]:
                    print(f"  {key} failures after {r['action']} number: {c['failures_per_action']}", flush=True)
                for f in (c or {"failures": []})["failures"][:20]:
                    print(f"    {key} request at {f['t_s']:.3f} s ({f['ms_after_action']} ms after the "
                          f"{r['action']} before it), failed at {f['failed_at_s']:.3f} s: {f['kind']}", flush=True)
    finally:
        OWNED.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        meta = {"duration_s": args.duration, "connections": args.connections,
                "churn_connections": args.churn_connections, "py_threads": args.py_threads,
                "ringlb_reload": args.ringlb_reload,
                "member_sets": [set_text(m) for m in MEMBER_SETS], "bin_dir": str(BIN_DIR),
                "kernel": os.uname().release, "cpus": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        md = table(results, args)
        (out / "results.md").write_text(md + "\n")
        print()
        print(md)
        print(f"\nwritten to {out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
