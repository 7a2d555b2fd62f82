//! The typed intent for one gateway: what the admin wants, already validated.
//!
//! Built once per host and run from its merged inventory vars by
//! [`build_all`] (or [`build`] for one host; the builders per part are in
//! `build/`); consumed by `render`. Every value here has been checked, so rendering can
//! put it into a remote command without further quoting concerns.
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

mod build;
mod resolve;
pub use build::{agent_config, build, build_all};
pub(crate) use resolve::client_defaults;
pub use resolve::{carrier, dynamic_client_defaults, resolve, Resolved};

/// The seed's three ways of doing dual-line routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Prefix routes in main via each line, source-return tables.
    Static,
    /// `ip rule to <prefix> table <line>` per prefix, source-return tables.
    Policy,
    /// CONNMARK marks per line, `ip rule fwmark`, prefix routes.
    Fwmark,
    /// nftables only: each line's prefixes in an interval set, new
    /// connections to a set marked for its line, `ip rule fwmark`; no
    /// prefix routes.
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatMode {
    /// SNAT to each line's (static) address.
    Snat,
    /// MASQUERADE, for lines with dynamic addresses.
    Masquerade,
    /// No source NAT (routed public LAN).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Lan {
    pub interface: String,
    /// The gateway's address with the LAN prefix length, e.g. 192.168.0.1/24.
    pub address: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Line {
    /// Name in rt_tables, e.g. "ctc".
    pub name: String,
    pub table: u32,
    pub mark: u32,
    pub interface: String,
    /// The line's address with its prefix length, e.g. 198.51.100.2/24:
    /// the inventory's, or for `address: dynamic` the interface's now (a
    /// fact, filled in by [`resolve`]). None: a dynamic line with no address
    /// now, which is down.
    pub address: Option<IpNet>,
    /// The next hop now: the inventory's, or for `gateway: dynamic` the
    /// DHCP client's (a fact). None: routes go `dev IF` (`gateway: none`),
    /// or a dynamic next hop not known now (down).
    pub gateway: Option<IpAddr>,
    /// Whether `address` is a fact (`address: dynamic`): such a line is
    /// always MASQUERADEd, whatever `nat` says.
    pub dynamic_address: bool,
    /// Where `gateway` comes from.
    pub next_hop: NextHop,
    /// Carries the default route for destinations no list matches.
    pub default: bool,
    /// Destination prefixes routed via this line (inline + routes_file),
    /// deduplicated, in first-seen order.
    pub routes: Vec<IpNet>,
    /// Probing by the agent (issue 11); none: the line is not monitored.
    pub health: Option<Health>,
    /// Where its traffic goes when it is down, its share of a balanced default.
    pub failover: Failover,
}

/// A line's `gateway:` kind (issue 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextHop {
    /// An address written in the inventory.
    Fixed,
    /// The next hop of the DHCP client's default route via the interface.
    Dynamic,
    /// None: a point-to-point line, routes go `dev IF`.
    None,
}

impl Line {
    /// Whether the line can carry traffic now: it has an address, and a next
    /// hop unless it is point-to-point. A line that cannot is down (its
    /// traffic on its fallback, as a failed health check does it).
    pub fn up_now(&self) -> bool {
        self.address.is_some() && (self.gateway.is_some() || self.next_hop == NextHop::None)
    }

    /// The line's route target: `via G dev IF`, or `dev IF` without a next hop.
    pub fn hop(&self) -> String {
        match self.gateway {
            Some(g) => format!("via {g} dev {}", self.interface),
            None => format!("dev {}", self.interface),
        }
    }

    /// Whether its source NAT is MASQUERADE: a dynamic address cannot be named.
    /// Its address or next hop is a fact of the host (issue 14).
    pub fn is_dynamic(&self) -> bool {
        self.dynamic_address || self.next_hop == NextHop::Dynamic
    }

    pub fn masquerade(&self, nat: NatMode) -> bool {
        nat == NatMode::Masquerade || self.dynamic_address
    }
}

/// A line's `health:` (issue 11): what the agent probes and how often.
/// Times are whole milliseconds, so the intent stays `Eq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Health {
    pub targets: Vec<crate::agent::config::Target>,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub down: u32,
    pub up: u32,
    pub reliability: u32,
}

/// A line's `fallback`, `weight`, `flush_on_recovery`, `on_change`, with
/// the defaults filled in (`fallback`: the default line(s), or for a default
/// line the other lines in inventory order; only when the line has `health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Failover {
    pub fallback: Vec<String>,
    pub weight: u32,
    pub flush_on_recovery: bool,
    pub on_change: Option<String>,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            fallback: Vec::new(),
            weight: 1,
            flush_on_recovery: false,
            on_change: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Forward {
    pub proto: Proto,
    pub port: u16,
    pub to: IpAddr,
    pub to_port: Option<u16>,
    /// Names of the lines this forward listens on (all lines when the inventory omits `lines`).
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Policy {
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Gateway {
    pub host: String,
    pub method: Method,
    /// The firewall backend (`firewall:`, default iptables).
    pub firewall: crate::state::firewall::Backend,
    pub lan: Vec<Lan>,
    pub lines: Vec<Line>,
    pub nat: NatMode,
    pub forwards: Vec<Forward>,
    pub hairpin: bool,
    pub policies: Vec<Policy>,
    /// First priority of dwprov's ip rule band (the band is `rule_priority..rule_priority+1000`).
    pub rule_priority: u32,
    /// The fwmark bits dwprov owns; every line mark must fit in it.
    pub mark_mask: u32,
    /// A foreign default route in main (a DHCP client's, found by
    /// [`resolve`]) holds the key of dwprov's own: dwprov leaves it and
    /// renders none there (docs/lines.md).
    pub foreign_main_default: bool,
    /// Kernel major.minor below which the seed's route-cache flush is needed; None = decide from facts.
    pub route_cache_flush: Option<bool>,
}

impl Gateway {
    pub fn line(&self, name: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.name == name)
    }

    pub fn default_line(&self) -> Option<&Line> {
        self.lines.iter().find(|l| l.default)
    }

    /// Whether routes carry lines' traffic by nexthop objects (issue 11):
    /// a line is monitored, several lines share the default route, or a
    /// line's address or next hop is dynamic (issue 14). Then a line going
    /// down or coming back, by the agent's probes or by a lease lost and
    /// found, moves its whole prefix list by one nexthop change.
    pub fn uses_nexthops(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.health.is_some() || l.dynamic_address || l.next_hop == NextHop::Dynamic)
            || self.lines.iter().filter(|l| l.default).count() > 1
    }
}
