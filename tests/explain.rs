//! `dwprov explain` agrees with the kernel: on the applied lab gateway, for a
//! table of flows and each seed method, the routing decision the tracer
//! computed (its query: source, destination, incoming interface, mark) is
//! asked of the kernel with `ip route get`, and both name the same table,
//! device and next hop, for the request and for its reply, traced on the
//! desired state (no connection) and on the live one (`--live`).
mod common;

use common::seed::*;
use common::Lab;
use serde_json::Value;
use std::collections::BTreeMap;

/// (from, to, dport): the scenarios of docs/methods.md and a few more.
const FLOWS: &[(&str, &str, u16)] = &[
    ("100.64.1.10", "198.51.100.2", 80),
    ("100.65.1.10", "203.0.113.2", 80),
    ("100.64.1.10", "203.0.113.2", 80),
    ("100.65.1.10", "198.51.100.2", 80),
    ("100.65.1.10", "203.0.113.2", 2222),
    ("100.64.1.10", "203.0.113.2", 8080),
    ("100.65.1.10", "198.51.100.2", 8080),
    ("192.168.0.50", "198.51.100.2", 80),
    ("192.168.0.50", "203.0.113.2", 2222),
    ("192.168.0.50", "100.64.1.10", 80),
    ("192.168.0.50", "100.65.1.10", 80),
    ("192.168.0.50", "100.66.1.10", 80),
    ("192.168.0.50", "192.0.2.9", 80),
    ("198.51.100.2", "100.65.1.10", 80),
    ("203.0.113.2", "100.64.1.10", 80),
    ("192.168.0.1", "100.65.1.10", 80),
];

/// Cross access to the forwarded server through the other line's address.
fn is_cross_forward(from: &str, to: &str, dport: u16) -> bool {
    dport == 80
        && ((from == "100.64.1.10" && to == "203.0.113.2")
            || (from == "100.65.1.10" && to == "198.51.100.2"))
}

fn explain(lab: &Lab, inv: &str, from: &str, to: &str, dport: u16, live: bool) -> Value {
    let port = dport.to_string();
    let mut args = vec![
        "explain", "-i", inv, "--from", from, "--to", to, "--proto", "tcp", "--dport", &port,
        "--format", "json",
    ];
    if live {
        args.push("--live");
    }
    let out = lab.dwprov_cmd().args(&args).expect_exit(0).run();
    let doc: Value = serde_json::from_slice(&out.stdout).expect("explain --format json");
    doc["hosts"][0]["trace"].clone()
}

type Route = (u64, String, String, String);

/// The kernel's answer to a tracer query, as (table id, kind, dev, via),
/// and the command asked.
fn kernel(lab: &Lab, q: &Value, names: &BTreeMap<String, u64>) -> (Route, String) {
    let mut cmd = format!(
        "ip -j route get {} from {}",
        q["dst"].as_str().unwrap(),
        q["src"].as_str().unwrap()
    );
    if let Some(i) = q["iif"].as_str() {
        cmd.push_str(&format!(" iif {i}"));
    }
    cmd.push_str(&format!(" mark {:#x}", q["mark"].as_u64().unwrap()));
    let text = lab.sh_ok("gw", &cmd);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd}: {e}: {text}"));
    let r = &v[0];
    let table = match r["table"].as_str() {
        None | Some("main") => 254,
        Some("local") => 255,
        Some(t) => t
            .parse()
            .ok()
            .or_else(|| names.get(t).copied())
            .unwrap_or_else(|| panic!("{cmd}: table {t}")),
    };
    let kind = r["type"].as_str().unwrap_or("unicast").to_string();
    let dev = r["dev"].as_str().unwrap_or("").to_string();
    let via = r["gateway"].as_str().unwrap_or("").to_string();
    ((table, kind, dev, via), cmd)
}

/// The tracer's decision of a leg as (table id, kind, dev, via), in the
/// kernel's spelling (a local delivery goes out of `lo`).
fn traced(d: &Value) -> Route {
    let o = &d["outcome"];
    let kind = o["kind"].as_str().unwrap().to_string();
    let table = d["table"].as_u64().unwrap_or(0);
    match kind.as_str() {
        "local" => (table, "local".into(), "lo".into(), String::new()),
        "unicast" => (
            table,
            kind,
            o["dev"].as_str().unwrap_or("").to_string(),
            o["via"].as_str().unwrap_or("").to_string(),
        ),
        _ => panic!("a dropped packet in the flow table: {d}"),
    }
}

/// The tracer's decision of one leg (`forward` or `reply`) of trace `t` is
/// the kernel's; false when the leg has none (only the gateway's own
/// packets to itself have no reply).
fn agrees(lab: &Lab, t: &Value, leg: &str, names: &BTreeMap<String, u64>, ctx: &str) -> bool {
    let d = &t[leg]["decision"];
    if d.is_null() {
        assert!(t[leg].is_null() || leg == "forward", "{ctx} {leg}: {t}");
        return false;
    }
    let (k, cmd) = kernel(lab, &d["query"], names);
    assert_eq!(traced(d), k, "{ctx} {leg}: tracer vs `{cmd}`\n{d}");
    true
}

#[test]
fn the_tracer_agrees_with_the_kernel_for_every_seed_method() {
    let lab = Lab::up();
    // The nftables backend (issue 12) too: its table is traced as iptables
    // rules of the same effect (trace/nft.rs).
    const NFT: &str = "          firewall: nftables\n";
    for (method, extra) in [
        ("static", ""),
        ("policy", ""),
        ("fwmark", ""),
        ("fwmark", NFT),
        ("set", NFT),
    ] {
        let name = format!(
            "inventory-{method}{}.yaml",
            if extra.is_empty() { "" } else { "-nft" }
        );
        let inv = inventory_with(&lab, &name, method, FORWARDS, CNC_ROUTES, extra);
        let method = if extra.is_empty() {
            method.to_string()
        } else {
            format!("{method} (nftables)")
        };
        apply(&lab, &inv);
        let inv = inv.to_str().unwrap().to_string();
        let names: BTreeMap<String, u64> = lab
            .sh_ok("gw", "cat /etc/iproute2/rt_tables.d/dwprov.conf")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let id = w.next()?.parse().ok()?;
                Some((w.next()?.to_string(), id))
            })
            .collect();
        let mut compared = 0;
        for &(from, to, dport) in FLOWS {
            for live in [false, true] {
                let t = explain(&lab, &inv, from, to, dport, live);
                let ctx = format!("{method} {from} -> {to}:{dport} live={live}");
                let marks = method.starts_with("fwmark") || method.starts_with("set");
                let works = !is_cross_forward(from, to, dport) || marks;
                assert_eq!(
                    t["verdict"]["ok"].as_bool(),
                    Some(works),
                    "{ctx}: {}",
                    t["verdict"]
                );
                for leg in ["forward", "reply"] {
                    compared += usize::from(agrees(&lab, &t, leg, &names, &ctx));
                }
            }
        }
        // Every flow has both legs routed (the table holds no dropped packet).
        assert_eq!(compared, FLOWS.len() * 2 * 2, "{method}");
    }
}

#[test]
fn explain_text_names_each_hop_and_the_verdict() {
    let lab = Lab::up();
    let inv = inventory(&lab, "static", FORWARDS, CNC_ROUTES);
    // Offline: no gateway is touched (it is not even configured yet).
    lab.dwprov_cmd()
        .args([
            "explain", "-i", inv.to_str().unwrap(), "--from", "100.65.1.10", "--to",
            "198.51.100.2", "--proto", "tcp", "--dport", "80",
        ])
        .expect_exit(0)
        .stdout_has("gw1 (desired state): tcp 100.65.1.10 -> 198.51.100.2:80, in on eth1")
        .stdout_has("-j DNAT --to-destination 192.168.0.100  → destination now 192.168.0.100:80")
        .stdout_has("route   table main: 100.65.0.0/16 via 203.0.113.1 dev eth2")
        .stdout_has("broken: the reply leaves by eth2 (line cnc), but the request came in on eth1 (line ctc)")
        .run();
    // Live, before any apply: no dual-line routing, so no route to the user at all.
    lab.dwprov_cmd()
        .args([
            "explain",
            "-i",
            inv.to_str().unwrap(),
            "--from",
            "100.65.1.10",
            "--to",
            "198.51.100.2",
            "--proto",
            "tcp",
            "--dport",
            "8080",
            "--live",
        ])
        .expect_exit(0)
        .stdout_has("gw1 (live state)")
        .stdout_has("broken: the reply is dropped: unreachable")
        .run();
    // Usage errors.
    lab.dwprov_cmd()
        .args([
            "explain",
            "-i",
            inv.to_str().unwrap(),
            "--from",
            "100.65.1.010",
            "--to",
            "198.51.100.2",
        ])
        .expect_exit(1)
        .stderr_has("leading zeros")
        .run();
    lab.dwprov_cmd()
        .args([
            "explain",
            "-i",
            inv.to_str().unwrap(),
            "--from",
            "100.99.1.1",
            "--to",
            "192.0.2.1",
        ])
        .expect_exit(1)
        .stderr_has("--iif")
        .run();
}
