//! The verify of a commit-confirmed apply: dwprov's objects listed on the
//! gateway right after the changes, in the apply's own round trip, and
//! read into the typed model with the gather's parsers.
//!
//! The listings (gateway/lib.sh `owned_listings`) are the owned ones, not
//! a whole gather: each managed family's rules and owned routes as `ip -j`
//! lists them, every firewall backend's listing, the nexthop objects, the
//! values of the sysctls the apply sets, and a digest of each owned file
//! (the file itself never travels back: its content is the one the apply
//! sent, or it is not). The same listings give the digest the apply
//! records (`listing_digest`), which the confirm over a new connection
//! computes again ([`crate::safe::verify_confirm_script`]): the routes are
//! listed once for both, and the converged state crosses the link once.
use crate::error::{Error, Result};
use crate::facts::{Facts, Sections};
use crate::kind::{Kind, KINDS};
use crate::shell::{heredoc, sh_quote};
use crate::state::family::MANAGED;
use crate::state::State;
use std::collections::{BTreeMap, BTreeSet};

/// Path to content, as `State::files`.
type Files = BTreeMap<String, String>;
use std::fmt::Write as _;

/// Where the apply lists its objects, inside the snapshot directory `$S`.
pub const LISTED_DIR: &str = "$S/verify";
/// Where the confirm lists them again.
pub const RELISTED_DIR: &str = "$S/confirm";

/// The owned files the listings digest: the ones the plan found and the
/// desired ones (a file the apply removes must be gone).
fn owned_paths<'a>(old: &'a State, desired: &'a State) -> BTreeSet<&'a String> {
    old.files.keys().chain(desired.files.keys()).collect()
}

/// The arguments of `owned_listings` after its directory and mode: the owned files
/// and the /proc/sys entry of every sysctl the apply sets, quoted. The
/// apply and the confirm list with the same ones.
pub fn listing_args(old: &State, desired: &State) -> String {
    let sysctls = desired.sysctls.keys().map(|k| format!("/proc/sys/{k}"));
    owned_paths(old, desired)
        .into_iter()
        .cloned()
        .chain(sysctls)
        .map(|p| sh_quote(&p))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The apply script's verification, after its changes (snapshot `$S`, the
/// library loaded, the section marker in `$D`): list the owned objects,
/// record their digest in `$S/verify.digest` (none when a listing failed:
/// the new connection then confirms nothing and the timer reverts), read
/// the sysctls' values, and print every listing as a section. `d` is the
/// heredoc delimiter.
pub fn listing_script(old: &State, desired: &State, d: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "owned_listings \"{LISTED_DIR}\" verify {}\nvr=$?",
        listing_args(old, desired)
    );
    let keys: String = desired.sysctls.keys().map(|k| format!("{k}\n")).collect();
    s.push_str(&heredoc(
        &format!("snapshot_sysctls \"{LISTED_DIR}/sysctls.all\""),
        "list the sysctls",
        d,
        &keys,
    ));
    let _ = writeln!(
        s,
        "echo \"$vr\" > \"{LISTED_DIR}/status.all\"\n\
         if [ \"$vr\" = 0 ]; then listing_digest \"{LISTED_DIR}\" > \"$S/verify.digest.tmp\" && mv -f \"$S/verify.digest.tmp\" \"$S/verify.digest\"; fi\n\
         show_listings \"{LISTED_DIR}\""
    );
    s
}

/// The owned state the apply listed ([`listing_script`]'s sections in
/// `text`, framed by `marker`), in the typed model: rules, owned routes,
/// nexthop objects and the firewall read by the gather's own parsers
/// (`plan` says which tools the gateway has), the listed sysctls, and the
/// owned files of `old` and `desired`: a file whose digest is that of the
/// desired content has it, another holds a note of its digest (so that
/// the verify finds it different), an unlisted one is absent. The table
/// names are the plan's.
pub fn state(
    host: &str,
    text: &str,
    marker: &str,
    plan: &Facts,
    old: &State,
    desired: &State,
) -> Result<State> {
    let start = text.find(&format!("{marker} begin ")).unwrap_or(text.len());
    let sections = crate::gather::split_sections(&text[start..], marker)?;
    let listing = |name: &str| -> Result<&str> {
        sections
            .get(name)
            .map(|s| s.stdout)
            .ok_or_else(|| Error::Remote {
                host: host.into(),
                what: "the apply's verify".into(),
                status: 1,
                stderr: format!(
                    "the listing `{name}` is missing from the apply's output (cut off?)"
                ),
            })
    };
    if listing("status.all")?.trim() != "0" {
        return Err(Error::Remote {
            host: host.into(),
            what: "listing dwprov's objects after the apply (gateway/lib.sh owned_listings)".into(),
            status: 1,
            stderr: sections
                .get("errors")
                .map(|s| s.stdout.trim().to_string())
                .unwrap_or_default(),
        });
    }
    let mut st = State {
        rt_tables: plan.state.rt_tables.clone(),
        ..State::default()
    };
    // Kind by kind, in the registry's order (crate::kind): a new kind's
    // listing (gateway/lib.sh `owned_listings`) is read here.
    for kind in KINDS {
        match kind {
            Kind::Files => st.files = files(listing("sums")?, old, desired),
            Kind::Sysctls => st.sysctls = crate::sysctls::parse_listing(listing("sysctls.all")?),
            Kind::RulesRoutes => {
                for &f in MANAGED {
                    let flag = f.ip_flag();
                    st.rules.extend(crate::state::ip::parse_rules_json_of(
                        listing(&format!("rules{flag}.all"))?,
                        f,
                    )?);
                    st.routes.extend(crate::state::ip::parse_routes_json_of(
                        listing(&format!("routes{flag}"))?,
                        f,
                    )?);
                }
            }
            Kind::Nexthops if plan.nexthops => {
                st.nexthops = crate::state::nexthop::parse_json(listing("nexthops.all")?)?;
                st.nexthops.sort();
            }
            // A kernel without nexthop objects has none.
            Kind::Nexthops => {}
            Kind::Firewall => {
                // The gather's reader, on the listings under its section names.
                let fw: Sections = [("iptables", "iptables.all"), ("nftables", "nftables")]
                    .into_iter()
                    .filter_map(|(as_gathered, listed)| {
                        Some((as_gathered.to_string(), *sections.get(listed)?))
                    })
                    .collect();
                let get = |n: &str| fw.get(n).copied().unwrap_or_default();
                let mut scratch = Facts {
                    tools: plan.tools.clone(),
                    ..Facts::default()
                };
                st.firewall = crate::firewall::Firewall::gather(host, &get, &mut scratch)?;
            }
            // Their files are Kind::Files.
            Kind::Units => {}
        }
    }
    Ok(st)
}

/// The owned files as the `sums` listing shows them (see [`state`]).
fn files(sums: &str, old: &State, desired: &State) -> Files {
    let listed: BTreeMap<&str, &str> = sums.lines().filter_map(sum_line).collect();
    let mut out = Files::new();
    for path in owned_paths(old, desired) {
        let Some(sum) = listed.get(path.as_str()) else {
            continue;
        };
        let content = match desired.files.get(path) {
            Some(want) if file_sum(want, sum) == *sum => want.clone(),
            _ => format!("(a file whose digest is {sum}, not the content applied)\n"),
        };
        out.insert(path.clone(), content);
    }
    out
}

/// `(path, sum)` of a line of `sha256sum` (`HEX  PATH`) or, on a gateway
/// without it, POSIX `cksum` (`CRC SIZE PATH`); the sum as the line has it.
fn sum_line(l: &str) -> Option<(&str, &str)> {
    if let Some((hex, path)) = l.split_once("  ") {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some((path, hex));
        }
    }
    let mut w = l.splitn(3, ' ');
    let (crc, size, path) = (w.next()?, w.next()?, w.next()?);
    let both = &l[..crc.len() + 1 + size.len()];
    (crc.bytes().all(|b| b.is_ascii_digit()) && size.bytes().all(|b| b.is_ascii_digit()))
        .then_some((path, both))
}

/// `content`'s sum in the spelling of `like` (a sha256 hex digest, or
/// cksum's `CRC SIZE`).
fn file_sum(content: &str, like: &str) -> String {
    if like.contains(' ') {
        format!("{} {}", cksum(content.as_bytes()), content.len())
    } else {
        use sha2::{Digest, Sha256};
        Sha256::digest(content.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// POSIX `cksum`'s CRC: CRC-32 (polynomial 0x04C11DB7, MSB first) over the
/// bytes and then the length's bytes (least significant first, no zeros
/// after the last), complemented.
fn cksum(data: &[u8]) -> u32 {
    fn step(crc: u32, byte: u8) -> u32 {
        let mut c = crc ^ (u32::from(byte) << 24);
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
        }
        c
    }
    let mut crc = data.iter().fold(0, |c, &b| step(c, b));
    let mut n = data.len();
    while n > 0 {
        crc = step(crc, (n & 0xff) as u8);
        n >>= 8;
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the real tools of this machine (coreutils).
    #[test]
    fn sums_are_the_gateway_tools_sums() {
        for content in ["", "a", "abc\n", "route add 1.2.3.0/24 dev eth0\n"] {
            for (tool, like) in [("sha256sum", "x"), ("cksum", "1 1")] {
                let mut child = std::process::Command::new(tool)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(content.as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                let out = String::from_utf8(out.stdout).unwrap();
                // `HEX  -` and `CRC SIZE` (no name for stdin).
                let want = out.trim_end().trim_end_matches("  -");
                assert_eq!(file_sum(content, like), want, "{tool} of {content:?}");
            }
        }
    }

    const RULES: &str = include_str!("../tests/fixtures/ip/fwmark-rules.json");
    const ROUTES: &str = include_str!("../tests/fixtures/ip/fwmark-routes.json");
    const SAVE: &str = include_str!("../tests/fixtures/ip/fwmark-iptables.save");

    /// `(name, listing)` framed as `show_listings` prints them.
    fn shown(m: &str, listings: &[(&str, &str)]) -> String {
        listings
            .iter()
            .map(|(n, l)| format!("{m} begin {n}\n{l}\n{m} end {n} 0\n\n{m} fin\n"))
            .collect()
    }

    /// The verify reads the listings as gather reads its sections: on the
    /// captured output of the fwmark gateway, the same rules, routes and
    /// iptables; a failed listing and a missing one are errors.
    #[test]
    fn the_listings_read_as_the_gather_reads_them() {
        let m = "dwprov-x";
        let mut plan = Facts::default();
        plan.tools.insert("iptables-save".into(), true);
        let listings = [
            ("errors", ""),
            ("iptables", ""),
            ("iptables.all", SAVE),
            ("nexthops.all", "[]"),
            ("nftables", ""),
            ("routes-4", ROUTES),
            ("rules-4", ""),
            ("rules-4.all", RULES),
            ("status.all", "0"),
            ("sums", ""),
            ("sysctls.all", "net/ipv4/ip_forward 1"),
        ];
        let desired = State::default();
        let got = state(
            "gw1",
            &shown(m, &listings),
            m,
            &plan,
            &State::default(),
            &desired,
        )
        .unwrap();
        let want = crate::state::State {
            rules: crate::state::ip::parse_rules_json(RULES).unwrap(),
            routes: crate::state::ip::parse_routes_json(ROUTES).unwrap(),
            ..State::default()
        };
        assert!(!got.rules.is_empty() && !got.routes.is_empty());
        assert_eq!((&got.rules, &got.routes), (&want.rules, &want.routes));
        assert_eq!(
            got.firewall.iptables,
            crate::state::iptables::Iptables::parse(SAVE).unwrap()
        );
        assert_eq!(got.sysctls["net/ipv4/ip_forward"], "1");
        // A listing that failed: its errors are the message.
        let mut failed = listings;
        failed[0].1 = "Error: ipv4: FIB table does not exist.";
        failed[8].1 = "1";
        let e = state("gw1", &shown(m, &failed), m, &plan, &desired, &desired).unwrap_err();
        assert!(e.to_string().contains("FIB table does not exist"), "{e}");
        // A listing cut off.
        let cut: Vec<_> = listings
            .into_iter()
            .filter(|(n, _)| *n != "routes-4")
            .collect();
        let e = state("gw1", &shown(m, &cut), m, &plan, &desired, &desired).unwrap_err();
        assert!(e.to_string().contains("`routes-4` is missing"), "{e}");
    }

    #[test]
    fn files_are_desired_changed_or_absent() {
        let mut old = State::default();
        let mut desired = State::default();
        old.files.insert("/etc/gone".into(), "old\n".into());
        desired.files.insert("/etc/a".into(), "a\n".into());
        desired.files.insert("/etc/b".into(), "b\n".into());
        desired.files.insert("/etc/c".into(), "c\n".into());
        let sha = |c: &str| file_sum(c, "x");
        let sums = format!(
            "{}  /etc/a\n{} {} /etc/b\n{}  /etc/c\n{}  /etc/gone\n{}  /proc/sys/net/ipv4/ip_forward\n",
            sha("a\n"),
            cksum(b"b\n"),
            2,
            sha("not c\n"),
            sha("old\n"),
            sha("1\n"),
        );
        let f = files(&sums, &old, &desired);
        assert_eq!(f["/etc/a"], "a\n");
        assert_eq!(f["/etc/b"], "b\n", "a cksum line");
        assert!(f["/etc/c"].contains(&sha("not c\n")), "{}", f["/etc/c"]);
        assert!(f["/etc/gone"].contains("not the content applied"));
        assert_eq!(f.len(), 4, "not the /proc/sys entry: {f:?}");
        // A desired file not listed is absent: the verify finds it missing.
        let f = files(&format!("{}  /etc/a\n", sha("a\n")), &old, &desired);
        assert_eq!(f.keys().collect::<Vec<_>>(), ["/etc/a"]);
        let diff = crate::diff::diff(
            &desired,
            &State {
                files: f,
                ..State::default()
            },
        );
        assert_eq!(diff.changes.len(), 2, "{:?}", diff.changes);
    }
}
