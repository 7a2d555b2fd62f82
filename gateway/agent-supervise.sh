# shellcheck shell=sh
# shellcheck disable=SC2154 # BIN, CONFIG, STATE: set by the lines before this file
# dwprov-agent's supervisor, for gateways without systemd (issue 11): keeps
# one agent running, restarting it within a second of its end (a kill
# included), and survives the SSH session that started it.
#
#   sh agent-supervise.sh start     start the supervisor unless it runs
#   sh agent-supervise.sh stop      stop the supervisor, then the agent
#   sh agent-supervise.sh restart   stop, then start (a new binary or config)
#   sh agent-supervise.sh run       the loop itself (start runs it detached)
#
# The agent reads the failover back from the kernel's nexthops when it
# starts, so a restart neither blips a live line nor revives a dead one.
SUP_PID="$STATE/supervisor.pid"
AGENT_PID="$STATE/agent.pid"
LOG="$STATE/agent.log"

running() { p=$(cat "$1" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

stop() {
    # The supervisor first, so that it does not restart the agent, and
    # until it has ended (at most 5 s): its trap ends its agent and removes
    # the pid files, which must not happen after a `restart` started the
    # next supervisor (under load it did: the old trap then ended the new
    # agent and removed the new supervisor's pid file).
    if running "$SUP_PID"; then
        kill "$p" 2>/dev/null
        i=0
        while kill -0 "$p" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    if running "$AGENT_PID"; then kill "$p" 2>/dev/null; fi
    rm -f "$SUP_PID" "$AGENT_PID"
    return 0
}

start() {
    running "$SUP_PID" && return 0
    mkdir -p "$STATE" || { echo "dwprov: cannot create $STATE" >&2; return 1; }
    [ -x "$BIN" ] || { echo "dwprov: the agent $BIN is missing (run dwprov apply again)" >&2; return 1; }
    setsid sh "$0" run < /dev/null > /dev/null 2>&1 &
    # Wait (at most 5 s) until the loop recorded itself.
    i=0
    while ! running "$SUP_PID" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    running "$SUP_PID" || { echo "dwprov: the agent supervisor did not start" >&2; return 1; }
}

run() {
    echo $$ > "$SUP_PID"
    # Its own agent ($ap), and its own pid files only.
    ap=
    trap '[ -z "$ap" ] || kill "$ap" 2>/dev/null; [ "$(cat "$SUP_PID" 2>/dev/null)" != $$ ] || rm -f "$SUP_PID" "$AGENT_PID"; exit 0' TERM INT
    while :; do
        # The log lives on tmpfs: one old generation is kept, at most 1 MiB each.
        if [ -f "$LOG" ] && [ "$(wc -c < "$LOG")" -gt 1048576 ]; then mv -f "$LOG" "$LOG.1"; fi
        "$BIN" --config "$CONFIG" --state-dir "$STATE" >> "$LOG" 2>&1 &
        ap=$!
        echo "$ap" > "$AGENT_PID"
        wait "$ap"
        sleep 1
    done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
restart) stop && start ;;
run) run ;;
*)
    echo "usage: $0 start|stop|restart|run" >&2
    exit 2
    ;;
esac
