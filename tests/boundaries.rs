//! The code map keeps itself: ARCHITECTURE.md's table says what each folder of `src/` must not
//! depend on, and this test reads that table, reads every `crate::`, `super::` and `self::` path
//! in the `cvm` crate's sources (test modules aside), and fails on a dependency the table forbids.
//! It also fails on an import circle: at every level of the module tree, the sibling modules
//! (the folders and files of one folder) must depend on each other without a cycle, so each
//! can be read, tested and moved knowing only what it imports.
//!
//! `cargo test --test boundaries -- --nocapture` prints the module graph's edges with the files
//! that make them; that listing is the tool for finding what a new rule would forbid.
//!
//! The table's third column is read as: `—` (no rule), a list of module paths in backticks
//! (`report`, `backend::vm`: the row's modules must not use them), `everything but` a list
//! (they may use only those, and themselves), or `everything` (no other module at all). A row's path is a folder (`src/report/`), a file
//! (`src/report/merge.rs`), several of them, or `src/*/` for every folder of `src/`; every row
//! whose path holds a file applies to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module path inside the crate, as segments (`["report", "charts", "layout"]`).
type ModPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Forbids(Vec<ModPath>),
    OnlyAllows(Vec<ModPath>),
}

#[derive(Debug, Clone)]
struct Row {
    /// Path patterns as written (`src/report/`, `src/cli.rs`, `src/*/`).
    paths: Vec<String>,
    rule: Rule,
}

/// One use of another module: from a file, to a module path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    file: String,
    from: ModPath,
    to: ModPath,
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn mod_path(text: &str) -> ModPath {
    text.split("::").map(str::to_string).collect()
}

/// The code map's rows, from the table under `## Code map`.
fn parse_code_map(markdown: &str) -> Vec<Row> {
    let section = markdown
        .split("## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let mut rows = Vec::new();
    for line in section.lines() {
        let line = line.trim();
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        if !line.starts_with('|') || cells.len() != 3 || cells[0].contains("---") {
            continue;
        }
        let paths: Vec<String> = backticked(cells[0])
            .into_iter()
            .filter(|p| p.starts_with("src/"))
            .collect();
        if paths.is_empty() || cells[0].trim() == "path" {
            continue;
        }
        let rule_cell = cells[2].trim();
        let targets = |s: &str| backticked(s).iter().map(|t| mod_path(t)).collect();
        let rule = if let Some(rest) = rule_cell.strip_prefix("everything but") {
            Rule::OnlyAllows(targets(rest))
        } else if rule_cell.starts_with("everything") {
            Rule::OnlyAllows(Vec::new())
        } else {
            // A note after the list ("(it calls ...)") names what the row may use.
            let list = rule_cell.split('(').next().unwrap_or_default();
            Rule::Forbids(targets(list))
        };
        rows.push(Row { paths, rule });
    }
    rows
}

/// Whether the row path pattern holds the source file `file` (relative, `src/...`).
fn holds(pattern: &str, file: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("*/") {
        return file
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.contains('/'));
    }
    if pattern.ends_with('/') {
        file.starts_with(pattern)
    } else {
        file == pattern
    }
}

/// The module path of a source file of the crate (`src/report/charts/mod.rs` → report::charts).
fn module_of(file: &str) -> ModPath {
    let rel = file.strip_prefix("src/").unwrap_or(file);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn starts_with(path: &[String], prefix: &[String]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == prefix[..]
}

/// Collects the module paths a file names, resolving `crate::`, `super::` and `self::`.
struct Collector<'a> {
    /// The file's module: what `self` names (`super` is its parent).
    here: &'a [String],
    /// Every module of the crate, for paths that start with a child module's name.
    modules: &'a BTreeSet<ModPath>,
    found: BTreeSet<ModPath>,
    /// `pub use` paths: what this module re-exports.
    reexports: Vec<ModPath>,
    /// Child modules declared under `#[cfg(test)]` (their files are tests, left out).
    test_mods: Vec<ModPath>,
}

impl Collector<'_> {
    /// `segments` of a path as written; `None` when it does not start inside the crate.
    fn resolve(&self, segments: &[String]) -> Option<ModPath> {
        let first = segments.first()?;
        let (mut base, rest): (ModPath, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (self.here.to_vec(), &segments[1..]),
            "super" => {
                let mut base = self.here.to_vec();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            child => {
                let mut base = self.here.to_vec();
                base.push(child.to_string());
                if !self.modules.contains(&base) {
                    return None;
                }
                base.pop();
                (base, segments)
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn add(&mut self, segments: Vec<String>) {
        if let Some(p) = self.resolve(&segments) {
            self.found.insert(p);
        }
    }
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            if n.ident != "self" {
                full.push(n.ident.to_string());
            }
            out.push(full);
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            out.push(full);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if is_cfg_test(&u.attrs) {
            return;
        }
        let mut out = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut out);
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        for p in out {
            if let (true, Some(resolved)) = (public, self.resolve(&p)) {
                self.reexports.push(resolved);
            }
            self.add(p);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        } else if m.content.is_none() {
            let mut child = self.here.to_vec();
            child.push(m.ident.to_string());
            self.test_mods.push(child);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_cfg_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.add(segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside a macro call (`matches!(x, crate::a::B)`) are tokens to syn: read the
        // `crate :: a :: b` runs among them.
        let tokens: Vec<String> = m
            .tokens
            .clone()
            .into_iter()
            .map(|t| t.to_string())
            .collect();
        let mut i = 0;
        while i < tokens.len() {
            if matches!(tokens[i].as_str(), "crate" | "super") {
                let mut path = vec![tokens[i].clone()];
                let mut j = i + 1;
                while j + 2 < tokens.len() + 1
                    && tokens.get(j).is_some_and(|t| t == ":")
                    && tokens.get(j + 1).is_some_and(|t| t == ":")
                {
                    match tokens.get(j + 2) {
                        Some(t) if t.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                            path.push(t.clone());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                self.add(path);
                i = j;
            } else {
                i += 1;
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

/// What one source file names of the crate (its test modules left out): the paths it uses,
/// and the paths it re-exports (`pub use`).
struct FileUses {
    file: String,
    module: ModPath,
    uses: BTreeSet<ModPath>,
    reexports: Vec<ModPath>,
    test_mods: Vec<ModPath>,
}

fn read_file(file: &str, source: &str, modules: &BTreeSet<ModPath>) -> FileUses {
    let ast = syn::parse_file(source).unwrap_or_else(|e| panic!("{file}: {e}"));
    let here = module_of(file);
    let mut c = Collector {
        here: &here,
        modules,
        found: BTreeSet::new(),
        reexports: Vec::new(),
        test_mods: Vec::new(),
    };
    c.visit_file(&ast);
    FileUses {
        file: file.to_string(),
        module: here.clone(),
        uses: c.found,
        reexports: c.reexports,
        test_mods: c.test_mods,
    }
}

/// A path cut at the module that defines what it names, following re-exports: `crate::report::
/// charts::Chart`, re-exported by `charts` from `plan`, is a use of `report::charts::plan`.
fn defining_module(
    path: &[String],
    modules: &BTreeSet<ModPath>,
    reexports: &BTreeMap<ModPath, ModPath>,
) -> ModPath {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let module_len = (0..=path.len())
            .rev()
            .find(|&n| n == 0 || modules.contains(&path[..n].to_vec()))
            .unwrap_or(0);
        let Some(item) = path.get(module_len) else {
            return path;
        };
        let key: ModPath = path[..module_len]
            .iter()
            .chain(std::iter::once(item))
            .cloned()
            .collect();
        match reexports.get(&key) {
            Some(target) if *target != key => {
                let mut next = target.clone();
                next.extend(path[module_len + 1..].iter().cloned());
                path = next;
            }
            // An item of the crate's root, or of a module with no file: its first segment.
            _ => return path[..module_len.max(1)].to_vec(),
        }
    }
    path
}

/// Every use of another module in the given sources, each cut at the module that defines it.
fn uses_of(files: &[(String, String)]) -> Vec<Use> {
    let modules: BTreeSet<ModPath> = files.iter().map(|(f, _)| module_of(f)).collect();
    let mut read: Vec<FileUses> = files
        .iter()
        .map(|(f, s)| read_file(f, s, &modules))
        .collect();
    let tests: Vec<ModPath> = read.iter().flat_map(|r| r.test_mods.clone()).collect();
    read.retain(|r| !tests.iter().any(|t| starts_with(&r.module, t)));
    let mut reexports = BTreeMap::new();
    for r in &read {
        for target in &r.reexports {
            if let Some(name) = target.last() {
                let mut key = r.module.clone();
                key.push(name.clone());
                reexports.insert(key, target.clone());
            }
        }
    }
    let mut uses = Vec::new();
    for r in &read {
        for to in &r.uses {
            let to = defining_module(to, &modules, &reexports);
            if !to.is_empty() && to != r.module {
                uses.push(Use {
                    file: r.file.clone(),
                    from: r.module.clone(),
                    to,
                });
            }
        }
    }
    uses.sort();
    uses.dedup();
    uses
}

/// Every `.rs` file under `dir`, as paths relative to `root`.
fn sources(root: &Path, dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p: PathBuf = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// What a rule says of one use; `None` when it allows it.
fn violation(rule: &Rule, from: &[String], to: &[String]) -> Option<String> {
    let own = |scope: &[String]| starts_with(to, scope);
    match rule {
        Rule::Forbids(list) => list
            .iter()
            .find(|f| starts_with(to, f) && !starts_with(from, f))
            .map(|f| format!("must not depend on `{}`", f.join("::"))),
        Rule::OnlyAllows(list) => {
            let top = from.first().cloned().into_iter().collect::<Vec<_>>();
            (!own(&top) && !list.iter().any(|a| starts_with(to, a)))
                .then(|| format!("may depend only on {list:?} and itself"))
        }
    }
}

/// Every use the code map forbids, as lines naming the file, the target and the rule.
fn violations(rows: &[Row], uses: &[Use]) -> Vec<String> {
    let mut found = Vec::new();
    for u in uses {
        for row in rows
            .iter()
            .filter(|r| r.paths.iter().any(|p| holds(p, &u.file)))
        {
            if let Some(why) = violation(&row.rule, &u.from, &u.to) {
                found.push(format!(
                    "{} uses `crate::{}`: {} ({})",
                    u.file,
                    u.to.join("::"),
                    why,
                    row.paths.join(", ")
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The edges between sibling modules of every folder: (parent, from child, to child) with the
/// files that make each edge.
fn sibling_edges(uses: &[Use]) -> BTreeMap<(ModPath, String, String), BTreeSet<String>> {
    let mut edges: BTreeMap<(ModPath, String, String), BTreeSet<String>> = BTreeMap::new();
    for u in uses {
        let common = u.from.iter().zip(&u.to).take_while(|(a, b)| a == b).count();
        let (Some(a), Some(b)) = (u.from.get(common), u.to.get(common)) else {
            continue; // a module using its own descendants or ancestors
        };
        edges
            .entry((u.from[..common].to_vec(), a.clone(), b.clone()))
            .or_default()
            .insert(u.file.clone());
    }
    edges
}

/// Cycles among siblings: each as the folder and the modules on it, with an edge's files.
fn cycles(edges: &BTreeMap<(ModPath, String, String), BTreeSet<String>>) -> Vec<String> {
    let mut by_parent: BTreeMap<&ModPath, BTreeMap<&String, BTreeSet<&String>>> = BTreeMap::new();
    for (parent, a, b) in edges.keys() {
        by_parent
            .entry(parent)
            .or_default()
            .entry(a)
            .or_default()
            .insert(b);
    }
    let mut out = Vec::new();
    for (parent, graph) in by_parent {
        for (a, targets) in &graph {
            for b in targets {
                // a → b, and b reaches a: a circle through this edge.
                if let Some(back) = path_between(&graph, b, a) {
                    let files = &edges[&(parent.clone(), (*a).clone(), (*b).clone())];
                    out.push(format!(
                        "in `crate::{}`: {} → {} (in {}) and back {}",
                        parent.join("::"),
                        a,
                        b,
                        files.iter().cloned().collect::<Vec<_>>().join(", "),
                        back.join(" → ")
                    ));
                }
            }
        }
    }
    out
}

fn path_between<'a>(
    graph: &BTreeMap<&'a String, BTreeSet<&'a String>>,
    from: &'a String,
    to: &'a String,
) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![(from, vec![from.clone()])];
    while let Some((node, path)) = stack.pop() {
        if node == to {
            return Some(path);
        }
        if !seen.insert(node) {
            continue;
        }
        for next in graph.get(node).into_iter().flatten() {
            let mut p = path.clone();
            p.push((*next).clone());
            stack.push((next, p));
        }
    }
    None
}

fn crate_uses() -> Vec<Use> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<(String, String)> = sources(root, &root.join("src"))
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).unwrap();
            (f, text)
        })
        .collect();
    uses_of(&files)
}

fn code_map() -> Vec<Row> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    parse_code_map(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap())
}

#[test]
fn no_module_uses_what_the_code_map_forbids() {
    let rows = code_map();
    assert!(
        rows.len() >= 10,
        "the code map's table was not read: {rows:?}"
    );
    let uses = crate_uses();
    for ((parent, a, b), files) in sibling_edges(&uses) {
        println!("crate::{} {a} -> {b}: {files:?}", parent.join("::"));
    }
    let found = violations(&rows, &uses);
    assert!(
        found.is_empty(),
        "dependencies ARCHITECTURE.md's code map forbids:\n{}",
        found.join("\n")
    );
}

#[test]
fn sibling_modules_import_each_other_without_a_circle() {
    let found = cycles(&sibling_edges(&crate_uses()));
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// The checker itself can fail: a forbidden import, a circle and a rule of each kind are caught
/// in a made-up crate, and an allowed one is not.
#[test]
fn the_checker_catches_a_forbidden_import_and_a_circle() {
    let map = "## Code map\n\n| path | owns | must not depend on |\n|---|---|---|\n\
        | `src/stats/` | numbers | everything but `results` |\n\
        | `src/*/` | every folder | `cli` |\n\
        | `src/backend/vm/` | VMs | `report` (it calls `report::x`) |\n\n## Next\n";
    let rows = parse_code_map(map);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let files = [
        (
            "src/stats/mod.rs",
            "use crate::results::Row; use super::report::X;",
        ),
        (
            "src/backend/vm/qemu.rs",
            "fn f() { crate::report::draw(); }",
        ),
        ("src/backend/mod.rs", "use crate::cli::Args;"),
        ("src/lib.rs", "use crate::cli::Args;"),
        ("src/report/a.rs", "use super::b::B;"),
        (
            "src/report/b.rs",
            "pub struct B; fn g() { matches!(1, super::a::X); }",
        ),
    ];
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(f, s)| (f.to_string(), s.to_string()))
        .collect();
    let uses = uses_of(&files);
    let found = violations(&rows, &uses);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("src/backend/mod.rs uses `crate::cli`"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("src/backend/vm/qemu.rs uses `crate::report`"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("src/stats/mod.rs uses `crate::report`"),
        "{found:#?}"
    );
    let circles = cycles(&sibling_edges(&uses));
    assert_eq!(circles.len(), 2, "{circles:#?}");
    assert!(circles[0].contains("a → b"), "{circles:#?}");
}
