//! Test harness around `scripts/fleet-lab.sh`: N light gateways (each a
//! network namespace with its own sshd, private /etc and /var) behind a
//! switch namespace, and a controller namespace where the dwprov binary under
//! test runs. One private fleet per `Fleet::up`.
//!
//! ```ignore
//! mod common;
//! use common::fleet::Fleet;
//! let f = Fleet::up(4, &["--unreachable"]);
//! let doc = f.dwprov_cmd().args(["plan", "-i", f.inventory().to_str().unwrap()])
//!     .args(["--format", "json"]).expect_exit(1).json();
//! f.assert_untouched("gw001");
//! // dropping `f` tears it down (keeping the logs if the test panicked)
//! ```
//!
//! Teardown as for `Lab` (see `mod.rs`): `Drop`, an `atexit` handler for
//! fleets never dropped, and a sweep by the next `Fleet::up` of fleets whose
//! test process was killed. Names: prefix `dwf-<pidns>-<pid>-<tag>-`,
//! namespaces `<prefix>ctl`, `<prefix>sw`, `<prefix>gw001`..., fleet dir
//! `<temp_dir>/dwf-<pidns>-<pid>-<tag>`. Needs root.
use super::{assert_root, pid_ns, random_u32, Run, COUNTER};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// The fleet lab script in this checkout.
pub const FLEET_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fleet-lab.sh");

const NAME_PREFIX: &str = "dwf-";

pub struct Fleet {
    /// Namespace name prefix, e.g. `dwf-effffffc-4242-01a2b3c-`.
    pub prefix: String,
    /// Fleet directory: keys, known_hosts, inventory.yaml, `gw/<host>/`
    /// (sshd.pid, sshd.log, init.log).
    pub dir: PathBuf,
}

/// Fleets that are up and not yet dropped, for the atexit guard (apart from
/// `Lab`'s list: they are torn down by another script).
static LIVE: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
static GUARD: Once = Once::new();

impl Fleet {
    /// `fleet-lab.sh up --count N EXTRA...` with a unique prefix (EXTRA:
    /// `--unreachable`, `--fail-apply 1,7`, `--bastion 3,4`); panics with
    /// the script's output if that fails.
    pub fn up(count: usize, extra: &[&str]) -> Fleet {
        install_guard();
        assert_root();
        let tag = format!(
            "{:x}{:06x}",
            COUNTER.fetch_add(1, Ordering::SeqCst),
            random_u32() & 0xff_ffff
        );
        let name = format!("{NAME_PREFIX}{:x}-{}-{tag}", pid_ns(), std::process::id());
        let fleet = Fleet {
            prefix: format!("{name}-"),
            dir: std::env::temp_dir().join(&name),
        };
        live().push((fleet.prefix.clone(), fleet.dir.clone()));
        let started = Instant::now();
        let mut args = vec!["up".to_string(), "--count".into(), count.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = fleet_sh(&fleet.prefix, &fleet.dir, &args);
        assert!(
            out.status.success(),
            "fleet-lab.sh up (prefix {}) failed:\n{}",
            fleet.prefix,
            super::seed::text(&out)
        );
        eprintln!(
            "fleet {}: {count} gateway(s) up in {:.1}s",
            fleet.prefix,
            started.elapsed().as_secs_f32()
        );
        fleet
    }

    /// A namespace of the fleet: `ns("ctl")` is `"<prefix>ctl"`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The inventory written by `up` (hosts in number order, gwdown last).
    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    /// An inventory with the hosts in `order` (groups as in `up`'s),
    /// written to `file` in the fleet dir.
    pub fn inventory_ordered(&self, file: &str, order: &[&str]) -> PathBuf {
        let path = self.dir.join(file);
        let out = self.fleet_sh(&[
            "inventory".into(),
            "--order".into(),
            order.join(","),
            "--out".into(),
            path.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "fleet-lab.sh inventory:\n{}",
            super::seed::text(&out)
        );
        path
    }

    /// Writes a file into the fleet dir (e.g. a --limit file) and returns its path.
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// dwprov in the controller namespace, NO_COLOR=1, stdin closed, as a
    /// builder (see `builder.rs`).
    pub fn dwprov_cmd(&self) -> Run {
        Run::dwprov_in(&self.ns("ctl"))
    }

    /// dwprov in the controller namespace, output captured, nothing checked.
    pub fn dwprov(&self, args: &[&str]) -> Output {
        self.dwprov_cmd().args(args).run()
    }

    /// A command that runs `program` in the controller namespace.
    pub fn ctl_command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"]).arg(self.ns("ctl")).arg(program);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The sshd listener of gateway `host` (or of the bastion), whose
    /// mount namespace is that gateway as dwprov sees it.
    pub fn sshd_pid(&self, host: &str) -> u32 {
        let pidfile = self.dir.join("gw").join(host).join("sshd.pid");
        let text =
            fs::read_to_string(&pidfile).unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", pidfile.display()))
    }

    /// `host`'s sshd log (one "Accepted publickey" line per login).
    pub fn sshd_log(&self, host: &str) -> String {
        let log = self.dir.join("gw").join(host).join("sshd.log");
        fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()))
    }

    /// A command that runs `program` on gateway `host` as dwprov sees it
    /// (its netns and sshd's mount and UTS namespaces).
    pub fn gw_command(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.sshd_pid(host).to_string())
            .args(["-m", "-n", "-u", "--", program]);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `sh -c cmd` on gateway `host` (see `gw_command`), as a builder.
    pub fn gw_sh_cmd(&self, host: &str, cmd: &str) -> Run {
        Run::from(self.gw_command(host, "sh"))
            .args(["-c", cmd])
            .context(format!("on {host}"))
    }

    /// `sh -c cmd` on gateway `host`; asserts success, returns stdout.
    #[track_caller]
    pub fn gw_sh(&self, host: &str, cmd: &str) -> String {
        self.gw_sh_cmd(host, cmd).expect_success().stdout()
    }

    /// What dwprov owns on `host`: DWPROV iptables lines, rules and routes of
    /// protocol 201, its files. Empty on an untouched gateway.
    #[track_caller]
    pub fn owned(&self, host: &str) -> String {
        self.gw_sh(
            host,
            "iptables-save | grep DWPROV; ip -4 -d -N rule show | grep 'proto 201'; \
             ip -4 -N route show table all proto 201; \
             ls /etc/iproute2/rt_tables.d/dwprov.conf /etc/sysctl.d/90-dwprov.conf 2>/dev/null; true",
        )
    }

    #[track_caller]
    pub fn assert_untouched(&self, host: &str) {
        let owned = self.owned(host);
        assert!(
            owned.trim().is_empty(),
            "{host} should be untouched, but has dwprov state:\n{owned}"
        );
    }

    #[track_caller]
    pub fn assert_applied(&self, host: &str) {
        let owned = self.owned(host);
        assert!(
            owned.contains(":DWPROV-") && owned.contains("proto 201"),
            "{host} should carry dwprov's state:\n{owned}"
        );
    }

    /// Kill the processes serving `host`'s open SSH connections (every
    /// descendant of its sshd listener, found by pid), as if the sessions
    /// died while idle. Returns how many processes were killed.
    pub fn kill_ssh_sessions(&self, host: &str) -> usize {
        let listener = self.sshd_pid(host);
        let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = fs::read_to_string(e.path().join("stat")).ok()?;
                // pid (comm) state ppid ...: comm may hold spaces.
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                Some((pid, ppid.parse().ok()?))
            })
            .collect();
        let mut doomed = vec![];
        let mut frontier = vec![listener];
        while let Some(p) = frontier.pop() {
            for &(pid, _) in parents.iter().filter(|(_, pp)| *pp == p) {
                doomed.push(pid);
                frontier.push(pid);
            }
        }
        for pid in &doomed {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        doomed.len()
    }

    /// `fleet-lab.sh ARGS` for this fleet (e.g. `&["status"]`), output captured.
    pub fn fleet_sh<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        fleet_sh(&self.prefix, &self.dir, args)
    }

    /// A failed test's gateway logs (sshd, init) and inventories survive the
    /// teardown in `<temp_dir>/dwf-failed-<name>/`, for the post-mortem.
    fn keep_logs(&self) {
        let name = self.prefix.trim_end_matches('-');
        let keep = std::env::temp_dir().join(format!("dwf-failed-{name}"));
        let _ = fs::create_dir_all(&keep);
        for entry in fs::read_dir(self.dir.join("gw"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let host = entry.file_name().to_string_lossy().into_owned();
            for log in ["sshd.log", "init.log"] {
                let _ = fs::copy(entry.path().join(log), keep.join(format!("{host}-{log}")));
            }
        }
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension()
                .is_some_and(|e| e == "yaml" || e == "txt" || e == "json")
            {
                let _ = fs::copy(&p, keep.join(entry.file_name()));
            }
        }
        eprintln!("fleet {}: logs kept in {}", self.prefix, keep.display());
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs();
        }
        let out = fleet_sh(&self.prefix, &self.dir, &["down"]);
        if !out.status.success() {
            // Never panic in Drop (it may run while unwinding): report.
            eprintln!(
                "fleet-lab.sh down (prefix {}) failed:\n{}",
                self.prefix,
                super::seed::text(&out)
            );
        }
        live().retain(|(p, _)| p != &self.prefix);
    }
}

/// Runs `bash scripts/fleet-lab.sh ARGS --prefix P --dir D`, output captured.
pub fn fleet_sh<S: AsRef<std::ffi::OsStr>>(prefix: &str, dir: &Path, args: &[S]) -> Output {
    Command::new("bash")
        .arg(FLEET_SH)
        .args(args)
        .arg("--prefix")
        .arg(prefix)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {FLEET_SH}: {e}"))
}

// ---------------------------------------------------- paused rollouts (test hook)

/// A dwprov run in the background with the test hook
/// DWPROV_TEST_PAUSE_BEFORE_BATCH: it pauses before each batch after the
/// first (writing the batch number to the pause file) until the test
/// removes the file. stdout and stderr go to files in the fleet dir.
pub struct PausedApply {
    child: std::process::Child,
    pause: PathBuf,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl PausedApply {
    pub fn start(f: &Fleet, args: &[&str]) -> PausedApply {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pause = f.dir.join(format!("pause-{n}"));
        let (out, err) = (
            f.dir.join(format!("run-{n}.out")),
            f.dir.join(format!("run-{n}.err")),
        );
        let child = f
            .dwprov_cmd()
            .args(args)
            .env("DWPROV_TEST_PAUSE_BEFORE_BATCH", &pause)
            .into_command()
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run dwprov {args:?}: {e}"));
        PausedApply {
            child,
            pause,
            out,
            err,
            started: Instant::now(),
        }
    }

    /// Both outputs so far, for messages.
    pub fn logs(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Until dwprov waits before batch `batch` (1-based); at most 120 s.
    #[track_caller]
    pub fn wait_for_pause(&mut self, batch: usize) {
        let want = format!("{batch}\n");
        while fs::read_to_string(&self.pause).ok() != Some(want.clone()) {
            if let Some(st) = self.child.try_wait().expect("wait") {
                panic!(
                    "dwprov ended ({st}) before pausing at batch {batch}:\n{}",
                    self.logs()
                );
            }
            assert!(
                self.started.elapsed().as_secs() < 120,
                "no pause before batch {batch}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn resume(&self) {
        fs::remove_file(&self.pause).expect("remove the pause file");
    }

    /// Exit status, stdout, and both outputs for messages; at most 300 s
    /// after the start.
    #[track_caller]
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if self.started.elapsed().as_secs() > 300 {
                let _ = self.child.kill();
                panic!("dwprov did not finish:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (
            status,
            fs::read_to_string(&self.out).unwrap_or_default(),
            self.logs(),
        )
    }
}

// ------------------------------------------------------------ process-wide guard

fn live() -> MutexGuard<'static, Vec<(String, PathBuf)>> {
    // A test that panicked while holding the lock must not disable teardown.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// Fleets never dropped (leaked) go down when the test binary exits.
extern "C" fn teardown_leftovers() {
    let fleets: Vec<_> = live().drain(..).collect();
    for (prefix, dir) in fleets {
        let _ = fleet_sh(&prefix, &dir, &["down"]);
    }
}

fn install_guard() {
    GUARD.call_once(|| {
        sweep_dead_fleets();
        // SAFETY: registering a plain extern "C" fn with libc's atexit.
        assert_eq!(unsafe { atexit(teardown_leftovers) }, 0, "atexit");
    });
}

/// Tears down fleets of test processes (in our pid namespace) that are gone.
fn sweep_dead_fleets() {
    let mut dead = BTreeSet::new();
    let tmp = std::env::temp_dir();
    for dir in [Path::new("/run/netns"), tmp.as_path()] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
                continue;
            };
            let parts: Vec<&str> = rest.splitn(4, '-').collect();
            if parts.len() < 3 || u64::from_str_radix(parts[0], 16).ok() != Some(pid_ns()) {
                continue;
            }
            let Ok(pid) = parts[1].parse::<u32>() else {
                continue;
            };
            if !parts[2].chars().all(|c| c.is_ascii_hexdigit())
                || Path::new(&format!("/proc/{pid}")).exists()
            {
                continue;
            }
            dead.insert(format!(
                "{NAME_PREFIX}{}-{}-{}",
                parts[0], parts[1], parts[2]
            ));
        }
    }
    for name in dead {
        let out = fleet_sh(&format!("{name}-"), &tmp.join(&name), &["down"]);
        eprintln!("swept stale fleet {name}: {}", out.status);
    }
}
