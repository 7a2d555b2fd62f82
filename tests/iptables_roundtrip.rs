//! Round trip through the real tool: rules written the human way are loaded
//! with `iptables-restore` into a fresh network namespace, read back with
//! `iptables-save`, and both sides must parse equal; `Display` of each rule
//! must be the saved line byte for byte, and loading the canonical text
//! again must save identically (what dwprov relies on for idempotency).
//!
//! Needs root, `ip` (iproute2) and iptables; fails (never skips) without.
use dwprov::state::iptables::{IptRule, Iptables};
mod netns;
use netns::{is_root, Netns};

/// The namespace's iptables tools.
impl Netns {
    fn restore(&self, payload: &str) {
        if let Err(e) = self.run(&["iptables-restore"], payload) {
            panic!("{e}\npayload:\n{payload}");
        }
    }

    fn save(&self) -> String {
        self.run(&["iptables-save"], "")
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn new_netns(tag: &str) -> Netns {
    assert!(
        is_root(),
        "iptables_roundtrip needs root (network namespaces + iptables); run as root"
    );
    Netns::new("dwipt", tag)
}

/// (table, chain, rule spec as a human writes it after `-A CHAIN`).
type Case = (&'static str, &'static str, &'static str);

/// User chains the cases jump to, per table.
const USER_CHAINS: &[(&str, &str)] = &[
    ("mangle", "DWPROV-PRE"),
    ("nat", "DOCKER"),
    ("filter", "DOCKER"),
    ("filter", "DOCKER-USER"),
    ("filter", "USER"),
];

fn payload(cases: &[Case]) -> String {
    let mut tables: Vec<&str> = cases.iter().map(|c| c.0).collect();
    tables.sort();
    tables.dedup();
    let mut p = String::new();
    for t in tables {
        p.push_str(&format!("*{t}\n"));
        for (ut, c) in USER_CHAINS {
            if *ut == t {
                p.push_str(&format!(":{c} - [0:0]\n"));
            }
        }
        for (ct, chain, rule) in cases {
            if *ct == t {
                p.push_str(&format!("-A {chain} {rule}\n"));
            }
        }
        p.push_str("COMMIT\n");
    }
    p
}

/// The `-A CHAIN` lines of one table/chain in save output, without `-A CHAIN `.
fn saved_lines(save: &str, table: &str, chain: &str) -> Vec<String> {
    let mut cur = "";
    let prefix = format!("-A {chain}");
    let mut out = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            cur = t;
        } else if cur == table {
            if line == prefix {
                out.push(String::new());
            } else if let Some(rest) = line.strip_prefix(&format!("{prefix} ")) {
                out.push(rest.to_string());
            }
        }
    }
    out
}

fn round_trip(tag: &str, cases: &[Case]) {
    let ns = new_netns(tag);
    let human = payload(cases);
    ns.restore(&human);
    let save = ns.save();
    let desired = Iptables::parse(&human).unwrap_or_else(|e| panic!("{e}\n{human}"));
    let live = Iptables::parse(&save).unwrap_or_else(|e| panic!("{e}\n{save}"));

    let mut failures = Vec::new();
    for (table, t) in &desired.tables {
        for (chain, c) in &t.chains {
            let lines = saved_lines(&save, table, chain);
            let got = live
                .chain(table, chain)
                .unwrap_or_else(|| panic!("{table}/{chain} missing from save:\n{save}"));
            assert_eq!(c.rules.len(), lines.len(), "{table}/{chain}:\n{save}");
            assert_eq!(c.rules.len(), got.rules.len(), "{table}/{chain}");
            let humans = cases
                .iter()
                .filter(|(ct, cc, _)| ct == table && cc == chain)
                .map(|c| c.2);
            for (((want, have), line), written) in
                c.rules.iter().zip(&got.rules).zip(&lines).zip(humans)
            {
                if want != have {
                    failures.push(format!(
                        "{table}/{chain}: {written:?}\n  saved as {line:?}\n  parsed differently:\n  {want:?}\n  {have:?}"
                    ));
                }
                if &want.to_string() != line {
                    failures.push(format!(
                        "{table}/{chain}: {written:?}\n  displays as {:?}\n  saved as    {line:?}",
                        want.to_string()
                    ));
                }
                let reparsed = IptRule::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                if &reparsed.to_string() != line {
                    failures.push(format!("saved {line:?} displays as {reparsed}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Loading the canonical rendering again saves byte-identically.
    let mut canonical = String::new();
    for (table, t) in &desired.tables {
        canonical.push_str(&format!("*{table}\n"));
        for (ut, chain) in USER_CHAINS {
            if ut == table {
                canonical.push_str(&format!(":{chain} - [0:0]\n"));
            }
        }
        for (chain, c) in &t.chains {
            for r in &c.rules {
                canonical.push_str(&format!("-A {chain} {r}\n"));
            }
        }
        canonical.push_str("COMMIT\n");
    }
    let ns2 = new_netns(tag);
    ns2.restore(&canonical);
    let save2 = ns2.save();
    assert_eq!(
        Iptables::parse(&save2).unwrap(),
        live,
        "canonical payload:\n{canonical}"
    );
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&save2), strip(&save));
}

#[test]
fn seed_policy_routing_rules() {
    round_trip(
        "seed",
        &[
            ("mangle", "PREROUTING", "-i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x100"),
            ("mangle", "POSTROUTING", "-o eth2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x200"),
            ("mangle", "PREROUTING", "-i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark"),
            ("mangle", "OUTPUT", "-m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark"),
            ("nat", "POSTROUTING", "-o eth1 -s 192.168.0.0/24 -j SNAT --to-source 198.51.100.2"),
            ("nat", "POSTROUTING", "-o eth2 -s 192.168.0.0/24 -j MASQUERADE"),
            ("nat", "PREROUTING", "-p tcp --dport 80 -d 198.51.100.2 -j DNAT --to-destination 192.168.0.100"),
            ("nat", "POSTROUTING", "-p tcp -s 192.168.0.0/24 --dport 80 -d 192.168.0.100 -j SNAT --to-source 192.168.0.1"),
        ],
    );
}

#[test]
fn dwprov_masked_variants() {
    round_trip(
        "dwprov",
        &[
            ("mangle", "PREROUTING", "-m comment --comment \"dwprov: jump\" -j DWPROV-PRE"),
            ("mangle", "DWPROV-PRE", "-i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x100/0xff00"),
            ("mangle", "DWPROV-PRE", "-i eth2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x1/0xff00"),
            ("mangle", "DWPROV-PRE", "-m conntrack --ctstate ESTABLISHED,RELATED -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00"),
            ("mangle", "DWPROV-PRE", "-j CONNMARK --restore-mark --mask 0xff00"),
            ("mangle", "DWPROV-PRE", "-j CONNMARK --save-mark --ctmask 0xff00 --nfmask 0xff00"),
            ("mangle", "DWPROV-PRE", "-j CONNMARK --save-mark"),
            ("mangle", "DWPROV-PRE", "-m connmark --mark 256/65280 -j RETURN"),
            ("mangle", "DWPROV-PRE", "-m mark ! --mark 0x100/0xff00 -j MARK --set-mark 0x100/0xff00"),
            ("mangle", "DWPROV-PRE", "-j MARK --set-mark 512"),
            ("mangle", "DWPROV-PRE", "-j MARK --and-mark 0xff"),
            ("mangle", "DWPROV-PRE", "-j MARK --or-mark 0x4000"),
            ("mangle", "DWPROV-PRE", "-j MARK --xor-mark 0x4000"),
            ("mangle", "DWPROV-PRE", "-j CONNMARK --set-xmark 0x3"),
            ("mangle", "OUTPUT", "-m comment --comment dwprov-out -m mark --mark 010 -j ACCEPT"),
            ("nat", "PREROUTING", "-p tcp --dport 2222 -d 198.51.100.2 -m comment --comment \"dwprov: forward ssh\" -j DNAT --to-destination 192.168.0.100:22"),
            ("nat", "PREROUTING", "-p udp --sport 53 --dport 5353:5400 -j DNAT --to-destination 192.168.0.100"),
            ("nat", "POSTROUTING", "-j SNAT --persistent --to 198.51.100.2 --random"),
            ("nat", "POSTROUTING", "-o eth2 -j MASQUERADE --random-fully --random"),
            ("nat", "POSTROUTING", "-s 10.1.2.3 -d 10.0.0.0/8 -p tcp -j MASQUERADE --to-ports 1000-2000"),
            ("nat", "POSTROUTING", "! -s 10.1.2.3 ! -d 10.0.0.1 -j MASQUERADE"),
        ],
    );
}

#[test]
fn docker_like_rules() {
    round_trip(
        "docker",
        &[
            (
                "nat",
                "PREROUTING",
                "-m addrtype --dst-type LOCAL -j DOCKER",
            ),
            (
                "nat",
                "OUTPUT",
                "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
            ),
            (
                "nat",
                "POSTROUTING",
                "! -o docker0 -s 172.17.0.0/16 -j MASQUERADE",
            ),
            (
                "nat",
                "POSTROUTING",
                "-s 172.17.0.2 -d 172.17.0.2 -p tcp --dport 80 -j MASQUERADE",
            ),
            ("nat", "DOCKER", "-i docker0 -j RETURN"),
            (
                "nat",
                "DOCKER",
                "! -i docker0 -p tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
            ),
            ("filter", "FORWARD", "-j DOCKER-USER"),
            (
                "filter",
                "FORWARD",
                "-o docker0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            ),
            ("filter", "FORWARD", "-i docker0 ! -o docker0 -j ACCEPT"),
            (
                "filter",
                "DOCKER",
                "-p tcp -o docker0 ! -i docker0 -d 172.17.0.2 --dport 80 -j ACCEPT",
            ),
            (
                "filter",
                "DOCKER-USER",
                "-m comment --comment \"docker user rules\" -j RETURN",
            ),
            ("filter", "INPUT", "-j LOG --log-prefix \"x \""),
            (
                "filter",
                "INPUT",
                "-j LOG --log-prefix \"dwprov drop: \" --log-level 4",
            ),
            (
                "filter",
                "INPUT",
                "-j LOG --log-uid --log-level debug --log-prefix x",
            ),
        ],
    );
}

#[test]
fn filter_canonicalisations() {
    round_trip(
        "filter",
        &[
            ("filter", "INPUT", "-m state --state ESTABLISHED,RELATED -j ACCEPT"),
            ("filter", "INPUT", "-m conntrack --ctstate dnat,SNAT,UNTRACKED,ESTABLISHED,RELATED,NEW,INVALID -j ACCEPT"),
            ("filter", "INPUT", "-m conntrack ! --ctstate NEW --ctstatus CONFIRMED,ASSURED --ctproto udp"),
            ("filter", "INPUT", "-p tcp -m multiport --dports 80,443 -j ACCEPT"),
            ("filter", "INPUT", "-p tcp -m multiport --destination-ports http,https,ssh:telnet -j ACCEPT"),
            ("filter", "INPUT", "-p icmp --icmp-type echo-request -j ACCEPT"),
            ("filter", "INPUT", "-p icmp --icmp-type port-unreachable -j ACCEPT"),
            ("filter", "INPUT", "-p icmp ! --icmp-type 8 -j ACCEPT"),
            ("filter", "INPUT", "-p TCP --dport ssh -j ACCEPT"),
            ("filter", "INPUT", "-p 47 -j ACCEPT"),
            ("filter", "INPUT", "-p all -s 0.0.0.0/0 -j ACCEPT"),
            ("filter", "INPUT", "-p tcp ! --syn -j ACCEPT"),
            ("filter", "INPUT", "-p tcp --tcp-flags ALL NONE -j DROP"),
            ("filter", "INPUT", "-p tcp --tcp-flags SYN SYN --tcp-option 2 --dport 1 --sport 1024: -j ACCEPT"),
            ("filter", "INPUT", "-p tcp --dport 0:65535 -j ACCEPT"),
            ("filter", "INPUT", "-p udp ! --dport 53 --source-port :1023 -j ACCEPT"),
            ("filter", "INPUT", "-f -p tcp -s 10.1.2.3/255.255.255.0 -i eth+ -j ACCEPT"),
            ("filter", "INPUT", "-m comment --comment simple-1_x -m comment --comment \"it's \\\"quoted\\\"\" -j ACCEPT"),
            ("filter", "INPUT", "-m comment --comment -dash -j ACCEPT"),
            ("filter", "INPUT", "-j ACCEPT -m comment --comment after"),
            ("filter", "INPUT", "-p tcp -m comment --comment x --dport 80 -j ACCEPT"),
            ("filter", "INPUT", "-p tcp -j ACCEPT --dport 81"),
            ("filter", "INPUT", "-m limit --limit 60/minute --limit-burst 5 -j ACCEPT"),
            ("filter", "INPUT", "-m limit -j ACCEPT"),
            ("filter", "INPUT", "-m limit --limit-burst 7 --limit 24/day -j ACCEPT"),
            ("filter", "INPUT", "-m addrtype --dst-type local --src-type UNICAST --limit-iface-in -j ACCEPT"),
            ("filter", "INPUT", "-m addrtype ! --dst-type BROADCAST,LOCAL -j ACCEPT"),
            ("filter", "INPUT", "-j REJECT"),
            ("filter", "INPUT", "-j REJECT --reject-with tcp-rst -p tcp"),
            ("filter", "INPUT", "-j REJECT --reject-with host-prohib"),
            ("filter", "INPUT", "-j NFLOG --nflog-threshold 2 --nflog-group 3 --nflog-prefix \"a b\""),
            ("filter", "INPUT", "-j NFLOG --nflog-group 0"),
            ("filter", "INPUT", "-p tcp -m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-saddr --dport 22 -j DROP"),
            ("filter", "INPUT", "-m iprange --src-range 10.0.0.1-10.0.0.5 -m physdev --physdev-is-bridged -j ACCEPT"),
            ("filter", "INPUT", "-p tcp -m statistic --mode random --probability 0.33333333349 -j USER"),
            ("filter", "INPUT", "-g USER"),
            ("filter", "INPUT", ""),
            ("filter", "OUTPUT", "-d 10.0.0.0/8 -s 1.2.3.4 -o eth0 -p tcp -j ACCEPT"),
        ],
    );
}
