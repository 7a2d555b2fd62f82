//! The take-over of a hand-made gateway (`apply --adopt`): which live
//! objects dwprov does not own would duplicate an owned one it is about to
//! install (the seed's rules at their own priorities, its routes in the line
//! tables and in main, its SNAT, DNAT and CONNMARK rules in the built-in
//! chains). Without `--adopt` an apply that would duplicate one is refused;
//! with it they are removed after the owned ones are in place, and the
//! revert of that apply puts them back. Pure: desired and live state in,
//! the hand-made duplicates out.
use crate::ownership::{is_owned_chain, is_owned_jump, is_owned_route, is_owned_rule};
use crate::state::iptables::IptRule;
use crate::state::{Route, Rule, State};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};

/// One hand-made object an owned one replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HandMade {
    Rule {
        rule: Rule,
    },
    Route {
        route: Route,
    },
    /// A rule in a built-in chain; `position` is its 1-based place there
    /// (for the revert, which inserts it back where it was).
    Iptables {
        table: String,
        chain: String,
        position: usize,
        rule: IptRule,
    },
    /// An rt_tables line naming a line table as dwprov's own file names it
    /// (the seed's `echo "100 ctc" >> /etc/iproute2/rt_tables`).
    RtTable {
        id: u32,
        name: String,
    },
}

/// The file the seed appends its table names to: the take-over removes
/// the duplicated lines from it, and the snapshot keeps a copy for the revert.
pub const RT_TABLES_FILE: &str = "/etc/iproute2/rt_tables";

/// Rules the kernel makes itself (local, main, default lookups).
fn kernel_rule(r: &Rule) -> bool {
    crate::state::ip::KERNEL_RULES
        .iter()
        .any(|&(p, _)| p == r.priority)
        && r.from.is_none()
        && r.to.is_none()
        && r.fwmark.is_none()
}

/// What a rule selects and where it sends it, whatever its priority,
/// protocol or mark mask.
fn rule_intent(r: &Rule) -> impl Ord + '_ {
    (
        r.not,
        r.from,
        r.to,
        r.fwmark.map(|m| m.value),
        r.iif.as_deref(),
        r.oif.as_deref(),
        &r.action,
        &r.extra,
    )
}

/// A rule without its target's options: a second DNAT of the same port is
/// a duplicate whatever its destination, a second CONNMARK of the same
/// traffic whatever its mask.
/// For CONNMARK also without its conntrack state match: the seed marks
/// `--ctstate NEW` in mangle where dwprov marks in nat (a first packet
/// only), and restores on `--ctstate ESTABLISHED,RELATED` where dwprov
/// restores always (a first packet's connection mark is still 0).
fn rule_selector(r: &IptRule) -> IptRule {
    let mut s = r.clone();
    if let Some(t) = &mut s.target {
        if t.name == "CONNMARK" {
            s.matches
                .retain(|m| m.module != "conntrack" && m.module != "state");
        }
        t.options.clear();
    }
    s
}

/// The built-in tables whose chain of that name may hold a hand-made
/// duplicate of a rule dwprov puts in `table`: nat's connection marks are
/// the seed's in mangle.
fn live_tables(table: &str) -> &[&str] {
    match table {
        "nat" => &["nat", "mangle"],
        "mangle" => &["mangle"],
        "filter" => &["filter"],
        _ => &["raw"],
    }
}

/// The hand-made objects of `live` that duplicate what `desired` installs.
pub fn hand_made(desired: &State, live: &State) -> Vec<HandMade> {
    let mut out = Vec::new();
    let wanted_rules: BTreeSet<_> = desired.rules.iter().map(rule_intent).collect();
    for r in &live.rules {
        if !is_owned_rule(r) && !kernel_rule(r) && wanted_rules.contains(&rule_intent(r)) {
            out.push(HandMade::Rule { rule: r.clone() });
        }
    }
    let wanted_routes: BTreeSet<_> = desired
        .routes
        .iter()
        .map(|r| (r.table, r.dst, r.tos))
        .collect();
    for r in &live.routes {
        // The kernel's (2), router advertisements' (9) and DHCP clients'
        // (16) routes are not hand-made: those stay conflicts.
        if !is_owned_route(r)
            && ![2, 9, 16].contains(&r.proto)
            && wanted_routes.contains(&(r.table, r.dst, r.tos))
        {
            out.push(HandMade::Route { route: r.clone() });
        }
    }
    for (table, t) in &desired.firewall.iptables.tables {
        for (chain, c) in &t.chains {
            let Some(builtin) = chain.strip_prefix(crate::ownership::CHAIN_PREFIX) else {
                continue;
            };
            if !is_owned_chain(chain) {
                continue;
            }
            let wanted: HashSet<IptRule> = c.rules.iter().map(rule_selector).collect();
            for live_table in live_tables(table) {
                let Some(live_chain) = live.firewall.iptables.chain(live_table, builtin) else {
                    continue;
                };
                for (i, r) in live_chain.rules.iter().enumerate() {
                    // Across tables only connection marks are the same thing.
                    let same_table = *live_table == table.as_str();
                    let seen = out.iter().any(|o| {
                        matches!(o, HandMade::Iptables { table: t, chain: c, position: p, .. }
                            if t == live_table && c == builtin && *p == i + 1)
                    });
                    if !is_owned_jump(r)
                        && !seen
                        && (same_table || r.target() == Some("CONNMARK"))
                        && wanted.contains(&rule_selector(r))
                    {
                        out.push(HandMade::Iptables {
                            table: live_table.to_string(),
                            chain: builtin.to_string(),
                            position: i + 1,
                            rule: r.clone(),
                        });
                    }
                }
            }
        }
    }
    // Gather leaves dwprov's own rt_tables file out of the live names.
    for (id, name) in &desired.rt_tables.entries {
        if live.rt_tables.entries.contains(&(*id, name.clone())) {
            out.push(HandMade::RtTable {
                id: *id,
                name: name.clone(),
            });
        }
    }
    out
}

/// `live` as it will be after `apply --adopt` has removed `objects` (its
/// hand-made duplicates, [`hand_made`]): what `dwprov check` judges as
/// foreign state.
pub fn after_take_over(live: &State, objects: &[HandMade]) -> State {
    let mut s = live.clone();
    for o in objects {
        match o {
            HandMade::Rule { rule } => s.rules.retain(|r| r != rule),
            HandMade::Route { route } => s.routes.retain(|r| r != route),
            HandMade::Iptables {
                table, chain, rule, ..
            } => {
                if let Some(c) = s
                    .firewall
                    .iptables
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.chains.get_mut(chain))
                {
                    c.rules.retain(|r| r != rule);
                }
            }
            HandMade::RtTable { id, name } => {
                s.rt_tables.entries.retain(|e| e != &(*id, name.clone()))
            }
        }
    }
    s
}

/// Whether any of `objects` duplicates traffic handling (a rule, route or
/// iptables rule): those refuse an apply without `--adopt` and keep `plan`
/// at "changes pending". A duplicated table name alone is harmless: listed,
/// and removed by `--adopt`, but it blocks nothing.
pub fn blocks_apply(objects: &[HandMade]) -> bool {
    objects
        .iter()
        .any(|o| !matches!(o, HandMade::RtTable { .. }))
}

/// Whether the take-over edits [`RT_TABLES_FILE`].
pub fn edits_rt_tables(objects: &[HandMade]) -> bool {
    objects
        .iter()
        .any(|o| matches!(o, HandMade::RtTable { .. }))
}

/// The step that removes the duplicated table names from
/// [`RT_TABLES_FILE`] (ids and names are validated numbers and line names,
/// so they are safe in the sed expression).
pub fn rt_tables_script(objects: &[HandMade]) -> String {
    let exprs: Vec<String> = objects
        .iter()
        .filter_map(|o| match o {
            HandMade::RtTable { id, name } => Some(format!(
                "-e '/^[[:space:]]*{id}[[:space:]][[:space:]]*{name}[[:space:]]*$/d'"
            )),
            _ => None,
        })
        .collect();
    if exprs.is_empty() {
        return String::new();
    }
    format!(
        "step 'hand-made rt_tables lines'\n[ ! -f {f} ] || sed -i {} {f} || fail 'remove the hand-made table names from {f}'\n",
        exprs.join(" "),
        f = RT_TABLES_FILE
    )
}

/// The `ip -batch` lines that put the hand-made rules and routes back (run
/// with `-force`: one already there is skipped).
pub fn restore_batch(objects: &[HandMade]) -> String {
    let mut s = String::new();
    for o in objects {
        match o {
            HandMade::Rule { rule } => {
                s.push_str("rule add ");
                s.push_str(&rule.to_batch());
                s.push('\n');
            }
            HandMade::Route { route } => {
                s.push_str("route add ");
                s.push_str(&route.to_batch());
                s.push('\n');
            }
            HandMade::Iptables { .. } | HandMade::RtTable { .. } => {}
        }
    }
    s
}

/// `TABLE<TAB>POSITION<TAB>CHAIN RULE` per hand-made iptables rule, in
/// position order: gateway/revert.sh inserts each one missing at its place.
pub fn restore_iptables(objects: &[HandMade]) -> String {
    let mut rows: Vec<(&str, &str, usize, String)> = objects
        .iter()
        .filter_map(|o| match o {
            HandMade::Iptables {
                table,
                chain,
                position,
                rule,
            } => Some((table.as_str(), chain.as_str(), *position, rule.to_string())),
            _ => None,
        })
        .collect();
    rows.sort();
    rows.iter()
        .map(|(t, c, p, r)| format!("{t}\t{p}\t{c} {r}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ip, Iptables, RtTables};

    fn state(batch: &str, ipt: &str) -> State {
        let rt = RtTables::parse("100 ctc\n200 cnc\n", "rt").unwrap();
        let b = ip::parse_batch(batch, "batch", &rt).unwrap();
        State {
            rules: b.rules,
            routes: b.routes,
            firewall: crate::firewall::Firewall {
                iptables: Iptables::parse(ipt).unwrap(),
                ..Default::default()
            },
            rt_tables: rt,
            ..Default::default()
        }
    }

    const DESIRED_IPT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DWPROV-POSTROUTING - [0:0]\n\
        -A POSTROUTING -m comment --comment dwprov -j DWPROV-POSTROUTING\n\
        -A DWPROV-POSTROUTING -s 192.168.0.0/24 -o eth1 -j SNAT --to-source 198.51.100.2\nCOMMIT\n\
        *mangle\n:PREROUTING ACCEPT [0:0]\n:DWPROV-PREROUTING - [0:0]\n\
        -A DWPROV-PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xff00\nCOMMIT\n";

    #[test]
    fn the_seeds_objects_are_found_and_foreign_ones_are_not() {
        let desired = state(
            "rule add priority 1100 from 198.51.100.2 lookup ctc protocol 201\n\
             rule add priority 1300 fwmark 0x100/0xff00 lookup ctc protocol 201\n\
             route add default via 198.51.100.1 dev eth1 table ctc proto 201\n\
             route add 100.65.0.0/16 via 203.0.113.1 dev eth2 proto 201\n",
            DESIRED_IPT,
        );
        let live = state(
            "rule add priority 32700 from 198.51.100.2 lookup ctc protocol 0\n\
             rule add priority 40 fwmark 0x100 lookup ctc protocol 0\n\
             rule add priority 500 from 10.99.0.0/16 lookup 77 protocol 0\n\
             route add default via 198.51.100.1 dev eth1 table ctc proto boot metric 50\n\
             route add 100.65.0.0/16 via 203.0.113.1 dev eth2 proto boot\n\
             route add 10.98.0.0/16 via 203.0.113.1 dev eth2 proto static\n",
            "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE\n\
             -A POSTROUTING -s 192.168.0.0/24 -o eth1 -j SNAT --to-source 198.51.100.9\nCOMMIT\n\
             *mangle\n:PREROUTING ACCEPT [0:0]\n\
             -A PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff\nCOMMIT\n",
        );
        let h = hand_made(&desired, &live);
        let text = format!("{h:?}");
        assert_eq!(h.len(), 8, "six objects and the two table names: {text}");
        let step = rt_tables_script(&h);
        assert!(
            step.contains("-e '/^[[:space:]]*100[[:space:]][[:space:]]*ctc[[:space:]]*$/d'"),
            "{step}"
        );
        assert!(edits_rt_tables(&h));
        assert!(
            !text.contains("10.99.0.0")
                && !text.contains("10.98.0.0")
                && !text.contains("10.1.0.0"),
            "{text}"
        );
        assert!(h.iter().any(|o| matches!(o, HandMade::Iptables { chain, position: 2, .. } if chain == "POSTROUTING")), "{text}");
        let after = after_take_over(&live, &h);
        assert!(
            hand_made(&desired, &after).is_empty(),
            "nothing left to take over"
        );
        assert_eq!(
            after.rules.len(),
            1,
            "the foreign rule stays: {:?}",
            after.rules
        );
        assert_eq!(
            after.routes.len(),
            1,
            "the foreign route stays: {:?}",
            after.routes
        );
        assert!(
            format!("{:?}", after.firewall.iptables).contains("MASQUERADE"),
            "the foreign NAT stays"
        );
        let batch = restore_batch(&h);
        assert!(
            batch.contains("rule add priority 32700 from 198.51.100.2 lookup 100 protocol 0"),
            "{batch}"
        );
        assert!(batch.contains("metric 50"), "{batch}");
        let ipt = restore_iptables(&h);
        assert!(ipt.starts_with("mangle\t1\tPREROUTING -i eth1"), "{ipt}");
        assert!(
            ipt.contains(
                "nat\t2\tPOSTROUTING -s 192.168.0.0/24 -o eth1 -j SNAT --to-source 198.51.100.9\n"
            ),
            "{ipt}"
        );
    }

    /// The seed marks in mangle on `--ctstate`; dwprov's fwmark marks in nat
    /// and restores without a state match (issue 13): still the same rules.
    #[test]
    fn the_seeds_mangle_marks_duplicate_dwprovs_nat_marks() {
        let desired = state(
            "",
            "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             :DWPROV-PREROUTING - [0:0]\n:DWPROV-POSTROUTING - [0:0]\n\
             -A DWPROV-PREROUTING -i eth1 -j CONNMARK --set-xmark 0x100/0xff00\n\
             -A DWPROV-POSTROUTING -o eth1 -j CONNMARK --set-xmark 0x100/0xff00\nCOMMIT\n\
             *mangle\n:PREROUTING ACCEPT [0:0]\n:DWPROV-PREROUTING - [0:0]\n\
             -A DWPROV-PREROUTING -i eth0 -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00\nCOMMIT\n",
        );
        let live = state(
            "",
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A PREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff\n\
             -A PREROUTING -i eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j CONNMARK --restore-mark\n\
             -A PREROUTING -i eth2 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x200/0xffffffff\n\
             -A POSTROUTING -o eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff\n\
             -A POSTROUTING -o eth1 -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT\n",
        );
        let h = hand_made(&desired, &live);
        let ipt = restore_iptables(&h);
        assert_eq!(
            ipt,
            "mangle\t1\tPOSTROUTING -o eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff\n\
             mangle\t1\tPREROUTING -i eth1 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x100/0xffffffff\n\
             mangle\t2\tPREROUTING -i eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n",
            "eth2 is no line of this desired state, MARK is not CONNMARK"
        );
    }

    #[test]
    fn nothing_hand_made_on_a_clean_or_managed_gateway() {
        let desired = state(
            "route add 100.65.0.0/16 via 203.0.113.1 dev eth2 proto 201\n",
            DESIRED_IPT,
        );
        assert!(hand_made(&desired, &State::default()).is_empty());
        // A managed gateway: its live names leave out dwprov's own file (gather).
        let managed = State {
            rt_tables: RtTables::default(),
            ..desired.clone()
        };
        assert!(
            hand_made(&desired, &managed).is_empty(),
            "owned objects are not hand-made"
        );
    }
}
