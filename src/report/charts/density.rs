//! The density chart: memory per instance against the number of instances running.
//!
//! The density scenario records `density_pss_per_instance` once per instance count, with
//! `iteration` = N (instances running); the chart plots, per backend, the median over runs at
//! each N against N. That needs the raw rows: the summary pools all N together.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::layout::{draw_y_axis, Frame, LABEL_SIZE, TICK_SIZE};
use super::scale::spread_is_large;
use super::surface::{text, DrawResult, INK};
use super::{line_color, measured, Chart, ChartKind, Line, LineData, Scale};
use crate::report::format::format_number;
use crate::results::{Phase, RunSummary, SampleRow};
use cvm_proto::metric::Metric;

/// Density series: (metric, legend suffix). Their samples carry N in `iteration`.
pub const DENSITY_METRICS: &[(&str, &str)] =
    &[(Metric::DensityPssPerInstance.name(), "PSS per instance")];

pub fn density_chart(s: &RunSummary, rows: &[SampleRow]) -> Option<Chart> {
    let mut lines: Vec<Line> = Vec::new();
    let mut unit = String::new();
    let several = DENSITY_METRICS.len() > 1;
    for b in measured(s) {
        for (metric, label) in DENSITY_METRICS {
            let mut by_n: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
            for r in rows.iter().filter(|r| {
                r.phase == Phase::Measure
                    && r.backend == b.info.backend
                    && r.metric == *metric
                    && r.value.is_finite()
            }) {
                unit.clone_from(&r.unit);
                by_n.entry(r.iteration).or_default().push(r.value);
            }
            if by_n.is_empty() {
                continue;
            }
            lines.push(Line {
                label: if several {
                    format!("{} {label}", b.info.backend)
                } else {
                    b.info.backend.clone()
                },
                backend: b.info.backend.clone(),
                points: by_n
                    .into_iter()
                    .map(|(n, v)| (f64::from(n), crate::stats::median(&v)))
                    .collect(),
            });
        }
    }
    if lines.is_empty() {
        return None;
    }
    Some(Chart {
        id: "density",
        title: "Density: memory per instance against the number running".into(),
        caption: "PSS of all running instances divided by their number, as instances are added \
                  (median over runs at each N); a flat line means each instance costs the same."
            .into(),
        kind: ChartKind::Lines(LineData {
            log: spread_is_large(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1))),
            unit,
            quantity: "memory per instance".into(),
            x_quantity: "instances running (N)".into(),
            lines,
        }),
    })
}

pub(super) fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    d: &LineData,
) -> DrawResult<DB> {
    let pts = || d.lines.iter().flat_map(|l| l.points.iter().copied());
    let y_max = pts().map(|p| p.1).fold(0.0, f64::max);
    let y_min = pts().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let x_max = pts().map(|p| p.0).fold(1.0, f64::max);
    let scale = if d.log && y_min > 0.0 {
        Scale::log(y_min, y_max, &d.unit)
    } else {
        Scale::linear(0.0, y_max, &d.unit)
    };
    draw_y_axis(root, f, &scale, &d.quantity)?;
    let xs = Scale::linear(0.0, x_max, "");
    let x_px = |x: f64| f.x0 + (xs.frac(x) * f64::from(f.x1 - f.x0)).round() as i32;
    for t in xs.ticks() {
        let x = x_px(t);
        root.draw(&PathElement::new(vec![(x, f.y1), (x, f.y1 + 4)], INK))?;
        text(
            root,
            &format_number(t),
            (x, f.y1 + 7),
            TICK_SIZE,
            &INK,
            (HPos::Center, VPos::Top),
        )?;
    }
    text(
        root,
        &d.x_quantity,
        ((f.x0 + f.x1) / 2, f.y1 + 26),
        LABEL_SIZE,
        &INK,
        (HPos::Center, VPos::Top),
    )?;
    for (i, l) in d.lines.iter().enumerate() {
        let color = line_color(d, i);
        let path: Vec<(i32, i32)> = l
            .points
            .iter()
            .map(|&(x, y)| (x_px(x), f.y(&scale, y)))
            .collect();
        root.draw(&PathElement::new(path.clone(), color.stroke_width(2)))?;
        for p in path {
            root.draw(&Circle::new(p, 4, color.filled()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::Stack;

    #[test]
    fn density_lines_take_n_from_the_iteration_and_the_median_over_runs() {
        let s = summary(vec![backend(
            "container",
            Stack::Container,
            &[("density_pss_per_instance", "B", 3e6)],
        )]);
        let row = |n: u32, v: f64, phase: Phase| SampleRow {
            run_id: "r".into(),
            scenario: "density".into(),
            backend: "container".into(),
            iteration: n,
            phase,
            metric: "density_pss_per_instance".into(),
            value: v,
            unit: "B".into(),
            host: String::new(),
            kernel: String::new(),
            cpu_model: String::new(),
            ncpu: 2,
            mem_total: 0,
            accel: String::new(),
            qemu_version: String::new(),
            cvm_version: String::new(),
            git_sha: String::new(),
            config: String::new(),
            note: String::new(),
        };
        let rows = vec![
            row(2, 4e6, Phase::Measure),
            row(1, 5e6, Phase::Measure),
            row(2, 6e6, Phase::Measure),
            row(2, 9e9, Phase::Warmup),
        ];
        let ChartKind::Lines(d) = density_chart(&s, &rows).unwrap().kind else {
            unreachable!()
        };
        assert_eq!(d.lines.len(), 1);
        assert_eq!(d.lines[0].label, "container");
        assert_eq!(d.lines[0].points, [(1.0, 5e6), (2.0, 5e6)]);
        assert!(density_chart(&s, &[]).is_none());
    }
}
