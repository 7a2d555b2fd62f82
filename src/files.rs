//! The files kind, in one home: the owned files dwprov renders (rt_tables,
//! sysctl.d, the boot files, the agent's config and units:
//! [`crate::ownership::OWNED_FILES`]), read whole by the gather, compared
//! whole, and read back from a snapshot's copies. Registered as
//! [`crate::kind::Kind::Files`]; converge stages and commits them
//! (`converge::files_part`), the revert copies them back (gateway/kind-files.sh).
use crate::change::Change;
use crate::error::Result;
use crate::fact::FactSection;
use crate::facts::{snapshot_listing, Sections};
use crate::shell::{heredoc, sh_quote};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Owned files by path, with their text.
pub type Files = BTreeMap<String, String>;

/// Its gather section: the list of dwprov's state files; each file's own
/// section (`file PATH`, read whole) follows from gather.sh's `g_files`.
pub const FACT_SECTIONS: &[FactSection] = &[FactSection::helper(
    "state_files",
    "f_state_files",
    "ls $G_STATE_DIR",
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

/// The snapshot's sections of the files (gateway/show.sh's functions):
/// the list and each copy.
/// The kind's gateway-side snapshot and revert steps (`snapshot_files`,
/// `revert_files`), appended to the installed lib.sh by
/// [`crate::kind::gateway_library`].
pub const GATEWAY_SH: &str = include_str!("../gateway/kind-files.sh");

pub const SHOW_SNAPSHOT: &str = "sec files.list \"$S/files.list\"\nshow_files\n";

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

/// The apply's steps for the file changes: each new content staged in a
/// temp file beside its target (a big file that exists as an edit of what
/// is there), then renamed over it in the commit; a file no longer
/// desired removed in the commit.
#[derive(Debug, Default)]
pub struct FileSteps {
    /// Staging, before anything changes (a failure there changes nothing).
    pub stage: String,
    /// The renames and removals, behind the step guard.
    pub commit: String,
    /// The staged temp files, quoted (removed when a later test fails).
    pub staged: Vec<String>,
    pub files: usize,
    pub commands: usize,
}

/// [`FileSteps`] of the `Change::File`s among `changes`; `file_delta`: the
/// host has what a line edit needs (awk, sha256sum).
pub fn apply(changes: &[Change], d: &str, file_delta: bool) -> FileSteps {
    let mut out = FileSteps::default();
    for c in changes {
        if let Change::File { path, from, to } = c {
            out.files += 1;
            let _ = writeln!(out.commit, "step {}", sh_quote(&format!("file {path}")));
            let Some(new) = to else {
                let _ = writeln!(
                    out.commit,
                    "rm -f {} || fail {}",
                    sh_quote(path),
                    sh_quote(&format!("remove {path}"))
                );
                out.commands += 1;
                continue;
            };
            let delta = match from {
                Some(old) if file_delta => file_delta_commands(path, old, new, d),
                _ => None,
            };
            out.commands += if delta.is_some() { 3 } else { 2 };
            out.stage
                .push_str(&delta.unwrap_or_else(|| stage_file(path, new, d)));
            out.commit.push_str(&commit_file(path));
            out.staged.push(sh_quote(&temp_path(path)));
        }
    }
    out
}

/// The temp file a new content of `path` is staged in (same directory, so
/// the rename is atomic).
pub fn temp_path(path: &str) -> String {
    format!("{path}{}", crate::ownership::TEMP_SUFFIX)
}

/// Write `content` to the temp file of `path` (see [`commit_file`]).
pub fn stage_file(path: &str, content: &str, d: &str) -> String {
    let dir = std::path::Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let mut s = format!(
        "[ -d {0} ] || mkdir -p {0} || fail {1}\n",
        sh_quote(&dir),
        sh_quote(&format!("mkdir {dir}"))
    );
    s.push_str(&heredoc(
        &format!("cat > {}", sh_quote(&temp_path(path))),
        &format!("write {path}"),
        d,
        content,
    ));
    s
}

/// Rename the staged temp file over `path`: atomic, readers see the old or
/// the new content.
pub fn commit_file(path: &str) -> String {
    format!(
        "mv -f {} {} || fail {}\n",
        sh_quote(&temp_path(path)),
        sh_quote(path),
        sh_quote(&format!("rename {path}"))
    )
}

/// Files smaller than this go whole: an edit saves little and costs two
/// more programs on the host.
const DELTA_MIN_BYTES: usize = 16 * 1024;

/// Stage the new content `new` of `path` from `old` (its content as
/// gathered) by sending only the changed lines: `K a b` copies old lines
/// a..b, `I n` inserts the next n lines; awk builds the temp file, which is
/// kept only if its SHA-256 is the planned one (the file changed since
/// gather: fail before anything changed). [`commit_file`] renames it. None
/// when whole is about as small.
pub fn file_delta_commands(path: &str, old: &str, new: &str, d: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    if new.len() < DELTA_MIN_BYTES || !old.ends_with('\n') || !new.ends_with('\n') {
        return None;
    }
    let diff = similar::TextDiff::from_lines(old, new);
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    let mut edits = String::new();
    for op in diff.ops() {
        match *op {
            similar::DiffOp::Equal { old_index, len, .. } => {
                let _ = writeln!(edits, "K {} {}", old_index + 1, old_index + len);
            }
            similar::DiffOp::Delete { .. } => {}
            similar::DiffOp::Insert {
                new_index, new_len, ..
            }
            | similar::DiffOp::Replace {
                new_index, new_len, ..
            } => {
                let _ = writeln!(edits, "I {new_len}");
                for l in new_lines.get(new_index..new_index + new_len)? {
                    edits.push_str(l);
                }
            }
        }
    }
    if edits.len() * 2 > new.len() {
        return None;
    }
    let hash: String = Sha256::digest(new.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let q = sh_quote(path);
    let tmp = sh_quote(&temp_path(path));
    let mut s = format!(
        "awk -v old={q} 'n > 0 {{ print; n--; next }} $1 == \"I\" {{ n = $2 + 0; next }} \
         $1 == \"K\" {{ while (ln < $3 + 0) {{ if ((getline l < old) <= 0) exit 2; ln++; if (ln >= $2 + 0) print l }}; next }} \
         {{ exit 2 }}' > {tmp} <<'{d}' || fail {}\n{edits}{d}\n",
        sh_quote(&format!("edit {path}"))
    );
    let _ = writeln!(
        s,
        "h=$(sha256sum < {tmp}) && [ \"${{h%% *}}\" = {hash} ] || {{ rm -f {tmp}; fail {}; }}",
        sh_quote(&format!(
            "{path} changed on the host since it was gathered (its edit does not give the planned content)"
        ))
    );
    Some(s)
}
