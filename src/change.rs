//! One change to one owned object: the vocabulary between the diff (which
//! finds them, [`crate::diff`]), the firewall backends (which find and apply
//! theirs, [`crate::firewall`]) and converge, below all of them.
use crate::state::ip::RouteKey;
use crate::state::iptables::IptRule;
use crate::state::nexthop::Nexthop;
use crate::state::nftables::diff::NftChange;
use crate::state::{Route, Rule};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Remove,
}

/// One change to one owned object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "object", rename_all = "lowercase")]
pub enum Change {
    File {
        path: String,
        from: Option<String>,
        to: Option<String>,
    },
    Sysctl {
        key: String,
        from: Option<String>,
        to: String,
    },
    Rule {
        op: Op,
        rule: Rule,
    },
    Route {
        from: Option<Route>,
        to: Option<Route>,
    },
    /// A DWPROV-* chain created, rewritten or deleted as a whole.
    Chain {
        table: String,
        chain: String,
        from: Option<Vec<IptRule>>,
        to: Option<Vec<IptRule>>,
    },
    /// A nexthop object (issue 11): created, changed or deleted.
    Nexthop {
        from: Option<Nexthop>,
        to: Option<Nexthop>,
    },
    /// A jump rule from a built-in chain into a DWPROV-* chain.
    Jump {
        table: String,
        chain: String,
        op: Op,
        rule: IptRule,
    },
    /// A change to the owned nftables table (its chains, sets, elements).
    Nft(NftChange),
}

impl Change {
    /// +1 added, 0 changed, -1 removed.
    pub fn sign(&self) -> i8 {
        let (from, to) = match self {
            Change::File { from, to, .. } => (from.is_some(), to.is_some()),
            Change::Sysctl { from, .. } => (from.is_some(), true),
            Change::Rule { op, .. } | Change::Jump { op, .. } => {
                (*op == Op::Remove, *op == Op::Add)
            }
            Change::Route { from, to } => (from.is_some(), to.is_some()),
            Change::Nexthop { from, to } => (from.is_some(), to.is_some()),
            Change::Chain { from, to, .. } => (from.is_some(), to.is_some()),
            Change::Nft(c) => match c {
                NftChange::AddTable | NftChange::AddChain { .. } | NftChange::AddSet { .. } => {
                    (false, true)
                }
                NftChange::DeleteTable { .. }
                | NftChange::DeleteChain { .. }
                | NftChange::DeleteSet { .. } => (true, false),
                NftChange::ReplaceChain { .. } | NftChange::Elements { .. } => (true, true),
            },
        };
        match (from, to) {
            (false, true) => 1,
            (true, false) => -1,
            _ => 0,
        }
    }
}

/// One desired object in the way of a foreign one. Shown (and written in
/// JSON) as its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub message: String,
    /// The desired route's key, for a route (`apply --adopt` takes over the
    /// hand-made routes among them).
    pub route: Option<RouteKey>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Serialize for Conflict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}
