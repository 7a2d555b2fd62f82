//! The address family of a rule, route, nexthop or firewall rule: the one
//! home of every family-dependent spelling (`ip -4`/`-6`, nft's `ip`/`ip6`,
//! `iptables` vs `ip6tables`).
//!
//! Why a family read off the addresses and not a field beside them: a
//! value that carries its family (`IpNet`, `IpAddr`) cannot disagree with
//! it, and adds nothing to the serialised state (JSON and YAML output stay
//! byte for byte as before). Rules, routes, nexthops, the nftables model,
//! `model` (the intent), the facts' interface addresses, the agent's
//! facts and the tracer hold `IpNet`/`IpAddr` ([`crate::state::Rule::family`]
//! is its selectors', [`crate::state::Route::family`] its destination's).
//! Still IPv4 by type: the inventory's value checks (the one gate that
//! refuses IPv6), the agent's probes (IPv4 sockets), the iptables model
//! (`iptables` only; `ip6tables` is not read) and method set's
//! `ipv4_addr` sets (`render::nftables::line_sets`). A rule
//! without any address (a fwmark rule) has no address to read its family
//! from: it carries it ([`crate::state::Rule::family`], set by the parsers
//! from the listing's or the batch line's family).
//! Every `ip` command dwprov renders takes its flag from here
//! ([`Family::ip_flag`], [`OWNED`]). The inventory rejects IPv6
//! values and the live parsers leave IPv6 objects foreign, so nothing of
//! family `Inet6` reaches the state today.
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address family, named as iproute2 prints it (`inet`, `inet6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 (the default: [`OWNED`]).
    #[default]
    Inet,
    /// IPv6.
    Inet6,
}

/// The family of every rule, route and address dwprov owns or reads today:
/// the `ip` flag of gather's addresses (`G_IP_FAMILY`), and the first
/// (default) family of gateway/lib.sh's owned listings and batches, IPv4
/// (the inventory rejects IPv6 values, so nothing owned is ever IPv6).
pub const OWNED: Family = Family::Inet;

/// The families gather reads and dwprov manages: [`OWNED`] only. Gather
/// lists each one's rules and routes in sections of its own
/// (`state::ip::fact_sections_of`: `rules6`, `routes6` for IPv6), read
/// each as its family's. The gateway side already takes a list
/// ([`ip_flags`]: lib.sh's `IP_FAMILIES`): every owned listing loops over it, and a batch runs each
/// family's lines with its flag, a line of a family after the first
/// starting with that flag ([`Family::batch_prefix`]). What a second
/// family still needs is named in docs/ARCHITECTURE.md ("IPv6").
pub const MANAGED: &[Family] = &[OWNED];

/// [`MANAGED`]'s `ip` flags, space-separated (`-4`): gateway/lib.sh's
/// `IP_FAMILIES`, and boot.sh's.
pub fn ip_flags() -> String {
    MANAGED
        .iter()
        .map(|f| f.ip_flag())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an address is of a family dwprov manages ([`MANAGED`]): one of
/// another family is foreign, skipped where it is read.
pub fn is_managed(addr: &IpAddr) -> bool {
    MANAGED.contains(&Family::of_addr(addr))
}

impl Family {
    /// Both families, in the order dwprov lists them.
    pub const ALL: [Family; 2] = [Family::Inet, Family::Inet6];

    /// iproute2's family flag: `-4` or `-6`.
    pub fn ip_flag(self) -> &'static str {
        match self {
            Family::Inet => "-4",
            Family::Inet6 => "-6",
        }
    }

    /// What an `ip -batch` line of this family starts with where dwprov
    /// writes one (the apply's batch, boot's ip.batch, the snapshot's
    /// listings): nothing for [`MANAGED`]'s first family, else the flag and
    /// a space (`-6 route add ...`), which gateway/lib.sh's `batch_ip` takes
    /// off and runs with (`ip -batch` itself has no per-line family).
    pub fn batch_prefix(self) -> &'static str {
        if MANAGED.first() == Some(&self) {
            ""
        } else {
            match self {
                Family::Inet => "-4 ",
                Family::Inet6 => "-6 ",
            }
        }
    }

    /// A batch line's family flag ([`Family::batch_prefix`]) and the rest
    /// of the line: `(None, line)` for a line without one.
    pub fn split_batch_prefix(line: &str) -> (Option<Family>, &str) {
        for f in Family::ALL {
            if let Some(rest) = line.strip_prefix(f.ip_flag()) {
                if let Some(rest) = rest.strip_prefix(' ') {
                    return (Some(f), rest);
                }
            }
        }
        (None, line)
    }

    /// The name iproute2 prints (`ip -j`'s `family` key): `inet`, `inet6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }

    /// nftables' single-family table family: `ip` or `ip6` (dwprov's own
    /// table is `inet`, both at once; a rule's match is `ip`/`ip6 saddr`).
    pub fn nft_family(self) -> &'static str {
        match self {
            Family::Inet => "ip",
            Family::Inet6 => "ip6",
        }
    }

    /// The iptables command of the family: `iptables` or `ip6tables`.
    pub fn iptables_command(self) -> &'static str {
        match self {
            Family::Inet => "iptables",
            Family::Inet6 => "ip6tables",
        }
    }

    /// The longest prefix of the family: 32 or 128 bits.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            Family::Inet => 32,
            Family::Inet6 => 128,
        }
    }

    /// The family's /0 (`ip`'s `all` and `default`).
    pub fn all_net(self) -> ipnet::IpNet {
        match self {
            Family::Inet => ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
            Family::Inet6 => ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
        }
    }

    /// The family of an address.
    pub fn of_addr(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }

    /// The family of a prefix.
    pub fn of_net(net: &ipnet::IpNet) -> Family {
        match net {
            ipnet::IpNet::V4(_) => Family::Inet,
            ipnet::IpNet::V6(_) => Family::Inet6,
        }
    }

    /// The family of an address or prefix as `ip -j` prints it (`1.2.3.0/24`,
    /// `2001:db8::1`, `fe80::/64`); `None` for words (`default`, `all`) and
    /// anything else that is no address.
    pub fn of_text(s: &str) -> Option<Family> {
        let addr = s.split_once('/').map_or(s, |(a, _)| a);
        addr.parse::<IpAddr>().ok().map(|a| Family::of_addr(&a))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses [`Family::name`]'s spelling (`inet`, `inet6`) and the flags'
/// (`-4`, `-6`, `4`, `6`).
impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Family, String> {
        match s {
            "inet" | "-4" | "4" => Ok(Family::Inet),
            "inet6" | "-6" | "6" => Ok(Family::Inet6),
            other => Err(format!("unknown address family {other:?} (inet or inet6)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_round_trips_through_its_names_and_flags() {
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>(), Ok(f));
            assert_eq!(f.ip_flag().parse::<Family>(), Ok(f));
            assert_eq!(f.to_string().parse::<Family>(), Ok(f));
        }
        assert!("inet7".parse::<Family>().is_err());
        assert_eq!(
            serde_json::to_string(&Family::Inet6).ok().as_deref(),
            Some("\"inet6\"")
        );
    }

    #[test]
    fn family_spellings() {
        assert_eq!(Family::Inet.ip_flag(), "-4");
        assert_eq!(Family::Inet6.ip_flag(), "-6");
        assert_eq!(Family::Inet.nft_family(), "ip");
        assert_eq!(Family::Inet6.nft_family(), "ip6");
        assert_eq!(Family::Inet.iptables_command(), "iptables");
        assert_eq!(Family::Inet6.iptables_command(), "ip6tables");
        assert_eq!(MANAGED, &[Family::Inet]);
    }

    #[test]
    fn batch_lines_of_a_later_family_start_with_its_flag() {
        assert_eq!(ip_flags(), "-4");
        assert_eq!(Family::Inet.batch_prefix(), "");
        assert_eq!(Family::Inet6.batch_prefix(), "-6 ");
        assert_eq!(
            Family::split_batch_prefix("-6 route add 2001:db8::/32 dev eth1"),
            (Some(Family::Inet6), "route add 2001:db8::/32 dev eth1")
        );
        assert_eq!(
            Family::split_batch_prefix("-4 rule add fwmark 0x100 lookup 100"),
            (Some(Family::Inet), "rule add fwmark 0x100 lookup 100")
        );
        assert_eq!(
            Family::split_batch_prefix("route add 10.0.0.0/8 dev eth1"),
            (None, "route add 10.0.0.0/8 dev eth1")
        );
        assert_eq!(Family::split_batch_prefix("-6route"), (None, "-6route"));
    }

    #[test]
    fn family_of_text() {
        assert_eq!(Family::of_text("10.0.0.0/8"), Some(Family::Inet));
        assert_eq!(Family::of_text("192.0.2.1"), Some(Family::Inet));
        assert_eq!(Family::of_text("2001:db8::/32"), Some(Family::Inet6));
        assert_eq!(Family::of_text("fe80::1"), Some(Family::Inet6));
        assert_eq!(Family::of_text("default"), None);
        assert_eq!(Family::of_text("all"), None);
        assert_eq!(Family::of_text(""), None);
        let net = "2001:db8::/32".parse::<ipnet::IpNet>().ok();
        assert_eq!(net.map(|n| Family::of_net(&n)), Some(Family::Inet6));
    }
}
