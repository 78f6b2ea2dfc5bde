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
//!
//! Text is rendered with DejaVu Sans embedded in the binary (plotters' `ab_glyph` feature), so
//! PNGs look the same on a host with no fonts installed and nothing links fontconfig.
//!
//! Density: the density scenario records `density_pss_per_instance` once per instance count,
//! with `iteration` = N (instances running); the density chart plots, per backend, the median
//! over runs at each N against N. That needs the raw rows: the summary pools all N together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::results::{Availability, BackendSummary, Phase, RunSummary, SampleRow};

/// DejaVu Sans from Debian's fonts-dejavu-core (licence beside it in `assets/fonts/`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family every text element asks for; the embedded font is registered under it.
pub(crate) const FONT: &str = "sans-serif";
/// When the largest median is this many times the smallest, a linear axis would flatten the
/// fast backends to nothing (milliseconds for containers, seconds for emulated VMs): use a log
/// axis, or for stacked bars (which cannot be stacked on a log axis) separate panels.
pub const LOG_SPREAD: f64 = 20.0;

/// Startup phases in the order they happen (unknown phases follow alphabetically).
pub use crate::results::PHASE_ORDER;
/// Disk layers from the bottom of the stack to the top, the order they are stacked in.
pub const DISK_LAYERS: &[&str] = &["hypervisor", "runtime", "guest_os", "libs", "app"];
/// Memory metrics shown in the memory chart, where recorded.
pub const MEMORY_METRICS: &[&str] = &[
    "memory_pss",
    "memory_pss_peak",
    "memory_overhead",
    "memory_cgroup",
    "memory_host_delta",
];
pub const HTTP_LATENCY_METRICS: &[&str] = &[
    "http_latency_p50",
    "http_latency_p90",
    "http_latency_p99",
    "http_latency_max",
];

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

/// Registers the embedded font once per process; plotters' `ab_glyph` backend has no other
/// source of glyphs.
pub(crate) fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

// ---------------------------------------------------------------------------------------------
// Data preparation: which numbers go in which chart.
// ---------------------------------------------------------------------------------------------

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

/// Backends that ran and recorded something, in the run's order.
fn measured(s: &RunSummary) -> impl Iterator<Item = &BackendSummary> {
    s.backends
        .iter()
        .filter(|b| matches!(b.info.availability, Availability::Available) && !b.metrics.is_empty())
}

fn spread_is_large(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if v <= 0.0 || !v.is_finite() {
            // A log axis cannot show zero or negative values.
            return false;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    lo.is_finite() && hi / lo > LOG_SPREAD
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
        density_chart(s, rows),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Startup latency: every measured sample of `ready_latency` as a dot, the median and its CI.
pub fn startup_chart(s: &RunSummary, rows: &[SampleRow]) -> Option<Chart> {
    const METRIC: &str = "ready_latency";
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
        caption: "Every measured run as a dot; the black bar is the median, the whisker its 95% \
                  bootstrap confidence interval."
            .into(),
        kind: ChartKind::Dots(DotData {
            unit: "s".into(),
            quantity: "time to ready".into(),
            log,
            series,
        }),
    })
}

fn ordered_phases(names: &BTreeSet<&str>) -> Vec<String> {
    let mut out: Vec<String> = PHASE_ORDER
        .iter()
        .filter(|p| names.contains(*p))
        .map(|p| p.to_string())
        .collect();
    out.extend(
        names
            .iter()
            .filter(|n| !PHASE_ORDER.contains(n))
            .map(|n| n.to_string()),
    );
    out
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

/// Startup phases: the medians of `phase.*`, stacked in the order they happen.
pub fn phase_chart(s: &RunSummary) -> Option<Chart> {
    let names: BTreeSet<&str> = measured(s)
        .flat_map(|b| b.metrics.keys())
        .filter_map(|m| m.strip_prefix("phase."))
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
                    let m = b.metrics.get(&format!("phase.{p}"))?;
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

fn bar_value(b: &BackendSummary, metric: &str) -> Option<BarValue> {
    let m = b.metrics.get(metric)?;
    Some(BarValue {
        median: m.stats.median,
        lower: m.stats.median_ci.lower,
        upper: m.stats.median_ci.upper,
    })
}

/// Bars for `metrics` (those any backend recorded), one group per backend that has any.
fn grouped(s: &RunSummary, metrics: &[&str], label: impl Fn(&str) -> String) -> GroupedData {
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

/// Memory: PSS of every host process of an instance, the overhead over native, and where
/// recorded the cgroup's figure and the density method's host delta.
pub fn memory_chart(s: &RunSummary) -> Option<Chart> {
    let mut data = grouped(s, MEMORY_METRICS, |m| {
        match m {
            "memory_pss" => "PSS (all host processes)",
            "memory_pss_peak" => "PSS under load",
            "memory_overhead" => "overhead",
            "memory_cgroup" => "cgroup",
            "memory_host_delta" => "host MemAvailable drop",
            other => other,
        }
        .to_string()
    });
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "memory".into();
    Some(Chart {
        id: "memory",
        title: "Memory per instance (medians)".into(),
        caption: "PSS summed over every host process of an instance (runtime, VMM, init, \
                  workload); overhead is the part attributed to the isolation layer. Whiskers: \
                  95% CI of the median."
            .into(),
        kind: ChartKind::Grouped(data),
    })
}

/// Disk footprint stacked by layer (`disk.<layer>` medians); `disk_footprint` alone when a
/// backend recorded no layers.
pub fn disk_chart(s: &RunSummary) -> Option<Chart> {
    let layers: BTreeSet<&str> = measured(s)
        .flat_map(|b| b.metrics.keys())
        .filter_map(|m| m.strip_prefix("disk."))
        .collect();
    let mut segments: Vec<String> = DISK_LAYERS
        .iter()
        .filter(|l| layers.contains(*l))
        .map(|l| l.to_string())
        .collect();
    segments.extend(
        layers
            .iter()
            .filter(|l| !DISK_LAYERS.contains(l))
            .map(|l| l.to_string()),
    );
    let mut total_used = false;
    let bars: Vec<StackedBar> = measured(s)
        .filter_map(|b| {
            let mut parts: Vec<(String, f64)> = segments
                .iter()
                .filter_map(|l| {
                    let m = b.metrics.get(&format!("disk.{l}"))?;
                    (m.stats.median > 0.0).then(|| (l.clone(), m.stats.median))
                })
                .collect();
            if parts.is_empty() {
                let m = b.metrics.get("disk_footprint")?;
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

pub fn http_rps_chart(s: &RunSummary) -> Option<Chart> {
    let mut data = grouped(s, &["http_rps"], |_| "requests per second".into());
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "requests per second".into();
    // Throughput is compared as a fraction of the best: always linear, from zero.
    data.log = false;
    Some(Chart {
        id: "http-rps",
        title: "HTTP throughput (medians)".into(),
        caption: "Requests per second under identical load settings on every backend; \
                  whiskers: 95% CI of the median."
            .into(),
        kind: ChartKind::Grouped(data),
    })
}

pub fn http_latency_chart(s: &RunSummary) -> Option<Chart> {
    let mut data = grouped(s, HTTP_LATENCY_METRICS, |m| {
        m.trim_start_matches("http_latency_").to_string()
    });
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "request latency".into();
    Some(Chart {
        id: "http-latency",
        title: "HTTP latency percentiles (medians over runs)".into(),
        caption: "p50, p90, p99 and maximum request latency of each run, summarised by their \
                  median across runs; whiskers: 95% CI."
            .into(),
        kind: ChartKind::Grouped(data),
    })
}

/// Density series: (metric, legend suffix). Their samples carry N in `iteration`.
pub const DENSITY_METRICS: &[(&str, &str)] = &[("density_pss_per_instance", "PSS per instance")];

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

// ---------------------------------------------------------------------------------------------
// Scales: pure, unit-tested.
// ---------------------------------------------------------------------------------------------

/// The unit an axis is labelled in, chosen from the data's magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DisplayUnit {
    pub factor: f64,
    pub name: &'static str,
}

pub fn display_unit(unit: &str, magnitude: f64) -> DisplayUnit {
    let m = magnitude.abs();
    let u = |factor, name| DisplayUnit { factor, name };
    match unit {
        "s" if m >= 1.0 => u(1.0, "s"),
        "s" if m >= 1e-3 => u(1e-3, "ms"),
        "s" => u(1e-6, "µs"),
        "B" if m >= (1u64 << 30) as f64 => u((1u64 << 30) as f64, "GiB"),
        "B" if m >= (1u64 << 20) as f64 => u((1u64 << 20) as f64, "MiB"),
        "B" if m >= 1024.0 => u(1024.0, "KiB"),
        "B" => u(1.0, "B"),
        "1/s" if m >= 1e4 => u(1e3, "k/s"),
        "1/s" => u(1.0, "/s"),
        "B/s" if m >= (1u64 << 20) as f64 => u((1u64 << 20) as f64, "MiB/s"),
        _ => u(1.0, ""),
    }
}

/// A numeric axis: range, ticks and labels in a display unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// Range in display units (log: still display units, not exponents).
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub unit: DisplayUnit,
    /// The data's SI unit (`s`, `B`...), for log tick labels that carry their own unit.
    pub base: String,
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

impl Scale {
    /// A linear axis from min(0, min) to a rounded max, with headroom for labels above bars.
    pub fn linear(min: f64, max: f64, unit: &str) -> Scale {
        let du = display_unit(unit, max.abs().max(min.abs()));
        let (dmin, dmax) = (min.min(0.0) / du.factor, (max / du.factor).max(0.0));
        let span = if dmax - dmin > 0.0 { dmax - dmin } else { 1.0 };
        let step = nice_step(span * 1.12 / 5.0);
        Scale {
            lo: (dmin / step).floor() * step,
            hi: ((dmax + span * 0.12) / step).ceil() * step,
            log: false,
            unit: du,
            base: unit.to_string(),
        }
    }

    /// A log axis from the decade below `min` to a little above `max` (room for the labels
    /// above the largest values); `min` must be positive.
    pub fn log(min: f64, max: f64, unit: &str) -> Scale {
        let du = display_unit(unit, min);
        let lo = 10f64.powf((min / du.factor).log10().floor());
        let hi = max * 1.8 / du.factor;
        Scale {
            lo,
            hi: hi.max(lo * 10.0),
            log: true,
            unit: du,
            base: unit.to_string(),
        }
    }

    /// Ticks in display units.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut out = self.log_ticks(&[1.0]);
            if out.len() < 3 {
                out = self.log_ticks(&[1.0, 2.0, 5.0]);
            }
            out
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let mut out = Vec::new();
            let mut i = (self.lo / step).round() as i64;
            while (i as f64) * step <= self.hi + step * 1e-6 {
                out.push(i as f64 * step);
                i += 1;
            }
            out
        }
    }

    /// Log ticks at 1, 10 and 100 of each unit the base unit comes in (1 ms, 10 ms, 100 ms,
    /// 1 s; 1 MiB, 10 MiB, 100 MiB, 1 GiB), times each multiplier, within the range.
    fn log_ticks(&self, mults: &[f64]) -> Vec<f64> {
        let units: &[f64] = match self.base.as_str() {
            "s" => &[1e-6, 1e-3, 1.0],
            "B" | "B/s" => &[1.0, 1024.0, 1048576.0, 1073741824.0],
            _ => &[1.0],
        };
        let (lo, hi) = (self.lo * self.unit.factor, self.hi * self.unit.factor);
        let decades: Vec<i32> = if units.len() == 1 {
            (lo.log10().floor() as i32..=hi.log10().ceil() as i32).collect()
        } else {
            vec![0, 1, 2]
        };
        let mut out: Vec<f64> = Vec::new();
        for (i, u) in units.iter().enumerate() {
            for &k in &decades {
                for m in mults {
                    let v = u * 10f64.powi(k) * m;
                    // The last unit continues past 100 (1000 s), the others hand over to the
                    // next unit there.
                    let next_unit = units.get(i + 1).is_some_and(|n| v >= n * 0.99);
                    if v >= lo * 0.9999 && v <= hi * 1.0001 && !next_unit {
                        out.push(v / self.unit.factor);
                    }
                }
            }
        }
        out.sort_by(f64::total_cmp);
        out.dedup();
        out
    }

    /// Position of a base-unit value as a fraction of the axis (0 at `lo`, 1 at `hi`), clamped.
    pub fn frac(&self, base_value: f64) -> f64 {
        let v = base_value / self.unit.factor;
        let f = if self.log {
            if v <= 0.0 {
                return 0.0;
            }
            (v / self.lo).log10() / (self.hi / self.lo).log10()
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        f.clamp(0.0, 1.0)
    }

    /// A tick label. Log axes span several units (µs to s), so each of their ticks carries its
    /// own ("100 µs", "1 ms", "10 ms"); linear ticks are bare numbers in the title's unit.
    pub fn tick_label(&self, display_value: f64) -> String {
        if self.log {
            compact_value(display_value * self.unit.factor, &self.base)
        } else {
            fmt_num(display_value)
        }
    }

    /// "time to ready (ms)", or "time to ready (log scale)" when the ticks carry the unit.
    pub fn title(&self, quantity: &str) -> String {
        if self.log {
            format!("{quantity} (log scale)")
        } else if self.unit.name.is_empty() {
            quantity.to_string()
        } else {
            format!("{quantity} ({})", self.unit.name)
        }
    }
}

/// A value label for a bar or a median: three significant digits in a readable unit.
pub fn compact_value(v: f64, unit: &str) -> String {
    let du = display_unit(unit, v);
    if du.name.is_empty() {
        fmt_num(v)
    } else {
        format!("{} {}", fmt_num(v / du.factor), du.name)
    }
}

/// A compact number: at most three significant digits, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Colours: one per backend and one per layer/phase, the same in every chart and the diagram.
// ---------------------------------------------------------------------------------------------

const PALETTE: &[RGBColor] = &[
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

fn hashed(name: &str) -> RGBColor {
    let h = name.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    PALETTE[h % PALETTE.len()]
}

pub fn backend_color(name: &str) -> RGBColor {
    match name {
        "native" => RGBColor(110, 110, 110),
        "container" => RGBColor(31, 119, 180),
        "runc" => RGBColor(23, 166, 184),
        "crun" => RGBColor(44, 160, 44),
        "docker" => RGBColor(148, 103, 189),
        "vm" => RGBColor(214, 39, 40),
        "vm-classic" => RGBColor(255, 127, 14),
        other => hashed(other),
    }
}

/// Colours of phases, disk layers and stack layers (keyed by their short names).
pub fn segment_color(name: &str) -> RGBColor {
    match name {
        "app" | "ready" => RGBColor(140, 200, 110),
        "libs" | "workload" => RGBColor(102, 194, 165),
        "ready_marker" => RGBColor(186, 220, 120),
        "guest_os" | "kernel" => RGBColor(253, 174, 97),
        "init" => RGBColor(250, 140, 90),
        "hypervisor" => RGBColor(230, 100, 70),
        "runtime" | "spawn" => RGBColor(116, 173, 209),
        "host_os" => RGBColor(200, 200, 200),
        "infrastructure" => RGBColor(160, 160, 160),
        "total" => RGBColor(150, 150, 190),
        other => hashed(other),
    }
}

pub fn metric_color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

// ---------------------------------------------------------------------------------------------
// Drawing.
// ---------------------------------------------------------------------------------------------

pub(crate) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something drawn identically into PNG and SVG.
pub(crate) trait Drawing {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

pub(crate) const INK: RGBColor = RGBColor(34, 34, 34);
const GRID: RGBColor = RGBColor(225, 225, 225);
const MUTED: RGBColor = RGBColor(100, 100, 100);

pub(crate) fn font(size: u32) -> FontDesc<'static> {
    (FONT, f64::from(size)).into_font()
}

/// Text width in pixels with the embedded font (falls back to an estimate if layout fails).
pub(crate) fn text_width(text: &str, size: u32) -> i32 {
    font(size)
        .box_size(text)
        .map(|(w, _)| w as i32)
        .unwrap_or_else(|_| (text.chars().count() as f64 * f64::from(size) * 0.62) as i32)
}

pub(crate) fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    (x, y): (i32, i32),
    size: u32,
    color: &RGBColor,
    pos: (HPos, VPos),
) -> DrawResult<DB> {
    let style = font(size).color(color).pos(Pos::new(pos.0, pos.1));
    area.draw(&Text::new(s.to_string(), (x, y), style))
}

/// Renders `d` to `<dir>/<name>.png` and `<dir>/<name>.svg`; returns the SVG text for inlining.
pub(crate) fn render<D: Drawing>(d: &D, dir: &Path, name: &str) -> Result<String, ChartError> {
    ensure_font()?;
    let size = d.size();
    let fail = |message: String| ChartError::Draw {
        chart: name.to_string(),
        message,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        d.draw(&root).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        d.draw(&root).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let svg_path = dir.join(format!("{name}.svg"));
    std::fs::write(&svg_path, &svg).map_err(|source| ChartError::Write {
        path: svg_path,
        source,
    })?;
    Ok(svg)
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

// Font sizes are even: plotters' ab_glyph rasteriser places each glyph at `size / 2 + top`
// truncated to an integer, so with odd sizes glyphs of different heights land a pixel apart
// (a full stop floats like a middle dot).
const TITLE_SIZE: u32 = 18;
const LABEL_SIZE: u32 = 14;
const TICK_SIZE: u32 = 12;
const VALUE_SIZE: u32 = 12;
const MARGIN: i32 = 16;

/// A chart with its canvas size worked out from its content.
struct Layout<'a> {
    chart: &'a Chart,
    width: i32,
    height: i32,
    /// Height of the title plus legend rows.
    header: i32,
    legend: Vec<(String, RGBColor)>,
    /// Width of one category slot (one backend).
    slot: i32,
    /// Left margin for the y tick labels and axis title.
    left: i32,
}

/// Plot box in pixels.
#[derive(Debug, Clone, Copy)]
struct Frame {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Frame {
    fn y(&self, scale: &Scale, v: f64) -> i32 {
        self.y1 - (scale.frac(v) * f64::from(self.y1 - self.y0)).round() as i32
    }
}

fn categories(c: &Chart) -> Vec<Vec<String>> {
    match &c.kind {
        ChartKind::Dots(d) => vec![d.series.iter().map(|s| s.backend.clone()).collect()],
        ChartKind::Stacked(d) => d
            .panels
            .iter()
            .map(|p| p.iter().map(|b| b.backend.clone()).collect())
            .collect(),
        ChartKind::Grouped(d) => vec![d.groups.iter().map(|g| g.backend.clone()).collect()],
        ChartKind::Lines(_) => Vec::new(),
    }
}

fn legend_rows(items: &[(String, RGBColor)], width: i32) -> i32 {
    let mut rows = if items.is_empty() { 0 } else { 1 };
    let mut x = MARGIN;
    for (label, _) in items {
        let w = 18 + text_width(label, LABEL_SIZE) + 18;
        if x + w > width - MARGIN && x > MARGIN {
            rows += 1;
            x = MARGIN;
        }
        x += w;
    }
    rows
}

impl<'a> Layout<'a> {
    fn of(chart: &'a Chart) -> Layout<'a> {
        let legend: Vec<(String, RGBColor)> = match &chart.kind {
            ChartKind::Dots(_) => Vec::new(),
            ChartKind::Stacked(d) => d
                .segments
                .iter()
                .map(|s| (s.replace('_', " "), segment_color(s)))
                .collect(),
            ChartKind::Grouped(d) if d.metrics.len() > 1 => d
                .metrics
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), metric_color(i)))
                .collect(),
            ChartKind::Grouped(_) => Vec::new(),
            ChartKind::Lines(d) => d
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| (l.label.clone(), line_color(d, i)))
                .collect(),
        };
        let cats = categories(chart);
        let widest = cats
            .iter()
            .flatten()
            .map(|c| text_width(c, LABEL_SIZE))
            .max()
            .unwrap_or(0);
        let per_group = match &chart.kind {
            ChartKind::Grouped(d) => d.metrics.len() as i32 * 52 + 24,
            _ => 0,
        };
        // Wide enough for the backend's name and, for grouped bars, value labels on each bar.
        let slot = (widest + 24).max(per_group).max(96);
        let left = 100;
        let ncats: i32 = cats.iter().map(|p| p.len() as i32).sum();
        let panel_gaps = (cats.len() as i32 - 1).max(0) * (left + 20);
        let width = (left + ncats * slot + panel_gaps + MARGIN * 2)
            .max(640)
            .max(text_width(&chart.title, TITLE_SIZE) + 2 * MARGIN);
        let header = 34 + legend_rows(&legend, width) * 22 + 6;
        Layout {
            chart,
            width,
            height: header + 300 + 50,
            header,
            legend,
            slot,
            left,
        }
    }

    /// Panel frames side by side, each `slot` per category; the plot area is centred when
    /// the canvas is wider than the content.
    fn frames(&self) -> Vec<Frame> {
        let cats = categories(self.chart);
        let (y0, y1) = (self.header + 8, self.height - 50);
        if cats.is_empty() {
            return vec![Frame {
                x0: self.left + MARGIN,
                y0,
                x1: self.width - MARGIN - 10,
                y1,
            }];
        }
        let content: i32 = cats
            .iter()
            .map(|p| self.left + p.len() as i32 * self.slot)
            .sum::<i32>()
            + (cats.len() as i32 - 1) * 20;
        let stretch = if cats.len() == 1 {
            // A single panel fills the canvas; slots grow with it.
            f64::from(self.width - 2 * MARGIN - self.left) / f64::from(content - self.left)
        } else {
            1.0
        };
        let mut x = MARGIN;
        cats.iter()
            .map(|p| {
                let w = (f64::from(p.len() as i32 * self.slot) * stretch) as i32;
                let f = Frame {
                    x0: x + self.left,
                    y0,
                    x1: x + self.left + w,
                    y1,
                };
                x = f.x1 + 20;
                f
            })
            .collect()
    }

    fn draw_header<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        text(
            root,
            &self.chart.title,
            (MARGIN, 10),
            TITLE_SIZE,
            &INK,
            (HPos::Left, VPos::Top),
        )?;
        let mut x = MARGIN;
        let mut y = 40;
        for (label, color) in &self.legend {
            let w = 18 + text_width(label, LABEL_SIZE) + 18;
            if x + w > self.width - MARGIN && x > MARGIN {
                x = MARGIN;
                y += 22;
            }
            root.draw(&Rectangle::new(
                [(x, y + 1), (x + 13, y + 14)],
                color.filled(),
            ))?;
            text(
                root,
                label,
                (x + 18, y + 1),
                LABEL_SIZE,
                &INK,
                (HPos::Left, VPos::Top),
            )?;
            x += w;
        }
        Ok(())
    }
}

/// Grid lines, tick labels and the rotated axis title of a numeric y axis.
fn draw_y_axis<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    scale: &Scale,
    quantity: &str,
) -> DrawResult<DB> {
    for t in scale.ticks() {
        let y = f.y(scale, t * scale.unit.factor);
        root.draw(&PathElement::new(vec![(f.x0, y), (f.x1, y)], GRID))?;
        root.draw(&PathElement::new(vec![(f.x0 - 4, y), (f.x0, y)], INK))?;
        text(
            root,
            &scale.tick_label(t),
            (f.x0 - 7, y),
            TICK_SIZE,
            &INK,
            (HPos::Right, VPos::Center),
        )?;
    }
    root.draw(&PathElement::new(vec![(f.x0, f.y0), (f.x0, f.y1)], INK))?;
    root.draw(&PathElement::new(vec![(f.x0, f.y1), (f.x1, f.y1)], INK))?;
    let style = font(LABEL_SIZE)
        .color(&INK)
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(
        scale.title(quantity),
        (f.x0 - 94, (f.y0 + f.y1) / 2),
        style,
    ))
}

fn slot_center(f: Frame, n: usize, i: usize) -> i32 {
    let w = f64::from(f.x1 - f.x0) / n as f64;
    f.x0 + (w * (i as f64 + 0.5)) as i32
}

fn draw_x_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    names: &[String],
) -> DrawResult<DB> {
    for (i, n) in names.iter().enumerate() {
        text(
            root,
            n,
            (slot_center(f, names.len(), i), f.y1 + 8),
            LABEL_SIZE,
            &INK,
            (HPos::Center, VPos::Top),
        )?;
    }
    Ok(())
}

/// A value label is drawn only where it fits its column, so labels never overlap.
fn value_label<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &str,
    (x, y): (i32, i32),
    room: i32,
) -> DrawResult<DB> {
    if text_width(s, VALUE_SIZE) <= room {
        text(
            root,
            s,
            (x, y),
            VALUE_SIZE,
            &MUTED,
            (HPos::Center, VPos::Bottom),
        )?;
    }
    Ok(())
}

fn whisker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    (y_lo, y_hi): (i32, i32),
    half: i32,
) -> DrawResult<DB> {
    let style = INK.stroke_width(1);
    root.draw(&PathElement::new(vec![(x, y_lo), (x, y_hi)], style))?;
    root.draw(&PathElement::new(
        vec![(x - half, y_lo), (x + half, y_lo)],
        style,
    ))?;
    root.draw(&PathElement::new(
        vec![(x - half, y_hi), (x + half, y_hi)],
        style,
    ))
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

impl Drawing for Layout<'_> {
    fn size(&self) -> (u32, u32) {
        (self.width as u32, self.height as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        self.draw_header(root)?;
        let frames = self.frames();
        match &self.chart.kind {
            ChartKind::Dots(d) => draw_dots(root, frames[0], d),
            ChartKind::Stacked(d) => {
                for (f, panel) in frames.iter().zip(&d.panels) {
                    draw_stacked(root, *f, d, panel)?;
                }
                Ok(())
            }
            ChartKind::Grouped(d) => draw_grouped(root, frames[0], d),
            ChartKind::Lines(d) => draw_lines(root, frames[0], d),
        }
    }
}

fn draw_dots<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    d: &DotData,
) -> DrawResult<DB> {
    let all = d
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied().chain([s.median, s.ci.0, s.ci.1]));
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let scale = if d.log && lo > 0.0 {
        Scale::log(lo, hi, &d.unit)
    } else {
        Scale::linear(lo.min(0.0), hi, &d.unit)
    };
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
            &compact_value(s.median, &d.unit),
            (cx, f.y(&scale, top) - 5),
            slot - 4,
        )?;
    }
    Ok(())
}

fn draw_stacked<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    f: Frame,
    d: &StackedData,
    bars: &[StackedBar],
) -> DrawResult<DB> {
    let max = bars.iter().map(StackedBar::total).fold(0.0, f64::max);
    let scale = Scale::linear(0.0, max, &d.unit);
    draw_y_axis(root, f, &scale, &d.quantity)?;
    let names: Vec<String> = bars.iter().map(|b| b.backend.clone()).collect();
    draw_x_labels(root, f, &names)?;
    let slot = (f.x1 - f.x0) / bars.len().max(1) as i32;
    let half = (slot * 3 / 10).min(45);
    for (i, b) in bars.iter().enumerate() {
        let cx = slot_center(f, bars.len(), i);
        let mut acc = 0.0;
        for (name, v) in &b.parts {
            let (y_bottom, y_top) = (f.y(&scale, acc), f.y(&scale, acc + v));
            acc += v;
            root.draw(&Rectangle::new(
                [(cx - half, y_top), (cx + half, y_bottom)],
                segment_color(name).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(cx - half, y_top), (cx + half, y_bottom)],
                WHITE.stroke_width(1),
            ))?;
        }
        value_label(
            root,
            &compact_value(acc, &d.unit),
            (cx, f.y(&scale, acc) - 4),
            slot - 4,
        )?;
    }
    Ok(())
}

fn draw_grouped<DB: DrawingBackend>(
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
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let scale = if d.log && lo > 0.0 {
        Scale::log(lo, hi, &d.unit)
    } else {
        Scale::linear(lo.min(0.0), hi, &d.unit)
    };
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
                &compact_value(v.median, &d.unit),
                (x0 + bar_w / 2, yh.min(y) - 3),
                bar_w + 2,
            )?;
        }
    }
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(
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
            &fmt_num(t),
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
    use crate::results::Stack;
    use crate::results::{BackendInfo, Environment, MetricSummary};
    use crate::stats::Summary;
    use std::collections::BTreeMap;

    pub(crate) fn metric(unit: &str, values: &[f64]) -> MetricSummary {
        MetricSummary {
            unit: unit.into(),
            stats: Summary::of(values).unwrap(),
            ratio_to_native: None,
        }
    }

    pub(crate) fn backend(
        name: &str,
        stack: Stack,
        metrics: &[(&str, &str, f64)],
    ) -> BackendSummary {
        BackendSummary {
            info: BackendInfo {
                backend: name.into(),
                stack,
                availability: Availability::Available,
                error: None,
                config: BTreeMap::new(),
            },
            failed_runs: 0,
            metrics: metrics
                .iter()
                .map(|(m, u, v)| (m.to_string(), metric(u, &[*v, *v * 1.01, *v * 0.99])))
                .collect(),
        }
    }

    pub(crate) fn summary(backends: Vec<BackendSummary>) -> RunSummary {
        RunSummary {
            run_id: "r".into(),
            scenario: "startup".into(),
            description: "d".into(),
            status: "done".into(),
            runs: 3,
            warmup: 0,
            environment: Environment::default(),
            backends,
        }
    }

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

    #[test]
    fn phases_stack_in_order_and_split_into_panels() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[("phase.ready", "s", 0.001), ("phase.spawn", "s", 0.001)],
            ),
            backend(
                "vm",
                Stack::Vm,
                &[
                    ("phase.init", "s", 1.0),
                    ("phase.kernel", "s", 0.5),
                    ("phase.spawn", "s", 0.01),
                    ("phase.zzz", "s", 0.01),
                ],
            ),
        ]);
        let ChartKind::Stacked(d) = phase_chart(&s).unwrap().kind else {
            unreachable!()
        };
        assert_eq!(d.segments, ["spawn", "kernel", "init", "ready", "zzz"]);
        assert_eq!(d.panels.len(), 2);
        assert_eq!(d.panels[0][0].backend, "native");
        let vm = &d.panels[1][0];
        let order: Vec<&str> = vm.parts.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(order, ["spawn", "kernel", "init", "zzz"]);
    }

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

    #[test]
    fn grouped_charts_carry_only_recorded_metrics() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[
                    ("http_latency_p50", "s", 0.0001),
                    ("http_latency_p99", "s", 0.01),
                ],
            ),
            backend("vm", Stack::Vm, &[("http_latency_p50", "s", 0.001)]),
        ]);
        let ChartKind::Grouped(d) = http_latency_chart(&s).unwrap().kind else {
            unreachable!()
        };
        assert_eq!(d.metrics, ["p50", "p99"]);
        assert_eq!(d.groups[1].bars[1], None);
        assert!(d.log);
        assert!(memory_chart(&s).is_none());
        assert!(http_rps_chart(&s).is_none());
    }

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

    #[test]
    fn scales_pick_readable_units_and_ticks() {
        let s = Scale::linear(0.0, 0.0024, "s");
        assert_eq!(s.unit.name, "ms");
        assert_eq!(s.lo, 0.0);
        assert!(s.hi >= 2.4);
        let ticks = s.ticks();
        assert!(ticks.len() >= 4 && ticks.len() <= 8, "{ticks:?}");
        assert_eq!(s.title("time"), "time (ms)");

        let l = Scale::log(0.0012, 2.1, "s");
        assert_eq!(l.unit.name, "ms");
        assert_eq!(l.lo, 1.0);
        assert!((l.hi - 3780.0).abs() < 1e-6);
        assert_eq!(l.ticks(), [1.0, 10.0, 100.0, 1000.0]);
        let m = Scale::log(2.0 * 1048576.0, 190.0 * 1048576.0, "B");
        let labels: Vec<String> = m.ticks().iter().map(|t| m.tick_label(*t)).collect();
        assert_eq!(labels, ["1 MiB", "10 MiB", "100 MiB"]);
        let labels: Vec<String> = l.ticks().iter().map(|t| l.tick_label(*t)).collect();
        assert_eq!(labels, ["1 ms", "10 ms", "100 ms", "1 s"]);
        assert_eq!(l.title("time"), "time (log scale)");
        let narrow = Scale::log(0.002, 0.03, "s");
        assert_eq!(narrow.ticks(), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);

        let b = Scale::linear(0.0, 70.0 * 1024.0 * 1024.0, "B");
        assert_eq!(b.unit.name, "MiB");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(1000.0), "1000");
    }
}
