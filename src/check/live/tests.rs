//! Each live hazard, planted in the facts of the lab's gateway as it is
//! before any apply (four interfaces, the kernel's routes and rules).
use super::*;
use crate::render::Templates;
use crate::state::ip::parse_batch;
use crate::state::{Iptables, RtTables};

const INV: &str = "all:
  hosts:
    gw1:
      address: 10.9.0.2
      method: fwmark
      lan:
        - {interface: eth0, address: 192.168.0.1/24}
      lines:
        - {name: ctc, table: 100, mark: 0x100, interface: eth1, address: 198.51.100.2/24,
           gateway: 198.51.100.1, default: true, routes: [100.64.0.0/16]}
        - {name: cnc, table: 200, mark: 0x200, interface: eth2, address: 203.0.113.2/24,
           gateway: 203.0.113.1, routes: [100.65.0.0/16]}
      hairpin: true
      forwards:
        - {proto: tcp, port: 80, to: 192.168.0.100}
";

fn host(extra: &str) -> Host {
    let text = format!("{INV}{extra}");
    let inv = crate::inventory::parse(&text, std::path::Path::new("inv.yaml")).unwrap();
    inv.hosts[0].clone()
}

/// The gateway's kernel state before dwprov: its four addresses.
fn bare() -> Facts {
    let mut f = Facts {
        host: "gw1".into(),
        kernel: "6.1.0".into(),
        ..Facts::default()
    };
    let mut batch = String::from(
        "rule add priority 0 lookup 255 protocol 2\n\
         rule add priority 32766 lookup 254 protocol 2\n\
         rule add priority 32767 lookup 253 protocol 2\n",
    );
    for (i, a) in [
        ("eth0", "192.168.0.1/24"),
        ("eth1", "198.51.100.2/24"),
        ("eth2", "203.0.113.2/24"),
        ("mgmt0", "10.9.0.2/24"),
    ] {
        let net: addr::Net = a.parse().unwrap();
        batch.push_str(&format!(
            "route add local {} dev {i} table 255 proto kernel scope host src {}\n\
             route add {} dev {i} proto kernel scope link src {}\n",
            addr::host(&net),
            addr::host(&net),
            addr::network(&net),
            addr::host(&net)
        ));
        f.interfaces.push(crate::facts::Interface {
            name: i.into(),
            up: true,
            addresses: vec![net],
        });
    }
    let b = parse_batch(&batch, "t", &RtTables::default()).unwrap();
    f.state.rules = b.rules;
    f.state.routes = b.routes;
    f
}

fn live(f: Facts) -> LiveFacts {
    parse(f, "10.9.0.1 50000 10.9.0.2 22\n", "", "active no-systemd\n")
}

fn run(h: &Host, lf: &LiveFacts) -> Vec<Finding> {
    let gw = crate::model::build(h).unwrap();
    let r = crate::render::render(&gw, &Templates::load(None).unwrap(), None).unwrap();
    findings(h, &gw, &r, lf)
}

fn codes(fs: &[Finding]) -> Vec<&str> {
    fs.iter().map(|f| f.code).collect()
}

fn add(f: &mut Facts, batch: &str) {
    let b = parse_batch(batch, "t", &RtTables::default()).unwrap();
    f.state.rules.extend(b.rules);
    f.state.routes.extend(b.routes);
}

#[test]
fn the_clean_lab_gateway_has_no_findings() {
    let fs = run(&host(""), &live(bare()));
    assert!(fs.is_empty(), "{fs:#?}");
}

#[test]
fn check_sh_output_parses() {
    let lf = parse(
        Facts::default(),
        "10.9.0.1 51234 10.9.0.2 22\n",
        "/etc/sysctl.d/90-dwprov.conf::\n/etc/sysctl.d/99-strict.conf::\n/etc/sysctl.d/99-strict.conf:2:net.ipv4.conf.eth1.rp_filter = 1\n/etc/sysctl.conf::\n",
        "active active\nenabled enabled\n/etc/systemd/networkd.conf:14:ManageForeignRoutes=no\n",
    );
    assert_eq!(lf.session.unwrap().server_port, 22);
    assert_eq!(lf.sysctl_order.len(), 3);
    assert_eq!(lf.sysctl_lines[0].1, 2);
    assert_eq!(lf.networkd_active, "active");
    assert_eq!(lf.networkd_lines[0].2, "ManageForeignRoutes=no");
    let v6 = parse(Facts::default(), "fe80::1 5 fe80::2 22", "", "");
    assert!(v6.session.is_none());
}

/// check.sh itself, run by this machine's sh after a gather-like section
/// (as `gather::gather_also` sends it), is read back by `from_output`.
#[test]
fn check_sh_runs_after_a_gather_and_its_sections_are_found() {
    let m = "DWM-x1";
    let script = format!(
        "D='{m}'\nprintf '%s begin kernel\\n6.1\\n%s end kernel 0\\n\\n%s fin\\n' \"$D\" \"$D\" \"$D\"\n{CHECK_SH}"
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("SSH_CONNECTION", "10.9.0.1 50000 10.9.0.2 22")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lf = from_output(Facts::default(), &text, m).unwrap();
    assert_eq!(
        lf.session,
        Some(Session {
            client: "10.9.0.1".parse().unwrap(),
            client_port: 50000,
            server: "10.9.0.2".parse().unwrap(),
            server_port: 22
        })
    );
    assert!(!lf.networkd_active.is_empty(), "{text}");
}

#[test]
fn a_policy_routing_the_controller_out_of_a_line_is_an_error_at_the_policy() {
    let h = host("      policies:\n        - {to: 10.9.0.1/32, line: cnc}\n");
    let fs = run(&h, &live(bare()));
    let f = fs
        .iter()
        .find(|f| f.code == "management-path")
        .expect("found");
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message
            .contains("this apply would cut the SSH session it runs over"),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains("eth2 (line cnc) via 203.0.113.1 instead of mgmt0"),
        "{}",
        f.message
    );
    let loc = f.location.as_ref().unwrap();
    assert_eq!((loc.line, loc.column), (17, 11), "{loc}");
    // A controller behind a line, reached through that line, is fine.
    let mut lf = live(bare());
    lf.session = Some(Session {
        client: "100.64.1.10".parse().unwrap(),
        client_port: 40000,
        server: "198.51.100.2".parse().unwrap(),
        server_port: 22,
    });
    let mut f = bare();
    add(
        &mut f,
        "route add default via 198.51.100.1 dev eth1 proto boot\n",
    );
    lf.facts = f;
    let fs = run(&host(""), &lf);
    let mp: Vec<_> = fs.iter().filter(|f| f.code == "management-path").collect();
    // ... but its replies carry ctc's mark (method fwmark): a warning.
    assert_eq!(mp.len(), 1, "{fs:#?}");
    assert_eq!(mp[0].severity, Severity::Warning);
}

#[test]
fn foreign_rules_marks_tables_and_names() {
    let mut f = bare();
    add(
        &mut f,
        "rule add priority 1050 from 10.99.0.0/16 lookup 77\n\
         rule add priority 500 fwmark 0x300/0xff00 lookup 77\n\
         route add default via 198.51.100.1 dev eth1 table 200 proto static\n",
    );
    f.state.firewall.iptables = Iptables::parse(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth9 -j MARK --set-xmark 0x400/0xf00\nCOMMIT\n",
    )
    .unwrap();
    f.state.rt_tables = RtTables::parse("100 isp\n77 cnc\n", "t").unwrap();
    let fs = run(&host(""), &live(f));
    let c = codes(&fs);
    for code in ["rule-band", "mark-bits", "table-taken", "rt-tables"] {
        assert!(c.contains(&code), "{code}: {fs:#?}");
    }
    let band = fs.iter().find(|f| f.code == "rule-band").unwrap();
    assert!(
        band.message.contains("1050: from 10.99.0.0/16 lookup cnc"),
        "{}",
        band.message
    );
    let marks = fs.iter().find(|f| f.code == "mark-bits").unwrap();
    assert!(
        marks.message.contains("ip rule 500") && marks.message.contains("-j MARK"),
        "{}",
        marks.message
    );
    let taken = fs.iter().find(|f| f.code == "table-taken").unwrap();
    assert_eq!(taken.location.as_ref().unwrap().line, 11);
    assert_eq!(fs.iter().filter(|f| f.code == "rt-tables").count(), 2);
}

#[test]
fn a_foreign_dnat_before_dwprovs_jump_and_a_forward_of_sshd() {
    let mut f = bare();
    f.state.firewall.iptables = Iptables::parse(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n:DWPROV-PREROUTING - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A PREROUTING -m comment --comment dwprov -j DWPROV-PREROUTING\n\
         -A DOCKER -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n",
    )
    .unwrap();
    let h = host("        - {proto: tcp, port: 22, to: 192.168.0.100, lines: [cnc]}\n");
    let fs = run(&h, &live(f));
    let dn: Vec<_> = fs.iter().filter(|f| f.code == "foreign-dnat").collect();
    assert_eq!(dn.len(), 2, "one per line: {fs:#?}");
    assert!(dn[0].message.contains("172.17.0.2:80"), "{}", dn[0].message);
    let ssh = fs.iter().find(|f| f.code == "sshd-captured").unwrap();
    // the controller uses 10.9.0.2, not cnc's address: a warning
    assert_eq!(ssh.severity, Severity::Warning);
    assert_eq!(ssh.location.as_ref().unwrap().line, 16);
}

#[test]
fn strict_rp_filter_after_dwprovs_file_and_networkd() {
    let mut lf = live(bare());
    lf.sysctl_order = vec![
        "/etc/sysctl.d/10-early.conf".into(),
        "/etc/sysctl.d/90-dwprov.conf".into(),
        "/etc/sysctl.d/99-hardening.conf".into(),
        "/etc/sysctl.conf".into(),
    ];
    lf.sysctl_lines = vec![
        (
            "/etc/sysctl.d/10-early.conf".into(),
            1,
            "net.ipv4.conf.eth1.rp_filter = 1".into(),
        ),
        (
            "/etc/sysctl.d/99-hardening.conf".into(),
            3,
            "net.ipv4.conf.eth2.rp_filter=1".into(),
        ),
        (
            "/etc/sysctl.d/99-hardening.conf".into(),
            4,
            "net.ipv4.conf.all.rp_filter=1".into(),
        ),
        (
            "/etc/sysctl.conf".into(),
            20,
            "#net.ipv4.conf.eth1.rp_filter=1".into(),
        ),
        (
            "/etc/sysctl.conf".into(),
            21,
            "net/ipv4/conf/default/rp_filter=1".into(),
        ),
    ];
    lf.networkd_active = "active".into();
    lf.networkd_lines = vec![(
        "/etc/systemd/networkd.conf.d/x.conf".into(),
        2,
        "ManageForeignRoutes=no".into(),
    )];
    let fs = run(&host(""), &lf);
    let rp: Vec<_> = fs.iter().filter(|f| f.code == "rp-filter").collect();
    assert_eq!(rp.len(), 2, "eth2 (error) and default (warning): {rp:#?}");
    assert!(
        rp[0]
            .message
            .starts_with("/etc/sysctl.d/99-hardening.conf:3:"),
        "{}",
        rp[0].message
    );
    assert_eq!(rp[0].severity, Severity::Error);
    assert_eq!(rp[1].severity, Severity::Warning);
    let nd = fs.iter().find(|f| f.code == "networkd").unwrap();
    assert!(
        nd.message
            .contains("ManageForeignRoutingPolicyRules (default yes)"),
        "{}",
        nd.message
    );
    assert!(
        !nd.message.contains("ManageForeignRoutes ("),
        "{}",
        nd.message
    );
    lf.networkd_lines.push((
        "/etc/systemd/networkd.conf.d/x.conf".into(),
        3,
        "ManageForeignRoutingPolicyRules=no".into(),
    ));
    assert!(!codes(&run(&host(""), &lf)).contains(&"networkd"));
}
