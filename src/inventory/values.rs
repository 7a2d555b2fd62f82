//! Value validators: the one home for every check of a single inventory
//! value, used by [`crate::inventory`] (connection settings, host and group
//! names, routes files) and by [`crate::model`] (the gateway intent).
//!
//! Two layers:
//! - **text checks** (`&str` in, the typed value or a short reason out, no
//!   location): strict IPv4 addresses and prefixes ([`parse_addr`],
//!   [`parse_cidr`], [`parse_iface_net`]; an IPv6 value is refused as "IPv6
//!   is not supported yet", the state being family-aware already:
//!   `state::family`) and names ([`interface_name`],
//!   [`table_name`], [`user`], [`inventory_name`], [`host_address`]). Other
//!   parsers (routes files, `ssh.jump`, the ssh config) reuse them and attach
//!   their own location.
//! - **located readers** (a YAML [`Node`] in, the typed value or an
//!   [`Error::Input`](crate::error::Error::Input) at the node out): structure ([`required`], [`seq`],
//!   [`string`], [`boolean`], [`choice`]), numbers ([`int_in`],
//!   [`int_between`], [`port`], [`table_id`], [`mark`], [`rule_priority`],
//!   [`mark_mask`]) and the text checks above read from a node ([`ipv4`],
//!   [`iface_address`], [`cidr`], [`prefix`], [`interface`], [`line_name`]).
//!
//! The accepted alphabets are deliberately small: none of them contains a
//! shell metacharacter, whitespace, quote or a leading `-`. Values are shown
//! escaped and cut ([`escape::value`]). Checks that relate several values
//! (an interface used twice, a gateway outside its subnet) belong to the
//! builder that sees them all (`model/build/*`).
use crate::error::Result;
use crate::escape;
use crate::yaml::{did_you_mean, Node};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

// ---------------------------------------------------------------------------
// Text checks: addresses and prefixes

/// Parse a dotted-quad IPv4 address strictly: four decimal octets 0 to 255
/// without leading zeros. `198.051.100.002` is refused rather than guessed:
/// inet_aton (ping, ssh, many scripts) reads `051` as octal 41, so the same
/// text means two different hosts. The error is a message without a
/// location; `what` starts it ("`gateway`: ").
pub fn parse_addr(s: &str) -> std::result::Result<Ipv4Addr, String> {
    parse_addr_v4(s).map_err(|m| ipv6_refused(s).unwrap_or(m))
}

fn parse_addr_v4(s: &str) -> std::result::Result<Ipv4Addr, String> {
    if let Some(fixed) = without_leading_zeros(s) {
        return Err(format!(
            "`{}` has leading zeros, which are ambiguous (inet_aton reads `010` as octal 8); write `{fixed}`",
            escape::value(s)
        ));
    }
    s.parse()
        .map_err(|_| format!("`{}` is not an IPv4 address", escape::value(s)))
}

/// The refusal of an IPv6 address or prefix (`2001:db8::1`, `2001:db8::/32`),
/// `None` for anything else: the state and the commands are family-aware
/// (`state::family`), the inventory accepts IPv4 only until IPv6 lands.
fn ipv6_refused(s: &str) -> Option<String> {
    let addr = s.split_once('/').map_or(s, |(a, _)| a);
    addr.parse::<std::net::Ipv6Addr>().ok().map(|_| {
        format!(
            "`{}` is an IPv6 address: IPv6 is not supported yet (write an IPv4 address or prefix)",
            escape::value(s)
        )
    })
}

/// `Some(corrected)` when `s` is four decimal octets (0 to 255 each once
/// its zeros are dropped) of which some have a leading zero.
fn without_leading_zeros(s: &str) -> Option<String> {
    // Fast path (every prefix of a big list comes here): no `0` followed by
    // a digit at the start of an octet.
    let b = s.as_bytes();
    let leading_zero = (0..b.len()).any(|i| {
        b[i] == b'0' && (i == 0 || b[i - 1] == b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    });
    if !leading_zero {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    if !parts.iter().any(|p| p.len() > 1 && p.starts_with('0')) {
        return None;
    }
    let octets: Vec<u16> = parts.iter().map(|p| p.parse().unwrap_or(999)).collect();
    if octets.iter().any(|o| *o > 255) {
        return None;
    }
    Some(
        octets
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A prefix length: decimal 0 to 32, no sign, no leading zero.
fn parse_len(s: &str, whole: &str) -> std::result::Result<u8, String> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not an IPv4 prefix (expected a.b.c.d/len)",
            escape::value(whole)
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!(
            "`{}`: prefix length `{s}` has a leading zero; write `/{}`",
            escape::value(whole),
            s.trim_start_matches('0').parse::<u8>().unwrap_or(0)
        ));
    }
    let n: u8 = s.parse().unwrap_or(99);
    if n > 32 {
        return Err(format!(
            "`{}`: prefix length {n} is out of range (0 to 32)",
            escape::value(whole)
        ));
    }
    Ok(n)
}

/// Parse `a.b.c.d/len` (an interface address: host bits may be set). The
/// error is a message without a location.
pub fn parse_iface_net(s: &str) -> std::result::Result<Ipv4Net, String> {
    parse_iface_net_v4(s).map_err(|m| ipv6_refused(s).unwrap_or(m))
}

fn parse_iface_net_v4(s: &str) -> std::result::Result<Ipv4Net, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "`{}` is not an IPv4 address with a prefix length",
            escape::value(s)
        ));
    };
    let ip = parse_addr(addr).map_err(|m| {
        if without_leading_zeros(addr).is_some() {
            m
        } else {
            format!(
                "`{}` is not an IPv4 address with a prefix length",
                escape::value(s)
            )
        }
    })?;
    let len = parse_len(len, s).map_err(|m| {
        if m.contains("leading zero") {
            m
        } else {
            format!(
                "`{}` is not an IPv4 address with a prefix length",
                escape::value(s)
            )
        }
    })?;
    Ok(Ipv4Net::new(ip, len).expect("len <= 32"))
}

/// Parse a destination prefix: `a.b.c.d/len` or a bare address (/32).
/// Host bits must be clear; leading zeros are refused (see [`parse_addr`]).
/// The error is a message without a location.
pub fn parse_cidr(s: &str) -> std::result::Result<Ipv4Net, String> {
    parse_cidr_v4(s).map_err(|m| ipv6_refused(s).unwrap_or(m))
}

fn parse_cidr_v4(s: &str) -> std::result::Result<Ipv4Net, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: Ipv4Addr = parse_addr(addr).map_err(|m| {
        if without_leading_zeros(addr).is_some() {
            m
        } else {
            format!(
                "`{}` is not an IPv4 prefix (expected a.b.c.d/len)",
                escape::value(s)
            )
        }
    })?;
    let len = match len {
        None => 32,
        Some(l) => parse_len(l, s)?,
    };
    let net = Ipv4Net::new(ip, len).expect("len <= 32");
    if net.network() != ip {
        return Err(format!(
            "`{}` has host bits set; the network is {}",
            escape::value(s),
            net.trunc()
        ));
    }
    Ok(net)
}

// ---------------------------------------------------------------------------
// Text checks: names

/// Linux interface name: 1–15 bytes, not `.`/`..`, no `/`, `:` or whitespace;
/// dwprov further limits it to `[A-Za-z0-9_.-]`, not starting with `-`.
pub fn interface_name(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "interface name `{v}` must be 1 to 15 characters long"
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("`{v}` is not a valid interface name"));
    }
    // The kernel's names for "every interface" and "new interfaces" in
    // net/ipv4/conf/: a sysctl for them would change every interface.
    if s == "all" || s == "default" {
        return Err(format!(
            "`{v}` is not a valid interface name: net/ipv4/conf/{v} sets every interface"
        ));
    }
    if s.starts_with('-') {
        return Err(format!("interface name `{v}` must not start with `-`"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "interface name `{v}` contains {c:?}; use letters, digits, `_`, `.`, `-`"
        ));
    }
    Ok(())
}

/// Names iproute2 reserves in rt_tables.
pub const RESERVED_TABLE_NAMES: &[&str] = &["main", "local", "default", "unspec"];

/// rt_tables name: `[A-Za-z][A-Za-z0-9_-]{0,30}`, not a reserved name.
pub fn table_name(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    let mut chars = s.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {
            s.len() <= 31 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        _ => false,
    };
    if !ok {
        return Err(format!(
            "line name `{v}` is not a valid routing table name (a letter, then up to 30 letters, digits, `_` or `-`)"
        ));
    }
    if RESERVED_TABLE_NAMES.contains(&s) {
        return Err(format!(
            "line name `{v}` is reserved by iproute2 (main, local, default, unspec)"
        ));
    }
    Ok(())
}

/// Unix user name: `[a-z_][a-z0-9_-]*`, at most 32 characters (the
/// transport's check, which an ssh config's `User` passes too).
pub use crate::transport::user_name as user;

/// Inventory host and group names: `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 64.
pub fn inventory_name(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a valid name (letters, digits, `_`, `.`, `-`; not starting with `.` or `-`)"))
    }
}

/// An address to connect to: an IPv4/IPv6 address or a DNS name.
pub fn host_address(s: &str) -> Result<(), String> {
    let v = crate::escape::value(s);
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let bad = || Err(format!("`{v}` is not an IP address or a DNS name"));
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return bad();
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return bad();
        }
    }
    // All-numeric dotted names are mistyped IPv4 addresses, not DNS names.
    if name
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        // `010.9.0.2`: say why (the resolver would read octal).
        return match parse_addr(s) {
            Err(m) if m.contains("leading zeros") => Err(m),
            _ => bad(),
        };
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Located readers: each error is an `Error::Input` at the node.

/// The value of `key` in `map`; missing is an error at the map.
pub fn required<'a>(map: &'a Node, key: &str, what: &str) -> Result<&'a Node> {
    map.get(key)
        .ok_or_else(|| map.error(format!("{what} is missing required key `{key}`"), None))
}

/// A list.
pub fn seq<'a>(n: &'a Node, what: &str) -> Result<&'a [Node]> {
    n.as_seq()
        .ok_or_else(|| n.error(format!("`{what}` must be a list, found {}", n.kind()), None))
}

/// A string.
pub fn string<'a>(n: &'a Node, what: &str) -> Result<&'a str> {
    n.as_str().ok_or_else(|| {
        n.error(
            format!("`{what}` must be a string, found {}", n.kind()),
            None,
        )
    })
}

/// `true` or `false`.
pub fn boolean(n: &Node, what: &str) -> Result<bool> {
    n.as_bool().ok_or_else(|| {
        n.error(
            format!("`{what}` must be true or false, found {}", n.kind()),
            None,
        )
    })
}

fn integer(n: &Node, what: &str) -> Result<i64> {
    n.as_i64().ok_or_else(|| {
        n.error(
            format!("`{what}` must be an integer, found {}", n.kind()),
            None,
        )
    })
}

/// An integer from `lo` to `hi` (gateway settings): "`what` N is out of
/// range (lo to hi)", with `hint` saying why.
pub fn int_in(n: &Node, what: &str, lo: i64, hi: i64, hint: &str) -> Result<i64> {
    let i = integer(n, what)?;
    if i < lo || i > hi {
        return Err(n.error(
            format!("`{what}` {i} is out of range ({lo} to {hi})"),
            Some(hint.to_string()),
        ));
    }
    Ok(i)
}

/// An integer from `lo` to `hi` (connection settings): "`what` is N, out of
/// range", with the range as the hint.
pub fn int_between(n: &Node, what: &str, lo: i64, hi: i64) -> Result<i64> {
    let i = integer(n, what)?;
    if i < lo || i > hi {
        return Err(n.error(
            format!("`{what}` is {i}, out of range"),
            Some(format!("use a value from {lo} to {hi}")),
        ));
    }
    Ok(i)
}

/// One of `options` (a string), with "did you mean".
pub fn choice<T: Copy>(n: &Node, what: &str, options: &[(&str, T)]) -> Result<T> {
    let valid: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    let Some(s) = n.as_str() else {
        return Err(n.error(
            format!(
                "`{what}` must be one of {}, found {}",
                valid.join(", "),
                n.kind()
            ),
            None,
        ));
    };
    match options.iter().find(|(k, _)| *k == s) {
        Some((_, v)) => Ok(*v),
        None => {
            let dym = did_you_mean(s, &valid)
                .map(|d| format!("did you mean `{d}`? "))
                .unwrap_or_default();
            Err(n.error(
                format!("unknown {what} `{}`", escape::value(s)),
                Some(format!("{dym}valid values: {}", valid.join(", "))),
            ))
        }
    }
}

/// A TCP/UDP port of a forward, 1 to 65535.
pub fn port(n: &Node, what: &str) -> Result<u16> {
    Ok(int_in(n, what, 1, 65535, "ports are 1 to 65535")? as u16)
}

/// Highest explicit table id accepted.
const MAX_TABLE: u32 = 0x7fff_ffff;
/// Table ids the kernel / iproute2 reserve.
pub const RESERVED_TABLES: &[u32] = &[0, 253, 254, 255];

/// A line's routing table id: 1 to 2^31-1, not one the kernel reserves.
pub fn table_id(n: &Node) -> Result<u32> {
    let reserved = match n.as_i64() {
        Some(0) => Some("unspec"),
        Some(253) => Some("default"),
        Some(254) => Some("main"),
        Some(255) => Some("local"),
        _ => None,
    };
    if let Some(which) = reserved {
        return Err(n.error(
            format!(
                "table id {} is reserved (the `{which}` table)",
                n.as_i64().unwrap_or_default()
            ),
            Some("pick another id (e.g. 100), or leave `table` out to get a stable one".into()),
        ));
    }
    Ok(int_in(
        n,
        "table",
        1,
        MAX_TABLE as i64,
        "use an id from 1 to 2147483647 other than 253, 254, 255",
    )? as u32)
}

/// A line's fwmark: non-zero, only bits of `mask`.
pub fn mark(n: &Node, mask: u32) -> Result<u32> {
    let m = int_in(
        n,
        "mark",
        0,
        u32::MAX as i64,
        &format!("a non-zero value within mark_mask {mask:#x}"),
    )? as u32;
    if m == 0 {
        return Err(n.error(
            "`mark` is 0, which means \"no mark\"",
            Some(format!(
                "use a non-zero value within mark_mask {mask:#x}, or leave `mark` out"
            )),
        ));
    }
    if m & !mask != 0 {
        return Err(n.error(
            format!("mark {m:#x} does not fit mark_mask {mask:#x}"),
            Some(format!(
                "use only bits of {mask:#x} (e.g. {:#x}), or change `mark_mask`",
                mask & mask.wrapping_neg()
            )),
        ));
    }
    Ok(m)
}

/// The first priority of dwprov's ip rule band (`rule_priority ..
/// rule_priority + RULE_BAND_SIZE - 1`, ending below the kernel's main rule).
pub fn rule_priority(n: &Node) -> Result<u32> {
    let (band, main) = (
        crate::ownership::RULE_BAND_SIZE,
        crate::state::ip::PRIORITY_MAIN,
    );
    let hint = format!(
        "dwprov's rules use rule_priority .. rule_priority+{}, which must stay below the main rule at {main}",
        band - 1
    );
    Ok(int_in(n, "rule_priority", 1, i64::from(main - band), &hint)? as u32)
}

/// The fwmark bits dwprov owns: a non-zero 32-bit mask.
pub fn mark_mask(n: &Node) -> Result<u32> {
    let m = int_in(
        n,
        "mark_mask",
        0,
        u32::MAX as i64,
        &format!(
            "a 32-bit mask such as {:#06x}",
            crate::ownership::DEFAULT_MARK_MASK
        ),
    )?;
    if m == 0 {
        return Err(n.error(
            "`mark_mask` is 0: no bits left for line marks",
            Some(format!(
                "use a non-zero mask such as {:#06x}",
                crate::ownership::DEFAULT_MARK_MASK
            )),
        ));
    }
    Ok(m as u32)
}

/// An IPv4 address ([`parse_addr`]); the message starts with `` `what`: ``.
pub fn ipv4(n: &Node, what: &str) -> Result<Ipv4Addr> {
    let s = string(n, what)?;
    parse_addr(s).map_err(|m| n.error(format!("`{what}`: {m}"), None))
}

/// `ADDRESS` or `ADDRESS:PORT` (an IPv4 address, optionally with a port);
/// the message starts with `` `what`: ``.
pub fn ipv4_endpoint(n: &Node, what: &str) -> Result<(Ipv4Addr, Option<u16>)> {
    let s = string(n, what)?;
    let (addr, port) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = parse_addr(addr).map_err(|m| n.error(format!("`{what}`: {m}"), None))?;
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(n.error(
                format!("`{what}`: `{}` is not a port", crate::escape::value(p)),
                Some(format!(
                    "write `{what}: ADDRESS` or `{what}: ADDRESS:PORT` (port 1 to 65535)"
                )),
            )),
        })
        .transpose()?;
    Ok((addr, port))
}

/// An interface address: `a.b.c.d/len`, a usable host address of its subnet.
pub fn iface_address(n: &Node) -> Result<Ipv4Net> {
    let s = string(n, "address")?;
    let net = parse_iface_net(s).map_err(|m| {
        n.error(
            format!("`address`: {m}"),
            Some("write it like 198.51.100.2/24".into()),
        )
    })?;
    if net.prefix_len() < 31 {
        let sub = net.trunc();
        if net.addr() == sub.network() {
            return Err(n.error(
                format!("`address` {s} is the network address of {sub}"),
                Some("use a host address, e.g. the one the ISP assigned".into()),
            ));
        }
        if net.addr() == sub.broadcast() {
            return Err(n.error(
                format!("`address` {s} is the broadcast address of {sub}"),
                Some("use a host address, e.g. the one the ISP assigned".into()),
            ));
        }
    }
    Ok(net)
}

/// A source or destination prefix ([`parse_cidr`]); the message starts
/// with `` `what`: ``.
pub fn cidr(n: &Node, what: &str) -> Result<Ipv4Net> {
    let s = string(n, what)?;
    parse_cidr(s).map_err(|m| n.error(format!("`{what}`: {m}"), None))
}

/// An entry of a line's inline `routes` ([`parse_cidr`]).
pub fn prefix(n: &Node) -> Result<Ipv4Net> {
    let s = string(n, "routes entry")?;
    parse_cidr(s).map_err(|m| n.error(m, None))
}

/// An interface name ([`interface_name`]).
pub fn interface(n: &Node) -> Result<&str> {
    let s = string(n, "interface")?;
    interface_name(s).map_err(|m| n.error(m, None))?;
    Ok(s)
}

/// A line's name, which is its routing table's name ([`table_name`]).
pub fn line_name(n: &Node) -> Result<&str> {
    let s = string(n, "name")?;
    table_name(s).map_err(|m| n.error(m, None))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_values_are_refused_as_not_supported_yet() {
        for v in ["2001:db8::1", "2001:db8::/32", "fe80::1/64", "::"] {
            for e in [
                parse_addr(v).unwrap_err(),
                parse_cidr(v).unwrap_err(),
                parse_iface_net(v).unwrap_err(),
            ] {
                assert!(e.contains("IPv6 is not supported yet"), "{v}: {e}");
            }
        }
        assert!(parse_addr("1.2.3.x")
            .unwrap_err()
            .contains("is not an IPv4 address"));
        assert!(parse_cidr("1.2.3.0/24").is_ok());
    }

    #[test]
    fn names() {
        for ok in ["eth0", "enp3s0f1", "wan.100", "br-lan", "a"] {
            interface_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "eth0:1",
            "a/b",
            "eth 0",
            "sixteen-chars-xx",
            "-x",
            "e$(x)",
            "é",
        ] {
            assert!(interface_name(bad).is_err(), "{bad}");
        }
        table_name("ctc").unwrap();
        table_name("C-n_c2").unwrap();
        for bad in ["main", "local", "1ctc", "", "a b", "a;b", &"x".repeat(32)] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
        user("root").unwrap();
        user("_svc-1").unwrap();
        for bad in ["Root", "1a", "a b", "a;b", ""] {
            assert!(user(bad).is_err(), "{bad}");
        }
        for ok in [
            "10.9.0.2",
            "::1",
            "gw1.example.com",
            "gw1",
            "gw1.example.com.",
        ] {
            host_address(ok).unwrap();
        }
        assert!(interface_name("all").is_err() && interface_name("default").is_err());
        assert!(host_address("010.9.0.2")
            .unwrap_err()
            .contains("leading zeros"));
        for bad in ["10.9.0.300", "a b", "x;rm", "-oProxy", "a..b", "$(x)", ""] {
            assert!(host_address(bad).is_err(), "{bad}");
        }
    }
}
