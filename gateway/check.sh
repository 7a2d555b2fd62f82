# shellcheck shell=sh
# dwprov check: the facts `dwprov check` needs beyond the gather, in one run
# over the same connection, framed like gateway/gather.sh's sections:
#   $D begin NAME \n STDOUT \n $D end NAME STATUS \n \n $D fin
#
# Parameters, set by the caller as shell-quoted assignments before this
# file (src/check/live.rs; nothing else from the controller reaches it):
#   D   the section marker, unguessable, new for every run
: "${D:?}"
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export LC_ALL=C

c_sec() {
    c_n=$1; shift
    printf '%s begin %s\n' "$D" "$c_n"
    "$@" 2>/dev/null; c_r=$?
    printf '\n%s end %s %s\n\n%s fin\n' "$D" "$c_n" "$c_r" "$D"
}

# The management session as the gateway sees it: `CLIENT CPORT SERVER
# SPORT`. sudo drops SSH_CONNECTION from the environment, so the
# processes above this shell (sudo, sshd's session shell) are asked too.
c_ssh() {
    if [ -n "${SSH_CONNECTION:-}" ]; then printf '%s\n' "$SSH_CONNECTION"; return 0; fi
    c_p=$PPID
    for _ in 1 2 3 4 5; do
        [ -r "/proc/$c_p/environ" ] || break
        c_v=$(tr '\0' '\n' <"/proc/$c_p/environ" | sed -n 's/^SSH_CONNECTION=//p')
        if [ -n "$c_v" ]; then printf '%s\n' "$c_v"; return 0; fi
        c_p=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$c_p/status")
        [ -n "$c_p" ] && [ "$c_p" -gt 1 ] || break
    done
    return 0
}

# Every sysctl.d file in the order systemd-sysctl and `sysctl --system`
# read them (by name across the directories, the first directory holding
# a name wins), then /etc/sysctl.conf: `FILE:LINE:TEXT` of each rp_filter
# line, and `FILE::` for every file (so the order is known).
# One awk reads them all (a grep and a sed per file cost two processes each).
c_sysctl_files() {
    set --
    for c_f in $(for c_d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
        for c_g in "$c_d"/*.conf; do [ -f "$c_g" ] && printf '%s %s\n' "${c_g##*/}" "$c_g"; done
    done | sort -s -k1,1 | awk '!seen[$1]++ { print $2 }') /etc/sysctl.conf; do
        [ -f "$c_f" ] || continue
        printf '%s::\n' "$c_f"
        set -- "$@" "$c_f"
    done
    [ "$#" -eq 0 ] || awk '/rp_filter/ { print FILENAME ":" FNR ":" $0 }' "$@"
    return 0
}

# systemd-networkd: running or enabled, and its ManageForeign* settings
# (`FILE:LINE:TEXT`; the drop-in directories in the order networkd reads them).
c_networkd() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        printf 'active %s\n' "$(systemctl is-active systemd-networkd.service 2>/dev/null)"
        printf 'enabled %s\n' "$(systemctl is-enabled systemd-networkd.service 2>/dev/null)"
    else
        # Not running systemd now: enabled for the next boot is a link in a
        # .wants directory (what `systemctl is-enabled` reads).
        printf 'active no-systemd\n'
        for c_w in /etc/systemd/system/*.wants/systemd-networkd.service; do
            if [ -L "$c_w" ] || [ -e "$c_w" ]; then printf 'enabled enabled\n'; break; fi
        done
    fi
    set --
    for c_f in /etc/systemd/networkd.conf /usr/lib/systemd/networkd.conf.d/*.conf /run/systemd/networkd.conf.d/*.conf /etc/systemd/networkd.conf.d/*.conf; do
        [ -f "$c_f" ] && set -- "$@" "$c_f"
    done
    [ "$#" -eq 0 ] || awk 'tolower($0) ~ /^[[:space:]]*manageforeign/ { print FILENAME ":" FNR ":" $0 }' "$@"
    return 0
}

c_sec ssh_connection c_ssh
c_sec sysctl_files c_sysctl_files
c_sec networkd c_networkd
