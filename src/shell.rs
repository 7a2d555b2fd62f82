//! Shell text helpers below every module that builds gateway commands
//! (converge and the kinds' homes alike).

/// Shell single-quoting for paths and values that are already validated.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
