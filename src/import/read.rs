//! Recognising a hand-made gateway in its gathered state: which of the
//! seed's three methods it uses, its lines, LANs, NAT, forwards, hairpin and
//! policies, as the inventory values that render the same behaviour. Pure:
//! `Facts` in, [`Adopted`] out (what was mapped, what was guessed, what was
//! left foreign), tested on state built from captured command text.
use crate::facts::Facts;
use crate::state::iptables::{IptRule, Opt};
use crate::state::{Route, Rule, RuleAction};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The kernel's own tables and rules (local, main, default) are not the admin's.
const KERNEL_TABLES: [u32; 3] = [253, 254, 255];

/// A line as the inventory writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub name: String,
    pub table: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    pub interface: String,
    pub address: String,
    pub gateway: IpAddr,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Destination prefixes via this line (inline or, when long, a file).
    #[serde(skip)]
    pub prefixes: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lan {
    pub interface: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Forward {
    pub proto: String,
    pub port: u16,
    pub to: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<u16>,
    /// Empty: every line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Policy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub line: String,
}

/// What the import recognised on one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adopted {
    pub method: &'static str,
    pub lan: Vec<Lan>,
    pub lines: Vec<Line>,
    /// `snat`, `masquerade` or `none`.
    pub nat: &'static str,
    pub forwards: Vec<Forward>,
    pub hairpin: bool,
    pub policies: Vec<Policy>,
    /// Set when the marks do not fit dwprov's default mask.
    pub mark_mask: Option<u32>,
    /// Where a value was inferred rather than read (said as comments).
    pub guesses: Vec<String>,
    /// Live objects not mapped to the inventory: dwprov leaves them as they are.
    pub foreign: Vec<String>,
}

/// Why a host cannot be imported.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// dwprov already manages it (its owned objects are there).
    Managed(String),
    /// No line recognised: nothing to import.
    NoLines(String),
}

/// Read a hand-made gateway. `management` is the address dwprov connects
/// to (its interface is not a LAN unless the rules say it is).
pub fn adopt(facts: &Facts, management: Option<IpAddr>) -> Result<Adopted, Refusal> {
    refuse_managed(facts)?;
    let st = &facts.state;
    let mut a = Adopted::default();
    let mut mapped_routes: BTreeSet<usize> = BTreeSet::new();

    // Lines: every table a rule looks up that has a default route via a gateway.
    let tables: BTreeSet<u32> = st
        .rules
        .iter()
        .filter_map(|r| match r.action {
            RuleAction::Table(t) if !KERNEL_TABLES.contains(&t) => Some(t),
            _ => None,
        })
        .collect();
    for t in tables {
        let Some((i, d)) = st
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.table == t && r.dst.prefix_len() == 0 && r.via.is_some())
        else {
            a.foreign.push(format!(
                "ip rules look up table {} which has no default route via a gateway: not a line",
                st.rt_tables.label(t)
            ));
            continue;
        };
        let (Some(gw), Some(dev)) = (d.via, d.dev.clone()) else {
            continue;
        };
        mapped_routes.insert(i);
        let address = line_address(facts, &dev, gw, d.src, st, t);
        let Some(address) = address else {
            a.foreign.push(format!(
                "table {}: default via {gw} dev {dev}, but {dev} has no IPv4 address: not a line",
                st.rt_tables.label(t)
            ));
            continue;
        };
        let name = match st.rt_tables.name_of(t) {
            Some(n) if valid_name(n) => n.to_string(),
            _ => {
                let n = format!("line{t}");
                a.guesses.push(format!(
                    "table {t} has no usable name in rt_tables: line named `{n}`"
                ));
                n
            }
        };
        a.lines.push(Line {
            name,
            table: t,
            mark: None,
            interface: dev.to_string(),
            address: address.to_string(),
            gateway: gw,
            default: false,
            prefixes: Vec::new(),
        });
    }
    if a.lines.is_empty() {
        return Err(Refusal::NoLines(
            "no line found: no ip rule looks up a table holding a default route via a gateway (the seed's source-return tables)".into(),
        ));
    }

    // The default line: main's default route.
    let main_default = st
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.table == 254 && r.dst.prefix_len() == 0 && r.metric == 0);
    match main_default {
        Some((i, r)) => {
            match a.lines.iter_mut().find(|l| {
                Some(l.gateway) == r.via && r.dev.as_deref() == Some(l.interface.as_str())
            }) {
                Some(l) => {
                    l.default = true;
                    mapped_routes.insert(i);
                }
                None => {
                    a.lines[0].default = true;
                    a.guesses.push(format!(
                        "main's default route ({}) uses no line: line {} made the default",
                        route_text(r, st),
                        a.lines[0].name
                    ));
                }
            }
        }
        None => {
            a.lines[0].default = true;
            a.guesses.push(format!(
                "no default route in main: line {} made the default",
                a.lines[0].name
            ));
        }
    }

    // Rules: source-return, marks, destination lists, policies.
    let line_of_table: BTreeMap<u32, usize> = a
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.table, i))
        .collect();
    let mut dest_rules: Vec<(usize, IpNet)> = Vec::new();
    let mut has_fwmark = false;
    for r in &st.rules {
        if crate::state::ip::KERNEL_RULES
            .iter()
            .any(|&(p, _)| p == r.priority)
            && r.from.is_none()
            && r.to.is_none()
        {
            continue;
        }
        let RuleAction::Table(t) = r.action else {
            a.foreign.push(format!("ip rule {}", rule_text(r, st)));
            continue;
        };
        let Some(&li) = line_of_table.get(&t) else {
            if !KERNEL_TABLES.contains(&t) || r.from.is_some() || r.to.is_some() {
                a.foreign.push(format!("ip rule {}", rule_text(r, st)));
            }
            continue;
        };
        if r.family() != crate::state::Family::Inet {
            continue;
        }
        let plain = !r.not && r.iif.is_none() && r.oif.is_none() && r.extra.is_empty();
        let line_ip = a.lines[li]
            .address
            .split('/')
            .next()
            .and_then(|s| s.parse::<IpAddr>().ok());
        match (r.from, r.to, r.fwmark) {
            (Some(f), None, None) if plain && f.prefix_len() == 32 && Some(f.addr()) == line_ip => {
            }
            (None, None, Some(m)) if plain => {
                a.lines[li].mark = Some(m.value);
                has_fwmark = true;
            }
            (None, Some(to), None) if plain => {
                dest_rules.push((li, to));
            }
            (from, to, None) if plain => {
                a.policies.push(Policy {
                    from: from.map(|n| n.to_string()),
                    to: to.map(|n| n.to_string()),
                    line: a.lines[li].name.clone(),
                });
            }
            _ => a.foreign.push(format!("ip rule {}", rule_text(r, st))),
        }
    }

    // Destination routes in main via a line.
    let mut main_lists: Vec<(usize, IpNet)> = Vec::new();
    for (i, r) in st.routes.iter().enumerate() {
        if r.table != 254 || r.dst.prefix_len() == 0 || r.kind != "unicast" {
            continue;
        }
        if let Some(li) = a.lines.iter().position(|l| {
            Some(l.gateway) == r.via && r.dev.as_deref() == Some(l.interface.as_str())
        }) {
            main_lists.push((li, r.dst));
            mapped_routes.insert(i);
        }
    }

    // The method, from what the rules and routes say.
    let marks_in_mangle = mangle_marks(facts);
    a.method = if has_fwmark {
        "fwmark"
    } else if dest_rules.len() > main_lists.len() {
        "policy"
    } else {
        "static"
    };
    if has_fwmark && marks_in_mangle.is_empty() {
        a.guesses.push("fwmark rules but no CONNMARK marking in mangle or nat: method fwmark assumed (dwprov marks connections itself)".into());
    }
    // Destination rules are the prefix lists under method policy, else policies.
    let (lists, policies): (Vec<_>, Vec<_>) = if a.method == "policy" {
        (dest_rules.iter().chain(&main_lists).collect(), Vec::new())
    } else {
        (main_lists.iter().collect(), dest_rules.iter().collect())
    };
    for &(li, p) in lists {
        a.lines[li].prefixes.push(p);
    }
    for &(li, p) in policies {
        a.policies.push(Policy {
            from: None,
            to: Some(p.to_string()),
            line: a.lines[li].name.clone(),
        });
    }
    for l in &mut a.lines {
        l.prefixes.sort();
        l.prefixes.dedup();
    }
    if a.lines.iter().any(|l| l.mark.is_none()) && a.method == "fwmark" {
        a.guesses
            .push("some lines carry no fwmark rule: dwprov derives their marks".into());
    }
    let marks: Vec<u32> = a.lines.iter().filter_map(|l| l.mark).collect();
    if marks
        .iter()
        .any(|m| m & !crate::ownership::DEFAULT_MARK_MASK != 0)
    {
        let mask = marks.iter().fold(0u32, |acc, m| acc | byte_mask(*m));
        a.mark_mask = Some(mask);
        a.guesses.push(format!(
            "the marks do not fit dwprov's default mark_mask {:#x}: mark_mask {mask:#x}",
            crate::ownership::DEFAULT_MARK_MASK
        ));
    }

    // LANs: networks the line tables route to a non-line interface, or
    // that NAT rules name as a source.
    let line_ifs: BTreeSet<&str> = a.lines.iter().map(|l| l.interface.as_str()).collect();
    let nat_sources = nat_sources(facts);
    for i in &facts.interfaces {
        if i.name == "lo" || line_ifs.contains(i.name.as_str()) {
            continue;
        }
        for addr in &i.addresses {
            let net = addr.trunc();
            let in_line_table = st.routes.iter().any(|r| {
                line_of_table.contains_key(&r.table)
                    && r.dst == net
                    && r.dev.as_deref() == Some(i.name.as_str())
            });
            if in_line_table || nat_sources.contains(&net) {
                a.lan.push(Lan {
                    interface: i.name.clone(),
                    address: addr.to_string(),
                });
            }
        }
    }
    if a.lan.is_empty() {
        for i in &facts.interfaces {
            if i.name == "lo" || line_ifs.contains(i.name.as_str()) {
                continue;
            }
            for addr in &i.addresses {
                if Some(addr.addr()) == management {
                    continue;
                }
                a.lan.push(Lan {
                    interface: i.name.clone(),
                    address: addr.to_string(),
                });
            }
        }
        a.guesses.push("no LAN is named by a line table or a NAT rule: every other interface with an address taken as a LAN".into());
    }
    // Connected routes of lines and LANs in line tables are the seed's.
    for (i, r) in st.routes.iter().enumerate() {
        if line_of_table.contains_key(&r.table) && r.via.is_none() {
            mapped_routes.insert(i);
        }
    }

    read_nat(facts, &mut a);
    for (i, r) in st.routes.iter().enumerate() {
        if mapped_routes.contains(&i) || r.table == 255 || r.proto == 2 {
            continue;
        }
        if r.table == 254 && r.via.is_none() {
            continue; // connected or device routes in main stay as they are
        }
        a.foreign.push(format!("ip route {}", route_text(r, st)));
    }
    Ok(a)
}

fn refuse_managed(facts: &Facts) -> Result<(), Refusal> {
    use crate::ownership::{is_owned_chain, is_owned_route, is_owned_rule};
    let st = &facts.state;
    let rules = st.rules.iter().filter(|r| is_owned_rule(*r)).count();
    let routes = st.routes.iter().filter(|r| is_owned_route(*r)).count();
    let chains = st
        .firewall
        .iptables
        .tables
        .values()
        .flat_map(|t| t.chains.keys())
        .filter(|c| is_owned_chain(c))
        .count();
    if rules + routes + chains > 0 {
        return Err(Refusal::Managed(format!(
            "dwprov already manages this host ({rules} owned rules, {routes} owned routes, {chains} owned chains)"
        )));
    }
    Ok(())
}

/// The line's address on `dev`: the rule-named or route `src`, else the
/// interface address whose network holds the gateway.
fn line_address(
    facts: &Facts,
    dev: &str,
    gw: IpAddr,
    src: Option<IpAddr>,
    st: &crate::state::State,
    table: u32,
) -> Option<IpNet> {
    let iface = facts.interface(dev)?;
    let from_rule = st
        .rules
        .iter()
        .find_map(|r| match (r.action.clone(), r.from) {
            (RuleAction::Table(t), Some(f)) if t == table && f.prefix_len() == 32 => Some(f.addr()),
            _ => None,
        });
    for want in [src, from_rule].into_iter().flatten() {
        if let Some(a) = iface.addresses.iter().find(|a| a.addr() == want) {
            return Some(*a);
        }
    }
    iface
        .addresses
        .iter()
        .find(|a| a.contains(&gw))
        .or(iface.addresses.first())
        .copied()
}

/// Line names dwprov accepts (it writes them to rt_tables).
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn byte_mask(m: u32) -> u32 {
    (0..4)
        .map(|b| 0xffu32 << (8 * b))
        .filter(|mask| m & mask != 0)
        .fold(0, |a, b| a | b)
}

fn rule_text(r: &Rule, st: &crate::state::State) -> String {
    r.display(&|t| st.rt_tables.label(t))
}

fn route_text(r: &Route, st: &crate::state::State) -> String {
    format!("{} table {}", r.display(), st.rt_tables.label(r.table))
}

fn opt<'a>(opts: &'a [Opt], name: &str) -> Option<&'a str> {
    opts.iter()
        .find(|o| o.name == name && !o.negated)
        .and_then(|o| o.args.first())
        .map(String::as_str)
}

fn target_opt<'a>(r: &'a IptRule, name: &str) -> Option<&'a str> {
    r.target.as_ref().and_then(|t| opt(&t.options, name))
}

fn dport(r: &IptRule) -> Option<u16> {
    r.matches
        .iter()
        .find_map(|m| opt(&m.options, "dport"))
        .and_then(|p| p.parse().ok())
}

fn plain(n: &Option<crate::state::iptables::Neg<String>>) -> Option<&str> {
    n.as_ref().filter(|n| !n.negated).map(|n| n.value.as_str())
}

fn net(s: &str) -> Option<IpNet> {
    s.parse().ok()
}

/// `(interface, mark)` of every CONNMARK set in mangle's or nat's built-in
/// chains (nat: the shape dwprov renders, marking a connection's first packet only).
fn mangle_marks(facts: &Facts) -> Vec<(String, u32)> {
    let tables = &facts.state.firewall.iptables.tables;
    let mut out = Vec::new();
    let chains = ["mangle", "nat"]
        .iter()
        .filter_map(|t| tables.get(*t))
        .flat_map(|t| &t.chains);
    for (name, chain) in chains {
        if chain.policy.is_none() {
            continue;
        }
        for r in &chain.rules {
            if r.target() == Some("CONNMARK") {
                if let Some(v) = target_opt(r, "set-xmark").or(target_opt(r, "set-mark")) {
                    let v = v.split('/').next().unwrap_or(v);
                    let m = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok();
                    let iface = plain(&r.in_interface)
                        .or(plain(&r.out_interface))
                        .unwrap_or(name);
                    if let Some(m) = m {
                        out.push((iface.to_string(), m));
                    }
                }
            }
        }
    }
    out
}

/// Sources of the SNAT/MASQUERADE rules in nat POSTROUTING.
fn nat_sources(facts: &Facts) -> BTreeSet<IpNet> {
    let Some(post) = facts.state.firewall.iptables.chain("nat", "POSTROUTING") else {
        return BTreeSet::new();
    };
    post.rules
        .iter()
        .filter(|r| matches!(r.target(), Some("SNAT" | "MASQUERADE")))
        .filter_map(|r| plain(&r.source).and_then(net))
        .collect()
}

/// NAT mode, forwards and hairpin from the nat table; every other rule of
/// nat and mangle's built-in chains, and every chain of another tool, is foreign.
fn read_nat(facts: &Facts, a: &mut Adopted) {
    let ipt = &facts.state.firewall.iptables;
    let line_by_ip: BTreeMap<String, String> = a
        .lines
        .iter()
        .map(|l| {
            (
                l.address.split('/').next().unwrap_or("").to_string(),
                l.name.clone(),
            )
        })
        .collect();
    let line_by_if: BTreeMap<&str, &str> = a
        .lines
        .iter()
        .map(|l| (l.interface.as_str(), l.name.as_str()))
        .collect();
    let lan_nets: BTreeSet<IpNet> = a
        .lan
        .iter()
        .filter_map(|l| l.address.parse::<IpNet>().ok().map(|n| n.trunc()))
        .collect();
    let lan_ips: BTreeSet<String> = a
        .lan
        .iter()
        .map(|l| l.address.split('/').next().unwrap_or("").to_string())
        .collect();
    let mut modes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut forwards: BTreeMap<(String, u16, IpAddr, Option<u16>), BTreeSet<String>> =
        BTreeMap::new();
    let mut hairpins: BTreeSet<(String, u16, IpAddr)> = BTreeSet::new();
    for (table, t) in &ipt.tables {
        for (cname, chain) in &t.chains {
            if chain.policy.is_none() {
                a.foreign.push(format!(
                    "iptables -t {table}: chain {cname} ({} rules) of another tool",
                    chain.rules.len()
                ));
                continue;
            }
            for r in &chain.rules {
                let mapped = match (table.as_str(), cname.as_str(), r.target()) {
                    ("nat", "POSTROUTING", Some("SNAT")) => {
                        let to = target_opt(r, "to-source").unwrap_or("");
                        let src = plain(&r.source).and_then(net);
                        if let (Some(o), Some(_)) = (plain(&r.out_interface), src) {
                            if line_by_if.contains_key(o) && line_by_ip.contains_key(to) {
                                *modes.entry("snat").or_default() += 1;
                                true
                            } else {
                                false
                            }
                        } else if let (Some(s), Some(d), Some(p), Some(port)) = (
                            src,
                            plain(&r.destination).and_then(net),
                            plain(&r.protocol),
                            dport(r),
                        ) {
                            if lan_nets.contains(&s) && lan_ips.contains(to) && d.prefix_len() == 32
                            {
                                hairpins.insert((p.to_string(), port, d.addr()));
                                true
                            } else {
                                false
                            }
                        } else {
                            false
                        }
                    }
                    ("nat", "POSTROUTING", Some("MASQUERADE")) => {
                        let ok =
                            plain(&r.out_interface).is_some_and(|o| line_by_if.contains_key(o));
                        if ok {
                            *modes.entry("masquerade").or_default() += 1;
                        }
                        ok
                    }
                    ("nat", "PREROUTING", Some("DNAT")) => {
                        let to = target_opt(r, "to-destination").unwrap_or("");
                        let (addr, port) = match to.split_once(':') {
                            Some((a, p)) => (a, p.parse::<u16>().ok()),
                            None => (to, None),
                        };
                        match (addr.parse::<IpAddr>(), plain(&r.protocol), dport(r)) {
                            (Ok(to), Some(p), Some(dp)) => {
                                let lines: BTreeSet<String> = match plain(&r.destination) {
                                    Some(d) => line_by_ip
                                        .get(d.trim_end_matches("/32"))
                                        .into_iter()
                                        .cloned()
                                        .collect(),
                                    None => a.lines.iter().map(|l| l.name.clone()).collect(),
                                };
                                if lines.is_empty() {
                                    false
                                } else {
                                    forwards
                                        .entry((p.to_string(), dp, to, port.filter(|p| *p != dp)))
                                        .or_default()
                                        .extend(lines);
                                    true
                                }
                            }
                            _ => false,
                        }
                    }
                    ("mangle" | "nat", _, Some("CONNMARK")) if a.method == "fwmark" => true,
                    ("nat" | "mangle", _, _) => false,
                    // filter and raw: dwprov does not manage them.
                    _ => true,
                };
                if !mapped {
                    a.foreign
                        .push(format!("iptables -t {table} -A {cname} {r}"));
                }
            }
        }
    }
    a.nat = match (modes.get("snat"), modes.get("masquerade")) {
        (None, None) => "none",
        (Some(_), None) => "snat",
        (None, Some(_)) => "masquerade",
        (Some(s), Some(m)) => {
            a.guesses.push(format!(
                "{s} SNAT and {m} MASQUERADE rules: the more common one taken"
            ));
            if s >= m {
                "snat"
            } else {
                "masquerade"
            }
        }
    };
    let all: BTreeSet<String> = a.lines.iter().map(|l| l.name.clone()).collect();
    for ((proto, port, to, to_port), lines) in forwards {
        a.forwards.push(Forward {
            proto,
            port,
            to,
            to_port,
            lines: if lines == all {
                Vec::new()
            } else {
                a.lines
                    .iter()
                    .filter(|l| lines.contains(&l.name))
                    .map(|l| l.name.clone())
                    .collect()
            },
        });
    }
    let covered = a
        .forwards
        .iter()
        .filter(|f| hairpins.contains(&(f.proto.clone(), f.to_port.unwrap_or(f.port), f.to)))
        .count();
    a.hairpin = !a.forwards.is_empty() && covered > 0;
    if a.hairpin && covered < a.forwards.len() {
        a.guesses.push(format!(
            "hairpin NAT for {covered} of {} forwards: hairpin on for all",
            a.forwards.len()
        ));
    }
}

#[cfg(test)]
mod tests;
