//! The rules-and-routes kind, in one home: policy rules and routes tagged
//! with dwprov's protocol ([`crate::ownership::ROUTE_PROTO`]). Its gather
//! sections and typed state are [`crate::state::ip`]'s (`FACT_SECTIONS`,
//! the `ip -j` parsers); here are the diff, owned objects only, and the
//! read-back of a snapshot's listings. Registered as
//! [`crate::kind::Kind::RulesRoutes`]; converge applies them in one `ip
//! -batch` with the nexthops, boot restores them from `ip.batch`.
use crate::change::{Change, Conflict, Op};
use crate::error::Result;
use crate::facts::{snapshot_listing, Sections};
use crate::ownership::{is_owned_route, is_owned_rule};
use crate::state::ip::RouteKey;
use crate::state::RtTables;
use crate::state::{Route, Rule};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Desired rules against the live owned ones: each missing one added,
/// each owned one not desired removed (a rule has no identity but itself).
pub fn diff_rules(desired: &[Rule], live: &[Rule], changes: &mut Vec<Change>) {
    let want: BTreeSet<&Rule> = desired.iter().collect();
    let have: BTreeSet<&Rule> = live.iter().filter(is_owned_rule).collect();
    for r in want.difference(&have) {
        changes.push(Change::Rule {
            op: Op::Add,
            rule: (*r).clone(),
        });
    }
    for r in have.difference(&want) {
        changes.push(Change::Rule {
            op: Op::Remove,
            rule: (*r).clone(),
        });
    }
}

/// Desired routes against live ones, by key (table, destination, metric,
/// ...): a missing one added, an owned one that differs replaced, an
/// owned one not desired removed; a foreign route at a desired key is a
/// conflict, never touched.
pub fn diff_routes(
    desired: &[Route],
    live: &[Route],
    changes: &mut Vec<Change>,
    conflicts: &mut Vec<Conflict>,
) {
    let mut have: BTreeMap<RouteKey, Vec<&Route>> = BTreeMap::new();
    for r in live {
        have.entry(r.key()).or_default().push(r);
    }
    let mut wanted_keys = BTreeSet::new();
    for want in desired {
        wanted_keys.insert(want.key());
        match have.get(&want.key()).map(|v| v.as_slice()) {
            None | Some([]) => changes.push(Change::Route {
                from: None,
                to: Some(want.clone()),
            }),
            Some(live_routes) => {
                if live_routes.contains(&want) {
                    continue;
                }
                match live_routes.iter().find(is_owned_route) {
                    Some(old) => changes.push(Change::Route {
                        from: Some((*old).clone()),
                        to: Some(want.clone()),
                    }),
                    None => {
                        conflicts.push(Conflict {
                            message: format!(
                                "table {}: `{}` would replace `{}`, which dwprov does not own (proto {}); \
                                 remove it, or give dwprov's route another metric",
                                want.table,
                                want.display(),
                                live_routes[0].display(),
                                live_routes[0].proto
                            ),
                            route: Some(want.key()),
                        })
                    }
                }
            }
        }
    }
    for r in live.iter().filter(is_owned_route) {
        if !wanted_keys.contains(&r.key()) {
            changes.push(Change::Route {
                from: Some(r.clone()),
                to: None,
            });
        }
    }
}

/// Rules and routes as a snapshot listed them (gateway/lib.sh's
/// `owned_rules`/`owned_routes`: `rule add ...` and `route replace proto N
/// ...` lines), through the batch parser.
pub fn from_snapshot(sections: &Sections, rt_tables: &RtTables) -> Result<(Vec<Rule>, Vec<Route>)> {
    // Listings put the protocol first; the batch parser wants the
    // destination first.
    let proto = format!("proto {} ", crate::ROUTE_PROTO);
    let mut batch = String::new();
    let rules = snapshot_listing(sections, "rules")?;
    let routes = snapshot_listing(sections, "routes")?;
    for l in rules.lines().chain(routes.lines()) {
        match l
            .strip_prefix("route replace ")
            .and_then(|r| r.strip_prefix(&proto))
        {
            Some(rest) => {
                let _ = writeln!(batch, "route add {rest} {}", proto.trim_end());
            }
            None => {
                let _ = writeln!(batch, "{l}");
            }
        }
    }
    let b = crate::state::ip::parse_batch(&batch, "snapshot rules and routes", rt_tables)?;
    Ok((b.rules, b.routes))
}
