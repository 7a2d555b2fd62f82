//! Typed gateway state. Live state (parsed from the host) and desired state
//! (parsed from rendered templates) are values of the same types, so the
//! diff compares like with like.
use serde::Serialize;
use std::collections::BTreeMap;

pub mod family;
pub mod firewall;
pub mod ip;
pub mod iptables;
pub mod nexthop;
pub mod nftables;
pub mod rt_tables;

pub use family::Family;
pub use firewall::{Backend, Firewall};
pub use ip::{Route, Rule, RuleAction};
pub use iptables::Iptables;
pub use rt_tables::RtTables;

/// Everything dwprov reads from (and may write to) a gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct State {
    /// IPv4 policy rules, in priority order.
    pub rules: Vec<Rule>,
    /// IPv4 routes of every table.
    pub routes: Vec<Route>,
    /// Nexthop objects (issue 11), sorted by id.
    pub nexthops: Vec<nexthop::Nexthop>,
    /// The firewall of every backend (flattened: `iptables` in JSON, as before).
    #[serde(flatten)]
    pub firewall: Firewall,
    /// /etc/iproute2/rt_tables entries.
    pub rt_tables: RtTables,
    /// Files dwprov owns or would own: path → content.
    pub files: BTreeMap<String, String>,
    /// sysctl key (dotted) → value.
    pub sysctls: BTreeMap<String, String>,
}
