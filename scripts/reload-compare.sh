#!/usr/bin/env bash
# Configuration reloads and binary upgrades under load (issue 12), side by side: ringlb, nginx and
# HAProxy, each with one worker in front of the same origins, reloaded every second while clients
# run (ringlb-load and Python; keep-alive, and a new connection per request);
# "ringlb-upgrade" does three binary upgrades (`ringlb run --upgrade`) instead. Installs nginx and
# HAProxy from Debian where missing; builds ringlb and ringlb-load in release mode unless BIN_DIR
# names a folder that has them already (e.g. copies made before a rebuild). Arguments go to
# scripts/bench/reload-compare.py: --duration S (20), --systems ringlb,nginx,haproxy,ringlb-upgrade,
# --out DIR (default: a new temp dir), --connections N, --churn-connections N, --py-threads N,
# --base-port P, --ringlb-reload api|hup.
# Not a test: it measures, and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bench/install-peers.sh nginx:nginx haproxy:haproxy
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release --workspace
fi
ulimit -n 65536 2>/dev/null || true
exec python3 scripts/bench/reload-compare.py "$@"
