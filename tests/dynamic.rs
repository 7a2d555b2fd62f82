//! Lines of every kind (issue 14), on real packets: a CNC line whose
//! address and next hop are a real DHCP lease (dnsmasq on the cnc router,
//! udhcpc on the gateway), redialled to a new address and lost, followed by
//! the agent on the gateway with no dwprov run (phase 2);
//! and a point-to-point CNC line (a /32 with a peer) routed `dev eth2`.
//! Needs root.
mod common;

use common::seed::{assert_traffic_at, peer, text};
use common::Lab;
use std::path::Path;
use std::time::{Duration, Instant};

fn plan(lab: &Lab, inv: &Path) -> (i32, String) {
    let o = lab.dwprov(&["plan", "-i", inv.to_str().unwrap()]);
    (o.status.code().unwrap_or(-1), text(&o))
}

fn apply(lab: &Lab, inv: &Path) {
    let o = lab.dwprov(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(o.status.code(), Some(0), "apply failed:\n{}", text(&o));
}

/// Polls `cli -> CNC user` until the user sees the LAN as `seen_as`, for
/// at most `secs` seconds (generous: a loaded 2-core machine).
/// Try `attempt` every 200 ms for `secs`: how long until it held, or the
/// last thing it saw.
fn within(secs: u64, mut attempt: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(secs) {
        match attempt() {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

/// One try of `cli -> url`: Ok when its server sees the LAN as `seen_as`,
/// else who it saw or why it failed.
fn seen_as_now(lab: &Lab, url: &str, seen_as: &str) -> Result<(), String> {
    match lab.curl_with("cli", &["--max-time", "1"], url) {
        Ok(body) if peer(&body) == seen_as => Ok(()),
        Ok(body) => Err(peer(&body).to_string()),
        Err(e) => Err(e),
    }
}

fn wait_cnc_seen_as(lab: &Lab, seen_as: &str, secs: u64) -> Duration {
    within(secs, || seen_as_now(lab, "http://100.65.1.10/", seen_as)).unwrap_or_else(|last| {
        panic!(
            "within {secs} s the CNC user never saw the LAN as {seen_as} (last: {last})\n{}",
            lab.sh_ok(
                "gw",
                "ip rule; ip route show table cnc; iptables-save -t nat | grep -v '^#'"
            )
        )
    })
}

/// Wait (within `secs`) until the agent has converged onto `addr`: its
/// source-return rule and the forwards' DNAT on it. MASQUERADE takes a new
/// lease at once, so the LAN is seen with it before the agent has moved the
/// objects that name the address: traffic checks of those wait for this.
fn wait_followed(lab: &Lab, addr: &str, secs: u64) {
    let (rule, dnat) = (format!("from {addr} lookup cnc"), format!("-d {addr}/32"));
    within(secs, || {
        let now = lab.sh_ok("gw", "ip rule; iptables-save -t nat | grep -v '^#'");
        if now.contains(&rule) && now.contains(&dnat) {
            Ok(())
        } else {
            Err(now)
        }
    })
    .unwrap_or_else(|now| panic!("within {secs} s the agent did not converge onto {addr}:\n{now}"));
}

/// The lease moved to `addr` (the ISP's anti-spoofing with it) and nobody
/// runs dwprov: within 10 s the LAN is seen with it and the agent has moved
/// the source-return rule and the DNAT onto it; the seed's traffic checks
/// pass on it, and `plan` exits 0 with nothing left to follow. The plan's
/// output, for more checks.
fn lease_followed(lab: &Lab, inv: &Path, addr: &str) -> String {
    lab.lease(addr);
    let took = wait_cnc_seen_as(lab, addr, 10);
    eprintln!("the LAN was seen with the lease {addr} after {took:?}");
    wait_followed(lab, addr, 10);
    assert_traffic_at(lab, true, addr);
    let (code, out) = plan(lab, inv);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("follow the dynamic"),
        "the agent converged: nothing is left to follow\n{out}"
    );
    out
}

/// `address: dynamic, gateway: dynamic` on CNC: apply, the traffic of the
/// seed on the leased address, and the agent (deployed for the dynamic
/// line) follows every lease change on the gateway with no dwprov run: a
/// new lease within 10 s (the LAN seen with it, forwards, cross access and
/// hairpin on it, `plan` exits 0 with nothing to change), the lease lost
/// (CNC's traffic on ctc; `status` shows the lease or its loss), a lease
/// again (back on cnc). Nothing of ctc moves.
#[test]
fn a_dhcp_line_follows_its_lease() {
    let lab = Lab::up_dhcp();
    let inv = lab.inventory();
    let yaml = std::fs::read_to_string(&inv).unwrap();
    assert!(
        yaml.contains("address: dynamic") && yaml.contains("gateway: dynamic"),
        "{yaml}"
    );
    // The DHCP client's default route is in main, foreign, before and after.
    let client_route = "default via 203.0.113.1 dev eth2 metric 100";
    assert!(lab
        .sh_ok("gw", "ip route show table main")
        .contains(client_route));

    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("info: line cnc: address 203.0.113.77/24"),
        "{out}"
    );
    assert!(
        out.contains("info: line cnc: via 203.0.113.1 (dynamic"),
        "{out}"
    );
    assert!(
        !out.contains("hand-made"),
        "the DHCP route is not a duplicate to take over:\n{out}"
    );
    apply(&lab, &inv);
    assert_traffic_at(&lab, true, "203.0.113.77");
    let iptables = lab.sh_ok("gw", "iptables-save -t nat");
    assert!(iptables.contains("-o eth2 -j MASQUERADE"), "{iptables}");
    assert!(lab
        .sh_ok("gw", "ip route show table main")
        .contains(client_route));
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
    // The agent runs for the dynamic line (no `health` in this inventory).
    let agent = lab.sh_ok("gw", "cat /etc/dwprov/agent.json");
    assert!(agent.contains("\"follow\""), "{agent}");
    let ctc = "ip rule | grep -v 203.0.113; ip route show table ctc | grep -v eth2; iptables-save -t mangle | grep -v '^#'";
    let ctc_before = lab.sh_ok("gw", ctc);

    // A redial: the lease moves to .78 (the ISP's anti-spoofing with it),
    // and nobody runs dwprov.
    let out = lease_followed(&lab, &inv, "203.0.113.78");
    assert_eq!(lab.sh_ok("gw", ctc), ctc_before, "ctc's objects moved");
    let rules = lab.sh_ok("gw", "ip rule");
    assert!(rules.contains("from 203.0.113.78 lookup cnc"), "{rules}");
    assert!(!rules.contains("203.0.113.77"), "{rules}");
    assert!(
        out.contains("info: line cnc: address 203.0.113.78/24"),
        "{out}"
    );
    let (_, json) = common::seed::plan_json(&lab, &inv);
    assert!(
        common::seed::changes(&json).is_empty(),
        "0 changes after the agent: {json}"
    );
    // `status` shows the lease now, from its one gather.
    lab.dwprov_cmd()
        .args(["status", "-i", inv.to_str().unwrap()])
        .expect_exit(0)
        .stdout_has("address 203.0.113.78/24 (dynamic, from eth2) via 203.0.113.1 (dynamic)")
        .run();

    // The lease lost: cnc is down, its traffic on ctc, with no dwprov run.
    lab.lease("none");
    wait_cnc_seen_as(&lab, "198.51.100.2", 10);
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("info: line cnc is down: its traffic goes on line ctc"),
        "{out}"
    );
    lab.dwprov_cmd()
        .args(["status", "-i", inv.to_str().unwrap()])
        .expect_exit(0)
        .stdout_has("no address now on eth2: down, traffic on ctc")
        .run();

    // A lease again: back on cnc.
    lease_followed(&lab, &inv, "203.0.113.79");
    assert!(lab
        .sh_ok("gw", "ip route show table main")
        .contains(client_route));

    // `--templates`: the agent renders with apply's overrides. A comment
    // added to the boot script (an owned file, compared as text) survives
    // the agent's converge on a new lease (the built-in template has no
    // such line: its render would remove it), and `plan` with the same
    // overrides has nothing to change.
    let tpl = lab.dir.join("templates");
    std::fs::create_dir_all(tpl.join("boot")).unwrap();
    let marker = "# dwprov lab: the site boot script";
    let builtin = include_str!("../templates/boot/boot.sh.tera");
    let (shebang, rest) = builtin.split_once('\n').unwrap();
    std::fs::write(
        tpl.join("boot/boot.sh.tera"),
        format!("{shebang}\n{marker}\n{rest}"),
    )
    .unwrap();
    let (i, t) = (inv.to_str().unwrap(), tpl.to_str().unwrap());
    let o = lab.dwprov(&["apply", "-i", i, "--templates", t, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "apply failed:\n{}", text(&o));
    let kept = || {
        lab.sh("gw", &format!("grep -rqxF '{marker}' /etc/dwprov"))
            .status
            .success()
    };
    assert!(kept(), "apply wrote the override");
    lab.lease("203.0.113.80");
    wait_followed(&lab, "203.0.113.80", 10);
    // The agent writes its own config last: then the converge is whole.
    within(10, || {
        let cfg = lab.sh_ok("gw", "cat /etc/dwprov/agent.json");
        if cfg.contains("203.0.113.80/24") {
            Ok(())
        } else {
            Err(cfg)
        }
    })
    .unwrap_or_else(|c| panic!("the agent's config does not name .80:\n{c}"));
    assert!(
        kept(),
        "the agent's converge dropped the --templates override"
    );
    let o = lab.dwprov(&["plan", "-i", i, "--templates", t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The changes were noticed by rtnetlink, not by the fallback polling.
    let log = lab.sh_ok("gw", "cat /run/dwprov-agent/agent.log");
    assert!(log.contains("follow: dynamic lines moved"), "{log}");
    assert!(!log.contains("rtnetlink"), "{log}");
    // cnc's list goes by its nexthop object: a lease lost, found or moved
    // is a few changes (the nexthop, the source-return rule and table, the
    // forwards' DNAT, the boot files), never the list's thousands of routes.
    let listed: usize = lab
        .sh_ok("gw", "ip route show table main | grep -c 'nhid 20002 '")
        .trim()
        .parse()
        .unwrap();
    assert!(
        listed > 1000,
        "cnc's list is long: {listed} routes by its nexthop"
    );
    let counts: Vec<usize> = log
        .lines()
        .filter_map(|l| {
            l.split("follow: ")
                .nth(1)?
                .split(" change(s) applied")
                .next()?
                .parse()
                .ok()
        })
        .collect();
    eprintln!("follow converges, changes each: {counts:?} ({listed} routes by cnc's nexthop)");
    assert!(counts.len() >= 4, "a converge per lease change: {log}");
    assert!(
        counts.iter().all(|&n| n <= 64),
        "O(1) converges, not O(list): {counts:?}\n{log}"
    );
}

/// A point-to-point CNC line: 203.0.113.2/32 with peer 203.0.113.1, no
/// `gateway`: routes go `dev eth2` (the cnc router answers ARP for what it
/// routes, as a ppp or tun link needs none), and the traffic checks pass.
#[test]
fn a_point_to_point_line_routes_dev() {
    let lab = Lab::up();
    lab.sh_ok(
        "gw",
        "ip addr flush dev eth2 && ip addr add 203.0.113.2/32 peer 203.0.113.1 dev eth2",
    );
    lab.sh_ok(
        "cnc",
        "ip addr flush dev cust0 && ip addr add 203.0.113.1/32 peer 203.0.113.2 dev cust0 \
         && sysctl -qw net.ipv4.conf.cust0.proxy_arp=1",
    );
    let yaml = std::fs::read_to_string(lab.inventory()).unwrap().replace(
        "          address: 203.0.113.2/24\n          gateway: 203.0.113.1\n",
        "          address: 203.0.113.2/32             # point-to-point, no gateway\n",
    );
    assert!(yaml.contains("203.0.113.2/32"), "{yaml}");
    let inv = lab.write_file("inventory-p2p.yaml", &yaml);
    apply(&lab, &inv);
    let routes = lab.sh_ok("gw", "ip route show table main; ip route show table cnc");
    assert!(
        routes.contains("100.65.0.0/16 dev eth2 proto dwprov"),
        "{routes}"
    );
    assert!(routes.contains("default dev eth2 proto dwprov"), "{routes}");
    assert!(!routes.contains("via 203.0.113.1"), "{routes}");
    assert_traffic_at(&lab, true, "203.0.113.2");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
}

/// The point-to-point CNC line with `health` (issue 14 phase 2): its
/// nexthop object is `dev eth2` (no gateway); CNC's upstream silenced, the
/// agent points it at ctc and a LAN client's CNC traffic leaves by ctc with
/// ctc's address (`plan` exits 0: a failover is information); repaired, it
/// leaves by cnc again.
#[test]
fn a_point_to_point_line_fails_over() {
    let lab = Lab::up();
    lab.sh_ok(
        "gw",
        "ip addr flush dev eth2 && ip addr add 203.0.113.2/32 peer 203.0.113.1 dev eth2",
    );
    lab.sh_ok(
        "cnc",
        "ip addr flush dev cust0 && ip addr add 203.0.113.1/32 peer 203.0.113.2 dev cust0 \
         && sysctl -qw net.ipv4.conf.cust0.proxy_arp=1",
    );
    let yaml = std::fs::read_to_string(lab.inventory()).unwrap().replace(
        "          address: 203.0.113.2/24\n          gateway: 203.0.113.1\n",
        "          address: 203.0.113.2/32             # point-to-point, no gateway\n          \
         health: {targets: [100.65.1.10, '100.65.1.10:80'], interval: 0.5, timeout: 0.5}\n",
    );
    assert!(
        yaml.contains("203.0.113.2/32") && yaml.contains("health:"),
        "{yaml}"
    );
    let inv = lab.write_file("inventory-p2p-health.yaml", &yaml);
    apply(&lab, &inv);
    let nexthops = lab.sh_ok("gw", "ip nexthop show");
    assert!(nexthops.contains("dev eth2"), "{nexthops}");
    assert!(!nexthops.contains("via 203.0.113.1"), "{nexthops}");
    let routes = lab.sh_ok("gw", "ip route show table main");
    assert!(routes.contains("100.65.0.0/16 nhid"), "{routes}");
    assert_traffic_at(&lab, true, "203.0.113.2");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");

    let outage = common::outage::silence(&lab, "cnc");
    let took = wait_cnc_seen_as(&lab, "198.51.100.2", 20);
    eprintln!("failed over in {took:?}");
    let nexthops = lab.sh_ok("gw", "ip nexthop show");
    assert!(nexthops.contains("via 198.51.100.1 dev eth1"), "{nexthops}");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "a failover is information:\n{out}");
    assert!(out.contains("line cnc down"), "{out}");

    outage.repair();
    wait_cnc_seen_as(&lab, "203.0.113.2", 20);
    let nexthops = lab.sh_ok("gw", "ip nexthop show");
    assert!(nexthops.contains("dev eth2"), "{nexthops}");
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
}

/// Polls `cli -> url` until its server sees the LAN as `seen_as`.
fn wait_seen_as(lab: &Lab, url: &str, seen_as: &str, secs: u64) {
    if let Err(last) = within(secs, || seen_as_now(lab, url, seen_as)) {
        panic!("within {secs} s {url} never saw the LAN as {seen_as} (last: {last})");
    }
}

/// A tunnel line (the seed's 借线): cmcc is borrowed from a remote host
/// reached by a vxlan tunnel over ctc (`Lab::borrowed_line`); the cmcc line
/// is `vx0` with `health`. A LAN client's traffic to a CMCC user leaves
/// through the tunnel, seen with the remote's address (the gateway has no
/// cmcc cable any more); the remote's ISP silenced: the line fails over to
/// ctc (`plan` exits 0); repaired: back through the tunnel.
#[test]
fn a_tunnel_line_carries_its_prefixes_and_fails_over() {
    let lab = Lab::up_with_isps(3);
    let _remote = lab.borrowed_line();
    let old = "          interface: eth3\n          address: 198.18.0.2/24\n          gateway: 198.18.0.1\n";
    let yaml = std::fs::read_to_string(lab.inventory()).unwrap();
    assert!(yaml.contains(old), "{yaml}");
    let yaml = yaml.replace(
        old,
        "          interface: vx0                    # the tunnel to the remote host\n          \
         address: 10.99.0.2/30\n          gateway: 10.99.0.1\n          \
         health: {targets: [100.67.1.10, '100.67.1.10:80'], interval: 0.5, timeout: 0.5}\n",
    );
    let inv = lab.write_file("inventory-tunnel.yaml", &yaml);
    apply(&lab, &inv);
    let user = "http://100.67.1.10/";
    wait_seen_as(&lab, user, "198.18.0.2", 10);
    let tx = |lab: &Lab| -> u64 {
        let s = lab.sh_ok("gw", "cat /sys/class/net/vx0/statistics/tx_packets");
        s.trim().parse().unwrap()
    };
    let before = tx(&lab);
    for _ in 0..5 {
        assert_eq!(peer(&lab.curl("cli", user).unwrap()), "198.18.0.2");
    }
    assert!(tx(&lab) >= before + 5, "the CMCC traffic went through vx0");
    // The other lines are untouched.
    assert_eq!(
        peer(&lab.curl("cli", "http://100.64.1.10/").unwrap()),
        "198.51.100.2"
    );
    assert_eq!(
        peer(&lab.curl("cli", "http://100.65.1.10/").unwrap()),
        "203.0.113.2"
    );
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");

    let outage = common::outage::silence(&lab, "cmcc");
    wait_seen_as(&lab, user, "198.51.100.2", 20);
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "a failover is information:\n{out}");
    assert!(out.contains("line cmcc down"), "{out}");
    outage.repair();
    wait_seen_as(&lab, user, "198.18.0.2", 20);
    let (code, out) = plan(&lab, &inv);
    assert_eq!(code, 0, "{out}");
}
