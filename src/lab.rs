//! The built-in lab: a dual-line gateway in network namespaces (scripts/lab.sh, embedded).
//! Stub: replaced by the lab work.
pub enum LabAction {
    Up,
    Down,
    Status,
}
pub fn run(_action: LabAction, _prefix: &str, _dir: &std::path::Path) -> crate::Result<()> {
    Err(crate::Error::invalid("lab not implemented yet"))
}
