//! Intent → tera templates → text → the same parsers as live state.
//!
//! The templates in `templates/` (embedded in the binary, overridable with
//! `--templates DIR`) say what a gateway should look like; their output is
//! parsed by the parsers that read live hosts, so what a template says is
//! exactly what is compared and applied.
use crate::error::{Error, Result};
use crate::gather::Facts;
use crate::model::{Gateway, Method, NatMode};
use crate::state::{ip, RtTables, State};
use ipnet::IpNet;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

pub mod json;
pub mod nftables;
pub mod ownership;

pub use crate::templates::{check_template_dir, limits, Templates, BUILTIN};

/// Where each rendered file goes on the gateway.
pub const FILE_TARGETS: &[(&str, &str)] = &[
    ("rt_tables.conf", crate::ownership::RT_TABLES_CONF),
    ("rt_protos.conf", crate::ownership::RT_PROTOS_CONF),
    ("sysctl.conf", crate::ownership::SYSCTL_CONF),
];

/// Above this many `ip rule to` rules, method policy gets a warning: the
/// kernel scans rules linearly (measured 27× slower forwarding at 3,894
/// prefixes, 122× at 16,000, against routes).
const POLICY_RULES_WARN: usize = 256;

/// What rendering one gateway produced.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub host: String,
    /// Artefact name → text: `ip.batch`, `iptables.rules` and each file's path.
    pub artefacts: BTreeMap<String, String>,
    /// The artefacts parsed into typed state.
    pub desired: State,
    pub warnings: Vec<String>,
    /// What the facts made of dynamic lines (issue 14): information, not change.
    pub info: Vec<String>,
}

#[derive(Serialize)]
struct LineCtx<'a> {
    name: &'a str,
    table: u32,
    mark: String,
    interface: &'a str,
    /// None: a dynamic line with no address now (issue 14).
    ip: Option<String>,
    network: Option<String>,
    gateway: Option<String>,
    /// Where its routes go: `via G dev IF` or `dev IF` (point-to-point);
    /// for a line down now, its carrier's (see [`crate::model::carrier`]).
    hop: String,
    /// It can carry traffic now (an address, and a next hop unless point-to-point).
    up: bool,
    /// Its source NAT: snat, masquerade (always for a dynamic address) or none.
    nat: &'static str,
    default: bool,
    prefixes: Vec<PrefixCtx>,
    prio_fwmark: u32,
    prio_source: u32,
    prio_dest: u32,
    /// The line's nexthop object (issue 11): its traffic routes use it.
    nhid: Option<u32>,
    /// What rules sending traffic to the line look up (method policy's
    /// destination rules): its table, or with a nexthop its policy table.
    via_table: String,
}

/// A nexthop object and the table policies naming its line look up.
#[derive(Serialize)]
struct NexthopCtx {
    id: u32,
    /// `via G dev D` or `group A,W/B`.
    hop: String,
}

/// A destination prefix as the templates see it (`ip::net_str` text). Only
/// tera's JSON copy of a big list is a string per prefix, not this list too.
struct PrefixCtx(IpNet);

impl Serialize for PrefixCtx {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            s.collect_str(&self.0.addr())
        } else {
            s.collect_str(&self.0)
        }
    }
}

#[derive(Serialize)]
struct LanCtx<'a> {
    interface: &'a str,
    ip: String,
    network: String,
}

#[derive(Serialize)]
struct FwdLineCtx<'a> {
    name: &'a str,
    ip: String,
    interface: &'a str,
}

#[derive(Serialize)]
struct ForwardCtx<'a> {
    proto: &'static str,
    port: u16,
    to: String,
    to_port: Option<u16>,
    lines: Vec<FwdLineCtx<'a>>,
}

#[derive(Serialize, PartialEq, Eq, Hash)]
struct HairpinCtx {
    network: String,
    lan_ip: String,
    to: String,
    proto: &'static str,
    port: u16,
}

#[derive(Serialize)]
struct PolicyCtx<'a> {
    from: String,
    to: String,
    line: &'a str,
    /// What the rule looks up: the line's table, or with nexthops its policy table.
    table: String,
    priority: u32,
}

/// Priority offsets inside dwprov's rule band, in match order: marked
/// connections stay on their line, then replies from a line address leave on
/// it, then admin policies, then destination rules (method policy).
pub const PRIO_FWMARK: u32 = 100;
pub const PRIO_SOURCE: u32 = 200;
pub const PRIO_POLICY: u32 = 300;
pub const PRIO_DEST: u32 = 400;

fn net_of(a: IpNet) -> String {
    a.trunc().to_string()
}

/// The template context, and warnings found while building it.
fn context(gw: &Gateway) -> (tera::Context, Vec<String>) {
    let mut warnings = Vec::new();
    let base = gw.rule_priority;
    // A prefix listed for several lines goes via the first line listing it:
    // two routes for one destination cannot coexist in a table.
    let mut seen: HashSet<IpNet> = HashSet::new();
    let mut lines = Vec::new();
    for (i, l) in gw.lines.iter().enumerate() {
        let i = i as u32;
        let mut prefixes = Vec::with_capacity(l.routes.len());
        let mut dup = 0usize;
        for p in &l.routes {
            if seen.insert(*p) {
                prefixes.push(PrefixCtx(*p));
            } else {
                dup += 1;
            }
        }
        if dup > 0 {
            warnings.push(format!(
                "{dup} prefix(es) of line {} are also listed for an earlier line, which wins (the first line \
                 listing a prefix routes it); `dwprov render -i INVENTORY --limit {} --overlaps` lists them",
                l.name, gw.host
            ));
        }
        if gw.method == Method::Policy && prefixes.len() > POLICY_RULES_WARN {
            warnings.push(format!(
                "method policy renders {} `ip rule to` rules for line {}: the kernel scans rules linearly \
                 (measured 8x the per-packet CPU cost of a plain NAT gateway at 3,894 rules, docs/methods.md); method static or fwmark routes them at full speed",
                prefixes.len(),
                l.name
            ));
        }
        let hop = if l.up_now() {
            l.hop()
        } else if let Some(c) = crate::model::carrier(gw, l) {
            c.hop()
        } else {
            if !prefixes.is_empty() {
                warnings.push(format!(
                    "line {} is down and no line is up to carry its {} prefix(es): they are not routed",
                    l.name,
                    prefixes.len()
                ));
            }
            prefixes.clear();
            l.hop()
        };
        lines.push(LineCtx {
            name: &l.name,
            table: l.table,
            mark: format!("{:#x}", l.mark),
            interface: &l.interface,
            ip: l.address.map(|a| a.addr().to_string()),
            network: l.address.map(net_of),
            gateway: l.gateway.map(|g| g.to_string()),
            hop,
            up: l.up_now(),
            nat: match gw.nat {
                _ if l.masquerade(gw.nat) => "masquerade",
                NatMode::Snat => "snat",
                _ => "none",
            },
            default: l.default,
            prefixes,
            prio_fwmark: base + PRIO_FWMARK + i,
            prio_source: base + PRIO_SOURCE + i,
            prio_dest: base + PRIO_DEST + i,
            nhid: if gw.uses_nexthops() {
                crate::ownership::line_nexthop_id(i as usize)
            } else {
                None
            },
            via_table: match policy_table(gw, &l.name) {
                Some(t) => t.to_string(),
                None => l.name.clone(),
            },
        });
    }
    let lan: Vec<LanCtx> = gw
        .lan
        .iter()
        .map(|l| LanCtx {
            interface: &l.interface,
            ip: l.address.addr().to_string(),
            network: net_of(l.address),
        })
        .collect();
    let forwards: Vec<ForwardCtx> = gw
        .forwards
        .iter()
        .map(|f| ForwardCtx {
            proto: f.proto.as_str(),
            port: f.port,
            to: f.to.to_string(),
            to_port: f.to_port,
            lines: gw
                .lines
                .iter()
                .filter(|l| f.lines.contains(&l.name))
                // A dynamic line without an address now has nothing to forward on.
                .filter_map(|l| {
                    Some(FwdLineCtx {
                        name: &l.name,
                        ip: l.address?.addr().to_string(),
                        interface: &l.interface,
                    })
                })
                .collect(),
        })
        .collect();
    let mut hairpins: Vec<HairpinCtx> = Vec::new();
    if gw.hairpin {
        for f in &gw.forwards {
            for l in gw.lan.iter().filter(|l| l.address.contains(&f.to)) {
                let h = HairpinCtx {
                    network: net_of(l.address),
                    lan_ip: l.address.addr().to_string(),
                    to: f.to.to_string(),
                    proto: f.proto.as_str(),
                    port: f.to_port.unwrap_or(f.port),
                };
                if !hairpins.contains(&h) {
                    hairpins.push(h);
                }
            }
        }
    }
    let policies: Vec<PolicyCtx> = gw
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| PolicyCtx {
            from: p.from.map(ip::net_str).unwrap_or_else(|| "all".into()),
            to: p.to.map(ip::net_str).unwrap_or_else(|| "all".into()),
            line: &p.line,
            table: match policy_table(gw, &p.line) {
                Some(t) => t.to_string(),
                None => p.line.clone(),
            },
            priority: base + PRIO_POLICY + i as u32,
        })
        .collect();
    let nexthops = nexthops(gw, &lines);
    // Policy tables (issue 11): one per line some policy names.
    let policy_tables: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| {
            let t = policy_table(gw, l.name)?;
            let used = gw.policies.iter().any(|p| p.line == l.name)
                || (gw.method == Method::Policy && !l.prefixes.is_empty());
            used.then(|| serde_json::json!({"table": t, "nhid": l.nhid, "name": l.name}))
        })
        .collect();
    let balanced = gw.lines.iter().filter(|l| l.default).count() > 1;
    let default_line = gw
        .default_line()
        .or(gw.lines.first())
        .map(|l| lines.iter().position(|c| c.name == l.name).unwrap_or(0))
        .unwrap_or(0);

    let mut ctx = tera::Context::new();
    ctx.insert(
        "gw",
        &serde_json::json!({
            "host": gw.host,
            "method": gw.method,
            "nat": gw.nat,
            "hairpin": gw.hairpin,
        }),
    );
    ctx.insert("proto", &crate::ROUTE_PROTO);
    ctx.insert("proto_name", crate::ROUTE_PROTO_NAME);
    // The owned chain names and jump comment come from ownership, not the template text.
    ctx.insert("chain", crate::ownership::CHAIN_PREFIX);
    ctx.insert("jump_comment", crate::ownership::JUMP_COMMENT);
    ctx.insert("mark_mask", &format!("{:#x}", gw.mark_mask));
    ctx.insert("nat_any", &lines.iter().any(|l| l.nat != "none"));
    ctx.insert("foreign_main_default", &gw.foreign_main_default);
    if let Some(d) = lines.get(default_line) {
        ctx.insert("default_line", d);
    }
    ctx.insert("lines", &lines);
    ctx.insert("lan", &lan);
    ctx.insert("forwards", &forwards);
    ctx.insert("hairpins", &hairpins);
    ctx.insert("policies", &policies);
    ctx.insert("nexthops", &nexthops);
    ctx.insert("policy_tables", &policy_tables);
    ctx.insert(
        "balanced_nhid",
        &balanced.then_some(crate::ownership::BALANCED_NEXTHOP_ID),
    );
    (ctx, warnings)
}

/// The table a policy naming `line` looks up when the line has a nexthop
/// object (see [`crate::ownership::POLICY_TABLE_BASE`]).
fn policy_table(gw: &Gateway, line: &str) -> Option<u32> {
    if !gw.uses_nexthops() {
        return None;
    }
    let i = gw.lines.iter().position(|l| l.name == line)?;
    Some(crate::ownership::POLICY_TABLE_BASE + i as u32)
}

/// The nexthop objects: one per line (its own gateway; the agent repoints
/// it), and the group of a balanced default, weighted.
fn nexthops(gw: &Gateway, lines: &[LineCtx]) -> Vec<NexthopCtx> {
    let any_default_up = gw.lines.iter().any(|l| l.default && l.up_now());
    let mut out: Vec<NexthopCtx> = lines
        .iter()
        .filter_map(|l| {
            Some(NexthopCtx {
                id: l.nhid?,
                hop: l.hop.clone(),
            })
        })
        .collect();
    let members: Vec<String> = gw
        .lines
        .iter()
        .zip(lines)
        // A line down now is out of the group, as the agent leaves it out.
        .filter(|(l, _)| l.default && (l.up_now() || !any_default_up))
        .filter_map(|(l, c)| {
            let id = c.nhid?;
            Some(match l.failover.weight {
                1 => id.to_string(),
                w => format!("{id},{w}"),
            })
        })
        .collect();
    if members.len() > 1 {
        out.push(NexthopCtx {
            id: crate::ownership::BALANCED_NEXTHOP_ID,
            hop: format!("group {}", members.join("/")),
        });
    }
    out
}

/// Render one gateway and parse the result into its desired state.
/// `facts` (when known) refine the plan: e.g. the kernel version decides
/// whether the route-cache flush unit is needed.
pub fn render(gw: &Gateway, templates: &Templates, facts: Option<&Facts>) -> Result<Rendered> {
    // Issue 14: dynamic addresses and next hops are the host's, now.
    let resolved = crate::model::resolve(gw, facts);
    let intent = gw;
    let gw = &resolved.gateway;
    let prefixes: usize = gw.lines.iter().map(|l| l.routes.len()).sum();
    limits::set_budget(
        limits::BASE_BUDGET.saturating_add(prefixes.saturating_mul(limits::BUDGET_PER_PREFIX)),
    );
    if let Some(f) = facts.filter(|f| gw.uses_nexthops() && !f.nexthops) {
        return Err(Error::Invalid {
            message: format!(
                "host {}: `health`, several default lines or a dynamic line need nexthop objects, which kernel {} lacks (`ip nexthop show` failed; they came in Linux 5.3)",
                gw.host,
                crate::escape::value(&f.kernel)
            ),
            hint: Some("remove `health`, keep one `default: true` line and give each line a fixed address and gateway for this host, or upgrade its kernel to 5.3 or later".into()),
        });
    }
    if gw.lines.len()
        >= (crate::ownership::BALANCED_NEXTHOP_ID - crate::ownership::NEXTHOP_ID_BAND.0) as usize
        && gw.uses_nexthops()
    {
        return Err(Error::Invalid {
            message: format!("host {}: too many lines for dwprov's nexthop ids", gw.host),
            hint: None,
        });
    }
    let (ctx, mut warnings) = context(gw);
    warnings.extend(resolved.warnings);
    let mut artefacts = BTreeMap::new();
    for (name, path) in FILE_TARGETS {
        let text = templates.render(name, &ctx)?;
        let text = if text.ends_with('\n') {
            text
        } else {
            text + "\n"
        };
        artefacts.insert(path.to_string(), text);
    }
    artefacts.insert("ip.batch".into(), templates.render("ip.batch", &ctx)?);
    // The inventory's firewall backend renders its own artefact.
    let fw = crate::firewall::Firewall::artefact(gw.firewall);
    let text = match gw.firewall {
        crate::firewall::Backend::Iptables => templates.render(fw, &ctx)?,
        // One owned table built from the intent (render/nftables.rs).
        crate::firewall::Backend::Nftables => nftables::artefact(gw),
    };
    artefacts.insert(fw.into(), text);
    // The context holds every prefix as JSON: free it before parsing and
    // the boot files, the peak of a big list.
    drop(ctx);
    release_freed_memory();
    let mut desired = parse_artefacts(&artefacts)?;

    // What restores this state at boot (src/boot.rs): owned files like the others.
    let boot = crate::boot::files(gw, &desired, &crate::boot::Platform::of(facts), templates)?;
    for (path, text) in boot.files {
        desired.files.insert(path.clone(), text.clone());
        artefacts.insert(path, text);
    }
    warnings.extend(boot.warnings);
    // The line-health agent's files (issue 11): owned files like the others.
    if let Some(mut cfg) = crate::model::agent_config(gw, Some(intent)) {
        // The follower renders on the gateway: with the overrides used here.
        if let Some(f) = cfg.follow.as_mut() {
            f.templates = templates.overrides().clone();
        }
        let systemd = crate::boot::Platform::of(facts).systemd;
        for (path, text) in crate::agent::deploy::files(&gw.host, &cfg, systemd)? {
            desired.files.insert(path.clone(), text.clone());
            artefacts.insert(path, text);
        }
    }
    // Only what dwprov owns may be applied: it is all a revert can undo.
    ownership::check(Some(gw), &artefacts, &desired, |name| {
        templates.source(name)
    })?;

    Ok(Rendered {
        host: gw.host.clone(),
        artefacts,
        desired,
        warnings,
        info: resolved.info,
    })
}

/// Give the pages of freed small allocations (the template context: a JSON
/// string a prefix) back to the system. glibc returns only the top of its
/// heap by itself, so the holes stayed resident under the big allocations
/// that follow (typed routes, the boot files): ~100 MB of 1.7 million routes.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the allocator's lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Parse rendered artefacts into the desired state: every artefact named by
/// an absolute path is a file; `ip.batch` and `iptables.rules` are parsed by
/// the same parsers as live state. Saved plans go through here too, and are
/// checked against ownership like a fresh render (a plan file is text
/// anyone can edit).
pub fn desired_from_artefacts(artefacts: &BTreeMap<String, String>) -> Result<State> {
    let desired = parse_artefacts(artefacts)?;
    ownership::check(None, artefacts, &desired, |_| None).map_err(|e| match e {
        Error::Template { name, message, .. } => Error::Invalid {
            message: format!(
                "the saved plan's {} output {message}",
                name.trim_end_matches(".tera")
            ),
            hint: Some("make the plan again with `dwprov plan -o FILE`".into()),
        },
        e => e,
    })?;
    Ok(desired)
}

fn parse_artefacts(artefacts: &BTreeMap<String, String>) -> Result<State> {
    let mut desired = State::default();
    for (name, text) in artefacts {
        if name.starts_with('/') {
            desired.files.insert(name.clone(), text.clone());
        }
    }
    if let Some(rt) = desired.files.get(crate::ownership::RT_TABLES_CONF) {
        desired.rt_tables = RtTables::parse(rt, "rt_tables.conf.tera output")?;
    }
    if let Some(sys) = desired.files.get(crate::ownership::SYSCTL_CONF) {
        desired.sysctls = parse_sysctl_conf(sys, "sysctl.conf.tera output")?;
    }
    if let Some(b) = artefacts.get("ip.batch") {
        let (mut nexthops, rest) = crate::state::nexthop::split_batch(b, "ip.batch.tera output")?;
        nexthops.sort();
        desired.nexthops = nexthops;
        let b = rest.as_deref().unwrap_or(b);
        let batch = ip::parse_batch(b, "ip.batch.tera output", &desired.rt_tables)?;
        desired.rules = batch.rules;
        desired.routes = batch.routes;
    }
    desired.firewall = crate::firewall::Firewall::desired(artefacts)?;
    Ok(desired)
}

/// `key = value` lines of a sysctl.d file (the sysctls kind's home has it).
pub use crate::sysctls::parse_conf as parse_sysctl_conf;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Forward, Lan, Line, NatMode, NextHop, Policy, Proto};

    /// A health check on `target`: every second, down after 3 lost, up after 5.
    pub(crate) fn health(target: &str) -> crate::model::Health {
        crate::model::Health {
            targets: vec![target.parse().unwrap()],
            interval_ms: 1000,
            timeout_ms: 1000,
            down: 3,
            up: 5,
            reliability: 1,
        }
    }

    /// The seed's topology as the lab builds it.
    pub(crate) fn seed(method: Method) -> Gateway {
        Gateway {
            host: "gw1".into(),
            method,
            firewall: Default::default(),
            lan: vec![Lan {
                interface: "eth0".into(),
                address: "192.168.0.1/24".parse().unwrap(),
            }],
            lines: vec![
                Line {
                    name: "ctc".into(),
                    table: 100,
                    mark: 0x100,
                    interface: "eth1".into(),
                    address: Some("198.51.100.2/24".parse().unwrap()),
                    gateway: Some("198.51.100.1".parse().unwrap()),
                    dynamic_address: false,
                    next_hop: NextHop::Fixed,
                    default: true,
                    routes: vec!["100.64.0.0/16".parse().unwrap()],
                    health: None,
                    failover: Default::default(),
                },
                Line {
                    name: "cnc".into(),
                    table: 200,
                    mark: 0x200,
                    interface: "eth2".into(),
                    address: Some("203.0.113.2/24".parse().unwrap()),
                    gateway: Some("203.0.113.1".parse().unwrap()),
                    dynamic_address: false,
                    next_hop: NextHop::Fixed,
                    default: false,
                    routes: vec![
                        "100.65.0.0/16".parse().unwrap(),
                        "100.64.0.0/16".parse().unwrap(),
                    ],
                    health: None,
                    failover: Default::default(),
                },
            ],
            nat: NatMode::Snat,
            forwards: vec![
                Forward {
                    proto: Proto::Tcp,
                    port: 80,
                    to: "192.168.0.100".parse().unwrap(),
                    to_port: None,
                    lines: vec!["ctc".into(), "cnc".into()],
                },
                Forward {
                    proto: Proto::Tcp,
                    port: 2222,
                    to: "192.168.0.100".parse().unwrap(),
                    to_port: Some(22),
                    lines: vec!["cnc".into()],
                },
            ],
            hairpin: true,
            policies: vec![Policy {
                from: Some("192.168.0.50/32".parse().unwrap()),
                to: None,
                line: "cnc".into(),
            }],
            rule_priority: 1000,
            mark_mask: 0xff00,
            route_cache_flush: None,
            foreign_main_default: false,
        }
    }

    fn rendered(method: Method) -> Rendered {
        render(&seed(method), &Templates::load(None).unwrap(), None).unwrap()
    }

    #[test]
    fn snapshot_static() {
        insta::assert_snapshot!(artefacts_text(&rendered(Method::Static)));
    }

    #[test]
    fn snapshot_policy() {
        insta::assert_snapshot!(artefacts_text(&rendered(Method::Policy)));
    }

    /// The seed's CNC line as `address: dynamic, gateway: dynamic`, with
    /// no facts resolved yet.
    fn dynamic_cnc(gw: &mut Gateway) -> &mut crate::model::Line {
        let cnc = &mut gw.lines[1];
        (cnc.address, cnc.gateway) = (None, None);
        cnc.dynamic_address = true;
        cnc.next_hop = NextHop::Dynamic;
        cnc
    }

    /// Issue 14: a dynamic CNC line renders with the facts' address and
    /// next hop, MASQUERADEd; without them it is down, on CTC.
    #[test]
    fn dynamic_line_takes_the_facts() {
        let mut gw = seed(Method::Static);
        dynamic_cnc(&mut gw);
        let mut facts = crate::gather::Facts {
            nexthops: true,
            ..crate::gather::Facts::default()
        };
        facts.interfaces.push(crate::facts::Interface {
            name: "eth2".into(),
            up: true,
            addresses: vec!["203.0.113.77/24".parse().unwrap()],
        });
        facts.state.routes.push(ip::Route {
            via: Some("203.0.113.1".parse().unwrap()),
            dev: Some("eth2".into()),
            proto: 16,
            metric: 1024,
            ..ip::Route::default()
        });
        let t = Templates::load(None).unwrap();
        let r = render(&gw, &t, Some(&facts)).unwrap();
        let batch = &r.artefacts["ip.batch"];
        assert!(
            batch.contains("route add default via 203.0.113.1 dev eth2 src 203.0.113.77 table cnc"),
            "{batch}"
        );
        assert!(batch.contains("from 203.0.113.77 lookup cnc"), "{batch}");
        // Routes go by the line's nexthop, so a lease lost or found moves the
        // whole list by one object.
        assert!(
            batch.contains("nexthop add id 20002 via 203.0.113.1 dev eth2")
                && batch.contains("route add 100.65.0.0/16 nhid 20002"),
            "{batch}"
        );
        let ipt = &r.artefacts["iptables.rules"];
        assert!(
            ipt.contains("-o eth2 -j MASQUERADE")
                && ipt.contains("-o eth1 -j SNAT --to-source 198.51.100.2"),
            "{ipt}"
        );
        assert!(ipt.contains("-d 203.0.113.77/32 -p tcp"), "{ipt}");
        assert!(
            r.info.iter().any(|i| i.contains("address 203.0.113.77/24")),
            "{:?}",
            r.info
        );
        // The lease lost: down, its prefixes on ctc, nothing names an address.
        facts.interfaces[0].addresses.clear();
        facts.state.routes.clear();
        let r = render(&gw, &t, Some(&facts)).unwrap();
        let batch = &r.artefacts["ip.batch"];
        assert!(
            batch.contains("nexthop add id 20002 via 198.51.100.1 dev eth1")
                && batch.contains("route add 100.65.0.0/16 nhid 20002"),
            "{batch}"
        );
        assert!(
            !batch.contains("table cnc proto 201\n")
                && !batch.contains("lookup cnc protocol 201\nrule add priority 1201"),
            "{batch}"
        );
        assert!(!batch.contains("eth2 src"), "{batch}");
        assert!(
            r.info
                .iter()
                .any(|i| i == "line cnc is down: its traffic goes on line ctc"),
            "{:?}",
            r.info
        );
        let ipt = &r.artefacts["iptables.rules"];
        assert!(
            ipt.contains("-o eth2 -j MASQUERADE") && !ipt.contains("203.0.113."),
            "{ipt}"
        );
    }

    /// Issue 14: a watched dynamic line down now: its nexthop object points
    /// at its carrier, as the agent's failover does, and the agent's config
    /// gives it the carrier's path (so the agent keeps it there).
    #[test]
    fn a_down_dynamic_line_is_failed_over_by_its_nexthop() {
        let mut gw = seed(Method::Fwmark);
        let cnc = dynamic_cnc(&mut gw);
        cnc.health = Some(health("100.65.1.10"));
        cnc.failover.fallback = vec!["ctc".into()];
        // Facts of a host with nexthop objects, where eth2 has no address.
        let facts = crate::gather::Facts {
            nexthops: true,
            ..Default::default()
        };
        let r = render(&gw, &Templates::load(None).unwrap(), Some(&facts)).unwrap();
        let batch = &r.artefacts["ip.batch"];
        assert!(
            batch.contains("nexthop add id 20002 via 198.51.100.1 dev eth1 proto 201"),
            "{batch}"
        );
        assert!(
            batch.contains("route add 100.65.0.0/16 nhid 20002"),
            "{batch}"
        );
        let cfg =
            crate::model::agent_config(&crate::model::resolve(&gw, None).gateway, None).unwrap();
        let c = &cfg.lines[1];
        assert_eq!(
            (c.interface.as_str(), c.gateway.to_string()),
            ("eth1", "198.51.100.1".into())
        );
    }

    /// Issue 14: a point-to-point line: `dev IF` routes, no via.
    #[test]
    fn point_to_point_line_routes_dev() {
        let mut gw = seed(Method::Static);
        let cnc = &mut gw.lines[1];
        cnc.interface = "ppp0".into();
        cnc.address = Some("10.64.0.2/32".parse().unwrap());
        cnc.gateway = None;
        cnc.next_hop = NextHop::None;
        let r = render(&gw, &Templates::load(None).unwrap(), None).unwrap();
        let batch = &r.artefacts["ip.batch"];
        assert!(
            batch.contains("route add default dev ppp0 src 10.64.0.2 table cnc"),
            "{batch}"
        );
        assert!(
            batch.contains("route add 100.65.0.0/16 dev ppp0 proto 201"),
            "{batch}"
        );
        assert!(r
            .desired
            .routes
            .iter()
            .any(|r| r.dst.to_string() == "100.65.0.0/16"
                && r.via.is_none()
                && r.dev.as_deref() == Some("ppp0")));
    }

    /// Issue 11: health on CNC and a balanced default: nexthop objects, the
    /// traffic routes by `nhid`, the line tables literal, policies through
    /// a policy table, the L4 multipath hash.
    #[test]
    fn nexthops_carry_the_lines_traffic() {
        let mut gw = seed(Method::Fwmark);
        gw.lines[1].health = Some(health("100.65.1.10"));
        gw.lines[1].default = true;
        gw.lines[0].failover.weight = 2;
        let r = render(&gw, &Templates::load(None).unwrap(), None).unwrap();
        let batch = &r.artefacts["ip.batch"];
        assert!(
            batch.contains("nexthop add id 20001 via 198.51.100.1 dev eth1 proto 201"),
            "{batch}"
        );
        assert!(batch.contains("nexthop add id 20999 group 20001,2/20002 proto 201"));
        assert!(batch.contains("route add default nhid 20999 proto 201"));
        assert!(batch.contains("route add 100.65.0.0/16 nhid 20002 proto 201"));
        assert!(
            batch.contains("route add default via 203.0.113.1 dev eth2 src 203.0.113.2 table cnc")
        );
        assert_eq!(r.desired.nexthops.len(), 3);
        let nhid: Vec<_> = r
            .desired
            .routes
            .iter()
            .filter(|r| r.nhid.is_some())
            .collect();
        assert!(nhid.iter().all(|r| r.via.is_none() && r.dev.is_none()));
        assert_eq!(
            r.desired
                .sysctls
                .get("net/ipv4/fib_multipath_hash_policy")
                .map(String::as_str),
            Some("1"),
            "{:?}",
            r.desired.sysctls
        );
        // Boot restores the objects before the routes using them.
        let boot = &r.desired.files[crate::boot::IP_BATCH];
        let first_nh = boot.find("nexthop replace id 20001").unwrap();
        assert!(first_nh < boot.find("route replace").unwrap(), "{boot}");
        // The kernel without nexthop objects: refused, saying why.
        let facts = crate::gather::Facts {
            kernel: "4.19.0".into(),
            ..Default::default()
        };
        let e = render(&gw, &Templates::load(None).unwrap(), Some(&facts)).unwrap_err();
        assert!(e.to_string().contains("5.3"), "{e}");
    }

    #[test]
    fn snapshot_fwmark() {
        insta::assert_snapshot!(artefacts_text(&rendered(Method::Fwmark)));
    }

    /// Issue 13: a forwarded packet of an established connection walks one
    /// mangle rule (the restore, no conntrack match); connections are marked
    /// in nat, which only a connection's first packet walks.
    #[test]
    fn fwmark_marks_in_nat_and_restores_with_one_rule() {
        let ipt = rendered(Method::Fwmark).desired.firewall.iptables;
        let mangle = &ipt.tables["mangle"];
        assert!(!mangle.chains.contains_key("POSTROUTING"));
        assert!(!mangle.chains.contains_key("DWPROV-POSTROUTING"));
        let pre = &mangle.chains["DWPROV-PREROUTING"].rules;
        assert_eq!(pre.len(), 1, "one LAN, one rule: {pre:?}");
        assert_eq!(pre[0].in_interface.as_ref().unwrap().value, "eth0");
        assert!(pre[0].matches.is_empty(), "{:?}", pre[0].matches);
        assert_eq!(pre[0].target(), Some("CONNMARK"));
        let sets = |chain: &str| {
            ipt.chain("nat", chain)
                .unwrap()
                .rules
                .iter()
                .filter(|r| r.target() == Some("CONNMARK"))
                .count()
        };
        assert_eq!(
            (sets("DWPROV-PREROUTING"), sets("DWPROV-POSTROUTING")),
            (2, 2)
        );
        // The marks come before the NAT rules that end the chain.
        let post = &ipt.chain("nat", "DWPROV-POSTROUTING").unwrap().rules;
        assert!(post[..2].iter().all(|r| r.target() == Some("CONNMARK")));
    }

    fn artefacts_text(r: &Rendered) -> String {
        let mut s = String::new();
        // Boot files have their own snapshots (src/boot.rs).
        let boot = crate::boot::files(
            &seed(Method::Static),
            &r.desired,
            &crate::boot::Platform::of(None),
            &Templates::load(None).unwrap(),
        )
        .unwrap();
        for (k, v) in r
            .artefacts
            .iter()
            .filter(|(k, _)| !boot.files.contains_key(*k))
        {
            s.push_str(&format!("==> {k}\n{v}\n"));
        }
        for w in &r.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }

    /// The seed's method 2 adds the LAN route to table ctc twice and never to
    /// cnc (a typo that breaks hairpin on cnc): every line table must get it.
    #[test]
    fn every_line_table_has_the_lan_route_for_every_method() {
        for m in [Method::Static, Method::Policy, Method::Fwmark] {
            let r = rendered(m);
            for table in [100, 200] {
                let lan: Vec<_> = r
                    .desired
                    .routes
                    .iter()
                    .filter(|rt| rt.table == table && rt.dst == "192.168.0.0/24".parse().unwrap())
                    .collect();
                assert_eq!(lan.len(), 1, "{m:?}: table {table} LAN routes {lan:?}");
                assert_eq!(lan[0].dev.as_deref(), Some("eth0"));
                assert_eq!(lan[0].src, Some("192.168.0.1".parse().unwrap()));
            }
        }
    }

    #[test]
    fn a_prefix_in_two_lists_goes_via_the_first_line_only() {
        let r = rendered(Method::Static);
        let via: Vec<_> = r
            .desired
            .routes
            .iter()
            .filter(|rt| rt.table == 254 && rt.dst == "100.64.0.0/16".parse().unwrap())
            .collect();
        assert_eq!(via.len(), 1);
        assert_eq!(via[0].dev.as_deref(), Some("eth1"));
        assert!(r.warnings.iter().any(|w| w.contains("earlier line")));
    }

    #[test]
    fn methods_differ_as_documented() {
        let s = rendered(Method::Static).desired;
        let p = rendered(Method::Policy).desired;
        let f = rendered(Method::Fwmark).desired;
        let has_to_rules = |st: &State| st.rules.iter().any(|r| r.to.is_some());
        let has_fwmark = |st: &State| st.rules.iter().any(|r| r.fwmark.is_some());
        assert!(!has_to_rules(&s) && has_to_rules(&p) && !has_to_rules(&f));
        assert!(!has_fwmark(&s) && !has_fwmark(&p) && has_fwmark(&f));
        // source-return rules in every method
        for st in [&s, &p, &f] {
            assert!(st
                .rules
                .iter()
                .any(|r| r.from == Some("203.0.113.2/32".parse().unwrap())));
            assert!(st.rules.iter().all(|r| r.proto == crate::ROUTE_PROTO));
            assert!(st.routes.iter().all(|r| r.proto == crate::ROUTE_PROTO));
        }
        assert_eq!(s.sysctls["net/ipv4/conf/eth2/rp_filter"], "2");
        assert_eq!(s.rt_tables.id_of("cnc"), Some(200));
    }

    #[test]
    fn a_saved_plan_holding_foreign_state_is_refused() {
        let r = rendered(Method::Static);
        desired_from_artefacts(&r.artefacts).unwrap();
        let mut a = r.artefacts.clone();
        a.get_mut("ip.batch")
            .unwrap()
            .push_str("\nrule add priority 5 from all lookup main\n");
        let e = desired_from_artefacts(&a).unwrap_err().to_string();
        assert!(
            e.contains("the saved plan's ip.batch output renders `rule add priority 5 from all lookup main`: a rule without `protocol dwprov`"),
            "{e}"
        );
        let mut a = r.artefacts.clone();
        a.get_mut("/etc/iproute2/rt_tables.d/dwprov.conf")
            .unwrap()
            .push_str("254 mine\n");
        assert!(desired_from_artefacts(&a).is_err());
    }

    #[test]
    fn a_broken_override_template_names_itself_and_its_line() {
        let dir = std::env::temp_dir().join(format!("dwprov-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ip.batch.tera"), "# ok\n{% for x in %}\n").unwrap();
        let err = Templates::load(Some(&dir)).err().unwrap().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("ip.batch.tera"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_render_time_error_names_the_template_and_the_line() {
        let dir = std::env::temp_dir().join(format!("dwprov-tpl-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("iptables.rules.tera"),
            "# ok\n# still ok\n{{ gw.no_such_thing }}\n",
        )
        .unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let err = render(&seed(Method::Fwmark), &t, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("iptables.rules.tera line 3"), "{err}");
    }
}
