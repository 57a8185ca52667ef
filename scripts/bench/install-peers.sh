#!/usr/bin/env bash
# Installs, from Debian, the peers a measuring script runs beside ringlb, where their commands are
# missing: arguments are `command:package` pairs (e.g. `nginx:nginx wrk:wrk`). Debian starts the
# services it installs where it can; the scripts run their own, so the install is told not to
# start any (policy-rc.d, removed again after the install, also when it fails). Where the machine
# already has a policy-rc.d that lets Debian start them, the unit of a package this run installed
# (it was not installed before) that runs afterwards is stopped, by its name; nothing else is
# ever touched.
set -euo pipefail
need=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
[ ${#need[@]} -gt 0 ] || exit 0
new=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || new+=("$pkg")
done
echo "installing ${need[*]} (Debian)"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
if [ -z "$made_policy" ] && [ ${#new[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
  for pkg in "${new[@]}"; do
    if systemctl is-active --quiet "$pkg" 2>/dev/null; then
      echo "stopping $pkg.service, started by its installation in this run"
      systemctl stop "$pkg" || true
    fi
  done
fi
exit 0
