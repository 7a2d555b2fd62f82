//! The built-in lab: a dual-line gateway in network namespaces (scripts/lab.sh, embedded).
//!
//! `dwprov lab up|down|status` runs the embedded `scripts/lab.sh` with bash.
//! `up` writes a ready inventory for the lab gateway (`DIR/inventory.yaml`,
//! the seed's topology with the example ISP lists, embedded too) and prints
//! the exact `plan` command to run next, naming this binary.
//! The script and the echo server it starts are written to a private temporary
//! directory for the duration of the call (lab.sh copies the echo server into
//! the lab dir, so the running lab does not depend on that directory), and the
//! script's output is streamed straight to our stdout/stderr.
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// The lab script, as in the repository.
pub const SCRIPT: &str = include_str!("../scripts/lab.sh");
/// The HTTP echo server the lab runs on srv, gw, uctc and ucnc.
pub const ECHO_SERVER: &str = include_str!("../scripts/echo_server.py");
/// Sourced by the lab script (wait_for, teardown), next to it.
pub const LAB_LIB: &str = include_str!("../scripts/lab-lib.sh");
/// The example ISP lists the ready lab inventory routes (`lab up` copies
/// them into the lab dir): the binary's lab works without the repository.
pub const ISP_LISTS: &[(&str, &str)] = &[
    ("chinanet.txt", include_str!("../examples/isp/chinanet.txt")),
    (
        "unicom-only.txt",
        include_str!("../examples/isp/unicom-only.txt"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabAction {
    Up,
    Down,
    Status,
}

impl LabAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LabAction::Up => "up",
            LabAction::Down => "down",
            LabAction::Status => "status",
        }
    }
}

impl fmt::Display for LabAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs `lab.sh --prefix PREFIX --dir DIR ACTION`, streaming its output.
///
/// Needs root (network namespaces, mounts). `Status` fails when the lab is not
/// fully up, after printing what it found.
pub fn run(action: LabAction, prefix: &str, dir: &Path) -> Result<()> {
    let scripts = ScriptDir::create()?;
    let dwprov = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("dwprov"));
    let status = Command::new("bash")
        .arg(&scripts.script)
        .arg("--prefix")
        .arg(prefix)
        .arg("--dir")
        .arg(dir)
        .arg(action.as_str())
        .env("DWLAB_ECHO_SERVER", &scripts.echo_server)
        .env("DWLAB_ISP_DIR", &scripts.isp)
        // The hints name this binary and its own `lab` command, not a
        // lab.sh the user may not have.
        .env("DWLAB_DWPROV", &dwprov)
        .env("DWLAB_CALLER", format!("{} lab", dwprov.display()))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::io("bash", e))?;
    if status.success() {
        return Ok(());
    }
    match (action, status.code()) {
        (LabAction::Status, Some(crate::error::exit::LAB_NOT_UP)) => Err(Error::Invalid {
            message: format!("lab '{prefix}' is not up"),
            hint: Some(format!("dwprov lab up --prefix {prefix}")),
        }),
        (_, Some(code)) => Err(Error::invalid(format!(
            "lab {action} (prefix '{prefix}', dir {}) failed with exit status {code}",
            dir.display()
        ))),
        (_, None) => Err(Error::invalid(format!(
            "lab {action} (prefix '{prefix}') was killed by a signal"
        ))),
    }
}

/// A 0700 temporary directory holding the embedded files; removed on drop.
struct ScriptDir {
    path: PathBuf,
    script: PathBuf,
    echo_server: PathBuf,
    /// The ISP lists ([`ISP_LISTS`]).
    isp: PathBuf,
}

impl ScriptDir {
    fn create() -> Result<ScriptDir> {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random)
            .map_err(|e| Error::invalid(format!("no randomness for a temporary name: {e}")))?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("dwprov-lab-script-{name}"));
        create_private_dir(&path)?;
        let dir = ScriptDir {
            script: path.join("lab.sh"),
            echo_server: path.join("echo_server.py"),
            isp: path.join("isp"),
            path,
        };
        fs::create_dir(&dir.isp).map_err(|e| Error::io(&dir.isp, e))?;
        for (name, text) in ISP_LISTS {
            write_file(&dir.isp.join(name), text)?;
        }
        write_file(&dir.script, SCRIPT)?;
        write_file(&dir.echo_server, ECHO_SERVER)?;
        write_file(&dir.path.join("lab-lib.sh"), LAB_LIB)?;
        Ok(dir)
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // create (not create_all): fails if the name already exists, so nobody can
    // have prepared it for us in the shared temp dir.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(path, e))
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> Result<()> {
    fs::create_dir(path).map_err(|e| Error::io(path, e))
}

fn write_file(path: &Path, content: &str) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(content.as_bytes())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_the_scripts() {
        assert!(SCRIPT.starts_with("#!/usr/bin/env bash"));
        assert!(SCRIPT.contains("DWLAB_ECHO_SERVER"));
        assert!(ECHO_SERVER.contains("peer={peer} local={local}"));
    }

    #[test]
    fn script_dir_holds_both_files_and_is_removed() {
        let dir = ScriptDir::create().unwrap();
        let path = dir.path.clone();
        assert_eq!(fs::read_to_string(&dir.script).unwrap(), SCRIPT);
        assert_eq!(fs::read_to_string(&dir.echo_server).unwrap(), ECHO_SERVER);
        assert_eq!(
            fs::read_to_string(dir.isp.join("unicom-only.txt")).unwrap(),
            ISP_LISTS[1].1
        );
        assert!(SCRIPT.contains("DWLAB_ISP_DIR") && SCRIPT.contains("unicom-only.txt"));
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn action_names_match_the_script() {
        for action in [LabAction::Up, LabAction::Down, LabAction::Status] {
            assert!(SCRIPT.contains(&format!("{action})")), "{action}");
        }
    }
}
