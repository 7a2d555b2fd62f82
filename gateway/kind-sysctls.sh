# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the caller
# sysctls (src/sysctls.rs): their snapshot and revert steps. Appended to
# the installed lib.sh; `rfail` is revert.sh's.

# The live values of the sysctls the apply may set (keys on stdin), as
# `KEY VALUE` lines into $1 (the snapshot's $S/sysctls when none).
snapshot_sysctls() {
    while IFS= read -r k; do
        v=
        [ -f "/proc/sys/$k" ] && read -r v < "/proc/sys/$k"
        [ -n "$v" ] && printf '%s %s\n' "$k" "$v"
    done > "${1:-$S/sysctls}"
    return 0
}

# Each key back to its value in the snapshot (the kernel has no unset).
revert_sysctls() {
    while read -r k v; do
        printf '%s\n' "$v" > "/proc/sys/$k" || rfail "sysctl $k"
    done < "$S/sysctls"
}
