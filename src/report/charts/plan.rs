//! Which charts a run gets: one per kind of figure that any backend recorded, in the order the
//! report shows them.

use crate::results::{Availability, BackendSummary, RunSummary, SampleRow};

use super::{
    density_chart, disk_chart, http_latency_chart, http_rps_chart, memory_chart, phase_chart,
    startup_chart, sweep_chart, DotData, GroupedData, LineData, StackedData,
};

/// A planned chart: its stable id (file name and HTML anchor), title, caption and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub id: &'static str,
    pub title: String,
    pub caption: String,
    pub kind: ChartKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChartKind {
    Dots(DotData),
    Stacked(StackedData),
    Grouped(GroupedData),
    Lines(LineData),
}

/// Backends that ran and recorded something, in the run's order.
pub(super) fn measured(s: &RunSummary) -> impl Iterator<Item = &BackendSummary> {
    s.backends
        .iter()
        .filter(|b| matches!(b.info.availability, Availability::Available) && !b.metrics.is_empty())
}

/// Every chart the data supports, in the order the report shows them.
pub fn plan(s: &RunSummary, rows: &[SampleRow]) -> Vec<Chart> {
    [
        startup_chart(s, rows),
        phase_chart(s),
        memory_chart(s),
        disk_chart(s),
        http_rps_chart(s),
        http_latency_chart(s),
        sweep_chart(s),
        density_chart(s, rows),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::Stack;

    #[test]
    fn absent_metrics_plan_no_chart() {
        let s = summary(vec![backend(
            "native",
            Stack::Native,
            &[("ready_latency", "s", 0.002)],
        )]);
        let ids: Vec<_> = plan(&s, &[]).iter().map(|c| c.id).collect();
        assert_eq!(ids, vec!["startup"]);
        assert!(plan(&summary(vec![]), &[]).is_empty());
    }
}
