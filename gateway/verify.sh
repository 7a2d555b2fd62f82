# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the caller
# dwprov verify and confirm over a new connection (follows lib.sh, the
# parameters and confirm.sh's functions; the owned files and sysctls to
# digest are the arguments of `verify_and_confirm`): the apply's in-band
# gather showed the desired state and recorded the digest of the owned
# state then ($S/verify.digest); the same digest now, over this new
# connection, proves that state unchanged and the gateway reachable, so
# the revert is disarmed (confirm.sh).
verify_and_confirm() {
    [ -f "$S/verify.digest" ] || fail 'the apply recorded no digest of its verified state: the change is NOT confirmed'
    now=$(owned_digest "$@")
    [ "$now" = "$(cat "$S/verify.digest")" ] || fail "dwprov's objects changed between the apply's verification and this new connection: the change is NOT confirmed"
}
