//! Live vs desired owned table: the changes, their readable lines, and the
//! one `nft -f` transaction that makes them.
//!
//! The transaction follows kube-proxy's nftables pattern: `add table` (a
//! no-op when it exists), then per changed chain `add chain` + `flush
//! chain` + its rules, per new set `add set` + `flush set` + its elements;
//! a set that only gained or lost elements gets `add element` / `delete
//! element` of exactly those (one prefix of 3,894 is one element, not a
//! reload). Never `flush ruleset`, and the table is deleted only when the
//! host is to have none (a backend switch or no firewall rules at all).
use super::{BaseChain, Chain, Elem, Nftables, Rule, Set, Table};
use crate::ownership::{NFT_FAMILY, NFT_TABLE};
use serde::Serialize;
use std::fmt::Write;

/// One change to the owned table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "nft", rename_all = "snake_case")]
pub enum NftChange {
    /// The table is missing (its chains and sets come as their own changes).
    AddTable,
    /// The host is to have no owned table: everything in it goes.
    DeleteTable {
        table: Table,
    },
    AddChain {
        name: String,
        chain: Chain,
    },
    DeleteChain {
        name: String,
        chain: Chain,
    },
    /// The chain's rules (or its hook) differ: the chain is flushed and
    /// refilled (recreated if the hook differs: nft cannot move a hook).
    ReplaceChain {
        name: String,
        from: Chain,
        to: Chain,
    },
    AddSet {
        name: String,
        set: Set,
    },
    DeleteSet {
        name: String,
        set: Set,
    },
    /// Same set, other elements: exactly these are added and deleted.
    Elements {
        name: String,
        add: Vec<Elem>,
        delete: Vec<Elem>,
    },
}

/// The changes that make `live` into `desired`, in a fixed order.
pub fn diff(live: &Nftables, desired: &Nftables) -> Vec<NftChange> {
    let mut out = Vec::new();
    let (live_t, want) = match (&live.table, &desired.table) {
        (None, None) => return out,
        (Some(t), None) => {
            out.push(NftChange::DeleteTable { table: t.clone() });
            return out;
        }
        (None, Some(w)) => {
            out.push(NftChange::AddTable);
            (Table::default(), w)
        }
        (Some(t), Some(w)) => (t.clone(), w),
    };
    for (name, set) in &want.sets {
        match live_t.sets.get(name) {
            None => out.push(NftChange::AddSet {
                name: name.clone(),
                set: set.clone(),
            }),
            Some(have) if have.kind != set.kind || have.flags != set.flags => {
                out.push(NftChange::DeleteSet {
                    name: name.clone(),
                    set: have.clone(),
                });
                out.push(NftChange::AddSet {
                    name: name.clone(),
                    set: set.clone(),
                });
            }
            Some(have) if have.elements != set.elements => out.push(NftChange::Elements {
                name: name.clone(),
                add: set.elements.difference(&have.elements).cloned().collect(),
                delete: have.elements.difference(&set.elements).cloned().collect(),
            }),
            Some(_) => {}
        }
    }
    for (name, set) in &live_t.sets {
        if !want.sets.contains_key(name) {
            out.push(NftChange::DeleteSet {
                name: name.clone(),
                set: set.clone(),
            });
        }
    }
    for (name, chain) in &want.chains {
        match live_t.chains.get(name) {
            None => out.push(NftChange::AddChain {
                name: name.clone(),
                chain: chain.clone(),
            }),
            Some(have) if have != chain => out.push(NftChange::ReplaceChain {
                name: name.clone(),
                from: have.clone(),
                to: chain.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, chain) in &live_t.chains {
        if !want.chains.contains_key(name) {
            out.push(NftChange::DeleteChain {
                name: name.clone(),
                chain: chain.clone(),
            });
        }
    }
    out
}

/// `+`/`-` and the text of one line of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewLine {
    pub sign: char,
    pub text: String,
}

fn line(sign: char, text: String) -> ViewLine {
    ViewLine { sign, text }
}

fn chain_head(name: &str, c: &Chain) -> String {
    match &c.base {
        Some(b) => format!(
            "chain {name} {{ type {} hook {} priority {}; policy {}; }}",
            b.kind,
            b.hook,
            super::priority_str(&b.kind, &b.hook, b.priority),
            b.policy
        ),
        None => format!("chain {name}"),
    }
}

fn rule_line(chain: &str, r: &Rule) -> String {
    format!("rule {chain}: {r}")
}

fn elem_line(set: &str, e: &Elem) -> String {
    format!("element {set} {e}")
}

/// The rules only in `a` and only in `b`, by a longest common subsequence
/// (chains are short), so a deleted rule shows as exactly that rule.
fn rule_diff<'a>(a: &'a [Rule], b: &'a [Rule]) -> Vec<(char, &'a Rule)> {
    let (n, m) = (a.len(), b.len());
    let mut l = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || l[i][j + 1] >= l[i + 1][j]) {
            out.push(('+', &b[j]));
            j += 1;
        } else {
            out.push(('-', &a[i]));
            i += 1;
        }
    }
    out
}

/// The readable lines of a change: a chain's rules and a set's elements one
/// line each (a set of thousands of prefixes is one line with its count).
pub fn view(c: &NftChange) -> Vec<ViewLine> {
    match c {
        NftChange::AddTable => vec![line('+', format!("table {NFT_FAMILY} {NFT_TABLE}"))],
        NftChange::DeleteTable { table: t } => {
            let mut v = vec![line('-', format!("table {NFT_FAMILY} {NFT_TABLE}"))];
            for (name, ch) in &t.chains {
                v.push(line('-', chain_head(name, ch)));
                v.extend(ch.rules.iter().map(|r| line('-', rule_line(name, r))));
            }
            for (name, s) in &t.sets {
                v.push(line('-', set_line(name, s)));
            }
            v
        }
        NftChange::AddChain { name, chain } => {
            let mut v = vec![line('+', chain_head(name, chain))];
            v.extend(chain.rules.iter().map(|r| line('+', rule_line(name, r))));
            v
        }
        NftChange::DeleteChain { name, chain } => {
            let mut v = vec![line('-', chain_head(name, chain))];
            v.extend(chain.rules.iter().map(|r| line('-', rule_line(name, r))));
            v
        }
        NftChange::ReplaceChain { name, from, to } => {
            let mut v = Vec::new();
            if from.base != to.base {
                v.push(line('-', chain_head(name, from)));
                v.push(line('+', chain_head(name, to)));
            }
            v.extend(
                rule_diff(&from.rules, &to.rules)
                    .into_iter()
                    .map(|(s, r)| line(s, rule_line(name, r))),
            );
            v
        }
        NftChange::AddSet { name, set } => vec![line('+', set_line(name, set))],
        NftChange::DeleteSet { name, set } => vec![line('-', set_line(name, set))],
        NftChange::Elements { name, add, delete } => delete
            .iter()
            .map(|e| line('-', elem_line(name, e)))
            .chain(add.iter().map(|e| line('+', elem_line(name, e))))
            .collect(),
    }
}

fn set_line(name: &str, s: &Set) -> String {
    format!(
        "set {name} {{ type {}; flags {}; }} ({} elements)",
        s.kind,
        s.flags.join(","),
        s.elements.len()
    )
}

/// Elements per `add element` statement: keeps each line of the payload
/// bounded (nft reads a 16,000-element line fine, an editor less so).
const ELEMS_PER_STATEMENT: usize = 1024;

fn elements(out: &mut String, verb: &str, set: &str, elems: &[&Elem]) {
    for chunk in elems.chunks(ELEMS_PER_STATEMENT) {
        let _ = write!(out, "{verb} element {NFT_FAMILY} {NFT_TABLE} {set} {{ ");
        for (i, e) in chunk.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{e}");
        }
        out.push_str(" }\n");
    }
}

/// A whole set's elements as one statement, one element per line: the boot
/// file is sent as a line edit of the one there (converge's file delta), so
/// one changed prefix is one or two changed lines, not a shifted chunk.
fn elements_by_line(out: &mut String, set: &str, s: &Set) {
    if s.elements.is_empty() {
        return;
    }
    let _ = writeln!(out, "add element {NFT_FAMILY} {NFT_TABLE} {set} {{");
    let n = s.elements.len();
    for (i, e) in s.elements.iter().enumerate() {
        let _ = writeln!(out, "\t{e}{}", if i + 1 < n { "," } else { "" });
    }
    out.push_str("}\n");
}

fn add_chain(out: &mut String, name: &str, base: &Option<BaseChain>) {
    match base {
        Some(b) => {
            let _ = writeln!(out, "add chain {NFT_FAMILY} {NFT_TABLE} {name} {{ {b} }}");
        }
        None => {
            let _ = writeln!(out, "add chain {NFT_FAMILY} {NFT_TABLE} {name}");
        }
    }
}

fn rules(out: &mut String, name: &str, c: &Chain) {
    for r in &c.rules {
        let _ = writeln!(out, "add rule {NFT_FAMILY} {NFT_TABLE} {name} {r}");
    }
}

fn set_decl(s: &Set) -> String {
    if s.flags.is_empty() {
        format!("{{ type {}; }}", s.kind)
    } else {
        format!("{{ type {}; flags {}; }}", s.kind, s.flags.join(","))
    }
}

/// One `nft -f` transaction making the changes (empty when there are none).
/// Order: table; flush every chain that changes or goes (which drops their
/// references to sets); delete chains and sets that go; add sets; element
/// deletes, then adds; add chains and refill replaced ones. Every rule is
/// rendered from desired state: a live rule dwprov cannot spell is never
/// written back, only flushed.
pub fn payload(changes: &[NftChange]) -> String {
    let mut out = String::new();
    if changes.is_empty() {
        return out;
    }
    if changes
        .iter()
        .any(|c| matches!(c, NftChange::DeleteTable { .. }))
    {
        // Removing the owned table: one statement, nothing of anyone else's.
        let _ = writeln!(out, "delete table {NFT_FAMILY} {NFT_TABLE}");
        return out;
    }
    let _ = writeln!(out, "add table {NFT_FAMILY} {NFT_TABLE}");
    let t = format!("{NFT_FAMILY} {NFT_TABLE}");
    for c in changes {
        match c {
            NftChange::ReplaceChain { name, .. } | NftChange::DeleteChain { name, .. } => {
                let _ = writeln!(out, "flush chain {t} {name}");
            }
            _ => {}
        }
    }
    for c in changes {
        match c {
            NftChange::DeleteChain { name, .. } => {
                let _ = writeln!(out, "delete chain {t} {name}");
            }
            NftChange::ReplaceChain { name, from, to } if from.base != to.base => {
                let _ = writeln!(out, "delete chain {t} {name}");
            }
            _ => {}
        }
    }
    for c in changes {
        if let NftChange::DeleteSet { name, .. } = c {
            let _ = writeln!(out, "delete set {t} {name}");
        }
    }
    for c in changes {
        if let NftChange::AddSet { name, set } = c {
            let _ = writeln!(out, "add set {t} {name} {}", set_decl(set));
            let _ = writeln!(out, "flush set {t} {name}");
            let all: Vec<&Elem> = set.elements.iter().collect();
            elements(&mut out, "add", name, &all);
        }
    }
    for c in changes {
        if let NftChange::Elements { name, delete, .. } = c {
            let d: Vec<&Elem> = delete.iter().collect();
            elements(&mut out, "delete", name, &d);
        }
    }
    for c in changes {
        if let NftChange::Elements { name, add, .. } = c {
            let a: Vec<&Elem> = add.iter().collect();
            elements(&mut out, "add", name, &a);
        }
    }
    for c in changes {
        match c {
            NftChange::AddChain { name, chain } => {
                add_chain(&mut out, name, &chain.base);
                let _ = writeln!(out, "flush chain {t} {name}");
                rules(&mut out, name, chain);
            }
            NftChange::ReplaceChain { name, to, .. } => {
                add_chain(&mut out, name, &to.base);
                rules(&mut out, name, to);
            }
            _ => {}
        }
    }
    out
}

/// The whole table as one transaction from whatever is there (boot
/// restore, a fresh host): every chain and set added and flushed, then
/// filled. Chains and sets of the live table that the desired one lacks
/// are not known here; use [`payload`] of a [`diff`] for those.
pub fn full(desired: &Nftables) -> String {
    let Some(t) = &desired.table else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(out, "add table {NFT_FAMILY} {NFT_TABLE}");
    let tn = format!("{NFT_FAMILY} {NFT_TABLE}");
    for (name, c) in &t.chains {
        add_chain(&mut out, name, &c.base);
        let _ = writeln!(out, "flush chain {tn} {name}");
    }
    for (name, s) in &t.sets {
        let _ = writeln!(out, "add set {tn} {name} {}", set_decl(s));
        let _ = writeln!(out, "flush set {tn} {name}");
        elements_by_line(&mut out, name, s);
    }
    for (name, c) in &t.chains {
        rules(&mut out, name, c);
    }
    out
}
