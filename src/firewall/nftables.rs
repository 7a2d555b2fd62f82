//! The nftables backend (issue 12): dwprov's one table `inet dwprov`.
//! The typed model, listing parser, rendering, diff and transaction are in
//! [`crate::state::nftables`]; this is its [`FirewallBackend`]: the gather
//! section (`nftables`, gateway/gather.sh), the desired state from the
//! rendered script, one change per chain/set/element group, the `nft -c`
//! tested `nft -f` payload, the snapshot's table (taken as text by gateway/fw-nftables.sh
//! `owned_nft`, shown as `nft.json` by `fw_nftables_show`) and the boot file (templates/boot/nftables.nft.tera). The
//! gateway side of snapshot, revert and digest is gateway/fw-nftables.sh
//! ([`GATEWAY_SH`]).
use super::{Backend, DigestItem, FirewallBackend, Payload};
use crate::change::Change;
use crate::error::{Error, Result};
use crate::fact::FactSection;
use crate::facts::{Facts, Section};
use crate::ownership::{NFTABLES_NFT, NFT_FAMILY, NFT_TABLE};
use crate::state::nftables::{diff, json, script, Nftables};
use std::collections::BTreeMap;

/// The gateway side: the owned listing, the snapshot check, the revert,
/// the digest lines and the rollback plan's section (`fw_nftables_*`).
pub const GATEWAY_SH: &str = include_str!("../../gateway/fw-nftables.sh");

/// Its gather section: the owned table as `nft -j` JSON (nothing when it
/// or nft is not there; gather.sh's `f_nftables` tells that from an error).
pub const FACT_SECTIONS: &[FactSection] = &[FactSection::helper(
    "nftables",
    "f_nftables",
    "nft -j list table (dwprov's nftables table)",
)];

impl FirewallBackend for Nftables {
    const BACKEND: Backend = Backend::Nftables;
    const ARTEFACT: &'static str = "nftables.nft";

    fn gather<'a>(
        host: &str,
        get: &dyn Fn(&str) -> Section<'a>,
        facts: &mut Facts,
    ) -> Result<Nftables> {
        if !facts.has_tool("nft") {
            return Ok(Nftables::default());
        }
        let s = get("nftables");
        if s.status != 0 {
            return Err(Error::Remote {
                host: host.into(),
                what: format!("nft -j list table {NFT_FAMILY} {NFT_TABLE}"),
                status: s.status,
                stderr: s.stderr.trim().to_string(),
            });
        }
        json::parse(s.stdout)
    }

    fn parse_desired(text: &str) -> Result<Nftables> {
        script::parse(text)
    }

    fn diff(desired: &Nftables, live: &Nftables, changes: &mut Vec<Change>) {
        changes.extend(diff::diff(live, desired).into_iter().map(Change::Nft));
    }

    /// One transaction, checked with `nft -c` before anything changes.
    fn payload(changes: &[Change]) -> Option<Payload> {
        let ours: Vec<diff::NftChange> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Nft(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if ours.is_empty() {
            return None;
        }
        let table = format!("table {NFT_FAMILY} {NFT_TABLE}");
        Some(Payload {
            test: "nft -c -f - >/dev/null".into(),
            apply: "nft -f -".into(),
            step: "nft".into(),
            what: format!("nft -f ({table})"),
            rejected: format!("nft -c rejected the transaction ({table})"),
            text: diff::payload(&ours),
        })
    }

    /// Not counted: the snapshot checks the owned table by its JSON listing,
    /// not by a line count (nft wraps set elements over lines as it likes).
    fn owned_lines(&self) -> usize {
        0
    }

    /// The snapshot's `nft.json` (`nft -j list table`, empty: no table),
    /// which the gateway lists from the snapshot's text in a throwaway
    /// network namespace (gateway/fw-nftables.sh `fw_nftables_show`).
    fn from_snapshot(sections: &BTreeMap<String, Section>) -> Result<Nftables> {
        match sections.get("nft.json") {
            Some(s) if s.status == 0 => json::parse(s.stdout),
            Some(s) => Err(Error::invalid(format!(
                "the snapshot's nftables table could not be read back on the gateway \
                 (`unshare -n` and `nft -f` of its listing exited {}: {}); the revert \
                 itself does not need this",
                s.status,
                s.stdout.trim().lines().last().unwrap_or("no message")
            ))),
            // A snapshot of an older dwprov (or of a gateway without nft).
            None => Ok(Nftables::default()),
        }
    }

    fn digest(&self) -> Vec<DigestItem<'_>> {
        self.table.iter().map(DigestItem::Nftables).collect()
    }

    fn boot_context(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("nft_script", diff::full(self).into())]
    }

    fn boot_files() -> &'static [(&'static str, &'static str)] {
        &[("boot/nftables.nft", NFTABLES_NFT)]
    }
}
