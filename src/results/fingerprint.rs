//! The host fingerprint in `run.json`: the settings that move figures between hosts with the
//! same CPU model and kernel (SMT, frequency scaling, huge pages, memory merging, the kernel's
//! command line and its speculative-execution mitigations, the cgroup layout and mount options,
//! hardware virtualisation). `cvm diff` warns when two runs' fingerprints differ and
//! `cvm report --merge` shows them side by side; each field is empty where the host does not
//! expose it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostFingerprint {
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cpu_count: u32,
    /// `/sys/devices/system/cpu/smt/control` (`on`, `off`, `notsupported`, ...).
    pub smt: String,
    /// cpu0's cpufreq scaling governor; empty without cpufreq (a guest, usually).
    pub governor: String,
    /// `on` / `off` from intel_pstate's `no_turbo` or cpufreq's `boost`; empty when neither.
    pub turbo: String,
    /// The selected transparent-huge-page mode (`always`, `madvise`, `never`).
    pub thp: String,
    /// Kernel same-page merging: `/sys/kernel/mm/ksm/run` (0 off, 1 on, 2 unmerge).
    pub ksm: String,
    /// `/proc/cmdline`.
    pub kernel_cmdline: String,
    /// Per vulnerability, the kernel's mitigation status line.
    pub mitigations: BTreeMap<String, String>,
    /// `v1`, `v2` or `hybrid`.
    pub cgroup_mode: String,
    /// `on` when a cgroup hierarchy is mounted with `favordynmods`, else `off`. Moving a task
    /// between cgroups takes a lock whose writer, without it, waits for an RCU grace period
    /// after an idle gap: the `cgroup_join` phase of a cold or spaced-out launch is that wait.
    pub cgroup_favordynmods: String,
    /// Hardware virtualisation as the host offers it: `/dev/kvm` present or absent, and the
    /// accelerator each VM backend of the run used (set once the backends are prepared).
    pub accelerator: String,
}

impl HostFingerprint {
    /// The fields as (label, value) pairs in display order; mitigations as one line of the
    /// vulnerabilities that are not simply "Not affected".
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let affected: Vec<String> = self
            .mitigations
            .iter()
            .filter(|(_, v)| !v.starts_with("Not affected"))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        vec![
            ("CPU", self.cpu_model.clone()),
            ("CPUs", self.cpu_count.to_string()),
            ("SMT", self.smt.clone()),
            ("governor", self.governor.clone()),
            ("turbo", self.turbo.clone()),
            ("THP", self.thp.clone()),
            ("KSM", self.ksm.clone()),
            ("cgroup mode", self.cgroup_mode.clone()),
            ("cgroup favordynmods", self.cgroup_favordynmods.clone()),
            ("accelerator", self.accelerator.clone()),
            ("kernel command line", self.kernel_cmdline.clone()),
            ("mitigations", affected.join("; ")),
        ]
    }

    /// The labels of the fields in which `self` and `other` differ.
    pub fn differences(&self, other: &HostFingerprint) -> Vec<&'static str> {
        self.fields()
            .into_iter()
            .zip(other.fields())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((label, _), _)| label)
            .collect()
    }
}

/// How busy the host was: the 1-minute load average when the run started and when it ended.
/// Not part of the fingerprint (it changes from minute to minute), but a run on a host whose
/// load exceeds its CPUs measured the other processes as much as the backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    pub start: f64,
    pub end: f64,
}

impl HostLoad {
    pub fn peak(&self) -> f64 {
        self.start.max(self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_fields() {
        let a = HostFingerprint {
            smt: "on".into(),
            thp: "madvise".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        assert!(a.differences(&b).is_empty());
        b.thp = "always".into();
        b.mitigations.insert("mds".into(), "Vulnerable".into());
        assert_eq!(a.differences(&b), ["THP", "mitigations"]);
        // "Not affected" entries are not worth a difference.
        let mut c = a.clone();
        c.mitigations.insert("l1tf".into(), "Not affected".into());
        assert!(a.differences(&c).is_empty());
    }
}
