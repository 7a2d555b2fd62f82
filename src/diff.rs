//! Typed diff of desired against live state, restricted to what dwprov owns.
//!
//! Ownership is explicit and checked here, in one place:
//! - ip rules and routes tagged with protocol [`crate::ROUTE_PROTO`];
//! - iptables chains named `DWPROV-*`, and the jump rules into them;
//! - the files dwprov renders (fixed paths, marked with a header);
//! - the sysctl keys dwprov sets (never "removed": the kernel has no unset).
//!
//! Anything else on the host is never part of a change.
use crate::state::ip::RouteKey;
use crate::state::iptables::IptRule;
use crate::state::{Route, Rule, State};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Prefix of every iptables chain dwprov owns.
pub const CHAIN_PREFIX: &str = "DWPROV-";

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
    /// A jump rule from a built-in chain into a DWPROV-* chain.
    Jump {
        table: String,
        chain: String,
        op: Op,
        rule: IptRule,
    },
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
            Change::Chain { from, to, .. } => (from.is_some(), to.is_some()),
        };
        match (from, to) {
            (false, true) => 1,
            (true, false) => -1,
            _ => 0,
        }
    }
}

/// Counts for the `+3 ~1 -2` summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl Summary {
    pub fn of(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c.sign() {
                1 => s.add += 1,
                -1 => s.remove += 1,
                _ => s.change += 1,
            }
        }
        s
    }
    pub fn is_empty(&self) -> bool {
        self.add + self.change + self.remove == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{} ~{} -{}", self.add, self.change, self.remove)
    }
}

/// The result of comparing one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostDiff {
    pub changes: Vec<Change>,
    /// Desired objects that collide with something dwprov does not own
    /// (e.g. a foreign default route in main): applying would overwrite it,
    /// so the host is refused until the admin decides.
    pub conflicts: Vec<String>,
}

pub fn is_owned_route(r: &Route) -> bool {
    r.proto == crate::ROUTE_PROTO
}

pub fn is_owned_rule(r: &Rule) -> bool {
    r.proto == crate::ROUTE_PROTO
}

pub fn is_owned_chain(name: &str) -> bool {
    name.starts_with(CHAIN_PREFIX)
}

pub fn is_owned_jump(r: &IptRule) -> bool {
    r.target().is_some_and(is_owned_chain)
}

/// Compare desired with live, owned objects only.
pub fn diff(desired: &State, live: &State) -> HostDiff {
    let mut d = HostDiff::default();
    diff_files(desired, live, &mut d);
    diff_sysctls(desired, live, &mut d);
    diff_rules(desired, live, &mut d);
    diff_routes(desired, live, &mut d);
    diff_iptables(desired, live, &mut d);
    d
}

fn diff_files(desired: &State, live: &State, d: &mut HostDiff) {
    for (path, want) in &desired.files {
        let have = live.files.get(path);
        if have != Some(want) {
            d.changes.push(Change::File {
                path: path.clone(),
                from: have.cloned(),
                to: Some(want.clone()),
            });
        }
    }
    for (path, have) in &live.files {
        if !desired.files.contains_key(path) {
            d.changes.push(Change::File {
                path: path.clone(),
                from: Some(have.clone()),
                to: None,
            });
        }
    }
}

fn diff_sysctls(desired: &State, live: &State, d: &mut HostDiff) {
    for (key, want) in &desired.sysctls {
        let have = live.sysctls.get(key);
        if have != Some(want) {
            d.changes.push(Change::Sysctl {
                key: key.clone(),
                from: have.cloned(),
                to: want.clone(),
            });
        }
    }
}

fn diff_rules(desired: &State, live: &State, d: &mut HostDiff) {
    let want: BTreeSet<&Rule> = desired.rules.iter().collect();
    let have: BTreeSet<&Rule> = live.rules.iter().filter(|r| is_owned_rule(r)).collect();
    for r in want.difference(&have) {
        d.changes.push(Change::Rule {
            op: Op::Add,
            rule: (*r).clone(),
        });
    }
    for r in have.difference(&want) {
        d.changes.push(Change::Rule {
            op: Op::Remove,
            rule: (*r).clone(),
        });
    }
}

fn diff_routes(desired: &State, live: &State, d: &mut HostDiff) {
    let mut have: BTreeMap<RouteKey, Vec<&Route>> = BTreeMap::new();
    for r in &live.routes {
        have.entry(r.key()).or_default().push(r);
    }
    let mut wanted_keys = BTreeSet::new();
    for want in &desired.routes {
        wanted_keys.insert(want.key());
        match have.get(&want.key()).map(|v| v.as_slice()) {
            None | Some([]) => d.changes.push(Change::Route {
                from: None,
                to: Some(want.clone()),
            }),
            Some(live_routes) => {
                if live_routes.contains(&want) {
                    continue;
                }
                match live_routes.iter().find(|r| is_owned_route(r)) {
                    Some(old) => d.changes.push(Change::Route {
                        from: Some((*old).clone()),
                        to: Some(want.clone()),
                    }),
                    None => d.conflicts.push(format!(
                        "table {}: `{}` would replace `{}`, which dwprov does not own (proto {}); \
                         remove it, or give dwprov's route another metric",
                        want.table,
                        want.display(),
                        live_routes[0].display(),
                        live_routes[0].proto
                    )),
                }
            }
        }
    }
    for r in live.routes.iter().filter(|r| is_owned_route(r)) {
        if !wanted_keys.contains(&r.key()) {
            d.changes.push(Change::Route {
                from: Some(r.clone()),
                to: None,
            });
        }
    }
}

fn diff_iptables(desired: &State, live: &State, d: &mut HostDiff) {
    let tables: BTreeSet<&String> = desired
        .iptables
        .tables
        .keys()
        .chain(live.iptables.tables.keys())
        .collect();
    for table in tables {
        let want = desired.iptables.tables.get(table);
        let have = live.iptables.tables.get(table);
        let chains: BTreeSet<&String> = want
            .into_iter()
            .chain(have)
            .flat_map(|t| t.chains.keys())
            .collect();
        for chain in chains {
            let w = want.and_then(|t| t.chains.get(chain));
            let h = have.and_then(|t| t.chains.get(chain));
            if is_owned_chain(chain) {
                let wr = w.map(|c| c.rules.clone());
                let hr = h.map(|c| c.rules.clone());
                if wr != hr {
                    d.changes.push(Change::Chain {
                        table: table.clone(),
                        chain: chain.clone(),
                        from: hr,
                        to: wr,
                    });
                }
            } else {
                // A built-in (or foreign) chain: only our jump rules in it are ours.
                let wj: Vec<&IptRule> = w
                    .iter()
                    .flat_map(|c| &c.rules)
                    .filter(|r| is_owned_jump(r))
                    .collect();
                let hj: Vec<&IptRule> = h
                    .iter()
                    .flat_map(|c| &c.rules)
                    .filter(|r| is_owned_jump(r))
                    .collect();
                for r in &wj {
                    if !hj.contains(r) {
                        d.changes.push(Change::Jump {
                            table: table.clone(),
                            chain: chain.clone(),
                            op: Op::Add,
                            rule: (*r).clone(),
                        });
                    }
                }
                for r in &hj {
                    if !wj.contains(r) {
                        d.changes.push(Change::Jump {
                            table: table.clone(),
                            chain: chain.clone(),
                            op: Op::Remove,
                            rule: (*r).clone(),
                        });
                    }
                }
            }
        }
    }
}

/// One group of the readable plan: old and new lines of one kind of object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub title: String,
    pub old: Vec<String>,
    pub new: Vec<String>,
}

/// Owned objects of both states as text, grouped by kind (rules, routes per
/// table, iptables table/chain, files, sysctls); only groups that differ.
pub fn views(desired: &State, live: &State) -> Vec<View> {
    let names = |id: u32| {
        desired
            .rt_tables
            .name_of(id)
            .map(str::to_string)
            .unwrap_or_else(|| live.rt_tables.label(id))
    };
    let mut out = Vec::new();
    let mut push = |title: String, mut old: Vec<String>, mut new: Vec<String>, sort: bool| {
        if sort {
            old.sort();
            new.sort();
        }
        if old != new {
            out.push(View { title, old, new });
        }
    };
    for (path, _) in desired
        .files
        .iter()
        .chain(live.files.iter())
        .collect::<BTreeMap<_, _>>()
    {
        let lines = |s: Option<&String>| {
            s.map(|t| t.lines().map(str::to_string).collect())
                .unwrap_or_default()
        };
        push(
            format!("file {path}"),
            lines(live.files.get(path)),
            lines(desired.files.get(path)),
            false,
        );
    }
    let sys = |s: &State| -> Vec<String> {
        desired
            .sysctls
            .keys()
            .filter_map(|k| s.sysctls.get(k).map(|v| format!("{k} = {v}")))
            .collect()
    };
    push("sysctls".into(), sys(live), sys(desired), true);
    let rules = |s: &State, owned_only: bool| -> Vec<String> {
        let mut r: Vec<&Rule> = s
            .rules
            .iter()
            .filter(|r| !owned_only || is_owned_rule(r))
            .collect();
        r.sort();
        r.iter().map(|r| r.display(&names)).collect()
    };
    let (old_rules, new_rules) = (rules(live, true), rules(desired, false));
    push("ip rules".into(), old_rules, new_rules, false);
    let tables: BTreeSet<u32> = desired
        .routes
        .iter()
        .chain(live.routes.iter().filter(|r| is_owned_route(r)))
        .map(|r| r.table)
        .collect();
    for t in tables {
        let routes = |s: &State, owned_only: bool| -> Vec<String> {
            s.routes
                .iter()
                .filter(|r| r.table == t && (!owned_only || is_owned_route(r)))
                .map(|r| r.display())
                .collect()
        };
        push(
            format!("routes table {}", names(t)),
            routes(live, true),
            routes(desired, false),
            true,
        );
    }
    let tables: BTreeSet<&String> = desired
        .iptables
        .tables
        .keys()
        .chain(live.iptables.tables.keys())
        .collect();
    for table in tables {
        let chains: BTreeSet<&String> = [&desired.iptables, &live.iptables]
            .iter()
            .filter_map(|i| i.tables.get(table))
            .flat_map(|t| t.chains.keys())
            .collect();
        for chain in chains {
            let get = |s: &State| -> Vec<String> {
                s.iptables
                    .chain(table, chain)
                    .map(|c| {
                        c.rules
                            .iter()
                            .filter(|r| is_owned_chain(chain) || is_owned_jump(r))
                            .map(|r| format!("-A {chain} {r}"))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            push(
                format!("iptables {table} {chain}"),
                get(live),
                get(desired),
                false,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ip::parse_batch;
    use crate::state::{Iptables, RtTables};

    fn state(batch: &str, ipt: &str) -> State {
        let b = parse_batch(batch, "t", &RtTables::default()).unwrap();
        State {
            rules: b.rules,
            routes: b.routes,
            iptables: Iptables::parse(ipt).unwrap(),
            ..State::default()
        }
    }

    #[test]
    fn equal_states_have_no_changes() {
        let s = state(
            "rule add priority 1100 fwmark 0x100/0xff00 lookup 100 protocol 201\nroute add default via 1.2.3.1 dev eth1 table 100 proto 201",
            "*nat\n:DWPROV-POSTROUTING - [0:0]\n-A POSTROUTING -m comment --comment dwprov -j DWPROV-POSTROUTING\n-A DWPROV-POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n",
        );
        assert_eq!(diff(&s, &s), HostDiff::default());
        assert!(views(&s, &s).is_empty());
    }

    #[test]
    fn foreign_objects_are_never_changed() {
        let desired = state("route add 10.0.0.0/8 via 1.2.3.1 dev eth1 proto 201", "");
        let live = state(
            "rule add priority 500 from 10.1.0.0/16 lookup 7\n\
             route add 172.16.0.0/12 via 1.2.3.1 dev eth1 proto static\n\
             route add 10.0.0.0/8 via 1.2.3.9 dev eth1 proto 201",
            "*nat\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER -i docker0 -j RETURN\nCOMMIT\n",
        );
        let d = diff(&desired, &live);
        assert_eq!(d.changes.len(), 1, "{:#?}", d.changes);
        assert!(matches!(
            &d.changes[0],
            Change::Route {
                from: Some(_),
                to: Some(_)
            }
        ));
    }

    #[test]
    fn owned_leftovers_are_pruned() {
        let desired = state("", "");
        let live = state(
            "rule add priority 1300 from 192.168.0.50 lookup 200 protocol 201\nroute add 100.65.0.0/16 via 1.2.3.1 dev eth2 proto 201",
            "*nat\n:DWPROV-PREROUTING - [0:0]\n-A PREROUTING -m comment --comment dwprov -j DWPROV-PREROUTING\n-A DWPROV-PREROUTING -d 1.2.3.4/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.0.100\nCOMMIT\n",
        );
        let d = diff(&desired, &live);
        let s = Summary::of(&d.changes);
        assert_eq!((s.add, s.change, s.remove), (0, 0, 4), "{:#?}", d.changes);
    }

    #[test]
    fn a_foreign_route_in_the_way_is_a_conflict_not_a_change() {
        let desired = state("route add default via 1.2.3.1 dev eth1 proto 201", "");
        let live = state("route add default via 9.9.9.9 dev eth0 proto boot", "");
        let d = diff(&desired, &live);
        assert!(d.changes.is_empty());
        assert_eq!(d.conflicts.len(), 1);
        assert!(
            d.conflicts[0].contains("does not own"),
            "{}",
            d.conflicts[0]
        );
    }

    #[test]
    fn views_group_by_kind() {
        let desired = state(
            "rule add priority 1200 from 1.2.3.2 lookup 100 protocol 201\nroute add default via 1.2.3.1 dev eth1 table 100 proto 201",
            "",
        );
        let v = views(&desired, &State::default());
        let titles: Vec<_> = v.iter().map(|v| v.title.as_str()).collect();
        assert_eq!(titles, ["ip rules", "routes table 100"]);
    }
}
