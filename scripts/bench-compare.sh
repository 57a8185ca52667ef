#!/usr/bin/env bash
# Side-by-side benchmark of ringlb, nginx, HAProxy and Apache httpd (mod_proxy_balancer), with a
# "floor" beside them (ringlb-load relay: the least any proxy must do here, no HTTP parsing).
# It stops only the processes it started, by pid; it never touches a service already running.
# Installs the peers from Debian where missing, builds ringlb and ringlb-load in release mode, then
# runs scripts/bench/compare.py, which writes docs/benchmarks.md, docs/benchmarks.svg and
# docs/benchmarks.json. Knobs (environment): BENCH_ROUNDS, BENCH_DURATION, BENCH_WARMUP (seconds
# before each run that are not counted, 2), BENCH_SCENARIOS, BENCH_PROXIES, BENCH_SCRAPE_EVERY,
# BENCH_PROXY_CPU, BENCH_LOAD_CPU, BENCH_OUT (another folder than docs/ for the three files),
# BENCH_IDLE_CONNS, BENCH_IDLE_TLS_CONNS, CARGO_TARGET_DIR (built and read there).
# Scenarios: a-h (plain HTTP) run by default; the HTTPS ones, i-l (ringlb, nginx and HAProxy with
# TLS listeners: keep-alive, handshakes full and resumed, idle TLS connections, 1 MiB responses),
# run only when asked: BENCH_SCENARIOS=i,j,k,l (or mixed, e.g. a,i), as does (m), 1 MiB uploads. Not a
# test: it measures.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bench/install-peers.sh nginx:nginx haproxy:haproxy apache2:apache2 wrk:wrk curl:curl openssl:openssl
cargo build --release --workspace
# Scenarios (e) and (k) hold 9,000 and 10,000 connections open: the proxies and the holder need the descriptors.
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec python3 scripts/bench/compare.py "$@"
