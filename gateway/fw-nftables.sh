# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the lines before the library
# dwprov gateway library, nftables backend (follows lib.sh; src/firewall/
# nftables.rs is its controller side). The same functions as
# gateway/fw-iptables.sh, under this backend's name:
#   fw_nftables_snapshot             the table into $S/nft as text (0; 2 =
#                                    cannot list)
#   fw_nftables_snapshot_check RC    stop (nochange) on a bad snapshot status
#   fw_nftables_revert               the table back to $S's listing (rfail on error)
#   fw_nftables_listing DIR          its listing for owned_listings
#   fw_nftables_show                 the snapshot's sections for `rollback`
# nftables: the one table NFT_FAMILY NFT_TABLE and everything in it.

# The owned nftables table into $1 as `nft list` text (what `nft -f`
# reads back: the revert loads it); empty when the table or nft is not
# there. Non-zero when nft cannot list. Text only: with big sets every
# listing costs nft tens of milliseconds, and only `rollback`'s plan wants
# JSON, which fw_nftables_show makes from this text. One listing tells a missing
# table (nft's first error line, exactly, under LC_ALL=C) from an error:
# `nft list tables` would cost a process on every gateway, and about a
# whole listing where sets are big (nft 1.0.6 fetches every set's elements).
owned_nft() {
    command -v nft >/dev/null 2>&1 || { : > "$1"; return 0; }
    if ! nft list table "$NFT_FAMILY" "$NFT_TABLE" > "$1" 2> "$1.err"; then
        : > "$1"
        if [ "$(head -n 1 "$1.err")" = "Error: No such file or directory" ]; then
            rm -f "$1.err"
            return 0
        fi
        cat "$1.err" >&2
        rm -f "$1.err"
        return 1
    fi
    rm -f "$1.err"
}

fw_nftables_snapshot() { owned_nft "$S/nft" || return 2; }

fw_nftables_snapshot_check() {
    [ "$1" = 0 ] || nochange "snapshot the nftables table $NFT_FAMILY $NFT_TABLE (nft list failed)"
}

# Into owned_listings' directory $1: `nftables`, the owned table as `nft
# -j` JSON (what gather reads), empty when it or nft is not there.
fw_nftables_listing() {
    : > "$1/nftables"
    command -v nft >/dev/null 2>&1 || return 0
    # Its stderr stays out of the digest (`.all`); read with a builtin.
    if ! nft -j list table "$NFT_FAMILY" "$NFT_TABLE" > "$1/nftables" 2> "$1/nftables.err.all"; then
        : > "$1/nftables"
        fne=
        IFS= read -r fne < "$1/nftables.err.all"
        if [ "$fne" != "Error: No such file or directory" ]; then
            printf '%s\n' "$fne" >&2
            return 1
        fi
    fi
    return 0
}

# The snapshot's table as `nft -j` JSON, the section `nft.json`: loaded
# from the snapshot's text into a throwaway network namespace and listed
# there, where its hooks never see a packet; empty when the snapshot had
# no table. On failure the section's status is nft's (or unshare's) and
# its output ends with their error. Snapshots of dwprov before 2026-12-03
# hold the JSON listing itself; older ones have no table listing at all.
fw_nftables_show() {
    if [ -f "$S/nft.json" ]; then
        sec nft.json "$S/nft.json"
    elif [ -f "$S/nft" ]; then
        printf '%s begin nft.json\n' "$D"
        r=0
        if [ -s "$S/nft" ]; then
            # shellcheck disable=SC2016 # expanded by the inner shell
            { e=$(unshare -n sh -c 'nft -f "$1" && nft -j list table "$2" "$3"' sh "$S/nft" "$NFT_FAMILY" "$NFT_TABLE" 2>&1 >&3 3>&-); } 3>&1 || { r=$?; printf '%s\n' "$e"; }
        fi
        printf '\n%s end nft.json %s\n\n%s fin\n' "$D" "$r" "$D"
    fi
}

# The owned table back as the snapshot listed it, in one transaction
# (`add` first makes the `delete` safe when the table is gone; nothing else
# of the ruleset is touched), or removed when the snapshot had none.
# Snapshots of older dwprov versions have no listing: skipped.
fw_nftables_revert() {
    if [ -f "$S/nft" ] && command -v nft >/dev/null 2>&1; then
        if ! owned_nft "$S/now.nft"; then
            rfail "cannot list the nftables table $NFT_FAMILY $NFT_TABLE: left as it is"
        elif ! cmp -s "$S/nft" "$S/now.nft"; then
            {
                printf 'add table %s %s\ndelete table %s %s\n' "$NFT_FAMILY" "$NFT_TABLE" "$NFT_FAMILY" "$NFT_TABLE"
                cat "$S/nft"
            } > "$S/revert.nft"
            nft -f "$S/revert.nft" || rfail "restore the nftables table $NFT_FAMILY $NFT_TABLE"
            owned_nft "$S/after.nft" || true
            cmp -s "$S/nft" "$S/after.nft" || { rfail 'the nftables table is not back to the snapshot:'; listing_diff "$S/nft" "$S/after.nft" >&2; }
        fi
    fi
}
