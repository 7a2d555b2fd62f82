# shellcheck shell=sh
# shellcheck disable=SC2154 # SNAPSHOT_DIR, TO, D: set by the caller
# dwprov rollback, the plan (follows lib.sh and the parameters): print what
# snapshot TO (the newest when empty) holds of dwprov's objects, in
# sections framed by marker D (the format of the gather script), for the
# controller to diff against the live state. Changes nothing.
pick_snapshot
sec() {
    printf '%s begin %s\n' "$D" "$1"
    cat "$2"
    printf '\n%s end %s %s\n\n%s fin\n' "$D" "$1" "$?" "$D"
}
printf '%s begin id\n%s\n%s end id 0\n\n%s fin\n' "$D" "${S##*/}" "$D" "$D"
for f in rules routes files.list sysctls; do sec "$f" "$S/$f"; done
# Nexthop objects (snapshots of older dwprov versions have none).
if [ -f "$S/nexthops" ]; then sec nexthops "$S/nexthops"; fi
# Every firewall backend's sections (gateway/fw-*.sh).
fw_show
while read -r i what _; do
    [ "$what" = present ] && sec "file $i" "$S/files/$i"
done < "$S/files.list"
