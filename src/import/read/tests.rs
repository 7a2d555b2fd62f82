//! Unit tests of the import recogniser on state built from command text as
//! the seed types it (ip rule/route lines, iptables-save).
use super::*;
use crate::facts::Interface;
use crate::state::{ip, Iptables, RtTables, State};

const RT: &str = "255 local\n254 main\n253 default\n0 unspec\n100 ctc\n200 cnc\n";

/// Rules and routes the seed's method 1 (static) adds by hand, with the lab's addresses.
const STATIC: &str = "\
route add default via 198.51.100.1 dev eth1 proto boot
route add 100.65.0.0/16 via 203.0.113.1 dev eth2 proto boot
route add 100.66.0.0/16 via 203.0.113.1 dev eth2 proto boot
route add default via 198.51.100.1 dev eth1 src 198.51.100.2 table 100 proto boot metric 50
route add default via 203.0.113.1 dev eth2 src 203.0.113.2 table 200 proto boot metric 50
route add 192.168.0.0/24 dev eth0 scope link src 192.168.0.1 table 100 proto boot
route add 192.168.0.0/24 dev eth0 scope link src 192.168.0.1 table 200 proto boot
rule add priority 32764 from 198.51.100.2 lookup 100 protocol 0
rule add priority 32765 from 203.0.113.2 lookup 200 protocol 0
";

const NAT: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -d 198.51.100.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.0.100
-A PREROUTING -d 203.0.113.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.0.100
-A PREROUTING -d 203.0.113.2/32 -p tcp -m tcp --dport 2222 -j DNAT --to-destination 192.168.0.100:22
-A POSTROUTING -s 192.168.0.0/24 -d 192.168.0.100/32 -p tcp -m tcp --dport 80 -j SNAT --to-source 192.168.0.1
-A POSTROUTING -s 192.168.0.0/24 -d 192.168.0.100/32 -p tcp -m tcp --dport 22 -j SNAT --to-source 192.168.0.1
-A POSTROUTING -s 192.168.0.0/24 -o eth1 -j SNAT --to-source 198.51.100.2
-A POSTROUTING -s 192.168.0.0/24 -o eth2 -j SNAT --to-source 203.0.113.2
-A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE
COMMIT
";

const MANGLE: &str = "\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff
-A PREROUTING -i eth2 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x200/0xffffffff
-A PREROUTING -i eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A POSTROUTING -o eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff
-A POSTROUTING -o eth2 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x200/0xffffffff
COMMIT
";

fn iface(name: &str, addrs: &[&str]) -> Interface {
    Interface {
        name: name.into(),
        up: true,
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

fn facts(batch: &str, ipt: &str) -> Facts {
    let rt = RtTables::parse(RT, "rt_tables").unwrap();
    let b = ip::parse_batch(batch, "test batch", &rt).unwrap();
    let mut rules = b.rules;
    rules.push(Rule {
        priority: 0,
        action: RuleAction::Table(255),
        ..Default::default()
    });
    rules.push(Rule {
        priority: 32766,
        action: RuleAction::Table(254),
        ..Default::default()
    });
    Facts {
        host: "gw1".into(),
        state: State {
            rules,
            routes: b.routes,
            firewall: crate::firewall::Firewall {
                iptables: Iptables::parse(ipt).unwrap(),
                ..Default::default()
            },
            rt_tables: rt,
            ..Default::default()
        },
        interfaces: vec![
            iface("lo", &["127.0.0.1/8"]),
            iface("eth0", &["192.168.0.1/24"]),
            iface("eth1", &["198.51.100.2/24"]),
            iface("eth2", &["203.0.113.2/24"]),
            iface("mgmt", &["10.9.0.2/24"]),
        ],
        ..Default::default()
    }
}

#[test]
fn the_seeds_static_method_is_read_back() {
    let a = adopt(&facts(STATIC, NAT), "10.9.0.2".parse().ok()).unwrap();
    assert_eq!(a.method, "static");
    let names: Vec<_> = a
        .lines
        .iter()
        .map(|l| (l.name.as_str(), l.table, l.default))
        .collect();
    assert_eq!(names, [("ctc", 100, true), ("cnc", 200, false)]);
    assert_eq!(a.lines[1].interface, "eth2");
    assert_eq!(a.lines[1].address, "203.0.113.2/24");
    assert_eq!(a.lines[1].gateway.to_string(), "203.0.113.1");
    let cnc: Vec<String> = a.lines[1].prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(cnc, ["100.65.0.0/16", "100.66.0.0/16"]);
    assert_eq!(
        a.lan,
        [Lan {
            interface: "eth0".into(),
            address: "192.168.0.1/24".into()
        }]
    );
    assert_eq!(a.nat, "snat");
    assert_eq!(a.forwards.len(), 2, "{:?}", a.forwards);
    assert_eq!(a.forwards[0].port, 80);
    assert!(a.forwards[0].lines.is_empty(), "port 80 on every line");
    assert_eq!(a.forwards[1].to_port, Some(22));
    assert_eq!(a.forwards[1].lines, ["cnc"]);
    assert!(a.hairpin);
    assert!(
        a.guesses.is_empty(),
        "hairpin of both forwards (2222 by its port after DNAT, 22): {:?}",
        a.guesses
    );
    // The other tool's chain and its masquerade rule are foreign, named.
    assert!(
        a.foreign.iter().any(|f| f.contains("chain DOCKER")),
        "{:?}",
        a.foreign
    );
    assert!(
        a.foreign
            .iter()
            .any(|f| f.contains("10.1.0.0/16") && f.contains("MASQUERADE")),
        "{:?}",
        a.foreign
    );
}

#[test]
fn the_seeds_policy_method_is_read_back() {
    let batch = STATIC
        .replace(
            "route add 100.65.0.0/16 via 203.0.113.1 dev eth2 proto boot\n",
            "rule add priority 100 to 100.65.0.0/16 lookup cnc protocol 0\n",
        )
        .replace(
            "route add 100.66.0.0/16 via 203.0.113.1 dev eth2 proto boot\n",
            "rule add priority 100 to 100.66.0.0/16 lookup cnc protocol 0\n",
        );
    let a = adopt(&facts(&batch, NAT), None).unwrap();
    assert_eq!(a.method, "policy");
    assert_eq!(a.lines[1].prefixes.len(), 2);
    assert!(a.policies.is_empty(), "{:?}", a.policies);
}

#[test]
fn the_seeds_fwmark_method_is_read_back() {
    let batch = format!(
        "{STATIC}rule add priority 40 fwmark 0x100 lookup ctc protocol 0\nrule add priority 40 fwmark 0x200 lookup cnc protocol 0\n"
    );
    let a = adopt(&facts(&batch, &format!("{NAT}{MANGLE}")), None).unwrap();
    assert_eq!(a.method, "fwmark");
    assert_eq!(a.lines[0].mark, Some(0x100));
    assert_eq!(a.lines[1].mark, Some(0x200));
    assert_eq!(a.mark_mask, None, "0x100 and 0x200 fit dwprov's mask");
    assert!(
        !a.foreign.iter().any(|f| f.contains("CONNMARK")),
        "the seed's marking is mapped: {:?}",
        a.foreign
    );
}

#[test]
fn a_source_policy_and_an_unknown_rule_are_kept_apart() {
    let batch = format!(
        "{STATIC}rule add priority 500 from 192.168.0.50 lookup cnc protocol 0\nrule add priority 600 from all lookup 300 protocol 0\n"
    );
    let a = adopt(&facts(&batch, NAT), None).unwrap();
    assert_eq!(
        a.policies,
        [Policy {
            from: Some("192.168.0.50/32".into()),
            to: None,
            line: "cnc".into()
        }]
    );
    assert!(
        a.foreign.iter().any(|f| f.contains("lookup 300")),
        "{:?}",
        a.foreign
    );
}

#[test]
fn a_managed_host_and_a_host_without_lines_are_refused() {
    let owned = format!(
        "{STATIC}rule add priority 1100 from 198.51.100.2 lookup ctc protocol {}\n",
        crate::ownership::ROUTE_PROTO
    );
    assert!(matches!(
        adopt(&facts(&owned, NAT), None),
        Err(Refusal::Managed(_))
    ));
    assert!(matches!(
        adopt(
            &facts(
                "route add default via 198.51.100.1 dev eth1 proto boot\n",
                NAT
            ),
            None
        ),
        Err(Refusal::NoLines(_))
    ));
}

#[test]
fn marks_are_written_in_hex() {
    let y = super::super::hex_marks(
        "    - name: ctc\n      mark: 256\n    mark_mask: 65280\n    port: 80\n",
    );
    assert_eq!(
        y,
        "    - name: ctc\n      mark: 0x100\n    mark_mask: 0xff00\n    port: 80\n"
    );
}

#[test]
fn long_lists_go_to_routes_files_beside_the_output_and_short_ones_inline() {
    let mut batch = STATIC.to_string();
    for i in 0..20 {
        batch.push_str(&format!(
            "route add 10.{i}.0.0/16 via 203.0.113.1 dev eth2 proto boot\n"
        ));
    }
    let a = adopt(&facts(&batch, NAT), None).unwrap();
    let h = super::super::ImportedHost {
        name: "gw1".into(),
        adopted: a,
        connection: serde_json::Map::from_iter([(
            "address".to_string(),
            serde_json::json!("10.9.0.2"),
        )]),
    };
    let w = super::super::write(std::slice::from_ref(&h), Some("site"), "bare.yaml").unwrap();
    assert_eq!(w.routes_files.len(), 1);
    assert_eq!(w.routes_files[0].0, "site-gw1-cnc.txt");
    assert_eq!(
        w.routes_files[0]
            .1
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count(),
        22
    );
    assert!(
        w.inventory.contains("routes_file: site-gw1-cnc.txt"),
        "{}",
        w.inventory
    );
    let inline = super::super::write(std::slice::from_ref(&h), None, "bare.yaml").unwrap();
    assert!(inline.routes_files.is_empty());
    assert!(
        inline.inventory.contains("- 10.19.0.0/16"),
        "{}",
        inline.inventory
    );
}
