//! The sysctls kind, in one home: the keys dwprov sets, read from the
//! gather (`/proc/sys`), from the rendered sysctl.d file (desired) and
//! from a snapshot; their diff (never "removed": the kernel has no unset)
//! and the commands that set them live. Registered as
//! [`crate::kind::Kind::Sysctls`]; restored at boot by the sysctl.d file
//! boot.sh loads.
use crate::change::Change;
use crate::error::{Error, Result};
use crate::fact::FactSection;
use crate::shell::sh_quote;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// sysctl key (slashed, its path under /proc/sys) → value.
/// Its gather section: the /proc/sys entries dwprov sets, read live.
pub const FACT_SECTIONS: &[FactSection] = &[FactSection::helper(
    "sysctl",
    "f_sysctl",
    "read /proc/sys/net/ipv4/...",
)];

pub type Sysctls = BTreeMap<String, String>;

/// The gather's `sysctl` section: `KEY VALUE` lines (values trimmed).
pub fn from_gather(text: &str) -> Sysctls {
    let mut out = Sysctls::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            out.insert(k.to_string(), v.trim().to_string());
        }
    }
    out
}

/// The snapshot's section of the sysctls (gateway/show.sh).
/// The kind's gateway-side snapshot and revert steps (`snapshot_sysctls`,
/// `revert_sysctls`), appended to the installed lib.sh by
/// [`crate::kind::gateway_library`].
pub const GATEWAY_SH: &str = include_str!("../gateway/kind-sysctls.sh");

pub const SHOW_SNAPSHOT: &str = "sec sysctls \"$S/sysctls\"\n";

/// A snapshot's `sysctls` listing (its section, as the other homes read
/// theirs): `KEY VALUE` lines, values as listed.
pub fn from_snapshot(sections: &crate::facts::Sections) -> Result<Sysctls> {
    Ok(parse_listing(crate::facts::snapshot_listing(
        sections, "sysctls",
    )?))
}

/// `KEY VALUE` lines (gateway/kind-sysctls.sh `snapshot_sysctls`: a
/// snapshot's, and the apply's verify listing, `crate::verified`).
pub fn parse_listing(text: &str) -> Sysctls {
    let mut out = Sysctls::new();
    for l in text.lines() {
        if let Some((k, v)) = l.split_once(' ') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// `key = value` lines of a sysctl.d file.
pub fn parse_conf(text: &str, what: &str) -> Result<Sysctls> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            Error::parse(what, n + 1, format!("expected `key = value`, got `{line}`"))
        })?;
        // sysctl.d takes both spellings; slashes keep dotted interface names (eth0.100) intact.
        let k = k.trim();
        let k = if k.contains('/') {
            k.to_string()
        } else {
            k.replace('.', "/")
        };
        out.insert(k, v.trim().to_string());
    }
    Ok(out)
}

/// Every desired key whose live value differs (a key dwprov no longer
/// wants is left as it is).
pub fn diff(desired: &Sysctls, live: &Sysctls, changes: &mut Vec<Change>) {
    for (key, want) in desired {
        let have = live.get(key);
        if have != Some(want) {
            changes.push(Change::Sysctl {
                key: key.clone(),
                from: have.cloned(),
                to: want.clone(),
            });
        }
    }
}

/// The commit steps of the sysctl changes, straight to /proc/sys; the
/// number of commands.
pub fn commit(changes: &[Change], out: &mut String) -> usize {
    let mut n = 0;
    for c in changes {
        if let Change::Sysctl { key, to, .. } = c {
            let _ = writeln!(out, "step {}", sh_quote(&format!("sysctl {key}")));
            out.push_str(&command(key, to));
            n += 1;
        }
    }
    n
}

/// Set a sysctl live (its key is its path under /proc/sys).
pub fn command(key: &str, value: &str) -> String {
    let p = format!("/proc/sys/{key}");
    format!(
        "printf '%s\\n' {} > {} || fail {}\n",
        sh_quote(value),
        sh_quote(&p),
        sh_quote(&format!("sysctl {key}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_key_is_a_change_and_an_unwanted_one_is_left() {
        let m = |kv: &[(&str, &str)]| -> Sysctls {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut changes = Vec::new();
        diff(
            &m(&[("net/ipv4/ip_forward", "1")]),
            &m(&[("net/ipv4/ip_forward", "0"), ("kernel/x", "1")]),
            &mut changes,
        );
        assert_eq!(changes.len(), 1, "{changes:?}");
        let mut s = String::new();
        assert_eq!(commit(&changes, &mut s), 1);
        assert!(s.contains("> '/proc/sys/net/ipv4/ip_forward'"), "{s}");
        assert_eq!(
            from_gather("net/ipv4/ip_forward 1 \n"),
            m(&[("net/ipv4/ip_forward", "1")])
        );
        assert_eq!(
            parse_conf("net.ipv4.conf.eth0/100.rp_filter = 2\n", "x").unwrap(),
            m(&[("net.ipv4.conf.eth0/100.rp_filter", "2")])
        );
    }
}
