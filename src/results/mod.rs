//! Results on disk: the raw samples (`samples.csv`, one tidy row per sample, flushed as each
//! arrives), the run's metadata (`run.json`: environment, scenario, backends and why any were
//! unavailable) and the derived summary (`summary.json`). Stats and reports read only these.

mod backend;
mod fingerprint;
mod meta;
mod ndjson;
mod phases;
mod samples;
pub(crate) mod summary;
#[cfg(test)]
pub(crate) mod testdata;

pub use backend::{
    Availability, BackendInfo, Stack, ACCEL_KEY, NETWORK_STACK_KEY, PLATFORM_KEY, SUPERVISOR_KEY,
};
pub use fingerprint::{HostFingerprint, HostLoad};
pub use meta::{
    schema_limitations, Environment, RunMeta, RunStatus, ScenarioRecord, SCHEMA_VERSION,
};
pub use ndjson::{write_ndjson, NDJSON_FILE};
pub use phases::phase_rank;
pub use samples::{parse_samples, read_samples, Phase, SampleRow, SampleWriter};
pub use summary::{
    measured_once, measured_series, summarize, BackendSummary, MetricSummary, PairRatio,
    RunSummary, Series, RUN_FAILED,
};

use std::path::PathBuf;

pub const SAMPLES_FILE: &str = "samples.csv";
pub const SUMMARY_FILE: &str = "summary.json";
pub const META_FILE: &str = "run.json";

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot create results directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write a sample to {path}")]
    WriteSample {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: bad sample row")]
    ParseSample {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path}: not valid run metadata")]
    ParseMeta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
