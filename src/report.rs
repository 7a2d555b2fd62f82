//! What people read: coloured unified plan diffs, summaries, the recap.
use crate::diff::{Change, Sign, View, ViewKind};
use crate::facts::Facts;
use crate::fleet::{Outcome, Progress, Stage};
use crate::model::Gateway;
use crate::render::Rendered;
use console::Style;
use similar::{ChangeTag, TextDiff};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Lines shown per group before eliding (the JSON plan always has everything).
pub const MAX_LINES_PER_GROUP: usize = 60;

/// How much of a plan (or of gathered facts) to show in text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detail {
    /// `-v`: notes on normal conditions, and every line of long groups.
    pub verbose: bool,
    /// `-v`/`--show-files`: the content of generated files, not one line each.
    pub files: bool,
}

/// One group of the plan: `@@ title: +a ~b -c @@` and its lines, long
/// groups cut at [`MAX_LINES_PER_GROUP`] unless `all`.
pub fn view_text(v: &View, all: bool) -> String {
    let head = Style::new().cyan().bold();
    let count = |sign| v.lines.iter().filter(|l| l.sign == sign).count();
    let counts: Vec<String> = [Sign::Add, Sign::Change, Sign::Remove]
        .into_iter()
        .map(|sign| (sign, count(sign)))
        .filter(|(_, n)| *n > 0)
        .map(|(sign, n)| format!("{}{n}", sign.mark()))
        .collect();
    let mut s = format!(
        "{}\n",
        head.apply_to(format!("@@ {}: {} @@", v.title, counts.join(" ")))
    );
    let limit = if all { usize::MAX } else { MAX_LINES_PER_GROUP };
    for l in v.lines.iter().take(limit) {
        let _ = writeln!(
            s,
            "{}",
            sign_style(l.sign).apply_to(format!("{}{}", l.sign.mark(), l.text))
        );
    }
    if v.lines.len() > limit {
        let _ = writeln!(
            s,
            "  … {} more lines (`-v` shows them, `--format json` lists every change)",
            v.lines.len() - limit
        );
    }
    s
}

fn sign_style(sign: Sign) -> Style {
    match sign {
        Sign::Add => Style::new().green(),
        Sign::Change => Style::new().yellow(),
        Sign::Remove => Style::new().red(),
    }
}

/// A file's content as a unified diff (a new file: every line `+`).
fn file_content(from: Option<&str>, to: Option<&str>) -> String {
    let diff = TextDiff::from_lines(from.unwrap_or(""), to.unwrap_or(""));
    let mut s = String::new();
    for group in diff.grouped_ops(2) {
        for op in group {
            for c in diff.iter_changes(&op) {
                let text = c.value().trim_end_matches('\n');
                let _ = match c.tag() {
                    ChangeTag::Delete => {
                        writeln!(s, "    {}", Style::new().red().apply_to(format!("-{text}")))
                    }
                    ChangeTag::Insert => writeln!(
                        s,
                        "    {}",
                        Style::new().green().apply_to(format!("+{text}"))
                    ),
                    ChangeTag::Equal => writeln!(s, "     {text}"),
                };
            }
        }
    }
    s
}

/// The readable plan of one host: warnings and conflicts, then rules,
/// routes and the firewall, sysctls, and the generated files one line each
/// (their content with `detail.files`); `notes` (normal conditions) only
/// with `detail.verbose`. The summary line counts the lines shown.
pub fn host_plan(o: &Outcome, notes: &[String], detail: Detail) -> String {
    let mut s = String::new();
    let bold = Style::new().bold();
    let _ = writeln!(s, "{}", bold.apply_to(format!("── {} ", o.host)));
    let Some(p) = &o.plan else {
        return s;
    };
    for w in &p.warnings {
        let _ = writeln!(s, "{} {w}", Style::new().yellow().apply_to("warning:"));
    }
    for c in &p.diff.conflicts {
        let _ = writeln!(s, "{} {c}", Style::new().red().bold().apply_to("conflict:"));
    }
    for i in &p.diff.dynamic {
        let _ = writeln!(s, "{} {i}", Style::new().cyan().apply_to("info:"));
    }
    if detail.verbose {
        for n in notes {
            let _ = writeln!(s, "{} {n}", Style::new().dim().apply_to("note:"));
        }
    }
    for v in &p.views {
        if v.kind == ViewKind::Files && detail.files {
            s.push_str(&view_text(v, true));
            let mut files: Vec<(&String, Option<&str>, Option<&str>)> = p
                .diff
                .changes
                .iter()
                .filter_map(|c| match c {
                    Change::File { path, from, to } => Some((path, from.as_deref(), to.as_deref())),
                    _ => None,
                })
                .collect();
            files.sort();
            for (path, from, to) in files {
                let _ = writeln!(
                    s,
                    "  {}",
                    Style::new().cyan().apply_to(format!("==> {path}"))
                );
                s.push_str(&file_content(from, to));
            }
        } else {
            s.push_str(&view_text(v, detail.verbose));
        }
    }
    if !p.diff.hand_made.is_empty() {
        s.push_str(&hand_made_text(&p.diff.hand_made, &p.facts.state));
    }
    let verb = if p.summary.is_empty() {
        "no changes"
    } else {
        "changes"
    };
    let taken = match p.diff.hand_made.len() {
        0 => String::new(),
        n => format!(", {n} hand-made to take over (apply --adopt)"),
    };
    let _ = writeln!(s, "{}: {verb} {}{taken}", o.host, p.summary);
    s
}

/// The hand-made objects dwprov's would duplicate: what `apply --adopt`
/// removes (and its revert puts back).
pub fn hand_made_text(objects: &[crate::takeover::HandMade], live: &crate::state::State) -> String {
    use crate::takeover::HandMade;
    let names = |t: u32| live.rt_tables.label(t);
    let mut s = format!(
        "  {}\n",
        Style::new().bold().apply_to(format!(
            "hand-made, replaced by dwprov's ({}): apply --adopt removes them after dwprov's are in place",
            objects.len()
        ))
    );
    for o in objects {
        let text = match o {
            HandMade::Rule { rule } => format!("ip rule {}", crate::diff::rule_text(rule, &names)),
            HandMade::Route { route } => format!(
                "ip route {} table {}",
                crate::diff::route_text(route),
                names(route.table)
            ),
            HandMade::Iptables {
                table, chain, rule, ..
            } => {
                format!("iptables -t {table} -A {chain} {rule}")
            }
            HandMade::RtTable { id, name } => {
                format!(
                    "rt_tables {id} {name} (in {})",
                    crate::takeover::RT_TABLES_FILE
                )
            }
        };
        let _ = writeln!(
            s,
            "    {}",
            Style::new().red().apply_to(format!("- {text}"))
        );
    }
    s
}

/// `dwprov render` text: warnings, notes, then every artefact.
pub fn rendered_text(r: &Rendered, notes: &[String]) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_rendered(&mut out, r, notes);
    String::from_utf8(out).unwrap_or_default()
}

/// [`rendered_text`] written to `w` as it goes: a big route list is not
/// copied into one more string before it is printed.
pub fn write_rendered(
    w: &mut dyn std::io::Write,
    r: &Rendered,
    notes: &[String],
) -> std::io::Result<()> {
    writeln!(
        w,
        "{}",
        Style::new().bold().apply_to(format!("── {}", r.host))
    )?;
    for warning in &r.warnings {
        writeln!(
            w,
            "{} {warning}",
            Style::new().yellow().apply_to("warning:")
        )?;
    }
    for n in notes {
        writeln!(w, "{} {n}", Style::new().dim().apply_to("note:"))?;
    }
    for (name, text) in &r.artefacts {
        writeln!(w, "{}", Style::new().cyan().apply_to(format!("==> {name}")))?;
        w.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            w.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// `dwprov render --overlaps`: every prefix listed for more than one line
/// of a gateway, and the line that routes it (the first in `lines:` that
/// lists it; the later ones skip it).
pub fn overlaps_text(gw: &Gateway) -> String {
    let mut first: HashMap<ipnet::IpNet, &str> = HashMap::new();
    let mut s = String::new();
    let mut n = 0;
    for l in &gw.lines {
        for p in &l.routes {
            match first.get(p) {
                None => {
                    first.insert(*p, &l.name);
                }
                Some(winner) if *winner != l.name.as_str() => {
                    n += 1;
                    let _ = writeln!(s, "{p}\tline {} also lists it; routed via {winner}", l.name);
                }
                Some(_) => {}
            }
        }
    }
    format!(
        "── {}: {n} prefix(es) listed for more than one line (the first line listing a prefix routes it)\n{s}",
        gw.host
    )
}

/// `dwprov gather` text: the typed live state in the tools' own spelling,
/// with table names and `proto dwprov` on dwprov's rules and routes, as in
/// plans ([`crate::diff::rule_text`], [`crate::diff::route_text`]).
pub fn facts_text(f: &Facts, detail: Detail) -> String {
    let mut s = String::new();
    let names = crate::diff::table_names(&[&f.state]);
    let names = |id: u32| names.label(id);
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
    let own = crate::ownership::RT_TABLES_CONF;
    if let Some(Ok(t)) = f
        .state
        .files
        .get(own)
        .map(|text| crate::state::RtTables::parse(text, own))
    {
        for (id, n) in &t.entries {
            let _ = writeln!(s, "  {id}\t{n}  (dwprov: {own})");
        }
    }
    let _ = writeln!(s, "ip rules:");
    for r in &f.state.rules {
        let _ = writeln!(s, "  {}", crate::diff::rule_text(r, &names));
    }
    let mut tables: Vec<u32> = f.state.routes.iter().map(|r| r.table).collect();
    tables.sort();
    tables.dedup();
    for t in tables {
        let _ = writeln!(s, "routes table {}:", names(t));
        for r in f.state.routes.iter().filter(|r| r.table == t) {
            let _ = writeln!(s, "  {}", crate::diff::route_text(r));
        }
    }
    for (tname, table) in &f.state.firewall.iptables.tables {
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
        let _ = writeln!(
            s,
            "file {p}: {} lines, {}",
            c.lines().count(),
            crate::diff::file_purpose(p)
        );
        if detail.files {
            for line in c.lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
    }
    s
}

/// One recap line per host, then totals; Ansible-like.
pub fn recap(outcomes: &[Outcome], apply: bool) -> String {
    let mut s = String::new();
    let width = outcomes
        .iter()
        .map(|o| o.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(s, "{}", Style::new().bold().apply_to("RECAP"));
    let (mut ok, mut changed, mut failed, mut skipped) = (0, 0, 0, 0);
    for o in outcomes {
        let n = o.plan.as_ref().map(|p| p.diff.changes.len()).unwrap_or(0);
        let line = match &o.error {
            None if o.skipped => {
                skipped += 1;
                Style::new().magenta().apply_to(format!(
                    "{:width$}  skipped  changes={n} (rollout stopped before its batch)",
                    o.host
                ))
            }
            Some(e) => {
                failed += 1;
                let stage = o.failed_stage.map(|s| s.to_string()).unwrap_or_default();
                Style::new().red().apply_to(format!(
                    "{:width$}  failed   stage={stage} cause={}",
                    o.host,
                    e.class()
                ))
            }
            None if n > 0 => {
                changed += 1;
                let word = if apply { "changed" } else { "pending" };
                Style::new().yellow().apply_to(format!(
                    "{:width$}  {word:8} changes={n} {}",
                    o.host,
                    o.plan
                        .as_ref()
                        .map(|p| p.summary.to_string())
                        .unwrap_or_default()
                ))
            }
            None => {
                ok += 1;
                Style::new()
                    .green()
                    .apply_to(format!("{:width$}  ok       changes=0", o.host))
            }
        };
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "{} host(s): {ok} ok, {changed} {}, {failed} failed, {skipped} skipped",
        outcomes.len(),
        if apply {
            "changed"
        } else {
            "with changes pending"
        }
    );
    for o in outcomes {
        if let Some(e) = &o.error {
            let _ = writeln!(
                s,
                "\n{} {}:\n{e}",
                Style::new().red().bold().apply_to("error on"),
                o.host
            );
        }
    }
    s
}

/// JSON-lines progress events on stdout.
#[derive(Default)]
pub struct JsonEvents(std::sync::Mutex<()>);
impl Progress for JsonEvents {
    fn stage(&self, host: &str, stage: Stage) {
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

/// Progress on stderr: a spinner line per active host on a terminal, plain
/// lines otherwise.
pub struct StderrProgress {
    multi: Option<indicatif::MultiProgress>,
    bars: Mutex<Vec<(String, indicatif::ProgressBar)>>,
    overall: Option<indicatif::ProgressBar>,
}

impl StderrProgress {
    pub fn new(hosts: usize) -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let multi = indicatif::MultiProgress::new();
            let overall = multi.add(indicatif::ProgressBar::new(hosts as u64));
            overall.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} hosts  {elapsed} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            StderrProgress {
                multi: Some(multi),
                bars: Mutex::new(Vec::new()),
                overall: Some(overall),
            }
        } else {
            StderrProgress {
                multi: None,
                bars: Mutex::new(Vec::new()),
                overall: None,
            }
        }
    }
    pub fn clear(&self) {
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

impl Progress for StderrProgress {
    fn stage(&self, host: &str, stage: Stage) {
        let Some(multi) = &self.multi else {
            eprintln!("[{host}] {stage}");
            return;
        };
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        if let Some((_, b)) = bars.iter().find(|(h, _)| h == host) {
            b.set_message(stage.to_string());
            return;
        }
        let b = multi.add(indicatif::ProgressBar::new_spinner());
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix:20} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b.set_prefix(host.to_string());
        b.set_message(stage.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        bars.push((host.to_string(), b));
    }

    fn finished(&self, host: &str, ok: bool) {
        if let Some(o) = &self.overall {
            o.inc(1);
        }
        if self.multi.is_none() {
            eprintln!("[{host}] {}", if ok { "done" } else { "failed" });
            return;
        }
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(i) = bars.iter().position(|(h, _)| h == host) {
                let (_, b) = bars.remove(i);
                b.finish_and_clear();
            }
        }
    }
}
