//! `dwprov rollback`, the command: for each host list its snapshots, or show
//! the typed plan of rolling back (through `report`), ask, and run
//! `safe`'s rollback script. It sits above `safe` (which builds and reads
//! the gateway-side programs) and `report` (which prints), so neither needs
//! the other.
use crate::safe;

/// What `dwprov rollback` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    /// Snapshot id (None: the newest).
    pub to: Option<String>,
    /// List the snapshots instead.
    pub list: bool,
    /// Do not ask.
    pub yes: bool,
}

/// `dwprov rollback` over `hosts`: list their snapshots, or show what
/// rolling back changes, ask (unless `yes`), and roll back. Returns how
/// many hosts failed; each host's failure is reported as it happens.
pub fn rollback_hosts(
    hosts: &[crate::inventory::Host],
    req: &RollbackRequest,
    opts: &crate::transport::ConnectOptions,
) -> crate::error::Result<usize> {
    if let Some(id) = &req.to {
        if !safe::valid_id(id) {
            return Err(crate::error::Error::invalid(format!(
                "--to {id}: not a snapshot id (see `dwprov rollback --list`)"
            )));
        }
    }
    let error = |msg: &dyn std::fmt::Display| {
        eprintln!("{} {msg}", console::style("error:").red().bold());
    };
    let mut failed = 0;
    for h in hosts {
        let r = (|| -> crate::error::Result<bool> {
            let mut t = crate::transport::connect(&h.connection, &h.name, opts)?;
            if req.list {
                let o = t.run_script(&safe::list_script())?;
                for line in o.stdout_str().lines() {
                    println!("{}: {line}", h.name);
                }
                return Ok(o.status == 0);
            }
            let bold = console::Style::new().bold();
            println!("{}", bold.apply_to(format!("── {} ", h.name)));
            match safe::rollback_plan(t.as_mut(), req.to.as_deref()) {
                Ok((id, diff, views)) => {
                    for v in &views {
                        print!("{}", crate::report::view_text(v, false));
                    }
                    let summary = crate::diff::Summary::of(&diff.changes);
                    println!("rollback of {} to snapshot {id}: {summary}", h.name);
                    if summary.is_empty() {
                        println!("{}: dwprov's objects are as snapshot {id} has them: nothing to roll back", h.name);
                        return Ok(true);
                    }
                }
                // An unreadable snapshot (an older dwprov's) can still be
                // rolled back to; say that its changes cannot be shown.
                Err(e) => eprintln!("{}: cannot show what the rollback changes: {e}", h.name),
            }
            if !confirm_rollback(&h.name, req)? {
                eprintln!("{}: not rolled back", h.name);
                return Ok(true);
            }
            let o = t.run_script(&safe::rollback_script(req.to.as_deref()))?;
            if o.status != 0 {
                error(&format_args!("{}: {}", h.name, o.stderr_str().trim()));
                return Ok(false);
            }
            for line in o.stdout_str().lines() {
                println!("{}: {line}", h.name);
            }
            Ok(true)
        })();
        match r {
            Ok(true) => {}
            Ok(false) => failed += 1,
            Err(e) => {
                failed += 1;
                error(&e);
            }
        }
    }
    Ok(failed)
}

/// Ask before rolling `host` back; refuse when nobody can answer.
fn confirm_rollback(host: &str, req: &RollbackRequest) -> crate::error::Result<bool> {
    use std::io::{IsTerminal, Write};
    if req.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(crate::error::Error::Invalid {
            message: "refusing to roll back without --yes: stdin is not a terminal".into(),
            hint: Some("review what the rollback changes, then run again with --yes".into()),
        });
    }
    eprint!(
        "Roll {host} back to snapshot {}? [y/N] ",
        req.to.as_deref().unwrap_or("(the newest)")
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| crate::error::Error::io("stdin", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
