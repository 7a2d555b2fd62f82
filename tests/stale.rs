//! A saved plan (`plan -o FILE`, then `apply FILE`) goes stale on what it
//! depends on, not on foreign churn: on the lab gateway, fail2ban-like
//! INPUT rules, another tool's ip rule and nat chain, a route of another
//! protocol, a container's veth leave the plan applicable; drift of dwprov's
//! own objects and foreign objects that collide with them (a rule inside
//! dwprov's band, a route in dwprov's table, a DWPROV-* chain) refuse it
//! with nothing changed.
mod common;

use common::seed::{inventory_with, CNC_ROUTES, FORWARDS, SNAPSHOT};
use common::Lab;
use std::path::{Path, PathBuf};
use std::process::Output;

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The seed inventory (`a.yaml`) and one with one more cnc prefix (`b.yaml`).
fn inventories(lab: &Lab) -> (PathBuf, PathBuf) {
    let a = inventory_with(lab, "a.yaml", "fwmark", FORWARDS, CNC_ROUTES, "");
    let b = inventory_with(
        lab,
        "b.yaml",
        "fwmark",
        FORWARDS,
        &format!("{CNC_ROUTES}, 100.67.0.0/16"),
        "",
    );
    (a, b)
}

fn apply_inventory(lab: &Lab, inv: &Path) {
    let o = lab.dwprov(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `plan -o FILE` of `inv`: changes pending (exit 2), FILE written.
fn save_plan(lab: &Lab, inv: &Path) -> PathBuf {
    let plan = lab.dir.join("plan.json");
    let o = lab.dwprov(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "changes pending: {}", text(&o));
    plan
}

fn apply_saved(lab: &Lab, plan: &Path) -> Output {
    lab.dwprov(&["apply", plan.to_str().unwrap(), "--yes"])
}

/// What other tools do on a gateway all day, none of it dwprov's.
const FOREIGN_CHURN: &[&str] = &[
    // fail2ban bans an address
    "iptables -A INPUT -s 10.98.0.0/16 -j DROP",
    // another tool's nat chain and its jump
    "iptables -t nat -N OTHER-NAT && iptables -t nat -A OTHER-NAT -j RETURN && iptables -t nat -I PREROUTING -j OTHER-NAT",
    // another tool's ip rule, outside dwprov's band (Tailscale uses 5210-5270)
    "ip rule add priority 5210 fwmark 0x80000/0xff0000 lookup main",
    // a route of another protocol in main
    "ip route add 10.97.0.0/16 via 203.0.113.1 proto static",
    // a container starting: an address-less veth comes up
    "ip link add vethdw0 type veth peer name vethdw1 && ip link set vethdw0 up",
];

/// The churn is still there (dwprov touched none of it).
fn assert_churn_survived(lab: &Lab) {
    let state = lab.sh_ok(
        "gw",
        "iptables -S INPUT; iptables -t nat -S; ip rule; ip route; ip -o link show vethdw0",
    );
    for want in [
        "-A INPUT -s 10.98.0.0/16 -j DROP",
        "-A OTHER-NAT -j RETURN",
        "-A PREROUTING -j OTHER-NAT",
        "5210:",
        "10.97.0.0/16 via 203.0.113.1 dev eth2 proto static",
        "vethdw0",
    ] {
        assert!(state.contains(want), "{want:?} gone:\n{state}");
    }
}

/// A plan saved on a bare gateway (its first apply) and one saved on a
/// converged gateway both apply after foreign churn, and leave the churn be.
#[test]
fn a_saved_plan_applies_after_foreign_churn_elsewhere() {
    let lab = Lab::up();
    let (a, b) = inventories(&lab);
    // First apply, from a plan saved on the bare gateway.
    let plan = save_plan(&lab, &a);
    for cmd in FOREIGN_CHURN {
        lab.sh_ok("gw", cmd);
    }
    let o = apply_saved(&lab, &plan);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_churn_survived(&lab);
    // A change on the converged gateway, while fail2ban keeps banning.
    let plan = save_plan(&lab, &b);
    lab.sh_ok("gw", "iptables -I INPUT 1 -s 10.99.0.0/16 -j DROP");
    lab.sh_ok(
        "gw",
        "ip route add 10.96.0.0/16 via 198.51.100.1 proto static",
    );
    let o = apply_saved(&lab, &plan);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(lab
        .sh_ok("gw", "ip route")
        .contains("100.67.0.0/16 via 203.0.113.1"));
    assert_churn_survived(&lab);
    let o = lab.dwprov(&["plan", "-i", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "converged: {}", text(&o));
}

/// On a converged gateway with a saved plan pending: each change to
/// dwprov's own objects, or a foreign object colliding with them, makes
/// `apply FILE` refuse the host as a stale plan and change nothing; once
/// the collision is gone again, the same plan applies.
#[test]
fn a_saved_plan_is_refused_after_owned_drift_or_a_collision() {
    let lab = Lab::up();
    let (a, b) = inventories(&lab);
    apply_inventory(&lab, &a);
    let rules = lab.sh_ok("gw", "ip rule");
    assert!(
        rules.contains("1100:") && rules.contains("1201:"),
        "{rules}"
    );
    let plan = save_plan(&lab, &b);
    // (what, do, undo)
    let cases = [
        (
            "a foreign rule inside dwprov's band",
            "ip rule add priority 1150 from 10.1.0.0/16 lookup main",
            "ip rule del priority 1150",
        ),
        (
            "a foreign route in dwprov's table ctc",
            "ip route add 10.123.0.0/16 dev eth1 table 100",
            "ip route del 10.123.0.0/16 table 100",
        ),
        (
            "a foreign chain with dwprov's prefix",
            "iptables -N DWPROV-OTHER",
            "iptables -X DWPROV-OTHER",
        ),
        (
            "a foreign route with the key of a dwprov route",
            "ip route replace 100.65.0.0/16 via 198.51.100.1 dev eth1 proto static",
            "ip route replace 100.65.0.0/16 via 203.0.113.1 dev eth2 proto 201",
        ),
        (
            "dwprov's own route deleted",
            "ip route del 100.66.0.0/16",
            "ip route add 100.66.0.0/16 via 203.0.113.1 dev eth2 proto 201",
        ),
    ];
    for (what, change, undo) in cases {
        lab.sh_ok("gw", change);
        let before = lab.sh_ok("gw", SNAPSHOT);
        let o = apply_saved(&lab, &plan);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {out}");
        assert!(
            out.contains("gw1: stale plan") && out.contains("nothing was changed"),
            "{what}: {out}"
        );
        assert_eq!(
            before,
            lab.sh_ok("gw", SNAPSHOT),
            "{what}: nothing may change"
        );
        lab.sh_ok("gw", undo);
    }
    // Everything undone: the plan is current again and applies.
    let o = apply_saved(&lab, &plan);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(lab
        .sh_ok("gw", "ip route")
        .contains("100.67.0.0/16 via 203.0.113.1"));
}
