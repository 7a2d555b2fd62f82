//! The seed's topology as inventories for the lab, and the traffic checks of
//! docs/methods.md, shared by the end-to-end test binaries.
use super::Lab;
use std::path::{Path, PathBuf};
use std::process::Output;

pub const FORWARDS: &str = "            - {proto: tcp, port: 80, to: 192.168.0.100}\n            - {proto: tcp, port: 2222, to: 192.168.0.100, to_port: 22, lines: [cnc]}";
pub const CNC_ROUTES: &str = "100.65.0.0/16, 100.66.0.0/16";

/// Everything a change could touch, without iptables-save's timestamps.
pub const SNAPSHOT: &str = "ip rule; ip route show table all; iptables-save | grep -v '^#'; cat /etc/iproute2/rt_tables.d/* 2>/dev/null; true";

/// An inventory for the lab's gateway. `extra` is appended to the host's
/// vars (indented by 10 spaces), e.g. `policies:` or `ssh:` overrides.
pub fn inventory_with(
    lab: &Lab,
    name: &str,
    method: &str,
    forwards: &str,
    cnc_routes: &str,
    extra: &str,
) -> PathBuf {
    let dir = lab.dir.display();
    let yaml = format!(
        r#"all:
  vars:
    ssh: {{user: root, identity_file: {dir}/id_ed25519, known_hosts: {dir}/known_hosts}}
  children:
    beijing:
      hosts:
        gw1:
          address: 10.9.0.2
          method: {method}
          lan:
            - {{interface: eth0, address: 192.168.0.1/24}}
          lines:
            - name: ctc
              table: 100
              mark: 0x100
              interface: eth1
              address: 198.51.100.2/24
              gateway: 198.51.100.1
              default: true
              routes: [100.64.0.0/16]
            - name: cnc
              table: 200
              mark: 0x200
              interface: eth2
              address: 203.0.113.2/24
              gateway: 203.0.113.1
              routes: [{cnc_routes}]
          nat: {{mode: snat}}
          forwards:
{forwards}
          hairpin: true
{extra}"#
    );
    lab.write_file(name, &yaml)
}

pub fn inventory(lab: &Lab, method: &str, forwards: &str, cnc_routes: &str) -> PathBuf {
    inventory_with(
        lab,
        &format!("inventory-{method}.yaml"),
        method,
        forwards,
        cnc_routes,
        "",
    )
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn plan_json(lab: &Lab, inv: &Path) -> (i32, serde_json::Value) {
    let o = lab.dwprov(&["plan", "-i", inv.to_str().unwrap(), "--format", "json"]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan json: {e}\n{}", text(&o)));
    (o.status.code().unwrap_or(-1), v)
}

/// `dwprov plan` exit code for this inventory: 0 = the gateway is exactly as it says.
pub fn plan_code(lab: &Lab, inv: &Path) -> i32 {
    lab.dwprov(&["plan", "-i", inv.to_str().unwrap()])
        .status
        .code()
        .unwrap_or(-1)
}

/// Short SSH timeouts (an inventory line under `ssh:` of a host) so a
/// lock-out or a stalled step is noticed in seconds, not a minute.
pub const FAST_SSH: &str = "          ssh: {connect_timeout: 2, timeout: 4}\n";

/// `dwprov apply --yes` of `inv`, commit-confirmed with a revert after
/// `confirm_secs`; the exit status is the caller's to check.
pub fn apply_confirming(lab: &Lab, inv: &Path, confirm_secs: u64) -> Output {
    lab.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--confirm-timeout",
        &confirm_secs.to_string(),
    ])
}

/// [`apply_confirming`] with `--force`: past `dwprov check`'s refusal, for
/// the tests of commit-confirmed apply as the second line of defence (a
/// lock-out check would refuse before any change).
pub fn apply_confirming_forced(lab: &Lab, inv: &Path, confirm_secs: u64) -> Output {
    lab.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--force",
        "--confirm-timeout",
        &confirm_secs.to_string(),
    ])
}

/// The seed inventory `lockout.yaml`: method fwmark, with a policy that
/// sends the controller's replies (10.9.0.0/24) out the CTC line, which
/// cuts the management path.
pub fn lockout_inventory(lab: &Lab) -> PathBuf {
    inventory_with(
        lab,
        "lockout.yaml",
        "fwmark",
        FORWARDS,
        CNC_ROUTES,
        &format!("{FAST_SSH}          policies:\n            - {{to: 10.9.0.0/24, line: ctc}}\n"),
    )
}

/// Apply [`lockout_inventory`] commit-confirmed (revert after
/// `confirm_secs`, forced past the check that would refuse it): it must
/// fail, saying the gateway reverts itself. Returns its output.
pub fn start_lockout(lab: &Lab, confirm_secs: u64) -> String {
    let bad = lockout_inventory(lab);
    let o = apply_confirming_forced(lab, &bad, confirm_secs);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("reverts itself to snapshot"), "{out}");
    out
}

/// Wait until `dwprov plan` of `inv` exits 0 (the gateway is exactly as
/// `inv` says), at most `limit`; returns how long it took.
pub fn wait_until_planned(
    lab: &Lab,
    inv: &Path,
    limit: std::time::Duration,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if plan_code(lab, inv) == 0 {
            return Some(start.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    None
}

pub fn apply(lab: &Lab, inv: &Path) -> Output {
    let o = lab.dwprov(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "apply failed:\n{}", text(&o));
    o
}

pub fn changes(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["hosts"][0]["plan"]["diff"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `peer=...` from the echo servers' `peer=... local=...`.
pub fn peer(body: &str) -> &str {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .unwrap_or("")
}

/// The traffic scenarios of docs/methods.md; `cross_forward` is whether
/// cross access to the forwarded server works with this method.
pub fn assert_traffic(lab: &Lab, cross_forward: bool) {
    assert_traffic_at(lab, cross_forward, "203.0.113.2")
}

/// [`assert_traffic`] with the gateway's CNC address `cnc` (a lease, issue 14).
pub fn assert_traffic_at(lab: &Lab, cross_forward: bool, cnc: &str) {
    let ok = |from: &str, url: &str| -> String {
        lab.curl(from, url)
            .unwrap_or_else(|e| panic!("{from} -> {url} failed: {e}"))
    };
    // 1. each ISP's user through its own line's address reaches the forwarded server
    assert_eq!(peer(&ok("uctc", "http://198.51.100.2/")), "100.64.1.10");
    assert_eq!(peer(&ok("ucnc", &format!("http://{cnc}/"))), "100.65.1.10");
    // 2. cross access to the forwarded server (FAQ 1/2)
    for (from, url, seen_as) in [
        ("uctc", format!("http://{cnc}/").as_str(), "100.64.1.10"),
        ("ucnc", "http://198.51.100.2/", "100.65.1.10"),
    ] {
        let r = lab.curl(from, url);
        if cross_forward {
            assert_eq!(
                r.as_deref().map(peer),
                Ok(seen_as),
                "{from} -> {url}: {r:?}"
            );
        } else {
            assert!(
                r.is_err(),
                "{from} -> {url} should fail with this method: {r:?}"
            );
        }
    }
    // 2b. cross access to a service on the gateway itself
    assert_eq!(
        peer(&ok("uctc", &format!("http://{cnc}:8080/"))),
        "100.64.1.10"
    );
    assert_eq!(
        peer(&ok("ucnc", "http://198.51.100.2:8080/")),
        "100.65.1.10"
    );
    // 3. hairpin: the LAN reaches the forward through both public addresses
    assert_eq!(peer(&ok("cli", "http://198.51.100.2/")), "192.168.0.1");
    assert_eq!(peer(&ok("cli", &format!("http://{cnc}/"))), "192.168.0.1");
    // 4. the LAN leaves by the destination's line, seen with that line's address
    assert_eq!(peer(&ok("cli", "http://100.64.1.10/")), "198.51.100.2");
    assert_eq!(peer(&ok("cli", "http://100.65.1.10/")), cnc);
    // ... and so does the gateway's own traffic
    assert_eq!(
        peer(&lab.sh_ok("gw", "curl -sS --max-time 3 http://100.64.1.10/")),
        "198.51.100.2"
    );
    assert_eq!(
        peer(&lab.sh_ok("gw", "curl -sS --max-time 3 http://100.65.1.10/")),
        cnc
    );
}
