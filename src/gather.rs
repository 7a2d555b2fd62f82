//! Collect live facts from a host in one round trip and parse them into typed state.
//!
//! One shell script runs every fact command; each command's stdout, stderr
//! and exit status come back in a section framed by an unguessable marker,
//! so no output can be mistaken for another's (and a missing table's `[`
//! with exit 2 is seen for what it is).
use crate::error::{Error, Result};
use crate::state::{ip, Iptables, RtTables, State};
use crate::transport::Transport;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Files dwprov owns on a gateway (besides everything under [`STATE_DIR`]).
pub const OWNED_FILES: &[&str] = &[
    "/etc/iproute2/rt_tables.d/dwprov.conf",
    "/etc/iproute2/rt_protos.d/dwprov.conf",
    "/etc/sysctl.d/90-dwprov.conf",
];
/// Where dwprov keeps boot-time state on the gateway.
pub const STATE_DIR: &str = "/etc/dwprov";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    pub addresses: Vec<ipnet::Ipv4Net>,
}

/// Everything gathered from one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub host: String,
    pub state: State,
    pub kernel: String,
    pub uid: Option<u32>,
    pub interfaces: Vec<Interface>,
    /// "nf_tables" or "legacy" (from `iptables -V`).
    pub iptables_backend: Option<String>,
    /// Rules exist in the *other* iptables backend (invisible to ours).
    pub other_backend_rules: bool,
    /// Tool name → present.
    pub tools: BTreeMap<String, bool>,
    pub systemd: bool,
    /// Things worth telling the admin (iptables-save warnings, ...).
    pub warnings: Vec<String>,
    /// SHA-256 of the raw fact output: a saved plan is stale when it changes.
    pub digest: String,
}

impl Facts {
    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.get(name).copied().unwrap_or(false)
    }
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

const TOOLS: &[&str] = &[
    "ip",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "iptables-legacy-save",
    "iptables-nft-save",
    "sysctl",
    "systemctl",
    "setsid",
    "conntrack",
    "awk",
    "sha256sum",
];

/// The gather script. `marker` frames the sections.
pub fn script(marker: &str) -> String {
    let mut s = String::new();
    s.push_str("PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export LC_ALL=C\n");
    s.push_str(&format!("D='{marker}'\nexec 3>&1\n"));
    // Each fork costs about a millisecond on a small gateway, and gather runs
    // on every plan of every host: stderr goes to one temp file instead of a
    // `$(...)` subshell per section, and the helpers use shell builtins. Where
    // no temp file can be made (read-only /tmp), the subshell version runs.
    // A /proc/sys file read a byte at a time (dash's `read`) ends after the
    // value, without its newline: `read` then fails with the value set.
    s.push_str(
        r#"if E=$(mktemp 2>/dev/null) && [ -f "$E" ]; then
trap 'rm -f "$E"' EXIT
sec() { n=$1; shift; printf '%s begin %s\n' "$D" "$n"; "$@" 2>"$E"; r=$?; printf '\n%s end %s %s\n' "$D" "$n" "$r"; if [ -s "$E" ]; then cat "$E"; fi; printf '\n%s fin\n' "$D"; }
else
sec() { n=$1; shift; printf '%s begin %s\n' "$D" "$n"; e=$("$@" 2>&1 1>&3); r=$?; printf '\n%s end %s %s\n' "$D" "$n" "$r"; printf '%s' "$e"; printf '\n%s fin\n' "$D"; }
fi
f_sysctl() { for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/rp_filter; do [ -f "$f" ] || continue; v=; read -r v < "$f"; [ -n "$v" ] && printf '%s %s\n' "${f#/proc/sys/}" "$v"; done; return 0; }
f_tools() { for t in "$@"; do if command -v "$t" >/dev/null 2>&1; then echo "$t yes"; else echo "$t no"; fi; done; }
f_rt_tables() { if [ -f /etc/iproute2/rt_tables ]; then cat /etc/iproute2/rt_tables; elif [ -f /usr/share/iproute2/rt_tables ]; then cat /usr/share/iproute2/rt_tables; fi; for f in /etc/iproute2/rt_tables.d/*.conf; do [ -f "$f" ] && [ "$f" != /etc/iproute2/rt_tables.d/dwprov.conf ] && cat "$f"; done; return 0; }
f_file() { [ -f "$1" ] && cat "$1"; }
f_state_files() { for f in /etc/dwprov/* /etc/dwprov/.[!.]*; do [ -f "$f" ] && printf '%s\n' "$f"; done; return 0; }
f_other_backend() { [ -n "$V" ] || V=$(iptables -V 2>/dev/null); case "$V" in *nf_tables*) o=iptables-legacy-save;; *) o=iptables-nft-save;; esac; command -v "$o" >/dev/null 2>&1 || return 0; "$o" 2>/dev/null | grep -c '^-A' ; return 0; }
f_systemd() { [ -d /run/systemd/system ] && echo yes || echo no; }
f_iptables_version() { V=$(iptables -V 2>&1); r=$?; [ $r -eq 0 ] && printf '%s\n' "$V" || { printf '%s\n' "$V" >&2; V=; }; return $r; }
"#,
    );
    s.push_str("sec uid id -u\n");
    s.push_str("sec kernel uname -r\n");
    s.push_str(&format!("sec tools f_tools {}\n", TOOLS.join(" ")));
    s.push_str("sec systemd f_systemd\n");
    s.push_str("sec rules ip -4 -j -d -N rule show\n");
    s.push_str("sec routes ip -4 -j -d -N route show table all\n");
    s.push_str("sec addrs ip -4 -j addr show\n");
    s.push_str("sec iptables_version f_iptables_version\n");
    s.push_str("sec iptables iptables-save\n");
    s.push_str("sec other_backend f_other_backend\n");
    s.push_str("sec rt_tables f_rt_tables\n");
    s.push_str("sec sysctl f_sysctl\n");
    for f in OWNED_FILES.iter().chain(crate::boot::OWNED_FILES) {
        s.push_str(&format!("sec 'file {f}' f_file {f}\n"));
    }
    s.push_str("sec state_files f_state_files\n");
    s.push_str("for f in /etc/dwprov/* /etc/dwprov/.[!.]*; do [ -f \"$f\" ] || continue; sec \"file $f\" f_file \"$f\"; done\n");
    s
}

/// One command's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

/// Split the script's output into named sections.
pub fn split_sections(text: &str, marker: &str) -> Result<BTreeMap<String, Section>> {
    const WHAT: &str = "gather output";
    let mut out = BTreeMap::new();
    let mut rest = text;
    let begin = format!("{marker} begin ");
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
        let fin = format!("\n{marker} fin\n");
        let f = tail.find(&fin).ok_or_else(|| {
            Error::parse(WHAT, line_no(rest), format!("section {name} not finished"))
        })?;
        out.insert(
            name.to_string(),
            Section {
                stdout: stdout.to_string(),
                stderr: tail[..f].to_string(),
                status,
            },
        );
        rest = &tail[f + fin.len()..];
    }
    Ok(out)
}

/// Parse the sections into facts. Pure: tested with captured output.
pub fn parse_facts(host: &str, sections: &BTreeMap<String, Section>) -> Result<Facts> {
    let get = |n: &str| sections.get(n).cloned().unwrap_or_default();
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
    let rules = get("rules");
    if rules.status != 0 {
        return Err(remote(host, "ip rule show", &rules));
    }
    facts.state.rules = ip::parse_rules_json(&rules.stdout)?;
    let routes = get("routes");
    if routes.status != 0 {
        return Err(remote(host, "ip route show table all", &routes));
    }
    facts.state.routes = ip::parse_routes_json(&routes.stdout)?;
    facts.interfaces = parse_addrs(&get("addrs").stdout)?;

    let version = get("iptables_version").stdout;
    facts.iptables_backend = if version.contains("nf_tables") {
        Some("nf_tables".into())
    } else if version.contains("legacy") {
        Some("legacy".into())
    } else {
        None
    };
    let ipt = get("iptables");
    if facts.has_tool("iptables-save") {
        if ipt.status != 0 {
            return Err(remote(host, "iptables-save", &ipt));
        }
        facts.state.iptables = Iptables::parse(&ipt.stdout)?;
        for w in ipt.stderr.lines().filter(|l| !l.trim().is_empty()) {
            facts.warnings.push(format!("iptables-save: {w}"));
        }
    }
    facts.other_backend_rules = get("other_backend")
        .stdout
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
        > 0;
    if facts.other_backend_rules {
        facts.warnings.push(format!(
            "rules exist in the other iptables backend than {}: they are invisible to dwprov and still filter packets",
            facts.iptables_backend.as_deref().unwrap_or("the default")
        ));
    }
    facts.state.rt_tables = RtTables::parse(&get("rt_tables").stdout, "rt_tables")?;
    for line in get("sysctl").stdout.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            facts
                .state
                .sysctls
                .insert(k.to_string(), v.trim().to_string());
        }
    }
    for (name, sec) in sections {
        if let Some(path) = name.strip_prefix("file ") {
            if sec.status == 0 {
                facts
                    .state
                    .files
                    .insert(path.to_string(), sec.stdout.clone());
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

fn parse_addrs(text: &str) -> Result<Vec<Interface>> {
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
            let local = a
                .get("local")
                .and_then(|l| l.as_str())
                .and_then(|l| l.parse().ok());
            let len = a
                .get("prefixlen")
                .and_then(|l| l.as_u64())
                .and_then(|l| u8::try_from(l).ok());
            if let (Some(l), Some(p)) = (local, len) {
                if let Ok(n) = ipnet::Ipv4Net::new(l, p) {
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

/// A fresh unguessable marker.
pub fn marker() -> String {
    let mut b = [0u8; 12];
    if getrandom::getrandom(&mut b).is_err() {
        // Fall back to time and pid: still unpredictable enough for framing.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("dwprov-{t:x}-{}", std::process::id());
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("dwprov-{hex}")
}

/// Gather facts over an open connection: one round trip.
pub fn gather(t: &mut dyn Transport) -> Result<Facts> {
    let m = marker();
    let out = t.run_script(&script(&m))?;
    facts_from_output(t.host(), &out, &m)
}

/// Facts from the output of a script that ends with `script(marker)`
/// (a gather, or an apply that verifies in the same round trip).
pub fn facts_from_output(host: &str, out: &crate::transport::Output, m: &str) -> Result<Facts> {
    let text = out.stdout_str();
    let start = text.find(&format!("{m} begin "));
    if out.status != 0 && start.is_none() {
        return Err(Error::Remote {
            host: host.into(),
            what: "gather".into(),
            status: out.status,
            stderr: out.stderr_str().trim().to_string(),
        });
    }
    let sections = split_sections(&text[start.unwrap_or(0)..], m)?;
    let mut facts = parse_facts(host, &sections)?;
    // Test hook (undocumented for users): pretend the host runs this kernel,
    // e.g. DWPROV_FAKE_KERNEL=3.2.0 to exercise the route-cache flush path
    // on a modern lab gateway (tests/boot.rs).
    if let Some(k) = std::env::var_os("DWPROV_FAKE_KERNEL") {
        facts.kernel = k.to_string_lossy().into_owned();
    }
    facts.digest = digest(&facts);
    Ok(facts)
}

/// Digest of what matters for a plan (not counters, not uid).
/// Digest of what was gathered, over the typed facts rather than the raw
/// output: counters, timestamps and address lifetimes (a DHCP lease counts
/// down every second) change all the time without the state changing.
fn digest(facts: &Facts) -> String {
    let mut h = Sha256::new();
    let typed = Facts {
        warnings: Vec::new(),
        digest: String::new(),
        ..facts.clone()
    };
    h.update(serde_json::to_vec(&typed).unwrap_or_default());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
        let sections = split_sections(&String::from_utf8_lossy(&out.stdout), &m).unwrap();
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

    /// The facts digest (stale-plan detection) moves with the state, not
    /// with counters, timestamps or address lifetimes.
    #[test]
    fn digest_ignores_what_changes_by_itself() {
        let facts = |lifetime: u32, counters: &str, routes: &str| {
            let sec = |out: &str| Section {
                stdout: out.to_string(),
                ..Section::default()
            };
            let mut m = BTreeMap::new();
            m.insert("tools".to_string(), sec("ip yes\niptables-save yes\n"));
            m.insert("rules".to_string(), sec("[]"));
            m.insert("routes".to_string(), sec(routes));
            m.insert(
                "addrs".to_string(),
                sec(&format!(
                    r#"[{{"ifname":"eth1","operstate":"UP","addr_info":[{{"local":"198.51.100.2","prefixlen":24,"valid_life_time":{lifetime},"preferred_life_time":{lifetime}}}]}}]"#
                )),
            );
            m.insert(
                "iptables".to_string(),
                sec(&format!("# Generated by iptables-save on {counters}\n*filter\n:INPUT ACCEPT [{counters}]\nCOMMIT\n")),
            );
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

    proptest::proptest! {
        #[test]
        fn split_never_panics(s in ".{0,300}") {
            let _ = split_sections(&s, "M1");
            let _ = split_sections(&format!("M1 begin {s}"), "M1");
        }
    }
}
