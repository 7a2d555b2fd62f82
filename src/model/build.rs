//! Merged host vars → validated [`Gateway`], with located errors.
//!
//! [`build`] stops at the first problem and reports it at the offending value
//! (inventory file:line:column, or routes file:line:column) with a hint.
//! A host whose vars hold no gateway key at all is fine for `gather` (see
//! [`Host::has_gateway`]); `build` on it fails with "host X has no `method`".
//! The top-level keys of the vars were checked by [`crate::inventory::load`];
//! single values are read by [`crate::inventory::values`]; the builders here
//! check what relates values to each other.
//!
//! One builder per part of the intent, called in this order (which is the
//! order problems are found in): [`settings`] (method, rule band, marks,
//! route-cache flush, hairpin), [`nat`], [`lines`] (with their [`routes`]
//! and stable [`ids`]), [`lan`], the connected-subnet check of [`routes`],
//! [`forwards`], [`policies`].
//!
//! Defaults: `nat` snat, `hairpin` false, `rule_priority` 1000, `mark_mask`
//! 0xff00, `route_cache_flush` unset, forwards on every line. `method` and
//! `lan` are required.
//!
//! A run builds each host's intent once, with [`build_all`], before anything
//! connects; everything after works on the built [`Gateway`].
use super::Gateway;
use crate::error::{Error, Location, Result};
use crate::escape;
use crate::inventory::{values, Host};
use crate::yaml::{did_you_mean, Node};
pub use agent::agent_config;
use ipnet::IpNet;
use std::collections::HashMap;

mod agent;
mod forwards;
mod health;
mod ids;
mod lan;
mod lines;
mod nat;
mod policies;
mod routes;
mod settings;

/// Build the validated gateway intent of `host` from its merged vars.
pub fn build(host: &Host) -> Result<Gateway> {
    let vars = &host.vars;
    let settings = settings::settings(host)?;
    let nat = nat::nat(vars.get("nat"))?;
    let mut interfaces = Interfaces::default();
    let Some(lines_node) = vars.get("lines") else {
        return Err(missing(
            host,
            "lines",
            "list the uplinks under `lines:` (name, interface, address, gateway, default)",
        ));
    };
    let built = lines::lines(host, lines_node, settings.mark_mask, &mut interfaces)?;
    let Some(lan_node) = vars.get("lan") else {
        return Err(missing(
            host,
            "lan",
            "list the LAN side under `lan:` as {interface, address}",
        ));
    };
    let lan = lan::lan(lan_node, &built.lines, &mut interfaces)?;
    routes::check_connected(&built.lines, &built.listed, &lan, lines_node)?;
    let mut lines = built.lines;
    health::finish(&mut lines, &built.items, &lan, settings.method)?;
    let line_names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    let forwards = match vars.get("forwards") {
        Some(n) => forwards::forwards(n, &lan, &line_names)?,
        None => Vec::new(),
    };
    let policies = match vars.get("policies") {
        Some(n) => policies::policies(n, &line_names)?,
        None => Vec::new(),
    };
    Ok(Gateway {
        host: host.name.clone(),
        method: settings.method,
        firewall: settings.firewall,
        lan,
        lines,
        nat,
        forwards,
        hairpin: settings.hairpin,
        policies,
        rule_priority: settings.rule_priority,
        mark_mask: settings.mark_mask,
        route_cache_flush: settings.route_cache_flush,
        foreign_main_default: false,
    })
}

/// Build the intent of every host, in order, with the errors of all hosts
/// together ([`Error::Multiple`] for more than one): the one place a run
/// turns inventory hosts into intent, before anything connects.
pub fn build_all<'a>(hosts: impl IntoIterator<Item = &'a Host>) -> Result<Vec<Gateway>> {
    let mut gateways = Vec::new();
    let mut errors = Vec::new();
    for h in hosts {
        match build(h) {
            Ok(gw) => gateways.push(gw),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(gateways),
        1 => Err(errors.pop().expect("one")),
        _ => Err(Error::Multiple(errors)),
    }
}

/// A required gateway key the host's vars lack: said at the host.
fn missing(host: &Host, key: &str, hint: &str) -> Error {
    Error::Input {
        location: host.location.clone(),
        message: format!("host {} has no `{key}`", host.name),
        hint: Some(hint.to_string()),
    }
}

/// Interfaces taken so far by lines and LANs: each needs its own.
#[derive(Default)]
struct Interfaces(HashMap<String, Location>);

impl Interfaces {
    /// Read an interface name and take it; one already taken is an error.
    fn take(&mut self, n: &Node) -> Result<String> {
        let s = values::interface(n)?;
        if let Some(prev) = self.0.get(s) {
            return Err(n.error(
                format!("interface `{s}` is used twice"),
                Some(format!(
                    "`{s}` is already used at line {}; every line and LAN needs its own interface",
                    prev.line
                )),
            ));
        }
        self.0.insert(s.to_string(), n.location.clone());
        Ok(s.to_string())
    }
}

/// A reference to one of the gateway's lines, with "did you mean".
fn line_ref<'a>(n: &Node, lines: &[&'a str]) -> Result<&'a str> {
    let s = values::string(n, "line")?;
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

/// Whether the subnets of two interface addresses overlap.
fn overlaps(a: IpNet, b: IpNet) -> bool {
    let (a, b) = (a.trunc(), b.trunc());
    a.contains(&b.network()) || b.contains(&a.network())
}
