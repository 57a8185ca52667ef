#!/usr/bin/env bash
# Side-by-side benchmark of ringlb, nginx, HAProxy and Apache httpd (mod_proxy_balancer).
# Installs the peers from Debian where missing, builds ringlb and ringlb-load in release mode, then
# runs scripts/bench/compare.py, which writes docs/benchmarks.md, docs/benchmarks.svg and
# docs/benchmarks.json. Knobs (environment): BENCH_ROUNDS, BENCH_DURATION, BENCH_SCENARIOS,
# BENCH_PROXIES, BENCH_PROXY_CPU, BENCH_LOAD_CPU, BENCH_OUT. Not a test: it measures.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bench/install-peers.sh nginx:nginx haproxy:haproxy apache2:apache2 wrk:wrk curl:curl
cargo build --release --workspace
# Scenario (e) holds 10,000 connections open: the proxies and the holder need the descriptors.
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec python3 scripts/bench/compare.py "$@"
