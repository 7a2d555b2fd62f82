//! What dwprov owns on a gateway, and the marks that tell it apart from
//! everything else there. Every owned name is spelled here once; the rest of
//! the code (and, through the render context, the templates) takes it from
//! here, and a unit test fails on a second spelling.
//!
//! dwprov never touches what it did not create, so each kind of object it
//! creates carries a mark that foreign objects do not:
//! - **ip rules and routes**: the rtnetlink protocol [`ROUTE_PROTO`] (201,
//!   named [`ROUTE_PROTO_NAME`] in [`RT_PROTOS_CONF`]). A protocol is what
//!   routing daemons use for the same purpose (bird, zebra: `proto bird`);
//!   the kernel keeps it on every rule and route, `ip` can flush by it
//!   (`ip rule flush protocol 201`), and 201 is not among the numbers
//!   iproute2's own `rt_protos` names. dwprov's rules also sit in a priority
//!   band ([`DEFAULT_RULE_PRIORITY`], [`RULE_BAND_SIZE`] wide): the band is
//!   where foreign rules would interleave with dwprov's (the collision scope
//!   of a plan), not what makes a rule owned.
//! - **iptables**: chains named [`CHAIN_PREFIX`]`*` (a chain name is the only
//!   label iptables keeps on a chain), and in the built-in chains only the
//!   jumps into those, commented [`JUMP_COMMENT`] for the admin who reads
//!   `iptables-save`. dwprov restores with `--noflush`, so nothing else is
//!   flushed.
//! - **nftables**: one table, `table` [`NFT_FAMILY`] [`NFT_TABLE`], and
//!   everything in it; other tables (firewalld's, iptables-nft's `ip nat`,
//!   an admin's `inet filter`) are never listed into state nor written.
//! - **connection marks**: line marks live inside [`DEFAULT_MARK_MASK`]
//!   (0xff00) unless the inventory sets `mark_mask`: masked set and restore
//!   leave the other bits alone, so marks of other software survive.
//! - **files**: fixed paths in `.d` directories that exist for drop-ins
//!   ([`CONFIG_FILES`]), the boot units ([`BOOT_UNIT_FILES`]), and everything
//!   under [`STATE_DIR`]; each starts with [`FILE_MARK`]. A temp file of an
//!   atomic write ends in [`TEMP_SUFFIX`], a write probe is [`PROBE_NAME`].
//! - **snapshots** (commit-confirmed apply): under [`SNAPSHOT_DIR`], reverted
//!   by the transient systemd units [`revert_unit`] names.
//! - **sysctls**: the keys dwprov sets; they have no owner mark (the kernel
//!   has no unset), so they are never "removed".
//!
//! The names are defined through the `owned!` macro so that other
//! constants, `concat!` help texts and `&'static str` messages can be built
//! from the one spelling at compile time.

/// The one spelling of each owned name, as a literal (for `concat!`).
/// Use the constants below; the macro is for texts built at compile time.
macro_rules! owned {
    (route_proto) => {
        201
    };
    (route_proto_name) => {
        "dwprov"
    };
    (chain_prefix) => {
        "DWPROV-"
    };
    (jump_comment) => {
        "dwprov"
    };
    (state_dir) => {
        "/etc/dwprov"
    };
    (snapshot_dir) => {
        "/var/lib/dwprov/snapshots"
    };
    (library_dir) => {
        "/var/lib/dwprov/lib"
    };
    (rt_tables_conf) => {
        "/etc/iproute2/rt_tables.d/dwprov.conf"
    };
    (rt_protos_conf) => {
        "/etc/iproute2/rt_protos.d/dwprov.conf"
    };
    (sysctl_conf) => {
        "/etc/sysctl.d/90-dwprov.conf"
    };
    (unit_dir) => {
        "/etc/systemd/system"
    };
    (early_unit) => {
        "dwprov.service"
    };
    (late_unit) => {
        "dwprov-routes.service"
    };
    (flush_unit) => {
        "dwprov-route-cache-flush.service"
    };
    (init_name) => {
        "dwprov"
    };
    (init_dir) => {
        "/etc/init.d"
    };
    (flush_pidfile) => {
        "/run/dwprov-route-cache-flush.pid"
    };
    (revert_unit_prefix) => {
        "dwprov-revert-"
    };
    (temp_suffix) => {
        ".dwprov-tmp"
    };
    (probe_name) => {
        ".dwprov-probe"
    };
    (file_mark) => {
        "# Managed by dwprov"
    };
    (agent_dir) => {
        "/var/lib/dwprov/agent"
    };
    (agent_unit) => {
        "dwprov-agent.service"
    };
    (agent_state_dir) => {
        "/run/dwprov-agent"
    };
    (nft_family) => {
        "inet"
    };
    (nft_table) => {
        "dwprov"
    };
}
pub(crate) use owned;

/// Route protocol number dwprov tags its routes and rules with
/// (registered as [`ROUTE_PROTO_NAME`] in [`RT_PROTOS_CONF`]).
pub const ROUTE_PROTO: u8 = owned!(route_proto);
/// Name registered for [`ROUTE_PROTO`].
pub const ROUTE_PROTO_NAME: &str = owned!(route_proto_name);

/// Prefix of every iptables chain dwprov owns.
pub const CHAIN_PREFIX: &str = owned!(chain_prefix);
/// Comment on the jump rules from built-in chains into dwprov's chains.
pub const JUMP_COMMENT: &str = owned!(jump_comment);

/// The nftables backend owns exactly one table: `table NFT_FAMILY NFT_TABLE`
/// (`inet`: one table serves both families; dwprov writes IPv4 rules only).
/// Every chain and set in it is dwprov's; no other table is ever touched.
pub const NFT_FAMILY: &str = owned!(nft_family);
/// The name of the one owned nftables table.
pub const NFT_TABLE: &str = owned!(nft_table);

/// First priority of dwprov's ip rule band when the inventory sets no
/// `rule_priority`.
pub const DEFAULT_RULE_PRIORITY: u32 = 1000;
/// Width of the rule band: dwprov's rules use `rule_priority ..
/// rule_priority + RULE_BAND_SIZE - 1`.
pub const RULE_BAND_SIZE: u32 = 1000;
/// The band with the default priority, `(first, last)` (1000, 1999).
pub const DEFAULT_BAND: (u32, u32) = (
    DEFAULT_RULE_PRIORITY,
    DEFAULT_RULE_PRIORITY + RULE_BAND_SIZE - 1,
);
/// Connection-mark bits dwprov uses when the inventory sets no `mark_mask`.
pub const DEFAULT_MARK_MASK: u32 = 0xff00;

/// Where dwprov keeps boot-time state on the gateway (every file under it is owned).
pub const STATE_DIR: &str = owned!(state_dir);
/// Where snapshots of the commit-confirmed apply live on the gateway.
pub const SNAPSHOT_DIR: &str = owned!(snapshot_dir);
/// Where the gateway-side programs of the apply are installed, one folder per version.
pub const LIBRARY_DIR: &str = owned!(library_dir);

/// Names of dwprov's line tables.
pub const RT_TABLES_CONF: &str = owned!(rt_tables_conf);
/// Registers [`ROUTE_PROTO_NAME`] for [`ROUTE_PROTO`].
pub const RT_PROTOS_CONF: &str = owned!(rt_protos_conf);
/// The sysctls dwprov sets (boot.sh reads its values from there).
pub const SYSCTL_CONF: &str = owned!(sysctl_conf);

/// Boot files under [`STATE_DIR`] (see `crate::boot`).
pub const IP_BATCH: &str = concat!(owned!(state_dir), "/ip.batch");
pub const IPTABLES_RULES: &str = concat!(owned!(state_dir), "/iptables.rules");
/// The nftables backend's boot file: the owned table as one `nft -f` transaction.
pub const NFTABLES_NFT: &str = concat!(owned!(state_dir), "/nftables.nft");
pub const BOOT_SH: &str = concat!(owned!(state_dir), "/boot.sh");
pub const FLUSH_SH: &str = concat!(owned!(state_dir), "/route-cache-flush.sh");

/// Where the boot units go (the directory is the system's, not dwprov's).
pub const UNIT_DIR: &str = owned!(unit_dir);
/// Early boot stage (iptables, sysctls), before network-pre.target.
pub const EARLY_UNIT: &str = owned!(early_unit);
/// Late boot stage (routes, rules), after network-online.target.
pub const LATE_UNIT: &str = owned!(late_unit);
/// The route-cache flush loop (kernels before 3.6).
pub const FLUSH_UNIT: &str = owned!(flush_unit);
/// Name of the init script (hosts without systemd), as `update-rc.d` knows it.
pub const INIT_NAME: &str = owned!(init_name);
/// The init script (hosts without systemd).
pub const INIT_SCRIPT: &str = concat!(owned!(init_dir), "/", owned!(init_name));
/// Pid of the detached flush loop (hosts without systemd).
pub const FLUSH_PIDFILE: &str = owned!(flush_pidfile);

/// The owned config files outside [`STATE_DIR`] that `render` writes.
pub const CONFIG_FILES: &[&str] = &[RT_TABLES_CONF, RT_PROTOS_CONF, SYSCTL_CONF];
/// The boot files outside [`STATE_DIR`]: systemd units and the init script.
pub const BOOT_UNIT_FILES: &[&str] = &[
    concat!(owned!(unit_dir), "/", owned!(early_unit)),
    concat!(owned!(unit_dir), "/", owned!(late_unit)),
    concat!(owned!(unit_dir), "/", owned!(flush_unit)),
    INIT_SCRIPT,
    concat!(owned!(unit_dir), "/", owned!(agent_unit)),
];
/// Every owned file outside [`STATE_DIR`] ([`CONFIG_FILES`], then
/// [`BOOT_UNIT_FILES`]): gather reads them, diff prunes them.
pub const OWNED_FILES: &[&str] = &[
    RT_TABLES_CONF,
    RT_PROTOS_CONF,
    SYSCTL_CONF,
    concat!(owned!(unit_dir), "/", owned!(early_unit)),
    concat!(owned!(unit_dir), "/", owned!(late_unit)),
    concat!(owned!(unit_dir), "/", owned!(flush_unit)),
    INIT_SCRIPT,
    concat!(owned!(unit_dir), "/", owned!(agent_unit)),
];

/// The first line of every owned file starts with this (after a `#!`).
pub const FILE_MARK: &str = owned!(file_mark);
/// Suffix of the temp file an atomic write renames over its target.
pub const TEMP_SUFFIX: &str = owned!(temp_suffix);
/// Name of the probe file that checks a directory is writable.
pub const PROBE_NAME: &str = owned!(probe_name);

/// Prefix of the transient revert units of a snapshot ([`revert_unit`]).
pub const REVERT_UNIT_PREFIX: &str = owned!(revert_unit_prefix);

// agent: the line-health agent on the gateway (docs/agent.md, src/agent/).
/// Where apply installs the agent (phase 2): its binary and its config.
pub const AGENT_DIR: &str = owned!(agent_dir);
/// The agent's binary (the `dwprov-agent` target of this crate) in [`AGENT_DIR`].
pub const AGENT_BIN: &str = concat!(owned!(agent_dir), "/dwprov-agent");
/// The agent's config (`agent::config::Config`, JSON): an owned file under
/// [`STATE_DIR`], so gather reads it and apply/revert treat it like the others.
pub const AGENT_CONFIG: &str = concat!(owned!(state_dir), "/agent.json");
/// The agent's supervisor (gateways without systemd), under [`STATE_DIR`].
pub const AGENT_SUPERVISOR: &str = concat!(owned!(state_dir), "/agent-supervise.sh");
/// The agent's systemd unit (gateways with systemd), in [`UNIT_DIR`].
pub const AGENT_UNIT: &str = owned!(agent_unit);
/// The agent's default state dir: on tmpfs, since what it describes (the
/// kernel's nexthops) does not survive a reboot either, and a file rewritten
/// every round should not wear a gateway's flash.
pub const AGENT_STATE_DIR: &str = owned!(agent_state_dir);
/// The status file in the agent's state dir (`agent::status::Status`).
pub const AGENT_STATUS_FILE: &str = "status.json";
/// Tag of the agent's syslog lines (`logger -t`).
pub const AGENT_LOG_TAG: &str = "dwprov";
/// The nexthop ids dwprov owns (`(first, last)`, inclusive): the agent
/// refuses a config naming another, so it never repoints a foreign nexthop.
pub const NEXTHOP_ID_BAND: (u32, u32) = (20_000, 20_999);
/// The nexthop group of a balanced default route (several default lines).
pub const BALANCED_NEXTHOP_ID: u32 = NEXTHOP_ID_BAND.1;
/// First of the tables through which policies reach a line with a nexthop
/// object (issue 11): their default is the line's `nhid`, so policies fail
/// over with it, while the line's own table keeps its literal gateway
/// (probes, source return). One per line, by inventory index.
pub const POLICY_TABLE_BASE: u32 = 0x7f00_0000;

/// The nexthop object of the line at `index` of the inventory (None past
/// the band).
pub fn line_nexthop_id(index: usize) -> Option<u32> {
    let id = NEXTHOP_ID_BAND
        .0
        .checked_add(1)?
        .checked_add(u32::try_from(index).ok()?)?;
    (id < BALANCED_NEXTHOP_ID).then_some(id)
}

/// The transient unit name (without `.service`/`.timer`) of snapshot `id`'s revert timer.
pub fn revert_unit(id: &str) -> String {
    format!("{REVERT_UNIT_PREFIX}{id}")
}

/// `path` of a unit file in [`UNIT_DIR`].
pub fn unit_path(unit: &str) -> String {
    format!("{UNIT_DIR}/{unit}")
}

/// What carries a route protocol: ip rules and routes (implemented in
/// `crate::state`, so that this module depends on nothing and every module,
/// the state parsers included, can take names from it).
pub trait Protocol {
    /// The rtnetlink protocol number.
    fn protocol(&self) -> u8;
}

/// What may jump to a chain: an iptables rule (implemented in `crate::state`).
pub trait Jump {
    /// The chain this rule jumps or goes to, if any.
    fn jump_target(&self) -> Option<&str>;
}

impl<T: Protocol + ?Sized> Protocol for &T {
    fn protocol(&self) -> u8 {
        (**self).protocol()
    }
}

impl<T: Jump + ?Sized> Jump for &T {
    fn jump_target(&self) -> Option<&str> {
        (**self).jump_target()
    }
}

/// An ip route dwprov owns: tagged with [`ROUTE_PROTO`].
pub fn is_owned_route<R: Protocol + ?Sized>(r: &R) -> bool {
    r.protocol() == ROUTE_PROTO
}

/// An ip rule dwprov owns: tagged with [`ROUTE_PROTO`].
pub fn is_owned_rule<R: Protocol + ?Sized>(r: &R) -> bool {
    r.protocol() == ROUTE_PROTO
}

/// An iptables chain dwprov owns: named [`CHAIN_PREFIX`]`*`.
pub fn is_owned_chain(name: &str) -> bool {
    name.starts_with(CHAIN_PREFIX)
}

/// A rule in a built-in chain that dwprov owns: a jump (or goto) into one of
/// its chains.
pub fn is_owned_jump<R: Jump + ?Sized>(r: &R) -> bool {
    r.jump_target().is_some_and(is_owned_chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lists_agree() {
        let both: Vec<&str> = CONFIG_FILES
            .iter()
            .chain(BOOT_UNIT_FILES)
            .copied()
            .collect();
        assert_eq!(OWNED_FILES, both.as_slice());
        for unit in [EARLY_UNIT, LATE_UNIT, FLUSH_UNIT] {
            assert!(
                BOOT_UNIT_FILES.contains(&unit_path(unit).as_str()),
                "{unit}"
            );
        }
        for f in [IP_BATCH, IPTABLES_RULES, NFTABLES_NFT, BOOT_SH, FLUSH_SH] {
            assert!(f.starts_with(&format!("{STATE_DIR}/")), "{f}");
        }
        assert!(INIT_SCRIPT.ends_with(&format!("/{INIT_NAME}")));
        assert_eq!(DEFAULT_BAND, (1000, 1999));
        assert_eq!(revert_unit("X"), "dwprov-revert-X");
    }

    #[test]
    fn ownership_follows_the_marks() {
        use crate::state::{Route, Rule};
        let rule = |proto| Rule {
            proto,
            ..Rule::default()
        };
        assert!(is_owned_rule(&rule(201)) && !is_owned_rule(&rule(4)));
        let route = |proto| Route {
            proto,
            ..Route::default()
        };
        assert!(is_owned_route(&route(201)) && !is_owned_route(&&route(3)));
        assert!(is_owned_chain("DWPROV-PRE") && !is_owned_chain("FORWARD"));
        let jump = |spec| crate::state::iptables::IptRule::parse(spec).unwrap();
        assert!(is_owned_jump(&jump(
            "-m comment --comment dwprov -j DWPROV-PRE"
        )));
        assert!(is_owned_jump(&jump("-g DWPROV-X")));
        assert!(!is_owned_jump(&jump("-j ACCEPT")));
        assert!(!is_owned_jump(&jump("-i eth0")));
    }

    /// The owned names as the rest of the tree must not spell them.
    const LITERALS: &[&str] = &[
        "DWPROV-",
        "--comment dwprov",
        "/etc/dwprov",
        "/var/lib/dwprov",
        "/run/dwprov-agent",
        "rt_tables.d/dwprov.conf",
        "rt_protos.d/dwprov.conf",
        "90-dwprov.conf",
        "dwprov.service",
        "dwprov-routes.service",
        "dwprov-route-cache-flush.service",
        "dwprov-route-cache-flush.pid",
        "init.d/dwprov",
        "update-rc.d dwprov",
        "chkconfig --add dwprov",
        "chkconfig --del dwprov",
        "dwprov-revert-",
        ".dwprov-tmp",
        ".dwprov-probe",
        "proto dwprov",
        "protocol dwprov",
        "inet dwprov",
        "0xff00",
        "1999",
    ];

    /// Where a literal may still be spelled: (file, literal, a text the line
    /// holds). Only the template names of the `--templates DIR` interface
    /// remain: the gateway programs, the templates and every Rust file take
    /// the owned names from this module.
    const EXCEPTIONS: &[(&str, &str, &str)] = &[
        // Template names (the `--templates DIR` interface), not unit names.
        ("src/boot.rs", "dwprov.service", "boot/dwprov.service"),
        (
            "src/boot.rs",
            "dwprov-routes.service",
            "boot/dwprov-routes.service",
        ),
        (
            "src/boot.rs",
            "dwprov-route-cache-flush.service",
            "boot/dwprov-route-cache-flush.service",
        ),
        (
            "src/templates/mod.rs",
            "dwprov.service",
            "boot/dwprov.service",
        ),
        (
            "src/templates/mod.rs",
            "dwprov-routes.service",
            "boot/dwprov-routes.service",
        ),
        (
            "src/templates/mod.rs",
            "dwprov-route-cache-flush.service",
            "boot/dwprov-route-cache-flush.service",
        ),
    ];

    /// The code lines of a file: comments (`//` in Rust, `#` in shell and
    /// template text, `{# #}` in tera) and Rust test modules left out.
    fn code_lines(path: &std::path::Path, text: &str) -> Vec<(usize, String)> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let mut out = Vec::new();
        let mut in_tera_comment = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if ext == "rs" {
                if line == "#[cfg(test)]" {
                    break;
                }
                if t.starts_with("//") {
                    continue;
                }
            } else {
                if in_tera_comment || t.starts_with("{#") {
                    in_tera_comment = !line.contains("#}");
                    continue;
                }
                if t.starts_with('#') && !t.starts_with("#!") {
                    continue;
                }
            }
            out.push((i + 1, line.to_string()));
        }
        out
    }

    fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "snapshots") {
                    files_under(&p, out);
                }
            } else if p
                .extension()
                .is_some_and(|e| e == "rs" || e == "sh" || e == "tera")
            {
                out.push(p);
            }
        }
    }

    /// `201` as a number of its own (not part of 2010 or 0x201).
    fn spells_route_proto(line: &str) -> bool {
        let b = line.as_bytes();
        let mut from = 0;
        while let Some(p) = line[from..].find("201") {
            let at = from + p;
            let before = at.checked_sub(1).map(|i| b[i]);
            let after = b.get(at + 3).copied();
            let word = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !word(before) && !word(after) {
                return true;
            }
            from = at + 3;
        }
        false
    }

    /// Nothing outside this module spells an owned name: a new spelling
    /// (a path typed again, a unit name in a message) fails here.
    #[test]
    fn no_other_file_spells_an_owned_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["src", "gateway", "templates"] {
            files_under(&root.join(dir), &mut files);
        }
        let mut found = Vec::new();
        let mut used = vec![false; EXCEPTIONS.len()];
        for path in &files {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel == "src/ownership.rs" || rel.ends_with("/tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for (n, line) in code_lines(path, &text) {
                let mut hits: Vec<&str> = LITERALS
                    .iter()
                    .copied()
                    .filter(|l| line.contains(l))
                    .collect();
                if spells_route_proto(&line) {
                    hits.push("201");
                }
                for lit in hits {
                    let allowed = EXCEPTIONS
                        .iter()
                        .position(|(f, l, has)| *f == rel && *l == lit && line.contains(has));
                    match allowed {
                        Some(i) => used[i] = true,
                        None => found.push(format!("{rel}:{n}: `{lit}` in: {}", line.trim())),
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "owned names spelled outside src/ownership.rs (take them from crate::ownership, \
             or from the render context in templates):\n{}",
            found.join("\n")
        );
        let stale: Vec<_> = EXCEPTIONS
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(e, _)| format!("{e:?}"))
            .collect();
        assert!(
            stale.is_empty(),
            "exceptions no longer needed (remove them):\n{}",
            stale.join("\n")
        );
    }
}
