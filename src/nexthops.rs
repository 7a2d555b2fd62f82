//! The nexthops kind (issue 11), in one home: nexthop objects tagged with
//! dwprov's protocol, which the agent repoints on failover. Its gather
//! section and typed state are [`crate::state::nexthop`]'s; here are the
//! diff, which tells the agent's failover (information) from a change, and
//! the read-back of a snapshot's listing. Registered as
//! [`crate::kind::Kind::Nexthops`]; converge writes them in the rules and
//! routes' `ip -batch`.
use crate::change::{Change, Conflict};
use crate::error::Result;
use crate::facts::Sections;
use crate::ownership::is_owned_route;
use crate::state::nexthop::{Hop, Nexthop};
use crate::state::State;
use std::collections::BTreeSet;

/// Nexthop objects: their existence, ids and kind are intent; where the
/// agent points them is dynamic. A single nexthop pointing at the gateway
/// of another desired nexthop (a fallback line), or a group holding a
/// non-empty subset of its desired members with their weights, is the
/// agent's failover: information, not a change, so `plan` during an outage
/// is empty and `apply` keeps the failover in force. Anything else is a
/// change. Foreign nexthops (other protocol) at a desired id are conflicts.
/// Only the nexthops the agent repoints (`agent_moves`) can be in
/// failover: an unmonitored line's nexthop elsewhere (a dynamic line's,
/// after its lease came back) is a change.
pub fn diff(
    desired: &State,
    live: &State,
    changes: &mut Vec<Change>,
    conflicts: &mut Vec<Conflict>,
    dynamic: &mut Vec<String>,
) {
    let moves = agent_moves(desired);
    let movable = |id: u32| moves.as_ref().is_none_or(|m| m.contains(&id));
    let targets = failover_targets(&desired.nexthops);
    let dynamic_ok = |want: &Nexthop, have: &Nexthop| match (&want.hop, &have.hop) {
        (Hop::Via { .. } | Hop::Dev { .. }, Hop::Via { .. } | Hop::Dev { .. }) => {
            targets.contains(&&have.hop)
        }
        (Hop::Group(w), Hop::Group(h)) => !h.is_empty() && h.iter().all(|m| w.contains(m)),
        _ => false,
    };
    for want in &desired.nexthops {
        match live.nexthops.iter().find(|n| n.id == want.id) {
            None => changes.push(Change::Nexthop {
                from: None,
                to: Some(want.clone()),
            }),
            Some(have) if !is_owned_route(have) => conflicts.push(Conflict {
                message: format!(
                    "nexthop id {} is `{}` (proto {}), which dwprov does not own; dwprov needs the id for `{}`",
                    have.id, have.hop, have.proto, want.hop
                ),
                route: None,
            }),
            Some(have) if have.hop == want.hop => {}
            Some(have) if movable(want.id) && dynamic_ok(want, have) => dynamic.push(format!(
                "nexthop {} is `{}` (intent `{}`): the agent's failover, kept",
                want.id, have.hop, want.hop
            )),
            Some(have) => changes.push(Change::Nexthop {
                from: Some(have.clone()),
                to: Some(want.clone()),
            }),
        }
    }
    for have in live.nexthops.iter().filter(|n| is_owned_route(*n)) {
        if !desired.nexthops.iter().any(|n| n.id == have.id) {
            changes.push(Change::Nexthop {
                from: Some(have.clone()),
                to: None,
            });
        }
    }
}

/// Where the agent may point a single nexthop on failover: at any desired
/// single nexthop's target (another line's gateway or device).
pub fn failover_targets(desired: &[Nexthop]) -> Vec<&Hop> {
    desired
        .iter()
        .filter(|n| matches!(n.hop, Hop::Via { .. } | Hop::Dev { .. }))
        .map(|n| &n.hop)
        .collect()
}

/// The ids of the nexthops the agent repoints, from the desired agent
/// config: its monitored lines' and the balanced group's. No config: no
/// agent, none. A config that does not parse (it always does when dwprov
/// rendered it): `None`, every nexthop may be the agent's, as before
/// issue 14 told them apart.
fn agent_moves(desired: &State) -> Option<BTreeSet<u32>> {
    let Some(text) = desired.files.get(crate::ownership::AGENT_CONFIG) else {
        return Some(BTreeSet::new());
    };
    let cfg = crate::agent::config::Config::parse(text, crate::ownership::AGENT_CONFIG).ok()?;
    let lines = cfg.lines.iter().filter(|l| l.health.is_some());
    Some(
        lines
            .filter_map(|l| l.nexthop)
            .chain(cfg.balanced.map(|b| b.id))
            .collect(),
    )
}

/// The snapshot's section of nexthops (gateway/show.sh; snapshots of
/// older versions have none).
pub const SHOW_SNAPSHOT: &str = "sec_if nexthops\n";

/// The nexthops as a snapshot listed them (`nexthop replace id N ...`
/// lines); none in snapshots of older versions.
pub fn from_snapshot(sections: &Sections) -> Result<Vec<Nexthop>> {
    let Some(sec) = sections.get("nexthops").filter(|s| s.status == 0) else {
        return Ok(Vec::new());
    };
    let text = sec.stdout.replace("nexthop replace ", "nexthop add ");
    let (mut nh, _) = crate::state::nexthop::split_batch(&text, "snapshot nexthops")?;
    nh.sort();
    Ok(nh)
}
