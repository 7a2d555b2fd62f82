//! ip rules and routes. Stub.
use serde::Serialize;
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RuleAction {}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {}
