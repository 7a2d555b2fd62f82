//! Merged host vars → validated [`Gateway`], with located errors.
use super::Gateway;
use crate::error::Result;

/// Placeholder until the inventory work lands.
pub fn build(_host: &crate::inventory::Host) -> Result<Gateway> {
    Err(crate::Error::invalid("model::build not implemented yet"))
}
