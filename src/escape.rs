//! Making user-supplied text safe to print in an error message.
//!
//! Inventory values, routes-file lines and template output reach the
//! terminal through error messages. Printed raw, an ESC starts a terminal
//! control sequence (a value can repaint the screen or retitle the window), a
//! NUL or newline breaks the message's shape, and a 50 MB value floods the
//! terminal. Every user value that enters a message goes through
//! [`value`]: control characters are shown as escapes (`\x1b`, `\0`, `\n`,
//! C1 as `\u{9b}`) and anything past [`MAX_CHARS`] characters is cut, saying
//! how long the whole value was.
//!
//! [`controls`] only escapes (no cut): `Error`'s Display applies it to every
//! input message as a safety net for a value a call site forgot to pass
//! through [`value`].

/// Characters of a value shown before it is cut.
pub const MAX_CHARS: usize = 80;

/// `s` escaped (see the module doc) and cut after [`MAX_CHARS`] characters:
/// `abc…` followed by ` (N bytes)` with the whole value's length.
pub fn value(s: &str) -> String {
    cut(s, MAX_CHARS)
}

/// Like [`value`] with a caller-chosen number of characters: `excerpt(line,
/// 8)` for content that may be secret (a routes file that is not one).
pub fn cut(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4) + 16);
    for (shown, c) in s.chars().enumerate() {
        if shown == max_chars {
            out.push_str(&format!("… ({} bytes)", s.len()));
            return out;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// `s` with every control character escaped, whatever its length.
pub fn controls(s: &str) -> String {
    if !s.chars().any(is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// C0 controls, DEL and C1 controls: everything a terminal may act on.
fn is_control(c: char) -> bool {
    c.is_control()
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\0' => out.push_str("\\0"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 && is_control(c) => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if is_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(value("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(value("x\0y\nz\r\t"), "x\\0y\\nz\\r\\t");
        assert_eq!(value("\u{7f}\u{9b}31m"), "\\x7f\\u{9b}31m");
        assert_eq!(value("ünïcode ok"), "ünïcode ok");
        assert_eq!(controls("a\u{1b}b"), "a\\x1bb");
        assert_eq!(controls("plain"), "plain");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "x".repeat(50_000_000);
        let v = value(&long);
        assert_eq!(v, format!("{}… (50000000 bytes)", "x".repeat(80)));
        assert_eq!(value(&"y".repeat(80)), "y".repeat(80));
        assert_eq!(cut("root:$y$j9T$secret", 8), "root:$y$… (18 bytes)");
        // An escape counts as one character shown.
        assert_eq!(cut("\u{1b}\u{1b}\u{1b}", 2), "\\x1b\\x1b… (3 bytes)");
    }
}
