//! The agent as apply installs it (issue 11, phase 2): its config (built
//! from the inventory by `model::agent_config`), the program that keeps it running (a systemd unit
//! with `Restart=always`, else `gateway/agent-supervise.sh`), both owned
//! files that apply writes, snapshots and reverts like any other; the
//! binary itself, uploaded once per build to a content-addressed path
//! (`AGENT_DIR/bin/SHA/dwprov-agent`, checked by SHA-256 on the gateway,
//! after [`super::install::check_arch`]), which the unit or supervisor
//! names: a revert that puts the old unit back runs the old binary, still
//! on disk. Starting, restarting and stopping follow the file changes
//! ([`post_install`]), so an apply that changes `health` restarts the agent
//! and its revert restarts the old one (or stops it).
use super::config::Config;
use crate::error::{Error, Result};
use crate::ownership::{
    unit_path, AGENT_CONFIG, AGENT_DIR, AGENT_STATE_DIR, AGENT_SUPERVISOR, AGENT_UNIT, FILE_MARK,
    LATE_UNIT, TEMP_SUFFIX, UNIT_DIR,
};
use crate::transport::Transport;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The supervisor loop (gateways without systemd).
pub const SUPERVISE_SH: &str = include_str!("../../gateway/agent-supervise.sh");

/// The agent binary apply uploads: bytes and SHA-256 (hex).
pub struct Binary {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Binary {
    /// Where it goes on the gateway.
    pub fn path(&self) -> String {
        format!("{AGENT_DIR}/bin/{}/dwprov-agent", &self.sha256[..16])
    }
}

/// `dwprov-agent` built beside this `dwprov` (or `DWPROV_AGENT`): found
/// next to the running executable, or one directory up (test binaries run
/// from `target/*/deps`). Debug info is stripped with `strip` when the
/// controller has it (a debug build is ~100 MB, stripped ~2 MB). Read once
/// per run.
pub fn binary() -> Result<&'static Binary> {
    static BIN: OnceLock<std::result::Result<Binary, String>> = OnceLock::new();
    BIN.get_or_init(load_binary)
        .as_ref()
        .map_err(|m| Error::Invalid {
            message: m.clone(),
            hint: Some("build it with `cargo build --bins` (it is the dwprov-agent target of this crate), or name it in DWPROV_AGENT".into()),
        })
}

fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DWPROV_AGENT") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let found = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("dwprov-agent"))
        .find(|p| p.is_file());
    found
}

fn load_binary() -> std::result::Result<Binary, String> {
    use sha2::{Digest, Sha256};
    let path = locate().ok_or(
        "`health` or a dynamic line needs the dwprov-agent binary, and none is next to dwprov",
    )?;
    let tmp = std::env::temp_dir().join(format!("dwprov-agent-{}", std::process::id()));
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&tmp)
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let read = if stripped { &tmp } else { &path };
    let bytes = std::fs::read(read).map_err(|e| format!("read {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let bytes = bytes?;
    let sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Binary { bytes, sha256 })
}

/// `'text'`, safe for sh (a `'` becomes `'\''`); the agent sits below
/// `converge`, whose helper this is too.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The owned files of the agent of `host` (path, text): its config `cfg`,
/// and its unit (systemd) or supervisor.
pub fn files(host: &str, cfg: &Config, systemd: bool) -> Result<Vec<(String, String)>> {
    let text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Invalid {
        message: format!("agent config: {e}"),
        hint: None,
    })? + "\n";
    // The agent reads at most MAX_BYTES: say so here, not on the gateway.
    if text.len() as u64 > crate::agent::config::MAX_BYTES {
        let templates: usize = cfg
            .follow
            .as_ref()
            .map_or(0, |f| f.templates.values().map(String::len).sum());
        return Err(Error::Invalid {
            message: format!(
                "host {host}: the agent's config ({AGENT_CONFIG}) would be {:.1} MiB, over the {} MiB the agent reads: it carries the gateway's whole intent to follow its dynamic lines (prefix lists inline; template overrides {templates} bytes)",
                text.len() as f64 / f64::from(1u32 << 20),
                crate::agent::config::MAX_BYTES >> 20
            ),
            hint: Some("on a gateway with a dynamic line, keep the inline prefix lists smaller (the agent's config carries them)".into()),
        });
    }
    // What the agent will refuse must fail here, at the controller.
    Config::parse(&text, AGENT_CONFIG).map_err(|e| Error::Invalid {
        message: format!("host {host}: the rendered agent config is refused: {e}"),
        hint: None,
    })?;
    let bin = binary()?.path();
    let q = sh_quote;
    let keeper = if systemd {
        (
            unit_path(AGENT_UNIT),
            format!(
                "{FILE_MARK}. Edits are overwritten.\n\
                 [Unit]\n\
                 Description=dwprov line-health agent (probes the lines, fails them over)\n\
                 After=network-online.target {LATE_UNIT}\n\
                 Wants=network-online.target\n\n\
                 [Service]\n\
                 ExecStart={bin} --config {AGENT_CONFIG} --state-dir {AGENT_STATE_DIR}\n\
                 Restart=always\n\
                 RestartSec=1\n\n\
                 [Install]\n\
                 WantedBy=multi-user.target\n"
            ),
        )
    } else {
        (
            AGENT_SUPERVISOR.to_string(),
            format!(
                "#!/bin/sh\n{FILE_MARK}. Edits are overwritten.\nBIN={}\nCONFIG={}\nSTATE={}\n{SUPERVISE_SH}",
                q(&bin),
                q(AGENT_CONFIG),
                q(AGENT_STATE_DIR)
            ),
        )
    };
    Ok(vec![(AGENT_CONFIG.to_string(), text), keeper])
}

/// The shell lines after the files of `changes` are written: (re)start the
/// agent when its config or keeper was written, stop it when they went.
/// Also run by a revert on the inverse changes, so the old agent comes
/// back, or none.
pub fn post_install(written: &[&str], removed: &[&str]) -> Vec<String> {
    let unit = unit_path(AGENT_UNIT);
    let ours = [AGENT_CONFIG, AGENT_SUPERVISOR, unit.as_str()];
    let w = |p: &str| written.contains(&p);
    let r = |p: &str| removed.contains(&p);
    if !ours.iter().any(|p| w(p) || r(p)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let stop_supervised = format!(
        "for f in {AGENT_STATE_DIR}/supervisor.pid {AGENT_STATE_DIR}/agent.pid; do p=$(cat \"$f\" 2>/dev/null) && kill \"$p\" 2>/dev/null; rm -f \"$f\"; done; true"
    );
    if r(&unit) {
        out.push(format!(
            "systemctl stop {AGENT_UNIT} 2>/dev/null; rm -f {UNIT_DIR}/multi-user.target.wants/{AGENT_UNIT}; systemctl daemon-reload || true"
        ));
    }
    if r(AGENT_SUPERVISOR) || (r(AGENT_CONFIG) && !w(AGENT_SUPERVISOR)) {
        out.push(stop_supervised.clone());
    }
    if r(AGENT_CONFIG) {
        return out;
    }
    if w(&unit) || (w(AGENT_CONFIG) && !w(AGENT_SUPERVISOR) && !r(&unit)) {
        // systemd (the unit exists): reload and restart it.
        out.push(format!(
            "if [ -f {unit} ]; then systemctl daemon-reload && systemctl --quiet enable {AGENT_UNIT} && systemctl restart {AGENT_UNIT} || fail 'start {AGENT_UNIT}'; fi"
        ));
    }
    if w(AGENT_SUPERVISOR) || (w(AGENT_CONFIG) && !w(&unit)) {
        out.push(format!(
            "if [ -f {AGENT_SUPERVISOR} ]; then sh {AGENT_SUPERVISOR} restart || fail 'start the agent supervisor'; fi"
        ));
    }
    out
}

/// Put this build's agent binary on the gateway of `t` unless it is there:
/// the CPU checked first (`uname -m`), then the bytes sent (base64 in a
/// heredoc, ~2.7 MB for a stripped build) and checked by SHA-256 before they are moved
/// into place. Nothing runs it until the unit or supervisor naming it is
/// written by the apply. Older binaries beyond the newest three are removed.
pub fn ensure_binary(t: &mut dyn Transport, desired: &crate::state::State) -> Result<()> {
    if !desired.files.contains_key(AGENT_CONFIG) {
        return Ok(());
    }
    let bin = binary()?;
    let path = bin.path();
    let q = sh_quote;
    let probe = format!(
        "uname -m; if [ -x {p} ] && command -v sha256sum >/dev/null 2>&1; then sha256sum < {p}; else echo missing; fi; command -v base64 >/dev/null 2>&1 && echo base64; true\n",
        p = q(&path)
    );
    let out = t.run_script(&probe)?;
    let text = out.stdout_str();
    let mut lines = text.lines();
    let arch = lines.next().unwrap_or("");
    super::install::check_arch(arch, std::env::consts::ARCH).map_err(|m| Error::Invalid {
        message: format!("{}: {m}", t.host()),
        hint: None,
    })?;
    let have = lines.next().unwrap_or("");
    if have.split_whitespace().next() == Some(bin.sha256.as_str()) {
        return Ok(());
    }
    let rest: Vec<&str> = lines.collect();
    if !rest.contains(&"base64") {
        return Err(Error::Invalid {
            message: format!(
                "{}: `base64` (coreutils) is missing: the agent cannot be sent",
                t.host()
            ),
            hint: None,
        });
    }
    let payload = &bin.bytes;
    let d = crate::nonce::marker().replace('-', "_").to_uppercase();
    let dir = path.rsplit_once('/').map(|x| x.0).unwrap_or(AGENT_DIR);
    let tmp = format!("{path}{TEMP_SUFFIX}");
    let decode = "base64 -d";
    let mut s = String::new();
    s.push_str("set -e\nfail() { echo \"dwprov: $1\" >&2; exit 1; }\n");
    s.push_str(&format!(
        "mkdir -p {} || fail 'create the agent directory'\n",
        q(dir)
    ));
    s.push_str(&format!(
        "{decode} > {} <<'{d}' || fail 'write the agent'\n",
        q(&tmp)
    ));
    s.push_str(&base64(payload));
    s.push_str(&format!("{d}\n"));
    s.push_str(&format!(
        "h=$(sha256sum < {t}); [ \"${{h%% *}}\" = {h} ] || {{ rm -f {t}; fail 'the agent arrived damaged (SHA-256 mismatch)'; }}\n\
         chmod 755 {t} && mv -f {t} {p}\n\
         cd {root} && ls -1t | tail -n +4 | while read -r old; do [ \"$old\" = {cur} ] || rm -rf \"./$old\"; done; true\n",
        t = q(&tmp),
        h = q(&bin.sha256),
        p = q(&path),
        root = q(&format!("{AGENT_DIR}/bin")),
        cur = q(&bin.sha256[..16]),
    ));
    let out = t.run_script(&s)?;
    if out.status != 0 {
        return Err(Error::Remote {
            host: t.host().to_string(),
            what: "upload the agent".into(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Standard base64, 76 columns (what `base64 -d` reads).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for (n, c) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push('\n');
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn base64_matches_coreutils() {
        assert_eq!(base64(b""), "\n");
        assert_eq!(base64(b"f"), "Zg==\n");
        assert_eq!(base64(b"fo"), "Zm8=\n");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy\n");
        let long = base64(&[0u8; 120]);
        assert!(long.lines().all(|l| l.len() <= 76));
    }

    fn cfg() -> Config {
        Config::parse(
            r#"{"format_version": 1, "lines": [
              {"name": "ctc", "interface": "eth1", "address": "198.51.100.2", "gateway": "198.51.100.1",
               "mark": 256, "mark_mask": 65280, "table": 100, "nexthop": 20001,
               "health": {"targets": ["100.64.1.10"]}, "fallback": ["cnc"]},
              {"name": "cnc", "interface": "eth2", "address": "203.0.113.2", "gateway": "203.0.113.1",
               "mark": 512, "mark_mask": 65280, "table": 200, "nexthop": 20002}]}"#,
            "t",
        )
        .unwrap()
    }

    /// The keeper names the content-addressed binary and restarts it: a
    /// unit with Restart= under systemd, the supervisor otherwise; the
    /// config written is one the agent reads back unchanged.
    #[test]
    fn files_for_systemd_and_without() {
        if binary().is_err() {
            eprintln!("skipped: no dwprov-agent built beside the test binary");
            return;
        }
        let bin = binary().unwrap().path();
        let f = files("gw1", &cfg(), true).unwrap();
        assert_eq!(f[0].0, AGENT_CONFIG);
        assert_eq!(Config::parse(&f[0].1, "back").unwrap(), cfg());
        assert_eq!(f[1].0, unit_path(AGENT_UNIT));
        assert!(f[1].1.contains("Restart=always") && f[1].1.contains("RestartSec=1"));
        assert!(f[1]
            .1
            .contains(&format!("ExecStart={bin} --config {AGENT_CONFIG}")));
        let f = files("gw1", &cfg(), false).unwrap();
        assert_eq!(f[1].0, AGENT_SUPERVISOR);
        assert!(f[1].1.contains(&format!("BIN='{bin}'")), "{}", f[1].1);
        assert!(bin.starts_with(&format!("{AGENT_DIR}/bin/")));
    }

    /// The rendered unit passes `systemd-analyze verify` (the lab has no
    /// systemd to run it): every key known, values parsed, the command
    /// executable. The binary's content-addressed path exists only on a
    /// gateway, so a real executable stands in for it; anything verify
    /// says on stderr fails the test (it exits 0 on an unparsable value).
    #[test]
    fn the_unit_passes_systemd_analyze_verify() {
        if binary().is_err() {
            eprintln!("skipped: no dwprov-agent built beside the test binary");
            return;
        }
        let probe = Command::new("systemd-analyze").arg("--version").output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: no systemd-analyze on this machine");
            return;
        }
        let (path, unit) = files("gw1", &cfg(), true).unwrap().remove(1);
        let name = path.rsplit('/').next().unwrap();
        assert!(name.ends_with(".service"), "{path}");
        let bin = binary().unwrap().path();
        let stand_in = std::env::current_exe().unwrap();
        let unit = unit.replace(&bin, stand_in.to_str().unwrap());
        let dir = std::env::temp_dir().join(format!("dwprov-unit-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, &unit).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&file)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "systemd-analyze verify: {}\n{err}\n{unit}",
            out.status
        );
    }

    /// A follow config over what the agent reads is refused at render,
    /// naming the host and the cap; just under it is not refused for size.
    #[test]
    fn an_oversized_follow_config_is_refused_at_render() {
        let mut c = cfg();
        let big = |n: usize| crate::agent::config::Follow {
            intent: serde_json::Value::String("x".repeat(n)),
            facts: vec![],
            templates: Default::default(),
        };
        c.follow = Some(big(crate::agent::config::MAX_BYTES as usize));
        let e = files("gw1", &c, true).unwrap_err().to_string();
        assert!(
            e.contains("host gw1") && e.contains("over the 16 MiB"),
            "{e}"
        );
        c.follow = Some(big(1000));
        if let Err(e) = files("gw1", &c, true) {
            assert!(!e.to_string().contains("MiB"), "{e}");
        }
    }

    #[test]
    fn start_restart_stop_follow_the_files() {
        let sup = AGENT_SUPERVISOR;
        let started = post_install(&[AGENT_CONFIG, sup], &[]);
        assert!(started.iter().any(|l| l.contains("restart")), "{started:?}");
        let stopped = post_install(&[], &[AGENT_CONFIG, sup]);
        assert!(stopped.iter().any(|l| l.contains("kill")), "{stopped:?}");
        assert!(!stopped.iter().any(|l| l.contains("restart")));
        assert!(post_install(&["/etc/dwprov/ip.batch"], &[]).is_empty());
        // A changed health setting alone (the config) restarts too.
        assert!(post_install(&[AGENT_CONFIG], &[])
            .iter()
            .any(|l| l.contains("restart")));
    }
}
