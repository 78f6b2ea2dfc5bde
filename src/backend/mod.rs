//! Backends: the isolation technologies being compared, behind one interface.
//!
//! A [`Backend`] probes whether it can run here ([`Backend::availability`], where "absent" is an
//! answer, not an error) and does the slow, cacheable work once per scenario
//! ([`Backend::prepare`]: bundles, initramfs, kernel extraction). The [`Prepared`] result launches
//! [`Instance`]s. An instance knows its host-side processes, delivers [`Event`]s stamped with the
//! host's monotonic clock on arrival (the guest never reports times), and removes everything it
//! created in [`Instance::teardown`], which also runs on `Drop`.

pub use cvm_runtime::cgroup;
pub mod container;
pub mod docker;
pub mod events;
pub mod io_dir;
pub mod native;
pub mod oci;
pub mod placement;
pub mod process;
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
    /// exited), for PSS.
    fn host_pids(&self) -> Vec<u32>;
    /// Where a port the workload listens on is reachable from the host.
    fn endpoint(&self, port: u16) -> Option<SocketAddr>;
    /// The `/proc/PID/smaps` path prefix of the mapping that holds a VM's guest RAM, so PSS can
    /// be split into the hypervisor's own memory and the guest's; `None` for other backends.
    fn guest_ram_mapping(&self) -> Option<&'static str> {
        None
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
        BackendKind::Vm | BackendKind::VmMinimal | BackendKind::VmClassic => {
            Box::new(vm::VmBackend::new(kind, opts))
        }
        BackendKind::VmUser => Box::new(vm::VmBackend::user_net(opts)),
    }
}
