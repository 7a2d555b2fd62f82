//! A trace as text: one line per hop, coloured like the rest of dwprov's
//! output when it goes to a terminal.
use super::{End, Leg, Trace};
use console::Style;
use std::fmt::Write;

fn step_style(step: &str) -> Style {
    match step {
        "mark" => Style::new().yellow(),
        "dnat" | "snat" | "unnat" => Style::new().cyan(),
        "rule" | "route" => Style::new().blue(),
        "out" | "deliver" | "send" => Style::new().green(),
        "drop" => Style::new().red().bold(),
        _ => Style::new().dim(),
    }
}

fn proto(t: &Trace) -> &'static str {
    t.flow.proto.map(|p| p.as_str()).unwrap_or("ip")
}

fn leg(s: &mut String, l: &Leg) {
    for h in &l.hops {
        let _ = writeln!(
            s,
            "  {} {}",
            step_style(&h.step).apply_to(format!("{:<7}", h.step)),
            h.what
        );
    }
    if let End::Dropped { why } = &l.end {
        if !l.hops.iter().any(|h| h.step == "drop") {
            let _ = writeln!(
                s,
                "  {} {why}",
                step_style("drop").apply_to(format!("{:<7}", "drop"))
            );
        }
    }
}

/// The whole trace: the packet, its hops, the reply's, the verdict.
pub fn trace_text(t: &Trace) -> String {
    let mut s = String::new();
    let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
    let came = match &t.iif {
        Some(i) => format!("in on {i}"),
        None => "sent by the gateway".into(),
    };
    let _ = writeln!(
        s,
        "{} ({}): {} {}{} -> {}{}, {came}",
        Style::new().bold().apply_to(&t.host),
        t.source.label(),
        proto(t),
        t.flow.from,
        port(t.flow.sport),
        t.flow.to,
        port(t.flow.dport),
    );
    if let Some(why) = &t.iif_reason {
        let _ = writeln!(
            s,
            "  {} {why}",
            step_style("note").apply_to(format!("{:<7}", "in"))
        );
    }
    leg(&mut s, &t.forward);
    if let Some(r) = &t.reply {
        let p = &r.packet;
        let _ = writeln!(
            s,
            "{} {} {}{} -> {}{}, {}",
            Style::new().bold().apply_to("reply:"),
            proto(t),
            p.src,
            port(p.sport),
            p.dst,
            port(p.dport),
            match &p.iif {
                Some(i) => format!("in on {i}"),
                None => "sent by the gateway".into(),
            }
        );
        leg(&mut s, r);
    }
    let v = if t.verdict.ok {
        Style::new().green().bold().apply_to("ok:")
    } else {
        Style::new().red().bold().apply_to("broken:")
    };
    let _ = writeln!(s, "{v} {}", t.verdict.summary);
    s
}
