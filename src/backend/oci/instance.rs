//! One container's life: the bundle is written, the runtime runs in the foreground as cvm's
//! child, the container's init PID comes from the runtime's pid file, and teardown stops the
//! container through the runtime and removes everything the launch created.

use std::fs;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::{pipe2, Pid};

use super::bundle::{self, BundleError, SpecInput};
use super::runtime::{Runtime, RuntimeError};
use crate::backend::cgroup::{self, Limits};
use crate::backend::container::net;
use crate::backend::events::{spawn_marker_reader, spawn_output_reader, Event};
use crate::backend::process::{self, StopPolicy, Supervised};
use crate::backend::DiskLayers;
use crate::backend::{BackendConfig, BackendError, Instance, LaunchContext, Prepared};
use crate::scenario::{BackendKind, NetworkMode};
use crate::sys::CommandSetup;
use cvm_proto::metric::Phase;

/// How long to wait for the runtime to write the pid file.
const PID_FILE_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error("{runtime} never wrote the container's pid file {path}")]
    PidFile {
        runtime: &'static str,
        path: PathBuf,
    },
    #[error("{runtime} exited before starting the container, so it has no network")]
    NoInit { runtime: &'static str },
    #[error("cannot set up the container's network")]
    Network(#[source] net::NetError),
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot delete the container")]
    Delete(#[source] RuntimeError),
    #[error("cannot remove the instance's network link")]
    RemoveLink(#[source] net::NetError),
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
    pub network: NetworkMode,
    pub subnet: net::Subnet,
    pub disk: DiskLayers,
    pub launches: AtomicU32,
    /// Where the io workload writes, given a host directory (in the bundle) of its own.
    pub io_dir: Option<String>,
}

impl Prepared for OciPrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.insert("runtime".into(), self.version.clone());
        c.extend(crate::backend::container::isolation_config(
            self.network,
            &self.subnet,
        ));
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
        };
        let volume = match &self.io_dir {
            Some(inside) => Some((
                bundle::volume_dir(&bundle).map_err(InstanceError::Bundle)?,
                inside.clone(),
            )),
            None => None,
        };
        bundle::write_config(
            &bundle,
            &SpecInput {
                rootfs: &self.rootfs,
                args: self.args.clone(),
                hostname: &format!("cvm-{}", ctx.instance),
                cgroup: &id,
                limits: self.limits.clone(),
                volume,
            },
        )
        .map_err(InstanceError::Bundle)?;
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            pipe2(OFlag::O_CLOEXEC).map_err(InstanceError::Pipe)?;
        let pid_file = bundle.join("init.pid");
        let mut cmd = self.runtime.run_instance(&bundle, &pid_file, &id);
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let setup = CommandSetup {
            marker: Some((write_end, cvm_proto::DEFAULT_MARKER_FD)),
            cgroup_procs: Vec::new(),
        };
        instance.started_at = Instant::now();
        let guard = setup.install(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| InstanceError::Spawn {
            runtime: self.runtime.name,
            source,
        })?;
        drop(guard);
        let spawned = Instant::now();
        let (tx, events) = mpsc::channel();
        instance.events = events;
        let _ = tx.send(Event::Phase(Phase::Spawn, spawned));
        let stderr = child.stderr.take();
        let runtime_process = instance.process.insert(Supervised::from_child(child));
        spawn_marker_reader(fs::File::from(read_end), tx.clone()).map_err(InstanceError::Thread)?;
        if let Some(stderr) = stderr {
            spawn_output_reader(stderr, tx.clone()).map_err(InstanceError::Thread)?;
        }
        // Watched from the spawn on, so the runtime's exit is stamped when it happens. No OOM
        // check at its exit: a foreground runtime removes the container's cgroup before it
        // exits, so the counter is gone by then (the workload's SIGKILL status still says why).
        runtime_process
            .watch_exit(None, self.limits.memory_bytes, tx)
            .map_err(InstanceError::Thread)?;
        // The container's cgroup is wherever the runtime put it; the init process's own record
        // says where. A runtime that exits before starting the container has no init: its
        // exit and its words reach the run as events, as any failed workload's do.
        let init = wait_pid_file(&pid_file, runtime_process);
        if init.is_none() && runtime_process.running_pid().is_some() {
            return Err(InstanceError::PidFile {
                runtime: self.runtime.name,
                path: pid_file,
            });
        }
        instance.memory_dir = init.and_then(cgroup::memory_of_process);
        if self.network.has_link() {
            let init = init.ok_or(InstanceError::NoInit {
                runtime: self.runtime.name,
            })?;
            let init = i32::try_from(init).expect("a PID fits in pid_t");
            let link =
                net::setup(self.subnet, &ctx.run_id, init).map_err(InstanceError::Network)?;
            instance.link = Some(link);
        }
        Ok(instance)
    }
}

/// The container's init PID from the runtime's pid file, once written; `None` if the runtime
/// exits first or takes longer than [`PID_FILE_TIMEOUT`].
fn wait_pid_file(path: &Path, runtime: &Supervised) -> Option<u32> {
    let deadline = Instant::now() + PID_FILE_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Some(pid);
        }
        // A runtime that has exited writes no pid file any more.
        runtime.running_pid()?;
        std::thread::sleep(Duration::from_micros(500));
    }
    None
}

pub struct OciInstance {
    kind: BackendKind,
    runtime: Runtime,
    id: String,
    bundle: Option<PathBuf>,
    /// The foreground runtime process (its exit is the container's).
    process: Option<Supervised>,
    started_at: Instant,
    events: Receiver<Event>,
    /// The container's memory cgroup, from its init's `/proc/<pid>/cgroup`.
    memory_dir: Option<PathBuf>,
    link: Option<net::Link>,
}

/// The runtime forwards SIGTERM to the container's init, which forwards it to the workload; the
/// runtime exits (and deletes the container) when init does. What is left after the grace
/// period is killed through the runtime, which a SIGKILL to the runtime alone would leave behind.
struct OciStop<'a> {
    runtime: &'a Runtime,
    id: &'a str,
}

impl StopPolicy for OciStop<'_> {
    fn force(&self, _runtime_pid: Pid) -> bool {
        self.runtime.kill(self.id);
        true
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
        process::runtime_and_container_pids(self.process.as_ref(), self.memory_dir.as_deref())
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        self.link
            .as_ref()
            .map(|l| SocketAddr::V4(SocketAddrV4::new(l.container_addr, port)))
    }
    fn memory_cgroup(&self) -> Option<PathBuf> {
        self.memory_dir.clone().filter(|d| d.is_dir())
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        if let Some(mut runtime_process) = self.process.take() {
            runtime_process.stop(&OciStop {
                runtime: &self.runtime,
                id: &self.id,
            });
            runtime_process.reap();
        }
        let mut first_error = self
            .runtime
            .delete(&self.id)
            .err()
            .map(InstanceError::Delete);
        if let Some(link) = self.link.as_mut() {
            if let Err(e) = link.remove() {
                first_error.get_or_insert(InstanceError::RemoveLink(e));
            }
        }
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
