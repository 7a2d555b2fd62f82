//! `*` and `?` globbing, shared by `--limit`, ssh config `Host` patterns and
//! ssh config `Include` file names.

/// Does `pat` (with `*` = any run, `?` = any one character) match all of `s`?
/// Case-sensitive; iterative with one backtrack point, so linear-ish and
/// never recursive on hostile patterns.
pub fn glob(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("gw*", "gw12"));
        assert!(glob("g?1", "gw1"));
        assert!(!glob("gw*", "bastion"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("GW*", "gw1"));
    }
}
