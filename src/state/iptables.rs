//! iptables state parsed from `iptables-save` (or an iptables-restore payload)
//! into a canonical typed form. Stub: filled in by the iptables work.
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Iptables {}

impl Iptables {
    /// Stub until the iptables work lands.
    pub fn parse(_text: &str) -> crate::Result<Iptables> {
        Ok(Iptables::default())
    }
}
