//! The facts gathered from one host: its typed [`State`] plus what the plan
//! and the apply need to know about the platform (kernel, tools, systemd,
//! interfaces). `crate::gather` produces them; render, boot, converge,
//! fleet and report read them. They live here, below all of those, so that
//! none of them imports the module that talks to the host.
use crate::state::State;
use serde::Serialize;
use std::collections::BTreeMap;

/// One network interface and its addresses of the managed families
/// (`state::family::MANAGED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    pub addresses: Vec<ipnet::IpNet>,
}

/// Everything gathered from one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub host: String,
    pub state: State,
    pub kernel: String,
    pub uid: Option<u32>,
    pub interfaces: Vec<Interface>,
    /// "nf_tables" or "legacy" (from `iptables -V`).
    pub iptables_backend: Option<String>,
    /// Rules exist in the *other* iptables backend (invisible to ours).
    pub other_backend_rules: bool,
    /// Tool name → present.
    pub tools: BTreeMap<String, bool>,
    pub systemd: bool,
    /// The kernel has nexthop objects (5.3 and later; `ip nexthop show` works).
    pub nexthops: bool,
    /// The line-health agent as gathered (issue 11): running, its status file.
    pub agent: crate::agent::status::Seen,
    /// Things worth telling the admin (iptables-save warnings, ...).
    pub warnings: Vec<String>,
    /// [`crate::gather::plan_digest`] of these facts with the scope their owned objects give:
    /// a saved plan is stale when it changes.
    pub digest: String,
}

impl Facts {
    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.get(name).copied().unwrap_or(false)
    }
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

/// One command's output (borrowed from the script's output: a 16,000-prefix
/// route table is not copied again for its section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Section<'a> {
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub status: i32,
}

/// The sections of a snapshot (gateway/show.sh), by name.
pub type Sections<'a> = BTreeMap<String, Section<'a>>;

/// A snapshot's listing `name`: its text, or an error when the snapshot
/// has none (taken by an older dwprov) or could not list it.
pub fn snapshot_listing<'a>(sections: &Sections<'a>, name: &str) -> crate::error::Result<&'a str> {
    match sections.get(name) {
        Some(s) if s.status == 0 => Ok(s.stdout),
        _ => Err(crate::error::Error::invalid(format!(
            "the snapshot has no `{name}` listing (taken by an older dwprov?)"
        ))),
    }
}
