//! What people read: coloured unified plan diffs, summaries, the recap.
use crate::diff::View;
use crate::fleet::{Outcome, Progress, Stage};
use console::Style;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write as _;
use std::sync::Mutex;

/// Lines shown per group before eliding (the JSON plan always has everything).
pub const MAX_LINES_PER_GROUP: usize = 60;

/// A unified diff of one view, coloured when `console` colours are on.
pub fn view_diff(v: &View) -> String {
    let old: Vec<&str> = v.old.iter().map(String::as_str).collect();
    let new: Vec<&str> = v.new.iter().map(String::as_str).collect();
    let diff = TextDiff::from_slices(&old, &new);
    let (del, add, head) = (
        Style::new().red(),
        Style::new().green(),
        Style::new().cyan().bold(),
    );
    let mut s = format!("{}\n", head.apply_to(format!("@@ {} @@", v.title)));
    let mut shown = 0usize;
    let mut hidden = 0usize;
    for group in diff.grouped_ops(2) {
        for op in group {
            for c in diff.iter_changes(&op) {
                if shown >= MAX_LINES_PER_GROUP {
                    if c.tag() != ChangeTag::Equal {
                        hidden += 1;
                    }
                    continue;
                }
                shown += 1;
                let text = c.value();
                let _ = match c.tag() {
                    ChangeTag::Delete => writeln!(s, "{}", del.apply_to(format!("-{text}"))),
                    ChangeTag::Insert => writeln!(s, "{}", add.apply_to(format!("+{text}"))),
                    ChangeTag::Equal => writeln!(s, " {text}"),
                };
            }
        }
    }
    if hidden > 0 {
        let _ = writeln!(
            s,
            "  … {hidden} more changed lines (`--format json` lists all)"
        );
    }
    s
}

/// The readable plan of one host.
pub fn host_plan(o: &Outcome) -> String {
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
    for v in &p.views {
        s.push_str(&view_diff(v));
    }
    let verb = if p.summary.is_empty() {
        "no changes"
    } else {
        "changes"
    };
    let _ = writeln!(s, "{}: {verb} {}", o.host, p.summary);
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
