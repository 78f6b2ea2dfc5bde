//! The drawing surface shared by every chart and the stack diagram: the embedded font and text
//! measured with it, the colours, and the one routine that draws a [`Drawing`] into both PNG and
//! SVG.
//!
//! Text is rendered with DejaVu Sans embedded in the binary (plotters' `ab_glyph` feature), so
//! PNGs look the same on a host with no fonts installed and nothing links fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ChartError;

/// DejaVu Sans from Debian's fonts-dejavu-core (licence beside it in `assets/fonts/`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// The family every text element asks for; the embedded font is registered under it.
pub(crate) const FONT: &str = "sans-serif";

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

pub(crate) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something drawn identically into PNG and SVG.
pub(crate) trait Drawing {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

pub(crate) const INK: RGBColor = RGBColor(34, 34, 34);
pub(super) const GRID: RGBColor = RGBColor(225, 225, 225);
pub(super) const MUTED: RGBColor = RGBColor(100, 100, 100);

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

// Colours: one per backend and one per layer/phase, the same in every chart and the diagram.

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

/// Every backend kind has its own colour (the ten of Tableau's palette, native grey, podman a darker purple beside docker's), so no
/// two series of a chart share one; a name no kind has (a merged report's `backend@host`) gets a
/// hashed one.
pub fn backend_color(name: &str) -> RGBColor {
    match name {
        "native" => RGBColor(110, 110, 110),
        "container" => RGBColor(31, 119, 180),
        "runc" => RGBColor(23, 166, 184),
        "crun" => RGBColor(44, 160, 44),
        "gvisor" => RGBColor(140, 86, 75),
        "docker" => RGBColor(148, 103, 189),
        "podman" => RGBColor(137, 45, 155),
        "vm" => RGBColor(214, 39, 40),
        "vm-minimal" => RGBColor(227, 119, 194),
        "vm-classic" => RGBColor(255, 127, 14),
        "vm-user" => RGBColor(188, 189, 34),
        other => hashed(other),
    }
}

/// Colours of phases, disk layers and stack layers (keyed by their short names).
pub fn segment_color(name: &str) -> RGBColor {
    match name {
        "app" | "workload_start" | "workload" => RGBColor(140, 200, 110),
        "libs" => RGBColor(102, 194, 165),
        "probe" => RGBColor(186, 220, 120),
        "guest_os" | "kernel" | "guest OS" => RGBColor(253, 174, 97),
        "guest_free" | "guest RAM free in the guest" => RGBColor(254, 224, 182),
        "guest_init" => RGBColor(250, 140, 90),
        "firmware" => RGBColor(240, 120, 80),
        "hypervisor" | "vmm_start" | "VMM (QEMU)" => RGBColor(230, 100, 70),
        "runtime" | "runtime, shim or Sentry" => RGBColor(116, 173, 209),
        "sentry" => RGBColor(178, 157, 215),
        "host_os" | "cgroup_join" => RGBColor(200, 200, 200),
        "infrastructure" | "host-wide daemons" => RGBColor(160, 160, 160),
        "total" => RGBColor(150, 150, 190),
        other => hashed(other),
    }
}

pub fn metric_color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}
