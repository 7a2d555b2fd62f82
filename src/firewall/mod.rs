//! The firewall-backend seam: which backend a gateway uses ([`Backend`],
//! from the inventory's `firewall:`), the owned firewall state of every
//! known backend ([`Firewall`], a field of [`crate::state::State`]; both
//! typed in `state/firewall.rs`), and what a backend provides
//! ([`FirewallBackend`]). iptables is the first backend
//! ([`iptables`]); the rest of dwprov reaches a backend only through here.
//!
//! Live state holds each backend the gateway has (a gateway switching backend
//! has owned objects in both); desired state fills only the inventory's
//! backend, so the diff removes the other backend's owned objects: switching
//! backend is one apply.
//!
//! To add a backend: a variant of [`Backend`], a field of [`Firewall`], its
//! [`FirewallBackend`] implementation in a module here, and one line in
//! each `Firewall` method that iterates the backends.
use crate::change::Change;
use crate::error::Result;
use crate::fact::FactSection;
use crate::facts::{Facts, Section};
use std::collections::BTreeMap;

pub mod iptables;
pub mod nftables;

pub use crate::state::firewall::{Backend, DigestItem, Firewall};
pub use crate::state::iptables::Iptables;
pub use crate::state::nftables::Nftables;

/// What the apply script runs for one backend's changes: a test of the
/// payload that changes nothing (run in the background while the snapshot
/// and staging go on), then the payload itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// The command that tests the payload on stdin, e.g.
    /// `iptables-restore --noflush --test >/dev/null`.
    pub test: String,
    /// The command that applies the payload on stdin.
    pub apply: String,
    /// The step's name (`step` in gateway/lib.sh).
    pub step: String,
    /// What failed when `apply` fails, e.g. `iptables-restore (tables nat)`.
    pub what: String,
    /// What failed when `test` fails, e.g. `iptables-restore --test rejected
    /// the payload (tables nat)`.
    pub rejected: String,
    /// The payload text.
    pub text: String,
}

/// What a firewall backend provides. Each method is pure; the gateway side
/// of the snapshot, revert and verify listing is its `gateway/fw-NAME.sh`
/// (the `fw_*` functions, [`gateway_sh`]).
pub trait FirewallBackend: Sized + Default {
    const BACKEND: Backend;
    /// The render artefact (and template name) of its desired state.
    const ARTEFACT: &'static str;
    /// Its live state from the gather sections (gateway/gather.sh), with
    /// the facts and warnings it has about the host.
    fn gather<'a>(host: &str, get: &dyn Fn(&str) -> Section<'a>, facts: &mut Facts)
        -> Result<Self>;
    /// Its desired state from its rendered artefact (the live parser).
    fn parse_desired(text: &str) -> Result<Self>;
    /// Desired against live, owned objects only.
    fn diff(desired: &Self, live: &Self, changes: &mut Vec<Change>);
    /// The apply payload of `changes` (those of this backend), if any.
    fn payload(changes: &[Change]) -> Option<Payload>;
    /// Owned lines a snapshot must list (gateway/lib.sh's format).
    fn owned_lines(&self) -> usize;
    /// Its owned state from a snapshot's listing sections.
    fn from_snapshot(sections: &BTreeMap<String, Section>) -> Result<Self>;
    /// Its owned objects for the stale-plan digest.
    fn digest(&self) -> Vec<DigestItem<'_>>;
    /// Its boot-restore context: (tera name, value) pairs for templates/boot.
    fn boot_context(&self) -> Vec<(&'static str, serde_json::Value)>;
    /// The boot templates it renders and their paths.
    fn boot_files() -> &'static [(&'static str, &'static str)];
}

/// Every backend's gather sections, in [`Backend`] order: every gather
/// reads both, so that a switch sees the other backend's objects.
pub fn fact_sections() -> Vec<FactSection> {
    [iptables::FACT_SECTIONS, nftables::FACT_SECTIONS].concat()
}

/// Every backend with a gateway side, by the name its `fw_NAME_*`
/// functions carry, and its file (gateway/fw-NAME.sh).
const GATEWAY_BACKENDS: &[(&str, &str)] = &[
    ("iptables", iptables::GATEWAY_SH),
    ("nftables", nftables::GATEWAY_SH),
];

/// The backends' gateway-side functions, appended to gateway/lib.sh in
/// every script (`converge::lib_sh`): each backend's file, then the `fw_*`
/// dispatchers the snapshot, revert, verify digest and rollback plan call,
/// each running the function of every backend in turn. Every backend,
/// not only the inventory's: one apply handles both backends' state (a
/// switch removes the other's objects, its revert puts them back).
pub fn gateway_sh() -> String {
    let mut s: String = GATEWAY_BACKENDS.iter().map(|(_, text)| *text).collect();
    let each = |f: &str| -> String {
        GATEWAY_BACKENDS
            .iter()
            .map(|(b, _)| format!(" fw_{b}_{f};"))
            .collect()
    };
    // With the directory argument of `owned_listings`.
    let each_in_dir = |f: &str| -> String {
        GATEWAY_BACKENDS
            .iter()
            .map(|(b, _)| format!(" fw_{b}_{f} \"$1\" || return 1;"))
            .collect()
    };
    // The snapshots run in the background (while ip lists); the wait
    // keeps each one's status for its check.
    let jobs: String = GATEWAY_BACKENDS
        .iter()
        .map(|(b, _)| format!(" fw_{b}_snapshot & fw_{b}_job=$!;"))
        .collect();
    let waits: String = GATEWAY_BACKENDS
        .iter()
        .map(|(b, _)| format!(" wait \"$fw_{b}_job\"; fw_{b}_rc=$?;"))
        .collect();
    let checks: String = GATEWAY_BACKENDS
        .iter()
        .map(|(b, _)| format!(" fw_{b}_snapshot_check \"$fw_{b}_rc\";"))
        .collect();
    s.push_str(&format!(
        "fw_snapshot() {{{jobs} }}\nfw_snapshot_wait() {{{waits} }}\nfw_snapshot_check() {{{checks} }}\n\
         fw_revert() {{{} }}\nfw_listing() {{{} }}\nfw_show() {{{} }}\n",
        each("revert"),
        each_in_dir("listing"),
        each("show"),
    ));
    s
}

/// Every backend's gateway file, by name (for shellcheck).
pub const GATEWAY_FILES: &[(&str, &str)] = &[
    ("fw-iptables.sh", iptables::GATEWAY_SH),
    ("fw-nftables.sh", nftables::GATEWAY_SH),
];

impl Firewall {
    /// The desired firewall from the rendered artefacts: each backend whose
    /// artefact is there (render writes only the inventory's backend's, see
    /// [`Firewall::artefact`], so the others stay empty and their owned
    /// objects are removed).
    pub fn desired(artefacts: &BTreeMap<String, String>) -> Result<Firewall> {
        let mut fw = Firewall::default();
        if let Some(text) = artefacts.get(Iptables::ARTEFACT) {
            fw.iptables = Iptables::parse_desired(text)?;
        }
        if let Some(text) = artefacts.get(Nftables::ARTEFACT) {
            fw.nftables = Nftables::parse_desired(text)?;
        }
        Ok(fw)
    }

    /// The live firewall of every backend from the gather sections.
    pub fn gather<'a>(
        host: &str,
        get: &dyn Fn(&str) -> Section<'a>,
        facts: &mut Facts,
    ) -> Result<Firewall> {
        Ok(Firewall {
            iptables: Iptables::gather(host, get, facts)?,
            nftables: Nftables::gather(host, get, facts)?,
        })
    }

    /// Every backend's changes, desired against live.
    pub fn diff(desired: &Firewall, live: &Firewall, changes: &mut Vec<Change>) {
        Iptables::diff(&desired.iptables, &live.iptables, changes);
        Nftables::diff(&desired.nftables, &live.nftables, changes);
    }

    /// The payloads of every backend that has changes, in backend order.
    pub fn payloads(changes: &[Change]) -> Vec<Payload> {
        [Iptables::payload(changes), Nftables::payload(changes)]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Owned lines a snapshot must list, all backends.
    pub fn owned_lines(&self) -> usize {
        self.iptables.owned_lines() + self.nftables.owned_lines()
    }

    /// Owned state of every backend from a snapshot's sections.
    pub fn from_snapshot(sections: &BTreeMap<String, Section>) -> Result<Firewall> {
        Ok(Firewall {
            iptables: Iptables::from_snapshot(sections)?,
            nftables: Nftables::from_snapshot(sections)?,
        })
    }

    /// Owned objects of every backend for the stale-plan digest.
    pub fn digest(&self) -> Vec<DigestItem<'_>> {
        let mut d = self.iptables.digest();
        d.extend(self.nftables.digest());
        d
    }

    /// Boot context of every backend.
    pub fn boot_context(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut c = self.iptables.boot_context();
        c.extend(self.nftables.boot_context());
        c
    }

    /// The boot templates of `backend`, with their paths.
    pub fn boot_files(backend: Backend) -> &'static [(&'static str, &'static str)] {
        match backend {
            Backend::Iptables => Iptables::boot_files(),
            Backend::Nftables => Nftables::boot_files(),
        }
    }

    /// The render artefact of `backend`.
    pub fn artefact(backend: Backend) -> &'static str {
        match backend {
            Backend::Iptables => Iptables::ARTEFACT,
            Backend::Nftables => Nftables::ARTEFACT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each backend's gateway file defines every function the `fw_*`
    /// dispatchers call for it, and each dispatcher calls every backend:
    /// a backend missing one would fail only on a gateway, as "not found".
    #[test]
    fn every_backend_defines_what_the_dispatchers_call() {
        let sh = gateway_sh();
        for f in ["snapshot", "snapshot_check", "revert", "listing", "show"] {
            for (b, text) in GATEWAY_BACKENDS {
                let def = format!("\nfw_{b}_{f}() {{");
                assert!(format!("\n{text}").contains(&def), "{b}: no fw_{b}_{f}");
            }
        }
        for d in [
            "fw_snapshot()",
            "fw_snapshot_wait()",
            "fw_snapshot_check()",
            "fw_revert()",
            "fw_listing()",
            "fw_show()",
        ] {
            let line = sh
                .lines()
                .find(|l| l.starts_with(d))
                .unwrap_or_else(|| panic!("no {d}"));
            for (b, _) in GATEWAY_BACKENDS {
                assert!(line.contains(&format!("fw_{b}_")), "{d} skips {b}: {line}");
            }
        }
        assert_eq!(GATEWAY_BACKENDS.len(), GATEWAY_FILES.len());
    }

    #[test]
    fn backend_names_are_unique_and_round_trip() {
        for (n, b) in Backend::ALL {
            assert_eq!(b.name(), *n);
        }
        assert_eq!(Backend::default(), Backend::Iptables);
    }

    /// What makes a switch of backend one apply: a desired state without
    /// this backend's objects removes its owned chains and jumps, and
    /// nothing foreign.
    #[test]
    fn an_empty_backend_in_desired_removes_its_owned_objects_only() {
        let live = Firewall {
            iptables: Iptables::parse(
                "*nat\n:POSTROUTING ACCEPT [0:0]\n:DWPROV-NAT - [0:0]\n\
                 -A POSTROUTING -j DWPROV-NAT\n-A POSTROUTING -j MASQUERADE\n\
                 -A DWPROV-NAT -o eth1 -j SNAT --to-source 198.51.100.2\nCOMMIT\n",
            )
            .unwrap(),
            ..Firewall::default()
        };
        let mut changes = Vec::new();
        Firewall::diff(&Firewall::default(), &live, &mut changes);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.iter().all(|c| c.sign() == -1), "{changes:?}");
        let payloads = Firewall::payloads(&changes);
        assert_eq!(payloads.len(), 1);
        let text = &payloads[0].text;
        assert!(text.contains("-X DWPROV-NAT"), "{text}");
        assert!(text.contains("-D POSTROUTING -j DWPROV-NAT"), "{text}");
        assert!(!text.contains("MASQUERADE"), "{text}");
        // And nothing at all when both sides are empty.
        let mut none = Vec::new();
        Firewall::diff(&Firewall::default(), &Firewall::default(), &mut none);
        assert!(none.is_empty() && Firewall::payloads(&none).is_empty());
    }

    #[test]
    fn the_inventory_key_is_read_and_defaults_to_iptables() {
        let inv = |extra: &str| {
            let text = format!(
                "all:\n  hosts:\n    gw1:\n      address: 10.9.0.2\n      method: static\n{extra}      lan: [{{interface: eth0, address: 192.168.0.1/24}}]\n      lines:\n        - {{name: ctc, interface: eth1, address: 198.51.100.2/24, gateway: 198.51.100.1, default: true}}\n"
            );
            let inv = crate::inventory::parse(&text, std::path::Path::new("inv.yaml")).unwrap();
            crate::model::build(&inv.hosts[0])
        };
        assert_eq!(inv("").unwrap().firewall, Backend::Iptables);
        assert_eq!(
            inv("      firewall: iptables\n").unwrap().firewall,
            Backend::Iptables
        );
        let err = inv("      firewall: nftabels\n").unwrap_err().to_string();
        assert!(err.contains("unknown firewall `nftabels`"), "{err}");
        assert!(err.contains("valid values: iptables"), "{err}");
    }

    #[test]
    fn desired_fills_only_the_chosen_backend() {
        let mut a = BTreeMap::new();
        a.insert(
            "iptables.rules".to_string(),
            "*nat\n:DWPROV-X - [0:0]\n-A DWPROV-X -j ACCEPT\nCOMMIT\n".to_string(),
        );
        let fw = Firewall::desired(&a).unwrap();
        assert!(fw.iptables.chain("nat", "DWPROV-X").is_some());
    }
}
