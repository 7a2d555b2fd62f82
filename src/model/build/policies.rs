//! Policies: `{from, to, line}` sends matching traffic via one line; at least
//! one of `from` (a LAN source) and `to` (a destination) is given.
use super::line_ref;
use crate::error::Result;
use crate::inventory::values;
use crate::model::Policy;
use crate::yaml::Node;

const POLICY_KEYS: &[&str] = &["from", "to", "line"];

/// The policies of the `policies` list, on the gateway's `line_names`.
pub(super) fn policies(node: &Node, line_names: &[&str]) -> Result<Vec<Policy>> {
    let mut policies = Vec::new();
    for item in values::seq(node, "policies")? {
        item.check_keys(POLICY_KEYS, "policy")?;
        let from = match item.get("from") {
            Some(n) => Some(values::cidr(n, "from")?.into()),
            None => None,
        };
        let to = match item.get("to") {
            Some(n) => Some(values::cidr(n, "to")?.into()),
            None => None,
        };
        if from.is_none() && to.is_none() {
            return Err(item.error(
                "policy has neither `from` nor `to`",
                Some("give a LAN source (`from: 192.168.0.50/32`) and/or a destination (`to: 8.8.8.8/32`)".into()),
            ));
        }
        let line_n = values::required(item, "line", "policy")?;
        let line = line_ref(line_n, line_names)?.to_string();
        policies.push(Policy { from, to, line });
    }
    Ok(policies)
}
