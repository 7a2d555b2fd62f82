#!/usr/bin/env bash
# Fleet benchmark: a no-op `dwprov plan` over 100 gateways (scripts/fleet-lab.sh),
# with --forks 1, 10 and 100, and Ansible's `--check` gathering the same state
# from the same hosts with the same key, side by side.
#
#   sudo scripts/bench-fleet.sh [--keep-bashrc]
#
# Steps: cargo build --release; fleet-lab.sh up (100 gateways); dwprov apply
# once (so every plan after it is a no-op); then each measured run under
# /usr/bin/time -v: wall time and peak RSS (the largest single process of
# the run: for dwprov the whole run, for Ansible the biggest of its forks).
# Ansible (ansible-core from PyPI, in a venv) runs only if it is installed or
# installable; it gathers `ip -j rule`, `ip -j route`, `iptables-save` with
# three `command` tasks (check_mode: false), which is what dwprov's plan reads.
# The lab is torn down at the end, also on failure or ^C.
#
# Where the time goes: each dwprov run also reports its own CPU time (user +
# sys) and the CPU the gateways spent serving it (sshd and everything it ran,
# all gateways together: the cutime/cstime their sshd listeners gained). On
# this machine the gateways share the controller's cores, so a run whose
# gateway CPU exceeds (cores x target) cannot meet the target, whatever
# dwprov does.
#
# --keep-bashrc: each gateway's /root is a copy-on-write view of this
# machine's /root, and bash (root's login shell) sources ~/.bashrc for every
# SSH command. By default the bench empties every *gateway's* copy (the
# write stays in the lab dir), as scripts/bench.sh does, so a developer's
# shell profile (here `pyenv init`: about 100 ms of CPU per SSH session) is
# not measured as dwprov's or Ansible's cost; this flag keeps it.
#
# env: BENCH_COUNT (100)  BENCH_FORKS ("1 10 100")  BENCH_RUNS (3: dwprov runs
#      per setting, the median is shown)  BENCH_ANSIBLE (auto|no)
#      BENCH_VENV (/tmp/dwprov-bench-venv: reused between runs)
#      CARGO_BUILD_JOBS (passed to cargo)
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly FLEET_SH="$ROOT/scripts/fleet-lab.sh"
readonly COUNT=${BENCH_COUNT:-100}
readonly FORKS=${BENCH_FORKS:-1 10 100}
readonly RUNS=${BENCH_RUNS:-3}
readonly ANSIBLE=${BENCH_ANSIBLE:-auto}
readonly VENV=${BENCH_VENV:-/tmp/dwprov-bench-venv}
readonly PREFIX="dwbench-$$-"
readonly DIR="/tmp/dwprov-bench-$$"
readonly TIME=/usr/bin/time

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] error: %s\n' "$*" >&2
    exit 1
}

KEEP_BASHRC=no
while (($#)); do
    case "$1" in
    --keep-bashrc) KEEP_BASHRC=yes; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
[[ "$COUNT" =~ ^[0-9]+$ ]] || die "BENCH_COUNT must be a number"

if [[ ! -x $TIME ]]; then
    log "installing Debian's time (for /usr/bin/time -v)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null ||
        die "cannot install the time package"
fi

log "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet ${CARGO_BUILD_JOBS:+-j "$CARGO_BUILD_JOBS"})
readonly DWPROV="$ROOT/target/release/dwprov"

DONE=0
RETRIES=0
teardown() {
    bash "$FLEET_SH" down --prefix "$PREFIX" --dir "$DIR" >/dev/null 2>&1 ||
        log "warning: teardown of $PREFIX failed; run: $FLEET_SH down --prefix $PREFIX --dir $DIR"
    # Logs and timings stay for a post-mortem when something failed.
    if ((DONE && !RETRIES)); then rm -rf -- "$DIR.out"; elif [[ -d "$DIR.out" ]]; then log "logs kept in $DIR.out"; fi
}
trap teardown EXIT
trap 'exit 130' INT TERM

log "fleet-lab.sh up: $COUNT gateways"
t0=$(date +%s%N)
bash "$FLEET_SH" up --prefix "$PREFIX" --dir "$DIR" --count "$COUNT" >/dev/null
LAB_UP=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
INV="$DIR/inventory.yaml"
OUT="$DIR.out"   # outside the lab dir: the lab dir goes away with `down`
mkdir -p "$OUT"

in_ctl() { ip netns exec "${PREFIX}ctl" "$@"; }

# Each gateway's sshd pid: the handle on its mount namespace and the root of
# every process that serves an SSH session there.
GW_PIDS=()
for pidfile in "$DIR"/gw/gw*/sshd.pid; do GW_PIDS+=("$(<"$pidfile")"); done
((${#GW_PIDS[@]} == COUNT)) || die "found ${#GW_PIDS[@]} gateway sshd pids, expected $COUNT"
# The lab starts every gateway with empty shell start-up files
# (lab-lib.sh quiet_root_home); --keep-bashrc puts this machine's ~/.bashrc
# back into each gateway's copy, to measure with it.
if [[ "$KEEP_BASHRC" == yes && -f /root/.bashrc ]]; then
    log "copying this machine's ~/.bashrc into every gateway's copy of /root (--keep-bashrc)"
    for pid in "${GW_PIDS[@]}"; do
        nsenter -t "$pid" -m -- sh -c 'cat >/root/.bashrc' </root/.bashrc || die "cannot write ~/.bashrc on the gateway of sshd $pid"
    done
fi

# CPU ticks that every gateway's sshd and its reaped descendants have used.
gateway_ticks() {
    local pid total=0 f
    for pid in "${GW_PIDS[@]}"; do
        # Fields after "(comm) ": state is 0, utime 11, stime 12, cutime 13, cstime 14.
        read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat")
        total=$((total + f[11] + f[12] + f[13] + f[14]))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)
readonly HZ

log "dwprov apply once (forks 100), so that the measured plans are no-ops"
# Apply is idempotent: a second try converges what a cut session left out.
for attempt in 1 2 3; do
    rc=0
    in_ctl env NO_COLOR=1 "$DWPROV" apply -i "$INV" --yes --forks 100 >"$OUT/apply.log" 2>&1 || rc=$?
    ((rc == 0)) && break
    log "initial apply: exit $rc (attempt $attempt): $(grep -m1 'error on' -A1 "$OUT/apply.log" | tail -n 1)"
done
((rc == 0)) || { tail -n 30 "$OUT/apply.log" >&2; die "the initial apply failed"; }
rc=0
in_ctl env NO_COLOR=1 "$DWPROV" plan -i "$INV" --forks 100 >"$OUT/plan-check.log" 2>&1 || rc=$?
((rc == 0)) || { tail -n 30 "$OUT/plan-check.log" >&2; die "a plan after apply is not a no-op (exit $rc)"; }

# The sshd logs of the hosts a run reports errors on, for the post-mortem.
keep_host_logs() {
    local h
    for h in $(sed -n 's/^error on \([A-Za-z0-9_.-]*\):$/\1/p' "$OUT/$1.log"); do
        cp -- "$DIR/gw/$h/sshd.log" "$OUT/$1-$h-sshd.log" 2>/dev/null || true
    done
}

# measure NAME CMD...: one run under /usr/bin/time -v; sets M_WALL (s),
# M_RSS (MB), M_CPU (the command's user + sys, s), M_GW_CPU (gateways, s).
measure() {
    local name=$1 rc attempt t0
    shift
    for attempt in 1 2 3; do
        rc=0
        t0=$(gateway_ticks)
        "$TIME" -v -o "$OUT/$name.time" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
        M_GW_CPU=$(awk -v t=$(($(gateway_ticks) - t0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
        ((rc != 0)) || break
        # The caller looks at the output itself (Ansible: per-host recap).
        [[ -n "${ALLOW_FAIL:-}" ]] && break
        # A session killed from outside (another test on this machine running
        # `pkill -f 'sshd: root@'` reaches every lab: they share one pid
        # namespace) shows as a channel error, a starved machine as a
        # timeout: run again, and say so (the count is in the report).
        keep_host_logs "$name"
        if grep -q ': \(channel\|timeout\): ' "$OUT/$name.log" && ((attempt < 3)); then
            log "$name: a session failed (attempt $attempt, run repeated): $(grep -m1 ': \(channel\|timeout\): ' "$OUT/$name.log")"
            RETRIES=$((RETRIES + 1))
            continue
        fi
        tail -n 20 "$OUT/$name.log" >&2
        die "$name: exit $rc (logs in $OUT)"
    done
    read -r M_WALL M_RSS M_CPU < <(awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
        /Maximum resident set size/ { rss = $2 / 1024 }
        /User time \(seconds\)|System time \(seconds\)/ { cpu += $2 }
        END { printf "%.2f %.1f %.2f\n", wall, rss, cpu }' "$OUT/$name.time")
}

# median of numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A WALL=() RSS=() NOTE=() CPU=() GWCPU=()
RETRIES=0
for f in $FORKS; do
    walls=() rsses=() cpus=() gwcpus=()
    for ((r = 1; r <= RUNS; r++)); do
        measure "dwprov-f$f-r$r" ip netns exec "${PREFIX}ctl" env NO_COLOR=1 "$DWPROV" plan -i "$INV" --forks "$f"
        w=$M_WALL m=$M_RSS
        walls+=("$w") rsses+=("$m") cpus+=("$M_CPU") gwcpus+=("$M_GW_CPU")
        log "dwprov plan --forks $f run $r: ${w}s, ${m} MB; CPU: dwprov ${M_CPU}s, gateways ${M_GW_CPU}s"
    done
    WALL[dwprov-$f]=$(printf '%s\n' "${walls[@]}" | median)
    RSS[dwprov-$f]=$(printf '%s\n' "${rsses[@]}" | median)
    CPU[dwprov-$f]=$(printf '%s\n' "${cpus[@]}" | median)
    GWCPU[dwprov-$f]=$(printf '%s\n' "${gwcpus[@]}" | median)
done

# ------------------------------------------------------------------ Ansible

ANSIBLE_PLAYBOOK=""
ANSIBLE_NOTE=""
find_ansible() {
    if [[ "$ANSIBLE" == no ]]; then
        ANSIBLE_NOTE="skipped (BENCH_ANSIBLE=no)"
        return 1
    fi
    if command -v ansible-playbook >/dev/null; then
        ANSIBLE_PLAYBOOK=$(command -v ansible-playbook)
        return 0
    fi
    if [[ -x "$VENV/bin/ansible-playbook" ]]; then
        ANSIBLE_PLAYBOOK="$VENV/bin/ansible-playbook"
        return 0
    fi
    log "installing ansible-core from PyPI into $VENV"
    if python3 -m venv "$VENV" >"$OUT/venv.log" 2>&1 &&
        "$VENV/bin/pip" install -q ansible-core >>"$OUT/venv.log" 2>&1; then
        ANSIBLE_PLAYBOOK="$VENV/bin/ansible-playbook"
        return 0
    fi
    tail -n 5 "$OUT/venv.log" >&2 || true
    ANSIBLE_NOTE="not installed and not installable (see above)"
    return 1
}

if find_ansible; then
    AVER=$("$ANSIBLE_PLAYBOOK" --version | head -n 1)
    log "ansible: $AVER"
    {
        echo "[gateways]"
        while IFS=$'\t' read -r name addr _ _; do
            echo "$name ansible_host=$addr"
        done <"$DIR/hosts.tsv"
        cat <<EOF
[gateways:vars]
ansible_user=root
ansible_ssh_private_key_file=$DIR/id_ed25519
ansible_ssh_common_args=-F /dev/null -o UserKnownHostsFile=$DIR/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes
ansible_python_interpreter=/usr/bin/python3
EOF
    } >"$OUT/hosts.ini"
    cat >"$OUT/gather.yml" <<'EOF'
# What `dwprov plan` reads on each gateway, gathered the Ansible way.
- hosts: gateways
  gather_facts: false
  tasks:
    - name: ip rules
      command: ip -4 -j -d rule show
      check_mode: false
      changed_when: false
    - name: ip routes
      command: ip -4 -j -d route show table all
      check_mode: false
      changed_when: false
    - name: iptables
      command: iptables-save
      check_mode: false
      changed_when: false
EOF
    for f in $FORKS; do
        # A fresh ControlPath dir per run: no SSH connection is reused from
        # an earlier run (dwprov connects afresh every run too). Everything
        # Ansible writes stays in $OUT (never ~/.ansible).
        mkdir -p "$OUT/ansible-$f/cp" "$OUT/ansible-$f/tmp"
        ALLOW_FAIL=1 measure "ansible-f$f" ip netns exec "${PREFIX}ctl" env \
            ANSIBLE_HOME="$OUT/ansible-$f" ANSIBLE_LOCAL_TEMP="$OUT/ansible-$f/tmp" \
            ANSIBLE_SSH_CONTROL_PATH_DIR="$OUT/ansible-$f/cp" ANSIBLE_HOST_KEY_CHECKING=True \
            ANSIBLE_REMOTE_TMP=/tmp/.ansible ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=False \
            "$ANSIBLE_PLAYBOOK" -i "$OUT/hosts.ini" --check -f "$f" "$OUT/gather.yml"
        w=$M_WALL m=$M_RSS
        # Hosts Ansible could not finish: a session cut from outside (see
        # measure) shows as UNREACHABLE "Shared connection ... closed".
        bad=$(grep -Ec "unreachable=[1-9]|failed=[1-9]" "$OUT/ansible-f$f.log" || true)
        if ((bad > 2)); then
            tail -n 20 "$OUT/ansible-f$f.log" >&2
            die "ansible run with -f $f: $bad hosts failed (logs in $OUT)"
        fi
        WALL[ansible-$f]=$w
        RSS[ansible-$f]=$m
        if ((bad > 0)); then
            NOTE[ansible-$f]=" ($bad cut)"
            RETRIES=$((RETRIES + 1))
            log "ansible -f $f: $bad host(s) failed: $(grep -m1 'UNREACHABLE\|FAILED' "$OUT/ansible-f$f.log" | cut -c1-200)"
        fi
        log "ansible-playbook --check -f $f: ${w}s, ${m} MB"
    done
fi

# ------------------------------------------------------------------ report

echo
echo "Fleet benchmark: no-op plan over $COUNT gateways ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "lab up: ${LAB_UP}s; dwprov: $("$DWPROV" --version); median of $RUNS runs; runs repeated after an outside kill: $RETRIES"
[[ -n "$ANSIBLE_PLAYBOOK" ]] && echo "ansible: $AVER (1 run each; 3 command tasks, --check)"
[[ -n "$ANSIBLE_NOTE" ]] && echo "ansible: $ANSIBLE_NOTE"
if [[ "$KEEP_BASHRC" == no ]]; then
    echo "gateways: root's ~/.bashrc emptied in the lab's copies (--keep-bashrc keeps this machine's)"
else
    echo "gateways: root's ~/.bashrc as on this machine (--keep-bashrc), sourced by every SSH session"
fi
echo
printf '%-8s | %-22s | %-26s | %-22s\n' "forks" "dwprov plan" "CPU: dwprov / gateways" "ansible-playbook --check"
printf '%-8s | %-22s | %-26s | %-22s\n' "" "wall s / peak RSS MB" "s (all $COUNT gateways)" "wall s / peak RSS MB"
printf -- '---------+------------------------+----------------------------+------------------------\n'
for f in $FORKS; do
    d="${WALL[dwprov-$f]} / ${RSS[dwprov-$f]}"
    c="${CPU[dwprov-$f]} / ${GWCPU[dwprov-$f]}"
    a="-"
    [[ -n "${WALL[ansible-$f]:-}" ]] && a="${WALL[ansible-$f]} / ${RSS[ansible-$f]}${NOTE[ansible-$f]:-}"
    printf '%-8s | %-22s | %-26s | %-22s\n' "$f" "$d" "$c" "$a"
done
echo
best=${WALL[dwprov-100]:-}
if [[ -n "$best" ]]; then
    verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "met" : "MISSED" }'; }
    echo "targets (forks 100): wall ${best}s <= 5s: $(verdict "$best" 5); peak RSS ${RSS[dwprov-100]} MB <= 50 MB: $(verdict "${RSS[dwprov-100]}" 50)"
fi
DONE=1
