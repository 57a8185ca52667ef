#!/usr/bin/env bash
# Builds the Debian package target/debian/ringlb_<version>-1_<arch>.deb (docs/packaging.md): the
# workspace in release mode (skipped with RINGLB_DEB_NO_BUILD=1, when it was just built), the man
# pages from the clap definitions (`ringlb man target/man`), then cargo-deb, stripping the
# binaries (the release profile keeps line tables for perf: about 50 MiB unstripped). Installs
# the pinned cargo-deb when it is missing. Prints the .deb's path as its last line.
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
rm -rf target/man
target/release/ringlb man target/man >/dev/null
[ -s target/man/ringlb.1 ] || { echo "deb.sh: no man page was written" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
mkdir -p target/debian
out="target/debian/ringlb_${version}-1_$(dpkg --print-architecture).deb"
rm -f "$out"
cargo deb -p ringlb --no-build --strip --output "$out" >&2
[ -s "$out" ] || { echo "deb.sh: cargo deb wrote no $out" >&2; exit 1; }
echo "$out"
