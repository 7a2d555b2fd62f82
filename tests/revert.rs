//! The revert and rollback put back dwprov's own objects only, and never
//! leave a gateway worse than they found it: foreign state added after the
//! snapshot survives them, a stalled step cannot land after the revert, and
//! a snapshot that a lying tool took is found out before it is trusted.
//! Real lab, real SSH; faked tools are bind-mounted in the lab gateway's
//! own mount namespace (`common::fake_tool`).
mod common;

use common::seed::*;
use common::{fake_tool, unfake_tool, Lab};
use std::path::Path;
use std::time::{Duration, Instant};

/// Foreign objects: an INPUT rule, a nat chain of another tool with its
/// jump, an ip rule and a route. `tag` (0-9) varies the addresses so that
/// several sets can be added.
fn add_foreign(lab: &Lab, tag: u8) {
    lab.sh_ok(
        "gw",
        &format!(
            "iptables -A INPUT -s 10.98.{tag}.0/24 -j DROP && \
             iptables -t nat -N OTHER-TOOL-{tag} && \
             iptables -t nat -A OTHER-TOOL-{tag} -s 10.97.{tag}.0/24 -j RETURN && \
             iptables -t nat -A PREROUTING -j OTHER-TOOL-{tag} && \
             ip rule add priority {} from 10.96.{tag}.0/24 lookup main && \
             ip route add 10.95.{tag}.0/24 via 198.51.100.1 dev eth1",
            3000 + tag as u32
        ),
    );
}

/// Everything on the gateway that dwprov does not own, in order.
const FOREIGN: &str =
    "iptables-save | grep -v '^#' | grep -v DWPROV | sed 's/\\[[0-9]*:[0-9]*\\]//'; \
                       ip rule | grep -v -E 'proto (201|dwprov)'; \
                       ip route show table all | grep -v -E 'proto (201|dwprov)'";

/// The state file of the newest snapshot.
fn newest_state(lab: &Lab) -> String {
    lab.sh_ok(
        "gw",
        "cat \"$(ls -1d /var/lib/dwprov/snapshots/*/ | sort | tail -n 1)state\"",
    )
    .trim()
    .to_string()
}

#[test]
fn rollback_and_a_lockout_revert_leave_foreign_state_alone() {
    let lab = Lab::up();
    let a = inventory_with(&lab, "a.yaml", "fwmark", FORWARDS, CNC_ROUTES, FAST_SSH);
    let b = inventory_with(
        &lab,
        "b.yaml",
        "static",
        FORWARDS,
        "100.67.0.0/16",
        FAST_SSH,
    );
    apply(&lab, &a);
    apply(&lab, &b);
    // Added after b's snapshot: rolling back to it must keep all of it.
    add_foreign(&lab, 1);
    let foreign = lab.sh_ok("gw", FOREIGN);
    assert!(foreign.contains("OTHER-TOOL-1") && foreign.contains("10.98.1.0/24"));
    let o = lab.dwprov(&[
        "rollback",
        "-i",
        a.to_str().unwrap(),
        "--limit",
        "gw1",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(plan_code(&lab, &a), 0, "dwprov's objects are back to a's");
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign, "foreign state untouched");
    assert_traffic(&lab, true);

    // A lock-out: the controller's replies go out the CTC line. Foreign
    // objects added while the revert timer is pending survive the revert.
    let confirm = 30;
    start_lockout(&lab, confirm);
    assert_eq!(
        newest_state(&lab),
        "applied",
        "the revert must still be pending"
    );
    add_foreign(&lab, 2);
    let foreign = lab.sh_ok("gw", FOREIGN);
    assert!(
        wait_until_planned(&lab, &a, Duration::from_secs(confirm + 20)).is_some(),
        "not back to a's state in time"
    );
    assert_eq!(newest_state(&lab), "reverted");
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign, "foreign state untouched");
    let rules = lab.sh_ok("gw", "ip rule");
    assert!(!rules.contains("10.9.0.0/24"), "{rules}");
    assert_traffic(&lab, true);
}

/// An inventory whose CNC line also carries the 3,894-prefix list.
fn with_list(lab: &Lab, name: &str, inline: &str) -> std::path::PathBuf {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/isp/unicom.txt");
    let p = inventory_with(lab, name, "fwmark", FORWARDS, inline, "");
    let yaml = std::fs::read_to_string(&p).unwrap().replace(
        &format!("routes: [{inline}]"),
        &format!(
            "routes: [{inline}]\n              routes_file: '{}'",
            list.display()
        ),
    );
    lab.write_file(name, &yaml)
}

/// Drift repair is O(changes): one deleted route of a 3,894-prefix gateway
/// is put back by a script of kilobytes (the snapshot is taken on the
/// gateway, not sent), and rolling that back deletes it again, only it.
#[test]
fn repairing_one_deleted_route_sends_kilobytes_and_rolls_back_exactly() {
    let lab = Lab::up();
    let inv = with_list(&lab, "list.yaml", "100.65.0.0/16");
    apply(&lab, &inv);
    let routes = |lab: &Lab| -> usize {
        lab.sh_ok("gw", "ip route show table all proto 201 | wc -l")
            .trim()
            .parse()
            .unwrap()
    };
    let full = routes(&lab);
    assert!(full > 3_894, "{full} routes");
    lab.sh_ok("gw", "ip route del 100.65.0.0/16 proto 201");
    add_foreign(&lab, 3);
    let foreign = lab.sh_ok("gw", FOREIGN);
    assert_eq!(plan_code(&lab, &inv), 2, "the drift shows in the plan");
    let o = lab.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let applied = &v["hosts"][0]["applied"];
    assert_eq!(applied["changes"], 1, "{applied}");
    let bytes = applied["script_bytes"].as_u64().unwrap();
    assert!(bytes <= 64_000, "{bytes} bytes sent to repair one route");
    assert_eq!(plan_code(&lab, &inv), 0);
    assert_eq!(routes(&lab), full);
    let o = lab.dwprov(&[
        "rollback",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "gw1",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(routes(&lab), full - 1, "back to the drifted state");
    let gone = lab.sh_ok(
        "gw",
        "ip route show table all 100.65.0.0/16 proto 201 | wc -l",
    );
    assert_eq!(gone.trim(), "0");
    assert_eq!(lab.sh_ok("gw", FOREIGN), foreign, "foreign state untouched");
}

/// Processes of the lab gateway whose command line contains `needle`.
fn gateway_processes(lab: &Lab, needle: &str) -> Vec<String> {
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.ns("gw")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// `ip -batch` stalls (once) far beyond the confirm timeout: dwprov times
/// out, the gateway's revert ends the apply's whole process group before
/// restoring, and the stalled step never lands: the end state is the old
/// one, and no process of the apply is left.
#[test]
fn a_stalled_step_is_ended_by_the_revert_and_never_lands() {
    let lab = Lab::up();
    let old = inventory_with(&lab, "old.yaml", "fwmark", FORWARDS, CNC_ROUTES, FAST_SSH);
    let new = inventory_with(
        &lab,
        "new.yaml",
        "fwmark",
        FORWARDS,
        "100.65.0.0/16, 100.66.0.0/16, 100.67.0.0/16",
        FAST_SSH,
    );
    apply(&lab, &old);
    let before = lab.sh_ok("gw", SNAPSHOT);
    let flag = lab.dir.join("stalled-once");
    let stall_secs = 25;
    fake_tool(
        &lab,
        "ip",
        &format!(
            "for a; do if [ \"$a\" = -batch ] && [ ! -e '{0}' ]; then : > '{0}'; sleep {stall_secs}; fi; done\nexec \"$REAL\" \"$@\"",
            flag.display()
        ),
    );
    let confirm = 6;
    let start = Instant::now();
    let o = apply_confirming(&lab, &new, confirm);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(flag.exists(), "the batch stalled");
    assert!(text(&o).contains("reverts itself"), "{}", text(&o));
    // Wait until the stalled step would have resumed, and then some.
    let until = Duration::from_secs(stall_secs + 5);
    while start.elapsed() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(newest_state(&lab), "reverted");
    assert_eq!(lab.sh_ok("gw", SNAPSHOT), before, "the old state, whole");
    assert_eq!(plan_code(&lab, &old), 0);
    let left = gateway_processes(&lab, "/var/lib/dwprov/snapshots");
    let sleeps = gateway_processes(&lab, &format!("sleep {stall_secs}"));
    assert!(left.is_empty() && sleeps.is_empty(), "{left:?} {sleeps:?}");
    let log = lab.sh_ok("gw", "cat /var/lib/dwprov/snapshots/*/revert.log");
    assert!(log.contains("ended the apply"), "{log}");
}

/// Run an apply under a lying tool and check the real state is unchanged.
fn assert_lie_is_found(lab: &Lab, inv: &Path, expect: &str, tool: &str) {
    let o = apply_confirming(lab, inv, 30);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(expect) && out.contains("nothing was changed"),
        "{out}"
    );
    assert!(!out.contains("reverted"), "{out}");
    unfake_tool(lab, tool);
}

/// A snapshot taken with a lying tool is found out before it is trusted,
/// and the gateway's real state (read with the real tools) is unchanged:
/// an iptables-save that prints nothing, one that drops `*nat`, and an
/// `ip rule show` that lists no rules (the adds then fail "File exists").
#[test]
fn a_lying_tool_is_found_out_and_the_real_state_is_unchanged() {
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    apply(&lab, &inv);
    add_foreign(&lab, 4);
    let before = lab.sh_ok("gw", SNAPSHOT);
    let cases: [(&str, &str, &str); 3] = [
        (
            "iptables-save",
            "case ${0##*/} in iptables-save) exit 0 ;; esac\nexec \"$REAL\" \"${0##*/}\" \"$@\"",
            "iptables-save disagrees with `iptables -t TABLE -S`",
        ),
        (
            "iptables-save",
            "case ${0##*/} in iptables-save) \"$REAL\" iptables-save \"$@\" | awk '/^\\*nat/ { skip = 1 } !skip { print } /^COMMIT/ { skip = 0 }'; exit 0 ;; esac\nexec \"$REAL\" \"${0##*/}\" \"$@\"",
            "iptables-save disagrees with `iptables -t TABLE -S`",
        ),
        (
            "ip",
            "case \" $* \" in *' rule show '*|*' rule list '*) case \" $* \" in *' -j '*) echo '[]' ;; esac; exit 0 ;; esac\nexec \"$REAL\" \"$@\"",
            "the kernel contradicts the snapshot",
        ),
    ];
    for (tool, script, expect) in cases {
        fake_tool(&lab, tool, script);
        assert_lie_is_found(&lab, &inv, expect, tool);
        assert_eq!(
            lab.sh_ok("gw", SNAPSHOT),
            before,
            "{tool}: the real state changed"
        );
        assert_eq!(plan_code(&lab, &inv), 0, "{tool}");
    }
    // No revert timer is left to fire later.
    assert!(gateway_processes(&lab, "revert.sh").is_empty());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.sh_ok("gw", SNAPSHOT), before);
    assert_traffic(&lab, true);
}

/// An iptables-save that, from the apply on, replays the save taken before
/// it (its snapshot still agrees with `iptables -S`): every step succeeds,
/// but the verify shows the pre-apply chains. dwprov neither reverts (from
/// the same listings) nor confirms: it stops the timer, says what
/// disagrees, and the gateway keeps what the kernel accepted.
#[test]
fn a_verify_that_contradicts_the_apply_neither_reverts_nor_confirms() {
    let lab = Lab::up();
    let old = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    let new = inventory_with(
        &lab,
        "new.yaml",
        "fwmark",
        &format!("{FORWARDS}\n            - {{proto: tcp, port: 8081, to: 192.168.0.100}}"),
        CNC_ROUTES,
        "",
    );
    apply(&lab, &old);
    let frozen = lab.dir.join("frozen.save");
    std::fs::write(&frozen, lab.sh_ok("gw", "iptables-save")).unwrap();
    fake_tool(
        &lab,
        "iptables-save",
        &format!(
            "case ${{0##*/}} in iptables-save) cat '{}'; exit 0 ;; esac\nexec \"$REAL\" \"${{0##*/}}\" \"$@\"",
            frozen.display()
        ),
    );
    let confirm = 6;
    let o = apply_confirming(&lab, &new, confirm);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("contradict what the kernel accepted")
            && out.contains("keeps the applied state")
            && out.contains("DWPROV-"),
        "{out}"
    );
    unfake_tool(&lab, "iptables-save");
    assert_eq!(plan_code(&lab, &new), 0, "the kernel has the new state");
    std::thread::sleep(Duration::from_secs(confirm + 3));
    assert_eq!(
        plan_code(&lab, &new),
        0,
        "and keeps it: the timer was stopped"
    );
    assert!(newest_state(&lab).starts_with("unconfirmed"));
}

/// `rollback` shows what it changes (a typed diff, like `plan`), asks like
/// `apply` (refuses without a terminal unless --yes, takes "n" for no),
/// needs --limit except for --list, which lists every host.
#[test]
fn rollback_shows_its_plan_and_asks() {
    let lab = Lab::up();
    let a = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    let b = inventory_with(&lab, "b.yaml", "fwmark", FORWARDS, "100.67.0.0/16", "");
    apply(&lab, &a);
    apply(&lab, &b);
    let inv = b.to_str().unwrap();
    let list = lab.dwprov(&["rollback", "-i", inv, "--list"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert_eq!(listed.matches("gw1: ").count(), 2, "{listed}");
    let o = lab.dwprov(&["rollback", "-i", inv]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rollback needs --limit"), "{}", text(&o));
    // No terminal, no --yes: the plan is shown, nothing changes.
    let before = lab.sh_ok("gw", SNAPSHOT);
    let o = lab.dwprov(&["rollback", "-i", inv, "--limit", "gw1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("refusing to roll back without --yes"), "{out}");
    assert!(
        out.contains("@@ routes table main: +2 -1 @@")
            && out.contains("-100.67.0.0/16 via 203.0.113.1 dev eth2")
            && out.contains("+100.65.0.0/16 via 203.0.113.1 dev eth2")
            && out.contains("rollback of gw1 to snapshot"),
        "{out}"
    );
    assert_eq!(lab.sh_ok("gw", SNAPSHOT), before);
    // On a terminal, "n" changes nothing.
    let cmd = format!(
        "echo n | script -qec 'ip netns exec {} {} rollback -i {inv} --limit gw1' /dev/null",
        lab.ns("ctl"),
        common::DWPROV
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(
        out.contains("[y/N]") && out.contains("not rolled back"),
        "{out}"
    );
    assert_eq!(lab.sh_ok("gw", SNAPSHOT), before);
    // --yes rolls back; then there is nothing left to roll back.
    let o = lab.dwprov(&["rollback", "-i", inv, "--limit", "gw1", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(plan_code(&lab, &a), 0);
    let o = lab.dwprov(&["rollback", "-i", inv, "--limit", "gw1", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("nothing to roll back"), "{}", text(&o));
}
