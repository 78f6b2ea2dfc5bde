//! The startup phases chart: the medians of `phase.*`, stacked in the order they happen.

use std::collections::BTreeSet;

use super::{measured, split_panels, Chart, ChartKind, StackedBar, StackedData};
use crate::results::{phase_rank, RunSummary};
use cvm_proto::metric::PHASE_PREFIX;

/// Known phases in the order they happen, then any others alphabetically.
fn ordered_phases(names: &BTreeSet<&str>) -> Vec<String> {
    let mut out: Vec<&str> = names.iter().copied().collect();
    out.sort_by_key(|n| phase_rank(n));
    out.into_iter().map(str::to_string).collect()
}

/// Startup phases: the medians of `phase.*`, stacked in the order they happen.
pub fn phase_chart(s: &RunSummary) -> Option<Chart> {
    let names: BTreeSet<&str> = measured(s)
        .flat_map(|b| b.metrics.keys())
        .filter_map(|m| m.strip_prefix(PHASE_PREFIX))
        .collect();
    if names.is_empty() {
        return None;
    }
    let segments = ordered_phases(&names);
    let bars: Vec<StackedBar> = measured(s)
        .filter_map(|b| {
            let parts: Vec<(String, f64)> = segments
                .iter()
                .filter_map(|p| {
                    let m = b.metrics.get(&format!("{PHASE_PREFIX}{p}"))?;
                    (m.stats.median > 0.0).then(|| (p.clone(), m.stats.median))
                })
                .collect();
            (!parts.is_empty()).then(|| StackedBar {
                backend: b.info.backend.clone(),
                parts,
            })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    Some(Chart {
        id: "phases",
        title: "Startup phases (medians)".into(),
        caption: "Each phase runs from the previous phase point to its own, so the segments add \
                  up to roughly the median time to ready. Backends that differ by more than 20× \
                  get separate panels with their own axis."
            .into(),
        kind: ChartKind::Stacked(StackedData {
            unit: "s".into(),
            quantity: "time".into(),
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
    fn phases_stack_in_order_and_split_into_panels() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[
                    ("phase.probe", "s", 0.001),
                    ("phase.cgroup_join", "s", 0.001),
                ],
            ),
            backend(
                "vm",
                Stack::Vm,
                &[
                    ("phase.guest_init", "s", 1.0),
                    ("phase.kernel", "s", 0.5),
                    ("phase.vmm_start", "s", 0.01),
                    ("phase.zzz", "s", 0.01),
                ],
            ),
        ]);
        let ChartKind::Stacked(d) = phase_chart(&s).unwrap().kind else {
            unreachable!()
        };
        assert_eq!(
            d.segments,
            [
                "cgroup_join",
                "vmm_start",
                "kernel",
                "guest_init",
                "probe",
                "zzz"
            ]
        );
        assert_eq!(d.panels.len(), 2);
        assert_eq!(d.panels[0][0].backend, "native");
        let vm = &d.panels[1][0];
        let order: Vec<&str> = vm.parts.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(order, ["vmm_start", "kernel", "guest_init", "zzz"]);
    }
}
