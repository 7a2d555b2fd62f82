//! The host-wide settings of the intent: `method` (required), `firewall`
//! (iptables, the only backend so far), `rule_priority`
//! (1000), `mark_mask` (0xff00), `route_cache_flush` (unset: decided from
//! facts) and `hairpin` (false).
use super::missing;
use crate::error::Result;
use crate::firewall::Backend;
use crate::inventory::{values, Host};
use crate::model::Method;

/// The settings read from a host's vars.
pub(super) struct Settings {
    pub method: Method,
    pub firewall: Backend,
    pub rule_priority: u32,
    pub mark_mask: u32,
    pub route_cache_flush: Option<bool>,
    pub hairpin: bool,
}

/// Read the settings of `host`, in that order.
pub(super) fn settings(host: &Host) -> Result<Settings> {
    let vars = &host.vars;
    let method = match vars.get("method") {
        Some(n) => values::choice(
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
                host,
                "method",
                "set `method:` to one of static, policy, fwmark",
            ))
        }
    };
    let firewall = match vars.get("firewall") {
        Some(n) => values::choice(n, "firewall", Backend::ALL)?,
        None => Backend::default(),
    };
    let rule_priority = match vars.get("rule_priority") {
        Some(n) => values::rule_priority(n)?,
        None => crate::ownership::DEFAULT_RULE_PRIORITY,
    };
    let mark_mask = match vars.get("mark_mask") {
        Some(n) => values::mark_mask(n)?,
        None => crate::ownership::DEFAULT_MARK_MASK,
    };
    let route_cache_flush = match vars.get("route_cache_flush") {
        Some(n) if !n.is_null() => Some(values::boolean(n, "route_cache_flush")?),
        _ => None,
    };
    let hairpin = match vars.get("hairpin") {
        Some(n) => values::boolean(n, "hairpin")?,
        None => false,
    };
    Ok(Settings {
        method,
        firewall,
        rule_priority,
        mark_mask,
        route_cache_flush,
        hairpin,
    })
}
