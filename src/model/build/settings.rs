//! The host-wide settings of the intent: `method` (required), `firewall`
//! (iptables or nftables; `method: set` needs nftables), `rule_priority`
//! (1000), `mark_mask` (0xff00), `route_cache_flush` (unset: decided from
//! facts) and `hairpin` (false).
use super::missing;
use crate::error::Result;
use crate::inventory::{values, Host};
use crate::model::Method;
use crate::state::firewall::Backend;

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
                ("set", Method::Set),
            ],
        )?,
        None => {
            return Err(missing(
                host,
                "method",
                "set `method:` to one of static, policy, fwmark, set",
            ))
        }
    };
    let firewall = match vars.get("firewall") {
        Some(n) => values::choice(n, "firewall", Backend::ALL)?,
        None => Backend::default(),
    };
    // Prefix sets are an nftables object: iptables has none (ipset is not
    // dwprov's), so the combination is refused where `method` is set.
    if method == Method::Set && firewall != Backend::Nftables {
        let n = vars.get("method").expect("method was read above");
        return Err(n.error(
            format!(
                "method `set` puts each line's prefixes into an nftables set, but this host's firewall is {}",
                firewall.name()
            ),
            Some("set `firewall: nftables` for this host (or its group), or use method fwmark".into()),
        ));
    }
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
