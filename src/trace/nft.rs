//! The nftables backend's owned table as the tracer's iptables model: each
//! base chain becomes an owned chain jumped to first in the built-in chain
//! of its hook (mangle for the filter/route chains at mangle - 1, nat for
//! the nat ones at dstnat/srcnat - 1: before iptables-nft's tables), its rules spelled as the iptables rules of the same
//! effect (`ct mark set ...` as `CONNMARK --set-xmark`, `ip daddr @set` as
//! one rule listed with the set's first element and the set's elements in
//! [`SetMatches`], walked as one rule per element: a view of a 16,000
//! element set is a few rules, not 16,000). So `explain` and `check` judge
//! an nftables gateway by the same walk as an iptables one, in the same
//! hook order.
use super::netfilter::SetMatches;
use crate::ownership::{CHAIN_PREFIX, JUMP_COMMENT};
use crate::state::iptables::Iptables;
use crate::state::nftables::{net_str, Elem, MarkKey, Nftables, Rule, Stmt, Table};
use std::fmt::Write;

/// `base` with the table's chains added: in a built-in chain the jumps go
/// first, as the priorities below iptables-nft's make them run first. The
/// set matches of the owned chains' rules come beside it.
pub fn merged(base: &Iptables, nft: &Nftables) -> (Iptables, SetMatches) {
    let mut out = base.clone();
    let mut sets = SetMatches::default();
    let Some(t) = &nft.table else {
        return (out, sets);
    };
    let (text, mut expand) = save_of(t);
    let Ok(view) = Iptables::parse(&text) else {
        return (out, sets);
    };
    for (tname, vt) in view.tables {
        let ot = out.tables.entry(tname.clone()).or_default();
        for (cname, vc) in vt.chains {
            // The view's rules go first below, so their indices hold.
            for (i, e) in expand
                .remove(&cname)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                if let Some(nets) = e {
                    sets.insert(&tname, &cname, i, std::sync::Arc::new(nets));
                }
            }
            let oc = ot.chains.entry(cname).or_default();
            if oc.policy.is_none() {
                oc.policy = vc.policy;
            }
            let rest = std::mem::take(&mut oc.rules);
            oc.rules = vc.rules;
            oc.rules.extend(rest);
        }
    }
    (out, sets)
}

/// `ipt` with each set match spelled out, a rule per element (the parsed
/// rule cloned with its `-d` replaced): what the walk treats a set rule
/// as, for the tests to compare with.
#[cfg(test)]
pub fn spelled_out(ipt: &Iptables, sets: &SetMatches) -> Iptables {
    let mut out = ipt.clone();
    for ((table, chain, index), nets) in sets.iter().rev() {
        let Some(c) = out
            .tables
            .get_mut(table)
            .and_then(|t| t.chains.get_mut(chain))
        else {
            continue;
        };
        let Some(r) = c.rules.get(*index).cloned() else {
            continue;
        };
        let each = nets.iter().map(|n| {
            let mut c = r.clone();
            // iptables-save's canonical spelling (`canon_addr`).
            c.destination = Some(crate::state::iptables::Neg {
                negated: false,
                value: format!("{}/{}", n.network(), n.prefix_len()),
            });
            c
        });
        c.rules.splice(*index..*index + 1, each);
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

/// The table as iptables-save text, and per owned chain, rule by rule, the
/// elements a rule stands for (`None`: itself only; see [`SetMatches`]).
#[allow(clippy::type_complexity)]
fn save_of(
    t: &Table,
) -> (
    String,
    std::collections::BTreeMap<String, Vec<Option<Vec<ipnet::IpNet>>>>,
) {
    let mut expand: std::collections::BTreeMap<String, Vec<Option<Vec<ipnet::IpNet>>>> =
        Default::default();
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
        let exp = expand.entry(owned.clone()).or_default();
        for r in &c.rules {
            let (specs, nets) = rule_specs(r, t);
            for spec in specs {
                rules.push(format!("-A {owned} {spec}"));
                exp.push(nets.clone());
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
    (s, expand)
}

/// The iptables spellings of one rule: none when a statement has no
/// iptables twin (the rule is left out). The first set match is spelled
/// with the set's first element and its elements returned (each stands
/// for one rule, [`SetMatches`]); a further one in the same rule, one
/// spelling per element.
fn rule_specs(r: &Rule, t: &Table) -> (Vec<String>, Option<Vec<ipnet::IpNet>>) {
    let mut heads = vec![String::new()];
    let mut expand: Option<Vec<ipnet::IpNet>> = None;
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
                    return (Vec::new(), None);
                };
                let elems: Vec<ipnet::IpNet> = set
                    .elements
                    .iter()
                    .filter_map(|e| match e {
                        Elem::Net(n) => Some(*n),
                        _ => None,
                    })
                    .collect();
                if expand.is_none() {
                    let Some(first) = elems.first() else {
                        return (Vec::new(), None);
                    };
                    add(&mut heads, &format!("-d {}", net_str(first)));
                    expand = Some(elems);
                    continue;
                }
                let nets: Vec<String> = elems.iter().map(net_str).collect();
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
            _ => return (Vec::new(), None),
        }
    }
    (
        heads.into_iter().map(|h| h.trim().to_string()).collect(),
        expand,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Method;

    /// The seed's method-set table with four more prefixes on cnc (nested
    /// and apart), and its tracer view with the sets beside it.
    fn seed_with_sets() -> (Nftables, Iptables, SetMatches) {
        let mut gw = crate::render::tests::seed(Method::Fwmark);
        gw.lines[1].routes = ["100.65.0.0/16", "10.1.2.3/32", "10.9.0.0/24", "10.8.0.0/15"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let nft = crate::render::nftables::desired(&gw, true);
        let (view, sets) = merged(&Iptables::default(), &nft);
        (nft, view, sets)
    }

    #[test]
    fn a_set_match_reads_as_if_each_element_were_spelled_and_parsed() {
        let (nft, view, sets) = seed_with_sets();
        let fast = spelled_out(&view, &sets);
        // The reference: every element spelled out in the text, all parsed.
        let (text, expand) = save_of(nft.table.as_ref().unwrap());
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        let mut spelled = String::new();
        let mut sets = 0;
        for line in text.lines() {
            let chain = line.strip_prefix("-A ").and_then(|l| l.split(' ').next());
            let exp = chain.and_then(|c| {
                let i = seen.entry(c.to_string()).or_default();
                *i += 1;
                expand.get(c).and_then(|e| e.get(*i - 1)).cloned().flatten()
            });
            match exp {
                Some(nets) => {
                    sets += 1;
                    let first = format!(" -d {} ", net_str(&nets[0]));
                    assert!(line.contains(&first), "{line}");
                    for n in &nets {
                        spelled.push_str(&line.replace(&first, &format!(" -d {} ", net_str(n))));
                        spelled.push('\n');
                    }
                }
                None => {
                    spelled.push_str(line);
                    spelled.push('\n');
                }
            }
        }
        assert!(sets >= 2, "{text}");
        let slow = merged_from(&Iptables::parse(&spelled).unwrap());
        assert_eq!(fast.to_string(), slow.to_string());
        assert!(
            fast.to_string().contains("-d 10.1.2.3/32 -i eth0"),
            "{fast}"
        );
    }

    /// A packet walks a set rule as it walks the rules of its elements:
    /// same verdict, NAT, marks and hops (the rule each hop names).
    #[test]
    fn a_set_rule_walks_as_its_elements_spelled_out() {
        use crate::trace::netfilter::{walk, Ct, Host, Pkt};
        struct Gw;
        impl Host for Gw {
            fn is_local(&self, a: crate::trace::addr::Addr) -> bool {
                a == "203.0.113.2".parse::<crate::trace::addr::Addr>().unwrap()
            }
        }
        let (_, view, sets) = seed_with_sets();
        assert!(!sets.is_empty());
        let spelled = spelled_out(&view, &sets);
        let none = SetMatches::default();
        let mut marked = 0;
        for dst in [
            "10.1.2.3",
            "10.1.2.4",
            "10.9.0.77",
            "10.9.1.1",
            "100.65.3.4",
            "8.8.8.8",
        ] {
            for (table, hook) in [
                ("mangle", "PREROUTING"),
                ("mangle", "OUTPUT"),
                ("nat", "PREROUTING"),
            ] {
                let pkt = Pkt {
                    src: "192.168.0.50".parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    proto: Some(6),
                    sport: Some(40000),
                    dport: Some(80),
                    iif: Some("eth0".into()),
                    oif: None,
                    mark: 0,
                    ctmark: 0,
                    ct: Ct::New,
                };
                let (mut a, mut b) = (pkt.clone(), pkt);
                let (mut ha, mut hb) = (Vec::new(), Vec::new());
                let va = walk(&view, &sets, table, hook, &mut a, &Gw, &mut ha);
                let vb = walk(&spelled, &none, table, hook, &mut b, &Gw, &mut hb);
                assert_eq!(va, vb, "{dst} {table} {hook}");
                assert_eq!(a, b, "{dst} {table} {hook}");
                let text = |h: &[crate::trace::Hop]| {
                    h.iter()
                        .map(|h| format!("{} {}", h.step, h.what))
                        .collect::<Vec<_>>()
                };
                assert_eq!(text(&ha), text(&hb), "{dst} {table} {hook}");
                marked += usize::from(a.ctmark == 0x200);
            }
        }
        // The set's members got line cnc's mark, the others not: the walks
        // above compared something.
        assert!(marked >= 4, "{marked}");
    }

    /// `merged` of an empty base from an already parsed view.
    fn merged_from(view: &Iptables) -> Iptables {
        let mut out = Iptables::default();
        for (tname, vt) in &view.tables {
            let ot = out.tables.entry(tname.clone()).or_default();
            for (cname, vc) in &vt.chains {
                ot.chains.insert(cname.clone(), vc.clone());
            }
        }
        out
    }

    #[test]
    fn the_seed_table_reads_as_iptables_rules() {
        let gw = crate::render::tests::seed(Method::Fwmark);
        let nft = crate::render::nftables::desired(&gw, true);
        let (ipt, sets) = merged(&Iptables::default(), &nft);
        let save = spelled_out(&ipt, &sets).to_string();
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
