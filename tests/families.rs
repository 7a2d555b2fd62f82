//! The gateway side takes its address families as data (gateway/lib.sh's
//! `IP_FAMILIES`): with IPv4 and IPv6 both managed, the owned listings,
//! the snapshot and revert of rules and routes, and a batch that the
//! kernel contradicts half-way all work on both families' objects, on a
//! real lab gateway. dwprov itself manages IPv4 only today
//! (`state::family::MANAGED`); this proves that a second family is a
//! parameter of the gateway-side programs, not a rewrite of them.
mod common;

use common::Lab;
use std::io::Write as _;
use std::process::Stdio;

/// The installed library (lib.sh, the backends, the kinds' steps) with
/// both families managed, IPv4 the first (lines without a flag).
fn library_with_both_families() -> String {
    let lib = dwprov::converge::installed_lib_sh();
    let one = lib
        .lines()
        .find(|l| l.starts_with("IP_FAMILIES="))
        .expect("the library sets IP_FAMILIES (state::family::ip_flags)")
        .to_string();
    assert!(one.contains("-4") && !one.contains("-6"), "{one}");
    lib.replacen(&one, "IP_FAMILIES='-4 -6'", 1)
}

/// Runs `body` on the lab gateway after the library, in a snapshot
/// directory of its own; returns stdout, asserting the exit status.
fn on_gateway(lab: &Lab, body: &str, expect_status: i32) -> String {
    let script = format!(
        "S=$(mktemp -d)\n{}\nrc=0\nrfail() {{ echo \"rfail: $1\" >&2; rc=3; }}\n{body}\n",
        library_with_both_families()
    );
    let mut child = lab
        .command("gw", "sh")
        .arg("-s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh on the lab gateway");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("send the script");
    let out = child.wait_with_output().expect("the gateway script ends");
    assert_eq!(
        out.status.code(),
        Some(expect_status),
        "gateway script:\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Owned (proto 201) objects of both families, in table 100 on `lo`
/// (the lab keeps IPv6 off: turned on here, in the gateway's namespace).
const PLANT: &str = "\
echo 0 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 || exit 9
ip -6 addr add 2001:db8:ff::1/64 dev lo || exit 9
ip -4 route add 100.99.0.0/16 dev lo table 100 proto 201
ip -6 route add 2001:db8:100::/48 dev lo table 100 proto 201
ip -6 route add default dev lo table 100 proto 201
ip -4 rule add priority 1233 fwmark 0x100/0xff00 lookup 100 protocol 201
ip -6 rule add priority 1234 fwmark 0x100/0xff00 lookup 100 protocol 201
ip -6 rule add priority 1235 from 2001:db8:1::/48 lookup 100 protocol 201
";

#[test]
fn snapshot_and_revert_cover_both_families() {
    let lab = Lab::up();
    let out = on_gateway(
        &lab,
        &format!(
            "{PLANT}
snapshot_routing || {{ echo \"snapshot: $what\" >&2; exit 1; }}
echo '--- rules'; cat \"$S/rules\"; echo '--- routes'; cat \"$S/routes\"
# Changes of both families: IPv6 rules and routes deleted, another IPv6
# route added, the IPv4 route deleted.
ip -6 rule del priority 1234
ip -6 rule del priority 1235
ip -6 route del 2001:db8:100::/48 table 100
ip -6 route add 2001:db8:200::/48 dev lo table 100 proto 201
ip -4 route del 100.99.0.0/16 table 100
revert_routing
echo '--- after'; ip -6 rule show; ip -6 route show table 100; ip -4 route show table 100
exit $rc"
        ),
        0,
    );
    let section = |name: &str| -> Vec<String> {
        out.split(&format!("--- {name}\n"))
            .nth(1)
            .unwrap_or_default()
            .split("\n---")
            .next()
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let rules = section("rules");
    assert!(
        rules.contains(
            &"-6 rule add priority 1234 from all fwmark 0x100/0xff00 lookup 100 proto 201"
                .to_string()
        ),
        "an IPv6 rule is listed with its family's flag: {rules:#?}"
    );
    assert!(
        rules.contains(
            &"rule add priority 1233 from all fwmark 0x100/0xff00 lookup 100 proto 201".to_string()
        ),
        "an IPv4 rule is listed without a flag: {rules:#?}"
    );
    assert_eq!(rules.len(), 3, "{rules:#?}");
    let routes = section("routes");
    assert!(
        routes.iter().any(|l| l
            .starts_with("-6 route replace proto 201 unicast 2001:db8:100::/48 dev lo table 100")),
        "{routes:#?}"
    );
    assert!(
        routes
            .iter()
            .any(|l| l.starts_with("-6 route replace proto 201 unicast default dev lo table 100")),
        "{routes:#?}"
    );
    assert!(
        routes.iter().any(
            |l| l.starts_with("route replace proto 201 unicast 100.99.0.0/16 dev lo table 100")
        ),
        "{routes:#?}"
    );
    // The revert checks itself (the owned listings equal the snapshot's:
    // an rfail otherwise, exit 3); and the kernel shows it.
    let after = section("after");
    let after = after.join("\n");
    assert!(
        after.contains("1234:\tfrom all fwmark 0x100/0xff00 lookup 100 proto 201"),
        "{after}"
    );
    assert!(
        after.contains("1235:\tfrom 2001:db8:1::/48 lookup 100 proto 201"),
        "{after}"
    );
    assert!(
        after.contains("2001:db8:100::/48 dev lo proto 201"),
        "{after}"
    );
    assert!(
        !after.contains("2001:db8:200::/48"),
        "the added IPv6 route is gone: {after}"
    );
    assert!(after.contains("100.99.0.0/16 dev lo proto 201"), "{after}");
}

#[test]
fn a_contradicted_batch_is_undone_in_both_families() {
    let lab = Lab::up();
    // Line 3 adds an IPv6 route that exists (the listing "lied"): the
    // lines before it, one of each family, are undone, the failed line is
    // named by its number in the whole batch, and nothing changed.
    let out = on_gateway(
        &lab,
        &format!(
            "{PLANT}
snapshot_routing || exit 1
cp \"$S/routes\" \"$S/before.routes\"; cp \"$S/rules\" \"$S/before.rules\"
printf '%s\\n' \
  'route add 100.98.0.0/16 dev lo table 100 proto 201' \
  '-6 route add 2001:db8:300::/48 dev lo table 100 proto 201' \
  '-6 route add 2001:db8:100::/48 dev lo table 100 proto 201' \
  '-6 rule add priority 1236 fwmark 0x200/0xff00 lookup 100 protocol 201' > \"$S/ip.batch\"
(ip_batch) 2> \"$S/err\"; echo \"status $?\"
cat \"$S/err\"
owned_routes \"$S/now.routes\"; owned_rules \"$S/now.rules\"
cmp -s \"$S/before.routes\" \"$S/now.routes\" && echo 'routes unchanged'
cmp -s \"$S/before.rules\" \"$S/now.rules\" && echo 'rules unchanged'
# A line of a family that is not managed is refused, not left out.
echo '-5 route add 10.7.0.0/16 dev lo table 100 proto 201' > \"$S/odd.batch\"
batch_ip \"$S/odd.batch\" 2>&1; echo \"odd status $?\"
exit 0"
        ),
        0,
    );
    assert!(
        out.contains("status 4"),
        "stopped, nothing changed (exit 4): {out}"
    );
    assert!(
        out.contains("line 3 of the ip batch (-6 route add 2001:db8:100::/48"),
        "the failed line is named by its number in the whole batch: {out}"
    );
    assert!(out.contains("the 2 line(s) before it were undone"), "{out}");
    assert!(out.contains("routes unchanged"), "{out}");
    assert!(
        out.contains("rules unchanged"),
        "the IPv6 rule after the failed line never ran: {out}"
    );
    assert!(
        out.contains("is of family -5, not one of -4 -6") && out.contains("odd status 1"),
        "{out}"
    );
}
