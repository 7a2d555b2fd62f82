//! `dwprov import` on the lab: the seed's three methods typed by hand on the
//! gateway (as the seed writes them, with the lab's addresses) pass the
//! method's traffic checks; import reads them into an inventory; with the
//! hand-made state removed, applying that inventory passes the same checks.
//! A managed gateway is refused, and nothing is overwritten.
mod common;

use common::seed::*;
use common::Lab;
use std::fs;

/// The seed's tables and source-return rules (every method has them).
const TABLES: &str = "\
printf '100 ctc\\n200 cnc\\n' >> /etc/iproute2/rt_tables
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth1.rp_filter=2 net.ipv4.conf.eth2.rp_filter=2
ip route replace default via 198.51.100.1 dev eth1
ip route add default via 198.51.100.1 dev eth1 src 198.51.100.2 table ctc
ip route add 198.51.100.0/24 dev eth1 scope link src 198.51.100.2 table ctc
ip route add 203.0.113.0/24 dev eth2 scope link src 203.0.113.2 table ctc
ip route add 192.168.0.0/24 dev eth0 scope link src 192.168.0.1 table ctc
ip rule add from 198.51.100.2 table ctc prio 32700
ip route add default via 203.0.113.1 dev eth2 src 203.0.113.2 table cnc
ip route add 198.51.100.0/24 dev eth1 scope link src 198.51.100.2 table cnc
ip route add 203.0.113.0/24 dev eth2 scope link src 203.0.113.2 table cnc
ip route add 192.168.0.0/24 dev eth0 scope link src 192.168.0.1 table cnc
ip rule add from 203.0.113.2 table cnc prio 32701
";

/// The seed's NAT: SNAT per line, the forwards on the line addresses, hairpin.
const NAT: &str = "\
iptables -t nat -A POSTROUTING -s 192.168.0.0/24 -d 192.168.0.100 -p tcp --dport 80 -j SNAT --to-source 192.168.0.1
iptables -t nat -A POSTROUTING -s 192.168.0.0/24 -d 192.168.0.100 -p tcp --dport 22 -j SNAT --to-source 192.168.0.1
iptables -t nat -A POSTROUTING -o eth1 -s 192.168.0.0/24 -j SNAT --to-source 198.51.100.2
iptables -t nat -A POSTROUTING -o eth2 -s 192.168.0.0/24 -j SNAT --to-source 203.0.113.2
iptables -t nat -A PREROUTING -p tcp --dport 80 -d 198.51.100.2 -j DNAT --to-destination 192.168.0.100
iptables -t nat -A PREROUTING -p tcp --dport 80 -d 203.0.113.2 -j DNAT --to-destination 192.168.0.100
iptables -t nat -A PREROUTING -p tcp --dport 2222 -d 203.0.113.2 -j DNAT --to-destination 192.168.0.100:22
";

/// The method's own part: CNC's destinations, and for fwmark the marks.
fn method_part(method: &str) -> &'static str {
    match method {
        "static" => "\
ip route add 100.65.0.0/16 via 203.0.113.1 dev eth2
ip route add 100.66.0.0/16 via 203.0.113.1 dev eth2
",
        "policy" => "\
ip rule add to 100.65.0.0/16 table cnc prio 100
ip rule add to 100.66.0.0/16 table cnc prio 100
",
        _ => "\
ip route add 100.65.0.0/16 via 203.0.113.1 dev eth2
ip route add 100.66.0.0/16 via 203.0.113.1 dev eth2
iptables -t mangle -A PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x100
iptables -t mangle -A PREROUTING -i eth2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x200
iptables -t mangle -A POSTROUTING -o eth1 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x100
iptables -t mangle -A POSTROUTING -o eth2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x200
iptables -t mangle -A PREROUTING -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark
iptables -t mangle -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark
ip rule add fwmark 0x100 table ctc prio 40
ip rule add fwmark 0x200 table cnc prio 40
",
    }
}

/// Everything the hand-made setup added, removed again (the foreign chain stays).
const REMOVE_HAND_MADE: &str = "\
for p in 40 40 100 100 32700 32701; do ip rule del prio $p 2>/dev/null; done
ip route flush table ctc; ip route flush table cnc
ip route del default via 198.51.100.1 dev eth1
ip route del 100.65.0.0/16 2>/dev/null; ip route del 100.66.0.0/16 2>/dev/null
iptables -t nat -F PREROUTING; iptables -t nat -F POSTROUTING
iptables -t mangle -F PREROUTING; iptables -t mangle -F POSTROUTING; iptables -t mangle -F OUTPUT
sed -i '/^100 ctc$/d; /^200 cnc$/d' /etc/iproute2/rt_tables
true
";

/// A chain of another tool, with a jump: listed as foreign and left alone.
const FOREIGN: &str = "\
iptables -t nat -N ADMIN
iptables -t nat -A ADMIN -s 10.99.0.0/16 -j RETURN
iptables -t nat -I PREROUTING -s 10.99.0.0/16 -j ADMIN
";

fn hand_made(lab: &Lab, method: &str) {
    let script = format!("set -e\n{TABLES}{NAT}{}{FOREIGN}", method_part(method));
    lab.sh_ok("gw", &script);
}

fn import_to(lab: &Lab, name: &str) -> (std::path::PathBuf, std::process::Output) {
    let out = lab.dir.join(name);
    let inv = lab.inventory();
    let o = lab.dwprov(&[
        "import",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "gw1",
        "-o",
        out.to_str().unwrap(),
    ]);
    (out, o)
}

fn check_method(method: &str, cross_forward: bool) {
    let lab = Lab::up();
    hand_made(&lab, method);
    // The hand-made gateway works as the seed says. (Its method 2 puts the
    // destination rules before the source-return ones, so a CNC user cannot
    // reach the gateway's own service by the CTC address: only the LAN's
    // ways out are checked there; dwprov orders those rules right.)
    hand_made_traffic(&lab, method, cross_forward);

    let (out, o) = import_to(&lab, &format!("{method}.yaml"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("gw1: method {method}, 2 lines, 1 LANs")),
        "{stdout}"
    );
    let yaml = fs::read_to_string(&out).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let host = &doc["all"]["hosts"]["gw1"];
    assert_eq!(host["method"].as_str(), Some(method), "{yaml}");
    assert_eq!(
        host["address"].as_str(),
        Some("10.9.0.2"),
        "connection carried over: {yaml}"
    );
    let lines = host["lines"].as_sequence().unwrap();
    assert_eq!(lines[0]["name"].as_str(), Some("ctc"), "{yaml}");
    assert_eq!(lines[0]["default"].as_bool(), Some(true), "{yaml}");
    assert_eq!(lines[1]["name"].as_str(), Some("cnc"), "{yaml}");
    assert_eq!(lines[1]["gateway"].as_str(), Some("203.0.113.1"), "{yaml}");
    let cnc_routes: Vec<_> = lines[1]["routes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(cnc_routes, ["100.65.0.0/16", "100.66.0.0/16"], "{yaml}");
    if method == "fwmark" {
        assert_eq!(lines[1]["mark"].as_u64(), Some(0x200), "{yaml}");
    }
    assert_eq!(host["nat"]["mode"].as_str(), Some("snat"), "{yaml}");
    assert_eq!(host["hairpin"].as_bool(), Some(true), "{yaml}");
    assert_eq!(
        host["forwards"].as_sequence().map(|f| f.len()),
        Some(2),
        "{yaml}"
    );
    assert!(
        yaml.contains("chain ADMIN"),
        "the foreign chain is named: {yaml}"
    );

    // Without the hand-made objects, the imported inventory gives the same behaviour.
    lab.sh_ok("gw", REMOVE_HAND_MADE);
    assert!(
        lab.curl("cli", "http://100.65.1.10/").is_err(),
        "the hand-made routing is gone"
    );
    let o = apply(&lab, &out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_traffic(&lab, cross_forward);
    assert_eq!(plan_code(&lab, &out), 0, "a second plan changes nothing");
    let ipt = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(ipt.contains("-A ADMIN -s 10.99.0.0/16 -j RETURN"), "{ipt}");
}

#[test]
fn the_seeds_static_method_typed_by_hand_is_imported() {
    check_method("static", false);
}

#[test]
fn the_seeds_policy_method_typed_by_hand_is_imported() {
    check_method("policy", false);
}

#[test]
fn the_seeds_fwmark_method_typed_by_hand_is_imported() {
    check_method("fwmark", true);
}

#[test]
fn a_managed_gateway_is_refused_and_nothing_is_overwritten() {
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    let o = apply(&lab, &inv);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (out, o) = import_to(&lab, "managed.yaml");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dwprov already manages this host"), "{err}");
    assert!(!out.exists());

    // An existing output file is never overwritten.
    let taken = lab.write_file("taken.yaml", "mine\n");
    let o = lab.dwprov(&[
        "import",
        "-i",
        lab.inventory().to_str().unwrap(),
        "-o",
        taken.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists already"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::read_to_string(&taken).unwrap(), "mine\n");
}

/// The take-over: `plan` lists the hand-made duplicates, `apply` without
/// `--adopt` refuses and changes nothing, `apply --adopt` replaces them
/// while a ping through an unchanged path loses nothing, leaves no
/// duplicate and the foreign chain alone; `rollback` brings the hand-made
/// gateway back.
#[test]
fn a_hand_made_fwmark_gateway_is_taken_over_without_an_outage_and_rolled_back() {
    take_over("fwmark", true);
}

#[test]
fn a_hand_made_static_gateway_is_taken_over_without_an_outage_and_rolled_back() {
    take_over("static", false);
}

#[test]
fn a_hand_made_policy_gateway_is_taken_over_without_an_outage_and_rolled_back() {
    take_over("policy", false);
}

/// The traffic checks the hand-made method passes: all of the method's,
/// except that the seed's method 2 puts the destination rules before the
/// source-return ones, so a CNC user cannot reach the gateway's own
/// service by the CTC address: only the LAN's ways out and the forward on
/// a line's own address are checked there (dwprov orders those rules right).
fn hand_made_traffic(lab: &Lab, method: &str, cross_forward: bool) {
    if method == "policy" {
        assert_eq!(
            peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
            "203.0.113.2"
        );
        assert_eq!(
            peer(&lab.curl("cli", "http://100.64.1.10/").unwrap()),
            "198.51.100.2"
        );
        assert_eq!(
            peer(&lab.curl("ucnc", "http://203.0.113.2/").unwrap()),
            "100.65.1.10"
        );
    } else {
        assert_traffic(lab, cross_forward);
    }
}

fn take_over(method: &str, cross_forward: bool) {
    let lab = Lab::up();
    hand_made(&lab, method);
    let (inv, o) = import_to(&lab, "adopt.yaml");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let inv_s = inv.to_str().unwrap();

    let o = lab.dwprov(&["plan", "-i", inv_s]);
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(plan.contains("hand-made, replaced by dwprov's"), "{plan}");
    let mut expected = vec![
        "- iptables -t nat -A POSTROUTING -s 192.168.0.0/24 -o eth1 -j SNAT --to-source 198.51.100.2",
        "- iptables -t nat -A PREROUTING -d 203.0.113.2/32 -p tcp -m tcp --dport 2222 -j DNAT",
        "- ip rule 32700:",
        "- rt_tables 100 ctc (in /etc/iproute2/rt_tables)",
    ];
    match method {
        "fwmark" => expected.extend([
            "- iptables -t mangle -A PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK",
            "- ip rule 40:",
            "- ip route 100.65.0.0/16 via 203.0.113.1 dev eth2",
        ]),
        "static" => expected.push("- ip route 100.65.0.0/16 via 203.0.113.1 dev eth2"),
        _ => expected.push("- ip rule 100:\tfrom all to 100.65.0.0/16 lookup cnc"),
    }
    for hand in expected {
        assert!(plan.contains(hand), "{hand:?} in:\n{plan}");
    }
    assert!(
        !plan.contains("ADMIN"),
        "the foreign chain is not taken over:\n{plan}"
    );

    // Without --adopt: refused, nothing changed.
    let before = lab.sh_ok("gw", SNAPSHOT);
    let o = lab.dwprov(&["apply", "-i", inv_s, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("hand-made objects would be duplicated") && text(&o).contains("--adopt"),
        "{}",
        text(&o)
    );
    assert_eq!(
        lab.sh_ok("gw", SNAPSHOT),
        before,
        "a refused apply changes nothing"
    );

    // With --adopt, a ping through the CTC line (its route and SNAT are
    // replaced) runs through the apply.
    let ping = lab
        .command("cli", "ping")
        .args([
            "-n",
            "-q",
            "-i",
            "0.1",
            "-c",
            "150",
            "-W",
            "1",
            "100.64.1.10",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let o = lab.dwprov(&["apply", "-i", inv_s, "--yes", "--adopt"]);
    let pinged = ping.wait_with_output().expect("ping output");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let summary = String::from_utf8_lossy(&pinged.stdout).into_owned();
    assert!(
        summary.contains("150 packets transmitted, 150 received"),
        "no packet lost during the take-over:\n{summary}"
    );
    assert_traffic(&lab, cross_forward);
    let nat = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(
        !nat.contains("-A POSTROUTING -s 192.168.0.0/24 -o eth1"),
        "hand-made SNAT gone:\n{nat}"
    );
    assert!(
        !nat.contains("-A PREROUTING -d 198.51.100.2/32"),
        "hand-made DNAT gone:\n{nat}"
    );
    assert!(
        nat.contains("-A ADMIN -s 10.99.0.0/16 -j RETURN")
            && nat.contains("-A PREROUTING -s 10.99.0.0/16 -j ADMIN"),
        "{nat}"
    );
    let rules = lab.sh_ok("gw", "ip rule show");
    assert!(
        !rules.contains("32700:") && !rules.starts_with("40:") && !rules.contains("\n40:"),
        "{rules}"
    );
    let rt = lab.sh_ok("gw", "cat /etc/iproute2/rt_tables");
    assert!(
        !rt.contains("100 ctc") && !rt.contains("200 cnc"),
        "hand-made names gone:\n{rt}"
    );
    assert_eq!(
        plan_code(&lab, &inv),
        0,
        "nothing left to take over:\n{}",
        text(&lab.dwprov(&["plan", "-i", inv_s]))
    );

    // Rollback: dwprov's objects go, the hand-made ones come back, and work.
    let o = lab.dwprov(&["rollback", "-i", inv_s, "--limit", "gw1", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let nat = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(
        nat.contains("-A POSTROUTING -s 192.168.0.0/24 -o eth1 -j SNAT --to-source 198.51.100.2"),
        "{nat}"
    );
    assert!(!nat.contains("DWPROV"), "{nat}");
    let rt = lab.sh_ok("gw", "cat /etc/iproute2/rt_tables");
    assert!(
        rt.contains("100 ctc") && rt.contains("200 cnc"),
        "hand-made names back:\n{rt}"
    );
    let rules = lab.sh_ok("gw", "ip rule show");
    assert!(rules.contains("32700:"), "{rules}");
    if method != "static" {
        let own = if method == "fwmark" { "40:" } else { "100:" };
        assert!(rules.contains(own), "{rules}");
    }
    hand_made_traffic(&lab, method, cross_forward);
}
