//! One packet through the iptables chains of a hook, as the kernel walks them.
//!
//! A built-in chain's rules in order, jumps into user chains (and `-g`
//! gotos) followed, `RETURN` back; the first rule whose matches all hold
//! acts: `MARK` and `CONNMARK` change the packet's or the connection's
//! mark and go on, `DNAT`/`SNAT`/`MASQUERADE`/`REDIRECT` rewrite and end the
//! table, `ACCEPT` ends the table, `DROP`/`REJECT` end the packet; at the end
//! of a built-in chain its policy applies. The nat table sees only a
//! connection's first packet. Matches this tracer does not model are
//! assumed not to hold, and each such rule is named in the trace.
//!
//! A rule of the nftables view that matches a set ([`SetMatches`]) is one
//! rule here, walked as the rules of its elements would be: a world's
//! firewall is O(rules), not O(set elements).
use super::addr::{self, Addr, Net};
use super::Hop;
use crate::state::iptables::{IptRule, Iptables, Match, Neg, Opt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A connection's state as the conntrack match sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct {
    /// The first packet of a connection.
    New,
    /// A reply (or any later packet) of a tracked connection.
    Established,
}

/// The packet as the chains see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkt {
    pub src: Addr,
    pub dst: Addr,
    /// IP protocol number; None: a packet of no protocol the rules name
    /// (no `--proto` was given).
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Where it came in (None: sent by the gateway).
    pub iif: Option<String>,
    /// Where it goes out (set from POSTROUTING/FORWARD/OUTPUT on).
    pub oif: Option<String>,
    pub mark: u32,
    pub ctmark: u32,
    pub ct: Ct,
}

/// An address rewrite a NAT target chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nat {
    /// New destination (and port).
    Dnat(Option<Addr>, Option<u16>),
    /// New source (and port).
    Snat(Option<Addr>, Option<u16>),
    /// The source becomes the outgoing interface's address.
    Masquerade,
    /// The destination becomes the incoming interface's address (and port).
    Redirect(Option<u16>),
}

/// How a table's walk of a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Dropped (or rejected) by this rule.
    Drop(String),
}

/// What the walk needs to know about the gateway.
pub trait Host {
    /// Whether `a` is one of the gateway's own addresses (`addrtype LOCAL`).
    fn is_local(&self, a: Addr) -> bool;
}

/// The rules of the nftables view that match a set (`ip daddr @set`,
/// [`super::nft`]): by (table, chain, index of the rule in the chain), the
/// set's elements in the set's order. Such a rule is listed once, with its
/// first element as `-d`, and walked as one rule per element: the rule of
/// each element holding the packet's destination, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetMatches(BTreeMap<(String, String, usize), Arc<Vec<Net>>>);

impl SetMatches {
    pub fn insert(&mut self, table: &str, chain: &str, index: usize, elems: Arc<Vec<Net>>) {
        self.0
            .insert((table.to_string(), chain.to_string(), index), elems);
    }

    pub fn get(&self, table: &str, chain: &str, index: usize) -> Option<&Arc<Vec<Net>>> {
        // Asked for every rule walked: no key built when there is no set.
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&(table.to_string(), chain.to_string(), index))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every (table, chain, index) and its elements.
    pub fn iter(
        &self,
    ) -> std::collections::btree_map::Iter<'_, (String, String, usize), Arc<Vec<Net>>> {
        self.0.iter()
    }
}

const BUILTIN: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
/// Deeper than any real rule set nests; a loop of jumps ends here.
const MAX_DEPTH: usize = 64;

/// Walk `table`'s built-in chain `hook` with `pkt`: marks change in place;
/// the NAT rewrite (if a rule chose one) is returned for the caller to
/// apply where the kernel does.
pub fn walk(
    ipt: &Iptables,
    sets: &SetMatches,
    table: &str,
    hook: &str,
    pkt: &mut Pkt,
    host: &dyn Host,
    hops: &mut Vec<Hop>,
) -> (Verdict, Option<Nat>) {
    let Some(chain) = ipt.chain(table, hook) else {
        return (Verdict::Accept, None);
    };
    let mut w = Walker {
        ipt,
        sets,
        table,
        host,
        hops,
        nat: None,
    };
    match w.chain(hook, pkt, 0) {
        End::Verdict(v) => (v, w.nat),
        End::Return | End::Fell => {
            let policy = chain.policy.as_deref().unwrap_or("ACCEPT");
            if policy == "DROP" {
                let why = format!("{table} {hook}: the chain's policy DROP");
                w.hops.push(Hop::new("drop", &why));
                (Verdict::Drop(why), None)
            } else {
                (Verdict::Accept, w.nat)
            }
        }
    }
}

enum End {
    Verdict(Verdict),
    /// `RETURN`: back to the calling chain.
    Return,
    /// The end of the chain was reached.
    Fell,
}

struct Walker<'a, 'h> {
    ipt: &'a Iptables,
    sets: &'a SetMatches,
    table: &'a str,
    host: &'a dyn Host,
    hops: &'h mut Vec<Hop>,
    nat: Option<Nat>,
}

/// A match's answer: Err names what is not modelled.
type Answer = Result<bool, String>;

impl Walker<'_, '_> {
    fn chain(&mut self, name: &str, pkt: &mut Pkt, depth: usize) -> End {
        if depth > MAX_DEPTH {
            self.hops.push(Hop::new(
                "note",
                &format!(
                    "{} {name}: jumps nest deeper than {MAX_DEPTH}: stopped following them",
                    self.table
                ),
            ));
            return End::Fell;
        }
        let Some(chain) = self.ipt.chain(self.table, name) else {
            return End::Fell;
        };
        for (i, rule) in chain.rules.iter().enumerate() {
            let Some(elems) = self.sets.get(self.table, name, i) else {
                if let Some(end) = self.rule(name, rule, pkt, depth) {
                    return end;
                }
                continue;
            };
            // A set match: the rule of each element holding the packet's
            // destination in the set's order, as if each were spelled (the
            // rules of the other elements cannot match: their `-d` fails).
            let dst = pkt.dst;
            for n in elems.iter().filter(|n| addr::contains(n, dst)) {
                let mut r = rule.clone();
                r.destination = Some(Neg {
                    negated: false,
                    value: format!("{}/{}", n.network(), n.prefix_len()),
                });
                if let Some(end) = self.rule(name, &r, pkt, depth) {
                    return end;
                }
            }
        }
        End::Fell
    }

    /// One rule: Some when it ends the chain's walk.
    fn rule(&mut self, name: &str, rule: &IptRule, pkt: &mut Pkt, depth: usize) -> Option<End> {
        match self.rule_matches(rule, pkt) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(why) => {
                self.hops.push(Hop::new(
                    "note",
                    &format!(
                        "{} {name}: `{rule}`: {why}: assumed not to match",
                        self.table
                    ),
                ));
                return None;
            }
        }
        let Some(t) = &rule.target else {
            return None;
        };
        let at = format!("{} {name}: {rule}", self.table);
        match t.name.as_str() {
            "ACCEPT" => return Some(End::Verdict(Verdict::Accept)),
            "DROP" | "REJECT" => {
                self.hops.push(Hop::new("drop", &at));
                return Some(End::Verdict(Verdict::Drop(at)));
            }
            "RETURN" => return Some(End::Return),
            "MARK" => {
                if let Some((v, m)) = opt(&t.options, "set-xmark").and_then(parse_mark) {
                    pkt.mark = (pkt.mark & !m) ^ v;
                    self.hops
                        .push(Hop::new("mark", &format!("{at}  → mark {:#x}", pkt.mark)));
                }
            }
            "CONNMARK" => {
                let nfmask = opt(&t.options, "nfmask")
                    .and_then(parse_u32)
                    .unwrap_or(u32::MAX);
                let ctmask = opt(&t.options, "ctmask")
                    .and_then(parse_u32)
                    .unwrap_or(u32::MAX);
                if let Some((v, m)) = opt(&t.options, "set-xmark").and_then(parse_mark) {
                    pkt.ctmark = (pkt.ctmark & !m) ^ v;
                    self.hops.push(Hop::new(
                        "mark",
                        &format!("{at}  → ctmark {:#x}", pkt.ctmark),
                    ));
                } else if has(&t.options, "restore-mark") {
                    pkt.mark = (pkt.mark & !nfmask) ^ (pkt.ctmark & ctmask);
                    self.hops
                        .push(Hop::new("mark", &format!("{at}  → mark {:#x}", pkt.mark)));
                } else if has(&t.options, "save-mark") {
                    pkt.ctmark = (pkt.ctmark & !ctmask) ^ (pkt.mark & nfmask);
                    self.hops.push(Hop::new(
                        "mark",
                        &format!("{at}  → ctmark {:#x}", pkt.ctmark),
                    ));
                }
            }
            "DNAT" | "SNAT" => {
                let key = if t.name == "DNAT" {
                    "to-destination"
                } else {
                    "to-source"
                };
                let to = opt(&t.options, key).and_then(addr::parse_nat_to);
                let Some((a, p)) = to else {
                    self.hops.push(Hop::new(
                        "note",
                        &format!("{at}: its address is not IPv4 text the tracer reads: ignored"),
                    ));
                    return None;
                };
                let (step, nat) = if t.name == "DNAT" {
                    ("dnat", Nat::Dnat(a, p))
                } else {
                    ("snat", Nat::Snat(a, p))
                };
                self.hops.push(Hop::new(step, &at));
                self.nat = Some(nat);
                return Some(End::Verdict(Verdict::Accept));
            }
            "MASQUERADE" => {
                self.hops.push(Hop::new("snat", &at));
                self.nat = Some(Nat::Masquerade);
                return Some(End::Verdict(Verdict::Accept));
            }
            "REDIRECT" => {
                let port = opt(&t.options, "to-ports")
                    .and_then(|p| p.split('-').next())
                    .and_then(|p| p.parse().ok());
                self.hops.push(Hop::new("dnat", &at));
                self.nat = Some(Nat::Redirect(port));
                return Some(End::Verdict(Verdict::Accept));
            }
            "LOG" | "NFLOG" | "TRACE" | "CLASSIFY" | "TCPMSS" | "DSCP" | "TOS" | "TTL"
            | "NOTRACK" | "CT" | "CHECKSUM" => {}
            target if BUILTIN.contains(&target) => {}
            target => {
                if self.ipt.chain(self.table, target).is_some() {
                    match self.chain(target, pkt, depth + 1) {
                        End::Verdict(v) => return Some(End::Verdict(v)),
                        // A goto's RETURN returns from the chain that went there.
                        End::Return | End::Fell if t.goto => return Some(End::Return),
                        End::Return | End::Fell => {}
                    }
                } else {
                    self.hops.push(Hop::new(
                        "note",
                        &format!(
                            "{at}: target {target} is not modelled: assumed to let the packet on"
                        ),
                    ));
                }
            }
        }
        None
    }

    fn rule_matches(&self, r: &IptRule, p: &Pkt) -> Answer {
        if !net_is(&r.source, p.src)? || !net_is(&r.destination, p.dst)? {
            return Ok(false);
        }
        if !iface_is(&r.in_interface, p.iif.as_deref())
            || !iface_is(&r.out_interface, p.oif.as_deref())
        {
            return Ok(false);
        }
        if let Some(proto) = &r.protocol {
            let is = match (super::fib::proto_number(&proto.value), p.proto) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => return Err(format!("protocol `{}` is not modelled", proto.value)),
            };
            if is == proto.negated {
                return Ok(false);
            }
        }
        // The tracer's packets are never fragments.
        if r.fragment == Some(false) {
            return Ok(false);
        }
        for m in &r.matches {
            if !self.match_holds(m, p)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn match_holds(&self, m: &Match, p: &Pkt) -> Answer {
        for o in &m.options {
            let arg = o.args.first().map(String::as_str).unwrap_or("");
            let holds = match (m.module.as_str(), o.name.as_str()) {
                ("comment", _) | ("limit", _) => true,
                ("tcp" | "udp", "dport") => {
                    p.proto == super::fib::proto_number(&m.module) && port_in(p.dport, arg)
                }
                ("tcp" | "udp", "sport") => {
                    p.proto == super::fib::proto_number(&m.module) && port_in(p.sport, arg)
                }
                ("multiport", "dports") => arg.split(',').any(|a| port_in(p.dport, a)),
                ("multiport", "sports") => arg.split(',').any(|a| port_in(p.sport, a)),
                ("multiport", "ports") => arg
                    .split(',')
                    .any(|a| port_in(p.dport, a) || port_in(p.sport, a)),
                ("mark", "mark") => mark_is(p.mark, arg)?,
                ("connmark", "mark") => mark_is(p.ctmark, arg)?,
                ("conntrack", "ctstate") | ("state", "state") => arg.split(',').any(|s| {
                    matches!(
                        (s, p.ct),
                        ("NEW", Ct::New) | ("ESTABLISHED", Ct::Established)
                    )
                }),
                ("addrtype", "dst-type") => addrtype(self.host, p.dst, arg)?,
                ("addrtype", "src-type") => addrtype(self.host, p.src, arg)?,
                ("addrtype", "limit-iface-in" | "limit-iface-out") => true,
                (module, name) => {
                    return Err(format!("`-m {module} --{name}` is not modelled"));
                }
            };
            if holds == o.negated {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn opt<'a>(opts: &'a [Opt], name: &str) -> Option<&'a str> {
    opts.iter()
        .find(|o| o.name == name)
        .and_then(|o| o.args.first())
        .map(String::as_str)
}

fn has(opts: &[Opt], name: &str) -> bool {
    opts.iter().any(|o| o.name == name)
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `V/M` (or `V`, all ones).
fn parse_mark(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn mark_is(mark: u32, arg: &str) -> Answer {
    let (v, m) = parse_mark(arg).ok_or_else(|| format!("mark `{arg}` is not modelled"))?;
    Ok(mark & m == v)
}

/// `-s`/`-d`: Err when the value is not IPv4 text.
fn net_is(n: &Option<Neg<String>>, a: Addr) -> Answer {
    let Some(n) = n else { return Ok(true) };
    let net = addr::parse_ipt_net(&n.value)
        .ok_or_else(|| format!("address `{}` is not modelled", n.value))?;
    Ok(addr::contains(&net, a) != n.negated)
}

/// `-i`/`-o`, with iptables' `+` wildcard suffix. A packet without the
/// interface (no `-o` before routing, no `-i` on the gateway's own) never
/// matches a positive test.
fn iface_is(n: &Option<Neg<String>>, iface: Option<&str>) -> bool {
    let Some(n) = n else { return true };
    let is = match iface {
        None => false,
        Some(i) => match n.value.strip_suffix('+') {
            Some(prefix) => i.starts_with(prefix),
            None => i == n.value,
        },
    };
    is != n.negated
}

/// `80` or `1000:2000`.
fn port_in(port: Option<u16>, arg: &str) -> bool {
    let Some(p) = port else { return false };
    match arg.split_once(':') {
        Some((lo, hi)) => {
            let lo = lo.parse().unwrap_or(0);
            let hi = hi.parse().unwrap_or(u16::MAX);
            lo <= p && p <= hi
        }
        None => arg.parse() == Ok(p),
    }
}

fn addrtype(host: &dyn Host, a: Addr, arg: &str) -> Answer {
    let mut any = false;
    for t in arg.split(',') {
        any |= match t {
            "LOCAL" => host.is_local(a),
            "UNICAST" => !addr::is_broadcast(a) && !a.is_multicast() && !host.is_local(a),
            "BROADCAST" => addr::is_broadcast(a),
            "MULTICAST" => a.is_multicast(),
            other => return Err(format!("addrtype {other} is not modelled")),
        };
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Gw;
    impl Host for Gw {
        fn is_local(&self, a: Addr) -> bool {
            a == "198.51.100.2".parse::<Addr>().unwrap()
        }
    }

    /// [`walk`] of rules that use no nftables set.
    fn walk_plain(
        ipt: &Iptables,
        table: &str,
        hook: &str,
        pkt: &mut Pkt,
        host: &dyn Host,
        hops: &mut Vec<Hop>,
    ) -> (Verdict, Option<Nat>) {
        walk(ipt, &SetMatches::default(), table, hook, pkt, host, hops)
    }

    fn pkt(src: &str, dst: &str, iif: &str) -> Pkt {
        Pkt {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: Some(6),
            sport: Some(40000),
            dport: Some(80),
            iif: Some(iif.into()),
            oif: None,
            mark: 0,
            ctmark: 0,
            ct: Ct::New,
        }
    }

    const RULES: &str = "*mangle\n\
        :PREROUTING ACCEPT [0:0]\n\
        :DWPROV-PREROUTING - [0:0]\n\
        -A PREROUTING -m comment --comment dwprov -j DWPROV-PREROUTING\n\
        -A DWPROV-PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xff00\n\
        -A DWPROV-PREROUTING -i eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00\n\
        COMMIT\n\
        *nat\n\
        :PREROUTING ACCEPT [0:0]\n\
        :DOCKER - [0:0]\n\
        :DWPROV-PREROUTING - [0:0]\n\
        -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
        -A PREROUTING -m comment --comment dwprov -j DWPROV-PREROUTING\n\
        -A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n\
        -A DOCKER -j RETURN\n\
        -A DWPROV-PREROUTING -d 198.51.100.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.0.100\n\
        COMMIT\n\
        *filter\n\
        :FORWARD DROP [0:0]\n\
        -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A FORWARD -m weird --thing 1 -j ACCEPT\n\
        COMMIT\n";

    #[test]
    fn marks_nat_jumps_returns_policy_and_unknown_matches() {
        let ipt = Iptables::parse(RULES).unwrap();
        let mut hops = Vec::new();
        let mut p = pkt("100.64.1.10", "198.51.100.2", "eth1");
        let (v, nat) = walk_plain(&ipt, "mangle", "PREROUTING", &mut p, &Gw, &mut hops);
        assert_eq!(
            (v, nat, p.ctmark, p.mark),
            (Verdict::Accept, None, 0x100, 0)
        );
        let (v, nat) = walk_plain(&ipt, "nat", "PREROUTING", &mut p, &Gw, &mut hops);
        assert_eq!(v, Verdict::Accept);
        // DOCKER's RETURN goes back, then dwprov's DNAT acts
        assert_eq!(
            nat,
            Some(Nat::Dnat(Some("192.168.0.100".parse().unwrap()), None))
        );
        let mut p8080 = pkt("100.64.1.10", "198.51.100.2", "eth1");
        p8080.dport = Some(8080);
        let (_, nat) = walk_plain(&ipt, "nat", "PREROUTING", &mut p8080, &Gw, &mut hops);
        assert_eq!(
            nat,
            Some(Nat::Dnat(Some("172.17.0.2".parse().unwrap()), Some(80)))
        );
        // filter FORWARD: a new connection falls through to the DROP policy,
        // and the rule with an unknown match is named
        let mut hops = Vec::new();
        let (v, _) = walk_plain(&ipt, "filter", "FORWARD", &mut p, &Gw, &mut hops);
        assert!(
            matches!(v, Verdict::Drop(ref w) if w.contains("policy DROP")),
            "{v:?}"
        );
        assert!(hops.iter().any(|h| h.what.contains("-m weird")), "{hops:?}");
        // a reply in on the LAN gets the connection's mark back
        let mut r = pkt("192.168.0.100", "100.64.1.10", "eth0");
        r.ct = Ct::Established;
        r.ctmark = 0x100;
        r.mark = 0x1_0000;
        walk_plain(&ipt, "mangle", "PREROUTING", &mut r, &Gw, &mut hops);
        assert_eq!(r.mark, 0x1_0100);
        let (v, _) = walk_plain(&ipt, "filter", "FORWARD", &mut r, &Gw, &mut hops);
        assert_eq!(v, Verdict::Accept);
    }

    #[test]
    fn jump_loops_end() {
        let ipt = Iptables::parse(
            "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n",
        )
        .unwrap();
        let mut hops = Vec::new();
        let mut p = pkt("1.1.1.1", "198.51.100.2", "eth1");
        let (v, _) = walk_plain(&ipt, "filter", "INPUT", &mut p, &Gw, &mut hops);
        assert_eq!(v, Verdict::Accept);
        assert!(hops.iter().any(|h| h.what.contains("deeper")));
    }
}
