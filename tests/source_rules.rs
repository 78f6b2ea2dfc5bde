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
