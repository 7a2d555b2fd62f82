//! The tracer on the seed inventories (examples/seed-*): the scenarios of
//! docs/methods.md, as the lab proves them with real packets.
use super::*;
use crate::model::Method;
use crate::render::Templates;

fn seed(method: &str) -> Gateway {
    let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .join(format!("seed-{method}/inventory.yaml"));
    let inv = crate::inventory::load(&path).unwrap();
    crate::model::build(&inv.hosts[0]).unwrap()
}

use crate::model::Gateway;

fn world(gw: &Gateway) -> World {
    cmd::desired_world(gw, &Templates::load(None).unwrap()).unwrap()
}

fn tcp(from: &str, to: &str, dport: u16) -> Flow {
    Flow {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        iif: None,
        proto: Some(Proto::Tcp),
        sport: Some(40000),
        dport: Some(dport),
    }
}

fn run(w: &World, f: &Flow) -> Trace {
    explain("gw1", w, f).unwrap()
}

fn out_dev(l: &Leg) -> &str {
    match &l.end {
        End::Out { dev, .. } => dev,
        other => panic!("not sent out: {other:?}"),
    }
}

#[test]
fn cross_access_to_a_forward_works_with_fwmark_only() {
    for (method, works) in [("static", false), ("policy", false), ("fwmark", true)] {
        let w = world(&seed(method));
        // A CNC user through the CTC line's address (FAQ 1/2).
        let t = run(&w, &tcp("100.65.1.10", "198.51.100.2", 80));
        assert_eq!(t.iif.as_deref(), Some("eth1"), "{method}");
        assert_eq!(
            t.forward.dnat,
            Some(("192.168.0.100".parse().unwrap(), Some(80)))
        );
        assert_eq!(out_dev(&t.forward), "eth0");
        let reply = t.reply.as_ref().unwrap();
        assert_eq!(t.verdict.ok, works, "{method}: {}", text::trace_text(&t));
        if works {
            assert_eq!(t.forward.ctmark, 0x100);
            assert_eq!(reply.mark, 0x100);
            assert_eq!(
                reply.decision.as_ref().unwrap().rule.as_ref().unwrap().0,
                1100
            );
            assert_eq!(out_dev(reply), "eth1");
            // un-DNAT: the reply leaves with the address the user asked
            assert!(
                matches!(reply.end, End::Out { src, .. } if src == "198.51.100.2".parse::<Addr>().unwrap())
            );
        } else {
            assert_eq!(out_dev(reply), "eth2");
            assert!(
                t.verdict.summary.contains("FAQ 1/2"),
                "{}",
                t.verdict.summary
            );
        }
        // Through its own line's address it works with every method.
        let t = run(&w, &tcp("100.65.1.10", "203.0.113.2", 80));
        assert!(t.verdict.ok, "{method}: {}", text::trace_text(&t));
        assert_eq!(out_dev(t.reply.as_ref().unwrap()), "eth2");
    }
}

#[test]
fn cross_access_to_the_gateway_itself_works_with_every_method() {
    for method in ["static", "policy", "fwmark"] {
        let w = world(&seed(method));
        let t = run(&w, &tcp("100.64.1.10", "203.0.113.2", 8080));
        assert!(matches!(t.forward.end, End::Local { .. }), "{method}");
        let reply = t.reply.as_ref().unwrap();
        assert_eq!(reply.packet.iif, None);
        assert_eq!(out_dev(reply), "eth2", "{method}: {}", text::trace_text(&t));
        assert!(t.verdict.ok);
    }
}

#[test]
fn lan_leaves_by_the_destinations_line_with_its_address() {
    for method in ["static", "policy", "fwmark"] {
        let w = world(&seed(method));
        for (to, dev, src) in [
            ("100.64.1.10", "eth1", "198.51.100.2"),
            ("100.65.1.10", "eth2", "203.0.113.2"),
            // no list holds it: the default line
            ("192.0.2.7", "eth1", "198.51.100.2"),
        ] {
            let t = run(&w, &tcp("192.168.0.50", to, 80));
            assert_eq!(t.iif.as_deref(), Some("eth0"));
            assert!(
                matches!(&t.forward.end, End::Out { dev: d, src: s, .. } if d == dev && *s == src.parse::<Addr>().unwrap()),
                "{method} {to}: {}",
                text::trace_text(&t)
            );
            assert_eq!(t.forward.snat.map(|s| s.0), Some(src.parse().unwrap()));
            assert!(t.verdict.ok, "{method} {to}: {}", text::trace_text(&t));
            assert_eq!(out_dev(t.reply.as_ref().unwrap()), "eth0");
        }
        if method == "policy" {
            let t = run(&w, &tcp("192.168.0.50", "100.65.1.10", 80));
            assert_eq!(t.forward.decision.as_ref().unwrap().table, Some(200));
        }
    }
}

#[test]
fn hairpin_and_its_absence_faq_3() {
    let mut gw = seed("fwmark");
    let t = run(&world(&gw), &tcp("192.168.0.50", "203.0.113.2", 80));
    assert_eq!(out_dev(&t.forward), "eth0");
    assert_eq!(
        t.forward.snat.map(|s| s.0),
        Some("192.168.0.1".parse().unwrap())
    );
    assert!(t.verdict.ok, "{}", text::trace_text(&t));
    let reply = t.reply.as_ref().unwrap();
    assert!(reply.hops.iter().any(|h| h.step == "unnat"));
    gw.hairpin = false;
    let t = run(&world(&gw), &tcp("192.168.0.50", "203.0.113.2", 80));
    assert!(!t.verdict.ok);
    assert!(t.verdict.summary.contains("FAQ 3"), "{}", t.verdict.summary);
}

#[test]
fn the_gateways_own_traffic_and_a_forward_only_on_one_line() {
    let w = world(&seed("fwmark"));
    for (from, to, dev) in [
        ("198.51.100.2", "100.64.1.10", "eth1"),
        ("203.0.113.2", "100.64.1.10", "eth2"),
        ("192.168.0.1", "100.65.1.10", "eth2"),
    ] {
        let t = run(&w, &tcp(from, to, 80));
        assert_eq!(t.iif, None);
        assert_eq!(out_dev(&t.forward), dev, "{from} -> {to}");
    }
    // 2222 is forwarded on cnc only: on ctc's address it reaches the gateway.
    let t = run(&w, &tcp("100.65.1.10", "203.0.113.2", 2222));
    assert_eq!(
        t.forward.dnat,
        Some(("192.168.0.100".parse().unwrap(), Some(22)))
    );
    let t = run(&w, &tcp("100.65.1.10", "198.51.100.2", 2222));
    assert!(matches!(t.forward.end, End::Local { .. }));
    // No protocol given: the forwards' DNAT does not apply.
    let mut f = tcp("100.65.1.10", "198.51.100.2", 80);
    f.proto = None;
    f.dport = None;
    f.sport = None;
    assert!(matches!(run(&w, &f).forward.end, End::Local { .. }));
}

#[test]
fn a_policy_rule_wins_by_priority() {
    // The render tests' seed has `{from: 192.168.0.50/32, line: cnc}`.
    let gw = crate::render::tests::seed(Method::Static);
    let w = world(&gw);
    let t = run(&w, &tcp("192.168.0.50", "100.64.1.10", 80));
    let d = t.forward.decision.as_ref().unwrap();
    assert_eq!(d.rule.as_ref().unwrap().0, 1300);
    assert_eq!(out_dev(&t.forward), "eth2");
    let other = run(&w, &tcp("192.168.0.51", "100.64.1.10", 80));
    assert_eq!(out_dev(&other.forward), "eth1");
}

#[test]
fn where_a_packet_comes_in_is_worked_out_or_asked() {
    let w = world(&seed("static"));
    let e = explain("gw1", &w, &tcp("100.99.0.1", "192.0.2.1", 80))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--iif"), "{e}");
    let mut f = tcp("100.99.0.1", "192.0.2.1", 80);
    f.iif = Some("eth2".into());
    let t = run(&w, &f);
    assert_eq!(t.iif.as_deref(), Some("eth2"));
    // a line's own address coming in from outside is a martian
    let mut f = tcp("198.51.100.2", "192.168.0.100", 80);
    f.iif = Some("eth2".into());
    assert!(matches!(run(&w, &f).forward.end, End::Dropped { .. }));
}

#[test]
fn the_world_after_an_apply_keeps_foreign_state_and_replaces_owned() {
    let gw = seed("fwmark");
    let desired = crate::render::render(&gw, &Templates::load(None).unwrap(), None)
        .unwrap()
        .desired;
    let mut facts = crate::facts::Facts::default();
    facts.interfaces = vec![crate::facts::Interface {
        name: "mgmt0".into(),
        up: true,
        addresses: vec!["10.9.0.2/24".parse().unwrap()],
    }];
    let foreign = crate::state::ip::parse_batch(
        "rule add priority 0 lookup 255\nrule add priority 32766 lookup 254\n\
         rule add priority 900 from 10.9.0.2 lookup 77\n\
         rule add priority 1100 fwmark 0x300 lookup 100 protocol 201\n\
         route add 10.9.0.0/24 dev mgmt0 proto kernel src 10.9.0.2\n\
         route add local 10.9.0.2 dev mgmt0 table 255 proto kernel scope host src 10.9.0.2\n\
         route add default via 10.9.0.1 dev mgmt0 table 77\n",
        "t",
        &crate::state::RtTables::default(),
    )
    .unwrap();
    facts.state.rules = foreign.rules;
    facts.state.routes = foreign.routes;
    facts.state.firewall.iptables = crate::state::Iptables::parse(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:DWPROV-OLD - [0:0]\n-A PREROUTING -j MARK --set-xmark 0x1/0x1\n\
         -A PREROUTING -m comment --comment dwprov -j DWPROV-OLD\nCOMMIT\n",
    )
    .unwrap();
    let w = World::after_apply(&gw, &desired, &facts);
    assert!(w.rules.iter().any(|r| r.priority == 900));
    assert!(!w
        .rules
        .iter()
        .any(|r| r.fwmark.map(|m| m.value) == Some(0x300)));
    let pre = w.firewall.chain("mangle", "PREROUTING").unwrap();
    assert_eq!(pre.rules.len(), 2, "{pre:?}");
    assert_eq!(pre.rules[0].target(), Some("DWPROV-PREROUTING"));
    assert_eq!(pre.rules[1].target(), Some("MARK"));
    assert!(w.firewall.chain("mangle", "DWPROV-OLD").is_none());
    // The management session's reply goes by the foreign rule 900.
    let t = run(
        &w,
        &Flow {
            iif: Some("mgmt0".into()),
            ..tcp("10.9.0.1", "10.9.0.2", 22)
        },
    );
    assert_eq!(out_dev(t.reply.as_ref().unwrap()), "mgmt0");
}
