//! Addresses as the tracer reads them out of the state types.
//!
//! The only place the tracer names an address type or parses an address
//! out of a rule's text: the state's addresses becoming family-aware is a
//! change here, not through the tracer. The tracer itself is IPv4, as the
//! firewall model (iptables) it reads is: a route's family-aware
//! destination (`IpNet`) is read by [`route_contains`] and
//! [`route_prefix_len`], and an IPv6 one never matches.
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// An address the tracer follows.
pub type Addr = Ipv4Addr;
/// A prefix the tracer matches against.
pub type Net = Ipv4Net;

/// The family of an address (the `ip route get` flag of a query on it).
pub fn family(a: Addr) -> crate::state::Family {
    crate::state::Family::of_addr(&std::net::IpAddr::from(a))
}

/// Whether `net` holds `a`.
pub fn contains(net: &Net, a: Addr) -> bool {
    net.contains(&a)
}

/// Whether a route's destination (`IpNet`, family-aware) holds `a`: never
/// for an IPv6 one (the tracer is IPv4).
pub fn route_contains(net: &ipnet::IpNet, a: Addr) -> bool {
    match net {
        ipnet::IpNet::V4(n) => contains(n, a),
        ipnet::IpNet::V6(_) => false,
    }
}

/// The prefix length of a route's destination (`IpNet`).
pub fn route_prefix_len(net: &ipnet::IpNet) -> u8 {
    net.prefix_len()
}

/// A rule's selector (`IpNet`, family-aware; `None` for "all"): an IPv6
/// one selects no IPv4 packet.
pub fn rule_selects(net: &Option<ipnet::IpNet>, a: Addr) -> bool {
    net.as_ref().is_none_or(|n| route_contains(n, a))
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

/// A host prefix (`/32`) for an address.
pub fn host_net(a: Addr) -> Net {
    Net::new(a, 32).unwrap_or_default()
}

/// An iptables `-s`/`-d` value (`10.0.0.0/8`, `1.2.3.4/32`); None when it
/// is not IPv4 text (then the rule is not evaluated, and said so).
pub fn parse_ipt_net(s: &str) -> Option<Net> {
    match s.split_once('/') {
        Some((a, l)) => {
            let a: Addr = a.parse().ok()?;
            if let Ok(len) = l.parse::<u8>() {
                return Net::new(a, len).ok();
            }
            // A dotted mask (`255.255.255.0`): only contiguous ones.
            let m: Addr = l.parse().ok()?;
            let bits = u32::from(m);
            let len = bits.leading_ones();
            (bits.checked_shl(len).unwrap_or(0) == 0)
                .then(|| Net::new(a, len as u8).ok())
                .flatten()
        }
        None => Some(host_net(s.parse().ok()?)),
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
    crate::inventory::values::parse_addr(s)
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
