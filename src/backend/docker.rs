//! The `docker` backend: the same image run by Docker itself, the system most people mean by
//! "containers", through an existing daemon (`DOCKER_HOST`, else the default socket).
//!
//! The image directory is imported once per content hash (`docker import`, tagged
//! `cvm:<hash>`), and each launch is a foreground `docker run --rm` of `cvm-guest init --
//! <workload>` with the scenario's limits, Docker's default capabilities, `no-new-privileges`, a
//! read-only root and a tmpfs `/tmp`, like the other container backends. `docker run` cannot
//! hand a descriptor through to the container, so markers travel on the container's stdout
//! (`CVM_MARKER_FD=1`), which the CLI streams back: the stamps include Docker's attach path, as
//! a user of Docker would experience it. `spawn` is when the CLI's exec returned.
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
use super::process::{self, StopPolicy, Supervised};
use super::{
    Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared, Stack,
};
use crate::backend::{DiskLayers, Layer};
use crate::image::Image;
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use cvm_proto::applet::init_command;
use cvm_proto::metric::Phase;

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
        let argv = init_command(&[], &image.workload_argv(&scenario.workload));
        let mut disk = image.layer_files();
        disk.insert(
            Layer::Runtime,
            ["/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/sbin/runc"]
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.is_file())
                .collect(),
        );
        Ok(Box::new(DockerPrepared {
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
            cgroup: OnceLock::new(),
            process: None,
            started_at: Instant::now(),
            events: mpsc::channel().1,
            address: None,
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
            .args(["--security-opt", "no-new-privileges", "--read-only"])
            .args(["--tmpfs", "/tmp"])
            .args(["-e", &format!("{}=1", cvm_proto::MARKER_FD_ENV)])
            .arg(&self.tag)
            .args(&self.argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        instance.started_at = Instant::now();
        let mut child = cmd.spawn().map_err(|e| fail(DockerError::Client(e)))?;
        let spawned = Instant::now();
        let (tx, events) = mpsc::channel();
        instance.events = events;
        let _ = tx.send(Event::Phase(Phase::Spawn, spawned));
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
    /// The container's memory cgroup, once found.
    cgroup: OnceLock<PathBuf>,
    /// The foreground `docker run` (its exit is the container's).
    process: Option<Supervised>,
    started_at: Instant,
    events: Receiver<Event>,
    address: Option<IpAddr>,
}

impl DockerInstance {
    /// The container's memory cgroup, from its init's `/proc/<pid>/cgroup` (the init PID from
    /// the daemon): where Docker puts it depends on its cgroup driver and the host's layout.
    fn cgroup_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = self.cgroup.get() {
            return Some(dir.clone()).filter(|d| d.is_dir());
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
        let dir = cgroup::memory_of_process(pid).filter(|d| d.is_dir())?;
        Some(self.cgroup.get_or_init(|| dir).clone())
    }
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
        process::runtime_and_container_pids(self.process.as_ref(), self.cgroup_dir().as_deref())
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
        result
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
