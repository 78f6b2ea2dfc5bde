//! One container: a foreground `podman run --rm` (the marker channel), its init, its conmon,
//! the network namespace cvm made for it, and its teardown through Podman.

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use nix::unistd::Pid;

use super::store::{Store, StoreError};
use super::PodmanPrepared;
use crate::backend::cgroup;
use crate::backend::cgroup_trace::{JoinTrace, Target};
use crate::backend::container::net;
use crate::backend::docker;
use crate::backend::events::{spawn_marker_reader, spawn_output_reader, Event};
use crate::backend::io_dir::InstanceIoDir;
use crate::backend::process::{self, StopPolicy, Supervised};
use crate::backend::procfs;
use crate::backend::LaunchContext;
use crate::backend::{BackendError, Instance, Supervisor};
use crate::scenario::{BackendKind, NetworkMode};

/// The container's scratch directory, a tmpfs as with the other container backends.

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot make the container's network")]
    Network(#[source] net::NetError),
    #[error("cannot keep the network namespace's descriptor")]
    NamespaceFd(#[source] std::io::Error),
    #[error("cannot use the io directory")]
    IoDir(#[source] crate::backend::io_dir::IoDirError),
    #[error("cannot find a free port on the host's loopback to publish the workload's")]
    Port(#[source] std::io::Error),
    #[error("cannot run podman")]
    Spawn(#[source] std::io::Error),
    #[error("cannot start the event threads")]
    Thread(#[source] std::io::Error),
    #[error("cannot remove the container")]
    Remove(#[source] StoreError),
    #[error("cannot remove the container's veth")]
    RemoveLink(#[source] net::NetError),
}

pub(super) fn launch(
    p: &PodmanPrepared,
    ctx: &LaunchContext,
) -> Result<PodmanInstance, InstanceError> {
    let n = p.launches.fetch_add(1, Ordering::Relaxed);
    let name = format!("cvm-{}-podman-{}-{n}", ctx.run_id, ctx.instance);
    // From here on the instance owns what is made: an error drops it, which cleans up.
    let mut instance = PodmanInstance {
        store: p.store.clone(),
        name: name.clone(),
        pids: OnceLock::new(),
        cgroup: OnceLock::new(),
        process: None,
        started_at: Instant::now(),
        events: mpsc::channel().1,
        link: None,
        published: None,
        netns: None,
        io_dir: None,
        join_trace: None,
    };
    let network = match p.network {
        NetworkMode::None => "none".to_string(),
        // Rootless: no veth can be made; slirp4netns, the readiness port published on the
        // host's loopback at a free port.
        NetworkMode::Private | NetworkMode::User if p.store.rootless => {
            if let Some(port) = p.port {
                let host = crate::backend::rootless::free_port().map_err(InstanceError::Port)?;
                instance.published = Some((port, host));
            }
            "slirp4netns".to_string()
        }
        NetworkMode::Private | NetworkMode::User => {
            let ns = net::new_namespace().map_err(InstanceError::Network)?;
            let copy = ns.try_clone().map_err(InstanceError::NamespaceFd)?;
            let path = format!("ns:/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
            instance.netns = Some(ns);
            instance.link =
                Some(net::setup_in(p.subnet, &ctx.run_id, copy).map_err(InstanceError::Network)?);
            path
        }
    };
    let mut cmd = p.store.command();
    cmd.args(["run", "--rm", "--name", &name, "--network", &network])
        .args(["--hostname", &format!("cvm-{}", ctx.instance)])
        .args(
            instance
                .published
                .map(|(inside, host)| format!("--publish=127.0.0.1:{host}:{inside}")),
        )
        .args(limit_flags(p))
        .args(&p.ulimits)
        .args(["--security-opt", "no-new-privileges", "--read-only"])
        .arg("--read-only-tmpfs=false")
        // The default set every container backend uses, not Podman's smaller one.
        .arg("--cap-drop=all")
        .args(
            cvm_proto::caps::DEFAULT
                .iter()
                .map(|c| format!("--cap-add={c}")),
        );
    let label = format!("{}-podman-{}-{n}", ctx.run_id, ctx.instance);
    instance.io_dir = docker::workload_args(
        &mut cmd,
        &p.security,
        p.io.as_ref(),
        &label,
        &p.tag,
        &p.argv,
    )
    .map_err(InstanceError::IoDir)?;
    let (tx, events) = mpsc::channel();
    instance.events = events;
    // runc joins the container's cgroup, below the run's cgroup parent, unseen but for this
    // trace: each cgroup.procs write is a `cgroup_join` span inside `runtime`.
    if !p.store.rootless {
        instance.join_trace =
            JoinTrace::start(Target::Below(p.store.cgroup_parent()), tx.clone()).ok();
    }
    instance.started_at = Instant::now();
    let mut child = cmd.spawn().map_err(InstanceError::Spawn)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cli = instance.process.insert(Supervised::from_child(child));
    if let Some(out) = stdout {
        spawn_marker_reader(out, tx.clone()).map_err(InstanceError::Thread)?;
    }
    if let Some(err) = stderr {
        spawn_output_reader(err, tx.clone()).map_err(InstanceError::Thread)?;
    }
    cli.watch_exit(None, p.limits.memory_bytes, tx)
        .map_err(InstanceError::Thread)?;
    Ok(instance)
}

/// The scenario's limits as Podman flags, in its cgroup parent; none rootless, where Podman
/// has no cgroup to apply them in (on cgroup v1 it ignores them; recorded as `limits`).
fn limit_flags(p: &PodmanPrepared) -> Vec<String> {
    if p.store.rootless {
        return Vec::new();
    }
    let mut flags = vec![
        format!("--cgroup-parent={}", p.store.cgroup_parent()),
        format!("--memory={}", p.limits.memory_bytes),
        format!("--cpus={}", p.limits.cpus),
    ];
    flags.extend(
        p.limits
            .cpuset
            .as_deref()
            .map(|c| format!("--cpuset-cpus={c}")),
    );
    flags.extend(p.limits.pids.map(|n| format!("--pids-limit={n}")));
    flags
}

pub(super) struct PodmanInstance {
    store: Arc<Store>,
    name: String,
    /// The container's init and its conmon, once Podman has reported them.
    pids: OnceLock<(u32, u32)>,
    /// The container's memory cgroup, once found.
    cgroup: OnceLock<PathBuf>,
    /// The foreground `podman run`: the marker channel (its exit is the container's). Not a
    /// resident process of the instance (a detached run would not stay), so not in its memory.
    process: Option<Supervised>,
    started_at: Instant,
    events: Receiver<Event>,
    link: Option<net::Link>,
    /// Rootless: the readiness port inside and where it is published on the host's loopback.
    published: Option<(u16, u16)>,
    /// The network namespace cvm made; closing the descriptor, once the container is gone,
    /// frees it.
    netns: Option<OwnedFd>,
    /// The io workload's host directory, removed once the container is gone.
    io_dir: Option<InstanceIoDir>,
    /// Watches for the container's cgroup join (ends itself; stopped at the latest on drop).
    join_trace: Option<JoinTrace>,
}

impl PodmanInstance {
    /// The container's init and conmon PIDs, from Podman (`State.Pid`, `State.ConmonPid`).
    fn pids(&self) -> Option<(u32, u32)> {
        if let Some(pids) = self.pids.get() {
            return Some(*pids);
        }
        let text = self
            .store
            .run(
                "inspect",
                &[
                    "inspect",
                    "--format",
                    "{{.State.Pid}} {{.State.ConmonPid}}",
                    &self.name,
                ],
            )
            .ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u32>().ok());
        let (Some(Some(init)), Some(Some(conmon))) = (fields.next(), fields.next()) else {
            return None;
        };
        if init == 0 || conmon == 0 {
            return None;
        }
        Some(*self.pids.get_or_init(|| (init, conmon)))
    }

    /// conmon, while it is still the parent of the container's init.
    fn conmon_pid(&self) -> Option<u32> {
        let (init, conmon) = self.pids()?;
        (procfs::parent_pid(init) == Some(conmon)).then_some(conmon)
    }

    /// The run's slirp4netns processes: named so, their command line naming a path in this
    /// store (the network namespace Podman keeps in its runtime directory).
    fn network_helpers(&self) -> Vec<u32> {
        let dir = self.store.dir().to_string_lossy().into_owned();
        procfs::processes()
            .filter(|(pid, proc_dir)| {
                procfs::name(*pid) == "slirp4netns"
                    && std::fs::read(proc_dir.join("cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir))
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The container's own memory cgroup; none rootless, where the container shares the user's
    /// (on this host the hierarchy's root: counting it would count the host).
    fn cgroup_dir(&self) -> Option<PathBuf> {
        if self.store.rootless {
            return None;
        }
        if let Some(dir) = self.cgroup.get() {
            return Some(dir.clone()).filter(|d| d.is_dir());
        }
        let dir = cgroup::memory_of_process(self.pids()?.0).filter(|d| d.is_dir())?;
        Some(self.cgroup.get_or_init(|| dir).clone())
    }
}

/// SIGTERM to the container's init through Podman, and SIGKILL after the grace period: the
/// client is only cvm's attached view, so signalling it would leave the container running.
struct PodmanStop<'a> {
    store: &'a Store,
    name: &'a str,
}

impl StopPolicy for PodmanStop<'_> {
    fn request(&self, _cli: Pid) -> bool {
        self.store
            .run("kill", &["kill", "--signal", "TERM", self.name])
            .is_ok()
    }
    fn force(&self, _cli: Pid) -> bool {
        self.store
            .run("kill", &["kill", "--signal", "KILL", self.name])
            .is_ok()
    }
}

impl Instance for PodmanInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        // The container's processes and conmon; not the client (see `process`). Rootless,
        // with no cgroup of its own, the container is conmon's process tree, and its network
        // helper, slirp4netns, stays as well.
        let mut pids = process::runtime_and_container_pids(None, self.cgroup_dir().as_deref());
        pids.extend(self.conmon_pid());
        if self.store.rootless {
            if let Some(conmon) = self.conmon_pid() {
                pids.extend(crate::backend::listen_watch::tree(conmon));
            }
            pids.extend(self.network_helpers());
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
    fn supervisor(&self) -> Supervisor {
        Supervisor::Pids(self.conmon_pid().into_iter().collect())
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        if let Some((inside, host)) = self.published {
            return (inside == port)
                .then(|| SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, host)));
        }
        self.link
            .as_ref()
            .map(|l| SocketAddr::V4(SocketAddrV4::new(l.container_addr, port)))
    }
    fn memory_cgroup(&self) -> Option<PathBuf> {
        self.cgroup_dir()
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        let mut first_error = None;
        if let Some(mut cli) = self.process.take() {
            let conmon = self.pids.get().map(|p| p.1);
            cli.stop(&PodmanStop {
                store: &self.store,
                name: &self.name,
            });
            cli.reap();
            // `--rm` removes the container once the client sees it exit; make sure it is gone
            // before the network it used is.
            if let Err(e) = self
                .store
                .run("rm", &["rm", "--force", "--time", "0", &self.name])
            {
                let gone = matches!(&e, StoreError::Failed { stderr, .. }
                    if stderr.contains("no such container"));
                if !gone {
                    first_error = Some(InstanceError::Remove(e));
                }
            }
            if let Some(conmon) = conmon {
                crate::backend::docker::reap_orphan(conmon);
            }
        }
        if let Some(link) = self.link.as_mut() {
            if let Err(e) = link.remove() {
                first_error.get_or_insert(InstanceError::RemoveLink(e));
            }
        }
        self.link = None;
        self.netns = None;
        self.io_dir = None;
        self.join_trace = None;
        first_error.map_or(Ok(()), |e| {
            Err(BackendError::teardown(BackendKind::Podman, e))
        })
    }
}

impl Drop for PodmanInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
