#!/usr/bin/env bash
# docs/migration.md, run as written: boots a real systemd (Debian 12's, as PID 1) in its own PID,
# mount and network namespaces, starts Debian's apache2 there with the page's example site (its
# `apache` block) in front of two members (Python http.server as transient units), then runs every
# `sh` block of the page, in order, as root in that namespace, from a folder holding the .deb that
# scripts/deb.sh built. Between the blocks it checks what the page says should now be true: the
# package installed but not enabled, ringlb serving on 8000 beside Apache on 80 with io_uring under
# the unit's sandbox, port 80 switched over by a reload, and Apache back after the roll-back.
#
# Root only. Nothing it does reaches the machine's own network or services: systemd, Apache,
# ringlb and the members live in the namespaces, and /etc/systemd/system (where the units that
# would touch the machine at boot are masked), /etc/rc?.d, Apache's enabled sites and modules,
# /var/lib/apache2, /var/log/apache2, /run, /tmp, /var/tmp and the journal are private there.
# What it does change on the machine, it undoes: the package (dpkg --purge) and the ringlb user
# if it made it. It stops only what it started (its systemd, by pid; the namespace goes with it).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "!!! migration-test FAILED: $*" >&2
  exit 1
}
ok() { echo "migration-test: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (namespaces, a package, systemd)"
for tool in unshare nsenter systemctl journalctl systemd-run apache2ctl a2enmod curl python3 dpkg dpkg-query runuser ss; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing"
done
[ -x /lib/systemd/systemd ] || fail "/lib/systemd/systemd is missing"
if dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null | grep -qv '^not-installed$'; then
  fail "a ringlb package is already on this machine; refusing to touch it"
fi

deb=$(bash scripts/deb.sh | tail -n1)
[ -f "$deb" ] || fail "scripts/deb.sh printed no package path (got '$deb')"

# Not under /tmp: the namespace gets a /tmp of its own (systemd empties /tmp when it boots).
mkdir -p target
tmp=$(mktemp -d "$PWD/target/migration-test.XXXXXX")
chmod 755 "$tmp"
user_before=0
id ringlb >/dev/null 2>&1 && user_before=1
unshare_pid=
sd=
cleanup() {
  local rc=$?
  if [ -n "$sd" ]; then
    # The namespace's init: when it dies, the kernel kills everything in its PID namespace.
    kill -KILL "$sd" 2>/dev/null || true
  fi
  if [ -n "$unshare_pid" ]; then
    wait "$unshare_pid" 2>/dev/null || true
  fi
  if dpkg-query -W -f='${db:Status-Status}' ringlb 2>/dev/null | grep -qv '^not-installed$'; then
    echo "migration-test: cleaning up: dpkg --purge ringlb"
    dpkg --purge ringlb >/dev/null || echo "!!! migration-test: could not purge ringlb" >&2
  fi
  if [ "$user_before" = 0 ] && id ringlb >/dev/null 2>&1; then
    userdel ringlb 2>/dev/null || echo "!!! migration-test: could not remove the ringlb user" >&2
    getent group ringlb >/dev/null && { groupdel ringlb 2>/dev/null || true; }
  fi
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

# Private copies of what the walk-through changes, mounted over the real ones in the namespace.
cp -a /etc/systemd/system "$tmp/etc-systemd-system"
# Boot-time units that would act on what the namespaces share with the machine (the kernel's
# settings, the root file system's mount flags, kernel modules, devices) or run jobs on a timer:
# masked in the namespace's copy.
for unit in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
  systemd-tmpfiles-clean.timer systemd-sysctl.service systemd-modules-load.service \
  systemd-remount-fs.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-udev-settle.service systemd-binfmt.service systemd-random-seed.service \
  systemd-update-utmp.service apparmor.service timers.target kmod-static-nodes.service \
  systemd-hwdb-update.service ldconfig.service systemd-firstboot.service \
  systemd-machine-id-commit.service systemd-journal-catalog-update.service \
  systemd-update-done.service systemd-pstore.service; do
  ln -sf /dev/null "$tmp/etc-systemd-system/$unit"
done
cp -a /etc/apache2/mods-enabled "$tmp/mods-enabled"
cp -a /var/lib/apache2 "$tmp/var-lib-apache2"
# `systemctl enable/disable apache2` also runs update-rc.d on the SysV links.
for d in /etc/rc?.d; do
  cp -a "$d" "$tmp/$(basename "$d")"
done
mkdir -p "$tmp/sites-enabled"
cp "$tmp/site.conf" "$tmp/sites-enabled/openspecimen.conf"
for m in t1 t2; do
  mkdir -p "$tmp/$m/openspecimen"
  echo "$m" >"$tmp/$m/openspecimen/index.html"
done
cat >"$tmp/init.sh" <<EOF
set -e
mount --make-rprivate /
mount --bind $tmp/etc-systemd-system /etc/systemd/system
mount --bind $tmp/sites-enabled /etc/apache2/sites-enabled
mount --bind $tmp/mods-enabled /etc/apache2/mods-enabled
mount --bind $tmp/var-lib-apache2 /var/lib/apache2
for d in /etc/rc?.d; do mount --bind "$tmp/\$(basename "\$d")" "\$d"; done
mount -t tmpfs tmpfs /var/log/apache2
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec /lib/systemd/systemd --system --unit=basic.target
EOF
unshare --pid --fork --mount --mount-proc --net --uts --ipc bash "$tmp/init.sh" >"$tmp/systemd.log" 2>&1 &
unshare_pid=$!
for _ in $(seq 100); do
  sd=$(pgrep -P "$unshare_pid" -x systemd || true)
  [ -n "$sd" ] && break
  sleep 0.1
done
[ -n "$sd" ] || fail "systemd did not start in the namespace"
inns() { nsenter -t "$sd" -m -p -n -u -i --wd="$tmp/work" -- "$@"; }
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
  inns bash -euo pipefail -x "$tmp/steps/$i.sh" || fail "sh block $i of docs/migration.md failed"
  case "$i" in
  1)
    [ "$(inns systemctl is-enabled ringlb 2>/dev/null || true)" = disabled ] || fail "the package enabled ringlb"
    [ "$(inns systemctl is-active ringlb 2>/dev/null || true)" = inactive ] || fail "the package started ringlb"
    ok "installed, neither enabled nor started"
    ;;
  2)
    grep -q 'member_path\|path = "/openspecimen"' "$tmp/work/ringlb.toml" || fail "the import has no /openspecimen route"
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
echo "migration-test: every command of docs/migration.md ran ($steps sh blocks)"
