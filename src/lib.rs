//! dwprov: idempotent provisioning of multi-line (dual-WAN) Linux gateways.
//!
//! The modules follow the pipeline:
//! inventory → model → render → state → diff → converge → transport → fleet.
//! Everything between the inventory file and the remote commands is pure;
//! I/O lives in `transport`, `gather`, `converge::execute` and `fleet`.

pub mod boot;
pub mod cli;
pub mod converge;
pub mod diff;
pub mod error;
pub mod escape;
pub mod fleet;
pub mod gather;
pub mod inventory;
pub mod lab;
pub mod model;
pub mod pattern;
pub mod render;
pub mod report;
pub mod safe;
pub mod saved_plan;
pub mod state;
pub mod transport;
pub mod yaml;

pub use error::{Error, Result};

/// Route protocol number dwprov tags its routes and rules with
/// (registered as `dwprov` in /etc/iproute2/rt_protos.d/dwprov.conf).
pub const ROUTE_PROTO: u8 = 201;
/// Name registered for [`ROUTE_PROTO`].
pub const ROUTE_PROTO_NAME: &str = "dwprov";
