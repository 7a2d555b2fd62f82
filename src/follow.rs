//! The follower of the agent (issue 14, phase 2; `agent::follow` is the
//! loop's side): the dynamic lines' address and next hop read on the
//! gateway (two `ip -j` reads, the same selection as `model::resolve`
//! because it *is* `model::resolve`), and the host converged onto them with
//! apply's own typed code: gather on this machine, `render::render` of the
//! intent the agent's config carries, `diff` against the live owned state,
//! `converge::script`. So exactly the objects that depend on the address or
//! next hop move (source-return rule, line table default, nexthop, DNAT
//! forwards and hairpin, boot files) and `plan` right after has nothing to
//! change. Conntrack entries SNATed to a gone address are deleted first
//! (they can never get a reply). The agent's own config (which names the
//! facts) is written last, by the agent: the script's post-install would
//! restart it mid-way.
use crate::agent::config::{Fact, Follow};
use crate::agent::follow::{gone_addresses, Converged, Follower};
use crate::diff::{Change, HostDiff};
use crate::facts::Facts;
use crate::model::Gateway;
use crate::ownership::AGENT_CONFIG;
use crate::transport::{local::LocalTransport, Transport};

/// Follows on this machine (the agent's gateway).
#[derive(Debug)]
pub struct Local;

impl Follower for Local {
    fn now(&self, follow: &Follow) -> Result<Vec<Fact>, String> {
        let gw = intent(follow)?;
        let fam = crate::state::family::OWNED.ip_flag();
        let addrs = read("ip", &[fam, "-j", "addr", "show"])?;
        let routes = read(
            "ip",
            &[fam, "-j", "-d", "-N", "route", "show", "table", "main"],
        )?;
        let f = Facts {
            interfaces: crate::gather::parse_addrs(&addrs).map_err(|e| e.to_string())?,
            state: crate::state::State {
                routes: crate::state::ip::parse_routes_json(&routes).map_err(|e| e.to_string())?,
                ..Default::default()
            },
            ..Facts::default()
        };
        Ok(facts_of(&gw, &f))
    }

    fn converge(&self, follow: &Follow, previous: &[Fact]) -> Result<Converged, String> {
        converge(&intent(follow)?, &follow.templates, previous)
    }
}

/// The intent the agent's config carries.
pub fn intent(follow: &Follow) -> Result<Gateway, String> {
    serde_json::from_value(follow.intent.clone()).map_err(|e| format!("follow.intent: {e}"))
}

/// What `model::resolve` makes of `facts` for the dynamic lines of `intent`.
pub fn facts_of(intent: &crate::model::Gateway, facts: &Facts) -> Vec<Fact> {
    crate::model::resolve(intent, Some(facts))
        .gateway
        .lines
        .iter()
        .filter(|l| l.is_dynamic())
        .map(|l| Fact {
            line: l.name.clone(),
            address: l.address,
            next_hop: l.gateway,
        })
        .collect()
}

fn read(program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{program} {}` failed", args.join(" ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Split the agent's own config out of `changes`: it is written last, by
/// the agent, not by the script (whose post-install would restart it).
pub fn split_config(changes: Vec<Change>) -> (Vec<Change>, Option<Option<String>>) {
    let mut config = None;
    let rest = changes
        .into_iter()
        .filter(|c| match c {
            Change::File { path, to, .. } if path == AGENT_CONFIG => {
                config = Some(to.clone());
                false
            }
            _ => true,
        })
        .collect();
    (rest, config)
}

/// What apply would render for `gw` on `facts` with the overrides
/// `templates` (name -> text, from the follow config).
pub fn render_on(
    gw: &Gateway,
    templates: &std::collections::BTreeMap<String, String>,
    facts: &Facts,
) -> Result<crate::render::Rendered, String> {
    let templates = crate::templates::Templates::with_overrides(templates)
        .map_err(|e| format!("templates: {e}"))?;
    crate::render::render(gw, &templates, Some(facts)).map_err(|e| format!("render: {e}"))
}

/// Converge this host onto its facts now: gather, render, diff, apply the
/// owned changes, rendering with the `--templates` overrides apply used
/// (`templates`, name -> text); `previous` (what the config was rendered
/// with) names the old addresses whose conntrack entries go.
pub fn converge(
    gw: &Gateway,
    templates: &std::collections::BTreeMap<String, String>,
    previous: &[Fact],
) -> Result<Converged, String> {
    let mut t = LocalTransport::new(&gw.host);
    let facts = crate::gather::gather(&mut t).map_err(|e| format!("gather: {e}"))?;
    let rendered = render_on(gw, templates, &facts)?;
    let diff = HostDiff::planned(&rendered.desired, &facts.state);
    if !diff.conflicts.is_empty() {
        return Err(format!("conflicts: {}", diff.conflicts_text()));
    }
    let mut done = Converged::default();
    let now = facts_of(gw, &facts);
    for old in gone_addresses(previous, &now) {
        let a = old.to_string();
        // Exit status 1 is "0 entries deleted": not a failure.
        let _ = read("conntrack", &["-D", "--reply-dst", &a]);
        done.flushed.push(a);
    }
    let (changes, config) = split_config(diff.changes);
    done.changes = changes.len();
    if !changes.is_empty() {
        for c in &changes {
            done.notes.push(crate::converge::describe(c));
        }
        let script = crate::converge::script(&changes, crate::converge::Caps::of(&facts));
        let out = t
            .run_script(&script.script)
            .map_err(|e| format!("apply: {e}"))?;
        if out.status != 0 {
            return Err(format!(
                "apply exited {}: {}",
                out.status,
                out.stderr_str().trim()
            ));
        }
    }
    if let Some(Some(text)) = config {
        let tmp = format!("{AGENT_CONFIG}{}", crate::ownership::TEMP_SUFFIX);
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, AGENT_CONFIG))
            .map_err(|e| format!("write {AGENT_CONFIG}: {e}"))?;
        done.config_written = true;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_config_is_split_out() {
        let changes = vec![
            Change::File {
                path: AGENT_CONFIG.into(),
                from: Some("a".into()),
                to: Some("b".into()),
            },
            Change::File {
                path: "/etc/other".into(),
                from: None,
                to: Some("c".into()),
            },
        ];
        let (rest, config) = split_config(changes);
        assert_eq!(rest.len(), 1);
        assert_eq!(config, Some(Some("b".into())));
    }

    /// Issue 14: apply with `--templates` puts its overrides into the
    /// follow config, and the follower renders with them: byte for byte
    /// what apply renders (with the built-in templates it would differ).
    #[test]
    fn the_follower_renders_with_applys_template_overrides() {
        let mut gw = crate::render::tests::seed(crate::model::Method::Static);
        let cnc = &mut gw.lines[1];
        (cnc.address, cnc.gateway) = (None, None);
        cnc.dynamic_address = true;
        cnc.next_hop = crate::model::NextHop::Dynamic;
        let iface = cnc.interface.clone();
        let mut f = Facts {
            nexthops: true,
            ..Facts::default()
        };
        f.interfaces.push(crate::facts::Interface {
            name: iface.clone(),
            up: true,
            addresses: vec!["203.0.113.9/24".parse().unwrap()],
        });
        let dir = std::env::temp_dir().join(format!("dwprov-follow-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = "# site override: follow me";
        let text = format!(
            "{marker}\n{}",
            crate::templates::BUILTIN
                .iter()
                .find(|(n, _)| *n == "sysctl.conf")
                .unwrap()
                .1
        );
        std::fs::write(dir.join("sysctl.conf.tera"), &text).unwrap();
        let loaded = crate::templates::Templates::load(Some(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        let applied = crate::render::render(&gw, &loaded.unwrap(), Some(&f)).unwrap();
        let cfg =
            crate::agent::config::Config::parse(&applied.desired.files[AGENT_CONFIG], AGENT_CONFIG)
                .unwrap();
        let follow = cfg.follow.unwrap();
        assert_eq!(follow.templates.len(), 1, "only the override travels");
        assert_eq!(follow.templates["sysctl.conf"], text);
        let followed = render_on(&intent(&follow).unwrap(), &follow.templates, &f).unwrap();
        assert!(followed.artefacts[crate::ownership::SYSCTL_CONF].contains(marker));
        assert_eq!(followed.artefacts, applied.artefacts);
        let builtin = render_on(&gw, &Default::default(), &f).unwrap();
        assert_ne!(
            builtin.artefacts, applied.artefacts,
            "the test must be able to fail"
        );
        // A hand-edited config naming no known template is refused.
        let bad = [("nope".to_string(), String::new())].into_iter().collect();
        assert!(render_on(&gw, &bad, &f).unwrap_err().contains("nope"));
    }

    #[test]
    fn facts_follow_resolve() {
        let mut gw = crate::render::tests::seed(crate::model::Method::Static);
        gw.lines[1].dynamic_address = true;
        gw.lines[1].address = None;
        let mut f = Facts::default();
        f.interfaces.push(crate::facts::Interface {
            name: gw.lines[1].interface.clone(),
            up: true,
            addresses: vec!["203.0.113.9/24".parse().unwrap()],
        });
        let got = facts_of(&gw, &f);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].address, Some("203.0.113.9/24".parse().unwrap()));
    }
}
