//! Merged host vars → validated [`Gateway`], with located errors.
//!
//! `build` stops at the first problem and reports it at the offending value
//! (inventory file:line:column, or routes file:line:column) with a hint.
//! A host whose vars hold no gateway key at all is fine for `gather` (see
//! [`Host::has_gateway`]); `build` on it fails with "host X has no `lines`".
//!
//! Defaults: `nat` snat, `hairpin` false, `rule_priority` 1000, `mark_mask`
//! 0xff00, `route_cache_flush` unset, forwards on every line. `method` and
//! `lan` are required.
//!
//! Table ids and marks left out are derived from a hash of the line name
//! (FNV-1a, stable across builds): tables in 1000..=30000, marks among the
//! non-zero values of `mark_mask`, probing upwards past values other lines
//! use. Explicit values are placed first, then missing ones in name order, so
//! reordering lines never changes them, and adding a line changes them only
//! if the new line takes exactly the value an existing one hashed to.
use super::{Forward, Gateway, Lan, Line, Method, NatMode, Policy, Proto};
use crate::error::{Error, Location, Result};
use crate::escape;
use crate::inventory::{expand_path, names, routes, Host, CONNECTION_KEYS, GATEWAY_KEYS};
use crate::yaml::{did_you_mean, Node};
use ipnet::Ipv4Net;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

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
];
const LAN_KEYS: &[&str] = &["interface", "address"];
const FORWARD_KEYS: &[&str] = &["proto", "port", "to", "to_port", "lines"];
const POLICY_KEYS: &[&str] = &["from", "to", "line"];
const NAT_KEYS: &[&str] = &["mode"];

/// Auto-assigned table ids come from this range.
const AUTO_TABLES: std::ops::RangeInclusive<u32> = 1000..=30000;
/// Highest explicit table id accepted.
const MAX_TABLE: u32 = 0x7fff_ffff;
/// Table ids the kernel / iproute2 reserve.
const RESERVED_TABLES: &[u32] = &[0, 253, 254, 255];
/// dwprov's rules use `rule_priority .. rule_priority+999`; the band must end
/// below the main table's rule at 32766.
const MAX_RULE_PRIORITY: i64 = 32766 - 1000;

/// Build the validated gateway intent of `host` from its merged vars.
pub fn build(host: &Host) -> Result<Gateway> {
    let vars = &host.vars;
    let allowed: Vec<&str> = CONNECTION_KEYS
        .iter()
        .chain(GATEWAY_KEYS)
        .copied()
        .collect();
    vars.check_keys(&allowed, &format!("vars of host `{}`", host.name))?;
    let missing = |key: &str, hint: &str| Error::Input {
        location: host.location.clone(),
        message: format!("host {} has no `{key}`", host.name),
        hint: Some(hint.to_string()),
    };

    let method = match vars.get("method") {
        Some(n) => choice(
            n,
            "method",
            &[
                ("static", Method::Static),
                ("policy", Method::Policy),
                ("fwmark", Method::Fwmark),
            ],
        )?,
        None => {
            return Err(missing(
                "method",
                "set `method:` to one of static, policy, fwmark",
            ))
        }
    };
    let rule_priority = match vars.get("rule_priority") {
        Some(n) => {
            int_in(n, "rule_priority", 1, MAX_RULE_PRIORITY, "dwprov's rules use rule_priority .. rule_priority+999, which must stay below the main rule at 32766")? as u32
        }
        None => 1000,
    };
    let mark_mask = match vars.get("mark_mask") {
        Some(n) => {
            let m = int_in(
                n,
                "mark_mask",
                0,
                u32::MAX as i64,
                "a 32-bit mask such as 0xff00",
            )?;
            if m == 0 {
                return Err(n.error(
                    "`mark_mask` is 0: no bits left for line marks",
                    Some("use a non-zero mask such as 0xff00".into()),
                ));
            }
            m as u32
        }
        None => 0xff00,
    };
    let route_cache_flush = match vars.get("route_cache_flush") {
        Some(n) if !n.is_null() => Some(boolean(n, "route_cache_flush")?),
        _ => None,
    };
    let hairpin = match vars.get("hairpin") {
        Some(n) => boolean(n, "hairpin")?,
        None => false,
    };
    let nat = match vars.get("nat") {
        None => NatMode::Snat,
        Some(n) => {
            let mode = if n.as_str().is_some() {
                n
            } else {
                n.check_keys(NAT_KEYS, "nat")?;
                n.get("mode").ok_or_else(|| {
                    n.error(
                        "`nat` has no `mode`",
                        Some("write `nat: {mode: snat}` (snat, masquerade or none)".into()),
                    )
                })?
            };
            choice(
                mode,
                "nat mode",
                &[
                    ("snat", NatMode::Snat),
                    ("masquerade", NatMode::Masquerade),
                    ("none", NatMode::None),
                ],
            )?
        }
    };

    // Lines.
    let Some(lines_node) = vars.get("lines") else {
        return Err(missing(
            "lines",
            "list the uplinks under `lines:` (name, interface, address, gateway, default)",
        ));
    };
    let items = seq(lines_node, "lines")?;
    if items.is_empty() {
        return Err(lines_node.error(
            "`lines` is empty",
            Some("list at least one uplink under `lines:`".into()),
        ));
    }
    let mut ifaces: HashMap<String, Location> = HashMap::new();
    let mut lines: Vec<Line> = Vec::new();
    let mut table_given: Vec<Option<u32>> = Vec::new();
    let mut mark_given: Vec<Option<u32>> = Vec::new();
    let mut name_locs: Vec<Location> = Vec::new();
    let mut default_at: Option<Location> = None;
    let mut tables_seen: HashMap<u32, Location> = HashMap::new();
    let mut marks_seen: HashMap<u32, Location> = HashMap::new();
    let mut addr_nodes: Vec<&Node> = Vec::new();
    // Per line: where each listed prefix is written, and its routes file.
    let mut listed: Vec<(HashMap<Ipv4Net, Listed>, Option<std::path::PathBuf>)> = Vec::new();
    for item in items {
        item.check_keys(LINE_KEYS, "line")?;
        let name_n = required(item, "name", "line")?;
        let name = string(name_n, "name")?;
        names::table_name(name).map_err(|m| name_n.error(m, None))?;
        if let Some(i) = lines.iter().position(|l| l.name == name) {
            return Err(name_n.error(
                format!("duplicate line name `{name}`"),
                Some(format!(
                    "`{name}` is already used at line {}",
                    name_locs[i].line
                )),
            ));
        }
        let table = match item.get("table") {
            Some(n) => {
                let t = int_in(
                    n,
                    "table",
                    1,
                    MAX_TABLE as i64,
                    "use an id from 1 to 2147483647 other than 253, 254, 255",
                )
                .map_err(|e| reserved_table_error(n).unwrap_or(e))? as u32;
                if RESERVED_TABLES.contains(&t) {
                    return Err(reserved_table_error(n).unwrap());
                }
                if let Some(prev) = tables_seen.insert(t, n.location.clone()) {
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
                let m = int_in(
                    n,
                    "mark",
                    0,
                    u32::MAX as i64,
                    &format!("a non-zero value within mark_mask {mark_mask:#x}"),
                )? as u32;
                if m == 0 {
                    return Err(n.error(
                        "`mark` is 0, which means \"no mark\"",
                        Some(format!("use a non-zero value within mark_mask {mark_mask:#x}, or leave `mark` out")),
                    ));
                }
                if m & !mark_mask != 0 {
                    return Err(n.error(
                        format!("mark {m:#x} does not fit mark_mask {mark_mask:#x}"),
                        Some(format!(
                            "use only bits of {mark_mask:#x} (e.g. {:#x}), or change `mark_mask`",
                            deposit(1, mark_mask)
                        )),
                    ));
                }
                if let Some(prev) = marks_seen.insert(m, n.location.clone()) {
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
        let iface_n = required(item, "interface", "line")?;
        let interface = interface(iface_n, &mut ifaces)?;
        let addr_n = required(item, "address", "line")?;
        let address = iface_address(addr_n)?;
        let gw_n = required(item, "gateway", "line")?;
        let gateway = ipv4(gw_n, "gateway")?;
        let subnet = address.trunc();
        if !subnet.contains(&gateway) {
            return Err(gw_n.error(
                format!("gateway {gateway} is outside the line's subnet {subnet}"),
                Some(format!("the next hop must be on {interface}'s network; check `address` ({address}) and `gateway`")),
            ));
        }
        if gateway == address.addr() {
            return Err(gw_n.error(
                format!("gateway {gateway} is the line's own address"),
                Some("`gateway` is the ISP's next hop, not this host".into()),
            ));
        }
        if address.prefix_len() < 31
            && (gateway == subnet.network() || gateway == subnet.broadcast())
        {
            return Err(gw_n.error(
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
        let default = match item.get("default") {
            Some(n) => {
                let d = boolean(n, "default")?;
                if d {
                    if let Some(prev) = &default_at {
                        return Err(n.error(
                            "more than one line has `default: true`",
                            Some(format!("`default: true` is already set at line {}; exactly one line carries the default route", prev.line)),
                        ));
                    }
                    default_at = Some(n.location.clone());
                }
                d
            }
            None => false,
        };
        let mut routes: Vec<Ipv4Net> = Vec::new();
        let mut seen: HashMap<Ipv4Net, Listed> = HashMap::new();
        let mut file_path = None;
        if let Some(n) = item.get("routes") {
            for r in seq(n, "routes")? {
                let s = string(r, "routes entry")?;
                let net = routes::parse_cidr(s).map_err(|m| r.error(m, None))?;
                if listed_once(name, net, Listed::Inline(r), &mut seen)
                    .map_err(|(m, h)| r.error(m, h))?
                {
                    routes.push(net);
                }
            }
        }
        if let Some(n) = item.get("routes_file") {
            let s = string(n, "routes_file")?;
            let path = expand_path(s, host.base_dir()).map_err(|m| n.error(m, None))?;
            let entries = routes::load_routes_at(&path).map_err(|e| match e {
                Error::Io { source, .. } => n.error(
                    format!(
                        "cannot read routes file `{}` ({}): {source}",
                        escape::value(s),
                        escape::value(&path.display().to_string())
                    ),
                    Some("relative paths are taken from the inventory file's directory".into()),
                ),
                // Not a regular file, or too big: said at the `routes_file` value.
                Error::Invalid { message, hint } => n.error(message, hint),
                e => e,
            })?;
            for e in entries {
                let at = Listed::File(e.line, e.column);
                let new = listed_once(name, e.net, at, &mut seen).map_err(|(message, hint)| {
                    Error::Input {
                        location: at.location(&path),
                        message,
                        hint,
                    }
                })?;
                if new {
                    routes.push(e.net);
                }
            }
            file_path = Some(path);
        }
        listed.push((seen, file_path));
        table_given.push(table);
        mark_given.push(mark);
        name_locs.push(name_n.location.clone());
        addr_nodes.push(addr_n);
        lines.push(Line {
            name: name.to_string(),
            table: table.unwrap_or(0),
            mark: mark.unwrap_or(0),
            interface,
            address,
            gateway,
            default,
            routes,
        });
    }
    if default_at.is_none() {
        return Err(lines_node.error(
            "no line has `default: true`",
            Some("mark exactly one line `default: true`: it carries the default route for unmatched destinations".into()),
        ));
    }
    for (i, a) in lines.iter().enumerate() {
        for b in &lines[..i] {
            if overlaps(a.address, b.address) {
                return Err(addr_nodes[i].error(
                    format!(
                        "line `{}` subnet {} overlaps line `{}` subnet {}",
                        a.name,
                        a.address.trunc(),
                        b.name,
                        b.address.trunc()
                    ),
                    Some("each line needs its own subnet".into()),
                ));
            }
        }
    }
    assign_tables(&mut lines, &table_given);
    assign_marks(&mut lines, &mark_given, mark_mask, lines_node)?;

    // LAN.
    let Some(lan_node) = vars.get("lan") else {
        return Err(missing(
            "lan",
            "list the LAN side under `lan:` as {interface, address}",
        ));
    };
    let lan_items = seq(lan_node, "lan")?;
    if lan_items.is_empty() {
        return Err(lan_node.error(
            "`lan` is empty",
            Some("list at least one LAN interface".into()),
        ));
    }
    let mut lan: Vec<Lan> = Vec::new();
    for item in lan_items {
        item.check_keys(LAN_KEYS, "lan entry")?;
        let iface_n = required(item, "interface", "lan entry")?;
        let interface = interface(iface_n, &mut ifaces)?;
        let addr_n = required(item, "address", "lan entry")?;
        let address = iface_address(addr_n)?;
        for l in &lines {
            if overlaps(address, l.address) {
                return Err(addr_n.error(
                    format!(
                        "LAN subnet {} overlaps line `{}` subnet {}",
                        address.trunc(),
                        l.name,
                        l.address.trunc()
                    ),
                    Some("the LAN and the uplinks must use distinct subnets".into()),
                ));
            }
        }
        for o in &lan {
            if overlaps(address, o.address) {
                return Err(addr_n.error(
                    format!(
                        "LAN subnet {} overlaps LAN {} subnet {}",
                        address.trunc(),
                        o.interface,
                        o.address.trunc()
                    ),
                    None,
                ));
            }
        }
        lan.push(Lan { interface, address });
    }

    // A listed prefix that is a line's or the LAN's own subnet: the kernel's
    // connected route has that key already, and it is reached directly.
    let subnets = lines
        .iter()
        .map(|l| {
            (
                l.address.trunc(),
                format!("the subnet of line `{}`", l.name),
            )
        })
        .chain(lan.iter().map(|l| {
            (
                l.address.trunc(),
                format!("the LAN subnet on {}", l.interface),
            )
        }));
    for (net, what) in subnets {
        for (l, (seen, file)) in lines.iter().zip(&listed) {
            let Some(at) = seen.get(&net) else { continue };
            let message = format!(
                "`{net}` in the routes of line `{}` is {what}, which is reached directly",
                l.name
            );
            let hint =
                Some("remove it from the list: connected subnets need no route via a line".into());
            return Err(match (at, file) {
                (Listed::Inline(n), _) => n.error(message, hint),
                (Listed::File(..), Some(f)) => Error::Input {
                    location: at.location(f),
                    message,
                    hint,
                },
                (Listed::File(..), None) => lines_node.error(message, hint),
            });
        }
    }
    drop(listed);

    let line_names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();

    // Forwards.
    let mut forwards = Vec::new();
    if let Some(n) = vars.get("forwards") {
        let mut taken: HashMap<(&str, u16, String), usize> = HashMap::new();
        for item in seq(n, "forwards")? {
            item.check_keys(FORWARD_KEYS, "forward")?;
            let proto_n = required(item, "proto", "forward")?;
            let proto = choice(
                proto_n,
                "proto",
                &[("tcp", Proto::Tcp), ("udp", Proto::Udp)],
            )?;
            let port_n = required(item, "port", "forward")?;
            let port = port_num(port_n, "port")?;
            let to_n = required(item, "to", "forward")?;
            let to = ipv4(to_n, "to")?;
            let Some(l) = lan.iter().find(|l| l.address.trunc().contains(&to)) else {
                let nets: Vec<String> = lan.iter().map(|l| l.address.trunc().to_string()).collect();
                return Err(to_n.error(
                    format!("forward target {to} is outside every LAN"),
                    Some(format!(
                        "forward to a host on the LAN ({})",
                        nets.join(", ")
                    )),
                ));
            };
            let net = l.address.trunc();
            if to == l.address.addr()
                || (net.prefix_len() < 31 && (to == net.network() || to == net.broadcast()))
            {
                return Err(to_n.error(
                    format!("forward target {to} is not a LAN host address"),
                    Some(format!(
                        "{to} is the gateway itself or the network/broadcast address of {net}"
                    )),
                ));
            }
            let to_port = match item.get("to_port") {
                Some(n) if !n.is_null() => Some(port_num(n, "to_port")?),
                _ => None,
            };
            let on: Vec<String> = match item.get("lines") {
                Some(ln) => {
                    let ls = seq(ln, "lines")?;
                    if ls.is_empty() {
                        return Err(ln.error(
                            "`lines` of a forward is empty",
                            Some("leave `lines` out to forward on every line".into()),
                        ));
                    }
                    let mut v: Vec<String> = Vec::new();
                    for x in ls {
                        let s = line_ref(x, &line_names)?;
                        if !v.iter().any(|y| y == s) {
                            v.push(s.to_string());
                        }
                    }
                    v
                }
                None => line_names.iter().map(|s| s.to_string()).collect(),
            };
            for l in &on {
                if let Some(prev) =
                    taken.insert((proto.as_str(), port, l.clone()), port_n.location.line)
                {
                    return Err(port_n.error(
                        format!("duplicate forward {}/{port} on line `{l}`", proto.as_str()),
                        Some(format!(
                            "the forward at line {prev} already uses {}/{port} on `{l}`",
                            proto.as_str()
                        )),
                    ));
                }
            }
            forwards.push(Forward {
                proto,
                port,
                to,
                to_port,
                lines: on,
            });
        }
    }

    // Policies.
    let mut policies = Vec::new();
    if let Some(n) = vars.get("policies") {
        for item in seq(n, "policies")? {
            item.check_keys(POLICY_KEYS, "policy")?;
            let from = match item.get("from") {
                Some(n) => Some(cidr(n, "from")?),
                None => None,
            };
            let to = match item.get("to") {
                Some(n) => Some(cidr(n, "to")?),
                None => None,
            };
            if from.is_none() && to.is_none() {
                return Err(item.error(
                    "policy has neither `from` nor `to`",
                    Some("give a LAN source (`from: 192.168.0.50/32`) and/or a destination (`to: 8.8.8.8/32`)".into()),
                ));
            }
            let line_n = required(item, "line", "policy")?;
            let line = line_ref(line_n, &line_names)?.to_string();
            policies.push(Policy { from, to, line });
        }
    }

    Ok(Gateway {
        host: host.name.clone(),
        method,
        lan,
        lines,
        nat,
        forwards,
        hairpin,
        policies,
        rule_priority,
        mark_mask,
        route_cache_flush,
    })
}

/// Where a line's prefix is listed: an inline `routes` entry or a routes
/// file's line and column.
#[derive(Clone, Copy)]
enum Listed<'a> {
    Inline(&'a Node),
    File(u32, u32),
}

impl Listed<'_> {
    fn location(&self, file: &std::path::Path) -> Location {
        match self {
            Listed::Inline(n) => n.location.clone(),
            Listed::File(line, column) => Location {
                file: file.into(),
                line: *line as usize,
                column: *column as usize,
            },
        }
    }
}

/// Whether a listed prefix is new for its line (a prefix listed again, inline
/// or in a file, is kept once: the lists combine). The default route is
/// refused: the `default: true` line carries it, and a second route with its
/// key can never verify. Err is (message, hint).
fn listed_once<'a>(
    line: &str,
    net: Ipv4Net,
    at: Listed<'a>,
    seen: &mut HashMap<Ipv4Net, Listed<'a>>,
) -> std::result::Result<bool, (String, Option<String>)> {
    if net.prefix_len() == 0 {
        return Err((
            format!("`{net}` in the routes of line `{line}` is the default route"),
            Some("remove it: the line with `default: true` carries the default route; to send everything via this line, set `default: true` on it".into()),
        ));
    }
    match seen.entry(net) {
        std::collections::hash_map::Entry::Occupied(_) => Ok(false),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(at);
            Ok(true)
        }
    }
}

// ---------------------------------------------------------------------------
// Value readers: each error is located at the node.

fn required<'a>(map: &'a Node, key: &str, what: &str) -> Result<&'a Node> {
    map.get(key)
        .ok_or_else(|| map.error(format!("{what} is missing required key `{key}`"), None))
}

fn seq<'a>(n: &'a Node, what: &str) -> Result<&'a [Node]> {
    n.as_seq()
        .ok_or_else(|| n.error(format!("`{what}` must be a list, found {}", n.kind()), None))
}

fn string<'a>(n: &'a Node, what: &str) -> Result<&'a str> {
    n.as_str().ok_or_else(|| {
        n.error(
            format!("`{what}` must be a string, found {}", n.kind()),
            None,
        )
    })
}

fn boolean(n: &Node, what: &str) -> Result<bool> {
    n.as_bool().ok_or_else(|| {
        n.error(
            format!("`{what}` must be true or false, found {}", n.kind()),
            None,
        )
    })
}

fn int_in(n: &Node, what: &str, lo: i64, hi: i64, hint: &str) -> Result<i64> {
    let Some(i) = n.as_i64() else {
        return Err(n.error(
            format!("`{what}` must be an integer, found {}", n.kind()),
            None,
        ));
    };
    if i < lo || i > hi {
        return Err(n.error(
            format!("`{what}` {i} is out of range ({lo} to {hi})"),
            Some(hint.to_string()),
        ));
    }
    Ok(i)
}

fn reserved_table_error(n: &Node) -> Option<Error> {
    let t = n.as_i64()?;
    let which = match t {
        0 => "unspec",
        253 => "default",
        254 => "main",
        255 => "local",
        _ => return None,
    };
    Some(n.error(
        format!("table id {t} is reserved (the `{which}` table)"),
        Some("pick another id (e.g. 100), or leave `table` out to get a stable one".into()),
    ))
}

fn port_num(n: &Node, what: &str) -> Result<u16> {
    Ok(int_in(n, what, 1, 65535, "ports are 1 to 65535")? as u16)
}

fn choice<T: Copy>(n: &Node, what: &str, options: &[(&str, T)]) -> Result<T> {
    let valid: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    let Some(s) = n.as_str() else {
        return Err(n.error(
            format!(
                "`{what}` must be one of {}, found {}",
                valid.join(", "),
                n.kind()
            ),
            None,
        ));
    };
    match options.iter().find(|(k, _)| *k == s) {
        Some((_, v)) => Ok(*v),
        None => {
            let dym = did_you_mean(s, &valid)
                .map(|d| format!("did you mean `{d}`? "))
                .unwrap_or_default();
            Err(n.error(
                format!("unknown {what} `{}`", escape::value(s)),
                Some(format!("{dym}valid values: {}", valid.join(", "))),
            ))
        }
    }
}

fn interface(n: &Node, seen: &mut HashMap<String, Location>) -> Result<String> {
    let s = string(n, "interface")?;
    names::interface(s).map_err(|m| n.error(m, None))?;
    if let Some(prev) = seen.get(s) {
        return Err(n.error(
            format!("interface `{s}` is used twice"),
            Some(format!(
                "`{s}` is already used at line {}; every line and LAN needs its own interface",
                prev.line
            )),
        ));
    }
    seen.insert(s.to_string(), n.location.clone());
    Ok(s.to_string())
}

fn ipv4(n: &Node, what: &str) -> Result<Ipv4Addr> {
    let s = string(n, what)?;
    routes::parse_addr(s).map_err(|m| n.error(format!("`{what}`: {m}"), None))
}

/// An interface address: `a.b.c.d/len`, a usable host address of its subnet.
fn iface_address(n: &Node) -> Result<Ipv4Net> {
    let s = string(n, "address")?;
    let net = routes::parse_iface_net(s).map_err(|m| {
        n.error(
            format!("`address`: {m}"),
            Some("write it like 198.51.100.2/24".into()),
        )
    })?;
    if net.prefix_len() < 31 {
        let sub = net.trunc();
        if net.addr() == sub.network() {
            return Err(n.error(
                format!("`address` {s} is the network address of {sub}"),
                Some("use a host address, e.g. the one the ISP assigned".into()),
            ));
        }
        if net.addr() == sub.broadcast() {
            return Err(n.error(
                format!("`address` {s} is the broadcast address of {sub}"),
                Some("use a host address, e.g. the one the ISP assigned".into()),
            ));
        }
    }
    Ok(net)
}

/// A destination/source prefix (bare address = /32; host bits must be clear).
fn cidr(n: &Node, what: &str) -> Result<Ipv4Net> {
    let s = string(n, what)?;
    routes::parse_cidr(s).map_err(|m| n.error(format!("`{what}`: {m}"), None))
}

fn line_ref<'a>(n: &Node, lines: &[&'a str]) -> Result<&'a str> {
    let s = string(n, "line")?;
    match lines.iter().find(|l| **l == s) {
        Some(l) => Ok(l),
        None => {
            let dym = did_you_mean(s, lines)
                .map(|d| format!("did you mean `{d}`? "))
                .unwrap_or_default();
            Err(n.error(
                format!("unknown line `{}`", escape::value(s)),
                Some(format!("{dym}lines: {}", lines.join(", "))),
            ))
        }
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    let (a, b) = (a.trunc(), b.trunc());
    a.contains(&b.network()) || b.contains(&a.network())
}

// ---------------------------------------------------------------------------
// Stable ids

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Order in which lines without an explicit value get one: by name.
fn auto_order(lines: &[Line], given: &[Option<u32>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..lines.len()).filter(|&i| given[i].is_none()).collect();
    idx.sort_by(|&a, &b| lines[a].name.cmp(&lines[b].name));
    idx
}

fn assign_tables(lines: &mut [Line], given: &[Option<u32>]) {
    let mut taken: HashSet<u32> = given.iter().flatten().copied().collect();
    let (lo, hi) = (*AUTO_TABLES.start(), *AUTO_TABLES.end());
    let span = (hi - lo + 1) as u64;
    for i in auto_order(lines, given) {
        let mut t = lo + (fnv1a(&format!("table:{}", lines[i].name)) % span) as u32;
        // At most a handful of lines: the range never fills up.
        while taken.contains(&t) {
            t = if t == hi { lo } else { t + 1 };
        }
        taken.insert(t);
        lines[i].table = t;
    }
}

/// Spread the low bits of `n` over the set bits of `mask` (like BMI2 pdep).
fn deposit(mut n: u64, mask: u32) -> u32 {
    let mut out = 0u32;
    for bit in 0..32 {
        if mask & (1 << bit) != 0 {
            if n & 1 != 0 {
                out |= 1 << bit;
            }
            n >>= 1;
        }
    }
    out
}

fn assign_marks(lines: &mut [Line], given: &[Option<u32>], mask: u32, at: &Node) -> Result<()> {
    let mut taken: HashSet<u32> = given.iter().flatten().copied().collect();
    let count: u64 = (1u64 << mask.count_ones()) - 1; // non-zero values under the mask
    for i in auto_order(lines, given) {
        let start = fnv1a(&format!("mark:{}", lines[i].name)) % count; // 0..count
        let mut k = start;
        loop {
            let m = deposit(k + 1, mask);
            if !taken.contains(&m) {
                taken.insert(m);
                lines[i].mark = m;
                break;
            }
            k = (k + 1) % count;
            if k == start {
                return Err(at.error(
                    format!(
                        "mark_mask {mask:#x} has no free mark left for line `{}`",
                        lines[i].name
                    ),
                    Some("widen `mark_mask` or give the lines explicit marks".into()),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_spreads_bits() {
        assert_eq!(deposit(1, 0xff00), 0x100);
        assert_eq!(deposit(0xff, 0xff00), 0xff00);
        assert_eq!(deposit(0b11, 0b1010), 0b1010);
    }

    fn line(name: &str) -> Line {
        Line {
            name: name.into(),
            table: 0,
            mark: 0,
            interface: "eth1".into(),
            address: "10.0.0.2/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            default: false,
            routes: vec![],
        }
    }

    #[test]
    fn auto_ids_are_stable_under_reorder_and_addition() {
        let mut a = vec![line("ctc"), line("cnc")];
        assign_tables(&mut a, &[None, None]);
        assign_marks(
            &mut a,
            &[None, None],
            0xff00,
            &Node::parse("x", "t").unwrap(),
        )
        .unwrap();
        let mut b = vec![line("cmcc"), line("cnc"), line("ctc")];
        assign_tables(&mut b, &[None, None, None]);
        assign_marks(
            &mut b,
            &[None, None, None],
            0xff00,
            &Node::parse("x", "t").unwrap(),
        )
        .unwrap();
        for l in &a {
            let o = b.iter().find(|x| x.name == l.name).unwrap();
            assert_eq!((l.table, l.mark), (o.table, o.mark));
            assert!(AUTO_TABLES.contains(&l.table));
            assert!(l.mark != 0 && l.mark & !0xff00 == 0);
        }
        // a one-bit mask has exactly one mark; a second line cannot get one
        let mut c = vec![line("a"), line("b")];
        assert!(assign_marks(
            &mut c,
            &[None, None],
            0x100,
            &Node::parse("x", "t").unwrap()
        )
        .is_err());
    }
}
