#!/usr/bin/env bash
# Run every test: unit, snapshot, parser fuzz, and the end-to-end tests that
# build lab gateways in network namespaces (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the lab tests need root (network namespaces): run with sudo" >&2; exit 1; }
scripts/install-deps.sh
cargo build --quiet --bins
cargo test --no-fail-fast "$@"
