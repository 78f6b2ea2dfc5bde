//! One container: a foreground `docker run --rm` (the marker channel), its init, its shim, and
//! its teardown through the daemon.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::client::Client;
use super::{Daemon, DockerError, DockerPrepared};
use crate::backend::cgroup;
use crate::backend::cgroup_trace::{JoinTrace, Target};
use crate::backend::events::{spawn_marker_reader, spawn_output_reader, Event};
use crate::backend::io_dir::{InstanceIoDir, IoDirError, IoStore};
use crate::backend::process::{self, StopPolicy, Supervised};
use crate::backend::procfs;
use crate::backend::{BackendError, Instance, LaunchContext};
use crate::scenario::{BackendKind, NetworkMode, SeccompProfile, SecuritySpec};

/// The container's scratch directory, a tmpfs as with the other container backends.
/// Where a tmpfs is mounted in every Docker and Podman container (the root is read-only).
pub(crate) const TMP: &str = "/tmp";
/// How long to wait for the container to be created and get its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub(super) fn launch(
    p: &DockerPrepared,
    ctx: &LaunchContext,
) -> Result<DockerInstance, BackendError> {
    let fail = |e| BackendError::launch(BackendKind::Docker, e);
    let n = p.launches.fetch_add(1, Ordering::Relaxed);
    let name = format!("cvm-{}-docker-{}-{n}", ctx.run_id, ctx.instance);
    let client = p.daemon.client();
    let mut instance = DockerInstance {
        client: client.clone(),
        daemon: p.daemon.clone(),
        name: name.clone(),
        init: OnceLock::new(),
        cgroup: OnceLock::new(),
        process: None,
        started_at: Instant::now(),
        events: mpsc::channel().1,
        address: None,
        io_dir: None,
        join_trace: None,
    };
    let network = match p.network {
        NetworkMode::None => "none",
        NetworkMode::Private | NetworkMode::User => "bridge",
    };
    let mut cmd = client.command();
    cmd.args(["run", "--rm", "--name", &name, "--network", network])
        .args(["--hostname", &format!("cvm-{}", ctx.instance)])
        .args(["--memory", &p.limits.memory_bytes.to_string()])
        .args(["--cpus", &p.limits.cpus.to_string()])
        .args(
            p.limits
                .cpuset
                .as_deref()
                .map(|c| format!("--cpuset-cpus={c}")),
        )
        .args(p.limits.pids.map(|n| format!("--pids-limit={n}")))
        .args(["--security-opt", "no-new-privileges", "--read-only"]);
    let label = format!("{}-docker-{}-{n}", ctx.run_id, ctx.instance);
    instance.io_dir = workload_args(
        &mut cmd,
        &p.security,
        p.io.as_ref(),
        &label,
        &p.tag,
        &p.argv,
    )
    .map_err(|e| fail(DockerError::IoDir(e)))?;
    let (tx, events) = mpsc::channel();
    instance.events = events;
    // Docker's runc joins the container's cgroup, below the daemon's cgroup parent, unseen but
    // for this trace: each cgroup.procs write is a `cgroup_join` span inside `runtime`. The
    // trace ends itself once the writes are over.
    instance.join_trace =
        JoinTrace::start(Target::Below(p.daemon.cgroup_parent()), tx.clone()).ok();
    instance.started_at = Instant::now();
    let mut child = cmd.spawn().map_err(|e| fail(DockerError::Client(e)))?;
    // No phase point of its own: the start is inside `runtime`, which ends at init's
    // `CVM:configured`; the cgroup join is the trace's spans.
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cli = instance.process.insert(Supervised::from_child(child));
    if let Some(out) = stdout {
        spawn_marker_reader(out, tx.clone()).map_err(|e| fail(DockerError::Thread(e)))?;
    }
    if let Some(err) = stderr {
        spawn_output_reader(err, tx.clone()).map_err(|e| fail(DockerError::Thread(e)))?;
    }
    cli.watch_exit(None, p.limits.memory_bytes, tx)
        .map_err(|e| fail(DockerError::Thread(e)))?;
    if p.network.has_link() {
        instance.address = Some(wait_address(&client, &name).map_err(fail)?);
    }
    Ok(instance)
}

/// The container's address, as soon as the daemon has given it one. Asked of the Engine API on
/// the daemon's socket every millisecond (the host's probe cannot start before the address is
/// known, so its lag is the probe's bias: asked with `docker inspect` every 20 ms, it put a
/// median 12 ms into Docker's `ready_probe_delay`), or with the client where the daemon is not
/// on a Unix socket.
fn wait_address(client: &Client, name: &str) -> Result<IpAddr, DockerError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let socket = client.socket();
    let poll = Duration::from_millis(if socket.is_some() { 1 } else { 20 });
    while Instant::now() < deadline {
        let address = match &socket {
            Some(socket) => super::client::engine_get(socket, &format!("/containers/{name}/json"))
                .and_then(|body| super::client::address_of(&body)),
            None => client
                .run(
                    "inspect",
                    &[
                        "inspect",
                        "--format",
                        "{{.NetworkSettings.IPAddress}}",
                        name,
                    ],
                )
                .ok()
                .and_then(|text| text.parse().ok()),
        };
        if let Some(ip) = address {
            return Ok(ip);
        }
        std::thread::sleep(poll);
    }
    Err(DockerError::NoAddress)
}

pub(super) struct DockerInstance {
    client: Client,
    daemon: Daemon,
    name: String,
    /// The container's init PID, once the daemon has reported it.
    init: OnceLock<u32>,
    /// The container's memory cgroup, once found.
    cgroup: OnceLock<PathBuf>,
    /// The foreground `docker run`: the marker channel (its exit is the container's). Not a
    /// resident process of the instance, so not in its memory.
    process: Option<Supervised>,
    started_at: Instant,
    events: Receiver<Event>,
    address: Option<IpAddr>,
    /// The io workload's host directory, removed once the container is gone.
    io_dir: Option<InstanceIoDir>,
    /// Watches for the container's cgroup join (ends itself; stopped at the latest on drop).
    join_trace: Option<JoinTrace>,
}

impl DockerInstance {
    /// The container's init PID, from the daemon (`State.Pid`).
    fn init_pid(&self) -> Option<u32> {
        if let Some(pid) = self.init.get() {
            return Some(*pid);
        }
        let pid = self
            .client
            .run(
                "inspect",
                &["inspect", "--format", "{{.State.Pid}}", &self.name],
            )
            .ok()?
            .parse::<u32>()
            .ok()
            .filter(|&pid| pid != 0)?;
        Some(*self.init.get_or_init(|| pid))
    }

    /// The container's memory cgroup, from its init's `/proc/<pid>/cgroup`: where Docker puts
    /// it depends on its cgroup driver and the host's layout.
    fn cgroup_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = self.cgroup.get() {
            return Some(dir.clone()).filter(|d| d.is_dir());
        }
        let dir = cgroup::memory_of_process(self.init_pid()?).filter(|d| d.is_dir())?;
        Some(self.cgroup.get_or_init(|| dir).clone())
    }

    /// The container's shim: the parent of its init (containerd starts one per container, and
    /// it stays as long as the container does).
    fn shim_pid(&self) -> Option<u32> {
        let ppid = procfs::parent_pid(self.init_pid()?)?;
        procfs::name(ppid)
            .starts_with("containerd-shim")
            .then_some(ppid)
    }
}

/// The `run` arguments Docker and Podman share after their own options: the scenario's added
/// capabilities and seccomp choice, the io workload's host directory bind-mounted (`label` names
/// the one made for this instance, returned) with a tmpfs `/tmp` beside it, the marker channel's
/// variable, the image `tag` and the workload; stdout and stderr piped, in a process group.
pub(crate) fn workload_args(
    cmd: &mut Command,
    security: &SecuritySpec,
    io: Option<&(String, IoStore)>,
    label: &str,
    tag: &str,
    argv: &[String],
) -> Result<Option<InstanceIoDir>, IoDirError> {
    cmd.args(
        security
            .cap_add
            .get_ref()
            .iter()
            .map(|c| format!("--cap-add={c}")),
    )
    .args(
        (security.seccomp == SeccompProfile::Unconfined)
            .then_some("--security-opt=seccomp=unconfined"),
    );
    let mut made = None;
    if let Some((inside, store)) = io {
        let dir = store.instance_dir(label)?;
        // A bind mount of the same host directory the other backends write to, never a
        // tmpfs: a tmpfs would measure memory.
        cmd.arg("--mount").arg(format!(
            "type=bind,source={},target={inside}",
            dir.path().display()
        ));
        if inside != TMP {
            cmd.args(["--tmpfs", TMP]);
        }
        made = Some(dir);
    } else {
        cmd.args(["--tmpfs", TMP]);
    }
    cmd.args(["-e", &format!("{}=1", cvm_proto::MARKER_FD_ENV)])
        .arg(tag)
        .args(argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok(made)
}

/// The processes listening on the Unix socket at `path`: its inode from `/proc/net/unix`, then
/// every process holding that socket open. How the daemons behind a socket are found without
/// assuming where their pid files are.
pub(super) fn socket_listeners(path: &Path) -> Vec<u32> {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    // The table has the path the daemon bound, which may differ from the client's by a link
    // (`/var/run` is `/run` on Debian).
    let mut wanted = vec![path.to_path_buf()];
    wanted.extend(std::fs::canonicalize(path));
    // Columns: Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is "listening".
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let listening = u32::from_str_radix(f.get(3)?, 16).ok()? & 0x10000 != 0;
            let bound = Path::new(f.get(7)?);
            (listening && wanted.iter().any(|w| w == bound)).then(|| format!("socket:[{}]", f[6]))
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    procfs::processes()
        .filter(|(_, dir)| {
            std::fs::read_dir(dir.join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
                })
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The value of `-address`/`--address` in a process's command line (a shim names its
/// containerd's socket so).
pub(super) fn address_argument(pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let i = args
        .iter()
        .position(|a| *a == b"-address" || *a == b"--address")?;
    let value = std::str::from_utf8(args.get(i + 1)?).ok()?;
    Some(PathBuf::from(value))
}

/// SIGTERM to the container's init through the daemon, and `docker kill` after the grace
/// period: the CLI is only a client, so signalling it would leave the container running.
struct DockerStop<'a> {
    client: &'a Client,
    name: &'a str,
}

impl StopPolicy for DockerStop<'_> {
    fn request(&self, _cli: Pid) -> bool {
        self.client
            .run("kill", &["kill", "--signal", "TERM", self.name])
            .is_ok()
    }
    fn force(&self, _cli: Pid) -> bool {
        self.client.run("kill", &["kill", self.name]).is_ok()
    }
}

impl Instance for DockerInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        // The container's processes and its shim; not the CLI, which a detached `docker run`
        // would not leave behind (cvm keeps it only as the marker channel), and not the
        // daemons, which every container of the host shares (`daemon_pids`).
        let mut pids = process::runtime_and_container_pids(None, self.cgroup_dir().as_deref());
        pids.extend(self.shim_pid());
        pids.sort_unstable();
        pids.dedup();
        pids
    }
    fn supervisor(&self) -> crate::backend::Supervisor {
        crate::backend::Supervisor::Pids(self.shim_pid().into_iter().collect())
    }
    fn daemon_pids(&self) -> Vec<u32> {
        self.daemon.pids(self.shim_pid())
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        self.address.map(|ip| SocketAddr::new(ip, port))
    }
    fn memory_cgroup(&self) -> Option<PathBuf> {
        self.cgroup_dir()
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        let fail = |e| BackendError::teardown(BackendKind::Docker, e);
        let mut result = Ok(());
        if let Some(mut cli) = self.process.take() {
            let shim = self.shim_pid();
            cli.stop(&DockerStop {
                client: &self.client,
                name: &self.name,
            });
            cli.reap();
            // `--rm` removes the container after the CLI sees it exit, asynchronously; make
            // sure it is gone before teardown returns.
            if let Err(e) = self.client.run("rm", &["rm", "--force", &self.name]) {
                let gone = matches!(&e, DockerError::Command { stderr, .. }
                    if stderr.contains("No such container") || stderr.contains("is already in progress"));
                if !gone {
                    result = Err(fail(e));
                }
            }
            if let Some(shim) = shim {
                reap_orphan(shim);
            }
        }
        self.io_dir = None;
        result
    }
}

/// A shim is double-forked by containerd, so when cvm is a child subreaper (the OCI backends
/// make it one) the shim becomes cvm's child: if it has already exited, cvm reaps it, or it
/// would stay a zombie until cvm exits. Only a zombie whose parent is cvm is waited for, and
/// never waited *on*: teardown's duration is measured. Not through a
/// [`crate::backend::process::Supervised`]: cvm did not spawn the shim and learns its PID from
/// `/proc`; a zombie child of cvm's keeps its number until cvm reaps it, so the check and the
/// wait cannot meet different processes.
pub(crate) fn reap_orphan(pid: u32) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return;
    };
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return;
    };
    let mut fields = after_name.split_whitespace();
    let zombie = fields.next() == Some("Z");
    let ours = fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    if let (true, true, Ok(raw)) = (zombie, ours, i32::try_from(pid)) {
        let _ = nix::sys::wait::waitpid(Pid::from_raw(raw), None);
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_traced_to_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(socket_listeners(&path), vec![std::process::id()]);
        assert!(socket_listeners(&dir.path().join("none.sock")).is_empty());
    }
}
