//! `dwprov check`: what would go wrong, before anything changes.
//!
//! Findings with a severity, the inventory location the value came from,
//! why it matters and the fix. Offline ([`faq`]): the seed's FAQ traced on
//! the desired state (cross access with methods static/policy, a forward
//! without hairpin NAT while LAN clients exist), method policy with many
//! prefixes, a forward of the SSH port. With the live facts ([`live`]): the
//! kernel's route cache, the management path (the controller's address as
//! the gateway sees it, traced on the state after the apply), clashes with
//! foreign state (rules in dwprov's band, marks on its bits, routes in its
//! tables, rt_tables names and ids, a foreign DNAT before its jump, a
//! forward capturing sshd), a later sysctl file setting strict rp_filter,
//! systemd-networkd managing foreign rules and routes.
use crate::error::{exit, Location, Result};
use crate::inventory::Host;
use crate::model::Gateway;
use crate::render::{Rendered, Templates};
use crate::transport::ConnectOptions;
use console::Style;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

pub mod assert;
pub mod faq;
pub mod live;
pub mod locate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Exit 1: the apply would break something.
    Error,
    /// Exit 1 with `--strict`: a hazard worth knowing.
    Warning,
    /// Said, never fails.
    Info,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One thing `check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name of the hazard (`cross-access`, `management-path`, ...).
    pub code: &'static str,
    /// Where the value came from in the inventory (None: the gateway's own state).
    #[serde(serialize_with = "ser_location")]
    pub location: Option<Location>,
    pub message: String,
    pub why: String,
    pub fix: String,
}

/// A location as `file:line:col`.
pub(crate) fn ser_location_plain<S: serde::Serializer>(
    l: &Location,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(l)
}

fn ser_location<S: serde::Serializer>(
    l: &Option<Location>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match l {
        Some(l) => s.collect_str(l),
        None => s.serialize_none(),
    }
}

impl Finding {
    pub fn new(
        severity: Severity,
        code: &'static str,
        location: Option<Location>,
        message: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            code,
            location,
            message: message.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }
}

/// What `check` was asked.
pub struct Request<'a> {
    pub inventory: &'a Path,
    pub limit: Option<&'a str>,
    pub templates: Option<&'a Path>,
    /// No connection: the offline checks only.
    pub offline: bool,
    /// Warnings fail too.
    pub strict: bool,
    pub json: bool,
    pub connect: ConnectOptions,
    pub forks: usize,
}

/// One host's findings, or why it could not be checked.
#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The tracer's worlds of one host's checks, each built once and shared:
/// building one translates the whole firewall (O(size): an nftables set
/// is a rule per element), and the checks used to build seven.
struct Worlds {
    desired: crate::trace::World,
    /// With the live facts: the gateway now, and after the apply.
    live: Option<crate::trace::World>,
    after: Option<crate::trace::World>,
}

impl Worlds {
    fn of(gw: &Gateway, rendered: &Rendered, facts: Option<&live::LiveFacts>) -> Worlds {
        let desired = crate::trace::World::desired(gw, &rendered.desired);
        let live = facts.map(|f| crate::trace::World::live(Some(gw), &f.facts));
        let after = live
            .as_ref()
            .map(|l| crate::trace::World::after_apply_of(l, &desired, &rendered.desired));
        Worlds {
            desired,
            live,
            after,
        }
    }
}

/// Every check of one host: the offline ones, and the live ones when its
/// facts were gathered.
pub fn check_host(
    host: &Host,
    gw: &Gateway,
    rendered: &Rendered,
    facts: Option<&live::LiveFacts>,
) -> Vec<Finding> {
    // Dynamic lines are judged on their address and next hop now (issue 14).
    let resolved = crate::model::resolve(gw, facts.map(|f| &f.facts)).gateway;
    let gw = &resolved;
    // Hand-made duplicates of dwprov's objects are not foreign hazards:
    // `apply --adopt` takes them over (and without it the apply refuses
    // them), so the checks judge the live state without them.
    let taken_over = facts.map(|f| {
        let mut objects = crate::takeover::hand_made(&rendered.desired, &f.facts.state);
        // A DHCP client's default route stays (issue 14): not one of them.
        let clients = crate::model::dynamic_client_defaults(gw, &f.facts.state.routes);
        objects.retain(|h| match h {
            crate::takeover::HandMade::Route { route } => !clients.contains(&route),
            _ => true,
        });
        let mut f = f.clone();
        f.facts.state = crate::takeover::after_take_over(&f.facts.state, &objects);
        (f, objects.len())
    });
    let facts = taken_over.as_ref().map(|(f, _)| f);
    let worlds = Worlds::of(gw, rendered, facts);
    let mut out = faq::findings_in(host, gw, facts, &worlds.desired);
    if let Some((_, n)) = taken_over.as_ref().filter(|(_, n)| *n > 0) {
        out.push(Finding::new(
            Severity::Warning,
            "hand-made",
            Some(host.location.clone()),
            format!("{n} hand-made objects duplicate dwprov's (`dwprov plan` lists them)"),
            "a gateway configured by hand: a second SNAT, DNAT, rule or route doing the same would be installed beside them",
            "`dwprov apply --adopt` takes them over in the same commit-confirmed apply (its revert puts them back)",
        ));
    }
    // Assertions on what the gateway will be: the desired state, over the
    // live foreign state when it is known.
    out.extend(assert::findings(
        host,
        gw,
        worlds.after.as_ref().unwrap_or(&worlds.desired),
    ));
    if let (Some(f), Some(now), Some(after)) = (facts, &worlds.live, &worlds.after) {
        out.extend(live::findings_in(host, gw, f, now, after));
    }
    out.sort_by_key(|f| f.severity);
    out
}

fn check_one(
    host: &Host,
    gw: &Gateway,
    templates: &Templates,
    req: &Request,
) -> Result<Vec<Finding>> {
    if req.offline {
        let r = crate::render::render(gw, templates, None)?;
        return Ok(check_host(host, gw, &r, None));
    }
    let mut t = crate::transport::connect(&host.connection, &host.name, &req.connect)?;
    let facts = live::gather(t.as_mut())?;
    let r = crate::render::render(gw, templates, Some(&facts.facts))?;
    Ok(check_host(host, gw, &r, Some(&facts)))
}

/// `check` as plan and apply run it ([`crate::fleet::Checks`]): before
/// anything changes, every check on the planned host (the live ones over
/// the plan's connection), refusing on an error finding unless `force`;
/// after the apply, the flow assertions on the applied state.
pub struct Gate {
    pub force: bool,
}

impl crate::fleet::Checks for Gate {
    fn gather_script(&self) -> &str {
        live::CHECK_SH
    }

    fn before(
        &self,
        host: &Host,
        gw: &Gateway,
        plan: &crate::fleet::HostPlan,
        t: &mut dyn crate::transport::Transport,
    ) -> Result<Vec<String>> {
        let facts = match &plan.check_output {
            Some((m, out)) => live::from_output(plan.facts.clone(), out, m)?,
            None => live::with_check_facts(t, plan.facts.clone())?,
        };
        let (errors, warnings): (Vec<Finding>, Vec<Finding>) =
            check_host(host, gw, &plan.rendered, Some(&facts))
                .into_iter()
                .partition(|f| f.severity == Severity::Error);
        let one_line = |f: &Finding| {
            let at = f
                .location
                .as_ref()
                .map(|l| format!("{l}: "))
                .unwrap_or_default();
            format!("{at}{} [{}]\n    fix: {}", f.message, f.code, f.fix)
        };
        // Warnings go into the plan's own list: `plan` shows them, they refuse nothing.
        let warnings: Vec<String> = warnings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .map(|f| format!("check: {}", one_line(f)))
            .collect();
        if errors.is_empty() {
            return Ok(warnings);
        }
        let list = errors
            .iter()
            .map(one_line)
            .collect::<Vec<_>>()
            .join("\n  - ");
        if self.force {
            eprintln!(
                "{} {}: --force: going on despite {} error(s) of `dwprov check`:\n  - {list}",
                console::style("WARNING").red().bold(),
                host.name,
                errors.len()
            );
            return Ok(warnings);
        }
        Err(crate::error::Error::Invalid {
            message: format!(
                "{}: refusing: `dwprov check` found {} error(s); nothing was changed:\n  - {list}",
                host.name,
                errors.len()
            ),
            hint: Some(
                "fix them (`dwprov check -i INV` says why), or override with --force".into(),
            ),
        })
    }

    fn after_apply(
        &self,
        host: &Host,
        facts: Option<&crate::facts::Facts>,
        t: &mut dyn crate::transport::Transport,
    ) -> Result<()> {
        assert::after_apply(host, facts, t)
    }
}

/// Run `check`: exit 1 on an error finding (with `strict`, a warning) or
/// a host that could not be checked, 0 otherwise.
pub fn run(req: &Request) -> Result<i32> {
    let (_, hosts) = crate::inventory::select::select(req.inventory, req.limit)?;
    let hosts = crate::inventory::select::gateways_only(hosts, false)?;
    let gws = crate::model::build_all(&hosts)?;
    let templates = Templates::load(req.templates)?;
    let pairs: Vec<(&Host, &Gateway)> = hosts.iter().zip(&gws).collect();
    let results = crate::fleet::parallel(&pairs, req.forks, |(h, gw)| {
        check_one(h, gw, &templates, req)
    });
    let reports: Vec<HostReport> = gws
        .iter()
        .zip(results)
        .map(|(gw, r)| match r {
            Ok(findings) => HostReport {
                host: gw.host.clone(),
                findings,
                error: None,
            },
            Err(e) => HostReport {
                host: gw.host.clone(),
                findings: Vec::new(),
                error: Some(e.to_string()),
            },
        })
        .collect();
    if req.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "format_version": 1, "offline": req.offline, "hosts": reports,
            }))
            .unwrap_or_default()
        );
    } else {
        for r in &reports {
            print!("{}", text(r));
        }
    }
    let fails = |f: &Finding| {
        f.severity == Severity::Error || (req.strict && f.severity == Severity::Warning)
    };
    let failed = reports
        .iter()
        .any(|r| r.error.is_some() || r.findings.iter().any(fails));
    Ok(if failed { exit::ERROR } else { exit::OK })
}

/// One host's findings as text: `host: severity[code] file:line:col: message`,
/// then why and the fix, then a count.
pub fn text(r: &HostReport) -> String {
    let mut s = String::new();
    let host = Style::new().bold().apply_to(&r.host);
    if let Some(e) = &r.error {
        let _ = writeln!(
            s,
            "{host}: {} {e}",
            Style::new().red().bold().apply_to("error:")
        );
        return s;
    }
    for f in &r.findings {
        let style = match f.severity {
            Severity::Error => Style::new().red().bold(),
            Severity::Warning => Style::new().yellow().bold(),
            Severity::Info => Style::new().dim(),
        };
        let at = f
            .location
            .as_ref()
            .map(|l| format!(" {l}:"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{host}: {}{at} {}",
            style.apply_to(format!("{}[{}]", f.severity.label(), f.code)),
            f.message
        );
        let _ = writeln!(s, "  why: {}", f.why);
        let _ = writeln!(s, "  fix: {}", f.fix);
    }
    let count = |sev| r.findings.iter().filter(|f| f.severity == sev).count();
    let (e, w) = (count(Severity::Error), count(Severity::Warning));
    let summary = format!("{e} error(s), {w} warning(s)");
    let _ = writeln!(
        s,
        "{host}: {}",
        if e > 0 {
            Style::new().red().bold().apply_to(summary)
        } else if w > 0 {
            Style::new().yellow().apply_to(summary)
        } else {
            Style::new().green().apply_to(format!("clean ({summary})"))
        }
    );
    s
}
