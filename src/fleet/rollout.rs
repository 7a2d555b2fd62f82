//! Rollout policy: `--serial` batches, `--max-fail-percent`, the re-check of
//! hosts planned before their batch, and the retry file.
//!
//! Every host is planned before batch 1 ([`super::prepare`]); this
//! module decides in which batches they are converged, which of them are
//! gathered again first, and when the rollout stops.
use super::{Outcome, Prepared, RunOptions};
use crate::error::{Error, Result};
use crate::inventory::Host;
use std::path::{Path, PathBuf};

/// How `apply` rolls out over the prepared hosts.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `--serial`: batch sizes (`1,10%,100%`); None: one batch of every host.
    pub serial: Option<String>,
    /// `--max-fail-percent`: stop when a batch fails more than this.
    pub max_fail_percent: f64,
    /// Re-check batch 1 too: a person answered a prompt first, which may
    /// have taken minutes. Later batches are always re-checked.
    pub recheck_first: bool,
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

/// Apply prepared hosts batch by batch; stop when a batch fails beyond
/// `max_fail_percent`, reporting the rest as skipped.
pub fn rollout(
    hosts: &[Host],
    prepared: Vec<Prepared>,
    policy: &Policy,
    opts: &RunOptions,
) -> Result<Vec<Outcome>> {
    let sizes = batches(prepared.len(), policy.serial.as_deref())?;
    let mut rest = prepared.into_iter();
    let mut outcomes = Vec::new();
    let mut stopped = false;
    for (n, size) in sizes.iter().enumerate() {
        let batch: Vec<Prepared> = rest.by_ref().take(*size).collect();
        if stopped {
            outcomes.extend(batch.into_iter().map(Prepared::skip));
            continue;
        }
        // Batch 1 was just planned, unless a person was asked first (the
        // prompt may have waited minutes). Later batches were planned before
        // the earlier ones rolled out. Such hosts are gathered again and
        // refused as stale when their live state changed in the meantime.
        let recheck = n > 0 || policy.recheck_first;
        if n > 0 {
            test_pause_before_batch(n + 1);
        }
        let results = super::parallel(&batch, opts.forks, |p| {
            hosts
                .iter()
                .find(|h| h.name == p.outcome.host)
                .and_then(|host| super::apply_prepared(host, p, opts, recheck))
        });
        let done: Vec<Outcome> = batch
            .into_iter()
            .zip(results)
            .map(|(p, r)| p.finish(r))
            .collect();
        let failed = done.iter().filter(|o| !o.ok()).count();
        let percent = failed as f64 * 100.0 / done.len().max(1) as f64;
        if failed > 0 && percent > policy.max_fail_percent {
            eprintln!(
                "{} batch {} of {}: {failed} of {} host(s) failed ({percent:.0}% > --max-fail-percent {}): stopping the rollout",
                console::style("stop:").red().bold(),
                n + 1,
                sizes.len(),
                done.len(),
                policy.max_fail_percent
            );
            stopped = true;
        }
        outcomes.extend(done);
    }
    Ok(outcomes)
}

/// `--retry-file`: the failed and skipped hosts, one a line, for `--limit @FILE`.
pub fn write_retry_file(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    let names: String = outcomes
        .iter()
        .filter(|o| !o.ok() || o.skipped)
        .map(|o| format!("{}\n", o.host))
        .collect();
    std::fs::write(path, names).map_err(|e| Error::io(path, e))
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
}
