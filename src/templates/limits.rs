//! Bounds on what a user template (`--templates DIR`) can make dwprov do.
//!
//! tera 1 renders recursively on the caller's stack and buffers macro output
//! in memory, so a template can abort the process: a macro calling itself
//! (stack overflow), `range(end=10000000000)` (allocation failure), a string
//! doubled in a loop. Such a template must be a template error, not an abort.
//! What is checked, and where:
//! - statically, on the parsed AST (tera's `ast` is public) when templates
//!   load: macro recursion (direct or through other macros and imports),
//!   include cycles, loops nested inside a macro or a `filter` section (their
//!   output is buffered whole, out of the output budget's sight), and a `set`
//!   that uses its own variable twice (`x ~ x` doubles per iteration);
//! - at render time: `range()` is replaced by a version refusing more than
//!   [`RANGE_MAX`] elements per call and [`RANGE_TOTAL`] per render; output
//!   goes through a writer that fails past a budget (tera streams top-level
//!   output to it); parsing, checking and rendering run on a thread with a
//!   [`STACK_BYTES`] stack, so deep nesting in a template's text is bounded
//!   by the template size cap ([`TEMPLATE_MAX_BYTES`]), not the main stack.
//!
//! Not bounded: a loop over context arrays nested in another (e.g. prefixes
//! × prefixes) that prints nothing costs CPU time, not memory; and a `set`
//! growing a string through two variables taking turns. The built-in
//! templates do none of this; the checks exist for hand-written ones.
use crate::error::{Error, Result};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tera::ast::{Expr, ExprVal, Node};

/// Elements one `range()` call may produce.
pub const RANGE_MAX: usize = 100_000;
/// Elements all `range()` calls of one render may produce together (nested
/// loops over ranges multiply).
pub const RANGE_TOTAL: usize = 1_000_000;
/// Stack of the thread that parses and renders templates.
pub const STACK_BYTES: usize = 256 << 20;
/// Largest template file read.
pub const TEMPLATE_MAX_BYTES: u64 = 1 << 20;
/// Output budget of one render before the size of the data is added.
pub const BASE_BUDGET: usize = 64 << 20;
/// Output budget added per destination prefix of the gateway (a rendered
/// route or rule line is ~70 bytes; the boot files repeat it).
pub const BUDGET_PER_PREFIX: usize = 512;

thread_local! {
    /// Output budget of renders started on this thread (see [`set_budget`]).
    static BUDGET: Cell<usize> = const { Cell::new(BASE_BUDGET) };
    /// `range()` elements produced so far by the render on this thread.
    static RANGE_USED: Cell<usize> = const { Cell::new(0) };
}

/// Set the output budget of the renders this thread starts next.
pub fn set_budget(bytes: usize) {
    BUDGET.with(|b| b.set(bytes));
}

pub fn budget() -> usize {
    BUDGET.with(Cell::get)
}

/// Run `f` on a thread with a [`STACK_BYTES`] stack and wait for it. If
/// no such thread can be made (strict overcommit, many hosts rendering at
/// once), `f` runs here: the static nesting checks keep it within an
/// ordinary stack, the big one is a second line of defence.
pub fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let mut f = Some(f);
    let out = std::thread::scope(|s| {
        let f = &mut f;
        let h = std::thread::Builder::new()
            .name("dwprov-templates".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, move || f.take().map(|f| f()));
        match h {
            Ok(h) => match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            },
            Err(_) => None,
        }
    });
    match out {
        Some(v) => v,
        None => (f.take().expect("not run yet"))(),
    }
}

/// `range(start=0, end, step_by=1)` like tera's, refusing more than
/// [`RANGE_MAX`] elements (or [`RANGE_TOTAL`] in one render).
pub fn capped_range(args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let num = |k: &str, default: Option<u64>| -> tera::Result<u64> {
        match args.get(k) {
            Some(v) => v.as_u64().ok_or_else(|| {
                tera::Error::msg(format!(
                    "Function `range` received {k}={} but `{k}` can only be a number",
                    crate::escape::value(&v.to_string())
                ))
            }),
            None => default.ok_or_else(|| {
                tera::Error::msg("Function `range` was called without a `end` argument")
            }),
        }
    };
    let start = num("start", Some(0))?;
    let end = num("end", None)?;
    let step = num("step_by", Some(1))?;
    if step == 0 {
        return Err(tera::Error::msg(
            "Function `range` was called with a `step_by` of 0",
        ));
    }
    if start > end {
        return Err(tera::Error::msg(
            "Function `range` was called with a `start` argument greater than the `end` one",
        ));
    }
    let count = (end - start).div_ceil(step);
    if count > RANGE_MAX as u64 {
        return Err(tera::Error::msg(format!(
            "Function `range` would produce {count} numbers, more than the limit of {RANGE_MAX}"
        )));
    }
    let used = RANGE_USED.with(|u| {
        let n = u.get() + count as usize;
        u.set(n);
        n
    });
    if used > RANGE_TOTAL {
        return Err(tera::Error::msg(format!(
            "Function `range` produced more than {RANGE_TOTAL} numbers in one render (nested loops over ranges?)"
        )));
    }
    let v: Vec<u64> = (start..end).step_by(step as usize).collect();
    Ok(tera::Value::from(v))
}

/// Start counting `range()` elements afresh (one render).
pub fn reset_range_count() {
    RANGE_USED.with(|u| u.set(0));
}

/// Deepest nesting of `(` and `[` inside one tag (`{{ }}`, `{% %}`) accepted:
/// tera's parser recurses per level, and half a million levels overflow
/// even [`STACK_BYTES`].
pub const MAX_EXPR_NESTING: usize = 64;

/// Tags that open a block, and the words that close one.
const BLOCK_OPEN: &[&str] = &["if", "for", "macro", "filter", "block", "raw"];

/// Refuse a template whose tags nest brackets deeper than
/// [`MAX_EXPR_NESTING`], or whose blocks nest deeper than
/// [`MAX_BLOCK_DEPTH`] (checked on the text, before tera's parser recurses
/// on it).
pub fn check_nesting(name: &str, src: &str) -> Result<()> {
    let mut blocks = 0usize;
    for (i, tag) in src.match_indices("{%") {
        let word = src[i + tag.len()..]
            .trim_start_matches(['-', ' ', '\t', '\n', '\r'])
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        if BLOCK_OPEN.contains(&word) {
            blocks += 1;
        } else if word.starts_with("end") {
            blocks = blocks.saturating_sub(1);
        }
        if blocks > MAX_BLOCK_DEPTH {
            return Err(Error::Template {
                name: format!("{name}.tera"),
                line: Some(src[..i].matches('\n').count() + 1),
                message: format!("blocks (`if`, `for`, ...) nest more than {MAX_BLOCK_DEPTH} deep"),
            });
        }
    }
    let b = src.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let close: &[u8] = match &b[i..i + 2] {
            b"{{" => b"}}",
            b"{%" => b"%}",
            _ => {
                i += 1;
                continue;
            }
        };
        let start = i;
        let mut depth = 0usize;
        i += 2;
        while i < b.len() && !(b[i..].starts_with(close)) {
            match b[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_EXPR_NESTING {
                let line = src[..start].matches('\n').count() + 1;
                return Err(Error::Template {
                    name: format!("{name}.tera"),
                    line: Some(line),
                    message: format!("brackets nest more than {MAX_EXPR_NESTING} deep in one tag"),
                });
            }
            i += 1;
        }
        i += 2;
    }
    Ok(())
}

/// A writer failing once more than `left` bytes were written; tera's error
/// then reads like an I/O error, so `exceeded` says what really happened.
pub struct BudgetWriter<'a> {
    pub out: &'a mut Vec<u8>,
    pub left: usize,
    pub exceeded: bool,
}

impl std::io::Write for BudgetWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            self.exceeded = true;
            return Err(std::io::Error::other("output budget exceeded"));
        }
        self.left -= buf.len();
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A problem found by [`check`]: the template, the construct, and a word to
/// find its line in the source.
#[derive(Debug)]
struct Finding {
    template: String,
    message: String,
    /// Searched for in the source to report a line (the first one found).
    needles: Vec<String>,
}

/// Check every template of `tera` (see the module doc). `sources` maps a
/// template name to its text, to report the line.
pub fn check(tera: &tera::Tera, sources: &BTreeMap<String, String>) -> Result<()> {
    let mut names: Vec<&String> = tera.templates.keys().collect();
    names.sort();
    let findings = macro_recursion(tera)
        .into_iter()
        .chain(include_cycles(tera, &names))
        .chain(
            names
                .iter()
                .flat_map(|n| body_checks(n, &tera.templates[*n])),
        );
    if let Some(f) = findings.into_iter().next() {
        let line = sources.get(&f.template).and_then(|src| {
            f.needles
                .iter()
                .find_map(|n| src.lines().position(|l| l.contains(n.as_str())))
                .map(|i| i + 1)
        });
        return Err(Error::Template {
            name: format!("{}.tera", f.template),
            line,
            message: f.message,
        });
    }
    Ok(())
}

/// Every macro call in `nodes` (and the expressions in them), with the number
/// of `for` loops around it, and the deepest loop nesting; `include`d
/// template names too.
#[derive(Default)]
struct Walk<'a> {
    calls: Vec<(&'a str, &'a str, usize)>,
    includes: Vec<&'a str>,
    max_loops: usize,
    /// `set` of a variable from itself twice: the key.
    doubling: Vec<&'a str>,
    /// Filter sections whose body nests loops (buffered): the filter name.
    buffered_loops: Vec<(&'a str, usize)>,
    /// Current and deepest nesting of expressions (`1 + 1 + ...` nests one
    /// level per operator; dropping or evaluating it recurses as deep).
    expr_depth: usize,
    max_expr_depth: usize,
    /// Likewise for nested blocks (`if`, `for`, ...).
    block_depth: usize,
    max_block_depth: usize,
}

/// Deepest expression nesting accepted (operators chained in one tag).
pub const MAX_EXPR_DEPTH: usize = 256;
/// Deepest block nesting accepted (`{% if %}` inside `{% for %}` ...): the
/// parsed template is dropped, later, on an ordinary stack.
pub const MAX_BLOCK_DEPTH: usize = 256;

impl<'a> Walk<'a> {
    fn nodes(&mut self, nodes: &'a [Node], loops: usize) {
        self.block_depth += 1;
        self.max_block_depth = self.max_block_depth.max(self.block_depth);
        if self.block_depth <= MAX_BLOCK_DEPTH {
            for n in nodes {
                self.node(n, loops);
            }
        }
        self.block_depth -= 1;
    }

    fn node(&mut self, n: &'a Node, loops: usize) {
        match n {
            Node::VariableBlock(_, e) => self.expr(e, loops),
            Node::Set(_, s) => {
                if ident_uses(&s.value, &s.key) >= 2 {
                    self.doubling.push(&s.key);
                }
                self.expr(&s.value, loops)
            }
            Node::Include(_, names, _) => self.includes.extend(names.iter().map(String::as_str)),
            Node::FilterSection(_, fs, _) => {
                let mut inner = Walk::default();
                inner.nodes(&fs.body, 0);
                let depth = inner.max_loops;
                if depth > 1 {
                    self.buffered_loops.push((&fs.filter.name, depth));
                }
                self.absorb(inner, loops);
                for a in fs.filter.args.values() {
                    self.expr(a, loops);
                }
            }
            Node::Block(_, b, _) => self.nodes(&b.body, loops),
            Node::Forloop(_, f, _) => {
                self.max_loops = self.max_loops.max(loops + 1);
                self.expr(&f.container, loops);
                self.nodes(&f.body, loops + 1);
                if let Some(e) = &f.empty_body {
                    self.nodes(e, loops);
                }
            }
            Node::If(i, _) => {
                for (_, e, body) in &i.conditions {
                    self.expr(e, loops);
                    self.nodes(body, loops);
                }
                if let Some((_, body)) = &i.otherwise {
                    self.nodes(body, loops);
                }
            }
            // Definitions are walked on their own (`Template::macros`).
            Node::MacroDefinition(..) => {}
            _ => {}
        }
    }

    /// Merge a sub-walk whose loops sit inside `loops` loops.
    fn absorb(&mut self, inner: Walk<'a>, loops: usize) {
        self.max_loops = self.max_loops.max(loops + inner.max_loops);
        self.calls
            .extend(inner.calls.into_iter().map(|(ns, m, l)| (ns, m, l + loops)));
        self.includes.extend(inner.includes);
        self.doubling.extend(inner.doubling);
        self.buffered_loops.extend(inner.buffered_loops);
        self.max_expr_depth = self.max_expr_depth.max(inner.max_expr_depth);
        self.max_block_depth = self
            .max_block_depth
            .max(self.block_depth + inner.max_block_depth);
    }

    fn expr(&mut self, e: &'a Expr, loops: usize) {
        self.expr_depth += 1;
        self.max_expr_depth = self.max_expr_depth.max(self.expr_depth);
        if self.expr_depth <= MAX_EXPR_DEPTH {
            self.val(&e.val, loops);
            for f in &e.filters {
                for a in f.args.values() {
                    self.expr(a, loops);
                }
            }
        }
        self.expr_depth -= 1;
    }

    fn val(&mut self, v: &'a ExprVal, loops: usize) {
        match v {
            ExprVal::MacroCall(c) => {
                self.calls.push((&c.namespace, &c.name, loops));
                for a in c.args.values() {
                    self.expr(a, loops);
                }
            }
            ExprVal::FunctionCall(f) => {
                for a in f.args.values() {
                    self.expr(a, loops);
                }
            }
            ExprVal::Math(m) => {
                self.expr(&m.lhs, loops);
                self.expr(&m.rhs, loops);
            }
            ExprVal::Logic(l) => {
                self.expr(&l.lhs, loops);
                self.expr(&l.rhs, loops);
            }
            ExprVal::In(i) => {
                self.expr(&i.lhs, loops);
                self.expr(&i.rhs, loops);
            }
            ExprVal::Test(t) => {
                for a in &t.args {
                    self.expr(a, loops);
                }
            }
            ExprVal::Array(items) => {
                for a in items {
                    self.expr(a, loops);
                }
            }
            ExprVal::StringConcat(s) => {
                for v in &s.values {
                    self.val(v, loops);
                }
            }
            _ => {}
        }
    }
}

/// How often `expr` names the variable `key` (or a field of it).
fn ident_uses(e: &Expr, key: &str) -> usize {
    fn val(v: &ExprVal, key: &str) -> usize {
        match v {
            ExprVal::Ident(i) => usize::from(
                i == key || i.starts_with(&format!("{key}.")) || i.starts_with(&format!("{key}[")),
            ),
            ExprVal::Math(m) => ident_uses(&m.lhs, key) + ident_uses(&m.rhs, key),
            ExprVal::Logic(l) => ident_uses(&l.lhs, key) + ident_uses(&l.rhs, key),
            ExprVal::In(i) => ident_uses(&i.lhs, key) + ident_uses(&i.rhs, key),
            ExprVal::StringConcat(s) => s.values.iter().map(|v| val(v, key)).sum(),
            ExprVal::Array(a) => a.iter().map(|e| ident_uses(e, key)).sum(),
            ExprVal::FunctionCall(f) => f.args.values().map(|e| ident_uses(e, key)).sum(),
            ExprVal::MacroCall(c) => c.args.values().map(|e| ident_uses(e, key)).sum(),
            ExprVal::Test(t) => t.args.iter().map(|e| ident_uses(e, key)).sum(),
            _ => 0,
        }
    }
    val(&e.val, key)
        + e.filters
            .iter()
            .flat_map(|f| f.args.values())
            .map(|a| ident_uses(a, key))
            .sum::<usize>()
}

/// (template, macro) → its walk; the macro a call names, resolved through
/// `self::` and the template's imports.
type MacroId<'a> = (&'a str, &'a str);

fn macro_walks(tera: &tera::Tera) -> BTreeMap<MacroId<'_>, Walk<'_>> {
    let mut out = BTreeMap::new();
    for (tname, t) in &tera.templates {
        for (mname, def) in &t.macros {
            let mut w = Walk::default();
            w.nodes(&def.body, 0);
            out.insert((tname.as_str(), mname.as_str()), w);
        }
    }
    out
}

fn resolve<'a>(tera: &'a tera::Tera, template: &'a str, ns: &'a str, name: &'a str) -> MacroId<'a> {
    if ns == "self" {
        return (template, name);
    }
    let file = tera.templates.get(template).and_then(|t| {
        t.imported_macro_files
            .iter()
            .find(|(_, n)| n == ns)
            .map(|(f, _)| f.as_str())
    });
    (file.unwrap_or(ns), name)
}

/// Macros that call themselves (directly or not), and macros whose output
/// (buffered whole) nests loops, counting the loops of the macros they call.
fn macro_recursion(tera: &tera::Tera) -> Vec<Finding> {
    let walks = macro_walks(tera);
    let mut findings = Vec::new();
    // Loop depth of each macro including callees; None while being visited.
    let mut depth: BTreeMap<MacroId, Option<usize>> = BTreeMap::new();
    for &id in walks.keys() {
        let mut path = Vec::new();
        if let Err(f) = macro_depth(tera, &walks, id, &mut depth, &mut path) {
            findings.push(f);
            return findings;
        }
    }
    for (&(t, m), d) in &depth {
        if let Some(d) = d.filter(|d| *d > 1) {
            findings.push(Finding {
                template: t.to_string(),
                message: format!(
                    "macro `{m}` nests {d} loops (counting the macros it calls); a macro's output is built in memory whole, so at most one loop may run inside a macro: move the outer loops out of it"
                ),
                needles: vec![format!("macro {m}")],
            });
        }
    }
    findings
}

fn macro_depth<'a>(
    tera: &'a tera::Tera,
    walks: &BTreeMap<MacroId<'a>, Walk<'a>>,
    id: MacroId<'a>,
    depth: &mut BTreeMap<MacroId<'a>, Option<usize>>,
    path: &mut Vec<MacroId<'a>>,
) -> std::result::Result<usize, Finding> {
    match depth.get(&id) {
        Some(Some(d)) => return Ok(*d),
        Some(None) => {
            let from = path.iter().position(|p| *p == id).unwrap_or(0);
            let mut names: Vec<String> = path[from..]
                .iter()
                .map(|(t, m)| {
                    if *t == id.0 {
                        m.to_string()
                    } else {
                        format!("{t}::{m}")
                    }
                })
                .collect();
            names.push(id.1.to_string());
            let (t, m) = path.last().copied().unwrap_or(id);
            return Err(Finding {
                template: t.to_string(),
                message: format!(
                    "macro `{m}` calls itself ({}): recursion is not allowed in dwprov templates (it has no depth limit and would overflow the stack)",
                    names.join(" → ")
                ),
                needles: vec![format!("macro {m}")],
            });
        }
        None => {}
    }
    let Some(w) = walks.get(&id) else {
        // Unknown macro: tera reports it when rendering.
        return Ok(0);
    };
    depth.insert(id, None);
    path.push(id);
    let mut d = w.max_loops;
    for &(ns, name, loops) in &w.calls {
        let callee = resolve(tera, id.0, ns, name);
        d = d.max(loops + macro_depth(tera, walks, callee, depth, path)?);
    }
    path.pop();
    depth.insert(id, Some(d));
    Ok(d)
}

/// `{% include %}` chains that come back to where they started.
fn include_cycles(tera: &tera::Tera, names: &[&String]) -> Vec<Finding> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for n in names {
        let t = &tera.templates[*n];
        let mut w = Walk::default();
        w.nodes(&t.ast, 0);
        for def in t.macros.values() {
            w.nodes(&def.body, 0);
        }
        edges.entry(n.as_str()).or_default().extend(w.includes);
    }
    for start in names {
        // Iterative DFS from `start` looking for a path back to it.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start.as_str(), vec![start.as_str()])];
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(at).into_iter().flatten() {
                if *next == start.as_str() {
                    let mut p = path.clone();
                    p.push(next);
                    return vec![Finding {
                        template: start.to_string(),
                        message: format!(
                            "templates include each other in a cycle ({}), which never ends",
                            p.join(" → ")
                        ),
                        needles: vec!["include".into()],
                    }];
                }
                if seen.insert(next) {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    Vec::new()
}

/// Per-template checks of the top-level body and the macro bodies.
fn body_checks(name: &str, t: &tera::Template) -> Vec<Finding> {
    let mut w = Walk::default();
    w.nodes(&t.ast, 0);
    for def in t.macros.values() {
        w.nodes(&def.body, 0);
    }
    let mut out = Vec::new();
    if w.max_expr_depth > MAX_EXPR_DEPTH {
        out.push(Finding {
            template: name.to_string(),
            message: format!(
                "an expression nests more than {MAX_EXPR_DEPTH} operators deep; split it with `set`"
            ),
            needles: vec!["{{".into()],
        });
    }
    if w.max_block_depth > MAX_BLOCK_DEPTH {
        out.push(Finding {
            template: name.to_string(),
            message: format!("blocks (`if`, `for`, ...) nest more than {MAX_BLOCK_DEPTH} deep"),
            needles: vec!["{%".into()],
        });
    }
    if let Some(key) = w.doubling.first() {
        out.push(Finding {
            template: name.to_string(),
            message: format!(
                "`set {key}` uses `{key}` twice: repeated in a loop this doubles it each time; build it from other values"
            ),
            needles: vec![format!("{key} = {key}"), format!("{key} =")],
        });
    }
    if let Some((f, d)) = w.buffered_loops.first() {
        out.push(Finding {
            template: name.to_string(),
            message: format!(
                "a `filter {f}` section nests {d} loops; its output is built in memory whole, so at most one loop may run inside it"
            ),
            needles: vec![format!("filter {f}")],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<()> {
        let mut t = tera::Tera::default();
        t.add_raw_template("x", src).unwrap();
        let sources = BTreeMap::from([("x".to_string(), src.to_string())]);
        check(&t, &sources)
    }

    #[test]
    fn recursion_and_buffered_nesting_are_found() {
        let e = load("a\n{% macro r(n) %}{{ self::r(n=n) }}{% endmacro r %}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.tera line 2") && e.contains("calls itself (r → r)"),
            "{e}"
        );
        let e = load("{% macro a() %}{{ self::b() }}{% endmacro a %}\n{% macro b() %}{{ self::a() }}{% endmacro b %}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("calls itself"), "{e}");
        let e = load("{% macro a() %}{% for i in [1] %}{{ self::b() }}{% endfor %}{% endmacro a %}\n{% macro b() %}{% for j in [2] %}x{% endfor %}{% endmacro b %}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("macro `a` nests 2 loops"), "{e}");
        let e = load("{% for i in [1] %}\n{% set_global s = s ~ s %}{% endfor %}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`set s` uses `s` twice") && e.contains("line 2"),
            "{e}"
        );
        let e = load("{% filter upper %}{% for i in [1] %}{% for j in [1] %}x{% endfor %}{% endfor %}{% endfilter %}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`filter upper` section nests 2 loops"), "{e}");
        // Fine: one loop in a macro, nested loops at top level, linear growth.
        load("{% macro a(l) %}{% for i in l %}{{ i }}{% endfor %}{% endmacro a %}{% for x in [1] %}{% for y in [2] %}{{ self::a(l=[x, y]) }}{% endfor %}{% endfor %}{% set_global n = n ~ 'a' %}").unwrap();
    }

    #[test]
    fn long_operator_chains_are_refused() {
        let e = load(&format!("{{{{ 1{} }}}}", " + 1".repeat(300)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nests more than 256 operators"), "{e}");
        load(&format!("{{{{ 1{} }}}}", " + 1".repeat(200))).unwrap();
        let deep = format!(
            "{}x{}",
            "{% if true %}".repeat(300),
            "{% endif %}".repeat(300)
        );
        let e = load(&deep).unwrap_err().to_string();
        assert!(e.contains("nest more than 256 deep"), "{e}");
    }

    #[test]
    fn deep_brackets_in_a_tag_are_refused_before_parsing() {
        let deep = format!("x\n{{{{ {}1{} }}}}\n", "(".repeat(65), ")".repeat(65));
        let e = check_nesting("t", &deep).unwrap_err().to_string();
        assert!(
            e.contains("t.tera line 2") && e.contains("more than 64"),
            "{e}"
        );
        check_nesting(
            "t",
            &format!("{{{{ {}1{} }}}}", "(".repeat(64), ")".repeat(64)),
        )
        .unwrap();
        // Text outside tags does not count.
        check_nesting("t", &"(".repeat(1000)).unwrap();
    }

    #[test]
    fn range_is_capped_per_call_and_per_render() {
        let args = |end: u64| HashMap::from([("end".to_string(), tera::Value::from(end))]);
        reset_range_count();
        assert_eq!(
            capped_range(&args(3)).unwrap(),
            tera::Value::from(vec![0u64, 1, 2])
        );
        let e = capped_range(&args(10_000_000_000)).unwrap_err().to_string();
        assert!(e.contains("more than the limit of 100000"), "{e}");
        reset_range_count();
        for _ in 0..10 {
            capped_range(&args(100_000)).unwrap();
        }
        assert!(capped_range(&args(1)).is_err());
        reset_range_count();
    }
}
