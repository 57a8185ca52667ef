#!/usr/bin/env bash
# Failover side by side: ringlb, nginx and HAProxy with a member killed (SIGKILL) or hung
# (SIGSTOP/SIGCONT) under load. Installs nginx and HAProxy from Debian where missing, builds ringlb
# and ringlb-load in release mode, then runs scripts/bench/failover.py (read its header for what
# is measured and the knobs: FAILOVER_RUNS, FAILOVER_TESTS, FAILOVER_PROXIES, BENCH_OUT). Not a
# test: it measures, and prints a Markdown summary.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bench/install-peers.sh nginx:nginx haproxy:haproxy
cargo build --release --workspace
exec python3 scripts/bench/failover.py "$@"
