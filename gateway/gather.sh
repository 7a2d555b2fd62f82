# shellcheck shell=sh
# dwprov gather: print every fact dwprov reads from a gateway, in one run.
#
# Each fact command's stdout, stderr and exit status come back in a section
# framed by the marker $D:
#   $D begin NAME \n STDOUT \n $D end NAME STATUS \n STDERR \n $D fin
# so no output can be mistaken for another's (and a missing table's `[`
# with exit 2 is seen for what it is).
#
# Parameters, set by the caller as shell-quoted assignments before this
# file (src/gather.rs::script; nothing else from the controller reaches it):
#   D           the section marker, unguessable, new for every run
#   G_DEADLINE  seconds one command may run: past it, the watchdog prints
#               `$D timeout SECONDS COMMAND` and ends this script's whole
#               process group (no hung command is left behind on the gateway)
#   G_TOOLS     tools to look for (space-separated names)
#   G_FILES     files dwprov owns, read whole (space-separated absolute paths)
#   G_STATE_DIR dwprov's state directory: every file in it is read whole too
#   G_RT_TABLES dwprov's own rt_tables.d file (a G_FILES entry): left out of
#               the rt_tables section, which holds the foreign names only
#   G_AGENT_STATE the line-health agent's state dir (pid, status.json)
#   G_AGENT_UNIT  its systemd unit
#   G_NFT_FAMILY, G_NFT_TABLE  the one nftables table dwprov owns
#   G_IP_FAMILY the `ip` family flag of the addresses read (`-4`:
#               state::family::OWNED); the rules and routes are one
#               section per managed family, each with its own flag
# and after it, the `sec` lines of the sections (see the end of this file).
#
# The controller may also run this after an apply in the same shell (the
# verify of `apply --no-confirm`): every name here is prefixed or local to it.
: "${D:?}" "${G_DEADLINE:?}" "${G_TOOLS:?}" "${G_FILES:?}" "${G_STATE_DIR:?}" "${G_RT_TABLES:?}" "${G_AGENT_STATE:?}" "${G_AGENT_UNIT:?}" "${G_NFT_FAMILY:?}" "${G_NFT_TABLE:?}" "${G_IP_FAMILY:?}"
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export LC_ALL=C
exec 3>&1

# Each fork costs about a millisecond on a small gateway, and gather runs on
# every plan of every host: stderr goes to one temp file instead of a `$(...)`
# subshell per section, and the helpers use shell builtins. Where no temp
# file can be made (read-only /tmp), the subshell version runs (and no
# watchdog: the controller's own timeout is then the only bound).
G_W=''
if G_E=$(mktemp 2>/dev/null) && [ -f "$G_E" ]; then
    # The sections begun so far, one "number command" line each; the last
    # is the running one (for the watchdog). Appended, never rewritten: on
    # ext4, truncating a file that holds data flushes it (auto_da_alloc),
    # about 4 ms per section here.
    G_S=$G_E.sec
    G_K=0
    G_M=$$
    trap 'rm -f "$G_E" "$G_S"; [ -z "$G_W" ] || kill "$G_W" 2>/dev/null' EXIT
    sec() {
        G_N=$1; shift
        G_K=$((G_K + 1)); printf '%s %s\n' "$G_K" "$*" >>"$G_S"
        printf '%s begin %s\n' "$D" "$G_N"
        "$@" 2>"$G_E"; G_R=$?
        printf '\n%s end %s %s\n' "$D" "$G_N" "$G_R"
        if [ -s "$G_E" ]; then cat "$G_E"; fi
        printf '\n%s fin\n' "$D"
    }
    # One background shell for the whole gather, waking once a second: a
    # command that runs G_DEADLINE seconds (a stalled tool, a hung NFS
    # mount), or the gather shell's death, ends everything. sshd does not
    # kill a session's processes when the client gives up (checked with
    # OpenSSH 9.2: a `sleep` outlives its channel), so without this they
    # would linger; killing the process group (sshd made this shell its
    # leader; the local transport does the same) takes grandchildren too.
    g_watchdog() {
        trap 'kill "$g_sleep" 2>/dev/null; exit 0' TERM
        trap '' PIPE
        g_last='' g_ticks=0 g_sleep=''
        while :; do
            sleep 1 3>&- & g_sleep=$!
            wait "$g_sleep"
            # The gather shell died (the controller went away and a write
            # to it failed): end what it left running.
            kill -0 "$G_M" 2>/dev/null || kill -KILL 0
            g_cur=''
            while read -r g_line; do g_cur=$g_line; done <"$G_S" 2>/dev/null
            if [ "$g_cur" = "$g_last" ]; then g_ticks=$((g_ticks + 1)); else g_last=$g_cur g_ticks=0; fi
            if [ -n "$g_cur" ] && [ "$g_ticks" -ge "$G_DEADLINE" ]; then
                printf '\n%s timeout %s %s\n' "$D" "$G_DEADLINE" "${g_cur#* }" >&3
                rm -f "$G_E" "$G_S"
                kill -KILL 0
            fi
        done
    }
    g_watchdog </dev/null >/dev/null 2>&1 &
    G_W=$!
else
    sec() { G_N=$1; shift; printf '%s begin %s\n' "$D" "$G_N"; G_O=$("$@" 2>&1 1>&3); G_R=$?; printf '\n%s end %s %s\n' "$D" "$G_N" "$G_R"; printf '%s' "$G_O"; printf '\n%s fin\n' "$D"; }
fi

# A /proc/sys file read a byte at a time (dash's `read`) ends after the
# value, without its newline: `read` then fails with the value set.
f_sysctl() { for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/fib_multipath_hash_policy /proc/sys/net/ipv4/conf/*/rp_filter; do [ -f "$f" ] || continue; v=; read -r v <"$f"; [ -n "$v" ] && printf '%s %s\n' "${f#/proc/sys/}" "$v"; done; return 0; }
f_tools() { for t in "$@"; do if command -v "$t" >/dev/null 2>&1; then echo "$t yes"; else echo "$t no"; fi; done; }
f_rt_tables() { if [ -f /etc/iproute2/rt_tables ]; then cat /etc/iproute2/rt_tables; elif [ -f /usr/share/iproute2/rt_tables ]; then cat /usr/share/iproute2/rt_tables; fi; for f in /etc/iproute2/rt_tables.d/*.conf; do [ -f "$f" ] && [ "$f" != "$G_RT_TABLES" ] && cat "$f"; done; return 0; }
f_file() { [ -f "$1" ] && cat "$1"; }
f_state_files() { for f in "$G_STATE_DIR"/* "$G_STATE_DIR"/.[!.]*; do [ -f "$f" ] && printf '%s\n' "$f"; done; return 0; }
f_other_backend() { [ -n "$G_V" ] || G_V=$(iptables -V 2>/dev/null); case "$G_V" in *nf_tables*) o=iptables-legacy-save;; *) o=iptables-nft-save;; esac; command -v "$o" >/dev/null 2>&1 || return 0; "$o" 2>/dev/null | grep -c '^-A'; return 0; }
f_agent() { p=; [ -f "$G_AGENT_STATE/agent.pid" ] && read -r p < "$G_AGENT_STATE/agent.pid"; if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "running $p"; elif command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$G_AGENT_UNIT" 2>/dev/null; then echo running systemd; else echo stopped; fi; [ -f "$G_AGENT_STATE/status.json" ] && cat "$G_AGENT_STATE/status.json"; return 0; }
f_systemd() { if [ -d /run/systemd/system ]; then echo yes; else echo no; fi; }
# The owned nftables table as `nft -j` JSON; nothing when it (or nft) is
# not there. One listing: nft says a missing table with exactly this first
# line (LC_ALL=C above), and any other failure is an error, shown.
# (`nft list tables` to tell them apart would cost a process on every
# gateway, and about a whole listing where sets are big: nft 1.0.6 fetches
# every set's elements for it.)
f_nftables() { command -v nft >/dev/null 2>&1 || return 0; { G_NE=$(nft -j list table "$G_NFT_FAMILY" "$G_NFT_TABLE" 2>&1 >&3 3>&-); } 3>&1 && return 0; G_NR=$?; case "$G_NE" in "Error: No such file or directory"*) return 0 ;; esac; printf '%s\n' "$G_NE" >&2; return $G_NR; }
f_iptables_version() { G_V=$(iptables -V 2>&1); r=$?; if [ $r -eq 0 ]; then printf '%s\n' "$G_V"; else printf '%s\n' "$G_V" >&2; G_V=; fi; return $r; }

G_V=''
# The sections themselves follow this file: the controller composes them
# from its host facts and its kinds of owned object (src/gather.rs
# `sections`, in crate::kind::KINDS order), one `sec NAME COMMAND` line
# each, then g_files and g_end.

# Each owned file and each file of the state dir, read whole (Kind::Files).
g_files() {
    for f in $G_FILES; do sec "file $f" f_file "$f"; done
    for f in "$G_STATE_DIR"/* "$G_STATE_DIR"/.[!.]*; do [ -f "$f" ] || continue; sec "file $f" f_file "$f"; done
}

# The watchdog's end: every section has run.
g_end() {
    [ -z "$G_W" ] || kill "$G_W" 2>/dev/null
    G_W=''
}
