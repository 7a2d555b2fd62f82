//! `/etc/iproute2/rt_tables` (and `rt_tables.d/*.conf`): `id name` lines.
use crate::error::{Error, Result};
use serde::Serialize;

/// Table id ↔ name entries, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RtTables {
    pub entries: Vec<(u32, String)>,
}

impl RtTables {
    /// Parse rt_tables text. `what` names the file for errors.
    pub fn parse(text: &str, what: &str) -> Result<RtTables> {
        let mut entries = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(id), Some(name), None) = (words.next(), words.next(), words.next()) else {
                return Err(Error::parse(
                    what,
                    n + 1,
                    format!("expected `ID NAME`, got `{line}`"),
                ));
            };
            let id = match id.strip_prefix("0x") {
                Some(h) => u32::from_str_radix(h, 16),
                None => id.parse(),
            }
            .map_err(|_| Error::parse(what, n + 1, format!("bad table id `{id}`")))?;
            entries.push((id, name.to_string()));
        }
        Ok(RtTables { entries })
    }

    pub fn extend(&mut self, other: RtTables) {
        self.entries.extend(other.entries);
    }

    pub fn name_of(&self, id: u32) -> Option<&str> {
        self.entries
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.as_str())
    }

    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|(_, n)| n == name)
            .map(|(i, _)| *i)
    }

    /// A table's name for display: its rt_tables name, or its number.
    pub fn label(&self, id: u32) -> String {
        match id {
            254 => "main".into(),
            255 => "local".into(),
            253 => "default".into(),
            _ => self
                .name_of(id)
                .map(str::to_string)
                .unwrap_or_else(|| id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_default_file() {
        let t = RtTables::parse(
            "#\n# reserved values\n#\n255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n#\n# local\n#\n#1\tinr.ruhep\n100 ctc # telecom\n",
            "rt_tables",
        )
        .unwrap();
        assert_eq!(t.id_of("ctc"), Some(100));
        assert_eq!(t.label(100), "ctc");
        assert_eq!(t.label(7), "7");
        assert_eq!(t.entries.len(), 5);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = RtTables::parse("100 ctc\nfoo bar\n", "rt_tables")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
