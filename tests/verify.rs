//! Flow assertions on the lab: the seed's assertions hold after the apply
//! and under `dwprov verify` (traced on the live state, each routing
//! decision asked of the kernel with `ip route get`), for each seed method;
//! a gateway changed by hand fails `verify`, naming flow, expected and got;
//! an apply whose result contradicts an assertion fails and the gateway
//! reverts (commit-confirmed), naming the flow; with `--no-confirm` it
//! fails and keeps the applied state.
mod common;

use common::seed::*;
use common::Lab;
use serde_json::Value;

/// What every seed method does (docs/methods.md), as assertions.
const SEED_ASSERTS: &str = "          assert:
            - {from: 192.168.0.50, to: 100.64.1.10, via: ctc, snat: 198.51.100.2}
            - {from: 192.168.0.50, to: 100.65.1.10, via: cnc, snat: 203.0.113.2}
            - {from: 192.168.0.50, to: 100.66.1.10, via: cnc}
            - {from: 192.168.0.50, to: 192.0.2.9, via: ctc, snat: 198.51.100.2}
            - {iif: eth1, from: 100.64.1.10, to: 198.51.100.2, proto: tcp, dport: 80, via: ctc, dnat: 192.168.0.100}
            - {iif: eth2, from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 80, via: cnc, dnat: 192.168.0.100}
            - {iif: eth2, from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 2222, via: cnc, dnat: 192.168.0.100}
            - {iif: eth1, from: 100.65.1.10, to: 198.51.100.2, proto: tcp, dport: 8080, via: ctc}
";
/// Cross access to the forward (FAQ 1/2): only method fwmark.
const CROSS_ASSERT: &str = "            - {iif: eth1, from: 100.65.1.10, to: 198.51.100.2, proto: tcp, dport: 80, via: ctc, dnat: 192.168.0.100}\n";

fn verify(lab: &Lab, inv: &std::path::Path) -> (i32, Vec<Value>) {
    let o = lab.dwprov(&["verify", "-i", inv.to_str().unwrap(), "--format", "json"]);
    let doc: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("verify json: {e}\n{}", text(&o)));
    let h = &doc["hosts"][0];
    assert!(h["error"].is_null(), "{h:#}");
    (
        o.status.code().unwrap_or(-1),
        h["assertions"].as_array().cloned().unwrap_or_default(),
    )
}

#[test]
fn seed_assertions_hold_after_apply_and_under_verify_for_each_method() {
    let lab = Lab::up();
    for method in ["static", "policy", "fwmark"] {
        let mut asserts = SEED_ASSERTS.to_string();
        if method == "fwmark" {
            asserts.push_str(CROSS_ASSERT);
        }
        let inv = inventory_with(
            &lab,
            &format!("{method}.yaml"),
            method,
            FORWARDS,
            CNC_ROUTES,
            &asserts,
        );
        // The apply checks them before confirming; it succeeds.
        apply(&lab, &inv);
        let (code, checked) = verify(&lab, &inv);
        let n = asserts.matches("- {").count();
        assert_eq!(checked.len(), n, "{method}");
        for c in &checked {
            assert_eq!(c["ok"], true, "{method}: {c:#}");
        }
        assert_eq!(code, 0, "{method}");
        // And the kernel agrees with the traffic: what they assert is what happens.
        assert_traffic(&lab, method == "fwmark");
    }
    // With static, cross access fails: an assertion that it works fails
    // `check` (offline), naming expected and got.
    let inv = inventory_with(
        &lab,
        "static-cross.yaml",
        "static",
        FORWARDS,
        CNC_ROUTES,
        &format!("          assert:\n{CROSS_ASSERT}"),
    );
    lab.dwprov_cmd()
        .args(["check", "-i", inv.to_str().unwrap(), "--offline"])
        .expect_exit(1)
        .stdout_has("error[assert]")
        .stdout_has("flow tcp 100.65.1.10 -> 198.51.100.2:80 in on eth1: expected via ctc, dnat 192.168.0.100, got via cnc, dnat 192.168.0.100")
        .run();
}

#[test]
fn verify_fails_on_a_gateway_changed_by_hand_and_a_wrong_assertion_reverts_the_apply() {
    let lab = Lab::up();
    let good = inventory_with(
        &lab,
        "good.yaml",
        "fwmark",
        FORWARDS,
        CNC_ROUTES,
        &format!("{FAST_SSH}{SEED_ASSERTS}"),
    );
    apply(&lab, &good);
    assert_eq!(verify(&lab, &good).0, 0);

    // By hand: dwprov's route of 100.66.0.0/16 deleted. Its users now leave
    // by the default line; verify says so (the kernel's answer).
    lab.sh_ok("gw", "ip route del 100.66.0.0/16");
    let (code, checked) = verify(&lab, &good);
    assert_eq!(code, 1);
    let bad: Vec<&Value> = checked.iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(bad.len(), 1, "{checked:#?}");
    assert_eq!(bad[0]["flow"], "192.168.0.50 -> 100.66.1.10");
    assert_eq!(bad[0]["expected"], "via cnc");
    assert_eq!(bad[0]["got"], "via ctc");
    // The kernel was asked, and its answer is what counted.
    let asked = bad[0]["kernel"][0].as_str().unwrap_or_default();
    assert!(
        asked.starts_with("ip route get 100.66.1.10 from 192.168.0.50 iif eth0 mark 0x0 -> ")
            && asked.contains("via 198.51.100.1 dev eth1"),
        "{:#}",
        bad[0]
    );
    let line = std::fs::read_to_string(&good)
        .unwrap()
        .lines()
        .position(|l| l.contains("to: 100.66.1.10"))
        .unwrap()
        + 1;
    assert!(
        bad[0]["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:{line}:", good.display())),
        "{:#}",
        bad[0]
    );
    lab.dwprov_cmd()
        .args(["verify", "-i", good.to_str().unwrap()])
        .expect_exit(1)
        .stdout_has("gw1: FAILED ")
        .stdout_has("flow 192.168.0.50 -> 100.66.1.10: expected via cnc, got via ctc")
        .stdout_has("gw1: 7 of 8 flow assertion(s) hold")
        .run();
    apply(&lab, &good);
    let before = lab.sh_ok("gw", SNAPSHOT);

    // A new line of routes, asserted by the wrong line: check refuses it
    // before any change; past that (--force) the apply fails its live
    // check and the gateway reverts.
    let wrong = inventory_with(
        &lab,
        "wrong.yaml",
        "fwmark",
        FORWARDS,
        &format!("{CNC_ROUTES}, 100.67.0.0/16"),
        &format!(
            "{FAST_SSH}{SEED_ASSERTS}            - {{from: 192.168.0.50, to: 100.67.1.10, via: ctc}}\n"
        ),
    );
    let o = lab.dwprov(&["apply", "-i", wrong.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("refusing: `dwprov check`"),
        "{}",
        text(&o)
    );
    assert_eq!(
        before,
        lab.sh_ok("gw", SNAPSHOT),
        "refused: nothing changed"
    );
    let o = lab.dwprov(&[
        "apply",
        "-i",
        wrong.to_str().unwrap(),
        "--yes",
        "--force",
        "--confirm-timeout",
        "30",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("1 flow assertion(s) failed after the apply")
            && out.contains("flow 192.168.0.50 -> 100.67.1.10: expected via ctc, got via cnc")
            && out.contains("the gateway was reverted to snapshot"),
        "{out}"
    );
    // Reverted at once (not after the 30 s timeout): the state is the good one.
    assert_eq!(plan_code(&lab, &good), 0, "{out}");
    assert!(!lab.sh_ok("gw", "ip route").contains("100.67.0.0/16"));
    assert_eq!(verify(&lab, &good).0, 0);

    // --no-confirm: nothing to revert to; the apply still fails, naming the flow.
    let o = lab.dwprov(&[
        "apply",
        "-i",
        wrong.to_str().unwrap(),
        "--yes",
        "--force",
        "--no-confirm",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("flow 192.168.0.50 -> 100.67.1.10: expected via ctc, got via cnc"),
        "{out}"
    );
    assert!(lab
        .sh_ok("gw", "ip route")
        .contains("100.67.0.0/16 via 203.0.113.1"));

    // The same apply again has nothing to change: its assertions are still
    // checked (on the live state) and fail it, and nothing changes.
    let before = lab.sh_ok("gw", SNAPSHOT);
    let o = lab.dwprov(&["apply", "-i", wrong.to_str().unwrap(), "--yes", "--force"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("1 flow assertion(s) failed after the apply")
            && out.contains("flow 192.168.0.50 -> 100.67.1.10: expected via ctc, got via cnc"),
        "{out}"
    );
    assert_eq!(before, lab.sh_ok("gw", SNAPSHOT), "no change");
    // And with the good inventory's assertions, a no-change apply passes.
    let o = lab.dwprov(&["apply", "-i", good.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = lab.dwprov(&["apply", "-i", good.to_str().unwrap(), "--yes"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "no change, assertions hold: {}",
        text(&o)
    );
}
