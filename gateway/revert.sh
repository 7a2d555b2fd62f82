# shellcheck shell=sh
# shellcheck disable=SC2154 # S, ID: set by the lines before this file
# dwprov revert (follows lib.sh and `S=...` in $S/revert.sh): puts every
# object dwprov owns back to what it was when snapshot $S was taken, and
# leaves everything else as it is now, also what was added since:
# - the apply of this snapshot is ended first (its whole process group);
# - owned files and sysctls from their copies in the snapshot;
# - owned rules and routes: only the difference between the live owned
#   listing and the snapshot's (routes replaced, then rules added, then the
#   extra rules and routes deleted), so nothing foreign is touched;
# - the firewall (fw_revert, gateway/fw-*.sh); iptables: one
#   `iptables-restore --noflush` payload that rewrites the
#   DWPROV-* chains, deletes the live jumps into them and inserts the
#   snapshot's, and deletes chains the snapshot did not have; nothing else
#   of any table is flushed. Not done when iptables-save disagrees with
#   `iptables -S` (a save that lies would make it delete real chains).
# - nftables: the owned table reloaded from its listing in one transaction;
# - hand-made objects an `apply --adopt` took over ($S/handmade.*): put
#   back, rules and routes as they were, iptables rules at their places.
# Every kind is checked afterwards against the snapshot. A revert goes on
# past a failing step (as much of the old state as can be had) and exits 3.
if [ ! -f "$S/state" ]; then
    # The apply stopped while taking the snapshot: nothing was changed, and
    # a partial snapshot must never be restored.
    echo "dwprov revert: snapshot ${S##*/} is incomplete (the apply stopped before any change): nothing to revert" >&2
    exit 0
fi
rc=0
rfail() { echo "dwprov revert: $1" >&2; rc=$STEP_FAILED; }
# One revert at a time (the timer and the controller may both start one);
# a lock whose revert died (killed, power loss) is taken over.
if ! mkdir "$S/revert.lock" 2>/dev/null; then
    p=$(cat "$S/revert.lock/pid" 2>/dev/null) || { sleep 0.2; p=$(cat "$S/revert.lock/pid" 2>/dev/null); }
    if [ -z "$p" ] || kill -0 "$p" 2>/dev/null; then
        echo "dwprov revert: a revert of snapshot ${S##*/} is running already" >&2
        exit "$STEP_FAILED"
    fi
    echo "dwprov revert: taking over the lock of a revert that ended without releasing it (pid $p)" >&2
fi
echo "$$" > "$S/revert.lock/pid"
trap 'rm -rf "$S/revert.lock"' EXIT
: > "$S/revert.started"
echo reverting > "$S/state"
end_apply

# Every kind's revert step, in the revert's order (`kind::REVERT_ORDER`:
# files, sysctls, units, rules+routes+nexthops, firewall; composed into
# the installed lib.sh with each kind's gateway/kind-*.sh or fw-*.sh).
revert_kinds

# Hand-made objects an `apply --adopt` took over: back as they were. Rules
# and routes with `-force` (one still there is skipped); each iptables rule
# that is missing goes back at its place in its chain (in position order).
if [ -s "$S/handmade.batch" ]; then
    if ! ip -force -batch "$S/handmade.batch" > /dev/null 2> "$S/handmade.err"; then
        # "File exists": that one is back already (or never went).
        grep -v -e 'File exists' -e '^Command failed' "$S/handmade.err" | grep -q . &&
            rfail "put back the hand-made rules and routes: $(head -n 3 "$S/handmade.err")"
    fi
fi
if [ -s "$S/handmade.ipt" ]; then
    tab=$(printf '\t')
    while IFS="$tab" read -r t pos rule; do
        [ -n "$t" ] || continue
        iptables-save -t "$t" | grep -qxF -- "-A $rule" && continue
        chain=${rule%% *}
        rest=${rule#* }
        printf '*%s\n-I %s %s %s\nCOMMIT\n' "$t" "$chain" "$pos" "$rest" | iptables-restore --noflush 2>/dev/null ||
            printf '*%s\n-A %s\nCOMMIT\n' "$t" "$rule" | iptables-restore --noflush ||
            rfail "put back the hand-made iptables rule -t $t -A $rule"
    done < "$S/handmade.ipt"
fi

if [ "$rc" -eq 0 ]; then echo reverted > "$S/state"; else echo 'revert incomplete' > "$S/state"; fi
exit "$rc"
