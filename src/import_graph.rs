//! Test only: the top-level modules import each other without a circle, so
//! that each layer can be read (and changed) knowing only those below it.
//!
//! An import is any `crate::MODULE` path in a file's code (comments and its
//! trailing `#[cfg(test)]` module left out): `use` lines and inline paths
//! alike. The circles that remain today are listed in [`KNOWN`].
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Circles between top-level modules that remain, each as its sorted members.
const KNOWN: &[&[&str]] = &[];

/// (module, imported module) for every file under `src/`.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let rel = path
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if ["lib", "main", "import_graph"].contains(&top.as_str()) || rel.ends_with("/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            if line == "#[cfg(test)]" {
                break;
            }
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `crate::Error`, `crate::ROUTE_PROTO`: re-exports at the root.
                if name.starts_with(|c: char| c.is_ascii_lowercase()) && name != top {
                    g.entry(top.clone()).or_default().insert(name);
                }
            }
        }
    }
    g
}

/// The strongly connected sets of more than one module (Tarjan's algorithm
/// would do; the graph has 25 nodes, so reachability is enough).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for m in g.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flatten()).collect();
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out = BTreeSet::new();
    for n in &nodes {
        let set: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| m.to_string())
            .collect();
        if set.len() > 1 {
            out.insert(set);
        }
    }
    out
}

#[test]
fn top_level_modules_import_no_circle() {
    let g = edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        g.contains_key("fleet") && g["fleet"].contains("gather"),
        "{g:?}"
    );
    let found = circles(&g);
    let known: BTreeSet<Vec<String>> = KNOWN
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(
        new.is_empty(),
        "modules importing each other in a circle (move what they share into a module below both): {new:?}\nimports: {g:#?}"
    );
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "known circles that are gone (remove them from KNOWN): {gone:?}"
    );
}

#[test]
fn a_circle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
    };
    edge("a", "b");
    edge("b", "c");
    edge("c", "a");
    edge("c", "d");
    let c = circles(&g);
    assert_eq!(c.len(), 1);
    assert_eq!(c.iter().next().unwrap(), &["a", "b", "c"]);
}
