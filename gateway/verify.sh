# shellcheck shell=sh
# shellcheck disable=SC2154 # S: set by the caller
# dwprov verify and confirm over a new connection (follows lib.sh, the
# parameters and confirm.sh's functions; the owned files and sysctls to
# list are the arguments of `verify_and_confirm`): the apply listed its
# objects after the changes for the controller's verify, and recorded the
# digest of those listings ($S/verify.digest); the same listings now, over
# this new connection, with the same digest prove that state unchanged and
# the gateway reachable, so the revert is disarmed (confirm.sh).
verify_and_confirm() {
    [ -f "$S/verify.digest" ] || fail 'the apply recorded no digest of its verified state: the change is NOT confirmed'
    owned_listings "$S/confirm" digest "$@" || fail "listing dwprov's objects over the new connection failed: the change is NOT confirmed"
    now=$(listing_digest "$S/confirm")
    was=
    IFS= read -r was < "$S/verify.digest"
    [ "$now" = "$was" ] || fail "dwprov's objects changed between the apply's verification and this new connection: the change is NOT confirmed"
}
