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
  dwprov lab up                              a dual-line gateway in network namespaces to try it on

Exit codes:
  0  success; for plan: no changes pending
  1  error: bad inventory, unreachable host, failed or unverified apply
  2  plan only: changes are pending (like terraform plan -detailed-exitcode)

dwprov owns only what it creates: ip rules and routes tagged `proto dwprov` (201),
iptables chains DWPROV-* with one commented jump each, and its files
(/etc/iproute2/rt_tables.d/dwprov.conf, rt_protos.d/dwprov.conf, /etc/sysctl.d/90-dwprov.conf).
Everything else on a gateway is left as it is.";

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
    Apply(ApplyArgs),
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
}

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
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
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
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

pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Gather(a) => gather(&a),
        Command::Render(a) => render(&a),
        Command::Plan(a) => plan_or_apply(&a, None),
        Command::Apply(a) => plan_or_apply(&a.plan, Some(a.yes)),
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
        glob_match(pat, &host.name)
            || inv
                .groups
                .iter()
                .any(|(g, members)| glob_match(pat, g) && members.contains(&host.name))
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

/// `*` and `?` globbing.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn gather(a: &InventoryArgs) -> Result<i32> {
    let (_, hosts) = select(&a.inventory, a.limit.as_deref())?;
    let opts = ConnectOptions {
        accept_new_host_keys: a.accept_new_host_keys,
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

fn render(a: &RenderArgs) -> Result<i32> {
    let (_, hosts) = select(&a.inventory, a.limit.as_deref())?;
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

fn plan_or_apply(a: &PlanArgs, apply: Option<bool>) -> Result<i32> {
    let (_, hosts) = select(&a.inv.inventory, a.inv.limit.as_deref())?;
    let templates = Templates::load(a.templates.as_deref())?;
    // Bad input anywhere stops everything before any connection.
    for h in &hosts {
        crate::model::build(h)?;
    }
    let progress = report::StderrProgress::new(hosts.len());
    let opts = RunOptions {
        templates: &templates,
        connect: ConnectOptions {
            accept_new_host_keys: a.inv.accept_new_host_keys,
        },
        forks: a.inv.forks,
        progress: &progress,
    };
    let prepared = fleet::parallel(&hosts, opts.forks, |h| fleet::prepare(h, &opts));
    progress.clear();
    let text = a.inv.format == Format::Text;
    if text {
        for p in &prepared {
            if p.outcome.plan.is_some() {
                print!("{}", report::host_plan(&p.outcome));
            }
        }
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
    let outcomes: Vec<Outcome> = match apply {
        None => prepared.into_iter().map(|p| p.finish(None)).collect(),
        Some(yes) => {
            if pending > 0 && !confirm(yes, pending)? {
                eprintln!("nothing applied");
                return Ok(EXIT_ERROR);
            }
            let progress = report::StderrProgress::new(pending);
            let opts = RunOptions {
                progress: &progress,
                ..opts
            };
            let results = fleet::parallel(&prepared, opts.forks, |p| {
                let host = hosts
                    .iter()
                    .find(|h| h.name == p.outcome.host)
                    .expect("prepared from hosts");
                fleet::apply_prepared(host, p, &opts)
            });
            progress.clear();
            prepared
                .into_iter()
                .zip(results)
                .map(|(p, r)| p.finish(r))
                .collect()
        }
    };
    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    match a.inv.format {
        Format::Text => print!("\n{}", report::recap(&outcomes, apply.is_some())),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "format_version": 1,
                "command": if apply.is_some() { "apply" } else { "plan" },
                "hosts": outcomes,
            }))
            .unwrap_or_default()
        ),
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
    fn globs() {
        assert!(glob_match("gw*", "gw12"));
        assert!(glob_match("g?1", "gw1"));
        assert!(!glob_match("gw*", "bastion"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
