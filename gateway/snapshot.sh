# shellcheck shell=sh
# shellcheck disable=SC2154 # S, ID, UNIT, TIMEOUT, EXPECT_*: set by the caller; what: by snapshot_routing
# dwprov commit-confirmed apply, the part before any change (follows lib.sh
# and the parameters): functions the apply script calls in this order:
# preflight_dirs, (the staging), arm_timer, snapshot_files,
# snapshot_sysctls (the kinds' own, gateway/kind-*.sh), snapshot_state,
# then run_apply.
#
# The snapshot is taken on the gateway from its live state (nothing of it
# travels from the controller) and checked before it is trusted: the owned
# iptables objects of iptables-save must be the ones `iptables -t T -S`
# shows, and the counts of owned rules, routes and iptables lines must be
# the ones the plan was computed from (EXPECT_RULES, EXPECT_ROUTES,
# EXPECT_IPT). A snapshot that fails a check stops the apply before any
# change: a revert to a wrong snapshot would delete real objects.

# Until the revert is armed nothing has changed: a failing step says so,
# and the snapshot goes (a later rollback must never pick a partial one),
# and so do the files staged so far (the apply script defines
# `staged_cleanup` before it stages any).
nochange() {
    echo "dwprov: $1; nothing was changed" >&2
    unstage
    rm -rf "$S"
    exit "$NOTHING_CHANGED"
}
unstage() { if command -v staged_cleanup >/dev/null 2>&1; then staged_cleanup; fi; }
fail() { nochange "$1"; }

# Every directory to write to must be writable (read-only /etc, full disk):
# found here, before anything changed. Directories on stdin, one a line.
preflight_dirs() {
    set --
    while IFS= read -r d; do
        { [ -d "$d" ] || mkdir -p "$d"; } 2>/dev/null && { echo probe > "$d/$PROBE"; } 2>/dev/null \
            || nochange "cannot write $d (read-only file system or disk full?)"
        set -- "$@" "$d/$PROBE"
    done
    rm -f "$@"
}

# Arm the revert, on the gateway, independent of this SSH session: a
# transient systemd timer where systemd runs ($S/revert.service and
# $S/revert.timer are its units, sent when the gathered facts say systemd), otherwise a detached process leading its
# own process group (disarming kills the group: the shell and its sleep).
# It fires only after TIMEOUT seconds, by when revert.sh is written; the
# timer marks the revert as started before it runs it (see confirm.sh).
arm_timer() {
    if [ -f "$S/revert.timer" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        { cp "$S/revert.service" "/run/systemd/system/$UNIT.service" \
            && cp "$S/revert.timer" "/run/systemd/system/$UNIT.timer"; } || nochange 'write the revert timer units'
        { systemctl daemon-reload && systemctl start "$UNIT.timer"; } || nochange 'arm the revert timer'
        echo "$UNIT" > "$S/timer.unit"
    else
        # shellcheck disable=SC2016 # $0, $1 and $$ belong to the timer's shell
        setsid sh -c 'echo $$ > "$0/timer.pid"; sleep "$1"; : > "$0/revert.started"; rm -f "$0/timer.pid"; sh "$0/revert.sh" > "$0/revert.log" 2>&1' \
            "$S" "$TIMEOUT" < /dev/null > /dev/null 2>&1 &
    fi
    # From now on stopping must stop the timer too.
    nochange() {
        echo "dwprov: $1; nothing was changed" >&2
        timer_up
        disarm
        unstage
        rm -rf "$S"
        exit "$NOTHING_CHANGED"
    }
}

# Wait (at most 5 s, polling at 10 ms) until the detached timer recorded its pid.
timer_up() {
    [ -f "$S/timer.unit" ] && return 0
    i=0
    while [ ! -s "$S/timer.pid" ] && [ "$i" -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
    [ -s "$S/timer.pid" ]
}

# The owned rules, routes and firewall objects, checked (see above).
snapshot_state() {
    # Every firewall backend (iptables: five xtables runs; nftables: two
    # listings) in the background, while ip lists.
    fw_snapshot
    # The routing home's listings (gateway/kind-routing.sh).
    snapshot_routing || { fw_snapshot_wait; nochange "$what"; }
    fw_snapshot_wait
    fw_snapshot_check
    # One wc for the three counts (a process costs about a millisecond).
    # shellcheck disable=SC2046 # its words, split on purpose
    set -- $(cd "$S" && wc -l rules routes ipt)
    [ "$2 $4 $6" = "rules routes ipt" ] || nochange 'count the snapshot lines'
    for k in rules:"$1":"$EXPECT_RULES" routes:"$3":"$EXPECT_ROUTES" ipt:"$5":"$EXPECT_IPT"; do
        f=${k%%:*} k=${k#*:}
        n=${k%%:*}
        [ "$n" = "${k#*:}" ] || nochange "the snapshot disagrees with the state the plan was computed from: $n owned $f lines listed now, ${k#*:} when gathered (something else changes the gateway right now, or a tool lies): plan again"
    done
}

# Run the changes ($S/apply.sh) in a process group of their own, recorded
# for the revert, with their output in $S/apply.log; then settle: applied
# (returns),
# contradicted (the apply stopped and undid itself: disarm, drop the
# snapshot, no revert), or
# failed (revert now rather than when the timer fires).
run_apply() {
    if command -v setsid >/dev/null 2>&1; then
        # A background job is no process group leader, so setsid does not
        # fork: $! is the apply's shell, its pid the new group's id.
        setsid sh "$S/apply.sh" group < /dev/null > "$S/apply.log" 2>&1 &
    else
        sh "$S/apply.sh" < /dev/null > "$S/apply.log" 2>&1 &
    fi
    wait "$!"
    rc=$?
    cat "$S/apply.log" >&2
    if [ -e "$S/revert.started" ]; then
        echo "dwprov: the revert of snapshot $ID started while the apply ran: it ended the apply and puts back the old state" >&2
        exit "$STEP_FAILED"
    fi
    case $rc in
    0)
        # Returns: what follows (the in-band verification) runs next.
        echo applied > "$S/state"
        return 0
        ;;
    "$NOTHING_CHANGED")
        # The apply found the snapshot contradicted and undid itself: the
        # snapshot must never be reverted to.
        disarm
        rm -rf "$S"
        exit "$NOTHING_CHANGED"
        ;;
    *)
        disarm
        if sh "$S/revert.sh" > "$S/revert.log" 2>&1; then
            echo "dwprov: reverted to snapshot $ID" >&2
        else
            cat "$S/revert.log" >&2
        fi
        exit "$STEP_FAILED"
        ;;
    esac
}
