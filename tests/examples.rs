//! The shipped examples stay true to the code: every inventory under
//! `examples/` and `inventory/` loads, validates and renders.
use std::path::Path;

fn inventories() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["examples", "inventory"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_inventory_loads_builds_and_renders() {
    let files = inventories();
    assert!(files.len() >= 4, "{files:?}");
    let templates = dwprov::render::Templates::load(None).unwrap();
    for f in files {
        let inv = dwprov::inventory::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!inv.hosts.is_empty(), "{}", f.display());
        for h in &inv.hosts {
            let gw = dwprov::model::build(h).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let r = dwprov::render::render(&gw, &templates, None).unwrap();
            assert!(!r.desired.routes.is_empty());
        }
    }
}

/// The shipped examples plan without warnings: their prefix lists do not
/// overlap (examples/isp/unicom-only.txt), and a healthy kernel's lack of a
/// route cache is a note, not a warning.
#[test]
fn shipped_examples_render_without_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let templates = dwprov::render::Templates::load(None).unwrap();
    let files: Vec<_> = inventories()
        .into_iter()
        .filter(|f| f.starts_with(root.join("examples")))
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let inv = dwprov::inventory::load(&f).unwrap();
        for h in &inv.hosts {
            let gw = dwprov::model::build(h).unwrap();
            let r = dwprov::render::render(&gw, &templates, None).unwrap();
            assert!(r.warnings.is_empty(), "{}: {:?}", f.display(), r.warnings);
        }
    }
}
