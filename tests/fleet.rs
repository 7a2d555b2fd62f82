//! Fleet rollouts, proven on real gateways: `scripts/fleet-lab.sh` builds N
//! light gateways (each a network namespace with its own sshd, private /etc
//! and /var) behind a switch namespace, and a controller namespace where the
//! dwprov binary under test runs. Every test builds its own fleet with a
//! unique prefix and tears it down on Drop, also when it panicked.
//!
//! Needs root (namespaces, mounts); without it every test fails, loudly.
//! Names: prefix `dwf-<pidns>-<pid>-<tag>-`, namespaces `<prefix>ctl`,
//! `<prefix>sw`, `<prefix>gw001`..., fleet dir `<temp_dir>/dwf-<pidns>-<pid>-<tag>`.
//! Fleets of killed test processes are swept by the next `Fleet::up`.

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

const FLEET_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fleet-lab.sh");
const DWPROV: &str = env!("CARGO_BIN_EXE_dwprov");
const NAME_PREFIX: &str = "dwf-";

// ------------------------------------------------------------------ harness

struct Fleet {
    prefix: String,
    dir: PathBuf,
}

static LIVE: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
static COUNTER: AtomicU32 = AtomicU32::new(0);
static GUARD: Once = Once::new();

impl Fleet {
    /// `fleet-lab.sh up --count N EXTRA...` with a unique prefix.
    fn up(count: usize, extra: &[&str]) -> Fleet {
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
        let started = std::time::Instant::now();
        let mut args = vec!["up".to_string(), "--count".into(), count.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = fleet_sh(&fleet.prefix, &fleet.dir, &args);
        assert!(
            out.status.success(),
            "fleet-lab.sh up (prefix {}) failed:\n{}",
            fleet.prefix,
            show(&out)
        );
        eprintln!(
            "fleet {}: {count} gateway(s) up in {:.1}s",
            fleet.prefix,
            started.elapsed().as_secs_f32()
        );
        fleet
    }

    /// The inventory written by `up` (hosts in number order, gwdown last).
    fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    /// An inventory with the hosts in `order` (groups as in `up`'s).
    fn inventory_ordered(&self, file: &str, order: &[&str]) -> PathBuf {
        let path = self.dir.join(file);
        let out = fleet_sh(
            &self.prefix,
            &self.dir,
            &[
                "inventory".into(),
                "--order".into(),
                order.join(","),
                "--out".into(),
                path.display().to_string(),
            ],
        );
        assert!(
            out.status.success(),
            "fleet-lab.sh inventory:\n{}",
            show(&out)
        );
        path
    }

    /// dwprov in the controller namespace, NO_COLOR=1, stdin closed.
    fn dwprov(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec"])
            .arg(format!("{}ctl", self.prefix))
            .arg(DWPROV)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run dwprov {args:?}: {e}"))
    }

    /// `sh -c cmd` on gateway `host` as dwprov sees it (its netns and sshd's
    /// mount namespace); asserts success, returns stdout.
    fn gw_sh(&self, host: &str, cmd: &str) -> String {
        let pidfile = self.dir.join("gw").join(host).join("sshd.pid");
        let pid =
            fs::read_to_string(&pidfile).unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        let out = Command::new("nsenter")
            .args(["-t", pid.trim(), "-m", "-n", "-u", "--", "sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "on {host}: `{cmd}`:\n{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What dwprov owns on `host`: DWPROV iptables lines, rules and routes of
    /// protocol 201. Empty on an untouched gateway.
    fn owned(&self, host: &str) -> String {
        self.gw_sh(
            host,
            "iptables-save | grep DWPROV; ip -4 -d -N rule show | grep 'proto 201'; \
             ip -4 -N route show table all proto 201; \
             ls /etc/iproute2/rt_tables.d/dwprov.conf /etc/sysctl.d/90-dwprov.conf 2>/dev/null; true",
        )
    }

    /// Kill the processes serving `host`'s open SSH connections (every
    /// descendant of its sshd listener, found by pid), as if the sessions
    /// died while idle. Returns how many processes were killed.
    fn kill_ssh_sessions(&self, host: &str) -> usize {
        let pidfile = self.dir.join("gw").join(host).join("sshd.pid");
        let listener: u32 = fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()))
            .trim()
            .parse()
            .expect("sshd pid");
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

    fn assert_untouched(&self, host: &str) {
        let owned = self.owned(host);
        assert!(
            owned.trim().is_empty(),
            "{host} should be untouched, but has dwprov state:\n{owned}"
        );
    }

    fn assert_applied(&self, host: &str) {
        let owned = self.owned(host);
        assert!(
            owned.contains(":DWPROV-") && owned.contains("proto 201"),
            "{host} should carry dwprov's state:\n{owned}"
        );
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

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
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
                show(&out)
            );
        }
        live().retain(|(p, _)| p != &self.prefix);
    }
}

fn fleet_sh<S: AsRef<std::ffi::OsStr>>(prefix: &str, dir: &Path, args: &[S]) -> Output {
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

fn live() -> std::sync::MutexGuard<'static, Vec<(String, PathBuf)>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn assert_root() {
    let out = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "tests/fleet.rs needs root (network namespaces, mounts); run it as root"
    );
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    u32::from_ne_bytes(buf)
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

fn pid_ns() -> u64 {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let t = l.to_string_lossy().into_owned();
            t.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------------ helpers

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(o)))
}

/// gw001..gwNNN.
fn gws(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("gw{i:03}")).collect()
}

/// The per-host entries of a result document, by host name, in order.
fn hosts(doc: &Value) -> Vec<(String, Value)> {
    doc["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no hosts[] in {doc:#}"))
        .iter()
        .map(|h| {
            (
                h["host"].as_str().expect("host name").to_string(),
                h.clone(),
            )
        })
        .collect()
}

fn host<'a>(hs: &'a [(String, Value)], name: &str) -> &'a Value {
    &hs.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from the result"))
        .1
}

fn list_hosts(f: &Fleet, inv: &Path, limit: &str) -> Vec<String> {
    let o = f.dwprov(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        limit,
        "--list-hosts",
    ]);
    assert_eq!(o.status.code(), Some(0), "--limit {limit}:\n{}", show(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

fn assert_ok_applied(h: &Value) {
    assert!(h["error"].is_null(), "{h:#}");
    assert_eq!(h["skipped"], false, "{h:#}");
    assert!(h["applied"].is_object(), "not applied: {h:#}");
}

fn assert_skipped(h: &Value) {
    assert_eq!(h["skipped"], true, "not skipped: {h:#}");
    assert!(h["applied"].is_null(), "{h:#}");
}

/// A dwprov run with the test hook DWPROV_TEST_PAUSE_BEFORE_BATCH: it
/// pauses before each batch after the first (writing the batch number to
/// the pause file) until the test removes the file.
struct PausedApply {
    child: std::process::Child,
    pause: PathBuf,
    out: PathBuf,
    err: PathBuf,
    started: std::time::Instant,
}

impl PausedApply {
    fn start(f: &Fleet, args: &[&str]) -> PausedApply {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pause = f.dir.join(format!("pause-{n}"));
        let (out, err) = (
            f.dir.join(format!("run-{n}.out")),
            f.dir.join(format!("run-{n}.err")),
        );
        let child = Command::new("ip")
            .args(["netns", "exec"])
            .arg(format!("{}ctl", f.prefix))
            .arg(DWPROV)
            .args(args)
            .env("NO_COLOR", "1")
            .env("DWPROV_TEST_PAUSE_BEFORE_BATCH", &pause)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run dwprov {args:?}: {e}"));
        PausedApply {
            child,
            pause,
            out,
            err,
            started: std::time::Instant::now(),
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Until dwprov waits before batch `batch` (1-based).
    fn wait_for_pause(&mut self, batch: usize) {
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
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn resume(&self) {
        fs::remove_file(&self.pause).expect("remove the pause file");
    }

    /// Exit status, stdout, and both outputs for messages.
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if self.started.elapsed().as_secs() > 300 {
                let _ = self.child.kill();
                panic!("dwprov did not finish:\n{}", self.logs());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        (
            status,
            fs::read_to_string(&self.out).unwrap_or_default(),
            self.logs(),
        )
    }
}

// ------------------------------------------------------------------ tests

/// `--list-hosts` with --limit groups, globs, !exclusions and @file; and a
/// plan over the whole fleet: every gateway reachable with its pinned host
/// key, the unreachable one failed, the JSON document complete.
#[test]
fn list_hosts_and_fleet_plan() {
    let f = Fleet::up(6, &["--unreachable"]);
    let inv = f.inventory();
    let all: Vec<String> = gws(1..=6)
        .into_iter()
        .chain(["gwdown".to_string()])
        .collect();

    assert_eq!(list_hosts(&f, &inv, "all"), all);
    assert_eq!(list_hosts(&f, &inv, "canary"), ["gw001"]);
    assert_eq!(list_hosts(&f, &inv, "beijing"), gws(1..=3));
    assert_eq!(list_hosts(&f, &inv, "shanghai"), gws(4..=6));
    assert_eq!(list_hosts(&f, &inv, "gw00?"), gws(1..=6));
    assert_eq!(list_hosts(&f, &inv, "*down"), ["gwdown"]);
    assert_eq!(list_hosts(&f, &inv, "gw*,!unreachable"), gws(1..=6));
    assert_eq!(
        list_hosts(&f, &inv, "beijing,shanghai,!gw002,!gw00[5]"),
        // `[` is not a glob character: `!gw00[5]` excludes nothing.
        ["gw001", "gw003", "gw004", "gw005", "gw006"]
    );
    assert_eq!(
        list_hosts(&f, &inv, "shanghai,canary"),
        ["gw001", "gw004", "gw005", "gw006"]
    );
    let file = f.write("limit.txt", "gw005\n\n  gwdown  \ngw002\n");
    let at = format!("@{}", file.display());
    assert_eq!(list_hosts(&f, &inv, &at), ["gw002", "gw005", "gwdown"]);
    assert_eq!(
        list_hosts(&f, &inv, &format!("{at},!unreachable")),
        ["gw002", "gw005"]
    );
    // Same selection for apply; --list-hosts applies nothing.
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "canary",
        "--list-hosts",
    ]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "gw001\n"),
        "{}",
        show(&o)
    );
    // No match: an error naming the hosts, not an empty run.
    let o = f.dwprov(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "nosuch*",
        "--list-hosts",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no host"),
        "{}",
        show(&o)
    );

    // The whole fleet, planned: six pending, gwdown failed at connect.
    let o = f.dwprov(&["plan", "-i", inv.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "gwdown failed, so exit 1:\n{}",
        show(&o)
    );
    let doc = json(&o);
    assert_eq!(doc["format_version"], 1, "{doc:#}");
    assert_eq!(doc["command"], "plan");
    let hs = hosts(&doc);
    assert_eq!(hs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), all);
    for name in gws(1..=6) {
        let h = host(&hs, &name);
        for key in [
            "host",
            "plan",
            "applied",
            "error",
            "failed_stage",
            "skipped",
        ] {
            assert!(h.get(key).is_some(), "{name}: no `{key}` in {h:#}");
        }
        let plan = &h["plan"];
        for key in ["summary", "diff", "warnings", "facts_digest"] {
            assert!(plan.get(key).is_some(), "{name}: no plan.{key} in {plan:#}");
        }
        assert!(
            h["error"].is_null() && h["applied"].is_null() && h["skipped"] == false,
            "{h:#}"
        );
        assert!(
            !plan["diff"]["changes"].as_array().unwrap().is_empty(),
            "{name}: {plan:#}"
        );
        assert!(
            plan["diff"]["conflicts"].as_array().unwrap().is_empty(),
            "{name}: {plan:#}"
        );
        assert_eq!(plan["facts_digest"].as_str().unwrap().len(), 64, "{plan:#}");
        f.assert_untouched(&name);
    }
    let down = host(&hs, "gwdown");
    assert!(down["plan"].is_null(), "{down:#}");
    assert_eq!(down["failed_stage"], "connect", "{down:#}");
    assert_eq!(down["error"]["class"], "connect", "{down:#}");
    assert!(
        down["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10.10.255.254"),
        "{down:#}"
    );
}

/// `--serial 1,50%` over 10 hosts: batches [1], [5], [4], each finished
/// before the next starts applying; the canary first.
#[test]
fn serial_batches_run_in_order() {
    let f = Fleet::up(10, &[]);
    let inv = f.inventory();
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--serial",
        "1,50%",
        "--json-events",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert_eq!(e["format_version"], 1, "{e}");
    }
    let recap = events.last().expect("events");
    assert_eq!(recap["event"], "recap", "the recap comes last: {recap}");
    assert_eq!(
        events.iter().filter(|e| e["event"] == "recap").count(),
        1,
        "one recap"
    );
    let first = |host: &str, stage: &str| {
        events
            .iter()
            .position(|e| e["event"] == "stage" && e["host"] == host && e["stage"] == stage)
            .unwrap_or_else(|| panic!("{host} never in stage {stage}:\n{}", stdout(&o)))
    };
    let last_done = |host: &str| {
        events
            .iter()
            .rposition(|e| e["event"] == "host_done" && e["host"] == host)
            .unwrap_or_else(|| panic!("no host_done for {host}:\n{}", stdout(&o)))
    };
    let batches = [gws(1..=1), gws(2..=6), gws(7..=10)];
    for h in gws(1..=10) {
        assert_eq!(
            events
                .iter()
                .filter(|e| e["event"] == "stage"
                    && e["host"] == h.as_str()
                    && e["stage"] == "apply")
                .count(),
            1,
            "{h} applied once"
        );
        assert!(first(&h, "connect") < first(&h, "gather"));
        assert!(first(&h, "apply") < first(&h, "verify"));
        assert!(
            first(&h, "verify") < last_done(&h),
            "{h}: host_done after verify"
        );
        let done = &events[last_done(&h)];
        assert_eq!(done["ok"], true, "{done}");
    }
    for w in batches.windows(2) {
        let finished = w[0].iter().map(|h| last_done(h)).max().unwrap();
        let next = w[1].iter().map(|h| first(h, "apply")).min().unwrap();
        assert!(
            finished < next,
            "batch {:?} must be done (event {finished}) before batch {:?} applies (event {next}):\n{}",
            w[0],
            w[1],
            stdout(&o)
        );
    }
    let hs = hosts(&recap["recap"]);
    assert_eq!(hs.len(), 10);
    for (name, h) in &hs {
        assert_ok_applied(h);
        let applied = &h["applied"];
        assert!(applied["changes"].as_u64().unwrap_or(0) > 0, "{applied:#}");
        assert!(
            applied["snapshot"].is_string(),
            "commit-confirmed: {applied:#}"
        );
        assert_eq!(
            applied["changes"].as_u64(),
            Some(h["plan"]["diff"]["changes"].as_array().unwrap().len() as u64)
        );
        f.assert_applied(name);
    }
}

/// The canary (alone in batch 1, `--serial 1`) fails: exit 1, every other
/// host skipped and untouched.
#[test]
fn canary_failure_stops_the_rollout() {
    let f = Fleet::up(8, &["--fail-apply", "5"]);
    let mut order = vec!["gw005".to_string()];
    order.extend(gws(1..=8).into_iter().filter(|h| h != "gw005"));
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    let inv = f.inventory_ordered("canary-first.yaml", &order);
    assert_eq!(list_hosts(&f, &inv, "canary"), ["gw005"]);
    assert_eq!(list_hosts(&f, &inv, "broken"), ["gw005"]);

    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--serial",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("stopping the rollout"), "{}", show(&o));
    let doc = json(&o);
    assert_eq!(doc["command"], "apply");
    let hs = hosts(&doc);
    assert_eq!(
        hs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        order
    );
    let canary = host(&hs, "gw005");
    assert_eq!(canary["skipped"], false, "{canary:#}");
    assert_eq!(canary["failed_stage"], "apply", "{canary:#}");
    assert!(canary["applied"].is_null(), "{canary:#}");
    let msg = canary["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("/etc/sysctl.d"),
        "the cause is named: {canary:#}"
    );
    for name in &order[1..] {
        let h = host(&hs, name);
        assert_skipped(h);
        assert!(h["error"].is_null(), "{h:#}");
        // Planned (the plan is shown before anything is applied), not applied.
        assert!(h["plan"].is_object(), "{h:#}");
    }
    for name in &order {
        f.assert_untouched(name);
    }
}

/// `--max-fail-percent`: 1 failure in a batch of 10 is 10%: with 5 the
/// rollout stops (batch 2 skipped, untouched), and the retry file lists
/// exactly the failed and skipped hosts; rerun with `--limit @FILE` and 20,
/// the rollout goes on past the same failure.
#[test]
fn max_fail_percent_and_retry_file() {
    let f = Fleet::up(20, &["--fail-apply", "1"]);
    let inv = f.inventory();
    let retry1 = f.dir.join("retry1.txt");
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--serial",
        "10",
        "--max-fail-percent",
        "5",
        "--retry-file",
        retry1.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let hs = hosts(&json(&o));
    assert_eq!(host(&hs, "gw001")["failed_stage"], "apply");
    assert_eq!(host(&hs, "gw001")["skipped"], false);
    f.assert_untouched("gw001");
    for name in gws(2..=10) {
        assert_ok_applied(host(&hs, &name));
        f.assert_applied(&name);
    }
    for name in gws(11..=20) {
        assert_skipped(host(&hs, &name));
        f.assert_untouched(&name);
    }
    let listed: Vec<String> = fs::read_to_string(&retry1)
        .expect("retry file written")
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected = vec!["gw001".to_string()];
    expected.extend(gws(11..=20));
    assert_eq!(
        listed, expected,
        "retry file: failed and skipped hosts, exactly"
    );

    // Rerun just those; batch 1 is gw001 + gw011..gw019 (1 of 10 failed,
    // 10% <= 20%): the rollout goes on to gw020.
    let retry2 = f.dir.join("retry2.txt");
    let limit = format!("@{}", retry1.display());
    assert_eq!(list_hosts(&f, &inv, &limit), expected);
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        &limit,
        "--yes",
        "--serial",
        "10",
        "--max-fail-percent",
        "20",
        "--retry-file",
        retry2.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a host failed: exit 1\n{}",
        show(&o)
    );
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("stopping the rollout"),
        "{}",
        show(&o)
    );
    let hs = hosts(&json(&o));
    assert_eq!(
        hs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(host(&hs, "gw001")["failed_stage"], "apply");
    for name in gws(11..=20) {
        assert_ok_applied(host(&hs, &name));
        f.assert_applied(&name);
    }
    f.assert_untouched("gw001");
    assert_eq!(fs::read_to_string(&retry2).unwrap(), "gw001\n");
}

/// An unreachable host counts as failed: first in line with the default
/// --max-fail-percent 0, it stops the rollout.
#[test]
fn unreachable_host_counts_as_failed() {
    let f = Fleet::up(4, &["--unreachable"]);
    let inv = f.inventory_ordered(
        "down-first.yaml",
        &["gwdown", "gw001", "gw002", "gw003", "gw004"],
    );
    let retry = f.dir.join("retry.txt");
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--serial",
        "1",
        "--format",
        "json",
        "--retry-file",
        retry.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let hs = hosts(&json(&o));
    let down = host(&hs, "gwdown");
    assert_eq!(down["failed_stage"], "connect", "{down:#}");
    assert_eq!(down["error"]["class"], "connect", "{down:#}");
    for name in gws(1..=4) {
        assert_skipped(host(&hs, &name));
        f.assert_untouched(&name);
    }
    assert_eq!(
        fs::read_to_string(&retry).unwrap(),
        "gwdown\ngw001\ngw002\ngw003\ngw004\n"
    );
    // With room for it (one of five is 20%), the others go ahead.
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--max-fail-percent",
        "20",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let hs = hosts(&json(&o));
    assert_eq!(host(&hs, "gwdown")["failed_stage"], "connect");
    for name in gws(1..=4) {
        assert_ok_applied(host(&hs, &name));
        f.assert_applied(&name);
    }
}

/// The text recap: one line per host (ok, changed, failed, skipped) and totals.
#[test]
fn recap_lines_and_totals() {
    let f = Fleet::up(5, &["--unreachable", "--fail-apply", "3"]);
    let inv = f.inventory();
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "canary",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // Batch 1: gw001 (no changes left), gw002 (changes), gw003 (fails) ->
    // 33% > 0%: stop. Batch 2: gw004, gw005 skipped; gwdown failed to connect.
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--serial",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = stdout(&o);
    let recap = &out[out
        .find("RECAP")
        .unwrap_or_else(|| panic!("no RECAP:\n{out}"))..];
    let line = |host: &str| -> Vec<String> {
        let lines: Vec<&str> = recap
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(host))
            .collect();
        assert_eq!(lines.len(), 1, "one recap line for {host}:\n{recap}");
        lines[0].split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(line("gw001")[1..], ["ok", "changes=0"]);
    assert_eq!(line("gw002")[1], "changed");
    assert!(line("gw002")[2].starts_with("changes=") && line("gw002")[2] != "changes=0");
    assert_eq!(line("gw003")[1..3], ["failed", "stage=apply"]);
    assert_eq!(line("gw004")[1], "skipped");
    assert_eq!(line("gw005")[1], "skipped");
    assert_eq!(line("gwdown")[1..3], ["failed", "stage=connect"]);
    assert!(
        recap.contains("6 host(s): 1 ok, 1 changed, 2 failed, 2 skipped"),
        "totals:\n{recap}"
    );
    f.assert_applied("gw001");
    f.assert_applied("gw002");
    for h in ["gw003", "gw004", "gw005"] {
        f.assert_untouched(h);
    }
}

/// A saved plan is applied exactly; a host whose live state changed since
/// is refused as stale and left alone, the others are applied.
#[test]
fn saved_plan_refuses_a_drifted_host() {
    let f = Fleet::up(4, &[]);
    let inv = f.inventory();
    let plan = f.dir.join("p.json");
    let o = f.dwprov(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "changes pending:\n{}", show(&o));
    assert!(plan.exists());

    // An admin changes gw003 by hand after the plan was reviewed.
    f.gw_sh(
        "gw003",
        "ip route add 10.98.0.0/16 via 203.0.113.1 proto static",
    );

    let o = f.dwprov(&["apply", plan.to_str().unwrap(), "--yes", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let hs = hosts(&json(&o));
    assert_eq!(hs.len(), 4);
    let stale = host(&hs, "gw003");
    assert!(stale["applied"].is_null(), "{stale:#}");
    let msg = stale["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("stale plan"), "{stale:#}");
    f.assert_untouched("gw003");
    assert!(f
        .gw_sh("gw003", "ip route show")
        .contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"));
    for name in ["gw001", "gw002", "gw004"] {
        assert_ok_applied(host(&hs, name));
        f.assert_applied(name);
    }
    // What was applied is what the inventory wants: nothing left to do there.
    let o = f.dwprov(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "!gw003",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

/// `--serial 1,100%` plans every host first, then rolls out the canary; the
/// hosts of batch 2 are gathered again just before their batch. Paused there
/// (test hook DWPROV_TEST_PAUSE_BEFORE_BATCH), gw003 is changed by hand and
/// gw004's idle SSH connection is killed: gw003 is refused as a stale plan
/// (failed, class "stale plan", untouched, in the retry file), gw004 is
/// re-checked over a new connection and applied, gw002 over the connection
/// it was planned on. A rerun for the retry file applies gw003.
#[test]
fn later_batch_host_changed_during_rollout_is_refused_as_stale() {
    let f = Fleet::up(4, &[]);
    let inv = f.inventory();
    let retry = f.dir.join("retry.txt");
    let mut run = PausedApply::start(
        &f,
        &[
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--serial",
            "1,100%",
            "--format",
            "json",
            "--retry-file",
            retry.to_str().unwrap(),
        ],
    );
    run.wait_for_pause(2);
    // Between the batches: the canary is done, batch 2 not started.
    f.assert_applied("gw001");
    for name in ["gw002", "gw003", "gw004"] {
        f.assert_untouched(name);
    }
    f.gw_sh(
        "gw003",
        "ip route add 10.98.0.0/16 via 203.0.113.1 proto static",
    );
    let killed = f.kill_ssh_sessions("gw004");
    assert!(killed > 0, "gw004 had no SSH session to kill");
    run.resume();
    let (status, stdout, logs) = run.finish();
    assert_eq!(status.code(), Some(1), "gw003 failed: exit 1\n{logs}");
    let doc: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{logs}"));
    let hs = hosts(&doc);
    let stale = host(&hs, "gw003");
    assert_eq!(stale["error"]["class"], "stale plan", "{stale:#}");
    assert_eq!(stale["failed_stage"], "gather", "{stale:#}");
    assert_eq!(stale["skipped"], false, "{stale:#}");
    assert!(stale["applied"].is_null(), "{stale:#}");
    assert!(stale["plan"].is_object(), "{stale:#}");
    let msg = stale["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("gw003: stale plan") && msg.contains("nothing was changed"),
        "{msg}"
    );
    f.assert_untouched("gw003");
    assert!(f
        .gw_sh("gw003", "ip route show")
        .contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"));
    for name in ["gw001", "gw002", "gw004"] {
        assert_ok_applied(host(&hs, name));
        f.assert_applied(name);
    }
    assert_eq!(fs::read_to_string(&retry).unwrap(), "gw003\n");
    // SSH logins: plan + verify; gw003 was re-checked over its planning
    // connection and refused; gw004's died while idle: one more.
    for (name, logins) in [("gw001", 2), ("gw002", 2), ("gw003", 1), ("gw004", 3)] {
        let log = fs::read_to_string(f.dir.join("gw").join(name).join("sshd.log")).unwrap();
        assert_eq!(
            log.matches("Accepted publickey for root").count(),
            logins,
            "{name}:\n{log}"
        );
    }

    // Run again for the retry file: gw003 is planned afresh and applied;
    // the route added by hand is not dwprov's and stays.
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        &format!("@{}", retry.display()),
        "--yes",
        "--serial",
        "1,100%",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    f.assert_applied("gw003");
    assert!(f
        .gw_sh("gw003", "ip route show")
        .contains("10.98.0.0/16 via 203.0.113.1 dev eth2 proto static"));
}

/// Re-checking a later batch must not refuse a host whose live state did
/// not change. An address with a finite lifetime (DHCP, SLAAC-like) does:
/// `ip -j addr` shows its remaining valid_life_time, which counts down, and
/// the facts digest hashes that output, so such a host reads as changed a
/// second later and is refused as stale (saved plans have the same problem).
#[test]
fn later_batch_host_with_a_dhcp_like_address_is_not_stale() {
    let f = Fleet::up(2, &[]);
    let inv = f.inventory();
    f.gw_sh(
        "gw002",
        "ip addr add 192.0.2.9/32 dev eth0p valid_lft 3600 preferred_lft 3600",
    );
    let mut run = PausedApply::start(
        &f,
        &[
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--yes",
            "--serial",
            "1,100%",
            "--format",
            "json",
        ],
    );
    run.wait_for_pause(2);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run.resume();
    let (status, _, logs) = run.finish();
    assert_eq!(status.code(), Some(0), "{logs}");
    f.assert_applied("gw002");
}

/// An apply that fails its writability preflight changed nothing and took
/// no snapshot: the message must not claim the gateway "was reverted to
/// snapshot X" (a snapshot that does not exist on the gateway).
#[test]
fn failed_preflight_does_not_claim_a_revert() {
    let f = Fleet::up(1, &["--fail-apply", "1"]);
    let inv = f.inventory();
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let hs = hosts(&json(&o));
    let msg = host(&hs, "gw001")["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("nothing was changed"), "{msg}");
    f.assert_untouched("gw001");
    let snapshots = f.gw_sh("gw001", "ls /var/lib/dwprov/snapshots 2>/dev/null; true");
    assert!(
        snapshots.trim().is_empty(),
        "no snapshot taken: {snapshots}"
    );
    assert!(
        !msg.contains("reverted to snapshot"),
        "dwprov claims a revert to a snapshot that was never taken:\n{msg}"
    );
}

/// Gateways reachable only through a bastion (`ssh: {jump: bastion}`):
/// applied like the others; the bastion's host key and the target's are both
/// checked (either one wrong refuses the host, and nothing else).
#[test]
fn bastion_reaches_hidden_gateways_and_checks_both_host_keys() {
    let f = Fleet::up(4, &["--bastion", "3,4"]);
    let inv = f.inventory();
    assert_eq!(list_hosts(&f, &inv, "behind_bastion"), ["gw003", "gw004"]);
    assert_eq!(list_hosts(&f, &inv, "bastions"), ["bastion"]);
    // The controller has no way to the hidden switch by itself.
    let route = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}ctl", f.prefix),
            "ip",
            "route",
            "get",
            "10.20.1.3",
        ])
        .output()
        .expect("ip route get");
    assert!(
        !route.status.success(),
        "10.20.1.3 must not be routable from ctl:\n{}",
        show(&route)
    );

    // Both host keys are checked: a wrong key for either hop refuses gw003
    // (class "host key", the hop named), never touching it; gw001 is fine.
    let known = f.dir.join("known_hosts");
    let good = fs::read_to_string(&known).unwrap();
    let other = f.dir.join("other_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", show(&out));
    let pubkey = fs::read_to_string(other.with_extension("pub")).unwrap();
    let wrong: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    for (addr, expect) in [
        (
            "10.10.0.2",
            "jump host bastion: HOST KEY MISMATCH for 10.10.0.2:22",
        ),
        ("10.20.1.3", "HOST KEY MISMATCH for 10.20.1.3:22"),
    ] {
        let forged: String = good
            .lines()
            .map(|l| {
                if l.split_whitespace().next() == Some(addr) {
                    format!("{addr} {} {}\n", wrong[0], wrong[1])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(&known, forged).unwrap();
        let o = f.dwprov(&[
            "apply",
            "-i",
            inv.to_str().unwrap(),
            "--limit",
            "gw001,gw003",
            "--yes",
            "--max-fail-percent",
            "100",
            "--format",
            "json",
        ]);
        fs::write(&known, &good).unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let hs = hosts(&json(&o));
        let h = host(&hs, "gw003");
        assert_eq!(h["error"]["class"], "host key", "{h:#}");
        let msg = h["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expect), "wrong {addr} key: {msg}");
        f.assert_untouched("gw003");
        assert!(
            host(&hs, "gw001")["error"].is_null(),
            "{:#}",
            host(&hs, "gw001")
        );
    }

    // With the right keys: every gateway, hidden or not, is applied and
    // verified (the verify connection goes through the bastion too).
    let o = f.dwprov(&[
        "apply",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "!bastions",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let hs = hosts(&json(&o));
    for name in gws(1..=4) {
        let h = host(&hs, &name);
        assert!(h["error"].is_null(), "{h:#}");
        f.assert_applied(&name);
    }
    let o = f.dwprov(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "--limit",
        "behind_bastion",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "nothing left to do:\n{}",
        show(&o)
    );
    // The hidden gateways saw only the bastion as their SSH peer.
    for name in ["gw003", "gw004"] {
        let log = fs::read_to_string(f.dir.join("gw").join(name).join("sshd.log")).unwrap();
        assert!(
            log.contains("Accepted publickey for root from 10.20.0.1"),
            "{name}:\n{log}"
        );
        assert!(
            !log.contains("from 10.10.0.1"),
            "{name} reached directly:\n{log}"
        );
    }
}
