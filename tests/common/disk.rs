//! An independent count of disk layers, for tests that check the figures cvm reports: the
//! test's own PATH lookup (the shell's `command -v`), its own reading of `ldd`, and `du` for the
//! bytes (of a copy binutils' `strip` made, for an executable or shared library: cvm counts
//! binaries as installed, stripped), none of it through cvm's code.

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

/// Bytes `paths` take installed, as `du` counts them: every ELF executable or shared library
/// named among them is replaced by a copy `strip` made (no debug info, no symbol table, whoever
/// built it) and written out in full, each file once however many paths or links name it;
/// anything else as [`du_bytes`] counts it.
pub fn du_installed(paths: &[PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let copies = tempfile::tempdir().unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut counted = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        if !meta.is_file() || !is_elf_program(p) {
            counted.push(p.clone());
            continue;
        }
        let stripped = copies.path().join(format!("{i}.stripped"));
        let copy = copies.path().join(i.to_string());
        // strip leaves alignment padding as holes (a kernel's 2 MiB alignment); a package
        // manager writes the file out in full, so the copy counted is not sparse.
        for (program, args) in [
            ("strip", vec!["-o".into(), stripped.clone(), p.clone()]),
            (
                "cp",
                vec!["--sparse=never".into(), stripped.clone(), copy.clone()],
            ),
        ] {
            let out = Command::new(program)
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
            assert!(
                out.status.success(),
                "{program} {}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        counted.push(copy);
    }
    du_bytes(&counted)
}

/// An ELF executable or shared library (`e_type` 2 or 3), not a kernel module or other object.
fn is_elf_program(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 18];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok() && head[..4] == *b"\x7fELF" && matches!(head[16], 2 | 3) && head[17] == 0
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

/// The `disk.<layer>` figures (and `disk_footprint`) one backend recorded, by metric name;
/// `disk_cache`, in no layer, is [`disk_cache`]'s.
pub fn disk_figures(rows: &[SampleRow], backend: &str) -> BTreeMap<String, u64> {
    rows.iter()
        .filter(|r| r.backend == backend && r.phase == Phase::Measure)
        .filter(|r| r.metric.starts_with("disk") && r.metric != "disk_cache")
        .map(|r| (r.metric.clone(), r.value as u64))
        .collect()
}

/// The `disk_cache` figure one backend recorded, if any.
pub fn disk_cache(rows: &[SampleRow], backend: &str) -> Option<u64> {
    rows.iter()
        .find(|r| r.backend == backend && r.metric == "disk_cache")
        .map(|r| r.value as u64)
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
