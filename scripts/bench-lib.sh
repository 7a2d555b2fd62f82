# shellcheck shell=bash
# Shared pieces of the bench scripts (sourced, not run): a bench's own lab,
# the seed's dual-line inventory writer and the median, so each bench does
# not carry its own copy. The caller defines `say` (its progress lines).

# bench_inventory FILE METHOD FIREWALL LIST [OPTION...]: the seed topology
# (ctc default line with 100.64.0.0/16, cnc with 100.65.0.0/16 and LIST as
# its routes_file; LIST "" for none) for the lab of directory $D, SNAT.
# FIREWALL is iptables or nftables. Options, for the benches that measure
# more of the seed:
#   --cnc-extra ", a/b"   appended to cnc's inline routes (the "one prefix
#                         changed" case; a bare 5th argument means the same)
#   --ctc-list FILE       ctc's routes_file
#   --health "interval: 1, down: 3, timeout: 0.5"  a health block on both
#                         lines (their users' address, ping and :80)
#   --forwards            the seed's two forwards (80 on both lines, 2222->22 on cnc)
#   --hairpin             hairpin NAT
bench_inventory() {
    local file=$1 method=$2 firewall=$3 cnc_list=$4 cnc_extra="" ctc_list="" health="" forwards="" hairpin=""
    shift 4
    while (($#)); do
        case $1 in
        --cnc-extra) cnc_extra=$2; shift 2 ;;
        --ctc-list) ctc_list=$2; shift 2 ;;
        --health) health=$2; shift 2 ;;
        --forwards) forwards=1; shift ;;
        --hairpin) hairpin=1; shift ;;
        --*) echo "bench_inventory: unknown option $1" >&2; return 2 ;;
        *) cnc_extra=$1; shift ;;
        esac
    done
    {
        printf '%s\n' "all:" "  hosts:" "    gw1:" "      address: 10.9.0.2" \
            "      ssh: {user: root, identity_file: $D/id_ed25519, known_hosts: $D/known_hosts}" \
            "      method: $method"
        [ "$firewall" = nftables ] && echo "      firewall: nftables"
        printf '%s\n' "      lan:" "        - {interface: eth0, address: 192.168.0.1/24}" "      lines:"
        bench_line ctc 100 0x100 eth1 198.51.100.2/24 198.51.100.1 100.64 "" "$ctc_list" "$health"
        echo "          default: true"
        bench_line cnc 200 0x200 eth2 203.0.113.2/24 203.0.113.1 100.65 "$cnc_extra" "$cnc_list" "$health"
        echo "      nat: {mode: snat}"
        [ -z "$forwards" ] || printf '%s\n' "      forwards:" \
            "        - {proto: tcp, port: 80, to: 192.168.0.100}" \
            "        - {proto: tcp, port: 2222, to: 192.168.0.100, to_port: 22, lines: [cnc]}"
        [ -z "$hairpin" ] || echo "      hairpin: true"
    } >"$file"
}

# bench_line NAME TABLE MARK IF ADDRESS GATEWAY NET EXTRA LIST HEALTH: one
# line of bench_inventory; NET is the first two octets of its users' /16.
bench_line() {
    printf '%s\n' "        - name: $1" "          table: $2" "          mark: $3" "          interface: $4" \
        "          address: $5" "          gateway: $6" "          routes: [$7.0.0/16$8]"
    [ -z "$9" ] || echo "          routes_file: '$9'"
    [ -z "${10}" ] || echo "          health: {targets: [$7.1.10, '$7.1.10:80'], ${10}}"
}

# bench_list16000 FILE: the 16,000-prefix list (unicom.txt, then /26s of
# 172.16.0.0/12: no real list is that long here).
bench_list16000() {
    grep -E '^[0-9]' examples/isp/unicom.txt >"$1"
    awk -v n=$((16000 - $(wc -l <"$1"))) 'BEGIN {
        for (i = 0; i < n; i++) printf "172.%d.%d.%d/26\n", 16 + int(i / 1024), int(i / 4) % 256, (i % 4) * 64
    }' >>"$1"
}

# bench_lab_up PREFIX DIR: this bench's own lab (scripts/lab.sh --prefix
# PREFIX --dir DIR), torn down on exit, also on failure or ^C. Sets LAB (the
# lab.sh command line, for `"${LAB[@]}" exec ROLE ...`).
bench_lab_up() {
    LAB=("$ROOT/scripts/lab.sh" --prefix "$1" --dir "$2")
    trap bench_lab_down EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # lab.sh up tears down a half-built lab itself; down is idempotent.
    BENCH_LAB_UP=yes
    say "lab up (prefix $1, dir $2)"
    "${LAB[@]}" up >/dev/null
}

bench_lab_down() {
    local rc=$?
    if [ "${BENCH_LAB_UP:-}" = yes ]; then
        "${LAB[@]}" down >/dev/null 2>&1 || say "warning: lab down failed: ${LAB[*]} down"
    fi
    exit "$rc"
}

# bench_median VALUES...: their median (the mean of the middle two for an
# even count).
bench_median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
