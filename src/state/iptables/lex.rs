//! Tokenising and quoting exactly as `iptables-restore` / `iptables-save` do.
//!
//! iptables-restore splits a line on blanks; a double quote opens a quoted
//! part in which `\` escapes the next character, and the closing quote ends
//! the token. Single quotes and backslashes outside double quotes are plain
//! characters (so `'a b'` is two tokens, exactly as iptables-restore reads it).

/// Split one rule line into tokens. Errors on an unterminated quote.
pub(crate) fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false; // a token is open (possibly empty, from "")
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Quoted part: runs to the closing quote, which ends the token.
                let mut closed = false;
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => match chars.next() {
                            Some(e) => cur.push(e),
                            None => break,
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        other => cur.push(other),
                    }
                }
                if !closed {
                    return Err("unterminated double quote".into());
                }
                out.push(std::mem::take(&mut cur));
                have = false;
            }
            ' ' | '\t' | '\n' | '\r' => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            other => {
                cur.push(other);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    Ok(out)
}

/// `xtables_save_string`: bare when non-empty and only `[A-Za-z0-9_-]`,
/// otherwise double-quoted with `"`, `\` and `'` backslash-escaped.
pub(crate) fn save_string(s: &str, out: &mut String) {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        out.push_str(s);
    } else {
        quote(s, out);
    }
}

/// Quote only when iptables-restore could not read the value bare
/// (empty, blanks, quotes, backslashes). Used for option values whose
/// extension prints them raw.
pub(crate) fn minimal_string(s: &str, out: &mut String) {
    let needs = s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\');
    if needs {
        quote(s, out);
    } else {
        out.push_str(s);
    }
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        tokenize(s).unwrap()
    }

    #[test]
    fn splits_on_blanks() {
        assert_eq!(
            t("  -A  INPUT\t-j ACCEPT "),
            ["-A", "INPUT", "-j", "ACCEPT"]
        );
    }

    #[test]
    fn double_quotes_and_escapes() {
        assert_eq!(t(r#"--comment "a b""#), ["--comment", "a b"]);
        assert_eq!(
            t(r#"--comment "it\'s \"x\" \\""#),
            ["--comment", r#"it's "x" \"#]
        );
        assert_eq!(t(r#"--comment """#), ["--comment", ""]);
        // The closing quote ends the token.
        assert_eq!(t(r#""a"b"#), ["a", "b"]);
    }

    #[test]
    fn single_quotes_are_literal_like_iptables_restore() {
        assert_eq!(t("--comment 'a b'"), ["--comment", "'a", "b'"]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert!(tokenize(r#"--comment "abc"#).is_err());
        assert!(tokenize(r#"--comment "abc\"#).is_err());
    }

    #[test]
    fn save_string_quotes_like_iptables_save() {
        let q = |s: &str| {
            let mut o = String::new();
            save_string(s, &mut o);
            o
        };
        assert_eq!(q("simple-1_x"), "simple-1_x");
        assert_eq!(q("-dash"), "-dash");
        assert_eq!(q("a.b"), "\"a.b\"");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("it's"), r#""it\'s""#);
        assert_eq!(q(r"a\b"), r#""a\\b""#);
        assert_eq!(q("dwprov: jump"), "\"dwprov: jump\"");
    }
}
