//! Line health and failover driven by the inventory (issue 11, phase 2), on
//! the lab: `dwprov apply` of the seed topology with `health` on both lines
//! and the real 3,894-prefix unicom list on CNC renders the nexthop objects
//! and `nhid` routes, uploads `dwprov-agent` and starts it under its
//! supervisor (the lab has no systemd); a silent upstream outage
//! (tests/common/outage.rs) then fails CNC over to CTC and back, `plan`
//! stays at exit 0 during the outage and `status` says what the agent sees.
mod common;

use common::outage;
use common::seed::{apply, inventory_with, peer, text, FORWARDS};
use common::Lab;
use dwprov::ownership::{AGENT_STATE_DIR, AGENT_STATUS_FILE, INIT_SCRIPT};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Extra seconds on every bound the issue gives: a loaded 2-core machine.
const SLACK: f64 = 3.0;
/// CNC's nexthop object (ownership::line_nexthop_id of the second line).
const NH_CNC: u32 = 20002;

/// The seed inventory with `health` on both lines (defaults: interval 1,
/// timeout 1, down 3, up 5) and the real unicom list on CNC.
fn inventory(lab: &Lab) -> PathBuf {
    let unicom = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/isp/unicom.txt");
    let inv = inventory_with(
        lab,
        "inventory-failover.yaml",
        "fwmark",
        FORWARDS,
        "100.65.0.0/16, 100.66.0.0/16",
        "",
    );
    let yaml = std::fs::read_to_string(&inv).unwrap();
    let yaml = yaml
        .replacen(
            "              routes: [100.64.0.0/16]\n",
            "              routes: [100.64.0.0/16]\n              health: {targets: [100.64.1.10, '100.64.1.10:80']}\n",
            1,
        )
        .replacen(
            "              routes: [100.65.0.0/16, 100.66.0.0/16]\n",
            &format!(
                "              routes: [100.65.0.0/16, 100.66.0.0/16]\n              routes_file: {unicom}\n              health: {{targets: [100.65.1.10, '100.65.1.10:80']}}\n"
            ),
            1,
        );
    assert!(yaml.matches("health:").count() == 2, "{yaml}");
    lab.write_file("inventory-failover.yaml", &yaml)
}

fn status(lab: &Lab) -> Option<Value> {
    let out = lab.sh("gw", &format!("cat {AGENT_STATE_DIR}/{AGENT_STATUS_FILE}"));
    serde_json::from_slice(&out.stdout).ok()
}

fn line_state(lab: &Lab, name: &str) -> Option<String> {
    let s = status(lab)?;
    s["lines"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["state"].as_str().map(String::from))
}

fn agent_pid(lab: &Lab) -> Option<u32> {
    let out = lab.sh("gw", &format!("cat {AGENT_STATE_DIR}/agent.pid"));
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    lab.sh("gw", &format!("kill -0 {pid}"))
        .status
        .success()
        .then_some(pid)
}

fn agent_log(lab: &Lab) -> String {
    String::from_utf8_lossy(
        &lab.sh("gw", &format!("cat {AGENT_STATE_DIR}/agent.log"))
            .stdout,
    )
    .into_owned()
}

/// Polls `f` every 100 ms for at most `limit`: how long until it held.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Both lines up in the agent's status file (it started and probed).
fn wait_lines_up(lab: &Lab) {
    let up = wait_until(Duration::from_secs(20), || {
        line_state(lab, "ctc").as_deref() == Some("up")
            && line_state(lab, "cnc").as_deref() == Some("up")
    });
    assert!(
        up.is_some(),
        "the agent's lines are not up: {:?}\n{}",
        status(lab),
        agent_log(lab)
    );
}

/// The agent's supervisor and the agent, stopped when the test ends (a
/// failed assertion included), before the lab goes.
struct StopAgent<'a>(&'a Lab);

impl Drop for StopAgent<'_> {
    fn drop(&mut self) {
        let _ = self.0.sh(
            "gw",
            &format!(
                "for f in {AGENT_STATE_DIR}/supervisor.pid {AGENT_STATE_DIR}/agent.pid; do p=$(cat $f 2>/dev/null) && kill $p; done; true"
            ),
        );
    }
}

fn plan(lab: &Lab, inv: &std::path::Path) -> (i32, String) {
    let o = lab.dwprov(&["plan", "-i", inv.to_str().unwrap()]);
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn apply_installs_the_agent_and_cnc_fails_over_and_back() {
    let lab = Lab::up();
    let _stop = StopAgent(&lab);
    let inv = inventory(&lab);
    apply(&lab, &inv);
    wait_lines_up(&lab);
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "a plan right after apply is empty:\n{out}");

    // The CNC list routes by CNC's nexthop (one object for 3,894 routes),
    // CNC's own table keeps its literal gateway.
    let routed: usize = lab
        .sh_ok("gw", &format!("ip route show | grep -c 'nhid {NH_CNC} '"))
        .trim()
        .parse()
        .unwrap();
    assert!(routed >= 3_894, "routes via CNC's nexthop: {routed}");
    assert!(lab
        .sh_ok("gw", "ip route show table 200")
        .contains("default via 203.0.113.1 dev eth2"));
    assert_eq!(
        peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
        "203.0.113.2"
    );

    // CNC silent: a LAN client's new connection leaves by CTC, CTC's address.
    let out = outage::silence(&lab, "cnc");
    let (interval, timeout, down, up) = (1.0, 1.0, 3.0, 5.0);
    let bound = interval * down + timeout + 1.0;
    let switched = wait_until(Duration::from_secs_f64(bound + SLACK + 5.0), || {
        lab.curl_with("cli", &["--max-time", "1"], "http://100.65.1.10/")
            .is_ok_and(|b| peer(&b) == "198.51.100.2")
    });
    let took = out.started.elapsed();
    assert!(
        switched.is_some(),
        "no failover to CTC: {:?}\n{}",
        status(&lab),
        agent_log(&lab)
    );
    eprintln!(
        "outage to the first new connection via CTC: {:.2} s (bound {bound} s)",
        took.as_secs_f64()
    );
    assert!(took.as_secs_f64() <= bound + SLACK, "{took:?}");
    assert_eq!(line_state(&lab, "cnc").as_deref(), Some("down"));

    // Failover is not drift: plan exits 0 and says so as information.
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "plan during the outage:\n{shown}");
    assert!(
        shown.contains("info: line cnc down since") && shown.contains("failed over to ctc"),
        "{shown}"
    );
    // `dwprov status` says cnc down, in text and JSON.
    let st = lab.dwprov(&["status", "-i", inv.to_str().unwrap()]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    let st_text = text(&st);
    assert!(
        st_text.contains("cnc") && st_text.contains("down"),
        "{st_text}"
    );
    let js = lab.dwprov(&["status", "-i", inv.to_str().unwrap(), "--format", "json"]);
    let v: Value =
        serde_json::from_slice(&js.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&js)));
    assert_eq!(v["format_version"], 1);
    let lines = v["hosts"][0]["lines"].as_array().unwrap();
    let cnc = lines.iter().find(|l| l["name"] == "cnc").unwrap();
    assert_eq!(cnc["state"], "down", "{v:#}");
    assert_eq!(cnc["failover_to"], "ctc", "{v:#}");
    assert_eq!(v["hosts"][0]["agent"]["running"], true, "{v:#}");

    // An apply during the outage keeps the failover in force.
    apply(&lab, &inv);
    assert_eq!(
        peer(
            &lab.curl_with("cli", &["--max-time", "2"], "http://100.65.1.10/")
                .unwrap()
        ),
        "198.51.100.2",
        "apply during the outage routed traffic back into the dead line"
    );

    // CNC back: new connections leave by CNC again.
    let repaired = out.repair();
    let bound = interval * up + timeout + 1.0;
    let back = wait_until(Duration::from_secs_f64(bound + SLACK + 10.0), || {
        lab.curl_with("cli", &["--max-time", "1"], "http://100.65.1.10/")
            .is_ok_and(|b| peer(&b) == "203.0.113.2")
    });
    assert!(back.is_some(), "CNC did not come back\n{}", agent_log(&lab));
    let took = repaired.elapsed();
    eprintln!(
        "repair to the first new connection via CNC: {:.2} s (bound {bound} s)",
        took.as_secs_f64()
    );
    // The hold-down (docs/agent.md) can add up to `down + up` rounds after
    // a short outage.
    assert!(took.as_secs_f64() <= bound + down + SLACK, "{took:?}");
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("info: line"), "{shown}");
}

#[test]
fn a_killed_agent_is_back_within_5_s_and_boot_restores_it() {
    let lab = Lab::up();
    let _stop = StopAgent(&lab);
    let inv = inventory(&lab);
    apply(&lab, &inv);
    wait_lines_up(&lab);

    // Killed: the supervisor starts a new one within 5 s.
    let first = agent_pid(&lab).expect("the agent runs");
    lab.sh_ok("gw", &format!("kill -9 {first}"));
    let t0 = Instant::now();
    let back = wait_until(Duration::from_secs(10), || {
        agent_pid(&lab).is_some_and(|p| p != first)
    });
    assert!(back.is_some(), "no new agent\n{}", agent_log(&lab));
    assert!(t0.elapsed() <= Duration::from_secs(5), "{:?}", t0.elapsed());

    // "Reboot": the agent, its supervisor, its tmpfs state and every
    // nexthop and owned route and rule are gone; the init script brings
    // them back.
    lab.sh_ok(
        "gw",
        &format!(
            "for f in supervisor.pid agent.pid; do kill $(cat {AGENT_STATE_DIR}/$f); done; sleep 0.5; \
             rm -rf {AGENT_STATE_DIR}; ip -4 rule flush protocol 201; \
             for t in 100 200 254; do ip -4 route flush table $t proto 201; done; \
             ip route flush table all proto 201 2>/dev/null; ip nexthop flush proto 201; true"
        ),
    );
    assert!(agent_pid(&lab).is_none());
    assert!(lab.sh_ok("gw", "ip nexthop show").trim().is_empty());
    lab.sh_ok("gw", &format!("sh {INIT_SCRIPT} start"));
    wait_lines_up(&lab);
    assert!(agent_pid(&lab).is_some());
    assert_eq!(
        peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
        "203.0.113.2"
    );
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "after boot restore:\n{shown}");
}

fn rollback(lab: &Lab, inv: &std::path::Path) {
    let o = lab.dwprov(&[
        "rollback",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "gw1",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

fn agent_config(lab: &Lab) -> String {
    String::from_utf8_lossy(
        &lab.sh("gw", &format!("cat {}", dwprov::ownership::AGENT_CONFIG))
            .stdout,
    )
    .into_owned()
}

/// The revert of an apply that installed the agent stops it and takes its
/// nexthops away; of one that changed it, puts the old config back and
/// restarts the agent on it.
#[test]
fn rollback_stops_or_restores_the_agent() {
    let lab = Lab::up();
    let _stop = StopAgent(&lab);
    let plain = inventory_with(
        &lab,
        "inventory-plain.yaml",
        "fwmark",
        FORWARDS,
        "100.65.0.0/16, 100.66.0.0/16",
        "",
    );
    apply(&lab, &plain);
    let inv = inventory(&lab);
    apply(&lab, &inv);
    wait_lines_up(&lab);
    assert!(agent_pid(&lab).is_some());
    // The rollback's plan shows the nexthop objects going.
    let o = lab.dwprov(&["rollback", "-i", inv.to_str().unwrap(), "--limit", "gw1"]);
    assert!(
        text(&o).contains("-id 20002 via 203.0.113.1 dev eth2"),
        "{}",
        text(&o)
    );
    rollback(&lab, &inv);
    let (code, shown) = plan(&lab, &plain);
    assert_eq!(code, 0, "back to the inventory without health:\n{shown}");
    assert!(
        wait_until(Duration::from_secs(5), || agent_pid(&lab).is_none()).is_some(),
        "the agent still runs after the rollback"
    );
    assert!(lab.sh_ok("gw", "ip nexthop show").trim().is_empty());
    assert_eq!(
        peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
        "203.0.113.2"
    );

    // Installed, then changed (faster probes), then rolled back.
    apply(&lab, &inv);
    wait_lines_up(&lab);
    let before = agent_config(&lab);
    let yaml = std::fs::read_to_string(&inv).unwrap().replace(
        "health: {targets: [100.65.1.10, '100.65.1.10:80']}",
        "health: {targets: [100.65.1.10, '100.65.1.10:80'], interval: 0.5}",
    );
    let fast = lab.write_file("inventory-fast.yaml", &yaml);
    apply(&lab, &fast);
    assert!(agent_config(&lab).contains("\"interval\": 0.5"));
    let pid_fast = agent_pid(&lab).expect("the agent runs on the new config");
    // The snapshot holds the nexthops: the rollback's plan keeps them.
    let o = lab.dwprov(&["rollback", "-i", fast.to_str().unwrap(), "--limit", "gw1"]);
    assert!(
        text(&o).contains("agent.json") && !text(&o).contains("-id 2000"),
        "{}",
        text(&o)
    );
    rollback(&lab, &fast);
    assert_eq!(agent_config(&lab), before);
    assert!(
        wait_until(Duration::from_secs(5), || agent_pid(&lab)
            .is_some_and(|p| p != pid_fast))
        .is_some(),
        "the agent was not restarted on the old config"
    );
    wait_lines_up(&lab);
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
}

/// The default line (CTC) silent: its list and everything no list matches
/// (the default route) fail over to CNC, and come back.
#[test]
fn the_default_line_silent_fails_everything_else_over_and_back() {
    let lab = Lab::up();
    let _stop = StopAgent(&lab);
    let inv = inventory(&lab);
    apply(&lab, &inv);
    wait_lines_up(&lab);
    let default_dev = || {
        lab.sh_ok("gw", "ip route get 192.0.2.77 from 192.168.0.50 iif eth0")
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(default_dev(), "eth1");
    assert_eq!(
        peer(&lab.curl("cli", "http://100.64.1.10/").unwrap()),
        "198.51.100.2"
    );
    let out = outage::silence(&lab, "ctc");
    // CTC's users are reached through CNC (the ISPs peer), CNC's address.
    let moved = wait_until(Duration::from_secs_f64(5.0 + SLACK + 5.0), || {
        lab.curl_with("cli", &["--max-time", "1"], "http://100.64.1.10/")
            .is_ok_and(|b| peer(&b) == "203.0.113.2")
    });
    assert!(
        moved.is_some(),
        "CTC's list did not fail over\n{}",
        agent_log(&lab)
    );
    assert_eq!(default_dev(), "eth2", "the default route follows");
    assert_eq!(line_state(&lab, "ctc").as_deref(), Some("down"));
    // CNC's own traffic never moved.
    assert_eq!(
        peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
        "203.0.113.2"
    );
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
    out.repair();
    let back = wait_until(Duration::from_secs_f64(7.0 + 8.0 + SLACK), || {
        lab.curl_with("cli", &["--max-time", "1"], "http://100.64.1.10/")
            .is_ok_and(|b| peer(&b) == "198.51.100.2")
    });
    assert!(back.is_some(), "CTC did not come back\n{}", agent_log(&lab));
    assert_eq!(default_dev(), "eth1");
}

/// `n` new flows from the LAN client to the CTC user's web server (each
/// curl a new source port), counted by the line address each arrives from
/// (the server answers with its peer): one count per address of `peers`.
fn flows_by_peer<const N: usize>(lab: &Lab, n: usize, peers: [&str; N]) -> [usize; N] {
    let out = lab.sh_ok(
        "cli",
        &format!("for i in $(seq {n}); do curl -sS --max-time 2 http://100.64.1.10/ || echo fail; echo; done"),
    );
    peers.map(|p| out.matches(&format!("peer={p}")).count())
}

/// Two default lines, weights 2:1 (method fwmark): new flows to a
/// destination in no list spread by the weights (L4 hash), within 10
/// points; a dead line leaves the group, and comes back.
#[test]
fn a_balanced_default_spreads_flows_by_weight_and_drops_a_dead_line() {
    let lab = Lab::up();
    let _stop = StopAgent(&lab);
    let inv = inventory(&lab);
    // CTC's users (100.64.1.10) in no list: they are reached by the default
    // route, over either ISP (they peer).
    let yaml = std::fs::read_to_string(&inv)
        .unwrap()
        .replacen(
            "              routes: [100.64.0.0/16]\n",
            "              weight: 2\n",
            1,
        )
        .replacen(
            "              routes: [100.65.0.0/16, 100.66.0.0/16]\n",
            "              routes: [100.65.0.0/16, 100.66.0.0/16]\n              default: true\n",
            1,
        );
    let inv = lab.write_file("inventory-balanced.yaml", &yaml);
    apply(&lab, &inv);
    wait_lines_up(&lab);
    assert_eq!(
        lab.sh_ok("gw", "cat /proc/sys/net/ipv4/fib_multipath_hash_policy")
            .trim(),
        "1"
    );
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
    let count = |n: usize| {
        let [ctc, cnc] = flows_by_peer(&lab, n, ["198.51.100.2", "203.0.113.2"]);
        (ctc, cnc)
    };
    let (ctc, cnc) = count(300);
    eprintln!("300 flows: ctc {ctc}, cnc {cnc} (weights 2:1)");
    assert_eq!(ctc + cnc, 300, "every flow got through");
    let share = ctc as f64 / 300.0 * 100.0;
    assert!(
        (share - 66.7).abs() <= 10.0,
        "CTC's share {share:.1} % (want 66.7 +- 10)"
    );
    // CNC dies: it leaves the group, every new flow goes by CTC.
    let out = outage::silence(&lab, "cnc");
    assert!(
        wait_until(Duration::from_secs_f64(5.0 + SLACK + 5.0), || line_state(
            &lab, "cnc"
        )
        .as_deref()
            == Some("down"))
        .is_some(),
        "{}",
        agent_log(&lab)
    );
    let (ctc, cnc) = count(30);
    assert_eq!((ctc, cnc), (30, 0), "flows while CNC is down");
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
    out.repair();
    assert!(
        wait_until(Duration::from_secs_f64(7.0 + 8.0 + SLACK), || line_state(
            &lab, "cnc"
        )
        .as_deref()
            == Some("up"))
        .is_some(),
        "{}",
        agent_log(&lab)
    );
    let (ctc, cnc) = count(60);
    assert!(
        cnc > 0 && ctc > 0,
        "CNC is back in the group: ctc {ctc}, cnc {cnc}"
    );
}

/// The failover inventory plus a third line, cmcc (the 3-ISP lab's eth3,
/// with the real cmcc list), and ctc, cnc and cmcc all `default: true`,
/// weights 2:1:1. CTC's users are in no list (ctc's `routes` dropped), so
/// they are reached by the balanced default over any of the three ISPs.
fn inventory_three(lab: &Lab) -> PathBuf {
    let cmcc = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/isp/cmcc.txt");
    let yaml = std::fs::read_to_string(inventory(lab))
        .unwrap()
        .replacen(
            "              routes: [100.64.0.0/16]\n",
            "              weight: 2\n",
            1,
        )
        .replacen(
            "              routes: [100.65.0.0/16, 100.66.0.0/16]\n",
            "              routes: [100.65.0.0/16, 100.66.0.0/16]\n              default: true\n              weight: 1\n",
            1,
        )
        .replacen(
            "          nat: {mode: snat}\n",
            &format!(
                "            - name: cmcc\n              table: 300\n              mark: 0x300\n              interface: eth3\n              address: 198.18.0.2/24\n              gateway: 198.18.0.1\n              default: true\n              weight: 1\n              routes: [100.67.0.0/16]\n              routes_file: {cmcc}\n              health: {{targets: [100.67.1.10, '100.67.1.10:80']}}\n          nat: {{mode: snat}}\n"
            ),
            1,
        );
    assert_eq!(yaml.matches("default: true").count(), 3, "{yaml}");
    lab.write_file("inventory-three.yaml", &yaml)
}

/// Three default lines (N >= 3, the case VyOS broke), weights 2:1:1: of
/// 300 new flows to a destination in no list each line's share is within
/// 10 points of its weight's share; cmcc silent: its flows go to the other
/// two; cmcc back: it carries flows again.
#[test]
fn three_balanced_lines_share_by_weight_and_a_dead_one_leaves_and_returns() {
    let lab = Lab::up_with_isps(3);
    let _stop = StopAgent(&lab);
    // The third ISP is really there: its user answers through cmcc's router.
    assert_eq!(
        peer(&lab.sh_ok("cmcc", "curl -sS --max-time 3 http://100.67.1.10/")),
        "100.67.1.1"
    );
    let inv = inventory_three(&lab);
    apply(&lab, &inv);
    let up = wait_until(Duration::from_secs(20), || {
        ["ctc", "cnc", "cmcc"]
            .iter()
            .all(|l| line_state(&lab, l).as_deref() == Some("up"))
    });
    assert!(up.is_some(), "{:?}\n{}", status(&lab), agent_log(&lab));
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
    let count = |n: usize| flows_by_peer(&lab, n, ["198.51.100.2", "203.0.113.2", "198.18.0.2"]);
    let got = count(300);
    eprintln!(
        "300 flows: ctc {}, cnc {}, cmcc {} (weights 2:1:1)",
        got[0], got[1], got[2]
    );
    assert_eq!(
        got.iter().sum::<usize>(),
        300,
        "every flow got through: {got:?}"
    );
    for (i, want) in [50.0, 25.0, 25.0].iter().enumerate() {
        let share = got[i] as f64 / 300.0 * 100.0;
        assert!(
            (share - want).abs() <= 10.0,
            "line {i}'s share {share:.1} % (want {want} +- 10): {got:?}"
        );
    }
    // cmcc dies: it leaves the group, new flows go by ctc and cnc only.
    let out = outage::silence(&lab, "cmcc");
    assert!(
        wait_until(Duration::from_secs_f64(5.0 + SLACK + 5.0), || line_state(
            &lab, "cmcc"
        )
        .as_deref()
            == Some("down"))
        .is_some(),
        "{}",
        agent_log(&lab)
    );
    let got = count(60);
    eprintln!("60 flows, cmcc down: {got:?}");
    assert_eq!(got[2], 0, "no flow by the dead line: {got:?}");
    assert_eq!(got[0] + got[1], 60, "every flow got through: {got:?}");
    assert!(
        got[0] > 0 && got[1] > 0,
        "both live lines carry flows: {got:?}"
    );
    let (code, shown) = plan(&lab, &inv);
    assert_eq!(code, 0, "{shown}");
    out.repair();
    assert!(
        wait_until(Duration::from_secs_f64(7.0 + 8.0 + SLACK), || line_state(
            &lab, "cmcc"
        )
        .as_deref()
            == Some("up"))
        .is_some(),
        "{}",
        agent_log(&lab)
    );
    let got = count(60);
    eprintln!("60 flows, cmcc back: {got:?}");
    assert!(
        got.iter().all(|&n| n > 0),
        "cmcc is back in the group: {got:?}"
    );
}

/// The gateway's processes (in its network namespace) whose command line
/// contains every one of `words`.
fn gateway_processes(lab: &Lab, words: &[&str]) -> Vec<String> {
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.ns("gw")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| words.iter().all(|w| c.contains(w)))
        .collect()
}

/// A supervisor restart (`agent-supervise.sh restart`, what an apply or a
/// rollback runs on a new agent config) while the old supervisor sleeps
/// before restarting an agent that ended: the old one ends before the new
/// one starts, so one supervisor runs, its pid file names it, and its
/// agent runs. (The old supervisor's late trap used to end the new agent
/// and remove the new supervisor's pid file: a rollback under load showed
/// it.)
#[test]
fn a_restart_while_the_supervisor_sleeps_leaves_one_supervisor() {
    let lab = Lab::up();
    let _stop = StopAgent(&lab);
    let inv = inventory(&lab);
    apply(&lab, &inv);
    wait_lines_up(&lab);
    let old = agent_pid(&lab).expect("the agent runs");
    let supervisor = dwprov::ownership::AGENT_SUPERVISOR;
    lab.sh_ok(
        "gw",
        &format!("kill {old}; sleep 0.2; sh {supervisor} restart"),
    );
    // Past the old supervisor's `sleep 1`, and its new agent's start.
    std::thread::sleep(Duration::from_millis(2500));
    let running = gateway_processes(&lab, &["agent-supervise.sh", " run"]);
    assert_eq!(running.len(), 1, "{running:?}");
    let pid_file = lab.sh_ok(
        "gw",
        &format!("cat {AGENT_STATE_DIR}/supervisor.pid 2>/dev/null; true"),
    );
    let sup: u32 = pid_file
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no supervisor pid file: {pid_file:?}"));
    assert!(lab.sh("gw", &format!("kill -0 {sup}")).status.success());
    assert!(
        agent_pid(&lab).is_some_and(|p| p != old),
        "the new agent runs"
    );
}
