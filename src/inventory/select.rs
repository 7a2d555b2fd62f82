//! Host selection: Ansible-style `--limit` patterns over a loaded inventory.
//!
//! `a,b` (or `a:b`), group names, globs (`gw*`), `!exclusions` and `@file`
//! (one pattern a line, as `--retry-file` writes them). Every command that
//! takes `--limit` selects through [`select`], so they all understand the
//! same patterns.
use super::{Host, Inventory};
use crate::error::{Error, Result};
use std::path::Path;

/// Load the inventory and pick the hosts `limit` selects (all without one).
/// Selecting nothing is an error naming the hosts there are.
pub fn select(inventory: &Path, limit: Option<&str>) -> Result<(Inventory, Vec<Host>)> {
    let inv = super::load(inventory)?;
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

/// The hosts of `inv` that `pattern` selects, in inventory order.
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

/// Drop hosts without gateway intent (bastions, jump hosts), saying so on
/// stderr; an error when none is left. `keep_all` (a saved plan, whose
/// hosts had intent when it was made) keeps every host.
pub fn gateways_only(hosts: Vec<Host>, keep_all: bool) -> Result<Vec<Host>> {
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
        return Err(Error::Invalid {
            message: "none of the selected hosts has gateway intent (method, lan, lines)".into(),
            hint: Some(
                "give the host `lan:` and `lines:` (see examples/seed-*/inventory.yaml), \
                 or --limit the hosts that have them"
                    .into(),
            ),
        });
    }
    Ok(gws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("inv.yaml");
        std::fs::write(
            &p,
            "all:\n  children:\n    bj:\n      hosts:\n        gw1: {address: 10.0.0.1}\n        gw2: {address: 10.0.0.2}\n    sh:\n      hosts:\n        gw3: {address: 10.0.0.3}\n",
        )
        .unwrap();
        p
    }

    fn names(h: &[Host]) -> Vec<&str> {
        h.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn limit_patterns_groups_globs_exclusions_and_files() {
        let dir = std::env::temp_dir().join(format!("dwprov-select-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = inventory(&dir);
        let (inv, all) = select(&p, None).unwrap();
        assert_eq!(names(&all), ["gw1", "gw2", "gw3"]);
        assert_eq!(names(&limit_hosts(&inv, "bj").unwrap()), ["gw1", "gw2"]);
        assert_eq!(
            names(&limit_hosts(&inv, "gw*,!gw2").unwrap()),
            ["gw1", "gw3"]
        );
        let retry = dir.join("retry.txt");
        std::fs::write(&retry, "gw3\n\ngw1\n").unwrap();
        let at = format!("@{}", retry.display());
        assert_eq!(names(&limit_hosts(&inv, &at).unwrap()), ["gw1", "gw3"]);
        let e = select(&p, Some("nope")).unwrap_err().to_string();
        assert!(e.contains("no host") && e.contains("gw1, gw2, gw3"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
