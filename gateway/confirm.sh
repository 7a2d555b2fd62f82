# shellcheck shell=sh
# shellcheck disable=SC2154 # S, SNAPSHOT_DIR, KEEP, LIBRARY_ROOT, KEEP_LIBRARIES: set by the caller
# dwprov confirm (follows lib.sh and the parameters): disarm the revert of
# snapshot $S after the apply was verified, and prune old snapshots and
# old installed versions of the gateway-side programs. The
# timer must still be pending: if it fired, the change is gone. A timer
# that fired while it was being disarmed marked the revert as started: then
# the revert is finished here, so the gateway ends in the old state, whole.
# Is the revert timer of $S still pending?
timer_pending() {
    if [ -f "$S/timer.unit" ]; then
        systemctl is-active --quiet "$(cat "$S/timer.unit").timer"
    else
        p=$(cat "$S/timer.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null
    fi
}
[ -e "$S/revert.started" ] && fail 'the revert of this snapshot has started: the change is NOT confirmed'
timer_pending || fail 'the revert timer is gone (it already ran, or is running): the change is NOT confirmed'
disarm
if [ -e "$S/revert.started" ]; then
    sh "$S/revert.sh" > "$S/revert.log" 2>&1
    fail 'the revert timer fired while it was being disarmed: the change is NOT confirmed (reverted)'
fi
echo confirmed > "$S/state"
# The pruning needs no answer: in the background, so the controller's wait
# ends with the confirm (nothing it writes goes to this session).
{
# The verify's listings (hundreds of kB on a big gateway) served their turn.
rm -rf "$S/verify" "$S/confirm"
ls -1d "$SNAPSHOT_DIR"/*/ 2>/dev/null | sort -r | tail -n +"$((KEEP + 1))" | while read -r old; do rm -rf "$old"; done
# Installed program versions: the newest few (a snapshot has its own copy).
ls -1dt "$LIBRARY_ROOT"/*/ 2>/dev/null | tail -n +"$((KEEP_LIBRARIES + 1))" | while read -r old; do rm -rf "$old"; done
} </dev/null >/dev/null 2>&1 &
