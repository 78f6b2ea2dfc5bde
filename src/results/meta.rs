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
    /// How cvm itself was built (`debug` or `release`): its own code is on the launch path of
    /// some backends (the container runtime, the supervision threads), so it is a variable.
    /// Empty in runs recorded before it existed.
    #[serde(default)]
    pub build_profile: String,
    /// Versions of the tools the backends use (qemu, runc, crun, docker), where found.
    pub tools: BTreeMap<String, String>,
    /// The host settings that move figures (SMT, governor, THP, mitigations...); all empty in
    /// runs recorded before it existed.
    #[serde(default)]
    pub fingerprint: super::HostFingerprint,
    /// The host's load average over the run; absent in runs recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<super::HostLoad>,
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

/// The version of the results format (`run.json`, `samples.csv`, the metrics in them) this cvm
/// writes. History:
/// - 1: no `schema_version` field (every directory written before it was added).
/// - 2: VM memory split (`memory_vmm`, `memory_guest_ram`, `memory_guest_used`), Docker's
///   daemons apart (`memory_daemon`), OCI runtimes detached (their exited runtime no longer in
///   `memory_pss`).
/// - 3: isolation figures (`noisy_*`, `audit_*`, `contain_*`, their evidence in each sample's
///   note); cvm's own `container` backend masks and makes read-only the runtime spec's default
///   /proc and /sys paths (its `phase.runtime` includes those mounts); `[resources] pids`.
pub const SCHEMA_VERSION: u32 = 3;

/// The version a `run.json` without the field has.
const UNVERSIONED: u32 = 1;

fn unversioned() -> u32 {
    UNVERSIONED
}

/// What a report of a results directory of schema `version` cannot show, in this cvm's words;
/// empty when it can show everything.
pub fn schema_limitations(version: u32) -> Vec<String> {
    let mut notes = Vec::new();
    if version > SCHEMA_VERSION {
        notes.push(format!(
            "written by a newer cvm (results schema {version}, this cvm knows {SCHEMA_VERSION}): \
             metrics it does not know are shown by name only, and fields it does not know in \
             run.json are not shown"
        ));
    }
    if version < 3 {
        notes.push(format!(
            "written by an older cvm (results schema {version}, current {SCHEMA_VERSION}): it has no \
             isolation figures, and its `container` backend left /proc/sys, /proc/sysrq-trigger \
             and the other default masked paths as the host's (its phase.runtime is without \
             those mounts)"
        ));
    }
    if version < 2 {
        notes.push(format!(
            "written by an older cvm (results schema {version}, current {SCHEMA_VERSION}): it has \
             no memory_vmm, memory_guest_ram, memory_guest_used or memory_daemon, so a VM's memory \
             is QEMU's whole PSS (guest RAM included) and Docker's daemons are not shown; its \
             runc/crun/docker memory_pss counts the foreground runtime or CLI process"
        ));
    }
    notes
}

/// Everything about a run except its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// [`SCHEMA_VERSION`] of the cvm that wrote it (1 when absent).
    #[serde(default = "unversioned")]
    pub schema_version: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_json_without_a_version_is_schema_1_and_its_gaps_are_named() {
        let json = r#"{"run_id":"r","started":"","status":"done",
            "scenario":{"name":"s","description":"","definition":null},
            "runs":1,"warmup":0,"timeout_s":1.0,"environment":{"host":"","kernel":"","os":"",
            "cpu_model":"","ncpu":1,"mem_total":0,"cgroup":"","root":false,"cvm_version":"",
            "git_sha":"","tools":{}},"backends":[]}"#;
        let meta: RunMeta = serde_json::from_str(json).unwrap();
        assert_eq!(meta.schema_version, 1);
        let notes = schema_limitations(meta.schema_version);
        assert_eq!(notes.len(), 2);
        assert!(notes[1].contains("memory_vmm"), "{notes:?}");
        assert!(schema_limitations(2)[0].contains("isolation"));
        assert!(schema_limitations(SCHEMA_VERSION).is_empty());
        assert!(schema_limitations(SCHEMA_VERSION + 1)[0].contains("newer cvm"));
    }
}
