//! The report's centrepiece: the classic "virtual machine vs container" stack diagram, redrawn
//! with measured figures in every layer, beside the native stack.
//!
//! [`columns`] decides what goes in each box (pure, unit-tested); [`StackDiagram`] draws it.
//! Each layer box carries its disk bytes (`disk.<layer>`), memory where it can be attributed,
//! and its share of startup time. Box heights grow with disk bytes, so the VM's guest OS and
//! hypervisor visibly outweigh a container runtime at a glance.
//!
//! Attributing startup phases to layers. A `phase.<name>` sample is the time from the previous
//! phase point to `<name>`'s, i.e. the work done *to reach* that point:
//! - `spawn` (the runtime or QEMU process exists): the container runtime or hypervisor; on
//!   native, the host OS's fork and exec.
//! - `kernel` (a VM's first console output): the guest OS (firmware, decompression, early boot).
//! - `init` (cvm-guest init runs): in a VM the guest kernel booting, so the guest OS; in a
//!   container the runtime building namespaces and the rootfs; on native the host OS.
//! - `workload` (init execs the workload): init's own work, the binaries/libraries layer.
//! - `ready_marker`, `ready`: the application starting up.
//!
//! Attributing memory. `memory_pss` is the PSS of every host process of an instance and
//! `memory_overhead` the part above native's; the overhead goes to the isolation layer (the
//! container runtime, or hypervisor + guest OS for a VM, which the host cannot tell apart), the
//! rest to the application.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::charts::{segment_color, text, text_width, DrawResult, Drawing, INK};
use super::format_value;
use crate::results::{Availability, BackendSummary, RunSummary, Stack};

/// One layer of a stack, top to bottom in [`Layer::of_stack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    App,
    Libs,
    GuestOs,
    Hypervisor,
    Runtime,
    HostOs,
    Infrastructure,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::App => "App",
            Layer::Libs => "Binaries/libraries",
            Layer::GuestOs => "Guest OS",
            Layer::Hypervisor => "Hypervisor",
            Layer::Runtime => "Container runtime",
            Layer::HostOs => "Host OS",
            Layer::Infrastructure => "Infrastructure",
        }
    }

    /// The layer's name in metrics (`disk.<key>`) and in the colour table.
    pub fn key(self) -> &'static str {
        match self {
            Layer::App => "app",
            Layer::Libs => "libs",
            Layer::GuestOs => "guest_os",
            Layer::Hypervisor => "hypervisor",
            Layer::Runtime => "runtime",
            Layer::HostOs => "host_os",
            Layer::Infrastructure => "infrastructure",
        }
    }

    pub fn of_stack(stack: Stack) -> &'static [Layer] {
        use Layer::*;
        match stack {
            Stack::Vm => &[App, Libs, GuestOs, Hypervisor, HostOs, Infrastructure],
            Stack::Container => &[App, Libs, Runtime, HostOs, Infrastructure],
            Stack::Native => &[App, Libs, HostOs, Infrastructure],
        }
    }

    /// The layer whose work a startup phase measures (see the module docs); `None` for a phase
    /// this stack should not have.
    pub fn of_phase(stack: Stack, phase: &str) -> Option<Layer> {
        Some(match (stack, phase) {
            (Stack::Vm, "spawn") => Layer::Hypervisor,
            // `firmware` (vm-classic): BIOS output to the kernel banner, mostly the bzImage
            // decompressing itself: guest OS work, as the module docs count it.
            (Stack::Vm, "firmware" | "kernel" | "init") => Layer::GuestOs,
            (Stack::Container, "spawn" | "init") => Layer::Runtime,
            (Stack::Native, "spawn" | "init") => Layer::HostOs,
            (_, "workload") => Layer::Libs,
            (_, "ready" | "ready_marker") => Layer::App,
            _ => return None,
        })
    }

    /// The layer a stack's isolation overhead (`memory_overhead`) is charged to.
    fn isolation(stack: Stack) -> Option<Layer> {
        match stack {
            Stack::Vm => Some(Layer::Hypervisor),
            Stack::Container => Some(Layer::Runtime),
            Stack::Native => None,
        }
    }
}

/// The figures in one box.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBox {
    pub layer: Layer,
    pub disk: Option<f64>,
    pub memory: Option<f64>,
    /// What the memory figure means when it is not simply this layer's ("+ over native").
    pub memory_note: Option<&'static str>,
    /// Median time of the phases attributed to this layer, and its share of their sum.
    pub startup: Option<f64>,
    pub share: Option<f64>,
    /// A descriptive line (host kernel, CPU) for the layers cvm does not measure.
    pub detail: Option<String>,
}

/// One stack: a heading and its boxes, top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub stack: Stack,
    pub heading: &'static str,
    /// The backend whose figures fill the column; `None` when no backend of this stack ran.
    pub backend: Option<String>,
    /// Accelerator, or why the column is empty.
    pub note: Option<String>,
    pub ready: Option<f64>,
    pub memory_total: Option<f64>,
    pub disk_total: Option<f64>,
    /// Phases with no layer (unknown names), in seconds: shown so shares are honest.
    pub unattributed: f64,
    pub boxes: Vec<LayerBox>,
}

impl Column {
    pub fn measured(&self) -> bool {
        self.backend.is_some()
    }
}

fn heading(stack: Stack) -> &'static str {
    match stack {
        Stack::Vm => "Virtual machine",
        Stack::Container => "Container",
        Stack::Native => "Native (bare host)",
    }
}

fn median(b: &BackendSummary, metric: &str) -> Option<f64> {
    b.metrics.get(metric).map(|m| m.stats.median)
}

/// The backend that fills a stack's column: the first in the run's order that was available
/// and recorded anything (so `container` before `runc`, `vm` before `vm-classic`, as run).
fn representative(s: &RunSummary, stack: Stack) -> Option<&BackendSummary> {
    s.backends.iter().find(|b| {
        b.info.stack == stack
            && matches!(b.info.availability, Availability::Available)
            && !b.metrics.is_empty()
    })
}

/// The three columns, VM | container | native, as in the classic picture.
pub fn columns(s: &RunSummary) -> Vec<Column> {
    [Stack::Vm, Stack::Container, Stack::Native]
        .into_iter()
        .map(|stack| column(s, stack))
        .collect()
}

fn host_detail(s: &RunSummary, layer: Layer) -> Option<String> {
    let env = &s.environment;
    match layer {
        Layer::HostOs if !env.kernel.is_empty() => Some(format!("Linux {}", env.kernel)),
        Layer::Infrastructure if env.ncpu > 0 => Some(format!(
            "{} × {}, {}",
            env.ncpu,
            env.cpu_model,
            format_value(env.mem_total as f64, "B")
        )),
        _ => None,
    }
}

pub fn column(s: &RunSummary, stack: Stack) -> Column {
    let layers = Layer::of_stack(stack);
    let Some(b) = representative(s, stack) else {
        let note = s
            .backends
            .iter()
            .find(|b| b.info.stack == stack)
            .map(|b| match (&b.info.availability, &b.info.error) {
                (Availability::Unavailable { reason, .. }, _) => {
                    format!("{}: unavailable ({reason})", b.info.backend)
                }
                (_, Some(err)) => format!("{}: failed ({err})", b.info.backend),
                _ => format!("{}: no data", b.info.backend),
            })
            .unwrap_or_else(|| "not measured in this run".into());
        return Column {
            stack,
            heading: heading(stack),
            backend: None,
            note: Some(note),
            ready: None,
            memory_total: None,
            disk_total: None,
            unattributed: 0.0,
            boxes: layers
                .iter()
                .map(|&layer| LayerBox {
                    layer,
                    disk: None,
                    memory: None,
                    memory_note: None,
                    startup: None,
                    share: None,
                    detail: host_detail(s, layer),
                })
                .collect(),
        };
    };

    let phases: Vec<(&str, f64)> = b
        .metrics
        .iter()
        .filter_map(|(m, v)| Some((m.strip_prefix("phase.")?, v.stats.median)))
        .collect();
    let phase_total: f64 = phases.iter().map(|(_, v)| v).sum();
    let mut unattributed = 0.0;
    let mut startup = vec![None::<f64>; layers.len()];
    for (p, v) in &phases {
        match Layer::of_phase(stack, p).and_then(|l| layers.iter().position(|x| *x == l)) {
            Some(i) => *startup[i].get_or_insert(0.0) += v,
            None => unattributed += v,
        }
    }

    let pss = median(b, "memory_pss");
    let overhead = median(b, "memory_overhead");
    let isolation = Layer::isolation(stack);
    let boxes = layers
        .iter()
        .zip(startup)
        .map(|(&layer, startup)| {
            let (memory, memory_note) = match (layer, pss, overhead) {
                (Layer::App, Some(p), Some(o)) if isolation.is_some() => {
                    (Some(p - o), Some("as on native"))
                }
                (Layer::App, Some(p), _) if isolation.is_none() => (Some(p), None),
                (l, _, Some(o)) if Some(l) == isolation => (
                    Some(o),
                    Some(if stack == Stack::Vm {
                        "over native, incl. guest OS"
                    } else {
                        "over native"
                    }),
                ),
                _ => (None, None),
            };
            LayerBox {
                layer,
                disk: median(b, &format!("disk.{}", layer.key())),
                memory,
                memory_note,
                startup,
                share: startup
                    .filter(|_| phase_total > 0.0)
                    .map(|t| t / phase_total),
                detail: host_detail(s, layer),
            }
        })
        .collect();
    let note = b.info.accelerator().map(|a| format!("accelerator: {a}"));
    Column {
        stack,
        heading: heading(stack),
        backend: Some(b.info.backend.clone()),
        note,
        ready: median(b, "ready_latency"),
        memory_total: pss,
        disk_total: median(b, "disk_footprint"),
        unattributed,
        boxes,
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing.
// ---------------------------------------------------------------------------------------------

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
            Some(note) if b.layer == Layer::App => {
                format!("memory {} ({note})", format_value(m, "B"))
            }
            Some(note) if m >= 0.0 => format!("memory +{} {note}", format_value(m, "B")),
            Some(note) => format!("memory {} {note}", format_value(m, "B")),
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
    use crate::results::{BackendInfo, Environment, MetricSummary, ACCEL_KEY};
    use crate::stats::Summary;
    use std::collections::BTreeMap;

    fn backend(name: &str, stack: Stack, metrics: &[(&str, &str, f64)]) -> BackendSummary {
        BackendSummary {
            info: BackendInfo {
                backend: name.into(),
                stack,
                availability: Availability::Available,
                error: None,
                config: BTreeMap::from([(ACCEL_KEY.to_string(), "tcg".to_string())])
                    .into_iter()
                    .filter(|_| stack == Stack::Vm)
                    .collect(),
            },
            failed_runs: 0,
            metrics: metrics
                .iter()
                .map(|(m, u, v)| {
                    (
                        m.to_string(),
                        MetricSummary {
                            unit: u.to_string(),
                            stats: Summary::of(&[*v]).unwrap(),
                            ratio_to_native: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn summary(backends: Vec<BackendSummary>) -> RunSummary {
        RunSummary {
            run_id: "r".into(),
            scenario: "s".into(),
            description: String::new(),
            status: "done".into(),
            runs: 1,
            warmup: 0,
            environment: Environment {
                kernel: "6.1.0".into(),
                ncpu: 2,
                cpu_model: "Xeon".into(),
                mem_total: 1 << 30,
                ..Environment::default()
            },
            backends,
        }
    }

    fn find(c: &Column, l: Layer) -> &LayerBox {
        c.boxes.iter().find(|b| b.layer == l).unwrap()
    }

    #[test]
    fn stacks_have_the_classic_layers() {
        let names = |s| {
            Layer::of_stack(s)
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Stack::Vm),
            [
                "App",
                "Binaries/libraries",
                "Guest OS",
                "Hypervisor",
                "Host OS",
                "Infrastructure"
            ]
        );
        assert_eq!(
            names(Stack::Container),
            [
                "App",
                "Binaries/libraries",
                "Container runtime",
                "Host OS",
                "Infrastructure"
            ]
        );
        assert_eq!(
            names(Stack::Native),
            ["App", "Binaries/libraries", "Host OS", "Infrastructure"]
        );
    }

    #[test]
    fn figures_go_to_their_layers() {
        let vm = backend(
            "vm",
            Stack::Vm,
            &[
                ("disk.app", "B", 1e6),
                ("disk.libs", "B", 2e6),
                ("disk.guest_os", "B", 6e7),
                ("disk.hypervisor", "B", 3e7),
                ("phase.spawn", "s", 0.1),
                ("phase.kernel", "s", 0.5),
                ("phase.init", "s", 1.0),
                ("phase.workload", "s", 0.3),
                ("phase.ready", "s", 0.1),
                ("memory_pss", "B", 150e6),
                ("memory_overhead", "B", 140e6),
                ("ready_latency", "s", 2.0),
            ],
        );
        let s = summary(vec![vm]);
        let c = column(&s, Stack::Vm);
        assert_eq!(c.backend.as_deref(), Some("vm"));
        assert_eq!(c.note.as_deref(), Some("accelerator: tcg"));
        let guest = find(&c, Layer::GuestOs);
        assert_eq!(guest.disk, Some(6e7));
        assert!((guest.startup.unwrap() - 1.5).abs() < 1e-12);
        assert!((guest.share.unwrap() - 0.75).abs() < 1e-12);
        let hv = find(&c, Layer::Hypervisor);
        assert_eq!(hv.memory, Some(140e6));
        assert_eq!(hv.startup, Some(0.1));
        let app = find(&c, Layer::App);
        assert_eq!(app.memory, Some(10e6));
        assert_eq!(find(&c, Layer::Libs).startup, Some(0.3));
        assert_eq!(
            find(&c, Layer::HostOs).detail.as_deref(),
            Some("Linux 6.1.0")
        );
        let shares: f64 = c.boxes.iter().filter_map(|b| b.share).sum();
        assert!((shares - 1.0).abs() < 1e-12);
    }

    #[test]
    fn native_memory_is_the_apps_and_unknown_phases_are_kept_apart() {
        let s = summary(vec![backend(
            "native",
            Stack::Native,
            &[
                ("memory_pss", "B", 5e6),
                ("phase.spawn", "s", 0.001),
                ("phase.mystery", "s", 0.001),
            ],
        )]);
        let c = column(&s, Stack::Native);
        assert_eq!(find(&c, Layer::App).memory, Some(5e6));
        assert_eq!(find(&c, Layer::HostOs).startup, Some(0.001));
        assert_eq!(c.unattributed, 0.001);
        assert_eq!(find(&c, Layer::HostOs).share, Some(0.5));
    }

    #[test]
    fn a_stack_that_did_not_run_says_why() {
        let mut crun = backend("crun", Stack::Container, &[]);
        crun.info.availability = Availability::unavailable("hybrid cgroups", "use v2");
        let cols = columns(&summary(vec![crun]));
        assert_eq!(cols.len(), 3);
        assert!(!cols[1].measured());
        assert_eq!(
            cols[1].note.as_deref(),
            Some("crun: unavailable (hybrid cgroups)")
        );
        assert_eq!(cols[0].note.as_deref(), Some("not measured in this run"));
        assert_eq!(cols[1].boxes.len(), 5);
    }

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
