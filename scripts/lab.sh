#!/usr/bin/env bash
# dwprov test lab: a real dual-WAN gateway built from Linux network namespaces.
#
#   lab.sh [--prefix P] [--dir D] [--isps 2|3] [--dhcp] up|down|status
#   lab.sh [--prefix P] [--dir D] exec ROLE CMD [ARG...]
#   lab.sh [--prefix P] [--dir D] lease ADDRESS|none
#
# Topology (addresses are a contract: tests and docs depend on them):
#
#   uctc 100.64.1.10 ── ctc ════ peer 192.0.2.0/30 ════ cnc ── ucnc 100.65.1.10
#                        │ 198.51.100.1                  │ 203.0.113.1
#                        │                               │
#                 eth1 198.51.100.2 ─── gw ─── eth2 203.0.113.2
#                                 mgmt0 │ eth0 192.168.0.1
#                  ctl 10.9.0.1 ────────┘  │
#                                       lan (br0) ── srv 192.168.0.100
#                                                └── cli 192.168.0.50
#
# With --isps 3 (or DWLAB_ISPS=3) a third ISP joins: cmcc, peering with ctc
# (192.0.2.4/30), gateway eth3 198.18.0.2/24 (router 198.18.0.1), its user
# ucmcc 100.67.1.10; same anti-spoofing and echo server as the other two.
# The ready inventory (DIR/inventory.yaml) then has the third line, cmcc, too.
#
# With --dhcp (or DWLAB_DHCP=1) the gateway's CNC address is a DHCP lease:
# dnsmasq on the cnc router (cust0, pool 203.0.113.50-99, router
# 203.0.113.1, leases in the lab dir) and busybox udhcpc on the gateway's
# eth2 (first asking for 203.0.113.77), whose event script ($DIR/udhcpc.sh)
# sets the address and a default route via 203.0.113.1 metric 100 in main.
# The cnc router's anti-spoofing follows the leases (dnsmasq's lease script
# lets exactly the leased addresses in). `lease ADDRESS` releases the lease
# and takes ADDRESS instead (a redial); `lease none` releases it and stops
# the client (the line has no address).
#
# Every namespace is named "${PREFIX}<role>". Nothing is created or configured
# in the root namespace: veths are created inside one namespace with their peer
# placed directly into the other.
#
# The gateway runs a real OpenSSH sshd in its own mount namespace with overlay
# copies of /etc, /var and /root and private tmpfs /run and /tmp, so whatever
# dwprov does over SSH never reaches this machine's files.
#
# `up` on a prefix that already exists fails (it never tears down a lab it did
# not build); a failed `up` tears down what it built. `down` is idempotent.
set -euo pipefail

# Every role a lab may have (teardown and exists checks look at all of them,
# whatever --isps says); BUILD_ROLES are the ones `up` creates.
readonly ROLES=(gw ctl ctc cnc uctc ucnc lan srv cli cmcc ucmcc)
readonly ROLES_2=(gw ctl ctc cnc uctc ucnc lan srv cli)
BUILD_ROLES=("${ROLES_2[@]}")
readonly MARKER=".dwprov-lab"   # only directories carrying this are ever rm -rf'd
readonly PYTHON="${DWLAB_PYTHON:-/usr/bin/python3}"
readonly SSHD="/usr/sbin/sshd"  # sshd re-execs itself: it needs an absolute path
# wait_for and the teardown, shared with fleet-lab.sh (`dwprov lab` writes it
# next to its copy of this script).
# shellcheck source=lab-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-lib.sh"

PREFIX="dwlab-"
DIR="/tmp/dwprov-lab"
ACTION=""
ISPS="${DWLAB_ISPS:-2}"
DHCP="${DWLAB_DHCP:-0}"
LEASE=""
EXEC_ROLE=""
EXEC_CMD=()

# ---------------------------------------------------------------- helpers

log() { printf '[lab] %s\n' "$*"; }
warn() { printf '[lab] warning: %s\n' "$*" >&2; }
die() {
    printf '[lab] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
usage: lab.sh [--prefix P] [--dir D] [--isps 2|3] [--dhcp] up|down|status
       lab.sh [--prefix P] [--dir D] exec ROLE CMD [ARG...]
       lab.sh [--prefix P] [--dir D] lease ADDRESS|none

  --prefix P   namespace name prefix (default dwlab-); namespaces are P<role>
  --dir D      lab directory: keys, sshd config and logs, inventory (default /tmp/dwprov-lab)
  --isps N     2 (default) or 3: a third ISP cmcc (gateway eth3, user ucmcc 100.67.1.10)
  --dhcp       the gateway's CNC address (eth2) is a DHCP lease from the cnc router

  up       build the lab (fails if a lab with this prefix exists)
  down     tear the lab down (idempotent, also cleans up half-built labs)
  status   list the lab's namespaces and whether sshd runs (exit 3 if not fully up)
  exec     run CMD in ROLE's namespace (gw: also in sshd's mount namespace,
           i.e. the gateway as dwprov sees it)
  lease    (a --dhcp lab) release the CNC lease and take ADDRESS (203.0.113.50-99)
           instead, waiting until eth2 has it; none: release it, no client

roles: ${ROLES[*]}
env:   DWLAB_ISPS         default for --isps (2)
       DWLAB_DHCP         1: default for --dhcp
       DWLAB_ECHO_SERVER  path of echo_server.py (default: next to this script)
       DWLAB_PYTHON       python interpreter (default /usr/bin/python3)
       DWLAB_ISP_DIR      chinanet.txt + unicom-only.txt for the ready inventory
                          (default: examples/isp of this repository)
       DWLAB_DWPROV       how to name dwprov in the hints (default: dwprov)
       DWLAB_CALLER       how to name this script in the hints (default: lab.sh)
EOF
}

ns() { printf '%s%s' "$PREFIX" "$1"; }

ns_exists() { [[ -e "/run/netns/$(ns "$1")" ]]; }

# Every namespace of this lab that exists (lab-lib.sh tears these down).
lab_namespaces() {
    local role
    for role in "${ROLES[@]}"; do
        if ns_exists "$role"; then printf '%s\n' "$(ns "$role")"; fi
    done
}

# Run a command inside a role's network namespace.
in_ns() {
    local role=$1
    shift
    ip netns exec "$(ns "$role")" "$@"
}

# sshd's pid if it is alive and really lives in this lab's gateway namespace.
sshd_pid() {
    local pid
    [[ -r "$DIR/sshd.pid" ]] || return 1
    pid=$(<"$DIR/sshd.pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    ip netns identify "$pid" 2>/dev/null | grep -qxF "$(ns gw)"
}

# Like sshd_pid but prints the pid.
print_sshd_pid() {
    sshd_pid || return 1
    cat "$DIR/sshd.pid"
}

# ---------------------------------------------------------------- arguments

parse_args() {
    while (($#)); do
        case "$1" in
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --dir) [[ $# -ge 2 ]] || die "--dir needs a value"; DIR=$2; shift 2 ;;
        --dir=*) DIR=${1#--dir=}; shift ;;
        --isps) [[ $# -ge 2 ]] || die "--isps needs a value"; ISPS=$2; shift 2 ;;
        --isps=*) ISPS=${1#--isps=}; shift ;;
        --dhcp) DHCP=1; shift ;;
        lease)
            [[ -z "$ACTION" ]] || die "more than one action given"
            [[ $# -ge 2 ]] || die "usage: lab.sh lease ADDRESS|none"
            ACTION="lease"; LEASE=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        up | down | status)
            [[ -z "$ACTION" ]] || die "more than one action given"
            ACTION=$1; shift ;;
        exec)
            [[ -z "$ACTION" ]] || die "more than one action given"
            ACTION="exec"; shift
            [[ $# -ge 2 ]] || die "usage: lab.sh exec ROLE CMD [ARG...]"
            EXEC_ROLE=$1; shift
            EXEC_CMD=("$@")
            break ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ -n "$ACTION" ]] || { usage >&2; exit 2; }
    case "$ISPS" in
    2) ;;
    3) BUILD_ROLES+=(cmcc ucmcc) ;;
    *) die "--isps must be 2 or 3, not '$ISPS'" ;;
    esac

    # The prefix ends up in namespace names and file names: keep it boring.
    [[ "$PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
        die "bad prefix '$PREFIX' (letters, digits, _ . -; at most 40 characters)"
    DIR=$(realpath -m -- "$DIR")
    # The directory is written unquoted into sshd_config and inventory.yaml.
    [[ "$DIR" =~ ^/[A-Za-z0-9_./+-]+$ ]] ||
        die "bad lab dir '$DIR' (absolute, letters, digits, _ . / + - only)"
    # Overlays of /etc /var /root cannot have their upper dir inside the lower
    # one, and /run is replaced by a tmpfs in the gateway.
    case "$DIR/" in
    /etc/* | /var/* | /root/* | /run/* | /proc/* | /sys/* | /dev/*)
        die "lab dir must not be under /etc, /var, /root, /run, /proc, /sys or /dev: $DIR" ;;
    esac
    [[ "$DIR" != "/" ]] || die "lab dir must not be /"
}

preflight() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, mounts)"
    local c
    for c in ip iptables sysctl ss nsenter unshare ssh-keygen timeout setsid "$SSHD" "$PYTHON"; do
        command -v "$c" >/dev/null || die "missing command: $c"
    done
    if ((DHCP)); then
        for c in dnsmasq busybox; do
            command -v "$c" >/dev/null || die "missing command: $c (--dhcp; scripts/install-deps.sh installs it)"
        done
    fi
}

# ---------------------------------------------------------------- up: namespaces

create_namespaces() {
    local role
    for role in "${BUILD_ROLES[@]}"; do
        ip netns add "$(ns "$role")"
        in_ns "$role" ip link set lo up
        # IPv4-only lab: no IPv6 link-local routes or router solicitations
        # cluttering the gateway's state. Set before any interface exists so
        # "default" applies to the veths created below.
        in_ns "$role" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
}

# veth ROLE_A IF_A ROLE_B IF_B: one cable, created inside A with its peer born in B.
veth() {
    ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
}

# addr ROLE IF CIDR: address an interface and bring it up.
addr() {
    ip -n "$(ns "$1")" addr add "$3" dev "$2"
    ip -n "$(ns "$1")" link set "$2" up
}

route() {
    local role=$1
    shift
    ip -n "$(ns "$role")" route add "$@"
}

sysctl_in() {
    local role=$1
    shift
    in_ns "$role" sysctl -qw "$@"
}

build_links() {
    # Gateway <-> ISPs and management.
    veth gw eth1 ctc cust0
    veth gw eth2 cnc cust0
    veth gw mgmt0 ctl eth0
    # The "Internet": the two ISPs peer directly.
    veth ctc peer0 cnc peer0
    # Users behind each ISP.
    veth ctc user0 uctc eth0
    veth cnc user0 ucnc eth0
    # LAN: a bridge in its own namespace, like a switch.
    ip -n "$(ns lan)" link add br0 type bridge
    ip -n "$(ns lan)" link set br0 up
    local role
    for role in gw srv cli; do
        veth "$role" eth0 lan "p-$role"
        ip -n "$(ns lan)" link set "p-$role" master br0
        ip -n "$(ns lan)" link set "p-$role" up
    done
    if ((ISPS == 3)); then
        veth gw eth3 cmcc cust0
        veth ctc peer1 cmcc peer0
        veth cmcc user0 ucmcc eth0
    fi
}

configure_gw() {
    addr gw eth0 192.168.0.1/24
    addr gw eth1 198.51.100.2/24
    if ((DHCP)); then
        ip -n "$(ns gw)" link set eth2 up # its address is the DHCP client's
    else
        addr gw eth2 203.0.113.2/24
    fi
    addr gw mgmt0 10.9.0.2/24
    if ((ISPS == 3)); then addr gw eth3 198.18.0.2/24; fi
    # Forwarding on, but no default route and nothing beyond connected routes:
    # routing policy is dwprov's job.
    sysctl_in gw net.ipv4.ip_forward=1
}

configure_ctl() {
    addr ctl eth0 10.9.0.1/24
}

# isp ROLE CUST_CIDR CUST_NET USER_CIDR PEER_CIDR PEER_GW REMOTE_NET...
configure_isp() {
    local role=$1 cust=$2 cust_net=$3 user=$4 peer=$5 peer_gw=$6
    shift 6
    addr "$role" cust0 "$cust"
    addr "$role" user0 "$user"
    addr "$role" peer0 "$peer"
    local net
    for net in "$@"; do
        route "$role" "$net" via "$peer_gw"
    done
    sysctl_in "$role" net.ipv4.ip_forward=1
    # Anti-spoofing, as real ISPs do: a customer may only send from the
    # addresses it was given. This is what makes source-return routing on the
    # gateway necessary (a reply leaving by the wrong line is dropped here).
    in_ns "$role" iptables -A FORWARD -i cust0 ! -s "$cust_net" -j DROP
    in_ns "$role" iptables -A INPUT -i cust0 ! -s "$cust_net" -j DROP
}

configure_hosts() {
    addr uctc eth0 100.64.1.10/24
    route uctc default via 100.64.1.1
    addr ucnc eth0 100.65.1.10/24
    route ucnc default via 100.65.1.1
    if ((ISPS == 3)); then
        addr ucmcc eth0 100.67.1.10/24
        route ucmcc default via 100.67.1.1
    fi
    addr srv eth0 192.168.0.100/24
    route srv default via 192.168.0.1
    addr cli eth0 192.168.0.50/24
    route cli default via 192.168.0.1
}

# ---------------------------------------------------------------- up: sshd

make_keys() {
    ssh-keygen -q -t ed25519 -N '' -C "dwprov-lab-host" -f "$DIR/ssh_host_ed25519_key"
    ssh-keygen -q -t ecdsa -N '' -C "dwprov-lab-host" -f "$DIR/ssh_host_ecdsa_key"
    ssh-keygen -q -t ed25519 -N '' -C "dwprov-lab-client" -f "$DIR/id_ed25519"
    cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
    # Only the ed25519 host key is pinned, as an operator would pin one key.
    local type key _
    read -r type key _ <"$DIR/ssh_host_ed25519_key.pub"
    printf '10.9.0.2 %s %s\n' "$type" "$key" >"$DIR/known_hosts"
}

write_sshd_config() {
    cat >"$DIR/sshd_config" <<EOF
# dwprov lab gateway sshd (generated by lab.sh)
Port 22
ListenAddress 0.0.0.0
HostKey $DIR/ssh_host_ed25519_key
HostKey $DIR/ssh_host_ecdsa_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# No ~/.ssh/rc of this machine's root before every command.
PermitUserRC no
# The lab dir lives under /tmp (world-writable parent): StrictModes would refuse it.
StrictModes no
UseDNS no
# Tests open many sessions in parallel.
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
}

# Runs as `sh -c` inside the gateway's netns, in fresh mount and UTS namespaces.
# $1 = lab dir, $2 = hostname, $3 = sshd. Ends by exec'ing sshd, so sshd's pid
# is the handle on this mount namespace (lab.sh exec gw / nsenter -t).
# shellcheck disable=SC2016
readonly GW_INIT='set -eu
d=$1 host=$2 sshd=$3
# Copy-on-write /etc, /var, /root: reads see this machine, writes stay in $d.
for p in etc var root; do
    mount -t overlay "dwlab-$p" -o "lowerdir=/$p,upperdir=$d/overlay/$p/upper,workdir=$d/overlay/$p/work" "/$p"
done
# Private /run (sshd privsep dir, locks, pid files) and /tmp.
mount -t tmpfs -o mode=0755 dwlab-run /run
mkdir -p /run/sshd /run/lock /run/dwlab-dir
# Keep the lab dir visible at its own path even when it lives under /tmp.
mount --bind "$d" /run/dwlab-dir
mount -t tmpfs -o mode=1777 dwlab-tmp /tmp
mkdir -p "$d"
mount --bind /run/dwlab-dir "$d"
umount /run/dwlab-dir
rmdir /run/dwlab-dir
hostname "$host"
printf "%s\n" "$host" >/etc/hostname
# Config test first (needs /run/sshd, so only possible here): a clear message.
"$sshd" -t -f "$d/sshd_config"
exec "$sshd" -D -f "$d/sshd_config" -E "$d/sshd.log"'

start_sshd() {
    local p
    for p in etc var root; do
        mkdir -p "$DIR/overlay/$p/upper" "$DIR/overlay/$p/work"
    done
    quiet_root_home "$DIR/overlay/root/upper"
    # setsid: not killed by ^C in the terminal that ran `up`; stdio to files so
    # whoever captured our output (cargo test) is not kept waiting for EOF.
    setsid ip netns exec "$(ns gw)" \
        unshare --mount --uts --propagation private \
        sh -c "$GW_INIT" gw-init "$DIR" "$(ns gw)" "$SSHD" \
        </dev/null >>"$DIR/gw-init.log" 2>&1 &
    wait_for 10 sshd_pid || {
        tail -n 20 "$DIR/gw-init.log" "$DIR/sshd.log" >&2 2>/dev/null || true
        die "sshd did not start in $(ns gw)"
    }
    # Bounded wait until the controller can actually open a TCP connection.
    wait_for 15 in_ns ctl timeout 1 bash -c ': </dev/tcp/10.9.0.2/22' || {
        tail -n 20 "$DIR/sshd.log" >&2 2>/dev/null || true
        die "sshd in $(ns gw) does not accept TCP on 10.9.0.2:22 from $(ns ctl)"
    }
}

# ---------------------------------------------------------------- up: DHCP (--dhcp)

# The cnc router's anti-spoofing, following the leases: only leased
# addresses may send from the customer side (DHCP itself comes from 0.0.0.0).
configure_dhcp_antispoof() {
    in_ns cnc iptables -F FORWARD
    in_ns cnc iptables -F INPUT
    in_ns cnc iptables -N dwlab-lease
    in_ns cnc iptables -A dwlab-lease -j DROP
    in_ns cnc iptables -A FORWARD -i cust0 -j dwlab-lease
    in_ns cnc iptables -A INPUT -i cust0 -p udp --sport 68 --dport 67 -j ACCEPT
    in_ns cnc iptables -A INPUT -i cust0 -j dwlab-lease
}

# dnsmasq's lease script (runs in the cnc namespace): ACTION MAC ADDRESS ...
write_lease_script() {
    cat >"$DIR/dnsmasq-lease.sh" <<'EOF'
#!/bin/sh
# The lab cnc router's anti-spoofing follows its DHCP leases (lab.sh --dhcp).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case $1 in
add | old) iptables -C dwlab-lease -s "$3" -j RETURN 2>/dev/null || iptables -I dwlab-lease -s "$3" -j RETURN ;;
del) iptables -D dwlab-lease -s "$3" -j RETURN 2>/dev/null || true ;;
esac
exit 0
EOF
    chmod 0755 "$DIR/dnsmasq-lease.sh"
}

# udhcpc's event script on the gateway: the lease's address and a default
# route in main with a metric (as NetworkManager and systemd-networkd do).
write_udhcpc_script() {
    cat >"$DIR/udhcpc.sh" <<'EOF'
#!/bin/sh
# The lab gateway's DHCP client events (lab.sh --dhcp): busybox udhcpc sets
# $interface, $ip, $mask (prefix length), $router.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case $1 in
deconfig)
    ip route del default dev "$interface" metric 100 2>/dev/null
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    for a in $(ip -4 -o addr show dev "$interface" | awk '{print $4}'); do
        [ "$a" = "$ip/$mask" ] || ip addr del "$a" dev "$interface"
    done
    ip addr replace "$ip/$mask" dev "$interface"
    for r in $router; do
        ip route replace default via "$r" dev "$interface" metric 100
        break
    done
    ;;
esac
exit 0
EOF
    chmod 0755 "$DIR/udhcpc.sh"
}

start_dnsmasq() {
    write_lease_script
    setsid ip netns exec "$(ns cnc)" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
        --interface=cust0 --bind-interfaces --dhcp-authoritative --no-ping --user=root \
        --dhcp-range=203.0.113.50,203.0.113.99,255.255.255.0,1h \
        --dhcp-option=option:router,203.0.113.1 --dhcp-leasefile="$DIR/dnsmasq.leases" \
        --dhcp-script="$DIR/dnsmasq-lease.sh" --pid-file="$DIR/dnsmasq.pid" \
        --log-dhcp --log-facility="$DIR/dnsmasq.log" </dev/null >>"$DIR/dnsmasq.out" 2>&1 &
    wait_for 10 dhcp_listening || {
        cat "$DIR/dnsmasq.out" "$DIR/dnsmasq.log" >&2 2>/dev/null || true
        die "dnsmasq did not start in $(ns cnc)"
    }
}

dhcp_listening() { [[ -n "$(in_ns cnc ss -Hlun "sport = :67")" ]]; }

has_lease() { # ADDRESS: eth2 has it and the cnc router lets it in
    ip -n "$(ns gw)" -4 -o addr show dev eth2 | grep -qF " $1/24 " &&
        in_ns cnc iptables -C dwlab-lease -s "$1" -j RETURN 2>/dev/null
}

no_address() { [[ -z "$(ip -n "$(ns gw)" -4 -o addr show dev eth2)" ]]; }

# The DHCP client on the gateway's eth2, asking for ADDRESS.
start_udhcpc() {
    write_udhcpc_script
    setsid ip netns exec "$(ns gw)" busybox udhcpc -f -R -i eth2 -s "$DIR/udhcpc.sh" \
        -p "$DIR/udhcpc.pid" -r "$1" -t 10 -T 1 -A 1 </dev/null >>"$DIR/udhcpc.log" 2>&1 &
    wait_for 20 has_lease "$1" || {
        tail -n 20 "$DIR/udhcpc.log" "$DIR/dnsmasq.log" >&2 2>/dev/null || true
        die "the gateway's eth2 did not get the lease $1"
    }
}

udhcpc_gone() { ! kill -0 "$1" 2>/dev/null; }

# Stop the DHCP client (it releases its lease on the way out: -R).
stop_udhcpc() {
    local pid
    [[ -r "$DIR/udhcpc.pid" ]] || return 0
    pid=$(<"$DIR/udhcpc.pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    ip netns identify "$pid" 2>/dev/null | grep -qxF "$(ns gw)" || return 0
    kill "$pid" 2>/dev/null || return 0
    wait_for 10 udhcpc_gone "$pid" || die "udhcpc $pid did not stop"
    rm -f "$DIR/udhcpc.pid"
}

do_lease() {
    [[ -r "$DIR/udhcpc.sh" ]] || die "lab $PREFIX ($DIR) is not a --dhcp lab"
    stop_udhcpc
    # The release's event script flushed eth2; a client killed harder did not.
    wait_for 10 no_address || ip -n "$(ns gw)" -4 addr flush dev eth2
    if [[ "$LEASE" == none ]]; then
        log "lease released: eth2 has no address"
        return 0
    fi
    [[ "$LEASE" =~ ^203\.0\.113\.([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 50 && BASH_REMATCH[1] <= 99)) ||
        die "lease address must be in the pool 203.0.113.50-99, not '$LEASE'"
    start_udhcpc "$LEASE"
    log "lease: eth2 has $LEASE"
}

# ---------------------------------------------------------------- up: echo servers

echo_server_source() {
    local src="${DWLAB_ECHO_SERVER:-}"
    if [[ -z "$src" ]]; then
        src="$(dirname -- "${BASH_SOURCE[0]}")/echo_server.py"
    fi
    [[ -r "$src" ]] || die "echo server not found at $src (set DWLAB_ECHO_SERVER)"
    printf '%s' "$src"
}

# start_echo ROLE PORT: echo server in ROLE's namespace (gw: in sshd's mount ns).
start_echo() {
    local role=$1 port=$2 name="echo-$1-$2"
    local -a enter=(ip netns exec "$(ns "$role")")
    if [[ "$role" == gw ]]; then
        enter=(nsenter -t "$(print_sshd_pid)" -m -n -u --)
    fi
    setsid "${enter[@]}" "$PYTHON" -u "$DIR/echo_server.py" "$port" \
        </dev/null >>"$DIR/$name.log" 2>&1 &
    echo "$!" >"$DIR/$name.pid"
}

echo_listening() {
    local role=$1 port=$2
    [[ -n "$(in_ns "$role" ss -Hltn "sport = :$port")" ]]
}

start_echo_servers() {
    cp -- "$(echo_server_source)" "$DIR/echo_server.py"
    start_echo srv 80
    start_echo gw 8080
    start_echo uctc 80
    start_echo ucnc 80
    local spec specs=(srv:80 gw:8080 uctc:80 ucnc:80)
    if ((ISPS == 3)); then
        start_echo ucmcc 80
        specs+=(ucmcc:80)
    fi
    for spec in "${specs[@]}"; do
        wait_for 10 echo_listening "${spec%%:*}" "${spec##*:}" || {
            cat "$DIR/echo-${spec%%:*}-${spec##*:}.log" >&2 2>/dev/null || true
            die "echo server ${spec} did not start"
        }
    done
}

# The example ISP lists for the ready inventory, copied into the lab dir so the
# inventory works from any directory: DWLAB_ISP_DIR (`dwprov lab` writes its
# embedded copies there), else this repository's examples/isp. None: the
# inventory routes only the lab's own user networks.
copy_isp_lists() {
    local src="${DWLAB_ISP_DIR:-$(dirname -- "${BASH_SOURCE[0]}")/../examples/isp}" f
    for f in chinanet.txt unicom-only.txt; do
        [[ -r "$src/$f" ]] || return 1
    done
    mkdir -p "$DIR/isp"
    cp -- "$src/chinanet.txt" "$src/unicom-only.txt" "$DIR/isp/"
    # The third line's list, less the prefixes the other two already route
    # (a prefix on two lines is refused), as unicom-only.txt is made.
    rm -f "$DIR/isp/cmcc-only.txt"
    if ((ISPS == 3)) && [[ -r "$src/cmcc.txt" ]]; then
        awk 'FNR==1{f++} /^#/ && f==3 {print; next} f<3 {seen[$0]=1; next} !($0 in seen)' \
            "$src/chinanet.txt" "$src/unicom-only.txt" "$src/cmcc.txt" >"$DIR/isp/cmcc-only.txt"
    fi
}

# The 3-ISP lab's third line for the ready inventory (nothing with 2 ISPs).
cmcc_line() {
    ((ISPS == 3)) || return 0
    local list=""
    if [[ -s "$DIR/isp/cmcc-only.txt" ]]; then
        list="
          routes_file: isp/cmcc-only.txt    # cmcc.txt less the prefixes ctc and cnc route"
    fi
    # A leading newline: it follows cnc's last line (nothing at all with 2 ISPs).
    cat <<EOF

        - name: cmcc
          table: 300
          mark: 0x300
          interface: eth3
          address: 198.18.0.2/24
          gateway: 198.18.0.1
          routes: [100.67.0.0/16]           # the lab's CMCC users$list
EOF
}

# A ready inventory for the lab's gateway: the seed's topology, method fwmark
# (as examples/seed-fwmark), so `dwprov plan -i $DIR/inventory.yaml` works as is;
# with --isps 3 the third line (cmcc) too.
write_inventory() {
    local ctc_list="" cnc_list="" cnc_address=203.0.113.2/24 cnc_gateway=203.0.113.1
    # --dhcp: the CNC address and next hop are the lease's (issue 14).
    if ((DHCP)); then cnc_address="dynamic        # the DHCP lease's" cnc_gateway=dynamic; fi
    if copy_isp_lists; then
        ctc_list="
          routes_file: isp/chinanet.txt     # 4,164 real prefixes"
        cnc_list="
          routes_file: isp/unicom-only.txt  # 3,475 (unicom.txt less those ctc lists)"
    fi
    cat >"$DIR/inventory.yaml" <<EOF
# The lab gateway (written by lab up): the seed's dual-line topology, method fwmark.
all:
  hosts:
    gw1:
      address: 10.9.0.2
      ssh: {user: root, identity_file: $DIR/id_ed25519, known_hosts: $DIR/known_hosts}
      method: fwmark
      lan:
        - {interface: eth0, address: 192.168.0.1/24}
      lines:
        - name: ctc
          table: 100
          mark: 0x100
          interface: eth1
          address: 198.51.100.2/24
          gateway: 198.51.100.1
          default: true
          routes: [100.64.0.0/16]           # the lab's CTC users$ctc_list
        - name: cnc
          table: 200
          mark: 0x200
          interface: eth2
          address: $cnc_address
          gateway: $cnc_gateway
          routes: [100.65.0.0/16]           # the lab's CNC users$cnc_list$(cmcc_line)
      nat: {mode: snat}
      forwards:
        - {proto: tcp, port: 80, to: 192.168.0.100}
        - {proto: tcp, port: 2222, to: 192.168.0.100, to_port: 22, lines: [cnc]}
      hairpin: true
EOF
}

print_summary() {
    local LINES_SHOWN="ctc + cnc"
    ((ISPS == 3)) && LINES_SHOWN="ctc + cnc + cmcc"
    local role dwprov="${DWLAB_DWPROV:-dwprov}" caller="${DWLAB_CALLER:-lab.sh}"
    cat <<EOF

[lab] up: prefix $PREFIX, dir $DIR
namespaces:
EOF
    for role in "${BUILD_ROLES[@]}"; do printf '  %-6s %s\n' "$role" "$(ns "$role")"; done
    cat <<EOF
gateway sshd: pid $(print_sshd_pid), 10.9.0.2:22 (log $DIR/sshd.log)
inventory: $DIR/inventory.yaml (gateway gw1, method fwmark, lines $LINES_SHOWN, LAN, port forwards)
next, from the controller namespace (as root):
  ip netns exec $(ns ctl) $dwprov plan -i $DIR/inventory.yaml
  ip netns exec $(ns ctl) $dwprov apply -i $DIR/inventory.yaml
a shell on the gateway as dwprov sees it (its netns + sshd's mount namespace):
  nsenter -t $(print_sshd_pid) -m -n -u -- bash
EOF
    if [[ $caller == lab.sh ]]; then
        echo "  lab.sh --prefix $PREFIX --dir $DIR exec gw bash"
        printf 'tear down:\n  lab.sh --prefix %s --dir %s down\n' "$PREFIX" "$DIR"
    else
        printf 'tear down:\n  %s down --prefix %s --dir %s\n' "$caller" "$PREFIX" "$DIR"
    fi
}

# ---------------------------------------------------------------- actions

lab_exists() {
    local role
    for role in "${ROLES[@]}"; do
        ns_exists "$role" && return 0
    done
    return 1
}

do_up() {
    preflight
    # Refuse rather than tear down: the existing lab may be someone else's run.
    if lab_exists; then
        die "a lab with prefix '$PREFIX' already exists (not touching it); tear it down first: lab.sh --prefix $PREFIX --dir $DIR down"
    fi
    if [[ -e "$DIR" ]] && [[ -n "$(ls -A -- "$DIR" 2>/dev/null)" ]]; then
        die "lab dir $DIR exists and is not empty; run down or choose another --dir"
    fi
    # From here on, anything that fails leaves a half-built lab: tear it down.
    # shellcheck disable=SC2154  # rc is assigned inside the trap string
    trap 'rc=$?; if ((rc != 0)); then warn "up failed (exit $rc), tearing down"; do_down >&2 || true; fi' EXIT
    mkdir -p "$DIR"
    chmod 0700 "$DIR"
    printf 'prefix=%s\nisps=%s\ndhcp=%s\n' "$PREFIX" "$ISPS" "$DHCP" >"$DIR/$MARKER"

    log "creating namespaces ${PREFIX}{$(IFS=,; echo "${BUILD_ROLES[*]}")}"
    create_namespaces
    build_links
    configure_gw
    configure_ctl
    configure_isp ctc 198.51.100.1/24 198.51.100.0/24 100.64.1.1/24 192.0.2.1/30 192.0.2.2 \
        100.65.0.0/16 203.0.113.0/24
    configure_isp cnc 203.0.113.1/24 203.0.113.0/24 100.65.1.1/24 192.0.2.2/30 192.0.2.1 \
        100.64.0.0/16 198.51.100.0/24
    if ((ISPS == 3)); then
        # cmcc peers with ctc only; cnc reaches it through ctc.
        addr ctc peer1 192.0.2.5/30
        route ctc 100.67.0.0/16 via 192.0.2.6
        route ctc 198.18.0.0/24 via 192.0.2.6
        route cnc 100.67.0.0/16 via 192.0.2.1
        route cnc 198.18.0.0/24 via 192.0.2.1
        configure_isp cmcc 198.18.0.1/24 198.18.0.0/24 100.67.1.1/24 192.0.2.6/30 192.0.2.5 \
            100.64.0.0/16 198.51.100.0/24 100.65.0.0/16 203.0.113.0/24
    fi
    configure_hosts
    if ((DHCP)); then
        log "starting dnsmasq in $(ns cnc), udhcpc on $(ns gw) eth2"
        configure_dhcp_antispoof
        start_dnsmasq
        start_udhcpc 203.0.113.77
    fi

    log "starting sshd in $(ns gw)"
    make_keys
    write_sshd_config
    start_sshd
    log "starting echo servers"
    start_echo_servers
    write_inventory

    trap - EXIT
    print_summary
}

do_down() {
    teardown_lab
    log "down: prefix $PREFIX"
}

do_status() {
    local role up=0 total pid
    # The lab's own roles: a 3-ISP lab says so in its marker (whatever --isps says now).
    if grep -qx 'isps=3' "$DIR/$MARKER" 2>/dev/null; then BUILD_ROLES=("${ROLES[@]}"); fi
    total=${#BUILD_ROLES[@]}
    for role in "${BUILD_ROLES[@]}"; do
        if ns_exists "$role"; then
            printf '  %-6s %-24s present\n' "$role" "$(ns "$role")"
            up=$((up + 1))
        else
            printf '  %-6s %-24s absent\n' "$role" "$(ns "$role")"
        fi
    done
    if pid=$(print_sshd_pid); then
        echo "sshd: running (pid $pid)"
    else
        echo "sshd: not running"
    fi
    if ((up == total)) && [[ -n "${pid:-}" ]]; then
        echo "lab $PREFIX: up (dir $DIR)"
    elif ((up == 0)); then
        echo "lab $PREFIX: down"
        return 3
    else
        echo "lab $PREFIX: partial ($up/$total namespaces) - run down"
        return 3
    fi
}

do_exec() {
    local role=$EXEC_ROLE pid
    [[ " ${ROLES[*]} " == *" $role "* ]] || die "unknown role '$role' (roles: ${ROLES[*]})"
    ns_exists "$role" || die "namespace $(ns "$role") does not exist"
    if [[ "$role" == gw ]]; then
        pid=$(print_sshd_pid) || die "sshd is not running in $(ns gw): cannot enter its mount namespace"
        exec nsenter -t "$pid" -m -n -u -- "${EXEC_CMD[@]}"
    fi
    exec ip netns exec "$(ns "$role")" "${EXEC_CMD[@]}"
}

main() {
    parse_args "$@"
    case "$ACTION" in
    up) do_up ;;
    down)
        [[ $(id -u) -eq 0 ]] || die "must run as root"
        do_down ;;
    status) do_status ;;
    exec) do_exec ;;
    lease)
        [[ $(id -u) -eq 0 ]] || die "must run as root"
        do_lease ;;
    esac
}

main "$@"
