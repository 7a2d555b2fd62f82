//! `dwprov status -i INV [--limit] [--format json]` (issue 11): per host,
//! what its line-health agent sees: per line the state (`up`, `down`, or
//! `unknown` when not monitored or no agent runs), since when, the last
//! round's loss and RTT per target, the failover in force; whether the
//! agent runs and its version; the newest snapshot (the last apply). For a
//! dynamic line (issue 14) also its address and next hop now, resolved from
//! the same gathered facts, or that it has none (down). One gather round
//! trip and one listing per host, read-only.
//!
//! JSON is one document: `{"format_version": 1, "hosts": [{"host": ...,
//! "agent": {...}, "lines": [{"name": ..., "state": ...}, ...],
//! "last_snapshot": {...}}]}`; a host that cannot be reached has `error`.
use crate::agent::status::{LineStatus, Seen};
use crate::error::Result;
use crate::facts::Facts;
use crate::inventory::Host;
use crate::model::{Gateway, NextHop};
use crate::transport::ConnectOptions;
use serde::Serialize;
use serde_json::{json, Value};

/// The JSON format of `dwprov status`.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct LineReport {
    pub name: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub failover_to: Option<String>,
    /// The last round, per target: loss (0 or 1), RTT in ms, why lost.
    pub targets: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<u64>,
    /// A dynamic line's facts now (issue 14); absent for a static line.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub now: Option<DynamicNow>,
}

/// A dynamic line's address and next hop now, as `model::resolve` finds
/// them in the gathered facts (`plan` does the same).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DynamicNow {
    /// Always true: in JSON it is the field that says a line is dynamic
    /// (a static line's report has no `DynamicNow`, so no `dynamic`).
    pub dynamic: bool,
    pub interface: String,
    /// None: no address now, the line is down.
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub dynamic_address: bool,
    pub dynamic_gateway: bool,
    pub up: bool,
    /// While down: the line carrying its traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
}

/// The dynamic lines of `gw` with their facts now, by line name.
pub fn dynamic_now(gw: &Gateway, facts: &Facts) -> Vec<(String, DynamicNow)> {
    let r = crate::model::resolve(gw, Some(facts)).gateway;
    r.lines
        .iter()
        .filter(|l| l.is_dynamic())
        .map(|l| {
            let up = l.up_now();
            let now = DynamicNow {
                dynamic: true,
                interface: l.interface.clone(),
                address: l.address.map(|a| a.to_string()),
                gateway: l.gateway.map(|g| g.to_string()),
                dynamic_address: l.dynamic_address,
                dynamic_gateway: l.next_hop == NextHop::Dynamic,
                up,
                carrier: (!up)
                    .then(|| crate::model::carrier(&r, l).map(|c| c.name.clone()))
                    .flatten(),
            };
            (l.name.clone(), now)
        })
        .collect()
}

/// One host's status, from its gathered agent section and snapshot list.
/// `dynamic`: [`dynamic_now`] of the host's lines.
pub fn host_doc(
    host: &str,
    lines: &[String],
    dynamic: &[(String, DynamicNow)],
    seen: &Seen,
    snapshots: &str,
) -> Value {
    let now = |n: &str| dynamic.iter().find(|(d, _)| d == n).map(|(_, x)| x.clone());
    let find = |n: &str| -> Option<&LineStatus> {
        seen.status.as_ref()?.lines.iter().find(|l| l.name == n)
    };
    // The inventory's lines, in order; any the agent knows beyond them after.
    let mut names: Vec<String> = lines.to_vec();
    if let Some(s) = &seen.status {
        for l in &s.lines {
            if !names.contains(&l.name) {
                names.push(l.name.clone());
            }
        }
    }
    let reports: Vec<LineReport> = names
        .iter()
        .map(|n| match find(n).filter(|_| seen.running) {
            Some(l) => LineReport {
                name: n.clone(),
                state: l.state.to_string(),
                since: Some(l.since.clone()),
                failover_to: l.failover_to.clone(),
                targets: l
                    .last_round
                    .iter()
                    .flat_map(|r| &r.targets)
                    .map(|t| json!({"target": t.target, "loss": t.loss, "rtt_ms": t.rtt_ms, "note": t.note}))
                    .collect(),
                transitions: Some(l.transitions),
                now: now(n),
            },
            None => LineReport {
                name: n.clone(),
                state: "unknown".into(),
                since: None,
                failover_to: None,
                targets: Vec::new(),
                transitions: None,
                now: now(n),
            },
        })
        .collect();
    let last = snapshots
        .lines()
        .filter_map(|l| l.split_once(' '))
        .next_back()
        .map(|(id, state)| json!({"id": id, "state": state}));
    json!({
        "host": host,
        "agent": {
            "running": seen.running,
            "version": seen.status.as_ref().map(|s| s.agent_version.clone()),
            "pid": seen.status.as_ref().filter(|_| seen.running).map(|s| s.pid),
            "started": seen.status.as_ref().filter(|_| seen.running).map(|s| s.started.clone()),
            "updated": seen.status.as_ref().map(|s| s.updated.clone()),
        },
        "lines": reports,
        "last_snapshot": last,
    })
}

/// The text form of one host's document.
pub fn host_text(doc: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let a = &doc["agent"];
    let agent = if a["running"] == true {
        format!(
            "agent running (version {}, pid {})",
            a["version"].as_str().unwrap_or("?"),
            a["pid"]
        )
    } else if a["version"].is_string() {
        "agent NOT running (a status file is left from an earlier one)".to_string()
    } else {
        "no agent".to_string()
    };
    let snap = match doc["last_snapshot"]["id"].as_str() {
        Some(id) => format!(
            "last apply: snapshot {id} ({})",
            doc["last_snapshot"]["state"].as_str().unwrap_or("?")
        ),
        None => "no snapshot".into(),
    };
    let _ = writeln!(
        s,
        "── {}  {agent}; {snap}",
        doc["host"].as_str().unwrap_or("")
    );
    for l in doc["lines"].as_array().into_iter().flatten() {
        let mut line = format!(
            "  {:<10} {:<8}",
            l["name"].as_str().unwrap_or(""),
            l["state"].as_str().unwrap_or("")
        );
        if let Some(since) = l["since"].as_str() {
            let _ = write!(line, " since {since}");
        }
        if let Some(to) = l["failover_to"].as_str() {
            let _ = write!(line, "  failed over to {to}");
        }
        for t in l["targets"].as_array().into_iter().flatten() {
            let loss = t["loss"].as_f64().unwrap_or(1.0);
            let _ = write!(
                line,
                "  {} loss {:.0}%",
                t["target"].as_str().unwrap_or(""),
                loss * 100.0
            );
            if let Some(rtt) = t["rtt_ms"].as_f64() {
                let _ = write!(line, " rtt {rtt:.1} ms");
            }
            if let Some(n) = t["note"].as_str() {
                let _ = write!(line, " ({n})");
            }
        }
        let _ = writeln!(s, "{line}");
        if l["dynamic"] == true {
            let _ = writeln!(s, "  {:<10} {}", "", dynamic_text(l));
        }
    }
    s
}

/// The readable item of a dynamic line: its address and next hop now, or down.
fn dynamic_text(l: &Value) -> String {
    let iface = l["interface"].as_str().unwrap_or("?");
    let Some(a) = l["address"].as_str() else {
        let on = match l["carrier"].as_str() {
            Some(c) => format!("traffic on {c}"),
            None => "no line can carry its traffic".into(),
        };
        return format!("no address now on {iface}: down, {on}");
    };
    let mut t = format!("address {a}");
    if l["dynamic_address"] == true {
        t += &format!(" (dynamic, from {iface})");
    }
    match l["gateway"].as_str() {
        Some(g) if l["dynamic_gateway"] == true => t += &format!(" via {g} (dynamic)"),
        Some(g) => t += &format!(" via {g}"),
        None if l["dynamic_gateway"] == true => {
            let on = l["carrier"].as_str().unwrap_or("no line");
            t += &format!(", no DHCP next hop now: down, traffic on {on}");
        }
        None => t += &format!(" dev {iface}"),
    }
    t
}

/// Run `dwprov status` on the `hosts` (already selected); `json`: one JSON
/// document on stdout, else text. Exit 0, or 1 when a host failed.
pub fn run(hosts: &[Host], opts: &ConnectOptions, forks: usize, json: bool) -> Result<i32> {
    let results = crate::fleet::parallel(hosts, forks, |h| -> Result<Value> {
        let mut t = crate::transport::connect(&h.connection, &h.name, opts)?;
        let facts = crate::gather::gather(t.as_mut())?;
        let list = t.run_script(&crate::safe::list_script())?;
        let (lines, dynamic) = match crate::model::build(h) {
            Ok(gw) => (
                gw.lines.iter().map(|l| l.name.clone()).collect(),
                dynamic_now(&gw, &facts),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        Ok(host_doc(
            &h.name,
            &lines,
            &dynamic,
            &facts.agent,
            &list.stdout_str(),
        ))
    });
    let mut failed = 0;
    let mut docs = Vec::new();
    for (h, r) in hosts.iter().zip(results) {
        match r {
            Ok(d) => {
                if !json {
                    print!("{}", host_text(&d));
                }
                docs.push(d);
            }
            Err(e) => {
                failed += 1;
                if json {
                    docs.push(json!({"host": h.name, "error": {"class": e.class(), "message": e.to_string()}}));
                } else {
                    eprintln!("{} {}: {e}", console::style("error:").red().bold(), h.name);
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"format_version": FORMAT_VERSION, "hosts": docs}))
                .unwrap_or_default()
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_an_agent_are_unknown_and_the_document_is_versioned() {
        let seen = Seen::parse("stopped\n");
        let d = host_doc(
            "gw1",
            &["ctc".into(), "cnc".into()],
            &[],
            &seen,
            "20240501T1000-ab confirmed\n",
        );
        assert_eq!(d["lines"][1]["state"], "unknown");
        assert_eq!(d["agent"]["running"], false);
        assert_eq!(d["last_snapshot"]["state"], "confirmed");
        let text = host_text(&d);
        assert!(text.contains("no agent") && text.contains("cnc"), "{text}");
    }

    #[test]
    fn a_running_agent_reports_its_lines() {
        let status = r#"{"format_version":1,"agent_version":"0.1.0","pid":812,"started":"2024-05-01T10:00:00Z","rounds":9,"updated":"2024-05-01T10:00:09Z","lines":[{"name":"cnc","state":"down","since":"2024-05-01T10:00:03Z","since_unix":1714557603,"transitions":1,"rounds":9,"last_round":{"at":"2024-05-01T10:00:09Z","good":false,"targets":[{"target":"100.65.1.10","loss":1.0,"note":"timeout"}]},"failover_to":"ctc"}]}"#;
        let seen = Seen::parse(&format!("running 812\n{status}\n"));
        assert!(seen.running && seen.status.is_some());
        let d = host_doc("gw1", &["ctc".into(), "cnc".into()], &[], &seen, "");
        assert_eq!(d["lines"][0]["state"], "unknown");
        assert_eq!(d["lines"][1]["state"], "down");
        assert_eq!(d["lines"][1]["failover_to"], "ctc");
        let text = host_text(&d);
        assert!(
            text.contains("failed over to ctc") && text.contains("loss 100% (timeout)"),
            "{text}"
        );
        assert_eq!(seen.plan_lines().len(), 1);
    }

    /// Issue 14: a dynamic line's address and next hop now are shown, from
    /// the gathered facts; without an address it is down, on its carrier.
    #[test]
    fn a_dynamic_line_shows_its_facts_or_that_it_is_down() {
        use crate::facts::Interface;
        use crate::state::ip::Route;
        let mut gw = crate::render::tests::seed(crate::model::Method::Static);
        let cnc = &mut gw.lines[1];
        cnc.address = None;
        cnc.gateway = None;
        cnc.dynamic_address = true;
        cnc.next_hop = NextHop::Dynamic;
        let facts = |leased: bool| {
            let mut f = Facts::default();
            f.interfaces.push(Interface {
                name: "eth2".into(),
                up: true,
                addresses: leased
                    .then(|| "100.64.1.7/24".parse().unwrap())
                    .into_iter()
                    .collect(),
            });
            if leased {
                f.state.routes.push(Route {
                    via: Some("100.64.1.1".parse().unwrap()),
                    dev: Some("eth2".into()),
                    proto: 16,
                    metric: 100,
                    ..Route::default()
                });
            }
            f
        };
        let names: Vec<String> = gw.lines.iter().map(|l| l.name.clone()).collect();
        let seen = Seen::parse("stopped\n");

        let d = host_doc("gw1", &names, &dynamic_now(&gw, &facts(true)), &seen, "");
        assert!(
            d["lines"][0].get("dynamic").is_none(),
            "static ctc unchanged: {d}"
        );
        let cnc = &d["lines"][1];
        assert_eq!(cnc["dynamic"], true);
        assert_eq!(cnc["address"], "100.64.1.7/24");
        assert_eq!(cnc["gateway"], "100.64.1.1");
        assert_eq!(cnc["state"], "unknown");
        let text = host_text(&d);
        assert!(
            text.contains("address 100.64.1.7/24 (dynamic, from eth2) via 100.64.1.1 (dynamic)"),
            "{text}"
        );

        let d = host_doc("gw1", &names, &dynamic_now(&gw, &facts(false)), &seen, "");
        let cnc = &d["lines"][1];
        assert_eq!(cnc["dynamic"], true);
        assert!(cnc["address"].is_null() && cnc["gateway"].is_null(), "{d}");
        assert_eq!(cnc["carrier"], "ctc");
        let text = host_text(&d);
        assert!(
            text.contains("no address now on eth2: down, traffic on ctc"),
            "{text}"
        );
    }
}
