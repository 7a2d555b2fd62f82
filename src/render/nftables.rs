//! The desired owned table, built from the intent: the same marks, DNAT,
//! hairpin SNAT and line SNAT as `templates/iptables.rules.tera`, plus the
//! per-line prefix sets of method `set`.
//!
//! Built as typed values (no template): the table is one owned object, so
//! there is nothing for a template to own or mis-own, and the listing parser
//! gives the same values back (a kernel round-trip test pins that).
//!
//! Priorities, chosen so the order of effects is the iptables backend's,
//! also beside iptables-nft: iptables-nft registers its tables exactly at
//! the standard priorities, and the iptables backend inserts its jumps
//! first in the built-in chains, so dwprov's rules run before the other
//! software's rules of the same table. One below each standard priority
//! keeps that order (and stays after conntrack, -200):
//!
//! | chain | hook | priority | why |
//! |---|---|---|---|
//! | `mangle_prerouting` (filter) | prerouting | mangle - 1 (-151) | before routing: a LAN packet gets its connection's line mark back (the one rule every forwarded packet pays, as iptables' mangle PREROUTING restore); method set marks a LAN connection's first packet by its destination's set, before any DNAT |
//! | `mangle_output` (route) | output | mangle - 1 (-151) | a `route` chain: a mark set here re-routes the gateway's own packet, as iptables' mangle OUTPUT does |
//! | `nat_prerouting` (nat) | prerouting | dstnat - 1 (-101) | a connection's line by where its first packet came in, then DNAT; before iptables-nft's nat PREROUTING: dwprov's DNAT wins a forward's port, as its first jump does |
//! | `nat_postrouting` (nat) | postrouting | srcnat - 1 (99) | a connection's line by where it leaves, then hairpin SNAT, then line SNAT/MASQUERADE, before iptables-nft's nat POSTROUTING |
//!
//! Only a connection's first packet walks the nat chains, so marking there
//! costs later packets nothing (docs/methods.md, issue 13).
use crate::model::{Gateway, Method, NatMode};
use crate::state::nftables::{BaseChain, Chain, Elem, MarkKey, Nftables, Rule, Set, Stmt, Table};
use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub const MANGLE_PREROUTING: &str = "mangle_prerouting";
pub const MANGLE_OUTPUT: &str = "mangle_output";
pub const NAT_PREROUTING: &str = "nat_prerouting";
pub const NAT_POSTROUTING: &str = "nat_postrouting";

/// nft's standard priorities (`nft describe`: mangle -150, dstnat -100, srcnat 100).
const PRIO_MANGLE: i32 = -150;
const PRIO_DSTNAT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;

/// The name of line `line`'s prefix set (method set).
pub fn set_name(line: &str) -> String {
    format!("line_{line}")
}

fn base(kind: &str, hook: &str, priority: i32) -> Chain {
    Chain {
        base: Some(BaseChain {
            kind: kind.into(),
            hook: hook.into(),
            priority,
            policy: "accept".into(),
        }),
        rules: Vec::new(),
    }
}

fn rule(stmts: Vec<Stmt>) -> Rule {
    Rule { stmts }
}

fn state(s: &[&str]) -> Stmt {
    let mut v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
    v.sort();
    Stmt::CtState(v)
}

/// Each line's prefixes as set elements such that "the set whose element
/// holds the address" is the routing table's longest-prefix match: a
/// prefix listed first by one line wins (as in the route render), and a
/// line's prefix loses the parts a more specific prefix of another line
/// holds. Elements of one set do not overlap (nft refuses overlapping
/// intervals), so the sets are disjoint and the order of rules is moot.
/// The sets are `ipv4_addr` sets: an IPv6 prefix (none passes the
/// inventory today) would need `ipv6_addr` sets of its own, and is left out.
pub fn line_sets(gw: &Gateway) -> Vec<(String, BTreeSet<Elem>)> {
    let mut seen: HashSet<Ipv4Net> = HashSet::new();
    let mut owner: Vec<(Ipv4Net, usize)> = Vec::new();
    for (i, l) in gw.lines.iter().enumerate() {
        for p in &l.routes {
            let IpNet::V4(p) = p.trunc() else { continue };
            if seen.insert(p) {
                owner.push((p, i));
            }
        }
    }
    let mut per_line: Vec<Vec<Ipv4Net>> = vec![Vec::new(); gw.lines.len()];
    for (p, i) in &owner {
        per_line[*i].push(*p);
    }
    // Every prefix by (first address, length): the prefixes inside `p` are
    // the ones whose first address lies in `p`, one contiguous range of
    // this order, so each lookup is a binary search and its range, not a
    // scan of all of them (a scan per prefix made the render of a
    // 16,000-prefix list quadratic).
    let mut by_addr: Vec<(u32, u8, usize)> = owner
        .iter()
        .map(|(q, j)| (u32::from(q.network()), q.prefix_len(), *j))
        .collect();
    by_addr.sort_unstable();
    let others_more_specific = |p: &Ipv4Net, i: usize| -> Vec<Ipv4Net> {
        let (lo, hi) = (u32::from(p.network()), u32::from(p.broadcast()));
        let from = by_addr.partition_point(|&(a, _, _)| a < lo);
        by_addr[from..]
            .iter()
            .take_while(|&&(a, _, _)| a <= hi)
            .filter(|&&(_, len, j)| j != i && len > p.prefix_len())
            .filter_map(|&(a, len, _)| Ipv4Net::new(a.into(), len).ok())
            .collect()
    };
    let mut out = Vec::new();
    for (i, l) in gw.lines.iter().enumerate() {
        let mut parts: Vec<Ipv4Net> = Vec::new();
        for p in &per_line[i] {
            parts.extend(subtract(*p, &others_more_specific(p, i)));
        }
        // Drop what another element of the same set already covers: shorter
        // prefixes first, so a covering element is kept before what it
        // covers, and found among the (at most 32) supernets of a prefix.
        parts.sort_by_key(|n| (n.prefix_len(), n.addr()));
        let mut kept: HashSet<Ipv4Net> = HashSet::new();
        let mut ordered: Vec<Ipv4Net> = Vec::new();
        for n in parts {
            let covered = (0..=n.prefix_len())
                .filter_map(|len| Ipv4Net::new(n.addr(), len).ok())
                .any(|k| kept.contains(&k.trunc()));
            if !covered {
                kept.insert(n);
                ordered.push(n);
            }
        }
        out.push((
            l.name.clone(),
            ordered
                .into_iter()
                .map(|n| Elem::Net(IpNet::V4(n)))
                .collect(),
        ));
    }
    out
}

/// `p` without the `holes` (each inside `p`), as prefixes.
fn subtract(p: Ipv4Net, holes: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let inside: Vec<Ipv4Net> = holes.iter().copied().filter(|h| p.contains(h)).collect();
    if inside.is_empty() {
        return vec![p];
    }
    if inside.iter().any(|h| h.prefix_len() <= p.prefix_len()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for half in p.subnets(p.prefix_len() + 1).into_iter().flatten() {
        out.extend(subtract(half, &inside));
    }
    out
}

/// The owned table for `gw`; `None` when the intent needs no firewall
/// rules at all (the table is then removed, as the iptables backend
/// removes its chains). `sets`: classify LAN and gateway traffic by the
/// per-line prefix sets (method set) instead of by routes.
pub fn desired(gw: &Gateway, sets: bool) -> Nftables {
    let mask = gw.mark_mask;
    let keep = !mask;
    let marking = sets || gw.method == Method::Fwmark;
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    let mut set_map: BTreeMap<String, Set> = BTreeMap::new();
    // A connection's line, set where its first packet came in or leaves:
    // in the nat chains below, which only a connection's first packet walks.
    let mut line_marks_in: Vec<Rule> = Vec::new();
    let mut line_marks_out: Vec<Rule> = Vec::new();
    if marking {
        let mut pre = base("filter", "prerouting", PRIO_MANGLE - 1);
        let mut out = base("route", "output", PRIO_MANGLE - 1);
        let set_mark = |m: u32| Stmt::set_mark(MarkKey::Ct, MarkKey::Ct, keep, m);
        // nft 1.0.6 cannot OR two registers (`meta mark set meta mark & keep
        // | ct mark & mask` is refused), so the restore is one rule per
        // line mark: it keeps the packet's other mark bits. A first packet's
        // connection mark is still 0 and matches none of them: no state
        // test is needed to skip it.
        let restore = |m: u32| {
            vec![
                Stmt::MarkIs {
                    key: MarkKey::Ct,
                    mask,
                    value: m,
                },
                Stmt::set_mark(MarkKey::Meta, MarkKey::Meta, keep, m),
            ]
        };
        for l in &gw.lines {
            line_marks_in.push(rule(vec![Stmt::Iif(l.interface.clone()), set_mark(l.mark)]));
            line_marks_out.push(rule(vec![Stmt::Oif(l.interface.clone()), set_mark(l.mark)]));
        }
        let classified: Vec<(u32, String)> = if sets {
            let mut v = Vec::new();
            for (line, elems) in line_sets(gw) {
                let name = set_name(&line);
                let mark = gw.line(&line).map(|l| l.mark).unwrap_or(0);
                if !elems.is_empty() {
                    v.push((mark, name.clone()));
                }
                set_map.insert(
                    name,
                    Set {
                        kind: "ipv4_addr".into(),
                        flags: vec!["interval".into()],
                        elements: elems,
                    },
                );
            }
            v
        } else {
            Vec::new()
        };
        for lan in &gw.lan {
            // Method set: a LAN connection's first packet is routed by the
            // mark of the set its destination is in, so it is marked here,
            // before routing, and restored by the rule after.
            for (mark, name) in &classified {
                pre.rules.push(rule(vec![
                    Stmt::Iif(lan.interface.clone()),
                    state(&["new"]),
                    Stmt::DaddrIn(name.clone()),
                    set_mark(*mark),
                ]));
            }
            for l in &gw.lines {
                let mut r = vec![Stmt::Iif(lan.interface.clone())];
                r.extend(restore(l.mark));
                pre.rules.push(rule(r));
            }
        }
        for (mark, name) in &classified {
            out.rules.push(rule(vec![
                state(&["new"]),
                Stmt::DaddrIn(name.clone()),
                set_mark(*mark),
            ]));
        }
        // The gateway's own first packet may carry a mark of its own (the
        // agent's probes set SO_MARK): the state test keeps it, as the
        // iptables backend's OUTPUT restore does.
        for l in &gw.lines {
            let mut r = Vec::new();
            if !sets {
                r.push(state(&["established", "related"]));
            }
            r.extend(restore(l.mark));
            out.rules.push(rule(r));
        }
        chains.insert(MANGLE_PREROUTING.into(), pre);
        chains.insert(MANGLE_OUTPUT.into(), out);
    }
    // A dynamic line is MASQUERADEd whatever `nat` says (model::Line::masquerade).
    let nat_any = gw
        .lines
        .iter()
        .any(|l| gw.nat != NatMode::None || l.dynamic_address);
    if !gw.forwards.is_empty() || nat_any || marking {
        let mut pre = base("nat", "prerouting", PRIO_DSTNAT - 1);
        let mut post = base("nat", "postrouting", PRIO_SRCNAT - 1);
        // The marks first: setting a mark does not end the chain, the NAT
        // rules after it still apply.
        pre.rules.append(&mut line_marks_in);
        post.rules.append(&mut line_marks_out);
        for f in &gw.forwards {
            for l in gw.lines.iter().filter(|l| f.lines.contains(&l.name)) {
                // A dynamic line without an address now has no forward to take.
                let Some(address) = l.address else { continue };
                pre.rules.push(rule(vec![
                    Stmt::Daddr(IpNet::from(address.addr())),
                    Stmt::Dport {
                        proto: f.proto.as_str().into(),
                        port: f.port,
                    },
                    Stmt::Dnat {
                        addr: f.to,
                        port: f.to_port,
                    },
                ]));
            }
        }
        // Hairpin first: the LAN reaching a forward through a public address
        // must come back through the gateway, so it is SNATed to the LAN address.
        if gw.hairpin {
            let mut seen = Vec::new();
            for f in &gw.forwards {
                for lan in gw.lan.iter().filter(|l| l.address.contains(&f.to)) {
                    let r = rule(vec![
                        Stmt::Saddr(lan.address.trunc()),
                        Stmt::Daddr(IpNet::from(f.to)),
                        Stmt::Dport {
                            proto: f.proto.as_str().into(),
                            port: f.to_port.unwrap_or(f.port),
                        },
                        Stmt::Snat {
                            addr: lan.address.addr(),
                            port: None,
                        },
                    ]);
                    if !seen.contains(&r) {
                        seen.push(r.clone());
                        post.rules.push(r);
                    }
                }
            }
        }
        for l in gw
            .lines
            .iter()
            .filter(|l| gw.nat != NatMode::None || l.dynamic_address)
        {
            let snat_to = match l.address {
                Some(a) if !l.masquerade(gw.nat) => Some(a.addr()),
                _ => None,
            };
            for lan in &gw.lan {
                post.rules.push(rule(vec![
                    Stmt::Saddr(lan.address.trunc()),
                    Stmt::Oif(l.interface.clone()),
                    match snat_to {
                        Some(addr) => Stmt::Snat { addr, port: None },
                        None => Stmt::Masquerade,
                    },
                ]));
            }
        }
        if sets {
            // The gateway's own connection to a set's prefix took its source
            // address from the route before the mark re-routed it to another
            // line; that ISP would drop it, so it gets the line's address.
            // Only first packets reach a nat chain, and replies to inbound
            // connections leave by their own line: only these are rewritten.
            for l in &gw.lines {
                for other in gw.lines.iter().filter(|o| o.name != l.name) {
                    let Some(from) = other.address else { continue };
                    post.rules.push(rule(vec![
                        Stmt::Saddr(IpNet::from(from.addr())),
                        Stmt::Oif(l.interface.clone()),
                        match l.address {
                            Some(a) if !l.dynamic_address => Stmt::Snat {
                                addr: a.addr(),
                                port: None,
                            },
                            _ => Stmt::Masquerade,
                        },
                    ]));
                }
            }
        }
        chains.insert(NAT_PREROUTING.into(), pre);
        chains.insert(NAT_POSTROUTING.into(), post);
    }
    if chains.is_empty() {
        return Nftables::default();
    }
    Nftables {
        table: Some(Table {
            chains,
            sets: set_map,
        }),
    }
}

/// The render artefact of the nftables backend: the whole table as the
/// transaction `diff::full` writes (built from the intent, no template).
pub fn artefact(gw: &Gateway) -> String {
    crate::state::nftables::diff::full(&desired(gw, gw.method == Method::Set))
}
