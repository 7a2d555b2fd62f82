#!/usr/bin/env bash
# The nftables benchmark (issue 12): iptables+fwmark, nftables+fwmark and
# nftables+set side by side on one lab gateway, in one run.
#
#   sudo scripts/bench-nftables.sh [-n N] [--dataplane]
#
# Prints, median [min-max] of N runs (default 3, or BENCH_N):
#   - the 3,894-prefix CNC list: apply from empty and one prefix added, each
#     with its wall time and the bytes of script sent (hosts[0].applied);
#   - the 16,000-prefix list with method set: dwprov apply from empty, the
#     `nft -f` load of the table timed on the gateway itself (target <= 0.2 s),
#     and one element added by `nft add element` at 3,894 and at 16,000
#     elements (O(1): the two should match) plus dwprov's one-prefix apply;
#   - with --dataplane, afterwards: scripts/bench-dataplane.sh --methods
#     "fwmark nft-fwmark set" (packets/s through the gateway; its own lab).
# Release build; its own lab (prefix dwn<pid>-, removed on exit or failure).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
N=${BENCH_N:-3}
DATAPLANE=no
while (($#)); do
    case "$1" in
    -n) N=${2:?-n needs a number}; shift 2 ;;
    --dataplane) DATAPLANE=yes; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$N" =~ ^[0-9]+$ ]] && ((N >= 1)) || { echo "N must be a positive number" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "the lab needs root (network namespaces)" >&2; exit 1; }
say() { printf '[bench-nftables] %s\n' "$*" >&2; }
die() { printf '[bench-nftables] error: %s\n' "$*" >&2; exit 1; }

P="dwn$$-"
D="/tmp/dwprov-bench-nftables-$$"
BIN=$ROOT/target/release/dwprov
scripts/install-deps.sh >&2
say "cargo build --release"
cargo build --release --quiet --bins

bench_lab_up "$P" "$D"
gw() { "${LAB[@]}" exec gw "$@"; }
ctl() { ip netns exec "${P}ctl" "$@"; }
B=$D/nft
mkdir -p "$B"
RP_ETH1=$(gw cat /proc/sys/net/ipv4/conf/eth1/rp_filter)
RP_ETH2=$(gw cat /proc/sys/net/ipv4/conf/eth2/rp_filter)
reset_gw() {
    { printf 'RP_ETH1=%s RP_ETH2=%s\n' "$RP_ETH1" "$RP_ETH2"; cat bench/reset.sh; } | gw sh -s >"$B/reset.out" 2>&1 ||
        die "resetting the lab gateway failed: $(tail -n 5 "$B/reset.out")"
}

CNC=$ROOT/examples/isp/unicom.txt
bench_list16000 "$B/list-16000.txt"
EXTRA=", 100.66.0.0/16"
# name method firewall list
CONFIGS=("iptables+fwmark fwmark iptables $CNC" "nftables+fwmark fwmark nftables $CNC"
    "nftables+set set nftables $CNC" "nftables+set(16000) set nftables $B/list-16000.txt")
for c in "${CONFIGS[@]}"; do
    read -r name m fw list <<<"$c"
    bench_inventory "$B/$name.yaml" "$m" "$fw" "$list"
    bench_inventory "$B/$name+1.yaml" "$m" "$fw" "$list" "$EXTRA"
done

median() { bench_median "$@"; }
fig() { # microseconds... -> "123 ms [120-130]"
    local m lo hi
    m=$(median "$@")
    lo=$(printf '%s\n' "$@" | sort -n | head -1) hi=$(printf '%s\n' "$@" | sort -n | tail -1)
    awk -v m="$m" -v l="$lo" -v h="$hi" 'BEGIN {printf "%.1f ms [%.1f-%.1f]", m/1000, l/1000, h/1000}'
}
# apply_us INV: one dwprov apply; prints "microseconds script_bytes changes".
apply_us() {
    local s e
    s=$EPOCHREALTIME
    ctl "$BIN" apply -i "$1" --yes --format json --no-color >"$B/out.json" 2>"$B/err" ||
        die "apply of $1 failed: $(tail -n 5 "$B/err"; grep -o '"error":{[^}]*}' "$B/out.json" | head -n 2)"
    e=$EPOCHREALTIME
    printf '%s ' $(( ${e/./} - ${s/./} ))
    python3 -c 'import json,sys
a = json.load(open(sys.argv[1]))["hosts"][0]["applied"]
print(a["script_bytes"], a["changes"])' "$B/out.json"
}

declare -A EMPTY ONE EBYTES OBYTES
for ((i = 1; i <= N; i++)); do
    for c in "${CONFIGS[@]}"; do
        read -r name _ <<<"$c"
        say "run $i/$N: $name"
        reset_gw
        read -r us bytes _ <<<"$(apply_us "$B/$name.yaml")"
        EMPTY[$name]+=" $us" EBYTES[$name]=$bytes
        read -r us bytes _ <<<"$(apply_us "$B/$name+1.yaml")"
        ONE[$name]+=" $us" OBYTES[$name]=$bytes
    done
done

# On the gateway itself (16,000 elements converged, plus the extra prefix):
# the table's `nft -f` load, and one element added by hand, both timed there.
on_gw_us() { # shell snippet, timed on the gateway: prints microseconds
    gw sh -c "s=\$(date +%s%N); $1 >/dev/null || exit 1; e=\$(date +%s%N); echo \$(( (e - s) / 1000 ))"
}
elem_us() { # median of N element additions (then removals, untimed)
    local r=() k
    for ((k = 0; k < N; k++)); do
        r+=("$(on_gw_us "nft add element inet dwprov line_cnc '{ 100.67.0.0/16 }'")")
        gw nft delete element inet dwprov line_cnc '{ 100.67.0.0/16 }'
    done
    fig "${r[@]}"
}
say "the nft -f load of 16,000 elements, on the gateway"
reset_gw
apply_us "$B/nftables+set(16000).yaml" >/dev/null
ELEMS=$(gw nft list set inet dwprov line_cnc | grep -oE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+' | wc -l)
gw sh -c 'nft list table inet dwprov > /tmp/dwprov-bench-table.nft'
LOADS=()
for ((k = 0; k < N; k++)); do
    gw nft delete table inet dwprov
    LOADS+=("$(on_gw_us 'nft -f /tmp/dwprov-bench-table.nft')")
done
E16=$(elem_us)
reset_gw
apply_us "$B/nftables+set.yaml" >/dev/null
E3=$(elem_us)
gw rm -f /tmp/dwprov-bench-table.nft

printf '\ndwprov nftables bench  %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
printf 'machine   %s cores, kernel %s, nft %s; load %s\n' "$(nproc)" "$(uname -r)" \
    "$(gw nft --version | awk '{print $2}')" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'method    median [min-max] of %s runs, release build, wall clock from the controller\n\n' "$N"
fmt='%-22s %-22s %12s %-22s %12s\n'
# shellcheck disable=SC2059
printf "$fmt" "backend+method" "apply from empty" "bytes sent" "one prefix added" "bytes sent"
for c in "${CONFIGS[@]}"; do
    read -r name _ <<<"$c"
    read -ra e <<<"${EMPTY[$name]}"
    read -ra o <<<"${ONE[$name]}"
    # shellcheck disable=SC2059
    printf "$fmt" "$name" "$(fig "${e[@]}")" "${EBYTES[$name]}" "$(fig "${o[@]}")" "${OBYTES[$name]}"
done
echo
echo "16,000-prefix set ($ELEMS elements listed), on the gateway:"
echo "  nft -f of the table:           $(fig "${LOADS[@]}")  (target <= 200 ms)"
echo "  one element added (16,000):    $E16"
echo "  one element added (3,894):     $E3   (O(1): the same as at 16,000)"

if [ "$DATAPLANE" = yes ]; then
    echo
    scripts/bench-dataplane.sh --methods "fwmark nft-fwmark set" --sizes "3894 16000"
fi
