//! Routes files: one IPv4 CIDR per line; `#` starts a comment; blank lines
//! are fine; a bare address means /32. No regex: a 4,000-line file parses in
//! well under a millisecond.
use crate::error::{Error, Location, Result};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::Path;

/// Parse a destination prefix: `a.b.c.d/len` or a bare address (/32).
/// Host bits must be clear. The error is a message without a location.
pub fn parse_cidr(s: &str) -> std::result::Result<Ipv4Net, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 prefix (expected a.b.c.d/len)"))?;
    let len = match len {
        None => 32,
        Some(l) if !l.is_empty() && l.len() <= 2 && l.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u8 = l.parse().unwrap_or(99);
            if n > 32 {
                return Err(format!(
                    "`{s}`: prefix length {n} is out of range (0 to 32)"
                ));
            }
            n
        }
        Some(_) => {
            return Err(format!(
                "`{s}` is not an IPv4 prefix (expected a.b.c.d/len)"
            ))
        }
    };
    let net = Ipv4Net::new(ip, len).expect("len <= 32");
    if net.network() != ip {
        return Err(format!(
            "`{s}` has host bits set; the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parse the text of a routes file; `file` labels error locations
/// (the file and the 1-based line and column of the bad entry).
/// Returns the prefixes in file order, duplicates included.
pub fn parse_routes(text: &str, file: &Path) -> Result<Vec<Ipv4Net>> {
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
        let location = Location {
            file: file.to_path_buf(),
            line: i + 1,
            column: raw[..start].chars().count() + 1,
        };
        if token.contains(|c: char| c.is_whitespace()) {
            return Err(Error::Input {
                location,
                message: format!("expected one prefix per line, found `{token}`"),
                hint: Some("write each prefix on its own line; `#` starts a comment".into()),
            });
        }
        match parse_cidr(token) {
            Ok(net) => out.push(net),
            Err(message) => {
                return Err(Error::Input {
                    location,
                    message,
                    hint: Some("fix or remove this line of the routes file".into()),
                })
            }
        }
    }
    Ok(out)
}

/// Read and parse a routes file.
pub fn load_routes(path: &Path) -> Result<Vec<Ipv4Net>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_routes(&text, path)
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
