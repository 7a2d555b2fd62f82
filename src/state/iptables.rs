//! iptables state parsed from `iptables-save` (or an iptables-restore payload)
//! into a canonical typed form. Stub with the agreed API: replaced by the iptables work.
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Iptables {
    pub tables: BTreeMap<String, Table>,
}
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub chains: BTreeMap<String, Chain>,
}
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub policy: Option<String>,
    pub rules: Vec<IptRule>,
}
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IptRule {
    text: String,
}

impl Iptables {
    pub fn parse(text: &str) -> crate::Result<Iptables> {
        let mut ipt = Iptables::default();
        let mut table = String::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
                ipt.tables.entry(table.clone()).or_default();
            } else if let Some(c) = line.strip_prefix(':') {
                let mut w = c.split_whitespace();
                let name = w.next().unwrap_or("").to_string();
                let pol = w.next().filter(|p| *p != "-").map(str::to_string);
                ipt.tables
                    .entry(table.clone())
                    .or_default()
                    .chains
                    .entry(name)
                    .or_default()
                    .policy = pol;
            } else if let Some(r) = line.strip_prefix("-A ") {
                let (c, spec) = r.split_once(' ').unwrap_or((r, ""));
                ipt.tables
                    .entry(table.clone())
                    .or_default()
                    .chains
                    .entry(c.to_string())
                    .or_default()
                    .rules
                    .push(IptRule::parse(spec)?);
            }
        }
        Ok(ipt)
    }
    pub fn chain(&self, table: &str, chain: &str) -> Option<&Chain> {
        self.tables.get(table)?.chains.get(chain)
    }
}

impl IptRule {
    pub fn parse(spec: &str) -> crate::Result<IptRule> {
        Ok(IptRule {
            text: spec.trim().to_string(),
        })
    }
    pub fn comment(&self) -> Option<&str> {
        None
    }
    pub fn target(&self) -> Option<&str> {
        let mut w = self.text.split_whitespace();
        while let Some(x) = w.next() {
            if x == "-j" || x == "-g" {
                return w.next();
            }
        }
        None
    }
}

impl std::fmt::Display for IptRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
