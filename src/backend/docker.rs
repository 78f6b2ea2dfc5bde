//! The `docker` backend: the same image run by Docker itself, the system most people mean by
//! "containers", through an existing daemon (`DOCKER_HOST`, else the default socket).
//!
//! The image directory is imported once per content hash (`docker import`, tagged
//! `cvm:<hash>`), and each launch is a foreground `docker run --rm` of `cvm-guest init --
//! <workload>` with the scenario's limits, Docker's default capabilities, `no-new-privileges`, a
//! read-only root and a tmpfs `/tmp`, like the other container backends (for the io workload,
//! its directory is a bind mount of the host directory every backend writes to, never a tmpfs,
//! see [`super::io_dir`]). `docker run` cannot
//! hand a descriptor through to the container, so markers travel on the container's stdout
//! (`CVM_MARKER_FD=1`), which the CLI streams back: the stamps include Docker's attach path, as
//! a user of Docker would experience it. Its `runtime` phase runs from the CLI's start to init's
//! `CVM:configured`: client, daemon, containerd and runc together.
//!
//! Network: `none` is `--network none`; `private` is Docker's default bridge, reached at the
//! container's bridge address (a daemon started with `--bridge=none` has none, and the launch
//! says so).
//!
//! cvm never starts a daemon itself: a default `dockerd` rewrites the host's firewall and adds a
//! bridge. The tests start a private one (own data root and socket, `--iptables=false`,
//! `--bridge=none`) and stop it afterwards.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::cgroup::{self, Limits};
use super::events::{spawn_marker_reader, spawn_output_reader, Event};
use super::io_dir::{self, InstanceIoDir, IoStore};
use super::process::{self, StopPolicy, Supervised};
use super::{
    Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared, Stack,
};
use crate::backend::{DiskLayers, Layer};
use crate::image::Image;
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use cvm_proto::applet::init_command;
use cvm_proto::listen::watch_port_options;

/// The daemon's socket when `DOCKER_HOST` is unset.
const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The container's scratch directory, a tmpfs as with the other container backends.
const TMP: &str = "/tmp";

/// The programs a Docker installation runs a container with: the CLI, the daemons, the shim,
/// the OCI runtime and the init Docker offers (`--init`).
pub const DOCKER_BINARIES: [&str; 6] = [
    "docker",
    "dockerd",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "docker-init",
];

/// How long to wait for the container to be created and get its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot run the docker client (install docker.io)")]
    Client(#[source] io::Error),
    #[error("`docker {step}` failed: {stderr}")]
    Command { step: &'static str, stderr: String },
    #[error(
        "the container never got an address on Docker's bridge (is the default bridge disabled?)"
    )]
    NoAddress,
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("`docker image inspect` described the image's storage in a way cvm cannot read: {0}")]
    Storage(String),
    #[error("cannot list the shared libraries of Docker's binaries")]
    Libraries(#[source] crate::image::libs::LibsError),
    #[error("cannot use the io directory")]
    IoDir(#[source] io_dir::IoDirError),
}

pub struct DockerBackend {
    /// `DOCKER_HOST` for every client call; `None` uses the client's own default.
    host: Option<String>,
    probe: OnceLock<Availability>,
}

impl DockerBackend {
    /// The daemon named by `DOCKER_HOST`, or the default socket.
    pub fn new() -> Self {
        Self::with_host(std::env::var("DOCKER_HOST").ok())
    }

    /// A specific daemon (`unix:///path/docker.sock`), as the tests use their private one.
    pub fn with_host(host: Option<String>) -> Self {
        DockerBackend {
            host,
            probe: OnceLock::new(),
        }
    }

    fn client(&self) -> Client {
        Client {
            host: self.host.clone(),
        }
    }
}

impl Default for DockerBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone)]
struct Client {
    host: Option<String>,
}

impl Client {
    fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        if let Some(host) = &self.host {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `docker args...`; its trimmed stdout, or the failure in Docker's words.
    fn run(&self, step: &'static str, args: &[&str]) -> Result<String, DockerError> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(DockerError::Client)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(DockerError::Command {
                step,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn server_version(&self) -> Result<String, DockerError> {
        self.run("version", &["version", "--format", "{{.Server.Version}}"])
    }
}

impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }
    fn stack(&self) -> Stack {
        Stack::Container
    }
    fn availability(&self) -> Availability {
        self.probe
            .get_or_init(|| match self.client().server_version() {
                Ok(_) => Availability::Available,
                Err(DockerError::Client(e)) => Availability::unavailable(
                    format!("the docker client cannot be run: {e}"),
                    "install the Debian package docker.io",
                ),
                Err(e) => Availability::unavailable(
                    format!("no Docker daemon answers: {e}"),
                    "start a Docker daemon, or point DOCKER_HOST at one",
                ),
            })
            .clone()
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let fail = |e| BackendError::prepare(BackendKind::Docker, e);
        let client = self.client();
        let version = client.server_version().map_err(fail)?;
        let tag = format!("cvm:{}", image.hash());
        if client
            .run("image inspect", &["image", "inspect", &tag])
            .is_err()
        {
            import(&client, image.rootfs(), &tag).map_err(fail)?;
        }
        let argv = init_command(
            &watch_port_options(scenario.readiness.port()),
            &image.workload_argv(&scenario.workload),
        );
        let stored = stored_image(&client, &tag).map_err(fail)?;
        let mut disk = image_layers(image, &stored.dirs);
        disk.insert(Layer::Runtime, runtime_files().map_err(fail)?);
        let io = match scenario.workload.io_target() {
            Some((inside, _)) => IoStore::for_scenario(scenario)
                .map_err(|e| fail(DockerError::IoDir(e)))?
                .map(|store| (inside, store)),
            None => None,
        };
        Ok(Box::new(DockerPrepared {
            stored,
            io,
            client,
            version,
            tag,
            argv,
            limits: super::limits(scenario),
            network: scenario.resources.network,
            disk,
            launches: AtomicU32::new(0),
        }))
    }
}

/// `tar -C rootfs -c . | docker import - tag`.
fn import(client: &Client, rootfs: &Path, tag: &str) -> Result<(), DockerError> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(DockerError::Client)?;
    let stdout = tar.stdout.take().map_or_else(Stdio::null, Stdio::from);
    let out = client
        .command()
        .args(["import", "-", tag])
        .stdin(stdout)
        .output()
        .map_err(DockerError::Client)?;
    let _ = tar.wait();
    if out.status.success() {
        Ok(())
    } else {
        Err(DockerError::Command {
            step: "import",
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

struct DockerPrepared {
    client: Client,
    version: String,
    tag: String,
    argv: Vec<String>,
    limits: Limits,
    network: NetworkMode,
    disk: DiskLayers,
    launches: AtomicU32,
    /// Where Docker keeps the imported image, as `docker image inspect` reports it.
    stored: StoredImage,
    /// The io workload's directory inside, and the store its host directories come from.
    io: Option<(String, IoStore)>,
}

impl Prepared for DockerPrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.insert("runtime".into(), format!("docker {}", self.version));
        c.insert(
            "network".into(),
            match self.network {
                NetworkMode::None => "none (--network none)",
                NetworkMode::Private | NetworkMode::User => "private (docker default bridge)",
            }
            .into(),
        );
        c.insert("rootfs".into(), format!("docker import {}", self.tag));
        c.insert("image_storage".into(), self.stored.describe());
        c.insert(
            "capabilities".into(),
            "docker default, no-new-privileges".into(),
        );
        c
    }

    fn disk_layers(&self) -> DiskLayers {
        self.disk.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |e| BackendError::launch(BackendKind::Docker, e);
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        let name = format!("cvm-{}-docker-{}-{n}", ctx.run_id, ctx.instance);
        let mut instance = DockerInstance {
            client: self.client.clone(),
            name: name.clone(),
            init: OnceLock::new(),
            cgroup: OnceLock::new(),
            process: None,
            started_at: Instant::now(),
            events: mpsc::channel().1,
            address: None,
            io_dir: None,
        };
        let network = match self.network {
            NetworkMode::None => "none",
            NetworkMode::Private | NetworkMode::User => "bridge",
        };
        let mut cmd = self.client.command();
        cmd.args(["run", "--rm", "--name", &name, "--network", network])
            .args(["--hostname", &format!("cvm-{}", ctx.instance)])
            .args(["--memory", &self.limits.memory_bytes.to_string()])
            .args(["--cpus", &self.limits.cpus.to_string()])
            .args(
                self.limits
                    .cpuset
                    .as_deref()
                    .map(|c| format!("--cpuset-cpus={c}")),
            )
            .args(["--security-opt", "no-new-privileges", "--read-only"]);
        if let Some((inside, store)) = &self.io {
            let label = format!("{}-docker-{}-{n}", ctx.run_id, ctx.instance);
            let dir = store
                .instance_dir(&label)
                .map_err(|e| fail(DockerError::IoDir(e)))?;
            // A bind mount of the same host directory the other backends write to, never a
            // tmpfs: a tmpfs would measure memory.
            cmd.arg("--mount").arg(format!(
                "type=bind,source={},target={inside}",
                dir.path().display()
            ));
            if inside != TMP {
                cmd.args(["--tmpfs", TMP]);
            }
            instance.io_dir = Some(dir);
        } else {
            cmd.args(["--tmpfs", TMP]);
        }
        cmd.args(["-e", &format!("{}=1", cvm_proto::MARKER_FD_ENV)])
            .arg(&self.tag)
            .args(&self.argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        instance.started_at = Instant::now();
        let mut child = cmd.spawn().map_err(|e| fail(DockerError::Client(e)))?;
        // No phase point of its own: the runtime's start, cgroup join included, is inside
        // `runtime`, which ends at init's `CVM:configured`.
        let (tx, events) = mpsc::channel();
        instance.events = events;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let cli = instance.process.insert(Supervised::from_child(child));
        if let Some(out) = stdout {
            spawn_marker_reader(out, tx.clone()).map_err(|e| fail(DockerError::Thread(e)))?;
        }
        if let Some(err) = stderr {
            spawn_output_reader(err, tx.clone()).map_err(|e| fail(DockerError::Thread(e)))?;
        }
        cli.watch_exit(None, self.limits.memory_bytes, tx)
            .map_err(|e| fail(DockerError::Thread(e)))?;
        if self.network.has_link() {
            instance.address = Some(wait_address(&self.client, &name).map_err(fail)?);
        }
        Ok(Box::new(instance))
    }
}

fn wait_address(client: &Client, name: &str) -> Result<IpAddr, DockerError> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(text) = client.run(
            "inspect",
            &[
                "inspect",
                "--format",
                "{{.NetworkSettings.IPAddress}}",
                name,
            ],
        ) {
            if let Ok(ip) = text.parse() {
                return Ok(ip);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(DockerError::NoAddress)
}

struct DockerInstance {
    client: Client,
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
        let ppid = parent_pid(self.init_pid()?)?;
        let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok()?;
        comm.trim().starts_with("containerd-shim").then_some(ppid)
    }
}

/// The parent of `pid`, from `/proc/<pid>/stat` (the field after the parenthesised name, which
/// may itself hold spaces and parentheses).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The processes listening on the Unix socket at `path`: its inode from `/proc/net/unix`, then
/// every process holding that socket open. How the daemons behind a socket are found without
/// assuming where their pid files are.
fn socket_listeners(path: &Path) -> Vec<u32> {
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
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let holds = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
            });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// The value of `-address`/`--address` in a process's command line (a shim names its
/// containerd's socket so).
fn address_argument(pid: u32) -> Option<PathBuf> {
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
    fn daemon_pids(&self) -> Vec<u32> {
        // dockerd listens on the client's socket; containerd on the one its shim names.
        let docker_socket = self
            .client
            .host
            .as_deref()
            .and_then(|h| h.strip_prefix("unix://"))
            .unwrap_or(DEFAULT_DOCKER_SOCKET);
        let mut pids = socket_listeners(Path::new(docker_socket));
        if let Some(address) = self.shim_pid().and_then(address_argument) {
            pids.extend(socket_listeners(&address));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
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
        }
        self.io_dir = None;
        result
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The imported image as Docker stores it: its storage driver and the directories that hold
/// its unpacked files (for overlay2, the layer directories `UpperDir` and `LowerDir` from
/// `docker image inspect`'s `GraphDriver.Data`), and the size Docker itself reports.
#[derive(Debug, Clone)]
pub struct StoredImage {
    driver: String,
    pub dirs: Vec<PathBuf>,
    size: u64,
}

impl StoredImage {
    fn describe(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        format!(
            "{} layer directories (docker image inspect GraphDriver.Data: UpperDir, LowerDir) \
             counted file by file: {}; Docker reports {} B",
            self.driver,
            dirs.join(", "),
            self.size
        )
    }
}

fn stored_image(client: &Client, tag: &str) -> Result<StoredImage, DockerError> {
    let text = client.run(
        "image inspect",
        &["image", "inspect", "--format", "{{json .}}", tag],
    )?;
    parse_stored_image(&text)
}

/// The pure part of [`stored_image`]: the directories that exist on this host.
fn parse_stored_image(json: &str) -> Result<StoredImage, DockerError> {
    let bad = |what: &str| DockerError::Storage(what.to_string());
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let graph = &v["GraphDriver"];
    let driver = graph["Name"]
        .as_str()
        .ok_or_else(|| bad("no GraphDriver.Name"))?;
    let mut dirs = Vec::new();
    for key in ["UpperDir", "LowerDir", "Dir"] {
        if let Some(list) = graph["Data"][key].as_str() {
            dirs.extend(list.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
        }
    }
    if dirs.is_empty() {
        return Err(bad(&format!(
            "the {driver} driver names no UpperDir, LowerDir or Dir"
        )));
    }
    if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
        return Err(bad(&format!(
            "{} is not a directory on this host (is the daemon remote?)",
            missing.display()
        )));
    }
    Ok(StoredImage {
        driver: driver.to_string(),
        dirs,
        size: v["Size"].as_u64().unwrap_or(0),
    })
}

/// The image's `app` and `libs` layers as Docker stores them: each file the image names, at the
/// same place in Docker's layer directories, and the directories themselves for the rest.
fn image_layers(image: &Image, stored: &[PathBuf]) -> DiskLayers {
    let mut layers = DiskLayers::new();
    for (layer, files) in image.layer_files() {
        let mut mapped = Vec::new();
        for f in files {
            let Ok(rel) = f.strip_prefix(image.rootfs()) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            mapped.extend(stored.iter().map(|d| d.join(rel)).filter(|p| p.exists()));
        }
        layers.insert(layer, mapped);
    }
    layers
        .entry(Layer::Libs)
        .or_default()
        .extend(stored.iter().cloned());
    layers
}

/// Docker's binaries, found on the host's PATH, with their shared libraries.
fn runtime_files() -> Result<Vec<PathBuf>, DockerError> {
    let found: Vec<PathBuf> = DOCKER_BINARIES
        .iter()
        .filter_map(|b| super::find_binary(b))
        .collect();
    super::with_libraries(&found).map_err(DockerError::Libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_name_with_spaces_and_parentheses() {
        assert_eq!(
            parent_pid(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(parent_pid(u32::MAX), None);
    }

    #[test]
    fn a_listening_socket_is_traced_to_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(socket_listeners(&path), vec![std::process::id()]);
        assert!(socket_listeners(&dir.path().join("none.sock")).is_empty());
    }

    #[test]
    fn the_stored_image_is_read_from_graph_driver_data() {
        let dir = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir.path().join("u"), dir.path().join("l"));
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&lower).unwrap();
        let json = serde_json::json!({
            "Size": 1234,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "UpperDir": upper, "LowerDir": lower, "WorkDir": dir.path().join("w"),
                "MergedDir": dir.path().join("m")}}
        });
        let stored = parse_stored_image(&json.to_string()).unwrap();
        assert_eq!(stored.dirs, vec![upper, lower]);
        assert!(stored.describe().contains("Docker reports 1234 B"));
        let missing = serde_json::json!({"GraphDriver": {"Name": "overlay2",
            "Data": {"UpperDir": dir.path().join("gone")}}});
        let e = parse_stored_image(&missing.to_string()).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let none = serde_json::json!({"GraphDriver": {"Name": "vfs", "Data": null}});
        assert!(parse_stored_image(&none.to_string()).is_err());
    }
}
