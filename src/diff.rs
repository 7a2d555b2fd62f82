//! Typed diff of desired against live state, restricted to what dwprov owns:
//! each kind's diff is in its home ([`crate::files`], [`crate::sysctls`],
//! [`crate::routing`], [`crate::nexthops`], [`crate::firewall`]), composed
//! here in [`crate::kind::KINDS`] order, with the plan's readable views.
//!
//! Ownership (defined in [`crate::ownership`]) is applied there:
//! - ip rules and routes tagged with protocol [`crate::ownership::ROUTE_PROTO`];
//! - the firewall's owned objects, per backend ([`crate::firewall`]: for
//!   iptables, chains named `DWPROV-*` and the jump rules into them);
//! - the files dwprov renders (fixed paths, marked with a header);
//! - the sysctl keys dwprov sets (never "removed": the kernel has no unset).
//!
//! Anything else on the host is never part of a change.
pub use crate::change::Conflict;
use crate::kind::{Kind, KINDS};
use crate::ownership::owned;
use crate::state::{Route, Rule, State};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

pub use crate::ownership::{
    is_owned_chain, is_owned_jump, is_owned_route, is_owned_rule, CHAIN_PREFIX,
};

pub use crate::change::{Change, Op};

/// Counts for the `+3 ~1 -2` summary: lines of the readable plan, not
/// objects (a chain that gains one DNAT rule is `+1`, as shown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl Summary {
    /// Counts of the `+ ~ -` lines the readable plan shows for `changes`
    /// ([`change_lines`]): what a plan says it changes is what it shows. A
    /// chain rewritten as a whole counts the rules that come and go.
    pub fn of(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        let names = |_: u32| String::new();
        for c in changes {
            for l in lines_of(c, &names, false).2 {
                match l.sign {
                    Sign::Add => s.add += 1,
                    Sign::Remove => s.remove += 1,
                    Sign::Change => s.change += 1,
                }
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
    pub conflicts: Vec<Conflict>,
    /// Hand-made objects that duplicate owned ones about to be installed
    /// (src/takeover.rs): refused without `apply --adopt`, removed with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hand_made: Vec<crate::takeover::HandMade>,
    /// Dynamic state shown as information, not changes: the agent's
    /// failover (a nexthop pointing at a fallback line, a group without a
    /// dead member), issue 11.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic: Vec<String>,
}

impl HostDiff {
    /// The conflicts' messages, `; `-separated (for one-line errors).
    pub fn conflicts_text(&self) -> String {
        let all: Vec<&str> = self.conflicts.iter().map(|c| c.message.as_str()).collect();
        all.join("; ")
    }

    /// The diff of `desired` against `live`, with the hand-made duplicates.
    /// A foreign route in the way of an owned one is one of them (the
    /// take-over replaces it), so it is no longer a conflict.
    pub fn planned(desired: &State, live: &State) -> HostDiff {
        let mut d = diff(desired, live);
        d.hand_made = crate::takeover::hand_made(desired, live);
        let taken: BTreeSet<crate::state::ip::RouteKey> = d
            .hand_made
            .iter()
            .filter_map(|h| match h {
                crate::takeover::HandMade::Route { route } => Some(route.key()),
                _ => None,
            })
            .collect();
        d.conflicts
            .retain(|c| !c.route.as_ref().is_some_and(|k| taken.contains(k)));
        // The owned route that replaces a hand-made one is an addition.
        for want in desired.routes.iter().filter(|r| taken.contains(&r.key())) {
            if !live.routes.contains(want) {
                d.changes.push(Change::Route {
                    from: None,
                    to: Some(want.clone()),
                });
            }
        }
        d
    }
}

/// Compare desired with live, owned objects only.
pub fn diff(desired: &State, live: &State) -> HostDiff {
    let mut d = HostDiff::default();
    // Kind by kind, in the registry's order (crate::kind).
    for kind in KINDS {
        match kind {
            Kind::Files => crate::files::diff(&desired.files, &live.files, &mut d.changes),
            Kind::Sysctls => crate::sysctls::diff(&desired.sysctls, &live.sysctls, &mut d.changes),
            Kind::RulesRoutes => {
                crate::routing::diff_rules(&desired.rules, &live.rules, &mut d.changes);
                crate::routing::diff_routes(
                    &desired.routes,
                    &live.routes,
                    &mut d.changes,
                    &mut d.conflicts,
                );
            }
            Kind::Nexthops => crate::nexthops::diff(
                desired,
                live,
                &mut d.changes,
                &mut d.conflicts,
                &mut d.dynamic,
            ),
            Kind::Firewall => {
                crate::firewall::Firewall::diff(&desired.firewall, &live.firewall, &mut d.changes)
            }
            // Their config and unit files are owned files (Kind::Files).
            Kind::Units => {}
        }
    }
    d
}

/// How a line of the readable plan changes its object; the `+ ~ -` of the
/// summary counts exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sign {
    Add,
    Change,
    Remove,
}

impl Sign {
    pub fn mark(self) -> char {
        match self {
            Sign::Add => '+',
            Sign::Change => '~',
            Sign::Remove => '-',
        }
    }
}

/// One line of the readable plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLine {
    pub sign: Sign,
    pub text: String,
}

/// What a group of the plan holds, in the order plans show them: what
/// changes the traffic first (rules, routes, firewall), then sysctls, then
/// the generated files (one line each; their content with `-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViewKind {
    Rules,
    Routes,
    Iptables,
    Nftables,
    Sysctls,
    Files,
}

/// One group of the readable plan: the changed objects of one kind (ip
/// rules, routes of one table, one iptables chain, sysctls, files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub kind: ViewKind,
    pub title: String,
    pub lines: Vec<ViewLine>,
}

/// Table names for display: the rt_tables of `states` (first wins), and
/// dwprov's own `rt_tables.d/dwprov.conf` among their files (gather keeps
/// that file apart from the foreign rt_tables entries).
pub fn table_names(states: &[&State]) -> crate::state::RtTables {
    let mut names = crate::state::RtTables::default();
    for s in states {
        names.entries.extend(s.rt_tables.entries.iter().cloned());
        if let Some(text) = s.files.get(OWNED_RT_TABLES) {
            if let Ok(own) = crate::state::RtTables::parse(text, OWNED_RT_TABLES) {
                names.extend(own);
            }
        }
    }
    names
}

/// The file naming dwprov's line tables (rendered by `render`).
pub use crate::ownership::RT_TABLES_CONF as OWNED_RT_TABLES;

/// An ip rule as plans and `gather` show it: `ip rule`'s spelling with
/// table names, and `proto dwprov` on the rules dwprov owns, as `ip` prints it.
pub fn rule_text(r: &Rule, names: &dyn Fn(u32) -> String) -> String {
    format!("{}{}", r.display(names), owner_tag(is_owned_rule(r)))
}

/// A route as plans and `gather` show it (see [`rule_text`]).
pub fn route_text(r: &Route) -> String {
    format!("{}{}", r.display(), owner_tag(is_owned_route(r)))
}

fn owner_tag(owned: bool) -> String {
    if owned {
        format!(" proto {}", crate::ownership::ROUTE_PROTO_NAME)
    } else {
        String::new()
    }
}

/// The lines of the readable plan for one change: its group (kind, title)
/// and its `+ ~ -` lines. [`Summary::of`] counts these very lines, so the
/// counts always match what a plan shows. A chain rewritten as a whole is
/// shown (and counted) by the rules that come and go.
pub fn change_lines(
    c: &Change,
    names: &dyn Fn(u32) -> String,
) -> (ViewKind, String, Vec<ViewLine>) {
    lines_of(c, names, true)
}

/// [`change_lines`]; without `text` only the signs (and kinds) are
/// computed, for [`Summary::of`]: the same lines, so the same counts.
fn lines_of(
    c: &Change,
    names: &dyn Fn(u32) -> String,
    text: bool,
) -> (ViewKind, String, Vec<ViewLine>) {
    let line = |sign, f: &dyn Fn() -> String| ViewLine {
        sign,
        text: if text { f() } else { String::new() },
    };
    let add_remove = |from: bool, to: bool| match (from, to) {
        (false, _) => Sign::Add,
        (true, false) => Sign::Remove,
        (true, true) => Sign::Change,
    };
    match c {
        Change::File { path, from, to } => {
            let sign = add_remove(from.is_some(), to.is_some());
            (
                ViewKind::Files,
                "files".into(),
                vec![line(sign, &|| {
                    file_line(path, from.as_deref(), to.as_deref())
                })],
            )
        }
        Change::Sysctl { key, from, to } => {
            let text = || match from {
                Some(f) => format!("{key} = {to} (was {f})"),
                None => format!("{key} = {to}"),
            };
            (
                ViewKind::Sysctls,
                "sysctls".into(),
                vec![line(add_remove(from.is_some(), true), &text)],
            )
        }
        Change::Rule { op, rule } => {
            let sign = if *op == Op::Add {
                Sign::Add
            } else {
                Sign::Remove
            };
            (
                ViewKind::Rules,
                "ip rules".into(),
                vec![line(sign, &|| rule_text(rule, names))],
            )
        }
        Change::Route { from, to } => {
            let r = to.as_ref().or(from.as_ref());
            let title = format!(
                "routes table {}",
                r.map(|r| names(r.table)).unwrap_or_default()
            );
            let text = || match (from, to) {
                (Some(f), Some(t)) => format!("{} (was: {})", route_text(t), f.display()),
                (Some(r), None) | (None, Some(r)) => route_text(r),
                (None, None) => String::new(),
            };
            (
                ViewKind::Routes,
                title,
                vec![line(add_remove(from.is_some(), to.is_some()), &text)],
            )
        }
        Change::Nexthop { from, to } => {
            let text = || match (from, to) {
                (Some(f), Some(t)) => format!("id {} {} (was: {})", t.id, t.hop, f.hop),
                (Some(n), None) | (None, Some(n)) => format!("id {} {}", n.id, n.hop),
                (None, None) => String::new(),
            };
            (
                ViewKind::Routes,
                "nexthop objects".into(),
                vec![line(add_remove(from.is_some(), to.is_some()), &text)],
            )
        }
        Change::Jump {
            table,
            chain,
            op,
            rule,
        } => {
            let sign = if *op == Op::Add {
                Sign::Add
            } else {
                Sign::Remove
            };
            (
                ViewKind::Iptables,
                format!("iptables {table} {chain}"),
                vec![line(sign, &|| format!("-A {chain} {rule}"))],
            )
        }
        Change::Chain {
            table,
            chain,
            from,
            to,
        } => {
            let (old, new) = (
                from.as_deref().unwrap_or_default(),
                to.as_deref().unwrap_or_default(),
            );
            let mut lines: Vec<ViewLine> = old
                .iter()
                .filter(|r| !new.contains(r))
                .map(|r| line(Sign::Remove, &|| format!("-A {chain} {r}")))
                .chain(
                    new.iter()
                        .filter(|r| !old.contains(r))
                        .map(|r| line(Sign::Add, &|| format!("-A {chain} {r}"))),
                )
                .collect();
            if lines.is_empty() {
                // Same rules, other order or count; or an empty chain made or dropped.
                lines.push(match (from, to) {
                    (None, _) => line(Sign::Add, &|| format!(":{chain} (new empty chain)")),
                    (_, None) => line(Sign::Remove, &|| format!(":{chain} (empty chain)")),
                    _ => line(Sign::Change, &|| {
                        format!(":{chain} rules reordered ({} rules)", new.len())
                    }),
                });
            }
            (
                ViewKind::Iptables,
                format!("iptables {table} {chain}"),
                lines,
            )
        }
        Change::Nft(c) => {
            let lines = crate::state::nftables::diff::view(c)
                .into_iter()
                .map(|l| {
                    let sign = match l.sign {
                        '+' => Sign::Add,
                        '-' => Sign::Remove,
                        _ => Sign::Change,
                    };
                    line(sign, &|| l.text.clone())
                })
                .collect();
            (
                ViewKind::Nftables,
                format!(
                    "nftables table {} {}",
                    crate::ownership::NFT_FAMILY,
                    crate::ownership::NFT_TABLE
                ),
                lines,
            )
        }
    }
}

/// What an owned file is, for the one line a plan shows of it.
pub fn file_purpose(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.contains("/rt_tables.d/") {
        "names of the line tables"
    } else if path.contains("/rt_protos.d/") {
        concat!(
            "names route protocol ",
            owned!(route_proto),
            " `",
            owned!(route_proto_name),
            "`"
        )
    } else if path.contains("/sysctl.d/") {
        "sysctls, applied at boot"
    } else if name == "ip.batch" {
        "ip rules and routes restored at boot"
    } else if name == "iptables.rules" {
        "iptables chains restored at boot"
    } else if name == "nftables.nft" {
        "nftables table restored at boot"
    } else if name == "boot.sh" {
        "boot restore script"
    } else if name.starts_with("route-cache-flush") {
        "route-cache flush loop (kernels before 3.6)"
    } else if name.ends_with(".service") {
        "systemd unit running the boot restore"
    } else if path.starts_with("/etc/init.d/") {
        "init script running the boot restore (no systemd)"
    } else {
        "file owned by dwprov"
    }
}

/// `PATH  SIZE  what it is` (and how much of it changes).
fn file_line(path: &str, from: Option<&str>, to: Option<&str>) -> String {
    let size = |t: &str| {
        let n = t.len();
        if n < 1024 {
            format!("{n} B")
        } else {
            format!("{:.1} kB", n as f64 / 1024.0)
        }
    };
    let what = file_purpose(path);
    match (from, to) {
        (Some(f), Some(t)) => {
            let d = similar::TextDiff::from_lines(f, t);
            let (mut plus, mut minus) = (0, 0);
            for op in d.ops() {
                for c in d.iter_changes(op) {
                    match c.tag() {
                        similar::ChangeTag::Insert => plus += 1,
                        similar::ChangeTag::Delete => minus += 1,
                        similar::ChangeTag::Equal => {}
                    }
                }
            }
            format!("{path}  {}  {what}  (+{plus} -{minus} lines)", size(t))
        }
        (_, Some(t)) => format!("{path}  {}  {what}", size(t)),
        (Some(f), None) => format!("{path}  {}  {what}", size(f)),
        (None, None) => path.to_string(),
    }
}

/// The readable plan of `changes`: groups in [`ViewKind`] order (then by
/// title), lines sorted within a group (rules by priority).
pub fn views_of(changes: &[Change], names: &dyn Fn(u32) -> String) -> Vec<View> {
    // Per group, its lines with the rule they show (rules sort by priority).
    type Lines<'a> = Vec<(Option<&'a Rule>, ViewLine)>;
    let mut groups: BTreeMap<(ViewKind, String), Lines> = BTreeMap::new();
    for c in changes {
        let (kind, title, lines) = change_lines(c, names);
        let rule = match c {
            Change::Rule { rule, .. } => Some(rule),
            _ => None,
        };
        groups
            .entry((kind, title))
            .or_default()
            .extend(lines.into_iter().map(|l| (rule, l)));
    }
    groups
        .into_iter()
        .map(|((kind, title), mut lines)| {
            match kind {
                ViewKind::Rules => lines.sort_by(|a, b| a.0.cmp(&b.0)),
                // A chain keeps its order: removed rules, then added ones.
                ViewKind::Iptables | ViewKind::Nftables => {}
                _ => lines.sort_by(|a, b| a.1.text.cmp(&b.1.text)),
            }
            View {
                kind,
                title,
                lines: lines.into_iter().map(|(_, l)| l).collect(),
            }
        })
        .collect()
}

/// The readable plan of `desired` against `live` (owned objects only).
pub fn views(desired: &State, live: &State) -> Vec<View> {
    let names = table_names(&[desired, live]);
    views_of(&diff(desired, live).changes, &|id| names.label(id))
}

/// The readable plan of a planned diff ([`HostDiff::planned`]).
pub fn planned_views(d: &HostDiff, desired: &State, live: &State) -> Vec<View> {
    let names = table_names(&[desired, live]);
    views_of(&d.changes, &|id| names.label(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ip::parse_batch;
    use crate::state::nexthop::Nexthop;
    use crate::state::{Iptables, RtTables};

    fn state(batch: &str, ipt: &str) -> State {
        let b = parse_batch(batch, "t", &RtTables::default()).unwrap();
        State {
            rules: b.rules,
            routes: b.routes,
            firewall: crate::firewall::Firewall {
                iptables: Iptables::parse(ipt).unwrap(),
                ..Default::default()
            },
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

    fn nexthops(lines: &str) -> Vec<Nexthop> {
        let (mut n, _) = crate::state::nexthop::split_batch(lines, "t").unwrap();
        n.sort();
        n
    }

    /// Issue 11: where the agent points a nexthop is dynamic state (a
    /// fallback line's gateway, a group without a dead member); anything
    /// else, a missing object or a foreign one at dwprov's id is not.
    /// The agent config of the seed with a balanced default of ctc and
    /// cnc, `health` on the lines named: nexthops 20001 (ctc), 20002 (cnc)
    /// and the group 20999.
    fn agent_config(monitored: &[&str]) -> BTreeMap<String, String> {
        let mut gw = crate::render::tests::seed(crate::model::Method::Fwmark);
        for l in gw.lines.iter_mut() {
            l.default = true;
            if monitored.contains(&l.name.as_str()) {
                l.health = Some(crate::render::tests::health("100.65.1.10"));
            }
        }
        let t = crate::templates::Templates::load(None).unwrap();
        let r = crate::render::render(&gw, &t, None).unwrap();
        let path = crate::ownership::AGENT_CONFIG;
        BTreeMap::from([(path.to_string(), r.desired.files[path].clone())])
    }

    /// Issue 14: only the nexthops the agent repoints can be in failover.
    /// An unmonitored line's nexthop on another line's gateway (a dynamic
    /// line's, left there after its lease came back) is a change back, and
    /// with no agent at all every one is.
    #[test]
    fn an_unmonitored_lines_nexthop_elsewhere_is_a_change() {
        let hops = |cnc_via: &str| {
            nexthops(&format!(
                "nexthop add id 20001 via 1.2.3.1 dev eth1 proto 201
                 nexthop add id 20002 via {cnc_via} proto 201
                 nexthop add id 20999 group 20001/20002 proto 201
"
            ))
        };
        for (files, monitored) in [
            (agent_config(&["ctc"]), false),
            (agent_config(&["cnc"]), true),
        ] {
            let want = State {
                nexthops: hops("5.6.7.1 dev eth2"),
                files: files.clone(),
                ..State::default()
            };
            let live = State {
                nexthops: hops("1.2.3.1 dev eth1"),
                files,
                ..State::default()
            };
            let d = diff(&want, &live);
            let changed: Vec<u32> = d
                .changes
                .iter()
                .filter_map(|c| match c {
                    Change::Nexthop { to: Some(n), .. } => Some(n.id),
                    _ => None,
                })
                .collect();
            if monitored {
                assert!(changed.is_empty() && d.dynamic.len() == 1, "{d:#?}");
            } else {
                assert_eq!(changed, vec![20002], "{d:#?}");
            }
        }
        let want = State {
            nexthops: hops("5.6.7.1 dev eth2"),
            ..State::default()
        };
        let live = State {
            nexthops: hops("1.2.3.1 dev eth1"),
            ..State::default()
        };
        assert_eq!(diff(&want, &live).changes.len(), 1, "no agent: a change");
    }

    #[test]
    fn agent_failover_is_information_not_a_change() {
        let want = State {
            nexthops: nexthops(
                "nexthop add id 20001 via 1.2.3.1 dev eth1 proto 201
                 nexthop add id 20002 via 5.6.7.1 dev eth2 proto 201
                 nexthop add id 20999 group 20001,2/20002 proto 201
",
            ),
            files: agent_config(&["ctc", "cnc"]),
            ..State::default()
        };
        let failed_over = State {
            nexthops: nexthops(
                "nexthop add id 20001 via 1.2.3.1 dev eth1 proto 201
                 nexthop add id 20002 via 1.2.3.1 dev eth1 proto 201
                 nexthop add id 20999 group 20001,2 proto 201
",
            ),
            files: want.files.clone(),
            ..State::default()
        };
        let d = diff(&want, &failed_over);
        assert!(d.changes.is_empty(), "{:#?}", d.changes);
        assert_eq!(d.dynamic.len(), 2, "{:?}", d.dynamic);
        assert_eq!(diff(&want, &want), HostDiff::default());
        // Pointing somewhere no line goes: a change back to intent.
        let elsewhere = State {
            nexthops: nexthops(
                "nexthop add id 20001 via 1.2.3.9 dev eth1 proto 201
                 nexthop add id 20002 via 5.6.7.1 dev eth2 proto 201
                 nexthop add id 20999 group 20001,3/20002 proto 201
                 nexthop add id 20500 via 5.6.7.1 dev eth2 proto 201
                 nexthop add id 7 via 5.6.7.1 dev eth2 proto 4
",
            ),
            files: want.files.clone(),
            ..State::default()
        };
        let d = diff(&want, &elsewhere);
        let signs: Vec<i8> = d.changes.iter().map(Change::sign).collect();
        assert_eq!(signs, vec![0, 0, -1], "{:#?}", d.changes);
        // None at all: created, members before the group, in one batch
        // before the routes using them.
        let none = State {
            files: want.files.clone(),
            ..State::default()
        };
        let d = diff(&want, &none);
        assert_eq!(d.changes.len(), 3);
        let batch = crate::converge::ip_batch(&d.changes);
        assert!(batch.starts_with("nexthop add id 20001 "), "{batch}");
        assert!(batch
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("nexthop add id 20999 group"));
        // A foreign object at dwprov's id is a conflict, never replaced.
        let foreign = State {
            nexthops: nexthops(
                "nexthop add id 20001 via 9.9.9.9 dev eth9 proto 4
",
            ),
            ..State::default()
        };
        assert_eq!(diff(&want, &foreign).conflicts.len(), 1);
        // The plan keeps it: the take-over's filter of route conflicts once
        // zipped a parallel list of route keys with every conflict, which
        // dropped the nexthop's (it has no route key).
        let planned = HostDiff::planned(&want, &foreign);
        assert_eq!(planned.conflicts.len(), 1, "{planned:#?}");
        assert!(planned.conflicts_text().contains("does not own"));
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
            d.conflicts[0].message.contains("does not own"),
            "{}",
            d.conflicts[0]
        );
    }

    #[test]
    fn counts_match_the_lines_shown() {
        let nat = "*nat\n:DWPROV-PREROUTING - [0:0]\n-A PREROUTING -m comment --comment dwprov -j DWPROV-PREROUTING\n-A DWPROV-PREROUTING -d 1.2.3.4/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.0.100\n-A DWPROV-PREROUTING -d 1.2.3.4/32 -p tcp -m tcp --dport 22 -j DNAT --to-destination 192.168.0.100\nCOMMIT\n";
        let desired = state(
            "rule add priority 1200 from 1.2.3.2 lookup 100 protocol 201\nroute add default via 1.2.3.1 dev eth1 table 100 proto 201\nroute add 10.0.0.0/8 via 1.2.3.1 dev eth1 table 100 proto 201",
            nat,
        );
        // Drift: a DNAT deleted by hand, a route changed, a rule gone.
        let live = state(
            "route add default via 1.2.3.9 dev eth1 table 100 proto 201\nroute add 10.0.0.0/8 via 1.2.3.1 dev eth1 table 100 proto 201",
            &nat.replace("-A DWPROV-PREROUTING -d 1.2.3.4/32 -p tcp -m tcp --dport 22 -j DNAT --to-destination 192.168.0.100\n", ""),
        );
        let d = diff(&desired, &live);
        let s = Summary::of(&d.changes);
        // The re-added DNAT is one added line, as shown; not "~1" for its chain.
        assert_eq!((s.add, s.change, s.remove), (2, 1, 0), "{:#?}", d.changes);
        let v = views(&desired, &live);
        let shown = |sign| {
            v.iter()
                .flat_map(|v| &v.lines)
                .filter(|l| l.sign == sign)
                .count()
        };
        assert_eq!(
            (shown(Sign::Add), shown(Sign::Change), shown(Sign::Remove)),
            (s.add, s.change, s.remove)
        );
        let ipt = v.iter().find(|v| v.kind == ViewKind::Iptables).unwrap();
        assert_eq!(ipt.lines.len(), 1);
        assert_eq!(ipt.lines[0].sign, Sign::Add);
        assert!(
            ipt.lines[0].text.contains("--dport 22 -j DNAT"),
            "{:?}",
            ipt.lines
        );
        // Traffic first: rules, routes, firewall; files and sysctls last.
        let kinds: Vec<ViewKind> = v.iter().map(|v| v.kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(kinds, sorted);
        // Owned objects say so, as `ip` prints them.
        assert!(v[0].lines[0].text.ends_with("proto dwprov"), "{:?}", v[0]);
    }

    #[test]
    fn a_file_is_one_line_with_size_and_purpose() {
        let mut desired = State::default();
        desired
            .files
            .insert("/etc/dwprov/boot.sh".into(), "#!/bin/sh\n".repeat(300));
        let v = views(&desired, &State::default());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].kind, ViewKind::Files);
        assert_eq!(v[0].lines.len(), 1);
        assert_eq!(
            v[0].lines[0].text,
            "/etc/dwprov/boot.sh  2.9 kB  boot restore script"
        );
        assert_eq!(
            Summary::of(&diff(&desired, &State::default()).changes).add,
            1
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
