//! What goes in each box of the stack diagram: the layers of each stack and the measured
//! figures attributed to them (pure, unit-tested).

use crate::report::format::format_value;
use crate::results::{Availability, BackendSummary, RunSummary, Stack};
use cvm_proto::metric::{Layer as DiskLayer, Metric, DISK_PREFIX, PHASE_PREFIX};

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

    /// The disk layer this box's files are counted in (`disk.<layer>`), where it has one: the
    /// host OS and the infrastructure are not part of any backend's footprint.
    pub fn disk_layer(self) -> Option<DiskLayer> {
        Some(match self {
            Layer::App => DiskLayer::App,
            Layer::Libs => DiskLayer::Libs,
            Layer::GuestOs => DiskLayer::GuestOs,
            Layer::Hypervisor => DiskLayer::Hypervisor,
            Layer::Runtime => DiskLayer::Runtime,
            Layer::HostOs | Layer::Infrastructure => return None,
        })
    }

    /// The layer's short name, as in metrics (`disk.<key>`) and the colour table.
    pub fn key(self) -> &'static str {
        match (self.disk_layer(), self) {
            (Some(disk), _) => disk.name(),
            (None, Layer::HostOs) => "host_os",
            (None, _) => "infrastructure",
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
        use cvm_proto::metric::Phase;
        Some(match (stack, Phase::from_name(phase)?) {
            // The host kernel's own work, on whichever stack it happens.
            (_, Phase::CgroupJoin) => Layer::HostOs,
            (Stack::Vm, Phase::VmmStart) => Layer::Hypervisor,
            // `firmware` (from `cont` to kernel entry; on vm-classic mostly the bzImage
            // decompressing itself) is guest OS work, as the module docs count it.
            (Stack::Vm, Phase::Firmware | Phase::Kernel | Phase::GuestInit) => Layer::GuestOs,
            (Stack::Container, Phase::Runtime) => Layer::Runtime,
            // The workload's start to its readiness, and the first answer the probe gets.
            (_, Phase::WorkloadStart | Phase::Probe) => Layer::App,
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
        .filter_map(|(m, v)| Some((m.strip_prefix(PHASE_PREFIX)?, v.stats.median)))
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

    let pss = median(b, Metric::MemoryPss.name());
    let overhead = median(b, Metric::MemoryOverhead.name());
    let isolation = Layer::isolation(stack);
    // A VM's memory in its parts, where measured: QEMU's own on the hypervisor, the guest's own
    // use (kernel, caches) on the guest OS, the workload (as on native) in the app.
    let vmm = median(b, Metric::MemoryVmm.name()).filter(|_| stack == Stack::Vm);
    let guest_used = median(b, Metric::MemoryGuestUsed.name()).filter(|_| stack == Stack::Vm);
    let app_as_on_native = pss.zip(overhead).map(|(p, o)| p - o);
    let boxes = layers
        .iter()
        .zip(startup)
        .map(|(&layer, startup)| {
            let split = match (layer, vmm, guest_used, app_as_on_native) {
                (Layer::Hypervisor, Some(v), _, _) => Some((Some(v), Some("QEMU itself"))),
                (Layer::GuestOs, _, Some(g), Some(app)) => {
                    Some((Some(g - app), Some("guest's own use")))
                }
                (Layer::GuestOs, _, Some(g), None) => {
                    Some((Some(g), Some("guest's own use, workload included")))
                }
                _ => None,
            };
            let (memory, memory_note) = split.unwrap_or(match (layer, pss, overhead) {
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
            });
            LayerBox {
                layer,
                disk: median(b, &format!("{DISK_PREFIX}{}", layer.key())),
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
        ready: median(b, Metric::ReadyLatency.name()),
        memory_total: pss,
        disk_total: median(b, Metric::DiskFootprint.name()),
        unattributed,
        boxes,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::results::{BackendInfo, Environment, MetricSummary, ACCEL_KEY};
    use crate::stats::Summary;
    use std::collections::BTreeMap;

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
                config: BTreeMap::from([(ACCEL_KEY.to_string(), "tcg".to_string())])
                    .into_iter()
                    .filter(|_| stack == Stack::Vm)
                    .collect(),
            },
            failed_runs: 0,
            excluded_samples: 0,
            client_bound_runs: 0,
            metrics: metrics
                .iter()
                .map(|(m, u, v)| {
                    (
                        m.to_string(),
                        MetricSummary {
                            unit: u.to_string(),
                            stats: Summary::of(&[*v]).unwrap(),
                            ratio_to_native: None,
                            ratio_unavailable: None,
                        },
                    )
                })
                .collect(),
        }
    }

    pub(crate) fn summary(backends: Vec<BackendSummary>) -> RunSummary {
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
            limitations: Vec::new(),
        }
    }

    pub(crate) fn find(c: &Column, l: Layer) -> &LayerBox {
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
                ("phase.vmm_start", "s", 0.1),
                ("phase.kernel", "s", 0.5),
                ("phase.guest_init", "s", 1.0),
                ("phase.workload_start", "s", 0.3),
                ("phase.probe", "s", 0.1),
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
        assert!((find(&c, Layer::App).startup.unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(find(&c, Layer::Libs).startup, None);
        assert_eq!(
            find(&c, Layer::HostOs).detail.as_deref(),
            Some("Linux 6.1.0")
        );
        let shares: f64 = c.boxes.iter().filter_map(|b| b.share).sum();
        assert!((shares - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_vms_memory_parts_go_to_the_hypervisor_the_guest_os_and_the_app() {
        let vm = backend(
            "vm",
            Stack::Vm,
            &[
                ("memory_pss", "B", 330e6),
                ("memory_overhead", "B", 328e6),
                ("memory_vmm", "B", 147e6),
                ("memory_guest_ram", "B", 183e6),
                ("memory_guest_used", "B", 34e6),
            ],
        );
        let c = column(&summary(vec![vm]), Stack::Vm);
        let hv = find(&c, Layer::Hypervisor);
        assert_eq!(
            (hv.memory, hv.memory_note),
            (Some(147e6), Some("QEMU itself"))
        );
        assert_eq!(find(&c, Layer::GuestOs).memory, Some(32e6));
        assert_eq!(find(&c, Layer::App).memory, Some(2e6));
        assert_eq!(c.memory_total, Some(330e6));
    }

    #[test]
    fn native_memory_is_the_apps_and_unknown_phases_are_kept_apart() {
        let s = summary(vec![backend(
            "native",
            Stack::Native,
            &[
                ("memory_pss", "B", 5e6),
                ("phase.cgroup_join", "s", 0.001),
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
}
