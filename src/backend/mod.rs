//! Backends: the isolation technologies being compared, behind one interface.
//!
//! A [`Backend`] probes whether it can run here ([`Backend::availability`], where "absent" is an
//! answer, not an error) and does the slow, cacheable work once per scenario
//! ([`Backend::prepare`]: bundles, initramfs, kernel extraction). The [`Prepared`] result launches
//! [`Instance`]s. An instance knows its host-side processes, delivers [`Event`]s stamped with the
//! host's monotonic clock on arrival (the guest never reports times), and removes everything it
//! created in [`Instance::teardown`], which also runs on `Drop`.

pub use cvm_runtime::cgroup;
pub mod bundle;
pub mod cgroup_trace;
pub mod command;
pub mod container;
pub mod docker;
pub mod events;
pub mod io_dir;
pub mod listen_watch;
pub mod native;
pub mod oci;
pub mod output;
pub mod placement;
pub mod podman;
pub mod process;
pub mod procfs;
pub mod rootless;
pub mod vm;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Instant;

pub use cvm_proto::metric::Layer;

use crate::image::{libs, Image};
use crate::scenario::{BackendKind, Scenario};

pub use crate::results::{Availability, Stack};
pub use events::{Event, ExitInfo};

/// The workload's PATH on every backend (the image's directories; on native, the host's).
pub const WORKLOAD_PATH: &str = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";

/// A program on the host: the first match in `PATH`, the one lookup every backend uses to find
/// what it runs and what its disk layer counts (no distribution's directories written in: a
/// root shell's PATH has the sbin directories where Debian puts runc and dockerd).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Executables and the shared libraries each loads (one resolver, [`libs::shared_libraries`]),
/// the files of a runtime or hypervisor disk layer; a file listed twice is kept once.
pub fn with_libraries(executables: &[PathBuf]) -> Result<Vec<PathBuf>, libs::LibsError> {
    let mut files: Vec<PathBuf> = Vec::new();
    for exe in executables {
        for f in std::iter::once(exe.clone()).chain(libs::shared_libraries(exe)?) {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// Everything a launch needs to know beyond the prepared artefacts.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    /// Distinguishes concurrent instances (density) in names of cgroups, netns and links.
    pub instance: u32,
    /// Unique per cvm process, so two cvm runs never collide on resource names.
    pub run_id: String,
}

/// Files on disk by the stack layer they belong to. Iterated bottom-up (the order of [`Layer`]),
/// so a file two layers list is counted once, in the lowest that needs it.
pub type DiskLayers = BTreeMap<Layer, Vec<PathBuf>>;

/// Configuration facts recorded with every sample of a backend: accelerator, machine type,
/// boot path, network mode, cgroup version, runtime version...
pub type BackendConfig = BTreeMap<String, String>;

/// The scenario's resource limits as every backend applies them (cgroup, OCI bundle, Docker
/// flags): one conversion, so no backend rounds differently. With a load phase, the instance is
/// also confined to its CPUs ([`placement`]).
pub fn limits(scenario: &Scenario) -> cgroup::Limits {
    let resources = &scenario.resources;
    cgroup::Limits {
        memory_bytes: resources.memory_mib.get_ref() * 1024 * 1024,
        cpus: *resources.vcpus.get_ref(),
        cpuset: placement::for_scenario(scenario)
            .ok()
            .map(|p| placement::cpu_list(&p.instance)),
        pids: resources.pids.as_ref().map(|p| *p.get_ref()),
    }
}

/// One isolation technology.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn stack(&self) -> Stack;
    /// Probes the host. Missing tools or refusals are `Unavailable`, never an `Err`.
    fn availability(&self) -> Availability;
    /// The slow, cacheable work done once per scenario.
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError>;
}

/// A backend ready to launch instances of one scenario.
pub trait Prepared: Send {
    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError>;
    /// Configuration facts recorded with every sample.
    fn config(&self) -> BackendConfig;
    /// Files that make up each disk layer of this backend's stack (`disk.<layer>`), for the
    /// footprint measurement. Hard links are counted once.
    fn disk_layers(&self) -> DiskLayers {
        BTreeMap::new()
    }
    /// Files of a layer that pack copies of files other layers count (a VM's initramfs holds
    /// the image's app and libraries): each counts only its own bytes.
    fn disk_packed(&self) -> Vec<crate::usage::disk::Packed> {
        Vec::new()
    }
    /// What cvm keeps beside the stack only to start it faster (a VM's decompressed kernel):
    /// counted apart, as `disk_cache`, in no layer and not in `disk_footprint`.
    fn disk_cache(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Host-wide figures of what the backend set up once for the whole run (a private Docker
    /// daemon's start), recorded once, never inside an instance's phases.
    fn host_figures(&self) -> Vec<(cvm_proto::metric::Metric, f64)> {
        Vec::new()
    }
}

/// One running instance of the workload.
pub trait Instance: Send {
    /// The host-clock instant the launch began: the zero of every phase.
    fn started_at(&self) -> Instant;
    /// Markers, backend phases and the exit, each stamped on arrival.
    fn events(&self) -> &Receiver<Event>;
    /// Every host process that stays resident for the instance in production use (the VMM, a
    /// shim, the container's or workload's processes; not a runtime or client that would have
    /// exited), for PSS. A supervisor measured apart ([`Supervisor::Apart`]) is added to it.
    fn host_pids(&self) -> Vec<u32>;
    /// Where a port the workload listens on is reachable from the host.
    fn endpoint(&self, port: u16) -> Option<SocketAddr>;
    /// What tells a VMM's mappings apart in `/proc/PID/smaps` (the guest RAM's mapping, the
    /// kernel and initramfs it was handed), so its PSS can be split into the guest's RAM, the
    /// translation cache, the boot images and QEMU's own; `None` for other backends.
    fn vmm_layout(&self) -> Option<crate::usage::memory::VmmLayout> {
        None
    }
    /// The process that supervises the container in the deployment this backend stands for,
    /// as the instance's memory counts it.
    fn supervisor(&self) -> Supervisor {
        Supervisor::None
    }
    /// Host-wide daemons the instance depends on but shares with every other instance of the
    /// host (dockerd, containerd): measured apart, as `memory_daemon`, never in its PSS.
    fn daemon_pids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Whether the guest reports its own memory in use (`CVM:memory`) while it runs.
    fn reports_guest_memory(&self) -> bool {
        false
    }
    /// Whether the instance boots a kernel of its own (a VM): then init's start ends the
    /// `kernel` phase and its setup is the guest OS's (`guest_init`), not a runtime's.
    fn has_guest_kernel(&self) -> bool {
        false
    }
    /// The instance's cgroup directory (v2) or memory-controller directory (v1), if it has one.
    fn memory_cgroup(&self) -> Option<PathBuf> {
        None
    }
    /// Stops the workload (politely, then by force) and removes every resource the instance
    /// created. Idempotent.
    fn teardown(&mut self) -> Result<(), BackendError>;
}

/// Failures of the backend layer. Each backend's own error hangs off `source`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend}: preparing failed")]
    Prepare {
        backend: BackendKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{backend}: launch failed")]
    Launch {
        backend: BackendKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{backend}: teardown failed")]
    Teardown {
        backend: BackendKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BackendError {
    pub fn prepare(
        backend: BackendKind,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError::Prepare {
            backend,
            source: Box::new(e),
        }
    }
    pub fn launch(backend: BackendKind, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError::Launch {
            backend,
            source: Box::new(e),
        }
    }
    pub fn teardown(
        backend: BackendKind,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError::Teardown {
            backend,
            source: Box::new(e),
        }
    }
}

/// The process that stays resident to supervise a container in the deployment a backend
/// stands for, as the instance's memory counts it (one rule for every backend; the backend's
/// `supervisor` configuration entry says which, in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervisor {
    /// None is counted: a plain process (native), a VM's QEMU (itself the instance), or a
    /// runtime run detached with no shim (runc, crun, runsc), said beside the figure.
    None,
    /// Host processes among `host_pids` (Docker's containerd-shim).
    Pids(Vec<u32>),
    /// Measured apart and added to the instance's PSS, in bytes: cvm waits in-process where
    /// `cvm-runtime run` stays resident (the `container` backend).
    Apart(u64),
}

impl Supervisor {
    /// The bytes added to the PSS of `host_pids`: only a supervisor measured apart.
    pub fn apart(&self) -> u64 {
        match self {
            Supervisor::Apart(bytes) => *bytes,
            _ => 0,
        }
    }
}

/// Every host process's PSS that stays resident for `instance`, its supervisor included (the
/// one resident-process rule, for the idle sample, the load phase's peak and density).
pub fn resident_pss(instance: &dyn Instance) -> u64 {
    crate::usage::memory::pss_total(&instance.host_pids()) + instance.supervisor().apart()
}

/// The configuration key saying which supervisor a backend's memory counts.
pub use crate::results::SUPERVISOR_KEY;

/// Host-wide options that backends may need (from the command line).
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    pub accel: Option<vm::accel::AccelChoice>,
    /// The `vm` backend's guest kernel; `vm-minimal` always boots the minimal one and
    /// `vm-classic` never does.
    pub kernel: vm::KernelChoice,
    pub docker: docker::DockerOptions,
}

/// The backend implementation for a name.
pub fn create(kind: BackendKind, opts: &HostOptions) -> Box<dyn Backend> {
    match kind {
        BackendKind::Native => Box::new(native::NativeBackend),
        BackendKind::Container => Box::new(container::ContainerBackend),
        BackendKind::Runc | BackendKind::Crun | BackendKind::Gvisor => {
            Box::new(oci::OciBackend::new(kind))
        }
        BackendKind::Docker => Box::new(docker::DockerBackend::new(&opts.docker)),
        BackendKind::Podman => Box::new(podman::PodmanBackend::new()),
        BackendKind::Vm | BackendKind::VmMinimal | BackendKind::VmClassic => {
            Box::new(vm::VmBackend::new(kind, opts))
        }
        BackendKind::VmUser => Box::new(vm::VmBackend::user_net(opts)),
    }
}
