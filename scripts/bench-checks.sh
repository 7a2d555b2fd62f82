#!/usr/bin/env bash
# The checks' share of a one-prefix plan at 16,000 set elements (issue 12).
#
#   sudo scripts/bench-checks.sh [-n N] [BIN...]
#
# Its own lab (prefix dwc<pid>-, removed on exit): the 16,000-prefix list
# with method set and firewall nftables applied once, then for each BIN
# (default target/release/dwprov) N runs each of `dwprov plan` of one prefix
# added, with DWPROV_PHASE_TIMES=1 (its "checks" phase), and of
# `dwprov check --offline` and `dwprov check` (wall clock). Prints the
# medians, and whether each binary's `check` and `plan` output (findings,
# warnings) is the first one's. The binaries are compared in the same
# minutes on the same lab.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
N=3
if [ "${1:-}" = -n ]; then N=${2:?-n needs a number}; shift 2; fi
[[ "$N" =~ ^[0-9]+$ ]] && ((N >= 1)) || { echo "N must be a positive number" >&2; exit 2; }
BINS=("$@")
((${#BINS[@]})) || BINS=("$ROOT/target/release/dwprov")
[ "$(id -u)" = 0 ] || { echo "the lab needs root (network namespaces)" >&2; exit 1; }
say() { printf '[bench-checks] %s\n' "$*" >&2; }
die() { printf '[bench-checks] error: %s\n' "$*" >&2; exit 1; }

P="dwc$$-"
D="/tmp/dwprov-bench-checks-$$"
bench_lab_up "$P" "$D"
ctl() { ip netns exec "${P}ctl" "$@"; }
B=$D/checks
mkdir -p "$B"
bench_list16000 "$B/list-16000.txt"
bench_inventory "$B/inv.yaml" set nftables "$B/list-16000.txt"
bench_inventory "$B/inv+1.yaml" set nftables "$B/list-16000.txt" ", 100.66.0.0/16"
ctl "${BINS[0]}" apply -i "$B/inv.yaml" --yes --no-color >"$B/apply.out" 2>&1 ||
    die "apply failed: $(tail -n 5 "$B/apply.out")"

median() { bench_median "$@"; }
wall_ms() { # command...: its wall clock in ms (any exit status: check exits 1 on findings)
    local s e
    s=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || true
    e=$EPOCHREALTIME
    echo $(( (${e/./} - ${s/./}) / 1000 ))
}
k=0
for bin in "${BINS[@]}"; do
    k=$((k + 1))
    ctl "$bin" check -i "$B/inv+1.yaml" --no-color >"$B/check-$k.out" 2>&1 || true
    ctl "$bin" plan -i "$B/inv+1.yaml" --no-color 2>&1 | grep -v 'digest\|nonce' >"$B/plan-$k.out" || true
    same=same
    cmp -s "$B/check-1.out" "$B/check-$k.out" && cmp -s "$B/plan-1.out" "$B/plan-$k.out" || same=DIFFERENT
    checks=() offline=() live=()
    for ((i = 0; i < N; i++)); do
        # plan exits 2 when it has changes (it has: the prefix).
        ms=$({ DWPROV_PHASE_TIMES=1 ctl "$bin" plan -i "$B/inv+1.yaml" --no-color 2>&1 >/dev/null || true; } |
            sed -n 's/^dwprov phase checks: \([0-9.]*\) ms$/\1/p' | head -n 1)
        [ -n "$ms" ] || die "$bin plan printed no checks phase"
        checks+=("$ms")
        offline+=("$(wall_ms ctl "$bin" check --offline -i "$B/inv+1.yaml" --no-color)")
        live+=("$(wall_ms ctl "$bin" check -i "$B/inv+1.yaml" --no-color)")
    done
    printf '%s: check and plan output %s as the first binary'"'"'s\n' "$bin" "$same"
    [ "$same" = same ] || diff "$B/check-1.out" "$B/check-$k.out" | head -n 20 || true
    printf '%s: plan checks phase %s ms [%s]; check --offline %s ms [%s]; check %s ms [%s]\n' "$bin" \
        "$(median "${checks[@]}")" "${checks[*]}" "$(median "${offline[@]}")" "${offline[*]}" \
        "$(median "${live[@]}")" "${live[*]}"
done
