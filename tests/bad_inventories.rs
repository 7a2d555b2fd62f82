//! Bad inventories get one clear, located error; the documented example loads
//! and builds; group/host vars deep-merge in the documented order.
use dwprov::inventory::{self, Inventory};
use dwprov::model::{self, Forward, Gateway, Lan, Line, Method, NatMode, NextHop, Policy, Proto};
use dwprov::transport::Connection;
use dwprov::Error;
use ipnet::{IpNet, Ipv4Net};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A valid gateway; cases edit it. Line numbers are part of the expectations.
const BASE: &str = "\
all:
  hosts:
    gw1:
      address: 10.9.0.2
      method: fwmark
      lan:
        - {interface: eth0, address: 192.168.0.1/24}
      lines:
        - name: ctc
          table: 100
          mark: 0x100
          interface: eth1
          address: 198.51.100.2/24
          gateway: 198.51.100.1
          default: true
        - name: cnc
          table: 200
          mark: 0x200
          interface: eth2
          address: 203.0.113.2/24
          gateway: 203.0.113.1
          routes: [100.65.0.0/16]
      nat: {mode: snat}
      forwards:
        - {proto: tcp, port: 80, to: 192.168.0.100}
      policies:
        - {from: 192.168.0.50/32, line: cnc}
";

struct Case {
    name: &'static str,
    /// (from, to) replacements applied to BASE, each must match exactly once.
    edits: &'static [(&'static str, &'static str)],
    /// A whole inventory instead of BASE + edits.
    text: Option<&'static str>,
    /// Extra files beside the inventory.
    files: &'static [(&'static str, &'static str)],
    /// A distinctive piece of the error text (message or hint).
    expect: &'static str,
    line: usize,
    column: usize,
    /// File the error must point at (default: the inventory).
    in_file: &'static str,
}

const fn case(
    name: &'static str,
    edits: &'static [(&'static str, &'static str)],
    expect: &'static str,
    line: usize,
    column: usize,
) -> Case {
    Case {
        name,
        edits,
        text: None,
        files: &[],
        expect,
        line,
        column,
        in_file: "inv.yaml",
    }
}

const fn whole(
    name: &'static str,
    text: &'static str,
    expect: &'static str,
    line: usize,
    column: usize,
) -> Case {
    Case {
        name,
        edits: &[],
        text: Some(text),
        files: &[],
        expect,
        line,
        column,
        in_file: "inv.yaml",
    }
}

const CASES: &[Case] = &[
    // --- unknown keys, with "did you mean"
    case("unknown host key", &[("address: 10.9.0.2", "adress: 10.9.0.2")], "unknown key `adress` in vars of host `gw1`\n  hint: did you mean `address`?", 4, 7),
    case("unknown line key", &[("gateway: 198.51.100.1", "gatway: 198.51.100.1")], "unknown key `gatway` in line\n  hint: did you mean `gateway`?", 14, 11),
    case("unknown lan key", &[("eth0, address:", "eth0, adress:")], "did you mean `address`?", 7, 29),
    case("unknown forward key", &[("to: 192.168.0.100}", "to: 192.168.0.100, lnes: [ctc]}")], "unknown key `lnes` in forward\n  hint: did you mean `lines`?", 25, 53),
    case("unknown policy key", &[("{from: 192", "{form: 192")], "unknown key `form` in policy\n  hint: did you mean `from`?", 27, 12),
    case("unknown nat key", &[("{mode: snat}", "{mod: snat}")], "unknown key `mod` in nat\n  hint: did you mean `mode`?", 23, 13),
    case("unknown ssh key", &[("      method:", "      ssh: {usr: admin}\n      method:")], "unknown key `usr` in ssh settings\n  hint: did you mean `user`?", 5, 13),
    whole("unknown group key", "all:\n  host:\n    gw1: {address: 10.0.0.1}\n", "unknown key `host` in group `all`\n  hint: did you mean `hosts`?", 2, 3),
    whole("unknown top-level key", "all:\n  hosts:\nbeijing:\n  hosts:\n", "unknown top-level key `beijing`", 3, 1),
    // --- YAML itself
    case("duplicate key", &[("          table: 200\n", "          table: 200\n          table: 300\n")], "duplicate key `table`", 18, 11),
    case("syntax error", &[("{mode: snat}", "{mode: snat")], "YAML syntax error", 24, 15),
    // --- types
    case("table as string", &[("table: 100", "table: \"100\"")], "`table` must be an integer, found a string", 10, 18),
    case("lan not a list", &[("      lan:\n        - {interface: eth0, address: 192.168.0.1/24}\n", "      lan: eth0\n")], "`lan` must be a list, found a string", 6, 12),
    case("hairpin not a bool", &[("      method: fwmark\n", "      method: fwmark\n      hairpin: yes\n")], "`hairpin` must be true or false, found a string", 6, 16),
    // --- addresses
    case("line address without prefix", &[("198.51.100.2/24", "198.51.100.2")], "is not an IPv4 address with a prefix length", 13, 20),
    case("line address is the network", &[("198.51.100.2/24", "198.51.100.0/24")], "is the network address of 198.51.100.0/24", 13, 20),
    case("line address is the broadcast", &[("198.51.100.2/24", "198.51.100.255/24")], "is the broadcast address of 198.51.100.0/24", 13, 20),
    case("gateway outside subnet", &[("gateway: 198.51.100.1", "gateway: 198.51.101.1")], "gateway 198.51.101.1 is outside the line's subnet 198.51.100.0/24", 14, 20),
    case("gateway not an address", &[("gateway: 198.51.100.1", "gateway: 198.51.100")], "`gateway`: `198.51.100` is not an IPv4 address", 14, 20),
    case("lan overlaps a line", &[("192.168.0.1/24", "198.51.100.9/16")], "LAN subnet 198.51.0.0/16 overlaps line `ctc` subnet 198.51.100.0/24", 7, 38),
    case("lan prefix out of range", &[("192.168.0.1/24", "192.168.0.1/33")], "is not an IPv4 address with a prefix length", 7, 38),
    case("inline route with host bits", &[("[100.65.0.0/16]", "[100.65.1.0/16]")], "`100.65.1.0/16` has host bits set; the network is 100.65.0.0/16", 22, 20),
    case("ssh address with shell metacharacters", &[("address: 10.9.0.2", "address: 10.9.0.2;reboot")], "`10.9.0.2;reboot` is not an IP address or a DNS name", 4, 16),
    case("missing address", &[("      address: 10.9.0.2\n", "")], "host `gw1` has no `address`", 3, 5),
    // --- lines
    case("duplicate line name", &[("name: cnc", "name: ctc")], "duplicate line name `ctc`", 16, 17),
    case("duplicate table", &[("table: 200", "table: 100")], "duplicate table id 100", 17, 18),
    case("duplicate mark", &[("mark: 0x200", "mark: 0x100")], "duplicate mark 0x100", 18, 17),
    case("duplicate interface", &[("interface: eth2", "interface: eth1")], "interface `eth1` is used twice", 19, 22),
    case("lan reuses a line interface", &[("{interface: eth0,", "{interface: eth2,")], "interface `eth2` is used twice", 7, 23),
    case("reserved table", &[("table: 100", "table: 254")], "table id 254 is reserved (the `main` table)", 10, 18),
    case("table zero", &[("table: 100", "table: 0")], "table id 0 is reserved", 10, 18),
    case("table out of range", &[("table: 100", "table: 4294967296")], "`table` 4294967296 is out of range", 10, 18),
    case("line name not an rt_tables name", &[("name: ctc", "name: 1ctc")], "line name `1ctc` is not a valid routing table name", 9, 17),
    case("line name reserved", &[("name: ctc", "name: main")], "line name `main` is reserved by iproute2", 9, 17),
    case("line name with shell", &[("name: ctc", "name: \"c;reboot\"")], "is not a valid routing table name", 9, 17),
    case("mark zero", &[("mark: 0x100", "mark: 0")], "`mark` is 0", 11, 17),
    case("mark outside mask", &[("mark: 0x100", "mark: 0x1")], "mark 0x1 does not fit mark_mask 0xff00", 11, 17),
    case("mark_mask zero", &[("      method: fwmark\n", "      method: fwmark\n      mark_mask: 0\n")], "`mark_mask` is 0", 6, 18),
    case("no lines", &[], "host gw1 has no `lines`", 3, 5),
    case("no default line", &[("default: true", "default: false")], "no line has `default: true`", 9, 9),
    case("two default lines without fwmark", &[("routes: [100.65.0.0/16]", "default: true"), ("method: fwmark", "method: static")], "several lines have `default: true` (a balanced default route), which needs method fwmark, not static", 22, 20),
    // --- health and failover (issue 11)
    case("probe target inside the LAN", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [192.168.0.9]}\n")], "probe target 192.168.0.9 is inside the LAN 192.168.0.0/24", 23, 30),
    case("reliability above targets", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [1.2.3.4], reliability: 2}\n")], "`reliability` 2 is more than the 1 target(s) listed", 23, 53),
    case("unknown health key", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [1.2.3.4], intervl: 1}\n")], "unknown key `intervl` in health\n  hint: did you mean `interval`?", 23, 40),
    case("interval too short", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [1.2.3.4], interval: 0.1}\n")], "`interval` 0.1 is out of range (0.2 to 3600 seconds)", 23, 50),
    case("bad probe target", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [1.2.3.4:http]}\n")], "`1.2.3.4:http` is not a probe target", 23, 30),
    case("unknown fallback line", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [1.2.3.4]}\n          fallback: [ctx]\n")], "unknown line `ctx`\n  hint: did you mean `ctc`?", 24, 22),
    case("fallback to itself", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: {targets: [1.2.3.4]}\n          fallback: [cnc]\n")], "line `cnc` falls back to itself", 24, 22),
    case("fallback without health", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          fallback: [ctc]\n")], "`fallback` of line `cnc` has no effect without `health`", 23, 21),
    case("weight out of range", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          weight: 300\n")], "`weight` 300 is out of range (1 to 256)", 23, 19),
    case("health not a map", &[("          routes: [100.65.0.0/16]\n", "          routes: [100.65.0.0/16]\n          health: yes\n")], "`health` must be a map, found a string", 23, 19),
    case("interface with colon", &[("interface: eth1", "interface: eth1:0")], "interface name `eth1:0` contains ':'", 12, 22),
    case("interface too long", &[("interface: eth1", "interface: averyveryverylongname")], "must be 1 to 15 characters long", 12, 22),
    case("interface dotdot", &[("interface: eth1", "interface: ..")], "`..` is not a valid interface name", 12, 22),
    case("missing routes file", &[("routes: [100.65.0.0/16]", "routes_file: nope.txt")], "cannot read routes file `nope.txt`", 22, 24),
    // --- forwards
    case("forward outside every lan", &[("to: 192.168.0.100}", "to: 10.1.1.1}")], "forward target 10.1.1.1 is outside every LAN", 25, 38),
    case("forward port zero", &[("port: 80", "port: 0")], "`port` 0 is out of range (1 to 65535)", 25, 30),
    case("forward port too big", &[("port: 80", "port: 70000")], "`port` 70000 is out of range", 25, 30),
    case("forward unknown line", &[("to: 192.168.0.100}", "to: 192.168.0.100, lines: [cnd]}")], "unknown line `cnd`\n  hint: did you mean `cnc`?", 25, 61),
    case("duplicate forward", &[("to: 192.168.0.100}\n", "to: 192.168.0.100}\n        - {proto: tcp, port: 80, to: 192.168.0.101, lines: [cnc]}\n")], "duplicate forward tcp/80 on line `cnc`", 26, 30),
    case("unknown proto", &[("proto: tcp", "proto: sctp")], "unknown proto `sctp`\n  hint: valid values: tcp, udp", 25, 19),
    // --- policies
    case("policy unknown line", &[("line: cnc}", "line: cnd}")], "unknown line `cnd`", 27, 41),
    case("policy without from or to", &[("{from: 192.168.0.50/32, line: cnc}", "{line: cnc}")], "policy has neither `from` nor `to`", 27, 11),
    // --- choices and ranges
    case("unknown method", &[("method: fwmark", "method: fwmrk")], "unknown method `fwmrk`\n  hint: did you mean `fwmark`? valid values: static, policy, fwmark", 5, 15),
    case("unknown firewall", &[("      method: fwmark\n", "      method: fwmark\n      firewall: iptable\n")], "unknown firewall `iptable`\n  hint: did you mean `iptables`? valid values: iptables", 6, 17),
    case("firewall not a string", &[("      method: fwmark\n", "      method: fwmark\n      firewall: [iptables]\n")], "`firewall` must be one of iptables, nftables, found", 6, 17),
    case("method set without nftables", &[("      method: fwmark\n", "      method: set\n")], "method `set` puts each line's prefixes into an nftables set, but this host's firewall is iptables", 5, 15),
    case("unknown nat mode", &[("{mode: snat}", "{mode: snatt}")], "unknown nat mode `snatt`\n  hint: did you mean `snat`? valid values: snat, masquerade, none", 23, 19),
    case("rule_priority out of range", &[("      method: fwmark\n", "      method: fwmark\n      rule_priority: 32000\n")], "`rule_priority` 32000 is out of range (1 to 31766)", 6, 22),
    case("bad ssh user", &[("      method:", "      ssh: {user: Root}\n      method:")], "`Root` is not a valid user name", 5, 19),
    case("bad ssh port", &[("      method:", "      ssh: {port: 0}\n      method:")], "`ssh.port` is 0, out of range", 5, 19),
    case("unknown connection", &[("      method:", "      connection: telnet\n      method:")], "unknown connection `telnet`\n  hint: valid connections: ssh, local", 5, 19),
    // --- accepted but wrong (issue 17)
    case("listed default route", &[("[100.65.0.0/16]", "[0.0.0.0/0]")], "`0.0.0.0/0` in the routes of line `cnc` is the default route", 22, 20),
    case("listed lan subnet", &[("[100.65.0.0/16]", "[192.168.0.0/24]")], "is the LAN subnet on eth0, which is reached directly", 22, 20),
    case("listed line subnet", &[("[100.65.0.0/16]", "[198.51.100.0/24]")], "is the subnet of line `ctc`", 22, 20),
    case("leading zeros in a line address", &[("198.51.100.2/24", "198.051.100.002/24")], "`198.051.100.002` has leading zeros, which are ambiguous (inet_aton reads `010` as octal 8); write `198.51.100.2`", 13, 20),
    case("leading zero in a gateway", &[("gateway: 198.51.100.1", "gateway: 198.51.100.01")], "`gateway`: `198.51.100.01` has leading zeros", 14, 20),
    case("leading zeros in an inline route", &[("[100.65.0.0/16]", "[100.065.0.0/16]")], "`100.065.0.0` has leading zeros", 22, 20),
    case("leading zero in a prefix length", &[("[100.65.0.0/16]", "[100.0.0.0/08]")], "prefix length `08` has a leading zero; write `/8`", 22, 20),
    case("leading zeros in a forward target", &[("to: 192.168.0.100}", "to: 192.168.0.0100}")], "`to`: `192.168.0.0100` is not an IPv4 address", 25, 38),
    case("leading zeros in a policy source", &[("{from: 192.168.0.50/32,", "{from: 192.168.000.50/32,")], "`192.168.000.50` has leading zeros", 27, 18),
    case("leading zeros in the ssh address", &[("address: 10.9.0.2", "address: 010.9.0.2")], "`010.9.0.2` has leading zeros", 4, 16),
    case("interface all", &[("interface: eth1", "interface: all")], "`all` is not a valid interface name: net/ipv4/conf/all sets every interface", 12, 22),
    case("interface default", &[("{interface: eth0,", "{interface: default,")], "`default` is not a valid interface name", 7, 23),
    case("escape sequence in a value", &[("method: fwmark", "method: \"fw\\e[2J\\0mark\\n\"")], "unknown method `fw\\x1b[2J\\0mark\\n`", 5, 15),
    whole("group cycle", "all:\n  children:\n    a:\n      children:\n        b:\n    b:\n      children:\n        c:\n    c:\n      children:\n        a:\n      hosts:\n        h: {address: 10.0.0.1}\n", "group cycle: a → b → c → a\n  hint: a group cannot contain itself; remove `a` from the `children:` of `c`", 11, 9),
    whole("all is null", "all: null\n", "the inventory has no hosts", 1, 1),
    whole("all without hosts", "all:\n  children:\n    empty:\n", "the inventory has no hosts", 1, 1),
];

/// A case with `isp/r.txt` (holding `$body`) as the cnc line's routes file.
macro_rules! file_case {
    ($name:expr, $body:expr, $expect:expr, $line:expr, $column:expr) => {
        Case {
            name: $name,
            edits: &[(
                "routes: [100.65.0.0/16]",
                "routes: [100.65.0.0/16]\n          routes_file: isp/r.txt",
            )],
            text: None,
            files: &[("isp/r.txt", $body)],
            expect: $expect,
            line: $line,
            column: $column,
            in_file: "r.txt",
        }
    };
}

/// Cases that need a routes file beside the inventory.
const FILE_CASES: &[Case] = &[
    file_case!(
        "routes file that is not one",
        "root:$y$j9T$notarealhash:19000:0:99999:7:::\n",
        "expected an IPv4 prefix (a.b.c.d/len), found `r` (the line starts `root:$y$… (43 bytes)`)",
        1,
        1
    ),
    file_case!(
        "routes file with leading zeros",
        "1.0.1.0/24\n001.2.0.0/16\n",
        "`001.2.0.0` has leading zeros",
        2,
        1
    ),
    file_case!(
        "routes file listing the default route",
        "1.0.1.0/24\n  0.0.0.0/0\n",
        "is the default route",
        2,
        3
    ),
    file_case!(
        "routes file listing the LAN",
        "1.0.1.0/24\n192.168.0.0/24\n",
        "is the LAN subnet on eth0",
        2,
        1
    ),
    file_case!(
        "routes file with a control character",
        "1.0.1.0/24\n1.2.\u{1b}[2J\n",
        "found `\\x1b`",
        2,
        5
    ),
    Case {
        name: "routes file is a directory",
        edits: &[(
            "routes: [100.65.0.0/16]",
            "routes: [100.65.0.0/16]\n          routes_file: isp",
        )],
        text: None,
        files: &[("isp/r.txt", "1.0.1.0/24\n")],
        expect: "routes file `",
        line: 23,
        column: 24,
        in_file: "inv.yaml",
    },
    Case {
        name: "routes file with host bits",
        edits: &[(
            "routes: [100.65.0.0/16]",
            "routes: [100.65.0.0/16]\n          routes_file: isp/r.txt",
        )],
        text: None,
        files: &[(
            "isp/r.txt",
            "# unicom\n1.0.1.0/24\n\n  1.2.3.4/16   # oops\n",
        )],
        expect: "`1.2.3.4/16` has host bits set; the network is 1.2.0.0/16",
        line: 4,
        column: 3,
        in_file: "r.txt",
    },
];

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dwprov-inv-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load_and_build(path: &Path) -> dwprov::Result<(Inventory, Vec<Gateway>)> {
    let inv = inventory::load(path)?;
    let gws = inv
        .hosts
        .iter()
        .map(model::build)
        .collect::<dwprov::Result<Vec<_>>>()?;
    Ok((inv, gws))
}

fn run_case(i: usize, c: &Case) -> Result<(), String> {
    let mut text = c.text.unwrap_or(BASE).to_string();
    if c.name == "no lines" {
        let start = text.find("      lines:").unwrap();
        let end = text.find("      nat:").unwrap();
        text.replace_range(start..end, "");
        text = text.split("      nat:").next().unwrap().to_string();
    }
    for (from, to) in c.edits {
        if text.matches(from).count() != 1 {
            return Err(format!("edit `{from}` does not match exactly once"));
        }
        text = text.replace(from, to);
    }
    let dir = temp_dir(&i.to_string());
    for (name, body) in c.files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let path = dir.join("inv.yaml");
    std::fs::write(&path, &text).unwrap();
    let result = load_and_build(&path);
    let _ = std::fs::remove_dir_all(&dir);
    let err = match result {
        Ok(_) => return Err("loaded and built without error".into()),
        Err(e) => e,
    };
    let Error::Input { location, .. } = &err else {
        return Err(format!("not a located input error: {err:?}"));
    };
    let shown = err.to_string();
    let mut problems = Vec::new();
    if !shown.contains(c.expect) {
        problems.push(format!("text lacks {:?}", c.expect));
    }
    if (location.line, location.column) != (c.line, c.column) {
        problems.push(format!(
            "at {}:{}, want {}:{}",
            location.line, location.column, c.line, c.column
        ));
    }
    if location.file.file_name().and_then(|f| f.to_str()) != Some(c.in_file) {
        problems.push(format!(
            "in {}, want {}",
            location.file.display(),
            c.in_file
        ));
    }
    if !shown.starts_with(&location.to_string()) {
        problems.push("message does not start with file:line:column".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n    error was: {shown}", problems.join("; ")))
    }
}

#[test]
fn base_inventory_is_valid() {
    let dir = temp_dir("base");
    let path = dir.join("inv.yaml");
    std::fs::write(&path, BASE).unwrap();
    let (_, gws) = load_and_build(&path).unwrap();
    assert_eq!(gws.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inventories_fail_with_located_errors() {
    assert!(CASES.len() + FILE_CASES.len() >= 30);
    let mut failures = Vec::new();
    for (i, c) in CASES.iter().chain(FILE_CASES).enumerate() {
        if let Err(e) = run_case(i, c) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len() + FILE_CASES.len(),
        failures.join("\n")
    );
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
}

fn dedup(lists: &[Vec<Ipv4Net>]) -> Vec<IpNet> {
    let mut seen = std::collections::HashSet::new();
    lists
        .iter()
        .flatten()
        .filter(|n| seen.insert(**n))
        .map(|n| IpNet::V4(*n))
        .collect()
}

#[test]
fn documented_example_loads_and_builds() {
    let path = fixtures().join("good.yaml");
    let inv = inventory::load(&path).unwrap();
    assert_eq!(inv.hosts.len(), 1);
    assert_eq!(inv.groups["beijing"], ["gw1"]);
    assert_eq!(inv.groups["all"], ["gw1"]);
    let host = &inv.hosts[0];
    assert_eq!(host.groups, ["beijing"]);
    assert!(host.has_gateway());
    let Connection::Ssh(t) = &host.connection else {
        panic!("ssh expected")
    };
    assert_eq!(t.address, "10.9.0.2");
    assert_eq!(t.user.as_deref(), Some("root"));
    assert_eq!(t.port, None); // not in the inventory: ssh config, else 22
    let home = PathBuf::from(std::env::var_os("HOME").unwrap());
    assert_eq!(
        t.identity_file.as_deref(),
        Some(home.join(".ssh/id_ed25519").as_path())
    );
    assert_eq!(t.known_hosts, None);
    assert_eq!(t.connect_timeout, None); // ssh config, else 10 s
    assert_eq!(t.timeout, Duration::from_secs(60));

    let gw = model::build(host).unwrap();
    let isp = fixtures().join("isp");
    let chinanet = inventory::routes::load_routes(&isp.join("chinanet.txt")).unwrap();
    let unicom = inventory::routes::load_routes(&isp.join("unicom.txt")).unwrap();
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let ip = |s: &str| s.parse().unwrap();
    let want = Gateway {
        host: "gw1".into(),
        method: Method::Fwmark,
        firewall: Default::default(),
        lan: vec![Lan {
            interface: "eth0".into(),
            address: net("192.168.0.1/24"),
        }],
        lines: vec![
            Line {
                name: "ctc".into(),
                table: 100,
                mark: 0x100,
                interface: "eth1".into(),
                address: Some(net("198.51.100.2/24")),
                gateway: Some(ip("198.51.100.1")),
                dynamic_address: false,
                next_hop: NextHop::Fixed,
                default: true,
                routes: dedup(std::slice::from_ref(&chinanet)),
                health: None,
                failover: Default::default(),
            },
            Line {
                name: "cnc".into(),
                table: 200,
                mark: 0x200,
                interface: "eth2".into(),
                address: Some(net("203.0.113.2/24")),
                gateway: Some(ip("203.0.113.1")),
                dynamic_address: false,
                next_hop: NextHop::Fixed,
                default: false,
                routes: dedup(&[vec!["100.65.0.0/16".parse().unwrap()], unicom.clone()]),
                health: None,
                failover: Default::default(),
            },
        ],
        nat: NatMode::Snat,
        forwards: vec![
            Forward {
                proto: Proto::Tcp,
                port: 80,
                to: ip("192.168.0.100"),
                to_port: None,
                lines: vec!["ctc".into(), "cnc".into()],
            },
            Forward {
                proto: Proto::Tcp,
                port: 2222,
                to: ip("192.168.0.100"),
                to_port: Some(22),
                lines: vec!["cnc".into()],
            },
        ],
        hairpin: true,
        policies: vec![
            Policy {
                from: Some(net("192.168.0.50/32")),
                to: None,
                line: "cnc".into(),
            },
            Policy {
                from: None,
                to: Some(net("8.8.8.8/32")),
                line: "ctc".into(),
            },
        ],
        rule_priority: 1000,
        mark_mask: 0xff00,
        route_cache_flush: None,
        foreign_main_default: false,
    };
    assert_eq!(gw, want);
    assert!(gw.lines[0].routes.len() > 4000);
    assert_eq!(gw.lines[1].routes[0], net("100.65.0.0/16"));
}

#[test]
fn group_and_host_vars_deep_merge_in_order() {
    let text = "\
all:
  vars:
    method: static
    hairpin: false
    ssh: {user: alice, port: 1000, timeout: 30}
    address: 10.0.0.9
  children:
    outer:
      vars:
        hairpin: true
        ssh: {port: 2000}
      children:
        inner:
          vars:
            ssh: {connect_timeout: 5}
            rule_priority: 3000
          hosts:
            gw1:
              ssh: {user: bob}
            gw2:
    other:
      vars:
        rule_priority: 4000
        ssh: {timeout: 45}
      hosts:
        gw1:
          address: 10.0.0.1
";
    let dir = temp_dir("merge");
    let path = dir.join("inv.yaml");
    std::fs::write(&path, text).unwrap();
    let inv = inventory::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let gw1 = inv.host("gw1").unwrap();
    // depth: outer(1), other(1), inner(2): inner wins over other despite file order.
    assert_eq!(gw1.groups, ["outer", "other", "inner"]);
    let Connection::Ssh(t) = &gw1.connection else {
        panic!()
    };
    assert_eq!(t.user.as_deref(), Some("bob")); // host vars beat every group
    assert_eq!(t.port, Some(2000)); // outer beats all
    assert_eq!(t.connect_timeout, Some(Duration::from_secs(5))); // inner adds
    assert_eq!(t.timeout, Duration::from_secs(45)); // other (depth 1) beats all
    assert_eq!(t.address, "10.0.0.1"); // host vars in `other` beat all.vars
    let v = &gw1.vars;
    assert_eq!(v.get("rule_priority").unwrap().as_i64(), Some(3000)); // inner (deeper) beats other
    assert_eq!(v.get("hairpin").unwrap().as_bool(), Some(true));
    assert_eq!(v.get("method").unwrap().as_str(), Some("static"));
    // Merged values keep the location they were written at.
    assert_eq!(v.get_path(&["ssh", "port"]).unwrap().location.line, 11);
    assert_eq!(v.get_path(&["ssh", "user"]).unwrap().location.line, 19);
    assert_eq!(v.get("address").unwrap().location.line, 27);

    let gw2 = inv.host("gw2").unwrap();
    let Connection::Ssh(t) = &gw2.connection else {
        panic!()
    };
    assert_eq!(
        (t.user.as_deref(), t.port, t.address.as_str()),
        (Some("alice"), Some(2000), "10.0.0.9")
    );
    assert_eq!(t.timeout, Duration::from_secs(30));
    assert_eq!(inv.groups["outer"], ["gw1", "gw2"]);
    assert_eq!(inv.groups["other"], ["gw1"]);
    assert!(!gw2.has_gateway() || gw2.vars.get("lines").is_none());
}

#[test]
fn errors_of_several_hosts_are_reported_together() {
    let dir = temp_dir("multi");
    let path = dir.join("inv.yaml");
    std::fs::write(
        &path,
        "all:\n  hosts:\n    a: {adress: 10.0.0.1}\n    b: {address: 10.0.0.2}\n    c: {}\n",
    )
    .unwrap();
    let err = inventory::load(&path).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    let Error::Multiple(errs) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errs.len(), 2);
    let shown = err.to_string();
    assert!(
        shown.contains("inv.yaml:3:9: unknown key `adress`"),
        "{shown}"
    );
    assert!(
        shown.contains("inv.yaml:5:5: host `c` has no `address`"),
        "{shown}"
    );
}

#[test]
fn absent_table_and_mark_are_stable() {
    let gw = |lines: &str| {
        let text = format!(
            "all:\n  hosts:\n    gw1:\n      connection: local\n      method: fwmark\n      lan: [{{interface: eth0, address: 192.168.0.1/24}}]\n      lines:\n{lines}"
        );
        let dir = temp_dir("stable");
        let path = dir.join("inv.yaml");
        std::fs::write(&path, text).unwrap();
        let (_, gws) = load_and_build(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        gws.into_iter().next().unwrap()
    };
    let ctc = "        - {name: ctc, interface: eth1, address: 198.51.100.2/24, gateway: 198.51.100.1, default: true}\n";
    let cnc =
        "        - {name: cnc, interface: eth2, address: 203.0.113.2/24, gateway: 203.0.113.1}\n";
    let cmcc = "        - {name: cmcc, interface: eth3, address: 192.0.2.2/24, gateway: 192.0.2.1, table: 300, mark: 0x300}\n";
    let a = gw(&format!("{ctc}{cnc}"));
    let b = gw(&format!("{cnc}{cmcc}{ctc}"));
    for name in ["ctc", "cnc"] {
        let (x, y) = (a.line(name).unwrap(), b.line(name).unwrap());
        assert_eq!((x.table, x.mark), (y.table, y.mark), "{name}");
        assert!((1000..=30000).contains(&x.table));
        assert!(x.mark != 0 && x.mark & !0xff00 == 0);
    }
    assert_ne!(a.lines[0].table, a.lines[1].table);
    assert_ne!(a.lines[0].mark, a.lines[1].mark);
    assert_eq!(
        (b.line("cmcc").unwrap().table, b.line("cmcc").unwrap().mark),
        (300, 0x300)
    );
}

/// Issue 11: health on both lines, both default (balanced): defaults filled
/// in (fallback = the other default line), fractions kept as milliseconds.
#[test]
fn health_and_balanced_default_build_with_defaults() {
    let dir = temp_dir("health");
    let path = dir.join("inv.yaml");
    let text = BASE
        .replace(
            "          routes: [100.65.0.0/16]\n",
            "          routes: [100.65.0.0/16]\n          default: true\n          weight: 2\n          health: {targets: [100.65.1.10, '100.65.1.10:80'], interval: 0.5, reliability: 2}\n",
        )
        .replace(
            "          default: true\n        - name: cnc",
            "          default: true\n          health: {targets: [100.64.1.10]}\n          flush_on_recovery: true\n        - name: cnc",
        );
    std::fs::write(&path, text).unwrap();
    let (_, gws) = load_and_build(&path).unwrap();
    let ctc = &gws[0].lines[0];
    let cnc = &gws[0].lines[1];
    assert!(gws[0].uses_nexthops());
    assert!(ctc.default && cnc.default);
    assert_eq!(ctc.failover.fallback, vec!["cnc".to_string()]);
    assert_eq!(cnc.failover.fallback, vec!["ctc".to_string()]);
    assert!(ctc.failover.flush_on_recovery);
    assert_eq!((ctc.failover.weight, cnc.failover.weight), (1, 2));
    let h = cnc.health.as_ref().unwrap();
    assert_eq!(
        (h.interval_ms, h.timeout_ms, h.down, h.up, h.reliability),
        (500, 1000, 3, 5, 2)
    );
    assert_eq!(h.targets.len(), 2);
    std::fs::remove_dir_all(dir).ok();
}
