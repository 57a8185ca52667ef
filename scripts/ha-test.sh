#!/usr/bin/env bash
# The keepalived recipe of docs/ha.md, tested for real on one machine: two ringlb nodes (a, b)
# sharing a virtual IP through keepalived (VRRP, unicast peers, nopreempt), each tracking its
# ringlb through the admin listener's GET /healthz; two HTTP members and a client in a third
# namespace (c). Under a constant open-loop load on http://VIP:8080/, the active node's ringlb is
# killed (SIGKILL); the script measures how long the VIP takes to reach the other node and counts
# the requests that failed, then brings the killed ringlb back and checks that the VIP stays where
# it is (nopreempt: no second move).
#
#   bash scripts/ha-test.sh [--runs N] [--fail ringlb|term|box|switch]    (root; default: 1 run, ringlb)
#
# --runs N repeats the failure N times (alternating nodes: the VIP stays where it moved) and prints
# the medians. --fail term stops the active node's ringlb with SIGTERM (graceful) instead of
# SIGKILL. --fail box cuts the active node's link instead (its ringlb and keepalived keep
# running, but nothing reaches them: a box that died or dropped off the network); the other node
# notices the missing advertisements (3 x advert_int + skew) instead of a priority-0 advertisement.
# --fail switch stops the active node's keepalived (SIGTERM), as for planned maintenance: it sends
# a priority-0 advertisement and removes the VIP at once; its ringlb keeps running.
#
# Environment: BIN_DIR (default target/release) holds ringlb and ringlb-load (build them with
# `cargo build --release --workspace`); RATE (default 2000 requests/s), CONNS (default 4);
# HA_KEEP=1 keeps the temporary directory (configs and logs of every process) for a look after.
#
# Needs root, iproute2, curl and keepalived (installed from Debian with apt-get when missing).
# Everything runs in three network namespaces named after this script's PID (rlb-ha-{a,b,c}-PID),
# joined by a bridge inside namespace c: the host's own network is not touched. keepalived runs
# with its own config and pid files in a temporary directory (no clash with a system keepalived).
# On exit, also when interrupted, the processes it started are killed by PID, the namespaces (and
# with them the veths and the bridge) and the temporary directory are removed.
#
# Each ringlb listens on 0.0.0.0:8080, so it answers on the VIP whenever the VIP is on its node. To
# listen on the VIP address itself instead, set net.ipv4.ip_nonlocal_bind=1 on both nodes (the
# backup must bind an address it does not hold yet).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=1
FAIL=ringlb
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="${2:-}"; shift 2 || { echo "ha-test: --runs needs a number" >&2; exit 2; } ;;
    --runs=*) RUNS="${1#--runs=}"; shift ;;
    --fail) FAIL="${2:-}"; shift 2 || { echo "ha-test: --fail needs ringlb, term, box or switch" >&2; exit 2; } ;;
    --fail=*) FAIL="${1#--fail=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "ha-test: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "ha-test: --runs wants a positive number, not '$RUNS'" >&2; exit 2; }
case "$FAIL" in ringlb|term|box|switch) ;; *) echo "ha-test: --fail wants ringlb, term, box or switch, not '$FAIL'" >&2; exit 2 ;; esac

die() { echo "ha-test: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, keepalived)"
BIN_DIR="${BIN_DIR:-target/release}"
RINGLB="$BIN_DIR/ringlb"
LOAD="$BIN_DIR/ringlb-load"
[ -x "$RINGLB" ] || die "$RINGLB missing: build it (cargo build --release --workspace) or set BIN_DIR"
[ -x "$LOAD" ] || die "$LOAD missing: build it (cargo build --release --workspace) or set BIN_DIR"
RINGLB="$(cd "$(dirname "$RINGLB")" && pwd)/ringlb"
LOAD="$(cd "$(dirname "$LOAD")" && pwd)/ringlb-load"
for tool in ip curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool missing"
done
if ! command -v keepalived >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "keepalived missing and no apt-get to install it"
  echo "installing keepalived (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq keepalived >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq keepalived >/dev/null; } ||
    die "could not install keepalived with apt-get"
  command -v keepalived >/dev/null 2>&1 || die "keepalived still missing after apt-get"
fi

RATE="${RATE:-2000}"
CONNS="${CONNS:-4}"
PRE_S=3          # load before the kill
LOAD_S=12        # the whole load, per run
NET=10.213.0
VIP="$NET.100"
NS_A="rlb-ha-a-$$"
NS_B="rlb-ha-b-$$"
NS_C="rlb-ha-c-$$"
TMP="$(mktemp -d /tmp/rlb-ha.XXXXXX)"
PIDS=()          # every process this script started (killed by PID on exit)
declare -A RINGLB_PID KA_PID IP_OF PRIO_OF

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM   # a second Ctrl-C does not cut the cleanup short
  local p ns alive
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # keepalived's VRRP child, by the pid file this script gave it.
  for p in "$TMP"/vrrp-*.pid; do
    if [ -f "$p" ]; then kill -TERM "$(cat "$p")" 2>/dev/null || true; fi
  done
  for _ in $(seq 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    { wait "$p"; } 2>/dev/null || true
  done
  # Whatever still runs inside this run's own namespaces (curl probes of keepalived) was started
  # by this script too: the namespaces are named after its PID.
  for ns in "$NS_A" "$NS_B" "$NS_C"; do
    if ip netns pids "$ns" >/dev/null 2>&1; then
      for p in $(ip netns pids "$ns"); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns delete "$ns" 2>/dev/null || true
    fi
  done
  if [ "${HA_KEEP:-0}" = 1 ]; then echo "ha-test: configs and logs kept in $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# has_vip NODE: the VIP is on that node's eth0.
has_vip() {
  local out
  out="$(ip -n "rlb-ha-$1-$$" -o -4 addr show dev eth0 2>/dev/null)" || return 1
  [[ "$out" == *" $VIP/"* ]]
}

# vrrp_state NODE: the last state its keepalived entered (MASTER, BACKUP, FAULT), from its log.
vrrp_state() {
  grep -o 'Entering [A-Z]* STATE' "$TMP/keepalived-$1.log" 2>/dev/null | tail -n 1 | cut -d' ' -f2
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 20 ms.
wait_for() {
  local limit=$(( $(now_ms) + $1 * 1000 )) secs=$1 what=$2
  shift 2
  until "$@"; do
    [ "$(now_ms)" -lt "$limit" ] || die "$what: not within $secs s"
    sleep 0.02
  done
}

healthz_ok() { ip netns exec "rlb-ha-$1-$$" curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:9900/healthz 2>/dev/null; }
origin_up() { ip netns exec "$NS_C" curl -fsS --max-time 1 -o /dev/null "http://$1/" 2>/dev/null; }
state_is() { [ "$(vrrp_state "$1")" = "$2" ]; }

# summarise JSON: "TOTAL FAILED DETAIL" from ringlb-load's --json results. Failed: its errors
# (connect, read, closed, timeout, ...) plus answers other than 2xx.
summarise() {
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
err = sum(r["errors"].values())
bad = sum(v for k, v in r["status"].items() if k != "2xx")
kinds = ",".join("%s=%d" % kv for kv in r["errors"].items() if kv[1]) or "none"
lat = r["latency_us"]
print(r["requests"] + err, err + bad, "errors: %s, non-2xx %d, p99.9 %.0f ms, max %.0f ms"
      % (kinds, bad, lat["p99.9"] / 1000, lat["max"] / 1000))
' "$1"
}

# --- the network ---------------------------------------------------------------------------------
echo "namespaces $NS_A $NS_B $NS_C, subnet $NET.0/24, VIP $VIP; files in $TMP"
for ns in "$NS_A" "$NS_B" "$NS_C"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$NS_C" link add br0 type bridge
ip -n "$NS_C" link set br0 up
IP_OF[a]="$NET.1"; IP_OF[b]="$NET.2"
PRIO_OF[a]=250; PRIO_OF[b]=240
for node in a b; do
  ns="rlb-ha-$node-$$"
  ip -n "$ns" link add eth0 type veth peer name "veth-$node" netns "$NS_C"
  ip -n "$NS_C" link set "veth-$node" master br0
  ip -n "$NS_C" link set "veth-$node" up
  ip -n "$ns" addr add "${IP_OF[$node]}/24" dev eth0
  ip -n "$ns" link set eth0 up
done
# c: the client ($NET.10) and the two members ($NET.11, $NET.12), all on the bridge.
for host in 10 11 12; do ip -n "$NS_C" addr add "$NET.$host/24" dev br0; done

# --- the members ---------------------------------------------------------------------------------
for host in 11 12; do
  ip netns exec "$NS_C" "$LOAD" origin --address "$NET.$host" --port 8081 -t 1 \
    >"$TMP/origin-$host.log" 2>&1 &
  PIDS+=("$!")
done
for host in 11 12; do wait_for 10 "member $NET.$host:8081 answering" origin_up "$NET.$host:8081"; done

# --- ringlb: the same file on both nodes ---------------------------------------------------------
cat >"$TMP/ringlb.toml" <<EOF
[server]
workers = 1
shutdown_grace = "2s"

[log]
level = "warn"

[admin]
address = "127.0.0.1:9900"

[[listen]]
address = "0.0.0.0:8080"

[[balancer]]
name = "app"
members = [
  { url = "http://$NET.11:8081" },
  { url = "http://$NET.12:8081" },
]

[[route]]
path = "/"
balancer = "app"
EOF
"$RINGLB" check -c "$TMP/ringlb.toml" >"$TMP/check.log" 2>&1 ||
  { cat "$TMP/check.log" >&2; die "ringlb check refused $TMP/ringlb.toml"; }

start_ringlb() {
  ip netns exec "rlb-ha-$1-$$" "$RINGLB" run -c "$TMP/ringlb.toml" >>"$TMP/ringlb-$1.log" 2>&1 &
  RINGLB_PID[$1]=$!
  PIDS+=("$!")
  wait_for 10 "ringlb on $1 answering /healthz (log: $TMP/ringlb-$1.log)" healthz_ok "$1"
}
start_ringlb a
start_ringlb b
curl_vip_direct() { ip netns exec "$NS_C" curl -fsS --max-time 1 -o /dev/null "http://$1:8080/"; }
curl_vip_direct "${IP_OF[a]}" || die "ringlb on a does not proxy to the members"
curl_vip_direct "${IP_OF[b]}" || die "ringlb on b does not proxy to the members"

# --- keepalived ----------------------------------------------------------------------------------
for node in a b; do
  other=b; [ "$node" = b ] && other=a
  cat >"$TMP/keepalived-$node.conf" <<EOF
global_defs {
    router_id ringlb-$node
    script_user root
    enable_script_security
}

vrrp_script chk_ringlb {
    script "/usr/bin/curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:9900/healthz"
    interval 1
    timeout 2
    fall 1
    rise 1
}

vrrp_instance ringlb {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority ${PRIO_OF[$node]}
    advert_int 1
    unicast_src_ip ${IP_OF[$node]}
    unicast_peer {
        ${IP_OF[$other]}
    }
    virtual_ipaddress {
        $VIP/24 dev eth0
    }
    track_script {
        chk_ringlb
    }
}
EOF
done

start_keepalived() {
  ip netns exec "rlb-ha-$1-$$" keepalived --vrrp -n -l -D -G \
    -f "$TMP/keepalived-$1.conf" -p "$TMP/keepalived-$1.pid" -r "$TMP/vrrp-$1.pid" \
    >"$TMP/keepalived-$1.log" 2>&1 &
  KA_PID[$1]=$!
  PIDS+=("$!")
}
start_keepalived a
wait_for 15 "VIP on a (log: $TMP/keepalived-a.log)" has_vip a
start_keepalived b
wait_for 10 "keepalived on b in BACKUP (log: $TMP/keepalived-b.log)" state_is b BACKUP
sleep 2
if ! has_vip a || has_vip b; then die "after start the VIP should be on a only"; fi
echo "keepalived $(keepalived --version 2>&1 | head -n 1 | cut -d' ' -f2): VIP on a (MASTER), b BACKUP"

# --- the runs ------------------------------------------------------------------------------------
MOVES=(); FAILS=(); TOTALS=()
for run in $(seq 1 "$RUNS"); do
  if has_vip a; then active=a; standby=b; else active=b; standby=a; fi
  case "$FAIL" in
    ringlb) what="killed ringlb" ;; term) what="stopped ringlb (SIGTERM)" ;;
    box) what="cut the link" ;; switch) what="stopped keepalived" ;;
  esac
  has_vip "$standby" && die "the VIP is on both nodes"
  json="$TMP/load-$run.json"
  ip netns exec "$NS_C" "$LOAD" -q -t 1 -c "$CONNS" --rate "$RATE" -d "${LOAD_S}s" --timeout 2s \
    --json "$json" "http://$VIP:8080/" >"$TMP/load-$run.log" 2>&1 &
  load_pid=$!
  PIDS+=("$load_pid")
  # Plus a random part of a second: the health check runs once a second, and a kill always at the
  # same phase of it would measure the same detection delay every time.
  sleep "$PRE_S.$(printf '%03d' $((RANDOM % 1000)))"

  t0=$(now_ms)
  case "$FAIL" in
    ringlb) kill -KILL "${RINGLB_PID[$active]}"
            { wait "${RINGLB_PID[$active]}"; } 2>/dev/null || true ;;
    term) kill -TERM "${RINGLB_PID[$active]}" ;;
    box) ip -n "rlb-ha-$active-$$" link set eth0 down ;;
    switch) kill -TERM "${KA_PID[$active]}" ;;
  esac
  gone=""
  until has_vip "$standby"; do
    [ -z "$gone" ] && ! has_vip "$active" && gone=$(( $(now_ms) - t0 ))
    [ $(( $(now_ms) - t0 )) -lt 20000 ] || die "run $run: the VIP did not reach $standby within 20 s"
    sleep 0.01
  done
  moved=$(( $(now_ms) - t0 ))
  [ -z "$gone" ] && gone=$moved
  wait "$load_pid" || die "run $run: ringlb-load failed: $(cat "$TMP/load-$run.log")"

  read -r total failed detail < <(summarise "$json")

  # Bring the failed node back: its keepalived leaves FAULT for BACKUP; with nopreempt the VIP
  # stays on the standby (no second move).
  case "$FAIL" in
    ringlb) start_ringlb "$active" ;;
    term) { wait "${RINGLB_PID[$active]}"; } 2>/dev/null || true
          start_ringlb "$active" ;;
    box) ip -n "rlb-ha-$active-$$" link set eth0 up ;;
    switch) { wait "${KA_PID[$active]}"; } 2>/dev/null || true
            start_keepalived "$active" ;;
  esac
  wait_for 10 "keepalived on $active back in BACKUP" state_is "$active" BACKUP
  sleep 4
  if has_vip "$standby" && ! has_vip "$active"; then
    back="VIP stayed on $standby (nopreempt)"
  elif has_vip "$active"; then
    back="VIP went back to $active (preempted)"
  else
    die "run $run: the VIP is on neither node after $active came back"
  fi

  echo "run $run/$RUNS: $what on $active; VIP left $active after ${gone} ms, on $standby after ${moved} ms;" \
    "load ${RATE}/s: $total requests, $failed failed ($detail); $back"
  MOVES+=("$moved"); FAILS+=("$failed"); TOTALS+=("$total")
done

median() { printf '%s\n' "$@" | sort -n | python3 -c 'import statistics, sys; print(round(statistics.median(int(l) for l in sys.stdin)))'; }
echo "median of $RUNS run(s): VIP moved in $(median "${MOVES[@]}") ms; $(median "${FAILS[@]}") failed of $(median "${TOTALS[@]}") requests" \
  "(per run: moves ${MOVES[*]} ms; failed ${FAILS[*]})"
