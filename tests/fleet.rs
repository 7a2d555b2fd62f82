//! Fleet rollouts, proven on real gateways: `scripts/fleet-lab.sh` builds N
//! light gateways (each a network namespace with its own sshd, private /etc
//! and /var) behind a switch namespace, and a controller namespace where the
//! dwprov binary under test runs. Every test builds its own fleet with a
//! unique prefix and tears it down on Drop, also when it panicked (the
//! harness is `tests/common/fleet.rs`).
//!
//! Needs root (namespaces, mounts); without it every test fails, loudly.
mod common;

use common::fleet::{Fleet, PausedApply};
use common::seed::text as show;
use common::Run;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Output;

// ------------------------------------------------------------------ helpers

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(o)))
}

/// gw001..gwNNN.
fn gws(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("gw{i:03}")).collect()
}

/// The per-host entries of a result document, by host name, in order.
fn hosts(doc: &Value) -> Vec<(String, Value)> {
    doc["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no hosts[] in {doc:#}"))
        .iter()
        .map(|h| {
            (
                h["host"].as_str().expect("host name").to_string(),
                h.clone(),
            )
        })
        .collect()
}

fn host<'a>(hs: &'a [(String, Value)], name: &str) -> &'a Value {
    &hs.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from the result"))
        .1
}

fn list_hosts(f: &Fleet, inv: &Path, limit: &str) -> Vec<String> {
    f.dwprov_cmd()
        .args(["plan", "-i", inv.to_str().unwrap()])
        .args(["--limit", limit, "--list-hosts"])
        .expect_exit(0)
        .stdout()
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_ok_applied(h: &Value) {
    assert!(h["error"].is_null(), "{h:#}");
    assert_eq!(h["skipped"], false, "{h:#}");
    assert!(h["applied"].is_object(), "not applied: {h:#}");
}

fn assert_skipped(h: &Value) {
    assert_eq!(h["skipped"], true, "not skipped: {h:#}");
    assert!(h["applied"].is_null(), "{h:#}");
}

// ------------------------------------------------------------------ tests

/// `--list-hosts` with --limit groups, globs, !exclusions and @file; and a
/// plan over the whole fleet: every gateway reachable with its pinned host
/// key, the unreachable one failed, the JSON document complete.
#[test]
fn list_hosts_and_fleet_plan() {
    let f = Fleet::up(6, &["--unreachable"]);
    let inv = f.inventory();
    let all: Vec<String> = gws(1..=6)
        .into_iter()
        .chain(["gwdown".to_string()])
        .collect();

    assert_eq!(list_hosts(&f, &inv, "all"), all);
    assert_eq!(list_hosts(&f, &inv, "canary"), ["gw001"]);
    assert_eq!(list_hosts(&f, &inv, "beijing"), gws(1..=3));
    assert_eq!(list_hosts(&f, &inv, "shanghai"), gws(4..=6));
    assert_eq!(list_hosts(&f, &inv, "gw00?"), gws(1..=6));
    assert_eq!(list_hosts(&f, &inv, "*down"), ["gwdown"]);
    assert_eq!(list_hosts(&f, &inv, "gw*,!unreachable"), gws(1..=6));
    assert_eq!(
        list_hosts(&f, &inv, "beijing,shanghai,!gw002,!gw00[5]"),
        // `[` is not a glob character: `!gw00[5]` excludes nothing.
        ["gw001", "gw003", "gw004", "gw005", "gw006"]
    );
    assert_eq!(
        list_hosts(&f, &inv, "shanghai,canary"),
        ["gw001", "gw004", "gw005", "gw006"]
    );
    let file = f.write_file("limit.txt", "gw005\n\n  gwdown  \ngw002\n");
    let at = format!("@{}", file.display());
    assert_eq!(list_hosts(&f, &inv, &at), ["gw002", "gw005", "gwdown"]);
    assert_eq!(
        list_hosts(&f, &inv, &format!("{at},!unreachable")),
        ["gw002", "gw005"]
    );
    // Same selection for apply; --list-hosts applies nothing.
    f.dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap()])
        .args(["--limit", "canary", "--list-hosts"])
        .expect_exit(0)
        .stdout_is("gw001\n")
        .run();
    // No match: an error naming the hosts, not an empty run.
    f.dwprov_cmd()
        .args(["plan", "-i", inv.to_str().unwrap()])
        .args(["--limit", "nosuch*", "--list-hosts"])
        .expect_exit(1)
        .stderr_has("no host")
        .run();

    // The whole fleet, planned: six pending, gwdown failed at connect, so exit 1.
    let doc = f
        .dwprov_cmd()
        .args(["plan", "-i", inv.to_str().unwrap(), "--format", "json"])
        .context("gwdown failed, so exit 1")
        .expect_exit(1)
        .json();
    assert_eq!(doc["format_version"], 1, "{doc:#}");
    assert_eq!(doc["command"], "plan");
    let hs = hosts(&doc);
    assert_eq!(hs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), all);
    for name in gws(1..=6) {
        let h = host(&hs, &name);
        for key in [
            "host",
            "plan",
            "applied",
            "error",
            "failed_stage",
            "skipped",
        ] {
            assert!(h.get(key).is_some(), "{name}: no `{key}` in {h:#}");
        }
        let plan = &h["plan"];
        for key in ["summary", "diff", "warnings", "facts_digest"] {
            assert!(plan.get(key).is_some(), "{name}: no plan.{key} in {plan:#}");
        }
        assert!(
            h["error"].is_null() && h["applied"].is_null() && h["skipped"] == false,
            "{h:#}"
        );
        assert!(
            !plan["diff"]["changes"].as_array().unwrap().is_empty(),
            "{name}: {plan:#}"
        );
        assert!(
            plan["diff"]["conflicts"].as_array().unwrap().is_empty(),
            "{name}: {plan:#}"
        );
        assert_eq!(plan["facts_digest"].as_str().unwrap().len(), 64, "{plan:#}");
        f.assert_untouched(&name);
    }
    let down = host(&hs, "gwdown");
    assert!(down["plan"].is_null(), "{down:#}");
    assert_eq!(down["failed_stage"], "connect", "{down:#}");
    assert_eq!(down["error"]["class"], "connect", "{down:#}");
    assert!(
        down["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10.10.255.254"),
        "{down:#}"
    );
}

/// `--serial 1,50%` over 10 hosts: batches [1], [5], [4], each finished
/// before the next starts applying; the canary first.
#[test]
fn serial_batches_run_in_order() {
    let f = Fleet::up(10, &[]);
    let inv = f.inventory();
    let out = f
        .dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .args(["--serial", "1,50%", "--json-events"])
        .expect_exit(0)
        .stdout();
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert_eq!(e["format_version"], 1, "{e}");
    }
    let recap = events.last().expect("events");
    assert_eq!(recap["event"], "recap", "the recap comes last: {recap}");
    assert_eq!(
        events.iter().filter(|e| e["event"] == "recap").count(),
        1,
        "one recap"
    );
    let first = |host: &str, stage: &str| {
        events
            .iter()
            .position(|e| e["event"] == "stage" && e["host"] == host && e["stage"] == stage)
            .unwrap_or_else(|| panic!("{host} never in stage {stage}:\n{}", out))
    };
    let last_done = |host: &str| {
        events
            .iter()
            .rposition(|e| e["event"] == "host_done" && e["host"] == host)
            .unwrap_or_else(|| panic!("no host_done for {host}:\n{}", out))
    };
    let batches = [gws(1..=1), gws(2..=6), gws(7..=10)];
    for h in gws(1..=10) {
        assert_eq!(
            events
                .iter()
                .filter(|e| e["event"] == "stage"
                    && e["host"] == h.as_str()
                    && e["stage"] == "apply")
                .count(),
            1,
            "{h} applied once"
        );
        assert!(first(&h, "connect") < first(&h, "gather"));
        assert!(first(&h, "apply") < first(&h, "verify"));
        assert!(
            first(&h, "verify") < last_done(&h),
            "{h}: host_done after verify"
        );
        let done = &events[last_done(&h)];
        assert_eq!(done["ok"], true, "{done}");
    }
    for w in batches.windows(2) {
        let finished = w[0].iter().map(|h| last_done(h)).max().unwrap();
        let next = w[1].iter().map(|h| first(h, "apply")).min().unwrap();
        assert!(
            finished < next,
            "batch {:?} must be done (event {finished}) before batch {:?} applies (event {next}):\n{}",
            w[0],
            w[1],
            out
        );
    }
    let hs = hosts(&recap["recap"]);
    assert_eq!(hs.len(), 10);
    for (name, h) in &hs {
        assert_ok_applied(h);
        let applied = &h["applied"];
        assert!(applied["changes"].as_u64().unwrap_or(0) > 0, "{applied:#}");
        assert!(
            applied["snapshot"].is_string(),
            "commit-confirmed: {applied:#}"
        );
        assert_eq!(
            applied["changes"].as_u64(),
            Some(h["plan"]["diff"]["changes"].as_array().unwrap().len() as u64)
        );
        f.assert_applied(name);
    }
}

/// The canary (alone in batch 1, `--serial 1`) fails: exit 1, every other
/// host skipped and untouched.
#[test]
fn canary_failure_stops_the_rollout() {
    let f = Fleet::up(8, &["--fail-apply", "5"]);
    let mut order = vec!["gw005".to_string()];
    order.extend(gws(1..=8).into_iter().filter(|h| h != "gw005"));
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    let inv = f.inventory_ordered("canary-first.yaml", &order);
    assert_eq!(list_hosts(&f, &inv, "canary"), ["gw005"]);
    assert_eq!(list_hosts(&f, &inv, "broken"), ["gw005"]);

    let doc = f
        .dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .args(["--serial", "1", "--format", "json"])
        .expect_exit(1)
        .stderr_has("stopping the rollout")
        .json();
    assert_eq!(doc["command"], "apply");
    let hs = hosts(&doc);
    assert_eq!(
        hs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        order
    );
    let canary = host(&hs, "gw005");
    assert_eq!(canary["skipped"], false, "{canary:#}");
    assert_eq!(canary["failed_stage"], "apply", "{canary:#}");
    assert!(canary["applied"].is_null(), "{canary:#}");
    let msg = canary["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("/etc/sysctl.d"),
        "the cause is named: {canary:#}"
    );
    for name in &order[1..] {
        let h = host(&hs, name);
        assert_skipped(h);
        assert!(h["error"].is_null(), "{h:#}");
        // Planned (the plan is shown before anything is applied), not applied.
        assert!(h["plan"].is_object(), "{h:#}");
    }
    for name in &order {
        f.assert_untouched(name);
    }
}

/// `--max-fail-percent`: 1 failure in a batch of 10 is 10%: with 5 the
/// rollout stops (batch 2 skipped, untouched), and the retry file lists
/// exactly the failed and skipped hosts; rerun with `--limit @FILE` and 20,
/// the rollout goes on past the same failure.
#[test]
fn max_fail_percent_and_retry_file() {
    let f = Fleet::up(20, &["--fail-apply", "1"]);
    let inv = f.inventory();
    let retry1 = f.dir.join("retry1.txt");
    let doc = f
        .dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .args(["--serial", "10", "--max-fail-percent", "5"])
        .args(["--retry-file", retry1.to_str().unwrap(), "--format", "json"])
        .expect_exit(1)
        .json();
    let hs = hosts(&doc);
    assert_eq!(host(&hs, "gw001")["failed_stage"], "apply");
    assert_eq!(host(&hs, "gw001")["skipped"], false);
    f.assert_untouched("gw001");
    for name in gws(2..=10) {
        assert_ok_applied(host(&hs, &name));
        f.assert_applied(&name);
    }
    for name in gws(11..=20) {
        assert_skipped(host(&hs, &name));
        f.assert_untouched(&name);
    }
    let listed: Vec<String> = fs::read_to_string(&retry1)
        .expect("retry file written")
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected = vec!["gw001".to_string()];
    expected.extend(gws(11..=20));
    assert_eq!(
        listed, expected,
        "retry file: failed and skipped hosts, exactly"
    );

    // Rerun just those; batch 1 is gw001 + gw011..gw019 (1 of 10 failed,
    // 10% <= 20%): the rollout goes on to gw020.
    let retry2 = f.dir.join("retry2.txt");
    let limit = format!("@{}", retry1.display());
    assert_eq!(list_hosts(&f, &inv, &limit), expected);
    let doc = f
        .dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--limit", &limit])
        .args(["--yes", "--serial", "10", "--max-fail-percent", "20"])
        .args(["--retry-file", retry2.to_str().unwrap(), "--format", "json"])
        .context("a host failed: exit 1")
        .expect_exit(1)
        .stderr_lacks("stopping the rollout")
        .json();
    let hs = hosts(&doc);
    assert_eq!(
        hs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(host(&hs, "gw001")["failed_stage"], "apply");
    for name in gws(11..=20) {
        assert_ok_applied(host(&hs, &name));
        f.assert_applied(&name);
    }
    f.assert_untouched("gw001");
    assert_eq!(fs::read_to_string(&retry2).unwrap(), "gw001\n");
}

/// An unreachable host counts as failed: first in line with the default
/// --max-fail-percent 0, it stops the rollout.
#[test]
fn unreachable_host_counts_as_failed() {
    let f = Fleet::up(4, &["--unreachable"]);
    let inv = f.inventory_ordered(
        "down-first.yaml",
        &["gwdown", "gw001", "gw002", "gw003", "gw004"],
    );
    let retry = f.dir.join("retry.txt");
    let doc = f
        .dwprov_cmd()
        .args([
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--serial",
            "1",
        ])
        .args(["--format", "json", "--retry-file", retry.to_str().unwrap()])
        .expect_exit(1)
        .json();
    let hs = hosts(&doc);
    let down = host(&hs, "gwdown");
    assert_eq!(down["failed_stage"], "connect", "{down:#}");
    assert_eq!(down["error"]["class"], "connect", "{down:#}");
    for name in gws(1..=4) {
        assert_skipped(host(&hs, &name));
        f.assert_untouched(&name);
    }
    assert_eq!(
        fs::read_to_string(&retry).unwrap(),
        "gwdown\ngw001\ngw002\ngw003\ngw004\n"
    );
    // With room for it (one of five is 20%), the others go ahead.
    let doc = f
        .dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .args(["--max-fail-percent", "20", "--format", "json"])
        .expect_exit(1)
        .json();
    let hs = hosts(&doc);
    assert_eq!(host(&hs, "gwdown")["failed_stage"], "connect");
    for name in gws(1..=4) {
        assert_ok_applied(host(&hs, &name));
        f.assert_applied(&name);
    }
}

/// The text recap: one line per host (ok, changed, failed, skipped) and totals.
#[test]
fn recap_lines_and_totals() {
    let f = Fleet::up(5, &["--unreachable", "--fail-apply", "3"]);
    let inv = f.inventory();
    f.dwprov_cmd()
        .args([
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--limit",
            "canary",
            "--yes",
        ])
        .expect_exit(0)
        .run();
    // Batch 1: gw001 (no changes left), gw002 (changes), gw003 (fails) ->
    // 33% > 0%: stop. Batch 2: gw004, gw005 skipped; gwdown failed to connect.
    let out = f
        .dwprov_cmd()
        .args([
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--serial",
            "3",
        ])
        .expect_exit(1)
        .stdout();
    let recap = &out[out
        .find("RECAP")
        .unwrap_or_else(|| panic!("no RECAP:\n{out}"))..];
    let line = |host: &str| -> Vec<String> {
        let lines: Vec<&str> = recap
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(host))
            .collect();
        assert_eq!(lines.len(), 1, "one recap line for {host}:\n{recap}");
        lines[0].split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(line("gw001")[1..], ["ok", "changes=0"]);
    assert_eq!(line("gw002")[1], "changed");
    assert!(line("gw002")[2].starts_with("changes=") && line("gw002")[2] != "changes=0");
    assert_eq!(line("gw003")[1..3], ["failed", "stage=apply"]);
    assert_eq!(line("gw004")[1], "skipped");
    assert_eq!(line("gw005")[1], "skipped");
    assert_eq!(line("gwdown")[1..3], ["failed", "stage=connect"]);
    assert!(
        recap.contains("6 host(s): 1 ok, 1 changed, 2 failed, 2 skipped"),
        "totals:\n{recap}"
    );
    f.assert_applied("gw001");
    f.assert_applied("gw002");
    for h in ["gw003", "gw004", "gw005"] {
        f.assert_untouched(h);
    }
}

/// A saved plan is applied exactly; a host whose live state changed since
/// is refused as stale and left alone, the others are applied.
#[test]
fn saved_plan_refuses_a_drifted_host() {
    let f = Fleet::up(4, &[]);
    let inv = f.inventory();
    let plan = f.dir.join("p.json");
    f.dwprov_cmd()
        .args(["plan", "-i", inv.to_str().unwrap()])
        .args(["-o", plan.to_str().unwrap()])
        .context("changes pending")
        .expect_exit(2)
        .run();
    assert!(plan.exists());

    // An admin changes gw003 by hand after the plan was reviewed.
    f.gw_sh(
        "gw003",
        "ip route add 10.98.0.0/16 via 203.0.113.1 table 200 proto static",
    );

    let doc = f
        .dwprov_cmd()
        .args(["apply", plan.to_str().unwrap(), "--yes", "--format", "json"])
        .expect_exit(1)
        .json();
    let hs = hosts(&doc);
    assert_eq!(hs.len(), 4);
    let stale = host(&hs, "gw003");
    assert!(stale["applied"].is_null(), "{stale:#}");
    let msg = stale["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("stale plan"), "{stale:#}");
    f.assert_untouched("gw003");
    assert!(f
        .gw_sh("gw003", "ip route show table 200")
        .contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"));
    for name in ["gw001", "gw002", "gw004"] {
        assert_ok_applied(host(&hs, name));
        f.assert_applied(name);
    }
    // What was applied is what the inventory wants: nothing left to do there.
    f.dwprov_cmd()
        .args(["plan", "-i", inv.to_str().unwrap()])
        .args(["--limit", "!gw003", "--format", "json"])
        .expect_exit(0)
        .run();
}

/// `--serial 1,100%` plans every host first, then rolls out the canary; the
/// hosts of batch 2 are gathered again just before their batch. Paused there
/// (test hook DWPROV_TEST_PAUSE_BEFORE_BATCH), gw003 is changed by hand and
/// gw004's idle SSH connection is killed: gw003 is refused as a stale plan
/// (failed, class "stale plan", untouched, in the retry file), gw004 is
/// re-checked over a new connection and applied, gw002 over the connection
/// it was planned on. A rerun for the retry file applies gw003.
#[test]
fn later_batch_host_changed_during_rollout_is_refused_as_stale() {
    let f = Fleet::up(4, &[]);
    let inv = f.inventory();
    let retry = f.dir.join("retry.txt");
    let mut run = PausedApply::start(
        &f,
        &[
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--serial",
            "1,100%",
            "--format",
            "json",
            "--retry-file",
            retry.to_str().unwrap(),
        ],
    );
    run.wait_for_pause(2);
    // Between the batches: the canary is done, batch 2 not started.
    f.assert_applied("gw001");
    for name in ["gw002", "gw003", "gw004"] {
        f.assert_untouched(name);
    }
    f.gw_sh(
        "gw003",
        "ip route add 10.98.0.0/16 via 203.0.113.1 table 200 proto static",
    );
    let killed = f.kill_ssh_sessions("gw004");
    assert!(killed > 0, "gw004 had no SSH session to kill");
    run.resume();
    let (status, stdout, logs) = run.finish();
    assert_eq!(status.code(), Some(1), "gw003 failed: exit 1\n{logs}");
    let doc: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{logs}"));
    let hs = hosts(&doc);
    let stale = host(&hs, "gw003");
    assert_eq!(stale["error"]["class"], "stale plan", "{stale:#}");
    assert_eq!(stale["failed_stage"], "gather", "{stale:#}");
    assert_eq!(stale["skipped"], false, "{stale:#}");
    assert!(stale["applied"].is_null(), "{stale:#}");
    assert!(stale["plan"].is_object(), "{stale:#}");
    let msg = stale["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("gw003: stale plan") && msg.contains("nothing was changed"),
        "{msg}"
    );
    f.assert_untouched("gw003");
    assert!(f
        .gw_sh("gw003", "ip route show table 200")
        .contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"));
    for name in ["gw001", "gw002", "gw004"] {
        assert_ok_applied(host(&hs, name));
        f.assert_applied(name);
    }
    assert_eq!(fs::read_to_string(&retry).unwrap(), "gw003\n");
    // SSH logins: plan + verify; gw003 was re-checked over its planning
    // connection and refused; gw004's died while idle: one more.
    for (name, logins) in [("gw001", 2), ("gw002", 2), ("gw003", 1), ("gw004", 3)] {
        let log = f.sshd_log(name);
        assert_eq!(
            log.matches("Accepted publickey for root").count(),
            logins,
            "{name}:\n{log}"
        );
    }

    // Run again for the retry file: gw003 is planned afresh and applied;
    // the route added by hand is not dwprov's and stays.
    f.dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap()])
        .args(["--limit", &format!("@{}", retry.display())])
        .args(["--yes", "--serial", "1,100%"])
        .expect_exit(0)
        .run();
    f.assert_applied("gw003");
    assert!(f
        .gw_sh("gw003", "ip route show table 200")
        .contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"));
}

/// Re-checking a later batch must not refuse a host whose live state did
/// not change. An address with a finite lifetime (DHCP, SLAAC-like) does:
/// `ip -j addr` shows its remaining valid_life_time, which counts down, and
/// the facts digest hashes that output, so such a host reads as changed a
/// second later and is refused as stale (saved plans have the same problem).
#[test]
fn later_batch_host_with_a_dhcp_like_address_is_not_stale() {
    let f = Fleet::up(2, &[]);
    let inv = f.inventory();
    f.gw_sh(
        "gw002",
        "ip addr add 192.0.2.9/32 dev eth0p valid_lft 3600 preferred_lft 3600",
    );
    let mut run = PausedApply::start(
        &f,
        &[
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--serial",
            "1,100%",
            "--format",
            "json",
        ],
    );
    run.wait_for_pause(2);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run.resume();
    let (status, _, logs) = run.finish();
    assert_eq!(status.code(), Some(0), "{logs}");
    f.assert_applied("gw002");
}

/// An apply that fails its writability preflight changed nothing and took
/// no snapshot: the message must not claim the gateway "was reverted to
/// snapshot X" (a snapshot that does not exist on the gateway).
#[test]
fn failed_preflight_does_not_claim_a_revert() {
    let f = Fleet::up(1, &["--fail-apply", "1"]);
    let inv = f.inventory();
    let doc = f
        .dwprov_cmd()
        .args([
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--format",
            "json",
        ])
        .expect_exit(1)
        .json();
    let hs = hosts(&doc);
    let msg = host(&hs, "gw001")["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("nothing was changed"), "{msg}");
    f.assert_untouched("gw001");
    let snapshots = f.gw_sh("gw001", "ls /var/lib/dwprov/snapshots 2>/dev/null; true");
    assert!(
        snapshots.trim().is_empty(),
        "no snapshot taken: {snapshots}"
    );
    assert!(
        !msg.contains("reverted to snapshot"),
        "dwprov claims a revert to a snapshot that was never taken:\n{msg}"
    );
}

/// Gateways reachable only through a bastion (`ssh: {jump: bastion}`):
/// applied like the others; the bastion's host key and the target's are both
/// checked (either one wrong refuses the host, and nothing else).
#[test]
fn bastion_reaches_hidden_gateways_and_checks_both_host_keys() {
    let f = Fleet::up(4, &["--bastion", "3,4"]);
    let inv = f.inventory();
    assert_eq!(list_hosts(&f, &inv, "behind_bastion"), ["gw003", "gw004"]);
    assert_eq!(list_hosts(&f, &inv, "bastions"), ["bastion"]);
    // The controller has no way to the hidden switch by itself.
    Run::from(f.ctl_command("ip"))
        .args(["route", "get", "10.20.1.3"])
        .context("10.20.1.3 must not be routable from ctl")
        .expect_failure()
        .run();

    // Both host keys are checked: a wrong key for either hop refuses gw003
    // (class "host key", the hop named), never touching it; gw001 is fine.
    let known = f.dir.join("known_hosts");
    let good = fs::read_to_string(&known).unwrap();
    let other = f.dir.join("other_key");
    Run::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .expect_success()
        .run();
    let pubkey = fs::read_to_string(other.with_extension("pub")).unwrap();
    let wrong: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    for (addr, expect) in [
        (
            "10.10.0.2",
            "jump host bastion: HOST KEY MISMATCH for 10.10.0.2:22",
        ),
        ("10.20.1.3", "HOST KEY MISMATCH for 10.20.1.3:22"),
    ] {
        let forged: String = good
            .lines()
            .map(|l| {
                if l.split_whitespace().next() == Some(addr) {
                    format!("{addr} {} {}\n", wrong[0], wrong[1])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(&known, forged).unwrap();
        let o = f.dwprov(&[
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--limit",
            "gw001,gw003",
            "--yes",
            "--max-fail-percent",
            "100",
            "--format",
            "json",
        ]);
        fs::write(&known, &good).unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let hs = hosts(&json(&o));
        let h = host(&hs, "gw003");
        assert_eq!(h["error"]["class"], "host key", "{h:#}");
        let msg = h["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expect), "wrong {addr} key: {msg}");
        f.assert_untouched("gw003");
        assert!(
            host(&hs, "gw001")["error"].is_null(),
            "{:#}",
            host(&hs, "gw001")
        );
    }

    // With the right keys: every gateway, hidden or not, is applied and
    // verified (the verify connection goes through the bastion too).
    let doc = f
        .dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--limit", "!bastions"])
        .args(["--yes", "--format", "json"])
        .expect_exit(0)
        .json();
    let hs = hosts(&doc);
    for name in gws(1..=4) {
        let h = host(&hs, &name);
        assert!(h["error"].is_null(), "{h:#}");
        f.assert_applied(&name);
    }
    f.dwprov_cmd()
        .args([
            "plan",
            "-i",
            inv.to_str().unwrap(),
            "--limit",
            "behind_bastion",
        ])
        .context("nothing left to do")
        .expect_exit(0)
        .run();
    // The hidden gateways saw only the bastion as their SSH peer.
    for name in ["gw003", "gw004"] {
        let log = f.sshd_log(name);
        assert!(
            log.contains("Accepted publickey for root from 10.20.0.1"),
            "{name}:\n{log}"
        );
        assert!(
            !log.contains("from 10.10.0.1"),
            "{name} reached directly:\n{log}"
        );
    }
}
