//! One error type for the library; the binary maps it to exit codes.
use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place in a file the user wrote (inventory, routes file, template).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Shared: every YAML node carries a location, and a PathBuf each cost
    /// an allocation per value of a 50 MB inventory.
    #[serde(serialize_with = "path_str")]
    pub file: std::sync::Arc<std::path::Path>,
    pub line: usize,
    pub column: usize,
}

fn path_str<S: serde::Serializer>(
    p: &std::sync::Arc<std::path::Path>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column > 0 {
            write!(f, "{}:{}:{}", file_name(&self.file), self.line, self.column)
        } else {
            write!(f, "{}:{}", file_name(&self.file), self.line)
        }
    }
}

/// Why a connection failed; shown in the recap and used to group errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    Connect,
    Timeout,
    HostKey,
    Auth,
    Sudo,
    Channel,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connect",
            TransportKind::Timeout => "timeout",
            TransportKind::HostKey => "host key",
            TransportKind::Auth => "auth",
            TransportKind::Sudo => "sudo",
            TransportKind::Channel => "channel",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input at a known place: inventory, routes file.
    #[error("{location}: {}{}", controls(.message), hint_suffix(.hint))]
    Input {
        location: Location,
        message: String,
        hint: Option<String>,
    },
    /// Bad user input without a better place than a file (or none at all).
    #[error("{}{}", controls_but_newlines(.message), hint_suffix(.hint))]
    Invalid {
        message: String,
        hint: Option<String>,
    },
    /// A template failed to parse or render.
    #[error("template {name}{}: {}", .line.map(|l| format!(" line {l}")).unwrap_or_default(), controls(.message))]
    Template {
        name: String,
        line: Option<usize>,
        message: String,
    },
    /// Text from a host (or a rendered artefact) that a parser could not read.
    #[error("{what}, line {line}: {}", controls(.message))]
    Parse {
        what: String,
        line: usize,
        message: String,
    },
    #[error("{host}: {kind}: {message}")]
    Transport {
        host: String,
        kind: TransportKind,
        message: String,
    },
    /// A remote command ran and failed.
    #[error("{host}: {what} failed (exit {status}): {stderr}")]
    Remote {
        host: String,
        what: String,
        status: i32,
        stderr: String,
    },
    /// After converging, the live state still differs from the desired one.
    #[error("{host}: verification found {} object(s) not as desired:\n  {}", .residue.len(), .residue.join("\n  "))]
    Verify { host: String, residue: Vec<String> },
    /// Refused before changing anything: the host's live state is no longer
    /// the one its plan was made from (a saved plan, or a host of a later
    /// `--serial` batch re-gathered just before its batch).
    #[error("{host}: stale plan: {message}{}", hint_suffix(.hint))]
    Stale {
        host: String,
        message: String,
        hint: Option<String>,
    },
    /// Several independent errors found in one pass (e.g. one per host).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Multiple(Vec<Error>),
    /// An apply that did not complete, and what became of the gateway:
    /// reverted already, or reverting itself when its timer fires.
    #[error("{cause}\n  {}", if *.pending { format!("the gateway reverts itself to snapshot {snapshot} within {seconds} s (commit-confirmed apply)") } else { format!("the gateway was reverted to snapshot {snapshot}") })]
    Reverted {
        snapshot: String,
        seconds: u64,
        /// true: the revert timer is still armed; false: reverted already.
        pending: bool,
        cause: Box<Error>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// User text in messages is escaped when shown (see `crate::escape`): a
/// safety net for values a call site did not pass through `escape::value`.
fn controls(s: &str) -> String {
    crate::escape::controls(s)
}

/// For messages that list problems on their own lines (`\n  - `).
fn controls_but_newlines(s: &str) -> String {
    s.split('\n').map(controls).collect::<Vec<_>>().join("\n")
}

fn file_name(p: &std::path::Path) -> String {
    crate::escape::controls(&p.display().to_string())
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {}", controls(h)),
        None => String::new(),
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
            hint: None,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn parse(what: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        Error::Parse {
            what: what.into(),
            line,
            message: message.into(),
        }
    }

    /// A short class name for recaps and JSON ("auth", "host key", "verify", ...).
    pub fn class(&self) -> String {
        match self {
            Error::Input { .. } | Error::Invalid { .. } => "input".into(),
            Error::Template { .. } => "template".into(),
            Error::Parse { .. } => "parse".into(),
            Error::Transport { kind, .. } => kind.to_string(),
            Error::Remote { .. } => "command failed".into(),
            Error::Verify { .. } => "verification residue".into(),
            Error::Stale { .. } => "stale plan".into(),
            Error::Io { .. } => "io".into(),
            Error::Reverted { cause, .. } => cause.class(),
            Error::Multiple(errs) => errs
                .first()
                .map(Error::class)
                .unwrap_or_else(|| "input".into()),
        }
    }
}

/// Every exit status dwprov decides, named in one place: the binary's
/// (what a CI gate on `dwprov plan` reads, Terraform's `-detailed-exitcode`
/// convention) and the gateway scripts' (how the controller tells a step
/// that failed and reverted from one that changed nothing).
pub mod exit {
    /// Success; for `plan`: nothing to do.
    pub const OK: i32 = 0;
    /// Any error, usage errors included (a mistyped command, a missing
    /// `-i`, an unknown `--format`): never 2, so a CI gate on `plan` does
    /// not read a typo as "changes pending".
    pub const ERROR: i32 = 1;
    /// `plan` only: changes are pending.
    pub const CHANGES: i32 = 2;

    /// Gateway side: an apply step failed (stderr names it); the script
    /// reverted what it had done. `converge::STEP_FAILED` still holds its
    /// own copy (to become `pub use crate::error::exit::STEP_FAILED`); a
    /// test keeps the two equal. Named here, not imported from there: the
    /// error module stays at the bottom of the import graph.
    pub const STEP_FAILED: i32 = 3;
    /// Gateway side: the apply script stopped before changing anything
    /// (`safe::NOTHING_CHANGED`, likewise).
    pub const NOTHING_CHANGED: i32 = 4;
    /// Gateway side: a tool is missing (the shell's "command not found";
    /// gather reports a gateway without `ip` with it).
    pub const TOOL_MISSING: i32 = 127;

    /// `scripts/lab.sh status`: the lab is not (fully) up.
    pub const LAB_NOT_UP: i32 = 3;
}

impl Error {
    /// The binary's exit status for this error, decided here and nowhere
    /// else. Every error is [`exit::ERROR`]; the match is exhaustive so a
    /// new variant has to decide.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. }
            | Error::Invalid { .. }
            | Error::Template { .. }
            | Error::Parse { .. }
            | Error::Transport { .. }
            | Error::Remote { .. }
            | Error::Verify { .. }
            | Error::Stale { .. }
            | Error::Multiple(_)
            | Error::Reverted { .. }
            | Error::Io { .. } => exit::ERROR,
        }
    }
}

#[cfg(test)]
mod exit_tests {
    use super::*;

    #[test]
    fn the_gateway_statuses_are_the_scripts_own() {
        assert_eq!(exit::STEP_FAILED, crate::converge::STEP_FAILED);
        assert_eq!(exit::NOTHING_CHANGED, crate::safe::NOTHING_CHANGED);
        let all = [
            exit::OK,
            exit::ERROR,
            exit::CHANGES,
            exit::STEP_FAILED,
            exit::NOTHING_CHANGED,
        ];
        let mut distinct = all.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
    }

    #[test]
    fn every_error_exits_1() {
        let e = Error::invalid("x");
        assert_eq!(e.exit_code(), exit::ERROR);
        assert_eq!(Error::Multiple(vec![e]).exit_code(), exit::ERROR);
    }
}
