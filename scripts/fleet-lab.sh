#!/usr/bin/env bash
# dwprov fleet lab: N light gateways in network namespaces, one controller.
#
#   fleet-lab.sh up   --prefix P --dir D --count N [--unreachable] [--fail-apply I[,I...]]
#                     [--bastion I[,I...]]
#   fleet-lab.sh down --prefix P --dir D
#   fleet-lab.sh status --prefix P --dir D
#   fleet-lab.sh inventory --prefix P --dir D [--order H1,H2,...] [--out FILE]
#   fleet-lab.sh exec --prefix P --dir D HOST CMD [ARG...]
#
# Topology (addresses are a contract: tests depend on them):
#
#   P ctl  eth0 10.10.0.1/16 ──┐
#                              │  P sw: br0 (a switch, no address)
#   P gw001 mgmt0 10.10.1.1/16 ┤
#   P gw002 mgmt0 10.10.1.2/16 ┤     gateway i: 10.10.(1 + (i-1)/200).(1 + (i-1)%200)
#   ...                        ┘
#
# With --bastion LIST, those gateways hang off a second switch instead,
# reachable only through the bastion (the controller has no route there):
#
#   P bastion eth0 10.10.0.2/16 (on P sw) ── eth1 10.20.0.1/16 ── P sw2: br0
#   P gwNNN mgmt0 10.20.(1 + (i-1)/200).(1 + (i-1)%200)/16 (on P sw2)
#
# The bastion runs the same sshd as a gateway (own host key, pinned in
# known_hosts under 10.10.0.2); in the inventory it is host `bastion` (group
# `bastions`, no gateway intent: plan and apply with --limit '!bastions') and
# the hidden gateways (group `behind_bastion`) have `ssh: {jump: bastion}`.
#
# Each gateway has exactly the interfaces the inventory names, addressed like
# the single-gateway lab (scripts/lab.sh): eth0 192.168.0.1/24 (lan),
# eth1 198.51.100.2/24 (ctc), eth2 203.0.113.2/24 (cnc). They are veth pairs
# whose peers (eth0p, eth1p, eth2p) stay inside the gateway's own namespace:
# the links are up and carry the addresses, there is just nobody behind them.
# (The `dummy` link type is not available everywhere; veth always is.)
#
# Every gateway runs an OpenSSH sshd (key-only, its own ed25519 host key,
# pinned in D/known_hosts by address) in its own mount and UTS namespaces with
# overlay copies of /etc, /var and /root and private tmpfs /run and /tmp, so
# whatever dwprov does over SSH never reaches this machine's files. sshd's
# pid (D/gw/NAME/sshd.pid) is the handle on "the gateway as dwprov sees it":
#   nsenter -t PID -m -n -u -- CMD       (or: fleet-lab.sh exec NAME CMD)
#
# Options for failure tests:
#   --unreachable       adds host `gwdown` at 10.10.255.254: no namespace, and
#                       an `unreachable` route to it in the controller, so a
#                       connection fails at once (No route to host).
#   --fail-apply LIST   gateways (by number, e.g. 1,7) whose /etc/sysctl.d is a
#                       read-only bind mount: `dwprov plan` works (gather only
#                       reads), `dwprov apply` fails its writability preflight
#                       before changing anything. They are in group `broken`.
#   --bastion LIST      gateways (by number) reachable only through the bastion.
#
# Nothing is created or configured in the root namespace: every veth is
# created inside a lab namespace with its peer born in another one. Every
# namespace name starts with the prefix: P ctl, P sw, P gw001... `up` on a
# prefix that exists fails (it never tears down a lab it did not build); a
# failed `up` tears down what it built. `down` is idempotent and also cleans
# half-built labs (it finds namespaces by prefix, not by count).
set -euo pipefail

readonly MARKER=".dwprov-fleet-lab"   # only directories carrying this are ever rm -rf'd
# wait_for and the teardown, shared with lab.sh.
# shellcheck source=lab-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lab-lib.sh"
readonly SSHD="/usr/sbin/sshd"        # sshd re-execs itself: it needs an absolute path
readonly DOWN_ADDR="10.10.255.254"    # the unreachable host's address
readonly BASTION_ADDR="10.10.0.2"     # the bastion on the controller's switch
readonly MAX_COUNT=999

PREFIX=""
DIR=""
COUNT=""
ACTION=""
UNREACHABLE=0
FAIL_APPLY=""
BASTION=""
ORDER=""
OUT=""
EXEC_HOST=""
EXEC_CMD=()

# ---------------------------------------------------------------- helpers

log() { printf '[fleet-lab] %s\n' "$*"; }
warn() { printf '[fleet-lab] warning: %s\n' "$*" >&2; }
die() {
    printf '[fleet-lab] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
usage: fleet-lab.sh up     --prefix P --dir D --count N [--unreachable] [--fail-apply I[,I...]]
       fleet-lab.sh down   --prefix P --dir D
       fleet-lab.sh status --prefix P --dir D
       fleet-lab.sh inventory --prefix P --dir D [--order H1,H2,...] [--out FILE]
       fleet-lab.sh exec   --prefix P --dir D HOST CMD [ARG...]

  --prefix P        namespace name prefix; namespaces are Pctl, Psw, Pgw001...
  --dir D           lab directory: keys, sshd configs and logs, overlays, inventory
  --count N         gateways to build (1..$MAX_COUNT)
  --unreachable     add inventory host gwdown ($DOWN_ADDR) that cannot be reached
  --fail-apply LIST gateway numbers whose apply fails (read-only /etc/sysctl.d)
  --bastion LIST    gateway numbers reachable only through host bastion ($BASTION_ADDR)
  --order LIST      inventory: host order (default: gw001.. then gwdown)
  --out FILE        inventory: where to write it (default D/inventory.yaml)

files in D: inventory.yaml, hosts.tsv (name address namespace flags),
            id_ed25519 (client key), known_hosts, gw/NAME/{sshd.pid,sshd.log}
EOF
}

ns_ctl() { printf '%sctl' "$PREFIX"; }
ns_sw() { printf '%ssw' "$PREFIX"; }
ns_sw2() { printf '%ssw2' "$PREFIX"; }
ns_bastion() { printf '%sbastion' "$PREFIX"; }
gw_name() { printf 'gw%03d' "$1"; }
ns_gw() { printf '%sgw%03d' "$PREFIX" "$1"; }
# Gateways behind the bastion live in 10.20/16, the others in 10.10/16.
gw_addr() {
    local net=10
    is_hidden "$1" && net=20
    printf '10.%d.%d.%d' "$net" $((1 + ($1 - 1) / 200)) $((1 + ($1 - 1) % 200))
}

ns_exists() { [[ -e "/run/netns/$1" ]]; }

# Every namespace of this lab, built or half-built: Pctl, Psw, Pgw<digits>.
lab_namespaces() {
    local f name rest
    for f in /run/netns/*; do
        [[ -e "$f" ]] || continue
        name=${f##*/}
        [[ "$name" == "$PREFIX"* ]] || continue
        rest=${name#"$PREFIX"}
        if [[ "$rest" =~ ^(ctl|sw|sw2|bastion|gw[0-9]{3})$ ]]; then
            printf '%s\n' "$name"
        fi
    done
}

# sshd's pid of gateway NAME if alive and really in that gateway's namespace.
sshd_pid() {
    local name=$1 pid file="$DIR/gw/$1/sshd.pid"
    [[ -r "$file" ]] || return 1
    pid=$(<"$file")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(ip netns identify "$pid" 2>/dev/null)" == "${PREFIX}${name}" ]] || return 1
    printf '%s\n' "$pid"
}

# ---------------------------------------------------------------- arguments

parse_args() {
    while (($#)); do
        case "$1" in
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --dir) [[ $# -ge 2 ]] || die "--dir needs a value"; DIR=$2; shift 2 ;;
        --dir=*) DIR=${1#--dir=}; shift ;;
        --count) [[ $# -ge 2 ]] || die "--count needs a value"; COUNT=$2; shift 2 ;;
        --count=*) COUNT=${1#--count=}; shift ;;
        --unreachable) UNREACHABLE=1; shift ;;
        --fail-apply) [[ $# -ge 2 ]] || die "--fail-apply needs a value"; FAIL_APPLY=$2; shift 2 ;;
        --fail-apply=*) FAIL_APPLY=${1#--fail-apply=}; shift ;;
        --bastion) [[ $# -ge 2 ]] || die "--bastion needs a value"; BASTION=$2; shift 2 ;;
        --bastion=*) BASTION=${1#--bastion=}; shift ;;
        --order) [[ $# -ge 2 ]] || die "--order needs a value"; ORDER=$2; shift 2 ;;
        --order=*) ORDER=${1#--order=}; shift ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a value"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        -h | --help) usage; exit 0 ;;
        up | down | status | inventory)
            [[ -z "$ACTION" ]] || die "more than one action given"
            ACTION=$1; shift ;;
        exec)
            [[ -z "$ACTION" ]] || die "more than one action given"
            ACTION="exec"; shift
            # Options may come before the action; after it: HOST CMD...
            while (($#)) && [[ "$1" == --* ]]; do
                case "$1" in
                --prefix) PREFIX=${2:-}; shift 2 || die "--prefix needs a value" ;;
                --dir) DIR=${2:-}; shift 2 || die "--dir needs a value" ;;
                *) die "unknown option for exec: $1" ;;
                esac
            done
            [[ $# -ge 2 ]] || die "usage: fleet-lab.sh exec HOST CMD [ARG...]"
            EXEC_HOST=$1; shift
            EXEC_CMD=("$@")
            break ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ -n "$ACTION" ]] || { usage >&2; exit 2; }
    [[ -n "$PREFIX" ]] || die "--prefix is required (every namespace name carries it)"
    [[ -n "$DIR" ]] || die "--dir is required"

    # The prefix ends up in namespace names and file names: keep it boring.
    # Namespace names are at most 255 bytes, but keep them readable.
    [[ "$PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
        die "bad prefix '$PREFIX' (letters, digits, _ . -; at most 40 characters)"
    DIR=$(realpath -m -- "$DIR")
    # The directory is written unquoted into sshd_config and inventory.yaml.
    [[ "$DIR" =~ ^/[A-Za-z0-9_./+-]+$ ]] ||
        die "bad lab dir '$DIR' (absolute, letters, digits, _ . / + - only)"
    case "$DIR/" in
    /etc/* | /var/* | /root/* | /run/* | /proc/* | /sys/* | /dev/*)
        die "lab dir must not be under /etc, /var, /root, /run, /proc, /sys or /dev: $DIR" ;;
    esac
    [[ "$DIR" != "/" ]] || die "lab dir must not be /"

    if [[ "$ACTION" == up ]]; then
        [[ "$COUNT" =~ ^[0-9]+$ ]] && ((COUNT >= 1 && COUNT <= MAX_COUNT)) ||
            die "--count must be a number between 1 and $MAX_COUNT (got '${COUNT}')"
        local i
        for i in ${FAIL_APPLY//,/ } ${BASTION//,/ }; do
            [[ "$i" =~ ^[0-9]+$ ]] && ((10#$i >= 1 && 10#$i <= COUNT)) ||
                die "--fail-apply/--bastion: '$i' is not a gateway number between 1 and $COUNT"
        done
    fi
    if [[ -n "$OUT" ]]; then
        OUT=$(realpath -m -- "$OUT")
        [[ "$OUT" =~ ^/[A-Za-z0-9_./+-]+$ ]] || die "bad --out path '$OUT'"
    fi
}

preflight() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, mounts)"
    local c
    for c in ip iptables sysctl nsenter unshare ssh-keygen timeout setsid "$SSHD"; do
        command -v "$c" >/dev/null || die "missing command: $c"
    done
}

in_list() {
    local i=$1 f
    for f in ${2//,/ }; do
        ((10#$f == i)) && return 0
    done
    return 1
}
is_failing() { in_list "$1" "$FAIL_APPLY"; }
is_hidden() { in_list "$1" "$BASTION"; }

# ---------------------------------------------------------------- up

create_namespaces() {
    local i
    ip netns add "$(ns_ctl)"
    ip netns add "$(ns_sw)"
    if [[ -n "$BASTION" ]]; then
        ip netns add "$(ns_sw2)"
        ip netns add "$(ns_bastion)"
    fi
    for ((i = 1; i <= COUNT; i++)); do
        ip netns add "$(ns_gw "$i")"
    done
    # Controller and switch: IPv4 only, loopback up. (Gateways do the same
    # in their init, which already runs inside their namespace: no extra fork.)
    local n
    for n in "$(ns_ctl)" "$(ns_sw)" ${BASTION:+"$(ns_sw2)"} ${BASTION:+"$(ns_bastion)"}; do
        ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip -n "$n" link set lo up
    done
}

build_links() {
    # The switch: one batch creates every port, with the peer (mgmt0) born
    # directly in its gateway's namespace.
    {
        echo "link add br0 type bridge"
        echo "link set br0 up"
        echo "link add p-ctl type veth peer name eth0 netns $(ns_ctl)"
        echo "link set p-ctl master br0 up"
        if [[ -n "$BASTION" ]]; then
            echo "link add p-bastion type veth peer name eth0 netns $(ns_bastion)"
            echo "link set p-bastion master br0 up"
        fi
        local i
        for ((i = 1; i <= COUNT; i++)); do
            is_hidden "$i" && continue
            printf 'link add p%03d type veth peer name mgmt0 netns %s\n' "$i" "$(ns_gw "$i")"
            printf 'link set p%03d master br0 up\n' "$i"
        done
    } | ip -n "$(ns_sw)" -batch -
    if [[ -n "$BASTION" ]]; then
        # The hidden switch: only the bastion and the hidden gateways on it.
        {
            echo "link add br0 type bridge"
            echo "link set br0 up"
            echo "link add p-bastion type veth peer name eth1 netns $(ns_bastion)"
            echo "link set p-bastion master br0 up"
            for ((i = 1; i <= COUNT; i++)); do
                is_hidden "$i" || continue
                printf 'link add p%03d type veth peer name mgmt0 netns %s\n' "$i" "$(ns_gw "$i")"
                printf 'link set p%03d master br0 up\n' "$i"
            done
        } | ip -n "$(ns_sw2)" -batch -
        printf '%s\n' "addr add $BASTION_ADDR/16 dev eth0" "addr add 10.20.0.1/16 dev eth1" \
            "link set eth0 up" "link set eth1 up" | ip -n "$(ns_bastion)" -batch -
    fi
    ip -n "$(ns_ctl)" addr add 10.10.0.1/16 dev eth0
    ip -n "$(ns_ctl)" link set eth0 up
    if ((UNREACHABLE)); then
        # Nobody is at this address; say so at once instead of a 3 s ARP timeout.
        ip -n "$(ns_ctl)" route add unreachable "$DOWN_ADDR/32"
    fi
    # Each gateway: its three inventory interfaces (veth pairs kept inside),
    # management address; all in one batch per gateway.
    for ((i = 1; i <= COUNT; i++)); do
        ip -n "$(ns_gw "$i")" -batch - <<EOF
link set lo up
link add eth0 type veth peer name eth0p
link add eth1 type veth peer name eth1p
link add eth2 type veth peer name eth2p
addr add 192.168.0.1/24 dev eth0
addr add 198.51.100.2/24 dev eth1
addr add 203.0.113.2/24 dev eth2
addr add $(gw_addr "$i")/16 dev mgmt0
link set eth0p up
link set eth1p up
link set eth2p up
link set eth0 up
link set eth1 up
link set eth2 up
link set mgmt0 up
EOF
    done
}

make_keys() {
    ssh-keygen -q -t ed25519 -N '' -C "dwprov-fleet-lab-client" -f "$DIR/id_ed25519"
    cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
    local i name type key _
    : >"$DIR/known_hosts"
    for ((i = 1; i <= COUNT; i++)); do
        name=$(gw_name "$i")
        mkdir -p "$DIR/gw/$name"
        ssh-keygen -q -t ed25519 -N '' -C "dwprov-fleet-lab-$name" -f "$DIR/gw/$name/ssh_host_ed25519_key"
        read -r type key _ <"$DIR/gw/$name/ssh_host_ed25519_key.pub"
        printf '%s %s %s\n' "$(gw_addr "$i")" "$type" "$key" >>"$DIR/known_hosts"
    done
    if [[ -n "$BASTION" ]]; then
        mkdir -p "$DIR/gw/bastion"
        ssh-keygen -q -t ed25519 -N '' -C "dwprov-fleet-lab-bastion" -f "$DIR/gw/bastion/ssh_host_ed25519_key"
        read -r type key _ <"$DIR/gw/bastion/ssh_host_ed25519_key.pub"
        printf '%s %s %s\n' "$BASTION_ADDR" "$type" "$key" >>"$DIR/known_hosts"
    fi
}

write_sshd_config() {
    # Shared by every gateway; host key, pid file and log are per gateway
    # (given on sshd's command line).
    cat >"$DIR/sshd_config" <<EOF
# dwprov fleet lab gateway sshd (generated by fleet-lab.sh)
Port 22
ListenAddress 0.0.0.0
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
# No ~/.ssh/rc of this machine's root before every command.
PermitUserRC no
# The lab dir lives under /tmp (world-writable parent): StrictModes would refuse it.
StrictModes no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
}

write_hosts_tsv() {
    local i flags
    : >"$DIR/hosts.tsv"
    for ((i = 1; i <= COUNT; i++)); do
        flags=ok
        is_failing "$i" && flags="fail-apply"
        is_hidden "$i" && flags="$flags,bastion"
        printf '%s\t%s\t%s\t%s\n' "$(gw_name "$i")" "$(gw_addr "$i")" "$(ns_gw "$i")" "$flags" >>"$DIR/hosts.tsv"
    done
    if ((UNREACHABLE)); then
        printf 'gwdown\t%s\t-\tunreachable\n' "$DOWN_ADDR" >>"$DIR/hosts.tsv"
    fi
    if [[ -n "$BASTION" ]]; then
        printf 'bastion\t%s\t%s\tbastion-host\n' "$BASTION_ADDR" "$(ns_bastion)" >>"$DIR/hosts.tsv"
    fi
}

# Runs as `sh -c` inside a gateway's netns, in fresh mount and UTS namespaces.
# $1 = lab dir, $2 = gateway dir, $3 = hostname, $4 = sshd, $5 = 1 when apply
# must fail, $6 = 1 to test sshd's config first. Ends by exec'ing sshd, so
# sshd's pid is the handle on this mount namespace.
# shellcheck disable=SC2016
readonly GW_INIT='set -eu
d=$1 g=$2 host=$3 sshd=$4 fail=$5 check=$6
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
# Copy-on-write /etc, /var, /root: reads see this machine, writes stay in $g.
for p in etc var root; do
    mount -t overlay "dwfleet-$p" -o "lowerdir=/$p,upperdir=$g/overlay/$p/upper,workdir=$g/overlay/$p/work" "/$p"
done
if [ "$fail" = 1 ]; then
    # The failing gateway: dwprov can read /etc/sysctl.d but not write it.
    mkdir -p /etc/sysctl.d
    mount --bind /etc/sysctl.d /etc/sysctl.d
    mount -o remount,bind,ro /etc/sysctl.d
fi
# Private /run (sshd privsep dir) and /tmp; keep the lab dir visible at its
# own path even when it lives under /tmp.
mount -t tmpfs -o mode=0755 dwfleet-run /run
mkdir -p /run/sshd /run/lock /run/dwfleet-dir
mount --bind "$d" /run/dwfleet-dir
mount -t tmpfs -o mode=1777 dwfleet-tmp /tmp
mkdir -p "$d"
mount --bind /run/dwfleet-dir "$d"
umount /run/dwfleet-dir
rmdir /run/dwfleet-dir
hostname "$host"
printf "%s\n" "$host" >/etc/hostname
if [ "$check" = 1 ]; then
    "$sshd" -t -f "$d/sshd_config" -h "$g/ssh_host_ed25519_key"
fi
exec "$sshd" -D -f "$d/sshd_config" -h "$g/ssh_host_ed25519_key" -o "PidFile=$g/sshd.pid" -E "$g/sshd.log"'

# start_one NAME NETNS FAIL CHECK: the sshd of one host, in its namespace.
start_one() {
    local name=$1 netns=$2 fail=$3 check=$4 g="$DIR/gw/$1" p
    for p in etc var root; do
        mkdir -p "$g/overlay/$p/upper" "$g/overlay/$p/work"
    done
    quiet_root_home "$g/overlay/root/upper"
    # setsid: not killed by ^C in the terminal that ran `up`; stdio to
    # files so whoever captured our output is not kept waiting for EOF.
    setsid ip netns exec "$netns" \
        unshare --mount --uts --propagation private \
        sh -c "$GW_INIT" gw-init "$DIR" "$g" "$name" "$SSHD" "$fail" "$check" \
        </dev/null >>"$g/init.log" 2>&1 &
}

start_gateways() {
    local i name fail
    for ((i = 1; i <= COUNT; i++)); do
        fail=0
        is_failing "$i" && fail=1
        start_one "$(gw_name "$i")" "$(ns_gw "$i")" "$fail" "$((i == 1 ? 1 : 0))"
    done
    [[ -z "$BASTION" ]] || start_one bastion "$(ns_bastion)" 0 0
    # Every sshd must be up and in its own namespace.
    local deadline=$((SECONDS + 30 + COUNT / 5))
    for ((i = 1; i <= COUNT; i++)); do
        name=$(gw_name "$i")
        until sshd_pid "$name" >/dev/null; do
            if ((SECONDS > deadline)); then
                tail -n 20 "$DIR/gw/$name/init.log" "$DIR/gw/$name/sshd.log" >&2 2>/dev/null || true
                die "sshd did not start in $(ns_gw "$i")"
            fi
            sleep 0.1
        done
    done
    if [[ -n "$BASTION" ]]; then
        until sshd_pid bastion >/dev/null; do
            ((SECONDS <= deadline)) || die "sshd did not start in $(ns_bastion)"
            sleep 0.1
        done
    fi
    # And reachable over TCP from the controller (the hidden ones from the
    # bastion): one shell per vantage point probes them all.
    local addrs=() hidden=()
    for ((i = 1; i <= COUNT; i++)); do
        if is_hidden "$i"; then hidden+=("$(gw_addr "$i")"); else addrs+=("$(gw_addr "$i")"); fi
    done
    [[ -z "$BASTION" ]] || addrs+=("$BASTION_ADDR")
    probe_from "$(ns_ctl)" "${addrs[@]}"
    ((${#hidden[@]} == 0)) || probe_from "$(ns_bastion)" "${hidden[@]}"
}

# probe_from NETNS ADDR...: wait until every ADDR accepts TCP on port 22.
probe_from() {
    local netns=$1
    shift
    (($#)) || return 0
    # shellcheck disable=SC2016
    ip netns exec "$netns" timeout $((30 + $# / 5)) bash -c '
        for a in "$@"; do
            until timeout 1 bash -c ": </dev/tcp/$a/22" 2>/dev/null; do sleep 0.1; done
        done' probe "$@" ||
        die "not every host accepts TCP on port 22 from $netns"
}

# ---------------------------------------------------------------- inventory

# The inventory for the hosts in hosts.tsv, in ORDER (default: file order).
# Groups: canary (the first host), beijing (gateways of the first half by
# number), shanghai (the rest), broken (--fail-apply), unreachable (gwdown).
write_inventory() {
    local out=${1:-$DIR/inventory.yaml}
    [[ -r "$DIR/hosts.tsv" ]] || die "$DIR/hosts.tsv is missing: is the lab up?"
    local -A addr=() flag=()
    local -a names=() order=()
    local name a nsn f
    while IFS=$'\t' read -r name a nsn f; do
        names+=("$name")
        addr[$name]=$a
        flag[$name]=$f
    done <"$DIR/hosts.tsv"
    if [[ -n "$ORDER" ]]; then
        IFS=, read -r -a order <<<"$ORDER"
        for name in "${order[@]}"; do
            [[ -n "${addr[$name]:-}" ]] || die "--order: unknown host '$name' (hosts: ${names[*]})"
        done
    else
        order=("${names[@]}")
    fi
    local n_gw=0
    for name in "${names[@]}"; do [[ "$name" =~ ^gw[0-9]+$ ]] && n_gw=$((n_gw + 1)); done
    local half=$(((n_gw + 1) / 2))
    local -a bj=() sh=() broken=() down=() hidden=() bastions=()
    for name in "${order[@]}"; do
        [[ ",${flag[$name]}," == *,bastion,* ]] && hidden+=("$name")
        if [[ "$name" == bastion ]]; then
            bastions+=("$name")
        elif [[ "$name" == gwdown ]]; then
            down+=("$name")
        elif ((10#${name#gw} <= half)); then
            bj+=("$name")
        else
            sh+=("$name")
        fi
        [[ ",${flag[$name]}," == *,fail-apply,* ]] && broken+=("$name")
    done
    local tmp="$out.tmp.$$"
    {
        cat <<EOF
# dwprov fleet lab inventory (generated by fleet-lab.sh; prefix $PREFIX)
all:
  vars:
    ssh: {user: root, identity_file: $DIR/id_ed25519, known_hosts: $DIR/known_hosts, connect_timeout: 5, timeout: 30}
  hosts:
EOF
        for name in "${order[@]}"; do
            if [[ "$name" == bastion ]]; then
                # Only a way in: no gateway intent.
                printf '    %s:\n      address: %s\n' "$name" "${addr[$name]}"
                continue
            fi
            printf '    %s:\n      address: %s\n' "$name" "${addr[$name]}"
            [[ ",${flag[$name]}," == *,bastion,* ]] && echo "      ssh: {jump: bastion}"
            cat <<EOF
      method: fwmark
      lan:
        - {interface: eth0, address: 192.168.0.1/24}
      lines:
        - {name: ctc, table: 100, mark: 0x100, interface: eth1, address: 198.51.100.2/24,
           gateway: 198.51.100.1, default: true, routes: [100.64.0.0/16]}
        - {name: cnc, table: 200, mark: 0x200, interface: eth2, address: 203.0.113.2/24,
           gateway: 203.0.113.1, routes: [100.65.0.0/16]}
      nat: {mode: snat}
      forwards:
        - {proto: tcp, port: 80, to: 192.168.0.100}
EOF
        done
        echo "  children:"
        group() {
            local g=$1
            shift
            (($#)) || return 0
            printf '    %s:\n      hosts:\n' "$g"
            printf '        %s:\n' "$@"
        }
        group canary "${order[0]}"
        group beijing ${bj[@]+"${bj[@]}"}
        group shanghai ${sh[@]+"${sh[@]}"}
        group broken ${broken[@]+"${broken[@]}"}
        group unreachable ${down[@]+"${down[@]}"}
        group behind_bastion ${hidden[@]+"${hidden[@]}"}
        group bastions ${bastions[@]+"${bastions[@]}"}
    } >"$tmp"
    mv -f -- "$tmp" "$out"
}

# ---------------------------------------------------------------- actions

do_up() {
    preflight
    if [[ -n "$(lab_namespaces)" ]]; then
        die "a lab with prefix '$PREFIX' already exists (not touching it); tear it down first: fleet-lab.sh down --prefix $PREFIX --dir $DIR"
    fi
    if [[ -e "$DIR" ]] && [[ -n "$(ls -A -- "$DIR" 2>/dev/null)" ]]; then
        die "lab dir $DIR exists and is not empty; run down or choose another --dir"
    fi
    # From here on, anything that fails leaves a half-built lab: tear it down.
    # shellcheck disable=SC2154 # rc: assigned by the trap itself
    trap 'rc=$?; if ((rc != 0)); then warn "up failed (exit $rc), tearing down"; do_down >&2 || true; fi' EXIT
    local t0=$SECONDS
    mkdir -p "$DIR"
    chmod 0700 "$DIR"
    printf 'prefix=%s\n' "$PREFIX" >"$DIR/$MARKER"

    log "creating namespaces $(ns_ctl), $(ns_sw), $(ns_gw 1)..$(ns_gw "$COUNT")"
    create_namespaces
    build_links
    log "keys and sshd config"
    make_keys
    write_sshd_config
    write_hosts_tsv
    log "starting $COUNT sshd"
    start_gateways
    write_inventory
    trap - EXIT
    log "up: $COUNT gateway(s) in $((SECONDS - t0))s; prefix $PREFIX, dir $DIR"
    cat <<EOF
run dwprov from the controller:
  ip netns exec $(ns_ctl) dwprov plan -i $DIR/inventory.yaml
a shell on a gateway as dwprov sees it:
  $0 exec --prefix $PREFIX --dir $DIR gw001 bash
tear down:
  $0 down --prefix $PREFIX --dir $DIR
EOF
}

do_down() {
    teardown_lab
    log "down: prefix $PREFIX"
}

do_status() {
    local n_ns running=0 total=0 name a nsn f
    n_ns=$(lab_namespaces | wc -l)
    if [[ -r "$DIR/hosts.tsv" ]]; then
        while IFS=$'\t' read -r name a nsn f; do
            [[ "$nsn" == - ]] && continue
            total=$((total + 1))
            if sshd_pid "$name" >/dev/null; then
                running=$((running + 1))
            else
                printf '  %-8s %-16s sshd not running\n' "$name" "$a"
            fi
        done <"$DIR/hosts.tsv"
    fi
    echo "namespaces: $n_ns; gateways with sshd: $running/$total"
    if ((total > 0 && running == total && n_ns >= total + 2)); then
        echo "fleet lab $PREFIX: up (dir $DIR)"
    elif ((n_ns == 0)); then
        echo "fleet lab $PREFIX: down"
        return 3
    else
        echo "fleet lab $PREFIX: partial - run down"
        return 3
    fi
}

do_exec() {
    local pid
    [[ "$EXEC_HOST" =~ ^(gw[0-9]{3}|bastion)$ ]] || die "unknown host '$EXEC_HOST' (gw001..., bastion)"
    pid=$(sshd_pid "$EXEC_HOST") || die "sshd of $EXEC_HOST is not running: cannot enter its namespaces"
    exec nsenter -t "$pid" -m -n -u -- "${EXEC_CMD[@]}"
}

main() {
    parse_args "$@"
    case "$ACTION" in
    up) do_up ;;
    down)
        [[ $(id -u) -eq 0 ]] || die "must run as root"
        do_down ;;
    status) do_status ;;
    inventory) write_inventory "${OUT:-}" ;;
    exec) do_exec ;;
    esac
}

main "$@"
