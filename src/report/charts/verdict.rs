//! The verdict panel the report opens with: small multiples, one compact horizontal bar chart per
//! question the run answers (time to ready, memory per instance, disk footprint, throughput kept,
//! isolation where measured), a bar per backend with its median's interval, and beside it the
//! ratio to native with the ratio's interval. Each multiple is drawn on its own (the page lays
//! them out in a grid that wraps on a phone) and all of them together into `summary.png` and
//! `summary.svg` (the same drawing), the one image to share.
//!
//! Every interval's level is the one the statistics give (an exact interval from five runs is
//! 93.8 %, not 95 %); the panel's footnote and the page's caption say which.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::scale::spread_is_large;
use super::surface::{backend_color, render, text, text_width, DrawResult, Drawing, GRID, MUTED};
use super::{measured, ChartError, Scale, INK};
use crate::report::format::{format_value, Levels};
use crate::results::{BackendSummary, MetricSummary, RunSummary};
use crate::stats::Estimate;
use cvm_proto::isolation::Aggressor;
use cvm_proto::metric::Metric;

/// `summary.png` / `summary.svg`, in the results directory itself.
pub const SUMMARY_IMAGE: &str = "summary";
/// One multiple's width: three fit the page's column at 1280 px at full size.
pub const CELL_WIDTH: i32 = 372;
const HEAD: i32 = 46;
const ROW: i32 = 22;
const AXIS: i32 = 28;
const PAD: i32 = 8;
const GAP: i32 = 12;
const TEXT: u32 = 12;

/// Throughput metrics, higher is better, compared with native (the findings' list).
const THROUGHPUT: [Metric; 8] = cvm_proto::metric::THROUGHPUT_KEPT;

/// One question and a bar per backend that answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Stable: the multiple's file (`charts/verdict-<id>`) and anchor.
    pub id: &'static str,
    pub title: String,
    pub hint: &'static str,
    pub unit: String,
    pub rows: Vec<VerdictRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRow {
    pub backend: String,
    pub ci: Estimate,
    /// The ratio to native with its interval, where taken.
    pub ratio: Option<Estimate>,
    /// What stands beside the bar: "3.1× [2.2, 4.0]", "98 % of native", "baseline".
    pub note: String,
}

fn ratio_note(m: &MetricSummary, percent: bool) -> String {
    let show = |v: f64| {
        if percent {
            format!("{:.0}", v * 100.0)
        } else {
            crate::text::format_ratio(v)
        }
    };
    let unit = if percent { " %" } else { "×" };
    match (&m.ratio_to_native, &m.ratio_unavailable) {
        (Some(r), _) if r.level <= 0.0 || (r.lower == r.point && r.upper == r.point) => {
            format!("{}{unit}", show(r.point))
        }
        (Some(r), _) => format!(
            "{}{unit} [{}, {}]",
            show(r.point),
            show(r.lower),
            show(r.upper)
        ),
        (None, Some(_)) => "no ratio".into(),
        (None, None) => String::new(),
    }
}

fn row(b: &BackendSummary, m: &MetricSummary, percent: bool) -> VerdictRow {
    let mut note = if b.info.stack == crate::results::Stack::Native {
        "native".to_string()
    } else {
        ratio_note(m, percent)
    };
    if percent && b.client_bound_runs > 0 {
        note.push_str(" client-bound");
    }
    VerdictRow {
        backend: b.info.backend.clone(),
        ci: m.stats.median_ci,
        ratio: m.ratio_to_native,
        note,
    }
}

fn metric_question(
    s: &RunSummary,
    id: &'static str,
    metric: Metric,
    title: &str,
    hint: &'static str,
) -> Option<Question> {
    let percent = THROUGHPUT.contains(&metric);
    let rows: Vec<VerdictRow> = measured(s)
        .filter_map(|b| Some(row(b, b.metrics.get(metric.name())?, percent)))
        .collect();
    let unit = measured(s)
        .find_map(|b| b.metrics.get(metric.name()))?
        .unit
        .clone();
    (!rows.is_empty()).then(|| Question {
        id,
        title: title.to_string(),
        hint,
        unit,
        rows,
    })
}

/// Isolation: the victim's p99 beside its worst neighbour, over its p99 alone.
fn isolation_question(s: &RunSummary) -> Option<Question> {
    let rows: Vec<VerdictRow> = measured(s)
        .filter_map(|b| {
            let (aggressor, m) = Aggressor::ALL
                .iter()
                .filter_map(|a| Some((a, b.metrics.get(a.p99_ratio().name())?)))
                .max_by(|x, y| x.1.stats.median.total_cmp(&y.1.stats.median))?;
            Some(VerdictRow {
                backend: b.info.backend.clone(),
                ci: m.stats.median_ci,
                ratio: None,
                note: format!("beside {}", aggressor.name()),
            })
        })
        .collect();
    (!rows.is_empty()).then(|| Question {
        id: "isolation",
        title: "Isolation: p99 beside the worst neighbour, × alone".into(),
        hint: "over its p99 alone; 1 = undisturbed",
        unit: String::new(),
        rows,
    })
}

/// The questions this run answers, in the order the panel shows them.
pub fn questions(s: &RunSummary) -> Vec<Question> {
    let throughput = THROUGHPUT.iter().find_map(|m| {
        let title = format!("Throughput kept ({})", m.name());
        metric_question(
            s,
            "throughput",
            *m,
            &title,
            "share of native's; higher is better",
        )
    });
    [
        metric_question(
            s,
            "ready",
            Metric::ReadyLatency,
            "Time to ready",
            "lower is better",
        ),
        metric_question(
            s,
            "memory",
            Metric::MemoryPss,
            "Memory per instance (PSS)",
            "lower is better",
        ),
        metric_question(
            s,
            "disk",
            Metric::DiskFootprint,
            "Disk footprint",
            "lower is better",
        ),
        throughput,
        isolation_question(s),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What the bars, whiskers and brackets are, with the levels the intervals have.
pub fn footnote(questions: &[Question]) -> String {
    let rows = || questions.iter().flat_map(|q| &q.rows);
    let medians = Levels::of(rows().map(|r| &r.ci));
    let ratios = Levels::of(rows().filter_map(|r| r.ratio.as_ref()));
    format!(
        "Bars: medians; whiskers: their interval ({}). Beside each: the ratio to native's \
         median, in brackets its interval ({}).",
        medians.words(),
        ratios.words()
    )
}

/// One multiple, drawn alone.
pub struct Multiple<'a>(pub &'a Question);

fn cell_height(q: &Question) -> i32 {
    HEAD + q.rows.len() as i32 * ROW + AXIS
}

impl Drawing for Multiple<'_> {
    fn size(&self) -> (u32, u32) {
        (CELL_WIDTH as u32, cell_height(self.0) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_question(root, self.0)
    }
}

/// The horizontal extent of a multiple's bars: after the widest name, before the widest note.
pub(super) fn bar_span(q: &Question) -> (i32, i32) {
    let widest =
        |it: &mut dyn Iterator<Item = &str>| it.map(|t| text_width(t, TEXT)).max().unwrap_or(0);
    let names = widest(&mut q.rows.iter().map(|r| r.backend.as_str()));
    let notes = widest(&mut q.rows.iter().map(|r| r.note.as_str()));
    let x0 = PAD + names + 8;
    let x1 = (CELL_WIDTH - PAD - notes - 8).max(x0 + 60);
    (x0, x1)
}

fn question_scale(q: &Question) -> Scale {
    let log = spread_is_large(q.rows.iter().map(|r| r.ci.point));
    let values = q
        .rows
        .iter()
        .flat_map(|r| [r.ci.point, r.ci.lower, r.ci.upper]);
    Scale::fitting(values, log, &q.unit)
}

fn draw_question<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    q: &Question,
) -> DrawResult<DB> {
    let top = (HPos::Left, VPos::Top);
    text(root, &q.title, (PAD, 6), 14, &INK, top)?;
    text(root, q.hint, (PAD, 26), TEXT, &MUTED, top)?;
    let (x0, x1) = bar_span(q);
    let scale = question_scale(q);
    let x = |v: f64| x0 + (scale.frac(v) * f64::from(x1 - x0)).round() as i32;
    let axis_y = HEAD + q.rows.len() as i32 * ROW + 2;
    let mut last_right = i32::MIN;
    for t in scale.ticks() {
        let xt = x(t * scale.unit.factor);
        root.draw(&PathElement::new(vec![(xt, HEAD - 2), (xt, axis_y)], GRID))?;
        let label = format_value(t * scale.unit.factor, &q.unit);
        let w = text_width(&label, TEXT);
        if xt - w / 2 > last_right + 6 && xt + w / 2 <= CELL_WIDTH - 2 {
            text(
                root,
                &label,
                (xt, axis_y + 4),
                TEXT,
                &INK,
                (HPos::Center, VPos::Top),
            )?;
            last_right = xt + w / 2;
        }
    }
    root.draw(&PathElement::new(vec![(x0, axis_y), (x1, axis_y)], INK))?;
    for (i, r) in q.rows.iter().enumerate() {
        let y = HEAD + i as i32 * ROW;
        let mid = y + ROW / 2;
        text(
            root,
            &r.backend,
            (x0 - 6, mid),
            TEXT,
            &INK,
            (HPos::Right, VPos::Center),
        )?;
        let bar = [(x0, y + 4), (x(r.ci.point).max(x0 + 1), y + ROW - 4)];
        root.draw(&Rectangle::new(bar, backend_color(&r.backend).filled()))?;
        let (lo, hi) = (x(r.ci.lower), x(r.ci.upper));
        for seg in [
            vec![(lo, mid), (hi, mid)],
            vec![(lo, mid - 4), (lo, mid + 4)],
            vec![(hi, mid - 4), (hi, mid + 4)],
        ] {
            root.draw(&PathElement::new(seg, INK.stroke_width(1)))?;
        }
        text(
            root,
            &r.note,
            (x1 + 8, mid),
            TEXT,
            &INK,
            (HPos::Left, VPos::Center),
        )?;
    }
    Ok(())
}

/// Every multiple together, in up to three columns, under a title and over the footnote.
pub struct Panel {
    pub title: String,
    pub questions: Vec<Question>,
    pub footnote: String,
}

impl Panel {
    fn columns(&self) -> usize {
        self.questions.len().clamp(1, 3)
    }

    /// Each grid row's height: its tallest multiple's.
    fn row_heights(&self) -> Vec<i32> {
        self.questions
            .chunks(self.columns())
            .map(|r| r.iter().map(cell_height).max().unwrap_or(0))
            .collect()
    }
}

impl Drawing for Panel {
    fn size(&self) -> (u32, u32) {
        let cols = self.columns() as i32;
        let grid = cols * CELL_WIDTH + (cols - 1) * GAP + 2 * PAD;
        let width = grid
            .max(text_width(&self.footnote, TEXT) + 2 * PAD)
            .max(text_width(&self.title, 18) + 2 * PAD);
        let body: i32 = self.row_heights().iter().map(|h| h + GAP).sum();
        (width as u32, (40 + body.max(30) + 28) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let top = (HPos::Left, VPos::Top);
        text(root, &self.title, (PAD, 10), 18, &INK, top)?;
        let mut y = 40;
        if self.questions.is_empty() {
            let none = "No backend recorded a figure that can be compared.";
            text(root, none, (PAD, y), TEXT, &MUTED, top)?;
        }
        for (chunk, h) in self
            .questions
            .chunks(self.columns())
            .zip(self.row_heights())
        {
            for (i, q) in chunk.iter().enumerate() {
                let x = PAD + i as i32 * (CELL_WIDTH + GAP);
                let area = root.clone().shrink((x, y), (CELL_WIDTH, h));
                draw_question(&area, q)?;
            }
            y += h + GAP;
        }
        let (_, height) = self.size();
        let foot = (PAD, height as i32 - 22);
        text(root, &self.footnote, foot, TEXT, &MUTED, top)
    }
}

/// The verdict as the page inlines it: each multiple's SVG, and the footnote.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub cells: Vec<(Question, String)>,
    pub footnote: String,
}

/// The verdict without drawing anything (each multiple's SVG left empty): what the page says,
/// for checks that must not write files.
pub fn plan_verdict(s: &RunSummary) -> Verdict {
    let questions = questions(s);
    Verdict {
        footnote: footnote(&questions),
        cells: questions.into_iter().map(|q| (q, String::new())).collect(),
    }
}

/// Draws each multiple into `charts_dir` (`verdict-<id>.png`/`.svg`) and the whole panel into
/// `dir` (`summary.png`/`.svg`); returns what the page inlines.
pub fn render_verdict(
    s: &RunSummary,
    dir: &Path,
    charts_dir: &Path,
) -> Result<Verdict, ChartError> {
    std::fs::create_dir_all(charts_dir).map_err(|source| ChartError::CreateDir {
        path: charts_dir.to_path_buf(),
        source,
    })?;
    let questions = questions(s);
    let footnote = footnote(&questions);
    let mut cells = Vec::new();
    for q in &questions {
        let svg = render(&Multiple(q), charts_dir, &format!("verdict-{}", q.id))?;
        cells.push((q.clone(), svg));
    }
    let panel = Panel {
        title: format!("cvm {}: the verdict", s.scenario),
        questions,
        footnote: footnote.clone(),
    };
    render(&panel, dir, SUMMARY_IMAGE)?;
    Ok(Verdict { cells, footnote })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::Stack;

    #[test]
    fn one_multiple_per_question_recorded_and_sig_figs() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[("ready_latency", "s", 0.002), ("memory_pss", "B", 1.6e6)],
            ),
            backend("vm", Stack::Vm, &[("ready_latency", "s", 2.0)]),
        ]);
        let q = questions(&s);
        let ids: Vec<&str> = q.iter().map(|q| q.id).collect();
        assert_eq!(ids, ["ready", "memory"]);
        assert_eq!(q[0].rows.len(), 2);
        assert_eq!(q[0].rows[0].note, "native");
        assert_eq!(crate::text::format_ratio(205.83), "206");
        assert_eq!(crate::text::format_ratio(12.345), "12.3");
        assert_eq!(crate::text::format_ratio(1.0512), "1.05");
        assert_eq!(crate::text::format_ratio(1609.4), "1610");
        // The two rows' medians differ 1000×: a log axis, so the fast one still has a bar.
        assert!(question_scale(&q[0]).log);
        let (x0, x1) = bar_span(&q[0]);
        assert!(x1 - x0 >= 120, "bars have {} px", x1 - x0);
    }

    #[test]
    fn isolation_shows_each_backends_worst_neighbour() {
        let s = summary(vec![backend(
            "runc",
            Stack::Container,
            &[
                ("noisy_cpu_p99_ratio", "", 1.2),
                ("noisy_memory_p99_ratio", "", 3.0),
            ],
        )]);
        let q = questions(&s);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].id, "isolation");
        assert!((q[0].rows[0].ci.point - 3.0).abs() < 1e-9);
        assert!(
            q[0].rows[0].note.contains("memory"),
            "{}",
            q[0].rows[0].note
        );
        // The footnote gives the level the three runs' interval has, not a nominal one.
        let level = crate::report::format::level_text(q[0].rows[0].ci.level);
        assert_ne!(level, "95 %");
        assert!(footnote(&q).contains(&format!("their interval ({level})")));
    }
}
