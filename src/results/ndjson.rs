//! `samples.ndjson`: the samples as newline-delimited JSON for analysis tools (jq, pandas'
//! `read_json(lines=True)`, DuckDB), beside `samples.csv`. Each line is one sample with the
//! run's metadata a row lacks: the scenario's description, the run's status, the backend's
//! stack and configuration as an object (not `k=v;...`), and the host fingerprint.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::{BackendInfo, HostFingerprint, ResultsError, RunMeta, SampleRow, Stack};

pub const NDJSON_FILE: &str = "samples.ndjson";

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    sample: &'a SampleRow,
    schema_version: u32,
    status: super::RunStatus,
    stack: Option<Stack>,
    backend_config: Option<&'a std::collections::BTreeMap<String, String>>,
    fingerprint: &'a HostFingerprint,
}

/// Writes `rows` with `meta` as NDJSON to `path`.
pub fn write_ndjson(path: &Path, meta: &RunMeta, rows: &[SampleRow]) -> Result<(), ResultsError> {
    let err = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for r in rows {
        let info: Option<&BackendInfo> = meta.backends.iter().find(|b| b.backend == r.backend);
        let line = Line {
            sample: r,
            schema_version: meta.schema_version,
            status: meta.status,
            stack: info.map(|i| i.stack),
            backend_config: info.map(|i| &i.config),
            fingerprint: &meta.environment.fingerprint,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| err(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(err)?;
    }
    out.flush().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_object_per_sample_with_its_metadata() {
        let m = crate::results::testdata::meta("startup", "h", &["container"]);
        let rows = crate::results::testdata::rows("container", "ready_latency", "s", &[0.1, 0.2]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NDJSON_FILE);
        write_ndjson(&path, &m, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["value"], 0.2);
        assert_eq!(lines[1]["metric"], "ready_latency");
        assert_eq!(lines[0]["stack"], "container");
        assert_eq!(lines[0]["status"], "done");
        assert!(lines[0]["fingerprint"].is_object());
    }
}
