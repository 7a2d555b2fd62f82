//! The test harness itself (tests/common): the `Run` builder's checks fail
//! when they should (a check that cannot fail would make every test built on
//! it unable to fail), with a message that shows the command, its exit
//! status, stdout and stderr; and labs and fleets leave nothing behind, also
//! when their test panicked. The builder tests need nothing; the lab and
//! fleet tests need root.
mod common;

use common::fleet::Fleet;
use common::{Lab, Run};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// `sh -c` a script that writes "out" to stdout, "err" to stderr, exits 3.
fn out_err_3() -> Run {
    Run::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])
}

/// The panic message of `f`, or None if it did not panic.
fn panic_of(f: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

#[test]
fn checks_that_hold_return_the_output() {
    out_err_3().expect_failure().run();
    let out = out_err_3()
        .expect_exit(3)
        .stdout_has("ou")
        .stdout_is("out\n")
        .stdout_lacks("err")
        .stderr_has("err")
        .stderr_lacks("out")
        .run();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    // No check asked for: any status passes, as with Command::output.
    assert_eq!(Run::new("false").run().status.code(), Some(1));
    assert_eq!(Run::new("true").expect_success().stdout(), "");
}

#[test]
fn each_missed_check_fails_showing_command_status_and_output() {
    let cases: Vec<(Run, &str)> = vec![
        (out_err_3().expect_exit(0), "expected: exit 0"),
        (out_err_3().expect_success(), "expected: exit 0"),
        (out_err_3().expect_exit(2), "expected: exit 2"),
        (
            out_err_3().stdout_has("nope"),
            r#"expected: stdout contains "nope""#,
        ),
        (
            out_err_3().stdout_lacks("ut"),
            r#"expected: stdout lacks "ut""#,
        ),
        (
            out_err_3().stdout_is("out"),
            r#"expected: stdout is exactly "out""#,
        ),
        (
            out_err_3().stderr_has("nope"),
            r#"expected: stderr contains "nope""#,
        ),
        (
            out_err_3().stderr_lacks("err"),
            r#"expected: stderr lacks "err""#,
        ),
        (
            out_err_3().expect_exit(3).stdout_has("x").stderr_has("y"),
            r#"expected: stdout contains "x"; stderr contains "y""#,
        ),
    ];
    for (run, expected) in cases {
        let msg = panic_of(|| {
            run.run();
        })
        .unwrap_or_else(|| panic!("no failure for {expected:?}"));
        for part in [
            expected,
            "command: sh -c 'echo out; echo err >&2; exit 3'",
            "got: exit status: 3",
            "--- stdout\nout\n",
            "--- stderr\nerr\n",
        ] {
            assert!(msg.contains(part), "{part:?} missing from:\n{msg}");
        }
    }
}

#[test]
fn exit_checks_tell_success_failure_and_signals_apart() {
    let msg = panic_of(|| {
        Run::new("true").expect_failure().run();
    })
    .expect("success is not a failure");
    assert!(msg.contains("expected: a failure"), "{msg}");
    // Killed by a signal: a failure, and no exit code matches it.
    let killed = || Run::new("sh").args(["-c", "kill -9 $$"]);
    killed().expect_failure().run();
    let msg = panic_of(|| {
        killed().expect_exit(0).run();
    })
    .expect("a signal is not exit 0");
    assert!(msg.contains("signal: 9"), "{msg}");
}

#[test]
fn stdin_env_context_and_json() {
    assert_eq!(Run::new("cat").stdin("hello").stdout(), "hello");
    // Bigger than a pipe buffer, and a command that never reads it: no hang.
    let big = vec![b'x'; 1 << 20];
    assert_eq!(
        Run::new("wc").arg("-c").stdin(big.clone()).stdout(),
        "1048576\n"
    );
    Run::new("true").stdin(big).expect_success().run();
    // Without stdin(..), stdin is closed, not the test's terminal.
    assert_eq!(Run::new("cat").stdout(), "");

    let run = || {
        Run::new("sh")
            .args(["-c", "echo \"$X\"; exit 1"])
            .env("X", "a b")
            .env_remove("Y")
    };
    assert_eq!(run().stdout(), "a b\n");
    let msg = panic_of(|| {
        run().context("on gw009").expect_success().run();
    })
    .expect("exit 1 is not success");
    assert!(
        msg.contains("command: (on gw009) X='a b' (unset Y) sh -c"),
        "{msg}"
    );

    let doc = Run::new("echo").arg(r#"{"a": [1, 2]}"#).json();
    assert_eq!(doc["a"][1], 2);
    let msg = panic_of(|| {
        Run::new("echo").arg("not json").json();
    })
    .expect("not JSON");
    assert!(
        msg.contains("stdout is not JSON") && msg.contains("--- stdout\nnot json\n"),
        "{msg}"
    );
    let msg = panic_of(|| {
        Run::new("/nonexistent/program").run();
    })
    .expect("a program that does not exist");
    assert!(msg.contains("cannot run /nonexistent/program"), "{msg}");
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Run::new("ip")
        .args(["netns", "list"])
        .expect_success()
        .stdout();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Running (a zombie is not: it has released its namespaces and mounts).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Whether `pid` has ended within 10 s. The teardown returns once no process
/// is left in the lab's namespaces; a process leaves them early in its exit
/// and may take a moment more to end (its private mounts go last).
fn ends(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!(
        "{pid} still there: {}",
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
    );
    false
}

/// A fleet whose test panics is torn down all the same (namespaces, sshd
/// processes, dir), and its logs are kept for the post-mortem.
#[test]
fn a_fleet_is_torn_down_when_its_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let msg = panic_of(|| {
        let f = Fleet::up(2, &["--bastion", "2"]);
        let sshds: Vec<u32> = ["gw001", "gw002", "bastion"]
            .iter()
            .map(|h| f.sshd_pid(h))
            .collect();
        let namespaces = namespaces_with(&f.prefix);
        tx.send((f.prefix.clone(), f.dir.clone(), sshds, namespaces))
            .unwrap();
        f.gw_sh("gw001", "echo failing on purpose >&2; exit 7");
    })
    .expect("gw_sh of a failing command panics");
    assert!(
        msg.contains("(on gw001) nsenter") && msg.contains("failing on purpose"),
        "{msg}"
    );
    let (prefix, dir, sshds, namespaces) = rx.recv().unwrap();
    for role in ["ctl", "sw", "sw2", "gw001", "gw002", "bastion"] {
        assert!(
            namespaces.contains(&format!("{prefix}{role}")),
            "{role} not in {namespaces:?}"
        );
    }
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    assert!(!dir.exists(), "{} left behind", dir.display());
    for pid in sshds {
        assert!(ends(pid), "sshd {pid} survived");
    }
    let kept = std::env::temp_dir().join(format!("dwf-failed-{}", prefix.trim_end_matches('-')));
    let log = std::fs::read_to_string(kept.join("gw001-sshd.log"));
    let _ = std::fs::remove_dir_all(&kept);
    assert!(log.is_ok(), "no gw001 sshd log kept in {}", kept.display());
}

/// A lab whose test panics is torn down all the same.
#[test]
fn a_lab_is_torn_down_when_its_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let msg = panic_of(|| {
        let lab = Lab::up();
        tx.send((lab.prefix.clone(), lab.dir.clone(), lab.sshd_pid()))
            .unwrap();
        lab.sh_cmd("gw", "exit 7").expect_success().run();
    })
    .expect("a failed check panics");
    assert!(msg.contains("(in gw) nsenter"), "{msg}");
    let (prefix, dir, sshd) = rx.recv().unwrap();
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
    assert!(ends(sshd), "sshd {sshd} survived");
}
