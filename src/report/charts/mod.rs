//! The report's charts, drawn with plotters into PNG (for READMEs and slides) and SVG (inlined in
//! `index.html`) from one drawing routine, so both always agree.
//!
//! Two halves, kept apart as criterion keeps them: [`plan`] decides *which numbers go into which
//! chart* (a pure function of the summary and the raw samples, unit-tested), and the `draw_*`
//! functions only turn a prepared [`Chart`] into pixels. A chart whose metrics no backend
//! recorded is not planned at all, so the report never shows an empty frame.
//!
//! Axes, ticks and labels are laid out here rather than by plotters' mesh: the charts are
//! categorical (one slot per backend), need log axes whose ticks read "1, 10, 100 ms", and must
//! never overlap labels, which is easier to guarantee when the canvas is sized from measured
//! text widths and the number of backends.

mod density;
mod disk;
mod draw;
mod grouped;
mod http_latency;
mod http_rps;
mod isolation;
mod layout;
mod memory;
mod phases;
mod plan;
mod scale;
mod stacked;
mod startup;
mod surface;
mod sweep;
#[cfg(test)]
mod testdata;
mod verdict;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use crate::results::{Availability, BackendSummary, RunSummary};

pub use density::{density_chart, DENSITY_METRICS};
pub use disk::disk_chart;
pub use grouped::{BarGroup, BarValue, GroupedData};
pub use http_latency::{http_latency_chart, HTTP_LATENCY_METRICS};
pub use http_rps::http_rps_chart;
pub use isolation::{isolation_chart, ISOLATION_CHART};
pub use memory::{memory_chart, MEMORY_METRICS};
pub use phases::phase_chart;
pub use plan::plan;
pub use scale::{Scale, LOG_SPREAD};
pub use stacked::{split_panels, StackedBar, StackedData};
pub use startup::{startup_chart, DotData, DotSeries};
pub use surface::{backend_color, metric_color, segment_color};
pub(crate) use surface::{render, text, text_width, DrawResult, Drawing, INK};
pub use sweep::{knee, steps as sweep_steps, sweep_chart, Step};
pub use verdict::{
    plan_verdict, questions, render_verdict, Question, Verdict, VerdictRow, SUMMARY_IMAGE,
};

use layout::Layout;

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
fn measured(s: &RunSummary) -> impl Iterator<Item = &BackendSummary> {
    s.backends
        .iter()
        .filter(|b| matches!(b.info.availability, Availability::Available) && !b.metrics.is_empty())
}

/// Lines over a numeric x axis (density: memory per instance against N).
#[derive(Debug, Clone, PartialEq)]
pub struct LineData {
    pub unit: String,
    pub quantity: String,
    pub log: bool,
    pub x_quantity: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub backend: String,
    /// (x, y) sorted by x.
    pub points: Vec<(f64, f64)>,
}

fn line_color(d: &LineData, i: usize) -> RGBColor {
    // One backend with several series: distinguish by palette; otherwise by backend.
    let backends: BTreeSet<&str> = d.lines.iter().map(|l| l.backend.as_str()).collect();
    if backends.len() == d.lines.len() {
        backend_color(&d.lines[i].backend)
    } else {
        metric_color(i)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot register the embedded font")]
    Font,
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {chart}: {message}")]
    Draw { chart: String, message: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A chart rendered to files, with its SVG for inlining.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: &'static str,
    pub title: String,
    pub caption: String,
    pub svg: String,
}

/// Draws every planned chart into `dir` (created if needed).
pub fn render_all(charts: &[Chart], dir: &Path) -> Result<Vec<Rendered>, ChartError> {
    std::fs::create_dir_all(dir).map_err(|source| ChartError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    charts
        .iter()
        .map(|c| {
            let svg = render(&Layout::of(c), dir, c.id)?;
            Ok(Rendered {
                id: c.id,
                title: c.title.clone(),
                caption: c.caption.clone(),
                svg,
            })
        })
        .collect()
}
