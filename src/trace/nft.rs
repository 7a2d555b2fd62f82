//! The nftables backend's owned table as the tracer's iptables model: each
//! base chain becomes an owned chain jumped to first in the built-in chain
//! of its hook (mangle for the filter/route chains at mangle - 1, nat for
//! the nat ones at dstnat/srcnat - 1: before iptables-nft's tables), its rules spelled as the iptables rules of the same
//! effect (`ct mark set ...` as `CONNMARK --set-xmark`, `ip daddr @set` as
//! one rule per element). So `explain` and `check` judge an nftables
//! gateway by the same walk as an iptables one, in the same hook order.
use crate::ownership::{CHAIN_PREFIX, JUMP_COMMENT};
use crate::state::iptables::Iptables;
use crate::state::nftables::{net_str, Elem, MarkKey, Nftables, Rule, Stmt, Table};
use std::fmt::Write;

/// `base` with the table's chains added: in a built-in chain the jumps go
/// first, as the priorities below iptables-nft's make them run first.
pub fn merged(base: &Iptables, nft: &Nftables) -> Iptables {
    let mut out = base.clone();
    let Some(t) = &nft.table else {
        return out;
    };
    let Ok(view) = Iptables::parse(&save_of(t)) else {
        return out;
    };
    for (tname, vt) in view.tables {
        let ot = out.tables.entry(tname).or_default();
        for (cname, vc) in vt.chains {
            let oc = ot.chains.entry(cname).or_default();
            if oc.policy.is_none() {
                oc.policy = vc.policy;
            }
            let rest = std::mem::take(&mut oc.rules);
            oc.rules = vc.rules;
            oc.rules.extend(rest);
        }
    }
    out
}

/// (iptables table, built-in chain) of a base chain.
fn hook_of(kind: &str, hook: &str) -> Option<(&'static str, &'static str)> {
    let chain = match hook {
        "prerouting" => "PREROUTING",
        "output" => "OUTPUT",
        "postrouting" => "POSTROUTING",
        "input" => "INPUT",
        "forward" => "FORWARD",
        _ => return None,
    };
    match kind {
        "nat" => Some(("nat", chain)),
        "filter" | "route" => Some(("mangle", chain)),
        _ => None,
    }
}

fn save_of(t: &Table) -> String {
    let mut per: std::collections::BTreeMap<&str, (Vec<String>, Vec<String>)> = Default::default();
    for (name, c) in &t.chains {
        let Some(b) = &c.base else { continue };
        let Some((table, builtin)) = hook_of(&b.kind, &b.hook) else {
            continue;
        };
        let owned = format!("{CHAIN_PREFIX}NFT-{name}");
        let (decl, rules) = per.entry(table).or_default();
        let d = format!(":{builtin} ACCEPT [0:0]");
        if !decl.contains(&d) {
            decl.push(d);
        }
        decl.push(format!(":{owned} - [0:0]"));
        rules.push(format!(
            "-A {builtin} -m comment --comment {JUMP_COMMENT} -j {owned}"
        ));
        for r in &c.rules {
            for spec in rule_specs(r, t) {
                rules.push(format!("-A {owned} {spec}"));
            }
        }
    }
    let mut s = String::new();
    for (table, (decl, rules)) in per {
        let _ = writeln!(
            s,
            "*{table}\n{}\n{}\nCOMMIT",
            decl.join("\n"),
            rules.join("\n")
        );
    }
    s
}

/// The iptables spellings of one rule: none when a statement has no
/// iptables twin (the rule is left out), one per element for a set match.
fn rule_specs(r: &Rule, t: &Table) -> Vec<String> {
    let mut heads = vec![String::new()];
    for s in &r.stmts {
        let add = |heads: &mut Vec<String>, part: &str| {
            for h in heads.iter_mut() {
                h.push(' ');
                h.push_str(part);
            }
        };
        match s {
            Stmt::Iif(n) => add(&mut heads, &format!("-i {n}")),
            Stmt::Oif(n) => add(&mut heads, &format!("-o {n}")),
            Stmt::CtState(v) => add(
                &mut heads,
                &format!("-m conntrack --ctstate {}", v.join(",").to_uppercase()),
            ),
            Stmt::Saddr(n) => add(&mut heads, &format!("-s {n}")),
            Stmt::Daddr(n) => add(&mut heads, &format!("-d {n}")),
            Stmt::DaddrIn(set) => {
                let Some(set) = t.sets.get(set) else {
                    return Vec::new();
                };
                let nets: Vec<String> = set
                    .elements
                    .iter()
                    .filter_map(|e| match e {
                        Elem::Net(n) => Some(net_str(n)),
                        _ => None,
                    })
                    .collect();
                heads = heads
                    .iter()
                    .flat_map(|h| nets.iter().map(move |n| format!("{h} -d {n}")))
                    .collect();
            }
            Stmt::Dport { proto, port } => {
                add(&mut heads, &format!("-p {proto} -m {proto} --dport {port}"))
            }
            Stmt::MarkIs { key, mask, value } => {
                let m = match key {
                    MarkKey::Ct => "connmark",
                    MarkKey::Meta => "mark",
                };
                add(&mut heads, &format!("-m {m} --mark {value:#x}/{mask:#x}"))
            }
            Stmt::SetMark { key, from, and, or } if key == from => {
                // (x & and) | or == (x & ~m) ^ v with m = ~and | or, v = or.
                let target = match key {
                    MarkKey::Ct => "CONNMARK",
                    MarkKey::Meta => "MARK",
                };
                add(
                    &mut heads,
                    &format!("-j {target} --set-xmark {or:#x}/{:#x}", !and | or),
                )
            }
            Stmt::SetMark {
                key: MarkKey::Meta,
                from: MarkKey::Ct,
                and,
                or: 0,
            } => add(
                &mut heads,
                &format!("-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask {and:#x}"),
            ),
            Stmt::Dnat { addr, port } => add(
                &mut heads,
                &format!(
                    "-j DNAT --to-destination {addr}{}",
                    port.map(|p| format!(":{p}")).unwrap_or_default()
                ),
            ),
            Stmt::Snat { addr, port } => add(
                &mut heads,
                &format!(
                    "-j SNAT --to-source {addr}{}",
                    port.map(|p| format!(":{p}")).unwrap_or_default()
                ),
            ),
            Stmt::Masquerade => add(&mut heads, "-j MASQUERADE"),
            _ => return Vec::new(),
        }
    }
    heads.into_iter().map(|h| h.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Method;

    #[test]
    fn the_seed_table_reads_as_iptables_rules() {
        let gw = crate::render::tests::seed(Method::Fwmark);
        let nft = crate::render::nftables::desired(&gw, true);
        let ipt = merged(&Iptables::default(), &nft);
        let save = ipt.to_string();
        for want in [
            "-A PREROUTING -m comment --comment dwprov -j DWPROV-NFT-mangle_prerouting",
            "-A DWPROV-NFT-nat_prerouting -i eth1 -j CONNMARK --set-xmark 0x100/0xff00",
            "-A DWPROV-NFT-nat_postrouting -o eth2 -j CONNMARK --set-xmark 0x200/0xff00",
            "-A DWPROV-NFT-mangle_prerouting -d 100.65.0.0/16 -i eth0 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x200/0xff00",
            "-A DWPROV-NFT-nat_prerouting -d 203.0.113.2/32 -p tcp -m tcp --dport 2222 -j DNAT --to-destination 192.168.0.100:22",
            "-A DWPROV-NFT-nat_postrouting -s 192.168.0.0/24 -o eth2 -j SNAT --to-source 203.0.113.2",
        ] {
            assert!(save.contains(want), "{want}\n{save}");
        }
    }
}
