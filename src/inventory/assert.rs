//! The `assert:` list of a host or group: flows the admin states the
//! gateway must handle a certain way, read into typed [`Assertion`]s with
//! the location of each item. Checked here for shape and values (at
//! inventory load, so a bad item stops every command before it connects);
//! what the names refer to (`via` a line, `iif` an interface) is checked
//! against the gateway's intent by `check::assert`, still at the item.
//!
//! ```yaml
//! assert:
//!   - {from: 192.168.0.50, to: 100.65.2.10, via: cnc}
//!   - {iif: eth2, from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 80, via: cnc, dnat: 192.168.0.100}
//!   - {iif: eth2, from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 8080, dnat: 192.168.0.100:80}
//! ```
use super::values;
use crate::error::{Location, Result};
use crate::yaml::Node;
use std::net::IpAddr;

const ASSERT_KEYS: &[&str] = &[
    "from", "to", "iif", "proto", "dport", "sport", "via", "dnat", "snat",
];

/// TCP or UDP (the ports need one). Kept apart from `model::Proto`: the
/// inventory sits below the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowProto {
    Tcp,
    Udp,
}

/// One flow assertion: the packet (`from`, `to`, `iif`, `proto`, ports)
/// and what must happen to it (at least one of `via`, `dnat`, `snat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The list item, for every message about it.
    pub location: Location,
    pub from: IpAddr,
    pub to: IpAddr,
    /// Where it comes in (`lo`: sent by the gateway); None: worked out as
    /// `dwprov explain` does.
    pub iif: Option<String>,
    pub proto: Option<FlowProto>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The line (or interface) the connection uses to the outside: the one
    /// the request leaves by, or for a connection to the LAN or the
    /// gateway (a forward), the one its reply leaves by.
    pub via: Option<(String, Location)>,
    /// The destination after DNAT.
    /// The destination after DNAT, and its port when the assertion names one.
    pub dnat: Option<(IpAddr, Option<u16>, Location)>,
    /// The source as it leaves, after source NAT.
    pub snat: Option<(IpAddr, Location)>,
}

/// The assertions of an `assert:` node (None: no list).
pub fn parse(node: Option<&Node>) -> Result<Vec<Assertion>> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in values::seq(node, "assert")? {
        item.check_keys(ASSERT_KEYS, "flow assertion")?;
        let addr = |k: &str| -> Result<Option<(IpAddr, Location)>> {
            item.get(k)
                .map(|n| Ok((IpAddr::V4(values::ipv4(n, k)?), n.location.clone())))
                .transpose()
        };
        let port = |k: &str| item.get(k).map(|n| values::port(n, k)).transpose();
        let from = IpAddr::V4(values::ipv4(
            values::required(item, "from", "flow assertion")?,
            "from",
        )?);
        let to = IpAddr::V4(values::ipv4(
            values::required(item, "to", "flow assertion")?,
            "to",
        )?);
        let iif = match item.get("iif") {
            Some(n) if n.as_str() == Some("lo") => Some("lo".to_string()),
            Some(n) => Some(values::interface(n)?.to_string()),
            None => None,
        };
        let proto = item
            .get("proto")
            .map(|n| {
                values::choice(
                    n,
                    "proto",
                    &[("tcp", FlowProto::Tcp), ("udp", FlowProto::Udp)],
                )
            })
            .transpose()?;
        let (sport, dport) = (port("sport")?, port("dport")?);
        if proto.is_none() && (sport.is_some() || dport.is_some()) {
            return Err(item.error(
                "flow assertion has a port but no `proto`",
                Some("add `proto: tcp` or `proto: udp`".into()),
            ));
        }
        let via = item
            .get("via")
            .map(|n| {
                Ok::<_, crate::error::Error>((
                    values::line_name(n)?.to_string(),
                    n.location.clone(),
                ))
            })
            .transpose()?;
        let dnat = item
            .get("dnat")
            .map(|n| {
                let (a, p) = values::ipv4_endpoint(n, "dnat")?;
                Ok::<_, crate::error::Error>((IpAddr::V4(a), p, n.location.clone()))
            })
            .transpose()?;
        let snat = addr("snat")?;
        if via.is_none() && dnat.is_none() && snat.is_none() {
            return Err(item.error(
                "flow assertion expects nothing",
                Some(
                    "say what must happen: `via: LINE`, `dnat: ADDRESS[:PORT]` and/or `snat: ADDRESS`"
                        .into(),
                ),
            ));
        }
        out.push(Assertion {
            location: item.location.clone(),
            from,
            to,
            iif,
            proto,
            sport,
            dport,
            via,
            dnat,
            snat,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(item: &str) -> Result<Vec<Assertion>> {
        let text = format!("assert:\n  - {item}\n");
        let n = Node::parse(&text, "i.yaml").unwrap();
        parse(n.get("assert"))
    }

    #[test]
    fn assertions_are_typed_and_located() {
        let a = one("{iif: eth2, from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 80, via: cnc, dnat: 192.168.0.100}").unwrap();
        assert_eq!(a.len(), 1);
        let a = &a[0];
        assert_eq!(a.location.line, 2);
        assert_eq!(a.iif.as_deref(), Some("eth2"));
        assert_eq!(a.proto, Some(FlowProto::Tcp));
        assert_eq!((a.sport, a.dport), (None, Some(80)));
        assert_eq!(a.via.as_ref().unwrap().0, "cnc");
        let d = a.dnat.as_ref().unwrap();
        assert_eq!(
            (d.0, d.1),
            (IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 0, 100)), None)
        );
        let a = one(
            "{from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 8080, dnat: 192.168.0.100:80}",
        )
        .unwrap();
        let d = a[0].dnat.as_ref().unwrap();
        assert_eq!(
            (d.0, d.1),
            (
                IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 0, 100)),
                Some(80)
            )
        );
        assert!(parse(None).unwrap().is_empty());
    }

    #[test]
    fn bad_assertions_are_errors_at_the_value() {
        for (item, says) in [
            ("{from: 10.0.0.1, to: 10.0.0.2}", "expects nothing"),
            ("{from: 10.0.0.1, via: cnc}", "`to`"),
            ("{from: 10.0.0.1, to: 10.0.0.300, via: cnc}", "`to`"),
            (
                "{from: 10.0.0.1, to: 10.0.0.2, dport: 80, via: cnc}",
                "no `proto`",
            ),
            (
                "{from: 10.0.0.1, to: 10.0.0.2, proto: icmp, via: cnc}",
                "proto",
            ),
            (
                "{from: 10.0.0.1, to: 10.0.0.2, proto: tcp, dport: 0, via: cnc}",
                "1 to 65535",
            ),
            (
                "{from: 10.0.0.1, to: 10.0.0.2, proto: tcp, dnat: 1.2.3.4:http}",
                "not a port",
            ),
            (
                "{from: 10.0.0.1, to: 10.0.0.2, proto: tcp, dnat: 1.2.3.4:0}",
                "not a port",
            ),
            (
                "{from: 10.0.0.1, to: 10.0.0.2, via: cnc, dnt: 1.2.3.4}",
                "dnt",
            ),
        ] {
            let e = one(item).unwrap_err().to_string();
            assert!(e.contains(says), "{item}: {e}");
            assert!(e.contains("i.yaml:2:"), "{item}: {e}");
        }
    }
}
