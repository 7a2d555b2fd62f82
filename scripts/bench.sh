#!/usr/bin/env bash
# dwprov benchmarks on a lab gateway of their own: figures, not pass/fail.
#
#   sudo scripts/bench.sh [-n N] [--keep-bashrc]
#
# Builds `cargo build --release`, brings up a lab (unique prefix dwb<pid>-,
# dir /tmp/dwprov-bench-<pid>; torn down on exit, also on failure or ^C) and
# prints, as median [min-max] of N runs (default 7, or BENCH_N):
#   1 gather            dwprov gather vs `ssh gw /bin/sh -s < GATHER` (GATHER: the
#                       exact script dwprov sent, gateway/gather.sh + parameters)
#   2 render            dwprov render with both ISP lists: wall time, peak RSS
#   2b big render       dwprov render of 50 MB of inline routes (1.7 million
#                       prefixes, at most 3 runs) vs the CNC list's render
#   3 apply from empty  dwprov apply (commit-confirmed, and --no-confirm) vs
#                       `ssh gw ip -batch -` of the same routes
#   4 no-op plan        dwprov plan on the converged gateway vs the raw gather
#   5 one prefix added  dwprov apply of one more prefix, with its apply figures
#                       (and, untimed, those of repairing one deleted route)
# dwprov and ssh both run in the lab's controller namespace. The baseline is
# OpenSSH's client with the lab's key and known_hosts; its key exchange is
# pinned to curve25519-sha256, which is what dwprov's libssh2 negotiates with
# this sshd (set BENCH_SSH_KEX= to use OpenSSH's default, a post-quantum
# hybrid that costs more per connection).
#
# --keep-bashrc: the lab gateway's /root is a copy-on-write view of this
# machine's /root, and bash (root's login shell) sources ~/.bashrc for every
# SSH command. The lab empties its copy (the write stays in the lab dir) so a
# developer's shell profile is not measured as dwprov; this flag copies this
# machine's ~/.bashrc into the lab's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

N=${BENCH_N:-7}
KEEP_BASHRC=no
SSH_KEX=${BENCH_SSH_KEX-curve25519-sha256}
while (($#)); do
    case "$1" in
    -n) N=${2:?-n needs a number}; shift 2 ;;
    -n*) N=${1#-n}; shift ;;
    --keep-bashrc) KEEP_BASHRC=yes; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$N" =~ ^[0-9]+$ ]] && ((N >= 1)) || { echo "N must be a positive number" >&2; exit 2; }
((N >= 5)) || echo "note: N=$N; medians of fewer than 5 runs are noisy" >&2
[ "$(id -u)" = 0 ] || { echo "the lab needs root (network namespaces): run with sudo" >&2; exit 1; }

P="dwb$$-"
D="/tmp/dwprov-bench-$$"
BIN=$ROOT/target/release/dwprov
CNC_LIST=$ROOT/examples/isp/unicom.txt
CTC_LIST=$ROOT/examples/isp/chinanet.txt
EXTRA_PREFIX=100.66.0.0/16   # the "one prefix added" (in neither list)

# Progress goes to stderr, the figures to stdout.
say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- setup

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
scripts/install-deps.sh >&2
if [ ! -x /usr/bin/time ]; then
    say "installing Debian's time (for peak RSS)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >/dev/null; }
fi
say "cargo build --release"
cargo build --release --quiet

[ -e "/run/netns/${P}gw" ] && die "a lab with prefix $P exists already (not touching it)"
# The lab (bench-lib.sh): torn down on exit, also on failure or ^C.
bench_lab_up "$P" "$D"

gw() { "${LAB[@]}" exec gw "$@"; }
ctl() { ip netns exec "${P}ctl" "$@"; }
SSH=(ssh -F /dev/null -i "$D/id_ed25519" -o UserKnownHostsFile="$D/known_hosts"
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes
    -o ControlMaster=no -o ControlPath=none -o LogLevel=ERROR)
[ -n "$SSH_KEX" ] && SSH+=(-o "KexAlgorithms=$SSH_KEX")
SSH+=(root@10.9.0.2)

# The lab starts with empty start-up files in its /root (scripts/lab-lib.sh
# quiet_root_home); --keep-bashrc puts this machine's ~/.bashrc back, in the
# lab's overlay copy only.
if [ "$KEEP_BASHRC" = yes ] && [ -f /root/.bashrc ]; then
    gw sh -c 'cat >/root/.bashrc' </root/.bashrc
fi
RP_ETH1=$(gw cat /proc/sys/net/ipv4/conf/eth1/rp_filter)
RP_ETH2=$(gw cat /proc/sys/net/ipv4/conf/eth2/rp_filter)
reset_gw() {
    { printf 'RP_ETH1=%s RP_ETH2=%s\n' "$RP_ETH1" "$RP_ETH2"; cat bench/reset.sh; } | gw sh -s ||
        die "resetting the lab gateway failed"
}
accepted() { grep -c 'Accepted publickey' "$D/sshd.log" || true; }

# Inventories: the lab's own (bare) plus the dual-line topology.
B=$D/bench
mkdir -p "$B"
INV_BARE=$D/inventory.yaml
INV_FULL=$B/full.yaml    # both lists (render)
INV_CNC=$B/cnc.yaml      # CNC list only (apply, plan)
INV_PLUS=$B/cnc-plus1.yaml
INV_BIG=$B/big.yaml      # 50 MB of inline routes (render 2b; removed after it)
BIG_N=$((N < 3 ? N : 3)) # a few runs: each renders 1.7 million routes
# The seed with its forwards and hairpin (bench-lib.sh).
inventory() { bench_inventory "$1" fwmark iptables "$2" --forwards --hairpin "${@:3}"; }
inventory "$INV_FULL" "$CNC_LIST" --ctc-list "$CTC_LIST"
inventory "$INV_CNC" "$CNC_LIST"
inventory "$INV_PLUS" "$CNC_LIST" --cnc-extra ", $EXTRA_PREFIX"
CNC_PREFIXES=$(grep -cE '^[0-9]' "$CNC_LIST")
CTC_PREFIXES=$(grep -cE '^[0-9]' "$CTC_LIST")
awk '/^[0-9]/ {print "route replace " $1 " via 203.0.113.1 dev eth2 proto 202"}' "$CNC_LIST" >"$B/cnc-202.batch"
echo "route replace $EXTRA_PREFIX via 203.0.113.1 dev eth2 proto 202" >"$B/one-202.batch"

# The raw-ssh baseline runs the very script dwprov sends (gateway/gather.sh
# with its parameters), captured by dwprov's DWPROV_GATHER_SCRIPT_OUT hook
# during the warm-up gather below.
GATHER=$B/gather.sh

# ---------------------------------------------------------------- measuring

# run_us CMD...: run it (stdout to $OUT, stderr to $ERR), set US (microseconds) and RC.
OUT=$B/out ERR=$B/err
run_us() {
    local s e
    s=$EPOCHREALTIME
    set +e
    "$@" >"$OUT" 2>"$ERR"
    RC=$?
    set -e
    e=$EPOCHREALTIME
    US=$(( ${e/./} - ${s/./} ))
}
must() { # what: RC must be one of the rest
    local what=$1 ok
    shift
    for ok in "$@"; do [ "$RC" = "$ok" ] && return 0; done
    sed 's/^/  /' "$ERR" >&2
    if grep -q '"error":{' "$OUT"; then
        grep -o '"error":{[^}]*}' "$OUT" | head -n 3 | sed 's/^/  /' >&2
    else
        tail -n 20 "$OUT" | sed 's/^/  /' >&2
    fi
    die "$what exited $RC"
}
# dw LABEL RECOVER CMD...: a dwprov run that must exit 0. A run that fails
# with an SSH channel error (seen intermittently under load: "reading the
# script's stdout failed: transport read") is recorded in FLAKES, RECOVER
# restores the step's starting point, and the run is repeated (3 tries).
FLAKES=()
dw() {
    local label=$1 recover=$2 try msg
    shift 2
    for try in 1 2 3; do
        ((try == 1)) || "$recover"
        run_us "$@"
        [ "$RC" = 0 ] && return 0
        grep -qE '"class":"channel"|cause=channel' "$OUT" || break
        msg=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p; /^gw1: channel/p' "$OUT" | head -n 1)
        FLAKES+=("$label: ${msg:-channel error}")
        say "retrying $label after: ${msg:-channel error}"
    done
    must "$label" 0
}
nothing() { :; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { printf '%s\n' "$@" | sort -n | sed -n '1p;$p' | tr '\n' ' '; }
ms() { awk -v u="$1" 'BEGIN {printf "%.1f", u/1000}'; }
# fig LIST...: "123.4 ms [120-130]"
fig() {
    local m lo hi
    m=$(median "$@")
    read -r lo hi <<<"$(minmax "$@")"
    printf '%s ms [%s-%s]' "$(ms "$m")" "$(ms "$lo" | cut -d. -f1)" "$(ms "$hi" | cut -d. -f1)"
}
ratio() { awk -v a="$(median $1)" -v b="$(median $2)" 'BEGIN {printf "%.2fx", a/b}'; }
meets() { # ratio-string target
    awk -v r="${1%x}" -v t="$2" 'BEGIN {print (r <= t) ? "met" : "MISSED"}'
}
applied() { # JSON file → "changes ip_lines iptables_lines script_bytes remote_commands round_trips"
    python3 -c 'import json,sys
a = json.load(open(sys.argv[1]))["hosts"][0]["applied"]
print(*(a[k] for k in ("changes","ip_lines","iptables_lines","script_bytes","remote_commands","round_trips")))' "$1"
}

# 1. gather on a bare gateway ------------------------------------------------
say "1/5 gather (bare gateway), N=$N"
G_D=() G_S=() G_CONN=()
DWPROV_GATHER_SCRIPT_OUT=$GATHER ctl "$BIN" gather -i "$INV_BARE" >/dev/null 2>&1 ||
    die "dwprov gather fails on the lab"  # warm-up, and the script for the baseline
ctl "${SSH[@]}" /bin/sh -s <"$GATHER" >/dev/null 2>&1 || die "ssh to the lab fails"
for ((i = 0; i < N; i++)); do
    for who in $( ((i % 2)) && echo "ssh dwprov" || echo "dwprov ssh"); do
        if [ "$who" = dwprov ]; then
            a=$(accepted) f=${#FLAKES[@]}
            dw "dwprov gather" nothing ctl "$BIN" gather -i "$INV_BARE" --no-color
            G_D+=("$US")
            ((f != ${#FLAKES[@]})) || G_CONN+=($(($(accepted) - a)))
        else
            run_us ctl "${SSH[@]}" /bin/sh -s <"$GATHER"
            must "ssh gather" 0
            G_S+=("$US") G_BYTES=$(wc -c <"$OUT")
        fi
    done
done

# 2. render with both lists ----------------------------------------------------
say "2/5 render (both lists), N=$N"
R_T=() R_RSS=()
for ((i = 0; i < N; i++)); do
    run_us /usr/bin/time -v -o "$B/time.txt" "$BIN" render -i "$INV_FULL" --limit gw1
    must "dwprov render" 0
    R_T+=("$US")
    R_RSS+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$B/time.txt")")
done
R_ROUTES=$(grep -c '^route ' "$OUT")

# 2b. render of 50 MB of inline routes (issue 17) beside the 3,894-prefix
# CNC render: time and peak RSS should grow with the list, linearly.
say "2b/5 render (50 MB of inline routes vs the CNC list), N=$BIG_N"
awk 'BEGIN { for (a = 1; a <= 99 && n < 50000000; a++) for (b = 0; b < 256 && n < 50000000; b++)
                 for (c = 0; c < 256 && n < 50000000; c++) { l = "            - " a "." b "." c ".0/24"; print l; n += length(l) + 1 } }' >"$B/big-routes"
# CNC's routes as one block list (the seed's, without its lists), filled in below.
inventory "$B/big.tmpl" ""
sed -i 's|^          routes: \[100\.65\.0\.0/16\]$|          routes:\n#ROUTES#|' "$B/big.tmpl"
grep -qx '#ROUTES#' "$B/big.tmpl" || die "the big inventory's template has no cnc routes line"
awk -v f="$B/big-routes" '$0 == "#ROUTES#" { while ((getline l < f) > 0) print l; next } { print }' "$B/big.tmpl" >"$INV_BIG"
BIG_PREFIXES=$(wc -l <"$B/big-routes")
BIG_BYTES=$(wc -c <"$INV_BIG")
rm -f "$B/big-routes" "$B/big.tmpl"
RB_T=() RB_RSS=() RC_T=() RC_RSS=()
for ((i = 0; i < BIG_N; i++)); do
    run_us /usr/bin/time -v -o "$B/time.txt" "$BIN" render -i "$INV_BIG" --limit gw1
    must "dwprov render (50 MB of inline routes)" 0
    RB_T+=("$US")
    RB_RSS+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$B/time.txt")")
    run_us /usr/bin/time -v -o "$B/time.txt" "$BIN" render -i "$INV_CNC" --limit gw1
    must "dwprov render (CNC list)" 0
    RC_T+=("$US")
    RC_RSS+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$B/time.txt")")
done
rm -f "$INV_BIG"

# 3. apply from empty ----------------------------------------------------------
say "3/5 apply from empty (CNC list), N=$N"
A_D=() A_N=() A_S=() A_CONN=() A_CHANGES=()
for ((i = 0; i < N; i++)); do
    for who in $( ((i % 2)) && echo "ssh dwprov nc" || echo "nc dwprov ssh"); do
        reset_gw
        if [ "$who" = dwprov ]; then
            a=$(accepted) f=${#FLAKES[@]}
            dw "dwprov apply (from empty)" reset_gw ctl "$BIN" apply -i "$INV_CNC" --yes --format json --no-color
            A_D+=("$US")
            ((f != ${#FLAKES[@]})) || A_CONN+=($(($(accepted) - a)))
            cp "$OUT" "$B/apply-empty.json"
            A_CHANGES+=("$(applied "$B/apply-empty.json" | cut -d' ' -f1)")
        elif [ "$who" = nc ]; then
            dw "dwprov apply --no-confirm (from empty)" reset_gw ctl "$BIN" apply -i "$INV_CNC" --yes --no-confirm --format json --no-color
            A_N+=("$US")
            cp "$OUT" "$B/apply-empty-nc.json"
        else
            run_us ctl "${SSH[@]}" ip -batch - <"$B/cnc-202.batch"
            must "ssh ip -batch" 0
            A_S+=("$US")
            A_202=$(gw sh -c 'ip route show table all proto 202 | wc -l')
        fi
    done
done
[ "$(printf '%s\n' "${A_CHANGES[@]}" | sort -u | wc -l)" = 1 ] ||
    die "apply from empty changed a different number of objects per run (${A_CHANGES[*]}): the reset is incomplete"
[ "$A_202" = "$CNC_PREFIXES" ] || die "the baseline installed $A_202 routes, expected $CNC_PREFIXES"
# Where the time of one apply goes: progress lines on stderr, stamped on arrival.
reset_gw
PH=$B/phases
t0=$EPOCHREALTIME
ctl "$BIN" apply -i "$INV_CNC" --yes --no-color 2>&1 >/dev/null |
    while IFS= read -r l; do printf '%s %s\n' "$(( ${EPOCHREALTIME/./} - ${t0/./} ))" "$l"; done >"$PH"
t1=$EPOCHREALTIME
PHASES=$(awk -v end="$(( ${t1/./} - ${t0/./} ))" '
    { t[NR] = $1; $1 = ""; $2 = ""; s[NR] = substr($0, 3) }
    END { printf "start->connect %.0f", t[1]/1000
          for (i = 1; i <= NR; i++) {
              nx = (i < NR) ? t[i+1] : end
              if (s[i] != "done" && nx - t[i] >= 500) printf ", %s %.0f", s[i], (nx - t[i])/1000
          }
          printf " (ms; total %.0f)", end/1000 }' "$PH")

# 4. no-op plan on the converged gateway ---------------------------------------
say "4/5 no-op plan (converged gateway), N=$N"
P_D=() P_S=()
for ((i = 0; i < N; i++)); do
    for who in $( ((i % 2)) && echo "ssh dwprov" || echo "dwprov ssh"); do
        if [ "$who" = dwprov ]; then
            dw "dwprov plan (exit 0: nothing to do)" nothing ctl "$BIN" plan -i "$INV_CNC" --no-color
            P_D+=("$US")
        else
            run_us ctl "${SSH[@]}" /bin/sh -s <"$GATHER"
            must "ssh gather" 0
            P_S+=("$US") P_BYTES=$(wc -c <"$OUT")
        fi
    done
done

# 5. one prefix added ----------------------------------------------------------
say "5/5 one prefix added, N=$N"
O_D=() O_S=()
converge() { dw "dwprov apply (back to the CNC inventory)" nothing ctl "$BIN" apply -i "$INV_CNC" --yes --format json --no-color; }
for ((i = 0; i < N; i++)); do
    dw "dwprov apply (one prefix added)" converge ctl "$BIN" apply -i "$INV_PLUS" --yes --format json --no-color
    O_D+=("$US")
    cp "$OUT" "$B/apply-one.json"
    # Back to the converged state (one change the other way), untimed.
    converge
    run_us ctl "${SSH[@]}" ip -batch - <"$B/one-202.batch"
    must "ssh ip -batch (one route)" 0
    O_S+=("$US")
    gw ip route flush table all proto 202
done

# One deleted route repaired (drift on the converged CNC gateway): its apply
# figures only, one untimed run (the snapshot is taken on the gateway, so the
# script is O(changes), not the route list).
converge
REPAIR=$(gw ip -4 route show table all proto 201 | awk '!n && $1 ~ /[/]/ {print; n = 1}')
# shellcheck disable=SC2086 # the route's words are the arguments
gw ip -4 route del $REPAIR
dw "dwprov apply (one deleted route repaired)" nothing ctl "$BIN" apply -i "$INV_CNC" --yes --format json --no-color
cp "$OUT" "$B/apply-repair.json"

# ---------------------------------------------------------------- report

R1=$(ratio "${G_D[*]}" "${G_S[*]}")
R3=$(ratio "${A_D[*]}" "${A_S[*]}")
R3N=$(ratio "${A_N[*]}" "${A_S[*]}")
R4=$(ratio "${P_D[*]}" "${P_S[*]}")
R5=$(ratio "${O_D[*]}" "${O_S[*]}")
conns() { printf '%s\n' "$@" | sort -u | tr '\n' '/' | sed 's#/$##'; }
rss_kb=$(printf '%s\n' "${R_RSS[@]}" | sort -n | tail -1)
mib() { printf '%s\n' "$@" | sort -n | tail -1 | awk '{printf "%.1f MiB", $1/1024}'; }
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
sshv=$(ssh -V 2>&1 | cut -d, -f1)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src templates Cargo.toml Cargo.lock 2>/dev/null || rev="$rev+dirty"

cat <<EOF
dwprov benchmarks  $(date -u '+%Y-%m-%d %H:%M:%S UTC')
machine   $(nproc) cores ($cpu), kernel $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')
load      $LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after (1/5/15 min): other work on the machine skews the figures
dwprov    $("$BIN" --version | awk '{print $2}') (commit $rev), release build; $sshv
method    median [min-max] of N=$N runs, wall clock from the controller namespace ($P)
baseline  OpenSSH client, lab key + known_hosts, KexAlgorithms=${SSH_KEX:-default}; one connection per run
gateway   lab sshd; root's ~/.bashrc $([ "$KEEP_BASHRC" = no ] && echo "emptied in the lab's copy (--keep-bashrc keeps this machine's)" || echo "as on this machine (--keep-bashrc)")
EOF
echo
fmt='%-34s %-24s %-24s %-8s %s\n'
# shellcheck disable=SC2059,SC2046 # the format is ours; the fields are split on purpose
{
printf "$fmt" "benchmark" "dwprov" "baseline (ssh)" "ratio" "target"
printf "$fmt" "1 gather, bare gateway" "$(fig "${G_D[@]}")" "$(fig "${G_S[@]}")" "$R1" "-"
printf "$fmt" "  (what runs)" "gather -i INV" "sh -s < gather cmds" "" ""
printf "$fmt" "2 render --limit gw1" "$(fig "${R_T[@]}")" "-" "" "-"
printf "$fmt" "  ($((CTC_PREFIXES + CNC_PREFIXES)) prefixes in)" "$R_ROUTES routes out" "" "" ""
printf "$fmt" "  peak RSS (max of runs)" "$(awk -v k="$rss_kb" 'BEGIN {printf "%.1f MiB", k/1024}')" "" "" ""
printf "$fmt" "2b render, 50 MB inline routes" "$(fig "${RB_T[@]}")" "$(fig "${RC_T[@]}")" "$(ratio "${RB_T[*]}" "${RC_T[*]}")" "-"
printf "$fmt" "  ($BIG_PREFIXES vs $CNC_PREFIXES prefixes)" "$((BIG_BYTES / 1000000)) MB inventory" "render, CNC list" "$(awk -v a="$BIG_PREFIXES" -v b="$((CNC_PREFIXES + 2))" 'BEGIN {printf "%.0fx", a/b}')" "(prefixes)"
printf "$fmt" "  peak RSS (max of runs)" "$(mib "${RB_RSS[@]}")" "$(mib "${RC_RSS[@]}")" "" "-"
printf "$fmt" "3 apply from empty" "$(fig "${A_D[@]}")" "$(fig "${A_S[@]}")" "$R3" "<= 1.5x $(meets "$R3" 1.5)"
printf "$fmt" "  ($CNC_PREFIXES CNC prefixes)" "apply --yes" "ip -batch - <routes" "" ""
printf "$fmt" "3b the same, --no-confirm" "$(fig "${A_N[@]}")" "$(fig "${A_S[@]}")" "$R3N" "<= 1.5x $(meets "$R3N" 1.5)"
printf "$fmt" "  (no snapshot, no new connection)" "apply --yes --no-confirm" "" "" ""
printf "$fmt" "4 no-op plan, converged" "$(fig "${P_D[@]}")" "$(fig "${P_S[@]}")" "$R4" "<= 1.3x $(meets "$R4" 1.3)"
printf "$fmt" "  (what runs)" "plan -i INV (exit 0)" "sh -s < gather cmds" "" ""
printf "$fmt" "5 one prefix added" "$(fig "${O_D[@]}")" "$(fig "${O_S[@]}")" "$R5" "-"
printf "$fmt" "  (what runs)" "apply --yes" "ip -batch - <1 route" "" ""
}
echo
echo "ssh connections (sshd 'Accepted publickey' per run): gather $(conns "${G_CONN[@]}"), apply $(conns "${A_CONN[@]}") (plan + verify)"
if ((${#FLAKES[@]})); then
    echo "dwprov runs repeated after an SSH channel error: ${#FLAKES[@]} (not in the figures)"
    printf '  %s\n' "${FLAKES[@]}"
else
    echo "dwprov runs repeated after an SSH channel error: none"
fi
echo "gather output over ssh: $G_BYTES bytes bare, $P_BYTES bytes converged"
echo "one apply from empty, phases: $PHASES"
echo
fmt2='%-22s %8s %9s %15s %13s %16s %12s\n'
# shellcheck disable=SC2059,SC2046 # the format is ours; the fields are split on purpose
{
printf "$fmt2" "hosts[0].applied" changes ip_lines iptables_lines script_bytes remote_commands round_trips
printf "$fmt2" "apply from empty" $(applied "$B/apply-empty.json")
printf "$fmt2" "  --no-confirm" $(applied "$B/apply-empty-nc.json")
printf "$fmt2" "one prefix added" $(applied "$B/apply-one.json")
printf "$fmt2" "one route repaired" $(applied "$B/apply-repair.json")
}
