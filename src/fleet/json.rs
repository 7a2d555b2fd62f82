//! The recap of `dwprov plan` and `apply` with `--format json`, written as
//! it is serialized.
//!
//! It was one `serde_json::Value` built from the outcomes, then a string:
//! for a 3,894-prefix apply, 2.5 MB of JSON and about 20 ms after the
//! apply was confirmed. Here only one change at a time becomes a `Value`
//! (what sorts its keys), and the rest streams into the output buffer;
//! the bytes are those of the `Value` document (keys sorted at every
//! level), which `the_stream_is_the_value_document` compares.
use super::{HostPlan, Outcome};
use crate::diff::HostDiff;
use crate::render::json::{sorted, EachSorted};
use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use std::io::Write;

/// `{"command": ..., "format_version": 1, "hosts": [...]}`, pretty-printed
/// to `w`, with a final newline.
pub fn write_recap(w: &mut dyn Write, command: &str, outcomes: &[Outcome]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, w);
    let mut ser = serde_json::Serializer::pretty(&mut out);
    Recap { command, outcomes }.serialize(&mut ser)?;
    out.write_all(b"\n")?;
    out.flush()
}

struct Recap<'a> {
    command: &'a str,
    outcomes: &'a [Outcome],
}

impl Serialize for Recap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("command", self.command)?;
        m.serialize_entry("format_version", &1)?;
        m.serialize_entry("hosts", &Hosts(self.outcomes))?;
        m.end()
    }
}

struct Hosts<'a>(&'a [Outcome]);

impl Serialize for Hosts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for o in self.0 {
            seq.serialize_element(&Host(o))?;
        }
        seq.end()
    }
}

/// One outcome, its keys in sorted order. Every field is named: a new one
/// fails to compile here, not silently missing from the document.
struct Host<'a>(&'a Outcome);

impl Serialize for Host<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Outcome {
            host,
            plan,
            applied,
            error,
            failed_stage,
            skipped,
        } = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("applied", &sorted(applied).map_err(S::Error::custom)?)?;
        m.serialize_entry("error", &ErrorField(error))?;
        m.serialize_entry(
            "failed_stage",
            &sorted(failed_stage).map_err(S::Error::custom)?,
        )?;
        m.serialize_entry("host", host)?;
        m.serialize_entry("plan", &plan.as_ref().map(Plan))?;
        m.serialize_entry("skipped", skipped)?;
        m.end()
    }
}

/// The error as `Outcome` serializes it (`class`, `message`: sorted).
struct ErrorField<'a>(&'a Option<crate::error::Error>);

impl Serialize for ErrorField<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        super::ser_error(self.0, s)
    }
}

struct Plan<'a>(&'a HostPlan);

impl Serialize for Plan<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The skipped fields (views, rendered, facts, check_output) are
        // not in the document.
        let HostPlan {
            host,
            summary,
            diff,
            warnings,
            facts_digest,
            follows,
            ..
        } = self.0;
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("diff", &Diff(diff))?;
        m.serialize_entry("facts_digest", facts_digest)?;
        m.serialize_entry("follows", follows)?;
        m.serialize_entry("host", host)?;
        m.serialize_entry("summary", &sorted(summary).map_err(S::Error::custom)?)?;
        m.serialize_entry("warnings", warnings)?;
        m.end()
    }
}

struct Diff<'a>(&'a HostDiff);

impl Serialize for Diff<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let HostDiff {
            changes,
            conflicts,
            hand_made,
            dynamic,
        } = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("changes", &EachSorted(changes))?;
        m.serialize_entry("conflicts", &sorted(conflicts).map_err(S::Error::custom)?)?;
        // Left out when empty, as `HostDiff` says.
        if !dynamic.is_empty() {
            m.serialize_entry("dynamic", dynamic)?;
        }
        if !hand_made.is_empty() {
            m.serialize_entry("hand_made", &sorted(hand_made).map_err(S::Error::custom)?)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;
    use crate::fleet::{ApplyStats, Stage};
    use crate::model::Method;
    use crate::render::Templates;

    /// A plan of the seed `method` from an empty gateway, with a line of
    /// dynamic information.
    fn plan(method: Method) -> HostPlan {
        let t = Templates::load(None).unwrap();
        let rendered =
            crate::render::render(&crate::render::tests::seed(method), &t, None).unwrap();
        let facts = Facts::default();
        let mut diff = HostDiff::planned(&rendered.desired, &facts.state);
        diff.dynamic.push("cnc: down (the agent's failover)".into());
        HostPlan {
            host: "gw1".into(),
            summary: crate::diff::Summary::of(&diff.changes),
            diff,
            warnings: vec!["a warning".into()],
            facts_digest: "abc".into(),
            views: Vec::new(),
            rendered,
            facts,
            check_output: None,
            follows: false,
        }
    }

    #[test]
    fn the_stream_is_the_value_document() {
        let outcome = |host: &str| Outcome {
            host: host.into(),
            plan: None,
            applied: None,
            error: None,
            failed_stage: None,
            skipped: false,
        };
        let outcomes = [
            Outcome {
                plan: Some(plan(Method::Fwmark)),
                applied: Some(ApplyStats {
                    changes: 3,
                    ip_lines: 2,
                    iptables_lines: 1,
                    script_bytes: 100,
                    remote_commands: 4,
                    round_trips: 3,
                    snapshot: Some("20261205T000000000Z-abcdef".into()),
                }),
                ..outcome("gw1")
            },
            Outcome {
                plan: Some(plan(Method::Policy)),
                error: Some(crate::error::Error::invalid("no \"way\"\n")),
                failed_stage: Some(Stage::Verify),
                ..outcome("gw2")
            },
            Outcome {
                skipped: true,
                ..outcome("gw3")
            },
        ];
        for (command, docs) in [
            ("apply", &outcomes[..]),
            ("plan", &outcomes[2..]),
            ("plan", &[]),
        ] {
            let want = format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &serde_json::json!({"format_version": 1, "command": command, "hosts": docs})
                )
                .unwrap()
            );
            let mut got = Vec::new();
            write_recap(&mut got, command, docs).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }
}
