//! The transition planner: from the lines' states, where each nexthop
//! object must point, and the exact kernel commands that get it there from
//! what is applied now.
//!
//! Every route carrying a line's traffic uses `nhid N` of the line's nexthop
//! (prefix lists, policies, the default route), so a transition is one
//! `ip nexthop replace` of that object, whatever the prefix count, plus one
//! `ip nexthop replace` of the balanced group when the line is a member:
//! O(1) in the routes. Only what differs is replaced. Conntrack deletions go
//! with the transition that makes entries useless: on down, the entries
//! marked with the dead line's mark or SNATed to its address (they can
//! never work again); nothing on recovery unless `flush_on_recovery`.
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use super::config::{Config, Line};
use super::health::State;
use crate::ownership::ROUTE_PROTO;

/// What a nexthop object points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Via {
        gateway: Ipv4Addr,
        dev: String,
    },
    /// A point-to-point line's (issue 14): `dev IF`.
    Dev(String),
    /// Members `(nexthop id, weight)`.
    Group(Vec<(u32, u32)>),
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Via { gateway, dev } => write!(f, "via {gateway} dev {dev}"),
            Hop::Dev(dev) => write!(f, "dev {dev}"),
            Hop::Group(members) => {
                f.write_str("group ")?;
                for (i, (id, w)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str("/")?;
                    }
                    write!(f, "{id},{w}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where everything should point for a set of line states.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    /// Nexthop id -> what it points at.
    pub nexthops: BTreeMap<u32, Hop>,
    /// Line -> the line carrying its traffic while it is down (None: itself,
    /// up or with no live fallback).
    pub failover: BTreeMap<String, Option<String>>,
}

/// One thing to run on the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// One `ip -batch` line.
    Ip(String),
    /// `conntrack` arguments (`-D --mark 0x200/0xff00`).
    Conntrack(Vec<String>),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Ip(l) => write!(f, "ip {l}"),
            Action::Conntrack(a) => write!(f, "conntrack {}", a.join(" ")),
        }
    }
}

/// A line changing state this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub line: String,
    pub from: State,
    pub to: State,
}

/// The first live line of `line`'s fallback list (a fallback that is down
/// itself is skipped for the next).
pub fn failover_target<'a>(
    cfg: &'a Config,
    line: &Line,
    state: &dyn Fn(&str) -> State,
) -> Option<&'a Line> {
    line.fallback
        .iter()
        .filter_map(|n| cfg.line(n))
        .find(|l| state(&l.name).alive())
}

/// Where each nexthop points for these states.
pub fn desired(cfg: &Config, state: &dyn Fn(&str) -> State) -> Desired {
    let mut out = Desired::default();
    for l in &cfg.lines {
        let to = if state(&l.name).alive() {
            None
        } else {
            failover_target(cfg, l, state)
        };
        if let Some(id) = l.nexthop {
            out.nexthops.insert(id, own_hop(to.unwrap_or(l)));
        }
        out.failover
            .insert(l.name.clone(), to.map(|t| t.name.clone()));
    }
    if let Some(b) = &cfg.balanced {
        let member = |n: &String| {
            let l = cfg.line(n)?;
            Some((l.nexthop?, l.weight))
        };
        let live: Vec<(u32, u32)> = b
            .members
            .iter()
            .filter(|n| state(n).alive())
            .filter_map(member)
            .collect();
        // Every member dead: keep them all (nothing better to send to).
        let members = if live.is_empty() {
            b.members.iter().filter_map(member).collect()
        } else {
            live
        };
        out.nexthops.insert(b.id, Hop::Group(members));
    }
    out
}

/// Where `line`'s own path goes: `via GATEWAY dev IF`, or `dev IF` for a
/// point-to-point line (its config's gateway 0.0.0.0).
pub fn own_hop(line: &Line) -> Hop {
    if line.gateway.is_unspecified() {
        Hop::Dev(line.interface.clone())
    } else {
        Hop::Via {
            gateway: line.gateway,
            dev: line.interface.clone(),
        }
    }
}

/// The `ip -batch` line that makes nexthop `id` point at `hop`.
pub fn replace_line(id: u32, hop: &Hop) -> String {
    match hop {
        Hop::Via { .. } | Hop::Dev(_) => {
            format!("nexthop replace id {id} {hop} proto {ROUTE_PROTO}")
        }
        // The kernel keeps a group's protocol from its creation.
        Hop::Group(_) => format!("nexthop replace id {id} {hop}"),
    }
}

/// The commands from `applied` (what the kernel has; a missing id is
/// unknown and replaced) to `next`, for this round's `events`: single
/// nexthops before groups (a member comes back pointing at its own line
/// before it rejoins the group), conntrack deletions after the routing so
/// that the next packet of a deleted entry already takes the new path.
pub fn actions(
    cfg: &Config,
    applied: &BTreeMap<u32, Hop>,
    previous: &Desired,
    next: &Desired,
    events: &[Event],
) -> Vec<Action> {
    let mut out = Vec::new();
    let changed = |(id, hop): &(&u32, &Hop)| applied.get(id) != Some(hop);
    let (groups, single): (Vec<_>, Vec<_>) = next
        .nexthops
        .iter()
        .filter(changed)
        .partition(|(_, h)| matches!(h, Hop::Group(_)));
    for (id, hop) in single.into_iter().chain(groups) {
        out.push(Action::Ip(replace_line(*id, hop)));
    }
    for e in events {
        let Some(l) = cfg.line(&e.line) else { continue };
        match (e.from, e.to) {
            (_, State::Down) => {
                out.push(conntrack_mark(l));
                out.push(conntrack_reply_dst(l.address));
            }
            (State::Down, State::Up) if l.flush_on_recovery => {
                // Conntrack does not record why a connection took its line:
                // what the fallback SNATed is all that can be named.
                let was = previous.failover.get(&l.name).cloned().flatten();
                if let Some(f) = was.as_deref().and_then(|n| cfg.line(n)) {
                    out.push(conntrack_reply_dst(f.address));
                }
            }
            _ => {}
        }
    }
    out
}

fn conntrack_mark(l: &Line) -> Action {
    Action::Conntrack(vec![
        "-D".into(),
        "--mark".into(),
        format!("{:#x}/{:#x}", l.mark, l.mark_mask),
    ])
}

fn conntrack_reply_dst(a: Ipv4Addr) -> Action {
    Action::Conntrack(vec!["-D".into(), "--reply-dst".into(), a.to_string()])
}

/// The nexthops of `ip -j nexthop show` whose ids the config names
/// (others are foreign or of no interest). Unparseable input gives what
/// could be read: an id left out is replaced on the next plan.
pub fn parse_nexthops(json: &str, cfg: &Config) -> BTreeMap<u32, Hop> {
    let wanted: Vec<u32> = cfg
        .lines
        .iter()
        .filter_map(|l| l.nexthop)
        .chain(cfg.balanced.as_ref().map(|b| b.id))
        .collect();
    let mut out = BTreeMap::new();
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return out;
    };
    for item in items {
        let Some(id) = item["id"].as_u64().and_then(|i| u32::try_from(i).ok()) else {
            continue;
        };
        if !wanted.contains(&id) {
            continue;
        }
        let hop = if let Some(group) = item["group"].as_array() {
            let members: Option<Vec<(u32, u32)>> = group
                .iter()
                .map(|m| {
                    let id = u32::try_from(m["id"].as_u64()?).ok()?;
                    // `ip -j` leaves out weight 1.
                    let w = m["weight"]
                        .as_u64()
                        .map_or(Some(1), |w| u32::try_from(w).ok())?;
                    Some((id, w))
                })
                .collect();
            match members {
                Some(m) => Hop::Group(m),
                None => continue,
            }
        } else {
            let gw = item["gateway"].as_str().and_then(|g| g.parse().ok());
            let dev = item["dev"].as_str();
            match (gw, dev) {
                (Some(gateway), Some(dev)) => Hop::Via {
                    gateway,
                    dev: dev.to_string(),
                },
                (None, Some(dev)) if item.get("gateway").is_none() => Hop::Dev(dev.to_string()),
                _ => continue,
            }
        };
        out.insert(id, hop);
    }
    out
}

/// A line's state as the kernel shows it: its nexthop points elsewhere than
/// its own gateway: a previous agent failed it over (down); else up.
pub fn state_from_kernel(line: &Line, kernel: &BTreeMap<u32, Hop>) -> State {
    let own = own_hop(line);
    match line.nexthop.and_then(|id| kernel.get(&id)) {
        Some(h) if *h != own => State::Down,
        _ => State::Up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::Config;

    /// Three lines: ctc (default, weight 2) and cnc balanced, cmcc falls
    /// back to cnc then ctc.
    fn cfg() -> Config {
        let line = |name: &str, i: u32, fallback: &[&str], weight: u32| {
            serde_json::json!({
                "name": name, "interface": format!("eth{i}"),
                "address": format!("10.0.{i}.2"), "gateway": format!("10.0.{i}.1"),
                "mark": i * 256, "mark_mask": 65280, "table": 100 * i, "nexthop": 20000 + i,
                "health": {"targets": [format!("10.0.{i}.1")]},
                "fallback": fallback, "weight": weight
            })
        };
        let v = serde_json::json!({
            "format_version": 1,
            "lines": [line("ctc", 1, &["cnc"], 2), line("cnc", 2, &["ctc"], 1),
                      line("cmcc", 3, &["cnc", "ctc"], 1)],
            "balanced": {"id": 20100, "members": ["ctc", "cnc"]}
        });
        Config::parse(&v.to_string(), "t.json").unwrap()
    }

    fn states<'a>(down: &'a [&'a str]) -> impl Fn(&str) -> State + 'a {
        move |n| {
            if down.contains(&n) {
                State::Down
            } else {
                State::Up
            }
        }
    }

    fn via(i: u32) -> Hop {
        Hop::Via {
            gateway: format!("10.0.{i}.1").parse().unwrap(),
            dev: format!("eth{i}"),
        }
    }

    fn ev(line: &str, from: State, to: State) -> Event {
        Event {
            line: line.into(),
            from,
            to,
        }
    }

    #[test]
    fn all_up_every_line_on_itself_and_a_full_group() {
        let c = cfg();
        let d = desired(&c, &states(&[]));
        assert_eq!(d.nexthops[&20001], via(1));
        assert_eq!(d.nexthops[&20002], via(2));
        assert_eq!(d.nexthops[&20003], via(3));
        assert_eq!(d.nexthops[&20100], Hop::Group(vec![(20001, 2), (20002, 1)]));
        assert!(d.failover.values().all(Option::is_none));
    }

    #[test]
    fn one_transition_is_one_replace_per_object_whatever_the_prefixes() {
        let c = cfg();
        let up = desired(&c, &states(&[]));
        let down = desired(&c, &states(&["cmcc"]));
        let a = actions(
            &c,
            &up.nexthops,
            &up,
            &down,
            &[ev("cmcc", State::Up, State::Down)],
        );
        assert_eq!(
            a,
            vec![
                Action::Ip("nexthop replace id 20003 via 10.0.2.1 dev eth2 proto 201".into()),
                Action::Conntrack(vec!["-D".into(), "--mark".into(), "0x300/0xff00".into()]),
                Action::Conntrack(vec!["-D".into(), "--reply-dst".into(), "10.0.3.2".into()]),
            ]
        );
        assert_eq!(down.failover["cmcc"].as_deref(), Some("cnc"));
        // A balanced member: its nexthop and the group, two operations.
        let down = desired(&c, &states(&["cnc"]));
        let a = actions(
            &c,
            &up.nexthops,
            &up,
            &down,
            &[ev("cnc", State::Up, State::Down)],
        );
        let ip: Vec<String> = a
            .iter()
            .map(|a| a.to_string())
            .filter(|s| s.starts_with("ip "))
            .collect();
        assert_eq!(
            ip,
            vec![
                "ip nexthop replace id 20002 via 10.0.1.1 dev eth1 proto 201",
                "ip nexthop replace id 20100 group 20001,2",
            ]
        );
        // Nothing to do when the kernel already has it.
        assert!(actions(&c, &down.nexthops, &down, &down, &[]).is_empty());
        // Back up: the member returns to its line before it rejoins the group.
        let a = actions(
            &c,
            &down.nexthops,
            &down,
            &up,
            &[ev("cnc", State::Down, State::Up)],
        );
        let shown: Vec<String> = a.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "ip nexthop replace id 20002 via 10.0.2.1 dev eth2 proto 201",
                "ip nexthop replace id 20100 group 20001,2/20002,1",
            ],
            "no conntrack flush on recovery by default"
        );
    }

    #[test]
    fn a_fallback_that_is_down_is_skipped_for_the_next() {
        let c = cfg();
        let d = desired(&c, &states(&["cmcc", "cnc"]));
        assert_eq!(d.nexthops[&20003], via(1), "cmcc: cnc is down, so ctc");
        assert_eq!(d.failover["cmcc"].as_deref(), Some("ctc"));
        assert_eq!(d.nexthops[&20002], via(1));
        // No live fallback: the line keeps its own nexthop.
        let d = desired(&c, &states(&["cmcc", "cnc", "ctc"]));
        assert_eq!(d.nexthops[&20003], via(3));
        assert_eq!(d.failover["cmcc"], None);
        assert_eq!(d.nexthops[&20100], Hop::Group(vec![(20001, 2), (20002, 1)]));
        // ctc's failover follows cnc's state: cnc back, ctc's traffic on cnc.
        let before = desired(&c, &states(&["ctc", "cnc"]));
        let after = desired(&c, &states(&["ctc"]));
        let a = actions(
            &c,
            &before.nexthops,
            &before,
            &after,
            &[ev("cnc", State::Down, State::Up)],
        );
        let shown: Vec<String> = a.iter().map(|a| a.to_string()).collect();
        assert!(
            shown.contains(
                &"ip nexthop replace id 20001 via 10.0.2.1 dev eth2 proto 201".to_string()
            ),
            "{shown:?}"
        );
    }

    #[test]
    fn unmonitored_lines_are_alive_and_flush_on_recovery_names_the_fallback() {
        let mut c = cfg();
        c.lines[1].health = None;
        c.lines[2].flush_on_recovery = true;
        let st = |n: &str| match n {
            "cnc" => State::Unknown,
            "cmcc" => State::Down,
            _ => State::Up,
        };
        let down = desired(&c, &st);
        assert_eq!(down.failover["cmcc"].as_deref(), Some("cnc"));
        let up = desired(&c, &|n: &str| {
            if n == "cnc" {
                State::Unknown
            } else {
                State::Up
            }
        });
        let a = actions(
            &c,
            &down.nexthops,
            &down,
            &up,
            &[ev("cmcc", State::Down, State::Up)],
        );
        assert_eq!(
            a.last(),
            Some(&Action::Conntrack(vec![
                "-D".into(),
                "--reply-dst".into(),
                "10.0.2.2".into()
            ]))
        );
    }

    #[test]
    fn kernel_nexthops_are_read_back() {
        let c = cfg();
        let json = r#"[{"id":20001,"gateway":"10.0.1.1","dev":"eth1","scope":"link","flags":[]},
            {"id":20002,"gateway":"10.0.1.1","dev":"eth1","scope":"link","protocol":"dwprov","flags":[]},
            {"id":7,"gateway":"10.9.9.9","dev":"eth9","flags":[]},
            {"id":20100,"group":[{"id":20001,"weight":2},{"id":20002}],"flags":[]}]"#;
        let k = parse_nexthops(json, &c);
        assert_eq!(k.len(), 3, "the foreign id 7 is left out: {k:?}");
        assert_eq!(k[&20100], Hop::Group(vec![(20001, 2), (20002, 1)]));
        assert_eq!(state_from_kernel(&c.lines[0], &k), State::Up);
        assert_eq!(state_from_kernel(&c.lines[1], &k), State::Down);
        assert_eq!(state_from_kernel(&c.lines[2], &k), State::Up, "absent: up");
        for bad in [
            "",
            "[",
            "{}",
            "[1,2]",
            r#"[{"id":"x"}]"#,
            r#"[{"id":20001}]"#,
        ] {
            assert!(parse_nexthops(bad, &c).is_empty(), "{bad}");
        }
        // What the planner writes is what the kernel shows.
        let d = desired(&c, &states(&[]));
        let a = actions(&c, &k, &d, &d, &[]);
        assert_eq!(
            a.len(),
            2,
            "20002 back to eth2, the missing 20003 made: {a:?}"
        );
    }

    #[test]
    fn a_point_to_point_line_points_dev_only() {
        let mut c = cfg();
        c.lines[1].gateway = Ipv4Addr::UNSPECIFIED;
        let d = desired(&c, &states(&[]));
        assert_eq!(d.nexthops[&20002], Hop::Dev("eth2".into()));
        assert_eq!(
            replace_line(20002, &d.nexthops[&20002]),
            format!("nexthop replace id 20002 dev eth2 proto {ROUTE_PROTO}")
        );
        let k = parse_nexthops(r#"[{"id":20002,"dev":"eth2","protocol":"201"}]"#, &c);
        assert_eq!(state_from_kernel(&c.lines[1], &k), State::Up);
        let d = desired(&c, &states(&["cnc"]));
        assert!(matches!(&d.nexthops[&20002], Hop::Via { dev, .. } if dev == "eth1"));
    }
}
