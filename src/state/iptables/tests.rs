//! Whole-file parsing: real `iptables-save` output captured on iptables
//! 1.8.9 (nf_tables) in tests/fixtures/iptables/ (see regen.sh there), and
//! arbitrary input that must never panic.
use super::*;
use proptest::prelude::*;

const FIXTURES: &[(&str, &str, &str)] = &[
    (
        "docker",
        include_str!("../../../tests/fixtures/iptables/docker.rules"),
        include_str!("../../../tests/fixtures/iptables/docker.save"),
    ),
    (
        "dwprov",
        include_str!("../../../tests/fixtures/iptables/dwprov.rules"),
        include_str!("../../../tests/fixtures/iptables/dwprov.save"),
    ),
    (
        "kube",
        include_str!("../../../tests/fixtures/iptables/kube.rules"),
        include_str!("../../../tests/fixtures/iptables/kube.save"),
    ),
];

const COUNTERS: &[&str] = &[
    include_str!("../../../tests/fixtures/iptables/docker.counters.save"),
    include_str!("../../../tests/fixtures/iptables/dwprov.counters.save"),
    include_str!("../../../tests/fixtures/iptables/kube.counters.save"),
];

fn parse(text: &str) -> Iptables {
    Iptables::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn rules(ipt: &Iptables, table: &str, chain: &str) -> Vec<String> {
    ipt.chain(table, chain)
        .unwrap_or_else(|| panic!("no chain {table}/{chain}"))
        .rules
        .iter()
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn every_saved_rule_displays_byte_for_byte() {
    for (name, _, saved) in FIXTURES {
        for line in saved.lines().filter(|l| l.starts_with("-A ")) {
            let (_, rest) = line[3..].split_once(' ').unwrap_or((&line[3..], ""));
            let rule = IptRule::parse(rest).unwrap_or_else(|e| panic!("{name}: {line}: {e}"));
            assert_eq!(rule.to_string(), rest, "{name}: {line}");
        }
    }
}

#[test]
fn human_rules_parse_equal_to_their_saved_echo() {
    for (name, human, saved) in FIXTURES {
        let h = parse(human);
        let s = parse(saved);
        for (tname, table) in &h.tables {
            for (cname, chain) in &table.chains {
                let got = s
                    .chain(tname, cname)
                    .unwrap_or_else(|| panic!("{name}: {tname}/{cname}"));
                assert_eq!(&chain.rules, &got.rules, "{name}: {tname}/{cname}");
                assert_eq!(chain.policy, got.policy, "{name}: {tname}/{cname}");
            }
        }
    }
}

#[test]
fn display_of_the_whole_state_parses_back_equal() {
    for (name, _, saved) in FIXTURES {
        let s = parse(saved);
        assert_eq!(parse(&s.to_string()), s, "{name}");
    }
}

#[test]
fn counters_are_ignored() {
    for (counted, (name, _, saved)) in COUNTERS.iter().zip(FIXTURES) {
        assert_eq!(parse(counted), parse(saved), "{name}");
    }
}

#[test]
fn docker_fixture() {
    let s = parse(FIXTURES[0].2);
    assert_eq!(
        s.chain("filter", "FORWARD").unwrap().policy.as_deref(),
        Some("DROP")
    );
    assert_eq!(s.chain("filter", "DOCKER").unwrap().policy, None);
    let dnat = &s.chain("nat", "DOCKER").unwrap().rules[1];
    assert_eq!(
        dnat.in_interface,
        Some(Neg {
            negated: true,
            value: "docker0".into()
        })
    );
    assert_eq!(dnat.target(), Some("DNAT"));
    assert_eq!(
        rules(&s, "nat", "OUTPUT"),
        ["! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"]
    );
}

#[test]
fn dwprov_fixture() {
    let s = parse(FIXTURES[1].2);
    let pre = s.chain("mangle", "PREROUTING").unwrap();
    assert_eq!(pre.rules.len(), 1);
    assert_eq!(pre.rules[0].comment(), Some("dwprov: jump"));
    assert_eq!(pre.rules[0].target(), Some("DWPROV-PRE"));
    assert_eq!(
        rules(&s, "mangle", "DWPROV-PRE"),
        [
            "-i eth1 -m conntrack --ctstate NEW -m comment --comment \"dwprov: wan1 inbound\" -j CONNMARK --set-xmark 0x100/0xff00",
            "-i eth2 -m conntrack --ctstate NEW -m comment --comment \"dwprov: wan2 inbound\" -j CONNMARK --set-xmark 0x200/0xff00",
            "-i eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00",
        ]
    );
    assert_eq!(
        rules(&s, "filter", "DWPROV-IN")[2..],
        [
            "-p icmp -m icmp --icmp-type 8 -m limit --limit 10/sec -j ACCEPT",
            "-i eth0 -p tcp -m tcp --dport 22 -j ACCEPT",
            "-m limit --limit 5/min -j LOG --log-prefix \"dwprov drop: \"",
        ]
    );
    assert_eq!(
        s.chain("filter", "INPUT").unwrap().policy.as_deref(),
        Some("DROP")
    );
}

#[test]
fn kube_fixture_keeps_unknown_extensions() {
    let s = parse(FIXTURES[2].2);
    let svc = &s.chain("nat", "KUBE-SVC-NPX46M4PTMTKRN6Y").unwrap().rules[0];
    assert_eq!(
        svc.comment(),
        Some("default/kubernetes:https -> 10.0.0.1:6443")
    );
    let stat = &svc.matches[1];
    assert_eq!(stat.module, "statistic");
    assert_eq!(stat.options.len(), 2);
    assert_eq!(stat.options[1].args, ["0.50000000000"]);
    assert_eq!(
        rules(&s, "raw", "OUTPUT"),
        ["-p udp -m udp --sport 4789 -j CT --notrack"]
    );
}

#[test]
fn restore_payload_commands() {
    let text = "# dwprov payload\n*mangle\n-N DWPROV-PRE\n-A DWPROV-PRE -j RETURN\n-I DWPROV-PRE -i eth1 -j ACCEPT\n-I DWPROV-PRE 2 -i eth2 -j ACCEPT\n\nCOMMIT\n";
    let ipt = parse(text);
    assert_eq!(
        rules(&ipt, "mangle", "DWPROV-PRE"),
        ["-i eth1 -j ACCEPT", "-i eth2 -j ACCEPT", "-j RETURN"]
    );
    assert_eq!(ipt.chain("mangle", "DWPROV-PRE").unwrap().policy, None);
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize)] = &[
        ("-A INPUT -j ACCEPT\n", 1),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT --bogus\nCOMMIT\n",
            3,
        ),
        ("*filter\n-A INPUT -m comment --comment \"open\nCOMMIT\n", 2),
        ("*filter\n:INPUT\nCOMMIT\n", 2),
        ("*filter\n-X INPUT\nCOMMIT\n", 2),
        ("*filter\n*nat\nCOMMIT\n", 2),
        ("*filter\n-A INPUT -j ACCEPT\n", 2),
        ("*filter\n[x:y] -A INPUT\nCOMMIT\n", 2),
        ("*filter\n-I INPUT 5 -j ACCEPT\nCOMMIT\n", 2),
    ];
    for (text, line) in cases {
        match Iptables::parse(text) {
            Err(crate::Error::Parse { line: l, what, .. }) => {
                assert_eq!(l, *line, "{text:?}");
                assert_eq!(what, "iptables-save output");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

fn mutate(base: &str, edits: &[(usize, u8, String)]) -> String {
    let mut s: Vec<char> = base.chars().collect();
    for (pos, kind, text) in edits {
        if s.is_empty() {
            s.extend(text.chars());
            continue;
        }
        let p = pos % s.len();
        match kind % 3 {
            0 => {
                s.remove(p);
            }
            1 => {
                for (k, c) in text.chars().enumerate() {
                    s.insert(p + k, c);
                }
            }
            _ => {
                let end = (p + text.len()).min(s.len());
                s.splice(p..end, text.chars());
            }
        }
    }
    s.into_iter().collect()
}

const TOKENS: &str = r#"(-A|-I|-N|-s|-d|-i|-o|-p|-f|-m|-j|-g|!|"|\\|--[a-z-]{1,12}|tcp|udp|icmp|comment|conntrack|CONNMARK|MARK|LOG|limit|0x[0-9a-f]{1,9}|/|:|,|[0-9]{1,6}| |\n|\*filter|COMMIT|:INPUT ACCEPT|\[0:0\])"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        let _ = Iptables::parse(&s);
        let _ = IptRule::parse(&s);
    }

    #[test]
    fn arbitrary_token_soup_never_panics(toks in proptest::collection::vec(TOKENS, 0..40)) {
        let spec = toks.join(" ");
        if let Ok(r) = IptRule::parse(&spec) {
            // Whatever parses must print something that parses back equal.
            let again = IptRule::parse(&r.to_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&r), "{}", r);
        }
        let _ = Iptables::parse(&format!("*filter\n-A INPUT {spec}\nCOMMIT\n"));
    }

    #[test]
    fn mutated_save_files_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), TOKENS), 1..8),
    ) {
        let text = mutate(FIXTURES[which].2, &edits);
        if let Ok(ipt) = Iptables::parse(&text) {
            prop_assert_eq!(Iptables::parse(&ipt.to_string()).ok(), Some(ipt));
        }
    }
}
