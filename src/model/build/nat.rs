//! Source NAT: `nat: snat` or `nat: {mode: snat}` (snat, masquerade, none);
//! snat when left out.
use crate::error::Result;
use crate::inventory::values;
use crate::model::NatMode;
use crate::yaml::Node;

const NAT_KEYS: &[&str] = &["mode"];

/// The NAT mode of the `nat` value, if any.
pub(super) fn nat(node: Option<&Node>) -> Result<NatMode> {
    let Some(n) = node else {
        return Ok(NatMode::Snat);
    };
    let mode = if n.as_str().is_some() {
        n
    } else {
        n.check_keys(NAT_KEYS, "nat")?;
        n.get("mode").ok_or_else(|| {
            n.error(
                "`nat` has no `mode`",
                Some("write `nat: {mode: snat}` (snat, masquerade or none)".into()),
            )
        })?
    };
    values::choice(
        mode,
        "nat mode",
        &[
            ("snat", NatMode::Snat),
            ("masquerade", NatMode::Masquerade),
            ("none", NatMode::None),
        ],
    )
}
