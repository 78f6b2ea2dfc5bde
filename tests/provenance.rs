//! Build provenance: a binary built from a tree with edits says `-dirty` after its revision,
//! whether the edits are committed, staged or not. Checked with cvm's own build script on a
//! small crate in a fresh repository, built by the cargo running this test.

mod common;

use std::path::Path;
use std::process::Command;

use common::{host_has, which};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=cvm", "-c", "user.email=cvm@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lets the index settle as it does in a working tree: files written in the same second as the
/// index are "racily clean", and every `git status` (the build script's too) rewrites the
/// index for them, which alone would rerun a script that watches only git's files.
fn settle(dir: &Path) {
    std::thread::sleep(std::time::Duration::from_millis(1100));
    git(dir, &["update-index", "-q", "--really-refresh"]);
    git(dir, &["status", "--porcelain"]);
}

/// Builds the crate in `dir` and runs it: the revision it was built with.
fn built_revision(dir: &Path) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(dir)
        .args(["run", "--quiet", "--offline"])
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_unstaged_edit_marks_the_rebuilt_binary_dirty() {
    if !host_has(which("git"), "git is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"provenance\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(root.join("build.rs"), include_str!("../build.rs")).unwrap();
    std::fs::create_dir(root.join("src")).unwrap();
    let main = "fn main() {\n    println!(\"{}\", env!(\"CVM_GIT_SHA\"));\n}\n";
    std::fs::write(root.join("src/main.rs"), main).unwrap();
    std::fs::write(root.join("README"), "notes\n").unwrap();
    std::fs::write(root.join(".gitignore"), "/target\n").unwrap();
    git(root, &["init", "-q"]);
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "first"]);
    settle(root);

    let clean = built_revision(root);
    assert!(!clean.ends_with("-dirty") && clean != "unknown", "{clean}");
    // An edit nobody staged: neither HEAD nor the index changes.
    std::fs::write(root.join("src/main.rs"), format!("{main}// edited\n")).unwrap();
    assert_eq!(built_revision(root), format!("{clean}-dirty"));
    // Committed: clean again, at the new revision.
    git(root, &["commit", "-qam", "second"]);
    settle(root);
    let second = built_revision(root);
    assert!(!second.ends_with("-dirty") && second != clean, "{second}");
    // A tracked file that is not code counts too.
    std::fs::write(root.join("README"), "notes, edited\n").unwrap();
    assert_eq!(built_revision(root), format!("{second}-dirty"));
}
