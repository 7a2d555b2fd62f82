//! `dwprov explain`, lowered from the command line: the hosts of the
//! inventory, their desired state by `plan`'s render path (or, `--live`,
//! their gathered state), the trace of one flow on each, printed.
use super::{addr, explain as trace_flow, text, Flow, Trace, World};
use crate::error::{exit, Error, Result};
use crate::model::{Gateway, Proto};
use crate::render::Templates;
use crate::transport::ConnectOptions;
use std::path::Path;

/// What `explain` was asked.
pub struct Request<'a> {
    pub inventory: &'a Path,
    pub limit: Option<&'a str>,
    pub templates: Option<&'a Path>,
    pub flow: Flow,
    /// Trace the gathered live state instead of the desired one.
    pub live: bool,
    pub json: bool,
    pub connect: ConnectOptions,
    pub forks: usize,
}

/// The flow of the command line's flags, checked: strict addresses, a
/// port only with a protocol, a valid interface name.
pub fn flow(
    from: &str,
    to: &str,
    iif: Option<&str>,
    proto: Option<&str>,
    sport: Option<u16>,
    dport: Option<u16>,
) -> Result<Flow> {
    let addr = |flag: &str, s: &str| {
        addr::parse(s).map_err(|m| Error::Invalid {
            message: format!("{flag}: {m}"),
            hint: Some(format!(
                "{flag} takes an IPv4 address, e.g. {flag} 192.168.0.50"
            )),
        })
    };
    let proto = match proto {
        None => None,
        Some("tcp") => Some(Proto::Tcp),
        Some("udp") => Some(Proto::Udp),
        Some(other) => {
            return Err(Error::Invalid {
                message: format!("--proto `{}`: not tcp or udp", crate::escape::value(other)),
                hint: Some(
                    "--proto tcp or --proto udp (leave it out for a packet of no port)".into(),
                ),
            })
        }
    };
    if proto.is_none() && (sport.is_some() || dport.is_some()) {
        return Err(Error::Invalid {
            message: "--dport/--sport need --proto tcp|udp".into(),
            hint: Some("e.g. --proto tcp --dport 80".into()),
        });
    }
    if let Some(i) = iif {
        if i != "lo" {
            crate::inventory::values::interface_name(i).map_err(|m| Error::Invalid {
                message: format!("--iif: {m}"),
                hint: None,
            })?;
        }
    }
    Ok(Flow {
        from: addr("--from", from)?,
        to: addr("--to", to)?,
        iif: iif.map(str::to_string),
        proto,
        sport,
        dport,
    })
}

/// The desired world of `gw`, rendered as `plan` renders it (no facts:
/// nothing is gathered).
pub fn desired_world(gw: &Gateway, templates: &Templates) -> Result<World> {
    let r = crate::render::render(gw, templates, None)?;
    Ok(World::desired(gw, &r.desired))
}

/// Run `explain`: exit 0 when each trace was made (whatever it found), 1 on an error.
pub fn run(req: &Request) -> Result<i32> {
    let (_, hosts) = crate::inventory::select::select(req.inventory, req.limit)?;
    let hosts = crate::inventory::select::gateways_only(hosts, false)?;
    let gws = crate::model::build_all(&hosts)?;
    let templates = Templates::load(req.templates)?;
    let traces: Vec<Result<Trace>> = if req.live {
        let pairs: Vec<(&crate::inventory::Host, &Gateway)> = hosts.iter().zip(&gws).collect();
        crate::fleet::parallel(&pairs, req.forks, |(h, gw)| {
            let mut t = crate::transport::connect(&h.connection, &h.name, &req.connect)?;
            let facts = crate::gather::gather(t.as_mut())?;
            trace_flow(&gw.host, &World::live(Some(gw), &facts), &req.flow)
        })
    } else {
        gws.iter()
            .map(|gw| trace_flow(&gw.host, &desired_world(gw, &templates)?, &req.flow))
            .collect()
    };
    let mut failed = 0;
    let mut docs = Vec::new();
    for (gw, t) in gws.iter().zip(traces) {
        match t {
            Ok(t) if req.json => docs.push(serde_json::json!({"host": gw.host, "trace": t})),
            Ok(t) => print!("{}", text::trace_text(&t)),
            Err(e) => {
                failed += 1;
                if req.json {
                    docs.push(serde_json::json!({"host": gw.host, "error": {"class": e.class(), "message": e.to_string()}}));
                } else {
                    eprintln!("{} {}: {e}", console::style("error:").red().bold(), gw.host);
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
    Ok(if failed > 0 { exit::ERROR } else { exit::OK })
}
