//! The typed firewall state of every backend and the backend a gateway
//! uses; what each backend does with it is in [`crate::firewall`].
use super::iptables::Iptables;
use serde::Serialize;

/// The firewall a gateway is provisioned with (`firewall:` in the inventory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `iptables-save` / `iptables-restore --noflush`, chains `DWPROV-*`.
    #[default]
    Iptables,
    /// `nft -j list` / one `nft -f` transaction, table `inet dwprov`.
    Nftables,
}

impl Backend {
    /// Every backend with its inventory spelling, in a fixed order.
    pub const ALL: &'static [(&'static str, Backend)] = &[
        ("iptables", Backend::Iptables),
        ("nftables", Backend::Nftables),
    ];

    /// The inventory spelling.
    pub fn name(self) -> &'static str {
        Backend::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// The owned (and, as gathered, foreign) firewall state of every backend.
/// Flattened into `State` when serialized, so `gather --format json` shows
/// `iptables` where it always did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Firewall {
    pub iptables: Iptables,
    pub nftables: super::nftables::Nftables,
}

/// One owned firewall object as the stale-plan digest sees it (untagged:
/// an iptables entry serializes as the `[table, chain, rules]` it always was).
#[derive(Serialize)]
#[serde(untagged)]
pub enum DigestItem<'a> {
    Iptables(
        &'a String,
        &'a String,
        Vec<&'a crate::state::iptables::IptRule>,
    ),
    /// The whole owned nftables table (it is one object).
    Nftables(&'a crate::state::nftables::Table),
}
