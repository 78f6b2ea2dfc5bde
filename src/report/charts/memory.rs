//! The memory chart: one stacked bar per backend, its PSS per instance split the way the stack
//! diagram splits it (the workload as on native, the runtime, shim or Sentry over native, a VM's
//! guest OS, the guest RAM it holds free and QEMU), host-wide daemons as bars of their own.
//! Bars whose totals differ by more than [`LOG_SPREAD`](super::LOG_SPREAD) stand in separate
//! panels, each with its own axis from zero, so a 1.6 MiB native bar and a 250 MiB VM bar both
//! read.

use super::{measured, split_panels, Chart, ChartKind, StackedBar, StackedData};
use crate::results::{BackendSummary, RunSummary, Stack};
use cvm_proto::metric::Metric;

/// Memory metrics the chart reads, where recorded.
pub const MEMORY_METRICS: &[&str] = &[
    Metric::MemoryPss.name(),
    Metric::MemoryOverhead.name(),
    Metric::MemoryVmm.name(),
    Metric::MemoryGuestRam.name(),
    Metric::MemoryGuestUsed.name(),
    Metric::MemoryDaemon.name(),
];

/// The segments, bottom first; their colours are the stack diagram's for the same layers.
pub const WORKLOAD: &str = "workload";
pub const RUNTIME: &str = "runtime, shim or Sentry";
pub const GUEST_OS: &str = "guest OS";
pub const GUEST_FREE: &str = "guest RAM free in the guest";
pub const VMM: &str = "VMM (QEMU)";
pub const DAEMONS: &str = "host-wide daemons";
const SEGMENTS: [&str; 6] = [WORKLOAD, RUNTIME, GUEST_OS, GUEST_FREE, VMM, DAEMONS];

fn median(b: &BackendSummary, m: Metric) -> Option<f64> {
    b.metrics.get(m.name()).map(|v| v.stats.median)
}

/// One backend's PSS in segments that add up to it, none below zero. A VM with its memory split
/// recorded is split like the stack diagram's column; a container's overhead over native is its
/// runtime's (an overhead whose median is below zero is drawn as none); native is all workload.
pub fn memory_parts(b: &BackendSummary) -> Option<Vec<(String, f64)>> {
    let pss = median(b, Metric::MemoryPss)?;
    let overhead = median(b, Metric::MemoryOverhead).map(|o| o.clamp(0.0, pss));
    let vm_split = (
        median(b, Metric::MemoryVmm),
        median(b, Metric::MemoryGuestRam),
        median(b, Metric::MemoryGuestUsed),
    );
    let parts: Vec<(&str, f64)> = match (b.info.stack, vm_split) {
        (Stack::Vm, (Some(vmm), Some(ram), Some(used))) => {
            let app = overhead.map_or(0.0, |o| pss - o).min(used);
            vec![
                (WORKLOAD, app),
                (GUEST_OS, used - app),
                (GUEST_FREE, ram - used),
                (VMM, vmm),
            ]
        }
        (Stack::Native, _) => vec![(WORKLOAD, pss)],
        _ => {
            let o = overhead.unwrap_or(0.0);
            vec![(WORKLOAD, pss - o), (RUNTIME, o)]
        }
    };
    Some(
        parts
            .into_iter()
            .filter(|(_, v)| *v > 0.0 && v.is_finite())
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
    )
}

/// Whose daemons the "daemons" bars are.
fn daemon_owners(s: &RunSummary) -> String {
    let owners: Vec<&str> = measured(s)
        .filter(|b| median(b, Metric::MemoryDaemon).is_some_and(|v| v > 0.0))
        .map(|b| b.info.backend.as_str())
        .collect();
    if owners.is_empty() {
        "none in this run".into()
    } else {
        format!("those {} needs", owners.join(", "))
    }
}

/// Memory per instance: a stacked bar per backend, and each backend's host-wide daemons apart.
pub fn memory_chart(s: &RunSummary) -> Option<Chart> {
    let mut bars: Vec<StackedBar> = Vec::new();
    for b in measured(s) {
        if let Some(parts) = memory_parts(b).filter(|p| !p.is_empty()) {
            bars.push(StackedBar {
                backend: b.info.backend.clone(),
                parts,
            });
        }
    }
    let mut daemons: Vec<StackedBar> = measured(s)
        .filter_map(|b| {
            let v = median(b, Metric::MemoryDaemon).filter(|v| *v > 0.0)?;
            Some(StackedBar {
                backend: format!("{} daemons", b.info.backend),
                parts: vec![(DAEMONS.to_string(), v)],
            })
        })
        .collect();
    // One backend's daemons (Docker's, usually): a short label keeps every slot narrow.
    if let [only] = daemons.as_mut_slice() {
        only.backend = "daemons".into();
    }
    if bars.is_empty() {
        return None;
    }
    bars.extend(daemons);
    let segments: Vec<String> = SEGMENTS
        .iter()
        .filter(|seg| bars.iter().any(|b| b.parts.iter().any(|(n, _)| n == *seg)))
        .map(|seg| seg.to_string())
        .collect();
    Some(Chart {
        id: "memory",
        title: "Memory per instance (PSS medians)".into(),
        caption: format!(
            "Each bar is a backend's PSS per instance (median; interval {}, in the tables), \
             summed over the host processes that stay resident for an instance: the workload as \
             on native, the rest over native charged to the runtime, shim or Sentry, and for a \
             VM its guest's own use, the guest RAM it touched but holds free, and QEMU without \
             guest RAM. \"daemons\" bars are host-wide (dockerd, containerd): one per host, \
             shared by every instance, never in a backend's bar ({}). Bars more than 20× apart stand \
             in separate panels, each axis from zero.",
            crate::report::format::medians_levels(s, |m| m == Metric::MemoryPss.name()).words(),
            daemon_owners(s)
        ),
        kind: ChartKind::Stacked(StackedData {
            unit: "B".into(),
            quantity: "memory per instance".into(),
            segments,
            panels: split_panels(bars),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testdata::{meta, rows};
    use crate::results::{read_samples, summarize, RunMeta, SampleWriter};

    const MIB: f64 = 1024.0 * 1024.0;

    /// A results directory on disk with native at ≈1.6 MiB and a VM at ≈250 MiB, read back.
    fn native_and_vm() -> (tempfile::TempDir, RunSummary) {
        let dir = tempfile::tempdir().unwrap();
        let mut m = meta("startup", "h", &["native", "runc", "vm"]);
        m.backends[0].stack = Stack::Native;
        m.backends[2].stack = Stack::Vm;
        let near = |v: f64| [v * 0.99, v, v * 1.01, v * 1.02, v * 0.98];
        let mut samples = Vec::new();
        samples.extend(rows("native", "memory_pss", "B", &near(1.6 * MIB)));
        samples.extend(rows("runc", "memory_pss", "B", &near(2.4 * MIB)));
        samples.extend(rows("vm", "memory_pss", "B", &near(250.0 * MIB)));
        samples.extend(rows("vm", "memory_vmm", "B", &near(60.0 * MIB)));
        samples.extend(rows("vm", "memory_guest_ram", "B", &near(190.0 * MIB)));
        samples.extend(rows("vm", "memory_guest_used", "B", &near(40.0 * MIB)));
        m.write(&dir.path().join(crate::results::META_FILE))
            .unwrap();
        let path = dir.path().join(crate::results::SAMPLES_FILE);
        let mut w = SampleWriter::replace(&path).unwrap();
        for r in &samples {
            w.write(r).unwrap();
        }
        drop(w);
        let m = RunMeta::read(&dir.path().join(crate::results::META_FILE)).unwrap();
        let s = summarize(&m, &read_samples(&path).unwrap());
        (dir, s)
    }

    #[test]
    fn a_vm_splits_into_parts_that_add_up_to_its_pss() {
        let (_dir, s) = native_and_vm();
        let vm = memory_parts(s.backend("vm").unwrap()).unwrap();
        let names: Vec<&str> = vm.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [WORKLOAD, GUEST_OS, GUEST_FREE, VMM]);
        let total: f64 = vm.iter().map(|(_, v)| v).sum();
        assert!((total - 250.0 * MIB).abs() < 0.5 * MIB, "{total}");
        let runc = memory_parts(s.backend("runc").unwrap()).unwrap();
        assert_eq!(runc[0].0, WORKLOAD);
        assert!((runc[0].1 - 1.6 * MIB).abs() < 0.01 * MIB, "{runc:?}");
    }

    /// The acceptance check of the issue: both bars at least 10 px tall by the geometry the
    /// drawing uses, the PNG painted in the segment's colour over that height, no tick below 0.
    #[test]
    fn a_native_bar_and_a_vm_bar_both_read_and_no_tick_is_negative() {
        let (dir, s) = native_and_vm();
        let chart = memory_chart(&s).unwrap();
        let geometry = super::super::stacked::geometry(&chart);
        let out = dir.path().join("charts");
        super::super::render_all(std::slice::from_ref(&chart), &out).unwrap();
        let png = read_png(&out.join("memory.png"));
        for backend in ["native", "vm"] {
            let bar = geometry.iter().find(|g| g.backend == backend).unwrap();
            let height = bar.y_bottom - bar.y_top;
            println!("{backend}: bar {height} px tall, x {}", bar.x);
            assert!(height >= 10, "{backend}: {height} px");
            let (seg, top, bottom) = bar.segments.last().unwrap();
            let colour = super::super::segment_color(seg);
            let painted = (*top + 1..*bottom - 1)
                .filter(|y| png.pixel(bar.x, *y) == [colour.0, colour.1, colour.2])
                .count() as i32;
            assert!(painted >= bottom - top - 3, "{backend} {seg}: {painted} px");
        }
        for (i, ticks) in super::super::stacked::panel_ticks(&chart)
            .iter()
            .enumerate()
        {
            println!("panel {i} ticks: {ticks:?}");
            assert!(ticks.iter().all(|t| *t >= 0.0), "{ticks:?}");
        }
        let panels = match &chart.kind {
            ChartKind::Stacked(d) => d.panels.len(),
            _ => 0,
        };
        assert_eq!(panels, 2, "native and the VM stand in panels of their own");
    }

    struct Png {
        width: usize,
        channels: usize,
        bytes: Vec<u8>,
    }

    impl Png {
        fn pixel(&self, x: i32, y: i32) -> [u8; 3] {
            let i = (y as usize * self.width + x as usize) * self.channels;
            [self.bytes[i], self.bytes[i + 1], self.bytes[i + 2]]
        }
    }

    fn read_png(path: &std::path::Path) -> Png {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).unwrap();
        buf.truncate(frame.buffer_size());
        Png {
            width: frame.width as usize,
            channels: frame.color_type.samples(),
            bytes: buf,
        }
    }
}
