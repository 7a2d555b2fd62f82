//! Addresses as the tracer reads them out of the state types.
//!
//! The only place the tracer names an address type or parses an address
//! out of a rule's text. Addresses and prefixes are family-aware
//! (`IpAddr`/`IpNet`), as the model and state are: a prefix of one family
//! never holds an address of the other, so an IPv6 route or selector never
//! matches an IPv4 packet, and the tracer needs no family branch of its own.
use ipnet::IpNet;
use std::net::IpAddr;

/// An address the tracer follows.
pub type Addr = IpAddr;
/// A prefix the tracer matches against.
pub type Net = IpNet;

/// The family of an address (the `ip route get` flag of a query on it).
pub fn family(a: Addr) -> crate::state::Family {
    crate::state::Family::of_addr(&a)
}

/// Whether `net` holds `a` (never across families).
pub fn contains(net: &Net, a: Addr) -> bool {
    net.contains(&a)
}

/// A selector that is `None` for "all" (an ip rule's `from`/`to`).
pub fn selects(net: &Option<Net>, a: Addr) -> bool {
    net.as_ref().is_none_or(|n| contains(n, a))
}

/// The prefix length of a route's destination (longest prefix wins).
pub fn prefix_len(net: &Net) -> u8 {
    net.prefix_len()
}

/// The network of an interface address (`192.168.0.1/24` → `192.168.0.0/24`).
pub fn network(net: &Net) -> Net {
    net.trunc()
}

/// The address part of an interface address.
pub fn host(net: &Net) -> Addr {
    net.addr()
}

/// The limited broadcast address (`255.255.255.255`; IPv6 has none).
pub fn is_broadcast(a: Addr) -> bool {
    matches!(a, IpAddr::V4(a) if a.is_broadcast())
}

/// A host prefix (`/32`, `/128`) for an address.
pub fn host_net(a: Addr) -> Net {
    IpNet::from(a)
}

/// The address `k` after a prefix's network address (saturating at the
/// top of the family's space); whether it is still inside the prefix is
/// the caller's test.
pub fn nth(p: &Net, k: u32) -> Addr {
    match network(p).addr() {
        IpAddr::V4(a) => IpAddr::from(std::net::Ipv4Addr::from(u32::from(a).saturating_add(k))),
        IpAddr::V6(a) => IpAddr::from(std::net::Ipv6Addr::from(
            u128::from(a).saturating_add(u128::from(k)),
        )),
    }
}

/// An iptables `-s`/`-d` value (`10.0.0.0/8`, `1.2.3.4/32`); None when it
/// is not IPv4 text (then the rule is not evaluated, and said so): the
/// iptables model the tracer reads is IPv4 (`ip6tables` is not read).
pub fn parse_ipt_net(s: &str) -> Option<Net> {
    match s.split_once('/') {
        Some((a, l)) => {
            let a: std::net::Ipv4Addr = a.parse().ok()?;
            if let Ok(len) = l.parse::<u8>() {
                return ipnet::Ipv4Net::new(a, len).ok().map(IpNet::V4);
            }
            // A dotted mask (`255.255.255.0`): only contiguous ones.
            let m: std::net::Ipv4Addr = l.parse().ok()?;
            let bits = u32::from(m);
            let len = bits.leading_ones();
            (bits.checked_shl(len).unwrap_or(0) == 0)
                .then(|| ipnet::Ipv4Net::new(a, len as u8).ok().map(IpNet::V4))
                .flatten()
        }
        None => Some(host_net(IpAddr::V4(s.parse().ok()?))),
    }
}

/// A NAT target's `ADDR[-ADDR][:PORT[-PORT]]`: the first address and port
/// (what the first connection gets). `:PORT` alone keeps the address.
pub fn parse_nat_to(s: &str) -> Option<(Option<Addr>, Option<u16>)> {
    let (addrs, ports) = match s.rsplit_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = if addrs.is_empty() {
        None
    } else {
        Some(addrs.split('-').next()?.parse().ok()?)
    };
    let port = match ports {
        Some(p) => Some(p.split('-').next()?.parse().ok()?),
        None => None,
    };
    Some((addr, port))
}

/// A parsed address from user text (CLI flags, assertions), strictly.
pub fn parse(s: &str) -> Result<Addr, String> {
    crate::inventory::values::parse_addr(s).map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_and_nat_spellings() {
        assert_eq!(
            parse_ipt_net("10.0.0.0/8"),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            parse_ipt_net("10.0.0.0/255.255.0.0"),
            Some("10.0.0.0/16".parse().unwrap())
        );
        assert_eq!(parse_ipt_net("10.0.0.0/255.0.255.0"), None);
        assert_eq!(parse_ipt_net("fe80::/10"), None);
        assert_eq!(
            parse_nat_to("192.168.0.100:22"),
            Some((Some("192.168.0.100".parse().unwrap()), Some(22)))
        );
        assert_eq!(
            parse_nat_to("10.0.0.1-10.0.0.9:80-90"),
            Some((Some("10.0.0.1".parse().unwrap()), Some(80)))
        );
        assert_eq!(parse_nat_to(":8080"), Some((None, Some(8080))));
        assert_eq!(parse_nat_to("x"), None);
    }
}
