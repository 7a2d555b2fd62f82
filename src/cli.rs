//! Command-line interface: flag groups defined once, lowered into actions.
//!
//! Flags shared by several commands are `#[command(flatten)]` groups
//! ([`InventoryArgs`], [`HostsArgs`], [`ConnectArgs`], [`OutputArgs`],
//! [`TemplateArgs`]); what they lower into lives with its module: host
//! selection in [`crate::inventory::select`], rollout policy in
//! [`crate::fleet::rollout`], the saved plan in [`crate::saved_plan`], the
//! readable output in [`crate::report`], exit codes in
//! [`crate::error::exit`] and [`Error::exit_code`].
use crate::error::{exit, Error, Result};
use crate::fleet::{self, rollout, Outcome, RunOptions};
use crate::inventory::select::{gateways_only, select};
use crate::ownership::owned;
use crate::render::Templates;
use crate::report;
use crate::saved_plan::{self, SavedPlan};
use crate::transport::ConnectOptions;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Exit code: success, nothing pending (see [`crate::error::exit`]).
pub const EXIT_OK: i32 = exit::OK;
/// Exit code: an error, usage errors included.
pub const EXIT_ERROR: i32 = exit::ERROR;
/// Exit code of `plan`: changes are pending.
pub const EXIT_CHANGES: i32 = exit::CHANGES;

const AFTER_HELP: &str = concat!(
    "\
Typical use:
  dwprov render -i inventory.yaml            show what the templates produce (no SSH)
  dwprov plan   -i inventory.yaml            show what would change on each gateway
  dwprov apply  -i inventory.yaml            change it (asks first; --yes for scripts)
  dwprov rollback -i inventory.yaml -l gw1   put back the state from before the last apply
  dwprov lab up                              a dual-line gateway in network namespaces to try it on

--limit (gather, render, plan, apply, rollback): host names, group names, globs (gw*),
!exclusions and @FILE (one pattern a line, as --retry-file writes), comma-separated.

Safety: apply snapshots each gateway and arms a revert there; it disarms it only
after verifying over a new SSH connection, so a change that cuts the management
path reverts itself after --confirm-timeout seconds.

EXIT CODES:
  0  success; for plan: no changes pending
  1  error: bad inventory, unreachable host, failed or unverified apply, and also
     a usage error (unknown command or flag, missing -i, bad --format value)
  2  plan only: changes are pending (like terraform plan -detailed-exitcode);
     never a usage error, so a CI gate can read 2 as \"changes pending\"

",
    // The owned names, from their one spelling in crate::ownership.
    "dwprov owns only what it creates: ip rules and routes tagged `proto ",
    owned!(route_proto_name),
    "` (",
    owned!(route_proto),
    "),\niptables chains ",
    owned!(chain_prefix),
    "* with one commented jump each, and its files\n(",
    owned!(rt_tables_conf),
    ", ",
    owned!(rt_protos_conf),
    ",\n",
    owned!(sysctl_conf),
    ", ",
    owned!(state_dir),
    "/* and its boot units). Everything else\non a gateway is left as it is."
);

const PLAN_EXIT_CODES: &str = "\
EXIT CODES:
  0  no changes pending on any host (changes that only follow a dynamic line's
     new address or next hop are listed and do not count: docs/lines.md)
  1  error (bad inventory, unreachable host, ...) or usage error (unknown flag, missing -i)
  2  changes are pending (like terraform plan -detailed-exitcode)";

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
    /// Print each host's live state as dwprov sees it (rules, routes, iptables, facts);
    /// objects dwprov owns are marked `[dwprov]`.
    Gather(GatherArgs),
    /// Print what the templates render for each host, without connecting.
    Render(RenderArgs),
    /// Show, per host, what apply would change. Exit 2 when changes are pending
    /// (exit 1 for any error, usage errors included).
    #[command(after_help = PLAN_EXIT_CODES)]
    Plan(PlanArgs),
    /// Plan (with `dwprov check`: an error finding refuses the host), confirm, then converge
    /// each host, check its flow assertions and verify it over a new connection. The gateway
    /// reverts by itself unless the result is confirmed (commit-confirmed).
    Apply(ApplyArgs),
    /// Restore a snapshot taken before an apply (the newest, or --to ID); --list shows them.
    Rollback(RollbackArgs),
    /// A dual-line gateway lab in network namespaces (needs root).
    Lab(LabArgs),
    /// Trace one packet and its reply through a gateway's desired state (no
    /// connection; --live: its gathered state): DNAT, mark, ip rule, route,
    /// outgoing line, source NAT, the way back. Exit 0 when traced.
    Explain(ExplainArgs),
    /// Read a gateway configured by hand (the inventory needs only its address and
    /// ssh settings) and write the inventory that renders the same behaviour:
    /// method, lines, LANs, prefix lists, NAT, forwards, hairpin, policies.
    /// What it cannot map is listed in comments and left foreign.
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
    /// Per host, what its line-health agent sees: each line's state (up, down,
    /// unknown), since when, last round's loss and RTT, failover in force; a
    /// dynamic line's address and next hop now (or down: no address); agent
    /// running and version; the last apply's snapshot. Read-only.
    Status(GatherArgs),
    /// Find what would go wrong before anything changes: the seed's FAQ traced on the
    /// desired state, the management path, clashes with foreign live state. Exit 1 on
    /// an error finding (--strict: on a warning too).
    Check(CheckArgs),
    /// Check the inventory's flow assertions (`assert:`) on each gateway's live
    /// state: traced, and each routing decision asked of the kernel (`ip route get`).
    /// Exit 1 when one fails.
    Verify(VerifyArgs),
}

/// plan's and apply's `dwprov check`.
#[derive(Args, Debug, Clone, Default)]
pub struct GateArgs {
    /// Go on although `dwprov check` finds errors (each is printed as a warning).
    #[arg(long)]
    pub force: bool,
}

/// Which hosts: `--limit` and `--list-hosts`.
#[derive(Args, Debug, Clone, Default)]
pub struct HostsArgs {
    /// Hosts to act on: names, group names, globs (gw*), !exclusions, @FILE
    /// (one pattern a line, e.g. a --retry-file), comma-separated.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Print the hosts --limit selects, and do nothing else.
    #[arg(long)]
    pub list_hosts: bool,
}

/// The inventory and the hosts of it to act on.
#[derive(Args, Debug, Clone)]
pub struct InventoryArgs {
    /// Inventory file (Ansible-shaped YAML: all: hosts/children/vars).
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    #[command(flatten)]
    pub hosts: HostsArgs,
}

impl InventoryArgs {
    /// The inventory and its selected hosts; `None` when `--list-hosts`
    /// printed them, which is all there is to do.
    fn selection(
        &self,
    ) -> Result<Option<(crate::inventory::Inventory, Vec<crate::inventory::Host>)>> {
        let (inv, hosts) = select(&self.inventory, self.hosts.limit.as_deref())?;
        Ok((!list_hosts(&self.hosts, &hosts)).then_some((inv, hosts)))
    }
}

/// How to connect, and to how many hosts at once.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Record unknown SSH host keys instead of refusing (like OpenSSH's accept-new).
    /// A key that CHANGED is always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to work on at once.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub forks: usize,
}

impl Default for ConnectArgs {
    fn default() -> Self {
        ConnectArgs {
            accept_new_host_keys: false,
            forks: 10,
        }
    }
}

impl ConnectArgs {
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            accept_new_host_keys: self.accept_new_host_keys,
            ssh_config: ssh_config(),
        }
    }
}

/// What to print, and how much of it.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct OutputArgs {
    /// Output format (json and yaml: one document with format_version).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// More detail in text output: notes (e.g. the kernel's route cache) and the
    /// content of generated files (as --show-files).
    #[arg(short, long)]
    pub verbose: bool,
    /// Show the content of generated files (boot script, boot batch, units), not
    /// only one line each.
    #[arg(long)]
    pub show_files: bool,
}

impl OutputArgs {
    fn detail(&self) -> report::Detail {
        report::Detail {
            verbose: self.verbose,
            files: self.verbose || self.show_files,
        }
    }
}

/// Template overrides.
#[derive(Args, Debug, Clone, Default)]
pub struct TemplateArgs {
    /// Directory with templates overriding the built-in ones (same file names, e.g. ip.batch.tera).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct GatherArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// List the prefixes that more than one line lists, and the line that routes
    /// each (the first in `lines:` listing it), instead of the rendered files.
    #[arg(long)]
    pub overlaps: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// Progress as JSON lines on stdout (one event per stage and host, then a recap event).
    #[arg(long)]
    pub json_events: bool,
    /// Save the plan (desired state, diff, digest of the live state) for `dwprov apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub gate: GateArgs,
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
    #[command(flatten)]
    pub hosts: HostsArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// Progress as JSON lines on stdout (stage and host_done events, then a recap event).
    #[arg(long)]
    pub json_events: bool,
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
    /// Take over a gateway configured by hand (see `dwprov import`): remove
    /// the hand-made objects dwprov's would duplicate (its rules, routes,
    /// SNAT, DNAT, CONNMARK rules; `plan` lists them) in the same apply, after
    /// dwprov's are in place; its revert and `rollback` put them back.
    #[arg(long)]
    pub adopt: bool,
    #[command(flatten)]
    pub gate: GateArgs,
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

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Yaml,
}

/// Entry point of the binary: returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    if cli.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e}", console::style("error:").red().bold());
            e.exit_code()
        }
    }
}

/// clap's own message, with our exit code: `--help`/`--version` succeed,
/// every usage error is 1 (clap would say 2, which is `plan`'s "changes
/// pending").
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_OK,
        _ => EXIT_ERROR,
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
        Command::Explain(a) => explain(&a),
        Command::Import(a) => import(&a),
        Command::Status(a) => {
            let Some((_, hosts)) = a.inv.selection()? else {
                return Ok(EXIT_OK);
            };
            let json = a.output.format != Format::Text;
            crate::status::run(&hosts, &a.connect.options(), a.connect.forks, json)
        }
        Command::Check(a) => check(&a),
        Command::Verify(a) => verify(&a),
    }
}

/// `--list-hosts`: print the selection; true when that was all to do.
fn list_hosts(a: &HostsArgs, hosts: &[crate::inventory::Host]) -> bool {
    if a.list_hosts {
        for h in hosts {
            println!("{}", h.name);
        }
    }
    a.list_hosts
}

/// One JSON or YAML document on stdout.
fn print_doc(format: Format, doc: &serde_json::Value) -> Result<()> {
    match format {
        Format::Yaml => print!("{}", crate::yaml::to_yaml(doc)?),
        _ => println!("{}", serde_json::to_string_pretty(doc).unwrap_or_default()),
    }
    Ok(())
}

/// One connection and one gather per host, `forks` at a time (gather, import).
fn gather_all(
    hosts: &[crate::inventory::Host],
    connect: &ConnectArgs,
) -> Vec<Result<crate::facts::Facts>> {
    let opts = connect.options();
    fleet::parallel(hosts, connect.forks, |h| -> Result<crate::facts::Facts> {
        let mut t = crate::transport::connect(&h.connection, &h.name, &opts)?;
        crate::gather::gather(t.as_mut())
    })
}

fn gather(a: &GatherArgs) -> Result<i32> {
    let Some((_, hosts)) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    let results = gather_all(&hosts, &a.connect);
    let text = a.output.format == Format::Text;
    let mut failed = 0;
    let mut docs = Vec::new();
    for (h, r) in hosts.iter().zip(results) {
        match r {
            Ok(f) if text => print!("{}", report::facts_text(&f, a.output.detail())),
            Ok(f) => docs.push(serde_json::json!({"host": h.name, "facts": f})),
            Err(e) => {
                failed += 1;
                if text {
                    eprintln!("{} {}: {e}", console::style("error:").red().bold(), h.name);
                } else {
                    docs.push(serde_json::json!({"host": h.name, "error": {"class": e.class(), "message": e.to_string()}}));
                }
            }
        }
    }
    if !text {
        print_doc(
            a.output.format,
            &serde_json::json!({"format_version": 1, "hosts": docs}),
        )?;
    }
    Ok(if failed > 0 { EXIT_ERROR } else { EXIT_OK })
}

fn render(a: &RenderArgs) -> Result<i32> {
    let Some((_, hosts)) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    let hosts = gateways_only(hosts, false)?;
    let templates = Templates::load(a.templates.templates.as_deref())?;
    // Every host's intent first: bad input changes nothing and prints nothing else.
    let gws = crate::model::build_all(&hosts)?;
    drop(hosts); // the inventory's values: the model holds what renders
    if a.overlaps {
        for gw in &gws {
            print!("{}", report::overlaps_text(gw));
        }
        return Ok(EXIT_OK);
    }
    let mut docs = Vec::new();
    for gw in &gws {
        let r = crate::render::render(gw, &templates, None)?;
        if a.output.format == Format::Text {
            // Without a host there are no facts: the notes say what was assumed.
            let mut notes = crate::boot::notes(gw, None);
            // What a dynamic line is without its host (rendered down, issue 14).
            notes.extend(r.info.iter().cloned());
            report::write_rendered(&mut std::io::stdout().lock(), &r, &notes)
                .map_err(|e| Error::io("standard output", e))?;
        } else {
            docs.push(r);
        }
    }
    match a.output.format {
        Format::Text => {}
        // Streamed: the same bytes, without the whole document as a Value.
        Format::Json => crate::render::json::write_docs(&mut std::io::stdout().lock(), &docs)
            .map_err(|e| Error::io("standard output", e))?,
        Format::Yaml => {
            let docs: Vec<_> = docs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "host": r.host, "artefacts": r.artefacts, "desired": r.desired, "warnings": r.warnings,
                    })
                })
                .collect();
            print_doc(
                a.output.format,
                &serde_json::json!({"format_version": 1, "hosts": docs}),
            )?
        }
    }
    Ok(EXIT_OK)
}

/// What `apply` adds to a plan run.
struct ApplyMode {
    yes: bool,
    policy: rollout::Policy,
    retry_file: Option<PathBuf>,
    safety: fleet::Safety,
    saved: Option<SavedPlan>,
    adopt: bool,
}

fn apply(a: ApplyArgs) -> Result<i32> {
    let saved = a.saved.as_deref().map(saved_plan::load).transpose()?;
    let inventory = match (&a.inventory, &saved) {
        (Some(i), _) => i.clone(),
        (None, Some(p)) => p.inventory.clone(),
        (None, None) => return Err(Error::invalid("apply needs -i INVENTORY or a saved plan")),
    };
    let limit = match (&a.hosts.limit, &saved) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(p)) => Some(p.limit()),
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
            hosts: HostsArgs {
                limit,
                list_hosts: a.hosts.list_hosts,
            },
        },
        connect: a.connect,
        output: a.output,
        templates: a.templates,
        json_events: a.json_events,
        out: None,
        gate: a.gate,
    };
    plan_or_apply(
        &args,
        Some(ApplyMode {
            yes: a.yes,
            policy: rollout::Policy {
                serial: a.serial,
                max_fail_percent: a.max_fail_percent,
                recheck_first: !a.yes,
            },
            retry_file: a.retry_file,
            safety: fleet::Safety {
                confirm: !a.no_confirm,
                timeout_secs: a.confirm_timeout,
            },
            saved,
            adopt: a.adopt,
        }),
    )
}

fn plan_or_apply(a: &PlanArgs, apply: Option<ApplyMode>) -> Result<i32> {
    let t0 = std::time::Instant::now();
    let Some((inv, hosts)) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    crate::gather::phase("inventory read", t0);
    let t0 = std::time::Instant::now();
    let templates = Templates::load(a.templates.templates.as_deref())?;
    crate::gather::phase("templates", t0);
    let saved = apply.as_ref().and_then(|m| m.saved.as_ref());
    // Hosts with connection settings only (a bastion) have nothing to plan.
    let hosts = gateways_only(hosts, saved.is_some())?;
    // Each host's intent, built once, here: bad input anywhere stops
    // everything before any connection. A saved plan brings its hosts'
    // desired state instead.
    let saved_host = |h: &crate::inventory::Host| saved.and_then(|p| p.host(&h.name));
    let t0 = std::time::Instant::now();
    let gateways = crate::model::build_all(hosts.iter().filter(|h| saved_host(h).is_none()))?;
    crate::gather::phase("model build", t0);
    // `build_all` keeps the hosts' order: the next intent is the next host's.
    let mut intents = gateways.iter();
    let targets: Vec<(&crate::inventory::Host, fleet::Desired)> = hosts
        .iter()
        .filter_map(|h| {
            let desired = match saved_host(h) {
                Some(s) => fleet::Desired::Saved(s),
                None => fleet::Desired::Intent(intents.next()?),
            };
            Some((h, desired))
        })
        .collect();
    let events = a.json_events;
    let json_progress = report::JsonEvents::default();
    let term_progress = report::StderrProgress::new(hosts.len());
    let progress: &dyn fleet::Progress = if events {
        &json_progress
    } else {
        &term_progress
    };
    let gate = crate::check::Gate {
        force: a.gate.force,
    };
    let opts = RunOptions {
        templates: &templates,
        connect: a.connect.options(),
        forks: a.connect.forks,
        progress,
        safety: apply.as_ref().map(|m| m.safety).unwrap_or_default(),
        adopt: apply.as_ref().is_some_and(|m| m.adopt),
        checks: Some(&gate),
    };
    let prepared = fleet::parallel(&targets, opts.forks, |(h, desired)| {
        fleet::prepare(h, *desired, &opts)
    });
    term_progress.clear();
    if a.output.format == Format::Text && !events {
        let detail = a.output.detail();
        for p in &prepared {
            let Some(plan) = &p.outcome.plan else {
                continue;
            };
            let notes = match gateways.iter().find(|g| g.host == plan.host) {
                Some(gw) if detail.verbose => {
                    crate::boot::notes(gw, Some(plan.facts.kernel.as_str()))
                }
                _ => Vec::new(),
            };
            print!("{}", report::host_plan(&p.outcome, &notes, detail));
        }
    }
    if let Some(out) = &a.out {
        saved_plan::save(out, &SavedPlan::of(&inv, &prepared))?;
    }
    let pending = prepared.iter().filter(|p| p.outcome.changed()).count();
    let outcomes: Vec<Outcome> = match &apply {
        None => prepared.into_iter().map(|p| p.finish(None)).collect(),
        Some(mode) => {
            if pending > 0 && !confirm(mode.yes, pending)? {
                eprintln!("nothing applied");
                return Ok(EXIT_ERROR);
            }
            rollout::rollout(&hosts, prepared, &mode.policy, &opts)?
        }
    };
    let failed = outcomes.iter().filter(|o| !o.ok() || o.skipped).count();
    if let Some(path) = apply.as_ref().and_then(|m| m.retry_file.as_ref()) {
        rollout::write_retry_file(path, &outcomes)?;
    }
    let t0 = std::time::Instant::now();
    let command = if apply.is_some() { "apply" } else { "plan" };
    let doc = || serde_json::json!({"format_version": 1, "command": command, "hosts": outcomes});
    if events {
        println!(
            "{}",
            serde_json::json!({"format_version": 1, "event": "recap", "recap": doc()})
        );
    } else {
        match a.output.format {
            Format::Text => print!("\n{}", report::recap(&outcomes, apply.is_some())),
            // Streamed: the recap of a big apply is megabytes.
            Format::Json => {
                fleet::json::write_recap(&mut std::io::stdout().lock(), command, &outcomes)
                    .map_err(|e| Error::io("stdout", e))?
            }
            f => print_doc(f, &doc())?,
        }
    }
    let _ = std::io::stdout().flush();
    crate::gather::phase("recap", t0);
    Ok(if failed > 0 {
        EXIT_ERROR
    } else if apply.is_none() && outcomes.iter().any(Outcome::drifted) {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
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
    let failed = crate::rollback::rollback_hosts(
        &hosts,
        &crate::rollback::RollbackRequest {
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

const IMPORT_HELP: &str = "\
EXAMPLES
  dwprov import -i bare.yaml --limit gw1 -o gw1.yaml
      writes gw1.yaml, and gw1-gw1-LINE.txt for every prefix list longer than 16
  dwprov import -i bare.yaml --limit gw1
      the inventory on stdout, every list inline
  dwprov plan -i gw1.yaml
      then shows what dwprov would add beside the hand-made objects

Import refuses a host dwprov already manages, and never overwrites a file.
The written inventory is built and rendered before import reports success.";

/// `dwprov import`: a hand-made gateway read into an inventory (src/import).
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// Write the inventory here (and long prefix lists beside it) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn import(a: &ImportArgs) -> Result<i32> {
    let Some((_, hosts)) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    // Before connecting: an existing output is never overwritten.
    if let Some(out) = a.output.as_deref().filter(|o| o.exists()) {
        return Err(crate::error::Error::Invalid {
            message: format!("{} exists already", out.display()),
            hint: Some(
                "import never overwrites: give another -o, or move the old file away".into(),
            ),
        });
    }
    let results = gather_all(&hosts, &a.connect);
    let mut imported = Vec::new();
    for (h, r) in hosts.iter().zip(results) {
        imported.push(crate::import::import_host(h, &r?)?);
    }
    let source = a.inv.inventory.display().to_string();
    let stem = a.output.as_deref().map(crate::import::stem);
    let written = crate::import::write(&imported, stem.as_deref(), &source)?;
    let Some(out) = &a.output else {
        print!("{}", written.inventory);
        return Ok(EXIT_OK);
    };
    let paths = crate::import::save(&written, out)?;
    // The proof the import is usable: it loads, builds and renders.
    let (_, back) = select(out, None)?;
    let templates = Templates::load(None)?;
    for gw in crate::model::build_all(&back)? {
        crate::render::render(&gw, &templates, None)?;
    }
    for p in &paths {
        println!("wrote {}", p.display());
    }
    for h in &imported {
        let a = &h.adopted;
        let prefixes: usize = a.lines.iter().map(|l| l.prefixes.len()).sum();
        println!(
            "{}: method {}, {} lines, {} LANs, {prefixes} prefixes, {} forwards; {} guesses and {} foreign objects in the comments",
            h.name,
            a.method,
            a.lines.len(),
            a.lan.len(),
            a.forwards.len(),
            a.guesses.len(),
            a.foreign.len()
        );
    }
    Ok(EXIT_OK)
}

/// `dwprov explain`: one flow, traced (src/trace).
#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// Source address of the packet.
    #[arg(long, value_name = "ADDR")]
    pub from: String,
    /// Destination address of the packet.
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// Interface it comes in on (default: the LAN or line whose subnet holds
    /// --from, the line whose address is --to; `lo` or the gateway's own
    /// address as --from: sent by the gateway).
    #[arg(long, value_name = "IF")]
    pub iif: Option<String>,
    /// tcp or udp (without it, rules naming a protocol or port do not match).
    #[arg(long, value_name = "PROTO")]
    pub proto: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub dport: Option<u16>,
    #[arg(long, value_name = "PORT")]
    pub sport: Option<u16>,
    /// Trace the gateway's live state (connects and gathers) instead of the desired one.
    #[arg(long)]
    pub live: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// Output format (json: one document with format_version).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn explain(a: &ExplainArgs) -> Result<i32> {
    let flow = crate::trace::cmd::flow(
        &a.from,
        &a.to,
        a.iif.as_deref(),
        a.proto.as_deref(),
        a.sport,
        a.dport,
    )?;
    let Some(_) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    crate::trace::cmd::run(&crate::trace::cmd::Request {
        inventory: &a.inv.inventory,
        limit: a.inv.hosts.limit.as_deref(),
        templates: a.templates.templates.as_deref(),
        flow,
        live: a.live,
        json: a.format != Format::Text,
        connect: a.connect.options(),
        forks: a.connect.forks,
    })
}

/// `dwprov check` (src/check).
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// No connection: only the checks the inventory alone answers.
    #[arg(long)]
    pub offline: bool,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub templates: TemplateArgs,
    /// Output format (json: one document with format_version).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn check(a: &CheckArgs) -> Result<i32> {
    let Some(_) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    crate::check::run(&crate::check::Request {
        inventory: &a.inv.inventory,
        limit: a.inv.hosts.limit.as_deref(),
        templates: a.templates.templates.as_deref(),
        offline: a.offline,
        strict: a.strict,
        json: a.format != Format::Text,
        connect: a.connect.options(),
        forks: a.connect.forks,
    })
}

/// `dwprov verify` (src/check/assert.rs).
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format (json: one document with format_version).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn verify(a: &VerifyArgs) -> Result<i32> {
    let Some(_) = a.inv.selection()? else {
        return Ok(EXIT_OK);
    };
    crate::check::assert::run(&crate::check::assert::Request {
        inventory: &a.inv.inventory,
        limit: a.inv.hosts.limit.as_deref(),
        json: a.format != Format::Text,
        connect: a.connect.options(),
        forks: a.connect.forks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_not_exit_2() {
        for argv in [
            &["dwprov", "aply"][..],
            &["dwprov", "plan"],
            &["dwprov", "plan", "-i", "x.yaml", "--format", "xml"],
            &["dwprov"],
        ] {
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(usage_error(&e), EXIT_ERROR, "{argv:?}");
        }
        let help = Cli::try_parse_from(["dwprov", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
