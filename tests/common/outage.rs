//! Upstream failures for the lab: an ISP router that goes silent towards
//! the gateway while the link stays up (the outage a line-health agent
//! exists for: no carrier loss, no error, just nothing coming back), and a
//! lossy variant for flapping. Everything is iptables inside the ISP
//! router's namespace, in one chain of its own, so the repair removes
//! exactly what the outage added; never the root namespace.
//!
//! ```ignore
//! let out = outage::silence(&lab, "cnc");   // from now on cnc drops all from/to the gateway
//! out.repair();                             // or drop it: repaired also when a test fails
//! ```
use super::Lab;
use std::time::Instant;

/// The chain an outage adds in the ISP router.
const CHAIN: &str = "DWLAB-OUTAGE";
/// The router's interface towards the gateway (scripts/lab.sh: cust0).
const CUSTOMER_IF: &str = "cust0";

/// What the ISP router drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Everything from and to the gateway, the router's own answers too.
    Silent,
    /// Every other ICMP echo request from the gateway (a line that loses
    /// half of its ICMP probes; TCP passes).
    EveryOtherEcho,
}

/// An outage in force; repaired by [`Outage::repair`] or when dropped.
pub struct Outage<'a> {
    lab: &'a Lab,
    isp: String,
    /// When it started (after the rules were in).
    pub started: Instant,
    repaired: bool,
}

/// The ISP router `isp` (`"ctc"`, `"cnc"`, or `"cmcc"` in a 3-ISP lab) goes silent towards the gateway.
pub fn silence<'a>(lab: &'a Lab, isp: &str) -> Outage<'a> {
    start(lab, isp, Kind::Silent)
}

/// Starts an outage of `kind` at ISP router `isp`.
pub fn start<'a>(lab: &'a Lab, isp: &str, kind: Kind) -> Outage<'a> {
    assert!(
        matches!(isp, "ctc" | "cnc" | "cmcc"),
        "no ISP router {isp:?}"
    );
    let body = match kind {
        Kind::Silent => format!("iptables -A {CHAIN} -j DROP"),
        Kind::EveryOtherEcho => format!(
            "iptables -A {CHAIN} -i {CUSTOMER_IF} -p icmp --icmp-type echo-request \
             -m statistic --mode nth --every 2 --packet 0 -j DROP"
        ),
    };
    lab.sh_ok(
        isp,
        &format!(
            "iptables -N {CHAIN} && {body} && \
             iptables -I INPUT -i {CUSTOMER_IF} -j {CHAIN} && \
             iptables -I FORWARD -i {CUSTOMER_IF} -j {CHAIN} && \
             iptables -I FORWARD -o {CUSTOMER_IF} -j {CHAIN} && \
             iptables -I OUTPUT -o {CUSTOMER_IF} -j {CHAIN}"
        ),
    );
    Outage {
        lab,
        isp: isp.to_string(),
        started: Instant::now(),
        repaired: false,
    }
}

impl Outage<'_> {
    /// Ends the outage: the router forwards and answers again. Returns when.
    pub fn repair(mut self) -> Instant {
        self.undo(true);
        Instant::now()
    }

    fn undo(&mut self, strict: bool) {
        if self.repaired {
            return;
        }
        self.repaired = true;
        let cmd = format!(
            "iptables -D INPUT -i {CUSTOMER_IF} -j {CHAIN} && \
             iptables -D FORWARD -i {CUSTOMER_IF} -j {CHAIN} && \
             iptables -D FORWARD -o {CUSTOMER_IF} -j {CHAIN} && \
             iptables -D OUTPUT -o {CUSTOMER_IF} -j {CHAIN} && \
             iptables -F {CHAIN} && iptables -X {CHAIN}"
        );
        if strict {
            self.lab.sh_ok(&self.isp, &cmd);
        } else {
            // During a panic's unwinding: never panic again, the lab goes anyway.
            let _ = self.lab.sh(&self.isp, &cmd);
        }
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        self.undo(false);
    }
}
