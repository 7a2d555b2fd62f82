# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the line before this file
# dwprov apply (written to $S/apply.sh after lib.sh and `S=...`; the change
# commands follow, each behind the step guard): run by run_apply in a new
# session whose id it records, so that a revert can end the whole group.
if [ "${1:-}" = group ]; then echo "$$" > "$S/apply.pgid"; fi
trap 'rm -f "$S/apply.pgid"' EXIT
