//! The parser of `nft -j list table inet dwprov` into [`Nftables`].
//!
//! Only objects of the owned table are taken (a listing holds nothing else,
//! but a whole-ruleset listing would); handles are dropped (they are the
//! kernel's numbering, not state). Statements are mapped to [`Stmt`] when
//! they are exactly what dwprov writes, else kept as [`Stmt::Other`]: a
//! near miss (`!=`, a flag on a NAT) must compare unequal, never be
//! "understood" into something dwprov wrote.
use super::{BaseChain, Chain, Elem, MarkKey, Nftables, Rule, Set, Stmt, Table};
use crate::ownership::{NFT_FAMILY, NFT_TABLE};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

const WHAT: &str = "nft -j output";

fn err(m: impl Into<String>) -> crate::Error {
    crate::Error::parse(WHAT, 1, m)
}

/// Parse a listing; empty text (the table does not exist) is no table.
pub fn parse(text: &str) -> crate::Result<Nftables> {
    if text.trim().is_empty() {
        return Ok(Nftables::default());
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| crate::Error::parse(WHAT, e.line(), e.to_string()))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| err("no `nftables` array at the top"))?;
    let ours = |o: &Value, key: &str| {
        o.get("family").and_then(Value::as_str) == Some(NFT_FAMILY)
            && o.get(key).and_then(Value::as_str) == Some(NFT_TABLE)
    };
    let mut table: Option<Table> = None;
    for item in items {
        let Some((kind, o)) = item.as_object().and_then(|m| m.iter().next()) else {
            return Err(err(format!("not an object: {item}")));
        };
        match kind.as_str() {
            "metainfo" => {}
            "table" if ours(o, "name") => {
                table.get_or_insert_with(Table::default);
            }
            "chain" if ours(o, "table") => {
                let t = table.get_or_insert_with(Table::default);
                let name = str_field(o, "name")?;
                t.chains.insert(name.to_string(), chain(o)?);
            }
            "set" if ours(o, "table") => {
                let t = table.get_or_insert_with(Table::default);
                let name = str_field(o, "name")?;
                t.sets.insert(name.to_string(), set(o)?);
            }
            "rule" if ours(o, "table") => {
                let t = table.get_or_insert_with(Table::default);
                let cname = str_field(o, "chain")?;
                let r = rule(o)?;
                t.chains
                    .get_mut(cname)
                    .ok_or_else(|| err(format!("a rule of chain `{cname}` before the chain")))?
                    .rules
                    .push(r);
            }
            // Other tables' objects, maps, flowtables, counters...: a map or
            // an object in the owned table is drift dwprov does not model;
            // it is named so the admin sees it rather than silently kept.
            "map" | "flowtable" | "counter" | "quota" | "ct helper" | "limit" | "secmark"
            | "synproxy" | "ct timeout" | "ct expectation"
                if ours(o, "table") =>
            {
                return Err(err(format!(
                    "table {NFT_FAMILY} {NFT_TABLE} holds a {kind} `{}` that dwprov does not write; \
                     remove it by hand (nft delete {kind} {NFT_FAMILY} {NFT_TABLE} NAME)",
                    o.get("name").and_then(Value::as_str).unwrap_or("?")
                )));
            }
            _ => {}
        }
    }
    Ok(Nftables { table })
}

fn str_field<'a>(o: &'a Value, key: &str) -> crate::Result<&'a str> {
    o.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("no string `{key}` in {o}")))
}

fn chain(o: &Value) -> crate::Result<Chain> {
    let base = match o.get("hook") {
        None => None,
        Some(_) => {
            let prio = o
                .get("prio")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| err(format!("no numeric `prio` in {o}")))?;
            Some(BaseChain {
                kind: str_field(o, "type")?.to_string(),
                hook: str_field(o, "hook")?.to_string(),
                priority: prio,
                policy: o
                    .get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or("accept")
                    .to_string(),
            })
        }
    };
    Ok(Chain {
        base,
        rules: Vec::new(),
    })
}

fn set(o: &Value) -> crate::Result<Set> {
    let kind = match o.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(" . "),
        _ => return Err(err(format!("no `type` in set {o}"))),
    };
    let mut flags: Vec<String> = match o.get("flags") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| f.as_str().unwrap_or("?").to_string())
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    flags.sort();
    let mut elements = BTreeSet::new();
    if let Some(Value::Array(a)) = o.get("elem") {
        for e in a {
            elements.insert(elem(e));
        }
    }
    Ok(Set {
        kind,
        flags,
        elements,
    })
}

/// An IPv4 address (the `ip` family dwprov's table uses; an IPv6 one is
/// not dwprov's, so its statement stays `Other`).
fn addr(v: &Value) -> Option<IpAddr> {
    v.as_str()?.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// `"1.2.3.4"` or `{"prefix": {"addr": .., "len": ..}}`, host bits cleared
/// only if they are already clear (nft refuses host bits; never "fix" them).
fn net(v: &Value) -> Option<IpNet> {
    if let Some(a) = addr(v) {
        return Some(IpNet::from(a));
    }
    let p = v.get("prefix")?;
    let a = addr(p.get("addr")?)?;
    let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
    let n = IpNet::new(a, len).ok()?;
    (n.trunc() == n).then_some(n)
}

fn elem(e: &Value) -> Elem {
    if let Some(n) = net(e) {
        return Elem::Net(n);
    }
    if let Some([a, b]) = e.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        if let (Some(a), Some(b)) = (addr(a), addr(b)) {
            return Elem::Range(a, b);
        }
    }
    Elem::Other(e.to_string())
}

fn rule(o: &Value) -> crate::Result<Rule> {
    let expr = o
        .get("expr")
        .and_then(Value::as_array)
        .ok_or_else(|| err(format!("no `expr` in rule {o}")))?;
    Ok(Rule {
        stmts: expr
            .iter()
            .map(|s| stmt(s).unwrap_or_else(|| Stmt::Other(s.to_string())))
            .collect(),
    })
}

fn mark_key(v: &Value) -> Option<MarkKey> {
    if v.get("ct")?.get("key")?.as_str()? == "mark" && v.get("ct")?.as_object()?.len() == 1 {
        return Some(MarkKey::Ct);
    }
    None
}

fn any_mark_key(v: &Value) -> Option<MarkKey> {
    mark_key(v).or_else(|| {
        let m = v.get("meta")?;
        (m.get("key")?.as_str()? == "mark" && m.as_object()?.len() == 1).then_some(MarkKey::Meta)
    })
}

fn u32_of(v: &Value) -> Option<u32> {
    u32::try_from(v.as_u64()?).ok()
}

/// `[a, b]` of a binary operator object `{"&": [a, b]}`.
fn binop<'a>(v: &'a Value, op: &str) -> Option<(&'a Value, &'a Value)> {
    match v.get(op)?.as_array()?.as_slice() {
        [a, b] => Some((a, b)),
        _ => None,
    }
}

fn stmt(s: &Value) -> Option<Stmt> {
    let obj = s.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    let (k, v) = obj.iter().next()?;
    match k.as_str() {
        "match" => matcher(v),
        "mangle" => {
            let key = any_mark_key(v.get("key")?)?;
            let val = v.get("value")?;
            if let Some(n) = u32_of(val) {
                return Some(Stmt::set_mark(key, key, 0, n));
            }
            let (inner, or) = match binop(val, "|") {
                Some((a, b)) => (a, u32_of(b)?),
                None => (val, 0),
            };
            let (from, and) = match binop(inner, "&") {
                Some((a, b)) => (any_mark_key(a)?, u32_of(b)?),
                None => (any_mark_key(inner)?, u32::MAX),
            };
            Some(Stmt::set_mark(key, from, and, or))
        }
        "dnat" | "snat" => {
            let m = v.as_object()?;
            if m.keys()
                .any(|k| !matches!(k.as_str(), "family" | "addr" | "port"))
            {
                return None;
            }
            if m.get("family")?.as_str()? != "ip" {
                return None;
            }
            let addr = addr(m.get("addr")?)?;
            let port = match m.get("port") {
                None => None,
                Some(p) => Some(u16::try_from(p.as_u64()?).ok()?),
            };
            Some(if k == "dnat" {
                Stmt::Dnat { addr, port }
            } else {
                Stmt::Snat { addr, port }
            })
        }
        "masquerade" if v.is_null() => Some(Stmt::Masquerade),
        _ => None,
    }
}

fn matcher(m: &Value) -> Option<Stmt> {
    let op = m.get("op")?.as_str()?;
    let left = m.get("left")?;
    let right = m.get("right")?;
    if let Some(meta) = left.get("meta") {
        let key = meta.get("key")?.as_str()?;
        let name = right.as_str()?.to_string();
        return match (key, op) {
            ("iifname", "==") => Some(Stmt::Iif(name)),
            ("oifname", "==") => Some(Stmt::Oif(name)),
            _ => None,
        };
    }
    if left
        .get("ct")
        .and_then(|c| c.get("key"))
        .and_then(Value::as_str)
        == Some("state")
    {
        if op != "in" && op != "==" {
            return None;
        }
        let mut states: Vec<String> = match right {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
            _ => return None,
        };
        states.sort();
        return Some(Stmt::CtState(states));
    }
    if op != "==" {
        return None;
    }
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol")?.as_str()?;
        let field = p.get("field")?.as_str()?;
        return match (proto, field) {
            ("ip", "saddr") => Some(Stmt::Saddr(net(right)?)),
            ("ip", "daddr") => match right.as_str() {
                Some(s) if s.starts_with('@') => Some(Stmt::DaddrIn(s[1..].to_string())),
                _ => Some(Stmt::Daddr(net(right)?)),
            },
            ("tcp" | "udp", "dport") => Some(Stmt::Dport {
                proto: proto.to_string(),
                port: u16::try_from(right.as_u64()?).ok()?,
            }),
            _ => None,
        };
    }
    let value = u32_of(right)?;
    if let Some(key) = any_mark_key(left) {
        return Some(Stmt::MarkIs {
            key,
            mask: u32::MAX,
            value,
        });
    }
    let (k, mask) = binop(left, "&")?;
    Some(Stmt::MarkIs {
        key: any_mark_key(k)?,
        mask: u32_of(mask)?,
        value,
    })
}
