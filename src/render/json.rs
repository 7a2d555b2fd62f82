//! `dwprov render --format json`, written as it is serialized.
//!
//! The document was built as one `serde_json::Value` first: a map a route
//! (about 2 KB for 12 fields) and a copy of every artefact, 5.3 GB for 0.9
//! million routes. Here only one route at a time becomes a `Value`, so the
//! bytes are the same (keys sorted at every level, as `Value`'s map sorts
//! them; `the_stream_is_the_value_document` compares) at the size of the
//! output buffer.
use super::Rendered;
use crate::state::State;
use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use std::io::Write;

/// `{"format_version": 1, "hosts": [...]}`, pretty-printed to `w`, with a
/// final newline (what `println!` of `to_string_pretty` wrote).
pub fn write_docs(w: &mut dyn Write, rendered: &[Rendered]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, w);
    let mut ser = serde_json::Serializer::pretty(&mut out);
    Docs(rendered).serialize(&mut ser)?;
    out.write_all(b"\n")?;
    out.flush()
}

struct Docs<'a>(&'a [Rendered]);

impl Serialize for Docs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("format_version", &1)?;
        m.serialize_entry("hosts", &Hosts(self.0))?;
        m.end()
    }
}

struct Hosts<'a>(&'a [Rendered]);

impl Serialize for Hosts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&Host(r))?;
        }
        seq.end()
    }
}

/// One host: `artefacts`, `desired`, `host`, `warnings` (sorted).
struct Host<'a>(&'a Rendered);

impl Serialize for Host<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("artefacts", &r.artefacts)?;
        m.serialize_entry("desired", &Desired(&r.desired))?;
        m.serialize_entry("host", &r.host)?;
        m.serialize_entry("warnings", &r.warnings)?;
        m.end()
    }
}

/// The desired state with its fields in sorted order; the big lists element
/// by element.
struct Desired<'a>(&'a State);

impl Serialize for Desired<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Every field named: a new one fails to compile here, not silently
        // missing from the document.
        let State {
            rules,
            routes,
            nexthops,
            firewall,
            rt_tables,
            files,
            sysctls,
        } = self.0;
        // Flattened, as `State` serializes it: one key per backend.
        let crate::firewall::Firewall { iptables, nftables } = firewall;
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("files", files)?;
        m.serialize_entry("iptables", &sorted(iptables).map_err(S::Error::custom)?)?;
        m.serialize_entry("nexthops", &EachSorted(nexthops))?;
        m.serialize_entry("nftables", &sorted(nftables).map_err(S::Error::custom)?)?;
        m.serialize_entry("routes", &EachSorted(routes))?;
        m.serialize_entry("rt_tables", &sorted(rt_tables).map_err(S::Error::custom)?)?;
        m.serialize_entry("rules", &EachSorted(rules))?;
        m.serialize_entry("sysctls", sysctls)?;
        m.end()
    }
}

/// `v` as a `Value`: its maps sorted by key, as the whole document was.
pub(crate) fn sorted<T: Serialize>(v: &T) -> serde_json::Result<serde_json::Value> {
    serde_json::to_value(v)
}

/// A list whose elements are turned into a `Value` one at a time.
pub(crate) struct EachSorted<'a, T>(pub &'a [T]);

impl<T: Serialize> Serialize for EachSorted<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&sorted(e).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Method;
    use crate::render::tests::seed;
    use crate::render::Templates;

    #[test]
    fn the_stream_is_the_value_document() {
        let t = Templates::load(None).unwrap();
        let mut rendered = Vec::new();
        for m in [Method::Policy, Method::Fwmark, Method::Static] {
            rendered.push(crate::render::render(&seed(m), &t, None).unwrap());
        }
        // With a route and a rule of every optional part, and no host at all.
        let mut r = crate::render::render(&seed(Method::Fwmark), &t, None).unwrap();
        r.desired
            .routes
            .extend(crate::state::ip::parse_routes_json(
                r#"[{"type":"6","dst":"10.9.9.0/24","table":"7","protocol":"201","scope":"0","metric":3,"tos":"0x10","onlink":null,"mtu":1400,"flags":["onlink"]}]"#,
            )
            .unwrap());
        rendered.push(r);
        for docs in [&rendered[..], &rendered[..1], &[]] {
            let value: Vec<_> = docs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "host": r.host, "artefacts": r.artefacts, "desired": r.desired, "warnings": r.warnings,
                    })
                })
                .collect();
            let want = format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &serde_json::json!({"format_version": 1, "hosts": value})
                )
                .unwrap()
            );
            let mut got = Vec::new();
            write_docs(&mut got, docs).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }
}
