//! The files kind, in one home: the owned files dwprov renders (rt_tables,
//! sysctl.d, the boot files, the agent's config and units:
//! [`crate::ownership::OWNED_FILES`]), read whole by the gather, compared
//! whole, and read back from a snapshot's copies. Registered as
//! [`crate::kind::Kind::Files`]; converge stages and commits them
//! (`converge::files_part`), the revert copies them back (gateway/revert.sh).
use crate::change::Change;
use crate::error::Result;
use crate::fact::FactSection;
use crate::facts::{snapshot_listing, Sections};
use std::collections::{BTreeMap, BTreeSet};

/// Owned files by path, with their text.
pub type Files = BTreeMap<String, String>;

/// Its gather section: the list of dwprov's state files; each file's own
/// section (`file PATH`, read whole) follows from gather.sh's `g_files`.
pub const FACT_SECTIONS: &[FactSection] = &[FactSection::helper(
    "state_files",
    "f_state_files",
    "ls of dwprov's state dir",
)];

/// Desired files against live ones: a file that differs is rewritten
/// whole, a live owned file no longer desired is removed.
pub fn diff(desired: &Files, live: &Files, changes: &mut Vec<Change>) {
    for (path, want) in desired {
        let have = live.get(path);
        if have != Some(want) {
            changes.push(Change::File {
                path: path.clone(),
                from: have.cloned(),
                to: Some(want.clone()),
            });
        }
    }
    for (path, have) in live {
        if !desired.contains_key(path) {
            changes.push(Change::File {
                path: path.clone(),
                from: Some(have.clone()),
                to: None,
            });
        }
    }
}

/// The files as a snapshot copied them (`files.list`: `INDEX present|absent
/// PATH` lines, each present file's text in section `file INDEX`); owned
/// files the snapshot did not cover stay as they are live (the revert
/// leaves them).
pub fn from_snapshot(sections: &Sections, live: &Files) -> Result<Files> {
    let mut files = Files::new();
    let mut covered = BTreeSet::new();
    for l in snapshot_listing(sections, "files.list")?.lines() {
        let mut w = l.splitn(3, ' ');
        let (Some(i), Some(what), Some(path)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        covered.insert(path.to_string());
        if what == "present" {
            let text = snapshot_listing(sections, &format!("file {i}"))?;
            files.insert(path.to_string(), text.to_string());
        }
    }
    for (p, text) in live {
        if !covered.contains(p) {
            files.insert(p.clone(), text.clone());
        }
    }
    Ok(files)
}
