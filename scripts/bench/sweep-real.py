#!/usr/bin/env python3
"""The real capacity sweep of docs/capacity.md: ringlb (one worker, CPU 0) in front of three
members — a fast `ringlb-load origin`, a second origin limited to SWEEP_SLOW_CAP requests/s
(`--capacity`), and a real Tomcat 10 over AJP13 — driven by `ringlb-load sweep --admin` from CPU 1.

Writes docs/capacity-sweep.svg and docs/capacity-sweep.json (SWEEP_OUT to write elsewhere) and
prints the sweep's table and summary. SWEEP_SLOS ("p99=20ms"; comma-separated) and SWEEP_SLOW_CAP
(1500) change the objective and the slow member. Needs a release build (cargo build --release --workspace),
Tomcat 10 and javac (scripts/test.sh installs them). Stops only the processes it started.

usage: python3 scripts/bench/sweep-real.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (its Tomcat set-up, ports and paths)

OUT = Path(os.environ.get("SWEEP_OUT", compare.ROOT / "docs"))
SLOW_CAP = os.environ.get("SWEEP_SLOW_CAP", "1500")
SLOS = os.environ.get("SWEEP_SLOS", "p99=20ms").split(",")
FAST, SLOW, LISTEN, ADMIN = 19301, 19302, 19380, 19390


def main():
    if not compare.RINGLB.exists() or not compare.LOAD.exists():
        sys.exit("build first: cargo build --release --workspace")
    tmp = tempfile.mkdtemp(prefix="ringlb-sweep-", dir="/work/bench" if Path("/work/bench").is_dir() else None)
    procs = []
    try:
        cpu = ["--cpus", compare.LOAD_CPU]
        procs.append(subprocess.Popen([str(compare.LOAD), "origin", "--port", str(FAST)] + cpu,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([str(compare.LOAD), "origin", "--port", str(SLOW), "--capacity", SLOW_CAP]
                                      + cpu, stderr=subprocess.DEVNULL))
        tomcat = compare.start_tomcat(tmp)
        if tomcat is None:
            sys.exit("Tomcat 10 and javac are needed (scripts/test.sh installs them)")
        procs.append(tomcat)
        config = Path(tmp) / "ringlb.toml"
        config.write_text(f"""[server]
workers = 1
[admin]
address = "127.0.0.1:{ADMIN}"
[[listen]]
address = "127.0.0.1:{LISTEN}"
[[balancer]]
name = "app"
members = [{{ url = "http://127.0.0.1:{FAST}" }}, {{ url = "http://127.0.0.1:{SLOW}" }},
           {{ url = "ajp://127.0.0.1:{compare.AJP_PORT}", secret = "{compare.AJP_SECRET}" }}]
[[route]]
path = "/"
balancer = "app"
""")
        procs.append(subprocess.Popen(["taskset", "-c", compare.PROXY_CPU, str(compare.RINGLB), "run",
                                       "--config", str(config)],
                                      stderr=subprocess.DEVNULL))
        if not compare.wait_port(ADMIN, 10):
            sys.exit("ringlb did not start")
        OUT.mkdir(parents=True, exist_ok=True)
        slos = [a for s in SLOS for a in ("--slo", s)]
        subprocess.run([str(compare.LOAD), "sweep"] + slos + [
                        "--from", "500", "--step", "x1.4", "--max", "50000", "-d", "8s", "--warmup", "3s",
                        "-c", "64", "-t", "1", "--cpus", compare.LOAD_CPU,
                        "--admin", f"http://127.0.0.1:{ADMIN}",
                        "--json", str(OUT / "capacity-sweep.json"), "--svg", str(OUT / "capacity-sweep.svg"),
                        f"http://127.0.0.1:{LISTEN}/tc/sweep"], check=True)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
