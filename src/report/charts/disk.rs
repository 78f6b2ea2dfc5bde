//! The disk chart: bytes on disk per layer of each backend's stack.

use std::collections::BTreeSet;

use super::{measured, split_panels, Chart, ChartKind, StackedBar, StackedData};
use cvm_proto::metric::Metric;
use cvm_proto::metric::{Layer, DISK_PREFIX};

use crate::results::RunSummary;

/// Disk footprint stacked by layer (`disk.<layer>` medians); `disk_footprint` alone when a
/// backend recorded no layers.
pub fn disk_chart(s: &RunSummary) -> Option<Chart> {
    let layers: BTreeSet<&str> = measured(s)
        .flat_map(|b| b.metrics.keys())
        .filter_map(|m| m.strip_prefix(DISK_PREFIX))
        .collect();
    // Bottom of the stack first, the order they are stacked in; unknown layers last.
    let mut segments: Vec<&str> = layers.into_iter().collect();
    segments.sort_by_key(|l| Layer::from_name(l).map_or(Layer::ALL.len(), |l| l as usize));
    let mut segments: Vec<String> = segments.into_iter().map(str::to_string).collect();
    let mut total_used = false;
    let bars: Vec<StackedBar> = measured(s)
        .filter_map(|b| {
            let mut parts: Vec<(String, f64)> = segments
                .iter()
                .filter_map(|l| {
                    let m = b.metrics.get(&format!("{DISK_PREFIX}{l}"))?;
                    (m.stats.median > 0.0).then(|| (l.clone(), m.stats.median))
                })
                .collect();
            if parts.is_empty() {
                let m = b.metrics.get(Metric::DiskFootprint.name())?;
                total_used = true;
                parts.push(("total".into(), m.stats.median));
            }
            Some(StackedBar {
                backend: b.info.backend.clone(),
                parts,
            })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    if total_used {
        segments.push("total".into());
    }
    Some(Chart {
        id: "disk",
        title: "Disk footprint by layer".into(),
        caption: "Bytes on disk per layer of each backend's stack, hard links counted once.".into(),
        kind: ChartKind::Stacked(StackedData {
            unit: "B".into(),
            quantity: "disk".into(),
            segments,
            panels: split_panels(bars),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::Stack;

    #[test]
    fn disk_layers_stack_bottom_up_and_fall_back_to_the_total() {
        let s = summary(vec![
            backend(
                "vm",
                Stack::Vm,
                &[
                    ("disk.app", "B", 1e6),
                    ("disk.guest_os", "B", 6e7),
                    ("disk.hypervisor", "B", 3e7),
                ],
            ),
            backend("docker", Stack::Container, &[("disk_footprint", "B", 4e6)]),
        ]);
        let ChartKind::Stacked(d) = disk_chart(&s).unwrap().kind else {
            unreachable!()
        };
        assert_eq!(d.segments, ["hypervisor", "guest_os", "app", "total"]);
        let all: Vec<&StackedBar> = d.panels.iter().flatten().collect();
        assert_eq!(all.len(), 2);
    }
}
