//! SSH transport on libssh2 (the ssh2 crate), secure by default.
//!
//! * Host keys are verified against known_hosts before anything else
//!   (OpenSSH semantics, see [`known_hosts`]); unknown keys are refused unless
//!   `--accept-new-host-keys`, changed keys are always refused.
//! * Auth: `identity_file`, then ssh-agent, then `~/.ssh/id_{ed25519,ecdsa,rsa}`.
//! * Every script goes to the stdin of a fixed command (`/bin/sh -s`, or
//!   `sudo -n /bin/sh -s`), pumped in non-blocking mode so that stdin, stdout
//!   and stderr all flow at once; `timeout` bounds every wait (it is the
//!   longest silence tolerated from the host).
//! * Settings missing from the inventory come from the ssh config
//!   ([`config`], [`resolve`]); bastions (`ProxyJump`) are reached with a
//!   `direct-tcpip` channel pumped through a socket pair ([`jump`]), and the
//!   target's host key is verified like any other.
//! * `ServerAliveInterval` turns on keep-alives, sent while waiting.
use super::{ConnectOptions, Output, SshTarget, Transport, MAX_STDERR, MAX_STDOUT};
use crate::error::{Error, Result, TransportKind};
use ssh2::{ErrorCode, MethodType, Session};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod config;
pub mod jump;
pub mod known_hosts;
pub mod resolve;
use known_hosts::{Check, KnownHosts};
use resolve::home_dir;
pub use resolve::Endpoint;

/// libssh2's LIBSSH2_ERROR_EAGAIN.
const EAGAIN: i32 = -37;
/// libssh2's LIBSSH2_ERROR_TIMEOUT.
const ETIMEOUT: i32 = -9;

/// The fixed remote command for `user`: nothing from the inventory goes in it.
pub fn remote_command(user: &str) -> &'static str {
    if user == "root" {
        "/bin/sh -s"
    } else {
        "sudo -n /bin/sh -s"
    }
}

/// Where client keys come from besides `identity_file`.
#[derive(Debug, Clone, Default)]
pub struct AuthSources {
    /// ssh-agent socket (`SSH_AUTH_SOCK`); `None`: no agent.
    pub agent_socket: Option<PathBuf>,
    /// Keys tried last, when they exist (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`).
    pub default_keys: Vec<PathBuf>,
    /// Ask for passphrases of encrypted keys (only when stdin is a terminal).
    pub prompt_passphrase: bool,
}

impl AuthSources {
    /// What an interactive `ssh` would use: `SSH_AUTH_SOCK`, `~/.ssh/id_*`.
    pub fn from_env() -> AuthSources {
        let agent_socket = std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let default_keys = home_dir()
            .map(|h| {
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|k| h.join(".ssh").join(k))
                    .collect()
            })
            .unwrap_or_default();
        AuthSources {
            agent_socket,
            default_keys,
            prompt_passphrase: true,
        }
    }
}

/// The known_hosts file used for `t`: its own, or `~/.ssh/known_hosts`.
pub fn known_hosts_path(t: &Endpoint) -> Result<PathBuf> {
    if let Some(p) = &t.known_hosts {
        return Ok(p.clone());
    }
    home_dir().map(|h| h.join(".ssh").join("known_hosts")).ok_or_else(|| {
        terr(
            &t.host,
            TransportKind::HostKey,
            "cannot locate ~/.ssh/known_hosts: HOME is not set; set known_hosts for this host in the inventory".into(),
        )
    })
}

pub(crate) fn terr(host: &str, kind: TransportKind, message: String) -> Error {
    Error::Transport {
        host: host.to_string(),
        kind,
        message,
    }
}

pub struct SshTransport {
    host: String,
    user: String,
    /// `address:port`, for messages.
    peer: String,
    session: Session,
    /// A duplicate of the session's socket, to wait for readiness.
    sock: OwnedFd,
    timeout: Duration,
    /// Keep-alives configured (`ServerAliveInterval`): send them while waiting.
    keepalive: bool,
    round_trips: usize,
    /// Set after a timeout or channel failure: the session cannot be trusted.
    broken: Option<String>,
    /// The bastion pump(s) carrying the session; dropped last.
    _pump: Option<jump::Pump>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("peer", &self.peer)
            .field("round_trips", &self.round_trips)
            .finish_non_exhaustive()
    }
}

impl SshTransport {
    /// Connect, verify the host key, authenticate (agent and default keys from the environment).
    pub fn connect(t: &SshTarget, opts: &ConnectOptions) -> Result<Self> {
        Self::connect_with(t, opts, &AuthSources::from_env())
    }

    /// [`SshTransport::connect`] with explicit auth sources: ssh config
    /// applied (as `opts` says), then [`SshTransport::connect_endpoint`].
    pub fn connect_with(t: &SshTarget, opts: &ConnectOptions, auth: &AuthSources) -> Result<Self> {
        let cfg = resolve::load_config(opts, &t.host)?;
        let ep = resolve::resolve(t, &cfg)?;
        Self::connect_endpoint(&ep, opts, auth)
    }

    /// Connect to a resolved endpoint, through its bastions if any.
    pub fn connect_endpoint(
        ep: &Endpoint,
        opts: &ConnectOptions,
        auth: &AuthSources,
    ) -> Result<Self> {
        let link = open_link(ep, &ep.jumps, opts, auth)?;
        link.session.set_blocking(false);
        let peer = if ep.jumps.is_empty() {
            peer_label(&ep.address, ep.port)
        } else {
            format!(
                "{} (via {})",
                peer_label(&ep.address, ep.port),
                ep.jumps
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(SshTransport {
            host: ep.host.clone(),
            user: ep.user.clone(),
            peer,
            session: link.session,
            sock: link.fd,
            timeout: ep.timeout,
            keepalive: ep.server_alive_interval.is_some(),
            round_trips: 0,
            broken: None,
            _pump: link.pump,
        })
    }

    /// The fixed command scripts are fed to on this connection.
    pub fn remote_command(&self) -> &'static str {
        remote_command(&self.user)
    }

    fn err(&self, kind: TransportKind, message: String) -> Error {
        terr(&self.host, kind, message)
    }

    /// Wait until the socket is ready in the direction libssh2 is blocked
    /// on, or `deadline` passes (→ Timeout error naming `what`).
    fn wait(&self, deadline: Instant, what: &str) -> Result<()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(self.err(
                TransportKind::Timeout,
                format!(
                    "{} went silent for {}s while {what}; raise the host's timeout if the script legitimately runs that long without output",
                    self.peer,
                    self.timeout.as_secs_f32()
                ),
            ));
        }
        let dirs = self.session.block_directions();
        let inbound = matches!(
            dirs,
            ssh2::BlockDirections::Inbound | ssh2::BlockDirections::Both
        );
        let outbound = matches!(
            dirs,
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        );
        // Cap each wait so that a readiness we cannot see (data libssh2
        // already buffered) costs at most a few milliseconds.
        let slice = (deadline - now).min(Duration::from_millis(50));
        if self.keepalive {
            // Due ones only; EAGAIN is fine: libssh2 finishes it on the next call.
            let _ = self.session.keepalive_send();
        }
        quickack(self.sock.as_raw_fd());
        poll_fd(self.sock.as_raw_fd(), inbound || !outbound, outbound, slice);
        Ok(())
    }

    /// Retry a libssh2 call that may return EAGAIN until it completes or the timeout passes.
    fn nb<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> std::result::Result<T, ssh2::Error>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == ErrorCode::Session(EAGAIN) => self.wait(deadline, what)?,
                Err(e) => {
                    return Err(self.err(
                        TransportKind::Channel,
                        format!("{}: failed to {what}: {e}", self.peer),
                    ))
                }
            }
        }
    }

    fn run_inner(&self, script: &str, watch: &mut dyn super::Watch) -> Result<Output> {
        let cmd = self.remote_command();
        let mut ch = self.nb("open a session channel", || self.session.channel_session())?;
        self.nb(&format!("start `{cmd}`"), || ch.exec(cmd))?;

        // A watch that holds stdin sends its reply after the script.
        let mut input = std::borrow::Cow::Borrowed(script.as_bytes());
        let mut replied = !watch.holds_stdin();
        let (mut written, mut eof_sent) = (0usize, false);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (mut out_done, mut err_done) = (false, false);
        let mut buf = vec![0u8; 64 * 1024];
        let mut err_stream = ch.stderr();
        let mut deadline = Instant::now() + self.timeout;
        loop {
            let mut progress = false;
            // stdin: write what the window takes, then EOF.
            if written < input.len() {
                let end = (written + 32 * 1024).min(input.len());
                match ch.write(&input[written..end]) {
                    Ok(n) => {
                        written += n;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // The window stays shut when the remote shell exited
                        // without reading all of its script (`exit` early):
                        // once the channel is closed, nothing will read the rest.
                        if out_done && err_done && ch.wait_close().is_ok() {
                            written = input.len();
                            eof_sent = true;
                        }
                    }
                    Err(e) => {
                        if ch.eof() {
                            // The remote shell exited without reading all of its
                            // script (e.g. `exit` early): not our failure.
                            written = input.len();
                            eof_sent = true;
                        } else {
                            return Err(self.err(
                                TransportKind::Channel,
                                format!("{}: sending the script failed: {e}", self.peer),
                            ));
                        }
                    }
                }
            } else if !replied {
                if let Some(more) = watch.reply() {
                    input.to_mut().extend_from_slice(&more);
                    replied = true;
                    progress = true;
                } else if out_done && err_done {
                    // The script ended without waiting for it.
                    replied = true;
                }
            } else if !eof_sent {
                match ch.send_eof() {
                    Ok(()) => {
                        eof_sent = true;
                        progress = true;
                    }
                    Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {}
                    Err(_) if ch.eof() => eof_sent = true,
                    Err(e) => {
                        return Err(self.err(
                            TransportKind::Channel,
                            format!("{}: closing the script's stdin failed: {e}", self.peer),
                        ))
                    }
                }
            }
            // stdout and stderr: drain whatever has arrived.
            for (done, sink, is_err) in [
                (&mut out_done, &mut stdout, false),
                (&mut err_done, &mut stderr, true),
            ] {
                while !*done {
                    let r = if is_err {
                        err_stream.read(&mut buf)
                    } else {
                        ch.read(&mut buf)
                    };
                    match r {
                        Ok(0) => *done = true,
                        Ok(n) => {
                            let at = sink.len();
                            sink.extend_from_slice(&buf[..n]);
                            progress = true;
                            let (limit, stream) = if is_err {
                                (MAX_STDERR, "stderr")
                            } else {
                                (MAX_STDOUT, "stdout")
                            };
                            let stop = if sink.len() > limit {
                                Err(super::too_much(&self.host, stream, limit))
                            } else if is_err {
                                Ok(())
                            } else {
                                watch.stdout(sink, at)
                            };
                            if let Err(e) = stop {
                                // Stop reading; closing the channel closes the
                                // remote command's pipes (its next write fails).
                                let _ = ch.close();
                                return Err(e);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            return Err(self.err(
                                TransportKind::Channel,
                                format!(
                                    "{}: reading the script's {} failed: {e}",
                                    self.peer,
                                    if is_err { "stderr" } else { "stdout" }
                                ),
                            ))
                        }
                    }
                }
            }
            if out_done && err_done && eof_sent {
                break;
            }
            if progress {
                deadline = Instant::now() + self.timeout;
            } else {
                let what = if written < input.len() {
                    format!(
                        "sending the script ({written} of {} bytes sent: the remote shell stopped reading it)",
                        input.len()
                    )
                } else if let Some(w) = watch.waiting_for() {
                    format!("running a script: {w}")
                } else if stdout.is_empty() && stderr.is_empty() {
                    "running a script that printed nothing yet (is the login shell's start-up on the gateway, \
                     e.g. ~/.bashrc, slow or waiting?)"
                        .to_string()
                } else {
                    "running a script".to_string()
                };
                self.wait(deadline, &what)?;
            }
        }
        // Both streams are at EOF: close our side, wait for theirs, then read
        // the exit status (never leave a half-open channel to Drop).
        self.nb("close the channel", || ch.close())?;
        self.nb("wait for the channel to close", || ch.wait_close())?;
        let mut status = self.nb("read the exit status", || ch.exit_status())?;
        if let Ok(sig) = ch.exit_signal() {
            if let Some(name) = sig.exit_signal {
                status = 128 + signal_number(&name);
                let _ = write!(stderr, "\n[dwprov: remote shell killed by signal {name}]");
            }
        }
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// An authenticated session and what carries it.
pub(crate) struct Link {
    pub(crate) session: Session,
    /// A duplicate of the session's socket, to wait for readiness.
    pub(crate) fd: OwnedFd,
    /// The pump carrying the session through a bastion (direct TCP: none).
    pub(crate) pump: Option<jump::Pump>,
}

/// Connect to `ep` (through the bastions `via`, outermost first), verify
/// its host key against its own known_hosts name, authenticate.
fn open_link(
    ep: &Endpoint,
    via: &[Endpoint],
    opts: &ConnectOptions,
    auth: &AuthSources,
) -> Result<Link> {
    let host = ep.host.as_str();
    let peer = peer_label(&ep.address, ep.port);
    let kh_path = known_hosts_path(ep)?;
    let kh = KnownHosts::load(&kh_path).map_err(|e| {
        terr(
            host,
            TransportKind::HostKey,
            format!("cannot read known_hosts file {}: {e}", kh_path.display()),
        )
    })?;
    // Through a bastion too: the target's own address and port, as OpenSSH does.
    let kh_name = known_hosts::host_name(&ep.address, ep.port);

    let mut session = Session::new().map_err(|e| {
        terr(
            host,
            TransportKind::Channel,
            format!("cannot create an SSH session: {e}"),
        )
    })?;
    let (fd, addr, pump) = match via.split_last() {
        None => {
            let (stream, addr) = tcp_connect(ep)?;
            let fd = stream
                .try_clone()
                .map(OwnedFd::from)
                .map_err(|e| terr(host, TransportKind::Connect, format!("{peer}: {e}")))?;
            session.set_tcp_stream(stream);
            (fd, Some(addr), None)
        }
        Some((bastion, before)) => {
            let b =
                open_link(bastion, before, opts, auth).map_err(|e| jump::through(e, bastion))?;
            let (stream, pump) = jump::tunnel(b, bastion, ep)?;
            let fd = stream
                .try_clone()
                .map(OwnedFd::from)
                .map_err(|e| terr(host, TransportKind::Connect, format!("{peer}: {e}")))?;
            session.set_tcp_stream(stream);
            (fd, None, Some(pump))
        }
    };
    session.set_blocking(true);
    session.set_timeout(timeout_ms(ep.timeout));

    // Prefer the host-key algorithms of the key types already recorded, or
    // libssh2 picks its own favourite and a known host reads as changed.
    let supported: Vec<&str> = session
        .supported_algs(MethodType::HostKey)
        .unwrap_or_default();
    let recorded_algs = kh.algorithms_for(&kh_name);
    let pref: Vec<&str> = recorded_algs
        .iter()
        .copied()
        .filter(|a| supported.contains(a))
        .collect();
    // Nothing recorded: libssh2's default order, minus host certificates
    // (we verify plain keys only; a certificate would be pinned as a key).
    let setting: Vec<&str> = if pref.is_empty() {
        supported
            .iter()
            .copied()
            .filter(|a| !a.contains("-cert-"))
            .collect()
    } else {
        pref.clone()
    };
    if !setting.is_empty() {
        session
            .method_pref(MethodType::HostKey, &setting.join(","))
            .map_err(|e| {
                terr(
                    host,
                    TransportKind::Channel,
                    format!("cannot set host key algorithms {}: {e}", setting.join(",")),
                )
            })?;
    }

    // Prefer AES ciphers over chacha20-poly1305: with the bundled libssh2,
    // non-blocking reads under load intermittently failed with "transport
    // read" on chacha20 (about 1 run in 25 in the benchmarks).
    for m in [MethodType::CryptCs, MethodType::CryptSc] {
        let _ = session.method_pref(
            m,
            "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,chacha20-poly1305@openssh.com",
        );
    }
    if let Err(e) = session.handshake() {
        return Err(handshake_error(ep, addr, &e, &pref, &kh, &kh_name));
    }

    verify_host_key(ep, opts, &session, &kh, &kh_name, &kh_path)?;
    authenticate(ep, &session, auth)?;
    // Only now: configured before the handshake, the bundled libssh2 failed
    // the key exchange ("Unable to exchange encryption keys") in our tests.
    if let Some(iv) = ep.server_alive_interval {
        session.set_keepalive(true, iv.as_secs().clamp(1, u32::MAX as u64) as u32);
    }
    Ok(Link { session, fd, pump })
}

impl Transport for SshTransport {
    fn run_script(&mut self, script: &str) -> Result<Output> {
        self.run_script_watched(script, &mut super::NoWatch)
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn run_script_watched(&mut self, script: &str, watch: &mut dyn super::Watch) -> Result<Output> {
        if let Some(why) = &self.broken {
            return Err(self.err(
                TransportKind::Channel,
                format!(
                    "{}: connection unusable after an earlier failure ({why}); reconnect",
                    self.peer
                ),
            ));
        }
        self.round_trips += 1;
        let out = match self.run_inner(script, watch) {
            Ok(o) => o,
            Err(e) => {
                match &e {
                    Error::Transport { kind, message, .. }
                        if matches!(kind, TransportKind::Timeout | TransportKind::Channel) =>
                    {
                        self.broken = Some(format!("{kind}: {message}"));
                    }
                    Error::Transport { .. } => {}
                    // Stopped by a limit or a watch: the channel was left
                    // mid-stream, so the session is not reused.
                    other => self.broken = Some(other.to_string()),
                }
                return Err(e);
            }
        };
        if self.user != "root" {
            if let Some(msg) = sudo_failure(&out) {
                return Err(self.err(
                    TransportKind::Sudo,
                    format!(
                        "{}: `sudo -n` refused for user {}: {msg}. dwprov needs root without a password prompt: \
                         give {} NOPASSWD sudo rights (e.g. `{} ALL=(root) NOPASSWD: /bin/sh` in /etc/sudoers.d/dwprov), \
                         or log in as root (user: root in the inventory)",
                        self.peer, self.user, self.user, self.user
                    ),
                ));
            }
        }
        Ok(out)
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn round_trips(&self) -> usize {
        self.round_trips
    }
}

/// Did sudo itself refuse to run the shell (rather than the script failing)?
fn sudo_failure(out: &Output) -> Option<String> {
    if out.status == 0 || !out.stdout.is_empty() {
        return None;
    }
    let err = out.stderr_str();
    const PATTERNS: &[&str] = &[
        "a password is required",
        "a terminal is required",
        "no tty present",
        "is not in the sudoers file",
        "may not run sudo",
        "is not allowed to execute",
        "sudo: not found",
        "sudo: command not found",
    ];
    if PATTERNS.iter().any(|p| err.contains(p)) {
        let line = err
            .lines()
            .find(|l| l.contains("sudo"))
            .unwrap_or(err.trim());
        Some(line.trim().to_string())
    } else {
        None
    }
}

fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    }
}

fn timeout_ms(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

fn peer_label(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Resolve `address` and try each result with `connect_timeout`.
fn tcp_connect(t: &Endpoint) -> Result<(TcpStream, SocketAddr)> {
    let peer = peer_label(&t.address, t.port);
    let addrs: Vec<SocketAddr> = (t.address.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| {
            terr(
                &t.host,
                TransportKind::Connect,
                format!(
                    "cannot resolve {} (port {}): {e}; check `address` of host {} in the inventory",
                    t.address, t.port, t.host
                ),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(terr(
            &t.host,
            TransportKind::Connect,
            format!(
                "{} resolves to no address; check `address` of host {}",
                t.address, t.host
            ),
        ));
    }
    let mut failures = Vec::new();
    let mut all_timeouts = true;
    for a in &addrs {
        match TcpStream::connect_timeout(a, t.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok((s, *a));
            }
            Err(e) => {
                let timed_out = matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                );
                all_timeouts &= timed_out;
                let what = if timed_out {
                    format!("no answer within {}s", t.connect_timeout.as_secs_f32())
                } else {
                    e.to_string()
                };
                failures.push((peer_label(&a.ip().to_string(), a.port()), what));
            }
        }
    }
    let via = if addrs.len() > 1 || addrs[0].ip().to_string() != t.address {
        let each: Vec<String> = failures.iter().map(|(a, w)| format!("{a}: {w}")).collect();
        format!(" (tried {})", each.join("; "))
    } else {
        format!(": {}", failures[0].1)
    };
    if all_timeouts {
        Err(terr(
            &t.host,
            TransportKind::Timeout,
            format!(
                "cannot connect to {peer}{via}: the host is down, a firewall drops the packets, or the address is wrong; \
                 check that {} is reachable from here (raise connect_timeout for slow links)",
                t.address
            ),
        ))
    } else {
        Err(terr(
            &t.host,
            TransportKind::Connect,
            format!(
                "cannot connect to {peer}{via}; check the address and port in the inventory and that sshd runs and listens on port {}",
                t.port
            ),
        ))
    }
}

/// Explain a failed handshake: timeout, not SSH at all, or algorithms we do
/// not share with the host (old gateway, or host keys of other types).
fn handshake_error(
    t: &Endpoint,
    addr: Option<SocketAddr>,
    e: &ssh2::Error,
    pref: &[&str],
    kh: &KnownHosts,
    kh_name: &str,
) -> Error {
    let peer = peer_label(&t.address, t.port);
    if e.code() == ErrorCode::Session(ETIMEOUT) {
        return terr(
            &t.host,
            TransportKind::Timeout,
            format!(
                "{peer} accepted the connection but the SSH handshake did not finish within {}s; is an SSH server listening there?",
                t.timeout.as_secs_f32()
            ),
        );
    }
    let probe = match addr {
        Some(addr) => probe_server(addr, t.connect_timeout, t.timeout),
        // Through a bastion: a probe would need another channel; say what we know.
        None => Err(format!(
            "through jump host {}",
            t.jumps.last().map_or("?", |j| j.name.as_str())
        )),
    };
    let ours = |m: MethodType| -> Vec<&'static str> {
        Session::new()
            .ok()
            .and_then(|s| s.supported_algs(m).ok())
            .unwrap_or_default()
    };
    match probe {
        Ok(server) => {
            let common = |theirs: &[String], mine: &[&str]| {
                theirs.iter().any(|a| mine.contains(&a.as_str()))
            };
            let hk_ours = ours(MethodType::HostKey);
            if !common(&server.host_key, &hk_ours) {
                return terr(
                    &t.host,
                    TransportKind::Connect,
                    format!(
                        "old gateway: {peer} offers only host key algorithms {} (SHA-1 `ssh-rsa` or DSA signatures), \
                         which this build refuses as insecure; on the gateway, create a modern host key \
                         (`ssh-keygen -A` adds ed25519/ecdsa) and enable it in sshd_config, or upgrade OpenSSH",
                        server.host_key.join(",")
                    ),
                );
            }
            if !pref.is_empty() && !common(&server.host_key, pref) {
                let lines: Vec<String> = kh
                    .keys_for(kh_name)
                    .map(|e| {
                        format!(
                            "{} line {}: {} {}",
                            kh.path.display(),
                            e.line,
                            e.key_type,
                            e.fingerprint()
                        )
                    })
                    .collect();
                return terr(
                    &t.host,
                    TransportKind::HostKey,
                    format!(
                        "{peer} no longer offers the host key type(s) recorded for {kh_name} ({}); it offers {}. \
                         Its host keys were replaced — or someone is intercepting the connection. \
                         Verify the new key with the gateway's administrator, then remove the old entry \
                         (`ssh-keygen -R '{kh_name}' -f {}`) and reconnect with --accept-new-host-keys",
                        lines.join("; "),
                        server.host_key.join(","),
                        kh.path.display()
                    ),
                );
            }
            for (what, theirs, m) in [
                ("key exchange", &server.kex, MethodType::Kex),
                ("cipher", &server.cipher, MethodType::CryptCs),
                ("MAC", &server.mac, MethodType::MacCs),
            ] {
                if !common(theirs, &ours(m)) {
                    return terr(
                        &t.host,
                        TransportKind::Connect,
                        format!(
                            "old gateway: {peer} offers only {what} algorithms {}, none of which this build accepts \
                             (SHA-1 and other legacy algorithms are disabled); upgrade OpenSSH on the gateway",
                            theirs.join(",")
                        ),
                    );
                }
            }
            terr(
                &t.host,
                TransportKind::Connect,
                format!("SSH handshake with {peer} ({}) failed: {e}", server.banner),
            )
        }
        Err(why) => terr(
            &t.host,
            TransportKind::Connect,
            format!("SSH handshake with {peer} failed: {e} ({why})"),
        ),
    }
}

/// What a server offers in its first KEXINIT.
#[derive(Debug, Default)]
struct ServerAlgs {
    banner: String,
    kex: Vec<String>,
    host_key: Vec<String>,
    cipher: Vec<String>,
    mac: Vec<String>,
}

/// Open a second connection and read the server's banner and KEXINIT
/// (both sent in clear before any key exchange).
fn probe_server(
    addr: SocketAddr,
    connect_timeout: Duration,
    timeout: Duration,
) -> std::result::Result<ServerAlgs, String> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| e.to_string())?;
    let t = Some(timeout.max(Duration::from_millis(100)));
    s.set_read_timeout(t).map_err(|e| e.to_string())?;
    s.set_write_timeout(t).map_err(|e| e.to_string())?;
    s.write_all(b"SSH-2.0-dwprov_probe\r\n")
        .map_err(|e| e.to_string())?;
    // Banner: lines until one starts with "SSH-".
    let mut banner = String::new();
    for _ in 0..32 {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 1024 {
            s.read_exact(&mut byte)
                .map_err(|e| format!("no SSH banner: {e}"))?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let l = String::from_utf8_lossy(&line).trim_end().to_string();
        if l.starts_with("SSH-") {
            banner = l;
            break;
        }
    }
    if banner.is_empty() {
        return Err("the server sent no SSH banner: is this an SSH server?".into());
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if !(6..=256 * 1024).contains(&len) {
        return Err(format!("bad packet length {len}"));
    }
    let mut pkt = vec![0u8; len];
    s.read_exact(&mut pkt).map_err(|e| e.to_string())?;
    let pad = pkt[0] as usize;
    let payload = pkt.get(1..len.saturating_sub(pad)).ok_or("bad padding")?;
    if payload.first() != Some(&20) {
        return Err("first packet is not KEXINIT".into());
    }
    let mut p = payload.get(17..).ok_or("short KEXINIT")?;
    let mut lists = Vec::new();
    for _ in 0..6 {
        let n = u32::from_be_bytes(p.get(..4).ok_or("short KEXINIT")?.try_into().unwrap()) as usize;
        let v = p.get(4..4 + n).ok_or("short KEXINIT")?;
        lists.push(
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect::<Vec<_>>(),
        );
        p = &p[4 + n..];
    }
    let mut it = lists.into_iter();
    Ok(ServerAlgs {
        banner,
        kex: it.next().unwrap_or_default(),
        host_key: it.next().unwrap_or_default(),
        cipher: it.next().unwrap_or_default(),
        mac: {
            it.next();
            it.next().unwrap_or_default()
        },
    })
}

/// Refuse unknown (unless accept-new) and changed host keys; record accepted new ones.
fn verify_host_key(
    t: &Endpoint,
    opts: &ConnectOptions,
    session: &Session,
    kh: &KnownHosts,
    kh_name: &str,
    kh_path: &Path,
) -> Result<()> {
    let host = t.host.as_str();
    let peer = peer_label(&t.address, t.port);
    let (blob, _) = session.host_key().ok_or_else(|| {
        terr(
            host,
            TransportKind::HostKey,
            format!("{peer} presented no host key"),
        )
    })?;
    let blob = blob.to_vec();
    let key_type = known_hosts::blob_key_type(&blob).unwrap_or_else(|| "unknown".into());
    let fp = known_hosts::fingerprint(&blob);
    let file = kh_path.display();
    let describe = |entries: &[known_hosts::Entry]| -> String {
        entries
            .iter()
            .map(|e| format!("{file}:{} ({} {})", e.line, e.key_type, e.fingerprint()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kh.check(kh_name, &blob) {
        Check::Match(_) => Ok(()),
        Check::NotFound if opts.accept_new_host_keys => {
            known_hosts::append(kh_path, kh_name, &blob).map_err(|e| {
                terr(
                    host,
                    TransportKind::HostKey,
                    format!("cannot record the host key of {peer} in {file}: {e}"),
                )
            })?;
            Ok(())
        }
        Check::NotFound => Err(terr(
            host,
            TransportKind::HostKey,
            format!(
                "host key of {peer} is unknown: {key_type} {fp} (not in {file}); nothing was run. \
                 Verify this fingerprint on the gateway (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then rerun with \
                 --accept-new-host-keys, or record it with `ssh-keyscan -p {} {} >> {file}`",
                short_type(&key_type),
                t.port,
                t.address
            ),
        )),
        Check::Mismatch(old) => Err(terr(
            host,
            TransportKind::HostKey,
            format!(
                "HOST KEY MISMATCH for {peer}: it presents {key_type} {fp}, but {} is recorded. \
                 Someone may be intercepting the connection (man-in-the-middle), or the host keys were regenerated. \
                 Nothing was run. Verify the new key with the gateway's administrator; only then remove the old entry \
                 (`ssh-keygen -R '{kh_name}' -f {file}`) and reconnect with --accept-new-host-keys",
                describe(&old)
            ),
        )),
        Check::OtherTypes(old) => Err(terr(
            host,
            TransportKind::HostKey,
            format!(
                "{peer} presents a {key_type} host key ({fp}) but only other key types are recorded for it: {}. \
                 Nothing was run. Verify the new key with the gateway's administrator, then remove the old entries \
                 (`ssh-keygen -R '{kh_name}' -f {file}`) and reconnect with --accept-new-host-keys",
                describe(&old)
            ),
        )),
        Check::Revoked(line) => Err(terr(
            host,
            TransportKind::HostKey,
            format!("{peer} presents {key_type} {fp}, which is marked @revoked in {file}:{line}; refusing to connect"),
        )),
    }
}

fn short_type(key_type: &str) -> &str {
    match key_type {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        "ssh-dss" => "dsa",
        t if t.starts_with("ecdsa-") => "ecdsa",
        t => t,
    }
}

/// Is this private key file protected by a passphrase?
fn key_is_encrypted(text: &str) -> bool {
    if text.contains("ENCRYPTED") {
        // PEM: "Proc-Type: 4,ENCRYPTED" or "BEGIN ENCRYPTED PRIVATE KEY".
        return true;
    }
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    let Some(start) = text.find(BEGIN) else {
        return false;
    };
    let body: String = text[start + BEGIN.len()..]
        .lines()
        .take_while(|l| !l.starts_with("-----END"))
        .collect::<String>()
        .split_whitespace()
        .collect();
    let Some(raw) = known_hosts::base64_decode(&body) else {
        return false;
    };
    const MAGIC: &[u8] = b"openssh-key-v1\0";
    let Some(rest) = raw.strip_prefix(MAGIC) else {
        return false;
    };
    let n = match rest.get(..4) {
        Some(b) => u32::from_be_bytes(b.try_into().unwrap()) as usize,
        None => return false,
    };
    rest.get(4..4 + n).is_some_and(|c| c != b"none")
}

fn authenticate(t: &Endpoint, session: &Session, auth: &AuthSources) -> Result<()> {
    let user = t.user.as_str();
    let peer = peer_label(&t.address, t.port);
    let mut tried: Vec<String> = Vec::new();
    let stdin_tty = {
        use std::io::IsTerminal;
        io::stdin().is_terminal()
    };

    // The "none" request tells which methods the server would accept.
    let methods = match session.auth_methods(user) {
        Ok(m) => m.to_string(),
        Err(e) if e.code() == ErrorCode::Session(ETIMEOUT) => {
            return Err(terr(
                &t.host,
                TransportKind::Timeout,
                format!(
                    "{peer}: no answer to the authentication request within {}s",
                    t.timeout.as_secs_f32()
                ),
            ))
        }
        Err(_) => String::new(),
    };
    if session.authenticated() {
        return Ok(());
    }

    let try_file = |path: &Path, explicit: bool, tried: &mut Vec<String>| -> bool {
        let label = if explicit {
            format!("identity file {}", path.display())
        } else {
            format!("default key {}", path.display())
        };
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                if explicit || e.kind() != io::ErrorKind::NotFound {
                    tried.push(format!("{label}: cannot read it: {e}"));
                }
                return false;
            }
        };
        if key_is_encrypted(&text) {
            if !(auth.prompt_passphrase && stdin_tty) {
                tried.push(format!(
                    "{label}: encrypted, and no terminal to ask its passphrase (load it with `ssh-add` and use ssh-agent)"
                ));
                return false;
            }
            for attempt in 1..=3 {
                let pass = match rpassword::prompt_password(format!(
                    "Passphrase for {}: ",
                    path.display()
                )) {
                    Ok(p) => p,
                    Err(e) => {
                        tried.push(format!("{label}: cannot read the passphrase: {e}"));
                        return false;
                    }
                };
                match session.userauth_pubkey_file(user, None, path, Some(&pass)) {
                    Ok(()) if session.authenticated() => return true,
                    Ok(()) => {}
                    // LIBSSH2_ERROR_FILE: could not decrypt.
                    Err(e) if e.code() == ErrorCode::Session(-16) && attempt < 3 => {
                        eprintln!("Wrong passphrase, try again.");
                        continue;
                    }
                    Err(e) => {
                        tried.push(format!("{label}: {}", describe_key_error(&e)));
                        return false;
                    }
                }
                tried.push(format!("{label}: rejected by the server"));
                return false;
            }
            return false;
        }
        match session.userauth_pubkey_file(user, None, path, None) {
            Ok(()) if session.authenticated() => true,
            Ok(()) => {
                tried.push(format!("{label}: rejected by the server"));
                false
            }
            Err(e) => {
                tried.push(format!("{label}: {}", describe_key_error(&e)));
                false
            }
        }
    };

    if let Some(p) = &t.identity_file {
        if try_file(p, true, &mut tried) {
            return Ok(());
        }
    }

    match &auth.agent_socket {
        None => tried.push("ssh-agent: none (SSH_AUTH_SOCK not set)".into()),
        Some(sock) => {
            let r = (|| -> std::result::Result<Option<usize>, ssh2::Error> {
                let mut agent = session.agent()?;
                agent.set_identity_path(sock)?;
                agent.connect()?;
                agent.list_identities()?;
                let ids = agent.identities()?;
                for id in &ids {
                    if agent.userauth(user, id).is_ok() && session.authenticated() {
                        let _ = agent.disconnect();
                        return Ok(None);
                    }
                }
                let _ = agent.disconnect();
                Ok(Some(ids.len()))
            })();
            match r {
                Ok(None) => return Ok(()),
                Ok(Some(0)) => tried.push(format!("ssh-agent {}: holds no keys", sock.display())),
                Ok(Some(n)) => tried.push(format!(
                    "ssh-agent {}: {n} key(s), all rejected",
                    sock.display()
                )),
                Err(e) => tried.push(format!(
                    "ssh-agent {}: unusable: {}",
                    sock.display(),
                    e.message()
                )),
            }
        }
    }

    let mut any_default = false;
    for k in &auth.default_keys {
        if k.exists() {
            any_default = true;
            if try_file(k, false, &mut tried) {
                return Ok(());
            }
        }
    }
    if !any_default {
        let names: Vec<String> = auth
            .default_keys
            .iter()
            .map(|k| k.display().to_string())
            .collect();
        tried.push(if names.is_empty() {
            "default keys: none to try".into()
        } else {
            format!("default keys: none present ({})", names.join(", "))
        });
    }

    let accepts = if methods.is_empty() {
        String::new()
    } else {
        format!(" The server accepts: {methods}.")
    };
    Err(terr(
        &t.host,
        TransportKind::Auth,
        format!(
            "authentication as {user} on {peer} failed. Tried:\n    - {}\n   {accepts} Install your public key in {user}'s authorized_keys on the gateway \
             (ssh-copy-id), or set identity_file for this host in the inventory",
            tried.join("\n    - ")
        ),
    ))
}

fn describe_key_error(e: &ssh2::Error) -> String {
    match e.code() {
        // LIBSSH2_ERROR_AUTHENTICATION_FAILED / PUBLICKEY_UNVERIFIED
        ErrorCode::Session(-18) | ErrorCode::Session(-19) => "rejected by the server".into(),
        ErrorCode::Session(-16) => format!("cannot load the key: {}", e.message()),
        ErrorCode::Session(ETIMEOUT) => "no answer from the server (timeout)".into(),
        _ => e.message().to_string(),
    }
}

/// Wait (at most `dur`) for `fd` to become readable/writable.
pub(crate) fn poll_fd(fd: RawFd, read: bool, write: bool, dur: Duration) {
    poll_fds(&[(fd, read, write)], dur);
}

/// Wait (at most `dur`) for any of `(fd, read, write)` to become ready.
pub(crate) fn poll_fds(fds: &[(RawFd, bool, bool)], dur: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, r, w)| libc::pollfd {
            fd,
            events: if r { libc::POLLIN } else { 0 } | if w { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    let ms = dur.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: valid pollfds, for the duration of the call.
    unsafe {
        libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms);
    }
}

/// ACK what has arrived now instead of after the delayed-ACK timer (40 ms
/// on Linux). sshd sends non-interactive sessions with Nagle on: right after
/// auth it sends its host keys, and its channel-open confirmation then waits
/// for our ACK of those, which the kernel would delay, costing 40 ms per
/// connection. Quick-ACK mode does not stick, so this runs before each wait.
fn quickack(fd: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let one: libc::c_int = 1;
        // SAFETY: a valid fd and option buffer; failure only costs latency.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_commands() {
        assert_eq!(remote_command("root"), "/bin/sh -s");
        assert_eq!(remote_command("admin"), "sudo -n /bin/sh -s");
    }

    #[test]
    fn sudo_detection() {
        let o = |status, out: &str, err: &str| Output {
            status,
            stdout: out.into(),
            stderr: err.into(),
        };
        assert!(sudo_failure(&o(1, "", "sudo: a password is required\n")).is_some());
        assert!(sudo_failure(&o(127, "", "sh: 1: sudo: not found\n")).is_some());
        assert!(sudo_failure(&o(0, "", "sudo: a password is required\n")).is_none());
        assert!(sudo_failure(&o(1, "x", "sudo: a password is required\n")).is_none());
        assert!(sudo_failure(&o(2, "", "ip: RTNETLINK answers: File exists\n")).is_none());
    }

    #[test]
    fn encrypted_key_detection() {
        assert!(key_is_encrypted(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        ));
        let mk = |cipher: &str| {
            let mut raw = b"openssh-key-v1\0".to_vec();
            raw.extend_from_slice(&(cipher.len() as u32).to_be_bytes());
            raw.extend_from_slice(cipher.as_bytes());
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
                known_hosts::base64_encode(&raw, true)
            )
        };
        assert!(key_is_encrypted(&mk("aes256-ctr")));
        assert!(!key_is_encrypted(&mk("none")));
    }
}
