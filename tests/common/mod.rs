//! Test harness around `scripts/lab.sh`: a real dual-WAN gateway in network
//! namespaces, one private lab per `Lab::up()`.
//!
//! ```ignore
//! mod common;
//! let lab = common::Lab::up();
//! let out = lab.dwprov(&["apply", "-i", lab.inventory().to_str().unwrap()]);
//! assert_eq!(lab.curl("cli", "http://100.64.1.10/").unwrap(), "peer=198.51.100.2 local=100.64.1.10\n");
//! // dropping `lab` tears it down, also when the test panicked
//! ```
//!
//! Teardown guarantees, from the common case to the worst:
//! - `Drop` runs `lab.sh down` (also while unwinding from a failed assertion);
//! - labs that are never dropped (leaked, or held in a `static`) are torn down
//!   by an `atexit` handler when the test binary exits;
//! - labs of test processes that were killed outright (SIGKILL, ^C) are swept
//!   by the next `Lab::up()` in any test binary: their prefix names a dead pid.
//!
//! Needs root. Names: prefix `dwt-<pidns>-<pid>-<tag>-` (pidns: inode of our
//! pid namespace, so the sweep never mistakes a live process in another pid
//! namespace for a dead one), namespaces `<prefix><role>`, lab dir
//! `<temp_dir>/dwt-<pidns>-<pid>-<tag>`.
// Every test binary compiles this module whole (`mod common;`) and uses only
// part of it: what one binary leaves unused is not dead code.
#![allow(dead_code)]

pub mod builder;
pub mod fleet;
pub mod outage;
pub mod seed;

pub use builder::Run;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

/// The lab script in this checkout (it finds echo_server.py next to itself).
pub const LAB_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh");
/// The dwprov binary under test.
pub const DWPROV: &str = env!("CARGO_BIN_EXE_dwprov");
/// Every role the lab creates a namespace for.
pub const ROLES: [&str; 9] = [
    "gw", "ctl", "ctc", "cnc", "uctc", "ucnc", "lan", "srv", "cli",
];

/// The roles a third ISP adds (`Lab::up_with_isps(3)`, `lab.sh --isps 3`):
/// router cmcc (gateway eth3 198.18.0.2/24, router 198.18.0.1) and its user
/// ucmcc 100.67.1.10 (echo server on :80).
pub const ROLES_CMCC: [&str; 2] = ["cmcc", "ucmcc"];

fn is_role(role: &str) -> bool {
    ROLES.contains(&role) || ROLES_CMCC.contains(&role)
}

const NAME_PREFIX: &str = "dwt-";

pub struct Lab {
    /// Namespace name prefix, e.g. `dwt-4242-1a2b3c4d-`.
    pub prefix: String,
    /// Lab directory: keys, sshd config and log, inventory.yaml.
    pub dir: PathBuf,
}

/// Labs that are up and not yet dropped, for the atexit guard.
static LIVE: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
static COUNTER: AtomicU32 = AtomicU32::new(0);
static GUARD: Once = Once::new();

impl Lab {
    /// Builds a fresh lab with a unique prefix; panics with the script's
    /// output if that fails.
    pub fn up() -> Lab {
        Lab::up_with_isps(2)
    }

    /// Like `up`, with `isps` ISPs: 2 (the seed's ctc + cnc) or 3 (cmcc too).
    pub fn up_with_isps(isps: u32) -> Lab {
        assert!(
            isps == 2 || isps == 3,
            "the lab has 2 or 3 ISPs, not {isps}"
        );
        Lab::up_args(&["--isps", &isps.to_string()])
    }

    /// Like `up`, with the CNC address a DHCP lease (`lab.sh --dhcp`):
    /// dnsmasq on the cnc router, udhcpc on the gateway's eth2 (first lease
    /// 203.0.113.77, default route via 203.0.113.1 metric 100), the cnc
    /// router's anti-spoofing following the leases; the inventory's cnc
    /// line is `address: dynamic, gateway: dynamic`.
    pub fn up_dhcp() -> Lab {
        Lab::up_args(&["--dhcp"])
    }

    /// A `--dhcp` lab's redial: release the CNC lease and take `address`
    /// (203.0.113.50-99), or `none` (no address); waits until it is so.
    pub fn lease(&self, address: &str) {
        let out = self.lab_sh(&["lease", address]);
        assert!(
            out.status.success(),
            "lab.sh lease {address} failed: {}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up_args(opts: &[&str]) -> Lab {
        install_guard();
        assert_root();
        let tag = format!(
            "{:x}{:06x}",
            COUNTER.fetch_add(1, Ordering::SeqCst),
            random_u32() & 0xff_ffff
        );
        let name = format!("{NAME_PREFIX}{:x}-{}-{tag}", pid_ns(), std::process::id());
        let lab = Lab {
            prefix: format!("{name}-"),
            dir: std::env::temp_dir().join(&name),
        };
        live().push((lab.prefix.clone(), lab.dir.clone()));
        let mut args = opts.to_vec();
        args.push("up");
        let out = lab_sh(&lab.prefix, &lab.dir, &args);
        if !out.status.success() {
            // lab.sh tears a failed `up` down itself; Drop (during this panic)
            // runs `down` once more in case it could not.
            panic!(
                "lab.sh up (prefix {}) failed: {}\n--- stdout\n{}--- stderr\n{}",
                lab.prefix,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lab
    }

    /// The namespace of a role: `ns("gw")` is `"<prefix>gw"`.
    pub fn ns(&self, role: &str) -> String {
        assert!(is_role(role), "unknown lab role {role:?}");
        format!("{}{role}", self.prefix)
    }

    /// A command that runs `program` in `role`'s network namespace; for `gw`
    /// also in sshd's mount and UTS namespaces, i.e. the gateway as dwprov
    /// sees it over SSH (private /etc, /var, /root, /run, /tmp).
    pub fn command(&self, role: &str, program: &str) -> Command {
        let mut cmd;
        if role == "gw" {
            cmd = Command::new("nsenter");
            cmd.arg("-t")
                .arg(self.sshd_pid().to_string())
                .args(["-m", "-n", "-u", "--"]);
        } else {
            cmd = Command::new("ip");
            cmd.args(["netns", "exec"]).arg(self.ns(role));
        }
        cmd.arg(program).stdin(Stdio::null());
        cmd
    }

    /// Runs argv in `role`'s namespace (see `command`).
    pub fn exec(&self, role: &str, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("exec: empty argv");
        self.command(role, program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {role}: {e}"))
    }

    /// `sh -c cmd` in `role`'s namespace (gw: sshd's mount namespace too).
    pub fn sh(&self, role: &str, cmd: &str) -> Output {
        self.exec(role, &["sh", "-c", cmd])
    }

    /// Like `sh`, but asserts success and returns stdout.
    pub fn sh_ok(&self, role: &str, cmd: &str) -> String {
        let out = self.sh(role, cmd);
        assert!(
            out.status.success(),
            "in {role}: `{cmd}` failed: {}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `curl -sS --max-time 3 URL` from `from_role`: Ok(body) or Err(stderr).
    pub fn curl(&self, from_role: &str, url: &str) -> Result<String, String> {
        self.curl_with(from_role, &[], url)
    }

    /// `curl` with extra options, e.g. `&["--interface", "198.51.100.2"]`.
    pub fn curl_with(&self, from_role: &str, opts: &[&str], url: &str) -> Result<String, String> {
        let mut argv = vec!["curl", "-sS", "--max-time", "3"];
        argv.extend_from_slice(opts);
        argv.push(url);
        let out = self.exec(from_role, &argv);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs the dwprov binary under test in the controller namespace, with
    /// NO_COLOR=1.
    pub fn dwprov(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec"])
            .arg(self.ns("ctl"))
            .arg(DWPROV)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run dwprov {args:?}: {e}"))
    }

    /// OpenSSH client from the controller to the gateway with the lab key and
    /// pinned host key: `ssh root@10.9.0.2 CMD`.
    pub fn ssh(&self, cmd: &str) -> Output {
        let key = self.dir.join("id_ed25519");
        let known = self.dir.join("known_hosts");
        self.command("ctl", "ssh")
            .arg("-i")
            .arg(&key)
            .arg(format!("-oUserKnownHostsFile={}", known.display()))
            .args([
                "-oStrictHostKeyChecking=yes",
                "-oBatchMode=yes",
                "-oConnectTimeout=5",
                "-F/dev/null",
                "root@10.9.0.2",
                cmd,
            ])
            .output()
            .expect("cannot run ssh")
    }

    /// The inventory written by `up` (host gw1 at 10.9.0.2).
    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    /// Writes a file into the lab dir (e.g. a test inventory) and returns its path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The gateway's sshd, whose mount namespace is "the gateway".
    pub fn sshd_pid(&self) -> u32 {
        let file = self.dir.join("sshd.pid");
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (is the lab up?)", file.display()));
        let pid: u32 = text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()));
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "gateway sshd (pid {pid}) is not running; see {}",
            self.dir.join("sshd.log").display()
        );
        pid
    }

    /// `lab.sh ARGS` for this lab (e.g. `&["status"]`), output captured.
    pub fn lab_sh(&self, args: &[&str]) -> Output {
        lab_sh(&self.prefix, &self.dir, args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = lab_sh(&self.prefix, &self.dir, &["down"]);
        if !out.status.success() {
            // Never panic in Drop (it may run during a panic): report instead.
            eprintln!(
                "lab.sh down (prefix {}) failed: {}\n{}{}",
                self.prefix,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        live().retain(|(prefix, _)| prefix != &self.prefix);
    }
}

/// Runs `bash scripts/lab.sh --prefix P --dir D ARGS`, output captured.
pub fn lab_sh(prefix: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(LAB_SH)
        .arg("--prefix")
        .arg(prefix)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {LAB_SH}: {e}"))
}

fn live() -> std::sync::MutexGuard<'static, Vec<(String, PathBuf)>> {
    // A test that panicked while holding the lock must not disable teardown.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_root() {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("cannot run id");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the lab needs root (network namespaces, mounts)"
    );
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    u32::from_ne_bytes(buf)
}

// ------------------------------------------------------------ process-wide guard

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// Tears down labs that were never dropped. Runs when the test binary exits
/// (libtest ends with `exit()`, which runs atexit handlers).
extern "C" fn teardown_leftovers() {
    let labs: Vec<_> = live().drain(..).collect();
    for (prefix, dir) in labs {
        let _ = lab_sh(&prefix, &dir, &["down"]);
    }
}

fn install_guard() {
    GUARD.call_once(|| {
        sweep_dead_labs();
        // SAFETY: registering a plain extern "C" fn with libc's atexit.
        let rc = unsafe { atexit(teardown_leftovers) };
        assert_eq!(rc, 0, "atexit registration failed");
    });
}

/// Tears down labs left behind by test processes that no longer exist
/// (killed before Drop or atexit could run). Live processes' labs are left alone.
fn sweep_dead_labs() {
    let mut dead: Vec<String> = Vec::new();
    let mut consider = |name: &str| {
        if let Some(lab) = dead_lab_name(name) {
            if !dead.contains(&lab) {
                dead.push(lab);
            }
        }
    };
    for dir in [
        "/run/netns",
        std::env::temp_dir().to_str().unwrap_or("/tmp"),
    ] {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                consider(&entry.file_name().to_string_lossy());
            }
        }
    }
    for name in dead {
        let out = lab_sh(
            &format!("{name}-"),
            &std::env::temp_dir().join(&name),
            &["down"],
        );
        eprintln!(
            "swept stale lab {name}: {}",
            if out.status.success() {
                "ok"
            } else {
                "down failed"
            }
        );
    }
}

/// `dwt-<pidns>-<pid>-<tag>[-<role>]` of our pid namespace whose pid is gone
/// -> `Some("dwt-<pidns>-<pid>-<tag>")`.
fn dead_lab_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let mut parts = rest.splitn(4, '-');
    let ns = u64::from_str_radix(parts.next()?, 16).ok()?;
    if ns != pid_ns() {
        return None;
    }
    let pid: u32 = parts.next()?.parse().ok()?;
    let tag = parts.next()?;
    if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    match parts.next() {
        None => {}
        Some(role) if is_role(role) => {}
        Some(_) => return None,
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        return None;
    }
    Some(format!("{NAME_PREFIX}{ns:x}-{pid}-{tag}"))
}

/// Inode of our pid namespace (`/proc/self/ns/pid` -> `pid:[4026531836]`).
fn pid_ns() -> u64 {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// A stand-in for gateway tool `tool` (a name on the gateway's PATH, e.g.
/// `ip`, `iptables-save`), bind-mounted over the real binary inside the lab
/// gateway's own mount namespace only (nothing changes for the machine or
/// other labs). `script` is a `/bin/sh` script body; `$REAL` in it is a
/// copy of the real binary (multi-call binaries such as xtables-nft-multi
/// take the applet name as first argument: `exec "$REAL" iptables-save
/// "$@"`), and `$0`'s basename is the name it was called by. Returns the
/// path of the copy, which reads the real state while the fake is mounted.
/// The mount goes with the lab (its mount namespace ends with its sshd).
pub fn fake_tool(lab: &Lab, tool: &str, script: &str) -> PathBuf {
    let real = lab.sh_ok("gw", &format!("readlink -f \"$(command -v {tool})\""));
    let real = real.trim().to_string();
    let base = Path::new(&real)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let copy = lab.dir.join(format!("real-{base}"));
    if !copy.exists() {
        fs::copy(&real, &copy).unwrap_or_else(|e| panic!("copy {real}: {e}"));
    }
    let fake = lab.dir.join(format!("fake-{tool}"));
    fs::write(
        &fake,
        format!("#!/bin/sh\nREAL='{}'\n{script}\n", copy.display()),
    )
    .unwrap();
    lab.sh_ok(
        "gw",
        &format!(
            "chmod 755 '{0}' '{1}' && mount --bind '{0}' '{2}'",
            fake.display(),
            copy.display(),
            real
        ),
    );
    copy
}

/// Undo [`fake_tool`]: the real `tool` is back on the gateway.
pub fn unfake_tool(lab: &Lab, tool: &str) {
    lab.sh_ok(
        "gw",
        &format!("umount \"$(readlink -f \"$(command -v {tool})\")\""),
    );
}

/// A borrowed line (issue 14, the seed's 借线) on a 3-ISP lab: the
/// gateway's eth3 (cmcc's customer cable, 198.18.0.2) moves into a remote
/// host's namespace (`<prefix>rmt`), which reaches the Internet through
/// cmcc and MASQUERADEs the tunnel's traffic out of it; a vxlan tunnel
/// (`vx0`, 10.99.0.2/30 here, 10.99.0.1 there: this kernel has no WireGuard)
/// runs between the gateway's ctc address and the remote's, so the
/// gateway reaches cmcc only through the tunnel over ctc. The encapsulated
/// packets keep the inner packet's mark, which dwprov's fwmark rule would
/// send back into the tunnel (vxlan counts a tx error): the tunnel's own
/// rule `to REMOTE lookup main` ahead of dwprov's band routes the underlay
/// by main (docs/lines.md). Dropped: the
/// remote namespace is deleted (with eth3 and its tunnel end).
pub struct Remote {
    pub ns: String,
}

impl Lab {
    pub fn borrowed_line(&self) -> Remote {
        let ns = format!("{}rmt", self.prefix);
        let ok = |what: &str, out: std::io::Result<Output>| {
            let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                out.status.success(),
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(
            "ip netns add",
            Command::new("ip").args(["netns", "add", &ns]).output(),
        );
        let remote = Remote { ns: ns.clone() };
        ok(
            "move eth3",
            Command::new("ip")
                .args(["-n", &self.ns("gw"), "link", "set", "eth3", "netns", &ns])
                .output(),
        );
        remote.sh_ok(
            "ip link set lo up && ip link set eth3 up && ip addr add 198.18.0.2/24 dev eth3 \
             && ip route add default via 198.18.0.1 \
             && ip link add vx0 type vxlan id 42 local 198.18.0.2 remote 198.51.100.2 dstport 4789 dev eth3 \
             && ip addr add 10.99.0.1/30 dev vx0 && ip link set vx0 up \
             && sysctl -qw net.ipv4.ip_forward=1 \
             && iptables -t nat -A POSTROUTING -s 10.99.0.0/30 -o eth3 -j MASQUERADE",
        );
        self.sh_ok(
            "gw",
            "ip link add vx0 type vxlan id 42 local 198.51.100.2 remote 198.18.0.2 dstport 4789 dev eth1 \
             && ip addr add 10.99.0.2/30 dev vx0 && ip link set vx0 up \
             && ip rule add to 198.18.0.2 lookup main priority 900",
        );
        remote
    }
}

impl Remote {
    pub fn sh_ok(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "in {}: `{cmd}` failed: {}",
            self.ns,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
