//! One running guest: QEMU launched from the prepared template with this instance's QMP socket,
//! port forwards and data disk, supervised until teardown.
//!
//! Teardown: QMP `quit` (QEMU stops the guest and exits cleanly), SIGKILL after the common stop
//! grace period, then the per-instance temporary directory (QMP socket) and io directory (data
//! disk) are removed.
//! QEMU is never signalled once reaped, so cvm cannot hit a reused PID. The network needs no
//! per-instance cleanup: the user network lives inside QEMU, and a tap belongs to the prepared
//! backend (see [`super::net`]). Where cvm can create cgroups, QEMU starts inside one of its own
//! (joined before exec, so every thread it creates is in it), which teardown removes after QEMU
//! is gone.

use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::console::{spawn_console_reader, spawn_stderr_reader};
use super::guest::GuestPlan;
use super::qemu::{PortForward, QemuSpec};
use super::{net, qmp};
use crate::backend::cgroup::{self, Cgroup};
use crate::backend::events::Event;
use crate::backend::io_dir::{InstanceIoDir, IoDirError, IoStore};
use crate::backend::process::{StopPolicy, Supervised};
use crate::backend::{BackendError, Instance, LaunchContext};
use crate::image::ext4;
use crate::scenario::BackendKind;
use crate::sys::CommandSetup;
use crate::usage::memory::VmmLayout;
use cvm_proto::metric::Phase;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot create the instance's temporary directory {path}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the instance's data disk")]
    Disk(#[source] ext4::Ext4Error),
    #[error("cannot create the instance's io directory")]
    IoDir(#[source] IoDirError),
    #[error("cannot find a free loopback port for the guest's network")]
    Port(#[source] io::Error),
    #[error("cannot start {program} (install qemu-system-x86)")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot resume the paused QEMU over QMP")]
    Resume(#[source] qmp::QmpError),
    #[error("cannot create QEMU's cgroup")]
    Cgroup(#[source] cgroup::CgroupError),
    #[error("cannot remove QEMU's cgroup")]
    CgroupRemove(#[source] cgroup::CgroupError),
    #[error("cannot remove the instance's temporary directory {path}")]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Starts QEMU from `template` with this instance's QMP socket, forwards and data disk, and the
/// threads that turn its output and exit into events.
pub(super) fn launch(
    kind: BackendKind,
    template: &QemuSpec,
    guest: &GuestPlan,
    io: Option<&IoStore>,
    resources: Option<&cgroup::Resources>,
    ctx: &LaunchContext,
) -> Result<Box<dyn Instance>, BackendError> {
    let fail = |e| BackendError::launch(kind, e);
    let tmp = instance_dir(kind, ctx).map_err(fail)?;
    // From here on the directory is owned by this guard until the instance takes it over.
    let mut cleanup = TempDir(Some(tmp.clone()));
    let mut spec = template.clone();
    spec.qmp = Some(tmp.join("qmp.sock"));
    if !guest.forward_ports.is_empty() && spec.tap.is_none() {
        spec.net = Some(loopback_forwards(&guest.forward_ports).map_err(fail)?);
    }
    let io_dir = data_disk(kind, guest, io, ctx, &mut spec).map_err(fail)?;
    let cgroup = match resources {
        Some(r) => Some(
            Cgroup::create_with(
                &format!("cvm-{}-{kind}-{}", ctx.run_id, ctx.instance),
                r.clone(),
            )
            .map_err(|e| fail(InstanceError::Cgroup(e)))?,
        ),
        None => None,
    };
    let setup = CommandSetup {
        marker: None,
        cgroup_procs: match &cgroup {
            Some(cg) => cg
                .open_procs()
                .map_err(|e| fail(InstanceError::Cgroup(e)))?,
            None => Vec::new(),
        },
    };
    let mut cmd = Command::new(&spec.binary);
    cmd.args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal reaches cvm, which tears down.
        .process_group(0);
    let guard = setup.install(&mut cmd);
    let started_at = Instant::now();
    let mut child = cmd.spawn().map_err(|source| {
        fail(InstanceError::Spawn {
            program: spec.binary.clone(),
            source,
        })
    })?;
    drop(guard);
    let (tx, events) = mpsc::channel();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // From here a failure drops `instance`, whose teardown kills QEMU and removes `tmp`.
    let instance = VmInstance {
        kind,
        qemu: Supervised::from_child(child),
        started_at,
        events,
        qmp: spec.qmp.clone(),
        forwards: spec.net.clone().unwrap_or_default(),
        tmp: cleanup.0.take(),
        io_dir,
        cgroup,
        tap_addr: guest.tap_addr,
        layout: vmm_layout(&spec),
    };
    if let Some(out) = stdout {
        spawn_console_reader(out, tx.clone()).map_err(|e| fail(InstanceError::Thread(e)))?;
    }
    if let Some(err) = stderr {
        spawn_stderr_reader(err, tx.clone()).map_err(|e| fail(InstanceError::Thread(e)))?;
    }
    instance
        .qemu
        .watch_exit(None, 0, tx.clone())
        .map_err(|e| fail(InstanceError::Thread(e)))?;
    if let Some(path) = instance.qmp.as_deref() {
        resume(path, &tx).map_err(fail)?;
    }
    Ok(Box::new(instance))
}

/// This instance's own temporary directory (QMP socket, console), named for the run.
fn instance_dir(kind: BackendKind, ctx: &LaunchContext) -> Result<PathBuf, InstanceError> {
    let tmp = std::env::temp_dir().join(format!(
        "cvm-{}-{}-{}-{:04x}",
        ctx.run_id,
        kind,
        ctx.instance,
        fastrand::u16(..)
    ));
    std::fs::create_dir(&tmp).map_err(|source| InstanceError::TempDir {
        path: tmp.clone(),
        source,
    })?;
    Ok(tmp)
}

/// A free host loopback port for each guest port the host must reach (the user network).
fn loopback_forwards(guest_ports: &[u16]) -> Result<Vec<PortForward>, InstanceError> {
    guest_ports
        .iter()
        .map(|&guest| {
            let host = net::free_loopback_port().map_err(InstanceError::Port)?;
            Ok(PortForward { host, guest })
        })
        .collect()
}

/// The guest's data disk, made in the io directory every backend writes to, so the guest's
/// writes land on the same host filesystem as a container's.
fn data_disk(
    kind: BackendKind,
    guest: &GuestPlan,
    io: Option<&IoStore>,
    ctx: &LaunchContext,
    spec: &mut QemuSpec,
) -> Result<Option<InstanceIoDir>, InstanceError> {
    let (Some(d), Some(store)) = (&guest.disk, io) else {
        return Ok(None);
    };
    let label = format!("{}-{kind}-{}", ctx.run_id, ctx.instance);
    let dir = store.instance_dir(&label).map_err(InstanceError::IoDir)?;
    let img = dir.path().join("data.img");
    ext4::make_disk(&img, d.size_mib, None).map_err(InstanceError::Disk)?;
    spec.disk = Some(img);
    Ok(Some(dir))
}

/// QEMU starts paused (`-S`, with the QMP socket): its own start-up ends when it answers on
/// QMP, and the guest's first instruction follows `cont`. So `vmm_start` is QEMU alone and
/// `firmware` starts at the guest's first instruction on every VM profile.
fn resume(qmp_path: &Path, tx: &mpsc::Sender<Event>) -> Result<(), InstanceError> {
    let mut control = qmp::Qmp::connect(qmp_path, RESUME_TIMEOUT).map_err(InstanceError::Resume)?;
    let resumed = Instant::now();
    control
        .execute("cont", None)
        .map_err(InstanceError::Resume)?;
    let _ = tx.send(Event::Phase(Phase::VmmStart, resumed));
    Ok(())
}

/// How long QEMU may take to open its QMP socket and answer (its own start, before the guest).
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);

/// Removes a directory on drop unless taken.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

struct VmInstance {
    kind: BackendKind,
    qemu: Supervised,
    started_at: Instant,
    events: Receiver<Event>,
    qmp: Option<PathBuf>,
    forwards: Vec<PortForward>,
    tmp: Option<PathBuf>,
    /// Holds the data disk image; removed once QEMU is gone.
    io_dir: Option<InstanceIoDir>,
    cgroup: Option<Cgroup>,
    /// The guest's address on its tap link; ports are reached there directly.
    tap_addr: Option<std::net::Ipv4Addr>,
    /// How QEMU's mappings are told apart for its PSS.
    layout: VmmLayout,
}

/// The guest RAM's mapping, and the kernel and initramfs QEMU was handed, with their lengths.
fn vmm_layout(spec: &QemuSpec) -> VmmLayout {
    VmmLayout {
        guest_ram: super::qemu::GUEST_RAM_MAPPING.into(),
        boot_images: [&spec.kernel, &spec.initrd]
            .into_iter()
            .filter_map(|p| Some((p.display().to_string(), std::fs::metadata(p).ok()?.len())))
            .collect(),
    }
}

/// QEMU is asked to quit over QMP (it ends at once, with no guest shutdown to wait for); the
/// guest's own power-off is not waited for, since a workload may have hung the guest.
struct QmpQuit<'a>(Option<&'a Path>);

impl StopPolicy for QmpQuit<'_> {
    fn request(&self, _qemu: nix::unistd::Pid) -> bool {
        self.0
            .and_then(|p| qmp::Qmp::connect(p, Duration::from_millis(500)).ok())
            .is_some_and(|mut q| q.quit().is_ok())
    }
}

impl Instance for VmInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        self.qemu.running_pid().into_iter().collect()
    }
    fn vmm_layout(&self) -> Option<VmmLayout> {
        Some(self.layout.clone())
    }
    fn reports_guest_memory(&self) -> bool {
        true
    }
    fn has_guest_kernel(&self) -> bool {
        true
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        if let Some(addr) = self.tap_addr {
            return Some(SocketAddr::from((addr, port)));
        }
        self.forwards
            .iter()
            .find(|f| f.guest == port)
            .map(|f| net::host_endpoint(f.host))
    }
    fn memory_cgroup(&self) -> Option<PathBuf> {
        self.cgroup
            .as_ref()
            .and_then(|c| c.memory_dir().map(Path::to_path_buf))
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        self.qemu.stop(&QmpQuit(self.qmp.as_deref()));
        self.qemu.reap();
        self.io_dir = None;
        // Removed after QEMU is reaped (an empty cgroup), but its failure is reported only after
        // the temporary directory is gone too.
        let cgroup = self.cgroup.as_mut().map_or(Ok(()), Cgroup::remove);
        if let Some(dir) = self.tmp.take() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BackendError::teardown(
                        self.kind,
                        InstanceError::Cleanup { path: dir, source },
                    ))
                }
            }
        }
        cgroup.map_err(|e| BackendError::teardown(self.kind, InstanceError::CgroupRemove(e)))
    }
}

impl Drop for VmInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
