//! Facts, not intent (issue 14): a dynamic line's address and next hop are
//! what the host has at plan time, filled into the intent before rendering.
//!
//! `address: dynamic` takes the interface's IPv4 address; `gateway: dynamic`
//! the next hop of the DHCP client's default route via the interface in
//! main (`proto dhcp`, `boot` or `static`: dhclient, udhcpc scripts,
//! systemd-networkd and NetworkManager install those). A dynamic line
//! without them now is down: render puts its traffic on its [`carrier`],
//! the way the agent fails a line over. What was found is said as
//! information in the plan, so a redial is not drift: `plan` exits 0.
use super::{Gateway, Line, NextHop};
use crate::facts::Facts;
use crate::state::ip::Route;
use std::net::{IpAddr, Ipv4Addr};

/// The intent with the facts filled in, and what the plan says about them.
pub struct Resolved {
    pub gateway: Gateway,
    /// Information for the plan (current addresses, next hops, down lines).
    pub info: Vec<String>,
    /// Problems worth a warning (a DHCP default route taking the default).
    pub warnings: Vec<String>,
}

/// Protocols of the default routes DHCP clients install: boot (`ip route
/// add` without proto, udhcpc and dhclient scripts), static, dhcp (16,
/// systemd-networkd and NetworkManager).
const CLIENT_PROTOS: &[u8] = &[3, 4, 16];
const MAIN: u32 = 254;

/// The DHCP client's default routes in main via `iface`, lowest metric first.
pub(crate) fn client_defaults<'a>(routes: &'a [Route], iface: &str) -> Vec<&'a Route> {
    let mut out: Vec<&Route> = routes
        .iter()
        .filter(|r| {
            r.table == MAIN
                && r.dst.prefix_len() == 0
                && r.via.is_some()
                && r.dev.as_deref() == Some(iface)
                && CLIENT_PROTOS.contains(&r.proto)
        })
        .collect();
    out.sort_by_key(|r| r.metric);
    out
}

/// The DHCP client default routes of every `gateway: dynamic` line of `gw`:
/// foreign, and they stay (never a hand-made duplicate to take over).
pub fn dynamic_client_defaults<'a>(gw: &Gateway, routes: &'a [Route]) -> Vec<&'a Route> {
    gw.lines
        .iter()
        .filter(|l| l.next_hop == NextHop::Dynamic)
        .flat_map(|l| client_defaults(routes, &l.interface))
        .collect()
}

/// Fill the dynamic lines of `gw` from `facts` (None: rendering without a
/// host, where a dynamic line has nothing and is rendered down).
pub fn resolve(gw: &Gateway, facts: Option<&Facts>) -> Resolved {
    let mut out = gw.clone();
    let mut info = Vec::new();
    let mut warnings = Vec::new();
    let routes: &[Route] = facts.map_or(&[], |f| &f.state.routes);
    for l in out.lines.iter_mut() {
        if l.dynamic_address {
            l.address = facts
                .and_then(|f| f.interface(&l.interface))
                .and_then(|i| i.addresses.first().copied());
            match l.address {
                // In `dwprov status`'s words (status::dynamic_text).
                Some(a) => info.push(format!(
                    "line {}: address {a} (dynamic, from {}); its SNAT is MASQUERADE whatever `nat` says",
                    l.name, l.interface
                )),
                None => info.push(format!(
                    "line {}: no address {} on {}",
                    l.name,
                    if facts.is_some() { "now" } else { "known without the host" },
                    l.interface,
                )),
            }
        }
        if l.next_hop == NextHop::Dynamic {
            l.gateway = client_defaults(routes, &l.interface)
                .first()
                .and_then(|r| r.via);
            match l.gateway {
                Some(g) => info.push(format!(
                    "line {}: via {g} (dynamic, the DHCP client's default route on {})",
                    l.name, l.interface
                )),
                None => info.push(format!(
                    "line {}: no DHCP next hop {} on {}",
                    l.name,
                    if facts.is_some() {
                        "now"
                    } else {
                        "known without the host"
                    },
                    l.interface,
                )),
            }
        }
    }
    for l in out.lines.iter().filter(|l| !l.up_now()) {
        info.push(match carrier(&out, l) {
            Some(c) => format!(
                "line {} is down: its traffic goes on line {}",
                l.name, c.name
            ),
            None => format!("line {} is down, and no line can carry its traffic", l.name),
        });
    }
    // The DHCP client's default route at metric 0 holds the key of dwprov's
    // own default route in main: it stays (foreign), dwprov renders none.
    let taken: Vec<(&Line, &Route)> = out
        .lines
        .iter()
        .filter(|l| l.next_hop == NextHop::Dynamic)
        .flat_map(|l| {
            client_defaults(routes, &l.interface)
                .into_iter()
                .filter(|r| r.metric == 0 && r.tos == 0)
                .map(move |r| (l, r))
        })
        .collect();
    if let Some((l, r)) = taken.first() {
        out.foreign_main_default = true;
        let via = r.via.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // Alone and unmonitored, the line needs no default of dwprov's: no
        // agent fails it over (its nexthop moves, the client's route is the
        // line's own).
        let alone = out.lines.iter().filter(|x| x.default).count() == 1;
        if l.default && alone && out.lines.iter().all(|x| x.health.is_none()) {
            info.push(format!(
                "the DHCP client's default route via {via} dev {} in main carries the default (line {}); dwprov adds none beside it",
                l.interface, l.name
            ));
        } else {
            warnings.push(format!(
                "the DHCP client's default route via {via} dev {} (metric 0) in main takes the default route from dwprov \
                 (line {} is not the only default line): give the client's route a metric (systemd-networkd `RouteMetric=`, \
                 NetworkManager `ipv4.route-metric`, a dhclient or udhcpc hook) so dwprov's default (metric 0) wins; docs/lines.md",
                l.interface, l.name
            ));
        }
    }
    Resolved {
        gateway: out,
        info,
        warnings,
    }
}

/// The line that carries `line`'s traffic while it is down: the first line
/// of its `fallback` that is up now, else the first default line, else the
/// first other line that is up (the agent's failover order, `agent::plan`).
pub fn carrier<'a>(gw: &'a Gateway, line: &Line) -> Option<&'a Line> {
    let up = |l: &&Line| l.name != line.name && l.up_now();
    line.failover
        .fallback
        .iter()
        .filter_map(|n| gw.line(n))
        .find(up)
        .or_else(|| gw.lines.iter().filter(|l| l.default).find(up))
        .or_else(|| gw.lines.iter().find(up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Interface;
    use crate::model::Method;

    fn dynamic_cnc() -> Gateway {
        let mut gw = crate::render::tests::seed(Method::Static);
        let cnc = &mut gw.lines[1];
        cnc.address = None;
        cnc.gateway = None;
        cnc.dynamic_address = true;
        cnc.next_hop = NextHop::Dynamic;
        gw
    }

    fn facts(addr: Option<&str>, via: Option<(&str, u32)>) -> Facts {
        let mut f = Facts::default();
        f.interfaces.push(Interface {
            name: "eth2".into(),
            up: true,
            addresses: addr.into_iter().map(|a| a.parse().unwrap()).collect(),
        });
        if let Some((g, metric)) = via {
            f.state.routes.push(Route {
                via: Some(g.parse().unwrap()),
                dev: Some("eth2".into()),
                proto: 3,
                metric,
                ..Route::default()
            });
        }
        f
    }

    #[test]
    fn address_and_next_hop_are_facts() {
        let r = resolve(
            &dynamic_cnc(),
            Some(&facts(Some("203.0.113.77/24"), Some(("203.0.113.1", 100)))),
        );
        let cnc = &r.gateway.lines[1];
        assert_eq!(cnc.address, Some("203.0.113.77/24".parse().unwrap()));
        assert_eq!(cnc.gateway, Some("203.0.113.1".parse().unwrap()));
        assert!(cnc.up_now());
        assert!(!r.gateway.foreign_main_default);
        assert!(
            r.info.iter().any(|i| i.contains("address 203.0.113.77/24")),
            "{:?}",
            r.info
        );
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn no_address_is_down_on_the_default_line() {
        let r = resolve(&dynamic_cnc(), Some(&facts(None, None)));
        let cnc = &r.gateway.lines[1];
        assert!(!cnc.up_now());
        assert_eq!(
            carrier(&r.gateway, cnc).map(|c| c.name.as_str()),
            Some("ctc")
        );
        assert!(
            r.info
                .iter()
                .any(|i| i == "line cnc is down: its traffic goes on line ctc"),
            "{:?}",
            r.info
        );
    }

    #[test]
    fn a_metric_0_client_default_is_left_and_warned() {
        let r = resolve(
            &dynamic_cnc(),
            Some(&facts(Some("203.0.113.77/24"), Some(("203.0.113.1", 0)))),
        );
        assert!(r.gateway.foreign_main_default);
        assert!(r.warnings[0].contains("RouteMetric"), "{:?}", r.warnings);
        // The client's default of the one default line is the default: info.
        let mut gw = dynamic_cnc();
        gw.lines[0].default = false;
        gw.lines[1].default = true;
        let r = resolve(
            &gw,
            Some(&facts(Some("203.0.113.77/24"), Some(("203.0.113.1", 0)))),
        );
        assert!(r.warnings.is_empty() && r.gateway.foreign_main_default);
    }
}
