//! The state a packet is traced through: rules, routes, the firewall, the
//! gateway's addresses and which interface is which line.
//!
//! Three worlds: the **desired** one (what `plan` renders, plus what the
//! kernel adds by itself for the model's addresses: the local and
//! connected routes and the three default rules), the **live** one (all
//! that `gather` read), and the one **after an apply** (the live state
//! with dwprov's own objects replaced by the desired ones: what `check`
//! judges the management path on).
//!
//! A world's firewall is shared behind an `Arc` (a set's elements are
//! one list beside its rule, [`super::netfilter::SetMatches`]): the checks
//! build each distinct world once per host ([`World::after_apply_of`]
//! reuses the live and desired ones) and pass references.
use super::addr::{self, Addr, Net};
use super::netfilter::SetMatches;
use crate::facts::Facts;
use crate::model::Gateway;
use crate::ownership;
use crate::state::ip::{TABLE_LOCAL, TABLE_MAIN};
use crate::state::iptables::{Chain, Iptables};
use crate::state::{Route, RtTables, Rule, RuleAction, State};
use serde::Serialize;
use std::sync::Arc;

/// The firewall model of a state: the one place the tracer reaches it.
/// The nftables table joins it as iptables rules of the same effect
/// ([`super::nft`]), so both backends are traced by one walk; its set
/// matches come beside the rules.
pub fn iptables_of(state: &State) -> (Iptables, SetMatches) {
    super::nft::merged(&state.firewall.iptables, &state.firewall.nftables)
}

/// Which state a trace ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Desired,
    Live,
    AfterApply,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Desired => "desired state",
            Source::Live => "live state",
            Source::AfterApply => "live state after the apply",
        }
    }
}

/// A line of the gateway, as the trace names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    pub name: String,
    pub interface: String,
    pub address: Net,
}

#[derive(Clone)]
pub struct World {
    pub source: Source,
    pub rules: Vec<Rule>,
    pub routes: Vec<Route>,
    /// Shared: cloning a world (or a check's variant of one) must not copy
    /// the rules of every set element.
    pub firewall: Arc<Iptables>,
    /// The set matches of `firewall`'s rules (the nftables view's).
    pub sets: Arc<SetMatches>,
    /// (interface, address with its prefix length).
    pub addrs: Vec<(String, Net)>,
    pub lines: Vec<LineRef>,
    /// LAN interfaces.
    pub lans: Vec<String>,
    pub rt_tables: RtTables,
}

/// What the kernel creates by itself for an address: its local route and
/// the connected route of its subnet.
fn kernel_routes(iface: &str, a: &Net) -> [Route; 2] {
    let kernel = 2;
    [
        Route {
            table: TABLE_LOCAL,
            dst: addr::host_net(addr::host(a)),
            kind: "local".into(),
            dev: Some(iface.into()),
            src: Some(addr::host(a)),
            proto: kernel,
            scope: 254,
            ..Route::default()
        },
        Route {
            table: TABLE_MAIN,
            dst: addr::network(a),
            dev: Some(iface.into()),
            src: Some(addr::host(a)),
            proto: kernel,
            scope: 253,
            ..Route::default()
        },
    ]
}

/// The kernel's three rules (local, main, default).
fn kernel_rules() -> Vec<Rule> {
    crate::state::ip::KERNEL_RULES
        .into_iter()
        .map(|(priority, t)| Rule {
            priority,
            action: RuleAction::Table(t),
            proto: 2,
            ..Rule::default()
        })
        .collect()
}

fn lines_of(gw: Option<&Gateway>) -> (Vec<LineRef>, Vec<String>) {
    let Some(gw) = gw else {
        return (Vec::new(), Vec::new());
    };
    let lines = gw
        .lines
        .iter()
        // A dynamic line without an address now has no source to trace from.
        .filter_map(|l| {
            Some(LineRef {
                name: l.name.clone(),
                interface: l.interface.clone(),
                address: l.address?,
            })
        })
        .collect();
    let lans = gw.lan.iter().map(|l| l.interface.clone()).collect();
    (lines, lans)
}

impl World {
    /// The desired state of `gw` as `render` made it, on the kernel's own
    /// rules and routes for the model's addresses.
    pub fn desired(gw: &Gateway, desired: &State) -> World {
        let (lines, lans) = lines_of(Some(gw));
        let mut addrs: Vec<(String, Net)> = gw
            .lan
            .iter()
            .map(|l| (l.interface.clone(), l.address))
            .collect();
        addrs.extend(lines.iter().map(|l| (l.interface.clone(), l.address)));
        let mut rules = kernel_rules();
        rules.extend(desired.rules.iter().cloned());
        let mut routes: Vec<Route> = addrs
            .iter()
            .flat_map(|(i, a)| kernel_routes(i, a))
            .collect();
        routes.extend(desired.routes.iter().cloned());
        let (firewall, sets) = iptables_of(desired);
        World {
            source: Source::Desired,
            rules,
            routes,
            firewall: Arc::new(firewall),
            sets: Arc::new(sets),
            addrs,
            lines,
            lans,
            rt_tables: desired.rt_tables.clone(),
        }
    }

    /// The live state of a gathered host (`gw` names its lines, if known).
    pub fn live(gw: Option<&Gateway>, facts: &Facts) -> World {
        let (lines, lans) = lines_of(gw);
        let mut rt_tables = facts.state.rt_tables.clone();
        if let Some(own) = facts.state.files.get(ownership::RT_TABLES_CONF) {
            if let Ok(t) = RtTables::parse(own, "rt_tables") {
                rt_tables.extend(t);
            }
        }
        let (firewall, sets) = iptables_of(&facts.state);
        World {
            source: Source::Live,
            rules: facts.state.rules.clone(),
            routes: facts.state.routes.clone(),
            firewall: Arc::new(firewall),
            sets: Arc::new(sets),
            addrs: facts
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.iter().map(|a| (i.name.clone(), *a)))
                .collect(),
            lines,
            lans,
            rt_tables,
        }
    }

    /// The live state with dwprov's own objects (rules and routes of its
    /// protocol, its chains and the jumps into them) replaced by the
    /// desired ones: what the gateway is after `apply`.
    pub fn after_apply(gw: &Gateway, desired: &State, facts: &Facts) -> World {
        World::after_apply_of(
            &World::live(Some(gw), facts),
            &World::desired(gw, desired),
            desired,
        )
    }

    /// [`World::after_apply`] from the live and desired worlds already
    /// built (`live` of the same gateway, `desired_world` of `desired`):
    /// no firewall view is translated again, only the owned chains copied.
    pub fn after_apply_of(live: &World, desired_world: &World, desired: &State) -> World {
        let mut w = live.clone();
        w.source = Source::AfterApply;
        w.rules.retain(|r| !ownership::is_owned_rule(r));
        w.rules.extend(desired.rules.iter().cloned());
        w.routes.retain(|r| !ownership::is_owned_route(r));
        w.routes.extend(desired.routes.iter().cloned());
        w.firewall = Arc::new(with_owned(&live.firewall, &desired_world.firewall));
        // Set matches are the owned chains' (the nftables view's), and
        // those are now the desired ones, copied whole.
        w.sets = desired_world.sets.clone();
        w.rt_tables.extend(desired.rt_tables.clone());
        w
    }

    pub fn is_local(&self, a: Addr) -> bool {
        a.is_loopback() || self.addrs.iter().any(|(_, n)| addr::host(n) == a)
    }

    /// The interface whose subnet holds `a` (the longest such subnet).
    pub fn connected_iface(&self, a: Addr) -> Option<&str> {
        self.addrs
            .iter()
            .filter(|(_, n)| addr::prefix_len(n) < 32 && addr::contains(&addr::network(n), a))
            .max_by_key(|(_, n)| addr::prefix_len(n))
            .map(|(i, _)| i.as_str())
    }

    /// The address MASQUERADE takes on `dev`: the one whose subnet holds
    /// the next hop, else the interface's first.
    pub fn address_on(&self, dev: &str, toward: Addr) -> Option<Addr> {
        let on: Vec<&Net> = self
            .addrs
            .iter()
            .filter(|(i, _)| i == dev)
            .map(|(_, n)| n)
            .collect();
        on.iter()
            .find(|n| addr::contains(&addr::network(n), toward))
            .or(on.first())
            .map(|n| addr::host(n))
    }

    pub fn line_of_iface(&self, iface: &str) -> Option<&LineRef> {
        self.lines.iter().find(|l| l.interface == iface)
    }

    pub fn line_of_addr(&self, a: Addr) -> Option<&LineRef> {
        self.lines.iter().find(|l| addr::host(&l.address) == a)
    }

    /// `eth1 (line ctc)`, `eth0 (LAN)`, `lo`.
    pub fn iface_label(&self, iface: &str) -> String {
        if let Some(l) = self.line_of_iface(iface) {
            format!("{iface} (line {})", l.name)
        } else if self.lans.iter().any(|l| l == iface) {
            format!("{iface} (LAN)")
        } else {
            iface.to_string()
        }
    }

    pub fn table_name(&self, id: u32) -> String {
        self.rt_tables.label(id)
    }
}

impl super::netfilter::Host for World {
    fn is_local(&self, a: Addr) -> bool {
        World::is_local(self, a)
    }
}

/// `live` with its owned chains and jumps replaced by `desired`'s: dwprov's
/// jumps go first in each built-in chain, as its apply puts them.
fn with_owned(live: &Iptables, desired: &Iptables) -> Iptables {
    // Copied without the owned chains (not cloned, then dropped): live's
    // owned chains hold the rules of every live set element.
    let mut out = Iptables::default();
    for (tname, table) in &live.tables {
        let into = out.tables.entry(tname.clone()).or_default();
        for (cname, chain) in &table.chains {
            if ownership::is_owned_chain(cname) {
                continue;
            }
            into.chains.insert(
                cname.clone(),
                Chain {
                    policy: chain.policy.clone(),
                    rules: chain
                        .rules
                        .iter()
                        .filter(|r| !ownership::is_owned_jump(*r))
                        .cloned()
                        .collect(),
                },
            );
        }
    }
    for (tname, table) in &desired.tables {
        let into = out.tables.entry(tname.clone()).or_default();
        for (cname, chain) in &table.chains {
            if ownership::is_owned_chain(cname) {
                into.chains.insert(cname.clone(), chain.clone());
                continue;
            }
            let jumps: Vec<_> = chain
                .rules
                .iter()
                .filter(|r| ownership::is_owned_jump(*r))
                .cloned()
                .collect();
            let target = into.chains.entry(cname.clone()).or_insert_with(|| Chain {
                policy: chain.policy.clone(),
                rules: Vec::new(),
            });
            target.rules.splice(0..0, jumps);
        }
    }
    out
}
