//! Survives reboot: dwprov installs on the gateway what restores its state at
//! boot. On the lab gateway (no systemd) that is /etc/init.d/dwprov running
//! /etc/dwprov/boot.sh. A "reboot" here takes away what a reboot takes away
//! (dwprov's rules, routes, DWPROV chains and jumps, sysctls, processes) and
//! keeps /etc; then exactly what the init script runs at boot restores it.
mod common;

use common::seed::{self, text};
use common::{Lab, Run};
use std::path::{Path, PathBuf};

/// The seed's topology (method fwmark) reaching the lab's gateway.
fn inventory(lab: &Lab) -> PathBuf {
    seed::inventory(lab, "fwmark", seed::FORWARDS, seed::CNC_ROUTES)
}

/// dwprov in the controller namespace; `kernel` sets the DWPROV_FAKE_KERNEL
/// test hook (the gathered `uname -r` is replaced by it).
fn dwprov(lab: &Lab, kernel: Option<&str>) -> Run {
    let run = lab.dwprov_cmd().env_remove("DWPROV_FAKE_KERNEL");
    match kernel {
        Some(k) => run.env("DWPROV_FAKE_KERNEL", k),
        None => run,
    }
}

fn plan_json(lab: &Lab, kernel: Option<&str>, inv: &Path) -> (i32, serde_json::Value) {
    let o = dwprov(lab, kernel)
        .args(["plan", "-i", inv.to_str().unwrap(), "--format", "json"])
        .run();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan json: {e}\n{}", text(&o)));
    (o.status.code().unwrap_or(-1), v)
}

fn apply(lab: &Lab, kernel: Option<&str>, inv: &Path) {
    dwprov(lab, kernel)
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .context("apply failed")
        .expect_exit(0)
        .run();
}

fn assert_plan_empty(lab: &Lab, kernel: Option<&str>, inv: &Path, when: &str) {
    let (code, plan) = plan_json(lab, kernel, inv);
    assert_eq!(code, 0, "{when}: plan must be empty: {plan:#}");
}

/// Paths of the file changes of a plan, and its warnings.
fn files_and_warnings(plan: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let host = &plan["hosts"][0]["plan"];
    let files = host["diff"]["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["object"] == "file")
        .map(|c| c["path"].as_str().unwrap_or("").to_string())
        .collect();
    let warnings = host["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w.as_str().unwrap_or("").to_string())
        .collect();
    (files, warnings)
}

/// What a reboot loses, keeping /etc: dwprov's rules and routes, DWPROV
/// chains and the jumps into them, the sysctls, the flush loop (a process),
/// and conntrack's memory of marked connections.
const REBOOT: &str = r#"
set -e
ip -4 rule flush protocol 201
for t in 100 200 254; do ip -4 route flush table $t proto 201; done
for t in mangle nat; do
    iptables -t $t -S | grep -e '-j DWPROV-' | grep -v '^-A DWPROV-' | sed 's/^-A /-D /' |
        while read -r line; do iptables -t $t $line; done
    for c in $(iptables -t $t -S | awk '/^-N DWPROV-/ {print $2}'); do
        iptables -t $t -F $c
        iptables -t $t -X $c
    done
done
echo 0 > /proc/sys/net/ipv4/ip_forward
for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done
if [ -f /run/dwprov-route-cache-flush.pid ]; then
    pid=$(cat /run/dwprov-route-cache-flush.pid)
    kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null || true
    rm -f /run/dwprov-route-cache-flush.pid
fi
if command -v conntrack >/dev/null 2>&1; then conntrack -F 2>/dev/null || true; fi
"#;

/// The gateway after a "reboot": nothing of dwprov's runtime state left.
fn reboot(lab: &Lab, kernel: Option<&str>, inv: &Path) {
    lab.sh_ok("gw", REBOOT);
    let rules = lab.sh_ok("gw", "ip rule show");
    assert!(!rules.contains("proto dwprov"), "{rules}");
    assert!(!lab.sh_ok("gw", "iptables-save").contains("DWPROV"));
    let (code, plan) = plan_json(lab, kernel, inv);
    assert_eq!(code, 2, "after a reboot there is work to do: {plan:#}");
    // Cross access to the gateway's own service needs dwprov's routing.
    assert!(lab.curl("uctc", "http://203.0.113.2:8080/").is_err());
}

/// dwprov's jumps and rules exist exactly once each.
fn assert_no_duplicates(lab: &Lab) {
    for (table, chain) in [
        ("mangle", "PREROUTING"),
        ("mangle", "OUTPUT"),
        ("nat", "PREROUTING"),
        ("nat", "POSTROUTING"),
    ] {
        let s = lab.sh_ok("gw", &format!("iptables -t {table} -S {chain}"));
        let n = s.lines().filter(|l| l.contains("-j DWPROV-")).count();
        assert_eq!(n, 1, "{table} {chain}: {s}");
    }
    let rules = lab.sh_ok("gw", "ip rule show");
    let ours: Vec<_> = rules
        .lines()
        .filter(|l| l.contains("proto dwprov"))
        .collect();
    assert_eq!(ours.len(), 4, "{rules}");
}

/// pid of the flush loop per its pidfile, if that process runs.
fn flush_loop(lab: &Lab) -> Option<u32> {
    let out = lab.sh("gw", "cat /run/dwprov-route-cache-flush.pid");
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("route-cache-flush.sh run"), "{cmdline}");
    // It runs in the gateway's network namespace.
    let ns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    assert_eq!(
        ns(pid),
        ns(lab.sshd_pid()),
        "flush loop outside the gateway netns"
    );
    Some(pid)
}

/// Whether `pid` has ended within 3 s (a zombie has ended: reaping it is
/// its new parent's business).
fn gone(pid: u32) -> bool {
    for _ in 0..30 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
                if state == Some(Some('Z')) {
                    return true;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!(
        "{pid} still there: {}",
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
    );
    false
}

#[test]
fn applied_state_survives_a_reboot_through_the_init_script() {
    let lab = Lab::up();
    let inv = inventory(&lab);

    // The plan shows the boot files like any other owned file; the lab has
    // no systemd, so an init script and no units; its kernel has no route
    // cache, a normal condition: no warning (a note with `plan -v`).
    let (code, plan) = plan_json(&lab, None, &inv);
    assert_eq!(code, 2);
    let (files, warnings) = files_and_warnings(&plan);
    for f in [
        "/etc/dwprov/boot.sh",
        "/etc/dwprov/ip.batch",
        "/etc/dwprov/iptables.rules",
        "/etc/init.d/dwprov",
    ] {
        assert!(files.iter().any(|p| p == f), "{f} not in {files:?}");
    }
    assert!(!files.iter().any(|p| p.contains("systemd")), "{files:?}");
    assert!(!files.iter().any(|p| p.contains("flush")), "{files:?}");
    assert!(
        !warnings.iter().any(|w| w.contains("route cache")),
        "{warnings:?}"
    );

    apply(&lab, None, &inv);
    seed::assert_traffic(&lab, true);
    assert_plan_empty(&lab, None, &inv, "right after apply");
    let mode = lab.sh_ok("gw", "stat -c %a /etc/init.d/dwprov");
    assert_eq!(mode.trim(), "755");
    assert!(!lab
        .sh_ok("gw", "cat /etc/dwprov/boot.sh")
        .contains("DWPROV_"));

    // Reboot, then what the init script runs at boot.
    reboot(&lab, None, &inv);
    lab.sh_ok("gw", "/etc/init.d/dwprov start");
    assert_plan_empty(&lab, None, &inv, "after boot");
    assert_no_duplicates(&lab);
    seed::assert_traffic(&lab, true);

    // Idempotent: loaded twice more in a row, nothing changes or doubles.
    lab.sh_ok("gw", "sh /etc/dwprov/boot.sh");
    lab.sh_ok("gw", "sh /etc/dwprov/boot.sh all");
    assert_plan_empty(&lab, None, &inv, "after boot.sh twice");
    assert_no_duplicates(&lab);
    seed::assert_traffic(&lab, true);

    // The systemd units' two stages: early (before the network), late (after).
    reboot(&lab, None, &inv);
    lab.sh_ok("gw", "sh /etc/dwprov/boot.sh early");
    let ipt = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(ipt.contains("-j DWPROV-PREROUTING"), "{ipt}");
    assert!(!lab.sh_ok("gw", "ip rule show").contains("proto dwprov"));
    lab.sh_ok("gw", "sh /etc/dwprov/boot.sh late");
    assert_plan_empty(&lab, None, &inv, "after early + late");
    assert_no_duplicates(&lab);

    // A failure says what failed and exits non-zero.
    lab.sh_ok("gw", "mv /etc/dwprov/ip.batch /tmp/ip.batch");
    let o = lab.sh("gw", "sh /etc/dwprov/boot.sh late");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/etc/dwprov/ip.batch is missing"),
        "{}",
        text(&o)
    );
    lab.sh_ok("gw", "mv /tmp/ip.batch /etc/dwprov/ip.batch");
    let o = lab.sh(
        "gw",
        "ip link set eth2 down && sh /etc/dwprov/boot.sh late; r=$?; ip link set eth2 up; exit $r",
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dwprov boot: ip -batch"),
        "{}",
        text(&o)
    );
}

#[test]
fn old_kernel_gets_the_route_cache_flush_loop() {
    let lab = Lab::up();
    let inv = inventory(&lab);
    let old = Some("3.2.0-4-amd64");

    let (code, plan) = plan_json(&lab, old, &inv);
    assert_eq!(code, 2);
    let (files, warnings) = files_and_warnings(&plan);
    assert!(
        files
            .iter()
            .any(|p| p == "/etc/dwprov/route-cache-flush.sh"),
        "{files:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("3.2.0-4-amd64 caches IPv4 routes") && w.contains("every 2 s")),
        "{warnings:?}"
    );

    // Apply starts the loop now, in the gateway.
    apply(&lab, old, &inv);
    let first = flush_loop(&lab).expect("apply did not start the flush loop");
    assert_plan_empty(&lab, old, &inv, "right after apply");

    // Reboot (the loop dies with it), then the init script.
    reboot(&lab, old, &inv);
    assert_eq!(flush_loop(&lab), None);
    lab.sh_ok("gw", "/etc/init.d/dwprov start");
    let pid = flush_loop(&lab).expect("the init script did not start the flush loop");
    assert_ne!(pid, first);
    assert_plan_empty(&lab, old, &inv, "after boot");
    seed::assert_traffic(&lab, true);
    // Started again: still the one loop.
    lab.sh_ok("gw", "/etc/init.d/dwprov start");
    assert_eq!(flush_loop(&lab), Some(pid));
    let status = lab.sh_ok("gw", "/etc/init.d/dwprov status");
    assert!(status.contains(&format!("running (pid {pid})")), "{status}");

    lab.sh_ok("gw", "/etc/init.d/dwprov stop");
    assert_eq!(flush_loop(&lab), None);
    assert!(gone(pid), "flush loop {pid} survived stop");

    // The host "upgrades" its kernel: the flush loop is pruned and stopped.
    lab.sh_ok("gw", "/etc/init.d/dwprov start");
    let pid = flush_loop(&lab).unwrap();
    let (code, plan) = plan_json(&lab, None, &inv);
    assert_eq!(code, 2);
    let (files, _) = files_and_warnings(&plan);
    assert!(
        files.iter().any(|p| p.ends_with("route-cache-flush.sh")),
        "{files:?}"
    );
    apply(&lab, None, &inv);
    assert!(gone(pid), "flush loop {pid} not stopped by the apply");
    assert_plan_empty(&lab, None, &inv, "after the upgrade");
}
