//! `dwprov check` on the lab: each hazard of issue 13 planted on the lab
//! gateway (or in its inventory) is found, with its message and the
//! inventory location; the clean seed inventories (the tests' and the shipped
//! examples/seed-*) pass; `plan` and `apply`
//! refuse an inventory with an error finding before changing anything (the
//! lock-out: a /32 of the controller routed out of a WAN line), and
//! `--force` goes on, loudly.
mod common;

use common::seed::*;
use common::Lab;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `check --format json` of `inv` (with `extra` flags): its exit status and
/// the findings of the one host.
fn check(lab: &Lab, inv: &Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["check", "-i", inv.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let o = lab.dwprov(&args);
    let doc: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check json: {e}\n{}", text(&o)));
    let host = &doc["hosts"][0];
    assert!(host["error"].is_null(), "{host:#}\n{}", text(&o));
    (
        o.status.code().unwrap_or(-1),
        host["findings"].as_array().cloned().unwrap_or_default(),
    )
}

/// The 1-based line of the first line of `inv` holding `needle`.
fn line_of(inv: &Path, needle: &str) -> usize {
    std::fs::read_to_string(inv)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", inv.display()))
        + 1
}

/// A copy of the seed inventory of `method`, with `from` replaced by `to`.
fn variant(lab: &Lab, name: &str, method: &str, extra: &str, edit: (&str, &str)) -> PathBuf {
    let base = inventory_with(lab, name, method, FORWARDS, CNC_ROUTES, extra);
    let text = std::fs::read_to_string(&base).unwrap();
    assert!(text.contains(edit.0), "{}", edit.0);
    lab.write_file(name, &text.replacen(edit.0, edit.1, 1))
}

/// One planted hazard: what to do on the gateway (and undo), the
/// inventory, and what `check` must say: severity, code, a piece of the
/// message, and the inventory line (None: the gateway's own state).
struct Case {
    what: &'static str,
    plant: &'static str,
    undo: &'static str,
    inv: PathBuf,
    severity: &'static str,
    code: &'static str,
    says: &'static str,
    line: Option<usize>,
}

fn run_case(lab: &Lab, c: &Case) {
    if !c.plant.is_empty() {
        lab.sh_ok("gw", c.plant);
    }
    let (code, fs) = check(lab, &c.inv, &[]);
    if !c.undo.is_empty() {
        lab.sh_ok("gw", c.undo);
    }
    let f = fs
        .iter()
        .find(|f| f["code"] == c.code)
        .unwrap_or_else(|| panic!("{}: no `{}` finding in {fs:#?}", c.what, c.code));
    assert_eq!(f["severity"], c.severity, "{}: {f:#}", c.what);
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains(c.says), "{}: {msg}", c.what);
    assert!(
        !f["why"].as_str().unwrap().is_empty() && !f["fix"].as_str().unwrap().is_empty(),
        "{}: {f:#}",
        c.what
    );
    match c.line {
        Some(n) => {
            let loc = f["location"].as_str().unwrap_or_default();
            assert!(
                loc.starts_with(&format!("{}:{n}:", c.inv.display())),
                "{}: location {loc}, expected line {n}",
                c.what
            );
        }
        None => assert!(f["location"].is_null(), "{}: {f:#}", c.what),
    }
    let errors = fs.iter().any(|f| f["severity"] == "error");
    assert_eq!(code, if errors { 1 } else { 0 }, "{}: {fs:#?}", c.what);
}

#[test]
fn check_finds_each_planted_hazard_at_its_location() {
    let lab = Lab::up();
    let fwmark = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    let static_ = inventory(&lab, "static", FORWARDS, CNC_ROUTES);
    // The clean seed inventories pass; fwmark even with --strict.
    assert_eq!(check(&lab, &fwmark, &["--strict"]), (0, vec![]));
    for m in ["static", "policy"] {
        let inv = inventory(&lab, m, FORWARDS, CNC_ROUTES);
        let (code, fs) = check(&lab, &inv, &[]);
        assert_eq!(code, 0, "{m}: {fs:#?}");
        assert!(
            fs.iter().all(|f| f["severity"] == "warning"),
            "{m}: {fs:#?}"
        );
        assert_eq!(check(&lab, &inv, &["--strict"]).0, 1, "{m} --strict");
    }
    // The shipped seed examples (with this lab's keys and the ISP lists' path).
    let root = env!("CARGO_MANIFEST_DIR");
    for m in ["static", "policy", "fwmark"] {
        let text = std::fs::read_to_string(format!("{root}/examples/seed-{m}/inventory.yaml"))
            .unwrap()
            .replace("/tmp/dwprov-lab/", &format!("{}/", lab.dir.display()))
            .replace("../isp/", &format!("{root}/examples/isp/"));
        let inv = lab.write_file(&format!("example-{m}.yaml"), &text);
        let strict: &[&str] = if m == "fwmark" { &["--strict"] } else { &[] };
        let (code, fs) = check(&lab, &inv, strict);
        assert_eq!(code, 0, "examples/seed-{m}: {fs:#?}");
        assert!(
            fs.iter().all(|f| f["code"] == "cross-access"),
            "examples/seed-{m}: {fs:#?}"
        );
    }
    let many: Vec<String> = (0..300)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect();
    let lockout = inventory_with(
        &lab,
        "lockout.yaml",
        "fwmark",
        FORWARDS,
        &format!("{CNC_ROUTES}, 10.9.0.1/32"),
        "",
    );
    let assert_wrong = inventory_with(
        &lab,
        "assert.yaml",
        "fwmark",
        FORWARDS,
        CNC_ROUTES,
        "          assert:\n            - {from: 192.168.0.50, to: 100.65.1.10, via: ctc}\n",
    );
    let cases = [
        Case {
            what: "cross access with method static (FAQ 1/2)",
            plant: "",
            undo: "",
            inv: static_.clone(),
            severity: "warning",
            code: "cross-access",
            says: "forward tcp 80 -> 192.168.0.100: cross access fails with method static",
            line: Some(line_of(&static_, "port: 80")),
        },
        Case {
            what: "no hairpin (FAQ 3)",
            plant: "",
            undo: "",
            inv: variant(&lab, "nohairpin.yaml", "fwmark", "", ("hairpin: true", "hairpin: false")),
            severity: "warning",
            code: "no-hairpin",
            says: "LAN clients (192.168.0.0/24 on eth0) reaching it through line ctc's address 198.51.100.2 get no answer",
            line: Some(line_of(&fwmark, "hairpin: true")),
        },
        Case {
            what: "a kernel before 3.6 (FAQ 2)",
            plant: "",
            undo: "",
            inv: inventory_with(&lab, "oldkernel.yaml", "fwmark", FORWARDS, CNC_ROUTES, "          route_cache_flush: false\n"),
            severity: "warning",
            code: "route-cache",
            says: "kernel 3.2.0-4-amd64 caches IPv4 routes",
            line: Some(line_of(&fwmark, "hairpin: true") + 1),
        },
        Case {
            what: "method policy with many prefixes",
            plant: "",
            undo: "",
            inv: inventory(&lab, "policy", FORWARDS, &many.join(", ")),
            severity: "warning",
            code: "policy-prefixes",
            says: "method policy renders 300 `ip rule to` rules for line cnc",
            line: Some(line_of(&fwmark, "routes: [100.65")),
        },
        Case {
            what: "the management path: the controller's /32 out of line cnc",
            plant: "",
            undo: "",
            inv: lockout.clone(),
            severity: "error",
            code: "management-path",
            says: "this apply would cut the SSH session it runs over",
            line: Some(line_of(&lockout, "10.9.0.1/32")),
        },
        Case {
            what: "a foreign rule inside dwprov's band",
            plant: "ip rule add priority 1150 from 10.1.0.0/16 lookup main",
            undo: "ip rule del priority 1150",
            inv: fwmark.clone(),
            severity: "error",
            code: "rule-band",
            says: "1 foreign ip rule(s) inside dwprov's priority band 1000..1999: 1150: from 10.1.0.0/16 lookup main",
            line: Some(line_of(&fwmark, "gw1:")),
        },
        Case {
            what: "a foreign iptables mark on dwprov's bits",
            plant: "iptables -t mangle -A PREROUTING -s 10.1.0.0/16 -j MARK --set-mark 0x100",
            undo: "iptables -t mangle -D PREROUTING -s 10.1.0.0/16 -j MARK --set-mark 0x100",
            inv: fwmark.clone(),
            severity: "error",
            code: "mark-bits",
            says: "foreign software uses dwprov's mark bits 0xff00: iptables -t mangle -A PREROUTING",
            line: Some(line_of(&fwmark, "gw1:")),
        },
        Case {
            what: "a foreign route in line ctc's table",
            plant: "ip route add 10.123.0.0/16 dev eth1 table 100",
            undo: "ip route del 10.123.0.0/16 table 100",
            inv: fwmark.clone(),
            severity: "warning",
            code: "table-taken",
            says: "table 100 of line ctc already holds 1 foreign route(s): 10.123.0.0/16 dev eth1",
            line: Some(line_of(&fwmark, "table: 100")),
        },
        Case {
            what: "an rt_tables name of another id",
            plant: "mkdir -p /etc/iproute2/rt_tables.d && echo '150 cnc' > /etc/iproute2/rt_tables.d/other.conf",
            undo: "rm /etc/iproute2/rt_tables.d/other.conf",
            inv: fwmark.clone(),
            severity: "error",
            code: "rt-tables",
            says: "line cnc (table 200): the name `cnc` already names table 150 in rt_tables",
            line: Some(line_of(&fwmark, "name: cnc")),
        },
        Case {
            what: "a forward of sshd's port",
            plant: "",
            undo: "",
            inv: variant(&lab, "sshfwd.yaml", "fwmark", "", ("port: 2222, to: 192.168.0.100, to_port: 22", "port: 22, to: 192.168.0.100")),
            severity: "warning",
            code: "sshd-captured",
            says: "forward tcp 22 on line cnc (203.0.113.2) captures the gateway's own sshd",
            line: Some(line_of(&fwmark, "port: 2222")),
        },
        Case {
            what: "a later sysctl file with strict rp_filter",
            plant: "mkdir -p /etc/sysctl.d && echo 'net.ipv4.conf.eth2.rp_filter = 1' > /etc/sysctl.d/zz-strict.conf",
            undo: "rm /etc/sysctl.d/zz-strict.conf",
            inv: fwmark.clone(),
            severity: "error",
            code: "rp-filter",
            says: "/etc/sysctl.d/zz-strict.conf:1: `net.ipv4.conf.eth2.rp_filter = 1` is applied after dwprov's /etc/sysctl.d/90-dwprov.conf: strict rp_filter on line interface eth2",
            line: None,
        },
        Case {
            what: "systemd-networkd enabled with its defaults",
            plant: "mkdir -p /etc/systemd/system/multi-user.target.wants && ln -sf /lib/systemd/system/systemd-networkd.service /etc/systemd/system/multi-user.target.wants/",
            undo: "rm -r /etc/systemd/system/multi-user.target.wants",
            inv: fwmark.clone(),
            severity: "error",
            code: "networkd",
            says: "systemd-networkd is enabled and manages foreign state: ManageForeignRoutingPolicyRules (default yes), ManageForeignRoutes (default yes)",
            line: Some(line_of(&fwmark, "gw1:")),
        },
        Case {
            what: "a flow assertion the desired state contradicts",
            plant: "",
            undo: "",
            inv: assert_wrong.clone(),
            severity: "error",
            code: "assert",
            says: "flow 192.168.0.50 -> 100.65.1.10: expected via ctc, got via cnc",
            line: Some(line_of(&assert_wrong, "via: ctc")),
        },
    ];
    for c in &cases {
        if c.code == "route-cache" {
            common::fake_tool(
                &lab,
                "uname",
                "[ \"$1\" = -r ] && { echo 3.2.0-4-amd64; exit 0; }\nexec \"$REAL\" \"$@\"",
            );
            run_case(&lab, c);
            common::unfake_tool(&lab, "uname");
        } else {
            run_case(&lab, c);
        }
    }
    // networkd with the drop-in the finding names: no finding.
    lab.sh_ok(
        "gw",
        "mkdir -p /etc/systemd/system/multi-user.target.wants /etc/systemd/networkd.conf.d && \
         ln -sf /lib/systemd/system/systemd-networkd.service /etc/systemd/system/multi-user.target.wants/ && \
         printf '[Network]\\nManageForeignRoutingPolicyRules=no\\nManageForeignRoutes=no\\n' > /etc/systemd/networkd.conf.d/dwprov.conf",
    );
    assert_eq!(
        check(&lab, &fwmark, &["--strict"]),
        (0, vec![]),
        "networkd with the drop-in"
    );
    lab.sh_ok(
        "gw",
        "rm -r /etc/systemd/system/multi-user.target.wants /etc/systemd/networkd.conf.d",
    );

    // A foreign DNAT placed before dwprov's jump: needs the jump, so applied first.
    apply(&lab, &fwmark);
    assert_eq!(check(&lab, &fwmark, &["--strict"]), (0, vec![]), "applied");
    run_case(
        &lab,
        &Case {
            what: "a foreign DNAT of a forward's port before dwprov's jump",
            plant: "iptables -t nat -I PREROUTING 1 -p tcp --dport 80 -j DNAT --to-destination 192.168.0.200",
            undo: "iptables -t nat -D PREROUTING -p tcp --dport 80 -j DNAT --to-destination 192.168.0.200",
            inv: fwmark.clone(),
            severity: "error",
            code: "foreign-dnat",
            says: "forward tcp 80 on line ctc: a foreign rule before dwprov's jump in nat PREROUTING takes it",
            line: Some(line_of(&fwmark, "port: 80")),
        },
    );
    // Text output: severity, code, location, message, why and fix.
    lab.dwprov_cmd()
        .args(["check", "-i", lockout.to_str().unwrap()])
        .expect_exit(1)
        .stdout_has(&format!(
            "gw1: error[management-path] {}:{}:",
            lockout.display(),
            line_of(&lockout, "10.9.0.1/32")
        ))
        .stdout_has("  why: ")
        .stdout_has("  fix: ")
        .stdout_has("gw1: 1 error(s)")
        .run();
    // --offline: the inventory alone (no connection: the management path is not known).
    lab.dwprov_cmd()
        .args(["check", "-i", static_.to_str().unwrap(), "--offline"])
        .expect_exit(0)
        .stdout_has("warning[cross-access]")
        .run();
    // `plan` shows check's warnings with its own (they refuse nothing).
    let o = lab.dwprov(&["plan", "-i", static_.to_str().unwrap()]);
    let out = text(&o);
    assert!(
        out.contains(&format!(
            "warning: check: {}:{}:",
            static_.display(),
            line_of(&static_, "port: 80")
        )) && out.contains("cross access fails with method static: a cnc user")
            && out.contains("[cross-access]\n    fix: use `method: fwmark`"),
        "{out}"
    );
    assert_ne!(o.status.code(), Some(1), "a warning refuses nothing: {out}");
}

/// The lock-out inventory is refused by plan and apply before any change;
/// the gateway's state is exactly as before. `--force` goes on, loudly, and
/// the commit-confirmed apply is the second line of defence: it cannot
/// confirm over the cut path and reverts.
#[test]
fn plan_and_apply_refuse_an_inventory_check_finds_errors_in() {
    let lab = Lab::up();
    let inv = inventory_with(
        &lab,
        "lockout.yaml",
        "fwmark",
        FORWARDS,
        &format!("{CNC_ROUTES}, 10.9.0.1/32"),
        FAST_SSH,
    );
    // The kernel's state (the files dwprov writes are the plan's to judge;
    // iptables lists empty built-in tables once a revert has touched them).
    const NET: &str = "ip rule; ip route show table all; iptables-save | grep -c DWPROV; true";
    let before = lab.sh_ok("gw", SNAPSHOT);
    let net = lab.sh_ok("gw", NET);
    for cmd in ["plan", "apply"] {
        let mut args = vec![cmd, "-i", inv.to_str().unwrap()];
        if cmd == "apply" {
            args.push("--yes");
        }
        let o = lab.dwprov(&args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {out}");
        assert!(
            out.contains("refusing: `dwprov check` found 1 error(s); nothing was changed")
                && out.contains("this apply would cut the SSH session it runs over")
                && out.contains("--force"),
            "{cmd}: {out}"
        );
        assert_eq!(
            before,
            lab.sh_ok("gw", SNAPSHOT),
            "{cmd}: nothing may change"
        );
    }
    // --force: warned, applied, cut off, reverted by the gateway itself.
    let o = lab.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--force",
        "--confirm-timeout",
        "5",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("WARNING") && out.contains("--force: going on despite 1 error(s)"),
        "{out}"
    );
    let clean = inventory(&lab, "fwmark", FORWARDS, CNC_ROUTES);
    let start = std::time::Instant::now();
    while lab.sh_ok("gw", NET) != net {
        assert!(
            start.elapsed().as_secs() < 60,
            "not reverted within 60 s:\n{out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // And the clean inventory applies with the checks on.
    apply(&lab, &clean);
    assert_eq!(plan_code(&lab, &clean), 0);
}
