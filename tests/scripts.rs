//! The repository's own shell (the lab, the benches, the bench's gateway
//! reset, CI) passes `shellcheck -S warning`, as the gateway-side programs
//! do (their test is `gather::tests::gateway_programs_pass_shellcheck`).
//! shellcheck is a Debian package that scripts/install-deps.sh installs; a
//! missing one fails this test.
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
fn the_repository_s_scripts_pass_shellcheck() {
    let mut files = shell_files("scripts");
    files.extend(shell_files("bench"));
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run"));
    assert!(files.len() > 10, "too few scripts found: {files:?}");
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
