//! The seed's FAQ and the other hazards the inventory alone shows, found by
//! tracing flows on the desired state (so a template override that fixes
//! or breaks a case is judged by what it renders, not by its method name).
use super::live::LiveFacts;
use super::locate;
use super::{Finding, Severity};
use crate::inventory::Host;
use crate::model::{Gateway, Method, Proto};
use crate::render::Rendered;
use crate::trace::addr::{self, Addr};
use crate::trace::{self, End, Flow, World};

/// Above this many destination rules method policy costs throughput
/// (the kernel scans rules linearly; see docs/methods.md).
const POLICY_RULES_WARN: usize = 256;

pub fn findings(
    host: &Host,
    gw: &Gateway,
    rendered: &Rendered,
    facts: Option<&LiveFacts>,
) -> Vec<Finding> {
    findings_in(host, gw, facts, &World::desired(gw, &rendered.desired))
}

/// [`findings`] on the desired world already built (`check_host` shares it).
pub fn findings_in(
    host: &Host,
    gw: &Gateway,
    facts: Option<&LiveFacts>,
    world: &World,
) -> Vec<Finding> {
    let mut out = Vec::new();
    cross_access(host, gw, world, &mut out);
    hairpin(host, gw, world, &mut out);
    route_cache(host, gw, facts, &mut out);
    policy_prefixes(host, gw, &mut out);
    out
}

/// A user of line `m`, for a trace: the first address of its first listed
/// prefix; for the default line without a list, an address no line lists.
fn user_of(gw: &Gateway, m: usize) -> Option<Addr> {
    let line = &gw.lines[m];
    if let Some(p) = line.routes.first() {
        return Some(first_host(p));
    }
    if !line.default {
        return None;
    }
    let listed = |a: Addr| {
        gw.lines
            .iter()
            .any(|l| l.routes.iter().any(|p| addr::contains(p, a)))
    };
    ["192.0.2.10", "198.18.0.10", "203.0.113.200"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .find(|a| {
            !listed(*a)
                && !gw
                    .lines
                    .iter()
                    .filter_map(|l| l.address)
                    .any(|la| addr::contains(&addr::network(&la), *a))
        })
}

fn first_host(p: &addr::Net) -> Addr {
    // Inside the prefix however small (and no overflow at the top).
    let room = p.max_prefix_len() - addr::prefix_len(p);
    let off = match room {
        0..=1 => 0,
        2..=4 => 1,
        _ => 10,
    };
    addr::nth(p, off)
}

fn flow(from: Addr, to: Addr, iif: Option<&str>, proto: Proto, port: u16) -> Flow {
    Flow {
        from,
        to,
        iif: iif.map(str::to_string),
        proto: Some(proto),
        sport: Some(40000),
        dport: Some(port),
    }
}

/// FAQ 1/2: a user of one line reaching a forward through another line's
/// address. Traced for every forward, on every line it listens on, from a
/// user of every other line.
fn cross_access(host: &Host, gw: &Gateway, world: &World, out: &mut Vec<Finding>) {
    for (fi, f) in gw.forwards.iter().enumerate() {
        let mut broken = Vec::new();
        for l in gw.lines.iter().filter(|l| f.lines.contains(&l.name)) {
            // A dynamic line without an address now has nothing to reach.
            let Some(la) = l.address else { continue };
            for (m, other) in gw.lines.iter().enumerate() {
                if other.name == l.name {
                    continue;
                }
                let Some(user) = user_of(gw, m) else { continue };
                let fl = flow(user, addr::host(&la), Some(&l.interface), f.proto, f.port);
                let Ok(t) = trace::explain(&gw.host, world, &fl) else {
                    continue;
                };
                if !t.verdict.ok && matches!(t.forward.end, End::Out { .. }) {
                    broken.push(format!(
                        "a {} user ({user}) through line {}'s address {}",
                        other.name,
                        l.name,
                        addr::host(&la)
                    ));
                }
            }
        }
        if broken.is_empty() {
            continue;
        }
        out.push(Finding::new(
            Severity::Warning,
            "cross-access",
            Some(locate::item(host, "forwards", fi)),
            format!(
                "forward {} {} -> {}: cross access fails with method {}: {}",
                f.proto.as_str(),
                f.port,
                f.to,
                method_name(gw.method),
                broken.join("; ")
            ),
            "the server's reply is routed before conntrack undoes the DNAT, so the source-return rule \
             `from <line address>` cannot match it: it leaves by the line of its destination with the other \
             line's address, and that ISP drops it (the seed's FAQ 1/2; `dwprov explain` shows the path)",
            "use `method: fwmark` (CONNMARK routes the reply by the line it came in on), or limit the \
             forward to one line with `lines: [...]` if only that line's users need it",
        ));
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Static => "static",
        Method::Policy => "policy",
        Method::Fwmark => "fwmark",
        Method::Set => "set",
    }
}

/// FAQ 3: a LAN client reaching a forward through a public address without
/// hairpin NAT (the server answers the client directly).
fn hairpin(host: &Host, gw: &Gateway, world: &World, out: &mut Vec<Finding>) {
    for (fi, f) in gw.forwards.iter().enumerate() {
        let Some(lan) = gw
            .lan
            .iter()
            .find(|l| addr::contains(&addr::network(&l.address), f.to))
        else {
            continue;
        };
        // A client of that LAN other than the gateway and the server.
        let Some(client) = (2..40).map(|k| addr::nth(&lan.address, k)).find(|a| {
            *a != addr::host(&lan.address) && *a != f.to && addr::contains(&lan.address, *a)
        }) else {
            continue;
        };
        let Some((l, la)) = gw
            .lines
            .iter()
            .filter(|l| f.lines.contains(&l.name))
            .find_map(|l| Some((l, l.address?)))
        else {
            continue;
        };
        let fl = flow(
            client,
            addr::host(&la),
            Some(&lan.interface),
            f.proto,
            f.port,
        );
        let Ok(t) = trace::explain(&gw.host, world, &fl) else {
            continue;
        };
        if t.verdict.ok || !t.verdict.summary.contains("FAQ 3") {
            continue;
        }
        let loc = if host.vars.get("hairpin").is_some() {
            locate::key(host, "hairpin")
        } else {
            locate::item(host, "forwards", fi)
        };
        out.push(Finding::new(
            Severity::Warning,
            "no-hairpin",
            Some(loc),
            format!(
                "forward {} {} -> {}: LAN clients ({} on {}) reaching it through line {}'s address {} get no answer",
                f.proto.as_str(),
                f.port,
                f.to,
                addr::network(&lan.address),
                lan.interface,
                l.name,
                addr::host(&la)
            ),
            "the gateway DNATs the request to the server, which is on the client's own subnet: it answers the \
             client directly, from its private address, and the client drops a reply it never asked for \
             (the seed's FAQ 3)",
            "set `hairpin: true` (SNAT of the LAN to the gateway's LAN address for the forwards)",
        ));
    }
}

/// FAQ 2: a kernel before 3.6 caches IPv4 routes.
fn route_cache(host: &Host, gw: &Gateway, facts: Option<&LiveFacts>, out: &mut Vec<Finding>) {
    let Some(f) = facts else { return };
    let kernel = f.facts.kernel.as_str();
    if crate::boot::has_route_cache(kernel) != Some(true) || gw.lines.len() < 2 {
        return;
    }
    let (flush, note) = crate::boot::route_cache_decision(gw, Some(kernel));
    let loc = host
        .vars
        .get("route_cache_flush")
        .map(|_| locate::key(host, "route_cache_flush"));
    out.push(Finding::new(
        if flush { Severity::Info } else { Severity::Warning },
        "route-cache",
        loc,
        format!("kernel {kernel} caches IPv4 routes (before 3.6): {note}"),
        "the cache remembers one route per destination: cross access to a forward works through one line's \
         address at a time and switches every few minutes (the seed's FAQ 2)",
        if flush {
            "nothing: dwprov installs the seed's flush loop (`route_cache_flush`); a kernel of 3.6 or later needs none"
        } else {
            "leave `route_cache_flush` unset or set it true, or run a kernel of 3.6 or later"
        },
    ));
}

/// Method policy renders one `ip rule to` per prefix.
fn policy_prefixes(host: &Host, gw: &Gateway, out: &mut Vec<Finding>) {
    if gw.method != Method::Policy {
        return;
    }
    for (i, l) in gw.lines.iter().enumerate() {
        if l.routes.len() <= POLICY_RULES_WARN {
            continue;
        }
        out.push(Finding::new(
            Severity::Warning,
            "policy-prefixes",
            Some(locate::line_routes(host, i)),
            format!("method policy renders {} `ip rule to` rules for line {}", l.routes.len(), l.name),
            "the kernel scans ip rules one by one for every packet: the project's data-plane bench \
             (scripts/bench-dataplane.sh, 64-byte UDP forwarded, docs/methods.md) measured +22.7 us of CPU \
             per packet over plain NAT with 3,894 rules (8x the whole cost of a NAT gateway's packet; \
             +0.01 us as routes, method static) and +300 us at 16,000 (about 100x), loaded in 1.3 s and 13.8 s",
            "use `method: static` (routes in main) or `method: fwmark` (routes, plus cross access to forwards)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Templates;

    fn check(method: &str, extra: &str, kernel: Option<&str>) -> Vec<Finding> {
        let text = format!(
            "all:\n  hosts:\n    gw1:\n      connection: local\n      method: {method}\n      lan:\n        - {{interface: eth0, address: 192.168.0.1/24}}\n      lines:\n        - {{name: ctc, interface: eth1, address: 198.51.100.2/24, gateway: 198.51.100.1, default: true, routes: [100.64.0.0/16]}}\n        - {{name: cnc, interface: eth2, address: 203.0.113.2/24, gateway: 203.0.113.1, routes: [100.65.0.0/16]}}\n{extra}"
        );
        let inv = crate::inventory::parse(&text, std::path::Path::new("i.yaml")).unwrap();
        let h = &inv.hosts[0];
        let gw = crate::model::build(h).unwrap();
        let r = crate::render::render(&gw, &Templates::load(None).unwrap(), None).unwrap();
        let lf = kernel.map(|k| LiveFacts {
            facts: crate::facts::Facts {
                kernel: k.into(),
                ..Default::default()
            },
            ..Default::default()
        });
        findings(h, &gw, &r, lf.as_ref())
    }

    const FWD: &str = "      forwards:\n        - {proto: tcp, port: 80, to: 192.168.0.100}\n";

    #[test]
    fn cross_access_is_found_by_tracing_and_located_at_the_forward() {
        for m in ["static", "policy"] {
            let fs = check(m, FWD, None);
            let f = fs.iter().find(|f| f.code == "cross-access").expect(m);
            assert_eq!(f.severity, Severity::Warning);
            assert_eq!(f.location.as_ref().unwrap().line, 12);
            assert!(f.message.contains(&format!("method {m}")), "{}", f.message);
            assert!(
                f.message
                    .contains("a cnc user (100.65.0.10) through line ctc's address 198.51.100.2"),
                "{}",
                f.message
            );
        }
        assert!(check("fwmark", FWD, None)
            .iter()
            .all(|f| f.code != "cross-access"));
        // a forward on one line only has no cross access to fail
        let one =
            "      forwards:\n        - {proto: tcp, port: 80, to: 192.168.0.100, lines: [ctc]}\n";
        let fs = check("static", one, None);
        let f = fs.iter().find(|f| f.code == "cross-access").unwrap();
        assert!(!f.message.contains("cnc's address"), "{}", f.message);
    }

    #[test]
    fn no_hairpin_is_found_at_the_hairpin_key() {
        let fs = check("fwmark", &format!("{FWD}      hairpin: false\n"), None);
        let f = fs.iter().find(|f| f.code == "no-hairpin").expect("found");
        assert_eq!(f.location.as_ref().unwrap().line, 13);
        assert!(
            f.message.contains("192.168.0.0/24 on eth0"),
            "{}",
            f.message
        );
        let fs = check("fwmark", &format!("{FWD}      hairpin: true\n"), None);
        assert!(fs.is_empty(), "{fs:#?}");
        // without the key, at the forward
        let f = check("fwmark", FWD, None)
            .into_iter()
            .find(|f| f.code == "no-hairpin")
            .unwrap();
        assert_eq!(f.location.unwrap().line, 12);
    }

    #[test]
    fn old_kernels_and_many_policy_rules() {
        let fs = check("fwmark", "", Some("3.2.0-4-amd64"));
        let f = fs.iter().find(|f| f.code == "route-cache").unwrap();
        assert_eq!(f.severity, Severity::Info);
        let fs = check(
            "fwmark",
            "      route_cache_flush: false\n",
            Some("3.2.0-4-amd64"),
        );
        let f = fs.iter().find(|f| f.code == "route-cache").unwrap();
        assert_eq!(
            (f.severity, f.location.as_ref().unwrap().line),
            (Severity::Warning, 11)
        );
        assert!(check("fwmark", "", Some("6.1.0")).is_empty());
        assert!(check("policy", "", None)
            .iter()
            .all(|f| f.code != "policy-prefixes"));
        let many: Vec<String> = (0..300)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        let text = format!(
            "all:\n  hosts:\n    gw1:\n      connection: local\n      method: policy\n      lan:\n        - {{interface: eth0, address: 192.168.0.1/24}}\n      lines:\n        - {{name: ctc, interface: eth1, address: 198.51.100.2/24, gateway: 198.51.100.1, default: true}}\n        - {{name: cnc, interface: eth2, address: 203.0.113.2/24, gateway: 203.0.113.1,\n           routes: [{}]}}\n",
            many.join(", ")
        );
        let inv = crate::inventory::parse(&text, std::path::Path::new("i.yaml")).unwrap();
        let h = &inv.hosts[0];
        let gw = crate::model::build(h).unwrap();
        let r = crate::render::render(&gw, &Templates::load(None).unwrap(), None).unwrap();
        let fs = findings(h, &gw, &r, None);
        let f = fs
            .iter()
            .find(|f| f.code == "policy-prefixes")
            .expect("found");
        assert!(
            f.message.contains("300 `ip rule to` rules for line cnc"),
            "{}",
            f.message
        );
        assert_eq!(f.location.as_ref().unwrap().line, 11);
    }
}
