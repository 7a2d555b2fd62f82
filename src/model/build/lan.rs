//! The LAN side: `lan:` lists `{interface, address}`; each LAN needs its own
//! interface and a subnet that overlaps no line's and no other LAN's.
use super::{overlaps, Interfaces};
use crate::error::Result;
use crate::inventory::values;
use crate::model::{Lan, Line};
use crate::yaml::Node;

const LAN_KEYS: &[&str] = &["interface", "address"];

/// The LANs of the `lan` list, checked against the `lines` already built.
pub(super) fn lan(node: &Node, lines: &[Line], interfaces: &mut Interfaces) -> Result<Vec<Lan>> {
    let items = values::seq(node, "lan")?;
    if items.is_empty() {
        return Err(node.error(
            "`lan` is empty",
            Some("list at least one LAN interface".into()),
        ));
    }
    let mut lan: Vec<Lan> = Vec::new();
    for item in items {
        item.check_keys(LAN_KEYS, "lan entry")?;
        let iface_n = values::required(item, "interface", "lan entry")?;
        let interface = interfaces.take(iface_n)?;
        let addr_n = values::required(item, "address", "lan entry")?;
        let address = ipnet::IpNet::V4(values::iface_address(addr_n)?);
        for l in lines {
            let Some(la) = l.address else { continue };
            if overlaps(address, la) {
                return Err(addr_n.error(
                    format!(
                        "LAN subnet {} overlaps line `{}` subnet {}",
                        address.trunc(),
                        l.name,
                        la.trunc()
                    ),
                    Some("the LAN and the uplinks must use distinct subnets".into()),
                ));
            }
        }
        for o in &lan {
            if overlaps(address, o.address) {
                return Err(addr_n.error(
                    format!(
                        "LAN subnet {} overlaps LAN {} subnet {}",
                        address.trunc(),
                        o.interface,
                        o.address.trunc()
                    ),
                    None,
                ));
            }
        }
        lan.push(Lan { interface, address });
    }
    Ok(lan)
}
