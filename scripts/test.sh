#!/usr/bin/env bash
# Run every test: unit, snapshot, parser fuzz, and the end-to-end tests that
# build lab gateways in network namespaces (needs root).
#   sudo scripts/test.sh            # or, as root: scripts/test.sh
#   sudo scripts/test.sh --test cli # cargo test arguments pass through
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the lab tests need root (network namespaces): run as root, or with sudo" >&2; exit 1; }
# shellcheck source=scripts/cargo-env.sh
source scripts/cargo-env.sh
find_cargo
echo "== checking the Debian packages the lab needs (iproute2, iptables, openssh-server, ...)"
scripts/install-deps.sh
echo "== building dwprov and its tests (the first build takes a few minutes)"
# As the checkout's owner when run through sudo (their target/ stays theirs);
# the tests themselves need root.
"${AS_USER[@]}" "$CARGO" build --bins
"${AS_USER[@]}" "$CARGO" test --no-run
echo "== running the tests"
"$CARGO" test --no-fail-fast "$@"
