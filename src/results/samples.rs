//! `samples.csv`: one row per sample, SI base units, host columns repeated on every row so a
//! single file loads into pandas with everything needed to group and label it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ResultsError;

/// Whether a sample is a warm-up (recorded, left out of the summary) or measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warmup,
    Measure,
}

/// One sample. Column order is the file's column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    pub run_id: String,
    pub scenario: String,
    pub backend: String,
    pub iteration: u32,
    pub phase: Phase,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub host: String,
    pub kernel: String,
    pub cpu_model: String,
    pub ncpu: u32,
    pub mem_total: u64,
    pub accel: String,
    pub qemu_version: String,
    pub cvm_version: String,
    pub git_sha: String,
    /// The backend's configuration (`key=value;...`): cgroup version, machine type, boot path...
    pub config: String,
    /// Why a run failed (metric `run_failed`), or other context; empty otherwise.
    pub note: String,
}

/// Appends rows to `samples.csv`, flushing each so an interrupted run keeps what it measured.
pub struct SampleWriter {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl SampleWriter {
    /// Creates `samples.csv` at `path`, which must not exist: a run's raw samples are never
    /// written over (an existing file is [`ResultsError::Write`] with `AlreadyExists`).
    pub fn create(path: &Path) -> Result<SampleWriter, ResultsError> {
        Self::open(path, OpenOptions::new().write(true).create_new(true))
    }

    /// Creates or replaces `samples.csv` at `path`: only for derived files that are rebuilt
    /// from raw results (`cvm report --merge`).
    pub fn replace(path: &Path) -> Result<SampleWriter, ResultsError> {
        Self::open(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )
    }

    fn open(path: &Path, options: &OpenOptions) -> Result<SampleWriter, ResultsError> {
        let file = options.open(path).map_err(|source| ResultsError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SampleWriter {
            path: path.to_path_buf(),
            writer: csv::Writer::from_writer(file),
        })
    }

    pub fn write(&mut self, row: &SampleRow) -> Result<(), ResultsError> {
        let err = |source| ResultsError::WriteSample {
            path: self.path.clone(),
            source,
        };
        self.writer.serialize(row).map_err(err)?;
        self.writer.flush().map_err(|source| ResultsError::Write {
            path: self.path.clone(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every row of a `samples.csv`. A truncated last line (cvm killed mid-write) is skipped,
/// any other bad row is an error naming the file.
pub fn read_samples(path: &Path) -> Result<Vec<SampleRow>, ResultsError> {
    let file = File::open(path).map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_samples(file).map_err(|source| ResultsError::ParseSample {
        path: path.to_path_buf(),
        source,
    })
}

/// The reader behind [`read_samples`], for any byte source (and for fuzzing).
pub fn parse_samples<R: std::io::Read>(source: R) -> Result<Vec<SampleRow>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(source);
    let mut rows = Vec::new();
    let mut records = reader.deserialize::<SampleRow>().peekable();
    while let Some(record) = records.next() {
        match record {
            Ok(row) => rows.push(row),
            Err(_) if records.peek().is_none() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(backend: &str, iteration: u32, metric: &str, value: f64) -> SampleRow {
        SampleRow {
            run_id: "r1".into(),
            scenario: "startup".into(),
            backend: backend.into(),
            iteration,
            phase: Phase::Measure,
            metric: metric.into(),
            value,
            unit: "s".into(),
            host: "h".into(),
            kernel: "k".into(),
            cpu_model: "cpu, with comma".into(),
            ncpu: 2,
            mem_total: 1 << 30,
            accel: String::new(),
            qemu_version: String::new(),
            cvm_version: "0.1.0".into(),
            git_sha: "abc".into(),
            config: "cgroup=v1".into(),
            note: String::new(),
        }
    }

    #[test]
    fn rows_round_trip_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        let mut w = SampleWriter::create(&path).unwrap();
        let a = row("native", 0, "ready_latency", 0.001);
        let b = row("container", 1, "ready_latency", 0.002);
        w.write(&a).unwrap();
        w.write(&b).unwrap();
        // Flushed after each row: readable without closing the writer.
        assert_eq!(read_samples(&path).unwrap(), vec![a.clone(), b.clone()]);
        drop(w);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("r1,startup,native,2,meas");
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_samples(&path).unwrap(), vec![a, b]);
    }

    #[test]
    fn samples_are_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        let mut w = SampleWriter::create(&path).unwrap();
        let a = row("native", 0, "ready_latency", 0.001);
        w.write(&a).unwrap();
        drop(w);
        match SampleWriter::create(&path) {
            Err(ResultsError::Write { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an existing samples.csv was opened for writing"),
        }
        assert_eq!(read_samples(&path).unwrap(), vec![a]);
        // A derived file (a merge's) is rebuilt in place.
        drop(SampleWriter::replace(&path).unwrap());
        assert!(read_samples(&path).unwrap().is_empty());
    }

    #[test]
    fn a_bad_row_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        let mut w = SampleWriter::create(&path).unwrap();
        w.write(&row("native", 0, "ready_latency", 0.001)).unwrap();
        drop(w);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("garbage\n");
        let first_row = text.lines().nth(1).unwrap().to_string();
        text.push_str(&first_row);
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        assert!(read_samples(&path).is_err());
    }
}
