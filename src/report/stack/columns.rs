//! What goes in each box of the stack diagram: one column per backend that ran, its layers, and
//! the measured figures attributed to them (pure, unit-tested).

use super::layers::{Group, Layer};
use crate::report::format::format_value;
use crate::results::{Availability, BackendSummary, RunSummary, ACCEL_KEY, SUPERVISOR_KEY};
use cvm_proto::metric::{Layer as DiskLayer, Metric, Phase, DISK_PREFIX, PHASE_PREFIX};

/// The figures in one box.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBox {
    pub layer: Layer,
    /// What the layer is on this backend ("Docker Engine: dockerd, containerd, shim, runc").
    pub label: String,
    pub disk: Option<f64>,
    /// Disk layers no other box of the column shows whose bytes are in `disk`.
    pub disk_extra: Vec<String>,
    pub memory: Option<f64>,
    /// What the memory figure means when it is not simply this layer's ("over native").
    pub memory_note: Option<&'static str>,
    /// What `memory` is made of, where measured (a VM's QEMU: its own, the translation cache,
    /// the boot images), each with its bytes.
    pub memory_parts: Vec<(&'static str, f64)>,
    /// Host-wide daemons this layer needs (`memory_daemon`): shared by every instance on the
    /// host, so shown apart and never in `memory`.
    pub shared_memory: Option<f64>,
    /// Median time of the phases attributed to this layer, and its share of their sum.
    pub startup: Option<f64>,
    pub share: Option<f64>,
    /// A descriptive line (host kernel, CPU) for the layers cvm does not measure.
    pub detail: Option<String>,
}

/// One backend's stack: a heading and its boxes, top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub group: Group,
    pub backend: String,
    /// The accelerator or platform it ran on, where it has one.
    pub note: Option<String>,
    pub ready: Option<f64>,
    pub memory_total: Option<f64>,
    pub disk_total: Option<f64>,
    /// Phases with no layer (unknown names), in seconds: shown so shares are honest.
    pub unattributed: f64,
    pub boxes: Vec<LayerBox>,
    /// The isolation boundary, where the run measured isolation.
    pub boundary: Option<super::boundary::Boundary>,
}

fn median(b: &BackendSummary, metric: &str) -> Option<f64> {
    b.metrics.get(metric).map(|m| m.stats.median)
}

/// Whether a backend ran and recorded something to draw.
fn ran(b: &BackendSummary) -> bool {
    matches!(b.info.availability, Availability::Available) && !b.metrics.is_empty()
}

/// Where the cgroup joins of the backends with a runtime are drawn: one rule for the whole
/// diagram, so that every runtime box covers the same span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinAttribution {
    /// Every runtime's join was measured (`phase.cgroup_join`): each is drawn on the host OS,
    /// as native's is.
    HostOs,
    /// Some runtime's join went unseen (inside its `phase.runtime`): every runtime's (and the
    /// Sentry's) box then holds its backend's join, cvm's own included.
    InRuntime,
}

impl JoinAttribution {
    /// The diagram's legend line for it.
    pub fn legend(self) -> &'static str {
        match self {
            JoinAttribution::HostOs => {
                "Startup: every backend's cgroup join (its cgroup.procs writes) is on the host                  OS; runtime boxes cover the runtime's work without it."
            }
            JoinAttribution::InRuntime => {
                "Startup: a runtime's own cgroup join was not measured in this run, so every                  runtime box includes its backend's cgroup join (native's stays on the host OS)."
            }
        }
    }
}

/// The rule for `s`: [`JoinAttribution::HostOs`] unless a backend with a runtime (or Sentry)
/// that ran has a `runtime` phase and no `cgroup_join` (older results, or a host where cvm
/// could not trace a runtime's writes).
pub fn join_attribution(s: &RunSummary) -> JoinAttribution {
    let join = format!("{PHASE_PREFIX}{}", Phase::CgroupJoin.name());
    let runtime = format!("{PHASE_PREFIX}{}", Phase::Runtime.name());
    let unseen = s.backends.iter().filter(|b| ran(b)).any(|b| {
        matches!(Group::of(&b.info), Group::Containers | Group::Sandbox)
            && b.metrics.contains_key(&runtime)
            && !b.metrics.contains_key(&join)
    });
    if unseen {
        JoinAttribution::InRuntime
    } else {
        JoinAttribution::HostOs
    }
}

/// The layer a phase's time goes to in `group`'s column under `joins`.
fn layer_of_phase(group: Group, phase: &str, joins: JoinAttribution) -> Option<Layer> {
    let with_runtime = matches!(group, Group::Containers | Group::Sandbox);
    if joins == JoinAttribution::InRuntime && with_runtime && phase == Phase::CgroupJoin.name() {
        return group.isolation();
    }
    Layer::of_phase(group, phase)
}

/// One column per backend that ran, grouped native | containers | sandbox | VMs, in the run's
/// order within a group.
pub fn columns(s: &RunSummary) -> Vec<Column> {
    let mut cols: Vec<Column> = s
        .backends
        .iter()
        .filter(|b| ran(b))
        .map(|b| column(s, b))
        .collect();
    // Stable: the run's order within a group.
    cols.sort_by_key(|c| c.group);
    cols
}

/// The backends that have no column, each with why ("crun: unavailable (...)").
pub fn not_drawn(s: &RunSummary) -> Vec<String> {
    s.backends
        .iter()
        .filter(|b| !ran(b))
        .map(|b| match (&b.info.availability, &b.info.error) {
            (Availability::Unavailable { reason, .. }, _) => {
                format!("{}: unavailable ({reason})", b.info.backend)
            }
            (_, Some(err)) => format!("{}: failed ({err})", b.info.backend),
            _ => format!("{}: no data", b.info.backend),
        })
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

/// The accelerator (a VM's) or platform (a sandbox's) the backend ran on.
fn platform_note(group: Group, b: &BackendSummary) -> Option<String> {
    match group {
        Group::Vms => b.info.accelerator().map(|a| format!("accelerator: {a}")),
        Group::Sandbox => b
            .info
            .config
            .get("platform")
            .or_else(|| b.info.config.get(ACCEL_KEY))
            .map(|p| format!("platform: {p}")),
        _ => None,
    }
}

/// The disk metrics a backend recorded in layers no box of its column shows (a layer a newer
/// backend records, such as a sandbox's own kernel layer): they go in the isolation layer's box,
/// named, so their bytes are shown rather than dropped.
fn unshown_disk_layers<'a>(b: &'a BackendSummary, layers: &[Layer]) -> Vec<(&'a str, f64)> {
    let shown: Vec<&str> = layers
        .iter()
        .filter_map(|l| l.disk_layer())
        .map(DiskLayer::name)
        .collect();
    b.metrics
        .iter()
        .filter_map(|(m, v)| {
            let layer = m.strip_prefix(DISK_PREFIX)?;
            (!shown.contains(&layer)).then_some((layer, v.stats.median))
        })
        .collect()
}

/// The supervisor's share of a container's memory, where one is counted (`memory_supervisor`).
fn supervisor_part(b: &BackendSummary) -> Option<(&'static str, f64)> {
    median(b, Metric::MemorySupervisor.name()).map(|m| ("of it, its supervisor", m))
}

/// Which supervisor a container's memory counts, from its configuration ("containerd-shim-
/// runc-v2", "cvm-runtime's waiter", "none"), so no figure is read without it.
fn supervisor_detail(b: &BackendSummary) -> Option<String> {
    let text = b.info.config.get(SUPERVISOR_KEY)?;
    let short = text.split([',', ':']).next().unwrap_or(text).trim();
    Some(format!("supervisor: {short}"))
}

/// A VM's memory in boxes that add up to its PSS, where the run measured the parts: QEMU
/// without guest RAM on the hypervisor (with what it is made of), the guest's own use less the
/// workload on the guest OS, the guest RAM the guest touched but holds free in a box of its own,
/// and the workload as on native in the app.
struct VmMemory {
    hypervisor: f64,
    parts: Vec<(&'static str, f64)>,
    guest_os: f64,
    guest_free: f64,
    /// The workload as on native; `None` without a native baseline (then in the guest OS's).
    app: Option<f64>,
}

type BoxMemory = (Option<f64>, Option<&'static str>, Vec<(&'static str, f64)>);

impl VmMemory {
    fn of(&self, layer: Layer) -> BoxMemory {
        match layer {
            Layer::Hypervisor => (
                Some(self.hypervisor),
                Some("QEMU without guest RAM"),
                self.parts.clone(),
            ),
            Layer::GuestOs => (
                Some(self.guest_os),
                Some(if self.app.is_some() {
                    "guest's own use"
                } else {
                    "guest's own use, workload included"
                }),
                Vec::new(),
            ),
            // The box's own name says what it holds.
            Layer::GuestFree => (Some(self.guest_free), None, Vec::new()),
            Layer::App => (self.app, Some("as on native"), Vec::new()),
            _ => (None, None, Vec::new()),
        }
    }
}

fn vm_memory(b: &BackendSummary, app: Option<f64>) -> Option<VmMemory> {
    let vmm = median(b, Metric::MemoryVmm.name())?;
    let guest_ram = median(b, Metric::MemoryGuestRam.name())?;
    let used = median(b, Metric::MemoryGuestUsed.name())?;
    let parts = [
        (Metric::MemoryVmmBase, "QEMU itself, any guest"),
        (
            Metric::MemoryVmmTcg,
            "TCG translation cache (emulation only)",
        ),
        (
            Metric::MemoryVmmBoot,
            "its copies of the kernel and initramfs",
        ),
    ]
    .into_iter()
    .filter_map(|(m, name)| Some((name, median(b, m.name())?)))
    .collect();
    Some(VmMemory {
        hypervisor: vmm,
        parts,
        guest_os: used - app.unwrap_or(0.0),
        guest_free: guest_ram - used,
        app,
    })
}

/// The column of one backend (which need not have run: its boxes are then empty).
pub fn column(s: &RunSummary, b: &BackendSummary) -> Column {
    let group = Group::of(&b.info);
    let layers = group.layers();
    let phases: Vec<(&str, f64)> = b
        .metrics
        .iter()
        .filter_map(|(m, v)| Some((m.strip_prefix(PHASE_PREFIX)?, v.stats.median)))
        .collect();
    let phase_total: f64 = phases.iter().map(|(_, v)| v).sum();
    let mut unattributed = 0.0;
    let mut startup = vec![None::<f64>; layers.len()];
    let joins = join_attribution(s);
    for (p, v) in &phases {
        match layer_of_phase(group, p, joins).and_then(|l| layers.iter().position(|x| *x == l)) {
            Some(i) => *startup[i].get_or_insert(0.0) += v,
            None => unattributed += v,
        }
    }

    let pss = median(b, Metric::MemoryPss.name());
    let overhead = median(b, Metric::MemoryOverhead.name());
    let daemons = median(b, Metric::MemoryDaemon.name());
    let isolation = group.isolation();
    let is_vm = group == Group::Vms;
    let app_as_on_native = pss.zip(overhead).map(|(p, o)| p - o);
    let vm = vm_memory(b, app_as_on_native).filter(|_| is_vm);
    let unknown = unshown_disk_layers(b, layers);
    let boxes = layers
        .iter()
        .zip(startup)
        // A box of its own only where the run measured it.
        .filter(|(&l, _)| l != Layer::GuestFree || vm.is_some())
        .map(|(&layer, startup)| {
            let (memory, memory_note, memory_parts) = match &vm {
                Some(vm) => vm.of(layer),
                None => {
                    let (m, note) = match (layer, pss, overhead) {
                        (Layer::App, Some(p), Some(o)) if isolation.is_some() => {
                            (Some(p - o), Some("as on native"))
                        }
                        (Layer::App, Some(p), _) if isolation.is_none() => (Some(p), None),
                        (l, _, Some(o)) if Some(l) == isolation => (
                            Some(o),
                            Some(if is_vm {
                                "over native, incl. guest OS"
                            } else {
                                "over native"
                            }),
                        ),
                        _ => (None, None),
                    };
                    let parts = supervisor_part(b).filter(|_| Some(layer) == isolation);
                    (m, note, parts.into_iter().collect())
                }
            };
            let mut disk = layer.disk_layer().and_then(|d| median(b, &d.metric()));
            let mut disk_extra = Vec::new();
            if layer.takes_unknown_disk(group) {
                for (name, bytes) in &unknown {
                    *disk.get_or_insert(0.0) += bytes;
                    disk_extra.push((*name).to_string());
                }
            }
            LayerBox {
                layer,
                label: layer.label(&b.info.backend),
                disk,
                disk_extra,
                memory,
                memory_note,
                memory_parts,
                shared_memory: daemons.filter(|_| Some(layer) == isolation),
                startup,
                share: startup
                    .filter(|_| phase_total > 0.0)
                    .map(|t| t / phase_total),
                detail: host_detail(s, layer).or_else(|| {
                    supervisor_detail(b).filter(|_| Some(layer) == isolation && !is_vm)
                }),
            }
        })
        .collect();
    Column {
        group,
        backend: b.info.backend.clone(),
        note: match (platform_note(group, b), b.failed_runs) {
            (note, 0) => note,
            (None, n) => Some(format!("{n} measured run(s) failed")),
            (Some(p), n) => Some(format!("{p} · {n} measured run(s) failed")),
        },
        ready: median(b, Metric::ReadyLatency.name()),
        memory_total: pss,
        disk_total: median(b, Metric::DiskFootprint.name()),
        unattributed,
        boxes,
        boundary: super::boundary::boundary(group, b),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::{BackendInfo, Environment, MetricSummary, Stack};
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
            status: crate::results::RunStatus::Done,
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
            pair_ratios: Vec::new(),
            limitations: Vec::new(),
        }
    }

    pub(crate) fn find(c: &Column, l: Layer) -> &LayerBox {
        c.boxes.iter().find(|b| b.layer == l).unwrap()
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
        let c = column(&s, &s.backends[0]);
        assert_eq!(c.backend, "vm");
        assert_eq!(c.group, Group::Vms);
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
    fn a_vms_memory_boxes_add_up_to_its_pss() {
        let vm = backend(
            "vm",
            Stack::Vm,
            &[
                ("memory_pss", "B", 330e6),
                ("memory_overhead", "B", 328e6),
                ("memory_vmm", "B", 147e6),
                ("memory_vmm_base", "B", 40e6),
                ("memory_vmm_tcg", "B", 45e6),
                ("memory_vmm_boot", "B", 62e6),
                ("memory_guest_ram", "B", 183e6),
                ("memory_guest_used", "B", 34e6),
                ("phase.kernel", "s", 1.0),
                ("phase.vmm_start", "s", 0.5),
            ],
        );
        let s = summary(vec![vm]);
        let c = column(&s, &s.backends[0]);
        let hv = find(&c, Layer::Hypervisor);
        assert_eq!(
            (hv.memory, hv.memory_note),
            (Some(147e6), Some("QEMU without guest RAM"))
        );
        assert_eq!(
            hv.memory_parts,
            [
                ("QEMU itself, any guest", 40e6),
                ("TCG translation cache (emulation only)", 45e6),
                ("its copies of the kernel and initramfs", 62e6)
            ]
        );
        assert_eq!(find(&c, Layer::GuestOs).memory, Some(32e6));
        let free = find(&c, Layer::GuestFree);
        assert_eq!(free.memory, Some(149e6));
        assert_eq!((free.disk, free.startup), (None, None));
        assert_eq!(find(&c, Layer::App).memory, Some(2e6));
        // Startup stays with its layers although a box was added between them.
        assert_eq!(find(&c, Layer::Hypervisor).startup, Some(0.5));
        assert_eq!(find(&c, Layer::GuestOs).startup, Some(1.0));
        let drawn: f64 = c.boxes.iter().filter_map(|b| b.memory).sum();
        assert_eq!(Some(drawn), c.memory_total);
        assert_eq!(c.memory_total, Some(330e6));
    }

    /// An older run without the guest's RAM split keeps the overhead on the hypervisor and has
    /// no box for free guest RAM.
    #[test]
    fn a_vm_without_the_split_has_no_free_ram_box() {
        let vm = backend(
            "vm",
            Stack::Vm,
            &[("memory_pss", "B", 250e6), ("memory_overhead", "B", 248e6)],
        );
        let s = summary(vec![vm]);
        let c = column(&s, &s.backends[0]);
        assert!(c.boxes.iter().all(|b| b.layer != Layer::GuestFree));
        assert_eq!(find(&c, Layer::Hypervisor).memory, Some(248e6));
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
        let c = column(&s, &s.backends[0]);
        assert_eq!(find(&c, Layer::App).memory, Some(5e6));
        assert_eq!(find(&c, Layer::HostOs).startup, Some(0.001));
        assert_eq!(c.unattributed, 0.001);
        assert_eq!(find(&c, Layer::HostOs).share, Some(0.5));
    }

    /// container's and runc's runtime boxes cover the same span: both without the join where
    /// every runtime's join was measured, both with it where runc's was not.
    #[test]
    fn every_runtime_box_covers_the_same_span_of_the_join() {
        let container = || {
            backend(
                "container",
                Stack::Container,
                &[
                    ("phase.cgroup_join", "s", 0.010),
                    ("phase.runtime", "s", 0.004),
                ],
            )
        };
        let runc = |join: bool| {
            let mut m = vec![("phase.runtime", "s", 0.030)];
            if join {
                m.push(("phase.cgroup_join", "s", 0.012));
            }
            backend("runc", Stack::Container, &m)
        };
        let native = || {
            backend(
                "native",
                Stack::Native,
                &[("phase.cgroup_join", "s", 0.009)],
            )
        };
        let s = summary(vec![native(), container(), runc(true)]);
        assert_eq!(join_attribution(&s), JoinAttribution::HostOs);
        let cols = columns(&s);
        for (i, host, runtime) in [(1, 0.010, 0.004), (2, 0.012, 0.030)] {
            assert_eq!(find(&cols[i], Layer::HostOs).startup, Some(host));
            assert_eq!(find(&cols[i], Layer::Runtime).startup, Some(runtime));
        }
        let s = summary(vec![native(), container(), runc(false)]);
        assert_eq!(join_attribution(&s), JoinAttribution::InRuntime);
        let cols = columns(&s);
        assert_eq!(find(&cols[0], Layer::HostOs).startup, Some(0.009));
        assert_eq!(find(&cols[1], Layer::HostOs).startup, None);
        assert!((find(&cols[1], Layer::Runtime).startup.unwrap() - 0.014).abs() < 1e-12);
        assert_eq!(find(&cols[2], Layer::Runtime).startup, Some(0.030));
        assert!(JoinAttribution::InRuntime.legend().contains("includes"));
    }

    #[test]
    fn a_backend_that_did_not_run_has_no_column_and_says_why() {
        let mut crun = backend("crun", Stack::Container, &[]);
        crun.info.availability = Availability::unavailable("hybrid cgroups", "use v2");
        let s = summary(vec![
            crun,
            backend("runc", Stack::Container, &[("ready_latency", "s", 0.02)]),
        ]);
        let cols = columns(&s);
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].backend, "runc");
        assert_eq!(not_drawn(&s), ["crun: unavailable (hybrid cgroups)"]);
    }

    /// Every backend that ran has its own column, in the groups' order, and Docker's runtime
    /// box carries the shared daemons apart from its per-instance memory.
    #[test]
    fn every_backend_gets_a_column_in_its_group() {
        let s = summary(vec![
            backend("native", Stack::Native, &[("memory_pss", "B", 2e6)]),
            backend("vm", Stack::Vm, &[("ready_latency", "s", 2.0)]),
            backend(
                "docker",
                Stack::Container,
                &[
                    ("memory_pss", "B", 9e6),
                    ("memory_overhead", "B", 7e6),
                    ("memory_daemon", "B", 80e6),
                    ("disk.runtime", "B", 120e6),
                    ("phase.runtime", "s", 0.2),
                ],
            ),
            backend(
                "gvisor",
                Stack::Container,
                &[
                    ("memory_overhead", "B", 30e6),
                    ("disk.runtime", "B", 40e6),
                    ("disk.user_space_kernel", "B", 5e6),
                    ("phase.runtime", "s", 0.3),
                    ("phase.workload_start", "s", 0.1),
                ],
            ),
            backend(
                "container",
                Stack::Container,
                &[("ready_latency", "s", 0.003)],
            ),
        ]);
        let cols = columns(&s);
        let order: Vec<(&str, Group)> =
            cols.iter().map(|c| (c.backend.as_str(), c.group)).collect();
        assert_eq!(
            order,
            [
                ("native", Group::Native),
                ("docker", Group::Containers),
                ("container", Group::Containers),
                ("gvisor", Group::Sandbox),
                ("vm", Group::Vms)
            ]
        );
        let engine = find(&cols[1], Layer::Runtime);
        assert_eq!(
            engine.label,
            "Docker Engine: dockerd, containerd, shim, runc"
        );
        assert_eq!(engine.memory, Some(7e6));
        assert_eq!(engine.shared_memory, Some(80e6));
        assert_eq!(find(&cols[1], Layer::App).shared_memory, None);
        let sentry = find(&cols[3], Layer::Sentry);
        // A disk layer no box shows is counted in the isolation layer, named.
        assert_eq!(sentry.disk, Some(45e6));
        assert_eq!(sentry.disk_extra, ["user_space_kernel"]);
        assert_eq!(sentry.memory, Some(30e6));
        assert_eq!(sentry.startup, Some(0.3));
        assert!((sentry.share.unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(
            cols[3].boxes.iter().map(|b| b.layer).collect::<Vec<_>>(),
            Group::Sandbox.layers()
        );
    }

    /// Each container's runtime box says which supervisor its memory counts, and how much of
    /// it that is; a runtime run detached says it counts none.
    #[test]
    fn a_containers_memory_names_its_supervisor() {
        let mut docker = backend(
            "docker",
            Stack::Container,
            &[
                ("memory_pss", "B", 14e6),
                ("memory_overhead", "B", 12e6),
                ("memory_supervisor", "B", 11e6),
            ],
        );
        docker.info.config.insert(
            SUPERVISOR_KEY.into(),
            "containerd-shim-runc-v2, counted in memory_pss".into(),
        );
        let mut runc = backend("runc", Stack::Container, &[("memory_overhead", "B", 1e5)]);
        runc.info.config.insert(
            SUPERVISOR_KEY.into(),
            "none: runc runs detached with no shim".into(),
        );
        let s = summary(vec![docker, runc]);
        let cols = columns(&s);
        let engine = find(&cols[0], Layer::Runtime);
        assert_eq!(engine.memory_parts, [("of it, its supervisor", 11e6)]);
        assert_eq!(
            engine.detail.as_deref(),
            Some("supervisor: containerd-shim-runc-v2")
        );
        assert_eq!(find(&cols[0], Layer::App).detail, None);
        let runc = find(&cols[1], Layer::Runtime);
        assert!(runc.memory_parts.is_empty());
        assert_eq!(runc.detail.as_deref(), Some("supervisor: none"));
    }
}
