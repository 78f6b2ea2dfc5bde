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

    /// Ten backends with every headline figure: every chart is drawn at most
    /// [`MAX_WIDTH`](crate::report::charts::layout::MAX_WIDTH) wide, so at a 1280 px window it
    /// shows unscaled and its 12 px text stays 12 px.
    #[test]
    fn every_chart_of_ten_backends_fits_the_page_at_1280_px() {
        let names = [
            ("native", Stack::Native),
            ("container", Stack::Container),
            ("runc", Stack::Container),
            ("crun", Stack::Container),
            ("gvisor", Stack::Container),
            ("docker", Stack::Container),
            ("vm", Stack::Vm),
            ("vm-user", Stack::Vm),
            ("vm-minimal", Stack::Vm),
            ("vm-classic", Stack::Vm),
        ];
        let backends = names
            .iter()
            .enumerate()
            .map(|(i, (n, st))| {
                let k = 1.0 + i as f64 * i as f64;
                let mut m = vec![
                    ("ready_latency", "s", 0.002 * k),
                    ("phase.runtime", "s", 0.001 * k),
                    ("phase.probe", "s", 0.001),
                    ("memory_pss", "B", 1.6e6 * k),
                    ("disk_footprint", "B", 2e6 * k),
                    ("disk.app", "B", 1e6),
                    ("disk.runtime", "B", 1e6 * k),
                    ("http_rps", "1/s", 20000.0 / k),
                    ("http_latency_p50", "s", 1e-4 * k),
                    ("http_latency_p90", "s", 2e-4 * k),
                    ("http_latency_p99", "s", 4e-4 * k),
                    ("http_latency_max", "s", 9e-4 * k),
                ];
                if *n == "docker" {
                    m.push(("memory_daemon", "B", 1.1e8));
                }
                backend(n, *st, &m)
            })
            .collect();
        let s = summary(backends);
        let charts = plan(&s, &[]);
        assert!(charts.len() >= 6, "{}", charts.len());
        for c in &charts {
            let width = super::super::layout::Layout::of(c).width;
            println!("{}: {width} px", c.id);
            assert!(
                width <= super::super::layout::MAX_WIDTH,
                "{}: {width} px",
                c.id
            );
        }
    }
}
