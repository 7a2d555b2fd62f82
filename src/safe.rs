//! Never strand a gateway: commit-confirmed apply.
//!
//! Before changing anything, the apply script saves a snapshot on the
//! gateway (full `iptables-save`, `ip rule`, `ip route`, copies of the owned
//! files, and a `revert.sh` that restores every object dwprov owns to what
//! it was) and arms a revert that runs **on the gateway**, detached from the
//! SSH session (`setsid`): after `confirm_timeout` seconds it runs
//! `revert.sh` unless disarmed. dwprov disarms only after a *new* SSH
//! connection verified the result, so a change that cuts the management
//! path, or an SSH session killed in the middle of an apply, ends in the old
//! state by itself.
//!
//! The revert does not depend on which part of the apply ran: it deletes
//! every rule and route tagged with dwprov's protocol and re-adds the old
//! ones, restores iptables tables whole from the snapshot (atomically per
//! table), and puts back owned files and sysctls. What the gateway already
//! has (its iptables, its files, the boot batch when it matches the live
//! rules and routes) is copied there rather than sent: the apply of one more
//! prefix on a 4,000-prefix gateway sends a few kB, not the list.
use crate::converge::{self, heredoc, sh_quote, ApplyScript};
use crate::diff::{is_owned_route, is_owned_rule, Change};
use crate::state::State;
use std::fmt::Write as _;

/// Exit status of an apply script that stopped before changing anything.
pub const NOTHING_CHANGED: i32 = 4;
/// Where snapshots live on the gateway.
pub const SNAPSHOT_DIR: &str = "/var/lib/dwprov/snapshots";
/// Snapshots kept per gateway (older ones are pruned on confirm).
pub const KEEP_SNAPSHOTS: usize = 10;
/// Tables dwprov may write, with their built-in chains: a table absent from
/// the snapshot is restored as these chains, empty.
const TABLES: &[(&str, &[&str])] = &[
    ("filter", &["INPUT", "FORWARD", "OUTPUT"]),
    ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
    (
        "mangle",
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    ),
    ("raw", &["PREROUTING", "OUTPUT"]),
];

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

/// Where the snapshot keeps its copy of the `i`-th owned file of `old`.
fn file_copy(i: usize) -> String {
    format!("$S/files/{i}")
}

/// Is the boot batch in `old` exactly the owned rules and routes that are
/// live? Then the snapshot's copy of it can restore them, and they need not
/// travel in `revert.sh` (a 4,000-prefix line is ~300 kB each apply).
fn boot_batch_matches(old: &State) -> bool {
    use std::collections::BTreeSet;
    let Some(text) = old.files.get(crate::boot::IP_BATCH) else {
        return false;
    };
    let Ok(batch) = crate::state::ip::parse_batch(text, "gathered boot batch", &old.rt_tables)
    else {
        return false;
    };
    let live_rules: BTreeSet<_> = old.rules.iter().filter(|r| is_owned_rule(r)).collect();
    let live_routes: BTreeSet<_> = old.routes.iter().filter(|r| is_owned_route(r)).collect();
    batch.rules.len() == live_rules.len()
        && batch.routes.len() == live_routes.len()
        && batch.rules.iter().collect::<BTreeSet<_>>() == live_rules
        && batch.routes.iter().collect::<BTreeSet<_>>() == live_routes
}

/// `revert.sh`: restores every owned object to its state in `old`, from
/// what the snapshot saved on the gateway (iptables-save, copies of the
/// owned files) plus what only the controller knows (old owned rules and
/// routes when the boot batch does not hold them, old sysctl values).
/// `desired` names the files and sysctls the apply may have changed.
pub fn revert_script(old: &State, desired: &State, dir: &str) -> String {
    let d = converge::delimiter();
    let proto = crate::ROUTE_PROTO;
    let mut s = String::from(
        "#!/bin/sh\n# dwprov revert: puts back what dwprov owned before this snapshot.\n",
    );
    s.push_str(&converge::prelude());
    // A revert goes on past a failing step: as much of the old state as can be had.
    s.push_str("rc=0; fail() { echo \"dwprov revert: $1\" >&2; rc=3; }\n");
    let _ = writeln!(s, "S={}", sh_quote(dir));
    let _ = writeln!(s, "echo reverting > \"$S/state\"");
    // Rules and routes: whatever is there now, back to the old owned set.
    let _ = writeln!(s, "ip -4 rule flush protocol {proto}");
    let _ = writeln!(s, "ip -4 route flush table all proto {proto}");
    let boot_copy = old
        .files
        .keys()
        .position(|p| p == crate::boot::IP_BATCH)
        .filter(|_| boot_batch_matches(old));
    if let Some(i) = boot_copy {
        let _ = writeln!(
            s,
            "ip -4 -force -batch \"{}\" || fail 'restore rules and routes'",
            file_copy(i)
        );
    } else {
        let mut batch = String::new();
        for r in old.routes.iter().filter(|r| is_owned_route(r)) {
            let _ = writeln!(batch, "route replace {}", r.to_batch());
        }
        for r in old.rules.iter().filter(|r| is_owned_rule(r)) {
            let _ = writeln!(batch, "rule add {}", r.to_batch());
        }
        if !batch.is_empty() {
            s.push_str(&heredoc(
                "ip -4 -force -batch -",
                "restore rules and routes",
                &d,
                &batch,
            ));
        }
    }
    // iptables: whole tables from the snapshot, each table atomically.
    s.push_str("iptables-restore < \"$S/iptables.restore\" || fail 'restore iptables'\n");
    // Files dwprov manages, back to their old content (copied at snapshot
    // time) or removed when they did not exist.
    let paths: std::collections::BTreeSet<&String> =
        old.files.keys().chain(desired.files.keys()).collect();
    let mut file_changes = Vec::new();
    for p in paths {
        let q = sh_quote(p);
        match old.files.keys().position(|k| k == p) {
            Some(i) => {
                let tmp = sh_quote(&converge::temp_path(p));
                let _ = writeln!(
                    s,
                    "cp \"{}\" {tmp} && mv -f {tmp} {q} || fail {}",
                    file_copy(i),
                    sh_quote(&format!("restore {p}"))
                );
            }
            None => {
                let _ = writeln!(s, "rm -f {q} || fail {}", sh_quote(&format!("remove {p}")));
            }
        }
        let before = old.files.get(p);
        if before != desired.files.get(p) {
            file_changes.push(Change::File {
                path: p.clone(),
                from: desired.files.get(p).cloned(),
                to: before.cloned(),
            });
        }
    }
    for k in desired.sysctls.keys() {
        if let Some(v) = old.sysctls.get(k) {
            s.push_str(&converge::sysctl_command(k, v));
        }
    }
    // Undo what installing boot files did (enable links, the flush loop).
    s.push_str(&crate::boot::post_install(&file_changes).script);
    s.push_str("echo reverted > \"$S/state\"\nexit $rc\n");
    s
}

/// Commands that take the snapshot, stage the new files and arm the revert,
/// before any change. The background `iptables-restore --test` of `body`
/// starts first and is waited for before arming, so it overlaps the
/// snapshot and the staging, and a payload it rejects changes nothing.
fn snapshot_and_arm(
    old: &State,
    desired: &State,
    id: &str,
    timeout_secs: u64,
    body: &converge::Body,
) -> String {
    let d = converge::delimiter();
    let dir = format!("{SNAPSHOT_DIR}/{id}");
    // Until the revert is armed nothing has changed: failures say so, with
    // their own exit status.
    let mut s = format!(
        "nochange() {{ echo \"dwprov: $1; nothing was changed\" >&2; exit {NOTHING_CHANGED}; }}\n\
         fail() {{ nochange \"$1\"; }}\n"
    );
    // Preflight: every directory we write to must be writable (read-only
    // /etc, full disk) — found here, before anything changed. Builtins only
    // (a fork per directory adds up over a fleet), one `rm` at the end.
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
    let mut probes = Vec::new();
    for dir in dirs {
        let q = sh_quote(&dir);
        let probe = sh_quote(&format!("{dir}/.dwprov-probe"));
        let _ = writeln!(
            s,
            "{{ [ -d {q} ] || mkdir -p {q}; }} 2>/dev/null && {{ echo probe > {probe}; }} 2>/dev/null || nochange {}",
            sh_quote(&format!("cannot write {dir} (read-only file system or disk full?)"))
        );
        probes.push(probe);
    }
    let _ = writeln!(s, "rm -f {}", probes.join(" "));
    let _ = writeln!(s, "S={}", sh_quote(&dir));
    s.push_str("mkdir -p \"$S/files\" || nochange 'create snapshot directory'\n");
    s.push_str(&body.test_start);
    // Arm, on the gateway, independent of this SSH session: a transient
    // systemd timer where systemd runs, otherwise a detached process. It is
    // launched before the snapshot is taken (it fires only after the
    // timeout, by when revert.sh is written) so that the snapshot overlaps
    // its start; a stop before the change disarms it again.
    let (service, timer) = revert_units(id, timeout_secs);
    let unit = unit_name(id);
    let _ = writeln!(
        s,
        "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then"
    );
    s.push_str(&heredoc(
        &format!("  cat > /run/systemd/system/{unit}.service"),
        "write revert unit",
        &d,
        &service,
    ));
    s.push_str(&heredoc(
        &format!("  cat > /run/systemd/system/{unit}.timer"),
        "write revert timer",
        &d,
        &timer,
    ));
    let _ = writeln!(
        s,
        "  systemctl daemon-reload && systemctl start {unit}.timer || nochange 'arm the revert timer'
  echo {unit} > \"$S/timer.unit\"
else"
    );
    // The detached process records its own pid: it leads its own process
    // group, so disarming kills the group (the shell and its sleep) at once.
    let _ = writeln!(
        s,
        "  setsid sh -c 'echo $$ > \"$0/timer.pid\"; sleep {timeout_secs}; rm -f \"$0/timer.pid\"; sh \"$0/revert.sh\" > \"$0/revert.log\" 2>&1' \"$S\" </dev/null >/dev/null 2>&1 &\n\
         fi"
    );
    // Stopping now must stop the timer too. `timer_up` waits (at most 5 s,
    // polling at 10 ms) until the detached timer has recorded its pid.
    let _ = writeln!(
        s,
        "timer_up() {{ [ -f \"$S/timer.unit\" ] && return 0\n\
         \x20 i=0; while [ ! -s \"$S/timer.pid\" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n\
         \x20 [ -s \"$S/timer.pid\" ]; }}\n\
         nochange() {{ echo \"dwprov: $1; nothing was changed\" >&2\n\
         \x20 timer_up\n\
         \x20 {}\n\
         \x20 exit {NOTHING_CHANGED}; }}",
        disarm_commands()
    );
    s.push_str("iptables-save > \"$S/iptables.save\" || nochange 'snapshot iptables'\n");
    s.push_str("ip -4 -j -d -N rule show > \"$S/rules.json\" || nochange 'snapshot rules'\n");
    s.push_str(
        "ip -4 -j -d -N route show table all > \"$S/routes.json\" || nochange 'snapshot routes'\n",
    );
    // A table absent from the save is restored as its built-in chains, empty.
    s.push_str("t=$(grep '^\\*' \"$S/iptables.save\")\n{ cat \"$S/iptables.save\"\n");
    for (t, chains) in TABLES {
        let body: String = chains
            .iter()
            .map(|c| format!(":{c} ACCEPT [0:0]\\n"))
            .collect();
        let _ = writeln!(
            s,
            "  case \"$t\" in *'*{t}'*) ;; *) printf '*{t}\\n{body}COMMIT\\n' ;; esac"
        );
    }
    s.push_str("} > \"$S/iptables.restore\" || nochange 'snapshot iptables'\n");
    // The owned files as they are, for revert.sh (nothing of them travels).
    for (i, p) in old.files.keys().enumerate() {
        let _ = writeln!(
            s,
            "cp {} \"$S/files/{i}\" || nochange {}",
            sh_quote(p),
            sh_quote(&format!("snapshot {p}"))
        );
    }
    s.push_str(&heredoc(
        "cat > \"$S/revert.sh\"",
        "write revert script",
        &d,
        &revert_script(old, desired, &dir),
    ));
    // The new files go to temp files beside them (no change yet) while the
    // iptables test may still run.
    s.push_str(&body.stage);
    s.push_str(&body.wait_for_test(""));
    // The timer is up by now (it was launched before the snapshot).
    s.push_str("timer_up || nochange 'arm the revert timer'\necho armed > \"$S/state\"\n");
    // From here on a failure has changed something: the prelude's `fail`.
    let _ = writeln!(
        s,
        "fail() {{ echo \"dwprov: $1\" >&2; exit {}; }}",
        converge::STEP_FAILED
    );
    s
}

/// The transient unit name of a snapshot's revert timer.
pub fn unit_name(id: &str) -> String {
    format!("dwprov-revert-{id}")
}

/// The revert service and timer (written under /run/systemd/system, so
/// they vanish on reboot like the state they guard).
pub fn revert_units(id: &str, timeout_secs: u64) -> (String, String) {
    let dir = format!("{SNAPSHOT_DIR}/{id}");
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

/// The apply script with snapshot and armed revert. The changes run in a
/// subshell so a failing step can revert at once instead of waiting.
pub fn apply_script(
    changes: &[Change],
    old: &State,
    desired: &State,
    id: &str,
    timeout_secs: u64,
    caps: converge::Caps,
) -> ApplyScript {
    let mut out = ApplyScript::default();
    let d = converge::delimiter();
    let body = converge::body(changes, &d, &mut out, caps);
    let mut s = converge::prelude();
    s.push_str(&snapshot_and_arm(old, desired, id, timeout_secs, &body));
    s.push_str("( ");
    s.push_str(&converge::prelude());
    s.push_str(&body.commit);
    s.push_str(")\nrc=$?\n");
    let _ = writeln!(
        s,
        "if [ $rc -ne 0 ]; then\n  {}\n  sh \"$S/revert.sh\" > \"$S/revert.log\" 2>&1 && echo 'dwprov: reverted to snapshot {id}' >&2\n  exit $rc\nfi",
        disarm_commands()
    );
    s.push_str("echo applied > \"$S/state\"\nexit 0\n");
    out.script = s;
    out
}

/// Stop whichever revert timer is armed for snapshot `$S`.
fn disarm_commands() -> &'static str {
    "if [ -f \"$S/timer.unit\" ]; then u=$(cat \"$S/timer.unit\"); systemctl stop \"$u.timer\" 2>/dev/null; \
     rm -f \"/run/systemd/system/$u.timer\" \"/run/systemd/system/$u.service\"; systemctl daemon-reload 2>/dev/null; \
     rm -f \"$S/timer.unit\"; fi\n\
     p=$(cat \"$S/timer.pid\" 2>/dev/null); [ -n \"$p\" ] && kill -TERM -\"$p\" 2>/dev/null; rm -f \"$S/timer.pid\""
}

/// Disarm the revert of snapshot `id` (after verification) and prune old snapshots.
pub fn confirm_script(id: &str) -> String {
    let mut s = converge::prelude();
    let _ = writeln!(s, "S={}", sh_quote(&format!("{SNAPSHOT_DIR}/{id}")));
    // The timer must still be pending: if it fired, the change is gone.
    s.push_str(
        "if [ -f \"$S/timer.unit\" ]; then systemctl is-active --quiet \"$(cat \"$S/timer.unit\").timer\"; \
         else p=$(cat \"$S/timer.pid\" 2>/dev/null) && kill -0 \"$p\" 2>/dev/null; fi \\\n  \
         || fail 'the revert timer is gone (it already ran, or is running): the change is NOT confirmed'\n",
    );
    s.push_str(disarm_commands());
    s.push_str("\necho confirmed > \"$S/state\"\n");
    let _ = writeln!(
        s,
        "ls -1d {SNAPSHOT_DIR}/*/ 2>/dev/null | sort -r | tail -n +{} | while read -r old; do rm -rf \"$old\"; done",
        KEEP_SNAPSHOTS + 1
    );
    s
}

/// Revert to snapshot `id` now (or the newest when None).
pub fn rollback_script(id: Option<&str>) -> String {
    let mut s = converge::prelude();
    match id {
        Some(id) => {
            let _ = writeln!(s, "S={}", sh_quote(&format!("{SNAPSHOT_DIR}/{id}")));
        }
        None => {
            let _ = writeln!(
                s,
                "S=$(ls -1d {SNAPSHOT_DIR}/*/ 2>/dev/null | sort | tail -n 1); S=${{S%/}}"
            );
        }
    }
    s.push_str("[ -n \"$S\" ] && [ -f \"$S/revert.sh\" ] || fail 'no such snapshot on this host (dwprov rollback --list shows them)'\n");
    s.push_str(disarm_commands());
    s.push_str("\nsh \"$S/revert.sh\" > \"$S/revert.log\" 2>&1 || { cat \"$S/revert.log\" >&2; fail 'revert failed'; }\n");
    s.push_str("echo \"rolled back: ${S##*/}\"\n");
    s
}

/// List snapshots: `id state` per line, oldest first.
pub fn list_script() -> String {
    let mut s = converge::prelude();
    let _ = writeln!(
        s,
        "for d in $(ls -1d {SNAPSHOT_DIR}/*/ 2>/dev/null | sort); do d=${{d%/}}; echo \"${{d##*/}} $(cat \"$d/state\" 2>/dev/null || echo unknown)\"; done"
    );
    s
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
        let (service, timer) = revert_units(id, 60);
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

    #[test]
    fn apply_script_is_valid_shell() {
        let s = apply_script(
            &[],
            &State::default(),
            &State::default(),
            "20261124T000000Z-abcdef",
            60,
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
