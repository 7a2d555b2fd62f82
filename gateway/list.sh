# shellcheck shell=sh
# shellcheck disable=SC2154 # SNAPSHOT_DIR: set by the caller
# dwprov rollback --list (follows lib.sh and the parameters): `ID STATE`
# per snapshot, oldest first.
for d in $(ls -1d "$SNAPSHOT_DIR"/*/ 2>/dev/null | sort); do
    d=${d%/}
    echo "${d##*/} $(cat "$d/state" 2>/dev/null || echo unknown)"
done
