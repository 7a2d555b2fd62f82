# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the caller
# Boot units and the agent (src/boot.rs, src/agent/deploy.rs): their
# revert step. Their files are the files kind's; `rfail` is revert.sh's.

# Undo what installing boot files did (enable links, the flush loop):
# $S/units.sh, written by the apply for the files it changes. Right after
# the files: a running agent stops before its nexthops go back.
revert_units() {
    if [ -f "$S/units.sh" ]; then
        (fail() { echo "dwprov revert: $1" >&2; }; . "$S/units.sh") || rfail 'boot units'
    fi
}
