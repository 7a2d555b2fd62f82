//! Rendered output may only hold what dwprov owns, because only that can be
//! reverted.
//!
//! dwprov removes and reverts only objects carrying its mark (see
//! `crate::diff`): rules and routes tagged `proto dwprov` (201), iptables
//! chains named `DWPROV-*` and the jumps into them, its own files and a few
//! sysctls. A template (`--templates DIR`) rendering anything else would have
//! it installed and then never removed, not even by the commit-confirmed
//! revert: an untagged `ip rule` that cut SSH stayed after the revert and
//! left the gateway unreachable. So every rendered artefact is checked before
//! a plan exists; anything foreign is a template error naming the template
//! line the text came from.
//!
//! Allowed: rules and routes with protocol 201; in iptables, rules in
//! `DWPROV-*` chains, and in built-in chains only jumps to a `DWPROV-*`
//! chain, no policy on a built-in chain, no other chain; sysctls
//! `net/ipv4/ip_forward` (0 or 1), `net/ipv4/conf/IF/rp_filter` (0, 1 or
//! 2) and `net/ipv4/fib_multipath_hash_policy` (0 or 1); rt_tables entries of the gateway's lines; rt_protos `201 dwprov`.
//! Files are fixed by code (`FILE_TARGETS`, `crate::boot`), not templates;
//! their paths are checked against that set all the same.
use crate::diff::{is_owned_chain, is_owned_jump};
use crate::error::{Error, Result};
use crate::model::Gateway;
use crate::state::iptables::IptRule;
use crate::state::{ip, RtTables, State};
use std::collections::BTreeMap;

/// Built-in chains of the iptables tables.
const BUILTIN_CHAINS: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Which template renders each artefact (artefact name → template name).
const SOURCES: &[(&str, &str)] = &[
    ("ip.batch", "ip.batch"),
    ("iptables.rules", "iptables.rules"),
    (crate::ownership::RT_TABLES_CONF, "rt_tables.conf"),
    (crate::ownership::RT_PROTOS_CONF, "rt_protos.conf"),
    (crate::ownership::SYSCTL_CONF, "sysctl.conf"),
    (crate::boot::IP_BATCH, "boot/ip.batch"),
    (crate::boot::IPTABLES_RULES, "boot/iptables.rules"),
];

/// Check every artefact rendered for `gw` (None: a saved plan, whose
/// rt_tables entries can only be checked for reserved ids and names).
/// `source` gives a template's text (to locate the offending line).
pub fn check<'a>(
    gw: Option<&Gateway>,
    artefacts: &BTreeMap<String, String>,
    desired: &State,
    source: impl Fn(&str) -> Option<&'a str>,
) -> Result<()> {
    // `ip.batch` is parsed already: its typed rules and routes say at once
    // whether a line needs finding.
    let ip_batch_owned = desired.rules.iter().all(|r| r.proto == crate::ROUTE_PROTO)
        && desired.routes.iter().all(|r| r.proto == crate::ROUTE_PROTO);
    let names = artefacts
        .get(crate::ownership::RT_TABLES_CONF)
        .map(|t| RtTables::parse(t, "rt_tables.conf.tera output"))
        .transpose()?
        .unwrap_or_default();
    // Files: the paths are chosen by code, never by a template; checked so
    // that stays true.
    for path in artefacts.keys().filter(|k| k.starts_with('/')) {
        let owned = super::FILE_TARGETS.iter().any(|(_, p)| p == path)
            || crate::boot::OWNED_FILES.contains(&path.as_str())
            || path
                .strip_prefix(crate::boot::STATE_DIR)
                .is_some_and(|rest| rest.starts_with('/'));
        if !owned {
            return Err(Error::Invalid {
                message: format!(
                    "rendered a file dwprov does not own: {}",
                    crate::escape::value(path)
                ),
                hint: None,
            });
        }
    }
    for (artefact, template) in SOURCES {
        let Some(text) = artefacts.get(*artefact) else {
            continue;
        };
        let found = match *template {
            "ip.batch" if ip_batch_owned => None,
            "ip.batch" | "boot/ip.batch" => batch(text, &names),
            "iptables.rules" | "boot/iptables.rules" => iptables(text),
            "sysctl.conf" => sysctl(text),
            "rt_tables.conf" => rt_tables(text, gw),
            "rt_protos.conf" => rt_protos(text),
            _ => None,
        };
        if let Some((line, why)) = found {
            let at = source(template).and_then(|src| template_line(src, line));
            return Err(Error::Template {
                name: format!("{template}.tera"),
                line: at,
                message: format!(
                    "renders `{}`: {why}; dwprov installs only what it owns, because only that can be removed or reverted",
                    crate::escape::value(line.trim())
                ),
            });
        }
    }
    Ok(())
}

/// The first foreign line of an `ip -batch` text, and why.
fn batch<'t>(text: &'t str, names: &RtTables) -> Option<(&'t str, String)> {
    // Each line on its own; a `route`/`rule` line whose last protocol word is
    // dwprov's needs no parse (`ip` takes the last one given), so a big
    // boot batch costs a scan, not a second parse.
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || tagged(t) {
            continue;
        }
        let Ok(b) = ip::parse_batch(t, "ip.batch", names) else {
            continue;
        };
        if b.rules.iter().any(|r| r.proto != crate::ROUTE_PROTO) {
            return Some((
                line,
                format!(
                    "a rule without `protocol {}` (`protocol {{{{ proto }}}}`)",
                    crate::ROUTE_PROTO_NAME
                ),
            ));
        }
        if b.routes.iter().any(|r| r.proto != crate::ROUTE_PROTO) {
            return Some((
                line,
                format!(
                    "a route without `proto {}` (`proto {{{{ proto }}}}`)",
                    crate::ROUTE_PROTO_NAME
                ),
            ));
        }
    }
    None
}

/// A `route ...` or `rule ...` line whose last `proto`/`protocol` word is
/// followed by dwprov's number or name.
fn tagged(line: &str) -> bool {
    if !(line.starts_with("route ") || line.starts_with("rule ")) {
        return false;
    }
    // From the end: the protocol word is near it, and the last one counts.
    let mut after = None;
    for w in line.split_ascii_whitespace().rev() {
        if w == "proto" || w == "protocol" {
            return after.is_some_and(|v: &str| {
                v == crate::ROUTE_PROTO_NAME || v.parse::<u8>() == Ok(crate::ROUTE_PROTO)
            });
        }
        after = Some(w);
    }
    false
}

/// The first foreign line of an iptables-restore payload, and why.
fn iptables(text: &str) -> Option<(&str, String)> {
    for line in text.lines() {
        let t = line.trim();
        if let Some(decl) = t.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let (name, policy) = (parts.next().unwrap_or(""), parts.next().unwrap_or("-"));
            if BUILTIN_CHAINS.contains(&name) {
                if policy != "-" {
                    return Some((line, format!("a policy for the built-in chain {name}")));
                }
            } else if !is_owned_chain(name) {
                return Some((
                    line,
                    format!("a chain not named {}*", crate::ownership::CHAIN_PREFIX),
                ));
            }
            continue;
        }
        let (cmd, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let rest = rest.trim_start();
        let (chain, spec) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        match cmd {
            "-N" | "--new-chain" if !is_owned_chain(chain) => {
                return Some((
                    line,
                    format!("a chain not named {}*", crate::ownership::CHAIN_PREFIX),
                ));
            }
            "-A" | "--append" | "-I" | "--insert" => {
                if is_owned_chain(chain) {
                    continue;
                }
                if !BUILTIN_CHAINS.contains(&chain) {
                    return Some((
                        line,
                        format!(
                            "a rule in a chain not named {}*",
                            crate::ownership::CHAIN_PREFIX
                        ),
                    ));
                }
                let spec = if cmd.starts_with("-I") || cmd == "--insert" {
                    // `-I CHAIN [N] rule`
                    let (n, r) = spec
                        .trim_start()
                        .split_once(char::is_whitespace)
                        .unwrap_or((spec, ""));
                    if n.bytes().all(|b| b.is_ascii_digit()) {
                        r
                    } else {
                        spec
                    }
                } else {
                    spec
                };
                let owned = IptRule::parse(spec)
                    .map(|r| is_owned_jump(&r))
                    .unwrap_or(false);
                if !owned {
                    return Some((
                        line,
                        format!("a rule in the built-in chain {chain} that is not a jump to a {}* chain", crate::ownership::CHAIN_PREFIX),
                    ));
                }
            }
            "-D" | "--delete" | "-F" | "--flush" | "-X" | "--delete-chain" | "-P" | "--policy"
            | "-R" | "--replace" | "-Z" | "--zero" | "-E" | "--rename-chain"
                if !is_owned_chain(chain) =>
            {
                return Some((line, format!("`{cmd}` on a chain dwprov does not own")));
            }
            _ => {}
        }
    }
    None
}

/// The first sysctl outside the allowed set, and why.
fn sysctl(text: &str) -> Option<(&str, String)> {
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue; // a parse error, reported by the sysctl parser
        };
        let k = k.trim();
        let k = if k.contains('/') {
            k.to_string()
        } else {
            k.replace('.', "/")
        };
        let v = v.trim();
        let ok = match k.split('/').collect::<Vec<_>>().as_slice() {
            ["net", "ipv4", "ip_forward"] => matches!(v, "0" | "1"),
            // A balanced default route hashes flows by ports (issue 11).
            ["net", "ipv4", "fib_multipath_hash_policy"] => matches!(v, "0" | "1"),
            ["net", "ipv4", "conf", iface, "rp_filter"] => {
                !iface.is_empty() && matches!(v, "0" | "1" | "2")
            }
            _ => false,
        };
        if !ok {
            return Some((
                line,
                "a sysctl dwprov does not manage (allowed: net.ipv4.ip_forward = 0|1, net.ipv4.conf.IF.rp_filter = 0|1|2, net.ipv4.fib_multipath_hash_policy = 0|1)".into(),
            ));
        }
    }
    None
}

/// The first rt_tables entry that is not one of the gateway's lines (without
/// the gateway: one taking a reserved id or name).
fn rt_tables<'t>(text: &'t str, gw: Option<&Gateway>) -> Option<(&'t str, String)> {
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut parts = t.split_whitespace();
        let (id, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let ok = match gw {
            Some(gw) => gw
                .lines
                .iter()
                .any(|l| l.name == name && l.table.to_string() == id),
            None => {
                !crate::inventory::names::RESERVED_TABLE_NAMES.contains(&name)
                    && id.parse::<u32>().is_ok_and(|i| !matches!(i, 0 | 253..=255))
            }
        };
        if !ok {
            return Some((
                line,
                "a routing table name that is not one of the gateway's lines".into(),
            ));
        }
    }
    None
}

/// rt_protos may only name dwprov's protocol.
fn rt_protos(text: &str) -> Option<(&str, String)> {
    let want = format!("{} {}", crate::ROUTE_PROTO, crate::ROUTE_PROTO_NAME);
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.split_whitespace().collect::<Vec<_>>().join(" ") != want {
            return Some((line, format!("a route protocol other than `{want}`")));
        }
    }
    None
}

/// The template line `rendered` most likely came from: the line whose
/// literal text (outside `{{ }}`, `{% %}`, `{# #}`) appears in `rendered`, in
/// order, with the most literal characters.
pub fn template_line(source: &str, rendered: &str) -> Option<usize> {
    let rendered = rendered.trim();
    let mut best: Option<(usize, usize)> = None; // (score, line)
    for (i, l) in source.lines().enumerate() {
        let pieces = literals(l);
        let score: usize = pieces.iter().map(|p| p.len()).sum();
        if score == 0 {
            continue;
        }
        let mut at = 0;
        let matched = pieces
            .iter()
            .all(|p| match rendered[at..].find(p.as_str()) {
                Some(k) => {
                    at += k + p.len();
                    true
                }
                None => false,
            });
        if matched && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i + 1));
        }
    }
    best.map(|(_, l)| l)
}

/// The literal pieces of one template line, trimmed, empty ones dropped.
fn literals(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        let next = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|o| rest.find(o).map(|i| (i, *o)))
            .min();
        let Some((i, open)) = next else {
            out.push(rest.trim().to_string());
            break;
        };
        out.push(rest[..i].trim().to_string());
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        match rest[i + 2..].find(close) {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => break,
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_by_their_literal_text() {
        let src = "# head\n{%- for l in lines %}\nrule add priority {{ l.p }} from {{ l.ip }} lookup {{ l.name }}\nrule add priority {{ l.p }} from {{ l.ip }} lookup {{ l.name }} protocol {{ proto }}\n{%- endfor %}\n";
        assert_eq!(
            template_line(src, "rule add priority 1200 from 198.51.100.2 lookup ctc"),
            Some(3)
        );
        assert_eq!(
            template_line(
                src,
                "rule add priority 1200 from 198.51.100.2 lookup ctc protocol 201"
            ),
            Some(4)
        );
        assert_eq!(template_line(src, "nothing alike"), None);
    }

    #[test]
    fn foreign_iptables_and_sysctls_are_found() {
        let ok = "*nat\n:DWPROV-POSTROUTING - [0:0]\n-A POSTROUTING -m comment --comment dwprov -j DWPROV-POSTROUTING\n-A DWPROV-POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n";
        assert_eq!(iptables(ok), None);
        for bad in [
            "*filter\n:INPUT DROP [0:0]\nCOMMIT\n",
            "*filter\n-A INPUT -p tcp --dport 22 -j DROP\nCOMMIT\n",
            "*filter\n-I INPUT 1 -j DROP\nCOMMIT\n",
            "*filter\n:MINE - [0:0]\nCOMMIT\n",
            "*filter\n-F INPUT\nCOMMIT\n",
        ] {
            assert!(iptables(bad).is_some(), "{bad}");
        }
        assert_eq!(
            sysctl("net/ipv4/ip_forward = 1\nnet.ipv4.conf.eth1.rp_filter = 2\n"),
            None
        );
        assert!(sysctl("net/ipv4/conf/eth1/accept_local = 1\n").is_some());
        assert!(sysctl("kernel.panic = 1\n").is_some());
        assert!(rt_protos("201\tdwprov\n").is_none());
        assert!(tagged("route replace 1.0.0.0/24 via 10.0.0.1 proto 201"));
        assert!(!tagged(
            "route add 1.0.0.0/24 via 10.0.0.1 proto 201 proto boot"
        ));
        assert!(!tagged("rule add from all lookup main"));
        let names = RtTables::default();
        assert!(batch(
            "route add 1.0.0.0/24 dev eth1 proto 201\nrule add priority 5 from all lookup 100\n",
            &names
        )
        .is_some());
        assert!(rt_protos("201 dwprov\n202 other\n").is_some());
    }
}
