//! Stacked bars (startup phases, disk layers): the bars' data, the panels that keep totals of
//! different magnitude apart, and their drawing.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::layout::{draw_x_labels, draw_y_axis, slot_center, value_label, Frame};
use super::scale::LOG_SPREAD;
use super::surface::{segment_color, DrawResult};
use super::Scale;
use crate::report::format::format_value;

/// Bars made of named segments (phases, disk layers), split into panels with their own axes
/// when totals differ by more than [`LOG_SPREAD`].
#[derive(Debug, Clone, PartialEq)]
pub struct StackedData {
    pub unit: String,
    pub quantity: String,
    /// Segment names, bottom first; the legend and the colours follow this order.
    pub segments: Vec<String>,
    pub panels: Vec<Vec<StackedBar>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StackedBar {
    pub backend: String,
    /// (segment, value), bottom first, zero-valued segments left out.
    pub parts: Vec<(String, f64)>,
}

impl StackedBar {
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|(_, v)| v).sum()
    }
}

/// Groups bars into panels so that within a panel the largest total is at most [`LOG_SPREAD`]
/// times the smallest; panels go from fast/small to slow/large, bars keep the run's order.
pub fn split_panels(bars: Vec<StackedBar>) -> Vec<Vec<StackedBar>> {
    let mut totals: Vec<f64> = bars.iter().map(StackedBar::total).collect();
    totals.sort_by(f64::total_cmp);
    // Panel lower bounds: a new panel starts at the first total too far above the current one.
    let mut bounds: Vec<f64> = Vec::new();
    for t in totals {
        match bounds.last() {
            Some(&lo) if lo <= 0.0 || t <= lo * LOG_SPREAD => {}
            _ => bounds.push(t),
        }
    }
    let mut panels: Vec<Vec<StackedBar>> = vec![Vec::new(); bounds.len().max(1)];
    for bar in bars {
        let t = bar.total();
        let i = bounds.iter().rposition(|&lo| t >= lo).unwrap_or(0);
        panels[i].push(bar);
    }
    panels.retain(|p| !p.is_empty());
    panels
}

/// Where one bar and its segments stand on the canvas: the geometry the drawing uses, so tests
/// can check a bar's height without reading pixels back.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BarGeometry {
    pub(super) backend: String,
    pub(super) x: i32,
    pub(super) half: i32,
    pub(super) y_top: i32,
    pub(super) y_bottom: i32,
    /// (segment, top, bottom), bottom first.
    pub(super) segments: Vec<(String, i32, i32)>,
}

/// A panel's axis: linear from zero to its largest total.
fn panel_scale(d: &StackedData, bars: &[StackedBar]) -> Scale {
    let max = bars.iter().map(StackedBar::total).fold(0.0, f64::max);
    Scale::linear(0.0, max, &d.unit)
}

fn bar_geometry(f: Frame, scale: &Scale, bars: &[StackedBar]) -> Vec<BarGeometry> {
    let slot = (f.x1 - f.x0) / bars.len().max(1) as i32;
    let half = (slot * 3 / 10).min(45);
    bars.iter()
        .enumerate()
        .map(|(i, b)| {
            let mut acc = 0.0;
            let segments: Vec<(String, i32, i32)> = b
                .parts
                .iter()
                .map(|(name, v)| {
                    let (bottom, top) = (f.y(scale, acc), f.y(scale, acc + v));
                    acc += v;
                    (name.clone(), top, bottom)
                })
                .collect();
            BarGeometry {
                backend: b.backend.clone(),
                x: slot_center(f, bars.len(), i),
                half,
                y_top: f.y(scale, acc),
                y_bottom: f.y(scale, 0.0),
                segments,
            }
        })
        .collect()
}

/// Every bar of a stacked chart as drawn (tests).
#[cfg(test)]
pub(super) fn geometry(chart: &super::Chart) -> Vec<BarGeometry> {
    let super::ChartKind::Stacked(d) = &chart.kind else {
        return Vec::new();
    };
    let frames = super::layout::Layout::of(chart).frames();
    frames
        .iter()
        .zip(&d.panels)
        .flat_map(|(f, bars)| bar_geometry(*f, &panel_scale(d, bars), bars))
        .collect()
}

/// The ticks of each panel's axis, in display units (tests).
#[cfg(test)]
pub(super) fn panel_ticks(chart: &super::Chart) -> Vec<Vec<f64>> {
    match &chart.kind {
        super::ChartKind::Stacked(d) => d
            .panels
            .iter()
            .map(|bars| panel_scale(d, bars).ticks())
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn draw_stacked<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    d: &StackedData,
    bars: &[StackedBar],
) -> DrawResult<DB> {
    let scale = panel_scale(d, bars);
    draw_y_axis(root, f, &scale, &d.quantity)?;
    let names: Vec<String> = bars.iter().map(|b| b.backend.clone()).collect();
    draw_x_labels(root, f, &names)?;
    let slot = (f.x1 - f.x0) / bars.len().max(1) as i32;
    for (g, b) in bar_geometry(f, &scale, bars).iter().zip(bars) {
        for (name, top, bottom) in &g.segments {
            let corners = [(g.x - g.half, *top), (g.x + g.half, *bottom)];
            root.draw(&Rectangle::new(corners, segment_color(name).filled()))?;
            root.draw(&Rectangle::new(corners, WHITE.stroke_width(1)))?;
        }
        value_label(
            root,
            &format_value(b.total(), &d.unit),
            (g.x, g.y_top - 4),
            slot - 4,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_keep_similar_totals_together() {
        let bar = |name: &str, v: f64| StackedBar {
            backend: name.into(),
            parts: vec![("x".into(), v)],
        };
        let p = split_panels(vec![
            bar("a", 1.0),
            bar("b", 100.0),
            bar("c", 5.0),
            bar("d", 150.0),
        ]);
        let names: Vec<Vec<&str>> = p
            .iter()
            .map(|p| p.iter().map(|b| b.backend.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "c"], vec!["b", "d"]]);
    }
}
