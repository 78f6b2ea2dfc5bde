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
        caption: "PSS summed over every host process of an instance (runtime, VMM, init, \
                  workload); overhead is the part attributed to the isolation layer. Whiskers: \
                  95% CI of the median."
            .into(),
        kind: ChartKind::Grouped(data),
    })
}
