//! `run.json`: what a reader needs to reproduce or judge the numbers — the host, every version,
//! the scenario as run, and for each backend whether it ran and how it was configured.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Availability, ResultsError, Stack};

/// The machine and software that produced a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub host: String,
    pub kernel: String,
    pub os: String,
    pub cpu_model: String,
    pub ncpu: u32,
    pub mem_total: u64,
    pub cgroup: String,
    pub root: bool,
    pub cvm_version: String,
    pub git_sha: String,
    /// Versions of the tools the backends use (qemu, runc, crun, docker), where found.
    pub tools: BTreeMap<String, String>,
}

/// One backend as it took part in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub backend: String,
    pub stack: Stack,
    pub availability: Availability,
    /// Set when the backend was available but failed to prepare or every run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub config: BTreeMap<String, String>,
}

/// Everything about a run except its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: String,
    pub scenario: ScenarioRecord,
    pub runs: u32,
    pub warmup: u32,
    pub timeout_s: f64,
    pub environment: Environment,
    pub backends: Vec<BackendInfo>,
    /// How the HTTP load was generated and limited, when there was a load phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<BTreeMap<String, String>>,
    /// The order of the backends' runs: `interleaved` (per iteration, seeded) or `sequential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The seed of the interleaved order, so a run's order can be reproduced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl RunMeta {
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        write_json(path, self)
    }

    pub fn read(path: &Path) -> Result<RunMeta, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ResultsError::ParseMeta {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes pretty JSON atomically (temp file + rename), so a reader never sees half a file.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ResultsError> {
    let err = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The scenario as run: its name and description for labels, and the whole definition (as
/// JSON, overrides not applied) for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRecord {
    pub name: String,
    pub description: String,
    pub definition: serde_json::Value,
}

impl From<&crate::scenario::Scenario> for ScenarioRecord {
    fn from(s: &crate::scenario::Scenario) -> Self {
        ScenarioRecord {
            name: s.name.clone(),
            description: s.description.clone(),
            definition: serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
        }
    }
}
