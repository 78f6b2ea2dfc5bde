//! Where a `cvm compare` run writes, chosen so that no run ever writes over another's results:
//!
//! - By default `reports/<run id>`, created new: a second run of the same scenario that starts
//!   in the same second gets `<run id>-2` (then `-3`, ...), which is then its run id too.
//! - `--output DIR` must be new or empty: a directory that already holds files (an earlier
//!   run's results) is refused as bad input, before anything is measured.
//! - The directory is claimed by creating its `samples.csv` (create-new), so two runs given the
//!   same empty `--output` at once cannot both write there.
//! - The write probe and the temporary name of the `reports/latest` link are this run's own,
//!   so runs side by side never remove each other's.

use std::io;
use std::path::{Path, PathBuf};

use crate::results::{self, ResultsError, SampleWriter};

/// Suffixes tried for a run id already taken in the same second.
const MAX_SUFFIX: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ResultsDirError {
    #[error("cannot create the results directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "--output {path} already holds files (an earlier run's results?); cvm never writes over \
         results: give a new or empty directory"
    )]
    NotEmpty { path: PathBuf },
    #[error("cannot write to the results directory {path} (choose a writable --output)")]
    Unwritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot claim the results directory {path} (another run is writing there)")]
    Claim {
        path: PathBuf,
        #[source]
        source: ResultsError,
    },
}

/// A run's results directory, claimed: its run id and its `samples.csv`, open.
pub(super) struct ResultsDir {
    pub(super) run_id: String,
    pub(super) path: PathBuf,
    pub(super) samples: SampleWriter,
}

/// The results directory of a run whose id would be `run_id`: `output` if given, else a new
/// directory under `reports` (then `reports/latest` points at it).
pub(super) fn create(
    output: Option<&Path>,
    reports: &Path,
    run_id: &str,
) -> Result<ResultsDir, ResultsDirError> {
    let (run_id, path) = folder(output, reports, run_id)?;
    let samples = SampleWriter::create(&path.join(results::SAMPLES_FILE)).map_err(|source| {
        ResultsDirError::Claim {
            path: path.clone(),
            source,
        }
    })?;
    Ok(ResultsDir {
        run_id,
        path,
        samples,
    })
}

/// The folder of a run (or of a suite's runs) whose id would be `run_id`, new or empty and
/// writable: `output` if given, else a new directory under `reports`, which `reports/latest`
/// then points at. Its id and path.
pub(super) fn folder(
    output: Option<&Path>,
    reports: &Path,
    run_id: &str,
) -> Result<(String, PathBuf), ResultsDirError> {
    let (run_id, path) = match output {
        Some(dir) => {
            use_output(dir)?;
            (run_id.to_string(), dir.to_path_buf())
        }
        None => new_under(reports, run_id)?,
    };
    write_probe(&path).map_err(|source| ResultsDirError::Unwritable {
        path: path.clone(),
        source,
    })?;
    if output.is_none() {
        point_latest_at(&path);
    }
    Ok((run_id, path))
}

/// `--output`: created if missing; if it exists, it must be an empty directory.
fn use_output(dir: &Path) -> Result<(), ResultsDirError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ResultsDirError::NotEmpty {
                    path: dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|source| ResultsDirError::Create {
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(ResultsDirError::Unwritable {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// A directory under `reports` created new, named `run_id` or, if that is taken, `run_id-N`.
fn new_under(reports: &Path, run_id: &str) -> Result<(String, PathBuf), ResultsDirError> {
    std::fs::create_dir_all(reports).map_err(|source| ResultsDirError::Create {
        path: reports.to_path_buf(),
        source,
    })?;
    let mut last = None;
    for n in 1..=MAX_SUFFIX {
        let id = if n == 1 {
            run_id.to_string()
        } else {
            format!("{run_id}-{n}")
        };
        let path = reports.join(&id);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok((id, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
            Err(source) => return Err(ResultsDirError::Create { path, source }),
        }
    }
    let (path, source) = last.expect("MAX_SUFFIX is at least 1");
    Err(ResultsDirError::Create { path, source })
}

/// A name of this run's own in `dir`, for a file that lives a moment.
fn own_name(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!(
        ".{stem}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ))
}

/// Checks that files can be created in `dir`: a run whose results cannot be written is bad
/// input, found before anything is measured.
fn write_probe(dir: &Path) -> io::Result<()> {
    let probe = own_name(dir, "cvm-write-probe");
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(probe)
}

/// `reports/latest` → the newest run directory (a relative symlink, replaced atomically).
fn point_latest_at(dir: &Path) {
    let Some(parent) = dir.parent() else { return };
    let Some(name) = dir.file_name() else { return };
    let tmp = own_name(parent, "latest");
    if std::os::unix::fs::symlink(name, &tmp).is_ok()
        && std::fs::rename(&tmp, parent.join("latest")).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runs_in_the_same_second_get_their_own_directories_and_ids() {
        let reports = tempfile::tempdir().unwrap();
        let id = "20250101T120000-web";
        let first = create(None, reports.path(), id).unwrap();
        let second = create(None, reports.path(), id).unwrap();
        assert_eq!(first.run_id, id);
        assert_eq!(second.run_id, format!("{id}-2"));
        assert_ne!(first.path, second.path);
        assert!(first.path.join(results::SAMPLES_FILE).is_file());
        assert!(second.path.join(results::SAMPLES_FILE).is_file());
        // latest follows the newest; no temporary link is left behind.
        let latest = std::fs::read_link(reports.path().join("latest")).unwrap();
        assert_eq!(latest, Path::new(&second.run_id));
        let names: Vec<String> = std::fs::read_dir(reports.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn an_output_directory_with_files_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        // New, then empty: both fine.
        drop(create(Some(&out), dir.path(), "r").unwrap());
        std::fs::write(out.join(results::SAMPLES_FILE), "earlier samples\n").unwrap();
        match create(Some(&out), dir.path(), "r") {
            Err(ResultsDirError::NotEmpty { path }) => assert_eq!(path, out),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a results directory with files was used again"),
        }
        let kept = std::fs::read_to_string(out.join(results::SAMPLES_FILE)).unwrap();
        assert_eq!(kept, "earlier samples\n");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(create(Some(&empty), dir.path(), "r").is_ok());
        // The default location is not touched by an --output run.
        assert!(!dir.path().join("latest").exists());
    }

    #[test]
    fn runs_side_by_side_never_remove_each_others_probe_or_link() {
        let reports = tempfile::tempdir().unwrap();
        let a = reports.path().join("a");
        let b = reports.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        // Leftovers under the names a shared temporary would have: a crashed run's, or one
        // another run is using right now.
        std::fs::create_dir(reports.path().join(".cvm-write-probe")).unwrap();
        std::fs::create_dir_all(reports.path().join(".latest.tmp/busy")).unwrap();
        let failures: usize = std::thread::scope(|s| {
            let workers: Vec<_> = [&a, &b]
                .into_iter()
                .map(|dir| {
                    s.spawn(move || {
                        (0..300)
                            .filter(|_| {
                                point_latest_at(dir);
                                write_probe(dir.parent().unwrap()).is_err()
                            })
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(failures, 0, "a probe failed in a writable directory");
        let latest = std::fs::read_link(reports.path().join("latest")).unwrap();
        assert!(
            latest == Path::new("a") || latest == Path::new("b"),
            "{latest:?}"
        );
        point_latest_at(&b);
        assert_eq!(
            std::fs::read_link(reports.path().join("latest")).unwrap(),
            Path::new("b")
        );
    }
}
