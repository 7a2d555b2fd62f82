//! Every shell file of the repository passes `shellcheck -S warning`: the
//! gateway-side programs (gateway/, as they are on disk; the scripts
//! composed from them are checked where they are composed, e.g.
//! `safe::tests::gateway_scripts_pass_shellcheck`), the lab, the benches,
//! the bench's gateway reset and CI. shellcheck is a Debian package that
//! scripts/install-deps.sh installs; a missing one fails this test.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `.sh` files of a folder of the repository, sorted.
fn shell_files(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shell_file_passes_shellcheck() {
    let mut files = shell_files("gateway");
    assert!(files.len() > 10, "the gateway programs: {files:?}");
    files.extend(shell_files("scripts"));
    files.extend(shell_files("bench"));
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run"));
    assert!(files.len() > 30, "too few scripts found: {files:?}");
    let out = Command::new("shellcheck")
        .args(["-S", "warning", "-x", "-P", "SCRIPTDIR"])
        .args(&files)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run shellcheck ({e}): run scripts/install-deps.sh (Debian package shellcheck)")
        });
    assert!(
        out.status.success(),
        "shellcheck -S warning {files:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
