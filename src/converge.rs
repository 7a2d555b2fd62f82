//! Turn a diff into one remote script and run it.
//!
//! One script, one round trip: files are written atomically (temp + rename),
//! sysctls set live, every rule and route change goes through one
//! `ip -batch -` stream, and every iptables table through
//! `iptables-restore --noflush` (tested first with `--test`, so a bad payload
//! changes nothing). Payloads travel as heredocs with an unguessable
//! delimiter; nothing is quoted into a command line.
use crate::diff::{Change, Op};
use crate::error::{Error, Result};
use crate::transport::Transport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Exit status the script uses for "a step failed"; stderr names the step.
pub const STEP_FAILED: i32 = 3;

/// What will be sent, with figures for benchmarks and the plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyScript {
    pub script: String,
    /// Lines of the `ip -batch` stream.
    pub ip_lines: usize,
    /// Lines of iptables-restore payloads.
    pub iptables_lines: usize,
    /// Files written or removed.
    pub files: usize,
    /// Remote programs the script runs (ip -batch and iptables-restore count once each).
    pub commands: usize,
}

/// The `ip -batch` lines for these changes, ordered so traffic always has a
/// route: routes are added/replaced first, then rules added, then rules
/// removed, then routes removed.
pub fn ip_batch(changes: &[Change]) -> String {
    let mut add_routes = String::new();
    let mut add_rules = String::new();
    let mut del_rules = String::new();
    let mut del_routes = String::new();
    for c in changes {
        match c {
            Change::Route { to: Some(r), .. } => {
                let _ = writeln!(add_routes, "route replace {}", r.to_batch());
            }
            Change::Route {
                from: Some(r),
                to: None,
            } => {
                let _ = writeln!(del_routes, "route del {}", r.to_batch());
            }
            Change::Rule { op: Op::Add, rule } => {
                let _ = writeln!(add_rules, "rule add {}", rule.to_batch());
            }
            Change::Rule {
                op: Op::Remove,
                rule,
            } => {
                let _ = writeln!(del_rules, "rule del {}", rule.to_batch());
            }
            _ => {}
        }
    }
    add_routes + &add_rules + &del_rules + &del_routes
}

/// iptables-restore payloads per table for these changes.
pub fn iptables_payloads(changes: &[Change]) -> BTreeMap<String, String> {
    #[derive(Default)]
    struct T {
        declare: String,
        rules: String,
        jumps_add: String,
        jumps_del: String,
        delete: String,
    }
    let mut tables: BTreeMap<String, T> = BTreeMap::new();
    for c in changes {
        match c {
            Change::Chain {
                table, chain, to, ..
            } => {
                let t = tables.entry(table.clone()).or_default();
                // `:CHAIN - [0:0]` creates the chain or flushes it: with
                // --noflush, nothing else in the table is touched.
                let _ = writeln!(t.declare, ":{chain} - [0:0]");
                match to {
                    Some(rules) => {
                        for r in rules {
                            let _ = writeln!(t.rules, "-A {chain} {r}");
                        }
                    }
                    None => {
                        let _ = writeln!(t.delete, "-X {chain}");
                    }
                }
            }
            Change::Jump {
                table,
                chain,
                op,
                rule,
            } => {
                let t = tables.entry(table.clone()).or_default();
                match op {
                    // First in the chain, so foreign rules cannot pre-empt ours.
                    Op::Add => {
                        let _ = writeln!(t.jumps_add, "-I {chain} 1 {rule}");
                    }
                    Op::Remove => {
                        let _ = writeln!(t.jumps_del, "-D {chain} {rule}");
                    }
                }
            }
            _ => {}
        }
    }
    tables
        .into_iter()
        .map(|(name, t)| {
            (
                name.clone(),
                format!(
                    "*{name}\n{}{}{}{}{}COMMIT\n",
                    t.declare, t.rules, t.jumps_add, t.jumps_del, t.delete
                ),
            )
        })
        .collect()
}

/// `cmd` fed `payload` as a heredoc with delimiter `d` (random, so never
/// inside the payload); on failure the script stops naming `what`.
pub fn heredoc(cmd: &str, what: &str, d: &str, payload: &str) -> String {
    let mut s = format!("{cmd} <<'{d}' || fail {}\n{payload}", sh_quote(what));
    if !payload.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(d);
    s.push('\n');
    s
}

/// Shell single-quoting for paths and values that are already validated.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell prelude every dwprov script starts with.
pub fn prelude() -> String {
    format!(
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export LC_ALL=C\n\
         fail() {{ echo \"dwprov: $1\" >&2; exit {STEP_FAILED}; }}\numask 022\n"
    )
}

/// A fresh heredoc delimiter.
pub fn delimiter() -> String {
    crate::gather::marker().replace('-', "_").to_uppercase()
}

/// Build the script that applies `changes` (no snapshot, no revert).
pub fn script(changes: &[Change]) -> ApplyScript {
    let mut out = ApplyScript::default();
    let body = body(changes, &delimiter(), &mut out);
    out.script = format!("{}{body}exit 0\n", prelude());
    out
}

/// The commands that apply `changes`, counting what they send into `out`.
pub fn body(changes: &[Change], d: &str, out: &mut ApplyScript) -> String {
    let mut s = String::new();
    // Files: temp file in the same directory, then rename over the target.
    for c in changes {
        if let Change::File { path, to, .. } = c {
            out.files += 1;
            s.push_str(&file_commands(path, to.as_deref(), d));
            out.commands += if to.is_some() { 3 } else { 1 };
        }
    }
    // Sysctls: straight to /proc/sys (the key is its path there).
    for c in changes {
        if let Change::Sysctl { key, to, .. } = c {
            s.push_str(&sysctl_command(key, to));
            out.commands += 1;
        }
    }
    // Rules and routes: one ip -batch stream.
    let batch = ip_batch(changes);
    if !batch.is_empty() {
        out.ip_lines = batch.lines().count();
        s.push_str(&heredoc("ip -4 -batch -", "ip -batch", d, &batch));
        out.commands += 1;
    }
    // iptables: every table in one payload (each COMMIT is atomic for its
    // table), tested first so a bad payload changes nothing, then loaded.
    let payloads = iptables_payloads(changes);
    if !payloads.is_empty() {
        let all: String = payloads.values().map(String::as_str).collect();
        let tables: Vec<&str> = payloads.keys().map(String::as_str).collect();
        out.iptables_lines += all.lines().count();
        s.push_str(&heredoc(
            "iptables-restore --noflush --test",
            &format!("iptables-restore --test (tables {})", tables.join(", ")),
            d,
            &all,
        ));
        s.push_str(&heredoc(
            "iptables-restore --noflush",
            &format!("iptables-restore (tables {})", tables.join(", ")),
            d,
            &all,
        ));
        out.commands += 2;
    }
    // Boot files written above: enable units, start the flush loop (src/boot.rs).
    let post = crate::boot::post_install(changes);
    s.push_str(&post.script);
    out.commands += post.commands;
    s
}

/// Write `content` to `path` atomically (temp file + rename), or remove it.
pub fn file_commands(path: &str, content: Option<&str>, d: &str) -> String {
    let q = sh_quote(path);
    match content {
        Some(content) => {
            let dir = std::path::Path::new(path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            let tmp = format!("{path}.dwprov-tmp");
            let mut s = format!(
                "mkdir -p {} || fail {}\n",
                sh_quote(&dir),
                sh_quote(&format!("mkdir {dir}"))
            );
            s.push_str(&heredoc(
                &format!("cat > {}", sh_quote(&tmp)),
                &format!("write {path}"),
                d,
                content,
            ));
            s.push_str(&format!(
                "mv -f {} {q} || fail {}\n",
                sh_quote(&tmp),
                sh_quote(&format!("rename {path}"))
            ));
            s
        }
        None => format!(
            "rm -f {q} || fail {}\n",
            sh_quote(&format!("remove {path}"))
        ),
    }
}

/// Set a sysctl live (its key is its path under /proc/sys).
pub fn sysctl_command(key: &str, value: &str) -> String {
    let p = format!("/proc/sys/{key}");
    format!(
        "printf '%s\\n' {} > {} || fail {}\n",
        sh_quote(value),
        sh_quote(&p),
        sh_quote(&format!("sysctl {key}"))
    )
}

/// Run the script on the host.
pub fn execute(t: &mut dyn Transport, script: &ApplyScript) -> Result<()> {
    let out = t.run_script(&script.script)?;
    if out.status != 0 {
        return Err(Error::Remote {
            host: t.host().to_string(),
            what: "apply".into(),
            status: out.status,
            stderr: out.stderr_str().trim().to_string(),
        });
    }
    Ok(())
}

/// Describe changes that are still pending after an apply (verification residue).
pub fn describe(c: &Change) -> String {
    match c {
        Change::File { path, .. } => format!("file {path}"),
        Change::Sysctl { key, to, from } => format!(
            "sysctl {key} is {} not {to}",
            from.as_deref().unwrap_or("unset")
        ),
        Change::Rule { op, rule } => format!("rule {op:?}: {}", rule.to_batch()),
        Change::Route { from, to } => format!(
            "route {}",
            to.as_ref()
                .or(from.as_ref())
                .map(|r| r.to_batch())
                .unwrap_or_default()
        ),
        Change::Chain { table, chain, .. } => format!("iptables {table} chain {chain}"),
        Change::Jump {
            table, chain, rule, ..
        } => format!("iptables {table} {chain}: {rule}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ip::parse_batch;
    use crate::state::RtTables;

    #[test]
    fn batch_orders_adds_before_removes() {
        let b = parse_batch(
            "route add 10.0.0.0/8 via 1.2.3.1 dev eth1 proto 201\nrule add priority 1100 fwmark 0x100 lookup 100 protocol 201",
            "t",
            &RtTables::default(),
        )
        .unwrap();
        let changes = vec![
            Change::Rule {
                op: Op::Remove,
                rule: b.rules[0].clone(),
            },
            Change::Route {
                from: Some(b.routes[0].clone()),
                to: None,
            },
            Change::Rule {
                op: Op::Add,
                rule: b.rules[0].clone(),
            },
            Change::Route {
                from: None,
                to: Some(b.routes[0].clone()),
            },
        ];
        let text = ip_batch(&changes);
        let verbs: Vec<_> = text
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            verbs,
            ["route replace", "rule add", "rule del", "route del"]
        );
    }

    #[test]
    fn no_changes_no_commands() {
        let s = script(&[]);
        assert_eq!(s.commands, 0);
        assert_eq!(s.ip_lines, 0);
    }

    #[test]
    fn script_writes_files_and_stops_at_the_first_failure() {
        // Run the generated script with a fake root: files land where asked,
        // content exact, and a failing step stops everything after it.
        let dir = std::env::temp_dir().join(format!("dwprov-conv-{}", std::process::id()));
        let path = dir.join("a b/x.conf").to_string_lossy().into_owned();
        let changes = vec![Change::File {
            path: path.clone(),
            from: None,
            to: Some("one\n'two' $HOME\n".into()),
        }];
        let s = script(&changes);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&s.script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\n'two' $HOME\n"
        );
        let bad = format!("false <<'X' || fail 'step one'\nX\n{}", s.script);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "fail() {{ echo \"dwprov: $1\" >&2; exit 3; }}\n{bad}"
            ))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(STEP_FAILED));
        assert!(String::from_utf8_lossy(&out.stderr).contains("step one"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting_survives_hostile_text() {
        assert_eq!(sh_quote("a'b"), r#"'a'\''b'"#);
    }
}
