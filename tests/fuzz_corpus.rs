//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the hand-written seeds
//! (`fuzz/seeds/`) through the same checks the fuzz targets run (`fuzz/checks.rs`), without
//! libFuzzer or sanitizers: a cheap guard, in every `cargo test`, that no input the fuzzer once
//! found interesting makes cvm panic again.
//! The long fuzz runs are `scripts/fuzz.sh`; the short CI smoke is `scripts/fuzz-smoke.sh`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

/// The files of `fuzz/<dir>`, which must not be empty.
fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `check` on every corpus and seed file of `target`; fails naming every file that panicked.
fn replay(target: &str, seeds: &str, check: fn(&[u8])) {
    let mut panicked = Vec::new();
    let mut inputs = files(&format!("corpus/{target}"));
    inputs.extend(files(&format!("seeds/{seeds}")));
    for file in inputs {
        let data = std::fs::read(&file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            panicked.push(file.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "fuzz target `{target}` panics on: {panicked:#?}"
    );
}

#[test]
fn scenario_corpus_replays_without_panic() {
    replay("scenario", "scenario", checks::scenario);
}

#[test]
fn samples_corpus_replays_without_panic() {
    replay("samples", "samples", checks::samples);
}

#[test]
fn report_corpus_replays_without_panic() {
    // The report target reads samples files.
    replay("report", "samples", checks::report);
}
