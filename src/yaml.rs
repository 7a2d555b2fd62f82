//! The only module that touches a YAML library (serde_yaml is archived upstream;
//! swapping it for a fork must stay a one-file change).
//!
//! [`Node`] is a YAML value that remembers where each piece came from, so
//! errors found after merging group and host vars still point at the line
//! the admin wrote.
use crate::error::Location;

/// A YAML value with its source location (stub: filled in by the inventory work).
#[derive(Debug, Clone)]
pub struct Node {
    pub location: Location,
}
