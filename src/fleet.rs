//! Per-host pipeline (connect → gather → render → diff → apply → verify) and
//! running it over many hosts at once. Each host is independent: its
//! failure is its own outcome and never touches another host.
use crate::converge::{self, ApplyScript};
use crate::diff::{self, HostDiff, Summary, View};
use crate::error::{Error, Result};
use crate::facts::Facts;
use crate::gather;
use crate::inventory::Host;
use crate::model::Gateway;
use crate::render::{self, Rendered, Templates};
use crate::transport::{self, ConnectOptions, Transport};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub mod json;
pub mod rollout;

/// Where a host is in the pipeline (for progress and error grouping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Connect,
    Gather,
    Render,
    Diff,
    Apply,
    Verify,
    Done,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Gather => "gather",
            Stage::Render => "render",
            Stage::Diff => "diff",
            Stage::Apply => "apply",
            Stage::Verify => "verify",
            Stage::Done => "done",
        })
    }
}

/// Receives stage changes; implemented by the CLI's progress display.
pub trait Progress: Sync {
    fn stage(&self, host: &str, stage: Stage);
    fn finished(&self, host: &str, ok: bool);
}

/// Checks around each host's change, implemented by `check` (above this
/// module): before anything changes, and after the apply, before it is
/// confirmed (an error there reverts it).
pub trait Checks: Sync {
    /// Shell run after the gather in its round trip (its output ends up
    /// in [`HostPlan::check_output`]).
    fn gather_script(&self) -> &str;
    /// Err refuses the host before any change; Ok gives the warnings the
    /// plan shows with its own.
    fn before(
        &self,
        host: &Host,
        gw: &Gateway,
        plan: &HostPlan,
        t: &mut dyn Transport,
    ) -> Result<Vec<String>>;
    /// After the changes, over `t`: `facts` the live facts when the
    /// verify gathered them (else the check gathers what it needs).
    fn after_apply(&self, host: &Host, facts: Option<&Facts>, t: &mut dyn Transport) -> Result<()>;
}

/// A progress sink that shows nothing.
pub struct Silent;
impl Progress for Silent {
    fn stage(&self, _: &str, _: Stage) {}
    fn finished(&self, _: &str, _: bool) {}
}

/// The plan for one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub summary: Summary,
    pub diff: HostDiff,
    pub warnings: Vec<String>,
    /// Digest of the gathered facts the plan was computed from.
    pub facts_digest: String,
    #[serde(skip)]
    pub views: Vec<View>,
    #[serde(skip)]
    pub rendered: Rendered,
    #[serde(skip)]
    pub facts: Facts,
    /// The marker and output of the gather with [`Checks::gather_script`].
    #[serde(skip)]
    pub check_output: Option<(String, String)>,
    /// Every pending change follows a dynamic line's new address or next
    /// hop (issue 14): `plan` reports them and exits 0, `apply` makes them.
    pub follows: bool,
}

/// How one host ended.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub host: String,
    pub plan: Option<HostPlan>,
    /// Set when changes were applied (and verified).
    pub applied: Option<ApplyStats>,
    #[serde(serialize_with = "ser_error")]
    pub error: Option<Error>,
    pub failed_stage: Option<Stage>,
    /// Not attempted: an earlier batch failed beyond --max-fail-percent.
    pub skipped: bool,
}

fn ser_error<S: serde::Serializer>(
    e: &Option<Error>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match e {
        None => s.serialize_none(),
        Some(e) => {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("class", &e.class())?;
            m.serialize_entry("message", &e.to_string())?;
            m.end()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyStats {
    pub changes: usize,
    pub ip_lines: usize,
    pub iptables_lines: usize,
    pub script_bytes: usize,
    pub remote_commands: usize,
    pub round_trips: usize,
    /// The snapshot taken before the change (commit-confirmed apply).
    pub snapshot: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
    pub fn changed(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| {
            !p.summary.is_empty() || crate::takeover::blocks_apply(&p.diff.hand_made)
        })
    }
    /// Changed, and not only by following dynamic lines' facts: what makes
    /// `plan` exit 2.
    pub fn drifted(&self) -> bool {
        self.changed() && !self.plan.as_ref().is_some_and(|p| p.follows)
    }
}

/// Options shared by every host of a run.
pub struct RunOptions<'a> {
    pub templates: &'a Templates,
    pub connect: ConnectOptions,
    pub forks: usize,
    pub progress: &'a dyn Progress,
    pub safety: Safety,
    /// `apply --adopt`: take over the hand-made duplicates (src/takeover.rs).
    pub adopt: bool,
    pub checks: Option<&'a dyn Checks>,
}

/// Checks of intent against facts that must pass before anything changes.
pub fn preflight(gw: &Gateway, facts: &Facts) -> Result<()> {
    let mut problems = Vec::new();
    if facts.uid != Some(0) {
        problems.push(format!(
            "commands run as uid {} instead of root (use user root or passwordless sudo)",
            facts
                .uid
                .map(|u| u.to_string())
                .unwrap_or_else(|| "?".into())
        ));
    }
    // The inventory's firewall backend's tools (the other backend's owned
    // objects, if any, are removed with the tools that made them: both are
    // gathered when present).
    let (tools, package): (&[&str], &str) = match gw.firewall {
        crate::firewall::Backend::Iptables => {
            (&["ip", "iptables-save", "iptables-restore"], "iptables")
        }
        crate::firewall::Backend::Nftables => (&["ip", "nft"], "nftables"),
    };
    for tool in tools {
        if !facts.has_tool(tool) {
            problems.push(format!(
                "`{tool}` is not installed (Debian: apt-get install iproute2 {package})"
            ));
        }
    }
    let mut check = |what: String, iface: &str, addr: ipnet::IpNet| {
        match facts.interface(iface) {
        None => problems.push(format!("{what}: interface {iface} does not exist on the host")),
        Some(i) if !i.addresses.contains(&addr) => problems.push(format!(
            "{what}: {addr} is not configured on {iface} (it has {}); dwprov routes over addresses the host already has",
            if i.addresses.is_empty() {
                "no IPv4 address".to_string()
            } else {
                i.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            }
        )),
        Some(_) => {}
    }
    };
    for l in &gw.lan {
        check("lan".into(), &l.interface, l.address);
    }
    for l in &gw.lines {
        // A dynamic address is the interface's, whatever it is now.
        if let (false, Some(a)) = (l.dynamic_address, l.address) {
            check(format!("line {}", l.name), &l.interface, a);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            message: format!(
                "{}: not ready for dwprov:\n  - {}",
                facts.host,
                problems.join("\n  - ")
            ),
            hint: Some("fix the host (or the inventory) and run again; nothing was changed".into()),
        })
    }
}

/// Gather, render and diff one host over an open connection.
pub fn plan_host(
    gw: &Gateway,
    t: &mut dyn Transport,
    templates: &Templates,
    progress: &dyn Progress,
    checks: Option<&dyn Checks>,
) -> Result<HostPlan> {
    progress.stage(&gw.host, Stage::Gather);
    let (facts, check_output) = match checks {
        Some(c) => {
            let (f, m, out) = gather::gather_also(t, c.gather_script())?;
            (f, Some((m, out)))
        }
        None => (gather::gather(t)?, None),
    };
    progress.stage(&gw.host, Stage::Render);
    let t0 = std::time::Instant::now();
    let rendered = render::render(gw, templates, Some(&facts))?;
    gather::phase("render", t0);
    preflight(gw, &facts)?;
    progress.stage(&gw.host, Stage::Diff);
    let t0 = std::time::Instant::now();
    let mut diff = diff::HostDiff::planned(&rendered.desired, &facts.state);
    keep_client_defaults(gw, &facts, &mut diff);
    // The agent's view of the lines, as information (issue 11).
    diff.dynamic.splice(0..0, facts.agent.plan_lines());
    // What the facts made of dynamic lines (issue 14): not drift.
    diff.dynamic.extend(rendered.info.iter().cloned());
    let follows = follows_facts(gw, templates, &facts, &diff)?;
    if follows {
        diff.dynamic.push(format!(
            "{} change(s) follow the dynamic lines' address or next hop (the host was converged for the ones before): \
             not drift, `apply` makes them",
            diff.changes.len()
        ));
    }
    let views = diff::planned_views(&diff, &rendered.desired, &facts.state);
    gather::phase("diff and views", t0);
    let t0 = std::time::Instant::now();
    let facts_digest = gather::plan_digest(&facts, &rendered.desired);
    gather::phase("plan digest", t0);
    let mut warnings = facts.warnings.clone();
    warnings.extend(rendered.warnings.iter().cloned());
    Ok(HostPlan {
        host: gw.host.clone(),
        summary: Summary::of(&diff.changes),
        diff,
        warnings,
        facts_digest,
        views,
        rendered,
        facts,
        check_output,
        follows,
    })
}

/// The DHCP client's default routes of `gateway: dynamic` lines are
/// foreign and stay (issue 14, docs/lines.md): never a hand-made duplicate
/// of dwprov's default route for `apply --adopt` to take over.
fn keep_client_defaults(gw: &Gateway, facts: &Facts, diff: &mut diff::HostDiff) {
    let clients = crate::model::dynamic_client_defaults(gw, &facts.state.routes);
    diff.hand_made.retain(|h| match h {
        crate::takeover::HandMade::Route { route } => !clients.contains(&route),
        _ => true,
    });
}

/// Whether every pending change of `diff` is the host following its
/// dynamic lines' facts (issue 14): against the facts the live owned state
/// was rendered from ([`previous_facts`]) nothing
/// would change. Then `plan` exits 0: a redial is not drift.
fn follows_facts(
    gw: &Gateway,
    templates: &Templates,
    facts: &Facts,
    diff: &diff::HostDiff,
) -> Result<bool> {
    let dynamic = gw
        .lines
        .iter()
        .any(|l| l.dynamic_address || l.next_hop == crate::model::NextHop::Dynamic);
    if !dynamic || diff.changes.is_empty() || !diff.conflicts.is_empty() {
        return Ok(false);
    }
    let old = previous_facts(gw, facts);
    let before = render::render(gw, templates, Some(&old))?;
    let d = diff::HostDiff::planned(&before.desired, &facts.state);
    // The kernel drops the routes and nexthops of an address or next hop
    // that went away (a redial, a new lease): owned objects on a dynamic
    // line missing is the redial, not drift.
    let dynamic_ifaces: Vec<&str> = gw
        .lines
        .iter()
        .filter(|l| l.dynamic_address || l.next_hop == crate::model::NextHop::Dynamic)
        .map(|l| l.interface.as_str())
        .collect();
    let on_dynamic = |dev: Option<&str>| dev.is_some_and(|d| dynamic_ifaces.contains(&d));
    let nexthops: Vec<u32> = d
        .changes
        .iter()
        .filter_map(|c| match c {
            diff::Change::Nexthop {
                from: None,
                to: Some(n),
            } => match &n.hop {
                crate::state::nexthop::Hop::Via { dev, .. }
                | crate::state::nexthop::Hop::Dev { dev }
                    if on_dynamic(Some(dev)) =>
                {
                    Some(n.id)
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    let dropped = |c: &diff::Change| match c {
        diff::Change::Route {
            from: None,
            to: Some(r),
        } => on_dynamic(r.dev.as_deref()) || r.nhid.is_some_and(|id| nexthops.contains(&id)),
        diff::Change::Nexthop {
            from: None,
            to: Some(n),
        } => nexthops.contains(&n.id),
        _ => false,
    };
    Ok(d.conflicts.is_empty() && d.changes.iter().all(dropped))
}

/// The facts the live owned state was rendered from, for the dynamic
/// lines of `gw`: each one's address as its owned source-return rule names
/// it (with the prefix length of its owned connected route), and its next
/// hop as its owned line-table default route names it; none of them: the
/// line was down. Everything else is `facts` as gathered. A plan whose
/// changes all vanish against these facts is the host following a redial,
/// not drift ([`follows_facts`]).
fn previous_facts(gw: &Gateway, facts: &Facts) -> Facts {
    use crate::ownership::is_owned_route;
    use crate::state::ip::RuleAction;
    let mut old = facts.clone();
    let live = &facts.state;
    for (i, l) in gw.lines.iter().enumerate() {
        if l.dynamic_address {
            let prio = gw.rule_priority + crate::render::PRIO_SOURCE + i as u32;
            let addr = live
                .rules
                .iter()
                .filter(crate::ownership::is_owned_rule)
                .find(|r| r.priority == prio && r.action == RuleAction::Table(l.table))
                .and_then(|r| r.from)
                .map(|f| f.addr());
            let net = addr.map(|a| {
                live.routes
                    .iter()
                    .filter(|r| is_owned_route(r) && r.table == l.table)
                    .find(|r| r.src == Some(a) && r.dev.as_deref() == Some(l.interface.as_str()))
                    .and_then(|r| ipnet::IpNet::new(a, r.dst.prefix_len()).ok())
                    // Dropped with the old address: the new one's length.
                    .or_else(|| {
                        let now = facts.interface(&l.interface)?.addresses.first()?;
                        ipnet::IpNet::new(a, now.prefix_len()).ok()
                    })
                    .unwrap_or_else(|| ipnet::IpNet::from(a))
            });
            if let Some(iface) = old.interfaces.iter_mut().find(|f| f.name == l.interface) {
                iface.addresses = net.into_iter().collect();
            }
        }
        if l.next_hop == crate::model::NextHop::Dynamic {
            let via = live
                .routes
                .iter()
                .filter(|r| is_owned_route(r) && r.table == l.table && r.dst.prefix_len() == 0)
                .find(|r| r.dev.as_deref() == Some(l.interface.as_str()))
                .and_then(|r| r.via);
            let now: Vec<crate::state::ip::Route> =
                crate::model::client_defaults(&live.routes, &l.interface)
                    .into_iter()
                    .cloned()
                    .collect();
            // The kernel dropped the line table's route with the old address:
            // then the next hop is taken as unchanged.
            let via = via.or_else(|| now.first().and_then(|r| r.via));
            old.state.routes.retain(|r| !now.contains(r));
            if let Some(via) = via {
                let mut r = now.first().cloned().unwrap_or(crate::state::ip::Route {
                    dev: Some(l.interface.as_str().into()),
                    proto: 3,
                    metric: 100,
                    ..Default::default()
                });
                r.via = Some(via);
                old.state.routes.push(r);
            }
        }
    }
    old
}

/// Run a read-only step (connect + gather) again, on a new connection, when
/// the SSH channel broke under it; anything else fails at once.
fn once_more_on_channel_error<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    match f() {
        Err(Error::Transport {
            kind: crate::error::TransportKind::Channel,
            ..
        }) => f(),
        other => other,
    }
}

/// Commit-confirmed apply settings.
#[derive(Debug, Clone, Copy)]
pub struct Safety {
    /// Snapshot, arm an on-host revert, verify over a new connection, disarm.
    pub confirm: bool,
    /// Seconds before an unconfirmed change reverts itself.
    pub timeout_secs: u64,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            confirm: true,
            timeout_secs: 60,
        }
    }
}

/// Converge one host to its plan. Commit-confirmed (the default): snapshot
/// and armed revert first, then verify over a new connection and confirm;
/// the gateway reverts by itself unless confirmed. With `--no-confirm`:
/// verified in the apply's own round trip.
pub fn apply_host(
    host: &Host,
    plan: &HostPlan,
    t: &mut dyn Transport,
    opts: &RunOptions,
) -> Result<ApplyStats, StagedError> {
    let mut stage = Stage::Apply;
    apply_host_at(host, plan, t, opts, &mut stage).map_err(|error| StagedError { stage, error })
}

/// An apply error with the stage it happened in (apply or verify).
#[derive(Debug)]
pub struct StagedError {
    pub stage: Stage,
    pub error: Error,
}

fn apply_host_at(
    host: &Host,
    plan: &HostPlan,
    t: &mut dyn Transport,
    opts: &RunOptions,
    stage: &mut Stage,
) -> Result<ApplyStats> {
    let hand_made = &plan.diff.hand_made;
    if !plan.diff.conflicts.is_empty() {
        return Err(Error::Invalid {
            message: format!(
                "{}: refusing to apply: {}",
                plan.host,
                plan.diff.conflicts_text()
            ),
            hint: None,
        });
    }
    if crate::takeover::blocks_apply(hand_made) && !opts.adopt {
        return Err(Error::Invalid {
            message: format!(
                "{}: refusing to apply: {} hand-made objects would be duplicated by dwprov's (a second SNAT, DNAT, rule or route doing the same)",
                plan.host,
                hand_made.len()
            ),
            hint: Some("review them in `dwprov plan`; `dwprov apply --adopt` removes them in the same commit-confirmed apply, and its revert puts them back".into()),
        });
    }
    opts.progress.stage(&plan.host, Stage::Apply);
    // The line-health agent's binary, before the files naming it (issue 11).
    crate::agent::deploy::ensure_binary(t, &plan.rendered.desired)?;
    let caps = converge::Caps::of(&plan.facts);
    let safety = opts.safety;
    let (changes, hand_made) = if opts.adopt {
        (
            converge::with_take_over(&plan.diff.changes, hand_made),
            hand_made.as_slice(),
        )
    } else {
        (plan.diff.changes.clone(), &[][..])
    };
    if !safety.confirm {
        return apply_unconfirmed(host, plan, &changes, hand_made, t, opts, stage);
    }
    let id = crate::safe::snapshot_id();
    let reverted = |cause: Error, pending: bool| Error::Reverted {
        snapshot: id.clone(),
        seconds: safety.timeout_secs,
        pending,
        cause: Box::new(cause),
    };
    // The apply verifies in its own round trip (its owned objects listed,
    // crate::verified, and a digest of those listings); a new connection then proves the gateway
    // reachable and that state unchanged, and confirms.
    let m = gather::marker();
    let build = |installed: bool| {
        crate::safe::apply_script(
            &changes,
            &plan.facts.state,
            &plan.rendered.desired,
            &crate::safe::ConfirmedRun {
                id: &id,
                timeout_secs: safety.timeout_secs,
                marker: &m,
                library_installed: installed,
                hand_made,
            },
            caps,
        )
    };
    // The gateway-side programs (~13 kB) travel with a big apply (a round
    // trip to ask costs more than they do); a small one asks first whether
    // they are installed, so that it sends O(changes).
    let t0 = std::time::Instant::now();
    let mut script: ApplyScript = build(true);
    if script.script.len() > crate::safe::ASK_FOR_LIBRARY_BELOW
        || !crate::safe::library_installed(t)
    {
        script = build(false);
    }
    gather::phase("apply script built (and library asked)", t0);
    // Benchmark hook (undocumented for users), like gather's
    // DWPROV_GATHER_SCRIPT_OUT: the exact apply script, to profile it on the
    // gateway.
    if let Some(path) = std::env::var_os("DWPROV_APPLY_SCRIPT_OUT") {
        std::fs::write(&path, &script.script).map_err(|e| Error::io(path, e))?;
    }
    // The new connection's handshake overlaps the verification: it starts
    // once the gateway says the change is made (never before it, so it
    // still proves the gateway reachable after the change), while the
    // verify listings run and are checked. Once the listings are in, it
    // lists and digests again while the controller checks them, and
    // confirms only when told the check passed (WhenTold).
    let (conn, name, copts) = (&host.connection, &host.name, &opts.connect);
    let digest_args = crate::safe::digest_args(&plan.facts.state, &plan.rendered.desired);
    let held = crate::safe::verify_confirm_when_told_script(&id, &digest_args, &m);
    std::thread::scope(|scope| {
        // Dropped when this closure returns (before the scope joins the
        // thread), which tells it not to start, or not to confirm.
        let (start, started) = std::sync::mpsc::channel::<()>();
        let (verdict, verdict_rx) = std::sync::mpsc::channel::<bool>();
        let (held, ready) = (&held, crate::safe::ready_line(&m).into_bytes());
        let mut early = None;
        let confirming = move || -> Result<(Box<dyn Transport>, transport::Output)> {
            let mut t2 = transport::connect(conn, name, copts)?;
            // Not before the apply's listings are all in (its digest too).
            started
                .recv()
                .map_err(|_| Error::invalid("the apply ended before its verify"))?;
            let mut told = WhenTold {
                line: ready,
                scan: 0,
                verdict: Some(verdict_rx),
                reply: None,
            };
            let out = t2.run_script_watched(held, &mut told)?;
            Ok((t2, out))
        };
        let mut watch = OnLine {
            line: crate::safe::applied_line(&m).into_bytes(),
            scan: 0,
            then: Some(|| early = Some(scope.spawn(confirming))),
        };
        let t0 = std::time::Instant::now();
        let executed = converge::execute_watched(t, &script, &mut watch);
        gather::phase(
            "apply round trip (snapshot, apply, verify listings, digest)",
            t0,
        );
        drop(watch);
        let out = match executed {
            Ok(out) => out,
            Err(e) => {
                return Err(match &e {
                    // Stopped before the revert was armed, or the apply found the
                    // snapshot contradicted and undid itself: nothing changed.
                    Error::Remote { status, .. } if *status == crate::safe::NOTHING_CHANGED => e,
                    // The script itself reverted after a failed step.
                    Error::Remote { status, .. } if *status == converge::STEP_FAILED => {
                        reverted(e, false)
                    }
                    // Cut off mid-apply: the armed timer reverts.
                    _ => reverted(e, true),
                });
            }
        };
        let _ = start.send(());
        opts.progress.stage(&plan.host, Stage::Verify);
        *stage = Stage::Verify;
        let t0 = std::time::Instant::now();
        let listed = crate::verified::state(
            &plan.host,
            &out.stdout_str(),
            &m,
            &plan.facts,
            &plan.facts.state,
            &plan.rendered.desired,
        );
        let verified = match listed {
            Ok(v) => v,
            Err(e) => return Err(reverted(e, true)),
        };
        gather::phase("verify: listings parse", t0);
        let t0 = std::time::Instant::now();
        let residue = check_residue(plan, &verified);
        gather::phase("verify: residue diff", t0);
        if let Err(e) = residue {
            if let Some(residue) = contradicted(plan, &verified) {
                // Every step succeeded, yet the verify shows exactly the
                // pre-apply objects: the listing tools contradict the kernel.
                // A revert is computed from the same listings: neither revert
                // nor confirm; stop the timer, keep what the kernel accepted.
                let out = t.run_script(&crate::safe::disarm_script(&id));
                let disarmed = matches!(out, Ok(ref o) if o.status == 0);
                let mut lines = vec![format!(
                "every step of the apply succeeded, but the verify still shows the pre-apply state of {} of its {} change(s): \
                 the gateway's listing tools (ip, iptables-save) contradict what the kernel accepted; \
                 not reverted (a revert would be computed from the same listings) and not confirmed: {}",
                residue.len(),
                plan.diff.changes.len(),
                if disarmed {
                    format!("the revert timer is stopped and the gateway keeps the applied state (snapshot {id})")
                } else {
                    format!("stopping the revert timer failed: the gateway reverts itself to snapshot {id}")
                }
            )];
                lines.extend(residue);
                return Err(Error::Verify {
                    host: plan.host.clone(),
                    residue: lines,
                });
            }
            // Still connected: revert now rather than wait for the timer.
            let out = t.run_script(&crate::safe::rollback_script(Some(&id)));
            return Err(reverted(e, !matches!(out, Ok(ref o) if o.status == 0)));
        }
        // The flow assertions want the whole live state: they gather it.
        if let Some(e) = opts.checks.and_then(|c| c.after_apply(host, None, t).err()) {
            let out = t.run_script(&crate::safe::rollback_script(Some(&id)));
            return Err(reverted(e, !matches!(out, Ok(ref o) if o.status == 0)));
        }
        let t0 = std::time::Instant::now();
        let _ = verdict.send(true);
        // A thread that panicked, or a connection or channel that failed,
        // leaves nothing to use: connect here instead, verify and confirm.
        let early = early.and_then(|h| h.join().ok());
        let confirmed = match early {
            Some(Ok(done)) => Ok(done),
            _ => once_more_on_channel_error(|| {
                let mut t2 = transport::connect(conn, name, copts)?;
                let out = t2.run_script(&crate::safe::verify_confirm_script(&id, &digest_args))?;
                Ok((t2, out))
            }),
        };
        gather::phase("confirm (new connection, digest, disarm)", t0);
        let (mut t2, out) = match confirmed {
            Ok(v) => v,
            Err(e) => return Err(reverted(e, true)),
        };
        if out.status != 0 {
            let e = Error::Remote {
                host: plan.host.clone(),
                what: format!("verify and confirm snapshot {id}"),
                status: out.status,
                stderr: out.stderr_str().trim().to_string(),
            };
            // Not confirmed: the timer (if still armed) reverts; revert now.
            let out = t2.run_script(&crate::safe::rollback_script(Some(&id)));
            return Err(reverted(e, !matches!(out, Ok(ref o) if o.status == 0)));
        }
        Ok(ApplyStats {
            changes: plan.diff.changes.len(),
            ip_lines: script.ip_lines,
            iptables_lines: script.iptables_lines,
            script_bytes: script.script.len(),
            remote_commands: script.commands,
            round_trips: t.round_trips() + t2.round_trips(),
            snapshot: Some(id.clone()),
        })
    })
}

/// Holds the confirm's stdin until `line` arrives on stdout (its word that
/// the digest matched, [`crate::safe::ready_line`]), then waits for the
/// controller's verdict and sends it: `confirm`, or `abort` (also when the
/// verdict's sender is gone).
struct WhenTold {
    line: Vec<u8>,
    scan: usize,
    verdict: Option<std::sync::mpsc::Receiver<bool>>,
    reply: Option<Vec<u8>>,
}

impl transport::Watch for WhenTold {
    fn stdout(&mut self, all: &[u8], _new: usize) -> Result<()> {
        if let Some(rx) = &self.verdict {
            let hay = &all[self.scan..];
            if hay
                .windows(self.line.len())
                .any(|w| w == self.line.as_slice())
            {
                let ok = rx.recv().unwrap_or(false);
                self.verdict = None;
                self.reply = Some(if ok {
                    b"confirm\n".to_vec()
                } else {
                    b"abort\n".to_vec()
                });
            } else {
                self.scan = all.len().saturating_sub(self.line.len());
            }
        }
        Ok(())
    }

    fn holds_stdin(&self) -> bool {
        true
    }

    fn reply(&mut self) -> Option<Vec<u8>> {
        self.reply.take()
    }
}

/// Runs `then` (once) when `line` arrives on stdout: the apply's word that
/// its changes are made ([`crate::safe::applied_line`]).
struct OnLine<F: FnOnce()> {
    line: Vec<u8>,
    scan: usize,
    then: Option<F>,
}

impl<F: FnOnce()> transport::Watch for OnLine<F> {
    fn stdout(&mut self, all: &[u8], _new: usize) -> Result<()> {
        if self.then.is_some() {
            let hay = &all[self.scan..];
            let found = hay
                .windows(self.line.len())
                .any(|w| w == self.line.as_slice());
            if found {
                (self.then.take().expect("checked"))();
            } else {
                // A line split across chunks is found on the next call.
                self.scan = all.len().saturating_sub(self.line.len());
            }
        }
        Ok(())
    }
}

/// `--no-confirm`: no snapshot and no revert to disarm, so the apply script
/// verifies in its own round trip (it ends with a gather).
fn apply_unconfirmed(
    host: &Host,
    plan: &HostPlan,
    changes: &[diff::Change],
    hand_made: &[crate::takeover::HandMade],
    t: &mut dyn Transport,
    opts: &RunOptions,
    stage: &mut Stage,
) -> Result<ApplyStats> {
    let m = gather::marker();
    let script = converge::script_verified(
        changes,
        converge::Caps::of(&plan.facts),
        &m,
        &crate::takeover::rt_tables_script(hand_made),
    );
    let mut watch = gather::SectionWatch::new(&plan.host, &m, gather::MAX_SECTION);
    let out = converge::execute_watched(t, &script, &mut watch)?;
    opts.progress.stage(&plan.host, Stage::Verify);
    *stage = Stage::Verify;
    let facts = gather::facts_from_output(&plan.host, &out, &m)?;
    check_residue(plan, &facts.state)?;
    // Nothing to revert to: a failed flow assertion fails the apply only.
    if let Some(c) = opts.checks {
        c.after_apply(host, Some(&facts), t)?;
    }
    Ok(ApplyStats {
        changes: plan.diff.changes.len(),
        ip_lines: script.ip_lines,
        iptables_lines: script.iptables_lines,
        script_bytes: script.script.len(),
        remote_commands: script.commands,
        round_trips: t.round_trips(),
        snapshot: None,
    })
}

/// The live state after an apply must be the desired one: anything left is
/// a verification residue, named object by object.
fn check_residue(plan: &HostPlan, live: &crate::state::State) -> Result<()> {
    let residue = diff::diff(&plan.rendered.desired, live);
    if residue.changes.is_empty() {
        return Ok(());
    }
    Err(Error::Verify {
        host: plan.host.clone(),
        residue: residue.changes.iter().map(converge::describe).collect(),
    })
}

/// The verify contradicts the apply when every object it still finds
/// pending is exactly as the plan found it before the apply (an added
/// object still absent, a changed or removed one still with its old value)
/// although every step succeeded. A canonical-spelling residue is not
/// that: the object changed, just not into the desired spelling. Returns
/// the pending objects, described.
fn contradicted(plan: &HostPlan, live: &crate::state::State) -> Option<Vec<String>> {
    let residue = diff::diff(&plan.rendered.desired, live).changes;
    let all_unchanged =
        !residue.is_empty() && residue.iter().all(|c| plan.diff.changes.contains(c));
    all_unchanged.then(|| residue.iter().map(converge::describe).collect())
}

/// What a saved plan recorded for one host.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SavedHost {
    pub host: String,
    /// Digest of the live state the plan was computed from.
    pub facts_digest: String,
    /// The rendered artefacts: the desired state, re-parsed at apply time.
    pub artefacts: std::collections::BTreeMap<String, String>,
}

/// Gather and diff against a saved plan's desired state; refuse when the
/// live state is not the one the plan was made from.
pub fn plan_saved(
    saved: &SavedHost,
    t: &mut dyn Transport,
    progress: &dyn Progress,
) -> Result<HostPlan> {
    progress.stage(&saved.host, Stage::Gather);
    let facts = gather::gather(t)?;
    let desired = render::desired_from_artefacts(&saved.artefacts)?;
    let digest = gather::plan_digest(&facts, &desired);
    if digest != saved.facts_digest {
        return Err(Error::Stale {
            host: saved.host.clone(),
            message:
                "the live state changed since the plan was made; nothing was changed on this host"
                    .into(),
            hint: Some(
                "run `dwprov plan -o FILE` again, review it, then apply the new plan".into(),
            ),
        });
    }
    progress.stage(&saved.host, Stage::Diff);
    let diff = diff::HostDiff::planned(&desired, &facts.state);
    let views = diff::planned_views(&diff, &desired, &facts.state);
    Ok(HostPlan {
        host: saved.host.clone(),
        summary: Summary::of(&diff.changes),
        diff,
        warnings: facts.warnings.clone(),
        facts_digest: digest,
        views,
        rendered: Rendered {
            host: saved.host.clone(),
            artefacts: saved.artefacts.clone(),
            desired,
            warnings: Vec::new(),
            info: Vec::new(),
        },
        facts,
        check_output: None,
        follows: false,
    })
}

/// A host after planning: its outcome so far and the open connection to
/// apply over (one connection per host for plan and apply).
pub struct Prepared {
    pub outcome: Outcome,
    transport: Mutex<Option<Box<dyn Transport>>>,
}

/// What a host is planned against: its intent, built once per run before
/// anything connects ([`crate::model::build_all`]), or a saved plan's
/// desired state.
#[derive(Clone, Copy)]
pub enum Desired<'a> {
    Intent(&'a Gateway),
    Saved(&'a SavedHost),
}

/// Connect, gather, render and diff one host. Never panics, never fails the run.
pub fn prepare(host: &Host, desired: Desired, opts: &RunOptions) -> Prepared {
    let mut outcome = Outcome {
        host: host.name.clone(),
        plan: None,
        applied: None,
        error: None,
        failed_stage: None,
        skipped: false,
    };
    let mut stage = Stage::Connect;
    let mut transport = None;
    let result = (|| -> Result<()> {
        let (t, plan) = once_more_on_channel_error(|| {
            stage = Stage::Connect;
            opts.progress.stage(&host.name, Stage::Connect);
            let t0 = std::time::Instant::now();
            let mut t = transport::connect(&host.connection, &host.name, &opts.connect)?;
            gather::phase("connect", t0);
            stage = Stage::Gather;
            let plan = match desired {
                Desired::Saved(s) => plan_saved(s, t.as_mut(), opts.progress)?,
                Desired::Intent(gw) => {
                    let mut plan =
                        plan_host(gw, t.as_mut(), opts.templates, opts.progress, opts.checks)?;
                    if let Some(c) = opts.checks {
                        let t0 = std::time::Instant::now();
                        let warnings = c.before(host, gw, &plan, t.as_mut());
                        gather::phase("checks", t0);
                        let warnings = warnings?;
                        plan.warnings.extend(warnings);
                    }
                    plan
                }
            };
            Ok((t, plan))
        })?;
        outcome.plan = Some(plan);
        transport = Some(t);
        Ok(())
    })();
    if let Err(e) = result {
        outcome.error = Some(e);
        outcome.failed_stage = Some(stage);
    }
    opts.progress.finished(&host.name, outcome.ok());
    Prepared {
        outcome,
        transport: Mutex::new(transport),
    }
}

/// Converge a prepared host with pending changes. Returns None when there was
/// nothing to do (or planning had failed).
///
/// With `recheck` (hosts of the second and later `--serial` batches, planned
/// minutes before their turn on a big fleet), the host is gathered again
/// first and refused as a stale plan, untouched, when its live state is no
/// longer the one the plan was made from.
pub fn apply_prepared(
    host: &Host,
    p: &Prepared,
    opts: &RunOptions,
    recheck: bool,
) -> Option<Result<ApplyStats, StagedError>> {
    let plan = p.outcome.plan.as_ref()?;
    if plan.summary.is_empty()
        && plan.diff.conflicts.is_empty()
        && !crate::takeover::blocks_apply(&plan.diff.hand_made)
    {
        return assert_unchanged(host, plan, p, opts);
    }
    let mut guard = p.transport.lock().ok()?;
    guard.as_ref()?;
    if recheck {
        if let Err(e) = recheck_live_state(host, plan, &mut guard, opts) {
            opts.progress.finished(&host.name, false);
            return Some(Err(e));
        }
    }
    let t = guard.as_mut()?;
    let r = apply_host(host, plan, t.as_mut(), opts);
    opts.progress.finished(&host.name, r.is_ok());
    Some(r)
}

/// A host with nothing to change still has its flow assertions checked
/// (over its open connection, against the facts just gathered): an apply
/// says whether the gateway does what the inventory asserts, changed or not.
/// None when they hold (or there are none): nothing was done.
fn assert_unchanged(
    host: &Host,
    plan: &HostPlan,
    p: &Prepared,
    opts: &RunOptions,
) -> Option<Result<ApplyStats, StagedError>> {
    let checks = opts.checks?;
    let mut guard = p.transport.lock().ok()?;
    let t = guard.as_mut()?;
    let error = checks
        .after_apply(host, Some(&plan.facts), t.as_mut())
        .err()?;
    opts.progress.finished(&host.name, false);
    Some(Err(StagedError {
        stage: Stage::Verify,
        error,
    }))
}

/// Gather again (one round trip over the host's open connection, or over a
/// new one when that died while idle) and refuse when the live state's
/// digest is not the one the plan was computed from. On success the
/// connection to apply over is back in `slot`.
fn recheck_live_state(
    host: &Host,
    plan: &HostPlan,
    slot: &mut Option<Box<dyn Transport>>,
    opts: &RunOptions,
) -> Result<(), StagedError> {
    opts.progress.stage(&host.name, Stage::Gather);
    let mut stage = Stage::Gather;
    let mut idle = slot.take();
    let regathered = once_more_on_channel_error(|| {
        let mut t = match idle.take() {
            Some(t) => t,
            None => {
                stage = Stage::Connect;
                opts.progress.stage(&host.name, Stage::Connect);
                let t = transport::connect(&host.connection, &host.name, &opts.connect)?;
                stage = Stage::Gather;
                opts.progress.stage(&host.name, Stage::Gather);
                t
            }
        };
        let facts = gather::gather(t.as_mut())?;
        Ok((t, facts))
    });
    let (t, facts) = regathered.map_err(|error| StagedError { stage, error })?;
    if gather::plan_digest(&facts, &plan.rendered.desired) != plan.facts_digest {
        return Err(StagedError {
            stage: Stage::Gather,
            error: Error::Stale {
                host: host.name.clone(),
                message: "the live state changed since it was planned at the start of this rollout \
                          (re-gathered before its batch); nothing was changed on this host"
                    .into(),
                hint: Some(
                    "run `dwprov plan` to see what changed, then `dwprov apply` again for this host \
                     (--retry-file lists it for --limit @FILE)"
                        .into(),
                ),
            },
        });
    }
    *slot = Some(t);
    Ok(())
}

impl Prepared {
    /// A host not attempted because the rollout stopped before its batch.
    pub fn skip(self) -> Outcome {
        let mut o = self.outcome;
        o.skipped = true;
        o
    }

    /// Fold an apply result into the outcome.
    pub fn finish(self, applied: Option<Result<ApplyStats, StagedError>>) -> Outcome {
        let mut o = self.outcome;
        match applied {
            Some(Ok(stats)) => o.applied = Some(stats),
            Some(Err(e)) => {
                o.failed_stage = Some(e.stage);
                let e = e.error;
                o.error = Some(e);
            }
            None => {}
        }
        o
    }
}

/// Run `f` for every item with at most `forks` at once; results in input order.
pub fn parallel<T: Sync, R: Send>(items: &[T], forks: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = forks.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.expect("every index is filled by exactly one worker"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipelined confirm's handshake, on a real shell: the gateway's
    /// `await_verdict` says yes only when the controller's verdict was a
    /// yes; a no, or a controller gone before its verdict, is a no.
    #[test]
    fn only_a_yes_from_the_controller_confirms() {
        let ready = crate::safe::ready_line("m1");
        let script = format!(
            "{}await_verdict '{}' && echo yes || echo no; exit\n",
            crate::converge::lib_sh(),
            ready.trim_end()
        );
        let mut t = crate::transport::local::LocalTransport::new("gw1");
        for (verdict, expect) in [(Some(true), "yes"), (Some(false), "no"), (None, "no")] {
            let (tx, rx) = std::sync::mpsc::channel();
            match verdict {
                Some(v) => tx.send(v).unwrap(),
                None => drop(tx),
            }
            let mut told = WhenTold {
                line: ready.clone().into_bytes(),
                scan: 0,
                verdict: Some(rx),
                reply: None,
            };
            let out = t.run_script_watched(&script, &mut told).unwrap();
            assert_eq!(
                out.stdout_str(),
                format!("{ready}{expect}\n"),
                "{verdict:?}"
            );
        }
    }

    /// Issue 14: the facts of a gateway whose cnc line is leased `addr`
    /// (default route via 203.0.113.1 metric 100 in main).
    fn leased(addr: &str) -> Facts {
        let mut f = Facts {
            nexthops: true,
            ..Default::default()
        };
        f.interfaces.push(crate::facts::Interface {
            name: "eth2".into(),
            up: true,
            addresses: vec![addr.parse().unwrap()],
        });
        f.state.routes.push(crate::state::ip::Route {
            via: Some("203.0.113.1".parse().unwrap()),
            dev: Some("eth2".into()),
            proto: 3,
            metric: 100,
            ..Default::default()
        });
        f
    }

    /// A redial: the host was applied for .77, the kernel dropped what went
    /// via eth2 with it, the lease is .78 now: the changes follow the facts.
    /// Hand-made drift on top of it does not.
    #[test]
    fn a_redial_follows_the_facts_and_drift_does_not() {
        let mut gw = crate::render::tests::seed(crate::model::Method::Static);
        let cnc = &mut gw.lines[1];
        (cnc.address, cnc.gateway) = (None, None);
        cnc.dynamic_address = true;
        cnc.next_hop = crate::model::NextHop::Dynamic;
        let t = Templates::load(None).unwrap();
        let before = leased("203.0.113.77/24");
        let applied = render::render(&gw, &t, Some(&before)).unwrap().desired;
        let mut now = leased("203.0.113.78/24");
        let client = now.state.routes.clone();
        now.state = applied.clone();
        now.state
            .routes
            .retain(|r| r.dev.as_deref() != Some("eth2"));
        now.state.routes.extend(client);
        let plan = |facts: &Facts| {
            let r = render::render(&gw, &t, Some(facts)).unwrap();
            let d = diff::HostDiff::planned(&r.desired, &facts.state);
            assert!(!d.changes.is_empty());
            follows_facts(&gw, &t, facts, &d).unwrap()
        };
        assert!(plan(&now));
        // The same lease, but ctc's source-return rule removed by hand: drift.
        let mut drift = now.clone();
        drift
            .state
            .rules
            .retain(|r| r.from != Some("198.51.100.2/32".parse().unwrap()));
        assert!(!plan(&drift));
    }

    #[test]
    fn parallel_keeps_order_and_bounds_concurrency() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..40).collect();
        let out = parallel(&items, 4, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(peak.load(Ordering::SeqCst) >= 2);
    }
}
