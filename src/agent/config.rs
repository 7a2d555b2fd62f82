//! The agent's configuration: one JSON document per gateway, rendered by
//! apply from the inventory's lines (`health`, `fallback`, `weight`) in phase
//! 2, or written by hand for a test. Parsed into typed values and checked
//! whole before the agent starts, so a bad config is refused with its
//! place (`file:line:column` for syntax, `lines[1].fallback[0]` for meaning)
//! instead of probing half a gateway.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::ownership::NEXTHOP_ID_BAND;

/// The config format this agent reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bounds of the health settings (issue 11: interval fractions >= 0.2 s).
pub const MIN_INTERVAL: f64 = 0.2;
pub const MAX_INTERVAL: f64 = 3600.0;
pub const MIN_TIMEOUT: f64 = 0.05;
pub const MAX_TIMEOUT: f64 = 60.0;
pub const MAX_ROUNDS: u32 = 1000;
/// The kernel's largest nexthop group weight.
pub const MAX_WEIGHT: u32 = 256;
/// At most this many probe targets per line (each is a thread per round).
pub const MAX_TARGETS: usize = 16;
/// The largest config the agent reads (a follow config carries the whole
/// intent, prefix lists included); render refuses a bigger one.
pub const MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub format_version: u32,
    pub lines: Vec<Line>,
    /// The balanced default route: a nexthop group over several lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced: Option<Balanced>,
    /// Dynamic lines to follow on the gateway (issue 14): the intent apply
    /// rendered from and the facts it rendered with (`agent::follow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<Follow>,
}

/// What the agent needs to re-render a dynamic line's objects itself, with
/// the same typed code as apply (`model::resolve`, `render::render`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Follow {
    /// The gateway's intent (`model::Gateway`, dynamic lines unresolved),
    /// untyped here: the agent's config sits below the model.
    pub intent: serde_json::Value,
    /// Each dynamic line's address and next hop as apply rendered them
    /// (none: the line was down).
    pub facts: Vec<Fact>,
    /// The `--templates` overrides apply rendered with (template name, as
    /// `ip.batch` or `boot/boot.sh`, -> text); only those that replaced a
    /// built-in one. The follower renders with them, so a redial converges
    /// to what apply would render.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub templates: std::collections::BTreeMap<String, String>,
}

/// A dynamic line's facts at render time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    pub line: String,
    pub address: Option<ipnet::IpNet>,
    pub next_hop: Option<std::net::IpAddr>,
}

/// One line (an ISP uplink) as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub name: String,
    pub interface: String,
    /// The line's own (source) address: probes are bound to it.
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// The line's fwmark and dwprov's mark mask: probes carry the mark (so
    /// they route by the line's own table), conntrack entries of a dead line
    /// are found by it.
    pub mark: u32,
    pub mark_mask: u32,
    /// The line's own table (source return, probes): never repointed.
    pub table: u32,
    /// The nexthop object every route carrying this line's traffic uses
    /// (`nhid N`); none: the line is only watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<u32>,
    /// No health: not monitored, its state is `unknown` and it counts as
    /// alive for the others' fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Where its traffic goes while it is down, first live one wins.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Its share of the balanced default route.
    #[serde(default = "one")]
    pub weight: u32,
    /// On recovery, also delete the connections its fallback carried.
    #[serde(default)]
    pub flush_on_recovery: bool,
    /// Run as `sh -c 'CMD "$@"' on_change LINE STATE` on each transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_change: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub targets: Vec<Target>,
    /// Seconds between the starts of two probe rounds.
    #[serde(default = "one_f")]
    pub interval: f64,
    /// Seconds a probe may take.
    #[serde(default = "one_f")]
    pub timeout: f64,
    /// Bad rounds in a row before the line is down.
    #[serde(default = "three")]
    pub down: u32,
    /// Good rounds in a row before it is up again.
    #[serde(default = "five")]
    pub up: u32,
    /// Targets that must answer for a round to be good.
    #[serde(default = "one")]
    pub reliability: u32,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn five() -> u32 {
    5
}
fn one_f() -> f64 {
    1.0
}

impl Health {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

/// What a probe asks: `ADDRESS` is an ICMP echo, `ADDRESS:PORT` a TCP connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Icmp(Ipv4Addr),
    Tcp(SocketAddrV4),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Target::Icmp(a));
        }
        match s.parse::<SocketAddrV4>() {
            Ok(sa) if sa.port() != 0 => Ok(Target::Tcp(sa)),
            Ok(_) => Err(format!("{s:?}: port 0 cannot be probed")),
            Err(_) => Err(format!(
                "{s:?} is not a probe target (ADDRESS for ICMP echo, ADDRESS:PORT for TCP connect)"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Icmp(a) => write!(f, "{a}"),
            Target::Tcp(sa) => write!(f, "{sa}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balanced {
    /// The nexthop group id the default route uses (`nhid G`).
    pub id: u32,
    /// Lines in the group (each with a nexthop), weighted by their `weight`.
    pub members: Vec<String>,
}

/// Why a config was refused, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Not the JSON shape: `file:line:column: message`.
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that cannot work: `file: at: message`.
    Invalid {
        file: String,
        at: String,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax {
                file,
                line,
                column,
                message,
            } => write!(f, "{file}:{line}:{column}: {message}"),
            ConfigError::Invalid { file, at, message } => write!(f, "{file}: {at}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and checks a config; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            message: crate::escape::cut(&e.to_string(), 240),
        })?;
        cfg.check().map_err(|(at, message)| ConfigError::Invalid {
            file: file.to_string(),
            at,
            message,
        })?;
        Ok(cfg)
    }

    pub fn line(&self, name: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.name == name)
    }

    /// Every rule a config must satisfy, as (where, what).
    fn check(&self) -> Result<(), (String, String)> {
        if self.format_version != FORMAT_VERSION {
            return Err((
                "format_version".into(),
                format!(
                    "{} is not a format this agent reads ({FORMAT_VERSION}); install the agent of the same dwprov",
                    self.format_version
                ),
            ));
        }
        if self.lines.is_empty() {
            return Err(("lines".into(), "no line to watch".into()));
        }
        for (i, l) in self.lines.iter().enumerate() {
            let at = format!("lines[{i}].name");
            check_name(&l.name).map_err(|m| (at.clone(), m))?;
            if self.lines[..i].iter().any(|o| o.name == l.name) {
                return Err((at, format!("line {:?} is listed twice", l.name)));
            }
        }
        let mut ids: Vec<(u32, String)> = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            let at = |k: &str| format!("lines[{i}].{k}");
            check_interface(&l.interface).map_err(|m| (at("interface"), m))?;
            if l.mark == 0 || l.mark & !l.mark_mask != 0 {
                return Err((
                    at("mark"),
                    format!(
                        "{:#x} must be non-zero and inside mark_mask {:#x}",
                        l.mark, l.mark_mask
                    ),
                ));
            }
            if l.table == 0 || l.table >= 0xffff_fff0 {
                return Err((at("table"), format!("{} is not a usable table", l.table)));
            }
            if let Some(id) = l.nexthop {
                ids.push((id, at("nexthop")));
            }
            if l.weight == 0 || l.weight > MAX_WEIGHT {
                return Err((
                    at("weight"),
                    format!("{} is outside 1..={MAX_WEIGHT}", l.weight),
                ));
            }
            if let Some(h) = &l.health {
                check_health(h).map_err(|(k, m)| (at(&format!("health.{k}")), m))?;
            }
            for (j, f) in l.fallback.iter().enumerate() {
                let at = at(&format!("fallback[{j}]"));
                if *f == l.name {
                    return Err((at, "a line cannot fall back to itself".into()));
                }
                if self.line(f).is_none() {
                    return Err((at, format!("unknown line {:?}{}", f, self.did_you_mean(f))));
                }
                if l.fallback[..j].contains(f) {
                    return Err((at, format!("{f:?} is listed twice")));
                }
            }
            if let Some(cmd) = &l.on_change {
                if cmd.trim().is_empty() || cmd.contains('\0') {
                    return Err((at("on_change"), "an empty or NUL-bearing command".into()));
                }
            }
        }
        if let Some(b) = &self.balanced {
            ids.push((b.id, "balanced.id".into()));
            if b.members.is_empty() {
                return Err(("balanced.members".into(), "an empty group".into()));
            }
            for (j, m) in b.members.iter().enumerate() {
                let at = format!("balanced.members[{j}]");
                match self.line(m) {
                    None => {
                        return Err((at, format!("unknown line {m:?}{}", self.did_you_mean(m))))
                    }
                    Some(l) if l.nexthop.is_none() => {
                        return Err((at, format!("line {m:?} has no nexthop to group")))
                    }
                    Some(_) => {}
                }
                if b.members[..j].contains(m) {
                    return Err((at, format!("{m:?} is listed twice")));
                }
            }
        }
        let (first, last) = NEXTHOP_ID_BAND;
        for (k, (id, at)) in ids.iter().enumerate() {
            if !(first..=last).contains(id) {
                return Err((
                    at.clone(),
                    format!("nexthop id {id} is outside dwprov's band {first}..={last}"),
                ));
            }
            if let Some((_, other)) = ids[..k].iter().find(|(o, _)| o == id) {
                return Err((at.clone(), format!("nexthop id {id} is also {other}")));
            }
        }
        Ok(())
    }

    fn did_you_mean(&self, name: &str) -> String {
        self.lines
            .iter()
            .map(|l| (strsim::levenshtein(&l.name, name), &l.name))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, n)| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a line name (letters, digits, _ -, at most 32)",
            crate::escape::value(&format!("{name:?}"))
        ))
    }
}

/// What Linux accepts as an interface name, less what `ip -batch` would
/// read as a quote, escape or comment (and the words `ip` takes for keywords).
pub fn check_interface(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !matches!(name, "all" | "default")
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/:\"'#\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an interface name",
            crate::escape::value(&format!("{name:?}"))
        ))
    }
}

fn check_health(h: &Health) -> Result<(), (String, String)> {
    let range = |k: &str, v: f64, lo: f64, hi: f64| {
        if v.is_finite() && (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err((k.to_string(), format!("{v} is outside {lo}..={hi} seconds")))
        }
    };
    range("interval", h.interval, MIN_INTERVAL, MAX_INTERVAL)?;
    range("timeout", h.timeout, MIN_TIMEOUT, MAX_TIMEOUT)?;
    for (k, v) in [("down", h.down), ("up", h.up)] {
        if v == 0 || v > MAX_ROUNDS {
            return Err((k.into(), format!("{v} is outside 1..={MAX_ROUNDS} rounds")));
        }
    }
    if h.targets.is_empty() || h.targets.len() > MAX_TARGETS {
        return Err((
            "targets".into(),
            format!(
                "between 1 and {MAX_TARGETS} targets, not {}",
                h.targets.len()
            ),
        ));
    }
    for (j, t) in h.targets.iter().enumerate() {
        if h.targets[..j].contains(t) {
            return Err((format!("targets[{j}]"), format!("{t} is listed twice")));
        }
    }
    if h.reliability == 0 || h.reliability as usize > h.targets.len() {
        return Err((
            "reliability".into(),
            format!(
                "{} targets must answer, but there are {} (1..={})",
                h.reliability,
                h.targets.len(),
                h.targets.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"{
  "format_version": 1,
  "lines": [
    {"name": "ctc", "interface": "eth1", "address": "198.51.100.2", "gateway": "198.51.100.1",
     "mark": 256, "mark_mask": 65280, "table": 100, "nexthop": 20001,
     "health": {"targets": ["100.64.1.10", "100.64.1.10:80"]},
     "fallback": ["cnc"], "weight": 2},
    {"name": "cnc", "interface": "eth2", "address": "203.0.113.2", "gateway": "203.0.113.1",
     "mark": 512, "mark_mask": 65280, "table": 200, "nexthop": 20002,
     "health": {"targets": ["100.65.1.10"], "interval": 0.5, "timeout": 0.4, "down": 2, "up": 4},
     "fallback": ["ctc"]}
  ],
  "balanced": {"id": 20100, "members": ["ctc", "cnc"]}
}"#;

    fn with(edit: impl Fn(&mut serde_json::Value)) -> Result<Config, ConfigError> {
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        edit(&mut v);
        Config::parse(&v.to_string(), "agent.json")
    }

    fn invalid(edit: impl Fn(&mut serde_json::Value)) -> String {
        match with(edit) {
            Err(e @ ConfigError::Invalid { .. }) => e.to_string(),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn the_sample_parses_with_defaults() {
        let c = Config::parse(SAMPLE, "agent.json").unwrap();
        let ctc = c.line("ctc").unwrap();
        let h = ctc.health.as_ref().unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.down, h.up, h.reliability),
            (1.0, 1.0, 3, 5, 1)
        );
        assert_eq!(
            h.targets,
            vec![
                Target::Icmp("100.64.1.10".parse().unwrap()),
                Target::Tcp("100.64.1.10:80".parse().unwrap())
            ]
        );
        assert_eq!(c.line("cnc").unwrap().weight, 1);
        assert_eq!(
            c.line("cnc").unwrap().health.as_ref().unwrap().interval(),
            Duration::from_millis(500)
        );
        // Round trip: what phase 2 renders is what the agent reads.
        let again = Config::parse(&serde_json::to_string(&c).unwrap(), "x").unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = Config::parse(
            "{\n  \"format_version\": 1,\n  \"lines\": [ {\"nam\": 1} ]\n}",
            "a.json",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("a.json:3:"), "{s}");
        assert!(s.contains("nam"), "{s}");
        let e = Config::parse(
            "{\"format_version\": 1, \"lines\": [], \"bogus\": 2}",
            "a.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_their_place() {
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| v["format_version"] = 2.into()),
                "format_version: 2",
            ),
            (
                Box::new(|v| v["lines"][1]["fallback"][0] = "ctx".into()),
                "lines[1].fallback[0]: unknown line \"ctx\" (did you mean \"ctc\"?)",
            ),
            (
                Box::new(|v| v["lines"][1]["fallback"][0] = "cnc".into()),
                "itself",
            ),
            (
                Box::new(|v| v["lines"][1]["name"] = "ctc".into()),
                "listed twice",
            ),
            (
                Box::new(|v| v["lines"][0]["health"]["reliability"] = 3.into()),
                "lines[0].health.reliability",
            ),
            (
                Box::new(|v| v["lines"][0]["health"]["interval"] = 0.1.into()),
                "lines[0].health.interval: 0.1 is outside",
            ),
            (
                Box::new(|v| v["lines"][0]["health"]["timeout"] = 0.into()),
                "health.timeout",
            ),
            (
                Box::new(|v| v["lines"][0]["health"]["down"] = 0.into()),
                "health.down",
            ),
            (
                Box::new(|v| v["lines"][0]["health"]["targets"] = serde_json::json!([])),
                "health.targets",
            ),
            (
                Box::new(|v| {
                    v["lines"][0]["health"]["targets"] = serde_json::json!(["1.2.3.4", "1.2.3.4"])
                }),
                "targets[1]",
            ),
            (
                Box::new(|v| v["lines"][0]["nexthop"] = 5.into()),
                "outside dwprov's band",
            ),
            (
                Box::new(|v| v["lines"][0]["nexthop"] = 20002.into()),
                "lines[1].nexthop: nexthop id 20002 is also lines[0].nexthop",
            ),
            (
                Box::new(|v| v["balanced"]["id"] = 20001.into()),
                "balanced.id: nexthop id 20001 is also",
            ),
            (
                Box::new(|v| v["balanced"]["members"][1] = "cmcc".into()),
                "balanced.members[1]",
            ),
            (Box::new(|v| v["lines"][0]["weight"] = 300.into()), "weight"),
            (
                Box::new(|v| v["lines"][0]["mark"] = 1.into()),
                "inside mark_mask",
            ),
            (
                Box::new(|v| v["lines"][0]["interface"] = "eth1\"x".into()),
                "lines[0].interface",
            ),
            (
                Box::new(|v| v["lines"][0]["interface"] = "a/b".into()),
                "interface",
            ),
            (
                Box::new(|v| v["lines"][0]["on_change"] = " ".into()),
                "on_change",
            ),
        ];
        for (edit, want) in cases {
            let got = invalid(edit);
            assert!(got.contains(want), "{got:?} should say {want:?}");
            assert!(got.starts_with("agent.json: "), "{got}");
        }
        // Not a target: a located syntax error naming the value.
        let e = with(|v| v["lines"][0]["health"]["targets"] = serde_json::json!(["100.64.1.010"]))
            .unwrap_err();
        assert!(
            matches!(e, ConfigError::Syntax { .. }) && e.to_string().contains("100.64.1.010"),
            "{e}"
        );
        let e = with(|v| v["lines"][0]["health"]["targets"] = serde_json::json!(["1.2.3.4:0"]))
            .unwrap_err();
        assert!(e.to_string().contains("port 0"), "{e}");
        let e = with(|v| v["lines"][0]["address"] = "01.2.3.4".into()).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    }

    #[test]
    fn targets_parse_and_print() {
        for s in ["1.2.3.4", "1.2.3.4:443"] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        for s in ["", "host", "1.2.3.4:", "1.2.3.4:99999", "[::1]:80", "1.2.3"] {
            assert!(s.parse::<Target>().is_err(), "{s}");
        }
    }
}
