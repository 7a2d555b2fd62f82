# shellcheck shell=sh
# dwprov verify: the kernel's routing decision for each leg of each flow
# assertion, asked with `ip route get` (the tracer gives the query: the
# addresses after NAT, the incoming interface and the mark the firewall
# sets). One output line per query, in order:
#   N RC ANSWER
# where ANSWER is `ip -o route get`'s line (or its error message).
#
# Parameters, set by the caller as shell-quoted assignments before this
# file (src/check/assert.rs; nothing else from the controller reaches it):
#   Q   the queries, one a line: `N FAMILY DST SRC IIF MARK` (FAMILY: `ip`'s
#       flag for the addresses' family, `-4`; IIF `-`: sent by the gateway),
#       every field checked by the caller (addresses, interface names,
#       numbers)
: "${Q?}"
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export LC_ALL=C

printf '%s\n' "$Q" | while read -r v_n v_fam v_dst v_src v_iif v_mark; do
    [ -n "$v_n" ] || continue
    if [ "$v_iif" = - ]; then
        v_out=$(ip "$v_fam" -o route get "$v_dst" from "$v_src" mark "$v_mark" 2>&1)
    else
        v_out=$(ip "$v_fam" -o route get "$v_dst" from "$v_src" iif "$v_iif" mark "$v_mark" 2>&1)
    fi
    v_rc=$?
    printf '%s %s %s\n' "$v_n" "$v_rc" "$(printf '%s' "$v_out" | tr '\n' ' ')"
done
