//! Collect live facts from a host in one round trip and parse them into typed state.
//!
//! One shell program, `gateway/gather.sh` (embedded; Rust passes only quoted
//! parameters before it), runs every fact command; each command's stdout,
//! stderr and exit status come back in a section framed by an unguessable
//! marker, so no output can be mistaken for another's (and a missing
//! table's `[` with exit 2 is seen for what it is).
//!
//! Bounded on both ends: on the gateway a watchdog ends a command that runs
//! past its deadline (half the connection's timeout) together with the whole
//! script, and reports which; on the controller a [`SectionWatch`] stops a
//! command that prints more than [`MAX_SECTION`]. The output is parsed in
//! place (sections borrow it) and the JSON of rules and routes one entry at
//! a time.
//!
//! [`plan_digest`] hashes what a plan depends on, for stale-plan checks.
use crate::error::{Error, Result};
use crate::fact::FactSection;
use crate::state::family::OWNED;
use crate::state::{ip, RtTables, State};

use crate::transport::Transport;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The gathered facts live in [`crate::facts`] (below every module that reads them).
pub use crate::facts::{Facts, Interface};
/// Section markers come from [`crate::nonce`].
pub use crate::nonce::marker;
/// Files dwprov owns outside its state dir (see [`crate::ownership`]).
pub use crate::ownership::CONFIG_FILES as OWNED_FILES;
pub use crate::ownership::STATE_DIR;

const TOOLS: &[&str] = &[
    "ip",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "iptables-legacy-save",
    "iptables-nft-save",
    "nft",
    "sysctl",
    "systemctl",
    "setsid",
    "conntrack",
    "awk",
    "sha256sum",
];

/// The gateway-side gather program; [`script`] puts its parameters before it.
pub const GATHER_SH: &str = include_str!("../gateway/gather.sh");

/// How long one fact command may run on the gateway when the caller gives
/// no deadline (the watchdog in gateway/gather.sh then ends the gather).
pub const DEFAULT_DEADLINE_SECS: u64 = 30;

/// Most output one fact command may print (stdout and stderr together):
/// past it the gather stops with an error naming the command. A converged
/// 16,000-prefix gateway prints about 2 MB of routes.
pub const MAX_SECTION: usize = 64 << 20;

/// The gather script. `marker` frames the sections.
pub fn script(marker: &str) -> String {
    script_with(marker, DEFAULT_DEADLINE_SECS)
}

/// The gather script with a per-command deadline of `deadline_secs` (at least 1):
/// gateway/gather.sh after its parameters, then the `sec` line of every
/// section ([`sections`]), each owned file's (`g_files`) and the end.
pub fn script_with(marker: &str, deadline_secs: u64) -> String {
    let files = crate::ownership::OWNED_FILES;
    let mut s = format!(
        "D={}\nG_DEADLINE={}\nG_TOOLS={}\nG_FILES={}\nG_STATE_DIR={}\nG_RT_TABLES={}\nG_AGENT_STATE={}\nG_AGENT_UNIT={}\nG_NFT_FAMILY={}\nG_NFT_TABLE={}\nG_IP_FAMILY={}\n{GATHER_SH}",
        sh_quote(marker),
        deadline_secs.max(1),
        sh_quote(&TOOLS.join(" ")),
        sh_quote(&files.join(" ")),
        sh_quote(STATE_DIR),
        sh_quote(crate::ownership::RT_TABLES_CONF),
        sh_quote(crate::ownership::AGENT_STATE_DIR),
        sh_quote(crate::ownership::AGENT_UNIT),
        sh_quote(crate::ownership::NFT_FAMILY),
        sh_quote(crate::ownership::NFT_TABLE),
        sh_quote(OWNED.ip_flag())
    );
    for sec in sections() {
        s.push_str(&sec.line());
    }
    s.push_str("g_files\ng_end\n");
    s
}

/// Every section of the gather, in the order it runs: the host's facts,
/// then each kind's sections in [`crate::kind::KINDS`] order.
pub fn sections() -> Vec<FactSection> {
    let mut all = crate::fact::HOST_SECTIONS.to_vec();
    for kind in crate::kind::KINDS {
        all.extend(kind.fact_sections());
    }
    all
}

/// `'text'`, safe for sh (a `'` becomes `'\''`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A section's command as messages name it: a helper by its description,
/// a plain command as it runs, with the gather's parameters as the values
/// they hold (`"$G_IP_FAMILY"`: state::family::OWNED's flag;
/// `$G_STATE_DIR`: the state dir); an owned file as `cat PATH`.
pub fn section_command(section: &str) -> String {
    if let Some(path) = section.strip_prefix("file ") {
        return format!("cat {path}");
    }
    match sections().into_iter().find(|s| s.name == section) {
        Some(s) => shown(&s),
        None => section.to_string(),
    }
}

fn shown(s: &FactSection) -> String {
    s.shown
        .unwrap_or(s.run)
        .replace("\"$G_IP_FAMILY\"", OWNED.ip_flag())
        .replace("$G_STATE_DIR", STATE_DIR)
}

/// A command line as the watchdog reports it (`"$*"` of a section): the
/// helper functions of gather.sh read as what they run.
fn watchdog_command(reported: &str) -> String {
    let (first, rest) = reported.split_once(' ').unwrap_or((reported, ""));
    if first == "f_file" {
        return format!("cat {rest}");
    }
    let helper = sections()
        .into_iter()
        .find(|s| s.shown.is_some() && s.run.split(' ').next() == Some(first));
    match helper {
        Some(s) => shown(&s),
        None => reported.to_string(),
    }
}

/// Follows a gather's output as it arrives: which section runs, and how
/// much it printed; stops the run when one section passes `limit`.
pub struct SectionWatch {
    host: String,
    begin: Vec<u8>,
    limit: usize,
    /// Where to look for the next section start.
    scan: usize,
    /// The running section and where its output starts.
    section: Option<(String, usize)>,
}

impl SectionWatch {
    pub fn new(host: &str, marker: &str, limit: usize) -> SectionWatch {
        SectionWatch {
            host: host.to_string(),
            begin: format!("{marker} begin ").into_bytes(),
            limit,
            scan: 0,
            section: None,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

impl crate::transport::Watch for SectionWatch {
    fn stdout(&mut self, all: &[u8], _new: usize) -> Result<()> {
        let mut partial = false;
        while let Some(p) = find(&all[self.scan..], &self.begin) {
            let name_at = self.scan + p + self.begin.len();
            let Some(nl) = all[name_at..].iter().position(|&b| b == b'\n') else {
                // The header is not complete yet: read it next time.
                self.scan += p;
                partial = true;
                break;
            };
            let name = String::from_utf8_lossy(&all[name_at..name_at + nl]).into_owned();
            self.scan = name_at + nl + 1;
            self.section = Some((name, self.scan));
        }
        if !partial {
            // A marker split across chunks is found on the next call.
            self.scan = self.scan.max(all.len().saturating_sub(self.begin.len()));
        }
        if let Some((name, start)) = &self.section {
            if all.len() - start > self.limit {
                return Err(Error::Invalid {
                    message: format!(
                        "{}: gather: `{}` printed more than {} MiB; stopped reading it, nothing was changed",
                        self.host,
                        section_command(name),
                        self.limit >> 20
                    ),
                    hint: Some(
                        "run that command on the gateway and look at its output: a tool that prints \
                         without end (a broken wrapper, a loop) or a state far larger than a gateway holds"
                            .into(),
                    ),
                });
            }
        }
        Ok(())
    }

    fn waiting_for(&self) -> Option<String> {
        self.section
            .as_ref()
            .map(|(name, _)| format!("`{}` (gather) had not finished", section_command(name)))
    }
}

/// One command's output (defined below the backends that parse theirs).
pub use crate::facts::Section;

/// Split the script's output into named sections.
pub fn split_sections<'a>(text: &'a str, marker: &str) -> Result<BTreeMap<String, Section<'a>>> {
    const WHAT: &str = "gather output";
    let mut out = BTreeMap::new();
    let mut rest = text;
    let begin = format!("{marker} begin ");
    let fin = format!("\n{marker} fin\n");
    let line_no = |r: &str| text[..text.len() - r.len()].lines().count() + 1;
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix(&begin) else {
            return Err(Error::parse(
                WHAT,
                line_no(rest),
                "expected a section start",
            ));
        };
        let nl = after
            .find('\n')
            .ok_or_else(|| Error::parse(WHAT, line_no(rest), "truncated section header"))?;
        let name = &after[..nl];
        let body = &after[nl + 1..];
        let end = format!("\n{marker} end {name} ");
        let e = body.find(&end).ok_or_else(|| {
            Error::parse(WHAT, line_no(rest), format!("section {name} has no end"))
        })?;
        let stdout = &body[..e];
        let after_end = &body[e + end.len()..];
        let nl2 = after_end
            .find('\n')
            .ok_or_else(|| Error::parse(WHAT, line_no(rest), "truncated section end"))?;
        let status = after_end[..nl2].trim().parse::<i32>().unwrap_or(-1);
        let tail = &after_end[nl2 + 1..];
        let f = tail.find(&fin).ok_or_else(|| {
            Error::parse(WHAT, line_no(rest), format!("section {name} not finished"))
        })?;
        out.insert(
            name.to_string(),
            Section {
                stdout,
                stderr: &tail[..f],
                status,
            },
        );
        rest = &tail[f + fin.len()..];
    }
    Ok(out)
}

/// Parse the sections into facts. Pure: tested with captured output.
pub fn parse_facts(host: &str, sections: &BTreeMap<String, Section>) -> Result<Facts> {
    let get = |n: &str| sections.get(n).copied().unwrap_or_default();
    let mut facts = Facts {
        host: host.to_string(),
        ..Facts::default()
    };
    facts.uid = get("uid").stdout.trim().parse().ok();
    facts.kernel = get("kernel").stdout.trim().to_string();
    for line in get("tools").stdout.lines() {
        if let Some((t, yes)) = line.split_once(' ') {
            facts.tools.insert(t.to_string(), yes == "yes");
        }
    }
    facts.systemd = get("systemd").stdout.trim() == "yes";
    if !facts.has_tool("ip") {
        return Err(Error::Remote {
            host: host.into(),
            what: "gather".into(),
            status: 127,
            stderr: "`ip` (iproute2) is not installed on the gateway".into(),
        });
    }
    (facts.state.rules, facts.state.routes) =
        ip::from_listings(crate::state::family::MANAGED, |s| {
            let sec = get(s.name);
            if sec.status != 0 {
                return Err(remote(host, &shown(s), &sec));
            }
            Ok(sec.stdout)
        })?;
    // Kernels before 5.3 have no nexthop objects: the command fails, and
    // `Facts::nexthops` says so (a `health` inventory is refused there).
    let nexthops = get("nexthops");
    facts.nexthops = nexthops.status == 0;
    if facts.nexthops {
        facts.state.nexthops = crate::state::nexthop::parse_json(nexthops.stdout)?;
        facts.state.nexthops.sort();
    }
    facts.interfaces = parse_addrs(get("addrs").stdout)?;
    facts.agent = crate::agent::status::Seen::parse(get("agent").stdout);

    // The firewall of every backend, with its facts about the host.
    facts.state.firewall = crate::firewall::Firewall::gather(host, &get, &mut facts)?;
    facts.state.rt_tables = RtTables::parse(get("rt_tables").stdout, "rt_tables")?;
    facts.state.sysctls = crate::sysctls::from_gather(get("sysctl").stdout);
    for (name, sec) in sections {
        if let Some(path) = name.strip_prefix("file ") {
            if sec.status == 0 {
                facts
                    .state
                    .files
                    .insert(path.to_string(), sec.stdout.to_string());
            }
        }
    }
    Ok(facts)
}

fn remote(host: &str, what: &str, sec: &Section) -> Error {
    Error::Remote {
        host: host.into(),
        what: what.into(),
        status: sec.status,
        stderr: sec.stderr.trim().to_string(),
    }
}

pub fn parse_addrs(text: &str) -> Result<Vec<Interface>> {
    let v: Vec<serde_json::Value> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(text)
            .map_err(|e| Error::parse("ip -j addr output", e.line(), e.to_string()))?
    };
    let mut out = Vec::new();
    for i in v {
        let Some(name) = i.get("ifname").and_then(|n| n.as_str()) else {
            continue;
        };
        let up = i.get("operstate").and_then(|s| s.as_str()) != Some("DOWN");
        let mut addresses = Vec::new();
        for a in i
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            // An address of a family dwprov does not manage is not read.
            let local = a
                .get("local")
                .and_then(|l| l.as_str())
                .and_then(|l| l.parse::<std::net::IpAddr>().ok())
                .filter(crate::state::family::is_managed);
            let len = a
                .get("prefixlen")
                .and_then(|l| l.as_u64())
                .and_then(|l| u8::try_from(l).ok());
            if let (Some(l), Some(p)) = (local, len) {
                if let Ok(n) = ipnet::IpNet::new(l, p) {
                    addresses.push(n);
                }
            }
        }
        out.push(Interface {
            name: name.to_string(),
            up,
            addresses,
        });
    }
    Ok(out)
}

/// Gather facts over an open connection: one round trip. Each command may
/// run half the connection's timeout on the gateway and print
/// [`MAX_SECTION`] bytes.
pub fn gather(t: &mut dyn Transport) -> Result<Facts> {
    let m = marker();
    let deadline = (t.timeout().as_secs() / 2).max(1);
    let script = script_with(&m, deadline);
    // Test and benchmark hook (undocumented for users): write the exact
    // gather script to this file, so scripts/bench.sh times the very same
    // program over plain ssh.
    if let Some(path) = std::env::var_os("DWPROV_GATHER_SCRIPT_OUT") {
        std::fs::write(&path, &script).map_err(|e| Error::io(path, e))?;
    }
    let mut watch = SectionWatch::new(t.host(), &m, MAX_SECTION);
    let t0 = std::time::Instant::now();
    let out = t.run_script_watched(&script, &mut watch)?;
    phase("gather: round trip", t0);
    let t0 = std::time::Instant::now();
    let f = facts_from_output(t.host(), &out, &m);
    phase("gather: parse", t0);
    f
}

/// Benchmark hook (undocumented for users): with DWPROV_PHASE_TIMES set,
/// the time since `since` of phase `what`, on stderr.
pub fn phase(what: &str, since: std::time::Instant) {
    if std::env::var_os("DWPROV_PHASE_TIMES").is_some() {
        eprintln!(
            "dwprov phase {what}: {:.1} ms",
            since.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// [`gather`] with `extra` (shell using the gather's marker `$D` and its
/// section framing) run after it in the same round trip; returns the
/// facts, the marker and the whole output, for the caller's own sections.
pub fn gather_also(t: &mut dyn Transport, extra: &str) -> Result<(Facts, String, String)> {
    let m = marker();
    let deadline = (t.timeout().as_secs() / 2).max(1);
    let script = format!("{}\n{extra}", script_with(&m, deadline));
    let mut watch = SectionWatch::new(t.host(), &m, MAX_SECTION);
    let t0 = std::time::Instant::now();
    let out = t.run_script_watched(&script, &mut watch)?;
    phase("gather: round trip (with the checks)", t0);
    let facts = facts_from_output(t.host(), &out, &m)?;
    Ok((facts, m, out.stdout_str()))
}

/// Facts from the output of a script that ends with `script(marker)`
/// (a gather, or an apply that verifies in the same round trip).
pub fn facts_from_output(host: &str, out: &crate::transport::Output, m: &str) -> Result<Facts> {
    let lossy;
    let text = match std::str::from_utf8(&out.stdout) {
        Ok(t) => t,
        Err(_) => {
            lossy = String::from_utf8_lossy(&out.stdout);
            &lossy
        }
    };
    if let Some(e) = watchdog_error(host, text, m) {
        return Err(e);
    }
    let start = text.find(&format!("{m} begin "));
    if out.status != 0 && start.is_none() {
        return Err(Error::Remote {
            host: host.into(),
            what: "gather".into(),
            status: out.status,
            stderr: out.stderr_str().trim().to_string(),
        });
    }
    let t0 = std::time::Instant::now();
    let sections = split_sections(&text[start.unwrap_or(0)..], m)?;
    phase("parse: split sections", t0);
    let t0 = std::time::Instant::now();
    let mut facts = parse_facts(host, &sections)?;
    phase("parse: parse_facts", t0);
    // Test hook (undocumented for users): pretend the host runs this kernel,
    // e.g. DWPROV_FAKE_KERNEL=3.2.0 to exercise the route-cache flush path
    // on a modern lab gateway (tests/boot.rs).
    if let Some(k) = std::env::var_os("DWPROV_FAKE_KERNEL") {
        facts.kernel = k.to_string_lossy().into_owned();
    }
    facts.digest = digest(&facts);
    Ok(facts)
}

/// The gateway's watchdog ended the gather (`$D timeout SECONDS COMMAND`):
/// the error names the command that hung.
fn watchdog_error(host: &str, text: &str, m: &str) -> Option<Error> {
    let tag = format!("\n{m} timeout ");
    let at = text.find(&tag)? + tag.len();
    let line = text[at..].lines().next().unwrap_or_default();
    let (secs, command) = line.split_once(' ').unwrap_or((line, "?"));
    Some(Error::Transport {
        host: host.into(),
        kind: crate::error::TransportKind::Timeout,
        message: format!(
            "gather: `{}` did not finish within {secs} s on the gateway; its watchdog ended the gather \
             and every process it started (nothing was changed). Run that command on the gateway to see why it hangs",
            watchdog_command(command)
        ),
    })
}

/// dwprov's rule band with the default `rule_priority`: the collision
/// scope for ip rules when neither a plan nor the host shows dwprov's rules.
pub use crate::ownership::DEFAULT_BAND;

/// A plan's dependencies, hashed: what a saved plan (or a host of a later
/// `--serial` batch) is checked against before it is applied.
///
/// It covers what shaped the plan and what applying it touches, and nothing
/// else, so foreign churn elsewhere (fail2ban adding an INPUT rule on every
/// ban, another tool's ip rule outside dwprov's band, a Docker bridge route,
/// a DHCP lease counting down) does not make a plan stale:
/// - the host's facts: kernel, uid, tools, systemd, iptables backend,
///   interfaces with their state and addresses (not address lifetimes):
///   those with an address or carrying a dwprov route (a container's
///   address-less veth does not count), and the sysctls of those, of
///   `all`/`default`, and those dwprov sets;
/// - every owned object: ip rules and routes of protocol dwprov, `DWPROV-*`
///   chains and the jumps into them, the owned files, the table names;
/// - nexthop objects: dwprov's and any in its id band, but not where the
///   agent points them during a failover (dynamic state, not drift:
///   `nexthop_scope`);
/// - foreign objects that collide with owned ones (desired or live): ip rules
///   at a priority from dwprov's lowest to its highest rule (they interleave
///   with dwprov's), routes with the key (table, destination, tos, metric) of
///   a dwprov route, and any route in a table dwprov routes in, other than
///   main, local and default.
///
/// `desired` is the plan's desired state; with an empty one the scope comes
/// from the owned objects on the host alone ([`Facts::digest`]), and where
/// the host holds none yet (a first plan), from the default band
/// ([`DEFAULT_BAND`]) and every table but main, local and default.
pub fn plan_digest(facts: &Facts, desired: &State) -> String {
    use crate::ownership::{is_owned_route, is_owned_rule};
    use crate::state::ip::{RouteKey, TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN};
    use std::collections::BTreeSet;
    let live = &facts.state;
    let owned_rules = || live.rules.iter().filter(is_owned_rule);
    let (lo, hi) = desired
        .rules
        .iter()
        .chain(owned_rules())
        .map(|r| r.priority)
        .fold(None, |b: Option<(u32, u32)>, p| {
            Some(b.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))))
        })
        .unwrap_or(DEFAULT_BAND);
    let rules: Vec<&crate::state::Rule> = live
        .rules
        .iter()
        .filter(|r| is_owned_rule(r) || (lo..=hi).contains(&r.priority))
        .collect();
    let ours = || {
        desired
            .routes
            .iter()
            .chain(live.routes.iter().filter(is_owned_route))
    };
    let keys: BTreeSet<RouteKey> = ours().map(|r| r.key()).collect();
    let standard = |t: u32| [TABLE_MAIN, TABLE_LOCAL, TABLE_DEFAULT].contains(&t);
    let tables: BTreeSet<u32> = ours().map(|r| r.table).filter(|&t| !standard(t)).collect();
    // Nothing of dwprov's known yet: every table but the standard ones.
    let in_our_table = |t: u32| {
        if keys.is_empty() {
            !standard(t)
        } else {
            tables.contains(&t)
        }
    };
    let routes: Vec<&crate::state::Route> = live
        .routes
        .iter()
        // Default routes in main too: a DHCP client's is a dynamic line's
        // next hop (issue 14), whatever its metric.
        .filter(|r| {
            is_owned_route(r)
                || keys.contains(&r.key())
                || in_our_table(r.table)
                || (r.table == TABLE_MAIN && r.dst.prefix_len() == 0)
        })
        .collect();
    // Interfaces with an address, and those dwprov routes through: not a
    // container's address-less veth coming and going.
    let devs: BTreeSet<&str> = ours().filter_map(|r| r.dev.as_deref()).collect();
    let interfaces: Vec<&Interface> = facts
        .interfaces
        .iter()
        .filter(|i| !i.addresses.is_empty() || devs.contains(i.name.as_str()))
        .collect();
    // The sysctls dwprov sets, and those of the interfaces above (a new
    // veth brings its own conf/IF/rp_filter).
    let sysctls: BTreeMap<&String, &String> = live
        .sysctls
        .iter()
        .filter(|(k, _)| {
            desired.sysctls.contains_key(*k)
                || match k.strip_prefix("net/ipv4/conf/") {
                    Some(rest) => {
                        let dev = rest.split('/').next().unwrap_or_default();
                        dev == "all" || dev == "default" || interfaces.iter().any(|i| i.name == dev)
                    }
                    None => true,
                }
        })
        .collect();
    // Each backend's owned objects (for iptables: table, chain, rules).
    let firewall = live.firewall.digest();
    let nexthops = nexthop_scope(live, desired);
    #[derive(Serialize)]
    struct Scope<'a> {
        kernel: &'a str,
        uid: Option<u32>,
        tools: &'a BTreeMap<String, bool>,
        systemd: bool,
        iptables_backend: &'a Option<String>,
        other_backend_rules: bool,
        interfaces: Vec<&'a Interface>,
        rt_tables: &'a RtTables,
        files: &'a BTreeMap<String, String>,
        sysctls: BTreeMap<&'a String, &'a String>,
        rules: Vec<&'a crate::state::Rule>,
        routes: Vec<&'a crate::state::Route>,
        nexthops: Vec<NexthopView<'a>>,
        firewall: Vec<crate::firewall::DigestItem<'a>>,
    }
    let scope = Scope {
        kernel: &facts.kernel,
        uid: facts.uid,
        tools: &facts.tools,
        systemd: facts.systemd,
        iptables_backend: &facts.iptables_backend,
        other_backend_rules: facts.other_backend_rules,
        interfaces,
        rt_tables: &live.rt_tables,
        files: &live.files,
        sysctls,
        rules,
        routes,
        nexthops,
        firewall,
    };
    /// Feeds serde_json's output straight into the hash (no 3 MB buffer).
    struct HashWriter(Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = HashWriter(Sha256::new());
    // Serializing these plain types cannot fail.
    let _ = serde_json::to_writer(&mut h, &scope);
    h.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A nexthop object as the digest sees it: where it points only when that
/// is not the agent's doing.
#[derive(Serialize)]
struct NexthopView<'a> {
    id: u32,
    proto: u8,
    /// The target, or `None` when the agent may have put it there.
    hop: Option<&'a crate::state::nexthop::Hop>,
    group: bool,
}

/// The nexthops a plan depends on: dwprov's (its protocol) and any at an id
/// of dwprov's band (a foreign one there is a conflict). Where the agent
/// points them during a failover is dynamic state, not drift (as
/// `nexthops::diff` says), so it is left out of the digest: a single
/// nexthop pointing at a desired line's gateway, a group holding a
/// non-empty subset of the desired members. Another target (a hand-made
/// repoint, a group with a stranger) counts. Without a desired state (the
/// facts' own digest) every target is left out: their lines are unknown.
fn nexthop_scope<'a>(live: &'a State, desired: &State) -> Vec<NexthopView<'a>> {
    use crate::ownership::{is_owned_route, NEXTHOP_ID_BAND};
    use crate::state::nexthop::Hop;
    let (lo, hi) = NEXTHOP_ID_BAND;
    let targets = crate::nexthops::failover_targets(&desired.nexthops);
    let members: Vec<&(u32, u32)> = desired
        .nexthops
        .iter()
        .filter_map(|n| match &n.hop {
            Hop::Group(m) => Some(m),
            Hop::Via { .. } | Hop::Dev { .. } => None,
        })
        .flatten()
        .collect();
    let unknown = desired.nexthops.is_empty();
    live.nexthops
        .iter()
        .filter(|n| {
            is_owned_route(*n)
                || (lo..=hi).contains(&n.id)
                || desired.nexthops.iter().any(|d| d.id == n.id)
        })
        .map(|n| {
            let dynamic = is_owned_route(n)
                && match &n.hop {
                    Hop::Via { .. } | Hop::Dev { .. } => unknown || targets.contains(&&n.hop),
                    Hop::Group(m) => {
                        unknown || (!m.is_empty() && m.iter().all(|x| members.contains(&x)))
                    }
                };
            NexthopView {
                id: n.id,
                proto: n.proto,
                hop: (!dynamic).then_some(&n.hop),
                group: matches!(n.hop, Hop::Group(_)),
            }
        })
        .collect()
}

/// [`plan_digest`] with the scope the host's owned objects give.
fn digest(facts: &Facts) -> String {
    plan_digest(facts, &State::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_with_stderr_and_status() {
        let m = "M1";
        let text = "M1 begin a\nhello\n\nM1 end a 0\n\nM1 fin\nM1 begin b\n[\nM1 end b 2\nError: table missing\nM1 fin\n";
        let s = split_sections(text, m).unwrap();
        assert_eq!(s["a"].stdout, "hello\n");
        assert_eq!(s["b"].stdout, "[");
        assert_eq!(s["b"].status, 2);
        assert_eq!(s["b"].stderr, "Error: table missing");
    }

    /// Every section is named in messages: a plain command exactly as the
    /// script runs it, a helper by a description; every helper a section
    /// runs is defined in gateway/gather.sh; names are unique.
    #[test]
    fn section_commands_match_the_script() {
        let all = sections();
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a section name twice: {all:?}");
        let script = script("M");
        let mut plain = 0;
        for sec in &all {
            assert!(script.contains(&sec.line()), "{sec:?} not in the script");
            let first = sec.run.split(' ').next().unwrap();
            if first.starts_with("f_") {
                assert!(
                    GATHER_SH.contains(&format!("\n{first}() {{")),
                    "{first} undefined"
                );
                assert_ne!(
                    section_command(sec.name),
                    sec.name,
                    "{sec:?}: no description"
                );
                assert_ne!(watchdog_command(sec.run), sec.run, "{sec:?}");
            } else {
                let cmd = sec.run.replace("\"$G_IP_FAMILY\"", OWNED.ip_flag());
                assert_eq!(section_command(sec.name), cmd, "{sec:?}");
                plain += 1;
            }
        }
        assert!(plain >= 6, "{plain}");
        // A helper's description names the parameters' values too.
        assert_eq!(section_command("state_files"), format!("ls {STATE_DIR}"));
        // Every kind reads something, and the firewall both backends.
        for kind in crate::kind::KINDS {
            assert!(!kind.fact_sections().is_empty(), "{kind:?}");
        }
        assert!(names.contains(&"iptables") && names.contains(&"nftables"));
    }

    /// The composed gather script (parameters, gather.sh, the sections)
    /// passes shellcheck as a whole.
    #[test]
    fn the_composed_gather_passes_shellcheck() {
        let path = std::env::temp_dir().join(format!("dwprov-gather-{}.sh", std::process::id()));
        std::fs::write(&path, format!("#!/bin/sh\n{}", script("M"))).unwrap();
        let out = std::process::Command::new("shellcheck")
            .args(["-S", "warning", "-s", "sh"])
            .arg(&path)
            .output()
            .expect("shellcheck (scripts/install-deps.sh)");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// gather.sh with one section's command replaced (test-only), run by
    /// the local transport (which gives the shell its own process group, as
    /// sshd does).
    fn run_with(section: &str, command: &str, deadline: u64) -> (Result<Facts>, String) {
        let m = marker();
        let script = script_with(&m, deadline);
        let line = sections()
            .into_iter()
            .find(|s| s.name == section)
            .unwrap()
            .line();
        let script = script.replacen(&line, &format!("sec {section} {command}\n"), 1);
        let mut t = crate::transport::local::LocalTransport::new("gw1");
        let mut watch = SectionWatch::new("gw1", &m, MAX_SECTION);
        let r = t
            .run_script_watched(&script, &mut watch)
            .and_then(|out| facts_from_output("gw1", &out, &m));
        (r, m)
    }

    fn processes_with(arg: &str) -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(arg))
            .collect()
    }

    /// A command that hangs is ended by the watchdog with its whole process
    /// group, and the error names it.
    #[test]
    fn a_hung_command_is_ended_and_named() {
        // A unique duration, to find leftovers by their command line.
        let nap = format!("100.{}", std::process::id());
        let started = std::time::Instant::now();
        let (r, _) = run_with("rules", &format!("sh -c 'sleep {nap}; echo late'"), 1);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("gw1: timeout: gather: `sh -c sleep")
                && e.contains("did not finish within 1 s"),
            "{e}"
        );
        assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
        let left = processes_with(&format!("sleep {nap}"));
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// A command that prints without end is cut at the section limit.
    #[test]
    fn a_flooding_command_is_cut_at_the_section_limit() {
        let (r, _) = run_with("routes", "head -c 80000000 /dev/zero", 30);
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("gw1: gather: `head -c 80000000 /dev/zero` printed more than 64 MiB")
                || e.starts_with(
                    "gw1: gather: `ip -4 -j -d -N route show table all` printed more than 64 MiB"
                ),
            "{e}"
        );
    }

    /// The watch finds section starts split across chunks.
    #[test]
    fn section_watch_follows_chunks() {
        use crate::transport::Watch;
        let text = b"M1 begin a\nxx\nM1 end a 0\n\nM1 fin\nM1 begin routes\n012345678901234567890123456789012345678901234567890123456789";
        for cut in 1..text.len() {
            let mut w = SectionWatch::new("h", "M1", 40);
            let first = w.stdout(&text[..cut], 0);
            let second = w.stdout(text, cut);
            let e = first.and(second).unwrap_err().to_string();
            assert!(
                e.contains("`ip -4 -j -d -N route show table all` printed more than"),
                "{cut}: {e}"
            );
            assert_eq!(
                w.waiting_for().unwrap(),
                "`ip -4 -j -d -N route show table all` (gather) had not finished"
            );
        }
    }

    #[test]
    fn truncated_output_is_an_error() {
        assert!(split_sections("M1 begin a\nhello", "M1").is_err());
        assert!(split_sections("garbage", "M1").is_err());
    }

    #[test]
    fn script_runs_locally_and_parses() {
        // The real script against this machine's shell (read-only commands).
        let m = marker();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script(&m))
            .output()
            .unwrap();
        // A gather that worked exits 0 (raw `ssh` runs of it, e.g. the bench, rely on it).
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let sections = split_sections(&text, &m).unwrap();
        assert!(sections.contains_key("rules"));
        assert_eq!(sections["kernel"].status, 0);
        let facts = parse_facts("local", &sections).unwrap();
        assert!(!facts.kernel.is_empty());
        assert!(facts.state.rules.iter().any(|r| r.priority == 32766));
        // Every sysctl the script reads, with this machine's value.
        let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        assert_eq!(
            facts
                .state
                .sysctls
                .get("net/ipv4/ip_forward")
                .map(String::as_str),
            Some(forward.trim())
        );
        assert!(facts
            .state
            .sysctls
            .contains_key("net/ipv4/conf/lo/rp_filter"));
        // stderr is framed per section (the temp-file path of `sec`).
        assert!(sections["uid"].stderr.is_empty());
    }

    fn sec(stdout: &str) -> Section<'_> {
        Section {
            stdout,
            ..Section::default()
        }
    }

    /// The facts digest (stale-plan detection) moves with the state, not
    /// with counters, timestamps or address lifetimes.
    #[test]
    fn digest_ignores_what_changes_by_itself() {
        let facts = |lifetime: u32, counters: &str, routes: &str| {
            let texts = [
                "ip yes\niptables-save yes\n".to_string(),
                format!(
                    r#"[{{"ifname":"eth1","operstate":"UP","addr_info":[{{"local":"198.51.100.2","prefixlen":24,"valid_life_time":{lifetime},"preferred_life_time":{lifetime}}}]}}]"#
                ),
                format!("# Generated by iptables-save on {counters}\n*filter\n:INPUT ACCEPT [{counters}]\nCOMMIT\n"),
            ];
            let mut m = BTreeMap::new();
            m.insert("tools".to_string(), sec(&texts[0]));
            m.insert("rules".to_string(), sec("[]"));
            m.insert("routes".to_string(), sec(routes));
            m.insert("addrs".to_string(), sec(&texts[1]));
            m.insert("iptables".to_string(), sec(&texts[2]));
            let mut f = parse_facts("h", &m).unwrap();
            f.digest = digest(&f);
            f.digest
        };
        let a = facts(3600, "1:60", "[]");
        assert_eq!(a, facts(3598, "7:420", "[]"));
        assert_ne!(
            a,
            facts(
                3600,
                "1:60",
                r#"[{"dst":"10.0.0.0/8","dev":"eth1","table":"main","protocol":"201","scope":"link"}]"#
            )
        );
    }

    /// Facts of a converged-looking host: owned rules at 1100/1200, an owned
    /// route in table 200 and one in main, an owned chain and its jump.
    fn host_facts(extra_rules: &str, extra_routes: &str, extra_ipt: &str) -> Facts {
        let rules = format!(
            r#"[{{"priority":0,"src":"all","table":"local"}},
                {{"priority":1100,"src":"all","fwmark":"0x200","table":"200","protocol":"201"}},
                {{"priority":1200,"src":"203.0.113.2","table":"200","protocol":"201"}}{extra_rules},
                {{"priority":32766,"src":"all","table":"main"}}]"#
        );
        let routes = format!(
            r#"[{{"dst":"default","gateway":"203.0.113.1","dev":"eth2","table":"200","protocol":"201","scope":"global","type":"unicast"}},
                {{"dst":"100.65.0.0/16","gateway":"203.0.113.1","dev":"eth2","protocol":"201","scope":"global","type":"unicast"}},
                {{"dst":"203.0.113.0/24","dev":"eth2","protocol":"kernel","scope":"link","prefsrc":"203.0.113.2","type":"unicast"}}{extra_routes}]"#
        );
        let ipt = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DWPROV-FWD - [0:0]\n\
             -A FORWARD -m comment --comment dwprov -j DWPROV-FWD\n-A DWPROV-FWD -j ACCEPT\n{extra_ipt}COMMIT\n"
        );
        let mut m = BTreeMap::new();
        m.insert("tools".to_string(), sec("ip yes\niptables-save yes\n"));
        m.insert("rules".to_string(), sec(&rules));
        m.insert("routes".to_string(), sec(&routes));
        m.insert("iptables".to_string(), sec(&ipt));
        let mut f = parse_facts("h", &m).unwrap();
        f.digest = digest(&f);
        f
    }

    /// Foreign churn elsewhere leaves the digest alone; owned drift and
    /// foreign objects that collide with owned ones change it.
    #[test]
    fn digest_covers_what_the_plan_depends_on() {
        let base = host_facts("", "", "").digest;
        let same = |r: &str, rt: &str, ipt: &str| host_facts(r, rt, ipt).digest == base;
        // fail2ban, another tool's rule outside the band, a Docker route, a foreign chain.
        assert!(same("", "", "-A INPUT -s 10.98.0.0/16 -j DROP\n"));
        assert!(same(
            r#",{"priority":5210,"src":"all","fwmark":"0x80000","table":"52"}"#,
            "",
            ""
        ));
        assert!(same(
            "",
            r#",{"dst":"172.17.0.0/16","dev":"docker0","protocol":"kernel","scope":"link","type":"unicast"}"#,
            ""
        ));
        assert!(same(
            "",
            "",
            ":FOREIGN - [0:0]\n-A FOREIGN -j RETURN\n-A INPUT -j FOREIGN\n"
        ));
        // A container's veth (no address) comes up.
        let mut f = host_facts("", "", "");
        f.interfaces.push(Interface {
            name: "veth1a2b".into(),
            up: true,
            addresses: Vec::new(),
        });
        assert_eq!(digest(&f), base);
        f.interfaces[0]
            .addresses
            .push("172.17.0.1/16".parse().unwrap());
        assert_ne!(digest(&f), base);
        // Collisions: a rule between dwprov's, a route in dwprov's table, a
        // route with the key of a dwprov route, a DWPROV-* chain.
        assert!(!same(
            r#",{"priority":1150,"src":"all","table":"main"}"#,
            "",
            ""
        ));
        assert!(!same(
            "",
            r#",{"dst":"10.123.0.0/16","dev":"eth1","table":"200","protocol":"boot","scope":"link","type":"unicast"}"#,
            ""
        ));
        assert!(!same(
            "",
            r#",{"dst":"100.65.0.0/16","gateway":"198.51.100.1","dev":"eth1","protocol":"static","scope":"global","type":"unicast"}"#,
            ""
        ));
        assert!(!same("", "", ":DWPROV-X - [0:0]\n"));
        // Owned drift: a dwprov route gone, dwprov's jump gone.
        let mut f = host_facts("", "", "");
        f.state.routes.retain(|r| r.dst.prefix_len() != 16);
        assert_ne!(digest(&f), base);
        let mut f = host_facts("", "", "");
        f.state
            .firewall
            .iptables
            .tables
            .get_mut("filter")
            .unwrap()
            .chains
            .get_mut("FORWARD")
            .unwrap()
            .rules
            .clear();
        assert_ne!(digest(&f), base);

        // With the plan's desired state, its band and tables count even on a
        // host where dwprov owns nothing yet.
        let mut bare = host_facts("", "", "");
        bare.state
            .rules
            .retain(|r| !crate::ownership::is_owned_rule(r));
        bare.state
            .routes
            .retain(|r| !crate::ownership::is_owned_route(r));
        let desired = State {
            rules: host_facts("", "", "")
                .state
                .rules
                .into_iter()
                .filter(crate::ownership::is_owned_rule)
                .collect(),
            ..State::default()
        };
        let with_rule = |prio: u32| {
            let mut f = bare.clone();
            f.state.rules.push(crate::state::Rule {
                priority: prio,
                action: crate::state::RuleAction::Table(254),
                ..Default::default()
            });
            plan_digest(&f, &desired)
        };
        assert_ne!(plan_digest(&bare, &desired), with_rule(1150));
        assert_eq!(plan_digest(&bare, &desired), with_rule(5210));
        // Without one, the default band stands in.
        let mut f = bare.clone();
        f.state.rules.push(crate::state::Rule {
            priority: 1500,
            ..Default::default()
        });
        assert_ne!(digest(&bare), digest(&f));
    }

    /// Nexthops the plan depends on count; where the agent points them
    /// during a failover does not.
    #[test]
    fn digest_covers_nexthops_but_not_the_agents_failover() {
        use crate::state::nexthop::{Hop, Nexthop};
        let via = |id: u32, gw: &str, dev: &str| Nexthop {
            id,
            proto: crate::ownership::ROUTE_PROTO,
            hop: Hop::Via {
                via: gw.parse().unwrap(),
                dev: dev.into(),
            },
        };
        let group = |m: &[(u32, u32)]| Nexthop {
            id: 20999,
            proto: crate::ownership::ROUTE_PROTO,
            hop: Hop::Group(m.to_vec()),
        };
        let ctc = via(20001, "198.51.100.1", "eth1");
        let cnc = via(20002, "203.0.113.1", "eth2");
        let both = group(&[(20001, 2), (20002, 1)]);
        let desired = State {
            nexthops: vec![ctc.clone(), cnc.clone(), both.clone()],
            ..State::default()
        };
        let with = |hops: Vec<Nexthop>| {
            let mut f = host_facts("", "", "");
            f.state.nexthops = hops;
            f
        };
        let d = |hops: Vec<Nexthop>| plan_digest(&with(hops), &desired);
        let base = d(vec![ctc.clone(), cnc.clone(), both.clone()]);
        // CNC failed over to CTC's gateway and out of the group: the agent's.
        let failed_over = vec![
            ctc.clone(),
            via(20002, "198.51.100.1", "eth1"),
            group(&[(20001, 2)]),
        ];
        assert_eq!(d(failed_over.clone()), base);
        // Drift the plan depends on.
        let moved = via(20002, "10.9.9.9", "eth2");
        assert_ne!(
            d(vec![ctc.clone(), moved, both.clone()]),
            base,
            "a hand-made repoint"
        );
        assert_ne!(d(vec![ctc.clone(), both.clone()]), base, "a nexthop gone");
        let stranger = group(&[(20001, 2), (20003, 1)]);
        assert_ne!(
            d(vec![ctc.clone(), cnc.clone(), stranger]),
            base,
            "a stranger in the group"
        );
        assert_ne!(
            d(vec![ctc.clone(), cnc.clone(), group(&[])]),
            base,
            "an empty group"
        );
        let mut foreign = cnc.clone();
        foreign.proto = 3;
        assert_ne!(
            d(vec![ctc.clone(), foreign, both.clone()]),
            base,
            "not dwprov's any more"
        );
        let mut squatter = via(20500, "192.0.2.1", "eth1");
        squatter.proto = 3;
        let mut v = vec![ctc.clone(), cnc.clone(), both.clone()];
        v.push(squatter);
        assert_ne!(d(v), base, "a foreign nexthop in dwprov's band");
        // Foreign nexthops outside the band are not the plan's business.
        let mut other = via(7, "192.0.2.1", "eth1");
        other.proto = 3;
        assert_eq!(d(vec![ctc.clone(), cnc.clone(), both.clone(), other]), base);
        // The facts' own digest (no desired state) ignores every target.
        let own = |hops: Vec<Nexthop>| digest(&with(hops));
        let normal = own(vec![ctc.clone(), cnc.clone(), both.clone()]);
        assert_eq!(own(failed_over), normal);
        assert_ne!(own(vec![ctc.clone(), both.clone()]), normal);
    }

    proptest::proptest! {
        #[test]
        fn split_never_panics(s in ".{0,300}") {
            let _ = split_sections(&s, "M1");
            let _ = split_sections(&format!("M1 begin {s}"), "M1");
        }
    }
}
