# The fact commands of `dwprov gather`, copied from src/gather.rs::script()
# (dwprov has no flag to print its gather script). bench.sh checks that every
# line below still occurs in src/gather.rs, so a drift is noticed.
# The marker is fixed here; dwprov uses a random one per run.
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export LC_ALL=C
D='dwprov-0123456789abcdef01234567'
exec 3>&1
if E=$(mktemp 2>/dev/null) && [ -f "$E" ]; then
trap 'rm -f "$E"' EXIT
sec() { n=$1; shift; printf '%s begin %s\n' "$D" "$n"; "$@" 2>"$E"; r=$?; printf '\n%s end %s %s\n' "$D" "$n" "$r"; if [ -s "$E" ]; then cat "$E"; fi; printf '\n%s fin\n' "$D"; }
else
sec() { n=$1; shift; printf '%s begin %s\n' "$D" "$n"; e=$("$@" 2>&1 1>&3); r=$?; printf '\n%s end %s %s\n' "$D" "$n" "$r"; printf '%s' "$e"; printf '\n%s fin\n' "$D"; }
fi
f_sysctl() { for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/rp_filter; do [ -f "$f" ] || continue; v=; read -r v < "$f"; [ -n "$v" ] && printf '%s %s\n' "${f#/proc/sys/}" "$v"; done; return 0; }
f_tools() { for t in "$@"; do if command -v "$t" >/dev/null 2>&1; then echo "$t yes"; else echo "$t no"; fi; done; }
f_rt_tables() { if [ -f /etc/iproute2/rt_tables ]; then cat /etc/iproute2/rt_tables; elif [ -f /usr/share/iproute2/rt_tables ]; then cat /usr/share/iproute2/rt_tables; fi; for f in /etc/iproute2/rt_tables.d/*.conf; do [ -f "$f" ] && [ "$f" != /etc/iproute2/rt_tables.d/dwprov.conf ] && cat "$f"; done; return 0; }
f_file() { [ -f "$1" ] && cat "$1"; }
f_state_files() { for f in /etc/dwprov/* /etc/dwprov/.[!.]*; do [ -f "$f" ] && printf '%s\n' "$f"; done; return 0; }
f_other_backend() { [ -n "$V" ] || V=$(iptables -V 2>/dev/null); case "$V" in *nf_tables*) o=iptables-legacy-save;; *) o=iptables-nft-save;; esac; command -v "$o" >/dev/null 2>&1 || return 0; "$o" 2>/dev/null | grep -c '^-A' ; return 0; }
f_systemd() { [ -d /run/systemd/system ] && echo yes || echo no; }
f_iptables_version() { V=$(iptables -V 2>&1); r=$?; [ $r -eq 0 ] && printf '%s\n' "$V" || { printf '%s\n' "$V" >&2; V=; }; return $r; }
sec uid id -u
sec kernel uname -r
sec tools f_tools ip iptables iptables-save iptables-restore iptables-legacy-save iptables-nft-save sysctl systemctl setsid conntrack awk sha256sum
sec systemd f_systemd
sec rules ip -4 -j -d -N rule show
sec routes ip -4 -j -d -N route show table all
sec addrs ip -4 -j addr show
sec iptables_version f_iptables_version
sec iptables iptables-save
sec other_backend f_other_backend
sec rt_tables f_rt_tables
sec sysctl f_sysctl
sec 'file /etc/iproute2/rt_tables.d/dwprov.conf' f_file /etc/iproute2/rt_tables.d/dwprov.conf
sec 'file /etc/iproute2/rt_protos.d/dwprov.conf' f_file /etc/iproute2/rt_protos.d/dwprov.conf
sec 'file /etc/sysctl.d/90-dwprov.conf' f_file /etc/sysctl.d/90-dwprov.conf
sec 'file /etc/systemd/system/dwprov.service' f_file /etc/systemd/system/dwprov.service
sec 'file /etc/systemd/system/dwprov-routes.service' f_file /etc/systemd/system/dwprov-routes.service
sec 'file /etc/systemd/system/dwprov-route-cache-flush.service' f_file /etc/systemd/system/dwprov-route-cache-flush.service
sec 'file /etc/init.d/dwprov' f_file /etc/init.d/dwprov
sec state_files f_state_files
for f in /etc/dwprov/* /etc/dwprov/.[!.]*; do [ -f "$f" ] || continue; sec "file $f" f_file "$f"; done
