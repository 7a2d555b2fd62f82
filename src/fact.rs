//! One section of the gather: a fact's command (pyinfra's fact is a
//! command plus a pure parser; the parsers are with the kinds' state).
//!
//! gateway/gather.sh defines how a section runs (`sec NAME COMMAND`: its
//! stdout, stderr and status framed by the run's marker) and the `f_*`
//! helpers; which sections run, in which order, is composed by
//! [`crate::gather`] from the host facts and each kind's list
//! ([`crate::kind::Kind::fact_sections`]), so a new kind brings its own
//! sections and nothing else names them.

/// One `sec NAME COMMAND` of the gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactSection {
    /// The section's name: what the facts parser looks up.
    pub name: &'static str,
    /// What `sec` runs: a command line, or one of gather.sh's `f_*`
    /// helpers with its arguments; parameters only, never inventory values.
    pub run: &'static str,
    /// For a helper, what messages call it (a timeout, a failed section);
    /// a plain command is named as it runs.
    pub shown: Option<&'static str>,
}

impl FactSection {
    /// A section that runs a plain command, named as it runs.
    pub const fn command(name: &'static str, run: &'static str) -> Self {
        FactSection {
            name,
            run,
            shown: None,
        }
    }

    /// A section that runs one of gather.sh's helpers, named in messages by `shown`.
    pub const fn helper(name: &'static str, run: &'static str, shown: &'static str) -> Self {
        FactSection {
            name,
            run,
            shown: Some(shown),
        }
    }

    /// The `sec` line of the gather script.
    pub fn line(&self) -> String {
        format!("sec {} {}\n", self.name, self.run)
    }
}

/// Facts of the host itself, read first: who runs the gather, the kernel,
/// the tools, systemd, the addresses (dynamic lines resolve from them).
pub const HOST_SECTIONS: &[FactSection] = &[
    FactSection::command("uid", "id -u"),
    FactSection::command("kernel", "uname -r"),
    FactSection::helper("tools", "f_tools $G_TOOLS", "command -v (the tool check)"),
    FactSection::helper("systemd", "f_systemd", "[ -d /run/systemd/system ]"),
    FactSection::command("addrs", "ip \"$G_IP_FAMILY\" -j addr show"),
];

/// The line-health agent's section ([`crate::kind::Kind::Units`]): its pid
/// and status file, parsed by `agent::status` into the facts' `Seen`.
pub const UNIT_SECTIONS: &[FactSection] = &[FactSection::helper(
    "agent",
    "f_agent",
    "the agent's pid and status file",
)];
