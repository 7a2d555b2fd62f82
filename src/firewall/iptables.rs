//! The iptables backend: everything dwprov does with iptables beyond the
//! typed model and its parser ([`crate::state::iptables`]): gathering
//! `iptables-save` (and the host's iptables facts), the diff of owned
//! chains and jumps, the tested `iptables-restore --noflush` payload, the
//! snapshot's owned listing, the stale-plan digest and the boot context.
//! Rendering is templates/iptables.rules.tera (desired) and
//! templates/boot/iptables.rules.tera (boot); the gateway side of snapshot
//! and revert is gateway/fw-iptables.sh ([`GATEWAY_SH`]).
use super::{Backend, DigestItem, FirewallBackend, Payload};
use crate::change::{Change, Op};
use crate::error::{Error, Result};
use crate::fact::FactSection;
use crate::facts::{Facts, Section};
use crate::ownership::{is_owned_chain, is_owned_jump, IPTABLES_RULES};
use crate::state::iptables::{IptRule, Iptables};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The gateway side: the owned listing, the snapshot check, the revert and
/// the digest lines and the rollback plan's section (`fw_iptables_*`).
pub const GATEWAY_SH: &str = include_str!("../../gateway/fw-iptables.sh");

/// Its gather sections: the version (legacy or nft, which decides where
/// its rules live), `iptables-save`, and a count of the other iptables
/// backend's rules (a warning when both hold some).
pub const FACT_SECTIONS: &[FactSection] = &[
    FactSection::helper("iptables_version", "f_iptables_version", "iptables -V"),
    FactSection::command("iptables", "iptables-save"),
    FactSection::helper(
        "other_backend",
        "f_other_backend",
        "iptables-legacy-save / iptables-nft-save (the other backend)",
    ),
];

impl FirewallBackend for Iptables {
    const BACKEND: Backend = Backend::Iptables;
    const ARTEFACT: &'static str = "iptables.rules";

    fn gather<'a>(
        host: &str,
        get: &dyn Fn(&str) -> Section<'a>,
        facts: &mut Facts,
    ) -> Result<Iptables> {
        let version = get("iptables_version").stdout;
        facts.iptables_backend = if version.contains("nf_tables") {
            Some("nf_tables".into())
        } else if version.contains("legacy") {
            Some("legacy".into())
        } else {
            None
        };
        let mut out = Iptables::default();
        let ipt = get("iptables");
        if facts.has_tool("iptables-save") {
            if ipt.status != 0 {
                return Err(Error::Remote {
                    host: host.into(),
                    what: "iptables-save".into(),
                    status: ipt.status,
                    stderr: ipt.stderr.trim().to_string(),
                });
            }
            out = Iptables::parse(ipt.stdout)?;
            for w in ipt.stderr.lines().filter(|l| !l.trim().is_empty()) {
                facts.warnings.push(format!("iptables-save: {w}"));
            }
        }
        facts.other_backend_rules = get("other_backend")
            .stdout
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            > 0;
        if facts.other_backend_rules {
            facts.warnings.push(format!(
                "rules exist in the other iptables backend than {}: they are invisible to dwprov and still filter packets",
                facts.iptables_backend.as_deref().unwrap_or("the default")
            ));
        }
        Ok(out)
    }

    fn parse_desired(text: &str) -> Result<Iptables> {
        Iptables::parse(text)
    }

    /// Owned chains (`DWPROV-*`) as a whole; in the other chains, only the
    /// jumps into owned ones.
    fn diff(desired: &Iptables, live: &Iptables, changes: &mut Vec<Change>) {
        let tables: BTreeSet<&String> = desired.tables.keys().chain(live.tables.keys()).collect();
        for table in tables {
            let want = desired.tables.get(table);
            let have = live.tables.get(table);
            let chains: BTreeSet<&String> = want
                .into_iter()
                .chain(have)
                .flat_map(|t| t.chains.keys())
                .collect();
            for chain in chains {
                let w = want.and_then(|t| t.chains.get(chain));
                let h = have.and_then(|t| t.chains.get(chain));
                if is_owned_chain(chain) {
                    let wr = w.map(|c| c.rules.clone());
                    let hr = h.map(|c| c.rules.clone());
                    if wr != hr {
                        changes.push(Change::Chain {
                            table: table.clone(),
                            chain: chain.clone(),
                            from: hr,
                            to: wr,
                        });
                    }
                } else {
                    // A built-in (or foreign) chain: only our jump rules in it are ours.
                    let wj: Vec<&IptRule> = w
                        .iter()
                        .flat_map(|c| &c.rules)
                        .filter(is_owned_jump)
                        .collect();
                    let hj: Vec<&IptRule> = h
                        .iter()
                        .flat_map(|c| &c.rules)
                        .filter(is_owned_jump)
                        .collect();
                    for r in &wj {
                        if !hj.contains(r) {
                            changes.push(Change::Jump {
                                table: table.clone(),
                                chain: chain.clone(),
                                op: Op::Add,
                                rule: (*r).clone(),
                            });
                        }
                    }
                    for r in &hj {
                        if !wj.contains(r) {
                            changes.push(Change::Jump {
                                table: table.clone(),
                                chain: chain.clone(),
                                op: Op::Remove,
                                rule: (*r).clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Every table in one payload (each COMMIT is atomic for its table),
    /// tested with `--test` before anything changes.
    fn payload(changes: &[Change]) -> Option<Payload> {
        let payloads = payloads(changes);
        if payloads.is_empty() {
            return None;
        }
        let tables = payloads
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Some(Payload {
            test: "iptables-restore --noflush --test >/dev/null".into(),
            apply: "iptables-restore --noflush".into(),
            step: "iptables-restore".into(),
            what: format!("iptables-restore (tables {tables})"),
            rejected: format!("iptables-restore --test rejected the payload (tables {tables})"),
            text: payloads.values().map(String::as_str).collect(),
        })
    }

    /// One line per owned chain, per rule in one, per jump into one.
    fn owned_lines(&self) -> usize {
        let mut n = 0;
        for table in self.tables.values() {
            for (name, chain) in &table.chains {
                if is_owned_chain(name) {
                    n += 1 + chain.rules.len();
                } else {
                    n += chain.rules.iter().filter(is_owned_jump).count();
                }
            }
        }
        n
    }

    /// The `ipt.ordered` listing (`TABLE<TAB>LINE`, gateway/lib.sh) as a
    /// save, built-in chains declared.
    fn from_snapshot(sections: &BTreeMap<String, Section>) -> Result<Iptables> {
        let listing = match sections.get("ipt.ordered") {
            Some(s) if s.status == 0 => s.stdout,
            _ => {
                return Err(Error::invalid(
                    "the snapshot has no `ipt.ordered` listing (taken by an older dwprov?)",
                ))
            }
        };
        let mut tables: BTreeMap<&str, (Vec<String>, Vec<String>)> = Default::default();
        for l in listing.lines() {
            let Some((t, line)) = l.split_once('\t') else {
                continue;
            };
            let (decl, rules) = tables.entry(t).or_default();
            if let Some(c) = line.strip_prefix("-N ") {
                decl.push(format!(":{c} - [0:0]"));
            } else {
                if let Some(chain) = line.split_whitespace().nth(1) {
                    let d = format!(":{chain} ACCEPT [0:0]");
                    if !is_owned_chain(chain) && !decl.contains(&d) {
                        decl.push(d);
                    }
                }
                rules.push(line.to_string());
            }
        }
        let mut save = String::new();
        for (t, (decl, rules)) in &tables {
            let _ = writeln!(
                save,
                "*{t}\n{}\n{}\nCOMMIT",
                decl.join("\n"),
                rules.join("\n")
            );
        }
        Iptables::parse(&save)
    }

    /// (table, chain, owned chain's rules or the owned jumps of a built-in one).
    fn digest(&self) -> Vec<DigestItem<'_>> {
        let mut out = Vec::new();
        for (table, t) in &self.tables {
            for (chain, c) in &t.chains {
                let rules: Vec<_> = if is_owned_chain(chain) {
                    c.rules.iter().collect()
                } else {
                    c.rules.iter().filter(is_owned_jump).collect()
                };
                if is_owned_chain(chain) || !rules.is_empty() {
                    out.push(DigestItem::Iptables(table, chain, rules));
                }
            }
        }
        out
    }

    fn boot_context(&self) -> Vec<(&'static str, serde_json::Value)> {
        let tables = serde_json::to_value(boot_tables(self)).unwrap_or_default();
        vec![("ipt_tables", tables)]
    }

    fn boot_files() -> &'static [(&'static str, &'static str)] {
        &[("boot/iptables.rules", IPTABLES_RULES)]
    }
}

/// iptables-restore payloads per table for these changes.
pub fn payloads(changes: &[Change]) -> BTreeMap<String, String> {
    #[derive(Default)]
    struct T {
        declare: String,
        rules: String,
        jumps_add: String,
        jumps_del: String,
        delete: String,
    }
    let mut tables: BTreeMap<String, T> = BTreeMap::new();
    for c in changes {
        match c {
            Change::Chain {
                table, chain, to, ..
            } => {
                let t = tables.entry(table.clone()).or_default();
                // `:CHAIN - [0:0]` creates the chain or flushes it: with
                // --noflush, nothing else in the table is touched.
                let _ = writeln!(t.declare, ":{chain} - [0:0]");
                match to {
                    Some(rules) => {
                        for r in rules {
                            let _ = writeln!(t.rules, "-A {chain} {r}");
                        }
                    }
                    None => {
                        let _ = writeln!(t.delete, "-X {chain}");
                    }
                }
            }
            Change::Jump {
                table,
                chain,
                op,
                rule,
            } => {
                let t = tables.entry(table.clone()).or_default();
                match op {
                    // First in the chain, so foreign rules cannot pre-empt ours.
                    Op::Add => {
                        let _ = writeln!(t.jumps_add, "-I {chain} 1 {rule}");
                    }
                    Op::Remove => {
                        let _ = writeln!(t.jumps_del, "-D {chain} {rule}");
                    }
                }
            }
            _ => {}
        }
    }
    tables
        .into_iter()
        .map(|(name, t)| {
            (
                name.clone(),
                format!(
                    "*{name}\n{}{}{}{}{}COMMIT\n",
                    t.declare, t.rules, t.jumps_add, t.jumps_del, t.delete
                ),
            )
        })
        .collect()
}

/// One table of the boot payload (templates/boot/iptables.rules.tera).
#[derive(Serialize)]
struct BootTable {
    name: String,
    chains: Vec<String>,
    rules: Vec<String>,
    jumps: Vec<String>,
}

/// iptables-restore lines for the owned part of the desired iptables state.
fn boot_tables(desired: &Iptables) -> Vec<BootTable> {
    let mut out = Vec::new();
    for (name, table) in &desired.tables {
        let mut t = BootTable {
            name: name.clone(),
            chains: Vec::new(),
            rules: Vec::new(),
            jumps: Vec::new(),
        };
        for (cname, chain) in &table.chains {
            if is_owned_chain(cname) {
                t.chains.push(cname.clone());
                for r in &chain.rules {
                    t.rules.push(format!("-A {cname} {r}"));
                }
            } else {
                for r in chain.rules.iter().filter(is_owned_jump) {
                    t.jumps.push(format!("-I {cname} 1 {r}"));
                }
            }
        }
        // Each `-I .. 1` goes first: insert in reverse to keep the order.
        t.jumps.reverse();
        if !t.chains.is_empty() || !t.jumps.is_empty() {
            out.push(t);
        }
    }
    out
}
