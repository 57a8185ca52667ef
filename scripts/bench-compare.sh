#!/usr/bin/env bash
# Side-by-side benchmark of ringlb, nginx, HAProxy and Apache httpd (mod_proxy_balancer).
# Installs the peers from Debian where missing, builds ringlb and ringlb-load in release mode, then
# runs scripts/bench/compare.py, which writes docs/benchmarks.md, docs/benchmarks.svg and
# docs/benchmarks.json. Knobs (environment): BENCH_ROUNDS, BENCH_DURATION, BENCH_SCENARIOS,
# BENCH_PROXIES, BENCH_PROXY_CPU, BENCH_LOAD_CPU, BENCH_OUT. Not a test: it measures.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in nginx:nginx haproxy:haproxy apache2:apache2 wrk:wrk curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  # Debian starts the services it installs where it can; the benchmark runs its own, so the
  # install is told not to start any (policy-rc.d, removed again after the install).
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  [ -n "$made_policy" ] && rm -f "$policy"
fi
cargo build --release --workspace
# Scenario (e) holds 10,000 connections open: the proxies and the holder need the descriptors.
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec python3 scripts/bench/compare.py "$@"
