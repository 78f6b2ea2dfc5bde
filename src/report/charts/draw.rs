//! The one dispatch from a chart's kind to the code that draws its marks: the canvas (title,
//! legend, frames, axes) is [`layout`](super::layout)'s, the marks each kind's own file's.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::density::draw_lines;
use super::grouped::draw_grouped;
use super::layout::Layout;
use super::stacked::draw_stacked;
use super::startup::draw_dots;
use super::surface::{DrawResult, Drawing};
use super::ChartKind;

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
