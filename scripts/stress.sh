#!/usr/bin/env bash
# Stress the commit-confirmed apply on the lab (not part of the default test run):
# 20 lock-outs that must revert by themselves, and 50 SSH connections cut at
# moving points during an apply, each ending in the old or the new state; then
# the revert tests (stalled step, lying tools, foreign state) 5 times each.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
DWPROV_LOCKOUT_TRIALS=${DWPROV_LOCKOUT_TRIALS:-20} DWPROV_CUT_TRIALS=${DWPROV_CUT_TRIALS:-50} \
    cargo test --release --test safe -- --nocapture --test-threads=1 \
    a_change_that_cuts_the_management_path cutting_ssh_mid_apply
for i in 1 2 3 4 5; do
    echo "[stress] tests/revert.rs, round $i of 5" >&2
    cargo test --release --test revert -- --test-threads=2
done
