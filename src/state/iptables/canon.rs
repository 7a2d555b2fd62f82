//! What dwprov knows about iptables extensions: option names, aliases and
//! arities, and how iptables-save spells (and orders) each option's value.
//! Every rewrite here was checked against iptables 1.8.9 (nf_tables):
//! `iptables-restore` a rule, `iptables-save` it, compare.
//!
//! Extensions not listed are kept verbatim (options in the given order).

// Every canonicaliser shares one fn-pointer signature; some need the Vec.
#![allow(clippy::ptr_arg)]
use super::Opt;

/// How an option value is printed by iptables-save.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Printed raw by the extension; quoted by dwprov only if unreadable bare.
    Raw,
    /// Printed with `xtables_save_string` (comment, log prefixes).
    Str,
}

pub(crate) struct OptSpec {
    /// Canonical name (without `--`), followed by accepted aliases.
    pub names: &'static [&'static str],
    pub arity: usize,
    pub kind: Kind,
}

pub(crate) struct Spec {
    pub name: &'static str,
    /// Options in the order iptables-save prints them.
    pub opts: &'static [OptSpec],
    pub canon: fn(&mut Vec<Opt>) -> Result<(), String>,
}

const fn o(names: &'static [&'static str], arity: usize) -> OptSpec {
    OptSpec {
        names,
        arity,
        kind: Kind::Raw,
    }
}

const fn s(names: &'static [&'static str]) -> OptSpec {
    OptSpec {
        names,
        arity: 1,
        kind: Kind::Str,
    }
}

fn no_canon(_: &mut Vec<Opt>) -> Result<(), String> {
    Ok(())
}

pub(crate) static MATCHES: &[Spec] = &[
    Spec {
        name: "tcp",
        opts: &[
            o(&["sport", "source-port"], 1),
            o(&["dport", "destination-port"], 1),
            o(&["tcp-option"], 1),
            o(&["tcp-flags"], 2),
            o(&["syn"], 0),
        ],
        canon: canon_tcp,
    },
    Spec {
        name: "udp",
        opts: &[
            o(&["sport", "source-port"], 1),
            o(&["dport", "destination-port"], 1),
        ],
        canon: canon_udp,
    },
    Spec {
        name: "icmp",
        opts: &[o(&["icmp-type"], 1)],
        canon: canon_icmp,
    },
    Spec {
        name: "comment",
        opts: &[s(&["comment"])],
        canon: canon_comment,
    },
    Spec {
        name: "mark",
        opts: &[o(&["mark"], 1)],
        canon: canon_mark_match,
    },
    Spec {
        name: "connmark",
        opts: &[o(&["mark"], 1)],
        canon: canon_mark_match,
    },
    Spec {
        name: "conntrack",
        opts: &[
            o(&["ctstate"], 1),
            o(&["ctproto"], 1),
            o(&["ctorigsrc"], 1),
            o(&["ctorigdst"], 1),
            o(&["ctreplsrc"], 1),
            o(&["ctrepldst"], 1),
            o(&["ctorigsrcport"], 1),
            o(&["ctorigdstport"], 1),
            o(&["ctreplsrcport"], 1),
            o(&["ctrepldstport"], 1),
            o(&["ctstatus"], 1),
            o(&["ctexpire"], 1),
            o(&["ctdir"], 1),
        ],
        canon: canon_conntrack,
    },
    Spec {
        name: "state",
        opts: &[o(&["state"], 1)],
        canon: canon_state,
    },
    Spec {
        name: "multiport",
        opts: &[
            o(&["sports", "source-ports"], 1),
            o(&["dports", "destination-ports"], 1),
            o(&["ports"], 1),
        ],
        canon: canon_multiport,
    },
    Spec {
        name: "addrtype",
        opts: &[
            o(&["src-type"], 1),
            o(&["dst-type"], 1),
            o(&["limit-iface-in"], 0),
            o(&["limit-iface-out"], 0),
        ],
        canon: canon_addrtype,
    },
    Spec {
        name: "limit",
        opts: &[o(&["limit"], 1), o(&["limit-burst"], 1)],
        canon: canon_limit,
    },
];

pub(crate) static TARGETS: &[Spec] = &[
    Spec {
        name: "ACCEPT",
        opts: &[],
        canon: no_canon,
    },
    Spec {
        name: "DROP",
        opts: &[],
        canon: no_canon,
    },
    Spec {
        name: "RETURN",
        opts: &[],
        canon: no_canon,
    },
    Spec {
        name: "CONNMARK",
        opts: &[
            o(&["set-xmark"], 1),
            o(&["save-mark"], 0),
            o(&["restore-mark"], 0),
            o(&["nfmask"], 1),
            o(&["ctmask"], 1),
            o(&["set-mark"], 1),
            o(&["and-mark"], 1),
            o(&["or-mark"], 1),
            o(&["xor-mark"], 1),
            o(&["mask"], 1),
        ],
        canon: canon_connmark_target,
    },
    Spec {
        name: "MARK",
        opts: &[
            o(&["set-xmark"], 1),
            o(&["set-mark"], 1),
            o(&["and-mark"], 1),
            o(&["or-mark"], 1),
            o(&["xor-mark"], 1),
        ],
        canon: canon_mark_target,
    },
    Spec {
        name: "SNAT",
        opts: &[
            o(&["to-source", "to"], 1),
            o(&["random"], 0),
            o(&["random-fully"], 0),
            o(&["persistent"], 0),
        ],
        canon: no_canon,
    },
    Spec {
        name: "DNAT",
        opts: &[
            o(&["to-destination", "to"], 1),
            o(&["random"], 0),
            o(&["persistent"], 0),
        ],
        canon: no_canon,
    },
    Spec {
        name: "MASQUERADE",
        opts: &[
            o(&["to-ports"], 1),
            o(&["random"], 0),
            o(&["random-fully"], 0),
        ],
        canon: no_canon,
    },
    Spec {
        name: "REDIRECT",
        opts: &[o(&["to-ports"], 1), o(&["random"], 0)],
        canon: no_canon,
    },
    Spec {
        name: "LOG",
        opts: &[
            s(&["log-prefix"]),
            o(&["log-level"], 1),
            o(&["log-tcp-sequence"], 0),
            o(&["log-tcp-options"], 0),
            o(&["log-ip-options"], 0),
            o(&["log-uid"], 0),
            o(&["log-macdecode"], 0),
        ],
        canon: canon_log,
    },
    Spec {
        name: "NFLOG",
        opts: &[
            s(&["nflog-prefix"]),
            o(&["nflog-group"], 1),
            o(&["nflog-size", "nflog-range"], 1),
            o(&["nflog-threshold"], 1),
        ],
        canon: canon_nflog,
    },
    Spec {
        name: "REJECT",
        opts: &[o(&["reject-with"], 1)],
        canon: canon_reject,
    },
];

pub(crate) fn match_spec(name: &str) -> Option<&'static Spec> {
    MATCHES.iter().find(|s| s.name == name)
}

pub(crate) fn target_spec(name: &str) -> Option<&'static Spec> {
    TARGETS.iter().find(|s| s.name == name)
}

impl Spec {
    pub(crate) fn opt(&self, name: &str) -> Option<(usize, &'static OptSpec)> {
        self.opts
            .iter()
            .enumerate()
            .find(|(_, o)| o.names.contains(&name))
    }

    /// Rename aliases, rewrite values, then order as iptables-save prints.
    pub(crate) fn canonicalise(&self, opts: &mut Vec<Opt>) -> Result<(), String> {
        for opt in opts.iter_mut() {
            if let Some((_, spec)) = self.opt(&opt.name) {
                opt.name = spec.names[0].to_string();
            }
        }
        (self.canon)(opts)?;
        // Stable: options unknown to dwprov keep their place after the known ones.
        opts.sort_by_key(|o| self.opt(&o.name).map(|(i, _)| i).unwrap_or(usize::MAX));
        Ok(())
    }

    pub(crate) fn kind(&self, name: &str) -> Kind {
        self.opt(name).map(|(_, o)| o.kind).unwrap_or(Kind::Raw)
    }
}

// ---------------------------------------------------------------- values

/// `strtoul(s, NULL, 0)` for a 32-bit value: `0x` hex, leading-0 octal, decimal.
pub(crate) fn parse_u32(s: &str) -> Result<u32, String> {
    let bad = || format!("bad number {s:?}");
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u32::from_str_radix(digits, radix).map_err(|_| bad())
}

/// `value[/mask]`, mask defaulting to all ones.
fn parse_mark(s: &str) -> Result<(u32, u32), String> {
    match s.split_once('/') {
        Some((v, m)) => Ok((parse_u32(v)?, parse_u32(m)?)),
        None => Ok((parse_u32(s)?, u32::MAX)),
    }
}

fn xmark(value: u32, mask: u32) -> String {
    format!("0x{value:x}/0x{mask:x}")
}

fn one_arg(opt: &Opt) -> Result<&str, String> {
    opt.args
        .first()
        .map(String::as_str)
        .ok_or_else(|| format!("--{} needs a value", opt.name))
}

fn set_arg(opt: &mut Opt, v: String) {
    opt.args = vec![v];
}

const SERVICES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("mail", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("http", 80),
    ("www", 80),
    ("pop3", 110),
    ("sunrpc", 111),
    ("ntp", 123),
    ("netbios-ns", 137),
    ("imap2", 143),
    ("imap", 143),
    ("snmp", 161),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("submissions", 465),
    ("smtps", 465),
    ("isakmp", 500),
    ("syslog", 514),
    ("submission", 587),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("ipsec-nat-t", 4500),
    ("postgresql", 5432),
    ("postgres", 5432),
    ("http-alt", 8080),
];

fn port(s: &str) -> Result<u16, String> {
    if let Ok(n) = s.parse::<u16>() {
        return Ok(n);
    }
    SERVICES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, p)| *p)
        .ok_or_else(|| format!("unknown port {s:?} (write the number)"))
}

/// `a`, `a:b`, `a:`, `:b` → (min, max).
fn port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = match s.split_once(':') {
        None => {
            let p = port(s)?;
            (p, p)
        }
        Some((a, b)) => (
            if a.is_empty() { 0 } else { port(a)? },
            if b.is_empty() { u16::MAX } else { port(b)? },
        ),
    };
    if lo > hi {
        return Err(format!("invalid port range {s:?} (min > max)"));
    }
    Ok((lo, hi))
}

fn fmt_range(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    }
}

fn canon_ports(opts: &mut Vec<Opt>) -> Result<(), String> {
    let mut err = None;
    opts.retain_mut(|opt| {
        if opt.name != "sport" && opt.name != "dport" {
            return true;
        }
        match one_arg(opt).and_then(port_range) {
            // The full range matches everything: iptables-save drops it.
            Ok((0, u16::MAX)) => false,
            Ok((lo, hi)) => {
                set_arg(opt, fmt_range(lo, hi));
                true
            }
            Err(e) => {
                err.get_or_insert(e);
                true
            }
        }
    });
    err.map_or(Ok(()), Err)
}

const TCP_FLAGS: &[&str] = &["FIN", "SYN", "RST", "PSH", "ACK", "URG"];

fn tcp_flags(s: &str) -> Result<String, String> {
    let mut bits = 0u8;
    for f in s.split(',') {
        let f = f.to_ascii_uppercase();
        match f.as_str() {
            "ALL" => bits = 0x3f,
            "NONE" => {}
            _ => {
                let i = TCP_FLAGS
                    .iter()
                    .position(|x| *x == f)
                    .ok_or_else(|| format!("unknown TCP flag {f:?}"))?;
                bits |= 1 << i;
            }
        }
    }
    if bits == 0 {
        return Ok("NONE".into());
    }
    let names: Vec<&str> = (0..6)
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| TCP_FLAGS[i])
        .collect();
    Ok(names.join(","))
}

fn canon_tcp(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut() {
        if opt.name == "syn" {
            opt.name = "tcp-flags".into();
            opt.args = vec!["FIN,SYN,RST,ACK".into(), "SYN".into()];
        } else if opt.name == "tcp-flags" && opt.args.len() == 2 {
            opt.args = vec![tcp_flags(&opt.args[0])?, tcp_flags(&opt.args[1])?];
        }
    }
    canon_ports(opts)
}

fn canon_udp(opts: &mut Vec<Opt>) -> Result<(), String> {
    canon_ports(opts)
}

/// Named ICMP types and the `type[/code]` iptables-save prints for them.
const ICMP_TYPES: &[(&str, &str)] = &[
    ("echo-reply", "0"),
    ("pong", "0"),
    ("destination-unreachable", "3"),
    ("network-unreachable", "3/0"),
    ("host-unreachable", "3/1"),
    ("protocol-unreachable", "3/2"),
    ("port-unreachable", "3/3"),
    ("fragmentation-needed", "3/4"),
    ("source-route-failed", "3/5"),
    ("network-unknown", "3/6"),
    ("host-unknown", "3/7"),
    ("network-prohibited", "3/9"),
    ("host-prohibited", "3/10"),
    ("TOS-network-unreachable", "3/11"),
    ("TOS-host-unreachable", "3/12"),
    ("communication-prohibited", "3/13"),
    ("host-precedence-violation", "3/14"),
    ("precedence-cutoff", "3/15"),
    ("source-quench", "4"),
    ("redirect", "5"),
    ("network-redirect", "5/0"),
    ("host-redirect", "5/1"),
    ("TOS-network-redirect", "5/2"),
    ("TOS-host-redirect", "5/3"),
    ("echo-request", "8"),
    ("ping", "8"),
    ("router-advertisement", "9"),
    ("router-solicitation", "10"),
    ("time-exceeded", "11"),
    ("ttl-exceeded", "11"),
    ("ttl-zero-during-transit", "11/0"),
    ("ttl-zero-during-reassembly", "11/1"),
    ("parameter-problem", "12"),
    ("ip-header-bad", "12/0"),
    ("required-option-missing", "12/1"),
    ("timestamp-request", "13"),
    ("timestamp-reply", "14"),
    ("address-mask-request", "17"),
    ("address-mask-reply", "18"),
];

fn canon_icmp(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut().filter(|o| o.name == "icmp-type") {
        let v = one_arg(opt)?;
        if v == "any" || v.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let n = ICMP_TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(v))
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| format!("unknown ICMP type {v:?}"))?;
        set_arg(opt, n);
    }
    Ok(())
}

/// The kernel keeps 255 bytes of a comment.
fn canon_comment(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut() {
        if let Some(c) = opt.args.first_mut() {
            if c.len() > 255 {
                let mut end = 255;
                while !c.is_char_boundary(end) {
                    end -= 1;
                }
                c.truncate(end);
            }
        }
    }
    Ok(())
}

/// `--mark V[/M]`: hex, mask omitted when all ones.
fn canon_mark_match(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut().filter(|o| o.name == "mark") {
        let (v, m) = parse_mark(one_arg(opt)?)?;
        let text = if m == u32::MAX {
            format!("0x{v:x}")
        } else {
            format!("0x{v:x}/0x{m:x}")
        };
        set_arg(opt, text);
    }
    Ok(())
}

/// `--set-mark`, `--and-mark`, `--or-mark`, `--xor-mark` are all stored as
/// an xmark (value, mask): iptables-save prints `--set-xmark V/M`.
fn mark_op(opt: &Opt) -> Result<Option<(u32, u32)>, String> {
    Ok(Some(match opt.name.as_str() {
        "set-xmark" => parse_mark(one_arg(opt)?)?,
        "set-mark" => {
            let (v, m) = parse_mark(one_arg(opt)?)?;
            (v, v | m)
        }
        "and-mark" => (0, !parse_u32(one_arg(opt)?)?),
        "or-mark" => {
            let v = parse_u32(one_arg(opt)?)?;
            (v, v)
        }
        "xor-mark" => (parse_u32(one_arg(opt)?)?, 0),
        _ => return Ok(None),
    }))
}

fn canon_mark_target(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut() {
        if let Some((v, m)) = mark_op(opt)? {
            opt.name = "set-xmark".into();
            set_arg(opt, xmark(v, m));
        }
    }
    Ok(())
}

fn canon_connmark_target(opts: &mut Vec<Opt>) -> Result<(), String> {
    let mut set = None;
    let mut mode = None;
    let (mut nfmask, mut ctmask) = (u32::MAX, u32::MAX);
    let mut rest = Vec::new();
    for opt in opts.drain(..) {
        if let Some(x) = mark_op(&opt)? {
            set = Some(x);
            continue;
        }
        match opt.name.as_str() {
            "save-mark" | "restore-mark" => mode = Some(opt.name.clone()),
            "mask" => {
                let m = parse_u32(one_arg(&opt)?)?;
                nfmask = m;
                ctmask = m;
            }
            "nfmask" => nfmask = parse_u32(one_arg(&opt)?)?,
            "ctmask" => ctmask = parse_u32(one_arg(&opt)?)?,
            _ => rest.push(opt),
        }
    }
    let mk = |name: &str, args: Vec<String>| Opt {
        name: name.into(),
        negated: false,
        args,
    };
    if let Some((v, m)) = set {
        // Masks only matter to save/restore; iptables drops them here.
        opts.push(mk("set-xmark", vec![xmark(v, m)]));
    } else if let Some(mode) = mode {
        opts.push(mk(&mode, vec![]));
        opts.push(mk("nfmask", vec![format!("0x{nfmask:x}")]));
        opts.push(mk("ctmask", vec![format!("0x{ctmask:x}")]));
    } else if nfmask != u32::MAX || ctmask != u32::MAX {
        return Err("CONNMARK: --nfmask/--ctmask/--mask need --save-mark or --restore-mark".into());
    }
    opts.extend(rest);
    Ok(())
}

/// Comma list of flags, uppercased, in a fixed order.
fn flag_list(s: &str, order: &[&str], what: &str) -> Result<String, String> {
    let mut seen = vec![false; order.len()];
    for f in s.split(',') {
        let u = f.to_ascii_uppercase();
        let i = order
            .iter()
            .position(|x| *x == u)
            .ok_or_else(|| format!("unknown {what} {f:?}"))?;
        seen[i] = true;
    }
    Ok(order
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(","))
}

const CT_STATES: &[&str] = &[
    "INVALID",
    "NEW",
    "RELATED",
    "ESTABLISHED",
    "UNTRACKED",
    "SNAT",
    "DNAT",
];
const STATES: &[&str] = &["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED"];
const CT_STATUS: &[&str] = &["NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"];

fn canon_conntrack(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut() {
        match opt.name.as_str() {
            "ctstate" => {
                let v = flag_list(one_arg(opt)?, CT_STATES, "conntrack state")?;
                set_arg(opt, v);
            }
            "ctstatus" => {
                let v = flag_list(one_arg(opt)?, CT_STATUS, "conntrack status")?;
                set_arg(opt, v);
            }
            "ctproto" => {
                let v = one_arg(opt)?;
                let n = proto_number(v).ok_or_else(|| format!("unknown protocol {v:?}"))?;
                set_arg(opt, n.to_string());
            }
            _ => {}
        }
    }
    Ok(())
}

fn canon_state(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut().filter(|o| o.name == "state") {
        let v = flag_list(one_arg(opt)?, STATES, "state")?;
        set_arg(opt, v);
    }
    Ok(())
}

fn canon_multiport(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut() {
        if !matches!(opt.name.as_str(), "sports" | "dports" | "ports") {
            continue;
        }
        let items: Result<Vec<String>, String> = one_arg(opt)?
            .split(',')
            .map(|p| match p.split_once(':') {
                Some((a, b)) => Ok(format!("{}:{}", port(a)?, port(b)?)),
                None => Ok(port(p)?.to_string()),
            })
            .collect();
        set_arg(opt, items?.join(","));
    }
    Ok(())
}

const ADDR_TYPES: &[&str] = &[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

fn canon_addrtype(opts: &mut Vec<Opt>) -> Result<(), String> {
    for opt in opts.iter_mut() {
        if opt.name == "src-type" || opt.name == "dst-type" {
            let v = flag_list(one_arg(opt)?, ADDR_TYPES, "address type")?;
            set_arg(opt, v);
        }
    }
    Ok(())
}

const LIMIT_SCALE: u32 = 10000;
const RATES: &[(&str, u32)] = &[
    ("day", LIMIT_SCALE * 24 * 60 * 60),
    ("hour", LIMIT_SCALE * 60 * 60),
    ("min", LIMIT_SCALE * 60),
    ("sec", LIMIT_SCALE),
];

/// libxt_limit's parse_rate: period in 1/10000 s between packets.
fn parse_rate(s: &str) -> Result<u32, String> {
    let bad = || format!("bad rate {s:?}");
    let (num, mult) = match s.split_once('/') {
        None => (s, 1),
        Some((n, unit)) => {
            let unit = unit.to_ascii_lowercase();
            let is = |full: &str| !unit.is_empty() && full.starts_with(&unit);
            let mult = if is("second") {
                1
            } else if is("minute") {
                60
            } else if is("hour") {
                3600
            } else if is("day") {
                86400
            } else {
                return Err(bad());
            };
            (n, mult)
        }
    };
    let r: u32 = num.parse().map_err(|_| bad())?;
    if r == 0 {
        return Err(bad());
    }
    let period = LIMIT_SCALE * mult / r;
    if period == 0 {
        return Err(format!("rate {s:?} too fast"));
    }
    Ok(period)
}

/// libxt_limit's print_rate.
fn print_rate(period: u32) -> String {
    let mut i = 1;
    while i < RATES.len() {
        let m = RATES[i].1;
        if period > m || m / period < m % period {
            break;
        }
        i += 1;
    }
    format!("{}/{}", RATES[i - 1].1 / period, RATES[i - 1].0)
}

fn canon_limit(opts: &mut Vec<Opt>) -> Result<(), String> {
    let mut has_limit = false;
    let mut err = None;
    opts.retain_mut(|opt| match opt.name.as_str() {
        "limit" => {
            has_limit = true;
            match one_arg(opt).and_then(parse_rate) {
                Ok(p) => set_arg(opt, print_rate(p)),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
            true
        }
        // The default burst is not printed.
        "limit-burst" => match one_arg(opt).and_then(parse_u32) {
            Ok(5) => false,
            Ok(b) => {
                set_arg(opt, b.to_string());
                true
            }
            Err(e) => {
                err.get_or_insert(e);
                true
            }
        },
        _ => true,
    });
    if let Some(e) = err {
        return Err(e);
    }
    if !has_limit {
        opts.insert(
            0,
            Opt {
                name: "limit".into(),
                negated: false,
                args: vec!["3/hour".into()],
            },
        );
    }
    Ok(())
}

const LOG_LEVELS: &[(&str, u8)] = &[
    ("emerg", 0),
    ("panic", 0),
    ("alert", 1),
    ("crit", 2),
    ("error", 3),
    ("err", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

fn canon_log(opts: &mut Vec<Opt>) -> Result<(), String> {
    let mut err = None;
    opts.retain_mut(|opt| {
        if opt.name != "log-level" {
            return true;
        }
        let level = one_arg(opt).and_then(|v| {
            LOG_LEVELS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(v))
                .map(|(_, l)| *l)
                .or_else(|| v.parse::<u8>().ok().filter(|l| *l <= 7))
                .ok_or_else(|| format!("bad log level {v:?}"))
        });
        match level {
            // warning is the default: not printed.
            Ok(4) => false,
            Ok(l) => {
                set_arg(opt, l.to_string());
                true
            }
            Err(e) => {
                err.get_or_insert(e);
                true
            }
        }
    });
    err.map_or(Ok(()), Err)
}

fn canon_nflog(opts: &mut Vec<Opt>) -> Result<(), String> {
    opts.retain(|o| !(o.name == "nflog-group" && o.args.first().map(String::as_str) == Some("0")));
    Ok(())
}

const REJECT_WITH: &[(&str, &str)] = &[
    ("icmp-net-unreachable", "net-unreach"),
    ("icmp-host-unreachable", "host-unreach"),
    ("icmp-proto-unreachable", "proto-unreach"),
    ("icmp-port-unreachable", "port-unreach"),
    ("icmp-net-prohibited", "net-prohib"),
    ("icmp-host-prohibited", "host-prohib"),
    ("icmp-admin-prohibited", "admin-prohib"),
    ("tcp-reset", "tcp-rst"),
];

fn canon_reject(opts: &mut Vec<Opt>) -> Result<(), String> {
    let mut found = false;
    for opt in opts.iter_mut().filter(|o| o.name == "reject-with") {
        found = true;
        let v = one_arg(opt)?;
        if let Some((full, _)) = REJECT_WITH.iter().find(|(f, a)| *f == v || *a == v) {
            set_arg(opt, full.to_string());
        }
    }
    if !found {
        opts.insert(
            0,
            Opt {
                name: "reject-with".into(),
                negated: false,
                args: vec!["icmp-port-unreachable".into()],
            },
        );
    }
    Ok(())
}

// ------------------------------------------------------------- protocols

/// Debian's /etc/protocols (what iptables-save prints for a number), plus
/// the names iptables itself knows.
const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("ggp", 3),
    ("ipencap", 4),
    ("st", 5),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("pup", 12),
    ("udp", 17),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("dccp", 33),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("idrp", 45),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("skip", 57),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("rspf", 73),
    ("vmtp", 81),
    ("eigrp", 88),
    ("ospf", 89),
    ("ax.25", 93),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("pim", 103),
    ("ipcomp", 108),
    ("vrrp", 112),
    ("l2tp", 115),
    ("isis", 124),
    ("sctp", 132),
    ("fc", 133),
    ("mobility-header", 135),
    ("udplite", 136),
    ("mpls-in-ip", 137),
    ("manet", 138),
    ("hip", 139),
    ("shim6", 140),
    ("wesp", 141),
    ("rohc", 142),
    ("ethernet", 143),
];

/// Aliases iptables accepts on input.
const PROTO_ALIASES: &[(&str, u8)] = &[
    ("all", 0),
    ("ip", 0),
    ("hopopt", 0),
    ("icmpv6", 58),
    ("mh", 135),
    ("ipv6-mh", 135),
];

pub(crate) fn proto_number(s: &str) -> Option<u8> {
    let l = s.to_ascii_lowercase();
    if let Ok(n) = l.parse::<u8>() {
        return Some(n);
    }
    PROTOCOLS
        .iter()
        .chain(PROTO_ALIASES)
        .find(|(n, _)| *n == l)
        .map(|(_, p)| *p)
}

/// The protocol as iptables-save prints it; None for "all" (0).
pub(crate) fn proto_canonical(s: &str) -> Result<Option<String>, String> {
    let n = proto_number(s).ok_or_else(|| format!("unknown protocol {s:?}"))?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        PROTOCOLS
            .iter()
            .find(|(_, p)| *p == n)
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| n.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_strtoul() {
        assert_eq!(parse_u32("256"), Ok(256));
        assert_eq!(parse_u32("0x100"), Ok(256));
        assert_eq!(parse_u32("0X0A"), Ok(10));
        assert_eq!(parse_u32("010"), Ok(8));
        assert_eq!(parse_u32("0"), Ok(0));
        assert!(parse_u32("4294967296").is_err());
        assert!(parse_u32("-1").is_err());
        assert!(parse_u32("0x").is_err());
        assert!(parse_u32("08").is_err());
    }

    #[test]
    fn limit_rates_print_like_libxt_limit() {
        let r = |s: &str| print_rate(parse_rate(s).unwrap());
        assert_eq!(r("60/min"), "1/sec");
        assert_eq!(r("1/s"), "1/sec");
        assert_eq!(r("120/minute"), "2/sec");
        assert_eq!(r("24/day"), "1/hour");
        assert_eq!(r("2/h"), "2/hour");
        assert_eq!(r("7/min"), "7/min");
        assert_eq!(r("5/minute"), "5/min");
        assert_eq!(r("100"), "100/sec");
        assert_eq!(r("3/hour"), "3/hour");
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/fortnight").is_err());
        assert!(parse_rate("100000/s").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(proto_canonical("TCP").unwrap().as_deref(), Some("tcp"));
        assert_eq!(proto_canonical("6").unwrap().as_deref(), Some("tcp"));
        assert_eq!(proto_canonical("47").unwrap().as_deref(), Some("gre"));
        assert_eq!(proto_canonical("58").unwrap().as_deref(), Some("ipv6-icmp"));
        assert_eq!(
            proto_canonical("icmpv6").unwrap().as_deref(),
            Some("ipv6-icmp")
        );
        assert_eq!(proto_canonical("253").unwrap().as_deref(), Some("253"));
        assert_eq!(proto_canonical("all").unwrap(), None);
        assert_eq!(proto_canonical("0").unwrap(), None);
        assert!(proto_canonical("nonsense").is_err());
    }

    #[test]
    fn tcp_flag_lists() {
        assert_eq!(tcp_flags("ALL").unwrap(), "FIN,SYN,RST,PSH,ACK,URG");
        assert_eq!(tcp_flags("NONE").unwrap(), "NONE");
        assert_eq!(tcp_flags("ack,syn").unwrap(), "SYN,ACK");
        assert!(tcp_flags("BOGUS").is_err());
    }
}
