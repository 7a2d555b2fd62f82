//! End-to-end: dwprov in the lab's controller namespace, over real SSH, against
//! a real gateway namespace, proven with real traffic between lab hosts.
mod common;

use common::seed::*;
use common::Lab;

/// Foreign state an admin (or Docker) put on the gateway: must survive every apply.
fn plant_foreign_state(lab: &Lab) {
    lab.sh_ok(
        "gw",
        "ip rule add from 10.99.0.0/16 lookup 77 priority 500 && \
         ip route add 10.99.0.0/16 via 198.51.100.1 table 77 && \
         ip route add 10.98.0.0/16 via 203.0.113.1 proto static && \
         iptables -A INPUT -s 10.99.0.0/16 -p tcp --dport 22 -j ACCEPT && \
         iptables -t nat -N ADMIN && iptables -t nat -A PREROUTING -j ADMIN && \
         iptables -t nat -A ADMIN -s 10.99.0.0/16 -j RETURN && \
         printf '77\\tadmin\\n' >> /etc/iproute2/rt_tables",
    );
}

fn assert_foreign_state(lab: &Lab) {
    let rules = lab.sh_ok("gw", "ip rule show");
    assert!(
        rules.contains("500:\tfrom 10.99.0.0/16 lookup admin"),
        "{rules}"
    );
    let routes = lab.sh_ok("gw", "ip route show table all");
    assert!(
        routes.contains("10.99.0.0/16 via 198.51.100.1 dev eth1 table admin"),
        "{routes}"
    );
    assert!(
        routes.contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"),
        "{routes}"
    );
    let ipt = lab.sh_ok("gw", "iptables-save");
    assert!(
        ipt.contains("-A INPUT -s 10.99.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{ipt}"
    );
    assert!(ipt.contains("-A PREROUTING -j ADMIN"), "{ipt}");
    assert!(ipt.contains("-A ADMIN -s 10.99.0.0/16 -j RETURN"), "{ipt}");
    let rt = lab.sh_ok("gw", "cat /etc/iproute2/rt_tables");
    assert!(rt.contains("77\tadmin"), "{rt}");
}

#[test]
fn fwmark_converges_owns_only_its_state_and_passes_every_scenario() {
    let lab = Lab::up();
    plant_foreign_state(&lab);
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);

    // Before: no dual-line routing, so cross access cannot work.
    assert!(lab.curl("uctc", "http://203.0.113.2:8080/").is_err());

    let (code, plan) = plan_json(&lab, &inv);
    assert_eq!(code, 2, "plan must exit 2 with changes pending: {plan}");
    assert!(changes(&plan).len() > 10);

    apply(&lab, &inv);
    assert_traffic(&lab, true);
    assert_foreign_state(&lab);

    // Idempotent: nothing left to do, and a second apply changes nothing.
    let (code, plan) = plan_json(&lab, &inv);
    assert_eq!(code, 0, "{plan}");
    assert!(changes(&plan).is_empty(), "{plan}");
    let before = lab.sh_ok("gw", SNAPSHOT);
    let o = apply(&lab, &inv);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("gw1: no changes +0 ~0 -0"),
        "{}",
        text(&o)
    );
    let after = lab.sh_ok("gw", SNAPSHOT);
    assert_eq!(before, after);

    // Hand drift: delete one rule, one route, one iptables rule, edit rt_tables.d.
    lab.sh_ok(
        "gw",
        "ip rule del priority 1101 && ip route del 100.66.0.0/16 && \
         iptables -t nat -D DWPROV-POSTROUTING -s 192.168.0.0/24 -o eth2 -j SNAT --to-source 203.0.113.2 && \
         sed -i 's/^200\\tcnc$/200\\tnetcom/' /etc/iproute2/rt_tables.d/dwprov.conf",
    );
    let (code, plan) = plan_json(&lab, &inv);
    assert_eq!(code, 2);
    let ch = changes(&plan);
    let kinds: Vec<&str> = ch
        .iter()
        .map(|c| c["object"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ch.len(), 4, "exactly the four drifted objects: {ch:#?}");
    for k in ["rule", "route", "chain", "file"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    assert_eq!(
        ch.iter().find(|c| c["object"] == "chain").unwrap()["chain"],
        "DWPROV-POSTROUTING"
    );
    apply(&lab, &inv);
    assert_traffic(&lab, true);

    // Inventory change: drop a forward and a prefix; only those change.
    let inv2 = inventory(
        &lab,
        "fwmark",
        "            - {proto: tcp, port: 80, to: 192.168.0.100}",
        "100.65.0.0/16",
    );
    let (code, plan) = plan_json(&lab, &inv2);
    assert_eq!(code, 2);
    // The boot copies of the state (/etc/dwprov/ip.batch, iptables.rules) follow it.
    let (boot, ch): (Vec<_>, Vec<_>) = changes(&plan).into_iter().partition(|c| {
        c["object"] == "file" && c["path"].as_str().unwrap_or("").starts_with("/etc/dwprov/")
    });
    assert_eq!(boot.len(), 2, "ip.batch, iptables.rules: {boot:#?}");
    assert_eq!(ch.len(), 3, "route, DNAT chain, hairpin chain: {ch:#?}");
    assert!(ch
        .iter()
        .any(|c| c["object"] == "route" && c["to"].is_null()));
    apply(&lab, &inv2);
    let routes = lab.sh_ok("gw", "ip route show");
    assert!(!routes.contains("100.66.0.0/16"), "{routes}");
    let ipt = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(!ipt.contains("--dport 2222"), "{ipt}");
    assert_traffic(&lab, true);
    assert_foreign_state(&lab);
}

#[test]
fn static_method_passes_its_documented_scenarios() {
    let lab = Lab::up();
    let inv = inventory(&lab, "static", FORWARDS, CNC_ROUTES);
    apply(&lab, &inv);
    assert_traffic(&lab, false);
    let (code, _) = plan_json(&lab, &inv);
    assert_eq!(code, 0);
}

#[test]
fn policy_method_passes_its_documented_scenarios() {
    let lab = Lab::up();
    let inv = inventory(&lab, "policy", FORWARDS, CNC_ROUTES);
    apply(&lab, &inv);
    let rules = lab.sh_ok("gw", "ip rule show");
    assert!(rules.contains("to 100.65.0.0/16 lookup cnc"), "{rules}");
    assert_traffic(&lab, false);
    let (code, _) = plan_json(&lab, &inv);
    assert_eq!(code, 0);
}

#[test]
fn gather_sees_planted_state_over_one_ssh_connection() {
    let lab = Lab::up();
    lab.sh_ok(
        "gw",
        "ip rule add from 10.7.0.0/16 lookup 70 priority 700 && \
         ip route add 10.7.0.0/16 via 198.51.100.1 table 70 && \
         iptables -t nat -A POSTROUTING -s 10.7.0.0/16 -o eth1 -j MASQUERADE",
    );
    let inv = lab.inventory();
    let v = lab
        .dwprov_cmd()
        .args(["gather", "-i", inv.to_str().unwrap(), "--format", "json"])
        .expect_exit(0)
        .json();
    let facts = &v["hosts"][0]["facts"];
    let rules = facts["state"]["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["priority"] == 700 && r["from"] == "10.7.0.0/16"),
        "{rules:?}"
    );
    let routes = facts["state"]["routes"].as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r["table"] == 70 && r["dst"] == "10.7.0.0/16"),
        "{routes:?}"
    );
    let post = &facts["state"]["iptables"]["tables"]["nat"]["chains"]["POSTROUTING"]["rules"];
    assert!(post.to_string().contains("MASQUERADE"), "{post}");
    // One connection: sshd logged exactly one accepted session for this run.
    let log = std::fs::read_to_string(lab.dir.join("sshd.log")).unwrap_or_default();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
}

#[test]
fn bad_inventory_changes_nothing_and_says_where() {
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, "100.65.0.0/33");
    let before = lab.sh_ok("gw", SNAPSHOT);
    lab.dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .expect_exit(1)
        .stderr_has("inventory-fwmark.yaml:")
        .stderr_has("100.65.0.0/33")
        .run();
    let after = lab.sh_ok("gw", SNAPSHOT);
    assert_eq!(before, after);
}

#[test]
fn apply_refuses_without_yes_when_not_a_terminal() {
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    lab.dwprov_cmd()
        .args(["apply", "-i", inv.to_str().unwrap()])
        .expect_exit(1)
        .stderr_has("--yes")
        .run();
    let rules = lab.sh_ok("gw", "ip rule");
    assert!(
        !rules.contains("lookup 100") && !rules.contains("lookup ctc"),
        "{rules}"
    );
}

#[test]
fn a_changed_host_key_is_refused_and_nothing_runs() {
    let lab = Lab::up();
    // Record another key for the gateway's address, as if it had been replaced.
    let other = lab.dir.join("other_host_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fields: Vec<&str> = pubkey.split_whitespace().collect();
    std::fs::write(
        lab.dir.join("known_hosts"),
        format!("10.9.0.2 {} {}\n", fields[0], fields[1]),
    )
    .unwrap();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    let o = lab.dwprov(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("MISMATCH") || out.contains("changed"), "{out}");
    assert!(out.contains("cause=host key"), "{out}");
    // Nothing ran: no authentication was even attempted, and no change was made.
    let log = std::fs::read_to_string(lab.dir.join("sshd.log")).unwrap_or_default();
    assert!(!log.contains("Accepted publickey"), "{log}");
    let rules = lab.sh_ok("gw", "ip rule");
    assert_eq!(rules.lines().count(), 3, "{rules}");
    // --accept-new-host-keys never accepts a CHANGED key.
    lab.dwprov_cmd()
        .args(["gather", "-i", inv.to_str().unwrap()])
        .arg("--accept-new-host-keys")
        .expect_exit(1)
        .run();
}

#[test]
fn an_unreachable_host_fails_alone_with_a_clear_message() {
    let lab = Lab::up();
    let dir = lab.dir.display();
    let inv = lab.write_file(
        "two.yaml",
        &format!(
            "all:\n  vars:\n    ssh: {{user: root, identity_file: {dir}/id_ed25519, known_hosts: {dir}/known_hosts, connect_timeout: 2}}\n  hosts:\n    gw1: {{address: 10.9.0.2}}\n    gone: {{address: 10.9.0.99}}\n"
        ),
    );
    let start = std::time::Instant::now();
    let o = lab.dwprov(&["gather", "-i", inv.to_str().unwrap()]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "bounded time"
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stdout.contains("── gw1"),
        "the reachable host is still gathered: {stdout}"
    );
    assert!(
        stderr.contains("gone") && stderr.contains("10.9.0.99:22"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("gw1:"),
        "only the unreachable host fails: {stderr}"
    );
}

/// `apply` without `--yes` at a terminal asks, and applies on "y". The plan
/// was made before the question: a host whose live state changed while the
/// prompt waited is refused as a stale plan and left as it is. Runs dwprov
/// under a pseudo-terminal (`script` from bsdutils).
#[test]
fn the_prompt_applies_on_yes_and_refuses_a_host_that_changed_meanwhile() {
    use std::io::{Read, Write};
    let lab = Lab::up();
    let inv = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    // Run apply at a pty; before answering, optionally change the gateway.
    let at_prompt = |drift: bool| -> String {
        let cmd = format!(
            "ip netns exec {} {} apply -i {}",
            lab.ns("ctl"),
            common::DWPROV,
            inv.display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script (bsdutils)");
        let mut out = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("[y/N]") {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "no prompt:\n{}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        if drift {
            lab.sh_ok("gw", "ip route add 10.123.0.0/16 dev eth1 table 100");
        }
        child.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
        out.read_to_end(&mut seen).unwrap();
        assert!(child.wait().unwrap().code().is_some());
        String::from_utf8_lossy(&seen).into_owned()
    };
    let refused = at_prompt(true);
    assert!(refused.contains("stale plan"), "{refused}");
    let rules = lab.sh_ok("gw", "ip rule");
    assert!(!rules.contains("lookup 100"), "nothing applied: {rules}");
    let applied = at_prompt(false);
    assert!(applied.contains("1 changed"), "{applied}");
    assert_eq!(plan_code(&lab, &inv), 0, "{applied}");
}
