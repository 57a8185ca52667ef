#!/usr/bin/env bash
# Failover side by side: ringlb, nginx and HAProxy with a member killed (SIGKILL) or hung
# (SIGSTOP/SIGCONT) under load. Installs nginx and HAProxy from Debian where missing, builds ringlb
# and ringlb-load in release mode, then runs scripts/bench/failover.py (read its header for what
# is measured and the knobs: FAILOVER_RUNS, FAILOVER_TESTS, FAILOVER_PROXIES, BENCH_OUT). Not a
# test: it measures, and prints a Markdown summary.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in nginx haproxy; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  # The script runs its own proxies: Debian is told not to start the services it installs.
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
exec python3 scripts/bench/failover.py "$@"
