//! Rule spec tokens → canonical `IptRule`.
//!
//! Options are routed the way iptables routes them: to the current match or
//! target if it knows the option; protocol options (`--dport` after
//! `-p tcp`) to the protocol's match, which is created implicitly where
//! first needed (as iptables-save then prints `-m tcp`); to an earlier match
//! that knows them; otherwise (extensions dwprov does not know) to the
//! current match or target verbatim.
use super::canon::{self, match_spec, target_spec};
use super::{IptRule, Match, Neg, Opt, Target};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy)]
enum Ctx {
    None,
    Match(usize),
    Target,
}

fn is_flag(tok: &str) -> bool {
    (tok.starts_with("--") && tok.len() > 2)
        || matches!(
            tok,
            "!" | "-s" | "-d" | "-i" | "-o" | "-p" | "-f" | "-m" | "-j" | "-g"
        )
}

struct Cursor<'a> {
    tokens: &'a [String],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let t = self.tokens.get(self.i)?;
        self.i += 1;
        Some(t.as_str())
    }

    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.next()
            .map(str::to_string)
            .ok_or_else(|| format!("{flag} needs a value"))
    }
}

pub(crate) fn parse_tokens(tokens: &[String]) -> Result<IptRule, String> {
    let mut rule = IptRule::default();
    let mut cur = Cursor { tokens, i: 0 };
    let mut ctx = Ctx::None;
    let mut neg = false;
    while let Some(tok) = cur.next() {
        if tok == "!" {
            if neg {
                return Err("double \"!\"".into());
            }
            neg = true;
            continue;
        }
        let negated = std::mem::take(&mut neg);
        let header = |field: &mut Option<Neg<String>>, flag: &str, value: String| {
            if field.is_some() {
                return Err(format!("multiple {flag} flags not allowed"));
            }
            *field = Some(Neg { negated, value });
            Ok(())
        };
        match tok {
            "-s" | "--source" | "--src" => {
                let v = cur.value("-s")?;
                if let Some(a) = canon_addr(&v, negated)? {
                    header(&mut rule.source, "-s", a)?;
                }
            }
            "-d" | "--destination" | "--dst" => {
                let v = cur.value("-d")?;
                if let Some(a) = canon_addr(&v, negated)? {
                    header(&mut rule.destination, "-d", a)?;
                }
            }
            "-i" | "--in-interface" => {
                let v = iface(cur.value("-i")?)?;
                header(&mut rule.in_interface, "-i", v)?;
            }
            "-o" | "--out-interface" => {
                let v = iface(cur.value("-o")?)?;
                header(&mut rule.out_interface, "-o", v)?;
            }
            "-p" | "--protocol" => {
                let v = cur.value("-p")?;
                match canon::proto_canonical(&v)? {
                    Some(p) => header(&mut rule.protocol, "-p", p)?,
                    None if negated => return Err("rule would never match protocol".into()),
                    None => {}
                }
            }
            "-f" | "--fragment" => {
                if rule.fragment.is_some() {
                    return Err("multiple -f flags not allowed".into());
                }
                rule.fragment = Some(negated);
            }
            "-m" | "--match" => {
                if negated {
                    return Err("\"!\" before -m".into());
                }
                let module = cur.value("-m")?;
                if module.is_empty() || module.starts_with('-') {
                    return Err(format!("bad match module name {module:?}"));
                }
                rule.matches.push(Match {
                    module,
                    options: Vec::new(),
                });
                ctx = Ctx::Match(rule.matches.len() - 1);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                if negated {
                    return Err(format!("\"!\" before {tok}"));
                }
                if rule.target.is_some() {
                    return Err("multiple -j/-g flags not allowed".into());
                }
                let name = cur.value(tok)?;
                if name.is_empty() || name.starts_with('-') {
                    return Err(format!("bad target name {name:?}"));
                }
                rule.target = Some(Target {
                    goto: tok.starts_with("-g") || tok == "--goto",
                    name,
                    options: Vec::new(),
                });
                ctx = Ctx::Target;
            }
            _ if tok.starts_with("--") && tok.len() > 2 => {
                let (name, inline) = match tok[2..].split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (&tok[2..], None),
                };
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(format!("bad option name {tok:?}"));
                }
                option(&mut rule, &mut ctx, &mut cur, name, inline, negated)?;
            }
            _ => return Err(format!("unexpected {tok:?}")),
        }
    }
    if neg {
        return Err("\"!\" at the end of the rule".into());
    }
    for m in &mut rule.matches {
        if let Some(spec) = match_spec(&m.module) {
            spec.canonicalise(&mut m.options)
                .map_err(|e| format!("-m {}: {e}", m.module))?;
        }
    }
    if let Some(t) = &mut rule.target {
        if let Some(spec) = target_spec(&t.name) {
            spec.canonicalise(&mut t.options)
                .map_err(|e| format!("-j {}: {e}", t.name))?;
        }
    }
    Ok(rule)
}

#[derive(Clone, Copy)]
enum Owner {
    Match(usize),
    Target,
}

fn option(
    rule: &mut IptRule,
    ctx: &mut Ctx,
    cur: &mut Cursor,
    name: &str,
    inline: Option<String>,
    negated: bool,
) -> Result<(), String> {
    let knows_match = |m: &Match| match_spec(&m.module).map(|s| s.opt(name).is_some());
    // Does the (known) protocol match take this option (`--dport` for tcp)?
    let proto_takes = rule
        .protocol
        .as_ref()
        .filter(|p| !p.negated)
        .and_then(|p| match_spec(&p.value))
        .is_some_and(|s| s.opt(name).is_some());
    // 1. The current match/target, if it knows the option or is unknown to us.
    let mut owner = match *ctx {
        Ctx::Match(i) => match knows_match(&rule.matches[i]) {
            Some(true) => Some(Owner::Match(i)),
            // An extension unknown to dwprov takes everything but the
            // protocol's options (`-m connlimit ... --dport 22`).
            None if !proto_takes => Some(Owner::Match(i)),
            _ => None,
        },
        Ctx::Target => {
            let t = rule.target.as_ref().map(|t| target_spec(&t.name));
            match t {
                Some(Some(spec)) if spec.opt(name).is_none() => None,
                Some(None) if proto_takes => None,
                _ => Some(Owner::Target),
            }
        }
        Ctx::None => None,
    };
    // 2. The protocol's (implicit) match.
    if owner.is_none() {
        if let Some(p) = rule.protocol.as_ref().filter(|p| !p.negated) {
            let proto = p.value.clone();
            let fits = match_spec(&proto).is_none_or(|s| s.opt(name).is_some());
            if fits {
                let existing = rule.matches.iter().rposition(|m| m.module == proto);
                let idx = existing.unwrap_or_else(|| {
                    rule.matches.push(Match {
                        module: proto,
                        options: Vec::new(),
                    });
                    rule.matches.len() - 1
                });
                owner = Some(Owner::Match(idx));
            }
        }
    }
    // 3. An earlier match that knows it; 4. the current context, verbatim.
    if owner.is_none() {
        owner = rule
            .matches
            .iter()
            .rposition(|m| knows_match(m) == Some(true))
            .map(Owner::Match);
    }
    if owner.is_none() {
        owner = match *ctx {
            Ctx::Match(i) => Some(Owner::Match(i)),
            Ctx::Target => Some(Owner::Target),
            Ctx::None => None,
        };
    }
    let Some(owner) = owner else {
        return Err(format!("unknown option --{name}"));
    };
    let (opts, arity) = match owner {
        Owner::Match(i) => {
            let m = &mut rule.matches[i];
            let arity = match_spec(&m.module)
                .and_then(|s| s.opt(name))
                .map(|(_, o)| o.arity);
            (&mut m.options, arity)
        }
        Owner::Target => {
            let t = rule.target.as_mut().expect("target owner implies a target");
            let arity = target_spec(&t.name)
                .and_then(|s| s.opt(name))
                .map(|(_, o)| o.arity);
            (&mut t.options, arity)
        }
    };
    let mut args = Vec::new();
    if let Some(v) = inline {
        if arity == Some(0) {
            return Err(format!("--{name} takes no value"));
        }
        args.push(v);
    }
    match arity {
        Some(n) => {
            while args.len() < n {
                args.push(cur.value(&format!("--{name}"))?);
            }
        }
        None => {
            if args.is_empty() {
                while let Some(t) = cur.tokens.get(cur.i) {
                    if is_flag(t) {
                        break;
                    }
                    args.push(t.clone());
                    cur.i += 1;
                }
            }
        }
    }
    opts.push(Opt {
        name: name.to_string(),
        negated,
        args,
    });
    Ok(())
}

fn iface(v: String) -> Result<String, String> {
    if v.is_empty() || v.len() > 15 || v.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("bad interface name {v:?}"));
    }
    Ok(v)
}

/// `-s`/`-d` value → canonical `addr/len` (or `addr/mask` for a
/// non-contiguous IPv4 mask). None when it matches everything (`/0`).
fn canon_addr(s: &str, negated: bool) -> Result<Option<String>, String> {
    if s.contains(',') {
        return Err(format!(
            "{s:?}: several addresses make several rules; write one rule per address"
        ));
    }
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let bad = || format!("{s:?} is not an IP address or network (hostnames are not resolved)");
    let out = if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let bits: u32 = match mask {
            None => u32::MAX,
            Some(m) if m.contains('.') => m.parse::<Ipv4Addr>().map_err(|_| bad())?.into(),
            Some(m) => {
                let len: u32 = m.parse().map_err(|_| bad())?;
                if len > 32 {
                    return Err(bad());
                }
                u32::MAX.checked_shl(32 - len).unwrap_or(0)
            }
        };
        if bits == 0 && !negated {
            return Ok(None);
        }
        let net = Ipv4Addr::from(u32::from(a) & bits);
        if bits.leading_ones() + bits.trailing_zeros() == 32 {
            format!("{net}/{}", bits.leading_ones())
        } else {
            format!("{net}/{}", Ipv4Addr::from(bits))
        }
    } else if let Ok(a) = addr.parse::<Ipv6Addr>() {
        let len: u32 = match mask {
            None => 128,
            Some(m) => m.parse().ok().filter(|l| *l <= 128).ok_or_else(bad)?,
        };
        if len == 0 && !negated {
            return Ok(None);
        }
        let bits = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        format!("{}/{len}", Ipv6Addr::from(u128::from(a) & bits))
    } else {
        return Err(bad());
    };
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::super::IptRule;

    /// Parse `human`, check it prints as `saved` and equals the parse of `saved`.
    #[track_caller]
    fn canon(human: &str, saved: &str) {
        let h = IptRule::parse(human).unwrap_or_else(|e| panic!("{human}: {e}"));
        let s = IptRule::parse(saved).unwrap_or_else(|e| panic!("{saved}: {e}"));
        assert_eq!(h.to_string(), saved, "display of {human:?}");
        assert_eq!(s.to_string(), saved, "display of {saved:?}");
        assert_eq!(h, s, "{human:?} vs {saved:?}");
    }

    #[test]
    fn addresses_get_prefix_and_host_bits_cleared() {
        canon("-s 10.1.2.3 -j ACCEPT", "-s 10.1.2.3/32 -j ACCEPT");
        canon("-d 10.1.2.3/24 -j ACCEPT", "-d 10.1.2.0/24 -j ACCEPT");
        canon("-s 10.1.2.3/255.255.255.0", "-s 10.1.2.0/24");
        canon("-s 10.0.0.0/255.0.255.0", "-s 10.0.0.0/255.0.255.0");
        canon("-s 0.0.0.0/0 -j ACCEPT", "-j ACCEPT");
        canon(
            "--source 10.1.2.3 --dst 1.2.3.4",
            "-s 10.1.2.3/32 -d 1.2.3.4/32",
        );
        canon(
            "! -s 10.1.2.3 ! -d 10.0.0.1",
            "! -s 10.1.2.3/32 ! -d 10.0.0.1/32",
        );
        canon("-s 2001:db8::1/64", "-s 2001:db8::/64");
        assert!(IptRule::parse("-s example.com").is_err());
        assert!(IptRule::parse("-s 1.2.3.4,5.6.7.8").is_err());
        assert!(IptRule::parse("-s 1.2.3.4/33").is_err());
    }

    #[test]
    fn header_order_is_fixed() {
        canon(
            "-f -p tcp -o eth0 -i eth1 -d 10.0.0.0/8 -s 1.2.3.4 -j ACCEPT",
            "-s 1.2.3.4/32 -d 10.0.0.0/8 -i eth1 -o eth0 -p tcp -f -j ACCEPT",
        );
        canon("! -f ! -i lo", "! -i lo ! -f");
        canon(
            "-o eth1 -s 192.168.0.0/24 -j MASQUERADE",
            "-s 192.168.0.0/24 -o eth1 -j MASQUERADE",
        );
        assert!(IptRule::parse("-i eth0 -i eth1").is_err());
    }

    #[test]
    fn protocols_print_like_iptables_save() {
        canon("-p TCP -j ACCEPT", "-p tcp -j ACCEPT");
        canon("-p 47", "-p gre");
        canon("-p all -j ACCEPT", "-j ACCEPT");
        canon("-p 253", "-p 253");
        canon("! -p tcp", "! -p tcp");
        assert!(IptRule::parse("! -p all").is_err());
    }

    #[test]
    fn implicit_protocol_matches() {
        canon(
            "-p tcp --dport 80 -d 198.51.100.2 -j DNAT --to-destination 192.168.0.100",
            "-d 198.51.100.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.0.100",
        );
        canon(
            "-p udp --dport 5353:5400 --sport 53",
            "-p udp -m udp --sport 53 --dport 5353:5400",
        );
        canon(
            "-p icmp --icmp-type echo-request",
            "-p icmp -m icmp --icmp-type 8",
        );
        canon(
            "-p icmp --icmp-type port-unreachable",
            "-p icmp -m icmp --icmp-type 3/3",
        );
        canon(
            "-p tcp -j ACCEPT --dport 80",
            "-p tcp -m tcp --dport 80 -j ACCEPT",
        );
        canon(
            "-p tcp -m comment --comment x --dport 80",
            "-p tcp -m comment --comment x -m tcp --dport 80",
        );
        canon("-m tcp -p tcp --dport 22", "-p tcp -m tcp --dport 22");
        canon(
            "-p tcp -m tcp --dport 22 -m comment --comment x --sport 22",
            "-p tcp -m tcp --sport 22 --dport 22 -m comment --comment x",
        );
        assert!(IptRule::parse("--dport 80").is_err());
    }

    #[test]
    fn tcp_options() {
        canon("-p tcp --dport ssh", "-p tcp -m tcp --dport 22");
        canon("-p tcp --dport 22:22", "-p tcp -m tcp --dport 22");
        canon(
            "-p tcp --sport 1024: --dport :1023",
            "-p tcp -m tcp --sport 1024:65535 --dport 0:1023",
        );
        canon("-p tcp --dport 0:65535", "-p tcp -m tcp");
        canon(
            "-p tcp --syn",
            "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN",
        );
        canon(
            "-p tcp ! --syn",
            "-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN",
        );
        canon(
            "-p tcp --tcp-flags SYN SYN --tcp-option 2 --dport 1",
            "-p tcp -m tcp --dport 1 --tcp-option 2 --tcp-flags SYN SYN",
        );
        canon(
            "-p tcp --tcp-flags ALL NONE",
            "-p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE",
        );
        canon("-p tcp --destination-port=22", "-p tcp -m tcp --dport 22");
        canon("-p udp ! --dport 53", "-p udp -m udp ! --dport 53");
        assert!(IptRule::parse("-p tcp --dport 23:22").is_err());
    }

    #[test]
    fn connmark_and_mark_targets_become_xmark() {
        canon(
            "-j CONNMARK --set-mark 0x100",
            "-j CONNMARK --set-xmark 0x100/0xffffffff",
        );
        canon(
            "-j CONNMARK --set-mark 256",
            "-j CONNMARK --set-xmark 0x100/0xffffffff",
        );
        canon(
            "-j CONNMARK --set-mark 0x100/0xff00",
            "-j CONNMARK --set-xmark 0x100/0xff00",
        );
        // set-mark V/M zeroes V|M: the saved mask is V|M.
        canon(
            "-j CONNMARK --set-mark 0x1/0xff00",
            "-j CONNMARK --set-xmark 0x1/0xff01",
        );
        canon(
            "-j MARK --set-mark 0x1/0xff00",
            "-j MARK --set-xmark 0x1/0xff01",
        );
        canon(
            "-j MARK --set-mark 0x100",
            "-j MARK --set-xmark 0x100/0xffffffff",
        );
        canon(
            "-j MARK --set-xmark 0x1",
            "-j MARK --set-xmark 0x1/0xffffffff",
        );
        canon(
            "-j MARK --and-mark 0x100",
            "-j MARK --set-xmark 0x0/0xfffffeff",
        );
        canon("-j MARK --or-mark 0x100", "-j MARK --set-xmark 0x100/0x100");
        canon(
            "-j MARK --xor-mark 0x4000",
            "-j MARK --set-xmark 0x4000/0x0",
        );
        canon(
            "-j CONNMARK --or-mark 0x100",
            "-j CONNMARK --set-xmark 0x100/0x100",
        );
        canon(
            "-j CONNMARK --set-mark 0x1 --nfmask 0xff",
            "-j CONNMARK --set-xmark 0x1/0xffffffff",
        );
        assert!(IptRule::parse("-j MARK --set-mark 4294967296").is_err());
        assert!(IptRule::parse("-j MARK --set-mark -1").is_err());
    }

    #[test]
    fn connmark_save_restore_get_both_masks() {
        canon(
            "-j CONNMARK --restore-mark",
            "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        );
        canon(
            "-j CONNMARK --save-mark",
            "-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        );
        canon(
            "-j CONNMARK --restore-mark --mask 0xff",
            "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff",
        );
        canon(
            "-j CONNMARK --restore-mark --ctmask 0xff00 --nfmask 0xff00",
            "-j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00",
        );
        canon(
            "-j CONNMARK --restore-mark --ctmask 0xff",
            "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xff",
        );
    }

    #[test]
    fn mark_matches_are_hex() {
        canon("-m mark --mark 256", "-m mark --mark 0x100");
        canon("-m mark --mark 010", "-m mark --mark 0x8");
        canon("-m mark --mark 0x0A", "-m mark --mark 0xa");
        canon("-m mark --mark 0x1/0xffffffff", "-m mark --mark 0x1");
        canon(
            "-m connmark --mark 256/65280",
            "-m connmark --mark 0x100/0xff00",
        );
        canon(
            "-m mark ! --mark 0x4000/0x4000",
            "-m mark ! --mark 0x4000/0x4000",
        );
    }

    #[test]
    fn state_lists_have_fixed_order() {
        canon(
            "-m conntrack --ctstate ESTABLISHED,RELATED",
            "-m conntrack --ctstate RELATED,ESTABLISHED",
        );
        canon(
            "-m conntrack --ctstate dnat,SNAT,UNTRACKED,ESTABLISHED,RELATED,NEW,INVALID",
            "-m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT",
        );
        canon(
            "-m state --state ESTABLISHED,RELATED",
            "-m state --state RELATED,ESTABLISHED",
        );
        canon(
            "-m conntrack --ctstatus CONFIRMED,ASSURED --ctproto udp --ctstate NEW",
            "-m conntrack --ctstate NEW --ctproto 17 --ctstatus ASSURED,CONFIRMED",
        );
        canon(
            "-m conntrack --ctdir ORIGINAL --ctorigsrc 10.0.0.1 --ctstate RELATED",
            "-m conntrack --ctstate RELATED --ctorigsrc 10.0.0.1 --ctdir ORIGINAL",
        );
        canon(
            "-m conntrack ! --ctstate NEW",
            "-m conntrack ! --ctstate NEW",
        );
        assert!(IptRule::parse("-m conntrack --ctstate BOGUS").is_err());
    }

    #[test]
    fn comments_are_quoted_like_iptables_save() {
        canon(
            "-m comment --comment \"simple-1_x\"",
            "-m comment --comment simple-1_x",
        );
        canon(
            "-m comment --comment \"dwprov: jump\" -j DWPROV-PRE",
            "-m comment --comment \"dwprov: jump\" -j DWPROV-PRE",
        );
        canon(
            "-m comment --comment it's",
            "-m comment --comment \"it\\'s\"",
        );
        canon("-m comment --comment \"\"", "-m comment --comment \"\"");
        canon("-m comment --comment -dash", "-m comment --comment -dash");
        canon(
            "-j ACCEPT -m comment --comment after",
            "-m comment --comment after -j ACCEPT",
        );
        let long = "x".repeat(300);
        canon(
            &format!("-m comment --comment {long}"),
            &format!("-m comment --comment {}", &long[..255]),
        );
        let r = IptRule::parse("-m comment --comment \"dwprov: jump\" -j DWPROV-PRE").unwrap();
        assert_eq!(r.comment(), Some("dwprov: jump"));
        assert_eq!(r.target(), Some("DWPROV-PRE"));
    }

    #[test]
    fn nat_targets() {
        canon("-j SNAT --to 1.2.3.4", "-j SNAT --to-source 1.2.3.4");
        canon(
            "-j SNAT --random-fully --persistent --to-source 1.2.3.4 --random",
            "-j SNAT --to-source 1.2.3.4 --random --random-fully --persistent",
        );
        canon(
            "-j DNAT --persistent --random --to-destination 1.2.3.4",
            "-j DNAT --to-destination 1.2.3.4 --random --persistent",
        );
        canon(
            "-j MASQUERADE --random-fully --random",
            "-j MASQUERADE --random --random-fully",
        );
        canon(
            "-p tcp -j DNAT --to-destination 192.168.0.100:22",
            "-p tcp -j DNAT --to-destination 192.168.0.100:22",
        );
    }

    #[test]
    fn log_reject_nflog_limit() {
        canon("-j LOG --log-prefix \"x \"", "-j LOG --log-prefix \"x \"");
        canon(
            "-j LOG --log-uid --log-level 7 --log-prefix x",
            "-j LOG --log-prefix x --log-level 7 --log-uid",
        );
        canon(
            "-j LOG --log-level warning --log-prefix \"dwprov drop: \"",
            "-j LOG --log-prefix \"dwprov drop: \"",
        );
        canon("-j LOG --log-level debug", "-j LOG --log-level 7");
        canon("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable");
        canon(
            "-j REJECT --reject-with tcp-rst -p tcp",
            "-p tcp -j REJECT --reject-with tcp-reset",
        );
        canon(
            "-j REJECT --reject-with host-prohib",
            "-j REJECT --reject-with icmp-host-prohibited",
        );
        canon(
            "-j NFLOG --nflog-threshold 2 --nflog-range 100 --nflog-group 3 --nflog-prefix p",
            "-j NFLOG --nflog-prefix p --nflog-group 3 --nflog-size 100 --nflog-threshold 2",
        );
        canon("-j NFLOG --nflog-group 0", "-j NFLOG");
        canon("-m limit", "-m limit --limit 3/hour");
        canon(
            "-m limit --limit-burst 7 --limit 10/s",
            "-m limit --limit 10/sec --limit-burst 7",
        );
        canon(
            "-m limit --limit 60/minute --limit-burst 5",
            "-m limit --limit 1/sec",
        );
    }

    #[test]
    fn multiport_and_addrtype() {
        canon(
            "-p tcp -m multiport --destination-ports http,https,ssh:telnet",
            "-p tcp -m multiport --dports 80,443,22:23",
        );
        canon(
            "-p udp -m multiport ! --sports 53",
            "-p udp -m multiport ! --sports 53",
        );
        canon(
            "-m addrtype --dst-type local --src-type UNICAST --limit-iface-in",
            "-m addrtype --src-type UNICAST --dst-type LOCAL --limit-iface-in",
        );
        canon(
            "-m addrtype ! --dst-type BROADCAST,LOCAL",
            "-m addrtype ! --dst-type LOCAL,BROADCAST",
        );
    }

    #[test]
    fn unknown_extensions_are_kept_verbatim() {
        canon(
            "-p tcp -m statistic --mode random --probability 0.33333333349 -j DNAT --to-destination 10.0.0.1:80",
            "-p tcp -m statistic --mode random --probability 0.33333333349 -j DNAT --to-destination 10.0.0.1:80",
        );
        canon(
            "-m set --match-set foo src,dst -j DROP",
            "-m set --match-set foo src,dst -j DROP",
        );
        canon(
            "-m set ! --match-set foo src -j DROP",
            "-m set ! --match-set foo src -j DROP",
        );
        canon(
            "-m recent --set --name x --mask 255.255.255.255 --rsource",
            "-m recent --set --name x --mask 255.255.255.255 --rsource",
        );
        canon("-j TOS --set-tos 0x10/0xff", "-j TOS --set-tos 0x10/0xff");
        canon("-p sctp --dport 80", "-p sctp -m sctp --dport 80");
        canon(
            "-p tcp -m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-saddr --dport 22",
            "-p tcp -m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-saddr -m tcp --dport 22",
        );
        canon(
            "-m physdev --physdev-is-bridged -j KUBE-FORWARD",
            "-m physdev --physdev-is-bridged -j KUBE-FORWARD",
        );
        let r = IptRule::parse("-m set --match-set foo src -j DROP").unwrap();
        assert_eq!(r.matches[0].options[0].args, ["foo", "src"]);
    }

    #[test]
    fn goto_and_empty() {
        canon("-g USER", "-g USER");
        canon("", "");
        assert!(IptRule::parse("-j A -j B").is_err());
        assert!(IptRule::parse("-j").is_err());
        assert!(IptRule::parse("! -m tcp").is_err());
        assert!(IptRule::parse("-s 1.2.3.4 !").is_err());
        assert!(IptRule::parse("bogus").is_err());
    }
}
