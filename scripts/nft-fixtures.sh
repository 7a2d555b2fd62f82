#!/usr/bin/env bash
# Re-capture tests/fixtures/nftables from a real kernel, after the owned
# table's rendering (src/render/nftables.rs) changed:
#
#   sudo scripts/nft-fixtures.sh
#
# The seed's table scripts come from the ignored unit test
# `write_seed_table_scripts`; each is loaded with `nft -f` into a throwaway
# network namespace (dwfix<pid>, removed on exit) and listed back with
# `nft -j list table inet dwprov`. seed-set-drift.json is the set table with
# hand drift planted (elements swapped, a DNAT rule deleted, a chain added),
# which the unit test `hand_drift_shows_exactly` reads. seed-fwmark-old-shape.json
# is not re-captured: it is the listing of the shape before issue 13's marks
# moved into the nat chains (the test `the_old_mark_shape_converges`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (a network namespace): run with sudo" >&2; exit 1; }
OUT=tests/fixtures/nftables
TMP=$(mktemp -d)
NS="dwfix$$"
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
DWPROV_NFT_FIXTURE_DIR=$TMP cargo test -q --lib write_seed_table_scripts -- --ignored >/dev/null
ip netns add "$NS"
nft_() { ip netns exec "$NS" nft "$@"; }
for name in seed-fwmark seed-set; do
    nft_ delete table inet dwprov 2>/dev/null || true
    nft_ -f "$TMP/$name.nft"
    nft_ -j list table inet dwprov >"$OUT/$name.json"
done
# The drift, on the set table still loaded.
handle=$(nft_ -a list chain inet dwprov nat_prerouting |
    sed -n 's/.*dport 2222 dnat ip to 192.168.0.100:22 # handle \([0-9]*\)$/\1/p')
[ -n "$handle" ] || { echo "the 2222 DNAT rule is not in the set table" >&2; exit 1; }
nft_ -f - <<NFT
delete element inet dwprov line_cnc { 100.65.0.0/16 }
add element inet dwprov line_cnc { 10.0.0.0/8, 11.0.0.1-11.0.0.6, 12.1.2.3, 13.0.0.0/25, 13.0.0.128/25 }
delete rule inet dwprov nat_prerouting handle $handle
add chain inet dwprov extra
add rule inet dwprov extra iifname != "eth9" counter accept
NFT
nft_ -j list table inet dwprov >"$OUT/seed-set-drift.json"
echo "captured: $(ls "$OUT")"
