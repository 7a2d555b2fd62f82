//! The uplinks: `lines:` lists `{name, table, mark, interface, address,
//! gateway, default, routes, routes_file}` (and the failover keys read by
//! [`super::health`]). Names, tables, marks and interfaces are unique, at
//! least one line is `default: true` (several: a balanced default), subnets do not
//! overlap, and the next hop is a host of the line's subnet. Tables and marks
//! left out get stable values ([`super::ids`]).
//!
//! Issue 14: `address: dynamic` (the interface's address at plan time),
//! `gateway: dynamic` (the DHCP client's next hop) and `gateway: none` (a
//! point-to-point line: routes go `dev IF`), which is also what a left-out
//! `gateway` means on a ppp/tun/wg interface or a /32 address. What these
//! are now is found in the facts by [`crate::model::resolve`].
use super::routes::{line_routes, Listing};
use super::{ids, overlaps, Interfaces};
use crate::error::{Location, Result};
use crate::inventory::{values, Host};
use crate::model::{Line, NextHop};
use crate::yaml::Node;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

const LINE_KEYS: &[&str] = &[
    "name",
    "table",
    "mark",
    "interface",
    "address",
    "gateway",
    "default",
    "routes",
    "routes_file",
    // Read by `health` once the LAN is known.
    "health",
    "fallback",
    "weight",
    "flush_on_recovery",
    "on_change",
];

/// The built lines, and where each line's prefixes are listed (for the
/// connected-subnet check, which needs the LAN too).
pub(super) struct Lines<'a> {
    pub lines: Vec<Line>,
    pub listed: Vec<Listing<'a>>,
    /// The inventory entries of the lines, in order (for [`super::health`]).
    pub items: Vec<&'a Node>,
}

/// What earlier lines took: each line needs its own name, table and mark,
/// and one line only is the default.
#[derive(Default)]
struct Taken {
    names: Vec<(String, Location)>,
    tables: HashMap<u32, Location>,
    marks: HashMap<u32, Location>,
    default_at: Option<Location>,
}

/// A line as read, before tables and marks left out are assigned.
struct Read<'a> {
    line: Line,
    table: Option<u32>,
    mark: Option<u32>,
    address_node: &'a Node,
    listing: Listing<'a>,
}

/// The lines of the `lines` list of `host`.
pub(super) fn lines<'a>(
    host: &Host,
    node: &'a Node,
    mark_mask: u32,
    interfaces: &mut Interfaces,
) -> Result<Lines<'a>> {
    let items = values::seq(node, "lines")?;
    if items.is_empty() {
        return Err(node.error(
            "`lines` is empty",
            Some("list at least one uplink under `lines:`".into()),
        ));
    }
    let mut taken = Taken::default();
    let mut read = Vec::new();
    for item in items {
        read.push(line(host, item, mark_mask, &mut taken, interfaces)?);
    }
    if taken.default_at.is_none() {
        return Err(node.error(
            "no line has `default: true`",
            Some("mark exactly one line `default: true`: it carries the default route for unmatched destinations".into()),
        ));
    }
    for (i, a) in read.iter().enumerate() {
        for b in &read[..i] {
            let (a, b) = (&a.line, &b.line);
            let (Some(aa), Some(ba)) = (a.address, b.address) else {
                continue;
            };
            if overlaps(aa, ba) {
                return Err(read[i].address_node.error(
                    format!(
                        "line `{}` subnet {} overlaps line `{}` subnet {}",
                        a.name,
                        aa.trunc(),
                        b.name,
                        ba.trunc()
                    ),
                    Some("each line needs its own subnet".into()),
                ));
            }
        }
    }
    let table_given: Vec<Option<u32>> = read.iter().map(|r| r.table).collect();
    let mark_given: Vec<Option<u32>> = read.iter().map(|r| r.mark).collect();
    let (mut lines, listed): (Vec<Line>, Vec<Listing>) =
        read.into_iter().map(|r| (r.line, r.listing)).unzip();
    ids::assign_tables(&mut lines, &table_given);
    ids::assign_marks(&mut lines, &mark_given, mark_mask, node)?;
    Ok(Lines {
        lines,
        listed,
        items: items.iter().collect(),
    })
}

/// One entry of `lines`.
fn line<'a>(
    host: &Host,
    item: &'a Node,
    mark_mask: u32,
    taken: &mut Taken,
    interfaces: &mut Interfaces,
) -> Result<Read<'a>> {
    item.check_keys(LINE_KEYS, "line")?;
    let name_n = values::required(item, "name", "line")?;
    let name = values::line_name(name_n)?;
    if let Some((_, prev)) = taken.names.iter().find(|(n, _)| n == name) {
        return Err(name_n.error(
            format!("duplicate line name `{name}`"),
            Some(format!("`{name}` is already used at line {}", prev.line)),
        ));
    }
    let table = match item.get("table") {
        Some(n) => {
            let t = values::table_id(n)?;
            if let Some(prev) = taken.tables.insert(t, n.location.clone()) {
                return Err(n.error(
                    format!("duplicate table id {t}"),
                    Some(format!(
                        "table {t} is already used at line {}; every line needs its own table",
                        prev.line
                    )),
                ));
            }
            Some(t)
        }
        None => None,
    };
    let mark = match item.get("mark") {
        Some(n) => {
            let m = values::mark(n, mark_mask)?;
            if let Some(prev) = taken.marks.insert(m, n.location.clone()) {
                return Err(n.error(
                    format!("duplicate mark {m:#x}"),
                    Some(format!(
                        "mark {m:#x} is already used at line {}; every line needs its own mark",
                        prev.line
                    )),
                ));
            }
            Some(m)
        }
        None => None,
    };
    let iface_n = values::required(item, "interface", "line")?;
    let interface = interfaces.take(iface_n)?;
    let addr_n = values::required(item, "address", "line")?;
    let address = if addr_n.as_str() == Some("dynamic") {
        None
    } else {
        Some(IpNet::V4(values::iface_address(addr_n)?))
    };
    let (next_hop, gateway) = match item.get("gateway") {
        Some(n) if n.as_str() == Some("dynamic") => (NextHop::Dynamic, None),
        Some(n) if n.as_str() == Some("none") => (NextHop::None, None),
        Some(n) => match address {
            Some(a) => (NextHop::Fixed, Some(next_hop(n, a, &interface)?)),
            None => {
                return Err(n.error(
                    "a fixed `gateway` with `address: dynamic`",
                    Some("a dynamic address comes with its next hop: write `gateway: dynamic` (the DHCP client's) or `gateway: none` (point-to-point)".into()),
                ))
            }
        },
        None if point_to_point(&interface, address) => (NextHop::None, None),
        None => {
            return Err(item.error(
                "line is missing required key `gateway`",
                Some(format!(
                    "the ISP's next hop on {interface}: an address, `dynamic` (the DHCP client's) or `none` \
                     (point-to-point: ppp*, tun*, wg* interfaces and /32 addresses may leave it out)"
                )),
            ))
        }
    };
    let default = match item.get("default") {
        Some(n) => {
            let d = values::boolean(n, "default")?;
            // Several default lines balance the default route (checked in `health`).
            if d && taken.default_at.is_none() {
                taken.default_at = Some(n.location.clone());
            }
            d
        }
        None => false,
    };
    let (routes, listing) = line_routes(host, item, name)?;
    taken
        .names
        .push((name.to_string(), name_n.location.clone()));
    Ok(Read {
        line: Line {
            name: name.to_string(),
            table: table.unwrap_or(0),
            mark: mark.unwrap_or(0),
            interface,
            address,
            gateway,
            dynamic_address: address.is_none(),
            next_hop,
            default,
            routes,
            health: None,
            failover: Default::default(),
        },
        table,
        mark,
        address_node: addr_n,
        listing,
    })
}

/// The line's `gateway`: an address on the line's subnet that is neither
/// the line's own address nor the subnet's network or broadcast address.
fn next_hop(n: &Node, address: IpNet, interface: &str) -> Result<IpAddr> {
    let gateway = IpAddr::V4(values::ipv4(n, "gateway")?);
    let subnet = address.trunc();
    if !subnet.contains(&gateway) {
        return Err(n.error(
            format!("gateway {gateway} is outside the line's subnet {subnet}"),
            Some(format!("the next hop must be on {interface}'s network; check `address` ({address}) and `gateway`")),
        ));
    }
    if gateway == address.addr() {
        return Err(n.error(
            format!("gateway {gateway} is the line's own address"),
            Some("`gateway` is the ISP's next hop, not this host".into()),
        ));
    }
    if address.max_prefix_len() - address.prefix_len() > 1
        && (gateway == subnet.network() || gateway == subnet.broadcast())
    {
        return Err(n.error(
            format!(
                "gateway {gateway} is the {} address of {subnet}",
                if gateway == subnet.network() {
                    "network"
                } else {
                    "broadcast"
                }
            ),
            None,
        ));
    }
    Ok(gateway)
}

/// Whether a line without `gateway` is point-to-point: a ppp, tun or
/// WireGuard interface, or a /32 address (its peer is the other end).
fn point_to_point(interface: &str, address: Option<IpNet>) -> bool {
    ["ppp", "tun", "wg"]
        .iter()
        .any(|p| interface.starts_with(p))
        || address.is_some_and(|a| a.prefix_len() == a.max_prefix_len())
}

#[cfg(test)]
mod tests {
    use crate::model::{Gateway, NextHop};

    /// The seed's two lines with `cnc` as given, built.
    fn build(cnc: &str, extra: &str) -> crate::error::Result<Gateway> {
        let text = format!(
            "all:\n  hosts:\n    gw1:\n      connection: local\n      method: static\n      lan:\n        - {{interface: eth0, address: 192.168.0.1/24}}\n      lines:\n        - {{name: ctc, interface: eth1, address: 198.51.100.2/24, gateway: 198.51.100.1, default: true}}\n        - {{name: cnc, {cnc}}}\n{extra}"
        );
        let inv = crate::inventory::parse(&text, std::path::Path::new("i.yaml")).unwrap();
        crate::model::build(&inv.hosts[0])
    }

    #[test]
    fn dynamic_and_point_to_point_lines() {
        let gw = build("interface: eth2, address: dynamic, gateway: dynamic", "").unwrap();
        let cnc = &gw.lines[1];
        assert_eq!((cnc.address, cnc.gateway), (None, None));
        assert!(cnc.dynamic_address && cnc.next_hop == NextHop::Dynamic);
        // Any name Linux takes; a left-out gateway on ppp/tun/wg or a /32 is none.
        for l in [
            "interface: ppp0, address: dynamic",
            "interface: wg0, address: 10.9.0.2/32",
            "interface: eth1.100, address: 10.9.0.2/32",
            "interface: tun3, address: 10.9.0.2/30, gateway: none",
        ] {
            let gw = build(l, "").unwrap();
            assert_eq!(gw.lines[1].next_hop, NextHop::None, "{l}");
        }
        let gw = build(
            "interface: eth1.100, address: 10.9.0.2/24, gateway: dynamic",
            "",
        )
        .unwrap();
        assert_eq!(gw.lines[1].address, Some("10.9.0.2/24".parse().unwrap()));
    }

    #[test]
    fn dynamic_refusals_are_located() {
        let err = |l: &str, extra: &str| build(l, extra).unwrap_err().to_string();
        let e = err("interface: eth2, address: dynamic", "");
        assert!(
            e.contains("i.yaml:10:") && e.contains("`gateway`") && e.contains("dynamic"),
            "{e}"
        );
        let e = err(
            "interface: eth2, address: dynamic, gateway: 203.0.113.1",
            "",
        );
        assert!(
            e.contains("i.yaml:10:") && e.contains("fixed `gateway` with `address: dynamic`"),
            "{e}"
        );
        // Point-to-point with `health` is built (issue 14 phase 2).
        assert!(build(
            "interface: ppp0, address: dynamic, health: {targets: [1.2.3.4]}",
            ""
        )
        .is_ok());
        let e = err("interface: eth2, address: dynamik, gateway: dynamic", "");
        assert!(e.contains("`address`"), "{e}");
    }
}
