//! Records the git revision in the binary, so every result names the code that produced it,
//! with `-dirty` when tracked files differ from it (staged or not).
//!
//! The script reruns when any tracked file changes, not only when git's own files do: an edit
//! left unstaged touches neither `HEAD` nor the index, and a binary rebuilt after it would
//! otherwise keep claiming the clean revision.
use std::process::Command;

fn git(args: &[&str]) -> Option<Vec<u8>> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_string()
}

fn main() {
    let sha = git(&["rev-parse", "--short=12", "HEAD"]).map_or_else(|| "unknown".into(), text);
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|out| !out.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=CVM_GIT_SHA={sha}{suffix}");
    // git's own files where it keeps them (a worktree's `.git` is a file naming them): the
    // revision, the branch it points to, the index.
    let mut watched = vec![
        "HEAD".to_string(),
        "index".to_string(),
        "packed-refs".into(),
    ];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]).map(text));
    let git_files = watched
        .iter()
        .filter_map(|name| git(&["rev-parse", "--git-path", name]).map(text));
    // Every tracked file, so an unstaged edit reruns this script.
    let tracked = git(&["ls-files", "-z"]).unwrap_or_default();
    let tracked = tracked
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned());
    for path in git_files.chain(tracked) {
        // A path that does not exist would rerun the script (and rebuild cvm) on every build.
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
