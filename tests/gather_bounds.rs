//! A gateway tool that floods or stalls must not take the controller or the
//! gateway with it: on the lab gateway, a fake `ip` (bind-mounted in the
//! gateway's own mount namespace, over the real binary) prints 100+ MB or
//! sleeps 100 s; dwprov fails with a message naming the command, with
//! bounded memory, leaves nothing running on the gateway, changes nothing.
mod common;

use common::seed::{inventory_with, CNC_ROUTES, FORWARDS, SNAPSHOT};
use common::{Lab, DWPROV};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Replace the gateway's `ip` by a script: `when` is a shell condition on
/// the arguments (`$*`), `then` what it does instead; every other call runs
/// a copy of the real binary.
fn fake_ip(lab: &Lab, when: &str, then: &str) {
    common::fake_tool(
        lab,
        "ip",
        &format!("case \" $* \" in {when}) {then};; esac\nexec \"$REAL\" \"$@\""),
    );
}

/// Runs dwprov in the controller namespace; returns (exit code, stdout +
/// stderr, peak RSS in KiB of dwprov itself, wall time).
// The child is reaped by wait4 (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn dwprov_measured(lab: &Lab, args: &[&str]) -> (Option<i32>, String, i64, Duration) {
    let out = lab.dir.join("measured.out");
    let started = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec"])
        .arg(lab.ns("ctl"))
        .arg(DWPROV)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(lab.dir.join("measured.err")).unwrap())
        .spawn()
        .expect("cannot run dwprov");
    // wait4: the peak RSS of this child (`ip netns exec` execs dwprov).
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let text = std::fs::read_to_string(&out).unwrap_or_default()
        + &std::fs::read_to_string(lab.dir.join("measured.err")).unwrap_or_default();
    (code, text, usage.ru_maxrss, started.elapsed())
}

/// The gateway's processes (cmdlines), but its sshd listener.
fn gateway_processes(lab: &Lab) -> Vec<String> {
    let pids = Command::new("ip")
        .args(["netns", "pids", &lab.ns("gw")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

fn inventory(lab: &Lab, timeout_secs: u32) -> std::path::PathBuf {
    let dir = lab.dir.display();
    inventory_with(
        lab,
        "bounds.yaml",
        "fwmark",
        FORWARDS,
        CNC_ROUTES,
        &format!(
            "          ssh: {{user: root, identity_file: {dir}/id_ed25519, known_hosts: {dir}/known_hosts, timeout: {timeout_secs}}}\n"
        ),
    )
}

/// 120 MB of routes from `ip`: cut at the 64 MiB section limit, with a
/// message naming host and command; dwprov's memory stays bounded (it was
/// 967 MB for 100 MB before the limit); nothing changed on the gateway.
#[test]
fn a_flooding_ip_fails_the_gather_with_bounded_memory_and_changes_nothing() {
    let lab = Lab::up();
    let inv = inventory(&lab, 60);
    let before = lab.sh_ok("gw", SNAPSHOT);
    fake_ip(
        &lab,
        "*' -j '*' route show '*",
        "yes '{\"dst\":\"10.0.0.0/8\",\"dev\":\"eth1\"},' | head -c 120000000; exit 0",
    );
    let (code, out, rss_kib, took) =
        dwprov_measured(&lab, &["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("gw1: gather: `ip -4 -j -d -N route show table all` printed more than 64 MiB"),
        "{out}"
    );
    eprintln!("flooding ip: dwprov peak RSS {rss_kib} KiB, {took:?}");
    // A guard, not a benchmark: the 64 MiB section plus parsing overhead.
    assert!(rss_kib < 400 * 1024, "dwprov peak RSS {rss_kib} KiB\n{out}");
    assert!(took < Duration::from_secs(120), "{took:?}");
    assert_eq!(before, lab.sh_ok("gw", SNAPSHOT), "nothing may change");
    // Nothing of the gather is left writing on the gateway.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = gateway_processes(&lab)
            .into_iter()
            .filter(|c| {
                c.contains("yes {") || c.contains("/bin/sh -s") || c.contains("-N route show")
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left on the gateway: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ip rule show` that sleeps 100 s: the gateway's watchdog ends the gather
/// at half the host's timeout, the error names the command, and no process
/// of the script (its `sh -s`, the fake `ip`, its `sleep`) is left in the
/// gateway's namespace.
#[test]
fn a_hung_ip_is_ended_on_the_gateway_and_named() {
    let lab = Lab::up();
    let inv = inventory(&lab, 6);
    let before = lab.sh_ok("gw", SNAPSHOT);
    fake_ip(&lab, "*' -j '*' rule show '*", "sleep 100.25; exit 0");
    let (code, out, _, took) = dwprov_measured(&lab, &["plan", "-i", inv.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("gw1: timeout: gather: `ip -4 -j -d -N rule show` did not finish within 3 s"),
        "{out}"
    );
    eprintln!("hung ip: dwprov failed after {took:?}");
    assert!(took < Duration::from_secs(60), "{took:?}\n{out}");
    let left: Vec<String> = gateway_processes(&lab)
        .into_iter()
        .filter(|c| {
            c.contains("sleep 100.25") || c.contains("/bin/sh -s") || c.contains("-N rule show")
        })
        .collect();
    assert!(left.is_empty(), "left on the gateway: {left:?}");
    assert_eq!(before, lab.sh_ok("gw", SNAPSHOT), "nothing may change");
}
