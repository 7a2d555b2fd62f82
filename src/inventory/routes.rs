//! Routes files: one IPv4 CIDR per line; `#` starts a comment; blank lines
//! are fine; a bare address means /32. No regex: a 4,000-line file parses in
//! well under a millisecond.
use crate::error::{Error, Location, Result};
use crate::escape;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::Path;

/// Parse a dotted-quad IPv4 address strictly: four decimal octets 0 to 255
/// without leading zeros. `198.051.100.002` is refused rather than guessed:
/// inet_aton (ping, ssh, many scripts) reads `051` as octal 41, so the same
/// text means two different hosts. The error is a message without a
/// location; `what` starts it ("`gateway`: ").
pub fn parse_addr(s: &str) -> std::result::Result<Ipv4Addr, String> {
    if let Some(fixed) = without_leading_zeros(s) {
        return Err(format!(
            "`{}` has leading zeros, which are ambiguous (inet_aton reads `010` as octal 8); write `{fixed}`",
            escape::value(s)
        ));
    }
    s.parse()
        .map_err(|_| format!("`{}` is not an IPv4 address", escape::value(s)))
}

/// `Some(corrected)` when `s` is four decimal octets (0 to 255 each once
/// its zeros are dropped) of which some have a leading zero.
fn without_leading_zeros(s: &str) -> Option<String> {
    // Fast path (every prefix of a big list comes here): no `0` followed by
    // a digit at the start of an octet.
    let b = s.as_bytes();
    let leading_zero = (0..b.len()).any(|i| {
        b[i] == b'0' && (i == 0 || b[i - 1] == b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    });
    if !leading_zero {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    if !parts.iter().any(|p| p.len() > 1 && p.starts_with('0')) {
        return None;
    }
    let octets: Vec<u16> = parts.iter().map(|p| p.parse().unwrap_or(999)).collect();
    if octets.iter().any(|o| *o > 255) {
        return None;
    }
    Some(
        octets
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A prefix length: decimal 0 to 32, no sign, no leading zero.
fn parse_len(s: &str, whole: &str) -> std::result::Result<u8, String> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not an IPv4 prefix (expected a.b.c.d/len)",
            escape::value(whole)
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!(
            "`{}`: prefix length `{s}` has a leading zero; write `/{}`",
            escape::value(whole),
            s.trim_start_matches('0').parse::<u8>().unwrap_or(0)
        ));
    }
    let n: u8 = s.parse().unwrap_or(99);
    if n > 32 {
        return Err(format!(
            "`{}`: prefix length {n} is out of range (0 to 32)",
            escape::value(whole)
        ));
    }
    Ok(n)
}

/// Parse `a.b.c.d/len` (an interface address: host bits may be set). The
/// error is a message without a location.
pub fn parse_iface_net(s: &str) -> std::result::Result<Ipv4Net, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "`{}` is not an IPv4 address with a prefix length",
            escape::value(s)
        ));
    };
    let ip = parse_addr(addr).map_err(|m| {
        if without_leading_zeros(addr).is_some() {
            m
        } else {
            format!(
                "`{}` is not an IPv4 address with a prefix length",
                escape::value(s)
            )
        }
    })?;
    let len = parse_len(len, s).map_err(|m| {
        if m.contains("leading zero") {
            m
        } else {
            format!(
                "`{}` is not an IPv4 address with a prefix length",
                escape::value(s)
            )
        }
    })?;
    Ok(Ipv4Net::new(ip, len).expect("len <= 32"))
}

/// Parse a destination prefix: `a.b.c.d/len` or a bare address (/32).
/// Host bits must be clear; leading zeros are refused (see [`parse_addr`]).
/// The error is a message without a location.
pub fn parse_cidr(s: &str) -> std::result::Result<Ipv4Net, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: Ipv4Addr = parse_addr(addr).map_err(|m| {
        if without_leading_zeros(addr).is_some() {
            m
        } else {
            format!(
                "`{}` is not an IPv4 prefix (expected a.b.c.d/len)",
                escape::value(s)
            )
        }
    })?;
    let len = match len {
        None => 32,
        Some(l) => parse_len(l, s)?,
    };
    let net = Ipv4Net::new(ip, len).expect("len <= 32");
    if net.network() != ip {
        return Err(format!(
            "`{}` has host bits set; the network is {}",
            escape::value(s),
            net.trunc()
        ));
    }
    Ok(net)
}

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
    let text = super::read_text(path, super::MAX_ROUTES_BYTES, "routes file")?;
    parse_routes(&text, path)
}

/// [`load_routes`] keeping each entry's line and column.
pub fn load_routes_at(path: &Path) -> Result<Vec<Entry>> {
    let text = super::read_text(path, super::MAX_ROUTES_BYTES, "routes file")?;
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
