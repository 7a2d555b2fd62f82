//! A throw-away OpenSSH server per test: its own network namespace (removed
//! on drop, even after a panic), its own mount namespace with a tmpfs on /run
//! (so `/run/sshd` never touches the machine), fresh host and client keys in
//! a temp dir. The client side enters the namespace from a thread (`setns`).
#![allow(dead_code)]
use dwprov::transport::ssh::{AuthSources, SshTransport};
use dwprov::transport::{ConnectOptions, SshTarget};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}
const CLONE_NEWNET: i32 = 0x4000_0000;

/// The non-root login created (inside sshd's mount namespace only) for sudo tests.
pub const TEST_USER: &str = "dwtest";
const TEST_UID: u32 = 4242;

pub struct Sshd {
    pub ns: String,
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// Create TEST_USER (bind-mounted passwd/shadow/group inside sshd's mount ns).
    pub with_user: bool,
    /// Extra sshd_config lines (placed first: they override the defaults).
    pub extra_config: String,
    /// Host key types to generate and serve.
    pub host_key_types: Vec<&'static str>,
    /// Address sshd listens on (and `target()` connects to).
    pub listen: String,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("getrandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn require_root() {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the SSH transport tests need root (network namespaces, sshd); run them as root"
    );
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is required by the SSH transport tests"
        );
    }
}

impl Sshd {
    /// A namespace with `lo` up and keys generated; sshd not started yet.
    pub fn new(port: u16) -> Sshd {
        require_root();
        let id = random_hex(4);
        let ns = format!("dwprov-ssh-{id}");
        let dir = std::env::temp_dir().join(format!("dwprov-ssh-{id}"));
        fs::create_dir(&dir).unwrap();
        // Traversable by TEST_USER (sshd reads authorized_keys as the user).
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).unwrap();
        let s = Sshd {
            ns,
            dir,
            port,
            child: None,
            with_user: false,
            extra_config: String::new(),
            host_key_types: vec!["ed25519", "ecdsa"],
            listen: "127.0.0.1".into(),
        };
        run(Command::new("ip").args(["netns", "add", &s.ns]));
        run(Command::new("ip").args(["-n", &s.ns, "link", "set", "lo", "up"]));
        s.keygen("client_ed25519", "ed25519");
        s.keygen("other_ed25519", "ed25519");
        s.authorize("root", "client_ed25519");
        s.authorize(TEST_USER, "client_ed25519");
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn keygen(&self, file: &str, ty: &str) {
        let p = self.path(file);
        let _ = fs::remove_file(&p);
        let _ = fs::remove_file(p.with_extension("pub"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", ty, "-N", "", "-C", file, "-f"])
            .arg(&p));
    }

    pub fn authorize(&self, user: &str, key: &str) {
        let p = self.path(&format!("authorized_keys_{user}"));
        fs::copy(self.path(&format!("{key}.pub")), &p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// (Re)generate the host keys.
    pub fn regen_host_keys(&self) {
        for t in &self.host_key_types {
            self.keygen(&format!("host_{t}"), t);
        }
    }

    /// `type base64` of a host public key.
    pub fn host_pub(&self, ty: &str) -> String {
        let s = fs::read_to_string(self.path(&format!("host_{ty}.pub"))).unwrap();
        let mut f = s.split_whitespace();
        format!("{} {}", f.next().unwrap(), f.next().unwrap())
    }

    /// `SHA256:...` fingerprint of a host key, from ssh-keygen.
    pub fn host_fingerprint(&self, ty: &str) -> String {
        let out = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.path(&format!("host_{ty}.pub"))));
        out.split_whitespace().nth(1).unwrap().to_string()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// Start sshd (generating host keys on first start).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "sshd already running");
        if !self
            .path(&format!("host_{}", self.host_key_types[0]))
            .exists()
        {
            self.regen_host_keys();
        }
        let d = self.dir.display();
        // Extra lines first: sshd takes the first value of a keyword, so they override.
        let mut cfg = self.extra_config.clone();
        cfg += &format!(
            "Port {}\nListenAddress {}\nPidFile none\nStrictModes no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nAuthorizedKeysFile {d}/authorized_keys_%u\nLogLevel VERBOSE\n\
             PrintMotd no\nMaxStartups 50\nPermitUserRC no\n",
            self.port, self.listen
        );
        for t in &self.host_key_types {
            cfg.push_str(&format!("HostKey {d}/host_{t}\n"));
        }
        fs::write(self.path("sshd_config"), cfg).unwrap();
        let _ = fs::remove_file(self.path("sshd.log"));
        // An empty /root for the logins: this machine's ~/.bashrc (which
        // bash, root's login shell, sources for every SSH command) and
        // ~/.ssh/rc must not run, nor slow a test down.
        let mut setup = String::from(
            "set -e\nmount -t tmpfs -o mode=755 tmpfs /run\nmkdir -p /run/sshd\nchmod 755 /run/sshd\n\
             mount -t tmpfs -o mode=700 dwprov-root /root\n",
        );
        if self.with_user {
            let home = self.path("home");
            fs::create_dir_all(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(TEST_UID), Some(TEST_UID)).unwrap();
            let add = |src: &str, line: String, name: &str, mode: u32| {
                let mut s = fs::read_to_string(src).unwrap_or_default();
                if !s.is_empty() && !s.ends_with('\n') {
                    s.push('\n');
                }
                s.push_str(&line);
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(self.path(name))
                    .and_then(|mut f| f.write_all(s.as_bytes()))
                    .unwrap();
            };
            add(
                "/etc/passwd",
                format!(
                    "{TEST_USER}:x:{TEST_UID}:{TEST_UID}:dwprov test:{}:/bin/sh\n",
                    home.display()
                ),
                "passwd",
                0o644,
            );
            add(
                "/etc/group",
                format!("{TEST_USER}:x:{TEST_UID}:\n"),
                "group",
                0o644,
            );
            add(
                "/etc/shadow",
                format!("{TEST_USER}:*:19000:0:99999:7:::\n"),
                "shadow",
                0o600,
            );
            for f in ["passwd", "group", "shadow"] {
                setup.push_str(&format!("mount --bind {d}/{f} /etc/{f}\n"));
            }
            // sudo is not installed on every test machine: then a stand-in
            // that answers like `sudo -n` for a user without NOPASSWD.
            setup.push_str(
                "if [ ! -x /usr/bin/sudo ]; then\n\
                 mount -t tmpfs -o mode=755 tmpfs /usr/local/bin\n\
                 printf '#!/bin/sh\\necho \"sudo: a password is required\" >&2\\nexit 1\\n' > /usr/local/bin/sudo\n\
                 chmod 755 /usr/local/bin/sudo\nfi\n",
            );
        }
        setup.push_str(&format!(
            "exec /usr/sbin/sshd -D -f {d}/sshd_config -E {d}/sshd.log\n"
        ));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
            ])
            .arg(&setup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path("sshd.stderr")).unwrap())
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if self.log().contains("Server listening on") {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sshd exited ({st}) before listening:\n{}\n{}",
                    fs::read_to_string(self.path("sshd.stderr")).unwrap_or_default(),
                    self.log()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sshd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop sshd and every process in the namespace.
    pub fn stop(&mut self) {
        // Session processes first, while the listening sshd can still reap
        // them; then the listener itself (our child: waited for).
        let listener = self.child.as_ref().map(|c| c.id().to_string());
        for signal in ["-TERM", "-KILL"] {
            let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &self.ns])
                .output()
            else {
                break;
            };
            let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|p| Some(*p) != listener.as_deref())
                .map(String::from)
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                let _ = Command::new("kill")
                    .args([signal, pid])
                    .stderr(Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run `f` on a thread inside the namespace (sockets it opens live there).
    pub fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns, f)
    }

    pub fn target(&self, user: &str) -> SshTarget {
        SshTarget {
            host: "gw-test".into(),
            address: self.listen.clone(),
            port: Some(self.port),
            user: Some(user.into()),
            identity_file: Some(self.path("client_ed25519")),
            known_hosts: Some(self.path("known_hosts")),
            connect_timeout: Some(Duration::from_secs(2)),
            timeout: Duration::from_secs(20),
            server_alive_interval: None,
            jump: None,
        }
    }

    /// Connect options that ignore the machine's ~/.ssh/config (`-F none`).
    pub fn opts(accept_new: bool) -> ConnectOptions {
        ConnectOptions {
            accept_new_host_keys: accept_new,
            ssh_config: Some(PathBuf::from("none")),
        }
    }

    /// No agent, no default keys: only the target's identity_file.
    pub fn auth() -> AuthSources {
        AuthSources {
            agent_socket: None,
            default_keys: vec![],
            prompt_passphrase: false,
        }
    }

    pub fn connect(&self, t: &SshTarget, accept_new: bool) -> dwprov::Result<SshTransport> {
        let opts = Self::opts(accept_new);
        self.in_ns(|| SshTransport::connect_with(t, &opts, &Self::auth()))
    }

    /// Did any client get as far as authentication?
    pub fn saw_auth(&self) -> bool {
        let log = self.log();
        [
            "Accepted publickey",
            "Failed publickey",
            "Postponed publickey",
            "authenticating user",
            "Invalid user",
        ]
        .iter()
        .any(|p| log.contains(p))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        if std::env::var_os("DWPROV_KEEP_SSHD").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Run `f` on a thread inside network namespace `ns` (sockets it opens live there).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd;
            let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid netns fd; only this thread changes namespace.
            let rc = unsafe { setns(fd.as_raw_fd(), CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
