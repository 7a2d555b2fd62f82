//! Shell text helpers below every module that builds gateway commands
//! (converge and the kinds' homes alike).

/// Shell single-quoting for paths and values that are already validated.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `cmd` fed `payload` as a heredoc with delimiter `d` (random, so never
/// inside the payload); on failure the script stops naming `what`.
pub fn heredoc(cmd: &str, what: &str, d: &str, payload: &str) -> String {
    let mut s = format!("{cmd} <<'{d}' || fail {}\n{payload}", sh_quote(what));
    if !payload.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(d);
    s.push('\n');
    s
}
