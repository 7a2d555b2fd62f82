//! OpenSSH client configuration (`~/.ssh/config`, or `-F FILE`): the subset
//! dwprov uses to reach a host.
//!
//! Semantics follow `ssh_config(5)`:
//! * `Host` lines take whitespace-separated patterns with `*` and `?`
//!   globs; a pattern starting with `!` negates: a block whose negated
//!   pattern matches does not apply, whatever its other patterns say.
//! * For each keyword the **first** value obtained wins (so specific `Host`
//!   blocks go first, `Host *` last); lines before the first `Host` apply to
//!   every host.
//! * `Include` (files or `*`/`?` globs in the last path component; relative
//!   paths are in `~/.ssh`) is read in place; its lines start under the
//!   including block's condition.
//! * `Match` blocks are not evaluated: they never apply (dwprov cannot run
//!   `exec` conditions); lines after them apply again once a `Host` line
//!   starts a new block.
//! * Unknown keywords are ignored (dwprov reads only what it uses); known
//!   ones with bad values are errors naming `file:line`.
//!
//! dwprov matches a block against the inventory `address` (what an admin
//! would type after `ssh`) **and** the inventory host name: the block applies
//! when one of them matches a pattern and none matches a negated pattern.
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the condition of a directive comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cond {
    /// Before any `Host`/`Match`: applies everywhere.
    Always,
    /// `Host` patterns.
    Host(Vec<String>),
    /// A `Match` block: never applies here.
    Never,
}

#[derive(Debug, Clone)]
struct Directive {
    cond: Cond,
    /// Lowercased keyword.
    key: String,
    args: Vec<String>,
    file: PathBuf,
    line: usize,
}

/// A parsed configuration (with `Include`s read in place).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    directives: Vec<Directive>,
    /// The files read, in order (the main one first).
    pub files: Vec<PathBuf>,
}

/// What the configuration says about one host (`None`: not said).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// `HostName`, with `%h` and `%%` expanded.
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// The first `IdentityFile` (`~` and `%d`, `%h`, `%%` expanded).
    pub identity_file: Option<PathBuf>,
    /// The first file of the first `UserKnownHostsFile` (`none` → `/dev/null`).
    pub user_known_hosts_file: Option<PathBuf>,
    /// `ProxyJump` as written (`none` is `Some("none")`: explicitly no jump).
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval` (`0` is `Some(0)`: explicitly off).
    pub server_alive_interval: Option<Duration>,
}

/// A configuration error: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

const MAX_INCLUDE_DEPTH: usize = 16;

impl SshConfig {
    /// Read `path` (and what it includes). `home` anchors `~` and relative
    /// `Include`s (`~/.ssh`).
    pub fn load(path: &Path, home: Option<&Path>) -> Result<SshConfig, ConfigError> {
        let mut cfg = SshConfig::default();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read it: {e}"),
        })?;
        cfg.read(path, &text, home, &Cond::Always, 0)?;
        Ok(cfg)
    }

    /// Parse `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str, home: Option<&Path>) -> Result<SshConfig, ConfigError> {
        let mut cfg = SshConfig::default();
        cfg.read(path, text, home, &Cond::Always, 0)?;
        Ok(cfg)
    }

    fn read(
        &mut self,
        path: &Path,
        text: &str,
        home: Option<&Path>,
        start: &Cond,
        depth: usize,
    ) -> Result<(), ConfigError> {
        self.files.push(path.to_path_buf());
        let mut cond = start.clone();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| ConfigError {
                file: path.to_path_buf(),
                line,
                message,
            };
            let Some((key, args)) = split_line(raw).map_err(err)? else {
                continue;
            };
            match key.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(err("`Host` needs at least one pattern".into()));
                    }
                    cond = Cond::Host(args);
                }
                "match" => cond = Cond::Never,
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(err(format!(
                            "`Include` nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)"
                        )));
                    }
                    for a in &args {
                        for file in include_files(a, home).map_err(err)? {
                            let text = match std::fs::read_to_string(&file) {
                                Ok(t) => t,
                                // Like OpenSSH: a missing include is skipped.
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(e) => {
                                    return Err(err(format!(
                                        "cannot read included file {}: {e}",
                                        file.display()
                                    )))
                                }
                            };
                            self.read(&file, &text, home, &cond, depth + 1)?;
                        }
                    }
                }
                _ => {
                    if args.is_empty() {
                        return Err(err(format!("`{key}` has no value")));
                    }
                    self.directives.push(Directive {
                        cond: cond.clone(),
                        key,
                        args,
                        file: path.to_path_buf(),
                        line,
                    })
                }
            }
        }
        Ok(())
    }

    /// The settings for a host known as any of `names` (the first is the
    /// one `%h` stands for). `home` expands `~` and `%d`.
    pub fn lookup(&self, names: &[&str], home: Option<&Path>) -> Result<HostConfig, ConfigError> {
        let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let original = names.first().cloned().unwrap_or_default();
        let mut hc = HostConfig::default();
        for d in &self.directives {
            let applies = match &d.cond {
                Cond::Always => true,
                Cond::Never => false,
                Cond::Host(pats) => host_matches(pats, &names),
            };
            if !applies {
                continue;
            }
            let err = |message: String| ConfigError {
                file: d.file.clone(),
                line: d.line,
                message,
            };
            let a = d.args[0].as_str();
            match d.key.as_str() {
                "hostname" if hc.hostname.is_none() => {
                    hc.hostname = Some(expand_tokens(a, &original, home).map_err(err)?)
                }
                "user" if hc.user.is_none() => hc.user = Some(a.to_string()),
                "port" if hc.port.is_none() => {
                    hc.port = Some(
                        a.parse::<u16>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| err(format!("bad port `{a}`")))?,
                    )
                }
                "identityfile" if hc.identity_file.is_none() => {
                    hc.identity_file = Some(expand_path(a, &original, home).map_err(err)?)
                }
                "userknownhostsfile" if hc.user_known_hosts_file.is_none() => {
                    hc.user_known_hosts_file = Some(if a.eq_ignore_ascii_case("none") {
                        PathBuf::from("/dev/null")
                    } else {
                        expand_path(a, &original, home).map_err(err)?
                    })
                }
                "proxyjump" if hc.proxy_jump.is_none() => hc.proxy_jump = Some(a.to_string()),
                "connecttimeout" if hc.connect_timeout.is_none() => {
                    hc.connect_timeout = Some(parse_time(a).map_err(err)?)
                }
                "serveraliveinterval" if hc.server_alive_interval.is_none() => {
                    hc.server_alive_interval = Some(parse_time(a).map_err(err)?)
                }
                _ => {}
            }
        }
        Ok(hc)
    }
}

/// `keyword args...` or `keyword=args...`; `None` for blank and comment lines.
fn split_line(raw: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let l = raw.trim();
    if l.is_empty() || l.starts_with('#') {
        return Ok(None);
    }
    let end = l
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(l.len());
    let key = l[..end].to_ascii_lowercase();
    let mut rest = l[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '#' {
            break; // trailing comment
        }
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '"' {
                    closed = true;
                    break;
                }
                arg.push(c);
            }
            if !closed {
                return Err(format!("unterminated quote in `{l}`"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
    Ok(Some((key, args)))
}

/// One `Host` line against the names a host is known by.
fn host_matches(patterns: &[String], names: &[String]) -> bool {
    let mut positive = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if names.iter().any(|n| glob(neg, n)) {
                return false;
            }
        } else if names.iter().any(|n| glob(p, n)) {
            positive = true;
        }
    }
    positive
}

/// `*` and `?` glob (OpenSSH's match_pattern), case-insensitive.
pub fn glob(pat: &str, s: &str) -> bool {
    crate::pattern::glob(&pat.to_ascii_lowercase(), &s.to_ascii_lowercase())
}

/// `%h` (the host as named), `%d` (home), `%%`.
fn expand_tokens(s: &str, host: &str, home: Option<&Path>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') | Some('n') => out.push_str(host),
            Some('d') => out.push_str(
                &home
                    .ok_or("`%d` used but HOME is not set")?
                    .display()
                    .to_string(),
            ),
            Some(t) => return Err(format!("token `%{t}` in `{s}` is not supported by dwprov")),
            None => return Err(format!("`{s}` ends with a lone `%`")),
        }
    }
    Ok(out)
}

/// Tokens, then `~/` → home.
fn expand_path(s: &str, host: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    let s = expand_tokens(s, host, home)?;
    if s == "~" || s.starts_with("~/") {
        let home = home.ok_or("`~` used but HOME is not set")?;
        return Ok(home.join(s.trim_start_matches('~').trim_start_matches('/')));
    }
    if s.starts_with('~') {
        return Err(format!("`{s}`: only `~/` (your own home) is supported"));
    }
    Ok(PathBuf::from(s))
}

/// The files an `Include` argument names (sorted, as OpenSSH globs them).
fn include_files(arg: &str, home: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let p = expand_path(arg, "", home)?;
    let p = if p.is_absolute() {
        p
    } else {
        home.ok_or("a relative `Include` is in ~/.ssh, but HOME is not set")?
            .join(".ssh")
            .join(p)
    };
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![p]);
    }
    let dir = p.parent().unwrap_or(Path::new("/"));
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with('.') && crate::pattern::glob(&name, &n)
            })
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    Ok(out)
}

/// `ssh_config` TIME: seconds, or a sum like `1m30s` (s, m, h, d, w).
fn parse_time(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad time `{s}` (seconds, or e.g. `1m30s`)");
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(mult));
        num.clear();
    }
    if !num.is_empty() {
        total = total.saturating_add(num.parse::<u64>().map_err(|_| bad())?);
    }
    Ok(Duration::from_secs(total))
}

/// One hop of a `ProxyJump` list: `[user@]host[:port]` or
/// `ssh://[user@]host[:port]`; IPv6 addresses in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Parse a comma-separated `ProxyJump` list (outermost hop first).
pub fn parse_jump_list(s: &str) -> Result<Vec<JumpSpec>, String> {
    s.split(',').map(|h| parse_jump(h.trim())).collect()
}

pub fn parse_jump(s: &str) -> Result<JumpSpec, String> {
    let bad = |why: &str| format!("jump host `{s}`: {why} (expected [user@]host[:port])");
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Some(c) = s.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | ':' | '[' | ']' | '/'))
    }) {
        return Err(bad(&format!("{c:?} is not allowed")));
    }
    let rest = s.strip_prefix("ssh://").unwrap_or(s);
    if rest.contains('/') {
        return Err(bad("`/` is not allowed"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return Err(bad("empty user")),
        None => (None, rest),
    };
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        match after {
            "" => (h, None),
            a => (
                h,
                Some(a.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
            ),
        }
    } else if hostport.matches(':').count() > 1 {
        (hostport, None) // a bare IPv6 address
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(bad("bad host"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(&format!("bad port `{p}`")))?,
        ),
        None => None,
    };
    Ok(JumpSpec {
        user,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> SshConfig {
        SshConfig::parse(Path::new("/cfg"), text, Some(Path::new("/home/adm"))).unwrap()
    }

    fn look(c: &SshConfig, names: &[&str]) -> HostConfig {
        c.lookup(names, Some(Path::new("/home/adm"))).unwrap()
    }

    #[test]
    fn patterns_negation_and_first_value_wins() {
        let c = cfg("# global\n\
             ConnectTimeout 7\n\
             Host gw* !gw-old  other\n\
             \x20 HostName %h.example.net\n\
             \x20 Port 2222\n\
             \x20 User=admin\n\
             \x20 IdentityFile ~/.ssh/gw_key\n\
             \x20 IdentityFile ~/.ssh/second\n\
             \x20 ProxyJump bastion\n\
             Host gw1\n\
             \x20 Port 1111\n\
             \x20 User late\n\
             Host bastion\n\
             \x20 HostName 10.0.0.1\n\
             \x20 ProxyJump none\n\
             Host 10.1.?.*\n\
             \x20 User \"by ip\"\n\
             Host *\n\
             \x20 User fallback\n\
             \x20 ServerAliveInterval 1m30s\n\
             \x20 UserKnownHostsFile %d/kh /other\n\
             \x20 ConnectTimeout 99\n");
        let h = look(&c, &["gw1"]);
        assert_eq!(h.hostname.as_deref(), Some("gw1.example.net"));
        assert_eq!(h.port, Some(2222)); // first obtained value wins over `Host gw1`
        assert_eq!(h.user.as_deref(), Some("admin"));
        assert_eq!(
            h.identity_file.as_deref(),
            Some(Path::new("/home/adm/.ssh/gw_key"))
        );
        assert_eq!(h.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(h.connect_timeout, Some(Duration::from_secs(7))); // global line first
        assert_eq!(h.server_alive_interval, Some(Duration::from_secs(90)));
        assert_eq!(
            h.user_known_hosts_file.as_deref(),
            Some(Path::new("/home/adm/kh"))
        );
        // Negated: `gw-old` matches `gw*` but is excluded from the block.
        let h = look(&c, &["gw-old"]);
        assert_eq!(h.port, None);
        assert_eq!(h.user.as_deref(), Some("fallback"));
        assert_eq!(h.hostname, None);
        // Several patterns per line; case-insensitive names.
        assert_eq!(look(&c, &["OTHER"]).port, Some(2222));
        // `?` glob.
        assert_eq!(look(&c, &["10.1.2.3"]).user.as_deref(), Some("by ip"));
        assert_eq!(look(&c, &["10.1.22.3"]).user.as_deref(), Some("fallback"));
        // `ProxyJump none` is an explicit value.
        assert_eq!(look(&c, &["bastion"]).proxy_jump.as_deref(), Some("none"));
        // Matched on the address or the inventory name; `%h` is the first name.
        let h = look(&c, &["10.9.9.9", "gw7"]);
        assert_eq!(h.hostname.as_deref(), Some("10.9.9.9.example.net"));
        // A negated pattern matching either name excludes the block.
        assert_eq!(look(&c, &["gw5", "gw-old"]).port, None);
    }

    #[test]
    fn match_blocks_never_apply_and_errors_name_the_line() {
        let c = cfg("Match exec \"true\"\n  User m\nHost *\n  User h\n");
        assert_eq!(look(&c, &["x"]).user.as_deref(), Some("h"));
        let c = cfg("Host a\n  Port 0\n");
        let e = c.lookup(&["a"], None).unwrap_err();
        assert_eq!(e.to_string(), "/cfg:2: bad port `0`");
        // Not looked up: not an error.
        assert!(c.lookup(&["b"], None).is_ok());
        let e = SshConfig::parse(Path::new("/cfg"), "Host\n", None).unwrap_err();
        assert_eq!(e.line, 1);
        let e = SshConfig::parse(Path::new("/cfg"), "User \"x\n", None).unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
        let c = cfg("Host a\n ConnectTimeout soon\n");
        assert!(c
            .lookup(&["a"], None)
            .unwrap_err()
            .message
            .contains("bad time"));
    }

    #[test]
    fn include_in_place_with_globs() {
        let dir = std::env::temp_dir().join(format!("dwprov-sshcfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ssh/conf.d")).unwrap();
        std::fs::create_dir_all(dir.join(".ssh")).unwrap();
        std::fs::write(dir.join("ssh/conf.d/10-a.conf"), "Host a\n  Port 10\n").unwrap();
        std::fs::write(
            dir.join("ssh/conf.d/20-b.conf"),
            "Host a b\n  Port 20\n  User b\n",
        )
        .unwrap();
        std::fs::write(dir.join("ssh/conf.d/skip.txt"), "Host *\n  Port 99\n").unwrap();
        std::fs::write(dir.join(".ssh/rel"), "  User rel\n").unwrap();
        let main = dir.join("config");
        std::fs::write(
            &main,
            format!(
                "Host a\n  Include rel\nInclude {}/ssh/conf.d/*.conf missing.conf\nHost *\n  Port 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let c = SshConfig::load(&main, Some(&dir)).unwrap();
        let look = |n: &str| c.lookup(&[n], Some(&dir)).unwrap();
        // `rel` is read under `Host a` (the including block's condition).
        assert_eq!(look("a").user.as_deref(), Some("rel"));
        assert_eq!(look("a").port, Some(10));
        assert_eq!(look("b").port, Some(20));
        assert_eq!(look("b").user.as_deref(), Some("b"));
        assert_eq!(look("z").port, Some(1));
        assert_eq!(look("z").user, None);
        assert_eq!(c.files.len(), 4);
        // An include loop is an error, not a stack overflow.
        std::fs::write(&main, format!("Include {}\n", main.display())).unwrap();
        let e = SshConfig::load(&main, Some(&dir)).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jump_specs() {
        let j = |s: &str| parse_jump(s).unwrap();
        assert_eq!(
            j("admin@bastion.example.net:2200"),
            JumpSpec {
                user: Some("admin".into()),
                host: "bastion.example.net".into(),
                port: Some(2200)
            }
        );
        assert_eq!(j("bastion").host, "bastion");
        assert_eq!(j("bastion").port, None);
        assert_eq!(j("[fd00::1]:22").host, "fd00::1");
        assert_eq!(j("[fd00::1]:22").port, Some(22));
        assert_eq!(j("fd00::1").host, "fd00::1");
        assert_eq!(j("ssh://u@h:3").user.as_deref(), Some("u"));
        assert_eq!(parse_jump_list("a,b@c:2").unwrap().len(), 2);
        for bad in [
            "",
            "a b",
            "a;b",
            "$(x)",
            "h:0",
            "h:x",
            "@h",
            "-oProxyCommand=x",
            "a/b",
            "[::1",
        ] {
            assert!(parse_jump(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_time("1h5").unwrap(), Duration::from_secs(3605));
        assert!(parse_time("x").is_err());
    }
}
