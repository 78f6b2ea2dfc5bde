//! Grouped bars (memory, HTTP throughput and latency): several metrics side by side per
//! backend, each with its CI whisker, and their drawing.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::layout::{draw_x_labels, draw_y_axis, slot_center, value_label, whisker, Frame};
use super::scale::spread_is_large;
use super::surface::{backend_color, metric_color, DrawResult};
use super::{measured, Scale};
use crate::report::format::format_value;
use crate::results::{BackendSummary, RunSummary};

/// Several metrics side by side per backend, each a bar with its CI whisker.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedData {
    pub unit: String,
    pub quantity: String,
    pub log: bool,
    /// Legend labels, one per bar of a group.
    pub metrics: Vec<String>,
    pub groups: Vec<BarGroup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    pub backend: String,
    /// One per entry of `metrics`; `None` where the backend did not record it.
    pub bars: Vec<Option<BarValue>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarValue {
    pub median: f64,
    pub lower: f64,
    pub upper: f64,
}

fn bar_value(b: &BackendSummary, metric: &str) -> Option<BarValue> {
    let m = b.metrics.get(metric)?;
    Some(BarValue {
        median: m.stats.median,
        lower: m.stats.median_ci.lower,
        upper: m.stats.median_ci.upper,
    })
}

/// Bars for `metrics` (those any backend recorded), one group per backend that has any.
pub(super) fn grouped(
    s: &RunSummary,
    metrics: &[&str],
    label: impl Fn(&str) -> String,
) -> GroupedData {
    let present: Vec<&str> = metrics
        .iter()
        .copied()
        .filter(|m| measured(s).any(|b| b.metrics.contains_key(*m)))
        .collect();
    let groups: Vec<BarGroup> = measured(s)
        .map(|b| BarGroup {
            backend: b.info.backend.clone(),
            bars: present.iter().map(|m| bar_value(b, m)).collect(),
        })
        .filter(|g| g.bars.iter().any(Option::is_some))
        .collect();
    let log = spread_is_large(
        groups
            .iter()
            .flat_map(|g| g.bars.iter().flatten().map(|v| v.median)),
    );
    let unit = present
        .first()
        .and_then(|m| measured(s).find_map(|b| b.metrics.get(*m)))
        .map_or_else(String::new, |m| m.unit.clone());
    GroupedData {
        unit,
        quantity: String::new(),
        log,
        metrics: present.iter().map(|m| label(m)).collect(),
        groups,
    }
}

pub(super) fn draw_grouped<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    d: &GroupedData,
) -> DrawResult<DB> {
    let values = d.groups.iter().flat_map(|g| {
        g.bars
            .iter()
            .flatten()
            .flat_map(|v| [v.median, v.lower, v.upper])
    });
    let scale = Scale::fitting(values, d.log, &d.unit);
    draw_y_axis(root, f, &scale, &d.quantity)?;
    let names: Vec<String> = d.groups.iter().map(|g| g.backend.clone()).collect();
    draw_x_labels(root, f, &names)?;
    let n = d.groups.len().max(1) as i32;
    let k = d.metrics.len().max(1) as i32;
    let slot = (f.x1 - f.x0) / n;
    let bar_w = (slot * 8 / 10 / k).min(70);
    let baseline = if scale.log { f.y1 } else { f.y(&scale, 0.0) };
    for (i, g) in d.groups.iter().enumerate() {
        let cx = slot_center(f, d.groups.len(), i);
        let x_start = cx - bar_w * k / 2;
        for (j, v) in g.bars.iter().enumerate() {
            let Some(v) = v else { continue };
            let x0 = x_start + bar_w * j as i32;
            let color = if k == 1 {
                backend_color(&g.backend)
            } else {
                metric_color(j)
            };
            let y = f.y(&scale, v.median);
            root.draw(&Rectangle::new(
                [(x0 + 2, y.min(baseline)), (x0 + bar_w - 2, y.max(baseline))],
                color.filled(),
            ))?;
            let (yl, yh) = (f.y(&scale, v.lower), f.y(&scale, v.upper));
            whisker(root, x0 + bar_w / 2, (yl, yh), (bar_w / 6).max(2))?;
            value_label(
                root,
                &format_value(v.median, &d.unit),
                (x0 + bar_w / 2, yh.min(y) - 3),
                bar_w + 2,
            )?;
        }
    }
    Ok(())
}
