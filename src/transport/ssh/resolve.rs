//! From an inventory [`SshTarget`] to what is actually connected to: ssh
//! config applied, defaults filled in, bastions resolved.
//!
//! Precedence for every setting: the inventory, then the ssh config (first
//! obtained value wins, matched on the inventory `address` and host name),
//! then dwprov's default (user `root`, port 22, connect timeout 10 s).
//! `HostName` replaces the address (the inventory `address` may be an
//! ssh-config alias). The jump comes from `ssh.jump` (`none` disables a
//! configured `ProxyJump`), else from `ProxyJump`.
use super::config::{self, SshConfig};
use super::terr;
use crate::error::{Result, TransportKind};
use crate::transport::{ConnectOptions, Jump, SshTarget};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_USER: &str = "root";
pub const DEFAULT_PORT: u16 = 22;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest chain of bastions followed (a `Host *` with `ProxyJump` that does
/// not exclude the bastion itself would loop forever).
const MAX_HOPS: usize = 8;

/// A host as connected to: every setting decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The inventory host errors are reported for (for a bastion: the host
    /// reached through it).
    pub host: String,
    /// How this endpoint was named (inventory address, alias, jump spec), for messages.
    pub name: String,
    /// What is connected to (`HostName`, else the inventory address).
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub server_alive_interval: Option<Duration>,
    /// Bastions to go through, outermost first (each with empty `jumps`).
    pub jumps: Vec<Endpoint>,
}

pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The ssh config `opts` asks for: `-F FILE`, `none`, or `~/.ssh/config` if present.
pub fn load_config(opts: &ConnectOptions, host: &str) -> Result<SshConfig> {
    let home = home_dir();
    let path = match &opts.ssh_config {
        Some(p) if p.as_os_str() == "none" => return Ok(SshConfig::default()),
        Some(p) => p.clone(),
        None => match &home {
            Some(h) if h.join(".ssh/config").exists() => h.join(".ssh/config"),
            _ => return Ok(SshConfig::default()),
        },
    };
    SshConfig::load(&path, home.as_deref())
        .map_err(|e| terr(host, TransportKind::Connect, format!("ssh config {e}")))
}

/// Apply `cfg` to `t`.
pub fn resolve(t: &SshTarget, cfg: &SshConfig) -> Result<Endpoint> {
    resolve_in(
        t,
        cfg,
        home_dir().as_deref(),
        &[t.address.as_str(), t.host.as_str()],
        0,
    )
}

/// [`resolve`] with an explicit home directory (for `~` in the config).
pub fn resolve_with_home(t: &SshTarget, cfg: &SshConfig, home: Option<&Path>) -> Result<Endpoint> {
    resolve_in(t, cfg, home, &[t.address.as_str(), t.host.as_str()], 0)
}

fn resolve_in(
    t: &SshTarget,
    cfg: &SshConfig,
    home: Option<&Path>,
    names: &[&str],
    depth: usize,
) -> Result<Endpoint> {
    let cerr =
        |e: config::ConfigError| terr(&t.host, TransportKind::Connect, format!("ssh config {e}"));
    if depth > MAX_HOPS {
        return Err(terr(
            &t.host,
            TransportKind::Connect,
            format!(
                "more than {MAX_HOPS} jump hosts in a row to reach {}: a ProxyJump loop? \
                 (exclude the bastion from `Host *` blocks with `!bastion`, or set `ProxyJump none` for it)",
                t.address
            ),
        ));
    }
    let hc = cfg.lookup(names, home).map_err(cerr)?;
    let mut ep = Endpoint {
        host: t.host.clone(),
        name: t.address.clone(),
        address: hc.hostname.clone().unwrap_or_else(|| t.address.clone()),
        port: t.port.or(hc.port).unwrap_or(DEFAULT_PORT),
        user: t
            .user
            .clone()
            .or(hc.user.clone())
            .unwrap_or_else(|| DEFAULT_USER.to_string()),
        identity_file: t.identity_file.clone().or(hc.identity_file.clone()),
        known_hosts: t.known_hosts.clone().or(hc.user_known_hosts_file.clone()),
        connect_timeout: t
            .connect_timeout
            .or(hc.connect_timeout.filter(|d| !d.is_zero()))
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        timeout: t.timeout,
        server_alive_interval: t
            .server_alive_interval
            .or(hc.server_alive_interval)
            .filter(|d| !d.is_zero()),
        jumps: Vec::new(),
    };
    if let Some(u) = &hc.user {
        if t.user.is_none() {
            crate::transport::user_name(u).map_err(|m| {
                terr(
                    &t.host,
                    TransportKind::Connect,
                    format!("ssh config: `User {u}` for {}: {m}", t.address),
                )
            })?;
        }
    }
    match &t.jump {
        Some(Jump::Host(b)) => {
            let mut bep = resolve_in(
                b,
                cfg,
                home,
                &[b.address.as_str(), b.host.as_str()],
                depth + 1,
            )?;
            bep.name = b.host.clone();
            push_hop(&mut ep, bep, &t.host);
        }
        Some(Jump::Spec(s)) => add_spec_hops(&mut ep, t, s, cfg, home, depth)?,
        None => {
            if let Some(pj) = &hc.proxy_jump {
                add_spec_hops(&mut ep, t, pj, cfg, home, depth)?;
            }
        }
    }
    Ok(ep)
}

/// Append bastion `b` (and the bastions before it) to `ep`'s chain.
fn push_hop(ep: &mut Endpoint, mut b: Endpoint, host: &str) {
    let mut before = std::mem::take(&mut b.jumps);
    for h in &mut before {
        h.host = host.to_string();
    }
    b.host = host.to_string();
    ep.jumps.extend(before);
    ep.jumps.push(b);
}

/// `[user@]host[:port],...`: each hop looked up in the ssh config by its
/// host; the first hop may have its own `ProxyJump`. Identity and
/// known_hosts not configured for a hop are the target's inventory ones.
fn add_spec_hops(
    ep: &mut Endpoint,
    t: &SshTarget,
    spec: &str,
    cfg: &SshConfig,
    home: Option<&Path>,
    depth: usize,
) -> Result<()> {
    if spec.eq_ignore_ascii_case("none") {
        return Ok(());
    }
    let hops = config::parse_jump_list(spec)
        .map_err(|m| terr(&t.host, TransportKind::Connect, format!("ProxyJump: {m}")))?;
    for (i, hop) in hops.iter().enumerate() {
        let ht = SshTarget {
            host: hop.host.clone(),
            address: hop.host.clone(),
            port: hop.port,
            user: hop.user.clone(),
            identity_file: None,
            known_hosts: None,
            connect_timeout: None,
            timeout: t.timeout,
            server_alive_interval: None,
            // Later hops go through the earlier ones, not their own ProxyJump.
            jump: (i > 0).then(|| Jump::Spec("none".into())),
        };
        let mut hep = resolve_in(&ht, cfg, home, &[hop.host.as_str()], depth + 1)?;
        hep.name = match (&hop.user, hop.port) {
            (None, None) => hop.host.clone(),
            _ => spec
                .split(',')
                .nth(i)
                .unwrap_or(&hop.host)
                .trim()
                .to_string(),
        };
        if hep.identity_file.is_none() {
            hep.identity_file = t.identity_file.clone();
        }
        if hep.known_hosts.is_none() {
            hep.known_hosts = t.known_hosts.clone();
        }
        let hc = cfg
            .lookup(&[hop.host.as_str()], home)
            .ok()
            .unwrap_or_default();
        if hc.connect_timeout.is_none() {
            hep.connect_timeout = ep.connect_timeout;
        }
        if hc.server_alive_interval.is_none() {
            hep.server_alive_interval = ep.server_alive_interval;
        }
        push_hop(ep, hep, &t.host);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> SshConfig {
        SshConfig::parse(Path::new("/cfg"), text, Some(Path::new("/h"))).unwrap()
    }

    fn res(t: &SshTarget, c: &SshConfig) -> Endpoint {
        resolve_with_home(t, c, Some(Path::new("/h"))).unwrap()
    }

    const CFG: &str = "Host bastion\n  HostName 10.0.0.1\n  Port 2200\n  User jump\n  IdentityFile ~/bkey\n  ProxyJump none\n\
                       Host gw* !gw9\n  HostName 10.1.0.%h\n  ProxyJump bastion\n  User admin\n  Port 2222\n  ConnectTimeout 3\n  ServerAliveInterval 5\n\
                       Host *\n  User everyone\n  IdentityFile ~/default\n  UserKnownHostsFile ~/kh\n";

    #[test]
    fn config_fills_only_what_the_inventory_leaves_out() {
        let c = cfg(CFG);
        let e = res(&SshTarget::new("edge", "gw1"), &c);
        assert_eq!(e.address, "10.1.0.gw1");
        assert_eq!((e.user.as_str(), e.port), ("admin", 2222));
        assert_eq!(e.connect_timeout, Duration::from_secs(3));
        assert_eq!(e.server_alive_interval, Some(Duration::from_secs(5)));
        assert_eq!(e.identity_file.as_deref(), Some(Path::new("/h/default")));
        assert_eq!(e.known_hosts.as_deref(), Some(Path::new("/h/kh")));
        assert_eq!(e.jumps.len(), 1);
        let b = &e.jumps[0];
        assert_eq!(
            (b.address.as_str(), b.port, b.user.as_str()),
            ("10.0.0.1", 2200, "jump")
        );
        assert_eq!(b.identity_file.as_deref(), Some(Path::new("/h/bkey")));
        assert_eq!(b.host, "edge"); // errors are the inventory host's
        assert_eq!(b.name, "bastion");
        // Inherits the target's keep-alive and connect timeout.
        assert_eq!(b.connect_timeout, Duration::from_secs(3));

        // The inventory wins.
        let mut t = SshTarget::new("edge", "gw1");
        t.user = Some("root".into());
        t.port = Some(22);
        t.connect_timeout = Some(Duration::from_secs(1));
        t.jump = Some(Jump::Spec("none".into()));
        let e = res(&t, &c);
        assert_eq!((e.user.as_str(), e.port), ("root", 22));
        assert_eq!(e.connect_timeout, Duration::from_secs(1));
        assert!(e.jumps.is_empty());

        // Matched on the inventory name too; defaults when nothing says.
        let e = res(&SshTarget::new("gw2", "192.0.2.1"), &c);
        assert_eq!(e.address, "10.1.0.192.0.2.1");
        let e = res(&SshTarget::new("gw9", "192.0.2.1"), &c);
        assert_eq!(
            (e.address.as_str(), e.port, e.user.as_str()),
            ("192.0.2.1", 22, "everyone")
        );
        let e = res(&SshTarget::new("x", "192.0.2.1"), &SshConfig::default());
        assert_eq!((e.port, e.user.as_str()), (22, "root"));
        assert_eq!(e.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert!(e.jumps.is_empty() && e.known_hosts.is_none());
    }

    #[test]
    fn jump_chains_specs_and_inventory_hosts() {
        let c = cfg(CFG);
        // A spec chain: the second hop goes through the first.
        let mut t = SshTarget::new("edge", "10.5.5.5");
        t.identity_file = Some("/inv/key".into());
        t.jump = Some(Jump::Spec("bastion,ops@10.2.0.1:2022".into()));
        let e = res(&t, &c);
        let hops: Vec<(&str, u16, &str)> = e
            .jumps
            .iter()
            .map(|j| (j.address.as_str(), j.port, j.user.as_str()))
            .collect();
        assert_eq!(
            hops,
            [("10.0.0.1", 2200, "jump"), ("10.2.0.1", 2022, "ops")]
        );
        // The hop without an IdentityFile of its own... gets `Host *`'s.
        assert_eq!(
            e.jumps[1].identity_file.as_deref(),
            Some(Path::new("/h/default"))
        );
        // Without any config: the target's inventory key and known_hosts.
        let mut t2 = t.clone();
        t2.jump = Some(Jump::Spec("10.2.0.1".into()));
        t2.known_hosts = Some("/inv/kh".into());
        let e = res(&t2, &SshConfig::default());
        assert_eq!(
            e.jumps[0].identity_file.as_deref(),
            Some(Path::new("/inv/key"))
        );
        assert_eq!(
            e.jumps[0].known_hosts.as_deref(),
            Some(Path::new("/inv/kh"))
        );

        // An inventory bastion with its own bastion: flattened, outermost first.
        let mut outer = SshTarget::new("outer", "10.9.0.1");
        outer.jump = Some(Jump::Spec("none".into()));
        let mut inner = SshTarget::new("inner", "10.9.1.1");
        inner.jump = Some(Jump::Host(Box::new(outer)));
        let mut t = SshTarget::new("gw", "10.9.2.1");
        t.jump = Some(Jump::Host(Box::new(inner)));
        let e = res(&t, &SshConfig::default());
        let addrs: Vec<&str> = e.jumps.iter().map(|j| j.address.as_str()).collect();
        assert_eq!(addrs, ["10.9.0.1", "10.9.1.1"]);
        assert!(e.jumps.iter().all(|j| j.host == "gw" && j.jumps.is_empty()));

        // A ProxyJump loop is an error, not a stack overflow.
        let c = cfg("Host *\n  ProxyJump bastion\n");
        let err = resolve_with_home(&SshTarget::new("gw", "gw"), &c, None).unwrap_err();
        assert!(err.to_string().contains("ProxyJump loop"), "{err}");
    }
}
