# shellcheck shell=sh
# shellcheck disable=SC2154 # S, TEMP_SUFFIX: set by lib.sh and the caller
# Owned files (src/files.rs): their snapshot and revert steps. Appended to
# the installed lib.sh; `nochange` is snapshot.sh's, `rfail` revert.sh's.

# Copy the owned files (paths on stdin) as they are; record which exist.
snapshot_files() {
    i=0
    while IFS= read -r p; do
        if [ -e "$p" ]; then
            cp -p "$p" "$S/files/$i" || nochange "snapshot $p"
            echo "$i present $p"
        else
            echo "$i absent $p"
        fi
        i=$((i + 1))
    done > "$S/files.list"
}

# Files: back to their copies, or removed when they did not exist.
revert_files() {
    while read -r i what path; do
        case $what in
        present) { cp -p "$S/files/$i" "$path$TEMP_SUFFIX" && mv -f "$path$TEMP_SUFFIX" "$path"; } || rfail "restore $path" ;;
        absent) rm -f "$path" "$path$TEMP_SUFFIX" || rfail "remove $path" ;;
        esac
    done < "$S/files.list"
}
