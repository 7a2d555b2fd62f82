//! The template set: dwprov's built-in tera templates (the routing and
//! firewall artefacts of `render`, the boot files of `boot`), overrides
//! from `--templates DIR`, and rendering under the bounds of [`limits`].
//! Both `render` and `boot` render through it; it knows neither.
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub mod limits;

/// Built-in templates: (name, text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("ip.batch", include_str!("../../templates/ip.batch.tera")),
    (
        "iptables.rules",
        include_str!("../../templates/iptables.rules.tera"),
    ),
    (
        "rt_tables.conf",
        include_str!("../../templates/rt_tables.conf.tera"),
    ),
    (
        "rt_protos.conf",
        include_str!("../../templates/rt_protos.conf.tera"),
    ),
    (
        "sysctl.conf",
        include_str!("../../templates/sysctl.conf.tera"),
    ),
];

/// Built-in boot templates (name, text); overridable as
/// `--templates DIR` + `boot/NAME.tera`.
pub const BOOT: &[(&str, &str)] = &[
    (
        "boot/ip.batch",
        include_str!("../../templates/boot/ip.batch.tera"),
    ),
    (
        "boot/iptables.rules",
        include_str!("../../templates/boot/iptables.rules.tera"),
    ),
    (
        "boot/nftables.nft",
        include_str!("../../templates/boot/nftables.nft.tera"),
    ),
    (
        "boot/boot.sh",
        include_str!("../../templates/boot/boot.sh.tera"),
    ),
    (
        "boot/route-cache-flush.sh",
        include_str!("../../templates/boot/route-cache-flush.sh.tera"),
    ),
    (
        "boot/dwprov.service",
        include_str!("../../templates/boot/dwprov.service.tera"),
    ),
    (
        "boot/dwprov-routes.service",
        include_str!("../../templates/boot/dwprov-routes.service.tera"),
    ),
    (
        "boot/dwprov-route-cache-flush.service",
        include_str!("../../templates/boot/dwprov-route-cache-flush.service.tera"),
    ),
    (
        "boot/init.d",
        include_str!("../../templates/boot/init.d.tera"),
    ),
];

/// The loaded template set.
pub struct Templates {
    tera: tera::Tera,
    /// Template sources, to locate render-time errors (tera 1 gives no line).
    sources: BTreeMap<String, String>,
    /// The overrides among them (name -> text): the agent's follow config
    /// carries these, so the gateway renders as apply did.
    overrides: BTreeMap<String, String>,
}

impl Templates {
    /// The built-in templates, with any file of the same name (`ip.batch.tera`,
    /// ...) in `override_dir` taking its place. A directory that does not
    /// exist (or holds no template of a known name) is an error, not silently
    /// the defaults. Every template is checked against the bounds of
    /// [`limits`] (recursion, buffered loops) before anything renders.
    pub fn load(override_dir: Option<&Path>) -> Result<Templates> {
        if let Some(dir) = override_dir {
            check_template_dir(dir)?;
        }
        // Parsing recurses on the template's nesting: a big stack.
        limits::on_big_stack(|| {
            Templates::load_here(&|name| {
                let Some(dir) = override_dir else {
                    return Ok(None);
                };
                let p = dir.join(format!("{name}.tera"));
                if !p.exists() {
                    return Ok(None);
                }
                crate::inventory::read_text(&p, limits::TEMPLATE_MAX_BYTES, "template").map(Some)
            })
        })
    }

    /// The built-in templates with `overrides` (name -> text, as
    /// [`Templates::overrides`] gave them) in their place: the agent's
    /// follower renders with what apply loaded from `--templates`. An
    /// unknown name or an oversized text is refused, as from a directory.
    pub fn with_overrides(overrides: &BTreeMap<String, String>) -> Result<Templates> {
        if let Some(name) = overrides
            .keys()
            .find(|n| !BUILTIN.iter().chain(BOOT).any(|(b, _)| b == n))
        {
            return Err(Error::Invalid {
                message: format!(
                    "template override `{}` is no template dwprov knows",
                    crate::escape::value(name)
                ),
                hint: None,
            });
        }
        limits::on_big_stack(|| {
            Templates::load_here(&|name| {
                let Some(text) = overrides.get(name) else {
                    return Ok(None);
                };
                if text.len() as u64 > limits::TEMPLATE_MAX_BYTES {
                    return Err(Error::Invalid {
                        message: format!(
                            "template override `{name}` is over {} bytes",
                            limits::TEMPLATE_MAX_BYTES
                        ),
                        hint: None,
                    });
                }
                Ok(Some(text.clone()))
            })
        })
    }

    /// The templates that replaced a built-in one (name -> text).
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// `overriding(name)`: the override's text, if any.
    fn load_here(overriding: &dyn Fn(&str) -> Result<Option<String>>) -> Result<Templates> {
        let mut tera = tera::Tera::default();
        let mut sources = BTreeMap::new();
        let mut overrides = BTreeMap::new();
        tera.autoescape_on(vec![]);
        tera.register_function("range", limits::capped_range);
        for (name, text) in BUILTIN.iter().chain(BOOT) {
            let mut text = text.to_string();
            if let Some(over) = overriding(name)? {
                overrides.insert(name.to_string(), over.clone());
                text = over;
            }
            limits::check_nesting(name, &text)?;
            tera.add_raw_template(name, &text)
                .map_err(|e| template_error(name, &e, None))?;
            sources.insert(name.to_string(), text);
        }
        limits::check(&tera, &sources)?;
        Ok(Templates {
            tera,
            sources,
            overrides,
        })
    }

    /// Render `name`: on a big-stack thread, with `range()` capped and the
    /// output cut at this thread's budget ([`limits::set_budget`]).
    pub(crate) fn render(&self, name: &str, ctx: &tera::Context) -> Result<String> {
        let budget = limits::budget();
        limits::on_big_stack(|| {
            limits::reset_range_count();
            let mut out = Vec::new();
            let mut w = limits::BudgetWriter {
                out: &mut out,
                left: budget,
                exceeded: false,
            };
            let r = self.tera.render_to(name, ctx, &mut w);
            if w.exceeded {
                return Err(Error::Template {
                    name: format!("{name}.tera"),
                    line: None,
                    message: format!(
                        "the output is over its budget of {} MiB for this gateway ({} MiB + {} bytes per destination prefix): a loop that runs too often?",
                        budget >> 20,
                        limits::BASE_BUDGET >> 20,
                        limits::BUDGET_PER_PREFIX
                    ),
                });
            }
            r.map_err(|e| template_error(name, &e, self.sources.get(name).map(String::as_str)))?;
            let lead = out.iter().take_while(|b| **b == b'\n').count();
            out.drain(..lead);
            String::from_utf8(out).map_err(|_| Error::Template {
                name: format!("{name}.tera"),
                line: None,
                message: "the output is not UTF-8 text".into(),
            })
        })
    }

    /// Template source by name (`ip.batch`), to locate rendered lines.
    pub(crate) fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }
}

/// A `--templates` directory must exist, be a directory, and hold at least
/// one file named like a template (`ip.batch.tera`, `boot/boot.sh.tera`...):
/// a typo must not silently give the built-in templates.
pub fn check_template_dir(dir: &Path) -> Result<()> {
    let shown = crate::escape::value(&dir.display().to_string());
    let names: Vec<String> = BUILTIN
        .iter()
        .chain(BOOT)
        .map(|(n, _)| format!("{n}.tera"))
        .collect();
    match std::fs::metadata(dir) {
        Err(e) => {
            return Err(Error::Invalid {
                message: format!("--templates `{shown}`: {e}"),
                hint: Some("give a directory holding templates to override, e.g. a copy of dwprov's templates/ folder".into()),
            })
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::Invalid {
                message: format!("--templates `{shown}` is not a directory"),
                hint: Some(format!("put override files ({}) in a directory", names.join(", "))),
            })
        }
        Ok(_) => {}
    }
    if !names.iter().any(|n| dir.join(n).exists()) {
        return Err(Error::Invalid {
            message: format!("--templates `{shown}` holds no template dwprov knows"),
            hint: Some(format!("override files are named {}", names.join(", "))),
        });
    }
    Ok(())
}

/// Tera errors nest their cause; parse errors carry ` --> L:C`. Render-time
/// errors carry no line in tera 1: they name the variable or filter in
/// backticks, so the first line of `source` using it is reported.
fn template_error(name: &str, e: &tera::Error, source: Option<&str>) -> Error {
    let mut message = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    let line = message
        .split("--> ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|l| l.trim().parse().ok())
        .or_else(|| {
            let source = source?;
            let word = message.split('`').nth(1).filter(|w| !w.is_empty())?;
            source.lines().position(|l| l.contains(word)).map(|i| i + 1)
        });
    Error::Template {
        name: format!("{name}.tera"),
        line,
        // tera quotes the offending source line: a long one is cut.
        message: crate::escape::cut(
            &message
                .replace('\n', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            400,
        ),
    }
}
