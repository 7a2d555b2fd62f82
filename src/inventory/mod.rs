//! Ansible-shaped inventory: `all:` with `hosts:`, `children:` (nested groups)
//! and `vars:`. Host vars override group vars, deep-merged.
use crate::error::Result;
use crate::transport::Connection;
use crate::yaml::Node;
use std::path::{Path, PathBuf};

/// One host of the inventory with its merged vars.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Groups the host belongs to, outermost first (without "all").
    pub groups: Vec<String>,
    /// Merged vars: group vars (outer to inner), then host vars.
    pub vars: Node,
    /// How to reach the host.
    pub connection: Connection,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub file: PathBuf,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// group name → member host names (transitively), for --limit.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

impl Inventory {
    /// Directory relative paths in the inventory resolve against.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// Placeholder until the inventory work lands.
pub fn load(path: &Path) -> Result<Inventory> {
    Err(crate::Error::invalid(format!(
        "{}: inventory loading not implemented yet",
        path.display()
    )))
}
