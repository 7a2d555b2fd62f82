//! Line health and failover (issue 11): per line `health: {targets,
//! interval, timeout, down, up, reliability}`, `fallback: [LINE, ...]`,
//! `weight: N`, `flush_on_recovery: BOOL`, `on_change: CMD`. Read after the
//! LAN is built, since a probe target inside the LAN would never test the
//! line. Ranges are the agent's own ([`crate::agent::config`]), so a config
//! rendered from a valid inventory is always one the agent accepts.
use super::line_ref;
use crate::agent::config::{
    Target, MAX_INTERVAL, MAX_ROUNDS, MAX_TARGETS, MAX_TIMEOUT, MAX_WEIGHT, MIN_INTERVAL,
    MIN_TIMEOUT,
};
use crate::error::Result;
use crate::escape;
use crate::inventory::values;
use crate::model::{Failover, Health, Lan, Line, Method};
use crate::yaml::{Node, Value};

const HEALTH_KEYS: &[&str] = &[
    "targets",
    "interval",
    "timeout",
    "down",
    "up",
    "reliability",
];

/// Fill `health` and `failover` of `lines` from their inventory entries
/// `items` (same order), checking what relates them: fallbacks name other
/// lines, targets are outside the LAN, several default lines balance only
/// with method fwmark (its CONNMARK keeps each connection on its line).
pub(super) fn finish(
    lines: &mut [Line],
    items: &[&Node],
    lan: &[Lan],
    method: Method,
) -> Result<()> {
    let names: Vec<String> = lines.iter().map(|l| l.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let defaults: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].default).collect();
    if defaults.len() > 1 && !matches!(method, Method::Fwmark | Method::Set) {
        let at = items[defaults[1]]
            .get("default")
            .unwrap_or(items[defaults[1]]);
        return Err(at.error(
            format!(
                "several lines have `default: true` (a balanced default route), which needs method fwmark, not {}",
                method_name(method)
            ),
            Some("use `method: fwmark` (its CONNMARK keeps each connection on the line it started on), or keep one default line".into()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let health = match item.get("health") {
            Some(n) => Some(health(n, lan)?),
            None => None,
        };
        let mut failover = Failover::default();
        if let Some(n) = item.get("weight") {
            failover.weight = values::int_in(
                n,
                "weight",
                1,
                MAX_WEIGHT as i64,
                "a line's share of a balanced default route, 1 to 256 (the kernel's largest nexthop weight)",
            )? as u32;
        }
        let needs_health = |key: &str| -> Result<()> {
            match (item.get(key), &health) {
                (Some(n), None) => Err(n.error(
                    format!("`{key}` of line `{}` has no effect without `health`", lines[i].name),
                    Some("add `health: {targets: [ADDRESS]}` to the line so the agent watches it, or remove the key".into()),
                )),
                _ => Ok(()),
            }
        };
        for key in ["fallback", "flush_on_recovery", "on_change"] {
            needs_health(key)?;
        }
        if let Some(n) = item.get("flush_on_recovery") {
            failover.flush_on_recovery = values::boolean(n, "flush_on_recovery")?;
        }
        if let Some(n) = item.get("on_change") {
            failover.on_change = Some(on_change(n)?);
        }
        if health.is_some() {
            failover.fallback = match item.get("fallback") {
                Some(n) => fallback(n, &names, &lines[i].name)?,
                None => default_fallback(lines, i),
            };
        }
        lines[i].health = health;
        lines[i].failover = failover;
    }
    Ok(())
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Static => "static",
        Method::Policy => "policy",
        Method::Fwmark => "fwmark",
        Method::Set => "set",
    }
}

/// The default fallback of line `i`: the default line(s), or for a default
/// line the other lines in inventory order.
fn default_fallback(lines: &[Line], i: usize) -> Vec<String> {
    let me = &lines[i];
    lines
        .iter()
        .filter(|l| l.name != me.name && (me.default || l.default))
        .map(|l| l.name.clone())
        .collect()
}

fn fallback(n: &Node, names: &[&str], me: &str) -> Result<Vec<String>> {
    let items = values::seq(n, "fallback")?;
    if items.is_empty() {
        return Err(n.error(
            "`fallback` is empty",
            Some("name the lines that carry this line's traffic while it is down, or leave `fallback` out for the default".into()),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let name = line_ref(item, names)?;
        if name == me {
            return Err(item.error(
                format!("line `{me}` falls back to itself"),
                Some("name another line: a dead line cannot carry its own traffic".into()),
            ));
        }
        if out.iter().any(|o| o == name) {
            return Err(item.error(format!("line `{name}` is listed twice in `fallback`"), None));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

fn on_change(n: &Node) -> Result<String> {
    let s = values::string(n, "on_change")?;
    if s.trim().is_empty() || s.chars().any(char::is_control) {
        return Err(n.error(
            format!("`on_change` `{}` is empty or holds control characters", escape::value(s)),
            Some("a one-line command; the agent runs it as `sh -c 'CMD \"$@\"' on_change LINE STATE`".into()),
        ));
    }
    Ok(s.to_string())
}

/// A number of seconds (integer or fraction) from `lo` to `hi`, as milliseconds.
fn seconds(n: &Node, what: &str, lo: f64, hi: f64) -> Result<u32> {
    let x = match &n.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => {
            return Err(n.error(
                format!("`{what}` must be a number of seconds, found {}", n.kind()),
                None,
            ))
        }
    };
    if !x.is_finite() || x < lo || x > hi {
        return Err(n.error(
            format!("`{what}` {x} is out of range ({lo} to {hi} seconds)"),
            Some(match what {
                "interval" => {
                    "seconds between probe rounds; fractions are allowed down to 0.2".into()
                }
                _ => "seconds a probe may take before it counts as lost".into(),
            }),
        ));
    }
    Ok((x * 1000.0).round() as u32)
}

fn rounds(n: &Node, what: &str) -> Result<u32> {
    Ok(values::int_in(
        n,
        what,
        1,
        MAX_ROUNDS as i64,
        &format!("rounds in a row, 1 to {MAX_ROUNDS}"),
    )? as u32)
}

fn health(n: &Node, lan: &[Lan]) -> Result<Health> {
    if n.as_map().is_none() {
        return Err(n.error(
            format!("`health` must be a map, found {}", n.kind()),
            Some("e.g. `health: {targets: [100.65.2.1, 203.0.113.77:443]}`".into()),
        ));
    }
    n.check_keys(HEALTH_KEYS, "health")?;
    let t_node = values::required(n, "targets", "health")?;
    let t_items = values::seq(t_node, "targets")?;
    if t_items.is_empty() || t_items.len() > MAX_TARGETS {
        return Err(t_node.error(
            format!("`targets` lists {} targets", t_items.len()),
            Some(format!("list 1 to {MAX_TARGETS} probe targets (ADDRESS for ICMP echo, ADDRESS:PORT for TCP connect)")),
        ));
    }
    let mut targets: Vec<Target> = Vec::new();
    for t in t_items {
        let s = values::string(t, "target")?;
        let target: Target = s.parse().map_err(|_| {
            t.error(
                format!("`{}` is not a probe target", escape::value(s)),
                Some("ADDRESS for an ICMP echo, ADDRESS:PORT for a TCP connect, e.g. 100.65.2.1 or 203.0.113.77:443".into()),
            )
        })?;
        let addr = match target {
            Target::Icmp(a) => a,
            Target::Tcp(sa) => *sa.ip(),
        };
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback()
        {
            return Err(t.error(
                format!("probe target {addr} cannot answer a probe"),
                Some(
                    "name a host beyond the ISP's router that answers ping (or a TCP port)".into(),
                ),
            ));
        }
        if let Some(l) = lan
            .iter()
            .find(|l| l.address.trunc().contains(&std::net::IpAddr::from(addr)))
        {
            return Err(t.error(
                format!(
                    "probe target {addr} is inside the LAN {}",
                    l.address.trunc()
                ),
                Some(
                    "a probe must cross the line to test it: name a host beyond the ISP's router"
                        .into(),
                ),
            ));
        }
        if targets.contains(&target) {
            return Err(t.error(format!("probe target {target} is listed twice"), None));
        }
        targets.push(target);
    }
    let interval_ms = match n.get("interval") {
        Some(v) => seconds(v, "interval", MIN_INTERVAL, MAX_INTERVAL)?,
        None => 1000,
    };
    let timeout_ms = match n.get("timeout") {
        Some(v) => seconds(v, "timeout", MIN_TIMEOUT, MAX_TIMEOUT)?,
        None => 1000,
    };
    let down = n
        .get("down")
        .map(|v| rounds(v, "down"))
        .transpose()?
        .unwrap_or(3);
    let up = n
        .get("up")
        .map(|v| rounds(v, "up"))
        .transpose()?
        .unwrap_or(5);
    let reliability = match n.get("reliability") {
        Some(v) => {
            let r = values::int_in(
                v,
                "reliability",
                1,
                MAX_TARGETS as i64,
                "targets that must answer for a round to be good",
            )? as u32;
            if r as usize > targets.len() {
                return Err(v.error(
                    format!("`reliability` {r} is more than the {} target(s) listed", targets.len()),
                    Some("a round is good when at least `reliability` targets answer: list more targets or lower it".into()),
                ));
            }
            r
        }
        None => 1,
    };
    Ok(Health {
        targets,
        interval_ms,
        timeout_ms,
        down,
        up,
        reliability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        Node::parse(text, "t.yaml").unwrap()
    }

    fn lan() -> Vec<Lan> {
        vec![Lan {
            interface: "eth0".into(),
            address: "192.168.0.1/24".parse().unwrap(),
        }]
    }

    #[test]
    fn defaults_and_fractions() {
        let h = health(
            &node("{targets: [100.65.2.1, '203.0.113.77:443'], interval: 0.2}"),
            &lan(),
        )
        .unwrap();
        assert_eq!(h.interval_ms, 200);
        assert_eq!((h.timeout_ms, h.down, h.up, h.reliability), (1000, 3, 5, 1));
        assert_eq!(h.targets[1].to_string(), "203.0.113.77:443");
    }

    #[test]
    fn refusals() {
        let err = |t: &str| health(&node(t), &lan()).unwrap_err().to_string();
        assert!(err("{targets: [192.168.0.9]}").contains("inside the LAN"));
        assert!(err("{targets: [1.2.3.4], reliability: 2}").contains("more than the 1 target"));
        assert!(err("{targets: [1.2.3.4], interval: 0.1}").contains("out of range"));
        assert!(err("{targets: [1.2.3.4], intervl: 1}").contains("did you mean `interval`"));
        assert!(err("{targets: []}").contains("lists 0 targets"));
        assert!(err("{targets: [nope]}").contains("not a probe target"));
        assert!(err("{targets: [1.2.3.4, 1.2.3.4]}").contains("twice"));
        assert!(err("{targets: [1.2.3.4], down: 0}").contains("out of range"));
        assert!(err("{targets: ['1.2.3.4:0']}").contains("not a probe target"));
    }
}
