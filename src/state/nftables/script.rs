//! The parser of an `nft -f` script in the form dwprov writes (the render
//! artefact, [`super::diff::full`]) back into [`Nftables`]: desired state
//! goes through text like the iptables backend's, and a statement outside
//! the owned table, or one dwprov does not write, is a located error (the
//! rendered output is owned output).
use super::{BaseChain, Elem, MarkKey, Nftables, Rule, Set, Stmt, Table};
use crate::ownership::{NFT_FAMILY, NFT_TABLE};
use ipnet::IpNet;
use std::net::IpAddr;

const WHAT: &str = "nftables script";

/// Words of one line; a `"..."` is one word (without the quotes), `{`, `}`,
/// `;` and `,` are words of their own.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut q = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => q.push(c),
                        None => return Err("unterminated quote".into()),
                    }
                }
                out.push(format!("\"{q}"));
            }
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '{' | '}' | ';' | ',' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parse a script; `add`/`flush` of the owned table, its chains and sets,
/// `add rule` and `add element`. Flushes are no-ops on a fresh table.
pub fn parse(text: &str) -> crate::Result<Nftables> {
    let mut table: Option<Table> = None;
    // A statement whose `{` is not closed on its line goes on (the boot
    // file writes a set's elements one per line); errors name its first line.
    let mut pending = String::new();
    let mut first = 0;
    // Open braces of `pending`, counted line by line (a set's statement may
    // have 16,000 lines: never rescan it).
    let mut depth: isize = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if pending.is_empty() {
            first = i + 1;
        } else {
            pending.push(' ');
        }
        pending.push_str(line);
        for b in line.bytes() {
            depth += match b {
                b'{' => 1,
                b'}' => -1,
                _ => 0,
            };
        }
        if depth > 0 {
            continue;
        }
        depth = 0;
        let w = words(&pending).map_err(|m| crate::Error::parse(WHAT, first, m))?;
        statement(&mut table, &w).map_err(|m| crate::Error::parse(WHAT, first, m))?;
        pending.clear();
    }
    if !pending.is_empty() {
        return Err(crate::Error::parse(
            WHAT,
            first,
            "a `{` that is never closed",
        ));
    }
    Ok(Nftables { table })
}

fn statement(table: &mut Option<Table>, w: &[String]) -> Result<(), String> {
    let s: Vec<&str> = w.iter().map(String::as_str).collect();
    let (verb, what, rest) = match s.as_slice() {
        [verb, what, rest @ ..] => (*verb, *what, rest),
        _ => return Err(format!("not a statement: {}", s.join(" "))),
    };
    let rest = match rest {
        [fam, name, rest @ ..] if *fam == NFT_FAMILY && *name == NFT_TABLE => rest,
        _ => {
            return Err(format!(
                "only table {NFT_FAMILY} {NFT_TABLE} is dwprov's: `{}`",
                s.join(" ")
            ))
        }
    };
    match (verb, what) {
        ("add", "table") | ("flush", "table") if rest.is_empty() => {
            table.get_or_insert_with(Table::default);
            Ok(())
        }
        ("flush", "chain") | ("flush", "set") if rest.len() == 1 => Ok(()),
        ("add", _) if table.is_none() => Err("a statement before `add table`".into()),
        ("add", "chain") => {
            let (name, spec) = rest.split_first().ok_or("a chain without a name")?;
            let base = if spec.is_empty() {
                None
            } else {
                Some(base_chain(spec)?)
            };
            let t = table.as_mut().expect("checked");
            let c = t.chains.entry(name.to_string()).or_default();
            c.base = base;
            Ok(())
        }
        ("add", "set") => {
            let (name, spec) = rest.split_first().ok_or("a set without a name")?;
            let set = set_decl(spec)?;
            table
                .as_mut()
                .expect("checked")
                .sets
                .insert(name.to_string(), set);
            Ok(())
        }
        ("add", "rule") => {
            let (chain, body) = rest.split_first().ok_or("a rule without a chain")?;
            let rule = rule(body)?;
            table
                .as_mut()
                .expect("checked")
                .chains
                .get_mut(*chain)
                .ok_or_else(|| format!("a rule of chain `{chain}` before `add chain`"))?
                .rules
                .push(rule);
            Ok(())
        }
        ("add", "element") => {
            let (set, body) = rest.split_first().ok_or("elements without a set")?;
            let s = table
                .as_mut()
                .expect("checked")
                .sets
                .get_mut(*set)
                .ok_or_else(|| format!("elements of set `{set}` before `add set`"))?;
            let inner = braced(body)?;
            for e in inner.split(|x| *x == ",") {
                match e {
                    [one] => {
                        s.elements.insert(elem(one)?);
                    }
                    [] => {}
                    _ => return Err(format!("not an element: {}", e.join(" "))),
                }
            }
            Ok(())
        }
        _ => Err(format!("not a statement dwprov writes: `{}`", s.join(" "))),
    }
}

/// The words between `{` and `}` (which must close the statement).
fn braced<'a>(w: &'a [&'a str]) -> Result<&'a [&'a str], String> {
    match w {
        ["{", inner @ .., "}"] => Ok(inner),
        _ => Err(format!("expected `{{ ... }}`, found `{}`", w.join(" "))),
    }
}

/// `{ type T hook H priority P ; policy accept ; }`
fn base_chain(spec: &[&str]) -> Result<BaseChain, String> {
    let inner = braced(spec)?;
    let mut kind = None;
    let mut hook = None;
    let mut prio = None;
    let mut policy = "accept".to_string();
    let mut it = inner.iter().filter(|x| **x != ";");
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("`{k}` without a value"))?;
        match *k {
            "type" => kind = Some(v.to_string()),
            "hook" => hook = Some(v.to_string()),
            "priority" => {
                prio = Some(
                    v.parse::<i32>()
                        .map_err(|_| format!("priority `{v}`: a number expected"))?,
                )
            }
            "policy" => policy = v.to_string(),
            _ => return Err(format!("unknown chain property `{k}`")),
        }
    }
    Ok(BaseChain {
        kind: kind.ok_or("a base chain without `type`")?,
        hook: hook.ok_or("a base chain without `hook`")?,
        priority: prio.ok_or("a base chain without `priority`")?,
        policy,
    })
}

/// `{ type ipv4_addr ; flags interval ; }`
fn set_decl(spec: &[&str]) -> Result<Set, String> {
    let inner = braced(spec)?;
    let mut kind = None;
    let mut flags = Vec::new();
    let mut it = inner.iter().filter(|x| **x != ";");
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("`{k}` without a value"))?;
        match *k {
            "type" => kind = Some(v.to_string()),
            "flags" => flags.push(v.to_string()),
            _ => return Err(format!("unknown set property `{k}`")),
        }
    }
    flags.sort();
    Ok(Set {
        kind: kind.ok_or("a set without `type`")?,
        flags,
        elements: Default::default(),
    })
}

/// An IPv4 prefix or address (the `ip` family of dwprov's rules).
fn net(s: &str) -> Result<IpNet, String> {
    let n: IpNet = if s.contains('/') {
        IpNet::V4(
            s.parse::<ipnet::Ipv4Net>()
                .map_err(|_| format!("`{s}` is not an IPv4 prefix"))?,
        )
    } else {
        IpNet::from(addr(s)?)
    };
    if n.trunc() != n {
        return Err(format!("`{s}` has host bits set"));
    }
    Ok(n)
}

fn addr(s: &str) -> Result<IpAddr, String> {
    s.parse::<std::net::Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| format!("`{s}` is not an IPv4 address"))
}

fn elem(s: &str) -> Result<Elem, String> {
    if let Some((a, b)) = s.split_once('-') {
        return Ok(Elem::Range(addr(a)?, addr(b)?));
    }
    Ok(Elem::Net(net(s)?))
}

fn num(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("`{s}` is not a 32-bit number"))
}

fn to(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    match s.split_once(':') {
        Some((a, p)) => Ok((
            addr(a)?,
            Some(p.parse().map_err(|_| format!("port `{p}`"))?),
        )),
        None => Ok((addr(s)?, None)),
    }
}

fn key(w: &[&str]) -> Option<MarkKey> {
    match w {
        ["ct", "mark", ..] => Some(MarkKey::Ct),
        ["meta", "mark", ..] => Some(MarkKey::Meta),
        _ => None,
    }
}

fn rule(body: &[&str]) -> Result<Rule, String> {
    let mut stmts = Vec::new();
    let mut w = body;
    while !w.is_empty() {
        let (stmt, used) = match w {
            ["iifname", n, ..] if n.starts_with('"') => (Stmt::Iif(n[1..].to_string()), 2),
            ["oifname", n, ..] if n.starts_with('"') => (Stmt::Oif(n[1..].to_string()), 2),
            ["ct", "state", rest @ ..] => {
                // `a , b` after word splitting.
                let mut states = Vec::new();
                let mut n = 2;
                let mut r = rest;
                while let [s, more @ ..] = r {
                    states.push(s.to_string());
                    n += 1;
                    match more {
                        [",", next @ ..] => {
                            r = next;
                            n += 1;
                        }
                        _ => break,
                    }
                }
                states.sort();
                (Stmt::CtState(states), n)
            }
            ["ip", dir @ ("saddr" | "daddr"), v, ..] => {
                let s = if let Some(set) = v.strip_prefix('@') {
                    if *dir != "daddr" {
                        return Err("only `ip daddr @set` is dwprov's".into());
                    }
                    Stmt::DaddrIn(set.to_string())
                } else if *dir == "saddr" {
                    Stmt::Saddr(net(v)?)
                } else {
                    Stmt::Daddr(net(v)?)
                };
                (s, 3)
            }
            [proto @ ("tcp" | "udp"), "dport", p, ..] => (
                Stmt::Dport {
                    proto: proto.to_string(),
                    port: p.parse().map_err(|_| format!("port `{p}`"))?,
                },
                3,
            ),
            [_, "mark", "set", from_a, from_b, rest @ ..] => {
                let k = key(w).ok_or("a mark statement without `ct`/`meta`")?;
                let from = key(&[from_a, from_b]).ok_or("`set` of something not a mark")?;
                let (mut and, mut or, mut n) = (u32::MAX, 0, 5);
                let mut r = rest;
                if let ["and", v, more @ ..] = r {
                    and = num(v)?;
                    n += 2;
                    r = more;
                }
                if let ["or", v, ..] = r {
                    or = num(v)?;
                    n += 2;
                }
                (Stmt::set_mark(k, from, and, or), n)
            }
            [_, "mark", "and", m, "==", v, ..] => (
                Stmt::MarkIs {
                    key: key(w).ok_or("a mark match without `ct`/`meta`")?,
                    mask: num(m)?,
                    value: num(v)?,
                },
                6,
            ),
            [_, "mark", v, ..] if key(w).is_some() => (
                Stmt::MarkIs {
                    key: key(w).expect("checked"),
                    mask: u32::MAX,
                    value: num(v)?,
                },
                3,
            ),
            [nat @ ("dnat" | "snat"), "ip", "to", t, ..] => {
                let (addr, port) = to(t)?;
                (
                    if *nat == "dnat" {
                        Stmt::Dnat { addr, port }
                    } else {
                        Stmt::Snat { addr, port }
                    },
                    4,
                )
            }
            ["masquerade", ..] => (Stmt::Masquerade, 1),
            _ => return Err(format!("not a statement dwprov writes: `{}`", w.join(" "))),
        };
        stmts.push(stmt);
        w = &w[used..];
    }
    Ok(Rule { stmts })
}
