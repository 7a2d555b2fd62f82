//! Routes files: one IPv4 CIDR per line; `#` starts a comment; blank lines
//! are fine; a bare address means /32. No regex: a 4,000-line file parses in
//! well under a millisecond. Each entry is checked by
//! [`super::values::parse_cidr`], as an inline `routes:` entry is.
use super::values::parse_cidr;
use crate::error::{Error, Location, Result};
use crate::escape;
use ipnet::Ipv4Net;
use std::path::Path;

/// Characters a routes-file entry can hold.
fn prefix_char(c: char) -> bool {
    c.is_ascii_digit() || c == '.' || c == '/'
}

/// Characters of a line that is not a prefix shown in the error: enough to
/// recognise the file, too few to leak what a wrong file (/etc/shadow) holds.
const EXCERPT_CHARS: usize = 8;

/// Parse the text of a routes file; `file` labels error locations
/// (the file and the 1-based line and column of the bad entry).
/// Returns the prefixes in file order, duplicates included.
pub fn parse_routes(text: &str, file: &Path) -> Result<Vec<Ipv4Net>> {
    Ok(parse_routes_at(text, file)?
        .into_iter()
        .map(|e| e.net)
        .collect())
}

/// One entry of a routes file and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub net: Ipv4Net,
    pub line: u32,
    pub column: u32,
}

/// [`parse_routes`] keeping each entry's line and column (for errors found
/// later, such as a prefix listed twice).
pub fn parse_routes_at(text: &str, file: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::with_capacity(text.len() / 14);
    for (i, raw) in text.lines().enumerate() {
        let content = match raw.find('#') {
            Some(p) => &raw[..p],
            None => raw,
        };
        let token = content.trim();
        if token.is_empty() {
            continue;
        }
        let start = content.len() - content.trim_start().len();
        let column = raw[..start].chars().count() + 1;
        // Built only for an error: a PathBuf per line would double the
        // allocations of a big list.
        let location = || Location {
            file: file.into(),
            line: i + 1,
            column,
        };
        if token.contains(|c: char| c.is_whitespace())
            && token.chars().all(|c| prefix_char(c) || c.is_whitespace())
        {
            return Err(Error::Input {
                location: location(),
                message: format!(
                    "expected one prefix per line, found `{}`",
                    escape::value(token)
                ),
                hint: Some("write each prefix on its own line; `#` starts a comment".into()),
            });
        }
        // Not a prefix at all (the wrong file, say /etc/shadow): name the
        // first character that cannot be part of one and show only the
        // line's first few characters, never the line.
        if let Some((at, bad)) = token.char_indices().find(|(_, c)| !prefix_char(*c)) {
            let column = column + token[..at].chars().count();
            return Err(Error::Input {
                location: Location {
                    column,
                    ..location()
                },
                message: format!(
                    "expected an IPv4 prefix (a.b.c.d/len), found `{}` (the line starts `{}`)",
                    escape::value(&bad.to_string()),
                    escape::cut(token, EXCERPT_CHARS)
                ),
                hint: Some(
                    "a routes file holds one prefix per line and `#` comments; is this the right file?"
                        .into(),
                ),
            });
        }
        match parse_cidr(token) {
            Ok(net) => out.push(Entry {
                net,
                line: (i + 1) as u32,
                column: column as u32,
            }),
            Err(message) => {
                return Err(Error::Input {
                    location: location(),
                    message,
                    hint: Some("fix or remove this line of the routes file".into()),
                })
            }
        }
    }
    Ok(out)
}

/// Read and parse a routes file (a regular file of at most
/// [`super::MAX_ROUTES_BYTES`]).
pub fn load_routes(path: &Path) -> Result<Vec<Ipv4Net>> {
    let text = crate::input::read_text(path, crate::input::MAX_ROUTES_BYTES, "routes file")?;
    parse_routes(&text, path)
}

/// [`load_routes`] keeping each entry's line and column.
pub fn load_routes_at(path: &Path) -> Result<Vec<Entry>> {
    let text = crate::input::read_text(path, crate::input::MAX_ROUTES_BYTES, "routes file")?;
    parse_routes_at(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> (String, usize, usize) {
        match parse_routes(text, Path::new("r.txt")).unwrap_err() {
            Error::Input {
                location, message, ..
            } => (message, location.line, location.column),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn parses_comments_blank_and_bare() {
        let r = parse_routes(
            "# header\n\n1.0.1.0/24\n  2.2.2.2  # host\r\n10.0.0.0/8\n",
            Path::new("r"),
        )
        .unwrap();
        let want: Vec<Ipv4Net> = ["1.0.1.0/24", "2.2.2.2/32", "10.0.0.0/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(r, want);
    }

    #[test]
    fn errors_name_line_and_column() {
        let (m, l, c) = at("1.0.1.0/24\n\n  1.2.3.4/16\n");
        assert!(
            m.contains("host bits set") && m.contains("1.2.0.0/16"),
            "{m}"
        );
        assert_eq!((l, c), (3, 3));
        let (m, l, _) = at("1.0.1.0/33\n");
        assert!(m.contains("out of range"), "{m}");
        assert_eq!(l, 1);
        let (m, ..) = at("1.0.1.0/24 2.0.0.0/8\n");
        assert!(m.contains("one prefix per line"), "{m}");
        for bad in [
            "1.2.3/24",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "x",
            "1.2.3.4/024",
            "01.2.3.4",
        ] {
            assert!(parse_routes(bad, Path::new("r")).is_err(), "{bad}");
        }
    }

    #[test]
    fn real_lists_parse_fast() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory/isp");
        for name in ["chinanet.txt", "unicom.txt", "cmcc.txt"] {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let t = std::time::Instant::now();
            let r = parse_routes(&text, &path).unwrap();
            let dt = t.elapsed();
            assert!(r.len() > 1000, "{name}: {}", r.len());
            // Generous bound for a debug build on a shared machine; release is ~100x faster.
            assert!(dt.as_millis() < 50, "{name}: {dt:?}");
            eprintln!("{name}: {} prefixes in {dt:?}", r.len());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_routes(&text, Path::new("r.txt"));
        }

        #[test]
        fn routesish_never_panics(text in "[0-9./# \t\r\n]{0,120}") {
            if let Ok(nets) = parse_routes(&text, Path::new("r.txt")) {
                for n in nets {
                    proptest::prop_assert_eq!(n.network(), n.addr());
                }
            }
        }
    }
}
