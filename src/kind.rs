//! The kinds of owned object, registered in one list in a fixed order.
//!
//! Each stage (the diff, the apply script, the snapshot's parse, boot)
//! iterates [`KINDS`] and dispatches with an exhaustive `match`, so the
//! order lives here once and a new kind is one new variant: the compiler
//! then names every stage that must say what the kind does there.
//!
//! The order is the order of changes in a plan and of the commit steps of
//! an apply: files first (the rt_tables names the rules and routes use, the
//! boot files), then sysctls, the ip objects, the firewall, and the units
//! and agent (started from their installed files last).

use crate::fact::FactSection;

/// One kind of object dwprov owns on a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Owned files: rt_tables.conf, sysctl.conf, boot files, the agent's
    /// config and units ([`crate::ownership::OWNED_FILES`]).
    Files,
    /// sysctl keys, set live (never "removed": the kernel has no unset).
    Sysctls,
    /// ip rules and routes (proto dwprov), one `ip -batch`.
    RulesRoutes,
    /// Nexthop objects (issue 11), in the rules and routes' batch.
    Nexthops,
    /// The firewall, through its backend ([`crate::firewall`]).
    Firewall,
    /// Programs dwprov runs on the gateway: the boot units and the
    /// line-health agent. Their files are [`Kind::Files`]; they are
    /// enabled, started, restarted or stopped after them
    /// (`boot::post_install`, `agent::deploy`).
    Units,
}

/// Every kind, in the fixed order of the stages.
pub const KINDS: &[Kind] = &[
    Kind::Files,
    Kind::Sysctls,
    Kind::RulesRoutes,
    Kind::Nexthops,
    Kind::Firewall,
    Kind::Units,
];

/// The kinds' gateway-side files (gateway/kind-*.sh) by kind name, for
/// shellcheck: read off [`Kind::gateway_sh`], so a new kind's file is
/// checked without a second list.
pub fn gateway_files() -> Vec<(&'static str, &'static str)> {
    KINDS
        .iter()
        .map(|k| (k.name(), k.gateway_sh()))
        .filter(|(_, text)| !text.is_empty())
        .collect()
}

/// The revert's order, which is its own (docs/ARCHITECTURE.md says why):
/// the units are undone right after the files (a running agent must stop
/// before its nexthops go back), rules, routes and nexthops are one step
/// (nexthops come back before the routes that use them and go after
/// them), the firewall after the routing. Every kind once.
pub const REVERT_ORDER: &[Kind] = &[
    Kind::Files,
    Kind::Sysctls,
    Kind::Units,
    Kind::RulesRoutes,
    Kind::Nexthops,
    Kind::Firewall,
];

/// The kinds' gateway-side snapshot and revert steps, for the installed
/// lib.sh: each kind's shell file (gateway/kind-*.sh; the firewall's
/// `fw_*` are in lib.sh already, `firewall::gateway_sh`), then
/// `revert_kinds`, which gateway/revert.sh calls: every kind's revert step
/// in [`REVERT_ORDER`].
pub fn gateway_library() -> String {
    let mut s: String = KINDS.iter().map(|k| k.gateway_sh()).collect();
    s.push_str("revert_kinds() {\n");
    for k in REVERT_ORDER {
        if let Some(step) = k.revert_step() {
            s.push_str(step);
            s.push('\n');
        }
    }
    s.push_str("}\n");
    s
}

impl Kind {
    /// The shell lines of `rollback`'s plan that show what a snapshot holds
    /// of the kind (gateway/show.sh's `sec`, `sec_if`, `show_files`,
    /// `fw_show`), read back by the kind's `from_snapshot`.
    pub fn show_snapshot(self) -> &'static str {
        match self {
            Kind::Files => crate::files::SHOW_SNAPSHOT,
            Kind::Sysctls => crate::sysctls::SHOW_SNAPSHOT,
            Kind::RulesRoutes => crate::routing::SHOW_SNAPSHOT,
            Kind::Nexthops => crate::nexthops::SHOW_SNAPSHOT,
            // Every backend's sections (gateway/fw-*.sh).
            Kind::Firewall => "fw_show\n",
            // Their files are Kind::Files.
            Kind::Units => "",
        }
    }

    /// The gather sections that read the kind's live state, in order
    /// (each kind's own list, in its home module). The gather runs the
    /// host's sections, then these in [`KINDS`] order, then each owned
    /// file's (gateway/gather.sh `g_files`).
    pub fn fact_sections(self) -> Vec<FactSection> {
        match self {
            Kind::Files => crate::files::FACT_SECTIONS.to_vec(),
            Kind::Sysctls => crate::sysctls::FACT_SECTIONS.to_vec(),
            Kind::RulesRoutes => crate::state::ip::fact_sections_of(crate::state::family::MANAGED),
            Kind::Nexthops => crate::state::nexthop::FACT_SECTIONS.to_vec(),
            Kind::Firewall => crate::firewall::fact_sections(),
            Kind::Units => crate::fact::UNIT_SECTIONS.to_vec(),
        }
    }

    /// The kind's gateway-side shell: the functions its snapshot and
    /// revert steps call (`snapshot_files`, `revert_files`, ...).
    pub fn gateway_sh(self) -> &'static str {
        match self {
            Kind::Files => crate::files::GATEWAY_SH,
            Kind::Sysctls => crate::sysctls::GATEWAY_SH,
            Kind::RulesRoutes => crate::routing::GATEWAY_SH,
            // In the routing home's file (they interleave).
            Kind::Nexthops => "",
            // Every backend's gateway/fw-*.sh, in lib.sh already.
            Kind::Firewall => "",
            Kind::Units => crate::units::GATEWAY_SH,
        }
    }

    /// The kind's revert step (a shell function of its gateway shell), run
    /// in [`REVERT_ORDER`]; None: done in another kind's step.
    pub fn revert_step(self) -> Option<&'static str> {
        match self {
            Kind::Files => Some("revert_files"),
            Kind::Sysctls => Some("revert_sysctls"),
            Kind::Units => Some("revert_units"),
            Kind::RulesRoutes => Some("revert_routing"),
            // In revert_routing: back before the routes, deleted after them.
            Kind::Nexthops => None,
            // Every backend's (gateway/fw-*.sh).
            Kind::Firewall => Some("fw_revert"),
        }
    }

    /// The kind's name in messages and docs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Files => "files",
            Kind::Sysctls => "sysctls",
            Kind::RulesRoutes => "rules and routes",
            Kind::Nexthops => "nexthops",
            Kind::Firewall => "firewall",
            Kind::Units => "boot units and agent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_in_order_and_complete() {
        let mut sorted = KINDS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, KINDS, "KINDS is sorted and has no duplicate");
        // Every variant is listed (a new one must be added here too).
        for k in KINDS {
            match k {
                Kind::Files
                | Kind::Sysctls
                | Kind::RulesRoutes
                | Kind::Nexthops
                | Kind::Firewall
                | Kind::Units => {}
            }
        }
        assert_eq!(KINDS.len(), 6);
        assert!(KINDS.iter().all(|k| !k.name().is_empty()));
        let mut revert = REVERT_ORDER.to_vec();
        revert.sort();
        assert_eq!(revert, KINDS, "REVERT_ORDER holds every kind once");
    }

    /// Every revert step is defined by the composed library, and called
    /// once, in REVERT_ORDER.
    #[test]
    fn the_revert_is_composed_from_the_kinds_in_its_order() {
        let lib = crate::converge::installed_lib_sh();
        let body = lib
            .split("revert_kinds() {\n")
            .nth(1)
            .and_then(|b| b.split("}\n").next())
            .unwrap_or_default();
        let steps: Vec<&str> = REVERT_ORDER
            .iter()
            .filter_map(|k| k.revert_step())
            .collect();
        assert_eq!(body.lines().collect::<Vec<_>>(), steps);
        for f in &steps {
            assert!(lib.contains(&format!("{f}() {{")), "{f} is defined");
        }
    }
}
