#!/usr/bin/env bash
# The whole test suite: unit tests and the black-box tests with the io_uring driver, then the
# black-box tests again with the epoll driver, then (as root) the keepalived pair of docs/ha.md in
# network namespaces (scripts/ha-test.sh, on a release build), and the Debian package built,
# installed, checked and purged (scripts/deb-test.sh), and docs/migration.md's walk-through run
# command by command under a real systemd in namespaces (scripts/migration-test.sh). Installs the real peers the tests use (promtool
# from Debian's prometheus, Debian's chromium and chromedriver, Apache's htpasswd, Tomcat 10 for AJP,
# curl, openssl and Python as
# TLS clients, Debian's python3-websockets as the WebSocket peer, python3-yaml for the capacity
# rules' check, Debian's apache2 for its configuration tree) where they are missing and this is
# root. A peer still missing, or a run that is not root, fails the suite, naming what is missing;
# RINGLB_ALLOW_MISSING_TOOLS=1, set by hand, runs what it can instead and says loudly what it skips.
set -euo pipefail
cd "$(dirname "$0")/.."

missing_peers() {
  need=()
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
  [ -x /usr/share/tomcat10/bin/catalina.sh ] || need+=(libtomcat10-java tomcat10-common)
  command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  /usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || need+=(python3-websockets)
  /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || need+=(python3-yaml)
}
allowed=${RINGLB_ALLOW_MISSING_TOOLS:-0}
# A missing peer or a test that needs root: fatal, unless the run was started allowing it.
lacking() {
  if [ "$allowed" = 1 ]; then
    echo "!!! $* (RINGLB_ALLOW_MISSING_TOOLS=1: SKIPPED)"
  else
    echo "scripts/test.sh: $*; run as root where apt-get can install them, or set RINGLB_ALLOW_MISSING_TOOLS=1 to run the rest" >&2
    exit 1
  fi
}
missing_peers
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (Debian) for the status, Tomcat and TLS peer tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
    true
  missing_peers
fi
[ ${#need[@]} -eq 0 ] || lacking "the test peers ${need[*]} are missing"
# Debian's apache2: its configuration tree is one the importer is tested on (installed without
# starting the service).
if [ "$(id -u)" = 0 ] && ! command -v apache2ctl >/dev/null 2>&1; then
  bash scripts/bench/install-peers.sh apache2ctl:apache2 || true
fi
command -v apache2ctl >/dev/null 2>&1 || lacking "Debian's apache2 (for its configuration tree) is missing"
[ "$(id -u)" = 0 ] || lacking "not root: the HA pair test (network namespaces, keepalived), the Debian package test (dpkg -i) and docs/migration.md's walk-through (systemd in namespaces) need root"

cargo test --workspace
# docs/capacity: the Prometheus rules under promtool test rules, the Grafana panels' queries.
bash scripts/capacity-rules-test.sh
RINGLB_TEST_DRIVER=epoll cargo test --test it
if [ "$(id -u)" = 0 ]; then
  cargo build --release --workspace
  bash scripts/ha-test.sh
  bash scripts/deb-test.sh
  bash scripts/migration-test.sh
fi
