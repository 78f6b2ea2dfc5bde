//! What goes in each box of the stack diagram: one column per backend that ran, its layers, and
//! the measured figures attributed to them (pure, unit-tested).

use super::layers::{Group, Layer};
use crate::report::format::format_value;
use crate::results::{Availability, BackendSummary, RunSummary, ACCEL_KEY};
use cvm_proto::metric::{Layer as DiskLayer, Metric, DISK_PREFIX, PHASE_PREFIX};

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
    for (p, v) in &phases {
        match Layer::of_phase(group, p).and_then(|l| layers.iter().position(|x| *x == l)) {
            Some(i) => *startup[i].get_or_insert(0.0) += v,
            None => unattributed += v,
        }
    }

    let pss = median(b, Metric::MemoryPss.name());
    let overhead = median(b, Metric::MemoryOverhead.name());
    let daemons = median(b, Metric::MemoryDaemon.name());
    let isolation = group.isolation();
    let is_vm = group == Group::Vms;
    // A VM's memory in its parts, where measured: QEMU's own on the hypervisor, the guest's own
    // use (kernel, caches) on the guest OS, the workload (as on native) in the app.
    let vmm = median(b, Metric::MemoryVmm.name()).filter(|_| is_vm);
    let guest_used = median(b, Metric::MemoryGuestUsed.name()).filter(|_| is_vm);
    let app_as_on_native = pss.zip(overhead).map(|(p, o)| p - o);
    let unknown = unshown_disk_layers(b, layers);
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
                    Some(if is_vm {
                        "over native, incl. guest OS"
                    } else {
                        "over native"
                    }),
                ),
                _ => (None, None),
            });
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
                shared_memory: daemons.filter(|_| Some(layer) == isolation),
                startup,
                share: startup
                    .filter(|_| phase_total > 0.0)
                    .map(|t| t / phase_total),
                detail: host_detail(s, layer),
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
        let s = summary(vec![vm]);
        let c = column(&s, &s.backends[0]);
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
        let c = column(&s, &s.backends[0]);
        assert_eq!(find(&c, Layer::App).memory, Some(5e6));
        assert_eq!(find(&c, Layer::HostOs).startup, Some(0.001));
        assert_eq!(c.unattributed, 0.001);
        assert_eq!(find(&c, Layer::HostOs).share, Some(0.5));
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
}
