#!/usr/bin/env bash
# The main job on the built-in lab gateway: build a dual-line gateway in
# network namespaces, run `dwprov apply` from the controller namespace over
# real SSH, then prove the seed's scenarios with real traffic.
#   sudo scripts/demo.sh            # tears the lab down at the end (as root: scripts/demo.sh)
#   sudo scripts/demo.sh --keep     # leaves it up to play with (dwprov lab down removes it)
#   METHOD=static sudo -E scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the lab needs root (network namespaces): run as root, or with sudo" >&2; exit 1; }
KEEP=no; [ "${1:-}" = --keep ] && KEEP=yes
METHOD=${METHOD:-fwmark}
P=dwlab- D=/tmp/dwprov-lab
# shellcheck source=scripts/cargo-env.sh
source scripts/cargo-env.sh
find_cargo
echo "== checking the Debian packages the lab needs (iproute2, iptables, openssh-server, ...)"
scripts/install-deps.sh
echo "== building dwprov (release; a first build takes 2-5 minutes on 2 cores, cargo shows its progress)"
"${AS_USER[@]}" "$CARGO" build --release --bin dwprov
BIN=$PWD/target/release/dwprov
INV=examples/seed-$METHOD/inventory.yaml
ctl() { ip netns exec "${P}ctl" "$BIN" "$@"; }
lab() { scripts/lab.sh --prefix "$P" --dir "$D" "$@"; }

"$BIN" lab down --prefix "$P" --dir "$D" >/dev/null 2>&1 || true
[ "$KEEP" = yes ] || trap '"$BIN" lab down --prefix "$P" --dir "$D" >/dev/null 2>&1 || true' EXIT
echo "== dwprov lab up"
"$BIN" lab up --prefix "$P" --dir "$D"

echo; echo "== dwprov plan -i $INV   (exit 2: changes pending)"
# The plan's groups (with their counts), the generated files and the summary;
# the whole plan (thousands of ISP routes) goes to a file.
PLAN=$(mktemp /tmp/dwprov-demo-plan.XXXXXX)
set +e; ctl plan -i "$INV" --no-color >"$PLAN" 2>/dev/null; code=$?; set -e
grep -E '^(@@|──|warning:|conflict:|\+/etc/|gw1: )' "$PLAN" || true
echo "(exit $code; the whole plan: $PLAN, $(wc -l <"$PLAN") lines)"
echo; echo "== dwprov apply -i $INV --yes"
ctl apply -i "$INV" --yes --no-color | tail -n 4

echo; echo "== traffic checks (echo servers answer with the address they saw)"
fail=0
check() { # ROLE URL EXPECT-PEER WHAT
    local got
    got=$(lab exec "$1" curl -sS --max-time 3 "$2" 2>&1 | sed -n 's/.*peer=\([^ ]*\).*/\1/p')
    if [ "$got" = "$3" ]; then printf '  ok    %-58s seen as %s\n' "$4" "$got"
    else printf '  FAIL  %-58s expected %s, got %s\n' "$4" "$3" "${got:-nothing}"; fail=1; fi
}
check uctc http://198.51.100.2/      100.64.1.10  "CTC user -> forward via CTC address"
check ucnc http://203.0.113.2/       100.65.1.10  "CNC user -> forward via CNC address"
if [ "$METHOD" = fwmark ]; then
check uctc http://203.0.113.2/       100.64.1.10  "CTC user -> forward via CNC address (cross, FAQ 1/2)"
check ucnc http://198.51.100.2/      100.65.1.10  "CNC user -> forward via CTC address (cross, FAQ 1/2)"
fi
check uctc http://203.0.113.2:8080/  100.64.1.10  "CTC user -> gateway service via CNC address (cross)"
check ucnc http://198.51.100.2:8080/ 100.65.1.10  "CNC user -> gateway service via CTC address (cross)"
check cli  http://198.51.100.2/      192.168.0.1  "LAN client -> forward via CTC address (hairpin, FAQ 3)"
check cli  http://203.0.113.2/       192.168.0.1  "LAN client -> forward via CNC address (hairpin, FAQ 3)"
check cli  http://100.64.1.10/       198.51.100.2 "LAN client -> CTC user leaves by the CTC line"
check cli  http://100.65.1.10/       203.0.113.2  "LAN client -> CNC user leaves by the CNC line"
check gw   http://100.65.1.10/       203.0.113.2  "gateway itself -> CNC user leaves by the CNC line"

echo; echo "== dwprov plan again (idempotent: exit 0, no changes)"
ctl plan -i "$INV" --no-color | tail -n 3
[ "$KEEP" = yes ] && echo "The lab stays up. Try: ip netns exec ${P}ctl $BIN gather -i $D/inventory.yaml ; remove it: $BIN lab down"
exit $fail
