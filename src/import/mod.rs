//! `dwprov import`: read a hand-made gateway (one gather) and write the
//! inventory that renders the same behaviour, with its connection settings
//! carried over. [`read`] recognises the state (pure); this module turns
//! the result into YAML (serde_yaml, through `crate::yaml`), with comments
//! for what was guessed and what stays foreign, writes long prefix lists
//! to `routes_file`s beside the output, and checks that the inventory it
//! wrote builds and renders before it says so.
pub mod read;

use crate::error::{Error, Result};
use crate::facts::Facts;
use crate::inventory::{Host, GATEWAY_KEYS};
use crate::yaml::{Node, Value};
use read::{Adopted, Forward, Lan, Line, Policy, Refusal};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Lists longer than this go to a routes file when there is an output file.
pub const INLINE_PREFIXES: usize = 16;

/// One imported host, ready to write.
pub struct ImportedHost {
    pub name: String,
    pub adopted: Adopted,
    /// The host's connection vars (everything that is not a gateway key).
    pub connection: serde_json::Map<String, serde_json::Value>,
}

/// What `import` writes: the inventory text and the routes files beside it.
pub struct Written {
    pub inventory: String,
    /// (file name, content), relative to the inventory's directory.
    pub routes_files: Vec<(String, String)>,
}

/// Recognise one host's gathered state.
pub fn import_host(host: &Host, facts: &Facts) -> Result<ImportedHost> {
    let management = match &host.connection {
        crate::transport::Connection::Ssh(t) => t.address.parse().ok(),
        _ => None,
    };
    let adopted = read::adopt(facts, management).map_err(|r| match r {
        Refusal::Managed(why) => Error::Invalid {
            message: format!("{}: {why}", host.name),
            hint: Some("import is for gateways configured by hand; this one has an inventory already: `dwprov plan` shows how it differs".into()),
        },
        Refusal::NoLines(why) => Error::Invalid {
            message: format!("{}: {why}", host.name),
            hint: Some("import reads the seed's layout: a table per line with its default route, looked up by `ip rule`".into()),
        },
    })?;
    Ok(ImportedHost {
        name: host.name.clone(),
        adopted,
        connection: connection_vars(&host.vars),
    })
}

#[derive(Serialize)]
struct HostOut<'a> {
    #[serde(flatten)]
    connection: &'a serde_json::Map<String, serde_json::Value>,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark_mask: Option<u32>,
    lan: &'a [Lan],
    lines: Vec<LineOut<'a>>,
    nat: BTreeMap<&'static str, &'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    forwards: &'a [Forward],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hairpin: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    policies: &'a [Policy],
}

#[derive(Serialize)]
struct LineOut<'a> {
    #[serde(flatten)]
    line: &'a Line,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes_file: Option<String>,
}

/// The inventory text for `hosts`. With `files_beside` (the output file's
/// name stem), lists longer than [`INLINE_PREFIXES`] go to routes files
/// `STEM-HOST-LINE.txt`; without it (stdout), every list is inline.
pub fn write(hosts: &[ImportedHost], files_beside: Option<&str>, source: &str) -> Result<Written> {
    let mut routes_files = Vec::new();
    let mut out_hosts: BTreeMap<&str, HostOut> = BTreeMap::new();
    for h in hosts {
        let a = &h.adopted;
        let mut lines = Vec::new();
        for l in &a.lines {
            let list: Vec<String> = l.prefixes.iter().map(|p| p.to_string()).collect();
            let (routes, routes_file) = match files_beside {
                Some(stem) if list.len() > INLINE_PREFIXES => {
                    let name = format!("{stem}-{}-{}.txt", h.name, l.name);
                    let mut text = format!(
                        "# Destination prefixes via line {} of {}, read by `dwprov import` from the live routes.\n",
                        l.name, h.name
                    );
                    for p in &list {
                        text.push_str(p);
                        text.push('\n');
                    }
                    routes_files.push((name.clone(), text));
                    (None, Some(name))
                }
                _ if list.is_empty() => (None, None),
                _ => (Some(list), None),
            };
            lines.push(LineOut {
                line: l,
                routes,
                routes_file,
            });
        }
        out_hosts.insert(
            &h.name,
            HostOut {
                connection: &h.connection,
                method: a.method,
                mark_mask: a.mark_mask,
                lan: &a.lan,
                lines,
                nat: BTreeMap::from([("mode", a.nat)]),
                forwards: &a.forwards,
                hairpin: a.hairpin,
                policies: &a.policies,
            },
        );
    }
    let doc = BTreeMap::from([("all", BTreeMap::from([("hosts", out_hosts)]))]);
    let body = hex_marks(&crate::yaml::to_yaml(&doc)?);
    let mut text = format!(
        "# Written by `dwprov import` from the live state of {} (inventory {source}).\n\
         # It renders the behaviour found there; `dwprov plan -i THIS` shows how\n\
         # dwprov's objects differ from the hand-made ones.\n",
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for h in hosts {
        let a = &h.adopted;
        if !a.guesses.is_empty() {
            let _ = writeln!(text, "#\n# {}: guessed, check these:", h.name);
            for g in &a.guesses {
                let _ = writeln!(text, "#   - {}", crate::escape::value(g));
            }
        }
        if !a.foreign.is_empty() {
            let _ = writeln!(
                text,
                "#\n# {}: not mapped, left as they are (dwprov never touches them):",
                h.name
            );
            for f in &a.foreign {
                let _ = writeln!(
                    text,
                    "#   {}",
                    crate::escape::cut(&crate::escape::value(f), 160)
                );
            }
        }
    }
    text.push_str(&body);
    Ok(Written {
        inventory: text,
        routes_files,
    })
}

/// Write `w` to `out` and its routes files beside it; refuse to overwrite.
pub fn save(w: &Written, out: &Path) -> Result<Vec<PathBuf>> {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut paths = vec![out.to_path_buf()];
    paths.extend(w.routes_files.iter().map(|(n, _)| dir.join(n)));
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(Error::Invalid {
            message: format!("{} exists already", p.display()),
            hint: Some(
                "import never overwrites: give another -o, or move the old files away".into(),
            ),
        });
    }
    for (name, text) in &w.routes_files {
        std::fs::write(dir.join(name), text).map_err(|e| Error::io(dir.join(name), e))?;
    }
    std::fs::write(out, &w.inventory).map_err(|e| Error::io(out, e))?;
    Ok(paths)
}

/// Marks and masks are bit patterns: `mark: 0x100`, not `mark: 256`.
fn hex_marks(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let t = line.trim_start();
        let hexed = ["mark: ", "mark_mask: "].iter().find_map(|k| {
            let n: u32 = t.strip_prefix(k)?.parse().ok()?;
            Some(format!("{}{k}{n:#x}", &line[..line.len() - t.len()]))
        });
        out.push_str(hexed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The stem routes files of `out` are named with (`gw1` for `gw1.yaml`).
pub fn stem(out: &Path) -> String {
    out.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into())
}

/// The host's vars that say how to reach it (address, port, ssh, ...).
fn connection_vars(vars: &Node) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for e in vars.as_map().unwrap_or_default() {
        if !GATEWAY_KEYS.contains(&e.key.as_str()) {
            m.insert(e.key.clone(), json_of(&e.value));
        }
    }
    m
}

fn json_of(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(json_of).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), json_of(&e.value)))
                .collect(),
        ),
    }
}
