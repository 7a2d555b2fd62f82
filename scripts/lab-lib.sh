# shellcheck shell=bash
# Shared by scripts/lab.sh and scripts/fleet-lab.sh (sourced, bash): waiting
# and tearing a lab down. The sourcing script defines `warn` and
# `lab_namespaces` (every namespace of its lab, built or half-built), and
# sets DIR and MARKER.

# quiet_root_home UPPER: the lab gateway's /root is a copy-on-write view of
# this machine's, and bash (root's login shell) sources ~/.bashrc for every
# SSH command: a developer's profile (pyenv, nvm, conda: seconds per login on
# a loaded machine, or a wait on a lock another session left) must not run
# on a lab gateway. Empty start-up files in the /root overlay's upper dir
# (written before it is mounted) hide this machine's from the lab only.
quiet_root_home() {
    local upper=$1 f
    mkdir -p "$upper"
    for f in .bashrc .bash_profile .bash_login .profile .bash_logout; do
        : >"$upper/$f"
    done
}

# Poll CMD every 0.2 s for at most $1 seconds.
wait_for() {
    local seconds=$1 i
    shift
    for ((i = 0; i < seconds * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    return 1
}

# Processes that must survive a teardown: ourselves and our ancestors.
protected_pids() {
    local pid=$$
    while [[ "$pid" =~ ^[0-9]+$ ]] && ((pid > 1)); do
        echo "$pid"
        pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
    done
}

# Every process in the lab's namespaces, but ours.
lab_pids() {
    local n protected
    protected=$(protected_pids)
    for n in $(lab_namespaces); do
        ip netns pids "$n" 2>/dev/null || true
    done | grep -vxF -f <(printf '%s\n' "$protected") || true
}

no_lab_pids() { [[ -z "$(lab_pids)" ]]; }

# Has every pid in "$@" ended? A dying process leaves its namespaces (so
# lab_pids no longer lists it) before it has finished exiting (state D while
# its private mounts go); a zombie has ended, it only waits to be reaped.
pids_ended() {
    local pid state
    for pid in "$@"; do
        state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null) || continue
        [[ -z "$state" || "$state" == Z || "$state" == X ]] || return 1
    done
}

kill_lab_processes() {
    local pids i
    pids=$(lab_pids)
    [[ -n "$pids" ]] || return 0
    # shellcheck disable=SC2086 # word splitting of the pid list is intended
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
        [[ -n "$(lab_pids)" ]] || break
        sleep 0.2
    done
    if [[ -n "$(lab_pids)" ]]; then
        warn "processes survived SIGTERM, killing: $(lab_pids | tr '\n' ' ')"
        # shellcheck disable=SC2046 # word splitting of the pid list is intended
        kill -KILL $(lab_pids) 2>/dev/null || true
        wait_for 5 no_lab_pids || warn "processes still alive: $(lab_pids | tr '\n' ' ')"
    fi
    # shellcheck disable=SC2086
    wait_for 10 pids_ended $pids || warn "processes still exiting: $(echo $pids)"
}

# Kill the lab's processes, delete its namespaces, and remove DIR if it
# carries MARKER (a directory without it is never rm -rf'd).
teardown_lab() {
    local n
    kill_lab_processes
    for n in $(lab_namespaces); do
        ip netns del "$n" || warn "could not delete namespace $n"
    done
    if [[ -e "$DIR" ]]; then
        if [[ -e "$DIR/$MARKER" ]]; then
            rm -rf -- "$DIR"
        else
            warn "$DIR is not a lab dir (no $MARKER), leaving it alone"
        fi
    fi
}
