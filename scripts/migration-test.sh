#!/usr/bin/env bash
# docs/migration.md, run as written: boots a real systemd (Debian 12's, as PID 1) in its own PID,
# mount and network namespaces, starts Debian's apache2 there with the page's example site (its
# `apache` block) in front of two members (Python http.server as transient units), then runs every
# `sh` block of the page, in order, as root in that namespace, from a folder holding the .deb that
# scripts/deb.sh built. Between the blocks it checks what the page says should now be true: the
# package installed but not enabled, ringlb serving on 8000 beside Apache on 80 with io_uring under
# the unit's sandbox, port 80 switched over by a reload, and Apache back after the roll-back.
#
# Root only. What it does stays off the machine's files: the namespace's root file system is an
# overlay of the machine's with a tmpfs on top (every write, `dpkg -i` and the `ringlb` user
# included, lands in the tmpfs and is gone with the namespace); /sys is read-only there, but /dev
# and the cgroup file systems are the machine's (systemd needs them). Its network is its own
# (loopback only), its
# systemd knows it runs in a container (`container=`, so units meant for real hardware do not
# start) and has the boot-time units that would act on the shared kernel (modules, sysctl, swap,
# the clock, devices) or wait for a network masked. The test stops only what it started: its
# `unshare` (our own child; with --kill-child the namespace's systemd, and everything in its PID
# namespace, dies with it). It checks at the end that the machine has no ringlb package, user or
# files, and removes the cgroups the namespace's systemd left (empty ones it made).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "!!! migration-test FAILED: $*" >&2
  exit 1
}
ok() { echo "migration-test: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (namespaces, an overlay, systemd)"
for tool in unshare nsenter systemctl journalctl systemd-run apache2ctl a2enmod curl python3 dpkg dpkg-query runuser ss setpriv; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing"
done
[ -x /lib/systemd/systemd ] || fail "/lib/systemd/systemd is missing"
if dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null | grep -qv '^not-installed$'; then
  fail "a ringlb package is already on this machine: the end check could not tell a leak from it"
fi

deb=$(bash scripts/deb.sh | tail -n1)
[ -f "$deb" ] || fail "scripts/deb.sh printed no package path (got '$deb')"

user_before=0
id ringlb >/dev/null 2>&1 && user_before=1
for p in /usr/bin/ringlb /etc/ringlb /lib/systemd/system/ringlb.service /var/lib/ringlb /var/log/ringlb; do
  [ ! -e "$p" ] || fail "$p exists on this machine: the end check could not tell a leak from it"
done
# Not under /tmp: the namespace gets a /tmp of its own.
mkdir -p target
tmp=$(mktemp -d "$PWD/target/migration-test.XXXXXX")
chmod 755 "$tmp"
cgroups_before="$tmp/cgroups-before"
find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | sort >"$cgroups_before"
unshare_pid=
cleanup() {
  local rc=$?
  if [ -n "$unshare_pid" ]; then
    # Our own child (it ignores SIGTERM while it waits); --kill-child takes the namespace's
    # systemd, and its PID namespace, with it.
    kill -KILL "$unshare_pid" 2>/dev/null || true
    wait "$unshare_pid" 2>/dev/null || true
  fi
  # Empty cgroups the namespace's systemd made: new since the start, named as systemd names its
  # units' (rmdir refuses anything in use; deepest first).
  # Retried a few times: the namespace's last processes may still be exiting.
  for _ in 1 2 3 4 5; do
    left=$(find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | sort |
      comm -13 "$cgroups_before" - | grep -E '\.(slice|scope|service|mount|socket|swap)(/|$)' |
      sort -r || true)
    [ -n "$left" ] || break
    echo "$left" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    sleep 0.5
  done
  if [ "$rc" != 0 ] && [ -f "$tmp/systemd.log" ]; then
    echo "--- the namespace's systemd (last lines) ---" >&2
    tail -n 20 "$tmp/systemd.log" >&2 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

# The page's example site and its sh blocks, in order.
mkdir -p "$tmp/steps" "$tmp/work"
python3 - docs/migration.md "$tmp" <<'EOF'
import pathlib, re, sys
text = pathlib.Path(sys.argv[1]).read_text()
out = pathlib.Path(sys.argv[2])
blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)
sites = [b for lang, b in blocks if lang == "apache"]
steps = [b for lang, b in blocks if lang == "sh"]
if len(sites) != 1 or len(steps) < 6:
    sys.exit(f"docs/migration.md: expected one apache block and at least 6 sh blocks, found {len(sites)} and {len(steps)}")
(out / "site.conf").write_text(sites[0])
for i, s in enumerate(steps, 1):
    (out / "steps" / f"{i}.sh").write_text(s)
print(f"migration-test: {len(steps)} sh blocks")
EOF
steps=$(find "$tmp/steps" -name '*.sh' | wc -l)
cp "$deb" "$tmp/work/"
[ -f "$tmp/work/$(basename "$deb")" ] || fail "could not copy $deb"
grep -qF "$(basename "$deb")" "$tmp/steps/1.sh" ||
  fail "docs/migration.md's install step does not name the package scripts/deb.sh built ($(basename "$deb"))"

for m in t1 t2; do
  mkdir -p "$tmp/$m/openspecimen"
  echo "$m" >"$tmp/$m/openspecimen/index.html"
done
mkdir -p "$tmp/ov"
# Units that would act on what the namespace shares with the machine (kernel modules and
# settings, swap, the clock, devices, the root file system's mount flags), wait for a network
# that is not there, or run jobs on a timer: masked in the overlay.
masked="systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service
  systemd-tmpfiles-clean.timer systemd-sysctl.service systemd-modules-load.service
  systemd-remount-fs.service systemd-udevd.service systemd-udev-trigger.service
  systemd-udev-settle.service systemd-binfmt.service systemd-random-seed.service
  systemd-update-utmp.service apparmor.service timers.target kmod-static-nodes.service
  systemd-hwdb-update.service ldconfig.service systemd-firstboot.service
  systemd-machine-id-commit.service systemd-journal-catalog-update.service
  systemd-update-done.service systemd-pstore.service swap.target cryptsetup.target
  remote-fs.target systemd-timesyncd.service systemd-networkd.service
  systemd-networkd-wait-online.service systemd-resolved.service NetworkManager.service
  NetworkManager-wait-online.service keyboard-setup.service console-setup.service
  lvm2-monitor.service getty.target console-getty.service"
cat >"$tmp/init.sh" <<EOF
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs $tmp/ov
mkdir $tmp/ov/upper $tmp/ov/work $tmp/ov/root
mount -t overlay overlay -o lowerdir=/,upperdir=$tmp/ov/upper,workdir=$tmp/ov/work $tmp/ov/root
cd $tmp/ov/root
mount -t proc proc proc
mount --rbind /sys sys
mount -o remount,bind,ro sys
mount --rbind /dev dev
mount -t tmpfs tmpfs run
mount -t tmpfs tmpfs tmp
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
for u in $(echo $masked); do ln -sf /dev/null /etc/systemd/system/\$u; done
# The page's starting point: Apache with the example site only.
rm -f /etc/apache2/sites-enabled/*
cp $tmp/site.conf /etc/apache2/sites-enabled/openspecimen.conf
exec env container=ringlb-migration-test /lib/systemd/systemd --system --unit=basic.target
EOF
# --pdeathsig: should this script be killed, unshare (and with it the namespace) goes too.
setpriv --pdeathsig KILL unshare --pid --fork --kill-child --mount --net --uts --ipc \
  bash "$tmp/init.sh" >"$tmp/systemd.log" 2>&1 &
unshare_pid=$!
sd=
for _ in $(seq 100); do
  sd=$(pgrep -P "$unshare_pid" -x systemd || true)
  kill -0 "$unshare_pid" 2>/dev/null || fail "the namespace's init exited: $(tail -n 5 "$tmp/systemd.log")"
  [ -n "$sd" ] && break
  sleep 0.1
done
[ -n "$sd" ] || fail "systemd did not start in the namespace"
# A command in the namespace (its root is the overlay); `inwork`: from the folder with the .deb
# (entered in there: a directory opened outside would be the machine's, not the overlay's).
inns() { nsenter -t "$sd" -m -p -n -u -i -- "$@"; }
inwork() { inns bash -c 'cd "$0" && exec "$@"' "$tmp/work" "$@"; }
state=
for _ in $(seq 300); do
  state=$(inns systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
case "$state" in running | degraded) ok "systemd is up in its namespaces ($state)" ;; *) fail "systemd did not finish booting: $state" ;; esac

# Where the page starts: Apache on port 80 with the site, two members.
inns systemd-run --quiet --unit=member-t1 python3 -m http.server 8081 --bind 127.0.0.1 --directory "$tmp/t1"
inns systemd-run --quiet --unit=member-t2 python3 -m http.server 8082 --bind 127.0.0.1 --directory "$tmp/t2"
inns a2enmod -q proxy proxy_http proxy_balancer lbmethod_byrequests >/dev/null
inns systemctl start apache2 || { inns journalctl -u apache2 --no-pager | tail -n 20; fail "apache2 did not start"; }
served() { inns curl -fsS --max-time 2 "http://127.0.0.1:$1/openspecimen/" 2>/dev/null | tr -d '\n'; }
for _ in $(seq 50); do
  case "$(served 80)" in t1 | t2) break ;; esac
  sleep 0.2
done
case "$(served 80)" in t1 | t2) ok "Apache serves the site on port 80" ;; *) fail "Apache does not serve the site" ;; esac

listener() { inns ss -Htlnp "sport = :$1" | grep -o 'users:(("[a-z0-9]*"' | head -n1 | cut -d'"' -f2; }
for i in $(seq "$steps"); do
  echo "=== docs/migration.md, sh block $i ==="
  inwork bash -euo pipefail -x "$tmp/steps/$i.sh" || fail "sh block $i of docs/migration.md failed"
  case "$i" in
  1)
    [ "$(inns systemctl is-enabled ringlb 2>/dev/null || true)" = disabled ] || fail "the package enabled ringlb"
    [ "$(inns systemctl is-active ringlb 2>/dev/null || true)" = inactive ] || fail "the package started ringlb"
    ok "installed, neither enabled nor started"
    ;;
  2)
    inwork grep -q 'path = "/openspecimen"' ringlb.toml || fail "the import has no /openspecimen route"
    ok "imported"
    ;;
  3)
    inns journalctl -u ringlb --no-pager | grep -q 'ringlb ready.*driver="io_uring"' ||
      fail "ringlb under the unit's sandbox did not say it runs io_uring: $(inns journalctl -u ringlb --no-pager | tail -n 5)"
    [ "$(listener 8000)" = ringlb ] || fail "ringlb is not on port 8000"
    [ "$(listener 80)" = apache2 ] || fail "Apache is not on port 80 any more"
    case "$(served 8000)" in t1 | t2) ok "ringlb serves on 8000 beside Apache on 80 (Type=notify, io_uring, as user ringlb)" ;; *) fail "ringlb does not serve on 8000" ;; esac
    [ "$(inns ps -o user= -C ringlb | head -n1)" = ringlb ] || fail "ringlb does not run as the ringlb user"
    ;;
  5)
    [ "$(listener 80)" = ringlb ] || fail "port 80 is not ringlb's after the switch"
    [ -z "$(listener 8000)" ] || fail "port 8000 is still open after the reload"
    [ "$(inns systemctl is-active apache2 || true)" = inactive ] || fail "Apache still runs"
    [ "$(inns systemctl is-enabled ringlb)" = enabled ] || fail "ringlb is not enabled"
    ok "port 80 switched to ringlb by a reload (no restart); Apache stopped and disabled"
    ;;
  esac
done
[ "$(listener 80)" = apache2 ] || fail "after the roll-back, port 80 is not Apache's"
[ "$(inns systemctl is-active ringlb || true)" = inactive ] || fail "after the roll-back, ringlb still runs"
[ "$(inns systemctl is-enabled ringlb || true)" = disabled ] || fail "after the roll-back, ringlb is still enabled"
case "$(served 80)" in t1 | t2) ok "rolled back: Apache serves port 80 again" ;; *) fail "Apache does not serve after the roll-back" ;; esac
kill -KILL "$unshare_pid"
wait "$unshare_pid" 2>/dev/null || true
unshare_pid=
# The overlay kept every write: nothing of the walk-through is on the machine.
if dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null | grep -qv '^not-installed$'; then
  fail "the package is installed on the machine itself: the overlay leaked"
fi
[ "$user_before" = 1 ] || ! id ringlb >/dev/null 2>&1 || fail "the ringlb user exists on the machine: the overlay leaked"
for p in /usr/bin/ringlb /etc/ringlb /lib/systemd/system/ringlb.service /var/lib/ringlb /var/log/ringlb; do
  [ ! -e "$p" ] || fail "$p is on the machine: the overlay leaked"
done
ok "the machine is as it was (no package, user or files of ringlb)"
echo "migration-test: every command of docs/migration.md ran ($steps sh blocks)"
