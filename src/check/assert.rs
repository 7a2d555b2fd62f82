//! Flow assertions (`assert:` of a host or group): what the admin says
//! must happen to a flow, checked three ways.
//!
//! - Offline, by `check`: the flow traced on the desired state.
//! - Live, by `dwprov verify` and after every apply: the flow traced on
//!   the gathered state (the marks and NAT the firewall sets, as the tracer
//!   models them), and each leg's routing decision asked of the kernel with
//!   `ip route get ... from ... iif ... mark ...` (`gateway/verify-flows.sh`):
//!   the kernel's answer decides the line, so a tracer mistake cannot hide
//!   a wrong route.
//! - A failed assertion after an apply fails it, and the commit-confirmed
//!   apply reverts the gateway (`fleet::apply_host`; with `--no-confirm`
//!   there is nothing to revert to: it only fails).
//!
//! `via` names the line (or an interface) the connection uses to the
//! outside: the one the request leaves by; for a connection to the LAN or
//! to the gateway itself (a forward, a service), the one its reply leaves
//! by. `dnat` is the request's destination after DNAT, `snat` its source
//! as it leaves.
use super::{Finding, Severity};
use crate::error::{exit, Error, Location, Result};
use crate::facts::Facts;
use crate::inventory::assert::{Assertion, FlowProto};
use crate::inventory::Host;
use crate::model::{Gateway, Proto};
use crate::trace::addr::Addr;
use crate::trace::fib::Query;
use crate::trace::{self, End, Flow, Leg, Trace, World};
use crate::transport::{ConnectOptions, Transport};
use std::fmt::Write;
use std::path::Path;

/// The gateway-side program asking the kernel.
pub const VERIFY_FLOWS_SH: &str = include_str!("../../gateway/verify-flows.sh");

/// An assertion with its flow, its `via` checked against the gateway.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub assertion: Assertion,
    pub flow: Flow,
}

/// The assertions of `host`, with `via` and `iif` checked against `gw`'s
/// lines and interfaces (a located error at the value otherwise).
pub fn resolve(host: &Host, gw: &Gateway) -> Result<Vec<Resolved>> {
    let list = crate::inventory::assert::parse(host.vars.get("assert"))?;
    let names: Vec<&str> = gw
        .lines
        .iter()
        .map(|l| l.name.as_str())
        .chain(gw.lines.iter().map(|l| l.interface.as_str()))
        .chain(gw.lan.iter().map(|l| l.interface.as_str()))
        .collect();
    let mut out = Vec::new();
    for a in list {
        if let Some((v, at)) = &a.via {
            if !names.contains(&v.as_str()) {
                let dym = crate::yaml::did_you_mean(v, &names)
                    .map(|d| format!("did you mean `{d}`? "))
                    .unwrap_or_default();
                return Err(Error::Input {
                    location: at.clone(),
                    message: format!(
                        "`via`: `{}` is no line or interface of host {}",
                        crate::escape::value(v),
                        host.name
                    ),
                    hint: Some(format!("{dym}lines and interfaces: {}", names.join(", "))),
                });
            }
        }
        let flow = Flow {
            from: a.from,
            to: a.to,
            iif: a.iif.clone(),
            proto: a.proto.map(|p| match p {
                FlowProto::Tcp => Proto::Tcp,
                FlowProto::Udp => Proto::Udp,
            }),
            sport: a.sport,
            dport: a.dport,
        };
        out.push(Resolved { assertion: a, flow });
    }
    Ok(out)
}

/// Where a leg went, as the kernel (or the tracer) decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    Out { dev: String },
    Local,
    Dropped(String),
}

fn way_of(leg: &Leg) -> Way {
    match &leg.end {
        End::Out { dev, .. } => Way::Out { dev: dev.clone() },
        End::Local { .. } => Way::Local,
        End::Dropped { why } => Way::Dropped(why.clone()),
    }
}

/// What happened to an asserted flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// The line (or interface) used to the outside, or why none.
    pub via: std::result::Result<String, String>,
    /// The destination after DNAT, with its port when the flow has one.
    pub dnat: Option<(Addr, Option<u16>)>,
    pub snat: Option<Addr>,
}

/// `got` of a trace, with each leg's way as given (the kernel's, live).
fn got(gw: &Gateway, t: &Trace, fwd: &Way, reply: Option<&Way>) -> Got {
    let line_of = |dev: &str| {
        gw.lines
            .iter()
            .find(|l| l.interface == dev)
            .map(|l| l.name.clone())
    };
    let via = match (fwd, reply) {
        (Way::Dropped(why), _) => Err(format!("dropped: {why}")),
        (Way::Out { dev }, _) if line_of(dev).is_some() => Ok(line_of(dev).unwrap_or_default()),
        (_, Some(Way::Out { dev })) => Ok(line_of(dev).unwrap_or_else(|| dev.clone())),
        (_, Some(Way::Dropped(why))) => Err(format!("the reply is dropped: {why}")),
        (Way::Out { dev }, _) => Ok(dev.clone()),
        (Way::Local, _) => Err("delivered to the gateway itself, no reply out".into()),
    };
    let snat = match &t.forward.end {
        End::Out { src, .. } => Some(*src),
        _ => None,
    };
    Got {
        via,
        dnat: t.forward.dnat,
        snat,
    }
}

/// One assertion checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    #[serde(serialize_with = "super::ser_location_plain")]
    pub location: Location,
    pub flow: String,
    pub ok: bool,
    pub expected: String,
    pub got: String,
    /// Live: each leg's `ip route get` and the kernel's answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel: Vec<String>,
}

/// `tcp 100.65.1.10 -> 203.0.113.2:80 in on eth2`.
pub fn flow_text(f: &Flow) -> String {
    let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}{}{} -> {}{}{}",
        f.proto
            .map(|p| format!("{} ", p.as_str()))
            .unwrap_or_default(),
        f.from,
        port(f.sport),
        f.to,
        port(f.dport),
        match f.iif.as_deref() {
            Some("lo") => " sent by the gateway".to_string(),
            Some(i) => format!(" in on {i}"),
            None => String::new(),
        }
    )
}

fn compare(r: &Resolved, g: &Got) -> Checked {
    let a = &r.assertion;
    let mut expected = Vec::new();
    let mut seen = Vec::new();
    let mut ok = true;
    if let Some((v, _)) = &a.via {
        expected.push(format!("via {v}"));
        match &g.via {
            Ok(x) => {
                seen.push(format!("via {x}"));
                ok &= x == v;
            }
            Err(why) => {
                seen.push(why.clone());
                ok = false;
            }
        }
    }
    let endpoint = |a: Addr, p: Option<u16>| match p {
        Some(p) => format!("{a}:{p}"),
        None => a.to_string(),
    };
    // A `dnat` without a port asks for the address only.
    let dnat = a.dnat.as_ref().map(|(w, wp, _)| {
        let have = g
            .dnat
            .map(|(h, hp)| (h, if wp.is_some() { hp } else { None }));
        (
            format!("dnat {}", endpoint(*w, *wp)),
            have.map(|(h, hp)| format!("dnat {}", endpoint(h, hp)))
                .unwrap_or_else(|| "no dnat".into()),
            have == Some((*w, *wp)),
        )
    });
    let snat = a.snat.as_ref().map(|(w, _)| {
        (
            format!("snat {w}"),
            g.snat
                .map(|h| format!("snat {h}"))
                .unwrap_or_else(|| "no snat".into()),
            g.snat == Some(*w),
        )
    });
    for (e, s, good) in [dnat, snat].into_iter().flatten() {
        expected.push(e);
        seen.push(s);
        ok &= good;
    }
    Checked {
        location: a.location.clone(),
        flow: flow_text(&r.flow),
        ok,
        expected: expected.join(", "),
        got: seen.join(", "),
        kernel: Vec::new(),
    }
}

/// Each assertion traced on `world` (no kernel asked).
pub fn traced(gw: &Gateway, world: &World, list: &[Resolved]) -> Vec<Checked> {
    list.iter()
        .map(|r| match trace::explain(&gw.host, world, &r.flow) {
            Ok(t) => {
                let fwd = way_of(&t.forward);
                let reply = t.reply.as_ref().map(way_of);
                compare(r, &got(gw, &t, &fwd, reply.as_ref()))
            }
            Err(e) => failed_to_trace(r, &e),
        })
        .collect()
}

fn failed_to_trace(r: &Resolved, e: &Error) -> Checked {
    Checked {
        location: r.assertion.location.clone(),
        flow: flow_text(&r.flow),
        ok: false,
        expected: "a flow the tracer can follow".into(),
        got: e.to_string(),
        kernel: Vec::new(),
    }
}

/// `check`'s findings: the assertions that fail on the desired state.
pub fn findings(host: &Host, gw: &Gateway, world: &World) -> Vec<Finding> {
    let list = match resolve(host, gw) {
        Ok(l) => l,
        Err(e) => {
            return vec![Finding::new(
                Severity::Error,
                "assert",
                None,
                e.to_string(),
                "a flow assertion that names nothing cannot be checked",
                "name a line or interface of this gateway",
            )]
        }
    };
    traced(gw, world, &list)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| {
            Finding::new(
                Severity::Error,
                "assert",
                Some(c.location),
                format!(
                    "flow {}: expected {}, got {}",
                    c.flow, c.expected, c.got
                ),
                "the desired state, traced, does not do what this assertion says; the apply would fail its \
                 live check and revert (`dwprov explain` with this flow shows the path)",
                "change the inventory (lines' routes, policies, forwards, method) or the assertion",
            )
        })
        .collect()
}

/// The kernel's answer to a query, `ip -o route get`'s line.
pub fn parse_answer(rc: i32, text: &str) -> Way {
    if rc != 0 {
        return Way::Dropped(text.trim().to_string());
    }
    let w: Vec<&str> = text.split_whitespace().collect();
    let after = |k: &str| {
        w.iter()
            .position(|x| *x == k)
            .and_then(|i| w.get(i + 1))
            .map(|s| s.to_string())
    };
    match w.first().copied() {
        Some("local" | "broadcast" | "anycast" | "multicast") => Way::Local,
        Some(k @ ("unreachable" | "blackhole" | "prohibit" | "throw")) => Way::Dropped(k.into()),
        _ => match after("dev") {
            Some(dev) if dev == "lo" => Way::Local,
            Some(dev) => Way::Out { dev },
            None => Way::Dropped(text.trim().to_string()),
        },
    }
}

/// The command verify-flows.sh runs for a query, for messages.
fn route_get(q: &Query) -> String {
    format!(
        "ip route get {} from {}{} mark {:#x}",
        q.dst,
        q.src,
        q.iif
            .as_deref()
            .map(|i| format!(" iif {i}"))
            .unwrap_or_default(),
        q.mark
    )
}

/// `N FAMILY DST SRC IIF MARK` for a query, from typed values only (FAMILY:
/// `ip`'s flag for the destination's family, `-4`).
fn query_line(n: usize, q: &Query) -> String {
    format!(
        "{n} {} {} {} {} {:#x}",
        crate::trace::addr::family(q.dst).ip_flag(),
        q.dst,
        q.src,
        q.iif.as_deref().unwrap_or("-"),
        q.mark
    )
}

/// Each assertion on the live state: traced on the gathered `facts`, each
/// leg's routing decision asked of the kernel over `t`.
pub fn live(
    gw: &Gateway,
    facts: &Facts,
    list: &[Resolved],
    t: &mut dyn Transport,
) -> Result<Vec<Checked>> {
    let world = World::live(Some(gw), facts);
    let traces: Vec<Result<Trace>> = list
        .iter()
        .map(|r| trace::explain(&gw.host, &world, &r.flow))
        .collect();
    // The queries: (trace index, leg) for each leg with a decision.
    let mut queries = String::new();
    let mut n = 0usize;
    for tr in traces.iter().flatten() {
        for leg in std::iter::once(&tr.forward).chain(tr.reply.as_ref()) {
            if let Some(d) = &leg.decision {
                let iif_ok = d
                    .query
                    .iif
                    .as_deref()
                    .is_none_or(|i| crate::inventory::values::interface_name(i).is_ok());
                if iif_ok {
                    let _ = writeln!(queries, "{}", query_line(n, &d.query));
                }
            }
            n += 1;
        }
    }
    let mut answers = std::collections::HashMap::new();
    if !queries.is_empty() {
        let script = format!(
            "Q={}\n{VERIFY_FLOWS_SH}",
            crate::converge::sh_quote(&queries)
        );
        let out = t.run_script(&script)?;
        if out.status != 0 {
            return Err(Error::Remote {
                host: t.host().to_string(),
                what: "flow assertions (gateway/verify-flows.sh)".into(),
                status: out.status,
                stderr: out.stderr_str().trim().to_string(),
            });
        }
        for line in out.stdout_str().lines() {
            let mut w = line.splitn(3, ' ');
            let (Some(i), Some(rc)) = (w.next(), w.next()) else {
                continue;
            };
            if let (Ok(i), Ok(rc)) = (i.parse::<usize>(), rc.parse::<i32>()) {
                let text = w.next().unwrap_or("").trim().to_string();
                answers.insert(i, (parse_answer(rc, &text), text));
            }
        }
    }
    let mut n = 0usize;
    let mut out = Vec::new();
    for (r, tr) in list.iter().zip(&traces) {
        let tr = match tr {
            Ok(tr) => tr,
            Err(e) => {
                out.push(failed_to_trace(r, e));
                continue;
            }
        };
        // The kernel's way for a leg it was asked about; the tracer's for
        // one with no routing decision (dropped before it).
        let mut asked = Vec::new();
        let mut way = |leg: &Leg| {
            let w = match (&leg.decision, answers.get(&n)) {
                (Some(d), Some((w, text))) => {
                    asked.push(format!("{} -> {text}", route_get(&d.query)));
                    w.clone()
                }
                _ => way_of(leg),
            };
            n += 1;
            // A leg the kernel routes out is still dropped if the tracer
            // saw the firewall drop it after the decision.
            match (&w, &leg.end) {
                (Way::Out { .. }, End::Dropped { why }) => Way::Dropped(why.clone()),
                _ => w,
            }
        };
        let fwd = way(&tr.forward);
        let reply = tr.reply.as_ref().map(&mut way);
        let mut c = compare(r, &got(gw, tr, &fwd, reply.as_ref()));
        c.kernel = asked;
        out.push(c);
    }
    Ok(out)
}

/// The post-apply check (`fleet::apply_host`, before confirming): every
/// assertion of `host` on the state the apply left (`facts`, the verify's
/// gather; gathered here when the verify did not); an error naming each
/// failed flow, expected and got.
pub fn after_apply(host: &Host, facts: Option<&Facts>, t: &mut dyn Transport) -> Result<()> {
    if host.vars.get("assert").is_none() {
        return Ok(());
    }
    let gathered;
    let facts = match facts {
        Some(f) => f,
        None => {
            gathered = crate::gather::gather(t)?;
            &gathered
        }
    };
    let gw = crate::model::build(host)?;
    let list = resolve(host, &gw)?;
    let failed: Vec<String> = live(&gw, facts, &list, t)?
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| failure_text(&c))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid {
        message: format!(
            "{}: {} flow assertion(s) failed after the apply:\n  - {}",
            host.name,
            failed.len(),
            failed.join("\n  - ")
        ),
        hint: Some(
            "`dwprov explain` with the flow shows the path; fix the inventory or the assertion"
                .into(),
        ),
    })
}

fn failure_text(c: &Checked) -> String {
    format!(
        "{}: flow {}: expected {}, got {}",
        c.location, c.flow, c.expected, c.got
    )
}

/// What `verify` was asked.
pub struct Request<'a> {
    pub inventory: &'a Path,
    pub limit: Option<&'a str>,
    pub json: bool,
    pub connect: ConnectOptions,
    pub forks: usize,
}

/// `dwprov verify`: each host's assertions on its live state; exit 1 when
/// one fails or a host cannot be verified.
pub fn run(req: &Request) -> Result<i32> {
    let (_, hosts) = crate::inventory::select::select(req.inventory, req.limit)?;
    let hosts = crate::inventory::select::gateways_only(hosts, false)?;
    let gws = crate::model::build_all(&hosts)?;
    let mut lists = Vec::new();
    for (h, gw) in hosts.iter().zip(&gws) {
        lists.push(resolve(h, gw)?);
    }
    let items: Vec<(&Host, &Gateway, &Vec<Resolved>)> = hosts
        .iter()
        .zip(&gws)
        .zip(&lists)
        .map(|((h, g), l)| (h, g, l))
        .collect();
    let results = crate::fleet::parallel(&items, req.forks, |(h, gw, list)| {
        let mut t = crate::transport::connect(&h.connection, &h.name, &req.connect)?;
        let facts = crate::gather::gather(t.as_mut())?;
        live(gw, &facts, list, t.as_mut())
    });
    let mut failed = false;
    let mut docs = Vec::new();
    for ((h, _, _), r) in items.iter().zip(results) {
        match r {
            Ok(checked) => {
                failed |= checked.iter().any(|c| !c.ok);
                if req.json {
                    docs.push(serde_json::json!({"host": h.name, "assertions": checked}));
                } else {
                    print!("{}", text(&h.name, &checked));
                }
            }
            Err(e) => {
                failed = true;
                if req.json {
                    docs.push(serde_json::json!({"host": h.name, "error": {"class": e.class(), "message": e.to_string()}}));
                } else {
                    eprintln!("{} {}: {e}", console::style("error:").red().bold(), h.name);
                }
            }
        }
    }
    if req.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"format_version": 1, "hosts": docs}))
                .unwrap_or_default()
        );
    }
    Ok(if failed { exit::ERROR } else { exit::OK })
}

/// One host's checked assertions as text.
pub fn text(host: &str, checked: &[Checked]) -> String {
    let mut s = String::new();
    for c in checked {
        if c.ok {
            let _ = writeln!(
                s,
                "{host}: ok {}: flow {}: {}",
                c.location, c.flow, c.expected
            );
        } else {
            let _ = writeln!(
                s,
                "{host}: {} {}",
                console::style("FAILED").red().bold(),
                failure_text(c)
            );
        }
    }
    let bad = checked.iter().filter(|c| !c.ok).count();
    let _ = writeln!(
        s,
        "{host}: {} of {} flow assertion(s) hold",
        checked.len() - bad,
        checked.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Templates;

    const INV: &str = "all:
  hosts:
    gw1:
      connection: local
      method: static
      lan:
        - {interface: eth0, address: 192.168.0.1/24}
      lines:
        - {name: ctc, interface: eth1, address: 198.51.100.2/24, gateway: 198.51.100.1, default: true, routes: [100.64.0.0/16]}
        - {name: cnc, interface: eth2, address: 203.0.113.2/24, gateway: 203.0.113.1, routes: [100.65.0.0/16]}
      forwards:
        - {proto: tcp, port: 80, to: 192.168.0.100}
";

    fn run(asserts: &str, method: &str) -> Result<Vec<Checked>> {
        let text = format!("{}      assert:\n{asserts}", INV.replace("static", method));
        let inv = crate::inventory::parse(&text, Path::new("i.yaml"))?;
        let h = &inv.hosts[0];
        let gw = crate::model::build(h)?;
        let r = crate::render::render(&gw, &Templates::load(None)?, None)?;
        let list = resolve(h, &gw)?;
        Ok(traced(&gw, &World::desired(&gw, &r.desired), &list))
    }

    #[test]
    fn assertions_hold_or_fail_naming_expected_and_got() {
        let c = run(
            "        - {from: 192.168.0.50, to: 100.65.2.10, via: cnc, snat: 203.0.113.2}\n\
             \x20       - {from: 192.168.0.50, to: 100.64.2.10, via: cnc}\n\
             \x20       - {iif: eth2, from: 100.65.1.10, to: 203.0.113.2, proto: tcp, dport: 80, via: cnc, dnat: 192.168.0.100}\n\
             \x20       - {iif: eth1, from: 100.65.1.10, to: 198.51.100.2, proto: tcp, dport: 80, via: ctc}\n",
            "static",
        )
        .unwrap();
        assert!(c[0].ok, "{c:#?}");
        assert!(!c[1].ok);
        assert_eq!(
            (c[1].expected.as_str(), c[1].got.as_str()),
            ("via cnc", "via ctc")
        );
        assert_eq!(c[1].location.line, 15);
        assert!(c[2].ok, "{c:#?}");
        // FAQ 1/2: with static the cross-access reply leaves by cnc
        assert_eq!(c[3].got, "via cnc", "{c:#?}");
        let c = run(
            "        - {iif: eth1, from: 100.65.1.10, to: 198.51.100.2, proto: tcp, dport: 80, via: ctc, dnat: 192.168.0.100}\n\
             \x20       - {iif: eth1, from: 100.65.1.10, to: 198.51.100.2, proto: tcp, dport: 80, dnat: 192.168.0.100:80}\n\
             \x20       - {iif: eth1, from: 100.65.1.10, to: 198.51.100.2, proto: tcp, dport: 80, dnat: 192.168.0.100:81}\n",
            "fwmark",
        )
        .unwrap();
        assert!(c[0].ok, "{c:#?}");
        assert!(c[1].ok, "{c:#?}");
        assert!(!c[2].ok, "{c:#?}");
        assert_eq!(
            (c[2].expected.as_str(), c[2].got.as_str()),
            ("dnat 192.168.0.100:81", "dnat 192.168.0.100:80")
        );
    }

    #[test]
    fn via_must_name_a_line_or_interface() {
        let e = run(
            "        - {from: 192.168.0.50, to: 100.65.2.10, via: cncc}\n",
            "static",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("i.yaml:14:") && e.contains("did you mean `cnc`"),
            "{e}"
        );
    }

    /// The gateway-side programs of `check` and `verify` pass
    /// `shellcheck -S warning`, alone and as sent (with their parameters).
    #[test]
    fn check_and_verify_programs_pass_shellcheck() {
        let q = format!(
            "Q={}\n{VERIFY_FLOWS_SH}",
            crate::converge::sh_quote("0 -4 10.0.0.1 10.0.0.2 - 0x0\n")
        );
        for (name, text) in [
            ("check.sh", super::super::live::CHECK_SH.to_string()),
            ("verify-flows.sh", VERIFY_FLOWS_SH.to_string()),
            ("verify-flows-sent.sh", q),
        ] {
            let dir = std::env::temp_dir().join(format!("dwprov-sc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let out = std::process::Command::new("shellcheck")
                .args(["-S", "warning", "-s", "sh"])
                .arg(&path)
                .output()
                .expect("shellcheck installed");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    #[test]
    fn kernel_answers_parse() {
        assert_eq!(
            parse_answer(0, "100.65.1.10 from 192.168.0.50 via 203.0.113.1 dev eth2 table 200 mark 0x200 uid 0 \\    cache iif eth0 "),
            Way::Out { dev: "eth2".into() }
        );
        assert_eq!(
            parse_answer(0, "local 198.51.100.2 from 100.64.1.10 dev lo table local mark 0 uid 0 \\    cache <local> iif eth1"),
            Way::Local
        );
        assert!(matches!(
            parse_answer(2, "RTNETLINK answers: Network is unreachable"),
            Way::Dropped(_)
        ));
    }
}
