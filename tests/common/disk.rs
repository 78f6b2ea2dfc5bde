//! An independent count of disk layers, for tests that check the figures cvm reports: the
//! test's own PATH lookup (the shell's `command -v`), its own reading of `ldd`, and `du` for the
//! bytes, none of it through cvm's code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cvm::results::{Phase, SampleRow};

/// Bytes allocated on disk for `paths` as `du` counts them: each inode once (across all of
/// them), a symlink named directly followed, directories walked. Zero for no paths.
pub fn du_bytes(paths: &[PathBuf]) -> u64 {
    if paths.is_empty() {
        return 0;
    }
    let out = Command::new("du")
        .args(["-B1", "-s", "-c", "-D"])
        .args(paths)
        .output()
        .expect("cannot run du");
    assert!(
        out.status.success(),
        "du failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no total from du: {text}"));
    total.parse().unwrap()
}

/// The program the shell would run for `name`.
pub fn which(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && path.starts_with('/')).then(|| PathBuf::from(path))
}

/// `binary` and every file `ldd` says it loads (none for a static binary).
pub fn with_ldd(binary: &Path) -> Vec<PathBuf> {
    let mut files = vec![binary.to_path_buf()];
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("cannot run ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    files
}

/// The `disk.<layer>` figures (and `disk_footprint`) one backend recorded, by metric name.
pub fn disk_figures(rows: &[SampleRow], backend: &str) -> BTreeMap<String, u64> {
    rows.iter()
        .filter(|r| r.backend == backend && r.phase == Phase::Measure)
        .filter(|r| r.metric.starts_with("disk"))
        .map(|r| (r.metric.clone(), r.value as u64))
        .collect()
}

/// Asserts that cvm's figures are exactly the expected layers (missing layers are absent) and
/// that the layers add up to `disk_footprint`.
pub fn assert_layers(backend: &str, got: &BTreeMap<String, u64>, want: &[(&str, u64)]) {
    let mut expected: BTreeMap<String, u64> = want
        .iter()
        .map(|(l, b)| (format!("disk.{l}"), *b))
        .collect();
    expected.insert("disk_footprint".into(), want.iter().map(|(_, b)| b).sum());
    for (metric, bytes) in &expected {
        assert!(
            *bytes > 0 || metric == "disk_footprint",
            "{backend}: expected {metric} is empty"
        );
    }
    eprintln!("{backend}: the test's own count {expected:?}");
    assert_eq!(
        got, &expected,
        "{backend}: disk layers cvm reported (left) vs the test's own count (right)"
    );
}
