//! Command-line interface: flags defined once, lowered into actions.
use crate::error::{Error, Result};
use crate::fleet::{self, Outcome, RunOptions};
use crate::inventory::{Host, Inventory};
use crate::render::Templates;
use crate::report;
use crate::transport::ConnectOptions;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Exit code: success, nothing pending.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error (bad input, unreachable host, failed apply...).
pub const EXIT_ERROR: i32 = 1;
/// Exit code of `plan`: changes are pending.
pub const EXIT_CHANGES: i32 = 2;

const AFTER_HELP: &str = "\
Typical use:
  dwprov render -i inventory.yaml            show what the templates produce (no SSH)
  dwprov plan   -i inventory.yaml            show what would change on each gateway
  dwprov apply  -i inventory.yaml            change it (asks first; --yes for scripts)
  dwprov rollback -i inventory.yaml -l gw1   put back the state from before the last apply
  dwprov lab up                              a dual-line gateway in network namespaces to try it on

Safety: apply snapshots each gateway and arms a revert there; it disarms it only
after verifying over a new SSH connection, so a change that cuts the management
path reverts itself after --confirm-timeout seconds.

Exit codes:
  0  success; for plan: no changes pending
  1  error: bad inventory, unreachable host, failed or unverified apply
  2  plan only: changes are pending (like terraform plan -detailed-exitcode)

dwprov owns only what it creates: ip rules and routes tagged `proto dwprov` (201),
iptables chains DWPROV-* with one commented jump each, and its files
(/etc/iproute2/rt_tables.d/dwprov.conf, rt_protos.d/dwprov.conf, /etc/sysctl.d/90-dwprov.conf,
/etc/dwprov/* and its boot units). Everything else on a gateway is left as it is.";

#[derive(Parser, Debug)]
#[command(name = "dwprov", version, about = "Idempotent provisioning of dual-WAN (multi-line) Linux gateways",
    long_about = "dwprov renders policy routing (per-ISP routes, source-return tables, CONNMARK/fwmark), \
SNAT/MASQUERADE, port forwards and hairpin NAT for multi-line Linux gateways from an Ansible-style \
inventory, compares it with the live kernel state over SSH, and applies only the difference.",
    after_help = AFTER_HELP)]
pub struct Cli {
    /// Never colour output (NO_COLOR is honoured too).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// OpenSSH client config to read (default ~/.ssh/config; `none` for none).
    /// Host, HostName, User, Port, IdentityFile, UserKnownHostsFile, ProxyJump,
    /// ConnectTimeout, ServerAliveInterval; inventory values win.
    #[arg(short = 'F', long = "ssh-config", global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print each host's live state as dwprov sees it (rules, routes, iptables, facts).
    Gather(InventoryArgs),
    /// Print what the templates render for each host, without connecting.
    Render(RenderArgs),
    /// Show, per host, what apply would change. Exit 2 when changes are pending.
    Plan(PlanArgs),
    /// Plan, confirm, then converge each host and verify it over a new connection.
    /// The gateway reverts by itself unless the result is confirmed (commit-confirmed).
    Apply(ApplyArgs),
    /// Restore a snapshot taken before an apply (the newest, or --to ID); --list shows them.
    Rollback(RollbackArgs),
    /// A dual-line gateway lab in network namespaces (needs root).
    Lab(LabArgs),
}

#[derive(Args, Debug, Clone)]
pub struct InventoryArgs {
    /// Inventory file (Ansible-shaped YAML: all: hosts/children/vars).
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Hosts to act on: names, group names, globs (gw*), !exclusions, comma-separated.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Record unknown SSH host keys instead of refusing (like OpenSSH's accept-new).
    /// A key that CHANGED is always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to work on at once.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub forks: usize,
    /// Print the hosts --limit selects, and do nothing else.
    #[arg(long)]
    pub list_hosts: bool,
    /// Progress as JSON lines on stdout (one event per stage and host, then a recap event).
    #[arg(long)]
    pub json_events: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// Inventory file (Ansible-shaped YAML).
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Hosts to render: names, group names, globs, !exclusions, @file.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Directory with templates overriding the built-in ones (same file names, e.g. ip.batch.tera).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// Directory with templates overriding the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Save the plan (desired state, diff, digest of the live state) for `dwprov apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// A plan saved with `dwprov plan -o FILE`: apply exactly that, refusing
    /// (per host) when the live state changed since.
    #[arg(value_name = "PLAN")]
    pub saved: Option<PathBuf>,
    /// Inventory file (not needed with a saved plan).
    #[arg(short, long, value_name = "FILE", required_unless_present = "saved")]
    pub inventory: Option<PathBuf>,
    /// Hosts to act on: names, group names, globs (gw*), !exclusions, @file, comma-separated.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Output format (json: the whole run as one document with format_version).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Record unknown SSH host keys instead of refusing. A CHANGED key is always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to work on at once.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub forks: usize,
    /// Print the hosts --limit selects, and do nothing else.
    #[arg(long)]
    pub list_hosts: bool,
    /// Progress as JSON lines on stdout (stage and host_done events, then a recap event).
    #[arg(long)]
    pub json_events: bool,
    /// Directory with templates overriding the built-in ones (same file names).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Roll out in batches: a number, a percentage, or a list (`1,10%,100%`);
    /// the first batch is the canary, the last size repeats. Every host is
    /// planned first; a host of a later batch (and, after a [y/N] prompt,
    /// of every batch) is gathered again just before its batch and refused
    /// as a stale plan (untouched, counted as failed) when its live state
    /// changed since.
    #[arg(long, value_name = "SIZES")]
    pub serial: Option<String>,
    /// Stop the rollout when a batch fails more than this percentage of its hosts
    /// (unreachable hosts count as failed). Later hosts are reported as skipped.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub max_fail_percent: f64,
    /// Write failed and skipped hosts here, one a line, for `--limit @FILE`.
    #[arg(long, value_name = "FILE")]
    pub retry_file: Option<PathBuf>,
    /// Seconds an unconfirmed change stays before the gateway reverts it by itself.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub confirm_timeout: u64,
    /// Apply without snapshot and self-revert: a change that cuts the
    /// management path then strands the gateway. Not recommended. The result
    /// is verified in the apply's own round trip (no new connection).
    #[arg(long)]
    pub no_confirm: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    /// Inventory file.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// The host(s) to roll back (required to roll back: rollback is never
    /// fleet-wide by accident; optional with --list).
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Snapshot id (default: the newest).
    #[arg(long, value_name = "SNAPSHOT")]
    pub to: Option<String>,
    /// List the snapshots on each host instead.
    #[arg(long)]
    pub list: bool,
    /// Roll back without asking (the plan of the rollback is still shown).
    #[arg(long)]
    pub yes: bool,
    /// Record unknown SSH host keys instead of refusing.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    #[arg(value_enum)]
    pub action: LabCommand,
    /// Namespace name prefix of this lab.
    #[arg(long, default_value = "dwlab-")]
    pub prefix: String,
    /// Directory for the lab's keys, inventory and logs.
    #[arg(long, default_value = "/tmp/dwprov-lab")]
    pub dir: PathBuf,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabCommand {
    Up,
    Down,
    Status,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Entry point of the binary: returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if cli.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e}", console::style("error:").red().bold());
            EXIT_ERROR
        }
    }
}

/// `-F FILE`, set once per run before any connection.
static SSH_CONFIG: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

fn ssh_config() -> Option<PathBuf> {
    SSH_CONFIG.get().cloned().flatten()
}

pub fn run(cli: Cli) -> Result<i32> {
    let _ = SSH_CONFIG.set(cli.ssh_config.clone());
    match cli.command {
        Command::Gather(a) => gather(&a),
        Command::Render(a) => render(&a),
        Command::Plan(a) => plan_or_apply(&a, None),
        Command::Apply(a) => apply(a),
        Command::Rollback(a) => rollback(&a),
        Command::Lab(a) => {
            let action = match a.action {
                LabCommand::Up => crate::lab::LabAction::Up,
                LabCommand::Down => crate::lab::LabAction::Down,
                LabCommand::Status => crate::lab::LabAction::Status,
            };
            crate::lab::run(action, &a.prefix, &a.dir)?;
            Ok(EXIT_OK)
        }
    }
}

/// Load the inventory and pick the hosts `--limit` selects.
fn select(inventory: &std::path::Path, limit: Option<&str>) -> Result<(Inventory, Vec<Host>)> {
    let inv = crate::inventory::load(inventory)?;
    let hosts = match limit {
        None => inv.hosts.clone(),
        Some(l) => limit_hosts(&inv, l)?,
    };
    if hosts.is_empty() {
        return Err(Error::Invalid {
            message: format!(
                "no host of {} matches --limit {}",
                inventory.display(),
                limit.unwrap_or("")
            ),
            hint: Some(format!(
                "hosts: {}",
                inv.hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        });
    }
    Ok((inv, hosts))
}

/// Ansible-style `--limit`: `a,b`, groups, globs, `!exclusions`, `@file`.
pub fn limit_hosts(inv: &Inventory, pattern: &str) -> Result<Vec<Host>> {
    let mut words: Vec<String> = Vec::new();
    for w in pattern
        .split([',', ':'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if let Some(file) = w.strip_prefix('@') {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            words.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        } else {
            words.push(w.to_string());
        }
    }
    let matches = |pat: &str, host: &Host| -> bool {
        crate::pattern::glob(pat, &host.name)
            || inv
                .groups
                .iter()
                .any(|(g, members)| crate::pattern::glob(pat, g) && members.contains(&host.name))
    };
    let includes: Vec<&String> = words.iter().filter(|w| !w.starts_with('!')).collect();
    let excludes: Vec<&str> = words.iter().filter_map(|w| w.strip_prefix('!')).collect();
    Ok(inv
        .hosts
        .iter()
        .filter(|h| includes.is_empty() || includes.iter().any(|p| matches(p, h)))
        .filter(|h| !excludes.iter().any(|p| matches(p, h)))
        .cloned()
        .collect())
}

fn gather(a: &InventoryArgs) -> Result<i32> {
    let (_, hosts) = select(&a.inventory, a.limit.as_deref())?;
    let opts = ConnectOptions {
        accept_new_host_keys: a.accept_new_host_keys,
        ssh_config: ssh_config(),
    };
    let results = fleet::parallel(&hosts, a.forks, |h| -> Result<crate::gather::Facts> {
        let mut t = crate::transport::connect(&h.connection, &h.name, &opts)?;
        crate::gather::gather(t.as_mut())
    });
    let mut failed = 0;
    let mut json = Vec::new();
    for (h, r) in hosts.iter().zip(results) {
        match r {
            Ok(f) => match a.format {
                Format::Json => json.push(serde_json::json!({"host": h.name, "facts": f})),
                Format::Text => print!("{}", facts_text(&f)),
            },
            Err(e) => {
                failed += 1;
                match a.format {
                    Format::Json => json.push(serde_json::json!({"host": h.name, "error": {"class": e.class(), "message": e.to_string()}})),
                    Format::Text => eprintln!("{} {}: {e}", console::style("error:").red().bold(), h.name),
                }
            }
        }
    }
    if a.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"format_version": 1, "hosts": json}))
                .unwrap_or_default()
        );
    }
    Ok(if failed > 0 { EXIT_ERROR } else { EXIT_OK })
}

/// The typed live state as text, in the tools' own spelling.
pub fn facts_text(f: &crate::gather::Facts) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let names = |id: u32| f.state.rt_tables.label(id);
    let _ = writeln!(s, "── {}", f.host);
    let _ = writeln!(
        s,
        "kernel {}  iptables {}  systemd {}  uid {}",
        f.kernel,
        f.iptables_backend.as_deref().unwrap_or("?"),
        if f.systemd { "yes" } else { "no" },
        f.uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
    );
    for w in &f.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s, "interfaces:");
    for i in &f.interfaces {
        let addrs: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            s,
            "  {} {} {}",
            i.name,
            if i.up { "up" } else { "down" },
            addrs.join(" ")
        );
    }
    let _ = writeln!(s, "rt_tables:");
    for (id, n) in &f.state.rt_tables.entries {
        let _ = writeln!(s, "  {id}\t{n}");
    }
    let _ = writeln!(s, "ip rules:");
    for r in &f.state.rules {
        let _ = writeln!(s, "  {}", r.display(&names));
    }
    let mut tables: Vec<u32> = f.state.routes.iter().map(|r| r.table).collect();
    tables.sort();
    tables.dedup();
    for t in tables {
        let _ = writeln!(s, "routes table {}:", names(t));
        for r in f.state.routes.iter().filter(|r| r.table == t) {
            let _ = writeln!(s, "  {}", r.display());
        }
    }
    for (tname, table) in &f.state.iptables.tables {
        let _ = writeln!(s, "iptables {tname}:");
        for (cname, chain) in &table.chains {
            let _ = writeln!(s, "  :{cname} {}", chain.policy.as_deref().unwrap_or("-"));
            for r in &chain.rules {
                let _ = writeln!(s, "  -A {cname} {r}");
            }
        }
    }
    let _ = writeln!(s, "sysctls:");
    for (k, v) in &f.state.sysctls {
        let _ = writeln!(s, "  {k} = {v}");
    }
    for (p, c) in &f.state.files {
        let _ = writeln!(s, "file {p}: {} lines", c.lines().count());
    }
    s
}

/// Drop hosts without gateway intent (bastions, jump hosts), saying so.
fn gateways_only(hosts: Vec<Host>, keep_all: bool) -> Result<Vec<Host>> {
    if keep_all {
        return Ok(hosts);
    }
    let (gws, others): (Vec<Host>, Vec<Host>) = hosts.into_iter().partition(|h| h.has_gateway());
    for h in &others {
        eprintln!(
            "{}: no gateway intent (connection settings only): nothing to plan",
            h.name
        );
    }
    if gws.is_empty() {
        return Err(Error::invalid(
            "none of the selected hosts has gateway intent (method, lan, lines)",
        ));
    }
    Ok(gws)
}

fn render(a: &RenderArgs) -> Result<i32> {
    let (_, hosts) = select(&a.inventory, a.limit.as_deref())?;
    let hosts = gateways_only(hosts, false)?;
    let templates = Templates::load(a.templates.as_deref())?;
    // Validate every host first: bad input changes nothing and prints nothing else.
    let gws = hosts
        .iter()
        .map(crate::model::build)
        .collect::<Result<Vec<_>>>()?;
    let mut json = Vec::new();
    for gw in &gws {
        let r = crate::render::render(gw, &templates, None)?;
        match a.format {
            Format::Json => json.push(serde_json::json!({
                "host": r.host, "artefacts": r.artefacts, "desired": r.desired, "warnings": r.warnings,
            })),
            Format::Text => {
                println!("{}", console::style(format!("── {}", r.host)).bold());
                for w in &r.warnings {
                    println!("{} {w}", console::style("warning:").yellow());
                }
                for (name, text) in &r.artefacts {
                    println!("{}", console::style(format!("==> {name}")).cyan());
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                }
            }
        }
    }
    if a.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"format_version": 1, "hosts": json}))
                .unwrap_or_default()
        );
    }
    Ok(EXIT_OK)
}

/// What `apply` adds to a plan run.
struct ApplyMode {
    yes: bool,
    serial: Option<String>,
    max_fail_percent: f64,
    retry_file: Option<PathBuf>,
    safety: fleet::Safety,
    saved: Option<SavedPlan>,
}

/// A plan saved by `dwprov plan -o FILE`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPlan {
    format_version: u32,
    inventory: PathBuf,
    hosts: Vec<fleet::SavedHost>,
}

fn apply(a: ApplyArgs) -> Result<i32> {
    let saved = match &a.saved {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            let plan: SavedPlan = serde_json::from_str(&text).map_err(|e| Error::Invalid {
                message: format!("{}: not a dwprov plan: {e}", p.display()),
                hint: Some("make one with `dwprov plan -i INVENTORY -o FILE`".into()),
            })?;
            Some(plan)
        }
        None => None,
    };
    let inventory = match (&a.inventory, &saved) {
        (Some(i), _) => i.clone(),
        (None, Some(p)) => p.inventory.clone(),
        (None, None) => return Err(Error::invalid("apply needs -i INVENTORY or a saved plan")),
    };
    let limit = match (&a.limit, &saved) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(p)) => Some(
            p.hosts
                .iter()
                .map(|h| h.host.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (None, None) => None,
    };
    if a.no_confirm {
        eprintln!(
            "{} --no-confirm: no snapshot, no self-revert. A change that cuts the management path strands the gateway.",
            console::style("WARNING").red().bold()
        );
    }
    let args = PlanArgs {
        inv: InventoryArgs {
            inventory,
            limit,
            format: a.format,
            accept_new_host_keys: a.accept_new_host_keys,
            forks: a.forks,
            list_hosts: a.list_hosts,
            json_events: a.json_events,
        },
        templates: a.templates,
        out: None,
    };
    plan_or_apply(
        &args,
        Some(ApplyMode {
            yes: a.yes,
            serial: a.serial,
            max_fail_percent: a.max_fail_percent,
            retry_file: a.retry_file,
            safety: fleet::Safety {
                confirm: !a.no_confirm,
                timeout_secs: a.confirm_timeout,
            },
            saved,
        }),
    )
}

/// Batch sizes for `--serial` over `n` hosts: numbers or percentages; the
/// last size repeats until every host has a batch.
pub fn batches(n: usize, spec: Option<&str>) -> Result<Vec<usize>> {
    let Some(spec) = spec else {
        return Ok(if n == 0 { vec![] } else { vec![n] });
    };
    let mut sizes = Vec::new();
    for w in spec.split(',').map(str::trim) {
        let size = if let Some(p) = w.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .ok()
                .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "--serial: `{w}` is not a percentage between 0 and 100"
                    ))
                })?;
            ((n as f64 * p / 100.0).ceil() as usize).max(1)
        } else {
            w.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(|| {
                Error::invalid(format!(
                    "--serial: `{w}` is not a positive number or a percentage"
                ))
            })?
        };
        sizes.push(size);
    }
    let mut out = Vec::new();
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let size = sizes[i.min(sizes.len() - 1)].min(left);
        out.push(size);
        left -= size;
        i += 1;
    }
    Ok(out)
}

/// JSON-lines progress events on stdout.
struct JsonEvents(std::sync::Mutex<()>);
impl fleet::Progress for JsonEvents {
    fn stage(&self, host: &str, stage: fleet::Stage) {
        let _g = self.0.lock();
        println!(
            "{}",
            serde_json::json!({"format_version": 1, "event": "stage", "host": host, "stage": stage})
        );
    }
    fn finished(&self, host: &str, ok: bool) {
        let _g = self.0.lock();
        println!(
            "{}",
            serde_json::json!({"format_version": 1, "event": "host_done", "host": host, "ok": ok})
        );
    }
}

fn plan_or_apply(a: &PlanArgs, apply: Option<ApplyMode>) -> Result<i32> {
    let (inv, hosts) = select(&a.inv.inventory, a.inv.limit.as_deref())?;
    if a.inv.list_hosts {
        for h in &hosts {
            println!("{}", h.name);
        }
        return Ok(EXIT_OK);
    }
    let templates = Templates::load(a.templates.as_deref())?;
    let saved = apply.as_ref().and_then(|m| m.saved.as_ref());
    // Hosts with connection settings only (a bastion) have nothing to plan.
    let hosts = gateways_only(hosts, saved.is_some())?;
    // Bad input anywhere stops everything before any connection.
    if saved.is_none() {
        let errors: Vec<Error> = hosts
            .iter()
            .filter_map(|h| crate::model::build(h).err())
            .collect();
        if !errors.is_empty() {
            return Err(if errors.len() == 1 {
                errors.into_iter().next().expect("one")
            } else {
                Error::Multiple(errors)
            });
        }
    }
    let events = a.inv.json_events;
    let json_progress = JsonEvents(std::sync::Mutex::new(()));
    let term_progress = report::StderrProgress::new(hosts.len());
    let progress: &dyn fleet::Progress = if events {
        &json_progress
    } else {
        &term_progress
    };
    let opts = RunOptions {
        templates: &templates,
        connect: ConnectOptions {
            accept_new_host_keys: a.inv.accept_new_host_keys,
            ssh_config: ssh_config(),
        },
        forks: a.inv.forks,
        progress,
        safety: apply.as_ref().map(|m| m.safety).unwrap_or_default(),
    };
    let prepared = fleet::parallel(&hosts, opts.forks, |h| {
        let s = saved.and_then(|p| p.hosts.iter().find(|s| s.host == h.name));
        fleet::prepare_with(h, s, &opts)
    });
    term_progress.clear();
    let text = a.inv.format == Format::Text && !events;
    if text {
        for p in &prepared {
            if p.outcome.plan.is_some() {
                print!("{}", report::host_plan(&p.outcome));
            }
        }
    }
    if let Some(out) = &a.out {
        save_plan(out, &inv, &prepared)?;
    }
    let pending = prepared
        .iter()
        .filter(|p| {
            p.outcome
                .plan
                .as_ref()
                .is_some_and(|pl| !pl.summary.is_empty())
        })
        .count();
    let outcomes: Vec<Outcome> = match &apply {
        None => prepared.into_iter().map(|p| p.finish(None)).collect(),
        Some(mode) => {
            if pending > 0 && !confirm(mode.yes, pending)? {
                eprintln!("nothing applied");
                return Ok(EXIT_ERROR);
            }
            rollout(&hosts, prepared, mode, &opts)?
        }
    };
    let failed = outcomes.iter().filter(|o| !o.ok() || o.skipped).count();
    if let Some(m) = &apply {
        if let Some(path) = &m.retry_file {
            let names: String = outcomes
                .iter()
                .filter(|o| !o.ok() || o.skipped)
                .map(|o| format!("{}\n", o.host))
                .collect();
            std::fs::write(path, names).map_err(|e| Error::io(path, e))?;
        }
    }
    let doc = serde_json::json!({
        "format_version": 1,
        "command": if apply.is_some() { "apply" } else { "plan" },
        "hosts": outcomes,
    });
    if events {
        println!(
            "{}",
            serde_json::json!({"format_version": 1, "event": "recap", "recap": doc})
        );
    } else {
        match a.inv.format {
            Format::Text => print!("\n{}", report::recap(&outcomes, apply.is_some())),
            Format::Json => println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default()),
        }
    }
    let _ = std::io::stdout().flush();
    Ok(if failed > 0 {
        EXIT_ERROR
    } else if apply.is_none() && pending > 0 {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}

/// Apply prepared hosts batch by batch; stop when a batch fails beyond
/// --max-fail-percent, reporting the rest as skipped.
fn rollout(
    hosts: &[Host],
    prepared: Vec<fleet::Prepared>,
    mode: &ApplyMode,
    opts: &RunOptions,
) -> Result<Vec<Outcome>> {
    let sizes = batches(prepared.len(), mode.serial.as_deref())?;
    let mut rest = prepared.into_iter();
    let mut outcomes = Vec::new();
    let mut stopped = false;
    for (n, size) in sizes.iter().enumerate() {
        let batch: Vec<fleet::Prepared> = rest.by_ref().take(*size).collect();
        if stopped {
            outcomes.extend(batch.into_iter().map(fleet::Prepared::skip));
            continue;
        }
        // Batch 1 was just planned, unless a person was asked first (the
        // prompt may have waited minutes). Later batches were planned before
        // the earlier ones rolled out. Such hosts are gathered again and
        // refused as stale when their live state changed in the meantime.
        let recheck = n > 0 || !mode.yes;
        if n > 0 {
            test_pause_before_batch(n + 1);
        }
        let results = fleet::parallel(&batch, opts.forks, |p| {
            hosts
                .iter()
                .find(|h| h.name == p.outcome.host)
                .and_then(|host| fleet::apply_prepared(host, p, opts, recheck))
        });
        let done: Vec<Outcome> = batch
            .into_iter()
            .zip(results)
            .map(|(p, r)| p.finish(r))
            .collect();
        let failed = done.iter().filter(|o| !o.ok()).count();
        let percent = failed as f64 * 100.0 / done.len().max(1) as f64;
        if failed > 0 && percent > mode.max_fail_percent {
            eprintln!(
                "{} batch {} of {}: {failed} of {} host(s) failed ({percent:.0}% > --max-fail-percent {}): stopping the rollout",
                console::style("stop:").red().bold(),
                n + 1,
                sizes.len(),
                done.len(),
                mode.max_fail_percent
            );
            stopped = true;
        }
        outcomes.extend(done);
    }
    Ok(outcomes)
}

/// Test hook, not for users: with `DWPROV_TEST_PAUSE_BEFORE_BATCH=FILE` a
/// rollout pauses before each batch after the first: dwprov writes the
/// batch number (1-based) to FILE and waits until FILE is removed (at most
/// 120 s). tests/fleet.rs changes a gateway there, after it was planned and
/// before its batch re-checks it.
fn test_pause_before_batch(batch: usize) {
    let Some(path) = std::env::var_os("DWPROV_TEST_PAUSE_BEFORE_BATCH") else {
        return;
    };
    let path = PathBuf::from(path);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    if std::fs::write(&tmp, format!("{batch}\n")).is_err() || std::fs::rename(&tmp, &path).is_err()
    {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn save_plan(path: &std::path::Path, inv: &Inventory, prepared: &[fleet::Prepared]) -> Result<()> {
    let hosts = prepared
        .iter()
        .filter_map(|p| p.outcome.plan.as_ref())
        .map(|p| fleet::SavedHost {
            host: p.host.clone(),
            facts_digest: p.facts_digest.clone(),
            artefacts: p.rendered.artefacts.clone(),
        })
        .collect();
    let inventory = std::fs::canonicalize(&inv.file).unwrap_or_else(|_| inv.file.clone());
    let plan = SavedPlan {
        format_version: 1,
        inventory,
        hosts,
    };
    let text = serde_json::to_string_pretty(&plan).map_err(|e| Error::invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn rollback(a: &RollbackArgs) -> Result<i32> {
    if a.limit.is_none() && !a.list {
        return Err(Error::Invalid {
            message: "rollback needs --limit (rollback is never fleet-wide by accident)".into(),
            hint: Some(
                "name the host(s): dwprov rollback -i FILE --limit gw1 (--list works without)"
                    .into(),
            ),
        });
    }
    let (_, hosts) = select(&a.inventory, a.limit.as_deref())?;
    let opts = ConnectOptions {
        accept_new_host_keys: a.accept_new_host_keys,
        ssh_config: ssh_config(),
    };
    let failed = crate::safe::rollback_hosts(
        &hosts,
        &crate::safe::RollbackRequest {
            to: a.to.clone(),
            list: a.list,
            yes: a.yes,
        },
        &opts,
    )?;
    Ok(if failed > 0 { EXIT_ERROR } else { EXIT_OK })
}

/// Ask before changing hosts; refuse when nobody can answer.
fn confirm(yes: bool, pending: usize) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Invalid {
            message: "refusing to apply without --yes: stdin is not a terminal".into(),
            hint: Some("review the plan above, then run again with --yes".into()),
        });
    }
    eprint!("Apply these changes to {pending} host(s)? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::io("stdin", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_batches() {
        assert_eq!(batches(10, Some("1,10%,100%")).unwrap(), [1, 1, 8]);
        assert_eq!(batches(10, Some("3")).unwrap(), [3, 3, 3, 1]);
        assert_eq!(batches(30, Some("1,50%")).unwrap(), [1, 15, 14]);
        assert_eq!(batches(5, None).unwrap(), [5]);
        assert!(batches(5, Some("0")).is_err());
        assert!(batches(5, Some("150%")).is_err());
        assert!(batches(5, Some("x")).is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
