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

/// How to reach a host, from the inventory (and later ~/.ssh/config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Connection {
    Ssh(SshTarget),
    /// Run on this machine (dwprov on the gateway itself).
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshTarget {
    /// Inventory name, for messages and known_hosts fallbacks.
    pub host: String,
    /// Address or DNS name to connect to.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to verify against (default ~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Per-call timeout for blocking SSH operations.
    pub timeout: Duration,
}

/// Options that come from the command line rather than the inventory.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Record unknown host keys instead of refusing (like OpenSSH's accept-new).
    pub accept_new_host_keys: bool,
}

/// Open a connection of the kind `conn` says.
pub fn connect(conn: &Connection, host: &str, opts: &ConnectOptions) -> Result<Box<dyn Transport>> {
    match conn {
        Connection::Local => Ok(Box::new(local::LocalTransport::new(host))),
        Connection::Ssh(t) => Ok(Box::new(ssh::SshTransport::connect(t, opts)?)),
    }
}
