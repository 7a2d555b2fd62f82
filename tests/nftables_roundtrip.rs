//! The nftables backend on a real kernel: the seed's table (examples/seed-fwmark,
//! the real ISP lists: 4,164 + 3,475 prefixes) rendered for method fwmark and
//! for prefix sets, checked with `nft -c`, loaded with `nft -f` into a
//! throwaway network namespace, listed back with `nft -j` and parsed: it must
//! equal what was rendered. Then one prefix changes (an element delete and
//! add, not a reload), a rejected payload changes nothing, and switching away
//! deletes only the owned table. A foreign `table inet filter` and an
//! iptables-nft `ip nat` rule planted first survive every step.
//!
//! Needs root, `ip` and `nft`; without them it prints why and skips.
use dwprov::render::nftables as render;
use dwprov::state::nftables::{
    diff::{diff, full, payload},
    json, Elem, Nftables,
};
use dwprov::{inventory, model};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod netns;
use netns::{is_root, Netns};

/// The namespace's nft.
impl Netns {
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        self.run(args, stdin).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Check, then load, one transaction, as the gateway side does.
    fn load(&self, payload: &str) -> Result<(), String> {
        self.run(&["nft", "-c", "-f", "-"], payload)?;
        self.run(&["nft", "-f", "-"], payload).map(|_| ())
    }

    fn owned(&self) -> Nftables {
        // A missing table is an error from nft; the gather maps it to "none".
        let text = self
            .run(&["nft", "-j", "list", "table", "inet", "dwprov"], "")
            .unwrap_or_default();
        json::parse(&text).unwrap_or_else(|e| panic!("parse listing: {e}\n{text}"))
    }

    /// Everything that is not dwprov's, as text.
    fn foreign(&self) -> String {
        let tables = self.ok(&["nft", "list", "tables"], "");
        let mut out = String::new();
        for t in tables.lines() {
            let t = t.trim();
            if t == "table inet dwprov" || t.is_empty() {
                continue;
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            out.push_str(&self.ok(&["nft", "list", "table", words[1], words[2]], ""));
        }
        out
    }
}

fn usable() -> Result<(), String> {
    if !is_root() {
        return Err("not root (network namespaces need it)".into());
    }
    Command::new("nft")
        .arg("--version")
        .output()
        .map_err(|e| format!("no nft: {e}"))?;
    Ok(())
}

fn seed() -> model::Gateway {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed-fwmark/inventory.yaml");
    let inv = inventory::load(&path).unwrap();
    model::build(&inv.hosts[0]).unwrap()
}

#[test]
fn rendered_table_loads_lists_back_equal_and_leaves_foreign_tables() {
    if let Err(why) = usable() {
        eprintln!("SKIPPED nftables_roundtrip: {why}");
        return;
    }
    let mut gw = seed();
    assert!(gw.lines.iter().map(|l| l.routes.len()).sum::<usize>() > 7000);
    for sets in [false, true] {
        let ns = Netns::new("dwnft", if sets { "set" } else { "fwmark" });
        // Foreign state: an admin's inet filter, iptables-nft's ip nat.
        ns.ok(
            &["nft", "-f", "-"],
            "add table inet filter\n\
             add chain inet filter input { type filter hook input priority 0; policy accept; }\n\
             add rule inet filter input tcp dport 22 counter accept\n",
        );
        if ns
            .run(
                &[
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "eth9",
                    "-j",
                    "MASQUERADE",
                ],
                "",
            )
            .is_err()
        {
            eprintln!("note: no iptables(-nft) here; the foreign ip nat table is not planted");
        }
        let foreign = ns.foreign();
        assert!(foreign.contains("table inet filter"), "{foreign}");

        let want = render::desired(&gw, sets);
        let t0 = Instant::now();
        ns.load(&full(&want))
            .unwrap_or_else(|e| panic!("sets={sets}: {e}"));
        eprintln!(
            "sets={sets}: {} set elements loaded in {:?}",
            want.table.as_ref().map_or(0, |t| t
                .sets
                .values()
                .map(|s| s.elements.len())
                .sum::<usize>()),
            t0.elapsed()
        );
        let live = ns.owned();
        assert_eq!(live, want, "sets={sets}: listed != rendered");
        assert!(diff(&live, &want).is_empty());
        assert_eq!(ns.foreign(), foreign, "a foreign table changed");

        // Loading the full transaction again changes nothing (idempotent).
        ns.load(&full(&want)).unwrap();
        assert_eq!(ns.owned(), want);

        // One prefix less, one more: a diff of two element statements.
        let before = want.clone();
        let removed = gw.lines[1].routes.remove(3);
        gw.lines[1].routes.push("172.31.0.0/16".parse().unwrap());
        let after = render::desired(&gw, sets);
        let p = payload(&diff(&before, &after));
        if sets {
            assert!(p.contains("delete element inet dwprov line_cnc"), "{p}");
            assert!(p.lines().count() <= 3, "{p}");
            assert!(p.contains(&Elem::Net(removed).to_string()));
        } else {
            assert_eq!(p, "", "method fwmark: prefixes are routes, not table state");
        }
        ns.load(&p).unwrap_or_else(|e| panic!("{e}\n{p}"));
        assert_eq!(ns.owned(), after);
        gw.lines[1].routes.pop();
        gw.lines[1].routes.insert(3, removed);

        // A payload nft rejects changes nothing (the check comes first, and
        // a transaction is all or nothing anyway).
        let bad = format!(
            "{}add rule inet dwprov nat_prerouting ip daddr 1.2.3.4 tcp dport 1 dnat ip to 999.1.1.1\n",
            full(&after)
        );
        assert!(ns.load(&bad).is_err());
        assert_eq!(ns.owned(), after);
        assert_eq!(ns.foreign(), foreign);

        // Hand drift: a deleted rule shows as exactly that rule.
        let h = ns.ok(
            &[
                "nft",
                "-a",
                "list",
                "chain",
                "inet",
                "dwprov",
                "nat_prerouting",
            ],
            "",
        );
        let handle = h
            .lines()
            .find(|l| l.contains("dport 2222"))
            .and_then(|l| l.rsplit("handle ").next())
            .expect("rule handle")
            .trim()
            .to_string();
        ns.ok(
            &[
                "nft",
                "delete",
                "rule",
                "inet",
                "dwprov",
                "nat_prerouting",
                "handle",
                &handle,
            ],
            "",
        );
        let changes = diff(&ns.owned(), &after);
        let shown: Vec<String> = changes
            .iter()
            .flat_map(dwprov::state::nftables::diff::view)
            .map(|l| format!("{} {}", l.sign, l.text))
            .collect();
        assert_eq!(
            shown,
            ["+ rule nat_prerouting: ip daddr 203.0.113.2 tcp dport 2222 dnat ip to 192.168.0.100:22"]
        );
        ns.load(&payload(&changes)).unwrap();
        assert_eq!(ns.owned(), after);

        // Switching away: the owned table goes, nothing else.
        let p = payload(&diff(&ns.owned(), &Nftables::default()));
        assert_eq!(p, "delete table inet dwprov\n");
        ns.load(&p).unwrap();
        assert_eq!(ns.owned(), Nftables::default());
        assert_eq!(ns.foreign(), foreign);
    }
}
