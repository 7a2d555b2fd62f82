//! Running scripts on a gateway: over SSH (ssh2) or on this machine.
//!
//! Every remote action is a shell script sent on **stdin** of a fixed remote
//! command (`/bin/sh -s`, or `sudo -n /bin/sh -s`): nothing from the inventory
//! is ever spliced into the SSH exec line, and payloads (ip -batch,
//! iptables-restore) travel as quoted heredocs inside the script.
use crate::error::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

pub mod local;
pub mod ssh;

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

/// An open connection to one host. One per host for a whole run.
pub trait Transport: Send {
    /// Run `script` with a POSIX shell on the host (as root: via `sudo -n`
    /// when logged in as another user) and wait for it to end.
    fn run_script(&mut self, script: &str) -> Result<Output>;
    /// The inventory name of the host, for messages.
    fn host(&self) -> &str;
    /// How many scripts (round trips) this connection has run.
    fn round_trips(&self) -> usize;
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
