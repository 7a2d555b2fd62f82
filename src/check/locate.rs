//! Where in the inventory a finding's value came from.
//!
//! A host's merged vars keep the location of every value (group vars point
//! into the group, host vars into the host), so a finding names the line
//! an admin edits. The model's lists (`lines`, `forwards`, `policies`) keep
//! the inventory's order, so their indices address the same items here.
use crate::error::Location;
use crate::inventory::Host;
use crate::model::Gateway;
use crate::render::{PRIO_DEST, PRIO_FWMARK, PRIO_POLICY, PRIO_SOURCE};
use crate::trace::fib::Decision;
use crate::yaml::Node;

/// One step into the vars: a map key or a list index.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The location of the value at `path` in the host's vars: the deepest
/// node that exists along it (the host itself when none does).
pub fn at(host: &Host, path: &[Seg]) -> Location {
    let mut node: &Node = &host.vars;
    let mut best = host.location.clone();
    for seg in path {
        let next = match seg {
            Seg::Key(k) => node.entry(k).map(|e| {
                // A key's own place reads better than its value's (a block).
                best = e.key_location.clone();
                &e.value
            }),
            Seg::Index(i) => node.as_seq().and_then(|s| s.get(*i)).inspect(|n| {
                best = n.location.clone();
            }),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    best
}

/// `at` a top-level key.
pub fn key(host: &Host, k: &str) -> Location {
    at(host, &[Seg::Key(k)])
}

/// A line's item, or one of its keys.
pub fn line(host: &Host, i: usize, k: Option<&str>) -> Location {
    match k {
        Some(k) => at(host, &[Seg::Key("lines"), Seg::Index(i), Seg::Key(k)]),
        None => at(host, &[Seg::Key("lines"), Seg::Index(i)]),
    }
}

/// A list item of a top-level list (`forwards`, `policies`, `assert`).
pub fn item(host: &Host, list: &str, i: usize) -> Location {
    at(host, &[Seg::Key(list), Seg::Index(i)])
}

/// What in the inventory made a routing decision: a policy, a line's rules
/// (source-return, mark) or its destination list; None for a foreign rule
/// or the kernel's own.
pub fn decision(host: &Host, gw: &Gateway, d: &Decision) -> Option<Location> {
    let (prio, _) = d.rule.as_ref()?;
    // Only a rule of dwprov's band was made from the inventory.
    let band = crate::ownership::RULE_BAND_SIZE;
    if let Some(off) = prio.checked_sub(gw.rule_priority).filter(|o| *o < band) {
        let idx = |base: u32| off.checked_sub(base).map(|i| i as usize);
        let line_idx = |base: u32| idx(base).filter(|i| *i < gw.lines.len());
        if off >= PRIO_DEST {
            return line_idx(PRIO_DEST).map(|i| line_routes(host, i));
        }
        if off >= PRIO_POLICY {
            return idx(PRIO_POLICY)
                .filter(|i| *i < gw.policies.len())
                .map(|i| item(host, "policies", i));
        }
        if off >= PRIO_SOURCE {
            return line_idx(PRIO_SOURCE).map(|i| line(host, i, Some("address")));
        }
        if off >= PRIO_FWMARK {
            return line_idx(PRIO_FWMARK).map(|i| line(host, i, Some("mark")));
        }
    }
    // A destination route in main comes from a line's list.
    let dst = d.query.dst;
    let i = gw.lines.iter().position(|l| {
        l.routes
            .iter()
            .any(|p| crate::trace::addr::contains(p, dst))
    })?;
    (d.table == Some(crate::state::ip::TABLE_MAIN)).then(|| line_routes(host, i))
}

/// Where a line's destinations are listed: `routes`, else `routes_file`.
pub fn line_routes(host: &Host, i: usize) -> Location {
    let vars = &host.vars;
    let has = |k: &str| {
        vars.get("lines")
            .and_then(Node::as_seq)
            .and_then(|s| s.get(i))
            .and_then(|l| l.get(k))
            .is_some()
    };
    line(
        host,
        i,
        Some(if has("routes") {
            "routes"
        } else {
            "routes_file"
        }),
    )
}
