#!/usr/bin/env bash
# Install what dwprov's lab and tests need, from Debian's packages.
# Idempotent: skips apt when every tool is already there.
set -euo pipefail
need=()
for pair in ip:iproute2 iptables:iptables sshd:openssh-server ssh:openssh-client \
            conntrack:conntrack curl:curl python3:python3 nsenter:util-linux \
            pkg-config:pkg-config systemd-analyze:systemd shellcheck:shellcheck; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The lab runs its own sshd in a namespace: keep the package from starting
    # (or enabling) this machine's sshd, with a temporary policy-rc.d.
    made_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=yes
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || { [ $made_policy = yes ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ $made_policy = yes ] && rm -f /usr/sbin/policy-rc.d
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
