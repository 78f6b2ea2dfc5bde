//! Rules read off the source itself (rust-analyzer's tidy tests are the model): what a review
//! would otherwise have to catch every time.

use std::path::{Path, PathBuf};

/// Every `.rs` file under the workspace's source and test folders.
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "tests",
        "benches",
        "examples",
        "proto",
        "runtime/src",
        "runtime/tests",
        "guest/src",
        "guest/tests",
    ] {
        walk(&root.join(dir), &mut files);
    }
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A test that lacks something from the host says so through `tests/common/host.rs`'s
/// `host_has` alone, which fails it under `CVM_REQUIRE_HOST=1`: a test printing its own skip
/// passes silently on a CI host that lost a tool.
#[test]
fn every_skip_goes_through_the_one_rule() {
    let the_rule = Path::new("tests/common/host.rs");
    // Spelled apart, so this file does not match itself.
    let skip_word = format!("\"{}PED", "SKIP");
    let definition = format!("fn {}(", "host_has");
    let mut offenders = Vec::new();
    for file in rust_files() {
        let name = relative(&file);
        if Path::new(&name) == the_rule {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains(&skip_word) || line.contains(&definition) {
                offenders.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "skips outside `host_has` (tests/common/host.rs):\n{}",
        offenders.join("\n")
    );
}

/// A function that hands a fork's result to its caller lets the caller's code run in the
/// child, which is sound only in a single-threaded process: a promise the caller makes, so the
/// function is `unsafe fn` and its docs say what is promised (`# Safety`).
#[test]
fn a_fork_returned_to_the_caller_is_an_unsafe_fn_with_its_precondition() {
    let mut offenders = Vec::new();
    let mut checked = 0;
    for file in rust_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let signature = line.trim_start();
            let is_fn = signature.starts_with("fn ") || signature.contains(" fn ");
            if !is_fn || !signature.contains("-> ") || !signature.contains("ForkResult") {
                continue;
            }
            checked += 1;
            let docs: Vec<&str> = lines[..n]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("///"))
                .copied()
                .collect();
            let unsafe_fn = signature.contains("unsafe fn ");
            let safety = docs.iter().any(|l| l.trim() == "/// # Safety");
            if !(unsafe_fn && safety) {
                offenders.push(format!("{}:{}: {}", relative(&file), n + 1, signature));
            }
        }
    }
    assert!(
        checked > 0,
        "no function returning a fork's result was found"
    );
    assert!(
        offenders.is_empty(),
        "returns a fork's result but is not an `unsafe fn` with a `# Safety` section:\n{}",
        offenders.join("\n")
    );
}

/// The longest a function may be, outside tests: a reader holds the whole of it at once.
const MAX_FUNCTION_LINES: usize = 120;

/// Every function's length in lines (from `fn` to its closing brace), outside `#[test]`
/// functions and `#[cfg(test)]` modules.
struct FunctionLengths {
    file: String,
    scope: Vec<String>,
    found: Vec<(usize, String)>,
}

fn is_test_item(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg")
                && a.meta.require_list().is_ok_and(|l| {
                    l.tokens
                        .to_string()
                        .split(|c: char| !c.is_alphanumeric())
                        .any(|w| w == "test")
                }))
    })
}

impl FunctionLengths {
    fn record(&mut self, name: &syn::Ident, sig: &syn::Signature, body: &syn::Block) {
        use syn::spanned::Spanned;
        let start = sig.fn_token.span().start().line;
        let end = body.brace_token.span.close().end().line;
        let mut path = self.scope.clone();
        path.push(name.to_string());
        self.found.push((
            end + 1 - start,
            format!("{}:{start} {}", self.file, path.join("::")),
        ));
    }
}

impl<'a> syn::visit::Visit<'a> for FunctionLengths {
    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        if !is_test_item(&m.attrs) {
            self.scope.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.scope.pop();
        }
    }
    fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
        if !is_test_item(&f.attrs) {
            self.record(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        if !is_test_item(&f.attrs) {
            self.record(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    fn visit_trait_item_fn(&mut self, f: &'a syn::TraitItemFn) {
        if let Some(body) = &f.default {
            self.record(&f.sig.ident, &f.sig, body);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// Product code (the library, the runtime, the guest, the protocol) only: tests, benches and
/// examples may be as long as their scenario needs.
fn product_functions() -> Vec<(usize, String)> {
    let mut all = Vec::new();
    for file in rust_files() {
        let name = relative(&file);
        let product = ["src/", "runtime/src/", "guest/src/", "proto/src/"]
            .iter()
            .any(|p| name.starts_with(p));
        if !product {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut lengths = FunctionLengths {
            file: name,
            scope: Vec::new(),
            found: Vec::new(),
        };
        syn::visit::Visit::visit_file(&mut lengths, &parsed);
        all.extend(lengths.found);
    }
    all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    all
}

#[test]
fn no_product_function_is_longer_than_a_reader_can_hold() {
    let all = product_functions();
    // The walk found the crates' functions (a broken span feature would give lengths of 1).
    assert!(
        all.len() > 500 && all[0].0 > 20,
        "{:?}",
        &all[..all.len().min(5)]
    );
    eprintln!("longest five:");
    for (lines, name) in all.iter().take(5) {
        eprintln!("  {lines:4} {name}");
    }
    let long: Vec<String> = all
        .iter()
        .filter(|(lines, _)| *lines > MAX_FUNCTION_LINES)
        .map(|(lines, name)| format!("{lines:4} lines: {name}"))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them by job):\n{}",
        long.join("\n")
    );
}
