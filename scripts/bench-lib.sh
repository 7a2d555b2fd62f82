# shellcheck shell=bash
# Shared pieces of the bench scripts (sourced, not run): the seed's dual-line
# inventory writer, so each bench does not carry its own copy.

# bench_inventory FILE METHOD FIREWALL LIST [EXTRA_CNC_ROUTES]: the seed
# topology (ctc default line, cnc with LIST as routes_file) for the lab of
# directory $D. FIREWALL is iptables or nftables; EXTRA_CNC_ROUTES (", a/b")
# is appended to cnc's inline routes (the "one prefix changed" case).
bench_inventory() {
    local fw=""
    [ "$3" = nftables ] && fw="
      firewall: nftables"
    cat >"$1" <<INV
all:
  hosts:
    gw1:
      address: 10.9.0.2
      ssh: {user: root, identity_file: $D/id_ed25519, known_hosts: $D/known_hosts}
      method: $2$fw
      lan:
        - {interface: eth0, address: 192.168.0.1/24}
      lines:
        - {name: ctc, table: 100, mark: 0x100, interface: eth1, address: 198.51.100.2/24,
           gateway: 198.51.100.1, default: true, routes: [100.64.0.0/16]}
        - {name: cnc, table: 200, mark: 0x200, interface: eth2, address: 203.0.113.2/24,
           gateway: 203.0.113.1, routes: [100.65.0.0/16${5:-}], routes_file: '$4'}
      nat: {mode: snat}
INV
}

# bench_list16000 FILE: the 16,000-prefix list (unicom.txt, then /26s of
# 172.16.0.0/12: no real list is that long here).
bench_list16000() {
    grep -E '^[0-9]' examples/isp/unicom.txt >"$1"
    awk -v n=$((16000 - $(wc -l <"$1"))) 'BEGIN {
        for (i = 0; i < n; i++) printf "172.%d.%d.%d/26\n", 16 + int(i / 1024), int(i / 4) % 256, (i % 4) * 64
    }' >>"$1"
}
