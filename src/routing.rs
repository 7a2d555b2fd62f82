//! The rules-and-routes kind, in one home: policy rules and routes tagged
//! with dwprov's protocol ([`crate::ownership::ROUTE_PROTO`]). Its gather
//! sections and typed state are [`crate::state::ip`]'s (`fact_sections_of`,
//! one listing per family, `from_listings`, the `ip -j` parsers); here
//! are the diff, owned objects only, and the read-back of a snapshot's
//! listings. Registered as
//! [`crate::kind::Kind::RulesRoutes`]; converge applies them in one `ip
//! -batch` with the nexthops, whose lines [`ip_batch_with_undo`] orders
//! here (this module is their one batch), boot restores them from `ip.batch`.
use crate::change::{Change, Conflict, Op};
use crate::error::Result;
use crate::facts::{snapshot_listing, Sections};
use crate::ownership::{is_owned_route, is_owned_rule};
use crate::state::ip::RouteKey;
use crate::state::RtTables;
use crate::state::{Family, Route, Rule};
use std::collections::{BTreeSet, HashMap, HashSet};
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
    // Hashed: a verify compares some 4,000 equal routes (2.0 ms with a
    // tree here, 1.4 ms hashed).
    let mut have: HashMap<RouteKey, Vec<&Route>> = HashMap::with_capacity(live.len());
    for r in live {
        have.entry(r.key()).or_default().push(r);
    }
    let mut wanted_keys = HashSet::with_capacity(desired.len());
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

/// The snapshot's sections of rules and routes (gateway/show.sh).
/// The gateway-side snapshot and revert steps of rules, routes and
/// nexthops (`snapshot_routing`, `revert_routing`: one step for both
/// kinds, as they interleave), appended to the installed lib.sh by
/// [`crate::kind::gateway_library`].
pub const GATEWAY_SH: &str = include_str!("../gateway/kind-routing.sh");

pub const SHOW_SNAPSHOT: &str = "sec rules \"$S/rules\"\nsec routes \"$S/routes\"\n";

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
        // A later family's line keeps its flag (Family::batch_prefix).
        let (_, body) = Family::split_batch_prefix(l);
        let flag = &l[..l.len() - body.len()];
        match body
            .strip_prefix("route replace ")
            .and_then(|r| r.strip_prefix(&proto))
        {
            Some(rest) => {
                let _ = writeln!(batch, "{flag}route add {rest} {}", proto.trim_end());
            }
            None => {
                let _ = writeln!(batch, "{l}");
            }
        }
    }
    let b = crate::state::ip::parse_batch(&batch, "snapshot rules and routes", rt_tables)?;
    Ok((b.rules, b.routes))
}

/// The `ip -batch` lines for these changes, ordered so traffic always has a
/// route: routes are added/replaced first, then rules added, then rules
/// removed, then routes removed.
pub fn ip_batch(changes: &[Change]) -> String {
    ip_batch_with_undo(changes).0
}

/// [`ip_batch`], and for every `route replace` line the line that puts the
/// old route back (`LINE route replace OLD`), from which the gateway undoes
/// a batch that stopped half-way (`ip_batch` in gateway/lib.sh derives the
/// other inverses from the lines themselves). A new route is `route add`,
/// not `replace`: if the kernel has it although the gathered state did not,
/// the add fails with "File exists" and the lie is found before it costs.
pub fn ip_batch_with_undo(changes: &[Change]) -> (String, String) {
    // Nexthop objects (issue 11) come before the routes using them and go
    // after: created and changed first (members before groups: by id),
    // deleted last (groups first). Each has its inverse in the undo list.
    let (mut nh_add, mut nh_del): (Vec<_>, Vec<_>) = changes
        .iter()
        .filter_map(|c| match c {
            Change::Nexthop { from, to } => Some((from, to)),
            _ => None,
        })
        .partition(|(_, to)| to.is_some());
    nh_add.sort_by_key(|(_, to)| to.as_ref().map(|n| n.id));
    nh_del.sort_by_key(|(from, _)| std::cmp::Reverse(from.as_ref().map(|n| n.id)));
    let mut nexthops_first = String::new();
    let mut undo = String::new();
    let mut line = 0;
    for (from, to) in &nh_add {
        let Some(to) = to else { continue };
        line += 1;
        match from {
            None => {
                let _ = writeln!(nexthops_first, "nexthop add {}", to.to_batch());
                let _ = writeln!(undo, "{line} nexthop del id {}", to.id);
            }
            Some(old) => {
                let _ = writeln!(nexthops_first, "nexthop replace {}", to.to_batch());
                let _ = writeln!(undo, "{line} nexthop replace {}", old.to_batch());
            }
        }
    }
    let (routes_rules, route_undo, lines) = ip_batch_routes(changes, line);
    undo.push_str(&route_undo);
    let mut nexthops_last = String::new();
    let mut line = lines;
    for (from, _) in &nh_del {
        let Some(old) = from else { continue };
        line += 1;
        let _ = writeln!(nexthops_last, "nexthop del id {}", old.id);
        let _ = writeln!(undo, "{line} nexthop add {}", old.to_batch());
    }
    (nexthops_first + &routes_rules + &nexthops_last, undo)
}

/// The route and rule lines of [`ip_batch_with_undo`], numbered from
/// `first_line + 1`; and the number of the last line. A family's lines are
/// one block, in [`Family::ALL`] order (the managed families' order, the
/// first without a flag): gateway/lib.sh's `batch_ip` runs a block per
/// family, so the lines before a failed one are exactly those that ran.
fn ip_batch_routes(changes: &[Change], first_line: usize) -> (String, String, usize) {
    let mut text = String::new();
    let mut undo = String::new();
    let mut line = first_line;
    for family in Family::ALL {
        let (t, u, n) = ip_batch_routes_of(changes, family, line);
        text.push_str(&t);
        undo.push_str(&u);
        line = n;
    }
    (text, undo, line)
}

/// [`ip_batch_routes`] of one family's changes.
fn ip_batch_routes_of(
    changes: &[Change],
    family: Family,
    first_line: usize,
) -> (String, String, usize) {
    let mut add_routes = String::new();
    let mut undo = String::new();
    let mut add_rules = String::new();
    let mut del_rules = String::new();
    let mut del_routes = String::new();
    let mut line = first_line;
    let f = family.batch_prefix();
    for c in changes {
        match c {
            Change::Route { from, to: Some(r) } if r.family() == family => {
                line += 1;
                match from {
                    None => {
                        let _ = writeln!(add_routes, "{f}route add {}", r.to_batch());
                    }
                    Some(old) => {
                        let _ = writeln!(add_routes, "{f}route replace {}", r.to_batch());
                        let _ = writeln!(undo, "{line} {f}route replace {}", old.to_batch());
                    }
                }
            }
            Change::Route {
                from: Some(r),
                to: None,
            } if r.family() == family => {
                let _ = writeln!(del_routes, "{f}route del {}", r.to_batch());
            }
            Change::Rule { op: Op::Add, rule } if rule.family() == family => {
                let _ = writeln!(add_rules, "{f}rule add {}", rule.to_batch());
            }
            Change::Rule {
                op: Op::Remove,
                rule,
            } if rule.family() == family => {
                let _ = writeln!(del_rules, "{f}rule del {}", rule.to_batch());
            }
            _ => {}
        }
    }
    let text = add_routes + &add_rules + &del_rules + &del_routes;
    let n = first_line + text.lines().count();
    (text, undo, n)
}
