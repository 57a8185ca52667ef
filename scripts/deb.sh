#!/usr/bin/env bash
# Builds the Debian package target/debian/ringlb_<version>-1_<arch>.deb (docs/packaging.md): the
# workspace in release mode (skipped with RINGLB_DEB_NO_BUILD=1, when it was just built), the man
# pages from the clap definitions (`ringlb man target/man`), then cargo-deb (with RINGLB_PGO=1 the
# ringlb binary packaged is scripts/pgo.sh's profile-guided build), stripping the binaries (the
# release profile keeps line tables for perf: about 44 MiB unstripped). Installs the pinned
# cargo-deb when it is missing. Prints the .deb's path as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked)" >&2
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
if [ "${RINGLB_DEB_NO_BUILD:-0}" != 1 ]; then
  cargo build --release --workspace >&2
fi
# RINGLB_PGO=1: the package takes the profile-guided ringlb of scripts/pgo.sh (which fails
# loudly without its tools; built now, or with RINGLB_DEB_NO_BUILD=1 the one target/pgo/use
# holds), packaged from that folder: target/release, which the tests use, is not touched.
deb_env=()
deb_args=()
if [ "${RINGLB_PGO:-0}" = 1 ]; then
  [ "${RINGLB_DEB_NO_BUILD:-0}" = 1 ] || bash scripts/pgo.sh >&2
  host=$(rustc -vV | sed -n 's/^host: //p')
  pgo_release="target/pgo/use/$host/release"
  [ -x "$pgo_release/ringlb" ] ||
    { echo "deb.sh: no profile-guided build in $pgo_release: run scripts/pgo.sh" >&2; exit 1; }
  cp target/release/ringlb-load "$pgo_release/ringlb-load"
  deb_env=(CARGO_TARGET_DIR="$PWD/target/pgo/use")
  deb_args=(--target "$host")
fi
rm -rf target/man
target/release/ringlb man target/man >/dev/null
[ -s target/man/ringlb.1 ] || { echo "deb.sh: no man page was written" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
mkdir -p target/debian
out="target/debian/ringlb_${version}-1_$(dpkg --print-architecture).deb"
rm -f "$out"
env "${deb_env[@]}" cargo deb -p ringlb --no-build --strip --output "$out" "${deb_args[@]}" >&2
[ -s "$out" ] || { echo "deb.sh: cargo deb wrote no $out" >&2; exit 1; }
echo "$out"
