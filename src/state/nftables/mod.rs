//! nftables state: dwprov's one owned table ([`crate::ownership::NFT_TABLE`]
//! in family [`crate::ownership::NFT_FAMILY`]) as a typed value.
//!
//! Live state is parsed from `nft -j list table inet dwprov` ([`json`]);
//! desired state is built from the intent (`crate::render::nftables`), written
//! as a script and parsed back ([`script`]); both are values of
//! the same types in one canonical form, so a table right after an apply
//! compares equal to what was rendered. The canonical form is nft's own
//! listing: what nft normalises on load (a `/32` written as an address, the
//! mark mask `and ~m or v` folded into `and (~m | v) or v`, a state list in
//! any order) is normalised here the same way. What dwprov never writes is
//! kept as [`Stmt::Other`] (its compact JSON), so hand drift shows exactly.
//! [`diff`] turns two values into changes and one `nft -f` transaction.
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

pub mod diff;
pub mod json;
pub mod script;
#[cfg(test)]
mod tests;

/// The owned table, if the host has it. Nothing else of the ruleset is
/// ever read into this value: other tables are not dwprov's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Nftables {
    pub table: Option<Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// None for a regular chain (only reached by a jump).
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// A base chain's `type`, `hook`, `priority` and `policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseChain {
    /// `filter`, `nat` or `route`.
    pub kind: String,
    pub hook: String,
    pub priority: i32,
    pub policy: String,
}

/// A named set. dwprov writes only `type ipv4_addr; flags interval;` sets
/// of prefixes; another type or flag (drift) compares unequal and is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Set {
    /// The type as nft lists it (`ipv4_addr`; a concatenation joined by ` . `).
    pub kind: String,
    /// Sorted.
    pub flags: Vec<String>,
    pub elements: BTreeSet<Elem>,
}

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Elem {
    /// A prefix (an address is a `/32`), host bits cleared.
    Net(IpNet),
    /// `a-b`, as nft lists a range that is no prefix.
    Range(IpAddr, IpAddr),
    /// Anything else, as compact JSON (an element with a timeout, a concatenation).
    Other(String),
}

/// A rule: its statements in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
}

/// `ct mark` or `meta mark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MarkKey {
    Ct,
    Meta,
}

/// The statements dwprov writes, in canonical form; the rest as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Stmt {
    /// `iifname "x"`
    Iif(String),
    /// `oifname "x"`
    Oif(String),
    /// `ct state a,b` (sorted).
    CtState(Vec<String>),
    /// `ip saddr P` (`ip6 saddr` for an IPv6 prefix)
    Saddr(IpNet),
    /// `ip daddr P`
    Daddr(IpNet),
    /// `ip daddr @set`
    DaddrIn(String),
    /// `tcp dport N` / `udp dport N`
    Dport {
        proto: String,
        port: u16,
    },
    /// `KEY and MASK == VALUE` (MASK all ones: `KEY VALUE`).
    MarkIs {
        key: MarkKey,
        mask: u32,
        value: u32,
    },
    /// `KEY set FROM and AND or OR`; canonical: `and` includes every bit of `or`.
    SetMark {
        key: MarkKey,
        from: MarkKey,
        and: u32,
        or: u32,
    },
    /// `dnat ip to A[:P]`
    Dnat {
        addr: IpAddr,
        port: Option<u16>,
    },
    /// `snat ip to A[:P]`
    Snat {
        addr: IpAddr,
        port: Option<u16>,
    },
    Masquerade,
    /// A statement dwprov does not write, as compact JSON (keys sorted).
    Other(String),
}

impl Stmt {
    /// A mark statement in canonical form: `(from & and) | or` with the bits
    /// of `or` also in `and` (the same value; nft lists it this way).
    pub fn set_mark(key: MarkKey, from: MarkKey, and: u32, or: u32) -> Stmt {
        Stmt::SetMark {
            key,
            from,
            and: and | or,
            or,
        }
    }
}

impl fmt::Display for MarkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MarkKey::Ct => "ct mark",
            MarkKey::Meta => "meta mark",
        })
    }
}

/// An address or prefix the way nft reads it: a host prefix as the bare
/// address (`ip::net_str`).
pub fn net_str(n: &IpNet) -> String {
    crate::state::ip::net_str(*n)
}

/// A NAT target `A[:P]` (`[A]:P` for IPv6, as nft reads it).
fn to_str(addr: &IpAddr, port: &Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// nft's match word for an address's family: `ip` or `ip6`.
fn fam(a: &IpAddr) -> &'static str {
    crate::state::Family::of_addr(a).nft_family()
}

/// nft syntax (what `add rule` takes). `Other` has no nft spelling here
/// and prints as its JSON behind `#`: it is never rendered, only shown.
impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Iif(n) => write!(f, "iifname \"{n}\""),
            Stmt::Oif(n) => write!(f, "oifname \"{n}\""),
            Stmt::CtState(s) => write!(f, "ct state {}", s.join(",")),
            Stmt::Saddr(n) => write!(f, "{} saddr {}", fam(&n.addr()), net_str(n)),
            Stmt::Daddr(n) => write!(f, "{} daddr {}", fam(&n.addr()), net_str(n)),
            Stmt::DaddrIn(s) => write!(f, "ip daddr @{s}"),
            Stmt::Dport { proto, port } => write!(f, "{proto} dport {port}"),
            Stmt::MarkIs { key, mask, value } if *mask == u32::MAX => {
                write!(f, "{key} {value:#x}")
            }
            Stmt::MarkIs { key, mask, value } => write!(f, "{key} and {mask:#x} == {value:#x}"),
            Stmt::SetMark { key, from, and, or } => {
                write!(f, "{key} set {from}")?;
                if *and != u32::MAX {
                    write!(f, " and {and:#x}")?;
                }
                if *or != 0 {
                    write!(f, " or {or:#x}")?;
                }
                Ok(())
            }
            Stmt::Dnat { addr, port } => write!(f, "dnat {} to {}", fam(addr), to_str(addr, port)),
            Stmt::Snat { addr, port } => write!(f, "snat {} to {}", fam(addr), to_str(addr, port)),
            Stmt::Masquerade => f.write_str("masquerade"),
            Stmt::Other(j) => write!(f, "# not dwprov's: {j}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stmts.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Net(n) => f.write_str(&net_str(n)),
            Elem::Range(a, b) => write!(f, "{a}-{b}"),
            Elem::Other(j) => write!(f, "# not dwprov's: {j}"),
        }
    }
}

/// The names nft uses for the standard priorities of the hooks dwprov uses,
/// so a listing reads `mangle - 1` as nft prints it.
pub fn priority_str(hook_kind: &str, hook: &str, p: i32) -> String {
    let named: &[(&str, i32)] = match (hook_kind, hook) {
        ("nat", "prerouting") => &[("dstnat", -100)],
        ("nat", "postrouting") => &[("srcnat", 100)],
        _ => &[("mangle", -150), ("filter", 0)],
    };
    for (name, v) in named {
        let d = p - v;
        if d == 0 {
            return (*name).to_string();
        }
        if d.abs() <= 10 {
            return format!("{name} {} {}", if d > 0 { '+' } else { '-' }, d.abs());
        }
    }
    p.to_string()
}

impl fmt::Display for BaseChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The numeric priority is what nft takes everywhere; the name is for people.
        write!(
            f,
            "type {} hook {} priority {}; policy {};",
            self.kind, self.hook, self.priority, self.policy
        )
    }
}
