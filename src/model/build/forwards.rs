//! Port forwards: `{proto, port, to, to_port, lines}` to a host address of a
//! LAN, on the listed lines (every line when `lines` is left out); one
//! forward per proto/port and line.
use super::line_ref;
use crate::error::Result;
use crate::inventory::values;
use crate::model::{Forward, Lan, Proto};
use crate::yaml::Node;
use std::collections::HashMap;

const FORWARD_KEYS: &[&str] = &["proto", "port", "to", "to_port", "lines"];

/// The forwards of the `forwards` list, into `lan`, on `line_names`.
pub(super) fn forwards(node: &Node, lan: &[Lan], line_names: &[&str]) -> Result<Vec<Forward>> {
    let mut forwards = Vec::new();
    // (proto, port, line) → the inventory line of the forward using it.
    let mut taken: HashMap<(&str, u16, String), usize> = HashMap::new();
    for item in values::seq(node, "forwards")? {
        item.check_keys(FORWARD_KEYS, "forward")?;
        let proto_n = values::required(item, "proto", "forward")?;
        let proto = values::choice(
            proto_n,
            "proto",
            &[("tcp", Proto::Tcp), ("udp", Proto::Udp)],
        )?;
        let port_n = values::required(item, "port", "forward")?;
        let port = values::port(port_n, "port")?;
        let to_n = values::required(item, "to", "forward")?;
        let to = std::net::IpAddr::V4(values::ipv4(to_n, "to")?);
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
            || (net.max_prefix_len() - net.prefix_len() > 1
                && (to == net.network() || to == net.broadcast()))
        {
            return Err(to_n.error(
                format!("forward target {to} is not a LAN host address"),
                Some(format!(
                    "{to} is the gateway itself or the network/broadcast address of {net}"
                )),
            ));
        }
        let to_port = match item.get("to_port") {
            Some(n) if !n.is_null() => Some(values::port(n, "to_port")?),
            _ => None,
        };
        let on: Vec<String> = match item.get("lines") {
            Some(ln) => {
                let ls = values::seq(ln, "lines")?;
                if ls.is_empty() {
                    return Err(ln.error(
                        "`lines` of a forward is empty",
                        Some("leave `lines` out to forward on every line".into()),
                    ));
                }
                let mut v: Vec<String> = Vec::new();
                for x in ls {
                    let s = line_ref(x, line_names)?;
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
    Ok(forwards)
}
