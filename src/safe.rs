//! Never strand a gateway: commit-confirmed apply.
//!
//! Before changing anything, the apply script takes a snapshot on the
//! gateway, from its live state (nothing of it travels: a one-route repair
//! on a 4,000-prefix gateway sends a few kB): the owned rules, routes and
//! iptables objects as canonical listings, copies of the owned files, the
//! sysctls the apply may set. It checks the snapshot before trusting it
//! (iptables-save against `iptables -S`, owned counts against the plan's),
//! writes `revert.sh` and arms a revert that runs **on the gateway**,
//! detached from the SSH session: after `confirm_timeout` seconds it runs
//! `revert.sh` unless disarmed. The apply verifies in its own round trip
//! (its owned objects listed after the changes, [`crate::verified`], and
//! a digest of those listings computed on the gateway); dwprov disarms
//! only after a *new* SSH connection found the same digest, so a change that cuts the management path, or an SSH
//! session killed in the middle of an apply, ends in the old state by
//! itself, and the converged state does not travel twice.
//!
//! The kernel may contradict the snapshot (a lying or mismatched tool):
//! an `ip rule add` fails "File exists" for a rule the listing did not
//! show. Then the apply undoes its batch and stops, nothing changed; and a
//! verify that still shows exactly the pre-apply objects after every step
//! succeeded is neither reverted nor confirmed (`fleet`).
//!
//! The changes run as `$S/apply.sh` in a process group of their own; the
//! revert ends that group first and every step checks that no revert has
//! started, so a stalled step cannot land after the revert. The revert
//! restores dwprov's own objects only (rules and routes by difference,
//! DWPROV-* chains and jumps with `iptables-restore --noflush`, files,
//! sysctls) and leaves everything else as it is, also what was added since
//! the snapshot; it checks the result against the snapshot.
//!
//! The gateway-side shell lives in `gateway/*.sh` (embedded here, installed
//! once per version under [`LIBRARY_ROOT`]); this module passes quoted
//! parameters and heredoc payloads only. `dwprov rollback` (plan, ask,
//! revert) is [`crate::rollback::rollback_hosts`].
use crate::converge::{self, heredoc, sh_quote, ApplyScript};
use crate::diff::{is_owned_route, is_owned_rule, Change};
use crate::kind::{Kind, KINDS};
use crate::state::State;
use std::fmt::Write as _;

/// Exit status of an apply script that stopped before changing anything.
pub const NOTHING_CHANGED: i32 = 4;
/// Where snapshots live on the gateway.
pub use crate::ownership::SNAPSHOT_DIR;
/// Snapshots kept per gateway (older ones are pruned on confirm).
pub const KEEP_SNAPSHOTS: usize = 10;
/// A new snapshot id: UTC time plus a random suffix, sortable.
pub fn snapshot_id() -> String {
    // Milliseconds: two applies within one second must still sort in order
    // ("the newest snapshot" is the last by name).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (now.as_secs(), now.subsec_millis());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let nonce = crate::gather::marker();
    let tail = &nonce[nonce.len().saturating_sub(6)..];
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}{millis:03}Z-{tail}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Is `id` a well-formed snapshot id (safe to put in a path)?
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The gateway-side programs of this module (see gateway/).
const SNAPSHOT_SH: &str = include_str!("../gateway/snapshot.sh");
const APPLY_SH: &str = include_str!("../gateway/apply.sh");
const REVERT_SH: &str = include_str!("../gateway/revert.sh");
const CONFIRM_SH: &str = include_str!("../gateway/confirm.sh");
const ROLLBACK_SH: &str = include_str!("../gateway/rollback.sh");
const LIST_SH: &str = include_str!("../gateway/list.sh");
const SHOW_SH: &str = include_str!("../gateway/show.sh");
const VERIFY_SH: &str = include_str!("../gateway/verify.sh");

/// Every gateway-side file of this module, by name (for shellcheck).
pub const GATEWAY_FILES: &[(&str, &str)] = &[
    ("lib.sh", converge::LIB_SH),
    ("snapshot.sh", SNAPSHOT_SH),
    ("apply.sh", APPLY_SH),
    ("revert.sh", REVERT_SH),
    ("confirm.sh", CONFIRM_SH),
    ("rollback.sh", ROLLBACK_SH),
    ("list.sh", LIST_SH),
    ("show.sh", SHOW_SH),
    ("verify.sh", VERIFY_SH),
];

/// The snapshot directory of `id`.
pub fn snapshot_dir(id: &str) -> String {
    format!("{SNAPSHOT_DIR}/{id}")
}

/// `NAME='value'` lines.
fn params(vars: &[(&str, String)]) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        let _ = writeln!(s, "{k}={}", sh_quote(v));
    }
    s
}

/// How many owned objects the snapshot must list, in its line format
/// (gateway/lib.sh): rules, routes, and firewall lines (for iptables: one
/// per owned chain, per rule in one, per jump into one).
fn owned_counts(old: &State) -> (usize, usize, usize) {
    let rules = old.rules.iter().filter(is_owned_rule).count();
    let routes = old.routes.iter().filter(is_owned_route).count();
    let ipt = old.firewall.owned_lines();
    (rules, routes, ipt)
}

/// A gateway file as sent: without comment lines and indentation (the
/// library goes to every gateway on every apply; its comments stay here).
/// The files hold no heredocs, so no line is payload.
pub fn minify(text: &str) -> String {
    let mut s = String::with_capacity(text.len() / 2);
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Where the gateway-side programs of the apply are installed, per dwprov
/// version (the name is a digest of their text): a commit-confirmed apply
/// sends them only when they are missing (`dwprov` asks first, in one tiny
/// round trip; a big apply just sends them), so a small apply sends
/// O(changes), not 13 kB of shell.
pub const LIBRARY_ROOT: &str = crate::ownership::LIBRARY_DIR;
/// Below this script size (without the programs) an apply asks whether the
/// programs are installed before sending them; above, they just travel.
pub const ASK_FOR_LIBRARY_BELOW: usize = 64 * 1024;
/// Library versions kept on a gateway (older ones are pruned on confirm).
pub const KEEP_LIBRARIES: usize = 3;

/// The installed programs: (file name, text as sent).
fn library_files() -> [(&'static str, String); 4] {
    [
        ("lib.sh", minify(&converge::installed_lib_sh())),
        ("snapshot.sh", minify(SNAPSHOT_SH)),
        ("revert.sh", minify(REVERT_SH)),
        ("apply.sh", minify(APPLY_SH)),
    ]
}

/// `LIBRARY_ROOT/DIGEST` of this version's programs.
pub fn library_dir() -> String {
    use sha2::{Digest, Sha256};
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let mut h = Sha256::new();
        for (name, text) in library_files() {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        let hex: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{LIBRARY_ROOT}/{hex}")
    })
    .clone()
}

/// Prints `yes` when this version's programs are installed on the gateway.
pub fn library_check_script() -> String {
    format!(
        "{} && echo yes || echo no\n",
        library_present(&sh_quote(&library_dir()))
    )
}

/// The shell test that the programs are installed in `dir` (a shell word).
fn library_present(dir: &str) -> String {
    format!("[ -f {dir}/apply.sh ] && [ -f {dir}/revert.sh ] && [ -f {dir}/snapshot.sh ] && [ -f {dir}/lib.sh ]")
}

/// Whether this version's programs are installed on the host of `t` (one
/// tiny round trip; any doubt reads as no: they are then sent).
pub fn library_installed(t: &mut dyn crate::transport::Transport) -> bool {
    matches!(t.run_script(&library_check_script()), Ok(o) if o.status == 0 && o.stdout_str().trim() == "yes")
}

/// The start of a script that runs inside snapshot `dir`, whose `lib/`
/// the apply copied there first.
fn in_snapshot(dir: &str) -> String {
    format!(
        "#!/bin/sh\n{}. \"$S/lib/lib.sh\" || exit 3\n",
        params(&[("S", dir.to_string())])
    )
}

/// `revert.sh` of snapshot `dir`: runs without the controller (the timer
/// runs it), restores every owned object from what the snapshot holds.
pub fn revert_script(dir: &str) -> String {
    let mut s = in_snapshot(dir);
    s.push_str("# dwprov revert: puts back what dwprov owned before this snapshot.\n");
    s.push_str(". \"$S/lib/revert.sh\"\n");
    s
}

/// What the revert runs after restoring the files: undo what installing
/// boot files did (enable links, the flush loop), for the files this apply
/// changes.
fn revert_units(old: &State, desired: &State) -> String {
    let paths: std::collections::BTreeSet<&String> =
        old.files.keys().chain(desired.files.keys()).collect();
    let changes: Vec<Change> = paths
        .into_iter()
        .filter(|p| old.files.get(*p) != desired.files.get(*p))
        .map(|p| Change::File {
            path: p.clone(),
            from: desired.files.get(p).cloned(),
            to: old.files.get(p).cloned(),
        })
        .collect();
    crate::boot::post_install(&changes).script
}

/// The transient unit name of a snapshot's revert timer.
pub fn unit_name(id: &str) -> String {
    crate::ownership::revert_unit(id)
}

/// The revert service and timer (written under /run/systemd/system, so
/// they vanish on reboot like the state they guard).
pub fn revert_units_text(id: &str, timeout_secs: u64) -> (String, String) {
    let dir = snapshot_dir(id);
    let service = format!(
        "# Managed by dwprov: reverts snapshot {id} unless the apply is confirmed.\n\
         [Unit]\nDescription=dwprov: revert to snapshot {id}\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/sh -c 'sh {dir}/revert.sh > {dir}/revert.log 2>&1'\n"
    );
    let timer = format!(
        "# Managed by dwprov: fires the revert of snapshot {id} after {timeout_secs} s.\n\
         [Unit]\nDescription=dwprov: revert to snapshot {id} unless confirmed\n\n\
         [Timer]\nOnActiveSec={timeout_secs}s\nAccuracySec=1s\nRemainAfterElapse=no\n"
    );
    (service, timer)
}

/// One commit-confirmed apply, besides its changes and states.
#[derive(Debug, Clone, Copy)]
pub struct ConfirmedRun<'a> {
    /// The snapshot id ([`snapshot_id`]).
    pub id: &'a str,
    /// Seconds before an unconfirmed change reverts itself.
    pub timeout_secs: u64,
    /// Frames the verify's listings (`gather::marker`).
    pub marker: &'a str,
    /// The gateway-side programs of this version are on the gateway
    /// already ([`library_installed`]); else the script installs them.
    pub library_installed: bool,
    /// Hand-made objects this apply takes over (`--adopt`): kept in the
    /// snapshot, so that its revert puts them back.
    pub hand_made: &'a [crate::takeover::HandMade],
}

/// The arguments of the verify listings and digest (the owned files and
/// sysctls), as [`crate::verified::listing_args`] quotes them.
pub use crate::verified::listing_args as digest_args;

/// The apply script with snapshot and armed revert (gateway/snapshot.sh),
/// then the changes as `$S/apply.sh` in a process group of their own, then,
/// in the same round trip, the verification: the owned objects listed and
/// framed by `run.marker` ([`crate::verified::listing_script`]), and their
/// digest, checked again over a new connection ([`verify_confirm_script`]).
pub fn apply_script(
    changes: &[Change],
    old: &State,
    desired: &State,
    run: &ConfirmedRun,
    caps: converge::Caps,
) -> ApplyScript {
    let ConfirmedRun {
        id,
        timeout_secs,
        marker,
        library_installed: installed,
        hand_made,
    } = *run;
    let mut out = ApplyScript::default();
    let d = converge::delimiter();
    let body = converge::body(changes, &d, &mut out, caps);
    let dir = snapshot_dir(id);
    let (rules, routes, ipt) = owned_counts(old);
    let mut s = params(&[
        ("S", dir.clone()),
        ("ID", id.to_string()),
        ("UNIT", unit_name(id)),
        ("TIMEOUT", timeout_secs.to_string()),
        ("EXPECT_RULES", rules.to_string()),
        ("EXPECT_ROUTES", routes.to_string()),
        ("EXPECT_IPT", ipt.to_string()),
    ]);
    // The gateway-side programs, installed once per dwprov version (sent
    // only when missing), copied into the snapshot (its revert.sh must not
    // depend on anything that may be pruned), then the library runs here.
    s.push_str(&params(&[("L", library_dir())]));
    let cannot = |what: &str| {
        format!(
            "|| {{ echo \"dwprov: cannot write {what} (read-only file system or disk full?); nothing was changed\" >&2; exit {NOTHING_CHANGED}; }}"
        )
    };
    if !installed {
        // Written only where missing (about ten processes saved when the
        // programs travel with a big apply to a gateway that has them).
        let _ = writeln!(s, "if ! {{ {}; }}; then", library_present("\"$L\""));
        let _ = writeln!(
            s,
            "{{ rm -rf \"$L.$$\" && mkdir -p \"$L.$$\"; }} 2>/dev/null {}",
            cannot("$L")
        );
        for (name, text) in library_files() {
            let _ = write!(
                s,
                "cat > \"$L.$$/{name}\" <<'{d}' {}\n{text}{d}\n",
                cannot("$L")
            );
        }
        s.push_str("[ -d \"$L\" ] || mv \"$L.$$\" \"$L\"; rm -rf \"$L.$$\"\nfi\n");
    }
    let _ = writeln!(
        s,
        "{{ mkdir -p \"$S/files\" \"$S/lib\" && cp \"$L/lib.sh\" \"$L/revert.sh\" \"$L/apply.sh\" \"$S/lib/\"; }} 2>/dev/null {}\n. \"$S/lib/lib.sh\"\n. \"$L/snapshot.sh\"",
        cannot("$S (or the library $L vanished)")
    );
    // Preflight: every directory we write to (read-only /etc, full disk).
    let mut dirs: std::collections::BTreeSet<String> = desired
        .files
        .keys()
        .filter_map(|p| {
            std::path::Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
        })
        .collect();
    dirs.insert(SNAPSHOT_DIR.into());
    let dirs: String = dirs.into_iter().map(|d| d + "\n").collect();
    s.push_str(&heredoc("preflight_dirs", "preflight", &d, &dirs));
    // Whatever stops the apply from here on removes the staged files
    // (snapshot.sh's `nochange`).
    s.push_str(&staged_cleanup(&body.staged));
    // The firewall test runs in the background from here to the end of the
    // snapshot. On iptables-nft a `--test` holds the nf_tables lock for its
    // whole run (~25 ms here: its aborted transaction waits for the
    // kernel), and the snapshot's xtables and nft listings wait for it: so
    // the work that needs no lock comes first. The new files go to temp
    // files beside them (no change yet), and the ip batch waits in the
    // snapshot (written once here, not inside apply.sh: a 4,000-line batch
    // is parsed by the shell once).
    s.push_str(&body.test_start);
    s.push_str(&body.stage);
    if !body.ip_batch.is_empty() {
        s.push_str(&heredoc(
            "cat > \"$S/ip.batch\"",
            "write the ip batch",
            &d,
            &body.ip_batch,
        ));
    }
    if caps.systemd {
        let (service, timer) = revert_units_text(id, timeout_secs);
        s.push_str(&heredoc(
            "cat > \"$S/revert.service\"",
            "write revert unit",
            &d,
            &service,
        ));
        s.push_str(&heredoc(
            "cat > \"$S/revert.timer\"",
            "write revert timer",
            &d,
            &timer,
        ));
    }
    // Launched before the snapshot is taken (it fires only after the
    // timeout, by when revert.sh is written) so that it overlaps its start.
    s.push_str("arm_timer\n");
    s.push_str(&heredoc(
        "cat > \"$S/revert.sh\"",
        "write revert script",
        &d,
        &revert_script(&dir),
    ));
    let units = revert_units(old, desired);
    if !units.is_empty() {
        s.push_str(&heredoc(
            "cat > \"$S/units.sh\"",
            "write revert units script",
            &d,
            &units,
        ));
    }
    let rt_tables_file = crate::takeover::RT_TABLES_FILE.to_string();
    let files: std::collections::BTreeSet<&String> = old
        .files
        .keys()
        .chain(desired.files.keys())
        // The take-over edits it: the revert puts its copy back.
        .chain(crate::takeover::edits_rt_tables(hand_made).then_some(&rt_tables_file))
        .collect();
    let files: String = files.into_iter().map(|p| format!("{p}\n")).collect();
    s.push_str(&heredoc("snapshot_files", "snapshot files", &d, &files));
    let keys: String = desired.sysctls.keys().map(|k| format!("{k}\n")).collect();
    s.push_str(&heredoc("snapshot_sysctls", "snapshot sysctls", &d, &keys));
    s.push_str("snapshot_state\n");
    // What --adopt removes, as the revert puts it back (gateway/revert.sh).
    if !hand_made.is_empty() {
        s.push_str(&heredoc(
            "cat > \"$S/handmade.batch\"",
            "write the hand-made objects taken over",
            &d,
            &crate::takeover::restore_batch(hand_made),
        ));
        s.push_str(&heredoc(
            "cat > \"$S/handmade.ipt\"",
            "write the hand-made iptables rules taken over",
            &d,
            &crate::takeover::restore_iptables(hand_made),
        ));
    }
    s.push_str(&body.wait_for_test(""));
    s.push_str("timer_up || nochange 'arm the revert timer'\necho armed > \"$S/state\"\n");
    // The changes, as a file of their own (run in their own process group).
    let mut apply = in_snapshot(&dir);
    apply.push_str(". \"$S/lib/apply.sh\"\n");
    apply.push_str(&staged_cleanup(&body.staged));
    if !body.undo.is_empty() {
        apply.push_str(&heredoc(
            "cat > \"$S/ip.undo\"",
            "write the undo of the ip batch",
            &d,
            &body.undo,
        ));
    }
    if !body.ip_batch.is_empty() {
        apply.push_str("step 'ip -batch'\nip_batch\n");
    }
    apply.push_str(&body.commit);
    apply.push_str(&crate::takeover::rt_tables_script(hand_made));
    apply.push_str("exit 0\n");
    let d2 = format!("{d}_APPLY");
    s.push_str(&heredoc(
        "cat > \"$S/apply.sh\"",
        "write the apply script",
        &d2,
        &apply,
    ));
    s.push_str("run_apply\n");
    // Told at once (before the verification): the controller opens the new
    // connection now, after the change, while the listings run.
    let _ = writeln!(s, "printf '%s\\n' '{}'", applied_line(marker).trim_end());
    // Changed from here on: no `nochange`; a missing digest only means the
    // new connection will not confirm (the timer then reverts). The owned
    // objects, listed once for the verify and its digest.
    s.push_str(&params(&[("D", marker.to_string())]));
    s.push_str(&crate::verified::listing_script(old, desired, &d));
    s.push_str("exit 0\n");
    out.script = s;
    out
}

/// `staged_cleanup`, the shell function that removes the temp files the
/// staging writes (`staged`, shell-quoted): a stop before the commit leaves
/// none behind.
fn staged_cleanup(staged: &[String]) -> String {
    if staged.is_empty() {
        return "staged_cleanup() { :; }\n".into();
    }
    format!("staged_cleanup() {{ rm -f {} ; }}\n", staged.join(" "))
}

/// The stdout line the apply script prints once its changes are made (and
/// before its verification): from then on a new connection is one opened
/// after the change, so the controller may start its handshake.
pub fn applied_line(marker: &str) -> String {
    format!("{marker} applied\n")
}

/// Over a new connection after the apply: prove the owned state is the one
/// the apply's verify listed (same digest of the same listings), then
/// confirm.
pub fn verify_confirm_script(id: &str, digest_args: &str) -> String {
    let mut s = confirm_preamble(id);
    s.push_str(&minify(VERIFY_SH));
    let _ = writeln!(s, "verify_and_confirm {digest_args}");
    s.push_str(&minify(CONFIRM_SH));
    s
}

/// The line [`verify_confirm_when_told_script`] prints once the digest
/// matched, to hear the controller's verdict.
pub fn ready_line(marker: &str) -> String {
    format!("{marker} ready\n")
}

/// [`verify_confirm_script`] run before the controller's verdict, so that
/// its listing overlaps the controller's check of the apply's: the digest
/// compared, it prints [`ready_line`] and reads one line on stdin; only
/// `confirm` confirms (anything else, or none: not confirmed, and the
/// timer reverts). Everything is one function called on the last line: the
/// shell has read the whole script before it reads the verdict.
pub fn verify_confirm_when_told_script(id: &str, digest_args: &str, marker: &str) -> String {
    let mut s = confirm_preamble(id);
    s.push_str(&minify(VERIFY_SH));
    let _ = writeln!(
        s,
        "confirm_when_told() {{
verify_and_confirm {digest_args}
await_verdict '{}' || fail \"the controller's verify of the apply failed: the change is NOT confirmed\"",
        ready_line(marker).trim_end()
    );
    s.push_str(&minify(CONFIRM_SH));
    // exit: stdin stays open until the verdict, so the shell must not
    // wait for more script after a failure that ends the function early.
    s.push_str("}\nconfirm_when_told; exit $?\n");
    s
}

/// Disarm the revert of snapshot `id` (after verification) and prune old snapshots.
pub fn confirm_script(id: &str) -> String {
    let mut s = confirm_preamble(id);
    s.push_str(&minify(CONFIRM_SH));
    s
}

/// What gateway/confirm.sh runs on: the library and the parameters of
/// snapshot `id` and of the pruning (snapshots and libraries kept).
fn confirm_preamble(id: &str) -> String {
    let mut s = minify(&converge::lib_sh());
    s.push_str(&params(&[
        ("S", snapshot_dir(id)),
        ("SNAPSHOT_DIR", SNAPSHOT_DIR.into()),
        ("KEEP", KEEP_SNAPSHOTS.to_string()),
        ("LIBRARY_ROOT", LIBRARY_ROOT.into()),
        ("KEEP_LIBRARIES", KEEP_LIBRARIES.to_string()),
    ]));
    s
}

/// Stop the revert timer of snapshot `id` without reverting nor
/// confirming (the verify contradicted the apply: see `fleet`).
pub fn disarm_script(id: &str) -> String {
    let mut s = minify(&converge::lib_sh());
    s.push_str(&params(&[("S", snapshot_dir(id))]));
    s.push_str("[ -e \"$S/revert.started\" ] && fail 'the revert of this snapshot has started'\ndisarm\n[ -e \"$S/revert.started\" ] && fail 'the revert of this snapshot has started'\necho 'unconfirmed: the verify contradicted the apply' > \"$S/state\"\n");
    s
}

/// Revert to snapshot `id` now (or the newest when None).
pub fn rollback_script(id: Option<&str>) -> String {
    let mut s = minify(&converge::lib_sh());
    s.push_str(&params(&[
        ("SNAPSHOT_DIR", SNAPSHOT_DIR.into()),
        ("TO", id.unwrap_or("").to_string()),
    ]));
    s.push_str(&minify(ROLLBACK_SH));
    s
}

/// List snapshots: `id state` per line, oldest first.
pub fn list_script() -> String {
    let mut s = minify(&converge::lib_sh());
    s.push_str(&params(&[("SNAPSHOT_DIR", SNAPSHOT_DIR.into())]));
    s.push_str(&minify(LIST_SH));
    s
}

/// Print snapshot `id` (the newest when None) in sections framed by `marker`.
pub fn show_script(id: Option<&str>, marker: &str) -> String {
    let mut s = minify(&converge::lib_sh());
    s.push_str(&params(&[
        ("SNAPSHOT_DIR", SNAPSHOT_DIR.into()),
        ("TO", id.unwrap_or("").to_string()),
        ("D", marker.to_string()),
    ]));
    s.push_str(&minify(SHOW_SH));
    for kind in KINDS {
        s.push_str(kind.show_snapshot());
    }
    s
}

/// The owned state a snapshot holds, parsed from [`show_script`]'s
/// sections into the typed model (the same parsers as the boot batch and
/// iptables-save); `live` gives table names and the owned files the
/// snapshot did not cover (the revert leaves those as they are). Pure.
pub fn snapshot_state(
    sections: &crate::facts::Sections,
    live: &State,
) -> crate::error::Result<State> {
    let mut snap = State {
        rt_tables: live.rt_tables.clone(),
        ..State::default()
    };
    // Kind by kind, in the registry's order (crate::kind), each from its home.
    for kind in KINDS {
        match kind {
            Kind::Files => snap.files = crate::files::from_snapshot(sections, &live.files)?,
            Kind::Sysctls => snap.sysctls = crate::sysctls::from_snapshot(sections)?,
            Kind::RulesRoutes => {
                (snap.rules, snap.routes) =
                    crate::routing::from_snapshot(sections, &snap.rt_tables)?;
            }
            Kind::Nexthops => snap.nexthops = crate::nexthops::from_snapshot(sections)?,
            // Each backend's owned listing.
            Kind::Firewall => snap.firewall = crate::firewall::Firewall::from_snapshot(sections)?,
            // Their files are Kind::Files; the revert's units.sh undoes
            // what installing them did.
            Kind::Units => {}
        }
    }
    Ok(snap)
}

/// What rolling `t`'s host back to snapshot `id` changes: the snapshot's
/// id, the typed diff from the live owned state to the snapshot's, and its
/// readable views. Two round trips (gather, the snapshot); changes nothing.
pub fn rollback_plan(
    t: &mut dyn crate::transport::Transport,
    id: Option<&str>,
) -> crate::error::Result<(String, crate::diff::HostDiff, Vec<crate::diff::View>)> {
    let facts = crate::gather::gather(t)?;
    let m = crate::gather::marker();
    let out = t.run_script(&show_script(id, &m))?;
    if out.status != 0 {
        return Err(crate::error::Error::Remote {
            host: t.host().to_string(),
            what: "rollback plan".into(),
            status: out.status,
            stderr: out.stderr_str().trim().to_string(),
        });
    }
    let text = out.stdout_str();
    let sections = crate::gather::split_sections(&text, &m)?;
    let snap_id = sections
        .get("id")
        .map(|s| s.stdout.trim().to_string())
        .unwrap_or_default();
    let snap = snapshot_state(&sections, &facts.state)?;
    let diff = crate::diff::diff(&snap, &facts.state);
    let views = crate::diff::views(&snap, &facts.state);
    Ok((snap_id, diff, views))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_sort_by_time_and_are_path_safe() {
        let a = snapshot_id();
        assert!(valid_id(&a), "{a}");
        assert_eq!(a.len(), "20261124T204501123Z-abcdef".len(), "{a}");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = snapshot_id();
        assert!(
            b[..19] > a[..19],
            "{a} then {b}: later ids sort after earlier ones"
        );
        assert!(!valid_id("../etc"));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
    }

    /// The systemd path of the revert timer: the units pass
    /// `systemd-analyze verify` (scripts/test.sh installs it).
    #[test]
    fn revert_units_pass_systemd_analyze_verify() {
        let dir = std::env::temp_dir().join(format!("dwprov-revert-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = "20261124T000000Z-abcdef";
        let (service, timer) = revert_units_text(id, 60);
        let (s, t) = (
            dir.join(format!("{}.service", unit_name(id))),
            dir.join(format!("{}.timer", unit_name(id))),
        );
        std::fs::write(&s, service).unwrap();
        std::fs::write(&t, timer).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&s)
            .arg(&t)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .expect(
                "systemd-analyze (Debian package systemd; scripts/install-deps.sh installs it)",
            );
        std::fs::remove_dir_all(&dir).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let ours: Vec<_> = err.lines().filter(|l| l.contains("dwprov")).collect();
        assert!(out.status.success() && ours.is_empty(), "{err}");
    }

    /// A state with an owned rule, route, chain and file, to build scripts from.
    fn sample() -> (Vec<Change>, State, State) {
        let text = "route add 10.0.0.0/8 via 1.2.3.1 dev eth1 proto 201\nrule add priority 1100 fwmark 0x100 lookup 100 protocol 201";
        let b = crate::state::ip::parse_batch(text, "t", &Default::default()).unwrap();
        let mut desired = State {
            rules: b.rules.clone(),
            routes: b.routes.clone(),
            ..State::default()
        };
        desired
            .files
            .insert("/etc/dwprov/ip.batch".into(), format!("{text}\n"));
        desired
            .sysctls
            .insert("net/ipv4/ip_forward".into(), "1".into());
        let changes = crate::diff::diff(&desired, &State::default()).changes;
        assert!(changes.len() >= 4, "{changes:?}");
        (changes, State::default(), desired)
    }

    fn shellcheck(name: &str, text: &str) {
        shellcheck_with(name, text, &[]);
    }

    fn shellcheck_with(name: &str, text: &str, extra: &[&str]) {
        let dir = std::env::temp_dir().join(format!(
            "dwprov-shellcheck-{}-{}",
            std::process::id(),
            crate::gather::marker()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new("shellcheck")
            .args(["-S", "warning", "-s", "sh"])
            .args(extra)
            .arg(&p)
            .output()
            .expect("shellcheck (Debian package shellcheck; scripts/install-deps.sh installs it)");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{name}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The gateway-side files, and the scripts composed of them with their
    /// parameters and payloads, pass `shellcheck -S warning`.
    #[test]
    fn gateway_scripts_pass_shellcheck() {
        for (name, text) in GATEWAY_FILES
            .iter()
            .chain(crate::firewall::GATEWAY_FILES)
            .chain(&crate::kind::gateway_files())
        {
            shellcheck(name, text);
        }
        // The installed library as composed (the kinds' steps and
        // revert_kinds after lib.sh).
        shellcheck("installed-lib.sh", &minify(&converge::installed_lib_sh()));
        let (changes, old, desired) = sample();
        let s = apply_script(
            &changes,
            &old,
            &desired,
            &ConfirmedRun {
                id: "20261124T000000Z-abcdef",
                timeout_secs: 60,
                marker: "M",
                library_installed: false,
                hand_made: &[],
            },
            converge::Caps::default(),
        );
        // Composed scripts source the installed programs: their variables
        // are unknown to shellcheck there (the files are checked above).
        let sourced = ["-e", "SC2154,SC1091,SC2034"];
        shellcheck_with("apply-script.sh", &s.script, &sourced);
        shellcheck_with(
            "revert-script.sh",
            &revert_script("/var/lib/dwprov/snapshots/x"),
            &sourced,
        );
        shellcheck("confirm-script.sh", &confirm_script("x"));
        shellcheck("disarm-script.sh", &disarm_script("x"));
        shellcheck(
            "verify-confirm-script.sh",
            &verify_confirm_script("x", &digest_args(&old, &desired)),
        );
        shellcheck("rollback-script.sh", &rollback_script(Some("x")));
        shellcheck("list-script.sh", &list_script());
        shellcheck("show-script.sh", &show_script(Some("x"), "M"));
        shellcheck(
            "no-confirm-script.sh",
            &converge::script(&changes, converge::Caps::default()).script,
        );
    }

    /// `rollback`'s plan shows every listing the kinds read back.
    #[test]
    fn the_show_script_shows_what_the_kinds_read_back() {
        let s = show_script(None, "M");
        for listing in ["files.list", "sysctls", "rules", "routes", "nexthops"] {
            assert!(
                s.contains(&format!("{listing}\"")) || s.contains(&format!("sec_if {listing}")),
                "{listing}"
            );
        }
        assert!(s.contains("show_files\n") && s.contains("fw_show\n"));
    }

    #[test]
    fn the_snapshot_travels_as_counts_not_as_state() {
        let (changes, _, desired) = sample();
        // The "old" state is big; the script must not carry it.
        let mut old = desired.clone();
        for i in 0..2000u32 {
            let line = format!(
                "route add 10.{}.{}.0/24 via 1.2.3.1 dev eth1 proto 201",
                i / 256,
                i % 256
            );
            let b = crate::state::ip::parse_batch(&line, "t", &Default::default()).unwrap();
            old.routes.extend(b.routes);
        }
        let s = apply_script(
            &changes,
            &old,
            &desired,
            &ConfirmedRun {
                id: "x",
                timeout_secs: 60,
                marker: "M",
                library_installed: false,
                hand_made: &[],
            },
            converge::Caps::default(),
        );
        assert!(
            s.script.contains("EXPECT_ROUTES='2001'"),
            "counts are passed"
        );
        assert!(!s.script.contains("10.7.207.0/24"), "no old route travels");
    }

    #[test]
    fn apply_script_is_valid_shell() {
        let s = apply_script(
            &[],
            &State::default(),
            &State::default(),
            &ConfirmedRun {
                id: "20261124T000000Z-abcdef",
                timeout_secs: 60,
                marker: "M",
                library_installed: false,
                hand_made: &[],
            },
            converge::Caps::default(),
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-n")
            .arg("-c")
            .arg(&s.script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.script
        );
        for script in [
            confirm_script("x"),
            rollback_script(None),
            rollback_script(Some("x")),
            list_script(),
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}");
        }
    }
}
