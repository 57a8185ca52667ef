#!/usr/bin/env bash
# Builds ringlb with profile-guided optimisation (PGO) into target/pgo/ringlb and prints that path
# as its last line (docs/packaging.md; `RINGLB_PGO=1 bash scripts/deb.sh` packages it).
#
# 1. an instrumented ringlb (`-Cprofile-generate`) in target/pgo/gen;
# 2. training: scripts/bench/compare.py runs that binary alone through scenarios a-e, h (Tomcat
#    over AJP13) and i-l (HTTPS), briefly; every run must be answered without an error, or the
#    profile would teach the compiler a path ringlb does not take in service;
# 3. the profiles merged by the toolchain's own llvm-profdata (`rustup component add
#    llvm-tools`: its format must be the compiler's LLVM's, so Debian's llvm does not do);
# 4. ringlb built again with `-Cprofile-use` in target/pgo/use.
#
# Both builds name the host target explicitly, so build scripts and proc macros are not
# instrumented and target/release is left as it is; the second starts from an empty folder, so
# no crate keeps an earlier run's profile (the instrumented one's folder is reused: it has none). The compiler flags are set here (CARGO_ENCODED_RUSTFLAGS): a
# RUSTFLAGS of the caller's is not applied. Needs what the training needs: the release workspace
# (built first), openssl, a JDK and Tomcat 10 (scripts/test.sh installs them; Debian's
# default-jdk-headless, libtomcat10-java and tomcat10-common), and 16,384 descriptors for the
# idle-connection scenarios. Not a test: it builds. Takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  echo "pgo.sh: $profdata is missing: rustup component add llvm-tools" >&2
  exit 1
fi
[ -x /usr/share/tomcat10/bin/catalina.sh ] && command -v javac >/dev/null ||
  { echo "pgo.sh: Tomcat 10 or a JDK is missing (the AJP13 training): apt-get install default-jdk-headless libtomcat10-java tomcat10-common" >&2; exit 1; }
command -v openssl >/dev/null || { echo "pgo.sh: openssl is missing (the HTTPS training)" >&2; exit 1; }

pgo=$PWD/target/pgo
rm -rf "$pgo/profiles" "$pgo/train" "$pgo/ringlb.profdata" "$pgo/ringlb" "$pgo/use"
mkdir -p "$pgo"
# The whole workspace, as scripts/test.sh builds it (ringlb-load built alone would resolve other
# features and rebuild its dependencies).
cargo build --release --workspace >&2
CARGO_ENCODED_RUSTFLAGS="-Cprofile-generate=$pgo/profiles" \
  cargo build --release -p ringlb --target "$host" --target-dir "$pgo/gen" >&2

# The training. (e) and (k) hold 2,000 and 1,000 idle connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 16384 ] ||
  { echo "pgo.sh: $(ulimit -n) descriptors; the training needs 16384" >&2; exit 1; }
env -u LLVM_PROFILE_FILE BENCH_RINGLB="$pgo/gen/$host/release/ringlb" BENCH_PROXIES=ringlb \
  BENCH_SCENARIOS=a,b,c,d,e,h,i,j,k,l BENCH_ROUNDS=1 BENCH_DURATION=3 BENCH_WARMUP=1 \
  BENCH_IDLE_CONNS=2000 BENCH_IDLE_TLS_CONNS=1000 BENCH_OUT="$pgo/train" \
  python3 scripts/bench/compare.py >&2
python3 - "$pgo/train/benchmarks.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))
want = ["a", "b", "c", "d", "e", "h", "i", "j", "k", "l"]
bad = []
for s in want:
    rounds = runs.get(f"{s}/ringlb") or []
    if len(rounds) != 1:
        bad.append(f"({s}) did not run")
        continue
    fig = rounds[0]
    failed = sum(fig.get(k) or 0 for k in ("errors", "non2xx", "r_errors", "wrk_errors"))
    if failed:
        bad.append(f"({s}) had {failed} failed requests")
    held = {"e": 2000, "k": 1000}.get(s)
    if held is not None and fig.get("ok") != held:
        bad.append(f"({s}) held {fig.get('ok')} of {held} idle connections")
    if s not in ("e", "k") and not (fig.get("rps") or fig.get("hs_per_s")):
        bad.append(f"({s}) answered nothing")
if bad:
    sys.exit("pgo.sh: the training went wrong, no profile is used: " + "; ".join(bad))
EOF
# A ringlb writes its profile when it exits; one killed (compare.py's last resort, after 10 s)
# writes none, and the runs before it still count.
ls "$pgo"/profiles/*.profraw >/dev/null 2>&1 ||
  { echo "pgo.sh: the instrumented ringlb wrote no profile in $pgo/profiles" >&2; exit 1; }
"$profdata" merge -o "$pgo/ringlb.profdata" "$pgo/profiles"

CARGO_ENCODED_RUSTFLAGS="-Cprofile-use=$pgo/ringlb.profdata" \
  cargo build --release -p ringlb --target "$host" --target-dir "$pgo/use" >&2
cp "$pgo/use/$host/release/ringlb" "$pgo/ringlb"
echo "target/pgo/ringlb"
