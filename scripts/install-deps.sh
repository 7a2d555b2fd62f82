#!/usr/bin/env bash
# Install what dwprov's lab and tests need, from Debian's packages.
# Idempotent: skips apt when every tool is already there. Leaves every
# service of this machine as enabled (at boot) and as running as it was.
set -euo pipefail
# What says a service starts at boot: systemd unit links (and aliases) under
# /etc/systemd/system, SysV rc links, deb-systemd-helper's state. A package's
# postinst changes them despite policy-rc.d (openssh-server's runs
# `deb-systemd-helper enable ssh.service` and `update-rc.d ssh defaults`,
# which enable this machine's sshd at boot), so they are listed before apt and
# put back after: what apt added is removed, a link it removed is restored.
ENABLEMENT_DIRS=(/etc/systemd/system /etc/rc0.d /etc/rc1.d /etc/rc2.d /etc/rc3.d
                 /etc/rc4.d /etc/rc5.d /etc/rc6.d /etc/rcS.d
                 /var/lib/systemd/deb-systemd-helper-enabled
                 /var/lib/systemd/deb-systemd-user-helper-enabled)
enablement() { # one line per link or state file: PATH<TAB>LINK-TARGET (empty for files)
    local d
    for d in "${ENABLEMENT_DIRS[@]}"; do
        [ -d "$d" ] || continue
        find "$d" \( -type l -printf '%p\t%l\n' \) -o \( -type f -printf '%p\t\n' \)
    done | LC_ALL=C sort
}
restore_enablement() { # BEFORE-FILE
    local before=$1 after path target undone
    after=$(mktemp)
    enablement >"$after"
    # Added by the packages: remove.
    undone=$(LC_ALL=C comm -13 "$before" "$after" | while IFS=$'\t' read -r path target; do
        grep -qF "$path"$'\t' "$before" || { rm -f -- "$path"; basename -- "$path"; }
    done | LC_ALL=C sort -u | tr '\n' ' ')
    [ -z "$undone" ] || echo "install-deps: services left as they were; undid what the packages enabled at boot: $undone" >&2
    # Links the packages removed or changed: put back.
    LC_ALL=C comm -23 "$before" "$after" | while IFS=$'\t' read -r path target; do
        [ -n "$target" ] || continue
        mkdir -p -- "$(dirname -- "$path")"
        ln -sfn -- "$target" "$path"
    done
    rm -f -- "$after"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
}

main() {
need=()
for pair in ip:iproute2 iptables:iptables sshd:openssh-server ssh:openssh-client \
            conntrack:conntrack curl:curl python3:python3 nsenter:util-linux \
            pkg-config:pkg-config systemd-analyze:systemd shellcheck:shellcheck ping:iputils-ping \
            dnsmasq:dnsmasq-base busybox:busybox; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: installing from Debian's packages: ${need[*]} (apt-get, about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The lab runs its own sshd in a namespace: keep the package from starting
    # this machine's sshd, with a temporary policy-rc.d (what it enables at
    # boot is undone by restore_enablement).
    made_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=yes
    fi
    before=$(mktemp)
    enablement >"$before"
    rc=0
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
    restore_enablement "$before"
    rm -f -- "$before"
    [ $made_policy = yes ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || exit $rc
fi
}

# Sourced (tests/cli.rs), only the functions are defined.
[[ ${BASH_SOURCE[0]} != "$0" ]] || main "$@"
