//! Ansible-shaped inventory: `all:` with `hosts:`, `children:` (nested groups)
//! and `vars:`. Host vars override group vars, deep-merged.
//!
//! Merge order for a host: `all.vars`, then the vars of every group the host
//! belongs to (directly or through nesting) from outer to inner (by nesting
//! depth, ties in file order), then the host's own vars (in file order if it
//! is listed more than once). A group listed in several places has its vars
//! merged in file order.
//!
//! [`load`] checks the structure, the top-level keys of every host's merged
//! vars (connection keys and gateway keys, with "did you mean") and the
//! connection settings. The gateway intent itself is checked by
//! [`crate::model::build`], which needs only the [`Host`].
//!
//! Files the user names are read by [`crate::input::read_text`]: regular files only, with a
//! size cap, UTF-8 with the first bad byte located. Walking and merging are
//! linear in the inventory's size (indexed names and keys, vars borrowed and
//! copied once per host): a 50 MB inventory is input, not an attack.
use crate::error::{Error, Location, Result};
use crate::transport::{Connection, Jump, SshTarget};
use crate::yaml::{self, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod assert;
pub mod routes;
pub mod select;
pub mod values;
/// The bounded reader lives in [`crate::input`] (below both this module and
/// `yaml`); its old path here is still named by `render`.
pub use crate::input::{read_text, MAX_INVENTORY_BYTES, MAX_ROUTES_BYTES};
/// The name checks' old path, still named by `render/ownership.rs` and
/// `transport/ssh/resolve.rs` (files of other work in progress); new code
/// names [`values`].
pub use values as names;

/// Host-level keys that say how to reach the host.
pub const CONNECTION_KEYS: &[&str] = &["address", "connection", "ssh"];
/// Host-level keys that describe the gateway (read by `model::build`).
pub const GATEWAY_KEYS: &[&str] = &[
    "method",
    "firewall",
    "lan",
    "lines",
    "nat",
    "forwards",
    "hairpin",
    "policies",
    "rule_priority",
    "mark_mask",
    "route_cache_flush",
    "assert",
];
/// Keys of the `ssh:` map.
pub const SSH_KEYS: &[&str] = &[
    "user",
    "port",
    "identity_file",
    "known_hosts",
    "connect_timeout",
    "timeout",
    "server_alive_interval",
    "jump",
];
const GROUP_KEYS: &[&str] = &["hosts", "children", "vars"];

/// One host of the inventory with its merged vars.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Groups the host belongs to, outermost first (without "all").
    pub groups: Vec<String>,
    /// Merged vars: group vars (outer to inner), then host vars. Always a map.
    pub vars: Node,
    /// How to reach the host.
    pub connection: Connection,
    /// The inventory file; relative paths in vars resolve against its directory.
    pub file: PathBuf,
    /// Where the host is (first) named in the inventory.
    pub location: Location,
}

impl Host {
    /// Directory relative paths in the host's vars resolve against.
    pub fn base_dir(&self) -> &Path {
        parent_dir(&self.file)
    }

    /// Whether the vars hold any gateway key: hosts without any are fine for
    /// `gather`, while `model::build` on them fails with "host X has no `method`".
    pub fn has_gateway(&self) -> bool {
        self.vars
            .as_map()
            .is_some_and(|m| m.iter().any(|e| GATEWAY_KEYS.contains(&e.key.as_str())))
    }
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub file: PathBuf,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// group name → member host names (transitively, in host order), for
    /// --limit. Includes "all".
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Inventory {
    /// Directory relative paths in the inventory resolve against.
    pub fn base_dir(&self) -> &Path {
        parent_dir(&self.file)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

fn parent_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Read, parse and check an inventory file. Errors of several hosts are
/// reported together ([`Error::Multiple`]).
pub fn load(path: &Path) -> Result<Inventory> {
    let text = read_text(path, MAX_INVENTORY_BYTES, "inventory")?;
    parse(&text, path)
}

/// [`load`] on text already read; `path` labels locations and anchors
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Inventory> {
    let root = Node::parse(text, path)?;
    let Some(entries) = root.as_map() else {
        return Err(root.error(
            format!(
                "an inventory must be a map with an `all:` key, found {}",
                root.kind()
            ),
            Some("start the file with `all:`".into()),
        ));
    };
    for e in entries {
        if e.key != "all" {
            return Err(Error::Input {
                location: e.key_location.clone(),
                message: format!("unknown top-level key `{}`", crate::escape::value(&e.key)),
                hint: Some(
                    "the inventory has one top-level key, `all:`; put groups under `all.children`"
                        .into(),
                ),
            });
        }
    }
    let Some(all) = root.entry("all") else {
        return Err(root.error(
            "the inventory has no `all:` key",
            Some("start the file with `all:`".into()),
        ));
    };

    let mut w = Walk::default();
    w.group("all", &all.value, &all.key_location, 0, &mut Vec::new())?;
    w.check_cycles()?;
    if w.hosts.is_empty() {
        return Err(Error::Input {
            location: all.key_location.clone(),
            message: "the inventory has no hosts".into(),
            hint: Some(
                "list hosts under `all: {hosts: {gw1: {address: ...}}}` or under a group's `hosts:`"
                    .into(),
            ),
        });
    }

    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for h in &w.hosts {
        match w.host(h, path) {
            Ok(host) => hosts.push(host),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        errors = resolve_jumps(&mut hosts);
    }
    match errors.len() {
        0 => {}
        1 => return Err(errors.pop().unwrap()),
        _ => return Err(Error::Multiple(errors)),
    }

    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    groups.insert("all".into(), hosts.iter().map(|h| h.name.clone()).collect());
    for g in &w.groups {
        if g.name != "all" {
            groups.insert(g.name.clone(), Vec::new());
        }
    }
    for h in &hosts {
        for g in &h.groups {
            groups.get_mut(g).expect("known group").push(h.name.clone());
        }
    }
    Ok(Inventory {
        file: path.to_path_buf(),
        hosts,
        groups,
    })
}

/// A `children:` entry: (parent, child, where the child is named).
type Edge = (String, String, Location);

#[derive(Default)]
struct Walk<'a> {
    /// Groups in order of first appearance.
    groups: Vec<GroupInfo<'a>>,
    /// Hosts in order of first appearance.
    hosts: Vec<HostInfo<'a>>,
    /// Every `children:` entry: (parent, child, where the child is named).
    /// A group written in two places can make a cycle the nesting of one
    /// place cannot show (`a: {children: {b:}}` and `b: {children: {a:}}`).
    edges: Vec<Edge>,
    /// Name → index in `groups` / `hosts` (a big inventory must not make
    /// the walk quadratic).
    group_at: std::collections::HashMap<String, usize>,
    host_at: std::collections::HashMap<String, usize>,
}

struct GroupInfo<'a> {
    name: String,
    /// Deepest nesting level the group appears at ("all" is 0).
    depth: usize,
    /// Vars of each place the group is written, in file order (borrowed:
    /// copied once, into each host's merged vars).
    vars: Vec<&'a Node>,
}

struct HostInfo<'a> {
    name: String,
    location: Location,
    /// Vars of each place the host is listed, in file order.
    vars: Vec<&'a Node>,
    /// Every group the host is in, transitively (including "all").
    groups: Vec<String>,
}

fn null_or<'a>(n: &'a Node, what: &str) -> Result<Option<&'a [yaml::Entry]>> {
    if n.is_null() {
        return Ok(None);
    }
    match n.as_map() {
        Some(m) => Ok(Some(m)),
        None => Err(n.error(format!("{what} must be a map, found {}", n.kind()), None)),
    }
}

impl<'a> Walk<'a> {
    fn group(
        &mut self,
        name: &str,
        node: &'a Node,
        name_loc: &Location,
        depth: usize,
        chain: &mut Vec<String>,
    ) -> Result<()> {
        if chain.iter().any(|g| g == name) {
            return Err(Error::Input {
                location: name_loc.clone(),
                message: format!("group `{name}` contains itself"),
                hint: Some(format!("path: {} → {name}", chain.join(" → "))),
            });
        }
        chain.push(name.to_string());
        let what = format!("group `{name}`");
        let entries = null_or(node, &what)?.unwrap_or(&[]);
        for e in entries {
            if !GROUP_KEYS.contains(&e.key.as_str()) {
                let mut err = yaml::unknown_key_error(&e.key, &e.key_location, GROUP_KEYS, &what);
                if let Error::Input { hint, .. } = &mut err {
                    *hint = Some(format!(
                        "{}; host settings go under `vars:` or under a host",
                        hint.take().unwrap_or_default()
                    ));
                }
                return Err(err);
            }
        }
        let gi = match self.group_at.get(name) {
            Some(&i) => i,
            None => {
                self.groups.push(GroupInfo {
                    name: name.to_string(),
                    depth,
                    vars: Vec::new(),
                });
                self.group_at
                    .insert(name.to_string(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.groups[gi].depth = self.groups[gi].depth.max(depth);
        if let Some(vars) = node.get("vars") {
            if null_or(vars, &format!("`vars` of {what}"))?.is_some() {
                self.groups[gi].vars.push(vars);
            }
        }
        if let Some(hosts) = node.get("hosts") {
            for h in null_or(hosts, &format!("`hosts` of {what}"))?.unwrap_or(&[]) {
                values::inventory_name(&h.key).map_err(|m| Error::Input {
                    location: h.key_location.clone(),
                    message: format!("host name {m}"),
                    hint: None,
                })?;
                null_or(&h.value, &format!("vars of host `{}`", h.key))?;
                let i = match self.host_at.get(&h.key) {
                    Some(&i) => i,
                    None => {
                        self.host_at.insert(h.key.clone(), self.hosts.len());
                        self.hosts.push(HostInfo {
                            name: h.key.clone(),
                            location: h.key_location.clone(),
                            vars: Vec::new(),
                            groups: Vec::new(),
                        });
                        self.hosts.len() - 1
                    }
                };
                let info = &mut self.hosts[i];
                if !h.value.is_null() {
                    info.vars.push(&h.value);
                }
                for g in chain.iter() {
                    if !info.groups.contains(g) {
                        info.groups.push(g.clone());
                    }
                }
            }
        }
        if let Some(children) = node.get("children") {
            for c in null_or(children, &format!("`children` of {what}"))?.unwrap_or(&[]) {
                values::inventory_name(&c.key).map_err(|m| Error::Input {
                    location: c.key_location.clone(),
                    message: format!("group name {m}"),
                    hint: None,
                })?;
                if c.key == "all" {
                    return Err(Error::Input {
                        location: c.key_location.clone(),
                        message: "`all` cannot be a child group".into(),
                        hint: Some("every host is already in `all`".into()),
                    });
                }
                self.edges
                    .push((name.to_string(), c.key.clone(), c.key_location.clone()));
                self.group(&c.key, &c.value, &c.key_location, depth + 1, chain)?;
            }
        }
        chain.pop();
        Ok(())
    }

    /// Fail on a cycle of `children:` entries, naming its path and located
    /// at the entry that closes it.
    fn check_cycles(&self) -> Result<()> {
        let mut index: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
        for e in &self.edges {
            index.entry(e.0.as_str()).or_default().push(e);
        }
        // Reversed: `pop` then visits children in file order.
        let children = |g: &str| {
            let mut v = index.get(g).cloned().unwrap_or_default();
            v.reverse();
            v
        };
        // Iterative DFS (colours: 0 new, 1 on the path, 2 done) keeps the
        // stack bounded whatever the inventory.
        let mut colour: BTreeMap<&str, u8> = BTreeMap::new();
        for start in self.groups.iter().map(|g| g.name.as_str()) {
            if colour.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut path: Vec<(&str, Vec<&Edge>)> = vec![(start, children(start))];
            colour.insert(start, 1);
            while let Some((_, todo)) = path.last_mut() {
                let Some(edge) = todo.pop() else {
                    let (done, _) = path.pop().expect("non-empty");
                    colour.insert(done, 2);
                    continue;
                };
                let child = edge.1.as_str();
                match colour.get(child).copied().unwrap_or(0) {
                    0 => {
                        colour.insert(child, 1);
                        path.push((child, children(child)));
                    }
                    1 => {
                        let from = path.iter().position(|(g, _)| *g == child).unwrap_or(0);
                        let mut names: Vec<&str> = path[from..].iter().map(|(g, _)| *g).collect();
                        names.push(child);
                        return Err(Error::Input {
                            location: edge.2.clone(),
                            message: format!("group cycle: {}", names.join(" → ")),
                            hint: Some(format!(
                                "a group cannot contain itself; remove `{child}` from the `children:` of `{}`",
                                edge.0
                            )),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn host(&self, h: &HostInfo<'a>, file: &Path) -> Result<Host> {
        // Groups by depth (outer first), ties in order of first appearance.
        let mut groups: Vec<&GroupInfo> = self
            .groups
            .iter()
            .filter(|g| h.groups.contains(&g.name))
            .collect();
        groups.sort_by_key(|g| g.depth); // stable: keeps file order on ties
        let mut vars = Node::empty_map(h.location.clone());
        for g in &groups {
            for v in &g.vars {
                vars = yaml::merge_ref(vars, v);
            }
        }
        for v in &h.vars {
            vars = yaml::merge_ref(vars, v);
        }
        // The merged map is the host's; point it at the host's name.
        vars.location = h.location.clone();

        let allowed: Vec<&str> = CONNECTION_KEYS
            .iter()
            .chain(GATEWAY_KEYS)
            .copied()
            .collect();
        vars.check_keys(&allowed, &format!("vars of host `{}`", h.name))?;
        assert::parse(vars.get("assert"))?;

        let connection = connection(&h.name, &h.location, &vars, parent_dir(file))?;
        Ok(Host {
            name: h.name.clone(),
            groups: groups
                .iter()
                .filter(|g| g.name != "all")
                .map(|g| g.name.clone())
                .collect(),
            vars,
            connection,
            file: file.to_path_buf(),
            location: h.location.clone(),
        })
    }
}

/// The connection settings from a host's merged vars.
fn connection(host: &str, host_loc: &Location, vars: &Node, base: &Path) -> Result<Connection> {
    let kind = match vars.get("connection") {
        None => "ssh",
        Some(n) => {
            let s = values::string(n, "connection")?;
            if s != "ssh" && s != "local" {
                return Err(n.error(
                    format!("unknown connection `{}`", crate::escape::value(s)),
                    Some("valid connections: ssh, local".into()),
                ));
            }
            s
        }
    };
    let ssh = vars.get("ssh");
    if let Some(s) = ssh {
        if !s.is_null() {
            s.check_keys(SSH_KEYS, "ssh settings")?;
        }
    }
    let address = match vars.get("address") {
        Some(n) => {
            let s = values::string(n, "address")?;
            values::host_address(s).map_err(|m| {
                n.error(
                    m,
                    Some("use an IP address or a DNS name, without a user or port".into()),
                )
            })?;
            Some(s.to_string())
        }
        None => None,
    };
    if kind == "local" {
        return Ok(Connection::Local);
    }
    let Some(address) = address else {
        return Err(Error::Input {
            location: host_loc.clone(),
            message: format!("host `{host}` has no `address`"),
            hint: Some(
                "set `address: <IP or DNS name>`, or `connection: local` to run on this machine"
                    .into(),
            ),
        });
    };
    // Only what the inventory sets: the transport fills the rest from the
    // ssh config, then from defaults (user root, port 22, connect_timeout 10).
    let field = |k: &str| ssh.and_then(|s| s.get(k)).filter(|n| !n.is_null());
    let user = match field("user") {
        Some(n) => {
            let s = values::string(n, "ssh.user")?;
            values::user(s).map_err(|m| n.error(m, None))?;
            Some(s.to_string())
        }
        None => None,
    };
    let port = match field("port") {
        Some(n) => Some(values::int_between(n, "ssh.port", 1, 65535)? as u16),
        None => None,
    };
    let path = |k: &str| -> Result<Option<PathBuf>> {
        match field(k) {
            Some(n) => {
                let s = values::string(n, &format!("ssh.{k}"))?;
                expand_path(s, base).map(Some).map_err(|m| n.error(m, None))
            }
            None => Ok(None),
        }
    };
    let identity_file = path("identity_file")?;
    let known_hosts = path("known_hosts")?;
    let secs = |k: &str, lo: i64, hi: i64| -> Result<Option<Duration>> {
        match field(k) {
            Some(n) => {
                Ok(Some(Duration::from_secs(
                    values::int_between(n, &format!("ssh.{k}"), lo, hi)? as u64,
                )))
            }
            None => Ok(None),
        }
    };
    let connect_timeout = secs("connect_timeout", 1, 3600)?;
    let timeout = secs("timeout", 1, 86400)?.unwrap_or(crate::transport::DEFAULT_TIMEOUT);
    let server_alive_interval = secs("server_alive_interval", 0, 3600)?;
    let jump = match field("jump") {
        Some(n) => {
            let s = values::string(n, "ssh.jump")?;
            jump_spec(s).map_err(|m| {
                n.error(
                    m,
                    Some("use `[user@]host[:port]`, the name of another inventory host, an ssh-config Host, or `none`".into()),
                )
            })?;
            Some(Jump::Spec(s.to_string()))
        }
        None => None,
    };
    Ok(Connection::Ssh(SshTarget {
        host: host.to_string(),
        address,
        port,
        user,
        identity_file,
        known_hosts,
        connect_timeout,
        timeout,
        server_alive_interval,
        jump,
    }))
}

/// `ssh.jump`: `none`, or a comma-separated chain of `[user@]host[:port]`
/// where host is an address, a DNS name, an ssh-config alias or an
/// inventory host name. No whitespace or shell metacharacters.
fn jump_spec(s: &str) -> std::result::Result<(), String> {
    if s == "none" {
        return Ok(());
    }
    if s.len() > 1024 {
        return Err(format!(
            "`{}` is too long for a jump host list",
            crate::escape::value(s)
        ));
    }
    for hop in crate::transport::ssh::config::parse_jump_list(s)? {
        if let Some(u) = &hop.user {
            values::user(u)?;
        }
        if values::host_address(&hop.host).is_err() && values::inventory_name(&hop.host).is_err() {
            return Err(format!(
                "jump host `{}` is not an IP address, a DNS name or a host name",
                hop.host
            ));
        }
    }
    Ok(())
}

/// `ssh.jump` naming another inventory host becomes that host's connection
/// settings (and its own jump, recursively).
fn resolve_jumps(hosts: &mut [Host]) -> Vec<Error> {
    let by_name: BTreeMap<String, Connection> = hosts
        .iter()
        .map(|h| (h.name.clone(), h.connection.clone()))
        .collect();
    let mut errors = Vec::new();
    for h in hosts.iter_mut() {
        let Connection::Ssh(t) = &mut h.connection else {
            continue;
        };
        let loc = h
            .vars
            .get_path(&["ssh", "jump"])
            .map(|n| n.location.clone())
            .unwrap_or_else(|| h.location.clone());
        let mut chain = vec![h.name.clone()];
        match inline_jump(t.jump.take(), &by_name, &mut chain) {
            Ok(j) => t.jump = j,
            Err(message) => errors.push(Error::Input {
                location: loc,
                message,
                hint: Some("a jump host is `[user@]host[:port]`, an ssh-config Host, or another inventory host reached over ssh".into()),
            }),
        }
    }
    errors
}

fn inline_jump(
    j: Option<Jump>,
    by_name: &BTreeMap<String, Connection>,
    chain: &mut Vec<String>,
) -> std::result::Result<Option<Jump>, String> {
    let Some(Jump::Spec(name)) = j else {
        return Ok(j);
    };
    let Some(conn) = by_name.get(&name) else {
        return Ok(Some(Jump::Spec(name)));
    };
    if chain.contains(&name) {
        chain.push(name);
        return Err(format!("jump hosts form a loop: {}", chain.join(" → ")));
    }
    let Connection::Ssh(b) = conn else {
        return Err(format!(
            "cannot jump through `{name}`: it has `connection: local`"
        ));
    };
    let mut b = b.clone();
    chain.push(name);
    b.jump = inline_jump(b.jump.take(), by_name, chain)?;
    Ok(Some(Jump::Host(Box::new(b))))
}

/// `~/x` → `$HOME/x`; relative paths against `base`; absolute as is.
pub fn expand_path(s: &str, base: &Path) -> std::result::Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    if s == "~" || s.starts_with("~/") {
        let home = std::env::var_os("HOME").ok_or("`~` used but HOME is not set")?;
        let rest = s.trim_start_matches('~').trim_start_matches('/');
        return Ok(PathBuf::from(home).join(rest));
    }
    if s.starts_with('~') {
        return Err(format!(
            "`{}`: only `~/` (your own home) is supported",
            crate::escape::value(s)
        ));
    }
    let p = Path::new(s);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(text: &str) -> Inventory {
        parse(text, Path::new("/etc/dwprov/inv.yaml")).unwrap()
    }

    #[test]
    fn groups_and_connection_defaults() {
        let i = inv("all:\n  hosts:\n    a: {address: 10.0.0.1}\n  children:\n    bj:\n      hosts:\n        b: {address: b.example.com, ssh: {user: admin, port: 2222, identity_file: keys/id}}\n      children:\n        core:\n          hosts:\n            b:\n            c: {connection: local}\n");
        let names: Vec<_> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(i.groups["all"], ["a", "b", "c"]);
        assert_eq!(i.groups["bj"], ["b", "c"]);
        assert_eq!(i.groups["core"], ["b", "c"]);
        assert_eq!(i.host("b").unwrap().groups, ["bj", "core"]);
        let Connection::Ssh(t) = &i.host("a").unwrap().connection else {
            panic!()
        };
        // Unset in the inventory: ssh config and defaults apply at connect time.
        assert_eq!((t.user.as_deref(), t.port), (None, None));
        assert_eq!(t.connect_timeout, None);
        assert_eq!(t.timeout, Duration::from_secs(60));
        assert_eq!(t.identity_file, None);
        let Connection::Ssh(t) = &i.host("b").unwrap().connection else {
            panic!()
        };
        assert_eq!((t.user.as_deref(), t.port), (Some("admin"), Some(2222)));
        assert_eq!(
            t.identity_file.as_deref(),
            Some(Path::new("/etc/dwprov/keys/id"))
        );
        assert_eq!(i.host("c").unwrap().connection, Connection::Local);
        assert!(!i.host("a").unwrap().has_gateway());
    }

    #[test]
    fn jumps_name_inventory_hosts_or_specs() {
        let i = inv("all:\n  hosts:\n    bastion: {address: 10.0.0.1, ssh: {user: ops, port: 2200, jump: outer}}\n    outer: {address: 10.0.0.254}\n    gw1: {address: gw1, ssh: {jump: bastion}}\n    gw2: {address: 10.0.1.2, ssh: {jump: 'admin@jump.example.net:2022,10.0.0.9'}}\n    gw3: {address: 10.0.1.3, ssh: {jump: none, server_alive_interval: 15}}\n");
        let Connection::Ssh(t) = &i.host("gw1").unwrap().connection else {
            panic!()
        };
        let Some(Jump::Host(b)) = &t.jump else {
            panic!("{:?}", t.jump)
        };
        assert_eq!(
            (b.address.as_str(), b.port, b.user.as_deref()),
            ("10.0.0.1", Some(2200), Some("ops"))
        );
        let Some(Jump::Host(o)) = &b.jump else {
            panic!("{:?}", b.jump)
        };
        assert_eq!(o.address, "10.0.0.254");
        let Connection::Ssh(t) = &i.host("gw2").unwrap().connection else {
            panic!()
        };
        assert_eq!(
            t.jump,
            Some(Jump::Spec("admin@jump.example.net:2022,10.0.0.9".into()))
        );
        let Connection::Ssh(t) = &i.host("gw3").unwrap().connection else {
            panic!()
        };
        assert_eq!(t.server_alive_interval, Some(Duration::from_secs(15)));
        // Still serializable.
        assert!(serde_json::to_string(&i.host("gw1").unwrap().connection)
            .unwrap()
            .contains("\"jump\":{\"host\":{"));

        let err = |text: &str| parse(text, Path::new("/i.yaml")).unwrap_err().to_string();
        let e = err("all:\n  hosts:\n    a: {address: 10.0.0.1, ssh: {jump: 'x;reboot'}}\n");
        assert!(e.contains("/i.yaml:3:40") && e.contains("';'"), "{e}");
        let e = err("all:\n  hosts:\n    a: {address: 10.0.0.1, ssh: {jump: 'b c'}}\n");
        assert!(e.contains("/i.yaml:3:40"), "{e}");
        let e = err("all:\n  hosts:\n    a: {address: 10.0.0.1, ssh: {jump: 'Root@b'}}\n");
        assert!(e.contains("not a valid user name"), "{e}");
        let e = err("all:\n  hosts:\n    a: {address: 10.0.0.1, ssh: {jump: b}}\n    b: {address: 10.0.0.2, ssh: {jump: a}}\n");
        assert!(
            e.contains("loop: a → b → a") && e.contains("/i.yaml:3:40"),
            "{e}"
        );
        let e = err("all:\n  hosts:\n    a: {address: 10.0.0.1, ssh: {jump: l}}\n    l: {connection: local}\n");
        assert!(e.contains("connection: local"), "{e}");
        let e = err("all:\n  hosts:\n    a: {address: 10.0.0.1, ssh: {jump: [b]}}\n");
        assert!(e.contains("must be a string"), "{e}");
    }

    #[test]
    fn expand() {
        let b = Path::new("/inv");
        assert_eq!(expand_path("/k", b).unwrap(), PathBuf::from("/k"));
        assert_eq!(expand_path("k/id", b).unwrap(), PathBuf::from("/inv/k/id"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                expand_path("~/.ssh/id", b).unwrap(),
                PathBuf::from(home).join(".ssh/id")
            );
        }
        assert!(expand_path("~bob/id", b).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Corrupt the documented example anywhere: load + build give an
        /// error or a gateway, never a panic.
        #[test]
        fn mutated_example_never_panics(
            at in 0usize..2000,
            cut in 0usize..8,
            insert in "[a-z0-9 :,\\[\\]{}/.#\n-]{0,8}",
        ) {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory");
            let path = dir.join("good.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            let chars: Vec<char> = text.chars().collect();
            let at = at % chars.len();
            let end = (at + cut).min(chars.len());
            let mutated: String = chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
            if let Ok(inv) = parse(&mutated, &path) {
                for h in &inv.hosts {
                    let _ = crate::model::build(h);
                }
            }
        }
    }
}
