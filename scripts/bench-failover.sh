#!/usr/bin/env bash
# dwprov failover benchmark on a lab gateway of its own: figures, not pass/fail.
#
#   sudo scripts/bench-failover.sh [-n N]
#
# Brings up a lab (unique prefix dwbf<pid>-, dir /tmp/dwprov-bench-failover-<pid>;
# torn down on exit, also on failure or ^C), applies the seed topology with
# `health` on both lines and the real 3,894-prefix unicom list on CNC, and
# prints (issue 11's targets in brackets):
#   1 detection-to-switch  outage start (CNC's router silent) to the first new
#                          LAN connection to a CNC user that leaves by CTC,
#                          median [min-max] of N (default 5, or BENCH_N), for
#                          the defaults (interval 1, timeout 1, down 3) [<= 4 s]
#                          and for interval 0.2, down 3 [<= 1 s] (timeout
#                          1, the default, and 0.2). A real outage starts at
#                          any point of the agent's probe interval: run i
#                          starts it (i+0.5)/N of an interval later than the
#                          one before, so the N runs spread evenly over the
#                          interval (min: the best phase, max: the worst,
#                          about interval*down + timeout). New connections
#                          are opened every 50 ms, each on its own, so one
#                          hanging on the dead line delays none of the others.
#   2 one transition       kernel operations and their wall time, from the
#                          agent's own per-round figure [<= 50 ms]
#   3 agent cost           CPU (share of one core over 30 s) and RSS of the
#                          agent on the gateway, probing both lines, with the
#                          defaults and with interval 0.2, timeout 0.2 [< 1 %, < 10 MB]
# Uses target/release/dwprov (cargo build --release first; DWPROV= to use another
# binary as is).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

N=${BENCH_N:-5}
while (($#)); do
    case "$1" in
    -n) N=${2:?-n needs a number}; shift 2 ;;
    -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "-n needs a positive number" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "must run as root (the lab)" >&2; exit 1; }

PREFIX="dwbf$$-"
DIR="/tmp/dwprov-bench-failover-$$"
if [[ -z "${DWPROV:-}" ]]; then
    cargo build --release -j1
    DWPROV=$ROOT/target/release/dwprov
fi
STATE=/run/dwprov-agent   # ownership::AGENT_STATE_DIR

say() { printf '[bench-failover] %s\n' "$*" >&2; }
lab() { "${LAB[@]}" "$@"; }

in_ns() { local role=$1; shift; ip netns exec "$PREFIX$role" "$@"; }
gw() { lab exec gw sh -c "$1"; }
dwprov() { in_ns ctl env NO_COLOR=1 "$DWPROV" "$@"; }
now() { date +%s.%N; }

# inventory INTERVAL DOWN TIMEOUT: the seed with health on both lines,
# unicom on CNC, hairpin (bench-lib.sh).
inventory() {
    D=$DIR bench_inventory "$DIR/inventory-bench.yaml" fwmark iptables "$ROOT/examples/isp/unicom.txt" \
        --health "interval: $1, down: $2, timeout: $3" --hairpin
    dwprov apply -i "$DIR/inventory-bench.yaml" --yes >"$DIR/apply.log" 2>&1 ||
        { cat "$DIR/apply.log" >&2; echo "apply failed" >&2; exit 1; }
}

# The state of line $1 in the agent's status file.
state() {
    gw "cat $STATE/status.json 2>/dev/null" |
        python3 -c 'import json,sys
try: d=json.load(sys.stdin)
except Exception: sys.exit(0)
print(next((l["state"] for l in d.get("lines",[]) if l["name"]==sys.argv[1]),""))' "$1"
}

# wait_for SECS CMD...: poll every 0.1 s.
wait_for() {
    local end
    end=$(awk -v n="$(now)" -v s="$1" 'BEGIN{printf "%.3f", n+s}')
    shift
    until "$@"; do
        awk -v n="$(now)" -v e="$end" 'BEGIN{exit !(n>e)}' && return 1
        sleep 0.1
    done
}
line_is() { [[ "$(state "$1")" == "$2" ]]; }
via() { in_ns cli curl -sS --max-time 0.5 http://100.65.1.10/ 2>/dev/null | grep -q "peer=$1 "; }

# first_via ADDR SECS: opens a new connection to a CNC user every 50 ms, each
# in the background (one hanging on the dead line holds up no other), until
# one leaves by ADDR; prints when that one completed. Fails after SECS.
first_via() {
    local out="$DIR/first-via" end
    rm -f "$out"
    end=$(awk -v n="$(now)" -v s="$2" 'BEGIN{printf "%.3f", n+s}')
    until [[ -s "$out" ]]; do
        if awk -v n="$(now)" -v e="$end" 'BEGIN{exit !(n>e)}'; then
            wait
            return 1
        fi
        { via "$1" && now >>"$out"; } &
        sleep 0.05
    done
    wait
    sort -g "$out" | head -n 1
}

outage_on() {
    in_ns cnc sh -c 'iptables -N DWBF && iptables -A DWBF -j DROP &&
        for c in "INPUT -i" "FORWARD -i" "FORWARD -o" "OUTPUT -o"; do iptables -I ${c% *} ${c#* } cust0 -j DWBF; done'
}
outage_off() {
    in_ns cnc sh -c 'for c in "INPUT -i" "FORWARD -i" "FORWARD -o" "OUTPUT -o"; do iptables -D ${c% *} ${c#* } cust0 -j DWBF; done;
        iptables -F DWBF && iptables -X DWBF'
}

median() { sort -g | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f s [%.2f-%.2f]", m, a[1], a[NR]}'; }

# detect LABEL INTERVAL: N outages of CNC (up: 5 rounds), each timed to the
# first new connection via CTC.
detect() {
    local i t0 t1 times=() hold phase
    # The agent's hold-down: state changes are at least down+up rounds apart,
    # so an outage right after a recovery would time the hold-down, not the
    # detection. Wait that long (and a second) after every "up".
    hold=$(awk -v i="$2" 'BEGIN{printf "%.1f", i*(3+5)+1}')
    wait_for 30 line_is cnc up || { echo "cnc not up" >&2; exit 1; }
    sleep "$hold"
    for ((i = 0; i < N; i++)); do
        wait_for 30 via 203.0.113.2 || { echo "no traffic via cnc" >&2; exit 1; }
        # Each run's outage starts at another phase of the probe interval
        # (the waits above end just after a round, at about the same phase).
        phase=$(awk -v i="$i" -v n="$N" -v iv="$2" 'BEGIN{printf "%.3f", (i+0.5)/n*iv}')
        sleep "$phase"
        t0=$(now)
        outage_on
        t1=$(first_via 198.51.100.2 30) || { echo "no failover" >&2; exit 1; }
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')")
        outage_off
        wait_for 60 line_is cnc up || { echo "cnc not back" >&2; exit 1; }
        sleep "$hold"
    done
    printf '  %-34s %s  (runs: %s)\n' "$1" "$(printf '%s\n' "${times[@]}" | median)" "${times[*]}"
}

say "$N runs"
# The lab (bench-lib.sh): torn down on exit, also on failure or ^C.
bench_lab_up "$PREFIX" "$DIR"

echo "1 detection-to-switch (outage start -> first new connection via CTC)"
inventory 1 3 1
detect "defaults (interval 1, down 3) [<= 4 s]" 1

echo "2 one transition, 3,894 prefixes on CNC (the agent's figures, last outage)"
# From the last "up -> down" to the round's kernel operations line.
gw "cat $STATE/agent.log" | awk '/up -> down/ {buf=""; on=1} on {buf=buf "  " $0 "\n"} on && /kernel operation/ {out=buf; on=0} END {printf "%s", out}'

# cost LABEL: the agent's CPU over 30 s and its RSS.
cost() {
    local pid a b rss hz
    wait_for 30 line_is cnc up || { echo "cnc not up" >&2; exit 1; }
    pid=$(gw "cat $STATE/agent.pid")
    ticks() { gw "awk '{print \$14+\$15}' /proc/$pid/stat"; }
    hz=$(getconf CLK_TCK)
    a=$(ticks); sleep 30; b=$(ticks)
    rss=$(gw "awk '/^VmRSS/ {print \$2}' /proc/$pid/status")
    awk -v a="$a" -v b="$b" -v hz="$hz" -v rss="$rss" -v l="$1" \
        'BEGIN{printf "  %-34s CPU %.2f %% of a core [< 1 %%], RSS %.1f MB [< 10 MB]\n", l, (b-a)/hz/30*100, rss/1024}'
}

echo "3 agent cost (30 s, both lines probed, 2 targets each)"
cost "defaults (every 1 s)"

# Rounds start every interval whatever the earlier ones' lost probes are
# doing, so a lost probe delays its own round's verdict by `timeout`, not
# the next round: detection ~ interval*down + timeout.
inventory 0.2 3 1
detect "interval 0.2, down 3 (timeout 1) [<= 1 s]" 0.2
inventory 0.2 3 0.2
detect "interval 0.2, down 3, timeout 0.2" 0.2
cost "interval 0.2, timeout 0.2"
