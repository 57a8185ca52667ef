#!/usr/bin/env bash
# Builds ringlb's cargo-fuzz targets (fuzz/) and runs each for SECONDS (default 60), starting from
# the seed corpus in fuzz/corpus/<target>, copied to a scratch directory so that the committed seeds
# never grow, with the dictionary fuzz/dict/<target>.dict. Prints one line per target: executions
# and whether it found a crash (the input is kept under fuzz/artifacts/<target>/, with the run's
# log as fuzz.log). Exits non-zero when any target crashed.
#
#   bash scripts/fuzz.sh [SECONDS]            # all targets
#   FUZZ_TARGETS="chunked" bash scripts/fuzz.sh 300
#
# Needs the nightly toolchain (installed with rustup when missing) and cargo-fuzz (installed with
# `cargo install --locked` when missing). Reproduce a crash with
#   cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
case "$seconds" in
'' | *[!0-9]*)
  echo "usage: $0 [SECONDS]" >&2
  exit 2
  ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "installing the nightly toolchain (cargo fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# -a: debug assertions and overflow checks on, in an optimised build.
cargo +nightly fuzz build -a
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

crashed=0
summary=()
for t in $targets; do
  mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
  if [ -d "fuzz/corpus/$t" ]; then
    cp -r "fuzz/corpus/$t/." "$scratch/$t/"
  fi
  dict=()
  if [ -f "fuzz/dict/$t.dict" ]; then
    dict=(-dict="fuzz/dict/$t.dict")
  fi
  log="$scratch/$t.log"
  echo "== $t: ${seconds}s"
  rc=0
  cargo +nightly fuzz run -a "$t" "$scratch/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "${dict[@]}" \
    >"$log" 2>&1 || rc=$?
  cp "$log" "fuzz/artifacts/$t/fuzz.log"
  runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  if [ -z "$runs" ]; then
    runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
  fi
  if [ -z "$runs" ]; then
    runs="$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  fi
  artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
  if [ -n "$artifact" ] || [ "$rc" -ne 0 ]; then
    crashed=1
    # The assertion that failed (or libFuzzer's own report), for the summary.
    why="$(grep -m 1 -A 1 "panicked at" "$log" | tail -n 1 || true)"
    [ -n "$why" ] || why="$(grep -m 1 "ERROR: libFuzzer" "$log" || true)"
    summary+=("$(printf '%-14s %12s runs  CRASH  %s  (%s)' "$t" "${runs:-?}" "${artifact:-exit $rc, see log}" "$why")")
    echo "--- $t: $(grep -c . "$log") log lines in fuzz/artifacts/$t/fuzz.log; the failure:"
    grep -m 1 -A 12 "panicked at" "$log" || tail -n 20 "$log"
  else
    summary+=("$(printf '%-14s %12s runs  ok' "$t" "${runs:-?}")")
  fi
done

echo
echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$crashed"
