#!/usr/bin/env bash
# The Debian package, installed for real (docs/packaging.md): builds it (scripts/deb.sh, on the
# release build scripts/test.sh just made), installs it on this machine with dpkg (CI is a fresh
# machine; a ringlb package already installed here is refused, never touched), checks what
# landed (binaries, unit, conffiles, logrotate, man pages, the ringlb system user, the config's
# owner and mode), that `ringlb check` accepts the default config as the ringlb user, that it
# serves, reloads (the unit's ExecReload), reopens its access log and stops as the ringlb user
# with systemd's notifications (a smoke run: there is no systemd as PID 1 here), that
# `systemd-analyze verify` accepts the unit (and, to show it would catch one, rejects three
# broken copies), that logrotate accepts its file, then purges the package and checks that
# everything is gone. Root only. Every failure says what and exits non-zero; nothing is skipped.
# Cleans up what it created, also on failure: the package, the ringlb user if it made it, its
# policy-rc.d, its temporary files. Installs logrotate (a test dependency, left installed like
# the peers scripts/test.sh installs) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "!!! deb-test FAILED: $*" >&2
  exit 1
}
ok() { echo "deb-test: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs a package)"
for tool in dpkg dpkg-query systemd-analyze runuser setpriv readelf zcat man python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing"
done
if dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null | grep -qv '^not-installed$'; then
  fail "a ringlb package is already on this machine ($(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' ringlb)); refusing to touch it (dpkg --purge ringlb first if it is a leftover)"
fi
for p in /usr/bin/ringlb /usr/bin/ringlb-load /etc/ringlb /usr/lib/systemd/system/ringlb.service /lib/systemd/system/ringlb.service \
  /var/lib/ringlb /var/log/ringlb; do
  [ ! -e "$p" ] || fail "$p exists without the package; refusing to overwrite it"
done
if ! command -v logrotate >/dev/null 2>&1; then
  echo "deb-test: installing logrotate (Debian) to check the logrotate file"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends logrotate >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends logrotate >/dev/null; } ||
    fail "logrotate is missing and could not be installed"
fi

tmp=$(mktemp -d /tmp/ringlb-deb-test.XXXXXX)
installed=0
user_before=0
id ringlb >/dev/null 2>&1 && user_before=1
policy_made=0
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$installed" = 1 ] && dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null | grep -qv '^not-installed$'; then
    echo "deb-test: cleaning up: dpkg --purge ringlb"
    dpkg --purge ringlb >/dev/null || echo "!!! deb-test: could not purge ringlb" >&2
  fi
  if [ "$user_before" = 0 ] && id ringlb >/dev/null 2>&1; then
    userdel ringlb 2>/dev/null || echo "!!! deb-test: could not remove the ringlb user it created" >&2
    getent group ringlb >/dev/null && { groupdel ringlb 2>/dev/null || true; }
  fi
  [ "$policy_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

# Nothing may start the service while the package is installed here (the package starts nothing
# itself; this guards against a machine where systemd runs and a snippet would).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  policy_made=1
fi

# scripts/deb.sh builds the workspace first (a no-op right after scripts/test.sh's release build), so
# the package never holds a stale binary.
deb=$(bash scripts/deb.sh | tail -n1)
[ -f "$deb" ] || fail "scripts/deb.sh printed no package path (got '$deb')"
size=$(stat -c %s "$deb")
[ "$size" -lt $((20 * 1024 * 1024)) ] || fail "$deb is $size bytes: were the binaries stripped?"
ok "built $deb ($size bytes)"

installed=1
dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log" >&2; fail "dpkg -i $deb"; }
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' ringlb)" = "ii " ] || fail "ringlb is not fully installed after dpkg -i"
ok "dpkg -i"

unit=/usr/lib/systemd/system/ringlb.service
files=(/usr/bin/ringlb /usr/bin/ringlb-load "$unit" /etc/ringlb/ringlb.toml /etc/logrotate.d/ringlb
  /usr/lib/sysusers.d/ringlb.conf /usr/lib/sysctl.d/60-ringlb.conf /usr/share/man/man1/ringlb.1.gz
  /usr/share/man/man1/ringlb-run.1.gz /usr/share/man/man1/ringlb-reload.1.gz
  /usr/share/doc/ringlb/packaging.md /usr/share/doc/ringlb/examples/ringlb.toml)
for f in "${files[@]}"; do
  [ -s "$f" ] || fail "$f did not land"
done
[ -x /usr/bin/ringlb ] || fail "/usr/bin/ringlb is not executable"
/usr/bin/ringlb --version | grep -q '^ringlb ' || fail "/usr/bin/ringlb --version"
if readelf -S /usr/bin/ringlb | grep -q '\.debug_info'; then
  fail "/usr/bin/ringlb still has debug info (not stripped)"
fi
conffiles=$(dpkg-query -W -f='${Conffiles}' ringlb)
for c in /etc/ringlb/ringlb.toml /etc/logrotate.d/ringlb; do
  grep -qF " $c " <<<"$conffiles" || fail "$c is not a conffile (dpkg: $conffiles)"
done
ok "files landed: ${#files[@]} checked, conffiles registered, binary stripped"

# The man page reads as one (zcat: gzipped; man -l: it renders with the commands in it).
zcat /usr/share/man/man1/ringlb.1.gz | grep -q '^\.TH ringlb 1' || fail "ringlb.1.gz has no .TH header"
MANPAGER=cat MANWIDTH=100 man -l /usr/share/man/man1/ringlb.1.gz >"$tmp/man.txt" 2>/dev/null ||
  fail "man -l ringlb.1.gz"
grep -q 'ringlb-reload' "$tmp/man.txt" || fail "the rendered man page lists no ringlb-reload: $(head -c 400 "$tmp/man.txt")"
ok "man page renders"

# The dedicated system user.
id ringlb >/dev/null 2>&1 || fail "no ringlb user after install"
uid=$(id -u ringlb)
[ "$uid" -lt 1000 ] || fail "the ringlb user has uid $uid: not a system user"
shell=$(getent passwd ringlb | cut -d: -f7)
case "$shell" in */nologin | */false) ;; *) fail "the ringlb user has a login shell: $shell" ;; esac
[ "$(stat -c '%U:%G %a' /etc/ringlb/ringlb.toml)" = "root:ringlb 640" ] ||
  fail "/etc/ringlb/ringlb.toml is $(stat -c '%U:%G %a' /etc/ringlb/ringlb.toml), want root:ringlb 640"
ok "system user ringlb (uid $uid, $shell); the config is root:ringlb 640"

# The default config, as the service will read it.
runuser -u ringlb -- /usr/bin/ringlb check --config /etc/ringlb/ringlb.toml >"$tmp/check.txt" 2>&1 ||
  { cat "$tmp/check.txt" >&2; fail "ringlb check rejects the default config"; }
grep -q 'is valid' "$tmp/check.txt" || fail "ringlb check said: $(cat "$tmp/check.txt")"
if runuser -u nobody -- cat /etc/ringlb/ringlb.toml >/dev/null 2>&1; then
  fail "another user can read /etc/ringlb/ringlb.toml"
fi
ok "ringlb check passes on the default config as the ringlb user; others cannot read it"

# The unit. systemd-analyze verify exits 0 on settings it ignores, so any diagnostic fails too.
verify() {
  local out rc=0
  out=$(systemd-analyze verify --man=no "$1" 2>&1) || rc=$?
  [ "$rc" = 0 ] && [ -z "$out" ] && return 0
  echo "$out"
  return 1
}
verify_out=$(verify "$unit") || fail "systemd-analyze verify $unit: $verify_out"
mkdir -p "$tmp/b1" "$tmp/b2" "$tmp/b3"
sed 's/^Type=notify$/Type=notfy/' "$unit" >"$tmp/b1/ringlb.service"
sed 's/^ProtectSystem=strict$/ProtectSytem=strict/' "$unit" >"$tmp/b2/ringlb.service"
sed 's|^ExecStart=/usr/bin/ringlb |ExecStart=/usr/bin/ringlb-missing |' "$unit" >"$tmp/b3/ringlb.service"
for b in b1 b2 b3; do
  cmp -s "$unit" "$tmp/$b/ringlb.service" && fail "the broken copy $b is not broken (the unit changed?)"
  if verify "$tmp/$b/ringlb.service" >/dev/null; then
    fail "systemd-analyze verify accepted a broken unit ($b): the check would not catch one"
  fi
done
exposure=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for ringlb.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.5) }' || fail "the unit's exposure level is $exposure (> 2.5): a hardening option was lost"
ok "systemd-analyze verify accepts the unit and rejects 3 broken copies; exposure $exposure"

# logrotate: its own dry run, on the installed file.
logrotate -d /etc/logrotate.d/ringlb >"$tmp/logrotate.txt" 2>&1 ||
  { cat "$tmp/logrotate.txt" >&2; fail "logrotate -d rejects /etc/logrotate.d/ringlb"; }
if grep -qi 'error' "$tmp/logrotate.txt"; then
  cat "$tmp/logrotate.txt" >&2
  fail "logrotate -d reports an error"
fi
grep -q '/var/log/ringlb/\*.log' "$tmp/logrotate.txt" || fail "logrotate -d did not consider /var/log/ringlb/*.log"
ok "logrotate -d accepts the logrotate file"

# A smoke run as the unit starts it. There is no systemd as PID 1 here, so: the installed binary
# as the ringlb user, the directories systemd would create for it (LogsDirectory,
# StateDirectory), NOTIFY_SOCKET naming a datagram socket this script reads, the default config
# with only its listener moved to a free loopback port (port 80 may be taken). Checks READY=1,
# an access log line in /var/log/ringlb, the logrotate way (rename, SIGUSR1, a new file), the
# unit's ExecReload command verbatim (RELOADING=1 then READY=1), STOPPING=1 and exit 0 on SIGTERM.
smoke="$tmp/smoke"
mkdir -p "$smoke"
chmod 755 "$tmp" "$smoke"
install -d -o ringlb -g ringlb -m 755 /var/log/ringlb /var/lib/ringlb
sed 's|^address = "0.0.0.0:80"$|address = "127.0.0.1:0"|' /etc/ringlb/ringlb.toml >"$smoke/ringlb.toml"
grep -q '^address = "127.0.0.1:0"$' "$smoke/ringlb.toml" || fail "the default config's listener line changed: update this test"
chgrp ringlb "$smoke/ringlb.toml"
chmod 640 "$smoke/ringlb.toml"
python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
with open(sys.argv[2], "a") as out:
    while True:
        msg = s.recv(4096).decode(errors="replace")
        out.write(msg.replace("\n", " ") + "\n")
        out.flush()
' "$smoke/notify.sock" "$smoke/notify.txt" &
pids+=($!)
for _ in $(seq 100); do [ -S "$smoke/notify.sock" ] && break; sleep 0.05; done
[ -S "$smoke/notify.sock" ] || fail "the notify socket reader did not start"
# setpriv and env exec: the pid is ringlb's own, as the unit's main process (signals reach it).
setpriv --reuid=ringlb --regid=ringlb --init-groups \
  env NOTIFY_SOCKET="$smoke/notify.sock" WATCHDOG_USEC=2000000 \
  /usr/bin/ringlb run --config "$smoke/ringlb.toml" 2>"$smoke/stderr.txt" &
ringlb_pid=$!
pids+=("$ringlb_pid")
wait_for() { # file pattern what
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$ringlb_pid" 2>/dev/null || { cat "$smoke/stderr.txt" >&2; fail "ringlb exited while waiting for $3"; }
    sleep 0.05
  done
  tail -n 20 "$smoke/stderr.txt" "$smoke/notify.txt" >&2 || true
  fail "no $3 within 15 s"
}
wait_for "$smoke/notify.txt" '^READY=1' "READY=1"
wait_for "$smoke/notify.txt" '^WATCHDOG=1' "WATCHDOG=1"
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$smoke/stderr.txt" | head -n1)
[ -n "$port" ] || fail "no listening line: $(cat "$smoke/stderr.txt")"
request() {
  exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to ringlb on $port"
  printf 'GET /smoke HTTP/1.1\r\nHost: smoke\r\nConnection: close\r\n\r\n' >&3
  head -n1 <&3 | grep -q '^HTTP/1.1 ' || fail "no HTTP answer from ringlb"
  exec 3<&-
}
request
wait_for /var/log/ringlb/access.log 'GET /smoke' "an access log line in /var/log/ringlb/access.log"
[ "$(stat -c %U /var/log/ringlb/access.log)" = ringlb ] || fail "the access log is not the ringlb user's"
mv /var/log/ringlb/access.log /var/log/ringlb/access.log.1
[ "$(stat -c %U "/proc/$ringlb_pid")" = ringlb ] || fail "pid $ringlb_pid is not ringlb running as the ringlb user"
kill -USR1 "$ringlb_pid"
wait_for "$smoke/stderr.txt" 'reopening the access log' "the reopen after SIGUSR1"
request
wait_for /var/log/ringlb/access.log 'GET /smoke' "a line in the new access log after SIGUSR1"
reload_cmd=$(sed -n 's/^ExecReload=//p' "$unit")
[ -n "$reload_cmd" ] || fail "the unit has no ExecReload"
# shellcheck disable=SC2086 # the unit's command line, split as systemd splits it (no quotes in it)
runuser -u ringlb -- $reload_cmd >"$smoke/reload.txt" 2>&1 ||
  { cat "$smoke/reload.txt" "$smoke/stderr.txt" >&2; fail "the unit's ExecReload ($reload_cmd) failed"; }
grep -q 'generation 2' "$smoke/reload.txt" || fail "ExecReload said: $(cat "$smoke/reload.txt")"
wait_for "$smoke/notify.txt" '^RELOADING=1 MONOTONIC_USEC=' "RELOADING=1"
wait_for "$smoke/notify.txt" '^READY=1 .*generation 2' "READY=1 after the reload"
kill -TERM "$ringlb_pid"
rc=0
wait "$ringlb_pid" || rc=$?
# Reaped: its pid may belong to another process now; cleanup must not signal it.
keep=()
for pid in "${pids[@]}"; do [ "$pid" = "$ringlb_pid" ] || keep+=("$pid"); done
pids=("${keep[@]}")
[ "$rc" = 0 ] || { cat "$smoke/stderr.txt" >&2; fail "ringlb exited $rc on SIGTERM"; }
grep -q '^STOPPING=1' "$smoke/notify.txt" || fail "no STOPPING=1: $(cat "$smoke/notify.txt")"
# (tcp_migrate_req is root's to set: its warning is expected as the ringlb user.)
if grep -v 'tcp_migrate_req' "$smoke/stderr.txt" | grep -qi 'permission denied\|read-only'; then
  cat "$smoke/stderr.txt" >&2
  fail "ringlb met a permission problem as the ringlb user"
fi
ok "smoke run as the ringlb user: READY=1, WATCHDOG=1, access log + SIGUSR1 reopen, ExecReload, STOPPING=1, exit 0"

# Purge: every file gone, and what ringlb wrote at run time (the smoke run's logs and state).
[ -s /var/log/ringlb/access.log.1 ] || fail "the smoke run left no rotated access log to purge"
dpkg --purge ringlb >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge ringlb"; }
installed=0
[ "$(dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null || echo not-installed)" = not-installed ] ||
  fail "ringlb is still known to dpkg after the purge"
for f in "${files[@]}" /etc/ringlb /var/log/ringlb /var/lib/ringlb; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg --purge"
done
ok "dpkg --purge removed every file, /etc/ringlb, /var/log/ringlb and /var/lib/ringlb"
echo "deb-test: PASSED"
