#!/usr/bin/env bash
# The whole test suite: unit tests and the black-box tests with the io_uring driver, then the
# black-box tests again with the epoll driver, then (as root) the keepalived pair of docs/ha.md in
# network namespaces (scripts/ha-test.sh, on a release build), and the Debian package built,
# installed, checked and purged (scripts/deb-test.sh), and docs/migration.md's walk-through run
# command by command under a real systemd in namespaces (scripts/migration-test.sh). Installs the real peers the tests use (promtool
# from Debian's prometheus, Debian's chromium and chromedriver, Apache's htpasswd, Tomcat 10 for AJP,
# curl, openssl and Python as
# TLS clients, Debian's python3-websockets as the WebSocket peer, python3-yaml for the capacity
# rules' check, Debian's apache2 for its configuration tree) where they are missing and this is root; where it cannot, those checks say loudly
# that they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

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
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} (Debian) for the status, Tomcat and TLS peer tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
      echo "!!! could not install ${need[*]}: the checks that need them will be SKIPPED"
  else
    echo "!!! ${need[*]} missing and not root: the promtool / Chromium / Tomcat / curl / openssl / Python checks will be SKIPPED"
  fi
fi
# Debian's apache2: its configuration tree is one the importer is tested on (installed without
# starting the service).
if [ "$(id -u)" = 0 ] && ! command -v apache2ctl >/dev/null 2>&1; then
  bash scripts/bench/install-peers.sh apache2ctl:apache2 ||
    echo "!!! could not install apache2: the import test on Debian's tree will be SKIPPED"
fi
if command -v promtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 &&
  command -v chromedriver >/dev/null 2>&1 && command -v htpasswd >/dev/null 2>&1 &&
  command -v apache2ctl >/dev/null 2>&1 &&
  [ -x /usr/share/tomcat10/bin/catalina.sh ] && command -v javac >/dev/null 2>&1 &&
  command -v curl >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 &&
  command -v python3 >/dev/null 2>&1 && /usr/bin/python3 -c 'import websockets' >/dev/null 2>&1; then
  export RINGLB_REQUIRE_TOOLS=1
fi

cargo test --workspace
# docs/capacity: the Prometheus rules under promtool test rules, the Grafana panels' queries.
bash scripts/capacity-rules-test.sh
RINGLB_TEST_DRIVER=epoll cargo test --test it
if [ "$(id -u)" = 0 ]; then
  cargo build --release --workspace
  bash scripts/ha-test.sh
  bash scripts/deb-test.sh
  bash scripts/migration-test.sh
else
  echo "!!! not root: the HA pair test (scripts/ha-test.sh: network namespaces, keepalived) is SKIPPED"
  echo "!!! not root: the Debian package test (scripts/deb-test.sh: dpkg -i, checks, purge) is SKIPPED"
  echo "!!! not root: docs/migration.md's walk-through (scripts/migration-test.sh: systemd in namespaces) is SKIPPED"
fi
