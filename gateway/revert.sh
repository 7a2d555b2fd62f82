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

# Files: back to their copies, or removed when they did not exist.
while read -r i what path; do
    case $what in
    present) { cp -p "$S/files/$i" "$path$TEMP_SUFFIX" && mv -f "$path$TEMP_SUFFIX" "$path"; } || rfail "restore $path" ;;
    absent) rm -f "$path" "$path$TEMP_SUFFIX" || rfail "remove $path" ;;
    esac
done < "$S/files.list"
while read -r k v; do
    printf '%s\n' "$v" > "/proc/sys/$k" || rfail "sysctl $k"
done < "$S/sysctls"
# Undo what installing boot files did (enable links, the flush loop).
if [ -f "$S/units.sh" ]; then
    (fail() { echo "dwprov revert: $1" >&2; }; . "$S/units.sh") || rfail 'boot units'
fi

# Nexthop objects of the snapshot back first (the routes below may use them).
if [ -s "$S/nexthops" ]; then
    ip -force -batch "$S/nexthops" || rfail 'restore nexthop objects'
fi
# Rules and routes: the difference only.
if owned_rules "$S/now.rules" && owned_routes "$S/now.routes"; then
    {
        only_in "$S/routes" "$S/now.routes"
        only_in "$S/rules" "$S/now.rules"
        only_in "$S/now.rules" "$S/rules" | sed 's/^rule add /rule del /'
        # Routes whose key (table, destination, tos, metric) the snapshot
        # does not have; a changed route was replaced above.
        awk '
            function key(l,   w, n, i, k) {
                n = split(l, w, " "); k = w[5] " " w[6]
                for (i = 7; i < n; i++) if (w[i] ~ /^(table|metric|tos|dsfield)$/) k = k " " w[i] " " w[i + 1]
                return k
            }
            FILENAME == ARGV[1] { have[key($0)]; next }
            !(key($0) in have) { sub(/^route replace /, "route del "); print }' "$S/routes" "$S/now.routes"
    } > "$S/revert.batch"
    if [ -s "$S/revert.batch" ]; then
        ip "$IP_FAMILY" -force -batch "$S/revert.batch" || rfail 'restore rules and routes'
    fi
    # Nexthop objects the snapshot did not have, now no route uses them
    # (groups first: by id, highest first).
    if [ -f "$S/nexthops" ] && owned_nexthops "$S/now.nexthops"; then
        awk 'FILENAME == ARGV[1] { have[$4]; next } !($4 in have) { print "nexthop del id " $4 }' \
            "$S/nexthops" "$S/now.nexthops" | sort -t ' ' -k 4,4nr > "$S/revert.nexthops"
        if [ -s "$S/revert.nexthops" ]; then
            ip -force -batch "$S/revert.nexthops" || rfail 'delete nexthop objects the snapshot did not have'
        fi
    fi
    if owned_rules "$S/after.rules" && owned_routes "$S/after.routes"; then
        cmp -s "$S/rules" "$S/after.rules" || { rfail 'the owned rules are not back to the snapshot:'; listing_diff "$S/rules" "$S/after.rules" >&2; }
        cmp -s "$S/routes" "$S/after.routes" || { rfail 'the owned routes are not back to the snapshot:'; listing_diff "$S/routes" "$S/after.routes" >&2; }
    else
        rfail 'list rules and routes after the revert'
    fi
else
    rfail 'list the owned rules and routes: left as they are'
fi

# The firewall: each backend's owned objects (gateway/fw-*.sh: iptables,
# then nftables).
fw_revert


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
