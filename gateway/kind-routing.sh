# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the caller
# ip rules, routes and nexthop objects (src/routing.rs, src/nexthops.rs):
# their snapshot and revert steps, one step each for both kinds since
# they interleave (nexthops come back before the routes that use them and
# go after them). Appended to the installed lib.sh; `rfail` is revert.sh's.

# The owned rules, routes and nexthops into the snapshot; on failure
# `what` says which listing failed (snapshot.sh's snapshot_state reads it).
# shellcheck disable=SC2034
snapshot_routing() {
    owned_rules "$S/rules" || { what='snapshot rules (ip rule show failed)'; return 1; }
    owned_routes "$S/routes" || { what='snapshot routes (ip route show failed)'; return 1; }
    owned_nexthops "$S/nexthops" || { what='snapshot nexthop objects (ip nexthop show failed)'; return 1; }
}

# Back to the snapshot: its nexthop objects first, then the difference
# only of rules and routes, then the nexthops it did not have, and a
# check that the owned rules and routes are the snapshot's again.
revert_routing() {
    if [ -s "$S/nexthops" ]; then
        ip -force -batch "$S/nexthops" || rfail 'restore nexthop objects'
    fi
    if ! { owned_rules "$S/now.rules" && owned_routes "$S/now.routes"; }; then
        rfail 'list the owned rules and routes: left as they are'
        return 0
    fi
    {
        only_in "$S/routes" "$S/now.routes"
        only_in "$S/rules" "$S/now.rules"
        only_in "$S/now.rules" "$S/rules" | sed 's/^\(-[0-9] \)\{0,1\}rule add /\1rule del /'
        # Routes whose key (family, table, destination, tos, metric) the
        # snapshot does not have; a changed route was replaced above.
        awk '
            function key(l,   w, n, i, k, o) {
                n = split(l, w, " "); o = (w[1] ~ /^-[0-9]$/); k = (o ? w[1] : "") " " w[5 + o] " " w[6 + o]
                for (i = 7 + o; i < n; i++) if (w[i] ~ /^(table|metric|tos|dsfield)$/) k = k " " w[i] " " w[i + 1]
                return k
            }
            FILENAME == ARGV[1] { have[key($0)]; next }
            !(key($0) in have) { sub(/route replace /, "route del "); print }' "$S/routes" "$S/now.routes"
    } > "$S/revert.batch"
    if [ -s "$S/revert.batch" ]; then
        batch_ip "$S/revert.batch" -force || rfail 'restore rules and routes'
    fi
    # Nexthop objects the snapshot did not have, now no route uses them
    # (groups first: by id, highest first). Only here: deleting a nexthop
    # deletes the routes still using it.
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
}
