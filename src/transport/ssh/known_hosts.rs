//! OpenSSH `known_hosts` files: parse, look up a host (plain names, patterns,
//! `[host]:port`, hashed `|1|salt|hash` entries), fingerprint, append.
//!
//! Semantics follow OpenSSH rather than libssh2's `KnownHosts::check_port`,
//! which falls back from `[host]:port` to the bare host name (a key recorded
//! for port 22 would then vouch for any other port of that host).
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// `@marker` in front of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// `|1|base64(salt)|base64(hmac-sha1(salt, name))`
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns (`*`, `?`, leading `!` negates).
    Patterns(Vec<String>),
}

/// One usable line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    pub marker: Marker,
    hosts: Hosts,
    pub key_type: String,
    pub key_blob: Vec<u8>,
}

impl Entry {
    /// Does this line name `name` (as given by [`host_name`])?
    pub fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => {
                hmac_sha1(salt, name.as_bytes()).as_slice() == hash.as_slice()
            }
            Hosts::Patterns(pats) => {
                let name = name.to_ascii_lowercase();
                let mut hit = false;
                for p in pats {
                    if let Some(neg) = p.strip_prefix('!') {
                        if glob(&neg.to_ascii_lowercase(), &name) {
                            return false;
                        }
                    } else if glob(&p.to_ascii_lowercase(), &name) {
                        hit = true;
                    }
                }
                hit
            }
        }
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key_blob)
    }
}

/// The name OpenSSH records for a host: `addr` on port 22, `[addr]:port` otherwise.
pub fn host_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// What a known_hosts file says about a host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The key is recorded for this host (line).
    Match(usize),
    /// Nothing recorded for this host at all.
    NotFound,
    /// Keys of the same type are recorded for this host, but not this one.
    Mismatch(Vec<Entry>),
    /// Only keys of other types are recorded for this host.
    OtherTypes(Vec<Entry>),
    /// The key is marked `@revoked` (line).
    Revoked(usize),
}

#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
    /// Lines that could not be parsed (1-based), ignored like OpenSSH does.
    pub bad_lines: Vec<usize>,
}

impl KnownHosts {
    /// Read `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> io::Result<KnownHosts> {
        let mut text = String::new();
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let mut raw = Vec::new();
                f.read_to_end(&mut raw)?;
                text = String::from_utf8_lossy(&raw).into_owned();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(KnownHosts::parse(path, &text))
    }

    pub fn parse(path: &Path, text: &str) -> KnownHosts {
        let mut kh = KnownHosts {
            path: path.to_path_buf(),
            ..Default::default()
        };
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            match parse_line(i + 1, l) {
                Some(e) => kh.entries.push(e),
                None => kh.bad_lines.push(i + 1),
            }
        }
        kh
    }

    /// Plain (non-CA, non-revoked) entries naming `name`.
    pub fn keys_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.marker == Marker::None && e.matches(name))
    }

    /// Check `blob` (an SSH public key blob) presented by `name`.
    pub fn check(&self, name: &str, blob: &[u8]) -> Check {
        let key_type = blob_key_type(blob).unwrap_or_default();
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key_blob == blob)
        {
            return Check::Revoked(e.line);
        }
        let recorded: Vec<&Entry> = self.keys_for(name).collect();
        if let Some(e) = recorded.iter().find(|e| e.key_blob == blob) {
            return Check::Match(e.line);
        }
        let same: Vec<Entry> = recorded
            .iter()
            .filter(|e| e.key_type == key_type)
            .map(|e| (*e).clone())
            .collect();
        if !same.is_empty() {
            return Check::Mismatch(same);
        }
        if recorded.is_empty() {
            Check::NotFound
        } else {
            Check::OtherTypes(recorded.into_iter().cloned().collect())
        }
    }

    /// Host-key algorithms (libssh2 names, most preferred first) for the key
    /// types recorded for `name`; empty when nothing is recorded.
    pub fn algorithms_for(&self, name: &str) -> Vec<&'static str> {
        let types: Vec<&str> = self.keys_for(name).map(|e| e.key_type.as_str()).collect();
        const ORDER: &[(&str, &[&str])] = &[
            ("ssh-ed25519", &["ssh-ed25519"]),
            ("ecdsa-sha2-nistp256", &["ecdsa-sha2-nistp256"]),
            ("ecdsa-sha2-nistp384", &["ecdsa-sha2-nistp384"]),
            ("ecdsa-sha2-nistp521", &["ecdsa-sha2-nistp521"]),
            ("ssh-rsa", &["rsa-sha2-512", "rsa-sha2-256"]),
            ("ssh-dss", &["ssh-dss"]),
        ];
        let mut out = Vec::new();
        for (t, algs) in ORDER {
            if types.contains(t) {
                out.extend_from_slice(algs);
            }
        }
        out
    }
}

/// Append `name keytype base64` (a plain, unhashed entry) to `path`,
/// creating the file (0600) and its directory (0700) when missing.
pub fn append(path: &Path, name: &str, blob: &[u8]) -> io::Result<String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let key_type =
        blob_key_type(blob).ok_or_else(|| io::Error::other("malformed host key blob"))?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    // Make sure we start on a fresh line.
    let needs_newline = match std::fs::read(path) {
        Ok(b) => !b.is_empty() && !b.ends_with(b"\n"),
        Err(_) => false,
    };
    let line = format!("{name} {key_type} {}", base64_encode(blob, true));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mut buf = String::new();
    if needs_newline {
        buf.push('\n');
    }
    buf.push_str(&line);
    buf.push('\n');
    f.write_all(buf.as_bytes())?;
    f.sync_all()?;
    Ok(line)
}

fn parse_line(line: usize, l: &str) -> Option<Entry> {
    let mut fields = l.split_whitespace();
    let mut first = fields.next()?;
    let mut marker = Marker::None;
    if first.starts_with('@') {
        marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => return None,
        };
        first = fields.next()?;
    }
    let key_type = fields.next()?.to_string();
    let key_blob = base64_decode(fields.next()?)?;
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        Hosts::Hashed {
            salt: base64_decode(salt)?,
            hash: base64_decode(hash)?,
        }
    } else {
        Hosts::Patterns(
            first
                .split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        )
    };
    Some(Entry {
        line,
        marker,
        hosts,
        key_type,
        key_blob,
    })
}

/// `*` and `?` glob, as OpenSSH's match_pattern.
fn glob(pat: &str, s: &str) -> bool {
    let (p, s) = (pat.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
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
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// The key type named inside an SSH public key blob (its first string).
pub fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let t = blob.get(4..4 + len)?;
    String::from_utf8(t.to_vec()).ok()
}

/// OpenSSH-style fingerprint: `SHA256:` + unpadded base64 of sha256(blob).
pub fn fingerprint(blob: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("SHA256:{}", base64_encode(&Sha256::digest(blob), false))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single dangling character cannot encode a byte.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// SHA-1 (FIPS 180-4): only for matching hashed known_hosts names.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (RFC 2104).
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_and_hmac_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // RFC 2202 test case 2.
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // RFC 2202 test case 6 (key longer than a block).
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data, true)).unwrap(), data);
            assert_eq!(base64_decode(&base64_encode(&data, false)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foob", true), "Zm9vYg==");
        assert!(base64_decode("Zm9v!").is_none());
    }

    fn blob(t: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (t.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(t.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn lookup_semantics() {
        let ed = blob("ssh-ed25519", b"one");
        let ed2 = blob("ssh-ed25519", b"two");
        let ec = blob("ecdsa-sha2-nistp256", b"three");
        let rsa = blob("ssh-rsa", b"four");
        let salt = b"0123456789abcdefghij";
        let hashed = format!(
            "|1|{}|{}",
            base64_encode(salt, true),
            base64_encode(&hmac_sha1(salt, b"[10.0.0.9]:2222"), true)
        );
        let text = format!(
            "# comment\n\
             gw1,10.0.0.1 ssh-ed25519 {}\n\
             [10.0.0.1]:2222 ecdsa-sha2-nistp256 {}\n\
             {hashed} ssh-rsa {}\n\
             10.1.*,!10.1.0.5 ssh-ed25519 {}\n\
             garbage\n",
            base64_encode(&ed, true),
            base64_encode(&ec, true),
            base64_encode(&rsa, true),
            base64_encode(&ed2, true),
        );
        let kh = KnownHosts::parse(Path::new("kh"), &text);
        assert_eq!(kh.bad_lines, vec![6]);
        assert_eq!(kh.check("10.0.0.1", &ed), Check::Match(2));
        assert!(matches!(kh.check("10.0.0.1", &ed2), Check::Mismatch(v) if v[0].line == 2));
        // A port-22 key does not vouch for another port.
        assert_eq!(kh.check(&host_name("10.0.0.1", 2222), &ec), Check::Match(3));
        assert!(matches!(
            kh.check(&host_name("10.0.0.1", 2222), &ed),
            Check::OtherTypes(_)
        ));
        assert_eq!(kh.check("10.0.0.2", &ed), Check::NotFound);
        assert_eq!(kh.check("[10.0.0.9]:2222", &rsa), Check::Match(4));
        assert_eq!(
            kh.algorithms_for("[10.0.0.9]:2222"),
            vec!["rsa-sha2-512", "rsa-sha2-256"]
        );
        assert_eq!(
            kh.algorithms_for("[10.0.0.1]:2222"),
            vec!["ecdsa-sha2-nistp256"]
        );
        assert_eq!(kh.check("10.1.2.3", &ed2), Check::Match(5));
        assert_eq!(kh.check("10.1.0.5", &ed2), Check::NotFound);
        assert!(kh.algorithms_for("nowhere").is_empty());
    }
}
