//! Lines of every kind (issue 14, phase 1), on real packets: a CNC line
//! whose address and next hop are a real DHCP lease (dnsmasq on the cnc
//! router, udhcpc on the gateway), redialled to a new address and lost;
//! and a point-to-point CNC line (a /32 with a peer) routed `dev eth2`.
//! Needs root.
mod common;

use common::seed::{assert_traffic_at, peer, text};
use common::Lab;
use std::path::Path;

fn plan(lab: &Lab, inv: &Path) -> (i32, String) {
    let o = lab.dwprov(&["plan", "-i", inv.to_str().unwrap()]);
    (o.status.code().unwrap_or(-1), text(&o))
}

fn apply(lab: &Lab, inv: &Path) {
    let o = lab.dwprov(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "apply failed:\n{}", text(&o));
}

/// `address: dynamic, gateway: dynamic` on CNC: apply, the traffic of the
/// seed on the leased address; a new lease: `plan` exits 0 naming it, and
/// `apply` moves the traffic onto it; the lease lost: the line is down, its
/// traffic on ctc; a lease again: back on cnc.
#[test]
fn a_dhcp_line_follows_its_lease() {
    let lab = Lab::up_dhcp();
    let inv = lab.inventory();
    let yaml = std::fs::read_to_string(&inv).unwrap();
    assert!(
        yaml.contains("address: dynamic") && yaml.contains("gateway: dynamic"),
        "{yaml}"
    );
    // The DHCP client's default route is in main, foreign, before and after.
    let client_route = "default via 203.0.113.1 dev eth2 metric 100";
    assert!(lab
        .sh_ok("gw", "ip route show table main")
        .contains(client_route));

    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("info: line cnc: address 203.0.113.77/24"),
        "{out}"
    );
    assert!(
        out.contains("info: line cnc: next hop 203.0.113.1"),
        "{out}"
    );
    assert!(
        !out.contains("hand-made"),
        "the DHCP route is not a duplicate to take over:\n{out}"
    );
    apply(&lab, &inv);
    assert_traffic_at(&lab, true, "203.0.113.77");
    let iptables = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(iptables.contains("-o eth2 -j MASQUERADE"), "{iptables}");
    assert!(lab
        .sh_ok("gw", "ip route show table main")
        .contains(client_route));
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");

    // A redial: the lease moves to .78 (the ISP's anti-spoofing with it).
    lab.lease("203.0.113.78");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "a new lease is not drift:\n{out}");
    assert!(
        out.contains("info: line cnc: address 203.0.113.78/24"),
        "{out}"
    );
    assert!(out.contains("follow the dynamic lines' address"), "{out}");
    apply(&lab, &inv);
    assert_traffic_at(&lab, true, "203.0.113.78");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("follow the dynamic"),
        "converged: nothing follows\n{out}"
    );

    // The lease lost: cnc is down, reported as information, its traffic on ctc.
    lab.lease("none");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(
        code, 2,
        "moving cnc's traffic onto ctc is a change (docs/lines.md):\n{out}"
    );
    assert!(
        out.contains("info: line cnc is down: its traffic goes on line ctc"),
        "{out}"
    );
    apply(&lab, &inv);
    let body = lab.curl("cli", "http://100.65.1.10/").unwrap();
    assert_eq!(
        peer(&body),
        "198.51.100.2",
        "CNC users over ctc while cnc is down"
    );
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");

    // A lease again: `plan` exits 0 (the host was as the down line wants it), apply: back.
    lab.lease("203.0.113.79");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("info: line cnc: address 203.0.113.79/24"),
        "{out}"
    );
    apply(&lab, &inv);
    assert_traffic_at(&lab, true, "203.0.113.79");
    assert!(lab
        .sh_ok("gw", "ip route show table main")
        .contains(client_route));
}

/// A point-to-point CNC line: 203.0.113.2/32 with peer 203.0.113.1, no
/// `gateway`: routes go `dev eth2` (the cnc router answers ARP for what it
/// routes, as a ppp or tun link needs none), and the traffic checks pass.
#[test]
fn a_point_to_point_line_routes_dev() {
    let lab = Lab::up();
    lab.sh_ok(
        "gw",
        "ip addr flush dev eth2 && ip addr add 203.0.113.2/32 peer 203.0.113.1 dev eth2",
    );
    lab.sh_ok(
        "cnc",
        "ip addr flush dev cust0 && ip addr add 203.0.113.1/32 peer 203.0.113.2 dev cust0 \
         && sysctl -qw net.ipv4.conf.cust0.proxy_arp=1",
    );
    let yaml = std::fs::read_to_string(lab.inventory()).unwrap().replace(
        "          address: 203.0.113.2/24\n          gateway: 203.0.113.1\n",
        "          address: 203.0.113.2/32             # point-to-point, no gateway\n",
    );
    assert!(yaml.contains("203.0.113.2/32"), "{yaml}");
    let inv = lab.write_file("inventory-p2p.yaml", &yaml);
    apply(&lab, &inv);
    let routes = lab.sh_ok("gw", "ip route show table main; ip route show table cnc");
    assert!(
        routes.contains("100.65.0.0/16 dev eth2 proto dwprov"),
        "{routes}"
    );
    assert!(routes.contains("default dev eth2 proto dwprov"), "{routes}");
    assert!(!routes.contains("via 203.0.113.1"), "{routes}");
    assert_traffic_at(&lab, true, "203.0.113.2");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
}
