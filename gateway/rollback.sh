# shellcheck shell=sh
# shellcheck disable=SC2154 # SNAPSHOT_DIR, TO: set by the caller
# dwprov rollback (follows lib.sh and the parameters): run the revert of
# snapshot TO (the newest when empty) now, which puts back what dwprov owned
# then and leaves everything else as it is.
pick_snapshot
disarm
sh "$S/revert.sh" > "$S/revert.log" 2>&1 || { cat "$S/revert.log" >&2; fail 'revert failed'; }
echo "rolled back: ${S##*/}"
