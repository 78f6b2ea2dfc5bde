//! The results directory of a comparison: its run id, the directory itself (checked writable
//! before anything is measured: a run whose results cannot be written is bad input), and
//! `reports/latest` pointing at it when cvm chose the place.

use std::path::{Path, PathBuf};

use super::CompareError;
use crate::results;

/// Where one comparison writes its results.
pub(super) struct ResultsDir {
    run_id: String,
    started: String,
    path: PathBuf,
}

impl ResultsDir {
    /// Creates `output` (or `reports/<run-id>`, then points `reports/latest` at it).
    pub(super) fn open(output: Option<&Path>, scenario: &str) -> Result<ResultsDir, CompareError> {
        let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let run_id = format!(
            "{}-{scenario}",
            started.replace([':', '-'], "").trim_end_matches('Z'),
        );
        let path = match output {
            Some(dir) => dir.to_path_buf(),
            None => PathBuf::from("reports").join(&run_id),
        };
        std::fs::create_dir_all(&path)
            .and_then(|()| write_probe(&path))
            .map_err(|source| CompareError::Output {
                path: path.clone(),
                source,
            })?;
        if output.is_none() {
            point_latest_at(&path);
        }
        Ok(ResultsDir {
            run_id,
            started,
            path,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// When the run started (RFC 3339, seconds).
    pub(super) fn started(&self) -> &str {
        &self.started
    }

    pub(super) fn meta_path(&self) -> PathBuf {
        self.path.join(results::META_FILE)
    }

    pub(super) fn samples_path(&self) -> PathBuf {
        self.path.join(results::SAMPLES_FILE)
    }
}

fn write_probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".cvm-write-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

/// `reports/latest` → the newest run directory (a relative symlink, replaced atomically).
fn point_latest_at(dir: &Path) {
    let Some(parent) = dir.parent() else { return };
    let Some(name) = dir.file_name() else { return };
    let tmp = parent.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(name, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, parent.join("latest"));
    }
}

/// Distinguishes this cvm process's resource names (cgroups, netns, links) from any other's.
/// Short, because Linux interface names have 15 characters.
pub(super) fn short_token() -> String {
    format!(
        "{:04x}{:02x}",
        std::process::id() & 0xffff,
        fastrand::u8(..)
    )
}
