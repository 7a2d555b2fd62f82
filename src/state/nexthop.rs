//! Nexthop objects (issue 11): the routes that carry a monitored line's
//! traffic use `nhid N`, so the agent fails a line over by repointing one
//! object. Parsed from `ip -j -d nexthop show` (live; without `-4`, which
//! hides groups) and from the `nexthop add` lines of a rendered batch. An
//! IPv6 object (its gateway) is foreign and skipped; [`Nexthop::family`]
//! names an object's family.
use crate::error::{Error, Result};
use crate::fact::FactSection;

/// The gather section of nexthop objects ([`crate::kind::Kind::Nexthops`]):
/// every family's, since a nexthop's family is its own.
pub const FACT_SECTIONS: &[FactSection] =
    &[FactSection::command("nexthops", "ip -N -j -d nexthop show")];
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// What a nexthop object points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hop {
    /// A gateway on a device; its family is the gateway's.
    Via { via: IpAddr, dev: String },
    /// A point-to-point line's (issue 14): `dev IF`, no gateway.
    Dev { dev: String },
    /// Members `(id, weight)`, in the kernel's order.
    Group(Vec<(u32, u32)>),
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Via { via, dev } => write!(f, "via {via} dev {dev}"),
            Hop::Dev { dev } => write!(f, "dev {dev}"),
            Hop::Group(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(id, w)| {
                        if *w == 1 {
                            id.to_string()
                        } else {
                            format!("{id},{w}")
                        }
                    })
                    .collect();
                write!(f, "group {}", parts.join("/"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Nexthop {
    pub id: u32,
    pub proto: u8,
    pub hop: Hop,
}

impl crate::ownership::Protocol for Nexthop {
    fn protocol(&self) -> u8 {
        self.proto
    }
}

impl Nexthop {
    /// The object's address family, read off its gateway; `None` for a
    /// device-only hop and a group, which `ip nexthop` keeps without one
    /// (`ip -4` refuses a group: gateway/lib.sh's `ip_batch` runs a batch
    /// with nexthop lines without the flag).
    pub fn family(&self) -> Option<crate::state::Family> {
        match self.hop {
            Hop::Via { via, .. } => Some(crate::state::Family::of_addr(&via)),
            Hop::Dev { .. } | Hop::Group(_) => None,
        }
    }

    /// The arguments after `ip nexthop add|replace`.
    pub fn to_batch(&self) -> String {
        format!("id {} {} proto {}", self.id, self.hop, self.proto)
    }
}

/// `A,W/B/...` of `group`.
fn parse_group(s: &str) -> Option<Vec<(u32, u32)>> {
    let mut out = Vec::new();
    for m in s.split('/') {
        let (id, w) = match m.split_once(',') {
            Some((id, w)) => (id.parse().ok()?, w.parse().ok()?),
            None => (m.parse().ok()?, 1),
        };
        out.push((id, w));
    }
    (!out.is_empty()).then_some(out)
}

/// The words after `nexthop add` in a batch: `id N via G dev D proto P` or
/// `id N group A,W/B proto P`.
pub fn parse_words(w: &[&str]) -> std::result::Result<Nexthop, String> {
    let (mut id, mut via, mut dev, mut group, mut proto) = (None, None, None, None, 3u8);
    let mut i = 0;
    while i < w.len() {
        let v = *w
            .get(i + 1)
            .ok_or_else(|| format!("`{}` needs a value", w[i]))?;
        match w[i] {
            "id" => id = Some(v.parse::<u32>().map_err(|_| "bad nexthop id")?),
            "via" => via = Some(v.parse::<IpAddr>().map_err(|_| "bad via address")?),
            "dev" => dev = Some(v.to_string()),
            "group" => group = Some(parse_group(v).ok_or("bad group")?),
            "proto" | "protocol" => proto = v.parse().map_err(|_| "bad proto")?,
            other => return Err(format!("unsupported nexthop word `{other}`")),
        }
        i += 2;
    }
    let id = id.ok_or("a nexthop needs an id")?;
    let hop = match (via, dev, group) {
        (Some(via), Some(dev), None) => Hop::Via { via, dev },
        (None, Some(dev), None) => Hop::Dev { dev },
        (None, None, Some(g)) => Hop::Group(g),
        _ => return Err("a nexthop is `via ADDR dev IF`, `dev IF` or `group ...`".into()),
    };
    Ok(Nexthop { id, proto, hop })
}

/// Split the `nexthop add ...` lines off an `ip -batch` text: the nexthops,
/// and the text without them (blank lines in their place, so the line
/// numbers of errors in the rest stay right).
pub fn split_batch(text: &str, what: &str) -> Result<(Vec<Nexthop>, Option<String>)> {
    if !text.contains("nexthop ") {
        return Ok((Vec::new(), None));
    }
    let mut out = Vec::new();
    let mut rest = String::with_capacity(text.len());
    for (n, raw) in text.lines().enumerate() {
        let words: Vec<&str> = raw.split_whitespace().collect();
        if let ["nexthop", "add", w @ ..] = words.as_slice() {
            out.push(
                parse_words(w).map_err(|m| Error::parse(what, n + 1, format!("{m}: `{raw}`")))?,
            );
            rest.push('\n');
        } else {
            rest.push_str(raw);
            rest.push('\n');
        }
    }
    Ok((out, Some(rest)))
}

/// Parse `ip -j -d nexthop show` (IPv4 and groups; others are skipped).
pub fn parse_json(text: &str) -> Result<Vec<Nexthop>> {
    const WHAT: &str = "ip -j nexthop output";
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value =
        serde_json::from_str(t).map_err(|e| Error::parse(WHAT, e.line(), e.to_string()))?;
    let Some(items) = v.as_array() else {
        return Err(Error::parse(WHAT, 1, "not a JSON list".to_string()));
    };
    let mut out = Vec::new();
    for (i, o) in items.iter().enumerate() {
        let bad = |m: &str| Error::parse(WHAT, 1, format!("entry {i}: {m}"));
        let id = o
            .get("id")
            .and_then(|x| x.as_u64())
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad("no id"))?;
        let proto = match o.get("protocol") {
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "unspec" => 0,
                "redirect" => 1,
                "kernel" => 2,
                "boot" => 3,
                "static" => 4,
                // rt_protos.d names dwprov's protocol when `-N` is not honoured.
                s if s == crate::ownership::ROUTE_PROTO_NAME => crate::ownership::ROUTE_PROTO,
                s => s.parse().unwrap_or(0),
            },
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().and_then(|x| u8::try_from(x).ok()).unwrap_or(0)
            }
            _ => 0,
        };
        let hop = if let Some(g) = o.get("group").and_then(|g| g.as_array()) {
            let mut m = Vec::new();
            for e in g {
                let mid = e
                    .get("id")
                    .and_then(|x| x.as_u64())
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| bad("group member without id"))?;
                // `ip -j` leaves weight 1 out.
                let w = e.get("weight").and_then(|x| x.as_u64()).unwrap_or(1) as u32;
                m.push((mid, w));
            }
            Hop::Group(m)
        } else {
            let via = o.get("gateway").and_then(|x| x.as_str());
            let dev = o.get("dev").and_then(|x| x.as_str());
            // A gateway of a family dwprov does not manage (IPv6 today,
            // state::family::OWNED) is foreign: skipped, as rules and routes.
            let managed = crate::state::family::is_managed;
            match (
                via.and_then(|v| v.parse::<IpAddr>().ok()).filter(managed),
                dev,
            ) {
                (Some(via), Some(dev)) => Hop::Via {
                    via,
                    dev: dev.to_string(),
                },
                // Point-to-point (issue 14); an IPv6 gateway is not ours.
                (None, Some(dev)) if via.is_none() && o.get("blackhole").is_none() => Hop::Dev {
                    dev: dev.to_string(),
                },
                // IPv6, blackhole: not dwprov's kind.
                _ => continue,
            }
        };
        out.push(Nexthop { id, proto, hop });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on this machine (iproute2 6.1, kernel 6.x).
    const LIVE: &str = r#"[{"id":20001,"gateway":"10.9.0.2","dev":"v0","scope":"link","protocol":"201","flags":[]},{"id":20002,"gateway":"10.8.0.2","dev":"v1","scope":"link","protocol":"201","flags":[]},{"id":20100,"group":[{"id":20001,"weight":2},{"id":20002}],"scope":"global","protocol":"201","flags":[]},{"id":7,"gateway":"fe80::1","dev":"v1","protocol":"unspec","flags":[]}]"#;

    #[test]
    fn live_and_rendered_agree() {
        let live = parse_json(LIVE).unwrap();
        assert_eq!(live.len(), 3);
        let named = parse_json(&LIVE.replace("\"201\"", "\"dwprov\"")).unwrap();
        assert_eq!(named, live);
        let (batch, rest) = split_batch(
            "# x\nnexthop add id 20001 via 10.9.0.2 dev v0 proto 201\nnexthop add id 20002 via 10.8.0.2 dev v1 proto 201\nnexthop add id 20100 group 20001,2/20002 proto 201\nroute add default nhid 20100 proto 201\n",
            "t",
        )
        .unwrap();
        assert_eq!(batch, live);
        assert_eq!(
            rest.unwrap().lines().nth(4),
            Some("route add default nhid 20100 proto 201")
        );
        assert_eq!(live[2].to_batch(), "id 20100 group 20001,2/20002 proto 201");
    }

    #[test]
    fn bad_lines_are_located() {
        let e = split_batch("\nnexthop add id x via 1.2.3.4 dev a\n", "t").unwrap_err();
        assert!(e.to_string().contains("t, line 2"), "{e}");
        assert!(parse_words(&["id", "1", "via", "1.2.3.4"]).is_err());
        assert!(parse_json("{").is_err());
        assert!(parse_json("").unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,400}") {
            let _ = parse_json(&s);
            let _ = split_batch(&s, "p");
        }

        #[test]
        fn nexthop_like_input_never_panics(
            j in r#"\[\{("(id|gateway|dev|group|protocol|weight)":("[0-9a-z./]{0,12}"|[0-9]{1,12}|\[\{"id":[0-9]{1,11}(,"weight":[0-9]{1,11})?\}\]|null),?){0,5}\}\]"#,
            b in r"nexthop add( (id|via|dev|group|proto) [0-9a-z./,]{0,12}){0,5}",
        ) {
            let _ = parse_json(&j);
            let _ = split_batch(&b, "p");
        }
    }

    #[test]
    fn a_point_to_point_nexthop_is_dev_only() {
        let n = parse_words(&["id", "20002", "dev", "eth2", "proto", "201"]).unwrap();
        assert_eq!(n.hop, Hop::Dev { dev: "eth2".into() });
        assert_eq!(n.to_batch(), "id 20002 dev eth2 proto 201");
        let live =
            parse_json(r#"[{"id":20002,"dev":"eth2","scope":"host","protocol":"201","flags":[]}]"#)
                .unwrap();
        assert_eq!(live, vec![n]);
        let bh = parse_json(r#"[{"id":5,"blackhole":null,"protocol":"boot","flags":[]}]"#).unwrap();
        assert!(bh.is_empty(), "{bh:?}");
    }
}
