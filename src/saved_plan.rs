//! The saved-plan file: `dwprov plan -o FILE` writes it, `dwprov apply FILE`
//! applies exactly that plan.
//!
//! JSON with a `format_version`; per host, the rendered artefacts (the
//! desired state, parsed again at apply time) and the digest of the live
//! facts the plan was computed from, so that `apply` refuses a host whose
//! live state changed since ("stale plan") without touching it.
use crate::error::{Error, Result};
use crate::fleet::{Prepared, SavedHost};
use crate::inventory::Inventory;
use std::path::{Path, PathBuf};

/// The version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A plan saved by `dwprov plan -o FILE`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    /// The inventory the plan was made from (absolute when it could be resolved).
    pub inventory: PathBuf,
    pub hosts: Vec<SavedHost>,
}

impl SavedPlan {
    /// The plan of every host that was planned.
    pub fn of(inv: &Inventory, prepared: &[Prepared]) -> SavedPlan {
        let hosts = prepared
            .iter()
            .filter_map(|p| p.outcome.plan.as_ref())
            .map(|p| SavedHost {
                host: p.host.clone(),
                facts_digest: p.facts_digest.clone(),
                artefacts: p.rendered.artefacts.clone(),
            })
            .collect();
        SavedPlan {
            format_version: FORMAT_VERSION,
            inventory: std::fs::canonicalize(&inv.file).unwrap_or_else(|_| inv.file.clone()),
            hosts,
        }
    }

    /// `--limit` that selects exactly the plan's hosts.
    pub fn limit(&self) -> String {
        self.hosts
            .iter()
            .map(|h| h.host.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The saved plan of `host`, if it has one.
    pub fn host(&self, host: &str) -> Option<&SavedHost> {
        self.hosts.iter().find(|s| s.host == host)
    }
}

/// Read a saved plan; a file that is not one (or of another version) is a
/// clear error saying how to make one.
pub fn load(path: &Path) -> Result<SavedPlan> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let plan: SavedPlan = serde_json::from_str(&text).map_err(|e| Error::Invalid {
        message: format!("{}: not a dwprov plan: {e}", path.display()),
        hint: Some("make one with `dwprov plan -i INVENTORY -o FILE`".into()),
    })?;
    if plan.format_version != FORMAT_VERSION {
        return Err(Error::Invalid {
            message: format!(
                "{}: plan format_version {} (this dwprov reads {FORMAT_VERSION})",
                path.display(),
                plan.format_version
            ),
            hint: Some(
                "make the plan again with this dwprov: `dwprov plan -i INVENTORY -o FILE`".into(),
            ),
        });
    }
    Ok(plan)
}

/// Write `plan` to `path`.
pub fn save(path: &Path, plan: &SavedPlan) -> Result<()> {
    let text = serde_json::to_string_pretty(plan).map_err(|e| Error::invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_round_trips_and_a_foreign_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("dwprov-saved-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("plan.json");
        let plan = SavedPlan {
            format_version: FORMAT_VERSION,
            inventory: "/x/inv.yaml".into(),
            hosts: vec![SavedHost {
                host: "gw1".into(),
                facts_digest: "abc".into(),
                artefacts: [("ip.batch".to_string(), "x\n".to_string())].into(),
            }],
        };
        save(&p, &plan).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.limit(), "gw1");
        assert_eq!(back.host("gw1").unwrap().facts_digest, "abc");
        std::fs::write(&p, "{\"hosts\": 3}").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("not a dwprov plan") && e.contains("dwprov plan -i"),
            "{e}"
        );
        std::fs::write(
            &p,
            "{\"format_version\": 9, \"inventory\": \"x\", \"hosts\": []}",
        )
        .unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("format_version 9"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
