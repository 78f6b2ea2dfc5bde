//! Drawing the stack diagram from its columns: rows of at most [`COLS_PER_ROW`] columns (a group
//! is kept in one row where it fits), box heights from disk bytes, the figures as text, and each
//! box's share of startup as a bar along its edge. The canvas is 1200 px wide, so the PNG is
//! legible at its own size.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::columns::{columns, join_attribution, not_drawn, Column, LayerBox};
use super::layers::Group;
use crate::report::charts::{segment_color, text, text_width, DrawResult, Drawing, INK};
use crate::report::format::format_value;
use crate::results::RunSummary;

/// Columns in one row: four 270 px columns fill 1200 px.
pub const COLS_PER_ROW: usize = 4;
const COL_W: i32 = 270;
const GAP: i32 = 24;
const MARGIN: i32 = 24;
const TITLE_H: i32 = 44;
/// The group's name and rule above its columns.
const GROUP_H: i32 = 28;
/// Backend name, its platform note and its totals.
const HEAD_H: i32 = 64;
const ROW_GAP: i32 = 26;
const LABEL_SIZE: u32 = 14;
const LABEL_H: i32 = 17;
const FIGURE_SIZE: u32 = 13;
const LINE_H: i32 = 16;
/// Extra height of the box with the most disk bytes; the others scale linearly.
const BOX_GROW_H: i32 = 120;
const TITLE_SIZE: u32 = 20;
const NOTE_SIZE: u32 = 12;
const NOTE_H: i32 = 16;
const MUTED: RGBColor = RGBColor(90, 90, 90);
const BOUNDARY: RGBColor = RGBColor(196, 30, 30);
const CAPTION: &str = "Box height grows with the layer's bytes on disk. The dark bar on a box's \
    right edge is its share of startup time (medians of the phases it performs). Memory is per \
    instance (PSS); daemons a backend needs on every host are shown apart.";

/// The diagram, laid out from its columns.
pub struct StackDiagram {
    pub columns: Vec<Column>,
    /// Backends with no column, and why.
    pub not_drawn: Vec<String>,
    /// Where the cgroup joins are drawn (one rule for every column).
    pub join_legend: &'static str,
}

impl StackDiagram {
    pub fn new(s: &RunSummary) -> StackDiagram {
        StackDiagram {
            columns: columns(s),
            not_drawn: not_drawn(s),
            join_legend: join_attribution(s).legend(),
        }
    }

    fn max_disk(&self) -> f64 {
        self.columns
            .iter()
            .flat_map(|c| c.boxes.iter().filter_map(|b| b.disk))
            .fold(0.0, f64::max)
    }

    /// Box height: room for its name and figures (at least three lines for a layer with
    /// files, so boxes of one layer line up across columns) plus growth proportional to disk
    /// bytes.
    pub fn box_height(&self, b: &LayerBox) -> i32 {
        let max = self.max_disk();
        let lines = wrapped_lines(b)
            .len()
            .max(if b.layer.disk_layer().is_some() { 3 } else { 1 }) as i32;
        let labels = wrap(&b.label, LABEL_SIZE, COL_W - 24).len() as i32;
        let base = 10 + labels * LABEL_H + lines * LINE_H + 6;
        match b.disk {
            Some(d) if max > 0.0 => base + (d / max * f64::from(BOX_GROW_H)).round() as i32,
            _ => base,
        }
    }

    fn column_height(&self, c: &Column) -> i32 {
        let boundary = c.boundary.as_ref().map_or(0, boundary_height);
        c.boxes.iter().map(|b| self.box_height(b) + 4).sum::<i32>() + boundary
    }

    /// The columns of each row, by index: groups in order, a group starting a new row when it
    /// would fit there whole but not in what is left of the current one, and a group wider than
    /// a row split over rows.
    pub fn rows(&self) -> Vec<Vec<usize>> {
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        for g in Group::ALL {
            let members: Vec<usize> = (0..self.columns.len())
                .filter(|&i| self.columns[i].group == g)
                .collect();
            if members.is_empty() {
                continue;
            }
            if !current.is_empty()
                && current.len() + members.len() > COLS_PER_ROW
                && members.len() <= COLS_PER_ROW
            {
                rows.push(std::mem::take(&mut current));
            }
            for i in members {
                if current.len() == COLS_PER_ROW {
                    rows.push(std::mem::take(&mut current));
                }
                current.push(i);
            }
        }
        if !current.is_empty() {
            rows.push(current);
        }
        rows
    }

    fn row_height(&self, row: &[usize]) -> i32 {
        let tallest = row
            .iter()
            .map(|&i| self.column_height(&self.columns[i]))
            .max()
            .unwrap_or(0);
        GROUP_H + HEAD_H + tallest
    }

    fn width() -> i32 {
        let n = COLS_PER_ROW as i32;
        2 * MARGIN + n * COL_W + (n - 1) * GAP
    }

    fn footer_lines(&self) -> Vec<String> {
        let w = Self::width() - 2 * MARGIN;
        let mut lines = Vec::new();
        if self.columns.is_empty() {
            lines.push("No backend ran in this run.".to_string());
        }
        if !self.not_drawn.is_empty() {
            lines.extend(wrap(
                &format!("Not drawn: {}.", self.not_drawn.join("; ")),
                NOTE_SIZE,
                w,
            ));
        }
        lines.extend(wrap(CAPTION, NOTE_SIZE, w));
        lines.extend(wrap(self.join_legend, NOTE_SIZE, w));
        lines
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

/// Breaks `s` into lines of at most `width` pixels at `size`, at spaces (a word longer than a
/// line is cut with an ellipsis).
fn wrap(s: &str, size: u32, width: i32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, size) <= width || line.is_empty() {
            line = candidate;
        } else {
            lines.push(std::mem::replace(&mut line, word.to_string()));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|l| fit(&l, size, width)).collect()
}

fn box_lines(b: &LayerBox) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(d) = b.disk {
        let extra = if b.disk_extra.is_empty() {
            String::new()
        } else {
            format!(" (incl. {})", b.disk_extra.join(", "))
        };
        lines.push(format!("disk {}{extra}", format_value(d, "B")));
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
    for (part, bytes) in &b.memory_parts {
        lines.push(format!("· {part} {}", format_value(*bytes, "B")));
    }
    if let Some(d) = b.shared_memory {
        lines.push(format!("daemons {} per host, shared", format_value(d, "B")));
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

/// A box's figures, each broken into lines that fit the column.
fn wrapped_lines(b: &LayerBox) -> Vec<String> {
    box_lines(b)
        .iter()
        .flat_map(|l| wrap(l, FIGURE_SIZE, COL_W - 24))
        .collect()
}

impl StackDiagram {
    fn draw_column<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        c: &Column,
        row: &[usize],
        (x0, bottom): (i32, i32),
    ) -> DrawResult<DB> {
        let x1 = x0 + COL_W;
        let top = bottom - self.column_height(c);
        // Headings line up at the top of the row; the stacks stand on a common floor.
        let mut hy = bottom - self.row_height(row) + GROUP_H + 2;
        text(
            root,
            &c.backend,
            (x0, hy),
            18,
            &INK,
            (HPos::Left, VPos::Top),
        )?;
        hy += 23;
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
        for line in [c.note.clone().unwrap_or_default(), totals.join(" · ")] {
            if !line.is_empty() {
                text(
                    root,
                    &fit(&line, FIGURE_SIZE, COL_W),
                    (x0, hy),
                    FIGURE_SIZE,
                    &INK,
                    (HPos::Left, VPos::Top),
                )?;
            }
            hy += LINE_H;
        }
        let mut y = top;
        for b in &c.boxes {
            if let Some(line) = c.boundary.as_ref().filter(|l| l.above == b.layer) {
                draw_boundary(root, line, (x0, x1), y)?;
                y += boundary_height(line);
            }
            let bh = self.box_height(b);
            let fill = segment_color(b.layer.key());
            root.draw(&Rectangle::new([(x0, y), (x1, y + bh)], fill.filled()))?;
            root.draw(&Rectangle::new(
                [(x0, y), (x1, y + bh)],
                INK.stroke_width(1),
            ))?;
            let mut ly = y + 8;
            for label in wrap(&b.label, LABEL_SIZE, COL_W - 24) {
                text(
                    root,
                    &label,
                    (x0 + 8, ly),
                    LABEL_SIZE,
                    &INK,
                    (HPos::Left, VPos::Top),
                )?;
                ly += LABEL_H;
            }
            ly += 2;
            for line in wrapped_lines(b) {
                text(
                    root,
                    &line,
                    (x0 + 8, ly),
                    FIGURE_SIZE,
                    &INK,
                    (HPos::Left, VPos::Top),
                )?;
                ly += LINE_H;
            }
            // Share of startup as a bar along the box's right edge, readable at a glance.
            if let Some(share) = b.share {
                let bar_h = ((f64::from(bh - 8)) * share).round() as i32;
                if bar_h > 0 {
                    root.draw(&Rectangle::new(
                        [(x1 - 11, y + bh - 4 - bar_h), (x1 - 4, y + bh - 4)],
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
                (x0, bottom + 2),
                NOTE_SIZE,
                &INK,
                (HPos::Left, VPos::Top),
            )?;
        }
        Ok(())
    }
}

/// The gap an isolation boundary takes in its column: its label's lines above its line.
fn boundary_height(line: &super::boundary::Boundary) -> i32 {
    wrap(&line.label, NOTE_SIZE, COL_W).len() as i32 * NOTE_H + 6
}

/// The boundary's label, and its line right above the box that follows it.
fn draw_boundary<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    line: &super::boundary::Boundary,
    (x0, x1): (i32, i32),
    y: i32,
) -> DrawResult<DB> {
    let mut ly = y + 1;
    for l in wrap(&line.label, NOTE_SIZE, x1 - x0) {
        text(
            root,
            &l,
            (x0, ly),
            NOTE_SIZE,
            &BOUNDARY,
            (HPos::Left, VPos::Top),
        )?;
        ly += NOTE_H;
    }
    let bottom = y + boundary_height(line);
    root.draw(&Rectangle::new(
        [(x0 - 4, bottom - 4), (x1 + 4, bottom - 1)],
        BOUNDARY.filled(),
    ))?;
    Ok(())
}

impl Drawing for StackDiagram {
    fn size(&self) -> (u32, u32) {
        let rows: i32 = self
            .rows()
            .iter()
            .map(|r| self.row_height(r) + ROW_GAP)
            .sum();
        let foot = self.footer_lines().len() as i32 * NOTE_H + 8;
        (
            Self::width() as u32,
            (MARGIN + TITLE_H + rows + foot + MARGIN) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        text(
            root,
            "Measured stacks, one per backend: native | containers | sandbox | virtual machines",
            (MARGIN, MARGIN - 6),
            TITLE_SIZE,
            &INK,
            (HPos::Left, VPos::Top),
        )?;
        let mut y = MARGIN + TITLE_H;
        for row in self.rows() {
            let bottom = y + self.row_height(&row);
            // One rule and name per run of a group's columns in this row.
            let mut start = 0;
            while start < row.len() {
                let group = self.columns[row[start]].group;
                let end = (start..row.len())
                    .find(|&k| self.columns[row[k]].group != group)
                    .unwrap_or(row.len());
                let gx0 = MARGIN + start as i32 * (COL_W + GAP);
                let gx1 = MARGIN + end as i32 * (COL_W + GAP) - GAP;
                root.draw(&Rectangle::new(
                    [(gx0, y + 20), (gx1, y + 22)],
                    MUTED.filled(),
                ))?;
                text(
                    root,
                    group.name(),
                    (gx0, y),
                    15,
                    &MUTED,
                    (HPos::Left, VPos::Top),
                )?;
                start = end;
            }
            for (k, &i) in row.iter().enumerate() {
                let x0 = MARGIN + k as i32 * (COL_W + GAP);
                self.draw_column(root, &self.columns[i], &row, (x0, bottom))?;
            }
            y = bottom + ROW_GAP;
        }
        for line in self.footer_lines() {
            text(
                root,
                &line,
                (MARGIN, y),
                NOTE_SIZE,
                &MUTED,
                (HPos::Left, VPos::Top),
            )?;
            y += NOTE_H;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stack::columns::tests::{backend, find, summary};
    use crate::report::stack::layers::Layer;
    use crate::results::Stack;

    #[test]
    fn boxes_grow_with_disk_bytes() {
        let s = summary(vec![
            backend("vm", Stack::Vm, &[("disk.guest_os", "B", 6e7)]),
            backend("container", Stack::Container, &[("disk.runtime", "B", 6e6)]),
        ]);
        let d = StackDiagram::new(&s);
        // Columns are grouped: the container before the VM.
        let guest = find(&d.columns[1], Layer::GuestOs);
        let runtime = find(&d.columns[0], Layer::Runtime);
        let base = |b: &LayerBox| {
            let mut b = b.clone();
            b.disk = None;
            d.box_height(&b)
        };
        assert_eq!(d.box_height(guest), base(guest) + BOX_GROW_H);
        assert_eq!(d.box_height(runtime), base(runtime) + BOX_GROW_H / 10);
    }

    /// Nine backends (the eight of a full run and vm-user) make rows of at most four columns
    /// on a 1200 px canvas, a group in one row where it fits, and every column in exactly one
    /// row.
    #[test]
    fn nine_backends_wrap_into_rows_that_keep_groups_together() {
        let ready = [("ready_latency", "s", 0.01)];
        let mut all = vec![backend("native", Stack::Native, &ready)];
        for name in ["container", "runc", "crun", "docker", "gvisor"] {
            all.push(backend(name, Stack::Container, &ready));
        }
        for name in ["vm", "vm-classic", "vm-user"] {
            all.push(backend(name, Stack::Vm, &ready));
        }
        let d = StackDiagram::new(&summary(all));
        let rows: Vec<Vec<&str>> = d
            .rows()
            .iter()
            .map(|r| r.iter().map(|&i| d.columns[i].backend.as_str()).collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["native"],
                vec!["container", "runc", "crun", "docker"],
                vec!["gvisor", "vm", "vm-classic", "vm-user"],
            ]
        );
        assert_eq!(d.size().0, 1200);
    }

    #[test]
    fn long_labels_wrap_within_the_column() {
        let lines = wrap(
            "Docker Engine: dockerd, containerd, shim, runc",
            LABEL_SIZE,
            COL_W - 24,
        );
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines
            .iter()
            .all(|l| text_width(l, LABEL_SIZE) <= COL_W - 24));
        assert_eq!(
            lines.join(" "),
            "Docker Engine: dockerd, containerd, shim, runc"
        );
    }
}
