//! The units kind's gateway side: programs dwprov runs on the gateway (the
//! boot units and the line-health agent). Their files are the files kind's
//! ([`crate::files`]); they are enabled, started, restarted or stopped after
//! them by `boot::post_install` and `agent::deploy`, and the apply writes
//! `$S/units.sh`, which undoes that for the files it changes
//! (`safe::revert_units`). Here is the revert step that runs it, registered
//! as [`crate::kind::Kind::Units`]. A module of its own below `kind`, since
//! `boot` and `agent` are above it.

/// The kind's gateway-side revert step (`revert_units`), appended to the
/// installed lib.sh by [`crate::kind::gateway_library`].
pub const GATEWAY_SH: &str = include_str!("../gateway/kind-units.sh");
