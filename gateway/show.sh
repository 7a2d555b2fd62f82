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
# A listing the snapshot may lack (an older dwprov's): shown when there.
sec_if() { if [ -f "$S/$1" ]; then sec "$1" "$S/$1"; fi; }
# Each copied file of the snapshot (files.list says which).
show_files() {
    while read -r i what _; do
        [ "$what" = present ] && sec "file $i" "$S/files/$i"
    done < "$S/files.list"
}
printf '%s begin id\n%s\n%s end id 0\n\n%s fin\n' "$D" "${S##*/}" "$D" "$D"
# The kinds' sections follow (src/safe.rs `show_script`, from each kind's
# home in crate::kind::KINDS order): `sec NAME "$S/NAME"`, `sec_if`,
# `show_files`, and `fw_show` (every firewall backend's, gateway/fw-*.sh).
