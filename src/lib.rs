//! dwprov: idempotent provisioning of multi-line (dual-WAN) Linux gateways.
//!
//! The modules follow the pipeline:
//! inventory → model → render → state → diff → converge → transport → fleet.
//! Everything between the inventory file and the remote commands is pure;
//! I/O lives in `transport`, `gather`, `converge::execute` and `fleet`.

pub mod agent;
pub mod boot;
pub mod change;
pub mod check;
pub mod cli;
pub mod converge;
pub mod diff;
pub mod error;
pub mod escape;
pub mod fact;
pub mod facts;
pub mod files;
pub mod firewall;
pub mod fleet;
pub mod follow;
pub mod gather;
pub mod import;
#[cfg(test)]
mod import_graph;
pub mod input;
pub mod inventory;
pub mod kind;
pub mod lab;
pub mod model;
pub mod nexthops;
pub mod nonce;
pub mod ownership;
pub mod pattern;
pub mod render;
pub mod report;
pub mod rollback;
pub mod routing;
pub mod safe;
pub mod saved_plan;
pub mod shell;
pub mod state;
pub mod status;
pub mod sysctls;
pub mod takeover;
pub mod templates;
pub mod trace;
pub mod transport;
pub mod units;
pub mod verified;
pub mod yaml;

pub use error::{Error, Result};

/// dwprov's route protocol (see [`ownership`], where every owned name lives).
pub use ownership::{ROUTE_PROTO, ROUTE_PROTO_NAME};
