#!/usr/bin/env bash
# The data-plane bench (issue 13; the seed's 深入探讨 1: which method is
# fastest, and how to measure it): packets/s of small UDP packets forwarded
# through the lab gateway, for a plain NAT gateway (the baseline: one default
# route and MASQUERADE) and for each of dwprov's methods at 3,894 and 16,000
# destination prefixes on the CNC line, plus how long the apply took (load).
#
#   sudo scripts/bench-dataplane.sh [-n RUNS] [-t SECONDS] [--methods "static fwmark policy"]
#        [--sizes "3894 16000"] [--variant NAME=FILE]... [--paired PAIRS]
#
# --methods/--sizes measure only those rows (while iterating on one method).
# Methods: static fwmark policy (iptables), nft-fwmark (fwmark with
# `firewall: nftables`), set (nftables prefix sets).
# --variant measures, after each fwmark row, the same gateway with dwprov's
# iptables replaced by FILE (an iptables-restore --noflush payload of the
# DWPROV-* chains and jumps; the rows "fwmark NAME"): how alternative
# renderings were compared (docs/methods.md).
#
# Figures, not pass/fail: median [min-max] of RUNS (default 3) floods of
# SECONDS (default 2) from the LAN client (cli) to the CNC user (ucnc, in
# the CNC list), counted by a sink on ucnc (bench/udpflood.rs). The floods
# run in rounds (every gateway once per round, set up afresh), and a row's
# cost is the median of its per-packet time minus the baseline's of the same
# round: a loaded machine's drift hits every row alike; beside it, a 95%
# confidence interval of that median (distribution-free, from the order
# statistics of the per-round costs; from 6 rounds on): a goal such as
# "within 0.2 us" is shown only when the interval's upper end is under it.
# --paired PAIRS (for a cost near a goal, where rounds are too coarse):
# a second lab beside the first, the baseline set up once in one and each
# row once in the other, then PAIRS pairs of floods of SECONDS, one through
# each lab back to back (which first alternates): a row's cost is the
# median of its pairs' differences, each taken a few seconds apart, so the
# machine's drift cancels within a pair. Its first row, "baseline
# (control)", is the baseline in both labs: what the two labs differ by
# alone, which a row's cost must be read against.
# Per-packet time is
# measured twice: from packets/s, and as the sender's CPU time per packet
# (its softirq carries each packet through the lab; unlike packets/s it does
# not fall when other work takes the core: read that one). The lab has
# a prefix of its own (dwd<pid>-) and is removed on exit, also on failure.
# The 16,000-prefix list is unicom.txt plus /26s of 172.16.0.0/12 (no real
# list is that long here). Sender, gateway and sink share this machine's
# cores: compare rows of one run, not runs of different machines.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
RUNS=3 SECS=2 PAIRS=
METHODS=${DP_METHODS:-static fwmark policy}
SIZES=${DP_SIZES:-3894 16000}
VARIANTS=()
while (($#)); do
    case "$1" in
    --methods) METHODS=${2:?--methods needs a list}; shift 2 ;;
    --sizes) SIZES=${2:?--sizes needs a list}; shift 2 ;;
    --variant)
        [[ ${2:-} == ?*=?* ]] || { echo "--variant needs NAME=FILE" >&2; exit 2; }
        [ -r "${2#*=}" ] || { echo "--variant: cannot read ${2#*=}" >&2; exit 2; }
        VARIANTS+=("${2%%=*}=$(realpath "${2#*=}")"); shift 2 ;;
    -n) RUNS=${2:?-n needs a number}; shift 2 ;;
    --paired) PAIRS=${2:?--paired needs a number}; shift 2 ;;
    -t) SECS=${2:?-t needs seconds}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "the lab needs root (network namespaces): run with sudo" >&2; exit 1; }
say() { printf '[bench-dataplane] %s\n' "$*" >&2; }
die() { printf '[bench-dataplane] error: %s\n' "$*" >&2; exit 1; }

P="dwd$$-"
D="/tmp/dwprov-bench-dataplane-$$"
BIN=$ROOT/target/release/dwprov
FLOOD=$ROOT/target/release/examples/udpflood

scripts/install-deps.sh >&2
say "cargo build --release (dwprov, dwprov-agent, the udpflood example)"
cargo build --release --quiet --bins --example udpflood

bench_lab_up "$P" "$D"
trap 'exit 141' PIPE
gw() { "${LAB[@]}" exec gw "$@"; }
in_role() { local r=$1; shift; "${LAB[@]}" exec "$r" "$@"; }
RP_ETH1=$(gw cat /proc/sys/net/ipv4/conf/eth1/rp_filter)
RP_ETH2=$(gw cat /proc/sys/net/ipv4/conf/eth2/rp_filter)
reset_gw() {
    { printf 'RP_ETH1=%s RP_ETH2=%s\n' "$RP_ETH1" "$RP_ETH2"; cat bench/reset.sh; } | gw sh -s >"$B/reset.out" 2>&1 ||
        die "resetting the lab gateway failed: $(tail -n 5 "$B/reset.out")"
}

# Prefix lists: the real 3,894, and 16,000 (the real ones, then /26s).
B=$D/dataplane
mkdir -p "$B"
cp examples/isp/unicom.txt "$B/list-3894.txt"
bench_list16000 "$B/list-16000.txt"

# The seed inventory (scripts/bench-lib.sh); a method of nft-fwmark is fwmark
# with `firewall: nftables`, set is always nftables.
inventory() { # FILE METHOD LIST
    case $2 in
    nft-fwmark) bench_inventory "$1" fwmark nftables "$3" ;;
    set) bench_inventory "$1" set nftables "$3" ;;
    *) bench_inventory "$1" "$2" iptables "$3" ;;
    esac
}

median() { bench_median "$@"; }
# ci95 VALUES...: "[LOW..HIGH]", a 95% confidence interval of the median of
# VALUES: the order statistics of ranks (n - 1.96 sqrt n)/2 and
# 1 + (n + 1.96 sqrt n)/2 (the normal approximation of the binomial, rounded
# outwards, so it errs wide); "-" under 6 values, where it would be the range.
ci95() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
        if (NR < 6) { print "-"; exit }
        h = 1.96 * sqrt(NR); lo = int((NR - h) / 2); hi = 1 + (NR + h) / 2
        if (hi > int(hi)) hi = int(hi) + 1
        if (lo < 1) lo = 1; if (hi > NR) hi = NR
        printf "[%+.2f..%+.2f]", a[lo], a[hi] }'
}

# send_ns LAB...: one flood of SECS from the LAN client of the lab whose
# lab.sh command line is LAB to the CNC user; prints the sender's CPU time
# per packet sent (ns, see udpflood.rs), nothing if it reported none.
send_ns() {
    "$@" exec cli "$FLOOD" send 100.65.1.10:9999 "$SECS" |
        awk '/^sent [0-9]+ cpu_ns [0-9]+$/ && $2 > 0 {printf "%.0f", $4 / $2}'
}

# flood: one flood of SECS through the gateway as it is; prints the sink's
# packets/s and the sender's CPU time per packet sent.
flood() {
    in_role ucnc "$FLOOD" sink 9999 "$((SECS + 2))" >"$B/sink" &
    local sink=$! out cpu
    sleep 0.5
    cpu=$(send_ns "${LAB[@]}")
    wait "$sink"
    out=$(sed -n 's/^received [0-9]* pps \([0-9]*\)$/\1/p' "$B/sink")
    [ -n "$out" ] && [ "$out" -gt 0 ] || die "no packet reached the sink: $(cat "$B/sink")"
    [ -n "$cpu" ] && [ "$cpu" -gt 0 ] || die "the sender reported no CPU time (no /proc/self/schedstat?)"
    echo "$out $cpu"
}

# The gateways measured: "base", "method M N" or "variant NAME N FILE".
CONFIGS=(base)
for n in $SIZES; do
    for m in $METHODS; do
        inventory "$B/$m-$n.yaml" "$m" "$B/list-$n.txt"
        CONFIGS+=("method $m $n")
        [ "$m" = fwmark ] || continue
        for v in "${VARIANTS[@]}"; do CONFIGS+=("variant ${v%%=*} $n ${v#*=}"); done
    done
done

# setup CONFIG: the clean gateway, then that config on it; sets LOAD (s)
# for a method's apply.
setup() {
    local kind name n file s e
    read -r kind name n file <<<"$1"
    gw sh -c 'iptables -t nat -D POSTROUTING -s 192.168.0.0/24 -o eth2 -j MASQUERADE' 2>/dev/null || true
    reset_gw
    case $kind in
    base)
        gw sh -c 'ip route replace default via 203.0.113.1 dev eth2 proto 202 &&
            iptables -t nat -A POSTROUTING -s 192.168.0.0/24 -o eth2 -j MASQUERADE' ;;
    method | variant)
        [ "$kind" = variant ] && set -- fwmark || set -- "$name"
        s=$EPOCHREALTIME
        in_role ctl "$BIN" apply -i "$B/${INV_PRE:-}$1-$n.yaml" --yes >"$B/apply.out" 2>&1 ||
            die "apply of $1-$n failed: $(tail -n 5 "$B/apply.out")"
        e=$EPOCHREALTIME
        LOAD=$(awk -v u=$(( ${e/./} - ${s/./} )) 'BEGIN {printf "%.2f s", u/1e6}')
        [ "$kind" = variant ] || return 0
        # dwprov's routes and rules stay; only its iptables are swapped.
        # iptables-restore of a save declares every built-in chain, and
        # iptables-nft makes each a hook of its own: drop the tables left
        # without rules, so the variant pays only for its own chains.
        gw sh -c 'iptables-save | grep -v DWPROV | iptables-restore &&
            for t in mangle nat; do
                iptables-save -t "$t" | grep -q "^-A " || nft delete table ip "$t" 2>/dev/null || true
            done' || die "removing dwprov's iptables for variant $name failed"
        gw iptables-restore --noflush <"$file" ||
            die "variant $name: iptables-restore of $file failed" ;;
    esac
}

# --paired: the second lab, the baseline in the first, each row in the
# second, and PAIRS back-to-back floods through the two (see the top).
if [ -n "$PAIRS" ]; then
    [[ "$PAIRS" =~ ^[0-9]+$ ]] && ((PAIRS >= 6)) || die "--paired needs a number of pairs, at least 6"
    LAB_A=("${LAB[@]}")
    LAB_B=("$ROOT/scripts/lab.sh" --prefix "${P}b-" --dir "$D-b")
    # Both labs go on exit, also on failure or ^C (bench_lab_down ends it).
    paired_down() {
        local rc=$?
        "${LAB_B[@]}" down >/dev/null 2>&1 || say "warning: lab down failed: ${LAB_B[*]} down"
        "${LAB_A[@]}" down >/dev/null 2>&1 || say "warning: lab down failed: ${LAB_A[*]} down"
        exit "$rc"
    }
    trap paired_down EXIT
    say "second lab up (prefix ${P}b-, dir $D-b)"
    "${LAB_B[@]}" up >/dev/null
    # The rows' inventories for the second lab (its own key and known_hosts).
    for n in $SIZES; do
        for m in $METHODS; do D=$D-b inventory "$B/b-$m-$n.yaml" "$m" "$B/list-$n.txt"; done
    done
    # One sink per lab for the whole run (the lab's teardown ends it):
    # only the sender's CPU time is read here.
    "${LAB_A[@]}" exec ucnc "$FLOOD" sink 9999 86400 >/dev/null 2>&1 &
    "${LAB_B[@]}" exec ucnc "$FLOOD" sink 9999 86400 >/dev/null 2>&1 &
    sleep 0.5
    LAB=("${LAB_A[@]}") INV_PRE=
    setup base
    ROWS=()
    for c in control "${CONFIGS[@]:1}"; do
        LAB=("${LAB_B[@]}") INV_PRE=b-
        if [ "$c" = control ]; then setup base; else setup "$c"; fi
        say "$PAIRS pairs: $c"
        diffs=() a_ns=() b_ns=()
        for ((i = 1; i <= PAIRS; i++)); do
            if ((i % 2)); then
                a=$(send_ns "${LAB_A[@]}") b=$(send_ns "${LAB_B[@]}")
            else
                b=$(send_ns "${LAB_B[@]}") a=$(send_ns "${LAB_A[@]}")
            fi
            [ -n "$a" ] && [ -n "$b" ] || die "a flood reported no CPU time (no /proc/self/schedstat?)"
            a_ns+=("$a") b_ns+=("$b")
            say "  pair $i: A $a ns/pkt, B $b ns/pkt"
            diffs+=("$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", (b - a) / 1000}')")
        done
        read -r kind name n _ <<<"$c"
        case $kind in
        control) label="baseline (control)" n=- ;;
        method) label=$name ;;
        variant) label="fwmark $name" ;;
        esac
        ROWS+=("$(printf '%-20s %8s %6s %9s %9s %-9s %s' "$label" "$n" "$PAIRS" \
            "$(median "${a_ns[@]}")" "$(median "${b_ns[@]}")" "$(printf '%+.2f us' "$(median "${diffs[@]}")")" "$(ci95 "${diffs[@]}")")")
    done
    printf '\ndwprov data-plane bench, paired  %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'machine   %s cores, kernel %s; load %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'method    two labs, the baseline (plain NAT) in A, the row in B; PAIRS floods of %s s through each,\n' "$SECS"
    printf '          back to back (order alternating), 18-byte UDP payloads, 16 flows, cli -> gw -> cnc -> ucnc;\n'
    printf '          ns/pkt: the sender'"'"'s CPU time per packet sent, median over pairs; cost: median of the\n'
    printf '          pairs'"'"' differences (B - A), with a 95%% confidence interval of that median. The control\n'
    printf '          row (the baseline in both) is what the labs differ by alone.\n\n'
    printf '%-20s %8s %6s %9s %9s %-9s %s\n' "gateway (in B)" "prefixes" "pairs" "A ns/pkt" "B ns/pkt" "cost" "95% CI (us)"
    printf '%s\n' "${ROWS[@]}"
    exit 0
fi

# Rounds: each round floods every config once, so a change in the machine's
# load hits all rows alike; a row's cost is the median over rounds of its
# per-packet time minus the baseline's in the same round.
declare -A ALL CPUS COSTS PCOSTS LOADS R_P R_NS
for ((r = 1; r <= RUNS; r++)); do
    # Each round starts one gateway later: no row is always first after a build or a lull.
    for ((k = 0; k < ${#CONFIGS[@]}; k++)); do
        c=${CONFIGS[$(((k + r - 1) % ${#CONFIGS[@]}))]}
        say "round $r/$RUNS: $c"
        setup "$c"
        [ "${c%% *}" = method ] && [ -z "${LOADS[$c]:-}" ] && LOADS[$c]=$LOAD
        read -r p ns <<<"$(flood)"
        ALL[$c]+=" $p"
        CPUS[$c]+=" $ns"
        R_P[$c]=$p R_NS[$c]=$ns
    done
    # Against the baseline of this round (measured before or after the row).
    for c in "${CONFIGS[@]:1}"; do
        COSTS[$c]+=" $(awk -v b="${R_NS[base]}" -v n="${R_NS[$c]}" 'BEGIN {printf "%.3f", (n - b) / 1000}')"
        PCOSTS[$c]+=" $(awk -v b="${R_P[base]}" -v p="${R_P[$c]}" 'BEGIN {printf "%.3f", 1e6/p - 1e6/b}')"
    done
done

ROWS=()
row() { ROWS+=("$(printf '%-20s %8s %7s %8s %-16s %6s %-12s %-9s %-15s %s' "$@")"); }
us() { printf '%+.2f' "$(median "$@")"; }
for c in "${CONFIGS[@]}"; do
    read -r kind name n _ <<<"$c"
    read -ra pps <<<"${ALL[$c]}"
    read -ra ns <<<"${CPUS[$c]}"
    read -ra costs <<<"${COSTS[$c]:-}"
    read -ra pcosts <<<"${PCOSTS[$c]:-}"
    span() { printf '[%s]' "$(printf '%s\n' "$@" | sort -n | sed -n '1p;$p' | tr '\n' '-' | sed 's/-$//')"; }
    figures=("$(median "${pps[@]}")" "$(span "${pps[@]}")" "$(median "${ns[@]}")" "$(span "${ns[@]}")")
    case $kind in
    base) row "plain NAT (baseline)" "-" "-" "${figures[@]}" "-" "-" "-" ;;
    method) row "$name" "$n" "${LOADS[$c]}" "${figures[@]}" "$(us "${costs[@]}") us" "$(ci95 "${costs[@]}")" "$(us "${pcosts[@]}") us" ;;
    variant) row "fwmark $name" "$n" "-" "${figures[@]}" "$(us "${costs[@]}") us" "$(ci95 "${costs[@]}")" "$(us "${pcosts[@]}") us" ;;
    esac
done

printf '\ndwprov data-plane bench  %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
printf 'machine   %s cores, kernel %s; load %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'method    median [min-max] of %s rounds, one flood of %s s per gateway each, 18-byte UDP payloads\n' "$RUNS" "$SECS"
printf '          (64-byte frames), 16 flows, cli -> gw -> cnc -> ucnc. ns/pkt: the sender'"'"'s CPU time per packet\n'
printf '          sent (its softirq carries each packet through the lab); cost: median over rounds of the\n'
printf '          difference to the baseline of the same round, by CPU time (with a 95%% confidence\n'
printf '          interval of that median, from 6 rounds on) and by packets/s\n\n'
printf '%-20s %8s %7s %8s %-16s %6s %-12s %-9s %-15s %s\n' "gateway" "prefixes" "load" "pkts/s" "[min-max]" "ns/pkt" "[min-max]" "cost cpu" "95% CI (us)" "cost pps"
printf '%s\n' "${ROWS[@]}"
