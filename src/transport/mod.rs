//! Running scripts on a gateway: over SSH (ssh2) or on this machine.
//!
//! Every remote action is a shell script sent on **stdin** of a fixed remote
//! command (`/bin/sh -s`, or `sudo -n /bin/sh -s`): nothing from the inventory
//! is ever spliced into the SSH exec line, and payloads (ip -batch,
//! iptables-restore) travel as quoted heredocs inside the script.
//!
//! What a host prints is bounded: every run stops reading (and fails) past
//! [`MAX_STDOUT`] / [`MAX_STDERR`], and a [`Watch`] sees stdout as it
//! arrives, so a caller that knows the framing (gather) can stop a flood
//! early with a message naming the command that printed it.
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

pub mod local;
pub mod ssh;

/// Unix user name to log in as: `[a-z_][a-z0-9_-]*`, at most 32
/// characters. The transport checks the users it finds itself (an ssh
/// config's `User`), and the inventory's `user` is this check.
pub fn user_name(s: &str) -> std::result::Result<(), String> {
    let mut chars = s.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 32;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid user name (a lowercase letter or `_`, then lowercase letters, digits, `_`, `-`)",
            crate::escape::value(s)
        ))
    }
}

/// What a script printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Most stdout one script may send before the run is stopped as a failure
/// (a converged 16,000-prefix gateway gathers about 3 MB).
pub const MAX_STDOUT: usize = 256 << 20;
/// Most stderr one script may send.
pub const MAX_STDERR: usize = 16 << 20;

/// Sees a script's stdout while it arrives and may stop the run.
pub trait Watch {
    /// `stdout` is everything received so far, `new` where the latest chunk
    /// starts. An error stops the run: the transport stops reading, ends the
    /// remote command as far as it can, and returns this error.
    fn stdout(&mut self, stdout: &[u8], new: usize) -> Result<()>;
    /// What the script is doing now, for a timeout message (e.g. the
    /// command whose section began and has not ended).
    fn waiting_for(&self) -> Option<String> {
        None
    }
    /// Keep the script's stdin open after the script: the watch has more
    /// to send ([`Watch::reply`]) once it has seen what it waits for. The
    /// shell reads its script from stdin, so such a script must `exit`
    /// itself where it may end before the reply.
    fn holds_stdin(&self) -> bool {
        false
    }
    /// With [`Watch::holds_stdin`]: what to send on stdin after the
    /// script, once known (asked after each chunk of stdout); stdin closes
    /// after it, or when the script ends first.
    fn reply(&mut self) -> Option<Vec<u8>> {
        None
    }
}

/// A [`Watch`] that never stops anything.
pub struct NoWatch;

impl Watch for NoWatch {
    fn stdout(&mut self, _: &[u8], _: usize) -> Result<()> {
        Ok(())
    }
}

/// The error for a run that printed more than `limit` bytes on `stream`.
pub(crate) fn too_much(host: &str, stream: &str, limit: usize) -> Error {
    Error::Invalid {
        message: format!(
            "{host}: a script printed more than {} MiB on {stream}: stopped reading it (nothing more was run)",
            limit >> 20
        ),
        hint: Some("look on the gateway for a tool that prints without end (a loop, a lying wrapper)".into()),
    }
}

/// An open connection to one host. One per host for a whole run.
pub trait Transport: Send {
    /// Run `script` with a POSIX shell on the host (as root: via `sudo -n`
    /// when logged in as another user) and wait for it to end.
    fn run_script(&mut self, script: &str) -> Result<Output>;
    /// [`Transport::run_script`], with `watch` shown stdout as it arrives
    /// (both transports here stream; this default, for stand-ins, shows it
    /// once at the end).
    fn run_script_watched(&mut self, script: &str, watch: &mut dyn Watch) -> Result<Output> {
        let out = self.run_script(script)?;
        watch.stdout(&out.stdout, 0)?;
        Ok(out)
    }
    /// The inventory name of the host, for messages.
    fn host(&self) -> &str;
    /// How many scripts (round trips) this connection has run.
    fn round_trips(&self) -> usize;
    /// The longest silence tolerated from the host (the inventory's
    /// `ssh.timeout`): remote watchdogs are set well inside it, so the host
    /// reports a stalled command before the controller gives up on it.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
}

/// How to reach a host, from the inventory (ssh config fills what it leaves out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Connection {
    Ssh(SshTarget),
    /// Run on this machine (dwprov on the gateway itself).
    Local,
}

/// SSH settings as the inventory gives them. `None` means "not set in the
/// inventory": the transport then takes the value from the ssh config
/// (`~/.ssh/config` or `-F`), else the default (see [`ssh::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshTarget {
    /// Inventory name, for messages; also matched against ssh-config `Host`.
    pub host: String,
    /// Address or DNS name to connect to, or an ssh-config `Host` alias
    /// (matched like the argument of `ssh`; `HostName` replaces it).
    pub address: String,
    /// Default 22.
    pub port: Option<u16>,
    /// Default `root`.
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to verify against (default ~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// Default 10 s.
    pub connect_timeout: Option<Duration>,
    /// Per-call timeout for blocking SSH operations (dwprov's own; no ssh-config equivalent).
    pub timeout: Duration,
    /// Keep-alive interval (`ServerAliveInterval`); default: none.
    pub server_alive_interval: Option<Duration>,
    /// Bastion to go through (`ProxyJump`).
    pub jump: Option<Jump>,
}

impl SshTarget {
    /// A target with only a name and an address: everything else from the
    /// ssh config or defaults.
    pub fn new(host: &str, address: &str) -> SshTarget {
        SshTarget {
            host: host.to_string(),
            address: address.to_string(),
            port: None,
            user: None,
            identity_file: None,
            known_hosts: None,
            connect_timeout: None,
            timeout: DEFAULT_TIMEOUT,
            server_alive_interval: None,
            jump: None,
        }
    }
}

/// Default of [`SshTarget::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A bastion host (`ssh.jump` in the inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Jump {
    /// Another inventory host: its connection settings (and its own jump).
    Host(Box<SshTarget>),
    /// `[user@]host[:port]` (comma-separated: a chain, outermost first), each
    /// host possibly an ssh-config alias.
    Spec(String),
}

/// Options that come from the command line rather than the inventory.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Record unknown host keys instead of refusing (like OpenSSH's accept-new).
    pub accept_new_host_keys: bool,
    /// ssh config file (`-F FILE`); `None`: `~/.ssh/config` when it exists;
    /// `Some("none")`: no ssh config at all (like `ssh -F none`).
    pub ssh_config: Option<PathBuf>,
}

/// Open a connection of the kind `conn` says.
pub fn connect(conn: &Connection, host: &str, opts: &ConnectOptions) -> Result<Box<dyn Transport>> {
    match conn {
        Connection::Local => Ok(Box::new(local::LocalTransport::new(host))),
        Connection::Ssh(t) => Ok(Box::new(ssh::SshTransport::connect(t, opts)?)),
    }
}

#[cfg(test)]
mod tests {
    /// The one user name check (the inventory's `user` is this one).
    #[test]
    fn user_names() {
        for ok in ["root", "_x", "ops-1", &"a".repeat(32)] {
            assert_eq!(super::user_name(ok), Ok(()), "{ok}");
        }
        for bad in ["Root", "1ops", "", "a b", "-x", &"a".repeat(33)] {
            let e = super::user_name(bad).unwrap_err();
            assert!(e.contains("is not a valid user name"), "{bad}: {e}");
        }
        // Shown escaped, as every inventory value in a message.
        assert!(super::user_name("a\nb").is_err());
        let e = super::user_name("a\u{1b}b").unwrap_err();
        assert!(e.contains("`a\\x1bb`") && !e.contains('\u{1b}'), "{e}");
    }
}
