//! Drawing the stack diagram from its columns: box heights from disk bytes, the figures as
//! text, and each box's share of startup as a bar along its edge.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::columns::{columns, Column, LayerBox};
use crate::report::charts::{segment_color, text, text_width, DrawResult, Drawing, INK};
use crate::report::format::format_value;
use crate::results::RunSummary;

const COL_W: i32 = 350;
const GAP: i32 = 40;
const MARGIN: i32 = 24;
const HEAD_H: i32 = 92;
const FOOT_H: i32 = 58;
/// Room for the layer's name and three lines of figures.
const BOX_MIN_H: i32 = 28 + 3 * LINE_H + 8;
const LINE_H: i32 = 17;
/// Extra height of the box with the most disk bytes; the others scale linearly.
const BOX_GROW_H: i32 = 170;
const TITLE_SIZE: u32 = 22;

/// The diagram, laid out from its columns.
pub struct StackDiagram {
    pub columns: Vec<Column>,
}

impl StackDiagram {
    pub fn new(s: &RunSummary) -> StackDiagram {
        StackDiagram {
            columns: columns(s),
        }
    }

    fn max_disk(&self) -> f64 {
        self.columns
            .iter()
            .flat_map(|c| c.boxes.iter().filter_map(|b| b.disk))
            .fold(0.0, f64::max)
    }

    /// Box height: a fixed minimum for the text plus growth proportional to disk bytes.
    pub fn box_height(&self, b: &LayerBox) -> i32 {
        let max = self.max_disk();
        match b.disk {
            Some(d) if max > 0.0 => BOX_MIN_H + (d / max * f64::from(BOX_GROW_H)).round() as i32,
            _ => BOX_MIN_H,
        }
    }

    fn column_height(&self, c: &Column) -> i32 {
        c.boxes.iter().map(|b| self.box_height(b) + 4).sum()
    }
}

/// Cuts `s` with an ellipsis so it fits `width` pixels at `size`.
fn fit(s: &str, size: u32, width: i32) -> String {
    if text_width(s, size) <= width {
        return s.to_string();
    }
    let mut out: String = s.to_string();
    while !out.is_empty() && text_width(&format!("{out}…"), size) > width {
        out.pop();
    }
    format!("{out}…")
}

fn box_lines(b: &LayerBox) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(d) = b.disk {
        lines.push(format!("disk {}", format_value(d, "B")));
    }
    if let Some(m) = b.memory {
        lines.push(match b.memory_note {
            // An overhead over native reads as an addition; other notes say what the figure is.
            Some(note) if note.starts_with("over native") && m >= 0.0 => {
                format!("memory +{} {note}", format_value(m, "B"))
            }
            Some(note) if note.starts_with("over native") => {
                format!("memory {} {note}", format_value(m, "B"))
            }
            Some(note) => format!("memory {} ({note})", format_value(m, "B")),
            None => format!("memory {}", format_value(m, "B")),
        });
    }
    if let Some(t) = b.startup {
        let share = b
            .share
            .map_or_else(String::new, |s| format!(" ({:.0}%)", s * 100.0));
        lines.push(format!("startup {}{share}", format_value(t, "s")));
    }
    if let Some(d) = &b.detail {
        lines.push(d.clone());
    }
    lines
}

impl Drawing for StackDiagram {
    fn size(&self) -> (u32, u32) {
        let n = self.columns.len().max(1) as i32;
        let tallest = self
            .columns
            .iter()
            .map(|c| self.column_height(c))
            .max()
            .unwrap_or(0);
        (
            (2 * MARGIN + n * COL_W + (n - 1) * GAP) as u32,
            (MARGIN + 40 + HEAD_H + tallest + FOOT_H) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let h = self.size().1 as i32;
        text(
            root,
            "Measured stacks: virtual machine vs container vs native",
            (MARGIN, MARGIN - 6),
            TITLE_SIZE,
            &INK,
            (HPos::Left, VPos::Top),
        )?;
        let bottom = h - FOOT_H;
        let grey = RGBColor(150, 150, 150);
        for (i, c) in self.columns.iter().enumerate() {
            let x0 = MARGIN + i as i32 * (COL_W + GAP);
            let x1 = x0 + COL_W;
            let top = bottom - self.column_height(c);
            let ink = if c.measured() { INK } else { grey };
            // Heading just above the column, so a short stack's heading sits on it.
            let mut hy = top - HEAD_H + 8;
            text(root, c.heading, (x0, hy), 20, &ink, (HPos::Left, VPos::Top))?;
            hy += 26;
            let who = match (&c.backend, &c.note) {
                (Some(b), Some(n)) => format!("backend {b} · {n}"),
                (Some(b), None) => format!("backend {b}"),
                (None, Some(n)) => n.clone(),
                (None, None) => String::new(),
            };
            text(
                root,
                &fit(&who, 14, COL_W),
                (x0, hy),
                14,
                &ink,
                (HPos::Left, VPos::Top),
            )?;
            hy += 19;
            let mut totals = Vec::new();
            if let Some(r) = c.ready {
                totals.push(format!("ready {}", format_value(r, "s")));
            }
            if let Some(m) = c.memory_total {
                totals.push(format!("PSS {}", format_value(m, "B")));
            }
            if let Some(d) = c.disk_total {
                totals.push(format!("disk {}", format_value(d, "B")));
            }
            text(
                root,
                &fit(&totals.join(" · "), 14, COL_W),
                (x0, hy),
                14,
                &ink,
                (HPos::Left, VPos::Top),
            )?;

            let mut y = top;
            for b in &c.boxes {
                let bh = self.box_height(b);
                let fill = if c.measured() {
                    segment_color(b.layer.key())
                } else {
                    RGBColor(238, 238, 238)
                };
                root.draw(&Rectangle::new([(x0, y), (x1, y + bh)], fill.filled()))?;
                root.draw(&Rectangle::new(
                    [(x0, y), (x1, y + bh)],
                    ink.stroke_width(1),
                ))?;
                text(
                    root,
                    b.layer.name(),
                    (x0 + 10, y + 7),
                    16,
                    &ink,
                    (HPos::Left, VPos::Top),
                )?;
                let mut ly = y + 28;
                let lines = box_lines(b);
                let room = ((bh - 28 - 6) / LINE_H).max(1) as usize;
                for line in lines.iter().take(room) {
                    text(
                        root,
                        &fit(line, 14, COL_W - 24),
                        (x0 + 10, ly),
                        14,
                        &ink,
                        (HPos::Left, VPos::Top),
                    )?;
                    ly += LINE_H;
                }
                // Share of startup as a bar along the box's right edge, readable at a glance.
                if let Some(share) = b.share {
                    let bar_h = ((f64::from(bh - 8)) * share).round() as i32;
                    if bar_h > 0 {
                        root.draw(&Rectangle::new(
                            [(x1 - 12, y + bh - 4 - bar_h), (x1 - 5, y + bh - 4)],
                            INK.mix(0.75).filled(),
                        ))?;
                    }
                }
                y += bh + 4;
            }
            if c.unattributed > 0.0 {
                text(
                    root,
                    &format!("other phases: {}", format_value(c.unattributed, "s")),
                    (x0, bottom + 4),
                    12,
                    &ink,
                    (HPos::Left, VPos::Top),
                )?;
            }
        }
        text(
            root,
            "Box height grows with the layer's bytes on disk. The dark bar on a box's right edge is \
             its share of startup time (medians of the phases it performs).",
            (MARGIN, h - 30),
            12,
            &RGBColor(80, 80, 80),
            (HPos::Left, VPos::Top),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stack::columns::tests::{backend, find, summary};
    use crate::report::stack::columns::Layer;
    use crate::results::Stack;

    #[test]
    fn boxes_grow_with_disk_bytes() {
        let s = summary(vec![
            backend("vm", Stack::Vm, &[("disk.guest_os", "B", 6e7)]),
            backend("container", Stack::Container, &[("disk.runtime", "B", 6e6)]),
        ]);
        let d = StackDiagram::new(&s);
        let guest = find(&d.columns[0], Layer::GuestOs);
        let runtime = find(&d.columns[1], Layer::Runtime);
        let app = find(&d.columns[1], Layer::App);
        assert_eq!(d.box_height(guest), BOX_MIN_H + BOX_GROW_H);
        assert_eq!(d.box_height(runtime), BOX_MIN_H + BOX_GROW_H / 10);
        assert_eq!(d.box_height(app), BOX_MIN_H);
    }
}
