//! The checks that need the gateway's live state: the management path and
//! clashes with what other software put there.
//!
//! The facts are the gather's, plus three sections of `gateway/check.sh`
//! (run after the gather in its round trip): the management session as
//! the gateway sees it (`SSH_CONNECTION`), the rp_filter lines of every
//! sysctl file in the order they are applied at boot, and systemd-networkd
//! (running or enabled, its `ManageForeign*` settings).
use super::locate;
use super::{Finding, Severity};
use crate::error::{Error, Result};
use crate::facts::Facts;
use crate::inventory::Host;
use crate::model::{Gateway, Method, Proto};
use crate::ownership;
use crate::render::Rendered;
use crate::state::ip::{TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN};
use crate::state::iptables::Iptables;
use crate::trace::addr::{self, Addr};
use crate::trace::{self, End, Flow, World};
use crate::transport::Transport;

/// The gateway-side program of the extra facts.
pub const CHECK_SH: &str = include_str!("../../gateway/check.sh");

/// The management session: `SSH_CONNECTION` as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub client: Addr,
    pub client_port: u16,
    pub server: Addr,
    pub server_port: u16,
}

/// One line of a file on the gateway: (path, line number, text).
pub type FileLine = (String, usize, String);

/// The gathered facts and check.sh's.
#[derive(Debug, Clone, Default)]
pub struct LiveFacts {
    pub facts: Facts,
    /// None: not an SSH session (the local transport), or not IPv4.
    pub session: Option<Session>,
    /// `SSH_CONNECTION` as read, for messages when it did not parse.
    pub session_text: String,
    /// sysctl files in the order they are applied.
    pub sysctl_order: Vec<String>,
    /// Their rp_filter lines.
    pub sysctl_lines: Vec<FileLine>,
    /// `systemctl is-active` / `is-enabled` of systemd-networkd ("" when unknown).
    pub networkd_active: String,
    pub networkd_enabled: String,
    /// `ManageForeign*` lines of networkd.conf and its drop-ins, in reading order.
    pub networkd_lines: Vec<FileLine>,
}

/// Gather, with check.sh after it in the same round trip.
pub fn gather(t: &mut dyn Transport) -> Result<LiveFacts> {
    let (facts, m, out) = crate::gather::gather_also(t, CHECK_SH)?;
    from_output(facts, &out, &m)
}

/// Run check.sh over `t` and add its sections to gathered `facts`.
pub fn with_check_facts(t: &mut dyn Transport, facts: Facts) -> Result<LiveFacts> {
    let m = crate::gather::marker();
    let out = t.run_script(&format!("D='{m}'\n{CHECK_SH}"))?;
    if out.status != 0 {
        return Err(Error::Remote {
            host: t.host().to_string(),
            what: "check facts (gateway/check.sh)".into(),
            status: out.status,
            stderr: out.stderr_str().trim().to_string(),
        });
    }
    from_output(facts, &out.stdout_str(), &m)
}

/// check.sh's sections out of `text` (its own run's, or a gather's that
/// ran it too: `gather::gather_also`), added to `facts`.
pub fn from_output(facts: Facts, text: &str, m: &str) -> Result<LiveFacts> {
    // A gather's output holds its own sections first: start at check.sh's.
    let text = text
        .find(&format!("{m} begin ssh_connection\n"))
        .map_or(text, |i| &text[i..]);
    let sections = crate::gather::split_sections(text, m)?;
    let get = |n: &str| sections.get(n).map(|s| s.stdout).unwrap_or("");
    Ok(parse(
        facts,
        get("ssh_connection"),
        get("sysctl_files"),
        get("networkd"),
    ))
}

/// check.sh's sections into [`LiveFacts`]. Pure: tested on captured text.
pub fn parse(facts: Facts, ssh: &str, sysctl: &str, networkd: &str) -> LiveFacts {
    let session_text = ssh.trim().to_string();
    let w: Vec<&str> = session_text.split_whitespace().collect();
    // Only a session of a family dwprov manages is traced (the state holds
    // no routes of another).
    let managed = |t: &str| {
        t.parse::<Addr>()
            .ok()
            .filter(crate::state::family::is_managed)
    };
    let session = match w.as_slice() {
        [c, cp, s, sp] => (|| {
            Some(Session {
                client: managed(c)?,
                client_port: cp.parse().ok()?,
                server: managed(s)?,
                server_port: sp.parse().ok()?,
            })
        })(),
        _ => None,
    };
    let mut lf = LiveFacts {
        facts,
        session,
        session_text,
        ..LiveFacts::default()
    };
    for line in sysctl.lines() {
        match file_line(line) {
            Some((f, None, _)) => lf.sysctl_order.push(f),
            Some((f, Some(n), t)) => lf.sysctl_lines.push((f, n, t)),
            None => {}
        }
    }
    for line in networkd.lines() {
        if let Some(v) = line.strip_prefix("active ") {
            lf.networkd_active = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("enabled ") {
            lf.networkd_enabled = v.trim().to_string();
        } else if let Some((f, Some(n), t)) = file_line(line) {
            lf.networkd_lines.push((f, n, t));
        }
    }
    lf
}

/// `FILE:N:TEXT` (grep -n with the file put first) or `FILE::`.
fn file_line(line: &str) -> Option<(String, Option<usize>, String)> {
    if let Some(f) = line.strip_suffix("::") {
        return Some((f.to_string(), None, String::new()));
    }
    let (f, rest) = line.split_once(':')?;
    let (n, text) = rest.split_once(':')?;
    Some((f.to_string(), Some(n.parse().ok()?), text.to_string()))
}

pub fn findings(host: &Host, gw: &Gateway, rendered: &Rendered, lf: &LiveFacts) -> Vec<Finding> {
    let now = World::live(Some(gw), &lf.facts);
    let after = World::after_apply_of(
        &now,
        &World::desired(gw, &rendered.desired),
        &rendered.desired,
    );
    findings_in(host, gw, lf, &now, &after)
}

/// [`findings`] on the worlds already built: `now` the live world of `lf`,
/// `after` it after the apply (`check_host` shares them with the other checks).
pub fn findings_in(
    host: &Host,
    gw: &Gateway,
    lf: &LiveFacts,
    now: &World,
    after: &World,
) -> Vec<Finding> {
    let mut out = Vec::new();
    management(host, gw, lf, now, after, &mut out);
    rule_band(host, gw, lf, &mut out);
    mark_bits(host, gw, lf, now, &mut out);
    tables(host, gw, lf, &mut out);
    dnat_first(host, gw, now, &mut out);
    sshd_capture(host, gw, lf, &mut out);
    rp_filter(gw, lf, &mut out);
    networkd(host, lf, &mut out);
    out
}

/// The controller's session, traced on the state after the apply: its
/// replies must leave as they do now (same interface, same next hop),
/// unmarked by dwprov.
fn management(
    host: &Host,
    gw: &Gateway,
    lf: &LiveFacts,
    now: &World,
    after: &World,
    out: &mut Vec<Finding>,
) {
    let Some(s) = lf.session else {
        if !lf.session_text.is_empty() {
            out.push(Finding::new(
                Severity::Info,
                "management-path",
                None,
                format!(
                    "the management session `{}` is not IPv4: not traced",
                    lf.session_text
                ),
                "the tracer follows IPv4 only",
                "nothing; commit-confirmed apply still reverts a change that cuts the session",
            ));
        }
        return;
    };
    let reply = Flow {
        from: s.server,
        to: s.client,
        iif: Some("lo".into()),
        proto: Some(Proto::Tcp),
        sport: Some(s.server_port),
        dport: Some(s.client_port),
    };
    // Where the session comes in: where the gateway's replies leave now.
    let Ok(now_t) = trace::explain(&gw.host, now, &reply) else {
        return;
    };
    let End::Out { dev, via, .. } = &now_t.forward.end else {
        return;
    };
    let session = Flow {
        from: s.client,
        to: s.server,
        iif: Some(dev.clone()),
        proto: Some(Proto::Tcp),
        sport: Some(s.client_port),
        dport: Some(s.server_port),
    };
    let Ok(t) = trace::explain(&gw.host, after, &session) else {
        return;
    };
    let who = format!(
        "the controller {} (SSH to {}:{})",
        s.client, s.server, s.server_port
    );
    let now_path = format!(
        "{}{}",
        now.iface_label(dev),
        via.map(|v| format!(" via {v}")).unwrap_or_default()
    );
    let decided_by = |leg: &trace::Leg| {
        leg.decision
            .as_ref()
            .and_then(|d| locate::decision(host, gw, d))
    };
    let cut = |message: String, loc| {
        Finding::new(
            Severity::Error,
            "management-path",
            loc,
            format!("this apply would cut the SSH session it runs over: {message}"),
            format!("replies to {who} leave by {now_path} now; commit-confirmed apply would revert the change after its timeout, but the gateway would be unreachable until then"),
            "route the controller's address by the interface it uses now: remove or narrow the policy or prefix \
             named here, or reach the gateway over another address (`dwprov explain --from CONTROLLER --to GATEWAY --iif IF` shows the path)",
        )
    };
    if !matches!(t.forward.end, End::Local { .. }) {
        out.push(cut(
            format!(
                "{who}'s packets would no longer reach the gateway's sshd: {}",
                t.verdict.summary
            ),
            decided_by(&t.forward),
        ));
        return;
    }
    let Some(r) = &t.reply else { return };
    match &r.end {
        End::Out {
            dev: d2,
            via: v2,
            src,
            ..
        } if d2 == dev && v2 == via && *src == s.server => {
            let mine = r.mark & gw.mark_mask;
            if mine != 0 {
                out.push(Finding::new(
                    Severity::Warning,
                    "management-path",
                    Some(locate::key(host, "method")),
                    format!("replies to {who} would carry dwprov's mark {mine:#x}; they still leave by {now_path}"),
                    "the management session's path then follows dwprov's marks: a change of a line's mark or table moves it",
                    "reach the gateway on an interface that is no line (a management network), so no line's mark is set on it",
                ));
            }
        }
        End::Out {
            dev: d2,
            via: v2,
            src,
            ..
        } => {
            let path = format!(
                "{}{}",
                after.iface_label(d2),
                v2.map(|v| format!(" via {v}")).unwrap_or_default()
            );
            let mut m = format!("replies to {who} would leave by {path} instead of {now_path}");
            if *src != s.server {
                m.push_str(&format!(", with source {src} instead of {}", s.server));
            }
            if let Some((p, rule)) = r.decision.as_ref().and_then(|d| d.rule.clone()) {
                m.push_str(&format!(" (ip rule {p}: `{rule}`)"));
            }
            out.push(cut(m, decided_by(r)));
        }
        End::Dropped { why } => out.push(cut(
            format!("replies to {who} would be dropped: {why}"),
            decided_by(r),
        )),
        End::Local { .. } => out.push(cut(
            format!("replies to {who} would be delivered to the gateway itself"),
            decided_by(r),
        )),
    }
}

/// Foreign ip rules inside dwprov's priority band interleave with its rules.
fn rule_band(host: &Host, gw: &Gateway, lf: &LiveFacts, out: &mut Vec<Finding>) {
    let (lo, hi) = (
        gw.rule_priority,
        gw.rule_priority + ownership::RULE_BAND_SIZE - 1,
    );
    let names = |t: u32| lf.facts.state.rt_tables.label(t);
    let foreign: Vec<String> = lf
        .facts
        .state
        .rules
        .iter()
        .filter(|r| !ownership::is_owned_rule(*r) && (lo..=hi).contains(&r.priority))
        .map(|r| r.display(&names).replace('\t', " "))
        .collect();
    if foreign.is_empty() {
        return;
    }
    let loc = host
        .vars
        .get("rule_priority")
        .map(|_| locate::key(host, "rule_priority"));
    out.push(Finding::new(
        Severity::Error,
        "rule-band",
        loc.or(Some(host.location.clone())),
        format!(
            "{} foreign ip rule(s) inside dwprov's priority band {lo}..{hi}: {}",
            foreign.len(),
            foreign.join("; ")
        ),
        "dwprov's rules are placed at fixed priorities of its band: a foreign rule among them is matched \
         before some of dwprov's and after others, so the traffic it selects skips part of the policy",
        format!(
            "move dwprov's band with `rule_priority:` (e.g. {}) to priorities no other rule uses, or move the foreign rules",
            hi + 1
        ),
    ));
}

/// Foreign rules or iptables marks on dwprov's mark bits (method fwmark).
fn mark_bits(host: &Host, gw: &Gateway, lf: &LiveFacts, now: &World, out: &mut Vec<Finding>) {
    if !matches!(gw.method, Method::Fwmark | Method::Set) {
        return;
    }
    let mask = gw.mark_mask;
    let mut users = Vec::new();
    for r in lf
        .facts
        .state
        .rules
        .iter()
        .filter(|r| !ownership::is_owned_rule(*r))
    {
        if let Some(m) = r.fwmark {
            if m.mask & mask != 0 && m.value & mask != 0 {
                users.push(format!("ip rule {} (fwmark {m})", r.priority));
            }
        }
    }
    let ipt: &Iptables = &now.firewall;
    for (tname, table) in &ipt.tables {
        for (cname, chain) in table
            .chains
            .iter()
            .filter(|(c, _)| !ownership::is_owned_chain(c))
        {
            for rule in &chain.rules {
                let Some(t) = &rule.target else { continue };
                if !matches!(t.name.as_str(), "MARK" | "CONNMARK") {
                    continue;
                }
                let writes = t.options.iter().any(|o| {
                    let bits = |s: &str| {
                        let m = s.split('/').nth(1).unwrap_or("0xffffffff");
                        u32::from_str_radix(m.trim_start_matches("0x"), 16).unwrap_or(u32::MAX)
                    };
                    match o.name.as_str() {
                        "set-xmark" => o.args.first().is_some_and(|a| bits(a) & mask != 0),
                        "restore-mark" | "save-mark" => true,
                        _ => false,
                    }
                });
                if writes {
                    users.push(format!("iptables -t {tname} -A {cname} {rule}"));
                }
            }
        }
    }
    if users.is_empty() {
        return;
    }
    let loc = host
        .vars
        .get("mark_mask")
        .map(|_| locate::key(host, "mark_mask"));
    out.push(Finding::new(
        Severity::Error,
        "mark-bits",
        loc.or(Some(host.location.clone())),
        format!("foreign software uses dwprov's mark bits {mask:#x}: {}", users.join("; ")),
        "method fwmark routes a connection by the line mark in these bits: a foreign rule that sets or \
         selects them moves connections to another line (or back), and dwprov's restore overwrites its marks",
        "give dwprov bits nobody else uses with `mark_mask:` (and line marks inside it), or change the other software's mask",
    ));
}

/// Foreign routes in a line's table, and rt_tables names or ids taken.
fn tables(host: &Host, gw: &Gateway, lf: &LiveFacts, out: &mut Vec<Finding>) {
    for (i, l) in gw.lines.iter().enumerate() {
        if [TABLE_MAIN, TABLE_LOCAL, TABLE_DEFAULT].contains(&l.table) {
            continue;
        }
        let foreign: Vec<String> = lf
            .facts
            .state
            .routes
            .iter()
            .filter(|r| r.table == l.table && !ownership::is_owned_route(*r))
            .map(|r| r.display())
            .collect();
        if !foreign.is_empty() {
            // A warning: dwprov leaves them be and its own routes still
            // work; only the traffic they match goes elsewhere.
            out.push(Finding::new(
                Severity::Warning,
                "table-taken",
                Some(locate::line(host, i, Some("table"))),
                format!(
                    "table {} of line {} already holds {} foreign route(s): {}",
                    l.table,
                    l.name,
                    foreign.len(),
                    foreign.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                ),
                "dwprov's rules send traffic of this line to its table: foreign routes there take that traffic \
                 (and the other software's rules now reach dwprov's routes)",
                "give the line a table id nobody uses (`table:`), or move the other software's routes",
            ));
        }
        for (id, name) in &lf.facts.state.rt_tables.entries {
            let clash = if *id == l.table && name != &l.name {
                format!("table id {id} is already named `{name}` in rt_tables")
            } else if name == &l.name && *id != l.table {
                format!("the name `{name}` already names table {id} in rt_tables")
            } else {
                continue;
            };
            out.push(Finding::new(
                Severity::Error,
                "rt-tables",
                Some(locate::line(host, i, Some(if *id == l.table { "table" } else { "name" }))),
                format!("line {} (table {}): {clash}", l.name, l.table),
                "iproute2 resolves a table name to the first id listing it: `ip route show table NAME` and the \
                 plans then read another table than the one dwprov routes in",
                "choose a table id and name no rt_tables file uses",
            ));
        }
    }
}

/// A foreign DNAT of a forward's port placed before dwprov's jump in nat
/// PREROUTING takes the forward's connections.
fn dnat_first(host: &Host, gw: &Gateway, now: &World, out: &mut Vec<Finding>) {
    let Some(nat) = now.firewall.tables.get("nat") else {
        return;
    };
    let Some(pre) = nat.chains.get("PREROUTING") else {
        return;
    };
    let Some(jump) = pre.rules.iter().position(ownership::is_owned_jump) else {
        // No jump yet: dwprov puts its own first.
        return;
    };
    if jump == 0 {
        return;
    }
    // The nat table as it stands before dwprov's jump: only it is walked
    // below, so the other tables (mangle holds a rule per set element) are
    // not copied.
    let mut nat = nat.clone();
    if let Some(c) = nat.chains.get_mut("PREROUTING") {
        c.rules.truncate(jump);
    }
    let mut before = Iptables::default();
    before.tables.insert("nat".into(), nat);
    let world = World {
        firewall: std::sync::Arc::new(before),
        ..now.clone()
    };
    for (fi, f) in gw.forwards.iter().enumerate() {
        for l in gw.lines.iter().filter(|l| f.lines.contains(&l.name)) {
            let Some(la) = l.address else { continue };
            let mut p = trace::netfilter::Pkt {
                src: "192.0.2.10"
                    .parse()
                    .unwrap_or(Addr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                dst: addr::host(&la),
                proto: Some(if f.proto == Proto::Tcp { 6 } else { 17 }),
                sport: Some(40000),
                dport: Some(f.port),
                iif: Some(l.interface.clone()),
                oif: None,
                mark: 0,
                ctmark: 0,
                ct: trace::netfilter::Ct::New,
            };
            let mut hops = Vec::new();
            let (_, nat) = trace::netfilter::walk(
                &world.firewall,
                &world.sets,
                "nat",
                "PREROUTING",
                &mut p,
                &world,
                &mut hops,
            );
            if nat.is_none() {
                continue;
            }
            let by = hops
                .iter()
                .rev()
                .find(|h| h.step == "dnat")
                .map(|h| h.what.clone())
                .unwrap_or_default();
            out.push(Finding::new(
                Severity::Error,
                "foreign-dnat",
                Some(locate::item(host, "forwards", fi)),
                format!(
                    "forward {} {} on line {}: a foreign rule before dwprov's jump in nat PREROUTING takes it: {by}",
                    f.proto.as_str(),
                    f.port,
                    l.name
                ),
                "the nat table acts on the first matching rule: connections to this port go where the foreign \
                 rule sends them, never to the forward's server",
                "remove the foreign rule or choose another port for the forward",
            ));
        }
    }
}

/// A forward of the port sshd answers on, on the address the controller uses.
fn sshd_capture(host: &Host, gw: &Gateway, lf: &LiveFacts, out: &mut Vec<Finding>) {
    let Some(s) = lf.session else { return };
    for (fi, f) in gw.forwards.iter().enumerate() {
        if f.proto != Proto::Tcp || f.port != s.server_port {
            continue;
        }
        for l in gw.lines.iter().filter(|l| f.lines.contains(&l.name)) {
            let Some(la) = l.address else { continue };
            let here = addr::host(&la) == s.server;
            out.push(Finding::new(
                if here { Severity::Error } else { Severity::Warning },
                "sshd-captured",
                Some(locate::item(host, "forwards", fi)),
                format!(
                    "forward tcp {} on line {} ({}) captures the gateway's own sshd{}",
                    f.port,
                    l.name,
                    addr::host(&la),
                    if here { ", the address this session uses" } else { "" }
                ),
                "DNAT in PREROUTING comes before local delivery: SSH connections to that address reach the \
                 forward's server instead of the gateway (and a new session for the apply's verify would too)",
                "forward another public port (`port: 2222, to_port: 22`) or limit the forward to other lines (`lines: [...]`)",
            ));
        }
    }
}

/// A sysctl file applied after dwprov's that sets strict rp_filter.
fn rp_filter(gw: &Gateway, lf: &LiveFacts, out: &mut Vec<Finding>) {
    let own = ownership::SYSCTL_CONF;
    let Some(own_at) = lf.sysctl_order.iter().position(|f| f == own) else {
        // dwprov's file is not there yet: the apply writes it; judge its name.
        return rp_filter_after(gw, lf, own, usize::MAX, out);
    };
    rp_filter_after(gw, lf, own, own_at, out)
}

fn rp_filter_after(gw: &Gateway, lf: &LiveFacts, own: &str, own_at: usize, out: &mut Vec<Finding>) {
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let own_name = base(own);
    let order = |f: &str| lf.sysctl_order.iter().position(|x| x == f);
    for (file, n, text) in &lf.sysctl_lines {
        let line = text.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if v.trim() != "1" {
            continue;
        }
        let k = k.trim().trim_start_matches('-').replace('/', ".");
        let Some(iface) = k
            .strip_prefix("net.ipv4.conf.")
            .and_then(|r| r.strip_suffix(".rp_filter"))
        else {
            continue;
        };
        // Applied after dwprov's: later in the order (/etc/sysctl.conf is last).
        let after = match (order(file), own_at) {
            (Some(i), at) if at != usize::MAX => i > at,
            _ => file == "/etc/sysctl.conf" || base(file) > own_name,
        };
        if !after {
            continue;
        }
        // `all` alone is harmless: the kernel takes the larger of `all` and
        // the interface's value, and dwprov sets its lines' to 2 (loose).
        let line_ifaces: Vec<&str> = gw.lines.iter().map(|l| l.interface.as_str()).collect();
        let (sev, what) = if iface == "*" || line_ifaces.contains(&iface) {
            (
                Severity::Error,
                format!(
                    "strict rp_filter on {}",
                    if iface == "*" {
                        "every interface".to_string()
                    } else {
                        format!("line interface {iface}")
                    }
                ),
            )
        } else if iface == "default" {
            (
                Severity::Warning,
                "strict rp_filter for interfaces created later (a PPP or VLAN line)".to_string(),
            )
        } else {
            continue;
        };
        out.push(Finding::new(
            sev,
            "rp-filter",
            None,
            format!("{file}:{n}: `{line}` is applied after dwprov's {own}: {what} at the next boot"),
            "strict reverse-path filtering drops a packet that comes in on a line its source is not routed \
             by: exactly the asymmetric traffic dual-line routing creates (a CNC user through the CTC line); \
             the kernel takes the larger of `all` and the interface's value, so this file wins",
            format!("remove that line, set it to 2 (loose), or rename the file to sort before {own_name}"),
        ));
    }
}

/// systemd-networkd deletes foreign rules and routes when it reconfigures.
fn networkd(host: &Host, lf: &LiveFacts, out: &mut Vec<Finding>) {
    let running = lf.networkd_active == "active";
    let enabled = matches!(
        lf.networkd_enabled.as_str(),
        "enabled" | "enabled-runtime" | "static" | "alias"
    );
    if !running && !enabled {
        return;
    }
    // The last setting read wins; networkd's default for both is yes.
    let setting = |key: &str| {
        lf.networkd_lines.iter().rev().find_map(|(f, n, t)| {
            let (k, v) = t.split_once('=')?;
            (k.trim().eq_ignore_ascii_case(key))
                .then(|| (v.trim().to_ascii_lowercase(), format!("{f}:{n}")))
        })
    };
    let mut on = Vec::new();
    for key in ["ManageForeignRoutingPolicyRules", "ManageForeignRoutes"] {
        match setting(key) {
            Some((v, _)) if matches!(v.as_str(), "no" | "false" | "0" | "off") => {}
            Some((v, at)) => on.push(format!("{key}={v} ({at})")),
            None => on.push(format!("{key} (default yes)")),
        }
    }
    if on.is_empty() {
        return;
    }
    out.push(Finding::new(
        Severity::Error,
        "networkd",
        Some(host.location.clone()),
        format!(
            "systemd-networkd is {} and manages foreign state: {}",
            if running { "running" } else { "enabled" },
            on.join(", ")
        ),
        "networkd removes every ip rule and route it did not create when it (re)configures a link (a restart, \
         a carrier change, a lease renewal): dwprov's policy routing disappears until the next apply",
        "add the drop-in /etc/systemd/networkd.conf.d/dwprov.conf with `[Network]`, \
         `ManageForeignRoutingPolicyRules=no`, `ManageForeignRoutes=no` (and `ManageForeignNextHops=no` on \
         systemd 256+), then `networkctl reload`",
    ));
}

#[cfg(test)]
mod tests;
