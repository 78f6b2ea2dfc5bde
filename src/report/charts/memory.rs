//! The memory chart: PSS per instance, its overhead over native, and the other memory figures.

use super::grouped::grouped;
use super::{Chart, ChartKind};
use crate::results::RunSummary;
use cvm_proto::metric::Metric;

/// Memory metrics shown in the memory chart, where recorded.
pub const MEMORY_METRICS: &[&str] = &[
    Metric::MemoryPss.name(),
    Metric::MemoryPssPeak.name(),
    Metric::MemoryOverhead.name(),
    Metric::MemoryCgroup.name(),
    Metric::MemoryHostDelta.name(),
    Metric::MemoryVmm.name(),
    Metric::MemoryGuestRam.name(),
    Metric::MemoryGuestUsed.name(),
    Metric::MemoryDaemon.name(),
];

/// Memory: PSS of every host process of an instance, the overhead over native, and where
/// recorded the cgroup's figure and the density method's host delta.
pub fn memory_chart(s: &RunSummary) -> Option<Chart> {
    let mut data = grouped(s, MEMORY_METRICS, |m| {
        match Metric::from_name(m) {
            Some(Metric::MemoryPss) => "PSS (all host processes)",
            Some(Metric::MemoryPssPeak) => "PSS under load",
            Some(Metric::MemoryOverhead) => "overhead",
            Some(Metric::MemoryCgroup) => "cgroup",
            Some(Metric::MemoryHostDelta) => "host MemAvailable drop",
            Some(Metric::MemoryVmm) => "VMM (QEMU without guest RAM)",
            Some(Metric::MemoryGuestRam) => "guest RAM backing",
            Some(Metric::MemoryGuestUsed) => "guest's own use",
            Some(Metric::MemoryDaemon) => "shared daemons (per host)",
            _ => m,
        }
        .to_string()
    });
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "memory".into();
    Some(Chart {
        id: "memory",
        title: "Memory per instance (medians)".into(),
        caption: format!(
            "PSS summed over the host processes that stay resident for an instance (VMM, \
                  shim, init, workload; not an exited runtime or a client); overhead is the part \
                  attributed to the isolation layer; a VM's PSS splits into the VMM and its \
                  guest RAM; shared daemons are one figure per host, not per instance. \
                  Whiskers: the median's interval ({}; overhead's: of the difference from \
                  native's median).",
            crate::report::format::medians_levels(s, |m| MEMORY_METRICS.contains(&m)).words()
        ),
        kind: ChartKind::Grouped(data),
    })
}
