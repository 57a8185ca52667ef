#!/usr/bin/env bash
# How round_robin, least_busy and p2c spread load over a fast member and one three times slower:
# builds ringlb and ringlb-load in release mode and runs scripts/bench/methods.py (read its header;
# knobs METHODS_SECONDS, METHODS_ROUNDS, METHODS_CONNECTIONS). Not a test: it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
exec python3 scripts/bench/methods.py "$@"
