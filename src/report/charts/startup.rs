//! The startup chart: every measured time to ready as a dot, with the median and its CI.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::layout::{draw_x_labels, draw_y_axis, slot_center, value_label, whisker, Frame};
use super::scale::spread_is_large;
use super::surface::{backend_color, DrawResult, INK};
use super::{measured, Chart, ChartKind, Scale};
use crate::report::format::format_value;
use crate::results::{Phase, RunSummary, SampleRow};
use cvm_proto::metric::Metric;

/// Every sample of one metric per backend, with the median and its confidence interval.
#[derive(Debug, Clone, PartialEq)]
pub struct DotData {
    pub unit: String,
    pub quantity: String,
    pub log: bool,
    pub series: Vec<DotSeries>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DotSeries {
    pub backend: String,
    pub values: Vec<f64>,
    pub median: f64,
    pub ci: (f64, f64),
}

/// Startup latency: every measured sample of `ready_latency` as a dot, the median and its CI.
pub fn startup_chart(s: &RunSummary, rows: &[SampleRow]) -> Option<Chart> {
    const METRIC: &str = Metric::ReadyLatency.name();
    let series: Vec<DotSeries> = measured(s)
        .filter_map(|b| {
            let m = b.metrics.get(METRIC)?;
            let values = rows
                .iter()
                .filter(|r| {
                    r.phase == Phase::Measure
                        && r.metric == METRIC
                        && r.backend == b.info.backend
                        && r.value.is_finite()
                })
                .map(|r| r.value)
                .collect();
            Some(DotSeries {
                backend: b.info.backend.clone(),
                values,
                median: m.stats.median,
                ci: (m.stats.median_ci.lower, m.stats.median_ci.upper),
            })
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let log = spread_is_large(series.iter().map(|d| d.median));
    Some(Chart {
        id: "startup",
        title: "Startup latency: launch to ready".into(),
        caption: format!(
            "Every measured run as a dot; the black bar is the median, the whisker its \
             confidence interval ({}).",
            crate::report::format::medians_levels(s, |m| m == METRIC).words()
        ),
        kind: ChartKind::Dots(DotData {
            unit: "s".into(),
            quantity: "time to ready".into(),
            log,
            series,
        }),
    })
}

pub(super) fn draw_dots<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    d: &DotData,
) -> DrawResult<DB> {
    let all = d
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied().chain([s.median, s.ci.0, s.ci.1]));
    let scale = Scale::fitting(all, d.log, &d.unit);
    draw_y_axis(root, f, &scale, &d.quantity)?;
    let names: Vec<String> = d.series.iter().map(|s| s.backend.clone()).collect();
    draw_x_labels(root, f, &names)?;
    let slot = (f.x1 - f.x0) / d.series.len().max(1) as i32;
    for (i, s) in d.series.iter().enumerate() {
        let cx = slot_center(f, d.series.len(), i);
        let color = backend_color(&s.backend);
        let jitter = (f64::from(slot) * 0.2).min(28.0);
        for (k, v) in s.values.iter().enumerate() {
            // Deterministic jitter (golden-ratio sequence) so re-rendering gives the same image.
            let off = ((k as f64 * 0.618_034).fract() - 0.5) * 2.0 * jitter;
            root.draw(&Circle::new(
                (cx + off as i32, f.y(&scale, *v)),
                3,
                color.mix(0.55).filled(),
            ))?;
        }
        let half = (slot / 4).min(40);
        whisker(
            root,
            cx,
            (f.y(&scale, s.ci.0), f.y(&scale, s.ci.1)),
            half / 2,
        )?;
        let ym = f.y(&scale, s.median);
        root.draw(&Rectangle::new(
            [(cx - half, ym - 1), (cx + half, ym + 2)],
            INK.filled(),
        ))?;
        let top = s.values.iter().copied().fold(s.ci.1, f64::max);
        value_label(
            root,
            &format_value(s.median, &d.unit),
            (cx, f.y(&scale, top) - 5),
            slot - 4,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::{Availability, Stack};

    #[test]
    fn unavailable_backends_are_left_out() {
        let mut off = backend("crun", Stack::Container, &[("ready_latency", "s", 0.01)]);
        off.info.availability = Availability::unavailable("hybrid cgroups", "use v2");
        let s = summary(vec![
            backend("native", Stack::Native, &[("ready_latency", "s", 0.002)]),
            off,
        ]);
        let Some(Chart {
            kind: ChartKind::Dots(d),
            ..
        }) = startup_chart(&s, &[])
        else {
            panic!("no startup chart")
        };
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[0].backend, "native");
    }

    #[test]
    fn log_axis_when_medians_differ_by_orders_of_magnitude() {
        let fast = backend("native", Stack::Native, &[("ready_latency", "s", 0.002)]);
        let slow = backend("vm", Stack::Vm, &[("ready_latency", "s", 1.9)]);
        let near = backend("runc", Stack::Container, &[("ready_latency", "s", 0.02)]);
        let is_log = |s: RunSummary| match startup_chart(&s, &[]).unwrap().kind {
            ChartKind::Dots(d) => d.log,
            _ => unreachable!(),
        };
        assert!(is_log(summary(vec![fast.clone(), slow])));
        assert!(!is_log(summary(vec![fast, near])));
    }
}
