#!/usr/bin/env bash
# The whole test suite: unit tests and the black-box tests with the io_uring driver, then the
# black-box tests again with the epoll driver. Installs the real peers the tests use (promtool
# from Debian's prometheus, Debian's chromium, Tomcat 10 for AJP) where they are missing and this
# is root; where it cannot, those checks say loudly that they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/share/tomcat10/bin/catalina.sh ] || need+=(libtomcat10-java tomcat10-common)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} (Debian) for the status tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
      echo "!!! could not install ${need[*]}: the checks that need them will be SKIPPED"
  else
    echo "!!! ${need[*]} missing and not root: the promtool / Chromium / Tomcat checks will be SKIPPED"
  fi
fi
if command -v promtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 &&
  [ -x /usr/share/tomcat10/bin/catalina.sh ] && command -v javac >/dev/null 2>&1; then
  export RINGLB_REQUIRE_TOOLS=1
fi

cargo test --workspace
RINGLB_TEST_DRIVER=epoll cargo test --test it
