//! `run.json`: what a reader needs to reproduce or judge the numbers — the host, every version,
//! the scenario as run, and for each backend whether it ran and how it was configured.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BackendInfo, ResultsError};

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

/// The version of the results format (`run.json`, `samples.csv`, the metrics in them) this cvm
/// writes. History:
/// - 1: no `schema_version` field (every directory written before it was added).
/// - 2: VM memory split (`memory_vmm`, `memory_guest_ram`, `memory_guest_used`), Docker's
///   daemons apart (`memory_daemon`), OCI runtimes detached (their exited runtime no longer in
///   `memory_pss`).
/// - 3: `memory_overhead` is no longer a sample: the summary derives it from `memory_pss`
///   against native's median over the whole run; the interleaved order gives native a random
///   place in each round (it ran first in every round before).
///   Also in 3: the launch's cgroup state set before every launch (`cgroup_state`); runc's, crun's,
///   gVisor's and Docker's own cgroup joins traced (`phase.cgroup_join`, out of their
///   `phase.runtime`); `ready_probe_delay` never negative (`ready_probe_skew` the signed one);
///   open-loop sends on a sub-millisecond clock, unanswered requests counted at the deadline
///   (`http_unanswered`, `rate.<N>.unanswered`) and in the percentiles.
///   Also in 3: isolation figures (`noisy_*`, `audit_*`, `contain_*`, their evidence in each
///   sample's note); cvm's own `container` backend masks and makes read-only the runtime spec's
///   default /proc and /sys paths (its `phase.runtime` includes those mounts); `[resources] pids`.
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
    if version < 2 {
        notes.push(format!(
            "written by an older cvm (results schema {version}, current {SCHEMA_VERSION}): it has \
             no memory_vmm, memory_guest_ram, memory_guest_used or memory_daemon, so a VM's memory \
             is QEMU's whole PSS (guest RAM included) and Docker's daemons are not shown; its \
             runc/crun/docker memory_pss counts the foreground runtime or CLI process"
        ));
    }
    if version < 3 {
        notes.push(format!(
            "written by an older cvm (results schema {version}, current {SCHEMA_VERSION}): it \
             stored memory_overhead samples taken against native's median so far in the run (the \
             first round's against a single value); this report derives memory_overhead from \
             memory_pss against native's median over the whole run instead, so those samples are \
             not shown. In an interleaved run native ran first in every round, always right after \
             the previous round's last backend. Each launch's cgroup join found the host's cgroup lock as the run before left it, so \
             cgroup_join (and ready_latency) moved with the interleaved order; runc, crun, \
             gvisor and docker have no cgroup_join (their join is inside runtime, so every \
             runtime box holds its join); ready_probe_delay may be negative (it was the signed \
             skew); open-loop latencies include up to 1 ms of the client's own timer and leave \
             out the requests still unanswered at the deadline. Its \
             disk figures count binaries as built (cvm's own with their line tables, a Docker \
             CLI with its debug info), not as installed; a VM's disk.guest_os holds the kernel \
             as booted (vm: the extracted vmlinux, no disk_cache) and the whole initramfs, app \
             and libraries included, so its disk.app and disk.libs are absent; a VM has no \
             memory_vmm_base, memory_vmm_tcg or memory_vmm_boot, and its stack diagram no box \
             for the guest RAM the guest holds free, so its boxes fall short of its PSS; \
             container's memory_pss counts no supervisor (no cvm-runtime waiter) while \
             docker's counts its shim, and there is no memory_supervisor; it has no isolation \
             figures, and its `container` backend left /proc/sys, /proc/sysrq-trigger and the \
             other default masked paths as the host's (its phase.runtime is without those mounts)"
        ));
    }
    notes
}

/// Where a run stands: `running` while it measures (a `run.json` left so was cut off), then
/// how it ended. A merged report of hosts that ended differently is `mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    /// Every backend asked for was measured.
    Done,
    /// A backend failed to prepare, or some runs failed (their samples say why).
    Failed,
    /// Stopped by SIGINT or SIGTERM; what was measured is kept.
    Interrupted,
    /// Several runs merged into one report ended differently.
    Mixed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Mixed => "mixed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub status: RunStatus,
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
    /// The cgroup migration lock's state at every launch (`warm` or `cold`, see `cvm compare
    /// --cgroup-state`); absent before schema 3, whose joins found the lock as the previous
    /// run left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_state: Option<String>,
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
        assert!(notes[0].contains("memory_vmm"), "{notes:?}");
        assert!(notes[1].contains("memory_overhead"), "{notes:?}");
        assert!(notes[1].contains("as installed"), "{notes:?}");
        assert!(notes[1].contains("isolation"), "{notes:?}");
        assert_eq!(schema_limitations(2).len(), 1);
        assert!(schema_limitations(SCHEMA_VERSION).is_empty());
        assert!(schema_limitations(SCHEMA_VERSION + 1)[0].contains("newer cvm"));
    }
}
