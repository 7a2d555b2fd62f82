//! Survive a reboot: what dwprov applies is kernel state (rules, routes,
//! iptables, sysctls) and a reboot loses it, so dwprov also installs on the
//! gateway what restores it at boot.
//!
//! The boot files are a pure function of (gateway, desired state, kernel
//! version, systemd or not): [`files`]. They are owned files like the others,
//! so the plan shows them and a changed desired state rewrites them.
//!
//! - `/etc/dwprov/ip.batch`: every desired route (`route replace`) and rule
//!   (`rule add`), numeric tables and protocols;
//! - `/etc/dwprov/iptables.rules`: an `iptables-restore --noflush` payload
//!   (DWPROV-* chains, jumps inserted first in their built-in chains);
//! - `/etc/dwprov/boot.sh`: POSIX sh loader, `early` (iptables, then sysctls
//!   from `/etc/sysctl.d/90-dwprov.conf`) and `late` (sysctls, routes, rules)
//!   stages, idempotent, non-zero exit naming what failed;
//! - systemd: `dwprov.service` (early stage, before network-pre.target) and
//!   `dwprov-routes.service` (late stage, after network-online.target: a route
//!   via a line's gateway needs that line up with its address);
//!   no systemd: `/etc/init.d/dwprov` (LSB, after `$network`, runs all stages);
//! - kernels before 3.6 (IPv4 route cache, the seed's FAQ 2), or
//!   `route_cache_flush: true`: `/etc/dwprov/route-cache-flush.sh`, a loop
//!   running `ip route flush cache` every 2 s, as
//!   `dwprov-route-cache-flush.service` or started by the init script.
//!
//! [`post_install`] yields the commands the apply script runs after writing
//! these files (daemon-reload, enable, start the flush loop), only for the
//! files that changed.
use crate::diff::Change;
use crate::error::Result;
use crate::facts::Facts;
use crate::kind::{Kind, KINDS};
use crate::model::Gateway;
use crate::ownership::{unit_path, CHAIN_PREFIX};
use crate::state::State;
use crate::templates::Templates;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

// The owned names of the boot files and units (see `crate::ownership`).
pub use crate::ownership::{
    BOOT_SH, EARLY_UNIT, FLUSH_PIDFILE, FLUSH_SH, FLUSH_UNIT, INIT_NAME, INIT_SCRIPT,
    IPTABLES_RULES, IP_BATCH, LATE_UNIT, STATE_DIR, SYSCTL_CONF, UNIT_DIR,
};
/// The seed's advice: flush the route cache every 2 s.
pub const FLUSH_INTERVAL_SECS: u32 = 2;
/// The first kernel without the IPv4 route cache.
pub const NO_CACHE_SINCE: (u32, u32) = (3, 6);

/// Boot files outside [`STATE_DIR`] (gather reads them, diff prunes them).
pub use crate::ownership::BOOT_UNIT_FILES as OWNED_FILES;

/// Built-in boot templates (name, text), in [`crate::templates`].
pub use crate::templates::BOOT as TEMPLATES;

/// What the boot files depend on besides the gateway and its desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `uname -r`; None when rendering without a host.
    pub kernel: Option<String>,
    pub systemd: bool,
}

impl Platform {
    /// From gathered facts; without facts (`dwprov render`): systemd and a
    /// kernel without route cache are assumed (the plan decides from the host).
    pub fn of(facts: Option<&Facts>) -> Platform {
        match facts {
            Some(f) => Platform {
                kernel: Some(f.kernel.clone()),
                systemd: f.systemd,
            },
            None => Platform {
                kernel: None,
                systemd: true,
            },
        }
    }
}

/// `major.minor` of a `uname -r` string: `3.5.7-foo` → (3, 5),
/// `6.1.0-18-amd64` → (6, 1), `2.6.32` → (2, 6), `4` → (4, 0).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let r = release.trim();
    let major = digits(r)?;
    let rest = &r[r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len())..];
    let minor = match rest.strip_prefix('.') {
        Some(m) => digits(m)?,
        None => 0,
    };
    Some((major, minor))
}

/// Whether this kernel caches IPv4 routes (before 3.6); None if unparsable.
pub fn has_route_cache(release: &str) -> Option<bool> {
    kernel_version(release).map(|v| v < NO_CACHE_SINCE)
}

/// Whether to install the route-cache flush, and the plan line saying why.
pub fn route_cache_decision(gw: &Gateway, kernel: Option<&str>) -> (bool, String) {
    let every = format!("`ip route flush cache` every {FLUSH_INTERVAL_SECS} s");
    let faq = "cross access works for one address at a time (seed FAQ 2)";
    let cached = kernel.and_then(has_route_cache);
    let k = kernel.unwrap_or("unknown");
    match (gw.route_cache_flush, kernel, cached) {
        (Some(true), _, _) => (
            true,
            format!("route_cache_flush: true (inventory; kernel {k}): installing the route-cache flush loop ({every})"),
        ),
        (Some(false), _, Some(true)) => (
            false,
            format!("route_cache_flush: false (inventory), but kernel {k} caches IPv4 routes (before 3.6): {faq}"),
        ),
        (Some(false), _, _) => (
            false,
            "route_cache_flush: false (inventory): no route-cache flush".into(),
        ),
        (None, None, _) => (
            false,
            "no host facts: boot files assume systemd and a kernel without IPv4 route cache (plan decides from the host)".into(),
        ),
        (None, Some(_), Some(true)) => (
            true,
            format!("kernel {k} caches IPv4 routes (before 3.6): installing the route-cache flush loop ({every}), else {faq}"),
        ),
        (None, Some(_), Some(false)) => (
            false,
            format!("kernel {k} has no IPv4 route cache (gone since 3.6): no route-cache flush needed"),
        ),
        (None, Some(_), None) => (
            false,
            format!("cannot read kernel version {k:?}: assuming 3.6 or later (no IPv4 route cache, no flush loop); set route_cache_flush: true if it is older"),
        ),
    }
}

/// Whether the route-cache decision is worth a warning in every plan: an
/// old kernel gets the flush loop (a process dwprov runs there for good),
/// the inventory turned off a flush this kernel needs, or the kernel version
/// cannot be read. Everything else (no cache since 3.6, the flush the
/// inventory asks for, rendering without facts) is the normal case: a note,
/// shown where asked ([`notes`]: `plan -v`, `render`).
pub fn route_cache_warns(gw: &Gateway, kernel: Option<&str>) -> bool {
    let cached = kernel.and_then(has_route_cache);
    matches!(
        (gw.route_cache_flush, kernel, cached),
        (Some(false), _, Some(true)) | (None, Some(_), None) | (None, Some(_), Some(true))
    )
}

/// The route-cache decision when it is a note rather than a warning (see
/// [`route_cache_warns`]); empty otherwise (the warning is in the plan).
pub fn notes(gw: &Gateway, kernel: Option<&str>) -> Vec<String> {
    if route_cache_warns(gw, kernel) {
        return Vec::new();
    }
    vec![route_cache_decision(gw, kernel).1]
}

/// The boot files for one gateway, and plan lines about them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootFiles {
    /// Path → content.
    pub files: BTreeMap<String, String>,
    /// Shown in every plan.
    pub warnings: Vec<String>,
    /// The normal case, shown only where asked (`plan -v`, `render`).
    pub notes: Vec<String>,
}

/// The files that restore `desired` at boot on this platform. Pure.
pub fn files(
    gw: &Gateway,
    desired: &State,
    platform: &Platform,
    templates: &Templates,
) -> Result<BootFiles> {
    let (flush, note) = route_cache_decision(gw, platform.kernel.as_deref());
    let mut ctx = tera::Context::new();
    ctx.insert("host", &gw.host);
    ctx.insert("state_dir", STATE_DIR);
    // The `ip` flags of the batch's rules and routes (`-4`, state::family).
    ctx.insert("ip_families", &crate::state::family::ip_flags());
    ctx.insert("boot_sh", BOOT_SH);
    ctx.insert("chain_prefix", CHAIN_PREFIX);
    ctx.insert("sysctl_conf", SYSCTL_CONF);
    ctx.insert("early_unit", EARLY_UNIT);
    ctx.insert("late_unit", LATE_UNIT);
    ctx.insert("flush_unit", FLUSH_UNIT);
    ctx.insert("systemd", &platform.systemd);
    ctx.insert("flush", &flush);
    ctx.insert("flush_reason", &note);
    ctx.insert("flush_interval", &FLUSH_INTERVAL_SECS);
    ctx.insert("flush_pidfile", FLUSH_PIDFILE);
    // The built-in boot/ip.batch is written straight into one string
    // ([`ip_batch`], the same bytes); the `routes` and `rules` lists, a copy
    // of every route as text and then as JSON, are built only for a boot
    // template the user overrides.
    let fast_batch = is_builtin(templates, "boot/ip.batch");
    if !TEMPLATES
        .iter()
        .all(|(name, _)| is_builtin(templates, name))
    {
        insert_batch_lists(&mut ctx, desired);
    }
    ctx.insert("agent_supervisor", crate::ownership::AGENT_SUPERVISOR);
    ctx.insert(
        "nexthops",
        &desired
            .nexthops
            .iter()
            .map(|n| n.to_batch())
            .collect::<Vec<_>>(),
    );
    // Each backend's boot context (for iptables: `ipt_tables`).
    for (name, value) in desired.firewall.boot_context() {
        ctx.insert(name, &value);
    }
    ctx.insert("init_script", INIT_SCRIPT);
    ctx.insert("firewall", gw.firewall.name());
    ctx.insert("nft_boot", crate::ownership::NFTABLES_NFT);

    // The boot files kind by kind, in the registry's order (crate::kind).
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for kind in KINDS {
        match kind {
            // Rendered files are restored by being files; sysctls by the
            // sysctl.d file boot.sh loads.
            Kind::Files | Kind::Sysctls => {}
            Kind::RulesRoutes => wanted.push(("boot/ip.batch", IP_BATCH.into())),
            // In boot/ip.batch, before the routes using them.
            Kind::Nexthops => {}
            // The inventory's firewall backend restores its own file.
            Kind::Firewall => {
                for (name, path) in crate::firewall::Firewall::boot_files(gw.firewall) {
                    wanted.push((name, (*path).into()));
                }
            }
            Kind::Units => {
                wanted.push(("boot/boot.sh", BOOT_SH.into()));
                if flush {
                    wanted.push(("boot/route-cache-flush.sh", FLUSH_SH.into()));
                }
                if platform.systemd {
                    wanted.push(("boot/dwprov.service", unit_path(EARLY_UNIT)));
                    wanted.push(("boot/dwprov-routes.service", unit_path(LATE_UNIT)));
                    if flush {
                        wanted.push((
                            "boot/dwprov-route-cache-flush.service",
                            unit_path(FLUSH_UNIT),
                        ));
                    }
                } else {
                    wanted.push(("boot/init.d", INIT_SCRIPT.into()));
                }
            }
        }
    }
    let warns = route_cache_warns(gw, platform.kernel.as_deref());
    let mut out = BootFiles {
        files: BTreeMap::new(),
        warnings: if warns {
            vec![note.clone()]
        } else {
            Vec::new()
        },
        notes: if warns { Vec::new() } else { vec![note] },
    };
    for (template, path) in wanted {
        let text = if template == "boot/ip.batch" && fast_batch {
            ip_batch(&gw.host, desired)
        } else {
            let mut text = templates.render(template, &ctx)?;
            text.truncate(text.trim_end_matches('\n').len());
            text.push('\n');
            text
        };
        out.files.insert(path, text);
    }
    Ok(out)
}

/// Whether `name` is rendered from the built-in template (no `--templates`
/// override of it).
fn is_builtin(templates: &Templates, name: &str) -> bool {
    let builtin = TEMPLATES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
    builtin.is_some() && templates.source(name) == builtin
}

/// The boot/ip.batch template's `routes` and `rules` (those of the first
/// managed family, as `ip -batch` words) and `other_families` (`flag`,
/// `routes`, `rules` of each later family, whose lines start with the
/// flag: [`crate::state::Family::batch_prefix`]).
fn insert_batch_lists(ctx: &mut tera::Context, desired: &State) {
    use crate::state::Family;
    let of = |f: Family| -> (Vec<String>, Vec<String>) {
        (
            desired
                .routes
                .iter()
                .filter(|r| r.family() == f)
                .map(|r| r.to_batch())
                .collect(),
            desired
                .rules
                .iter()
                .filter(|r| r.family() == f)
                .map(|r| r.to_batch())
                .collect(),
        )
    };
    // The first managed family's lines carry no flag (Family::batch_prefix).
    let first = crate::state::family::OWNED;
    let (routes, rules) = of(first);
    ctx.insert("routes", &routes);
    ctx.insert("rules", &rules);
    let mut others = Vec::new();
    for f in Family::ALL.into_iter().filter(|&f| f != first) {
        let (routes, rules) = of(f);
        if !routes.is_empty() || !rules.is_empty() {
            others
                .push(serde_json::json!({ "flag": f.ip_flag(), "routes": routes, "rules": rules }));
        }
    }
    ctx.insert("other_families", &others);
}

/// What the built-in `boot/ip.batch` template renders, byte for byte
/// (`the_fast_boot_batch_is_the_template_s_output` checks it), written into
/// one string: a 1.7 million route list would otherwise be held as a string
/// per route, as JSON in the template context, and in tera's output buffer.
fn ip_batch(host: &str, desired: &State) -> String {
    const ROUTE: &str = "route replace ";
    const RULE: &str = "rule add ";
    // About 90 bytes a route: one allocation for most lists, trimmed below.
    let mut s = String::with_capacity(128 + desired.routes.len() * (ROUTE.len() + 81));
    let _ = write!(
        s,
        "# Managed by dwprov for {host}: restored at boot by {BOOT_SH}. Edits are overwritten."
    );
    // Nexthop objects before the routes using them (as the template).
    for n in &desired.nexthops {
        s.push_str("\nnexthop replace ");
        s.push_str(&n.to_batch());
    }
    // One pass over each list: the first family's routes, then its rules;
    // a later family's lines (starting with its flag) go to `later`, after
    // them (as the template's `other_families`). The first managed family's
    // lines carry no flag (Family::batch_prefix).
    let first = crate::state::family::OWNED;
    let mut later = String::new();
    for r in &desired.routes {
        let f = r.family();
        let out = if f == first { &mut s } else { &mut later };
        out.push('\n');
        out.push_str(f.batch_prefix());
        out.push_str(ROUTE);
        r.write_batch(out);
    }
    for r in &desired.rules {
        let f = r.family();
        let out = if f == first { &mut s } else { &mut later };
        out.push('\n');
        out.push_str(f.batch_prefix());
        out.push_str(RULE);
        out.push_str(&r.to_batch());
    }
    s.push_str(&later);
    s.push('\n');
    s.shrink_to_fit();
    s
}

/// Commands the apply script runs after writing the files of `changes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostInstall {
    /// Shell lines; they call the apply script's `fail STEP` on error.
    pub script: String,
    pub commands: usize,
}

/// Enable what was installed, stop what was removed: only for boot files in
/// `changes` (a plan with no boot file change runs none of this).
pub fn post_install(changes: &[Change]) -> PostInstall {
    let (mut written, mut removed) = (Vec::new(), Vec::new());
    for c in changes {
        if let Change::File { path, to, .. } = c {
            if to.is_some() {
                written.push(path.as_str());
            } else {
                removed.push(path.as_str());
            }
        }
    }
    let w = |p: &str| written.contains(&p);
    let r = |p: &str| removed.contains(&p);
    let mut out = PostInstall::default();
    let mut line = |s: &mut String, text: String| {
        s.push_str(&text);
        s.push('\n');
        out.commands += 1;
    };
    let mut s = String::new();
    let units = [EARLY_UNIT, LATE_UNIT, FLUSH_UNIT];
    for u in units.iter().filter(|u| r(&unit_path(u))) {
        // The unit file is gone: stop it while systemd still knows it, drop
        // its enablement link (`systemctl disable` needs the file).
        line(
            &mut s,
            format!("systemctl stop {u} 2>/dev/null; rm -f {UNIT_DIR}/multi-user.target.wants/{u}"),
        );
    }
    if units.iter().any(|u| w(&unit_path(u)) || r(&unit_path(u))) {
        line(
            &mut s,
            "systemctl daemon-reload || fail 'systemctl daemon-reload'".into(),
        );
    }
    for u in units.iter().filter(|u| w(&unit_path(u))) {
        line(
            &mut s,
            format!("systemctl --quiet enable {u} || fail 'systemctl enable {u}'"),
        );
    }
    if w(INIT_SCRIPT) {
        line(
            &mut s,
            format!("chmod 755 {INIT_SCRIPT} || fail 'chmod {INIT_SCRIPT}'"),
        );
        line(
            &mut s,
            format!(
                "if command -v update-rc.d >/dev/null 2>&1; then update-rc.d {INIT_NAME} defaults >/dev/null 2>&1 || fail 'update-rc.d {INIT_NAME} defaults'; \
                 elif command -v chkconfig >/dev/null 2>&1; then chkconfig --add {INIT_NAME} || fail 'chkconfig --add {INIT_NAME}'; \
                 else echo 'dwprov: no update-rc.d or chkconfig: link {INIT_SCRIPT} into the boot sequence by hand' >&2; fi"
            ),
        );
    }
    if r(INIT_SCRIPT) {
        line(
            &mut s,
            format!(
                "if command -v update-rc.d >/dev/null 2>&1; then update-rc.d {INIT_NAME} remove >/dev/null 2>&1; \
                 elif command -v chkconfig >/dev/null 2>&1; then chkconfig --del {INIT_NAME}; fi; true"
            ),
        );
    }
    // The flush loop runs now, not only after the next boot.
    if r(FLUSH_SH) {
        line(
            &mut s,
            format!(
                "if [ -f {FLUSH_PIDFILE} ]; then pid=$(cat {FLUSH_PIDFILE}); \
                 if tr '\\0' ' ' <\"/proc/$pid/cmdline\" 2>/dev/null | grep -q 'route-cache-flush\\.sh'; then \
                 kill -TERM -- \"-$pid\" 2>/dev/null || kill -TERM \"$pid\"; fi; rm -f {FLUSH_PIDFILE}; fi"
            ),
        );
    } else if w(FLUSH_SH) || w(&unit_path(FLUSH_UNIT)) {
        let unit = unit_path(FLUSH_UNIT);
        line(
            &mut s,
            format!(
                "if [ -f {unit} ]; then systemctl restart {FLUSH_UNIT} || fail 'systemctl restart {FLUSH_UNIT}'; \
                 else sh {FLUSH_SH} restart || fail 'start the route-cache flush loop'; fi"
            ),
        );
    }
    // The line-health agent (issue 11): started, restarted or stopped with its files.
    for l in crate::agent::deploy::post_install(&written, &removed) {
        line(&mut s, l);
    }
    out.script = s;
    out
}

/// Everything above as text, for snapshots and `dwprov render`-like views.
pub fn files_text(b: &BootFiles) -> String {
    let mut s = String::new();
    for (path, text) in &b.files {
        let _ = write!(s, "==> {path}\n{text}");
    }
    for w in b.warnings.iter().chain(&b.notes) {
        let _ = writeln!(s, "note: {w}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Method;
    use crate::render::tests::seed;

    fn boot(kernel: Option<&str>, systemd: bool, flush: Option<bool>) -> BootFiles {
        let mut gw = seed(Method::Fwmark);
        gw.route_cache_flush = flush;
        let t = Templates::load(None).unwrap();
        let r = crate::render::render(&gw, &t, None).unwrap();
        let platform = Platform {
            kernel: kernel.map(str::to_string),
            systemd,
        };
        files(&gw, &r.desired, &platform, &t).unwrap()
    }

    #[test]
    fn kernel_versions_compare_by_major_minor() {
        assert_eq!(kernel_version("3.5.7-foo"), Some((3, 5)));
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("2.6.32-5-686"), Some((2, 6)));
        assert_eq!(kernel_version("3.10.0-1160.el7.x86_64"), Some((3, 10)));
        assert_eq!(kernel_version("4"), Some((4, 0)));
        assert_eq!(kernel_version(" 3.6 "), Some((3, 6)));
        assert_eq!(kernel_version("Linux"), None);
        assert_eq!(kernel_version(""), None);
        assert_eq!(kernel_version("3.x"), None);
        assert_eq!(has_route_cache("3.5.7-foo"), Some(true));
        assert_eq!(has_route_cache("3.2.0-4-amd64"), Some(true));
        assert_eq!(has_route_cache("2.6.32"), Some(true));
        assert_eq!(has_route_cache("3.6.0"), Some(false));
        // 3.10 is not "3.1": numeric, not lexical.
        assert_eq!(has_route_cache("3.10.0"), Some(false));
        assert_eq!(has_route_cache("6.1.0-18-amd64"), Some(false));
        assert_eq!(has_route_cache("unknown"), None);
    }

    #[test]
    fn the_kernel_decides_unless_the_inventory_does() {
        let gw = |f| {
            let mut g = seed(Method::Fwmark);
            g.route_cache_flush = f;
            g
        };
        let d = |f, k| route_cache_decision(&gw(f), k);
        assert!(d(None, Some("3.2.0")).0);
        assert!(d(None, Some("3.2.0")).1.contains("every 2 s"));
        assert!(!d(None, Some("6.1.0-18-amd64")).0);
        assert!(d(None, Some("6.1.0-18-amd64"))
            .1
            .contains("no IPv4 route cache"));
        let (f, note) = d(None, Some("weird"));
        assert!(!f && note.contains("assuming 3.6 or later"), "{note}");
        assert!(!d(None, None).0);
        assert!(d(Some(true), Some("6.1.0")).0);
        let (f, note) = d(Some(false), Some("3.2.0"));
        assert!(!f && note.contains("FAQ 2"), "{note}");
    }

    #[test]
    fn a_kernel_without_route_cache_is_a_note_not_a_warning() {
        let modern = boot(Some("6.1.0-18-amd64"), true, None);
        assert!(modern.warnings.is_empty(), "{:?}", modern.warnings);
        assert!(modern.notes[0].contains("no IPv4 route cache"));
        let gw = seed(Method::Fwmark);
        assert_eq!(notes(&gw, Some("6.1.0-18-amd64")), modern.notes);
        // Without facts (render): a note saying what was assumed.
        assert!(notes(&gw, None)[0].contains("no host facts"));
        // What the admin should act on stays a warning, in every plan.
        assert!(!boot(Some("weird"), true, None).warnings.is_empty());
        let off = boot(Some("3.2.0"), true, Some(false));
        assert!(off.warnings[0].contains("FAQ 2") && off.notes.is_empty());
        assert!(notes(&gw, Some("weird")).is_empty());
        let old = boot(Some("3.2.0-4-amd64"), true, None);
        assert!(old.warnings[0].contains("every 2 s") && old.notes.is_empty());
    }

    #[test]
    fn snapshot_systemd_modern_kernel() {
        insta::assert_snapshot!(files_text(&boot(Some("6.1.0-18-amd64"), true, None)));
    }

    #[test]
    fn snapshot_systemd_old_kernel() {
        let b = boot(Some("3.2.0-4-amd64"), true, None);
        let paths: Vec<_> = b.files.keys().map(String::as_str).collect();
        assert!(paths.contains(&"/etc/systemd/system/dwprov-route-cache-flush.service"));
        assert!(paths.contains(&FLUSH_SH));
        insta::assert_snapshot!(files_text(&b));
    }

    #[test]
    fn snapshot_sysv_old_kernel() {
        let b = boot(Some("3.2.0-4-amd64"), false, None);
        assert!(!b.files.keys().any(|p| p.starts_with(UNIT_DIR)));
        insta::assert_snapshot!(files_text(&b));
    }

    #[test]
    fn sysv_modern_kernel_has_no_flush_and_no_units() {
        let b = boot(Some("6.1.0"), false, None);
        let paths: Vec<_> = b.files.keys().map(String::as_str).collect();
        assert_eq!(paths, [BOOT_SH, IP_BATCH, IPTABLES_RULES, INIT_SCRIPT]);
        assert!(!b.files[INIT_SCRIPT].contains("flush loop this kernel"));
    }

    #[test]
    fn override_forces_the_flush_on_a_modern_kernel_and_off_on_an_old_one() {
        assert!(boot(Some("6.1.0"), true, Some(true))
            .files
            .contains_key(FLUSH_SH));
        assert!(!boot(Some("3.2.0"), true, Some(false))
            .files
            .contains_key(FLUSH_SH));
    }

    #[test]
    fn every_file_is_marked_and_deterministic() {
        for (k, s) in [(Some("3.2.0"), true), (Some("3.2.0"), false), (None, true)] {
            let a = boot(k, s, None);
            assert_eq!(a, boot(k, s, None));
            for (path, text) in &a.files {
                let head: Vec<_> = text.lines().take(2).collect();
                assert!(
                    head.iter()
                        .any(|l| l.starts_with(crate::ownership::FILE_MARK)),
                    "{path}: {head:?}"
                );
                assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{path}");
            }
        }
    }

    #[test]
    fn the_batch_holds_every_desired_rule_and_route() {
        let gw = seed(Method::Policy);
        let t = Templates::load(None).unwrap();
        let r = crate::render::render(&gw, &t, None).unwrap();
        let batch = &r.desired.files[IP_BATCH];
        // Parsed back (replace reads as add), it is the desired state.
        let back = crate::state::ip::parse_batch(
            &batch.replace("route replace ", "route add "),
            "boot ip.batch",
            &r.desired.rt_tables,
        )
        .unwrap();
        assert_eq!(back.rules, r.desired.rules);
        assert_eq!(back.routes, r.desired.routes);
        // And the iptables payload parses to the desired chains and jumps.
        let ipt = crate::state::Iptables::parse(&r.desired.files[IPTABLES_RULES]).unwrap();
        assert_eq!(ipt, r.desired.firewall.iptables);
    }

    /// The built-in boot/ip.batch rendered by tera, as an overriding user's
    /// copy of it would be (context `routes`, `rules`).
    fn batch_by_tera(host: &str, desired: &State) -> String {
        let t = Templates::load(None).unwrap();
        let mut ctx = tera::Context::new();
        ctx.insert("host", host);
        ctx.insert("boot_sh", BOOT_SH);
        insert_batch_lists(&mut ctx, desired);
        let nexthops: Vec<String> = desired.nexthops.iter().map(|n| n.to_batch()).collect();
        ctx.insert("nexthops", &nexthops);
        let text = t.render("boot/ip.batch", &ctx).unwrap();
        format!("{}\n", text.trim_end_matches('\n'))
    }

    #[test]
    fn the_fast_boot_batch_is_the_template_s_output() {
        use crate::state::ip::Route;
        let t = Templates::load(None).unwrap();
        for m in [Method::Policy, Method::Fwmark, Method::Static] {
            let gw = seed(m);
            let r = crate::render::render(&gw, &t, None).unwrap();
            let fast = ip_batch(&gw.host, &r.desired);
            assert_eq!(fast, batch_by_tera(&gw.host, &r.desired), "{m:?}");
            assert_eq!(r.desired.files[IP_BATCH], fast, "{m:?}");
        }
        // Every word a route can have, and nothing at all.
        let mut d = State::default();
        assert_eq!(ip_batch("h", &d), batch_by_tera("h", &d));
        d.routes.push(Route {
            kind: "blackhole".into(),
            dst: "10.1.2.3/32".parse().unwrap(),
            tos: 0x10,
            via: Some("10.0.0.1".parse().unwrap()),
            dev: Some("eth9".into()),
            src: Some("10.0.0.2".parse().unwrap()),
            table: 7,
            proto: 201,
            scope: 253,
            metric: 5,
            onlink: true,
            ..Route::default()
        });
        d.routes.push(Route::default());
        d.routes.push(Route {
            nhid: Some(20001),
            ..Route::default()
        });
        d.nexthops.push(
            crate::state::nexthop::parse_words(&["id", "20001", "via", "10.0.0.1", "dev", "eth9"])
                .unwrap(),
        );
        assert_eq!(ip_batch("h", &d), batch_by_tera("h", &d));
        assert!(
            ip_batch("h", &d).contains("\nnexthop replace id 20001"),
            "{}",
            ip_batch("h", &d)
        );
        assert!(ip_batch("h", &d).contains(
            "\nroute replace blackhole 10.1.2.3 tos 0x10 via 10.0.0.1 dev eth9 src 10.0.0.2 table 7 proto 201 scope 253 metric 5 onlink\n"
        ));
        // A later family's routes and rules come last, with its flag, in
        // both renderings (boot.sh runs them with it).
        d.routes.insert(
            0,
            Route {
                dst: "2001:db8::/32".parse().unwrap(),
                dev: Some("eth9".into()),
                ..Route::default()
            },
        );
        d.rules.push(crate::state::Rule {
            priority: 7,
            from: Some("2001:db8::/48".parse().unwrap()),
            action: crate::state::ip::RuleAction::Table(7),
            proto: 201,
            ..Default::default()
        });
        let both = ip_batch("h", &d);
        assert_eq!(both, batch_by_tera("h", &d));
        let tail: Vec<_> = both.lines().rev().take(2).collect();
        assert!(
            tail[1].starts_with("-6 route replace 2001:db8::/32 dev eth9"),
            "{both}"
        );
        assert!(
            tail[0].starts_with("-6 rule add priority 7 from 2001:db8::/48 lookup 7"),
            "{both}"
        );
    }

    #[test]
    fn an_overridden_boot_batch_is_rendered_by_its_template() {
        let d = std::env::temp_dir().join(format!("dwprov-boot-override-{}", std::process::id()));
        std::fs::create_dir_all(d.join("boot")).unwrap();
        std::fs::write(
            d.join("boot/ip.batch.tera"),
            "# Managed by dwprov for {{ host }}: {{ routes | length }} routes, {{ rules | length }} rules\n",
        )
        .unwrap();
        let t = Templates::load(Some(&d));
        let _ = std::fs::remove_dir_all(&d);
        let t = t.unwrap();
        let gw = seed(Method::Fwmark);
        let r = crate::render::render(&gw, &t, None).unwrap();
        assert_eq!(
            r.desired.files[IP_BATCH],
            format!(
                "# Managed by dwprov for {}: {} routes, {} rules\n",
                gw.host,
                r.desired.routes.len(),
                r.desired.rules.len()
            )
        );
    }

    /// `systemd-analyze verify` on the rendered units, in a temp dir (nothing
    /// is enabled or started). Skipped with a message where systemd-analyze
    /// is missing (scripts/test.sh installs it).
    #[test]
    fn units_pass_systemd_analyze_verify() {
        let have = std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            eprintln!("systemd-analyze not installed: skipping unit verification");
            return;
        }
        let dir = std::env::temp_dir().join(format!("dwprov-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let b = boot(Some("3.2.0"), true, None);
        let mut units = Vec::new();
        for (path, text) in &b.files {
            if let Some(name) = path.strip_prefix(&format!("{UNIT_DIR}/")) {
                let p = dir.join(name);
                std::fs::write(&p, text).unwrap();
                units.push(p);
            }
        }
        assert_eq!(units.len(), 3);
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .args(&units)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        std::fs::remove_dir_all(&dir).unwrap();
        // Only complaints about our units count (the machine's own units may
        // have their own).
        let ours: Vec<_> = err.lines().filter(|l| l.contains("dwprov")).collect();
        assert!(out.status.success() && ours.is_empty(), "{err}");
    }

    #[test]
    fn post_install_only_for_changed_boot_files() {
        let file = |p: &str, to: Option<&str>| Change::File {
            path: p.into(),
            from: None,
            to: to.map(str::to_string),
        };
        assert_eq!(post_install(&[]), PostInstall::default());
        assert_eq!(
            post_install(&[file(IP_BATCH, Some("x")), file(SYSCTL_CONF, Some("y"))]),
            PostInstall::default()
        );
        let p = post_install(&[file(&unit_path(EARLY_UNIT), Some("x"))]);
        assert!(p.script.contains("daemon-reload"), "{}", p.script);
        assert!(p.script.contains("enable dwprov.service"), "{}", p.script);
        assert!(!p.script.contains("restart"), "{}", p.script);
        let p = post_install(&[file(INIT_SCRIPT, Some("x")), file(FLUSH_SH, Some("y"))]);
        assert!(p.script.contains("chmod 755 /etc/init.d/dwprov"));
        assert!(p.script.contains("route-cache-flush.sh restart"));
        assert!(!p.script.contains("daemon-reload"));
        let p = post_install(&[file(FLUSH_SH, None), file(&unit_path(FLUSH_UNIT), None)]);
        assert!(p
            .script
            .contains("systemctl stop dwprov-route-cache-flush.service"));
        assert!(p.script.contains("kill -TERM"));
        assert!(p.script.contains("daemon-reload"));
        // Valid sh.
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(format!("fail() {{ exit 3; }}\n{}", p.script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn scripts_are_valid_posix_sh() {
        let b = boot(Some("3.2.0"), false, None);
        for path in [BOOT_SH, FLUSH_SH, INIT_SCRIPT] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&b.files[path])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
