# shellcheck shell=sh
# Run on the lab gateway (`lab.sh exec gw sh -s < reset.sh`, with RP_ETH1,
# RP_ETH2 prepended): remove everything dwprov and the ssh baseline put there,
# so the next apply starts from a clean gateway. Only what dwprov owns (proto
# 201, DWPROV-* chains, its files) and the baseline's proto 202 routes go.
set -e
# One flush may leave rules behind when there are thousands (method
# policy): flush until none is left.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    ip rule show | grep -qE 'proto (201|dwprov)' || break
    ip rule flush protocol 201
done
ip route flush table all proto 201
ip route flush table all proto 202
# The nftables backend's table (only dwprov's own).
if command -v nft >/dev/null 2>&1; then nft delete table inet dwprov 2>/dev/null || true; fi
# Every DWPROV line: chain declarations, their rules, and the jumps to them.
iptables-save | grep -v DWPROV | iptables-restore
# A table left with no rule still hooks every packet (iptables-nft keeps its
# empty built-in chains as nftables base chains): drop it, so each row pays
# only for what its own rendering creates.
for t in mangle nat; do
    if ! iptables-save -t "$t" | grep -q '^-A ' && command -v nft >/dev/null 2>&1; then
        nft delete table ip "$t" 2>/dev/null || true
    fi
done
rm -f /etc/iproute2/rt_tables.d/dwprov.conf /etc/iproute2/rt_protos.d/dwprov.conf \
    /etc/sysctl.d/90-dwprov.conf
rm -rf /etc/dwprov
# The boot hook (init script and its rc links, or units), so every run
# installs it again.
if [ -e /etc/init.d/dwprov ] && command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d dwprov remove >/dev/null 2>&1 || true
fi
rm -f /etc/init.d/dwprov /etc/systemd/system/dwprov.service \
    /etc/systemd/system/dwprov-routes.service /etc/systemd/system/dwprov-route-cache-flush.service
printf '%s\n' "$RP_ETH1" >/proc/sys/net/ipv4/conf/eth1/rp_filter
printf '%s\n' "$RP_ETH2" >/proc/sys/net/ipv4/conf/eth2/rp_filter
# Nothing of dwprov's may be left.
test -z "$(ip route show table all proto 201; ip route show table all proto 202
    ip rule show | grep -E 'proto (201|dwprov)'; iptables-save | grep DWPROV
    nft list table inet dwprov 2>/dev/null)"
