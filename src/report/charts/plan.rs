//! Which charts a run gets: one per kind of figure that any backend recorded, in the order the
//! report shows them.

use crate::results::{RunSummary, SampleRow};

use super::{
    density_chart, disk_chart, http_latency_chart, http_rps_chart, memory_chart, phase_chart,
    startup_chart, sweep_chart, Chart,
};

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
