//! Method fwmark's cheap shape (issue 13) on the kernel: a connection is
//! marked once, by its first packet in nat; every later packet from the LAN
//! walks one mangle rule, the restore. A gateway applied with the older
//! shape (marks in mangle PREROUTING and POSTROUTING) converges to it.
mod common;

use common::seed::*;
use common::Lab;

/// Packet counter of the one rule of `table` whose iptables-save line ends
/// with `rule` (after `-A `).
fn counter(lab: &Lab, table: &str, rule: &str) -> u64 {
    let save = lab.sh_ok("gw", &format!("iptables-save -c -t {table}"));
    let line = save
        .lines()
        .find(|l| l.ends_with(&format!("-A {rule}")))
        .unwrap_or_else(|| panic!("no rule {rule:?} in:\n{save}"));
    // "[PACKETS:BYTES] -A ..."
    line.trim_start_matches('[')
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {line:?}"))
}

#[test]
fn a_connection_is_marked_once_and_its_packets_pay_one_restore() {
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    apply(&lab, &inv);
    assert_traffic(&lab, true);

    const RESTORE: &str =
        "DWPROV-PREROUTING -i eth0 -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00";
    const MARK_OUT: &str = "DWPROV-POSTROUTING -o eth2 -j CONNMARK --set-xmark 0x200/0xff00";
    let (restored, marked) = (
        counter(&lab, "mangle", RESTORE),
        counter(&lab, "nat", MARK_OUT),
    );
    // One ICMP echo connection of 30 packets from the LAN to a CNC user.
    lab.sh_ok("cli", "ping -n -q -c 30 -i 0.05 -W 2 100.65.1.10");
    let restored = counter(&lab, "mangle", RESTORE) - restored;
    let marked = counter(&lab, "nat", MARK_OUT) - marked;
    assert!(restored >= 30, "every LAN packet is restored: {restored}");
    assert!(
        (1..5).contains(&marked),
        "the connection is marked by its first packet only (nat): {marked}"
    );
    // The replies came back, and the requests left by cnc with its address:
    // the ISP drops anything else, so the ping above proved it.
    let mangle = lab.sh_ok("gw", "iptables-save -t mangle");
    assert!(!mangle.contains("DWPROV-POSTROUTING"), "{mangle}");
    assert!(!mangle.contains("--ctstate NEW"), "{mangle}");
}

#[test]
fn a_gateway_with_the_older_fwmark_shape_converges_to_the_cheap_one() {
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    apply(&lab, &inv);
    // What dwprov rendered before issue 13, next to today's rules.
    lab.sh_ok(
        "gw",
        "iptables -t mangle -N DWPROV-POSTROUTING && \
         iptables -t mangle -A DWPROV-POSTROUTING -o eth2 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x200/0xff00 && \
         iptables -t mangle -A POSTROUTING -m comment --comment dwprov -j DWPROV-POSTROUTING && \
         iptables -t mangle -I DWPROV-PREROUTING 1 -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xff00",
    );
    let (code, plan) = plan_json(&lab, &inv);
    assert_eq!(code, 2, "the older shape is drift: {plan:#}");
    apply(&lab, &inv);
    let mangle = lab.sh_ok("gw", "iptables-save -t mangle");
    assert!(
        !mangle.contains("DWPROV-POSTROUTING") && !mangle.contains("--ctstate NEW"),
        "{mangle}"
    );
    assert_eq!(plan_json(&lab, &inv).0, 0, "converged");
    assert_traffic(&lab, true);
}
