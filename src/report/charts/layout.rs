//! The canvas of a chart: its size worked out from measured text widths and the number of
//! backends, the title and legend, the plot frames, and the axes and labels every chart kind
//! shares. Each kind draws its own marks in its own file.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::surface::{
    font, metric_color, segment_color, text, text_width, DrawResult, GRID, INK, MUTED,
};
use super::{line_color, Chart, ChartKind, Scale};

// Font sizes are even: plotters' ab_glyph rasteriser places each glyph at `size / 2 + top`
// truncated to an integer, so with odd sizes glyphs of different heights land a pixel apart
// (a full stop floats like a middle dot).
pub(super) const TITLE_SIZE: u32 = 18;
pub(super) const LABEL_SIZE: u32 = 14;
pub(super) const TICK_SIZE: u32 = 12;
pub(super) const VALUE_SIZE: u32 = 12;
pub(super) const MARGIN: i32 = 16;
/// The widest a chart is drawn: the report's column at a 1280 px window, so every chart shows
/// at full size there and its smallest text (12 px) stays above 11 px on the page.
pub const MAX_WIDTH: i32 = 1140;

/// A chart with its canvas size worked out from its content.
pub(super) struct Layout<'a> {
    pub(super) chart: &'a Chart,
    pub(super) width: i32,
    pub(super) height: i32,
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
pub(super) struct Frame {
    pub(super) x0: i32,
    pub(super) y0: i32,
    pub(super) x1: i32,
    pub(super) y1: i32,
}

impl Frame {
    pub(super) fn y(&self, scale: &Scale, v: f64) -> i32 {
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
    pub(super) fn of(chart: &'a Chart) -> Layout<'a> {
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
            ChartKind::Grouped(d) => d.metrics.len() as i32 * 44 + 24,
            _ => 0,
        };
        let left = 100;
        let ncats: i32 = cats.iter().map(|p| p.len() as i32).sum();
        let panel_gaps = (cats.len() as i32 - 1).max(0) * (left + 20);
        // Wide enough for the backend's name and, for grouped bars, value labels on each bar
        // (drawn only where they fit), but never wider than the page shows at full size.
        let room = (MAX_WIDTH - left - panel_gaps - 2 * MARGIN) / ncats.max(1);
        let slot = (widest + 24)
            .max(per_group)
            .max(96)
            .min(room.max(widest + 8));
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
    pub(super) fn frames(&self) -> Vec<Frame> {
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

    pub(super) fn draw_header<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult<DB> {
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
pub(super) fn draw_y_axis<DB: DrawingBackend>(
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

pub(super) fn slot_center(f: Frame, n: usize, i: usize) -> i32 {
    let w = f64::from(f.x1 - f.x0) / n as f64;
    f.x0 + (w * (i as f64 + 0.5)) as i32
}

pub(super) fn draw_x_labels<DB: DrawingBackend>(
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
pub(super) fn value_label<DB: DrawingBackend>(
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

pub(super) fn whisker<DB: DrawingBackend>(
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
