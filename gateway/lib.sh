# shellcheck shell=sh
# dwprov gateway library: the first part of every script dwprov runs on a
# gateway (and of the revert.sh it leaves there). Helpers only: stopping
# with a named step (fail, nochange), the revert timer, the step guard, and
# listings of the objects dwprov owns in one canonical line format, used by
# the snapshot, the revert and its self-check alike.
#
# Parameters (shell variables set by the caller before the functions run):
#   S      the snapshot directory (commit-confirmed apply, revert, rollback)
#   PROTO  the route protocol number dwprov tags its rules and routes with
#   IP_FAMILIES  the `ip` family flags of those rules and routes, the first
#          the default (`-4`; from src/state/family.rs MANAGED). A listing
#          line or batch line of another family starts with its flag
#          (`-6 route replace ...`, the one spelling `ip -batch` lacks):
#          every listing loops over the families and every batch runs
#          each family's lines with its flag (batch_ip)
#   CHAIN  the prefix of dwprov's iptables chains (their jumps carry it too)
#   NFT_FAMILY, NFT_TABLE  the one nftables table dwprov owns
#   TEMP_SUFFIX, PROBE  the staged-write suffix and the write-probe file name
# The firewall backends' parts (gateway/fw-*.sh) follow this file.
# The owned names (PROTO .. PROBE) come from src/ownership.rs: the
# controller sets them before this text (converge::lib_sh), also in the
# copy a snapshot keeps for its revert.
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LC_ALL=C
umask 022
: "${PROTO:?}" "${IP_FAMILIES:?}" "${CHAIN:?}" "${NFT_FAMILY:?}" "${NFT_TABLE:?}" "${TEMP_SUFFIX:?}" "${PROBE:?}"
# Exit statuses the controller reads (src/converge.rs, src/safe.rs).
STEP_FAILED=3
NOTHING_CHANGED=4

# A step failed after something may have changed.
fail() { echo "dwprov: $1" >&2; exit "$STEP_FAILED"; }
# Stopped before anything changed.
nochange() { echo "dwprov: $1; nothing was changed" >&2; exit "$NOTHING_CHANGED"; }

# The step guard: before each change, make sure no revert of this snapshot
# has started (the revert marks it before ending the apply's process group),
# so no step of a stalled apply lands after (or during) its revert.
step() {
    if [ -n "${S:-}" ] && [ -e "$S/revert.started" ]; then
        echo "dwprov: a revert of this snapshot has started: not running step '$1'" >&2
        exit "$STEP_FAILED"
    fi
}

# fpre: what a listing or batch line of family FLAG ($1) starts with:
# nothing for the first (default) family, `FLAG ` for the others. Sets a
# variable (a `$(...)` would fork).
family_prefix() {
    fpre="$1 "
    [ "$1" != "${IP_FAMILIES%% *}" ] || fpre=
}

# Owned ip rules, one `rule add ...` line each, numeric tables, sorted
# (a line of a family after the first starts with its flag, see above).
# `ip -N` prints `ipproto ipproto-6`; the input syntax wants `ipproto 6`.
owned_rules() {
    : > "$1.all"
    for ofam in $IP_FAMILIES; do
        ip "$ofam" -N rule show > "$1.raw" || return 1
        family_prefix "$ofam"
        awk -v proto="$PROTO" -v pre="$fpre" '
            {
                line = $0
                if (line !~ ("[ \t]proto " proto "([ \t]|$)")) next
                sub(/\[detached\]/, "", line); sub(/ unresolved/, "", line)
                gsub(/ipproto ipproto-/, "ipproto ", line)
                p = line; sub(/:.*/, "", p)
                sub(/^[0-9]+:[ \t]*/, "", line)
                gsub(/[ \t]+/, " ", line); sub(/ $/, "", line)
                print pre "rule add priority " p " " line
            }' "$1.raw" >> "$1.all" || return 1
    done
    sort "$1.all" > "$1" || return 1
    rm -f "$1.raw" "$1.all"
}

# Owned routes, one `route replace proto P ...` line each (the protocol
# first: nothing may follow multipath next hops, which are joined), numeric
# tables and types, output-only flags dropped, sorted.
owned_routes() {
    : > "$1.all"
    for ofam in $IP_FAMILIES; do
        ip "$ofam" -N -d route show table all proto "$PROTO" > "$1.raw" || return 1
        family_prefix "$ofam"
        awk -v proto="$PROTO" -v pre="$fpre" '
            BEGIN {
                split("unicast local broadcast anycast multicast blackhole unreachable prohibit throw nat", t, " ")
            }
            function out() {
                if (cur == "") return
                n = split(cur, w, " ")
                if (w[1] ~ /^[0-9]+$/ && (w[1] in t)) w[1] = t[w[1]]
                s = ""
                nh = 0
                for (i = 1; i <= n; i++) {
                    if (w[i] ~ /^(linkdown|dead|offload|trap|rt_offload|rt_trap|rt_offload_failed|pervasive|notify)$/) continue
                    # A route by nexthop object: where the object points is
                    # dynamic (the agent moves it); nh_info/nexthop lines are the object.
                    if (w[i] == "nhid") nh = 1
                    if (nh && (w[i] == "nh_info" || w[i] == "nexthop")) break
                    if (nh && (w[i] == "via" || w[i] == "dev")) { i++; continue }
                    s = s (s == "" ? "" : " ") w[i]
                }
                print pre "route replace proto " proto " " s
                cur = ""
            }
            /^[ \t]/ { cur = cur " " $0; gsub(/[ \t]+/, " ", cur); next }
            { out(); cur = $0; gsub(/[ \t]+/, " ", cur) }
            END { out() }' "$1.raw" >> "$1.all" || return 1
    done
    sort "$1.all" > "$1" || return 1
    rm -f "$1.raw" "$1.all"
}

# Owned nexthop objects (issue 11), one `nexthop replace id N ... proto P`
# line each, sorted by id (members before the groups using them). A kernel
# without nexthop objects (before 5.3) has none: an empty listing.
owned_nexthops() {
    if ! ip -d nexthop show proto "$PROTO" > "$1.raw" 2>/dev/null; then
        : > "$1"
        rm -f "$1.raw"
        return 0
    fi
    awk -v proto="$PROTO" '
        {
            s = ""
            for (i = 1; i <= NF; i++) {
                if ($i == "id" || $i == "via" || $i == "dev" || $i == "group") { s = s " " $i " " $(i + 1); i++ }
            }
            if (s != "") print "nexthop replace" s " proto " proto
        }' "$1.raw" | sort -t ' ' -k 4,4n > "$1" || return 1
    rm -f "$1.raw"
}

# What differs between two owned listings, for messages (at most 5 lines).
listing_diff() {
    awk 'FILENAME == ARGV[1] { a[$0]++; next } { if (a[$0]-- <= 0) print "  only in " FILENAME ": " $0 }' "$2" "$1" | head -n 5
    awk 'FILENAME == ARGV[1] { a[$0]++; next } { if (a[$0]-- <= 0) print "  only in " FILENAME ": " $0 }' "$1" "$2" | head -n 5
}

# Stop whichever revert timer is armed for snapshot $S.
disarm() {
    if [ -f "$S/timer.unit" ]; then
        u=$(cat "$S/timer.unit")
        systemctl stop "$u.timer" 2>/dev/null
        rm -f "/run/systemd/system/$u.timer" "/run/systemd/system/$u.service"
        systemctl daemon-reload 2>/dev/null
        rm -f "$S/timer.unit"
    fi
    p=$(cat "$S/timer.pid" 2>/dev/null)
    if [ -n "$p" ]; then kill -TERM -"$p" 2>/dev/null; fi
    rm -f "$S/timer.pid"
}

# The controller's verdict on an apply it checked while the confirm's
# connection verified (the pipelined confirm): print the ready line $1, read
# one line on stdin. Only `confirm` is a yes: anything else, or none (the
# controller is gone), is a no.
await_verdict() {
    printf '%s\n' "$1"
    verdict=
    IFS= read -r verdict || verdict=
    [ "$verdict" = confirm ]
}

# Lines of file $1 that are not in file $2 (as multisets), in $1's order.
only_in() {
    awk 'FILENAME == ARGV[1] { b[$0]++; next } { if (b[$0]-- <= 0) print }' "$2" "$1"
}

# Apply an `ip -batch` stream: stdin, or in a commit-confirmed apply ($S
# set) the file $S/ip.batch, where the kernel's answer is checked against
# the snapshot: an add that fails
# with "File exists" (the snapshot said it is absent) or a delete with "No
# such ..." (the snapshot said it is there) means the tool that listed the
# state lied, and a revert from that listing would delete real objects.
# Then the lines that did run are undone by their inverses (built here from
# the batch; the old value of each replaced route is in $S/ip.undo, `LINE
# route replace OLD` per line) and the apply stops, changing nothing.
# `ip FLAG [OPTION...] -batch` of FILE ($1), with each family's flag. With
# one family: FILE itself (nexthop lines need `ip` without the flag: `ip
# -4` refuses a group, which has no family; every other line names
# addresses of that family, and the first family is the rules' default).
# With several: one awk puts each family's lines in FILE.FLAG (without
# their flag; lines without one, nexthops too, are the first family's)
# and their line numbers in FILE in FILE.FLAG.n, and each family's batch
# runs in IP_FAMILIES order; a failure's "Command failed FILE.FLAG:N" is
# said as FILE's line, which `ip_batch` below reads. Without -force the
# first failing family stops it (what ran before is undone from FILE's
# lines before the failed one, so no later line may have run).
batch_ip() {
    bf=$1
    shift
    bfirst=${IP_FAMILIES%% *}
    if [ "$bfirst" = "$IP_FAMILIES" ]; then
        if grep -q '^nexthop ' "$bf"; then ip "$@" -batch "$bf"; else ip "$bfirst" "$@" -batch "$bf"; fi
        return
    fi
    # A line of a family not managed here is refused, not left out.
    awk -v first="$bfirst" -v f="$bf" -v fams="$IP_FAMILIES" '
        BEGIN { n = split(fams, w, " "); for (i = 1; i <= n; i++) { ok[w[i]]; printf "" > (f "." w[i]); printf "" > (f "." w[i] ".n") } }
        { fam = first; l = $0 }
        /^-[0-9] / { fam = substr($0, 1, 2); l = substr($0, 4) }
        !(fam in ok) { print "dwprov: line " NR " of " f " is of family " fam ", not one of " fams > "/dev/stderr"; bad = 1; exit }
        { print l > (f "." fam); print NR > (f "." fam ".n") }
        END { if (bad) exit 2 }' "$bf" || { for bfam in $IP_FAMILIES; do rm -f "$bf.$bfam" "$bf.$bfam.n"; done; return 1; }
    brc=0
    for bfam in $IP_FAMILIES; do
        [ -s "$bf.$bfam" ] || continue
        bflag=$bfam
        if [ "$bfam" = "$bfirst" ] && grep -q '^nexthop ' "$bf.$bfam"; then bflag=; fi
        if ip ${bflag:+"$bflag"} "$@" -batch "$bf.$bfam" 2> "$bf.err"; then
            cat "$bf.err" >&2
            continue
        fi
        brc=1
        awk -v f="$bf" -v part="$bf.$bfam" '
            FILENAME == ARGV[1] { at[FNR] = $0; next }
            {
                p = "Command failed " part ":"
                k = substr($0, length(p) + 1)
                if (index($0, p) == 1 && (k in at)) $0 = "Command failed " f ":" at[k]
                print
            }' "$bf.$bfam.n" "$bf.err" >&2
        case " $* " in *" -force "*) ;; *) break ;; esac
    done
    for bfam in $IP_FAMILIES; do rm -f "$bf.$bfam" "$bf.$bfam.n"; done
    rm -f "$bf.err"
    return "$brc"
}

ip_batch() {
    if [ -z "${S:-}" ]; then
        t=$(mktemp) || fail 'ip -batch: mktemp'
        cat > "$t" || { rm -f "$t"; fail 'ip -batch: read the batch'; }
        batch_ip "$t" || { rm -f "$t"; fail 'ip -batch'; }
        rm -f "$t"
        return 0
    fi
    batch_ip "$S/ip.batch" 2> "$S/ip.err" && return 0
    cat "$S/ip.err" >&2
    n=$(sed -n 's/^Command failed [^:]*:\([0-9][0-9]*\)$/\1/p' "$S/ip.err" | head -n 1)
    if [ -n "$n" ] && grep -q -e 'File exists' -e 'No such process' -e 'No such file or directory' "$S/ip.err"; then
        line=$(sed -n "${n}p" "$S/ip.batch")
        [ -f "$S/ip.undo" ] || : > "$S/ip.undo"
        awk -v n="$n" '
            FILENAME == ARGV[1] { i = $1; sub(/^[0-9]+ /, ""); old[i] = $0; next }
            FNR < n {
                l = $0
                # A line of another family keeps its flag (batch_ip).
                f = ""
                if (l ~ /^-[0-9] /) { f = substr(l, 1, 3); l = substr(l, 4) }
                if (FNR in old) { l = old[FNR]; f = "" }
                else if (sub(/^route add /, "route del ", l)) {}
                else if (sub(/^route del /, "route add ", l)) {}
                else if (sub(/^rule add /, "rule del ", l)) {}
                else if (sub(/^rule del /, "rule add ", l)) {}
                u[FNR] = f l
            }
            END { for (i = n - 1; i >= 1; i--) if (i in u) print u[i] }' "$S/ip.undo" "$S/ip.batch" > "$S/ip.inverse"
        undone=ok
        if [ -s "$S/ip.inverse" ]; then batch_ip "$S/ip.inverse" -force >&2 || undone=failed; fi
        if command -v staged_cleanup >/dev/null 2>&1; then staged_cleanup; fi
        echo "dwprov: the kernel contradicts the snapshot: line $n of the ip batch ($line) failed as above, but \`ip\` listed the state otherwise (gather, snapshot); a revert from that listing would delete real objects: stopped (does \`ip\` lie, or another tool change rules and routes now?)" >&2
        if [ "$undone" = ok ]; then
            echo "dwprov: the $((n - 1)) line(s) before it were undone; nothing was changed" >&2
            exit "$NOTHING_CHANGED"
        fi
        fail "undoing the $((n - 1)) line(s) before it failed: check the rules and routes by hand ($S/ip.inverse)"
    fi
    fail 'ip -batch'
}

# End the process group of the apply of $S (a stalled step must not land
# after the revert). The group's leader is `sh $S/apply.sh`; when a process
# with that pid runs something else, the pid was reused and the group is
# gone (the kernel reuses no pid still used as a process group id).
end_apply() {
    pg=$(cat "$S/apply.pgid" 2>/dev/null) || return 0
    [ -n "$pg" ] || return 0
    if [ -r "/proc/$pg/cmdline" ] && ! tr '\0' ' ' < "/proc/$pg/cmdline" | grep -qF "$S/apply.sh"; then
        rm -f "$S/apply.pgid"
        return 0
    fi
    if kill -TERM -"$pg" 2>/dev/null; then
        i=0
        while kill -0 -"$pg" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.02; i=$((i + 1)); done
        kill -KILL -"$pg" 2>/dev/null
        i=0
        while kill -0 -"$pg" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
        echo "dwprov revert: ended the apply still running (process group $pg)" >&2
    fi
    rm -f "$S/apply.pgid"
}

# S := snapshot $TO of $SNAPSHOT_DIR, or the newest complete one (its state
# is written once it is taken) when TO is empty; fails when there is none.
pick_snapshot() {
    if [ -n "$TO" ]; then
        S=$SNAPSHOT_DIR/$TO
    else
        S=
        for d in $(ls -1d "$SNAPSHOT_DIR"/*/ 2>/dev/null | sort); do
            if [ -f "${d}state" ]; then S=${d%/}; fi
        done
    fi
    { [ -n "$S" ] && [ -f "$S/revert.sh" ]; } || fail 'no such snapshot on this host (dwprov rollback --list shows them)'
}

# dwprov's objects as the kernel lists them now, into directory $1 (made
# anew), one file per listing: for each managed family FLAG, `rulesFLAG`
# the owned rules as text and `routesFLAG` the owned routes as `ip -j`
# JSON; every firewall backend's (fw_listing); `sums`, the digest of each
# file named after $2 (the owned files, /proc/sys entries; a missing one
# has no line). With $2 `verify` (the apply's, for the controller's
# verify: show_listings) also `rulesFLAG.all`, every rule as `ip -j` JSON,
# and `nexthops.all`, the nexthop objects (none where the kernel has
# none); with `digest` (the confirm's) not. The apply records
# listing_digest of its listings; the confirm over a new connection lists
# and digests again: equal means the state verified is the state now, and
# only a digest travels twice. Errors go to $1/errors; non-zero when a
# listing failed.
owned_listings() {
    ol=$1
    olm=$2
    shift 2
    { rm -rf "$ol" && mkdir -p "$ol"; } || return 1
    digest_tool
    # Everything but the routes (the big listing) in the background.
    {
        olb=0
        fw_listing "$ol" || olb=1
        for ofam in $IP_FAMILIES; do
            # grep finds nothing where no rule is owned yet: not an error.
            ip "$ofam" -N rule show | grep -E "[[:space:]]proto $PROTO([[:space:]]|\$)" > "$ol/rules$ofam"
            if [ "$olm" = verify ]; then ip "$ofam" -j -d -N rule show > "$ol/rules$ofam.all" || olb=1; fi
        done
        if [ "$olm" = verify ]; then ip -N -j -d nexthop show > "$ol/nexthops.all" 2>/dev/null || : > "$ol/nexthops.all"; fi
        "$sum" "$@" > "$ol/sums" 2>/dev/null
        exit "$olb"
    } 2>> "$ol/errors" &
    olj=$!
    olr=0
    for ofam in $IP_FAMILIES; do
        ip "$ofam" -j -d -N route show table all proto "$PROTO" > "$ol/routes$ofam" 2>> "$ol/errors" || olr=1
    done
    wait "$olj" || olr=1
    return "$olr"
}

# sum: sha256sum where there is one, else POSIX cksum (the same tool both
# times a digest is computed on one gateway).
digest_tool() {
    if command -v sha256sum >/dev/null 2>&1; then sum="sha256sum"; else sum="cksum"; fi
}

# The digest of owned_listings' directory $1 (a `sum` output line): of
# every listing in it but the `.all` ones (they show foreign objects too)
# and the errors, by name, in the order of their names.
listing_digest() {
    digest_tool
    (
        cd "$1" || exit 1
        set --
        for f in *; do
            case $f in *.all | errors) ;; *) set -- "$@" "$f" ;; esac
        done
        "$sum" "$@"
    ) | "$sum"
}

# Every listing of directory $1 as a section framed by the marker $D (the
# gather's format: `$D begin NAME`, the listing, `$D end NAME 0`, an empty
# stderr, `$D fin`), named as its file, in one `cat`: the frames between
# the listings are files of their own (`.frame.N`, written by the shell).
# The errors, if any, are the section `errors`.
show_listings() {
    (
        cd "$1" || exit 1
        set --
        sln=0
        slp=
        for f in *; do
            [ -f "$f" ] || continue
            sln=$((sln + 1))
            { [ -z "$slp" ] || printf '\n%s end %s 0\n\n%s fin\n' "$D" "$slp" "$D"; printf '%s begin %s\n' "$D" "$f"; } > ".frame.$sln"
            set -- "$@" ".frame.$sln" "$f"
            slp=$f
        done
        [ -z "$slp" ] || printf '\n%s end %s 0\n\n%s fin\n' "$D" "$slp" "$D" > .frame.end
        [ -z "$slp" ] || cat "$@" .frame.end
    )
}
