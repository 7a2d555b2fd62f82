//! The agent's config from the intent (issue 11): one agent line per
//! inventory line (those without `health` are watched as `unknown` and
//! count as alive for the others' fallback), its nexthop id, and the
//! balanced group when several lines are default.
use crate::agent::config::{Balanced, Config, Fact, Follow, Health, Line, FORMAT_VERSION};
use crate::model::Gateway;
use crate::ownership::{line_nexthop_id, BALANCED_NEXTHOP_ID};
use std::net::Ipv4Addr;

/// The agent's config for `gw`, or None when no line has `health` (no
/// agent on that gateway).
///
/// `intent` is `gw` before [`crate::model::resolve`]: when it has dynamic
/// lines the agent runs too, to follow them (issue 14), and carries it.
pub fn agent_config(gw: &Gateway, intent: Option<&Gateway>) -> Option<Config> {
    let follow = intent
        .filter(|i| i.lines.iter().any(|l| l.is_dynamic()))
        .and_then(|i| serde_json::to_value(i).ok())
        .map(|intent| Follow {
            intent,
            // Render fills in the template overrides it used.
            templates: Default::default(),
            facts: gw
                .lines
                .iter()
                .filter(|l| l.is_dynamic())
                .map(|l| Fact {
                    line: l.name.clone(),
                    address: l.address,
                    next_hop: l.gateway,
                })
                .collect(),
        });
    if !gw.lines.iter().any(|l| l.health.is_some()) && follow.is_none() {
        return None;
    }
    let lines = gw
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            // A line down now (dynamic, no address or next hop) is rendered
            // on its carrier: the agent sees it as the carrier's path, so
            // whatever it decides its nexthop stays there (it cannot follow
            // the line itself before issue 14 phase 2).
            let path = if l.up_now() {
                l
            } else {
                crate::model::carrier(gw, l).unwrap_or(l)
            };
            (i, l, path)
        })
        .map(|(i, l, path)| Line {
            name: l.name.clone(),
            interface: path.interface.clone(),
            address: path.address.map_or(Ipv4Addr::UNSPECIFIED, |a| v4(a.addr())),
            gateway: path.gateway.map_or(Ipv4Addr::UNSPECIFIED, v4),
            mark: l.mark,
            mark_mask: gw.mark_mask,
            table: l.table,
            nexthop: line_nexthop_id(i).filter(|_| gw.uses_nexthops()),
            health: l.health.as_ref().map(|h| Health {
                targets: h.targets.clone(),
                interval: f64::from(h.interval_ms) / 1000.0,
                timeout: f64::from(h.timeout_ms) / 1000.0,
                down: h.down,
                up: h.up,
                reliability: h.reliability,
            }),
            fallback: l.failover.fallback.clone(),
            weight: l.failover.weight,
            flush_on_recovery: l.failover.flush_on_recovery,
            on_change: l.failover.on_change.clone(),
        })
        .collect();
    let members: Vec<String> = gw
        .lines
        .iter()
        .filter(|l| l.default)
        .map(|l| l.name.clone())
        .collect();
    Some(Config {
        format_version: FORMAT_VERSION,
        lines,
        balanced: (members.len() > 1).then_some(Balanced {
            id: BALANCED_NEXTHOP_ID,
            members,
        }),
        follow,
    })
}

/// An address as the agent's line holds it: the agent probes and binds
/// IPv4 sockets (`agent::probe`), so another family's address is
/// unspecified there (none passes the inventory today).
fn v4(a: std::net::IpAddr) -> Ipv4Addr {
    match a {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}
