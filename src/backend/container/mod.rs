//! The `container` backend: cvm's own container runtime, a few hundred lines of namespaces,
//! cgroups and a veth pair, with nothing between cvm and the workload's init.
//!
//! # How a container starts
//!
//! cvm is multi-threaded (event readers, progress bar), and a child forked from a
//! multi-threaded process may only make async-signal-safe calls until it execs: no allocation,
//! no locks. So cvm never runs container setup code itself. It clones the child straight into
//! new namespaces ([`cvm_runtime::sys::spawn_namespaced`]), where the child only
//!
//! 1. joins the instance's cgroup (pre-opened `cgroup.procs` files, so the container is
//!    accounted and limited from its first instruction),
//! 2. unshares a cgroup namespace — after joining, because a cgroup namespace is rooted at the
//!    cgroup its creator is in at that moment,
//! 3. starts a session of its own, places its descriptors and execs `cvm-guest init
//!    --container`, which is PID 1 of the new PID namespace and finishes the container from
//!    inside (mounts, `pivot_root`, hostname, `lo`, capabilities, `no_new_privs`: see the
//!    guest's `container_init`).
//!
//! The namespaces created by the clone itself:
//! - **pid**: the workload sees only its container's processes, and init is PID 1, whose death
//!   kills every other process in the container — teardown cannot miss one;
//! - **mount**: init's mounts and `pivot_root` stay inside (it makes every mount private first);
//! - **uts**: its own hostname; **ipc**: its own System V IPC and POSIX queues;
//! - **net**: only `lo` unless the scenario asks for `network = "private"` (see [`net`]). The
//!   network namespace is the expensive one (about 0.5 ms of the 1.5 ms clone on the reference
//!   host), but isolation needs it; the veth pair, which costs two runs of `ip`, is made only for
//!   a private network;
//! - **cgroup** (unshared by the child, see above).
//!
//! As root, no user namespace is used. Run by a normal user (rootless), the clone creates a
//! user namespace too, and the child waits until cvm has written its id maps with `newuidmap`
//! and `newgidmap` (the user is root inside, its subordinate ids the ids above: see
//! [`super::rootless`]); every other namespace is then created by, and owned by, that user
//! namespace. Rootless there is no cgroup (none is delegated to the user here), so nothing is
//! limited and memory counts init's process tree; a private network is slirp4netns with the
//! readiness port forwarded from the host's loopback; `rootless`, `limits` and `network` are
//! recorded with every sample.
//!
//! Why a raw clone and not `unshare` in a `pre_exec` hook: `unshare(CLONE_NEWPID)` only moves the
//! caller's *children* into the new PID namespace, so the exec'd init would not be PID 1 and
//! would have to fork once more. The clone makes it PID 1 directly, one process and one exec
//! fewer on the hot path.
//!
//! # Phases
//! `cgroup_join` is stamped by the child itself once it has written `cgroup.procs` (before it
//! unshares and execs); `runtime` ends at init's `CVM:configured` (namespaces, rootfs,
//! capabilities, the veth: all done), `workload_start` at the workload's readiness seen inside.
//!
//! # Teardown
//! SIGTERM to init (which forwards it to the workload), a grace period, then SIGKILL; the cgroup
//! (created for this instance alone) is emptied and removed; init is reaped (it is waited for
//! with `WNOWAIT` until then, so its PID cannot be reused while cvm may still signal it); the
//! veth pair is deleted. Nothing is mounted on the host side: every mount lives in the
//! container's mount namespace and disappears with it.

pub use cvm_runtime::net;
pub mod waiter;

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::events::{spawn_marker_reader, spawn_output_reader, Event};
use super::io_dir::{self, InstanceIoDir, IoStore};
use super::process::{self, Supervised, Terminate};
use super::rootless;
use super::{
    Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared, Stack,
};
use crate::backend::{DiskLayers, Layer};
use crate::image::{Image, GUEST_PATH};
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use cvm_proto::applet::init_command;
use cvm_proto::listen::watch_port_options;
use cvm_proto::metric::Phase;
use cvm_runtime::cgroup::{self, Cgroup, Limits};
use cvm_runtime::sys::{spawn_namespaced_timed, NamespacedExec, SpawnError};

/// The standalone binary of cvm's runtime, counted as this backend's runtime disk layer.
pub const RUNTIME_BINARY: &str = "cvm-runtime";

/// Where init reads the host's go-ahead when the network is configured after the clone.
const WAIT_FD: i32 = 4;

/// The namespace the clone itself must create: a process cannot move itself into a new PID
/// namespace, only its children, so init's PID namespace comes with the clone.
const CLONE_NAMESPACES: libc::c_int = libc::CLONE_NEWPID;

/// The namespaces the child unshares once it is in its cgroups, so that creating them (a new
/// network namespace waits on the kernel's teardown of earlier ones, a new mount namespace copies
/// the host's mount table) is charged to the `runtime` phase, where the OCI runtimes' namespace
/// work also falls, and `cgroup_join` is only the clone and the join. The cgroup namespace must
/// come after the join, so that the container sees its own cgroup as its root.
const UNSHARE_AFTER_JOIN: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("the image has no {0} (rebuild it)")]
    GuestMissing(PathBuf),
    #[error("a path contains a NUL byte: {0}")]
    Nul(String),
    #[error("invalid network configuration")]
    Subnet(#[source] net::NetError),
    #[error("cannot create the instance's cgroup")]
    Cgroup(#[source] cgroup::CgroupError),
    #[error("cannot create a pipe")]
    Pipe(#[source] nix::Error),
    #[error("cannot open /dev/null")]
    DevNull(#[source] io::Error),
    #[error("cannot start the container's init")]
    Spawn(#[source] SpawnError),
    #[error("cannot set up the container's network")]
    Network(#[source] net::NetError),
    #[error("cannot tell init to go ahead")]
    GoAhead(#[source] io::Error),
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot remove the instance's cgroup")]
    RemoveCgroup(#[source] cgroup::CgroupError),
    #[error("cannot create the io workload's host directory")]
    Volume(#[source] io_dir::IoDirError),
    #[error("the `{RUNTIME_BINARY}` binary is not beside `cvm` (build the workspace: cargo build --workspace)")]
    RuntimeMissing,
    #[error("cannot list the runtime's shared libraries")]
    Libraries(#[source] crate::image::libs::LibsError),
    #[error("cannot remove the instance's network link")]
    RemoveLink(#[source] net::NetError),
    #[error("cannot measure the `{RUNTIME_BINARY}` waiter this backend counts as its supervisor")]
    Waiter(#[source] waiter::WaiterError),
    #[error("cannot read the user's subordinate ids")]
    IdMap(#[source] super::rootless::RootlessError),
    #[error("cannot start the container's user-mode network")]
    Slirp(#[source] super::rootless::RootlessError),
}

#[derive(Debug, Default)]
pub struct ContainerBackend;

impl Backend for ContainerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Container
    }
    fn stack(&self) -> Stack {
        Stack::Container
    }
    fn availability(&self) -> Availability {
        if rootless::active() {
            return rootless_availability();
        }
        if cgroup::detect().is_none() {
            return Availability::unavailable(
                "cgroups are not mounted under /sys/fs/cgroup",
                "mount cgroup2 (or the v1 memory and cpu controllers) on /sys/fs/cgroup",
            );
        }
        for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
            if !Path::new("/proc/self/ns").join(ns).exists() {
                return Availability::unavailable(
                    format!("this kernel has no {ns} namespaces"),
                    "use a kernel built with CONFIG_NAMESPACES and all namespace types",
                );
            }
        }
        Availability::Available
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let fail = |e| BackendError::prepare(BackendKind::Container, e);
        let rootfs = image.rootfs().to_path_buf();
        let guest = rootfs.join(GUEST_PATH.trim_start_matches('/'));
        if !guest.is_file() {
            return Err(fail(ContainerError::GuestMissing(guest)));
        }
        let network = scenario.resources.network;
        let subnet = net::Subnet::from_env().map_err(|e| fail(ContainerError::Subnet(e)))?;
        let mut disk = image.layer_files();
        // The runtime a user would install to run containers this way: the standalone
        // `cvm-runtime` binary (what the linked library amounts to, its veth setup included),
        // not the whole `cvm` with its charts and load generator.
        let binary = crate::image::beside_cvm(RUNTIME_BINARY)
            .ok_or_else(|| fail(ContainerError::RuntimeMissing))?;
        let runtime = super::with_libraries(std::slice::from_ref(&binary))
            .map_err(|e| fail(ContainerError::Libraries(e)))?;
        disk.insert(Layer::Runtime, runtime);
        // Rootless, the standalone binary (root only) cannot run a container to be measured.
        let (waiter_pss, id_map) = if rootless::active() {
            let map = rootless::IdMap::for_user().map_err(|e| fail(ContainerError::IdMap(e)))?;
            (None, Some(map))
        } else {
            let pss = waiter::waiter_pss(&binary, &rootfs, super::limits(scenario))
                .map_err(|e| fail(ContainerError::Waiter(e)))?;
            (Some(pss), None)
        };
        let io_dir = match scenario.workload.io_target() {
            Some((inside, _)) => IoStore::for_scenario(scenario)
                .map_err(|e| fail(ContainerError::Volume(e)))?
                .map(|store| (inside, store)),
            None => None,
        };
        Ok(Box::new(ContainerPrepared {
            guest,
            rootfs,
            workload: image.workload_argv(&scenario.workload),
            limits: super::limits(scenario),
            cap_add: scenario.security.cap_add.get_ref().clone(),
            network,
            subnet,
            disk,
            io_dir,
            watch_port: scenario.readiness.port(),
            waiter_pss,
            id_map,
        }))
    }
}

struct ContainerPrepared {
    /// `cvm-guest` inside the image, by its host path (the exec happens before `pivot_root`).
    guest: PathBuf,
    rootfs: PathBuf,
    workload: Vec<String>,
    limits: Limits,
    /// Capabilities the workload keeps beyond Docker's default set (`[security]`).
    cap_add: Vec<String>,
    network: NetworkMode,
    subnet: net::Subnet,
    disk: DiskLayers,
    /// Where the io workload writes inside, and the store its host directories come from.
    io_dir: Option<(String, IoStore)>,
    /// The port init watches for LISTEN (the inside half of readiness).
    watch_port: Option<u16>,
    /// PSS of a `cvm-runtime run` waiting on a container of this image: the supervisor this
    /// backend stands for, which cvm plays in-process. `None` rootless (not measured).
    waiter_pss: Option<u64>,
    /// Rootless: the user namespace's id maps.
    id_map: Option<rootless::IdMap>,
}

impl ContainerPrepared {
    fn init_argv(&self, hostname: &str, volume: Option<&InstanceIoDir>) -> Vec<String> {
        let mut options = vec![
            "--container".to_string(),
            "--rootfs".into(),
            self.rootfs.to_string_lossy().into_owned(),
            "--hostname".into(),
            hostname.to_string(),
        ];
        if self.network.has_link() {
            options.extend(["--wait-fd".to_string(), WAIT_FD.to_string()]);
        }
        if let (Some(volume), Some((inside, _))) = (volume, &self.io_dir) {
            options.extend([
                "--volume".to_string(),
                format!("{}:{inside}", volume.path().display()),
            ]);
        }
        for cap in &self.cap_add {
            options.extend(["--cap-add".to_string(), cap.clone()]);
        }
        options.extend(watch_port_options(self.watch_port));
        // argv[0] is the name init is started under, not a path: the exec is of the guest's
        // host path (before `pivot_root`), and init recognises itself by its first argument.
        let mut argv = init_command(&options, &self.workload);
        argv[0] = "cvm-guest".into();
        argv
    }
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, ContainerError> {
    CString::new(s.as_ref())
        .map_err(|_| ContainerError::Nul(String::from_utf8_lossy(s.as_ref()).into_owned()))
}

/// Configuration facts shared by every backend that runs the image with cvm's namespaces,
/// limits and capability set (cvm's runtime and the OCI runtimes).
pub(crate) fn isolation_config(network: NetworkMode, subnet: &net::Subnet) -> BackendConfig {
    let mut c = BackendConfig::new();
    c.insert(
        "isolation".into(),
        "namespaces pid,mount,uts,ipc,net,cgroup".into(),
    );
    c.insert(
        "cgroup".into(),
        cgroup::detect().map_or("none", |v| v.as_str()).into(),
    );
    let network = match network {
        NetworkMode::None => "none (loopback only)".to_string(),
        NetworkMode::Private | NetworkMode::User => format!("private (veth, /30 from {subnet})"),
    };
    c.insert("network".into(), network);
    c.insert("rootfs".into(), "image directory, read-only".into());
    c.insert("capabilities".into(), "docker default, no_new_privs".into());
    c
}

impl Prepared for ContainerPrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.extend(isolation_config(self.network, &self.subnet));
        c.insert(
            "runtime".into(),
            format!("cvm {}", env!("CARGO_PKG_VERSION")),
        );
        let supervisor = match self.waiter_pss {
            Some(pss) => format!(
                "cvm-runtime's waiter, counted: cvm waits in-process, so a real `cvm-runtime run` \
                 waiting on a container of this image ({pss} B PSS, measured once) is added to \
                 memory_pss (memory_supervisor)"
            ),
            None => "none counted: rootless, cvm waits in-process and the standalone \
                     cvm-runtime (root only) cannot be measured; slirp4netns is counted"
                .into(),
        };
        c.insert(crate::results::SUPERVISOR_KEY.into(), supervisor);
        if self.id_map.is_some() {
            c.insert(
                "isolation".into(),
                "namespaces user,pid,mount,uts,ipc,net,cgroup".into(),
            );
            c.insert("cgroup".into(), "none (rootless)".into());
            rootless::record(
                &mut c,
                "a user namespace of the user's subordinate ids (newuidmap, newgidmap)",
                self.network,
            );
        }
        c
    }

    fn disk_layers(&self) -> DiskLayers {
        self.disk.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |e| BackendError::launch(BackendKind::Container, e);
        let name = format!("cvm-{}-container-{}", ctx.run_id, ctx.instance);
        // Rootless: no cgroup (none is delegated to the user), so none is made or joined.
        let cgroup = match self.id_map {
            Some(_) => None,
            None => Some(
                Cgroup::create(&name, self.limits.clone())
                    .map_err(|e| fail(ContainerError::Cgroup(e)))?,
            ),
        };
        let hostname = format!("cvm-{}", ctx.instance);
        let volume = match &self.io_dir {
            Some((_, store)) => Some(
                store
                    .instance_dir(&format!("{}-container-{}", ctx.run_id, ctx.instance))
                    .map_err(|e| fail(ContainerError::Volume(e)))?,
            ),
            None => None,
        };

        let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| fail(ContainerError::Pipe(e)));
        let (marker_read, marker_write): (OwnedFd, OwnedFd) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let mut fds = process::workload_fds(stderr_write, marker_write)
            .map_err(|e| fail(ContainerError::DevNull(e)))?;
        let mut go = if self.network.has_link() {
            let (wait_read, wait_write) = pipe()?;
            fds.push((wait_read, WAIT_FD));
            Some(File::from(wait_write))
        } else {
            None
        };
        let spec = self
            .spawn_spec(&hostname, volume.as_ref(), cgroup.as_ref(), fds)
            .map_err(fail)?;

        let started_at = Instant::now();
        let spawned = spawn_namespaced_timed(spec).map_err(|e| fail(ContainerError::Spawn(e)))?;
        let pid = spawned.pid;
        let (tx, events) = mpsc::channel();
        if let Some(joined) = spawned.cgroup_joined {
            let _ = tx.send(Event::Phase(Phase::CgroupJoin, joined));
        }
        // From here on the instance owns everything: an error drops it, which tears down.
        let mut instance = ContainerInstance {
            init: Supervised::from_pid(pid),
            started_at,
            events,
            cgroup,
            link: None,
            slirp: None,
            go: go.take(),
            volume,
            waiter_pss: self.waiter_pss,
        };
        // The marker reader first: init's markers are stamped when it reads them. Then the
        // network, which init waits for; the other two threads only after the go-ahead, off
        // the launch's critical path (a pipe keeps init's output, and teardown reaps init
        // whether or not its exit is watched).
        spawn_marker_reader(File::from(marker_read), tx.clone())
            .map_err(|e| fail(ContainerError::Thread(e)))?;
        if let Some(mut go) = instance.go.take() {
            if self.id_map.is_some() {
                let label = format!("{}-{}", ctx.run_id, ctx.instance);
                let slirp = rootless::Slirp::start(pid, self.watch_port, &label)
                    .map_err(|e| fail(ContainerError::Slirp(e)))?;
                instance.slirp = Some(slirp);
            } else {
                let link = net::setup(self.subnet, &ctx.run_id, pid)
                    .map_err(|e| fail(ContainerError::Network(e)))?;
                instance.link = Some(link);
            }
            go.write_all(b"g")
                .map_err(|e| fail(ContainerError::GoAhead(e)))?;
        }
        spawn_output_reader(File::from(stderr_read), tx.clone())
            .map_err(|e| fail(ContainerError::Thread(e)))?;
        let memory_dir = instance.memory_cgroup();
        instance
            .init
            .watch_exit(memory_dir, self.limits.memory_bytes, tx)
            .map_err(|e| fail(ContainerError::Thread(e)))?;
        Ok(Box::new(instance))
    }
}

impl ContainerPrepared {
    /// What the clone is asked to do: init's program, arguments and environment, the
    /// namespaces (a user namespace too, mapped by `newuidmap`, when rootless), the cgroup to
    /// join and the descriptors to place.
    fn spawn_spec(
        &self,
        hostname: &str,
        volume: Option<&InstanceIoDir>,
        cgroup: Option<&Cgroup>,
        fds: Vec<(OwnedFd, i32)>,
    ) -> Result<NamespacedExec, ContainerError> {
        let argv = self
            .init_argv(hostname, volume)
            .iter()
            .map(cstring)
            .collect::<Result<Vec<_>, _>>()?;
        let envp = [
            super::WORKLOAD_PATH.to_string(),
            "HOME=/root".into(),
            format!("HOSTNAME={hostname}"),
            format!(
                "{}={}",
                cvm_proto::MARKER_FD_ENV,
                cvm_proto::DEFAULT_MARKER_FD
            ),
        ]
        .iter()
        .map(cstring)
        .collect::<Result<Vec<_>, _>>()?;
        let cgroup_procs = match cgroup {
            Some(c) => c.open_procs().map_err(ContainerError::Cgroup)?,
            None => Vec::new(),
        };
        let (clone_flags, map_user) = match &self.id_map {
            Some(map) => (CLONE_NAMESPACES | libc::CLONE_NEWUSER, Some(map.mapper())),
            None => (CLONE_NAMESPACES, None),
        };
        Ok(NamespacedExec {
            program: cstring(self.guest.as_os_str().as_bytes())?,
            argv,
            envp,
            clone_flags,
            unshare_after_join: UNSHARE_AFTER_JOIN,
            cgroup_procs,
            fds,
            map_user,
        })
    }
}

/// Whether cvm's runtime can run a container for this user without root, and if not what is
/// missing, with the fix.
fn rootless_availability() -> Availability {
    if !Path::new("/proc/self/ns/user").exists() {
        return Availability::unavailable(
            "this kernel has no user namespaces",
            "use a kernel built with CONFIG_USER_NS",
        );
    }
    let sysctl = |path: &str| std::fs::read_to_string(path).map(|t| t.trim().to_string());
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").is_ok_and(|v| v == "0") {
        return Availability::unavailable(
            "unprivileged user namespaces are disabled",
            "as root: sysctl kernel.unprivileged_userns_clone=1",
        );
    }
    if sysctl("/proc/sys/user/max_user_namespaces").is_ok_and(|v| v == "0") {
        return Availability::unavailable(
            "user namespaces are limited to none (user.max_user_namespaces = 0)",
            "as root: sysctl user.max_user_namespaces=15000",
        );
    }
    match rootless::missing("rootless container", true) {
        None => Availability::Available,
        Some((reason, hint)) => Availability::unavailable(reason, hint),
    }
}

struct ContainerInstance {
    /// The container's init (PID 1 inside).
    init: Supervised,
    started_at: Instant,
    events: Receiver<Event>,
    /// The instance's own cgroup; none rootless.
    cgroup: Option<Cgroup>,
    link: Option<net::Link>,
    /// Rootless: the user-mode network serving the container's namespace.
    slirp: Option<rootless::Slirp>,
    /// The go-ahead pipe while init waits on it. Closing it makes init give up at once, so a
    /// launch that fails half-way does not wait out the stop grace period (init, as PID 1 of
    /// its namespace, ignores SIGTERM until it has set up its signal handling).
    go: Option<File>,
    /// The io workload's host directory, removed once the container is gone.
    volume: Option<InstanceIoDir>,
    /// The supervisor's PSS, measured apart (see [`waiter`]); `None` rootless.
    waiter_pss: Option<u64>,
}

impl Instance for ContainerInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        match &self.cgroup {
            Some(cgroup) => cgroup.pids(),
            // Rootless: init's process tree, and slirp4netns, which stays for its life.
            None => {
                let mut pids: Vec<u32> = self
                    .init
                    .running_pid()
                    .map(|pid| super::listen_watch::tree(pid).into_iter().collect())
                    .unwrap_or_default();
                pids.extend(self.slirp.as_ref().and_then(rootless::Slirp::pid));
                pids
            }
        }
    }
    fn supervisor(&self) -> super::Supervisor {
        self.waiter_pss
            .map_or(super::Supervisor::None, super::Supervisor::Apart)
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        if let Some((inside, host)) = self.slirp.as_ref().and_then(|s| s.forwarded) {
            return (inside == port)
                .then(|| SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, host)));
        }
        self.link
            .as_ref()
            .map(|l| SocketAddr::V4(SocketAddrV4::new(l.container_addr, port)))
    }
    fn memory_cgroup(&self) -> Option<PathBuf> {
        self.cgroup
            .as_ref()
            .and_then(|c| c.memory_dir().map(Path::to_path_buf))
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        let fail = |e| BackendError::teardown(BackendKind::Container, e);
        self.go = None;
        // init forwards SIGTERM to the workload and exits with it; as PID 1 of the namespace,
        // its death takes every process in it along.
        self.init.stop(&Terminate);
        // Empties the cgroup (SIGKILL to anything left: it was created for this instance
        // alone) before init is reaped, so no PID in it can have been reused.
        let removed = self.cgroup.as_mut().map_or(Ok(()), Cgroup::remove);
        self.init.reap();
        removed.map_err(|e| fail(ContainerError::RemoveCgroup(e)))?;
        if let Some(cgroup) = self.cgroup.as_mut() {
            cgroup
                .remove()
                .map_err(|e| fail(ContainerError::RemoveCgroup(e)))?;
        }
        if let Some(link) = self.link.as_mut() {
            link.remove()
                .map_err(|e| fail(ContainerError::RemoveLink(e)))?;
        }
        self.slirp = None;
        self.volume = None;
        Ok(())
    }
}

impl Drop for ContainerInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
