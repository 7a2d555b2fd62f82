//! The SSH transport against a real OpenSSH server in a private network
//! namespace (see `sshd_fixture`). Needs root; fails loudly otherwise.
mod sshd_fixture;

use dwprov::error::{Error, TransportKind};
use dwprov::transport::ssh::{known_hosts, SshTransport};
use dwprov::transport::{ConnectOptions, Jump, SshTarget, Transport};
use sshd_fixture::{in_netns, Sshd, TEST_USER};
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

fn kind_and_message(e: &Error) -> (TransportKind, String) {
    match e {
        Error::Transport { kind, message, .. } => (*kind, message.clone()),
        other => panic!("expected a transport error, got {other:?}"),
    }
}

fn expect_err<T>(r: dwprov::Result<T>) -> (TransportKind, String) {
    match r {
        Ok(_) => panic!("expected an error, but it succeeded"),
        Err(e) => {
            eprintln!("error as shown to the admin: {e}");
            kind_and_message(&e)
        }
    }
}

/// Record both host keys (as `ssh-keyscan` would) for the fixture's address.
fn record_host_keys(s: &Sshd, types: &[&str]) {
    let name = known_hosts::host_name("127.0.0.1", s.port);
    let text: String = types
        .iter()
        .map(|t| format!("{name} {}\n", s.host_pub(t)))
        .collect();
    fs::write(s.path("known_hosts"), text).unwrap();
}

#[test]
fn runs_scripts_with_output_status_and_big_payloads() {
    let mut s = Sshd::new(2222);
    s.start();
    record_host_keys(&s, &["ed25519", "ecdsa"]);
    let mut t = s.connect(&s.target("root"), false).expect("connect");
    assert_eq!(t.remote_command(), "/bin/sh -s");

    let out = t
        .run_script("echo out; echo err >&2; id -u; exit 3\n")
        .unwrap();
    assert_eq!(out.stdout_str(), "out\n0\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert_eq!(out.status, 3);

    // 5 MiB on stdout while 1 MiB goes to stderr.
    let t0 = Instant::now();
    let out = t
        .run_script(
            "head -c 1048576 /dev/zero | tr '\\0' e >&2 &\n\
             head -c 5242880 /dev/zero | tr '\\0' x\nwait\n",
        )
        .unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout.len(), 5 * 1024 * 1024);
    assert!(out.stdout.iter().all(|&b| b == b'x'));
    assert_eq!(out.stderr.len(), 1024 * 1024);
    eprintln!("5 MiB out + 1 MiB err: {:?}", t0.elapsed());

    // 5 MiB of script on stdin, counted remotely.
    let line = "y".repeat(1023) + "\n";
    let payload = line.repeat(5 * 1024);
    let t0 = Instant::now();
    let out = t
        .run_script(&format!("wc -c <<'DWPROV_EOF'\n{payload}DWPROV_EOF\n"))
        .unwrap();
    assert_eq!(out.status, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str().trim(), (5 * 1024 * 1024).to_string());
    eprintln!("5 MiB in: {:?}", t0.elapsed());

    // Both directions at once: the remote echoes 5 MiB back while we still
    // send it (deadlocks at the 2 MiB window unless both directions flow).
    let t0 = Instant::now();
    let out = t
        .run_script(&format!(
            "cat <<'DWPROV_EOF'\n{payload}DWPROV_EOF\necho done >&2\n"
        ))
        .unwrap();
    assert_eq!(out.status, 0);
    assert!(out.stdout == payload.as_bytes(), "echoed payload differs");
    assert_eq!(out.stderr_str(), "done\n");
    eprintln!("5 MiB echoed: {:?}", t0.elapsed());

    // A shell that exits before reading the rest of its script.
    let out = t.run_script(&format!("exit 7\n{payload}")).unwrap();
    assert_eq!(out.status, 7);

    // Killed by a signal.
    let out = t.run_script("kill -TERM $$\n").unwrap();
    assert_eq!(out.status, 128 + 15);

    assert_eq!(t.round_trips(), 6);
    let out = t.run_script("true\n").unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(t.round_trips(), 7);
}

#[test]
fn unknown_host_key_is_refused_unless_accept_new() {
    let mut s = Sshd::new(2222);
    s.start();
    let target = s.target("root");
    let marker = s.path("marker");
    let script = format!("touch {}\n", marker.display());

    // Refused: with the key type and fingerprint, and nothing ran.
    let r = s.connect(&target, false).map(|mut t| t.run_script(&script));
    let (kind, msg) = expect_err(r);
    assert_eq!(kind, TransportKind::HostKey);
    let (fp_ed, fp_ec) = (s.host_fingerprint("ed25519"), s.host_fingerprint("ecdsa"));
    assert!(
        msg.contains(&fp_ed) || msg.contains(&fp_ec),
        "no fingerprint in: {msg}"
    );
    assert!(
        msg.contains("127.0.0.1:2222")
            && msg.contains("--accept-new-host-keys")
            && msg.contains("ssh-keyscan")
    );
    assert!(
        !marker.exists(),
        "a script ran despite the unknown host key"
    );
    assert!(!s.saw_auth(), "authentication was attempted:\n{}", s.log());
    assert!(
        !s.path("known_hosts").exists(),
        "known_hosts was written without accept-new"
    );

    // accept-new: connects, records the key, runs.
    let mut t = s.connect(&target, true).expect("connect with accept-new");
    t.run_script(&script).unwrap();
    assert!(marker.exists());
    let kh = fs::read_to_string(s.path("known_hosts")).unwrap();
    let line = kh.lines().next().expect("a recorded key");
    assert_eq!(kh.lines().count(), 1);
    assert!(
        line == format!("[127.0.0.1]:2222 {}", s.host_pub("ed25519"))
            || line == format!("[127.0.0.1]:2222 {}", s.host_pub("ecdsa")),
        "recorded line {line:?} is not the server's key"
    );
    // OpenSSH agrees with what was recorded.
    let found = Command::new("ssh-keygen")
        .args(["-F", "[127.0.0.1]:2222", "-f"])
        .arg(s.path("known_hosts"))
        .output()
        .unwrap();
    assert!(found.status.success());

    // Next time, without accept-new: it is known.
    let mut t = s
        .connect(&target, false)
        .expect("reconnect to a recorded host");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");
    assert_eq!(
        fs::read_to_string(s.path("known_hosts")).unwrap(),
        kh,
        "known_hosts changed again"
    );
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let mut s = Sshd::new(2222);
    s.start();
    let target = s.target("root");
    let mut t = s.connect(&target, true).expect("first connection");
    t.run_script("true\n").unwrap();
    drop(t);
    let recorded = fs::read_to_string(s.path("known_hosts")).unwrap();

    s.stop();
    s.regen_host_keys();
    s.start();
    let marker = s.path("marker");
    for accept_new in [false, true] {
        let r = s
            .connect(&target, accept_new)
            .map(|mut t| t.run_script(&format!("touch {}\n", marker.display())));
        let (kind, msg) = expect_err(r);
        assert_eq!(kind, TransportKind::HostKey);
        assert!(
            msg.contains("MISMATCH") && msg.contains("man-in-the-middle"),
            "{msg}"
        );
        assert!(
            msg.contains("known_hosts:1"),
            "recorded line not named: {msg}"
        );
        assert!(
            msg.contains(&s.host_fingerprint("ed25519"))
                || msg.contains(&s.host_fingerprint("ecdsa"))
        );
        assert!(
            !marker.exists(),
            "a script ran despite the changed host key"
        );
        assert!(!s.saw_auth(), "authentication was attempted:\n{}", s.log());
        assert_eq!(fs::read_to_string(s.path("known_hosts")).unwrap(), recorded);
    }
}

#[test]
fn recorded_ecdsa_key_is_used_when_server_also_offers_ed25519() {
    // Port 22: plain `address` entries.
    let mut s = Sshd::new(22);
    s.start();
    record_host_keys(&s, &["ecdsa"]);
    let target = s.target("root");
    let mut t = s
        .connect(&target, false)
        .expect("connect with an ecdsa-only known_hosts");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");
    drop(t);
    // Same with the entry hashed by OpenSSH (`|1|salt|hmac`).
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(s.path("known_hosts"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let kh = fs::read_to_string(s.path("known_hosts")).unwrap();
    assert!(kh.starts_with("|1|"), "not hashed: {kh}");
    let mut t = s
        .connect(&target, false)
        .expect("connect with a hashed ecdsa entry");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");
    drop(t);
    // And the server no longer offering the recorded type is a host-key problem.
    s.stop();
    s.host_key_types = vec!["ed25519"];
    s.start();
    let (kind, msg) = expect_err(s.connect(&target, true));
    assert_eq!(kind, TransportKind::HostKey, "{msg}");
    assert!(msg.contains("no longer offers"), "{msg}");
    assert!(!s.saw_auth());
}

#[test]
fn unreachable_and_blackholed_addresses() {
    let s = Sshd::new(2222); // sshd not started: nothing listens.
    let mut target = s.target("root");

    // Closed port: refused at once.
    target.port = Some(1);
    let t0 = Instant::now();
    let (kind, msg) = expect_err(s.connect(&target, false));
    assert_eq!(kind, TransportKind::Connect);
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // No route (only `lo` in the namespace).
    target.address = "10.250.0.1".into();
    target.port = Some(22);
    let t0 = Instant::now();
    let (kind, msg) = expect_err(s.connect(&target, false));
    assert_eq!(kind, TransportKind::Connect);
    assert!(msg.contains("10.250.0.1:22"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // Blackholed: packets leave on a veth toward a MAC nobody has, and vanish.
    let ns = s.ns.as_str();
    for args in [
        vec![
            "link", "add", "dwbh0", "type", "veth", "peer", "name", "dwbh1",
        ],
        vec!["link", "set", "dwbh0", "up"],
        vec!["link", "set", "dwbh1", "up"],
        vec!["addr", "add", "10.99.0.1/24", "dev", "dwbh0"],
        vec![
            "neigh",
            "add",
            "10.99.0.2",
            "lladdr",
            "02:00:00:00:99:02",
            "dev",
            "dwbh0",
            "nud",
            "permanent",
        ],
    ] {
        let st = Command::new("ip")
            .args(["-n", ns])
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    }
    target.address = "10.99.0.2".into();
    let t0 = Instant::now();
    let (kind, msg) = expect_err(s.connect(&target, false));
    let took = t0.elapsed();
    assert_eq!(kind, TransportKind::Timeout, "{msg}");
    assert!(msg.contains("10.99.0.2:22"), "{msg}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}

#[test]
fn wrong_client_key_is_an_auth_error_listing_what_was_tried() {
    let mut s = Sshd::new(2222);
    s.start();
    record_host_keys(&s, &["ed25519", "ecdsa"]);
    let mut target = s.target("root");
    target.identity_file = Some(s.path("other_ed25519"));
    let (kind, msg) = expect_err(s.connect(&target, false));
    assert_eq!(kind, TransportKind::Auth);
    assert!(
        msg.contains(&format!(
            "identity file {}",
            s.path("other_ed25519").display()
        )),
        "{msg}"
    );
    assert!(msg.contains("rejected by the server"), "{msg}");
    assert!(
        msg.contains("ssh-agent") && msg.contains("default keys"),
        "{msg}"
    );
    assert!(
        msg.contains("root") && msg.contains("127.0.0.1:2222"),
        "{msg}"
    );

    // A missing identity file, and an encrypted one with no terminal to ask.
    target.identity_file = Some(s.path("missing_key"));
    let (kind, msg) = expect_err(s.connect(&target, false));
    assert_eq!(kind, TransportKind::Auth);
    assert!(msg.contains("missing_key: cannot read it"), "{msg}");

    let enc = s.path("encrypted_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&enc)
        .status()
        .unwrap();
    assert!(st.success());
    s.authorize("root", "encrypted_ed25519");
    target.identity_file = Some(enc);
    let (kind, msg) = expect_err(s.connect(&target, false));
    assert_eq!(kind, TransportKind::Auth);
    assert!(msg.contains("encrypted, and no terminal"), "{msg}");
    assert!(!msg.contains("correct horse"));
}

#[test]
fn non_root_user_without_nopasswd_sudo_is_a_sudo_error() {
    let mut s = Sshd::new(2222);
    s.with_user = true;
    s.start();
    record_host_keys(&s, &["ed25519", "ecdsa"]);
    let marker = s.path("home/marker");
    let mut t = s
        .connect(&s.target(TEST_USER), false)
        .expect("login as the non-root user");
    assert_eq!(t.remote_command(), "sudo -n /bin/sh -s");
    let (kind, msg) = expect_err(t.run_script(&format!("touch {}\n", marker.display())));
    assert_eq!(kind, TransportKind::Sudo);
    assert!(
        msg.contains("NOPASSWD") && msg.contains(TEST_USER) && msg.contains("root"),
        "{msg}"
    );
    assert!(!marker.exists());
    assert!(s
        .log()
        .contains(&format!("Accepted publickey for {TEST_USER}")));
}

#[test]
fn old_gateway_with_only_sha1_rsa_host_keys_is_explained() {
    let supported = ssh2::Session::new()
        .unwrap()
        .supported_algs(ssh2::MethodType::HostKey)
        .unwrap();
    eprintln!("libssh2 host key algorithms: {supported:?}");
    let mut s = Sshd::new(2222);
    s.host_key_types = vec!["rsa"];
    s.extra_config = "HostKeyAlgorithms ssh-rsa\n".into();
    s.start();
    let r = s.connect(&s.target("root"), true);
    if supported.contains(&"ssh-rsa") {
        // This libssh2 still speaks SHA-1 RSA: nothing to explain.
        r.expect("connect with ssh-rsa");
        return;
    }
    let (kind, msg) = expect_err(r);
    assert_eq!(kind, TransportKind::Connect);
    assert!(
        msg.starts_with("old gateway:") && msg.contains("ssh-rsa"),
        "{msg}"
    );
    assert!(!s.saw_auth());
}

#[test]
fn silent_server_and_silent_script_time_out() {
    let mut s = Sshd::new(2222);
    s.start();
    record_host_keys(&s, &["ed25519", "ecdsa"]);
    let mut target = s.target("root");
    target.timeout = Duration::from_secs(1);

    // Something accepts TCP on the port but never speaks SSH.
    let mut mute = target.clone();
    mute.port = Some(2300);
    let (r, took) = s.in_ns(|| {
        let _listener = std::net::TcpListener::bind("127.0.0.1:2300").unwrap();
        let t0 = Instant::now();
        let r = SshTransport::connect_with(&mute, &Sshd::opts(false), &Sshd::auth());
        (r, t0.elapsed())
    });
    let (kind, msg) = expect_err(r);
    assert_eq!(kind, TransportKind::Timeout, "{msg}");
    assert!(msg.contains("127.0.0.1:2300"), "{msg}");
    assert!(took < Duration::from_secs(4), "took {took:?}");

    // A script silent for longer than `timeout`; the connection is then retired.
    let mut t = s.connect(&target, false).unwrap();
    let t0 = Instant::now();
    let (kind, msg) = expect_err(t.run_script("sleep 5\n"));
    assert_eq!(kind, TransportKind::Timeout, "{msg}");
    // The message says what was awaited: nothing printed yet points at the
    // login shell's start-up (a slow ~/.bashrc) or the first command.
    assert!(
        msg.contains("went silent for 1s while running a script that printed nothing yet")
            && msg.contains("~/.bashrc"),
        "{msg}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    let (kind, msg) = expect_err(t.run_script("true\n"));
    assert_eq!(kind, TransportKind::Channel);
    assert!(msg.contains("reconnect"), "{msg}");
    drop(t);

    // A gather whose section began and did not end: the timeout names its
    // command (the watch follows the sections as they arrive).
    let mut t = s.connect(&target, false).unwrap();
    let m = dwprov::gather::marker();
    let mut watch = dwprov::gather::SectionWatch::new("gw1", &m, 1 << 20);
    let script = format!("printf '%s begin routes\\n[' '{m}'; sleep 5\n");
    let (kind, msg) = expect_err(t.run_script_watched(&script, &mut watch));
    assert_eq!(kind, TransportKind::Timeout, "{msg}");
    assert!(
        msg.contains("while running a script: `ip -4 -j -d -N route show table all` (gather) had not finished"),
        "{msg}"
    );
    drop(t);

    // `timeout` bounds silence, not duration: a chatty 2 s script is fine.
    let mut t = s.connect(&target, false).unwrap();
    let out = t
        .run_script("for i in 1 2 3 4; do echo $i; sleep 0.5; done\n")
        .unwrap();
    assert_eq!(out.stdout_str(), "1\n2\n3\n4\n");
}

/// Kills the ssh-agent it holds, even on panic.
struct Agent(std::process::Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ssh_agent_and_default_keys_are_tried_after_identity_file() {
    use dwprov::transport::ssh::AuthSources;
    let mut s = Sshd::new(2222);
    s.start();
    record_host_keys(&s, &["ed25519", "ecdsa"]);
    let opts = Sshd::opts(false);

    // A default key, found after a missing one.
    let mut target = s.target("root");
    target.identity_file = None;
    let auth = AuthSources {
        agent_socket: None,
        default_keys: vec![s.path("id_missing"), s.path("client_ed25519")],
        prompt_passphrase: false,
    };
    let mut t = s
        .in_ns(|| SshTransport::connect_with(&target, &opts, &auth))
        .expect("default key");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");

    // An agent holding the authorised key, after a rejected identity file.
    let sock = s.path("agent.sock");
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "ssh-agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = Command::new("ssh-add")
        .arg(s.path("client_ed25519"))
        .env("SSH_AUTH_SOCK", &sock)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    target.identity_file = Some(s.path("other_ed25519"));
    let auth = AuthSources {
        agent_socket: Some(sock.clone()),
        default_keys: vec![],
        prompt_passphrase: false,
    };
    let mut t = s
        .in_ns(|| SshTransport::connect_with(&target, &opts, &auth))
        .expect("agent key");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");
    drop(t);

    // An agent whose keys are all rejected is reported as such.
    s.authorize("root", "other_ed25519");
    target.identity_file = Some(s.path("missing_key"));
    let (kind, msg) = expect_err(s.in_ns(|| SshTransport::connect_with(&target, &opts, &auth)));
    assert_eq!(kind, TransportKind::Auth);
    assert!(msg.contains("1 key(s), all rejected"), "{msg}");
    drop(agent);
}

// ---------------------------------------------------------------------------
// Bastions (ProxyJump) and ssh config.

/// client ns ─ 10.77.1.0/24 ─ bastion ns ─ 10.77.2.0/24 ─ target ns.
/// The bastion does not forward packets: the target is reachable only
/// through the bastion's sshd. Namespaces and sshds go away on drop.
struct JumpLab {
    client_ns: String,
    bastion: Sshd,
    target: Sshd,
}

const BASTION: &str = "10.77.1.1";
const TARGET: &str = "10.77.2.2";

impl JumpLab {
    fn new() -> JumpLab {
        let mut bastion = Sshd::new(2222);
        bastion.listen = BASTION.into();
        let mut target = Sshd::new(2222);
        target.listen = TARGET.into();
        let client_ns = format!("{}-c", bastion.ns);
        let lab = JumpLab {
            client_ns,
            bastion,
            target,
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &lab.client_ns]);
        let (c, b, t) = (
            lab.client_ns.as_str(),
            lab.bastion.ns.as_str(),
            lab.target.ns.as_str(),
        );
        ip(&["-n", c, "link", "set", "lo", "up"]);
        ip(&[
            "link", "add", "jc0", "netns", c, "type", "veth", "peer", "name", "jb0", "netns", b,
        ]);
        ip(&[
            "link", "add", "jb1", "netns", b, "type", "veth", "peer", "name", "jt1", "netns", t,
        ]);
        for (ns, dev, addr) in [
            (c, "jc0", "10.77.1.2/24"),
            (b, "jb0", "10.77.1.1/24"),
            (b, "jb1", "10.77.2.1/24"),
            (t, "jt1", "10.77.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // The target uses the bastion's client key.
        fs::copy(
            lab.bastion.path("client_ed25519.pub"),
            lab.target.path("authorized_keys_root"),
        )
        .unwrap();
        lab
    }

    fn start(&mut self) {
        self.bastion.start();
        self.target.start();
    }

    /// known_hosts (one file for the client) with the given entries.
    fn known_hosts(&self, bastion: bool, target: bool) {
        let mut text = String::new();
        for (on, s, addr) in [
            (bastion, &self.bastion, BASTION),
            (target, &self.target, TARGET),
        ] {
            if on {
                for ty in ["ed25519", "ecdsa"] {
                    text.push_str(&format!(
                        "{} {}\n",
                        known_hosts::host_name(addr, 2222),
                        s.host_pub(ty)
                    ));
                }
            }
        }
        fs::write(self.kh(), text).unwrap();
    }

    fn kh(&self) -> std::path::PathBuf {
        self.bastion.path("known_hosts")
    }

    /// The target as the inventory would give it, with `jump`.
    fn target_via(&self, jump: Option<Jump>) -> SshTarget {
        let mut t = self.target.target("root");
        t.host = "gw-far".into();
        t.identity_file = Some(self.bastion.path("client_ed25519"));
        t.known_hosts = Some(self.kh());
        t.jump = jump;
        t
    }

    fn bastion_target(&self) -> SshTarget {
        let mut b = self.bastion.target("root");
        b.host = "bastion".into();
        b.known_hosts = Some(self.kh());
        b
    }

    fn connect(&self, t: &SshTarget, accept_new: bool) -> dwprov::Result<SshTransport> {
        let opts = Sshd::opts(accept_new);
        in_netns(&self.client_ns, || {
            SshTransport::connect_with(t, &opts, &Sshd::auth())
        })
    }
}

impl Drop for JumpLab {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client_ns])
            .status();
    }
}

/// Processes in `s`'s namespace besides the listening sshd.
fn session_processes(s: &Sshd) -> usize {
    let out = Command::new("ip")
        .args(["netns", "pids", &s.ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count()
        .saturating_sub(1)
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn proxyjump_runs_on_a_target_reachable_only_through_the_bastion() {
    let mut lab = JumpLab::new();
    lab.start();
    lab.known_hosts(true, true);

    // Directly from the client: no way.
    let (kind, msg) = expect_err(lab.connect(&lab.target_via(None), false));
    assert_eq!(kind, TransportKind::Connect, "{msg}");
    assert!(!lab.target.log().contains("Connection from"));

    for jump in [
        Jump::Spec(format!("root@{BASTION}:2222")),
        Jump::Host(Box::new(lab.bastion_target())),
        // A chain: the second hop (the bastion again) is reached through the
        // first, so two pumps are nested.
        Jump::Spec(format!("{BASTION}:2222,{BASTION}:2222")),
    ] {
        let mut t = lab
            .connect(&lab.target_via(Some(jump.clone())), false)
            .unwrap_or_else(|e| panic!("through {jump:?}: {e}"));
        let out = t.run_script("ip -o -4 addr show\n").unwrap();
        assert_eq!(out.status, 0);
        let addrs = out.stdout_str();
        assert!(
            addrs.contains(TARGET) && !addrs.contains(BASTION),
            "not run on the target: {addrs}"
        );
        // Both directions at once through the pump (2 MiB echoed back).
        let line = "z".repeat(1023) + "\n";
        let payload = line.repeat(2 * 1024);
        let t0 = Instant::now();
        let out = t
            .run_script(&format!("cat <<'DWPROV_EOF'\n{payload}DWPROV_EOF\n"))
            .unwrap();
        assert!(
            out.stdout == payload.as_bytes(),
            "echo through the bastion differs"
        );
        eprintln!("2 MiB echoed through the bastion: {:?}", t0.elapsed());
        assert!(lab
            .target
            .log()
            .contains("Accepted publickey for root from 10.77.2.1"));

        // Dropping the transport ends the pump and both sessions promptly.
        let t0 = Instant::now();
        drop(t);
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "drop took {:?}",
            t0.elapsed()
        );
        wait_for("bastion session ended", Duration::from_secs(5), || {
            session_processes(&lab.bastion) == 0
        });
        wait_for("target session ended", Duration::from_secs(5), || {
            session_processes(&lab.target) == 0
        });
    }
}

#[test]
fn proxyjump_verifies_the_target_and_the_bastion_host_keys() {
    let mut lab = JumpLab::new();
    lab.start();
    let marker = lab.target.path("marker");
    let script = format!("touch {}\n", marker.display());
    let via = lab.target_via(Some(Jump::Spec(format!("{BASTION}:2222"))));

    // Target unknown (the bastion is fine): refused after the bastion let us
    // through, before authenticating to the target.
    lab.known_hosts(true, false);
    let (kind, msg) = expect_err(lab.connect(&via, false).map(|mut t| t.run_script(&script)));
    assert_eq!(kind, TransportKind::HostKey, "{msg}");
    assert!(
        msg.contains("10.77.2.2:2222") && msg.contains("unknown"),
        "{msg}"
    );
    assert!(
        msg.contains(&lab.target.host_fingerprint("ed25519"))
            || msg.contains(&lab.target.host_fingerprint("ecdsa")),
        "{msg}"
    );
    assert!(lab.bastion.log().contains("Accepted publickey for root"));
    assert!(!lab.target.saw_auth(), "{}", lab.target.log());
    assert!(!marker.exists());

    // Target key changed (the bastion's keys recorded for it): refused, also with accept-new.
    let mut text = fs::read_to_string(lab.kh()).unwrap();
    for ty in ["ed25519", "ecdsa"] {
        text.push_str(&format!("[{TARGET}]:2222 {}\n", lab.bastion.host_pub(ty)));
    }
    fs::write(lab.kh(), &text).unwrap();
    for accept_new in [false, true] {
        let (kind, msg) = expect_err(
            lab.connect(&via, accept_new)
                .map(|mut t| t.run_script(&script)),
        );
        assert_eq!(kind, TransportKind::HostKey, "{msg}");
        assert!(
            msg.contains("MISMATCH") && msg.contains("10.77.2.2:2222"),
            "{msg}"
        );
        assert!(!lab.target.saw_auth());
        assert!(!marker.exists());
        assert_eq!(fs::read_to_string(lab.kh()).unwrap(), text);
    }

    // Bastion unknown: refused before any authentication anywhere; the
    // target never even sees a connection.
    let mut lab2 = JumpLab::new();
    lab2.start();
    lab2.known_hosts(false, true);
    let via2 = lab2.target_via(Some(Jump::Host(Box::new(lab2.bastion_target()))));
    let (kind, msg) = expect_err(lab2.connect(&via2, false));
    assert_eq!(kind, TransportKind::HostKey, "{msg}");
    assert!(
        msg.starts_with("jump host bastion: host key of 10.77.1.1:2222 is unknown"),
        "{msg}"
    );
    assert!(!lab2.bastion.saw_auth(), "{}", lab2.bastion.log());
    assert!(!lab2.target.log().contains("Connection from"));

    // accept-new records both, each under its own name; then they are known.
    fs::remove_file(lab2.kh()).unwrap();
    let mut t = lab2
        .connect(&via2, true)
        .expect("accept-new through the bastion");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");
    drop(t);
    let kh = fs::read_to_string(lab2.kh()).unwrap();
    assert_eq!(kh.lines().count(), 2, "{kh}");
    assert!(
        kh.contains("[10.77.1.1]:2222 ") && kh.contains("[10.77.2.2]:2222 "),
        "{kh}"
    );
    let mut t = lab2.connect(&via2, false).expect("both known now");
    assert_eq!(t.run_script("echo ok\n").unwrap().stdout_str(), "ok\n");
}

#[test]
fn dead_target_or_bastion_fails_within_the_connect_timeout() {
    let mut lab = JumpLab::new();
    lab.start();
    lab.known_hosts(true, true);
    let ip = |ns: &str, args: &[&str]| {
        let st = Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    // Addresses whose packets vanish: a MAC nobody has, on each link.
    ip(
        &lab.bastion.ns,
        &[
            "neigh",
            "add",
            "10.77.2.99",
            "lladdr",
            "02:00:00:00:99:02",
            "dev",
            "jb1",
            "nud",
            "permanent",
        ],
    );
    ip(
        &lab.client_ns,
        &[
            "neigh",
            "add",
            "10.77.1.99",
            "lladdr",
            "02:00:00:00:99:01",
            "dev",
            "jc0",
            "nud",
            "permanent",
        ],
    );

    // Target blackholed behind a live bastion: the bastion's sshd would wait
    // minutes for the TCP connect; we give up after connect_timeout.
    let mut t = lab.target_via(Some(Jump::Spec(format!("{BASTION}:2222"))));
    t.address = "10.77.2.99".into();
    let t0 = Instant::now();
    let (kind, msg) = expect_err(lab.connect(&t, false));
    let took = t0.elapsed();
    assert_eq!(kind, TransportKind::Timeout, "{msg}");
    assert!(
        msg.contains("10.77.2.99:2222") && msg.contains("through jump host 10.77.1.1:2222"),
        "{msg}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    wait_for("bastion session ended", Duration::from_secs(5), || {
        session_processes(&lab.bastion) == 0
    });

    // Target's sshd down: the bastion reports the refusal at once.
    lab.target.stop();
    let t = lab.target_via(Some(Jump::Spec(format!("{BASTION}:2222"))));
    let t0 = Instant::now();
    let (kind, msg) = expect_err(lab.connect(&t, false));
    assert_eq!(kind, TransportKind::Connect, "{msg}");
    assert!(
        msg.contains("10.77.2.2:2222") && msg.contains("jump host"),
        "{msg}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );

    // Bastion blackholed: its own connect timeout, and the message says it was the jump host.
    let t = lab.target_via(Some(Jump::Spec("10.77.1.99:2222".into())));
    let t0 = Instant::now();
    let (kind, msg) = expect_err(lab.connect(&t, false));
    let took = t0.elapsed();
    assert_eq!(kind, TransportKind::Timeout, "{msg}");
    assert!(
        msg.starts_with("jump host 10.77.1.99:2222: cannot connect to 10.77.1.99:2222"),
        "{msg}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}

#[test]
fn keepalives_reach_bastion_and_target_while_a_script_is_silent() {
    let mut lab = JumpLab::new();
    lab.bastion.extra_config = "LogLevel DEBUG\n".into();
    lab.target.extra_config = "LogLevel DEBUG\n".into();
    lab.start();
    lab.known_hosts(true, true);
    let mut t = lab.target_via(Some(Jump::Spec(format!("{BASTION}:2222"))));
    t.server_alive_interval = Some(Duration::from_secs(1));
    let mut tr = lab.connect(&t, false).unwrap();
    let out = tr.run_script("sleep 5; echo ok\n").unwrap();
    assert_eq!(out.stdout_str(), "ok\n");
    // libssh2 sends at most every 2 s (an interval of 1 counts as 2).
    for (what, s) in [("bastion", &lab.bastion), ("target", &lab.target)] {
        let n = s.log().matches("rtype keepalive@").count();
        assert!(n >= 2, "{what} saw {n} keep-alives:\n{}", s.log());
    }
}

#[test]
fn ssh_config_alone_reaches_the_target_through_the_bastion() {
    let mut lab = JumpLab::new();
    lab.start();
    lab.known_hosts(true, true);
    let d = lab.bastion.dir.display();
    let common = lab.bastion.path("common.conf");
    fs::write(
        &common,
        format!(
            "Host *\n  IdentityFile {d}/client_ed25519\n  UserKnownHostsFile {d}/known_hosts\n"
        ),
    )
    .unwrap();
    let cfg = lab.bastion.path("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host bastion\n  HostName {BASTION}\n  Port 2222\n  User root\n  ProxyJump none\n\
             Host gw* !gw-direct\n  HostName {TARGET}\n  Port 2222\n  ProxyJump bastion\n  ConnectTimeout 3\n\
             Host gw-direct\n  HostName {TARGET}\n  Port 2222\n\
             Include {}\n",
            common.display()
        ),
    )
    .unwrap();
    let inv = dwprov::inventory::parse(
        "all:\n  hosts:\n    edge1: {address: gw1}\n    gw2: {address: 10.77.2.2}\n    \
         gw-direct: {address: gw-direct}\n    gw3: {address: gw3, ssh: {port: 2223}}\n",
        std::path::Path::new("/nonexistent/inv.yaml"),
    )
    .unwrap();
    let opts = ConnectOptions {
        accept_new_host_keys: false,
        ssh_config: Some(cfg.clone()),
    };
    let connect = |name: &str| {
        let h = inv.host(name).unwrap();
        in_netns(&lab.client_ns, || {
            dwprov::transport::connect(&h.connection, &h.name, &opts)
        })
    };
    // `address: gw1` is the ssh-config alias; `gw2` matches by inventory name.
    for name in ["edge1", "gw2"] {
        let mut t = connect(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = t.run_script("ip -o -4 addr show\n").unwrap();
        assert!(
            out.stdout_str().contains(TARGET),
            "{name}: {}",
            out.stdout_str()
        );
    }
    // Excluded by `!gw-direct`: no ProxyJump, and the target is unreachable directly.
    let (kind, msg) = expect_err(connect("gw-direct"));
    assert_eq!(kind, TransportKind::Connect, "{msg}");
    assert!(!msg.contains("jump host"), "{msg}");
    // The inventory's port beats the config's.
    let (kind, msg) = expect_err(connect("gw3"));
    assert_eq!(kind, TransportKind::Connect, "{msg}");
    assert!(
        msg.contains("10.77.2.2:2223") && msg.contains("through jump host bastion"),
        "{msg}"
    );
    // A bad value in the config names file and line.
    fs::write(&cfg, "Host *\n  Port none\n").unwrap();
    let (_, msg) = expect_err(connect("edge1"));
    assert!(
        msg.contains(&format!("{}:2: bad port `none`", cfg.display())),
        "{msg}"
    );
}
