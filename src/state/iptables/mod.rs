//! iptables state parsed from `iptables-save` (or an iptables-restore payload)
//! into a canonical typed form.
//!
//! Canonical means: a rule written the human way (`-s 10.1.2.3 -p tcp
//! --dport 80 -j CONNMARK --set-mark 0x100`) and the `iptables-save` echo
//! of it (`-s 10.1.2.3/32 -p tcp -m tcp --dport 80 -j CONNMARK --set-xmark
//! 0x100/0xffffffff`) parse to equal values, and `Display` prints the
//! iptables-save spelling. Extensions dwprov does not know are kept verbatim.
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

mod canon;
mod lex;
mod rule;

const WHAT: &str = "iptables-save output";

/// All tables, by name ("filter", "nat", "mangle", "raw", ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Iptables {
    pub tables: BTreeMap<String, Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub chains: BTreeMap<String, Chain>,
}

/// A chain; `policy` is None for a user chain (`:NAME - [0:0]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub policy: Option<String>,
    pub rules: Vec<IptRule>,
}

/// A value that may be preceded by `!`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Neg<T> {
    pub negated: bool,
    pub value: T,
}

/// One option of a match or target: `[!] --name arg...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Opt {
    /// Canonical name without the leading `--`.
    pub name: String,
    pub negated: bool,
    /// Values (unquoted), in iptables-save spelling for known extensions.
    pub args: Vec<String>,
}

/// `-m MODULE options...`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Match {
    pub module: String,
    pub options: Vec<Opt>,
}

/// `-j NAME options...` or `-g CHAIN` (goto).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    pub goto: bool,
    pub name: String,
    pub options: Vec<Opt>,
}

/// One rule in canonical form: header matches (in iptables-save's fixed
/// order `-s -d -i -o -p -f`), match modules in rule order (implicit
/// protocol matches made explicit), then the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct IptRule {
    /// `-s`: canonical `addr/len` (host bits cleared; `/32` added).
    pub source: Option<Neg<String>>,
    /// `-d`, like `source`.
    pub destination: Option<Neg<String>>,
    pub in_interface: Option<Neg<String>>,
    pub out_interface: Option<Neg<String>>,
    /// `-p`: the name iptables-save prints (`tcp`, `gre`, `253`); never "all".
    pub protocol: Option<Neg<String>>,
    /// `-f` (Some(false)) / `! -f` (Some(true)); the bool is the negation.
    pub fragment: Option<bool>,
    pub matches: Vec<Match>,
    pub target: Option<Target>,
}

impl IptRule {
    /// Parse the rule spec after `-A CHAIN` (quoting as iptables-restore reads it).
    pub fn parse(spec: &str) -> crate::Result<IptRule> {
        Self::parse_at(spec, 1, "iptables rule")
    }

    pub(crate) fn parse_at(spec: &str, line: usize, what: &str) -> crate::Result<IptRule> {
        let tokens = lex::tokenize(spec).map_err(|m| crate::Error::parse(what, line, m))?;
        rule::parse_tokens(&tokens).map_err(|m| crate::Error::parse(what, line, m))
    }

    /// The text of `-m comment --comment` (the first one).
    pub fn comment(&self) -> Option<&str> {
        self.matches
            .iter()
            .filter(|m| m.module == "comment")
            .flat_map(|m| &m.options)
            .find(|o| o.name == "comment")
            .and_then(|o| o.args.first())
            .map(String::as_str)
    }

    /// The `-j` / `-g` target name.
    pub fn target(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.name.as_str())
    }
}

impl crate::ownership::Jump for IptRule {
    fn jump_target(&self) -> Option<&str> {
        self.target()
    }
}

fn write_opts(out: &mut String, spec: Option<&canon::Spec>, opts: &[Opt]) {
    for o in opts {
        if o.negated {
            out.push_str(" !");
        }
        out.push_str(" --");
        out.push_str(&o.name);
        let kind = spec.map(|s| s.kind(&o.name)).unwrap_or(canon::Kind::Raw);
        for a in &o.args {
            out.push(' ');
            match kind {
                canon::Kind::Str => lex::save_string(a, out),
                canon::Kind::Raw => lex::minimal_string(a, out),
            }
        }
    }
}

impl fmt::Display for IptRule {
    /// The rule exactly as iptables-save prints it after `-A CHAIN `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let mut header = |flag: &str, v: &Option<Neg<String>>| {
            if let Some(v) = v {
                if v.negated {
                    out.push_str(" !");
                }
                out.push(' ');
                out.push_str(flag);
                out.push(' ');
                lex::minimal_string(&v.value, &mut out);
            }
        };
        header("-s", &self.source);
        header("-d", &self.destination);
        header("-i", &self.in_interface);
        header("-o", &self.out_interface);
        header("-p", &self.protocol);
        match self.fragment {
            Some(true) => out.push_str(" ! -f"),
            Some(false) => out.push_str(" -f"),
            None => {}
        }
        for m in &self.matches {
            out.push_str(" -m ");
            lex::minimal_string(&m.module, &mut out);
            write_opts(&mut out, canon::match_spec(&m.module), &m.options);
        }
        if let Some(t) = &self.target {
            out.push_str(if t.goto { " -g " } else { " -j " });
            lex::minimal_string(&t.name, &mut out);
            write_opts(&mut out, canon::target_spec(&t.name), &t.options);
        }
        f.write_str(out.strip_prefix(' ').unwrap_or(&out))
    }
}

impl Iptables {
    /// Parse `iptables-save` output or an `iptables-restore` payload:
    /// `*table`, `:CHAIN POLICY [p:b]`, `-A CHAIN rule`, `-I CHAIN [n] rule`,
    /// `-N CHAIN`, `COMMIT`, `# comments`, blank lines; `[p:b]` counter
    /// prefixes (iptables-save -c) are ignored. Chains used without a
    /// declaration are created with no policy. Never panics; errors name
    /// the line.
    pub fn parse(text: &str) -> crate::Result<Iptables> {
        let mut ipt = Iptables::default();
        let mut current: Option<(String, usize)> = None;
        let mut last = 0;
        for (idx, raw) in text.lines().enumerate() {
            let n = idx + 1;
            last = n;
            let err = |m: String| crate::Error::parse(WHAT, n, m);
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                if let Some((t, at)) = &current {
                    return Err(err(format!(
                        "table {name:?} starts before table {t:?} (line {at}) has its COMMIT"
                    )));
                }
                let name = name.trim();
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(err(format!("bad table name {name:?}")));
                }
                ipt.tables.entry(name.to_string()).or_default();
                current = Some((name.to_string(), n));
                continue;
            }
            let Some((table, _)) = &current else {
                return Err(err(format!(
                    "{:?} outside a table (expected *TABLE first)",
                    truncate(line)
                )));
            };
            let table = ipt.tables.entry(table.clone()).or_default();
            if line == "COMMIT" {
                current = None;
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                let mut parts = decl.split_whitespace();
                let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                    return Err(err(format!(
                        "chain line {:?} needs a name and a policy",
                        truncate(line)
                    )));
                };
                if let Some(c) = parts.next() {
                    if !is_counters(c) {
                        return Err(err(format!("bad counters {:?}", truncate(c))));
                    }
                }
                if parts.next().is_some() {
                    return Err(err(format!(
                        "trailing text in chain line {:?}",
                        truncate(line)
                    )));
                }
                let chain = table.chains.entry(name.to_string()).or_default();
                chain.policy = (policy != "-").then(|| policy.to_string());
                continue;
            }
            // A rule or command, possibly after counters.
            let mut rest = line;
            if rest.starts_with('[') {
                let (c, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                if !is_counters(c) {
                    return Err(err(format!("bad counters {:?}", truncate(c))));
                }
                rest = r.trim_start();
            }
            let (cmd, r) = split_word(rest);
            let (chain, r) = split_word(r);
            if chain.is_empty() {
                return Err(err(format!("{:?} needs a chain name", truncate(line))));
            }
            match cmd {
                "-A" | "--append" => {
                    let rule = IptRule::parse_at(r, n, WHAT)?;
                    table
                        .chains
                        .entry(chain.to_string())
                        .or_default()
                        .rules
                        .push(rule);
                }
                "-I" | "--insert" => {
                    let (num, after) = split_word(r);
                    let (pos, spec) = match num.parse::<usize>() {
                        Ok(p) => (p, after),
                        Err(_) => (1, r),
                    };
                    let rule = IptRule::parse_at(spec, n, WHAT)?;
                    let rules = &mut table.chains.entry(chain.to_string()).or_default().rules;
                    if pos == 0 || pos > rules.len() + 1 {
                        return Err(err(format!("index {pos} out of range for chain {chain}")));
                    }
                    rules.insert(pos - 1, rule);
                }
                "-N" | "--new-chain" => {
                    if !r.trim().is_empty() {
                        return Err(err(format!("trailing text after -N {chain}")));
                    }
                    table.chains.entry(chain.to_string()).or_default();
                }
                _ => {
                    return Err(err(format!(
                        "unsupported line {:?} (expected -A, -I, -N, :CHAIN or COMMIT)",
                        truncate(line)
                    )))
                }
            }
        }
        if let Some((t, _)) = current {
            return Err(crate::Error::parse(
                WHAT,
                last,
                format!("table {t:?} has no COMMIT"),
            ));
        }
        Ok(ipt)
    }

    pub fn chain(&self, table: &str, chain: &str) -> Option<&Chain> {
        self.tables.get(table)?.chains.get(chain)
    }
}

impl fmt::Display for Iptables {
    /// An iptables-restore payload in iptables-save layout (counters zeroed;
    /// chains in name order, which may differ from iptables-save's order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, table) in &self.tables {
            writeln!(f, "*{name}")?;
            for (cname, chain) in &table.chains {
                writeln!(
                    f,
                    ":{cname} {} [0:0]",
                    chain.policy.as_deref().unwrap_or("-")
                )?;
            }
            for (cname, chain) in &table.chains {
                for rule in &chain.rules {
                    let text = rule.to_string();
                    if text.is_empty() {
                        writeln!(f, "-A {cname}")?;
                    } else {
                        writeln!(f, "-A {cname} {text}")?;
                    }
                }
            }
            writeln!(f, "COMMIT")?;
        }
        Ok(())
    }
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn is_counters(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.split_once(':'))
        .is_some_and(|(p, b)| {
            !p.is_empty()
                && !b.is_empty()
                && p.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        })
}

/// Keep error messages short when a line is huge.
fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests;
