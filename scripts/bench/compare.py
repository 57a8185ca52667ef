#!/usr/bin/env python3
"""Side-by-side benchmark: ringlb, nginx, HAProxy and Apache httpd (mod_proxy_balancer) in front of
the same two origins, each proxy pinned to one core with one worker, the load generator and the
origins on the other core, scenarios interleaved over several rounds, medians and ratios reported.

Scenarios a-h speak plain HTTP/1.1 to the proxies and run by default. Beside the proxies runs the
"floor" (`ringlb-load relay`: a byte relay, one member connection per client connection, no HTTP),
in (a), (b), (c), (f) and (m): what the kernel's TCP work alone costs per request on this machine. Scenario m
(1 MiB uploads) runs only when asked: BENCH_SCENARIOS=m (or mixed, e.g. c,m). Scenarios i-l put a TLS
listener (HTTPS) on ringlb, nginx and HAProxy (not Apache) in front of the same plain origins, with
one ECDSA P-256 certificate made for the run (a CA and a leaf it signs, by `openssl`); they run only
when asked: BENCH_SCENARIOS=i,j,k,l. The client offers TLS 1.3 and X25519 only (ringlb-load
`--tls-version 1.3 --tls-kx x25519`): Debian's OpenSSL 3.0 has no ML-KEM, and rustls would
otherwise pick the costlier X25519MLKEM768 hybrid with ringlb.

For ringlb (and a base binary that has the metric) each run also records its workers' loop lag
(`ringlb_worker_loop_lag_seconds`, read from /metrics before and after the run): `lag_mean_us`,
how late its 100 ms tick ran on average, and `lag_over_5ms`, the ticks more than 5 ms late. The
readings span the run with its warm-up, and a worker publishes once a second, so the run's last
second may not be in them.

Run it through scripts/bench-compare.sh (which installs the peers and builds ringlb). Environment:
  BENCH_ROUNDS (3), BENCH_DURATION (seconds per run, 8), BENCH_WARMUP (seconds before each measured
  run that are not counted, 2; at least 1), BENCH_SCENARIOS ("a,...,h"; e.g. "a,b,f" or
  "i,j,k,l"), BENCH_PROXIES (e.g. "ringlb,nginx,floor"), BENCH_SCRAPE_EVERY ((g)'s scrape interval, 0.1 s), BENCH_PROXY_CPU (0), BENCH_LOAD_CPU (1),
  BENCH_SCRAPE_CPU ((g)'s scraper; the load generator's CPU),
  BENCH_OUT (the folder benchmarks.md/.svg/.json are written to; docs), BENCH_IDLE_CONNS (e: 9000),
  BENCH_IDLE_TLS_CONNS (k: 10000), CARGO_TARGET_DIR (where ringlb and ringlb-load were built;
  target), BENCH_BASE_BIN (a ringlb binary built from an earlier commit: adds the proxy
  "ringlb-base", run with the same configuration, to compare a change with the code before it side
  by side, when BENCH_PROXIES names it; in (h) and the TLS scenarios too, so a base binary older
  than TLS support (issue 11) fails them: leave i-l out with such a base), BENCH_RINGLB (an
  absolute path: the binary in the "ringlb" slot instead of CARGO_TARGET_DIR's, e.g. the
  profile-guided build of scripts/pgo.sh; count.py and ops.py, which import this file, follow it),
  BENCH_BASE_DRIVER (`auto`, `io_uring` or `epoll`: the "ringlb-base" slot's `[server] driver`, so
  the same binary on the two drivers runs side by side with BENCH_BASE_BIN set to it),
  BENCH_BASE_IDLE_TTL (e.g. "60s": the "ringlb-base" slot's balancers' `idle_ttl`; the default's
  otherwise).
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import ports_in_use, wait_port

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / (os.environ.get("CARGO_TARGET_DIR") or "target")  # an absolute path stays as it is
# BENCH_RINGLB: another ringlb binary in the "ringlb" slot (scripts/pgo.sh trains and measures the
# profile-guided build this way).
RINGLB = Path(os.environ.get("BENCH_RINGLB") or TARGET / "release/ringlb")
BASE_BIN = os.environ.get("BENCH_BASE_BIN")
BASE_DRIVER = os.environ.get("BENCH_BASE_DRIVER")
BASE_IDLE_TTL = os.environ.get("BENCH_BASE_IDLE_TTL")
LOAD = TARGET / "release/ringlb-load"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION = int(os.environ.get("BENCH_DURATION", "8"))
WARMUP_S = int(os.environ.get("BENCH_WARMUP", "2"))
if WARMUP_S < 1:
    sys.exit("BENCH_WARMUP: at least 1 (seconds)")
PROXY_CPU = os.environ.get("BENCH_PROXY_CPU", "0")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "1")
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "docs"))
SCENARIOS = os.environ.get("BENCH_SCENARIOS", "a,b,c,d,e,f,g,h").split(",")
PROXIES = os.environ.get("BENCH_PROXIES", "ringlb,nginx,haproxy,apache,floor").split(",")
CLK_TCK = os.sysconf("SC_CLK_TCK")

SMALL = [19101, 19102]  # origins with small responses
BIG = [19111, 19112]  # origins with 1 MiB responses
PORTS = {"ringlb": 18000, "nginx": 18001, "haproxy": 18002, "apache": 18003, "ringlb-base": 18004, "floor": 18005}
# The floor (`ringlb-load relay`): a byte relay, one member connection per client connection, one
# receive and one send per message each way, no HTTP parsing. What the kernel's TCP work alone
# costs per request here. It cannot route by path, so (c) gets a second listener paired with the
# 1 MiB origins; it runs only where a relay is a fair floor: keep-alive scenarios (a new connection
# per request would cost it a member connection per request, which the proxies pool).
FLOOR_BIG_PORT = 18006
FLOOR_SCENARIOS = ("a", "b", "c", "f", "m")
# (g): how often /metrics is scraped while (a) and (f) run, and where the scraper runs.
SCRAPE_EVERY_S = float(os.environ.get("BENCH_SCRAPE_EVERY", "0.1"))
SCRAPE_CPU = os.environ.get("BENCH_SCRAPE_CPU", LOAD_CPU)
ADMIN_PORTS = {"ringlb": 18900, "ringlb-base": 18901}
# The TLS scenarios: the proxies that speak them and their HTTPS listeners.
TLS_SCENARIOS = ("i", "j", "k", "l")
TLS_PORTS = {"ringlb": 18100, "nginx": 18101, "haproxy": 18102, "ringlb-base": 18103}
ADMIN_PORT = ADMIN_PORTS["ringlb"]
# 10,000 in the issue; this machine caps a process at 20,000 descriptors and HAProxy reserves two per
# connection, so 9,000 is the most all four proxies can hold.
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "9000"))
# Idle TLS connections in (k): HAProxy gets maxconn above them with `no strict-limits` (an idle
# client connection takes one descriptor, not the two HAProxy reserves per connection).
IDLE_TLS_CONNS = int(os.environ.get("BENCH_IDLE_TLS_CONNS", "10000"))
HOLDER_THREADS = 8  # (k)'s handshakes in flight

SCENARIO_TEXT = {
    "a": "small responses, 64 keep-alive connections",
    "b": "1 KiB POST bodies, 64 connections",
    "c": "1 MiB responses, 16 connections",
    "d": "a new connection per request, 64 connections",
    "e": f"{IDLE_CONNS} idle keep-alive client connections",
    "f": "open loop at half of nginx's (a) rate, 64 connections",
    "g": "(a) and (f) while /metrics is scraped every 100 ms, with a /healthz scraper as the control (ringlb only)",
    "h": "Tomcat 10 behind AJP13: ringlb against Apache mod_proxy_ajp, 64 connections",
    "i": "HTTPS, small responses, 64 keep-alive connections",
    "j": "HTTPS, a new TLS connection per request (full handshakes, then resumed), 64 connections",
    "k": f"HTTPS, {IDLE_TLS_CONNS} idle keep-alive TLS client connections",
    "l": "HTTPS, 1 MiB responses, 16 connections",
    "m": "1 MiB POST bodies (uploads), 16 connections",
}
KEEP = "\n<!-- Below: written by scripts/failover.sh and scripts/bench-methods.sh, kept by compare.py -->\n"
TOMCAT_HOME = "/usr/share/tomcat10"
AJP_PORT, TOMCAT_HTTP = 19121, 19122
AJP_SECRET = "bench-secret"




def tree(pid):
    """The pid and all its descendants, read from /proc (no pgrep: scaling.py runs this on machines
    without procps)."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children.get(p, []))
    return pids


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


PKI_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ringlb bench CA
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:bench.test,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_pki(tmp):
    """The TLS scenarios' certificates, made with openssl: an ECDSA P-256 CA (ca.pem, which the
    clients verify against) and a leaf it signs for bench.test and 127.0.0.1 (leaf.pem, leaf.key),
    served by every proxy; haproxy.pem is the leaf and its key in one file, as HAProxy reads them.
    Not one self-signed certificate: rustls refuses a CA certificate as the server's own
    (CaUsedAsEndEntity)."""
    d = Path(tmp) / "pki"
    d.mkdir(parents=True, exist_ok=True)
    (d / "pki.cnf").write_text(PKI_CNF)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for cmd in (["req", "-x509", "-new", "-config", "pki.cnf", "-extensions", "ca", *ec,
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "30"],
                ["req", "-new", "-config", "pki.cnf", "-subj", "/CN=bench.test", *ec,
                 "-keyout", "leaf.key", "-out", "leaf.csr"],
                ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
                 "-days", "30", "-sha256", "-extfile", "pki.cnf", "-extensions", "leaf", "-out", "leaf.pem"]):
        subprocess.run(["openssl", *cmd], cwd=d, check=True, capture_output=True)
    (d / "haproxy.pem").write_text((d / "leaf.pem").read_text() + (d / "leaf.key").read_text())
    return d


def tls_client_args(pki):
    """ringlb-load's TLS options in every TLS scenario: verify against the run's CA; TLS 1.3 with
    X25519 only, so that all three proxies make the same key exchange."""
    return ["--cacert", str(pki / "ca.pem"), "--tls-version", "1.3", "--tls-kx", "x25519"]


class Proxy:
    def __init__(self, name, workdir, pki=None, workers=1, cpus=PROXY_CPU):
        """With `pki` (the TLS scenarios) the proxy's one listener speaks HTTPS with the run's
        certificate, on its TLS port; the rest of its configuration is the same. `workers`: ringlb's
        workers, nginx's worker processes, HAProxy's threads, each pinned to one of `cpus` (a
        taskset list) when more than one (scaling.py); Apache and the floor take one."""
        self.name = name
        self.pki = pki
        self.workers = workers
        self.cpus = cpus
        self.port = (TLS_PORTS if pki else PORTS)[name]
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def config(self):
        d = self.dir
        s1, s2 = SMALL
        b1, b2 = BIG
        pki = self.pki
        w = self.workers
        if self.name in ("ringlb", "ringlb-base"):
            binary = STAGED[self.name]
            tls = (f'[listen.tls]\ncerts = [ {{ cert = "{pki / "leaf.pem"}", key = "{pki / "leaf.key"}" }} ]'
                   if pki else "")
            # Only when asked: a base binary older than the `driver` key rejects it.
            driver = f'driver = "{BASE_DRIVER}"' if self.name == "ringlb-base" and BASE_DRIVER else ""
            ttl = f'idle_ttl = "{BASE_IDLE_TTL}"' if self.name == "ringlb-base" and BASE_IDLE_TTL else ""
            (d / "ringlb.toml").write_text(f"""
[server]
workers = {w}
{driver}
[limits]
max_connections = 100000
[admin]
address = "127.0.0.1:{ADMIN_PORTS[self.name]}"
[[listen]]
address = "127.0.0.1:{self.port}"
{tls}
[[balancer]]
name = "small"
max_idle_per_member = 512
{ttl}
members = [{{ url = "http://127.0.0.1:{s1}" }}, {{ url = "http://127.0.0.1:{s2}" }}]
[[balancer]]
name = "big"
max_idle_per_member = 512
{ttl}
members = [{{ url = "http://127.0.0.1:{b1}" }}, {{ url = "http://127.0.0.1:{b2}" }}]
[[route]]
path = "/"
balancer = "small"
[[route]]
path = "/big"
balancer = "big"
[[balancer]]
name = "tomcat"
max_idle_per_member = 512
{ttl}
members = [{{ url = "ajp://127.0.0.1:{AJP_PORT}", secret = "{AJP_SECRET}" }}]
[[route]]
path = "/tc"
balancer = "tomcat"
""")
            return [str(binary), "run", "--config", str(d / "ringlb.toml"), "--log-level", "warn"]
        if self.name == "nginx":
            (d / "logs").mkdir(exist_ok=True)
            # TLS 1.3 resumption by stateless tickets (on by default), as ringlb and HAProxy do it;
            # no server-side session cache.
            listen = (f"listen 127.0.0.1:{self.port} ssl reuseport;\n"
                      f"    ssl_certificate {pki / 'leaf.pem'};\n    ssl_certificate_key {pki / 'leaf.key'};\n"
                      "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets on;\n    ssl_session_cache off;"
                      if pki else f"listen 127.0.0.1:{self.port} reuseport;")
            (d / "nginx.conf").write_text(f"""
worker_processes {w};
{"worker_cpu_affinity auto;" if w > 1 else ""}
worker_rlimit_nofile 100000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  upstream small {{ server 127.0.0.1:{s1}; server 127.0.0.1:{s2}; keepalive 512; }}
  upstream big {{ server 127.0.0.1:{b1}; server 127.0.0.1:{b2}; keepalive 512; }}
  keepalive_requests 1000000;
  server {{
    {listen}
    location / {{ proxy_pass http://small; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location /big {{ proxy_pass http://big; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    # (m): uploads streamed to the member as they come, as the other proxies do (nginx's default
    # writes a body over 16 KiB to a file first).
    location /up {{ proxy_pass http://small; proxy_http_version 1.1; proxy_set_header Connection "";
                   proxy_request_buffering off; client_max_body_size 2m; }}
  }}
}}
""")
            return ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]
        if self.name == "haproxy":
            maxconn = f"maxconn {max(9900, IDLE_TLS_CONNS + 100)}\n  no strict-limits" if pki else "maxconn 9900"
            bind = f" ssl crt {pki / 'haproxy.pem'} alpn http/1.1" if pki else ""
            (d / "haproxy.cfg").write_text(f"""
global
  nbthread {w}
  {f"cpu-map auto:1/1-{w} {self.cpus}" if w > 1 else ""}
  {maxconn}
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{self.port}{bind}
  acl big path_beg /big
  use_backend big if big
  default_backend small
backend small
  balance roundrobin
  server s1 127.0.0.1:{s1}
  server s2 127.0.0.1:{s2}
backend big
  balance roundrobin
  server b1 127.0.0.1:{b1}
  server b2 127.0.0.1:{b2}
""")
            return ["haproxy", "-f", str(d / "haproxy.cfg"), "-db"]
        if self.name == "apache":
            mods = "/usr/lib/apache2/modules"
            (d / "httpd.conf").write_text(f"""
ServerRoot {d}
PidFile {d}/httpd.pid
Listen 127.0.0.1:{self.port}
ServerName localhost
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule slotmem_shm_module {mods}/mod_slotmem_shm.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_http_module {mods}/mod_proxy_http.so
LoadModule proxy_balancer_module {mods}/mod_proxy_balancer.so
LoadModule lbmethod_byrequests_module {mods}/mod_lbmethod_byrequests.so
LoadModule proxy_ajp_module {mods}/mod_proxy_ajp.so
User www-data
Group www-data
ErrorLog {d}/error.log
LogLevel warn
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
StartServers 1
ServerLimit 1
ThreadsPerChild 256
ThreadLimit 256
MaxRequestWorkers 256
AsyncRequestWorkerFactor 64
<Proxy balancer://small>
  BalancerMember http://127.0.0.1:{s1} keepalive=On
  BalancerMember http://127.0.0.1:{s2} keepalive=On
</Proxy>
<Proxy balancer://big>
  BalancerMember http://127.0.0.1:{b1} keepalive=On
  BalancerMember http://127.0.0.1:{b2} keepalive=On
</Proxy>
ProxyPass /tc ajp://127.0.0.1:{AJP_PORT}/tc secret={AJP_SECRET} keepalive=On
ProxyPass /big balancer://big/big
ProxyPass / balancer://small/
""")
            return ["apache2", "-d", str(d), "-f", str(d / "httpd.conf"), "-DFOREGROUND"]
        if self.name == "floor":
            return [str(LOAD), "relay", "--route", f"{self.port}={s1},{s2}", "--route", f"{FLOOR_BIG_PORT}={b1},{b2}"]
        raise ValueError(self.name)

    def start(self):
        cmd = ["taskset", "-c", self.cpus] + self.config()
        env = dict(os.environ, APACHE_RUN_DIR=str(self.dir), APACHE_LOCK_DIR=str(self.dir))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr.log", "w"), env=env)
        if not wait_port(self.port):
            raise RuntimeError(f"{self.name} did not start: {(self.dir / 'stderr.log').read_text()}")
        time.sleep(0.3)

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc:
            for p in reversed(self.pids()):
                try:
                    os.kill(p, signal.SIGTERM)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def small_body(tmp):
    """(b)'s 1 KiB request body, written into the folder `tmp`; its path."""
    body = Path(tmp) / "1k.bin"
    body.write_bytes(b"b" * 1024)
    return body


def upload_body(tmp):
    """(m)'s 1 MiB request body, written into the folder `tmp`; its path."""
    body = Path(tmp) / "1m.bin"
    body.write_bytes(b"u" * (1 << 20))
    return body


def small_load(scenario, url, body, rate=None):
    """ringlb-load's arguments for the small-request scenarios against `url`: (a), (b) and (d);
    (f), (a) in open loop at `rate` requests per second; (h), Tomcat's servlet behind the proxy.
    `body`: (b)'s 1 KiB file. Also what scripts/bench/ops.py and count.py count."""
    if scenario == "a":
        return ["-c", "64", url]
    if scenario == "f":
        return ["-c", "64", "--rate", str(int(rate)), url]
    if scenario == "h":
        return ["-c", "64", url + "tc/hello"]
    if scenario == "b":
        return ["-c", "64", "-m", "POST", "--body-file", str(body), url]
    if scenario == "d":
        return ["-c", "64", "--connect-per-request", url]
    raise ValueError(f"not a small-request scenario: {scenario!r}")


def start_small_origins():
    """Starts the two small-response origins (`ringlb-load origin` on LOAD_CPU) and returns their
    processes once both accept connections; the caller stops them."""
    procs = [subprocess.Popen([str(LOAD), "origin", "--port", str(port), "--cpus", LOAD_CPU],
                              stderr=subprocess.DEVNULL) for port in SMALL]
    for port in SMALL:
        if not wait_port(port):
            for p in procs:
                p.kill()
                p.wait()
            raise RuntimeError(f"origin on {port} did not start")
    return procs


def small_runs(scenarios, proxies):
    """The (scenario, proxy) pairs of a run over small-request scenarios, in run order; the floor
    only where it relays (FLOOR_SCENARIOS)."""
    return [(s, n) for s in scenarios for n in proxies if n != "floor" or s in FLOOR_SCENARIOS]


def load_cmd(args, json_path):
    return ["taskset", "-c", LOAD_CPU, str(LOAD), "-q", "-t", "1", "-d", f"{DURATION}s", "--json", str(json_path)] + args


def load(args, json_path):
    subprocess.run(load_cmd(args, json_path), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return json.loads(Path(json_path).read_text())


def measure(proxy, load_args, tmp, scrape=None):
    """Runs one load against a started proxy; returns figures. The first WARMUP_S seconds are
    neither counted by the load generator nor in the proxy's CPU: a run right after another
    proxy's met that one's teardown (an A/A run: the same binary, run right after nginx, had a 2-4 x
    worse (f) p99.9 than when it ran after itself), and a proxy's first second fills its pools.
    `scrape`: an admin path (`metrics`, `healthz`) fetched every SCRAPE_EVERY_S meanwhile."""
    pids = proxy.pids()
    json_path = Path(tmp) / "load.json"
    lag0 = loop_lag(proxy.name)
    gen = subprocess.Popen(load_cmd(["--warmup", f"{WARMUP_S}s"] + load_args, json_path),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # ringlb-load starts its clock 50 ms after it starts.
    time.sleep(0.05 + WARMUP_S)
    t0 = cpu_ticks(pids)
    scraper = start_scraper(scrape) if scrape else None
    try:
        err = gen.communicate()[1]
        if gen.returncode != 0:
            raise RuntimeError(f"ringlb-load {' '.join(load_args)}: {err}")
        r = json.loads(json_path.read_text())
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
        scraped = stop_scraper(scraper) if scraper else None
    t1 = cpu_ticks(pids)
    requests = max(r["requests"], 1)
    errors = sum(r["errors"].values())
    fig = {
        "rps": r["requests_per_second"],
        "p50": r["latency_us"]["p50"],
        "p99": r["latency_us"]["p99"],
        "p999": r["latency_us"]["p99.9"],
        "cpu_us": (t1 - t0) / CLK_TCK * 1e6 / requests,
        "rss_kib": rss_kib(pids),
        "errors": errors,
        "non2xx": requests - r["status"]["2xx"] if r["requests"] else 0,
    }
    if scraped:
        fig.update(scrapes=scraped[0], scrape_errors=scraped[1])
    lag1 = loop_lag(proxy.name)
    if lag0 is not None and lag1 is not None:
        ticks = max(lag1[2] - lag0[2], 1)
        fig.update(lag_mean_us=(lag1[1] - lag0[1]) * 1e6 / ticks, lag_over_5ms=lag1[0] - lag0[0])
    hs = r.get("handshakes", {"full": 0, "resumed": 0})
    handshakes = hs["full"] + hs["resumed"]
    if handshakes and "--connect-per-request" in load_args:  # (j): handshakes, the proxy's CPU per handshake
        fig.update(hs_per_s=r["handshakes_per_second"], resumed_share=r["resumed_share"],
                   cpu_us_hs=(t1 - t0) / CLK_TCK * 1e6 / handshakes)
    return fig


def loop_lag(name):
    """ringlb's `ringlb_worker_loop_lag_seconds`, summed over its workers: (ticks more than 5 ms
    late, the lag's sum in seconds, ticks), or None for a proxy without it (not ringlb, or a base
    binary older than the metric). Read before and after a run (outside its CPU window): the
    difference says whether the proxy's own event loop fell behind while it ran, which a tail in
    (f) alone cannot tell from the harness's or the host's."""
    port = ADMIN_PORTS.get(name)
    if port is None:
        return None
    import http.client
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (OSError, http.client.HTTPException):
        return None
    over, total, ticks, seen = 0, 0.0, 0, False
    for line in text.splitlines():
        m = re.match(r'ringlb_worker_loop_lag_seconds_(bucket|sum|count)\{worker="\d+"(?:,le="([^"]+)")?\} (\S+)',
                     line)
        if not m:
            continue
        seen = True
        kind, le, value = m.groups()
        if kind == "count":
            ticks += int(value)
            over += int(value)
        elif kind == "sum":
            total += float(value)
        elif le == "0.005":
            over -= int(value)
    # A proxy started a moment ago may have no tick published yet: zeros, not "no metric".
    return (over, total, ticks) if seen else None


def start_scraper(path):
    """(g)'s scraper: one curl process for the whole run, a GET of `path` every SCRAPE_EVERY_S
    (`--rate`, curl 7.84 or later), each answer's status on stderr. The admin listener answers one
    request per connection, so each fetch is a connection of its own, as a Prometheus scrape of
    ringlb is. Compiled and asleep between fetches, it takes less of the load generator's core
    than the Python client it replaced (CPU per fetch in performance.md)."""
    if not shutil.which("curl"):
        raise RuntimeError("(g) needs curl (scripts/bench-compare.sh installs it)")
    fetches = int((DURATION + 60) / SCRAPE_EVERY_S)
    per_hour = max(1, round(3600 / SCRAPE_EVERY_S))
    return subprocess.Popen(["taskset", "-c", SCRAPE_CPU, "curl", "--silent", "--rate", f"{per_hour}/h",
                             "--write-out", "%{stderr}%{http_code}\\n",
                             f"http://127.0.0.1:{ADMIN_PORT}/{path}?[1-{fetches}]"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop_scraper(scraper):
    """Stops the scraper; (fetches answered 200, fetches that were not). A scraper that ended
    before it was stopped (a curl without `--rate`, a bad option) fails the run: the figures
    would otherwise pass for a run with scraping."""
    if scraper.poll() is not None:
        raise RuntimeError(f"(g)'s scraper (curl) ended early with status {scraper.returncode}: "
                           f"{scraper.communicate()[1][-500:]}")
    scraper.send_signal(signal.SIGTERM)
    codes = scraper.communicate(timeout=10)[1].split()
    ok = sum(c == "200" for c in codes)
    return ok, len(codes) - ok


# (g)'s runs of one load: without a scraper, with the control scraper (`/healthz`: no board, no
# histogram; what any client on the load generator's core costs the harness) and with `/metrics`.
SCRAPE_RUNS = [("", None), ("_healthz", "healthz"), ("_scraped", "metrics")]


def scraped_runs(proxy, load_args, tmp, tag, rnd):
    """(g): the load once per SCRAPE_RUNS entry on the same proxy process, back to back, the order
    rotated by round; the figures of each, keyed `{tag}{suffix}_{figure}`, with the requests that
    failed and the fetches made."""
    fig = {}
    shift = rnd % len(SCRAPE_RUNS)
    for suffix, path in SCRAPE_RUNS[shift:] + SCRAPE_RUNS[:shift]:
        r = measure(proxy, load_args, tmp, scrape=path)
        key = f"{tag}{suffix}"
        fig.update({f"{key}_{k}": r[k] for k in ("rps", "cpu_us", "p99", "p999")})
        fig[f"{key}_errors"] = r["errors"] + r["non2xx"]
        if path:
            fig[f"{key}_scrapes"], fig[f"{key}_scrape_errors"] = r["scrapes"], r["scrape_errors"]
    return fig


def wrk_check(proxy, url):
    """A second client against the same listener: wrk (OpenSSL), one thread, 64 connections, for
    as long as ringlb-load ran; its req/s and the proxy's CPU per request meanwhile."""
    pids = proxy.pids()
    t0 = cpu_ticks(pids)
    w = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t", "1", "-c", "64", "-d", f"{DURATION}s", url],
                       capture_output=True, text=True).stdout
    t1 = cpu_ticks(pids)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", w, re.M)
    total = re.search(r"^\s*(\d+) requests in", w, re.M)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", w)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
    if not rps or not total:
        print(f"!!! wrk cross-check gave no figures: {w.strip()[-300:]}", flush=True)
        return {}
    return {"wrk_rps": float(rps.group(1)),
            "wrk_cpu_us": (t1 - t0) / CLK_TCK * 1e6 / max(int(total.group(1)), 1),
            "wrk_errors": (sum(int(x) for x in errors.groups()) if errors else 0)
            + (int(non2xx.group(1)) if non2xx else 0)}


def idle_connections(proxy):
    """Opens IDLE_CONNS keep-alive connections (one request each) and reports RSS per connection."""
    pids = proxy.pids()
    before = rss_kib(pids)
    script = f"""
import socket, sys, time
conns = []
req = b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
for i in range({IDLE_CONNS}):
    s = socket.create_connection(("127.0.0.1", {proxy.port}))
    s.sendall(req)
    conns.append(s)
ok = 0
for s in conns:
    s.settimeout(10)
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    ok += data.startswith(b"HTTP/1.1 200")
print(ok, flush=True)
sys.stdin.read()
"""
    holder = subprocess.Popen(["taskset", "-c", LOAD_CPU, sys.executable, "-c", script],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ok = int(holder.stdout.readline() or 0)
    time.sleep(1.0)
    after = rss_kib(proxy.pids())
    holder.stdin.close()
    holder.wait()
    return {"ok": ok, "rss_kib": after, "kib_per_conn": (after - before) / IDLE_CONNS}


def idle_tls_connections(proxy, pki):
    """(k): IDLE_TLS_CONNS TLS connections, each with a full handshake (TLS 1.3, the client's
    default group: X25519 with all three proxies) and one request answered, then left idle; RSS per
    connection as in (e). The holder (Python's ssl, OpenSSL) keeps HOLDER_THREADS handshakes in
    flight (more only contend for the GIL) so that 10,000 take seconds, not minutes; they also bound
    the requests in flight to the origins."""
    pids = proxy.pids()
    before = rss_kib(pids)
    script = f"""
import socket, ssl, sys, time
from concurrent.futures import ThreadPoolExecutor
ctx = ssl.create_default_context(cafile={str(pki / "ca.pem")!r})
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.set_alpn_protocols(["http/1.1"])
req = b"GET / HTTP/1.1\\r\\nHost: bench.test\\r\\n\\r\\n"
def one(_):
    try:
        raw = socket.create_connection(("127.0.0.1", {proxy.port}), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(req)
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return s, data.startswith(b"HTTP/1.1 200")
    except OSError as e:
        return e, False
start = time.monotonic()
with ThreadPoolExecutor({HOLDER_THREADS}) as pool:
    held = list(pool.map(one, range({IDLE_TLS_CONNS})))
fails = [h for h, ok in held if isinstance(h, Exception)]
if fails:
    print(f"{{len(fails)}} connections failed, first: {{fails[0]!r}}", file=sys.stderr, flush=True)
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print(sum(ok for _, ok in held), time.monotonic() - start, ru.ru_utime + ru.ru_stime, flush=True)
sys.stdin.read()
"""
    holder = subprocess.Popen(["taskset", "-c", LOAD_CPU, sys.executable, "-c", script],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = (holder.stdout.readline() or "0 0 0").split()
    ok, open_s, holder_cpu_s = int(line[0]), float(line[1]), float(line[2])
    time.sleep(1.0)
    after = rss_kib(proxy.pids())
    holder.stdin.close()
    holder.wait()
    return {"ok": ok, "open_s": open_s, "holder_cpu_s": holder_cpu_s, "rss_kib": after,
            "kib_per_conn": (after - before) / IDLE_TLS_CONNS}


SERVLET = """
import java.io.*;
import jakarta.servlet.http.*;
public class Hello extends HttpServlet {
  protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
    resp.setContentType("text/plain");
    resp.setContentLength(13);
    resp.getOutputStream().write("Hello, world\\n".getBytes());
  }
}
"""


def start_tomcat(tmp):
    """A Tomcat with an AJP connector (secret required) serving /tc/*, pinned to the load core."""
    if not Path(TOMCAT_HOME, "bin/catalina.sh").exists() or not shutil.which("javac"):
        print("!!! scenario (h) skipped: Tomcat 10 or javac missing", flush=True)
        return None
    base = Path(tmp) / "tomcat"
    for d in ["conf", "logs", "temp", "work", "webapps/ROOT/WEB-INF/classes"]:
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "conf/server.xml").write_text(f"""<Server port="-1"><Service name="Catalina">
<Connector port="{TOMCAT_HTTP}" address="127.0.0.1" protocol="HTTP/1.1"/>
<Connector port="{AJP_PORT}" address="127.0.0.1" protocol="AJP/1.3" secretRequired="true" secret="{AJP_SECRET}" maxThreads="200"/>
<Engine name="Catalina" defaultHost="localhost"><Host name="localhost" appBase="webapps" autoDeploy="false" unpackWARs="false"/></Engine>
</Service></Server>""")
    (base / "conf/web.xml").write_text('<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true"/>')
    (base / "webapps/ROOT/WEB-INF/web.xml").write_text(
        '<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">'
        '<servlet><servlet-name>h</servlet-name><servlet-class>Hello</servlet-class></servlet>'
        '<servlet-mapping><servlet-name>h</servlet-name><url-pattern>/tc/*</url-pattern></servlet-mapping></web-app>')
    (base / "Hello.java").write_text(SERVLET)
    subprocess.run(["javac", "-cp", f"{TOMCAT_HOME}/lib/servlet-api.jar", "-d",
                    str(base / "webapps/ROOT/WEB-INF/classes"), str(base / "Hello.java")], check=True)
    env = dict(os.environ, CATALINA_HOME=TOMCAT_HOME, CATALINA_BASE=str(base), JAVA_OPTS="-Xmx512m")
    proc = subprocess.Popen(["taskset", "-c", LOAD_CPU, f"{TOMCAT_HOME}/bin/catalina.sh", "run"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(AJP_PORT, 90) or not wait_port(TOMCAT_HTTP, 90):
        proc.kill()
        raise RuntimeError("Tomcat did not start")
    # Warm the JVM before measuring.
    subprocess.run([str(LOAD), "-q", "-t", "1", "-c", "16", "-d", "5s", f"http://127.0.0.1:{TOMCAT_HTTP}/tc/warm"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


# The ringlb binaries the slots run: copies made by `stage` at the start of a run.
STAGED = {}


def stage(binary, tmp, name):
    """A copy of `binary` in the run's folder with its page cache dropped, so that it is read back
    from disk at exec as an installed binary is, whichever way its file was written: the same
    binary ran with 1.1 MiB more RSS as a copy made by cp than as the linker's own file (the page
    cache's folios), and the two ringlb slots must not differ in that."""
    dst = Path(tmp) / "bin" / name
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(binary, dst)
    dst.chmod(0o755)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return dst


def run():
    tmp = tempfile.mkdtemp(prefix="ringlb-bench-")
    STAGED["ringlb"] = stage(RINGLB, tmp, "ringlb")
    if BASE_BIN:
        STAGED["ringlb-base"] = stage(BASE_BIN, tmp, "ringlb-base")
    origins = []
    tomcat = None
    try:
        if "h" in SCENARIOS:
            tomcat = start_tomcat(tmp)
        for port in SMALL:
            origins.append(subprocess.Popen([str(LOAD), "origin", "--port", str(port), "--cpus", LOAD_CPU],
                                            stderr=subprocess.DEVNULL))
        for port in BIG:
            origins.append(subprocess.Popen([str(LOAD), "origin", "--port", str(port), "--cpus", LOAD_CPU,
                                             "--body-bytes", str(1 << 20)], stderr=subprocess.DEVNULL))
        for port in SMALL + BIG:
            if not wait_port(port):
                raise RuntimeError(f"origin on {port} did not start")
        body = small_body(tmp)
        pki = make_pki(tmp) if any(s in TLS_SCENARIOS for s in SCENARIOS) else None
        results = {}  # (scenario, proxy) -> list of dicts
        nginx_a = []
        # wrk beside ringlb-load, against the same origin on the same core: is the load generator
        # the bottleneck?
        gen = {}
        if shutil.which("wrk"):
            for _ in range(ROUNDS):
                w = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t", "1", "-c", "64", "-d", f"{DURATION}s",
                                    f"http://127.0.0.1:{SMALL[0]}/"], capture_output=True, text=True).stdout
                rps = float([l for l in w.splitlines() if l.startswith("Requests/sec")][0].split()[1])
                gen.setdefault("wrk", []).append(rps)
                r = load(["-c", "64", f"http://127.0.0.1:{SMALL[0]}/"], Path(tmp) / "gen.json")
                gen.setdefault("ringlb-load", []).append(r["requests_per_second"])
        for rnd in range(ROUNDS):
            # The proxies' order rotates by round: the first run after a heavy scenario (the
            # 9,000 connections (e) tears down) pays for it, whichever proxy that is.
            shift = rnd % len(PROXIES)
            order = PROXIES[shift:] + PROXIES[:shift]
            for scenario in SCENARIOS:
                for name in order:
                    if scenario == "g" and name != "ringlb":
                        continue
                    if name == "floor" and scenario not in FLOOR_SCENARIOS:
                        continue
                    if scenario == "h" and (name not in ("ringlb", "ringlb-base", "apache") or tomcat is None):
                        continue
                    if scenario == "f" and not nginx_a and "nginx" in PROXIES:
                        continue
                    tls = scenario in TLS_SCENARIOS
                    if tls and name not in TLS_PORTS:
                        continue
                    proxy = Proxy(name, tmp, pki if tls else None)
                    proxy.start()
                    try:
                        url = f"{'https' if tls else 'http'}://127.0.0.1:{proxy.port}/"
                        targs = tls_client_args(pki) if tls else []
                        if scenario in ("a", "b", "d"):
                            fig = measure(proxy, small_load(scenario, url, body), tmp)
                            if scenario == "a" and name == "nginx":
                                nginx_a.append(fig["rps"])
                        elif scenario == "c":
                            big = f"http://127.0.0.1:{FLOOR_BIG_PORT}/" if name == "floor" else url
                            fig = measure(proxy, ["-c", "16", big + "big"], tmp)
                            fig["gbps"] = fig["rps"] * (1 << 20) / 1e9
                        elif scenario == "m":
                            fig = measure(proxy, ["-c", "16", "-m", "POST", "--body-file", str(upload_body(tmp)),
                                                  url + "up"], tmp)
                            fig["gbps"] = fig["rps"] * (1 << 20) / 1e9
                        elif scenario == "e":
                            fig = idle_connections(proxy)
                        elif scenario == "f":
                            rate = 0.5 * statistics.median(nginx_a)
                            fig = measure(proxy, small_load("f", url, body, rate), tmp)
                            fig["rate"] = int(rate)
                        elif scenario == "h":
                            fig = measure(proxy, small_load("h", url, body), tmp)
                        elif scenario == "g":
                            fig = scraped_runs(proxy, ["-c", "64", url], tmp, "a", rnd)
                            if nginx_a:
                                rate = str(int(0.5 * statistics.median(nginx_a)))
                                fig.update(scraped_runs(proxy, ["-c", "64", "--rate", rate, url], tmp, "f", rnd))
                        elif scenario == "i":
                            fig = measure(proxy, ["-c", "64", *targs, url], tmp)
                            if name == "ringlb" and shutil.which("wrk"):
                                fig.update(wrk_check(proxy, url))
                        elif scenario == "j":
                            full = measure(proxy, ["-c", "64", "--connect-per-request", *targs, url], tmp)
                            res = measure(proxy, ["-c", "64", "--connect-per-request", "--tls-resume", *targs, url],
                                          tmp)
                            fig = {"hs_per_s": full.get("hs_per_s", 0.0), "cpu_us_hs": full.get("cpu_us_hs"),
                                   "resumed_share": full.get("resumed_share", 0.0),
                                   "errors": full["errors"] + full["non2xx"],
                                   "r_hs_per_s": res.get("hs_per_s", 0.0), "r_cpu_us_hs": res.get("cpu_us_hs"),
                                   "r_resumed_share": res.get("resumed_share", 0.0),
                                   "r_errors": res["errors"] + res["non2xx"], "rss_kib": res["rss_kib"]}
                        elif scenario == "k":
                            fig = idle_tls_connections(proxy, pki)
                        elif scenario == "l":
                            fig = measure(proxy, ["-c", "16", *targs, url + "big"], tmp)
                            fig["gbps"] = fig["rps"] * (1 << 20) / 1e9
                        results.setdefault((scenario, name), []).append(fig)
                        print(f"round {rnd + 1} {scenario} {name}: {summary(fig)}", flush=True)
                    finally:
                        proxy.stop()
        return results, gen
    finally:
        if tomcat:
            tomcat.terminate()
            try:
                tomcat.wait(timeout=20)
            except subprocess.TimeoutExpired:
                tomcat.kill()
        for o in origins:
            o.kill()
            o.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def summary(fig):
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in fig.items())


def med(figs, key):
    vals = [f[key] for f in figs if key in f]
    return statistics.median(vals) if vals else None


def fmt_us(v):
    if v is None:
        return "–"
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def write_report(results, gen, machine):
    lines = ["# Benchmarks", "",
             "Produced by `scripts/bench-compare.sh` (this file is rewritten by each run).", "",
             f"- Machine: {machine}",
             f"- Each proxy pinned to CPU {PROXY_CPU} with one worker (ringlb `workers = 1`, nginx "
             "`worker_processes 1`, HAProxy `nbthread 1`, Apache event MPM with one child process); the "
             f"load generator (`ringlb-load`, one thread) and the origins (`ringlb-load origin`) on CPU {LOAD_CPU}.",
             "- Two origins behind every proxy, keep-alive to them on (nginx `keepalive 512`, HAProxy "
             "`http-reuse always`, Apache `keepalive=On`), access logs off.",
             f"- {ROUNDS} rounds, scenarios and proxies interleaved (the proxies' order rotating by round), "
             f"{DURATION} s per run after {WARMUP_S} s that are not counted (the run right after another "
             "proxy's otherwise meets that one's teardown); figures are medians "
             "over the rounds. CPU µs/request = user+system CPU of all the proxy's processes over the counted "
             "part of the run (from /proc/PID/stat) divided by the requests answered in it.",
             "- The floor (`ringlb-load relay`, in (a), (b), (c), (f) and (m)): not a proxy but the least any proxy must "
             "do here, a byte relay with one member connection per client connection and one receive and one "
             "send per message each way, no HTTP parsing, on the same core; what it costs is the kernel's TCP "
             "work on this machine. \"CPU × floor\" is each proxy's CPU per request over the floor's.",
             "- Absolute numbers drift on a shared machine; ratios measured in the same run are the figures "
             "to read. Where ringlb's time goes, and why it still loses where it does: "
             "[performance.md](performance.md).", ""]
    if gen:
        w, r = statistics.median(gen["wrk"]), statistics.median(gen["ringlb-load"])
        lines += ["## Load generator against wrk", "",
                  f"Same origin, same core, 64 connections: wrk {w:,.0f} req/s, ringlb-load {r:,.0f} req/s "
                  f"(ratio {r / w:.2f}).", ""]
    nginx = {s: results.get((s, "nginx")) for s in SCENARIOS}
    tls_said = False
    for s in SCENARIOS:
        rows = [(p, results.get((s, p))) for p in PROXIES if results.get((s, p))]
        if not rows:
            continue
        if s in TLS_SCENARIOS and not tls_said:
            lines += tls_preface(results)
            tls_said = True
        lines += [f"## ({s}) {SCENARIO_TEXT[s]}", ""]
        if s in ("e", "k"):
            lines += ["| proxy | connections answered | RSS with them | KiB per idle connection | × nginx |",
                      "|---|---|---|---|---|"]
            base = med(nginx[s], "kib_per_conn") if nginx[s] else None
            for p, figs in rows:
                k = med(figs, "kib_per_conn")
                ratio = f"{k / base:.2f}" if base else "–"
                lines.append(f"| {p} | {med(figs, 'ok'):.0f} | {med(figs, 'rss_kib') / 1024:.1f} MiB | {k:.2f} | {ratio} |")
            if s == "k":
                opened = ", ".join(f"{p} {med(figs, 'open_s'):.1f} s (holder CPU {med(figs, 'holder_cpu_s'):.1f} s)"
                                   for p, figs in rows)
                lines += ["", "Each connection: a full TLS 1.3 handshake (Python's `ssl`, OpenSSL; X25519 with all "
                          f"three) and one request answered, then idle; {HOLDER_THREADS} opened at a time. RSS of all "
                          "the proxy's processes before and 1 s after the last was answered, as in (e). Time to open "
                          f"them all: {opened}."]
        elif s == "j":
            lines += ["| proxy | full handshakes/s | CPU µs per full handshake | CPU × nginx | resumed handshakes/s "
                      "| resumed share | CPU µs per resumed handshake | CPU × nginx | errors |",
                      "|---|---|---|---|---|---|---|---|---|"]
            base = nginx[s]
            base_full = med(base, "cpu_us_hs") if base else None
            base_res = med(base, "r_cpu_us_hs") if base else None
            for p, figs in rows:
                full, res = med(figs, "cpu_us_hs"), med(figs, "r_cpu_us_hs")
                lines.append(f"| {p} | {med(figs, 'hs_per_s'):,.0f} | {fmt_num(full)} | {fmt_ratio(full, base_full)} | "
                             f"{med(figs, 'r_hs_per_s'):,.0f} | {med(figs, 'r_resumed_share') * 100:.0f} % | "
                             f"{fmt_num(res)} | {fmt_ratio(res, base_res)} | "
                             f"{sum(f['errors'] + f['r_errors'] for f in figs)} |")
            lines += ["", "`--connect-per-request`: one request per connection (`Connection: close`), TLS 1.3, "
                      "X25519. Full: no session resumed; resumed: `--tls-resume` (TLS 1.3 tickets, PSK with an "
                      "X25519 exchange, no certificate signature; each client connection's first handshake is "
                      "full, hence a share below 100 %). CPU per handshake: all the proxy's CPU over the "
                      "run divided by the handshakes, so it includes the TCP accept and close and the one request "
                      "proxied (compare with (d), the same churn in plain HTTP)."]
        elif s == "g":
            lines += scraped_table(rows[0][1])
        else:
            big = s in ("c", "l", "m")
            extra = " GB/s |" if big else ""
            ref = "Apache" if s == "h" else "nginx"
            floor = results.get((s, "floor"))
            floor_cpu = med(floor, "cpu_us") if floor else None
            fcol = " CPU × floor |" if floor_cpu else ""
            lines += [f"| proxy | req/s | p50 | p99 | p99.9 | CPU µs/req | RSS | req/s × {ref} | CPU × {ref} | errors |"
                      + extra + fcol,
                      "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if big else "") + ("---|" if fcol else "")]
            ref = "apache" if s == "h" else "nginx"
            base = results.get((s, ref))
            base_rps = med(base, "rps") if base else None
            base_cpu = med(base, "cpu_us") if base else None
            for p, figs in rows:
                rps, cpu = med(figs, "rps"), med(figs, "cpu_us")
                row = (f"| {p} | {rps:,.0f} | {fmt_us(med(figs, 'p50'))} | {fmt_us(med(figs, 'p99'))} | "
                       f"{fmt_us(med(figs, 'p999'))} | {cpu:.1f} | {med(figs, 'rss_kib') / 1024:.1f} MiB | "
                       f"{rps / base_rps:.2f} | {cpu / base_cpu:.2f} | {sum(f['errors'] + f['non2xx'] for f in figs)} |"
                       if base_rps and base_cpu else
                       f"| {p} | {rps:,.0f} | {fmt_us(med(figs, 'p50'))} | {fmt_us(med(figs, 'p99'))} | "
                       f"{fmt_us(med(figs, 'p999'))} | {cpu:.1f} | {med(figs, 'rss_kib') / 1024:.1f} MiB | – | – | "
                       f"{sum(f['errors'] + f['non2xx'] for f in figs)} |")
                if big:
                    row += f" {med(figs, 'gbps'):.2f} |"
                if floor_cpu:
                    row += f" {cpu / floor_cpu:.2f} |"
                lines.append(row)
            if s == "i":
                lines += wrk_cross_check(results)
            if s == "f":
                lines.append("")
                lines.append(f"Rate: {med(rows[0][1], 'rate'):,.0f} req/s (half of nginx's median in (a)); latency "
                             "measured from each request's intended send time.")
        lines.append("")
    lines += ["![CPU per request relative to nginx](benchmarks.svg)", "",
              "## Reproduce", "", "```sh", "bash scripts/bench-compare.sh            # scenarios a-h, 3 rounds",
              "BENCH_SCENARIOS=a,f BENCH_ROUNDS=5 bash scripts/bench-compare.sh",
              "BENCH_SCENARIOS=i,j,k,l bash scripts/bench-compare.sh   # the HTTPS scenarios", "```", ""]
    return "\n".join(lines)


def scraped_table(figs):
    """(g)'s table: for (a) and (f), the medians without a scraper, with the `/healthz` scraper
    (the harness's share) and with `/metrics` scraped, each with its spread over the rounds, and
    the change of the medians from each of the first two to the last."""
    def total(what):
        return sum(f.get(f"{t}{s}_{what}", 0) for f in figs for t in ("a", "f") for s, _ in SCRAPE_RUNS)
    errors = sum(v for f in figs for k, v in f.items() if k.endswith("_errors") and "scrape" not in k)
    lines = [f"Each load three times on the same proxy process, back to back, the order rotated by round: "
             f"without a scraper, with `/healthz` fetched every {SCRAPE_EVERY_S * 1000:.0f} ms (the control: "
             "no board, no histogram, so what a client beside the load generator costs the harness) and with "
             f"`/metrics` fetched as often. The scraper is one curl process on CPU {SCRAPE_CPU}, a new "
             "connection per fetch (the admin listener answers one request per connection). Change = median of one / median of the other − 1; the spreads are each "
             f"figure's lowest and highest round. Fetches answered: {total('scrapes'):,} "
             f"({total('scrape_errors')} failed); requests failed in these runs: {errors}.", "",
             "| figure | no scraper | `/healthz` scraped | `/metrics` scraped | `/metrics` vs none | "
             "`/metrics` vs `/healthz` |", "|---|---|---|---|---|---|"]
    names = [("rps", "req/s", "{:,.0f}"), ("cpu_us", "CPU µs/req", "{:.1f}"), ("p99", "p99", None),
             ("p999", "p99.9", None)]
    for tag, title in (("a", "(a)"), ("f", "(f)")):
        for key, label, form in names:
            if tag == "a" and key in ("p99", "p999"):
                continue
            runs = [[f[f"{tag}{s}_{key}"] for f in figs if f"{tag}{s}_{key}" in f] for s, _ in SCRAPE_RUNS]
            if not all(runs):
                continue
            show = (lambda v: form.format(v)) if form else fmt_us
            cell = lambda vs: f"{show(statistics.median(vs))} ({show(min(vs))} – {show(max(vs))})"
            change = lambda a, b: f"{(statistics.median(a) / statistics.median(b) - 1) * 100:+.1f} %"
            none, healthz, metrics = runs
            lines.append(f"| {title} {label} | {cell(none)} | {cell(healthz)} | {cell(metrics)} | "
                         f"{change(metrics, none)} | {change(metrics, healthz)} |")
    return lines


def fmt_num(v):
    return "–" if v is None else f"{v:.1f}"


def fmt_ratio(v, base):
    return f"{v / base:.2f}" if v is not None and base else "–"


def tool_versions():
    """(nginx, HAProxy, OpenSSL, rustls) versions, for the TLS section."""
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return ((r.stdout + r.stderr).strip().splitlines() or ["?"])[0]
        except OSError:
            return "?"
    nginx = first_line(["nginx", "-v"]).rsplit("/", 1)[-1]
    haproxy = (first_line(["haproxy", "-v"]).split() + ["?"] * 3)[2]
    openssl = (first_line(["openssl", "version"]).split() + ["?"] * 2)[1]
    lock = (ROOT / "Cargo.lock").read_text() if (ROOT / "Cargo.lock").exists() else ""
    m = re.search(r'name = "rustls"\nversion = "([^"]+)"', lock)
    return nginx, haproxy, openssl, m.group(1) if m else "?"


def tls_preface(results):
    """The HTTPS part's setup and its summary table (each proxy's figures in (i)-(l), × nginx)."""
    nginx, haproxy, openssl, rustls = tool_versions()
    lines = ["## HTTPS: ringlb (rustls) against nginx and HAProxy (OpenSSL)", "",
             f"Scenarios (i)-(l): ringlb (rustls {rustls}, aws-lc-rs), nginx {nginx} and HAProxy {haproxy} "
             f"(both on Debian's OpenSSL {openssl}) terminate TLS, one core and one worker each as above, in front of "
             "the same plain-HTTP origins; Apache is not in them.",
             "",
             "- Certificate: the same for all three, an ECDSA P-256 leaf for `bench.test` and 127.0.0.1 signed by "
             "a CA made for the run with `openssl` (the leaf alone is served); the clients verify it against that "
             "CA (ringlb-load `--cacert`).",
             "- Client: `ringlb-load --tls-version 1.3 --tls-kx x25519`: TLS 1.3 and the X25519 key exchange only. "
             "Debian's OpenSSL 3.0 has no ML-KEM, and rustls (ringlb) would otherwise choose the costlier "
             "X25519MLKEM768 hybrid with our client; with X25519 only, all three make the same key exchange. "
             "Cipher suite TLS_AES_256_GCM_SHA384 (the client's first choice, and HAProxy's).",
             "- Resumption: TLS 1.3 stateless session tickets in all three: ringlb's rustls ticketer; nginx "
             "`ssl_session_tickets on; ssl_session_cache off;` (tickets only, no server-side session cache); "
             "HAProxy's defaults (tickets on).",
             f"- HAProxy: `maxconn {max(9900, IDLE_TLS_CONNS + 100)}` with `no strict-limits` in these "
             "scenarios, for the idle connections of (k) under this machine's 20,000-descriptor cap.",
             ""]
    tls = [s for s in SCENARIOS if s in TLS_SCENARIOS]
    head, cols = ["proxy"], []
    for s in tls:
        if s == "i":
            cols += [("(i) req/s", "i", "rps", "{:,.0f}", False), ("(i) CPU µs/req", "i", "cpu_us", "{:.1f}", True)]
        elif s == "j":
            cols += [("(j) full handshakes/s", "j", "hs_per_s", "{:,.0f}", False),
                     ("(j) CPU µs/full handshake", "j", "cpu_us_hs", "{:.1f}", True),
                     ("(j) resumed/s", "j", "r_hs_per_s", "{:,.0f}", False),
                     ("(j) CPU µs/resumed", "j", "r_cpu_us_hs", "{:.1f}", True)]
        elif s == "k":
            cols += [("(k) KiB/idle connection", "k", "kib_per_conn", "{:.2f}", True)]
        elif s == "l":
            cols += [("(l) GB/s", "l", "gbps", "{:.2f}", False), ("(l) CPU µs/MiB", "l", "cpu_us", "{:.1f}", True)]
    head += [c[0] for c in cols]
    lines += ["Summary, medians (× nginx in brackets; for the CPU and memory columns lower is better):", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in PROXIES:
        if not any(results.get((s, p)) for s in tls):
            continue
        cells = [p]
        for _, s, key, form, _ in cols:
            figs, base = results.get((s, p)), results.get((s, "nginx"))
            v = med(figs, key) if figs else None
            b = med(base, key) if base else None
            cells.append("–" if v is None else form.format(v) + (f" ({v / b:.2f})" if b else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def wrk_cross_check(results):
    """(i)'s line comparing ringlb-load with wrk against ringlb's TLS listener."""
    figs = results.get(("i", "ringlb"))
    if not figs or med(figs, "wrk_rps") is None:
        return []
    w, r = med(figs, "wrk_rps"), med(figs, "rps")
    wc, rc = med(figs, "wrk_cpu_us"), med(figs, "cpu_us")
    return ["", f"Cross-check with a second client against ringlb's TLS listener, right after ringlb-load in each "
            f"round: wrk (OpenSSL, `-t 1 -c 64`, TLS 1.3 and X25519 by OpenSSL's defaults) {w:,.0f} req/s at "
            f"{wc:.1f} CPU µs/req, ringlb-load {r:,.0f} req/s at {rc:.1f} CPU µs/req (ringlb-load / wrk "
            f"{r / w:.2f}); wrk errors {sum(f.get('wrk_errors', 0) for f in figs)}."]


def write_chart(results):
    """A bar chart of each proxy's CPU per request relative to nginx's, per scenario."""
    scen = [s for s in SCENARIOS if s in "abcdf" and (s, "nginx") in results]
    colors = {"ringlb": "#1f77b4", "nginx": "#2ca02c", "haproxy": "#ff7f0e", "apache": "#d62728", "floor": "#7f7f7f"}
    vals = {}
    for s in scen:
        base = med(results[(s, "nginx")], "cpu_us")
        for p in PROXIES:
            if (s, p) in results and base:
                vals[(s, p)] = med(results[(s, p)], "cpu_us") / base
    top = 4.5
    w, h, left, bottom = 120 * max(len(scen), 1) + 120, 380, 60, 40
    bar = 22
    plot_h = h - bottom - 50
    y = lambda v: h - bottom - plot_h * min(v, top) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="15">proxy CPU per request, relative to nginx (lower is better)</text>',
           f'<line x1="{left - 5}" y1="{y(1):.1f}" x2="{w - 10}" y2="{y(1):.1f}" stroke="#999" stroke-dasharray="4 3"/>',
           f'<text x="{left - 8}" y="{y(1) + 4:.1f}" text-anchor="end">1.0</text>']
    for i, s in enumerate(scen):
        x0 = left + i * 120
        for j, p in enumerate([p for p in PROXIES if (s, p) in vals]):
            v = vals[(s, p)]
            x = x0 + j * (bar + 2)
            out.append(f'<rect x="{x}" y="{y(v):.1f}" width="{bar}" height="{h - bottom - y(v):.1f}" fill="{colors.get(p, "#888")}"/>')
            out.append(f'<text x="{x + bar / 2}" y="{y(v) - 3:.1f}" text-anchor="middle" font-size="9">{v:.2f}</text>')
        out.append(f'<text x="{x0 + 45}" y="{h - bottom + 16}" text-anchor="middle">({s})</text>')
    for j, p in enumerate(PROXIES):
        out.append(f'<rect x="{left + j * 100}" y="{h - 14}" width="10" height="10" fill="{colors.get(p, "#888")}"/>')
        out.append(f'<text x="{left + j * 100 + 14}" y="{h - 5}">{p}</text>')
    out.append(f'<line x1="{left - 5}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="black"/>')
    out.append("</svg>")
    return "\n".join(out)


def main():
    for tool in (RINGLB, LOAD):
        if not tool.exists():
            sys.exit(f"{tool} is missing: run scripts/bench-compare.sh (it builds it)")
    ours = [*SMALL, *BIG, *PORTS.values(), FLOOR_BIG_PORT, *ADMIN_PORTS.values(), *TLS_PORTS.values()]
    busy = ports_in_use(ours)
    if busy:
        sys.exit(f"ports {busy} on 127.0.0.1 are in use by processes this run did not start: stop them first")
    machine = f"{os.cpu_count()} CPUs, {subprocess.run(['uname', '-r'], capture_output=True, text=True).stdout.strip()}, " \
              f"{Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip()}"
    results, gen = run()
    OUT.mkdir(parents=True, exist_ok=True)
    report = OUT / "benchmarks.md"
    # Sections other scripts measured (failover, balancing methods) follow KEEP and are carried over.
    kept = report.read_text().partition(KEEP)[2] if report.exists() else ""
    report.write_text(write_report(results, gen, machine) + (KEEP + kept if kept else ""))
    (OUT / "benchmarks.svg").write_text(write_chart(results))
    (OUT / "benchmarks.json").write_text(json.dumps({f"{s}/{p}": v for (s, p), v in results.items()}, indent=1))
    print(f"wrote {OUT / 'benchmarks.md'}")


if __name__ == "__main__":
    # A stop (SIGTERM, or SIGINT where a background job ignores it) unwinds like an error, so the
    # `finally` blocks stop the origins and proxies this run started instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
