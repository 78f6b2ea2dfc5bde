//! One container's life: the bundle is written, the runtime starts the container detached and
//! exits (as it does in production, so only the container's processes stay resident and count
//! in its memory), the container's init PID comes from the runtime's pid file, and teardown
//! stops the container through the runtime and removes everything the launch created.
//!
//! Who waits for the container's init once the runtime has gone: cvm, as a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), the role containerd's shim and conmon play in production. The
//! runtime's exit reparents the init to cvm before cvm learns of that exit, so the init is
//! cvm's child by then and gets the one supervised lifecycle with its real exit status. Without
//! it the init would be reparented to the host's PID 1, which on some hosts never reaps.

use std::fs;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::{pipe2, Pid};

use super::runtime::{Runtime, RuntimeError};
use crate::backend::bundle::{self, BundleError, SpecInput};
use crate::backend::cgroup::{self, Limits};
use crate::backend::cgroup_trace::{JoinTrace, Target};
use crate::backend::container::net;
use crate::backend::events::{spawn_marker_reader, spawn_output_reader, Event, ExitInfo};
use crate::backend::io_dir::{InstanceIoDir, IoDirError, IoStore};
use crate::backend::process::{self, StopPolicy, Supervised};
use crate::backend::rootless;
use crate::backend::DiskLayers;
use crate::backend::{BackendConfig, BackendError, Instance, LaunchContext, Prepared};
use crate::scenario::{BackendKind, NetworkMode};
use crate::sys::CommandSetup;

/// How long the detached runtime gets to start the container and exit.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long runsc's gofer gets to exit on its own once its sandbox has gone.
const GOFER_GRACE: Duration = Duration::from_secs(2);
/// The file in the bundle where the runtime writes its container's init PID.
const PID_FILE: &str = "init.pid";

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot write the container's bundle")]
    Bundle(#[source] BundleError),
    #[error("cannot create the marker pipe")]
    Pipe(#[source] nix::Error),
    #[error("cannot start {runtime}")]
    Spawn {
        runtime: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot make cvm the subreaper of the container's init")]
    Subreaper(#[source] nix::Error),
    #[error("{runtime} did not start the container within {timeout:?}")]
    StartTimeout {
        runtime: &'static str,
        timeout: Duration,
    },
    #[error("{runtime} started the container but its pid file {path} is unreadable")]
    PidFile {
        runtime: &'static str,
        path: PathBuf,
    },
    #[error("{runtime} exited before starting the container, so it has no network")]
    NoInit { runtime: &'static str },
    #[error("cannot set up the container's network")]
    Network(#[source] net::NetError),
    #[error("cannot start the container's user-mode network")]
    Slirp(#[source] rootless::RootlessError),
    #[error("cannot duplicate the network namespace's descriptor")]
    NamespaceFd(#[source] io::Error),
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot delete the container")]
    Delete(#[source] RuntimeError),
    #[error("cannot remove the instance's network link")]
    RemoveLink(#[source] net::NetError),
    #[error("cannot create the io workload's host directory")]
    IoDir(#[source] IoDirError),
    #[error("cannot remove {path}")]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A scenario ready to run under one runtime.
pub struct OciPrepared {
    pub kind: BackendKind,
    pub runtime: Runtime,
    pub version: String,
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub limits: Limits,
    /// The workload's capabilities (Docker's default set plus the scenario's `[security]`).
    pub capabilities: Vec<String>,
    pub network: NetworkMode,
    pub subnet: net::Subnet,
    pub disk: DiskLayers,
    pub launches: AtomicU32,
    /// The io workload's directory inside, and the store its host directories come from.
    pub io_dir: Option<(String, IoStore)>,
    /// gVisor's configuration; `None` for runc and crun.
    pub sandbox: Option<GvisorConfig>,
    /// The readiness port (forwarded from the host's loopback when rootless).
    pub port: Option<u16>,
}

/// What a `gvisor` backend runs on, recorded with every sample.
#[derive(Debug, Clone)]
pub struct GvisorConfig {
    /// The platform that ran the probe container (systrap, kvm, ptrace).
    pub platform: &'static str,
    /// Each faster platform and why it was not used.
    pub refused: String,
    /// Whose network stack the workload's sockets are.
    pub network_stack: &'static str,
}

impl Prepared for OciPrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.insert("runtime".into(), self.version.clone());
        c.insert(
            crate::results::SUPERVISOR_KEY.into(),
            match self.sandbox {
                Some(_) => "none: runsc runs detached, its Sentry and gofer counted (production \
                            adds containerd-shim-runsc-v1, not counted)"
                    .into(),
                None => format!(
                    "none: {} runs detached with no shim (production adds containerd-shim or \
                     conmon, not counted)",
                    self.kind
                ),
            },
        );
        c.extend(crate::backend::container::isolation_config(
            self.network,
            &self.subnet,
        ));
        if self.runtime.id_maps.is_some() {
            c.insert(
                "isolation".into(),
                "namespaces user,pid,mount,uts,ipc,net,cgroup".into(),
            );
            c.insert("cgroup".into(), "none (rootless)".into());
            rootless::record(
                &mut c,
                &format!(
                    "{} --rootless, a user namespace of the user's subordinate ids (newuidmap, \
                     newgidmap)",
                    self.kind
                ),
                self.network,
            );
        }
        if let Some(g) = &self.sandbox {
            c.insert(crate::results::PLATFORM_KEY.into(), g.platform.into());
            if !g.refused.is_empty() {
                c.insert("platform_refused".into(), g.refused.clone());
            }
            c.insert(
                crate::results::NETWORK_STACK_KEY.into(),
                g.network_stack.into(),
            );
            c.insert(
                "capabilities".into(),
                "docker default less NET_RAW (runsc drops it without --net-raw), no_new_privs"
                    .into(),
            );
        }
        c
    }

    fn disk_layers(&self) -> DiskLayers {
        self.disk.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        self.start(ctx)
            .map(|i| Box::new(i) as Box<dyn Instance>)
            .map_err(|e| BackendError::launch(self.kind, e))
    }
}

impl OciPrepared {
    fn start(&self, ctx: &LaunchContext) -> Result<OciInstance, InstanceError> {
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "cvm-{}-{}-{}-{n}",
            ctx.run_id, self.runtime.name, ctx.instance
        );
        let bundle = bundle::temp_dir(&format!("{}-{}", ctx.run_id, ctx.instance))
            .map_err(InstanceError::Bundle)?;
        // From here on the instance owns the bundle: an error drops it, which cleans up.
        let mut instance = OciInstance {
            kind: self.kind,
            runtime: self.runtime.clone(),
            id: id.clone(),
            bundle: Some(bundle.clone()),
            process: None,
            started_at: Instant::now(),
            events: mpsc::channel().1,
            memory_dir: None,
            link: None,
            io_dir: None,
            netns: None,
            gofer: None,
            slirp: None,
        };
        let volume = self.io_volume(ctx, &mut instance)?;
        let netns = self.joined_namespace(ctx, &mut instance)?;
        bundle::write_config(
            &bundle,
            &SpecInput {
                rootfs: &self.rootfs,
                args: self.args.clone(),
                hostname: &format!("cvm-{}", ctx.instance),
                cgroup: &id,
                limits: self.limits.clone(),
                volume,
                marker_fd: self.runtime.marker_fd(),
                netns: netns.clone(),
                capabilities: &self.capabilities,
                id_maps: self.runtime.id_maps(),
            },
        )
        .map_err(InstanceError::Bundle)?;
        let (exit, tx) = self.run_detached(&mut instance)?;
        self.adopt(ctx, &mut instance, exit, &tx, netns.is_some())?;
        Ok(instance)
    }

    /// The io workload's host directory, made for this instance, and where it appears inside.
    fn io_volume(
        &self,
        ctx: &LaunchContext,
        instance: &mut OciInstance,
    ) -> Result<Option<(PathBuf, String)>, InstanceError> {
        let Some((inside, store)) = &self.io_dir else {
            return Ok(None);
        };
        let label = format!("{}-{}-{}", ctx.run_id, self.runtime.name, ctx.instance);
        let host = store.instance_dir(&label).map_err(InstanceError::IoDir)?;
        let volume = (host.path().to_path_buf(), inside.clone());
        instance.io_dir = Some(host);
        Ok(Some(volume))
    }

    /// runsc joins a namespace named in the bundle rather than configuring the one it makes,
    /// so its private network is made, with the veth in it, before it starts: the path the
    /// bundle names, or `None` where the runtime makes its own.
    fn joined_namespace(
        &self,
        ctx: &LaunchContext,
        instance: &mut OciInstance,
    ) -> Result<Option<PathBuf>, InstanceError> {
        if !(self.runtime.runsc && self.network == NetworkMode::Private) {
            return Ok(None);
        }
        let ns = net::new_namespace().map_err(InstanceError::Network)?;
        let copy = ns.try_clone().map_err(InstanceError::NamespaceFd)?;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            ns.as_raw_fd()
        ));
        instance.netns = Some(ns);
        let link = net::setup_in(self.subnet, &ctx.run_id, copy).map_err(InstanceError::Network)?;
        instance.link = Some(link);
        Ok(Some(path))
    }

    /// Runs the runtime detached, its cgroup join traced, until it exits having started the
    /// container (or refused to): its exit, and the sender the instance's events come on.
    fn run_detached(
        &self,
        instance: &mut OciInstance,
    ) -> Result<(ExitInfo, Sender<Event>), InstanceError> {
        let bundle = instance
            .bundle
            .clone()
            .expect("a starting instance has its bundle");
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            pipe2(OFlag::O_CLOEXEC).map_err(InstanceError::Pipe)?;
        nix::sys::prctl::set_child_subreaper(true).map_err(InstanceError::Subreaper)?;
        let mut cmd = self
            .runtime
            .run_detached(&bundle, &bundle.join(PID_FILE), &instance.id);
        // A detached container inherits the runtime's stdio: stderr is the workload's.
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let marker = if self.runtime.marker_fd() == 1 {
            cmd.stdout(Stdio::from(write_end));
            None
        } else {
            cmd.stdout(Stdio::null());
            Some((write_end, self.runtime.marker_fd()))
        };
        let setup = CommandSetup {
            marker,
            cgroup_procs: Vec::new(),
        };
        let (tx, events) = mpsc::channel();
        instance.events = events;
        // The runtime joins its container's cgroup itself, unseen but for this trace, which
        // reports each cgroup.procs write as a `cgroup_join` span inside `runtime`.
        let join_trace = JoinTrace::start(Target::Named(instance.id.clone()), tx.clone()).ok();
        instance.started_at = Instant::now();
        let guard = setup.install(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| InstanceError::Spawn {
            runtime: self.runtime.name,
            source,
        })?;
        drop(guard);
        // No phase point of its own: the runtime's start is inside `runtime`, which ends at
        // init's `CVM:configured`; its cgroup join is the trace's spans.
        let stderr = child.stderr.take();
        let mut runtime_process = Supervised::from_child(child);
        spawn_marker_reader(fs::File::from(read_end), tx.clone()).map_err(InstanceError::Thread)?;
        if let Some(stderr) = stderr {
            spawn_output_reader(stderr, tx.clone()).map_err(InstanceError::Thread)?;
        }
        let exited = runtime_process.wait_timeout(START_TIMEOUT);
        // A detached runtime has joined (or failed to) by the time it exits.
        drop(join_trace);
        // On a timeout, dropping the runtime kills and reaps it; dropping the instance
        // deletes the container.
        let exit = exited.ok_or(InstanceError::StartTimeout {
            runtime: self.runtime.name,
            timeout: START_TIMEOUT,
        })?;
        Ok((exit, tx))
    }

    /// Takes over what the exited runtime left: the container's init (and runsc's gofer) as
    /// cvm's children, supervised, and the network link where the runtime made the namespace.
    fn adopt(
        &self,
        ctx: &LaunchContext,
        instance: &mut OciInstance,
        exit: ExitInfo,
        tx: &Sender<Event>,
        joined_namespace: bool,
    ) -> Result<(), InstanceError> {
        let pid_file = instance
            .bundle
            .as_ref()
            .expect("a starting instance has its bundle")
            .join(PID_FILE);
        let init = if exit.success() {
            let pid = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .ok_or_else(|| InstanceError::PidFile {
                    runtime: self.runtime.name,
                    path: pid_file.clone(),
                })?;
            Some(pid)
        } else {
            // The runtime refused: its exit and its words (on the stderr pipe) reach the run as
            // events, as any failed workload's do.
            let _ = tx.send(Event::Exited(exit, Instant::now()));
            None
        };
        // Rootless the init is in the user's cgroup (on this host the hierarchy's root):
        // counting it would count the host, so memory counts init's process tree instead.
        let rootless = self.runtime.id_maps.is_some();
        instance.memory_dir = init
            .filter(|_| !rootless)
            .and_then(cgroup::memory_of_process);
        if let Some(init) = init {
            // runsc's gofer outlives the exited runtime too, so it is cvm's child now.
            if let Some(gofer) = self.runtime.gofer_pid(&instance.id) {
                let raw = i32::try_from(gofer).expect("a PID fits in pid_t");
                instance.gofer = Some(Supervised::from_pid(raw));
            }
            let raw = i32::try_from(init).expect("a PID fits in pid_t");
            // The runtime has exited, so its container's init is our child now (see the module
            // docs), even if it has exited meanwhile (then it waits for us as a zombie).
            let process = instance.process.insert(Supervised::from_pid(raw));
            process
                .watch_exit(
                    instance.memory_dir.clone(),
                    self.limits.memory_bytes,
                    tx.clone(),
                )
                .map_err(InstanceError::Thread)?;
        }
        if self.network.has_link() && !joined_namespace {
            let init = init.ok_or(InstanceError::NoInit {
                runtime: self.runtime.name,
            })?;
            let init = i32::try_from(init).expect("a PID fits in pid_t");
            if rootless {
                let label = format!("{}-{}", ctx.run_id, ctx.instance);
                let slirp = rootless::Slirp::start(init, self.port, &label)
                    .map_err(InstanceError::Slirp)?;
                instance.slirp = Some(slirp);
            } else {
                let link =
                    net::setup(self.subnet, &ctx.run_id, init).map_err(InstanceError::Network)?;
                instance.link = Some(link);
            }
        }
        Ok(())
    }
}

pub struct OciInstance {
    kind: BackendKind,
    runtime: Runtime,
    id: String,
    bundle: Option<PathBuf>,
    /// The container's init (cvm's child once the detached runtime has exited).
    process: Option<Supervised>,
    started_at: Instant,
    events: Receiver<Event>,
    /// The container's memory cgroup, from its init's `/proc/<pid>/cgroup`.
    memory_dir: Option<PathBuf>,
    link: Option<net::Link>,
    /// The io workload's host directory, removed once the container is gone.
    io_dir: Option<InstanceIoDir>,
    /// The network namespace cvm made for a runtime that joins one (runsc); closing the
    /// descriptor, once the sandbox is gone, frees it.
    netns: Option<OwnedFd>,
    /// runsc's gofer, which serves the container's files to the Sentry.
    gofer: Option<Supervised>,
    /// Rootless: the user-mode network serving the container's namespace.
    slirp: Option<rootless::Slirp>,
}

/// The polite request and the forced end both go through the runtime (`kill TERM`, `kill
/// KILL`), as an orchestrator stops a container; init forwards SIGTERM to the workload.
struct OciStop<'a> {
    runtime: &'a Runtime,
    id: &'a str,
}

impl StopPolicy for OciStop<'_> {
    fn request(&self, _init: Pid) -> bool {
        self.runtime.kill(self.id, "TERM")
    }
    fn force(&self, _init: Pid) -> bool {
        self.runtime.kill(self.id, "KILL")
    }
}

impl Instance for OciInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        // The runtime has exited: the container's own processes (for runsc, the Sentry in the
        // container's cgroup and the gofer outside it) are all that stay resident.
        let mut pids = process::runtime_and_container_pids(None, self.memory_dir.as_deref());
        if let Some(gofer) = self.gofer.as_ref().and_then(Supervised::running_pid) {
            if !pids.contains(&gofer) {
                pids.push(gofer);
            }
        }
        // Rootless, with no cgroup of its own: init's process tree, and slirp4netns.
        if self.runtime.id_maps.is_some() {
            if let Some(init) = self.process.as_ref().and_then(Supervised::running_pid) {
                pids.extend(crate::backend::listen_watch::tree(init));
            }
            pids.extend(self.slirp.as_ref().and_then(rootless::Slirp::pid));
            pids.sort_unstable();
            pids.dedup();
        }
        pids
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
        self.memory_dir.clone().filter(|d| d.is_dir())
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        if let Some(mut init) = self.process.take() {
            init.stop(&OciStop {
                runtime: &self.runtime,
                id: &self.id,
            });
            init.reap();
        }
        if let Some(mut gofer) = self.gofer.take() {
            // It exits once the sandbox has gone; waiting first spares it a SIGKILL. Reaped
            // before `runsc delete`, which otherwise waits seconds for the zombie to go.
            gofer.wait_timeout(GOFER_GRACE);
            gofer.reap();
        }
        let mut first_error = self
            .runtime
            .delete(&self.id)
            .and_then(|()| self.runtime.remove_leftover_cgroup(&self.id))
            .err()
            .map(InstanceError::Delete);
        if let Some(link) = self.link.as_mut() {
            if let Err(e) = link.remove() {
                first_error.get_or_insert(InstanceError::RemoveLink(e));
            }
        }
        self.netns = None;
        self.slirp = None;
        self.io_dir = None;
        if let Some(bundle) = self.bundle.take() {
            if let Err(source) = fs::remove_dir_all(&bundle) {
                if source.kind() != io::ErrorKind::NotFound {
                    first_error.get_or_insert(InstanceError::Cleanup {
                        path: bundle,
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(BackendError::teardown(self.kind, e)))
    }
}

impl Drop for OciInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
