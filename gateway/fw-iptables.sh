# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the lines before the library
# dwprov gateway library, iptables backend (follows lib.sh; src/firewall/
# iptables.rs is its controller side). Every backend file defines the same
# functions under its name, which the `fw_*` dispatchers
# (firewall::gateway_sh) call for every backend, since one apply handles
# both backends' state (a switch removes the other's objects):
#   fw_iptables_snapshot             owned lines into $S/ipt (0, 1 = two
#                                    listings disagree, 2 = cannot list)
#   fw_iptables_snapshot_check RC    stop (nochange) on a bad snapshot status
#   fw_iptables_revert               owned objects back to $S's listing (rfail on error)
#   fw_iptables_listing DIR          its listings for owned_listings
#   fw_iptables_show                 the snapshot's sections for `rollback`
# iptables: the owned chains (CHAIN*) and every jump into one, in
# `TABLE<TAB>LINE` listings, restored with `iptables-restore --noflush`.

# The owned part of iptables rules, `TABLE<TAB>LINE` per line, sorted:
# `-N CHAIN-X` per owned chain, its `-A` rules, and every jump into one.
# From `iptables-save` (stdin) with `save`, from `iptables -t T -S` with `S`.
owned_ipt_filter() {
    awk -v mode="$1" -v tbl="${2:-}" -v chain="$CHAIN" '
        mode == "save" && /^\*/ { tbl = substr($0, 2); next }
        mode == "save" && index($0, ":" chain) == 1 { c = substr($1, 2); print tbl "\t-N " c; next }
        mode == "S" && index($0, "-N " chain) == 1 { print tbl "\t" $0; next }
        index($0, "-A " chain) == 1 { print tbl "\t" $0; next }
        /^-A / && $0 ~ (" -[jg] " chain "[^ ]*$") { print tbl "\t" $0 }'
}

# Owned iptables lines from iptables-save into $1 (sorted; in save order in
# $1.ordered), and the same read with
# `iptables -t T -S` into $1.S; non-zero when the two disagree (a save that
# lies: iptables-legacy/nft mismatch, a save missing a table).
owned_ipt() {
    iptables-save > "$1.save" || return 2
    owned_ipt_filter save < "$1.save" > "$1.ordered" || return 2
    sort "$1.ordered" > "$1" || return 2
    for t in filter nat mangle raw; do
        iptables -t "$t" -S 2>/dev/null | owned_ipt_filter S "$t"
    done | sort > "$1.S" || return 2
    cmp -s "$1" "$1.S"
}

fw_iptables_snapshot() { owned_ipt "$S/ipt"; }

fw_iptables_show() { sec ipt.ordered "$S/ipt.ordered"; }

fw_iptables_snapshot_check() {
    case $1 in
    0) ;;
    1) nochange "iptables-save disagrees with \`iptables -t TABLE -S\` about what dwprov owns (a save of the other iptables backend, or one missing a table?), so it cannot be trusted for a snapshot:
$(listing_diff "$S/ipt" "$S/ipt.S")" ;;
    *) nochange 'snapshot iptables (iptables-save failed)' ;;
    esac
}

# Into owned_listings' directory $1: `iptables.all`, the whole save (what
# the verify reads, as gather does), and `iptables`, its owned lines (what
# the digest covers: a save's counters and timestamps change by themselves).
fw_iptables_listing() {
    if ! command -v iptables-save >/dev/null 2>&1; then
        : > "$1/iptables.all"
        : > "$1/iptables"
        return 0
    fi
    iptables-save > "$1/iptables.all" || return 1
    # No owned line yet is no error.
    grep -e '^\*' -e "^:$CHAIN" -e "^-A $CHAIN" -e " -[jg] ${CHAIN}[^ ]*\$" "$1/iptables.all" > "$1/iptables"
    return 0
}

# Owned chains and jumps only, --noflush. Not done when iptables-save
# disagrees with `iptables -S` (a save that lies would make it delete real
# chains).
fw_iptables_revert() {
    owned_ipt "$S/now.ipt"
    case $? in
    0)
        awk -F '\t' -v owned="-A $CHAIN" '
            FILENAME == ARGV[1] {
                t = $1; l = $2; tables[t]
                if (l ~ /^-N /) { c = substr(l, 4); snap[t, c]; if (!((t, c) in seen)) { seen[t, c]; order[t] = order[t] c " " } }
                else if (index(l, owned) == 1) rules[t] = rules[t] l "\n"
                else jump[t, ++nj[t]] = l
                next
            }
            {
                t = $1; l = $2; tables[t]
                if (l ~ /^-N /) { c = substr(l, 4); if (!((t, c) in seen)) { seen[t, c]; order[t] = order[t] c " " } }
                else if (index(l, owned) != 1) { sub(/^-A /, "-D ", l); del[t] = del[t] l "\n" }
            }
            END {
                for (t in tables) {
                    printf "*%s\n", t
                    n = split(order[t], cs, " ")
                    for (i = 1; i <= n; i++) printf ":%s - [0:0]\n", cs[i]
                    printf "%s%s", rules[t], del[t]
                    for (i = nj[t]; i >= 1; i--) {
                        l = jump[t, i]; split(l, w, " ")
                        printf "-I %s 1%s\n", w[2], substr(l, length("-A " w[2]) + 1)
                    }
                    for (i = 1; i <= n; i++) if (!((t, cs[i]) in snap)) printf "-X %s\n", cs[i]
                    print "COMMIT"
                }
            }' "$S/ipt.ordered" "$S/now.ipt.ordered" > "$S/revert.ipt"
        if [ -s "$S/revert.ipt" ]; then
            iptables-restore --noflush < "$S/revert.ipt" || rfail "restore the $CHAIN* chains and jumps"
        fi
        owned_ipt "$S/after.ipt" >/dev/null
        cmp -s "$S/ipt" "$S/after.ipt" || { rfail 'the owned iptables chains and jumps are not back to the snapshot:'; listing_diff "$S/ipt" "$S/after.ipt" >&2; }
        ;;
    1)
        rfail "iptables-save disagrees with \`iptables -t TABLE -S\` about the $CHAIN* chains and jumps; iptables left as it is:"
        listing_diff "$S/now.ipt" "$S/now.ipt.S" >&2
        ;;
    *) rfail 'cannot list iptables: left as it is' ;;
    esac
}
