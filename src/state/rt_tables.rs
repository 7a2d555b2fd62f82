//! /etc/iproute2/rt_tables: `id name` lines.
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RtTables {}
