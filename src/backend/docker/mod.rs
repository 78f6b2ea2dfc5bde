//! The `docker` backend: the same image run by Docker itself, the system most people mean by
//! "containers".
//!
//! Which daemon ([`DaemonChoice`]): an existing one when one answers (`--docker-host`,
//! `DOCKER_HOST`, else the client's default socket), otherwise a private `dockerd` cvm starts
//! for the run and stops at its end ([`daemon`]: own data root in cvm's cache, own exec root,
//! socket and bridge, no say over the host's firewall). `--docker-daemon existing` never starts
//! one; `managed` always does. The daemon's start (`docker_daemon_start`) and memory
//! (`memory_daemon`) are host-wide figures, never inside an instance's startup or PSS.
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
//! Network: `none` is `--network none`; `private` is the daemon's default bridge, reached at the
//! container's bridge address (for a private daemon, cvm's bridge; an existing daemon started
//! with `--bridge=none` has none, and the launch says so).

mod bridge;
mod client;
pub mod daemon;
mod instance;
mod leftovers;
mod storage;

use std::io;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};

use cvm_proto::applet::init_command;
use cvm_proto::listen::watch_port_options;
use cvm_proto::metric::Metric;

use super::cgroup::Limits;
use super::io_dir::{self, IoStore};
use super::{
    Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared, Stack,
};
use crate::backend::{DiskLayers, Layer};
use crate::image::Image;
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use client::Client;
use daemon::{DaemonError, ManagedDaemon};
pub(crate) use instance::{reap_orphan, workload_args};
pub(crate) use storage::{image_layers, parse_stored_image};
pub use storage::{StoredImage, DOCKER_BINARIES};

/// The daemon's socket when `DOCKER_HOST` is unset.
const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot run the docker client (install docker.io)")]
    Client(#[source] io::Error),
    #[error("`docker {step}` failed: {stderr}")]
    Command { step: &'static str, stderr: String },
    #[error("`docker {step}` did not finish within {limit_s} s; it was killed")]
    TimedOut { step: &'static str, limit_s: u64 },
    #[error("cannot run tar to feed `docker import` (install tar)")]
    Tar(#[source] io::Error),
    #[error("tar of the image's root filesystem failed ({exit}): {stderr}; the partial import was removed")]
    TarFailed { exit: String, stderr: String },
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
    #[error("cannot start a private Docker daemon")]
    Daemon(#[source] DaemonError),
    #[error("no Docker daemon to use: {0}")]
    NoDaemon(String),
}

/// Which Docker daemon the backend uses (`--docker-daemon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DaemonChoice {
    /// An existing daemon if one answers, else a private one cvm starts and stops
    #[default]
    Auto,
    /// Always a private daemon cvm starts for the run (ignores DOCKER_HOST)
    Managed,
    /// Only an existing daemon; never start one
    Existing,
}

/// The Docker options of the command line.
#[derive(Debug, Clone, Default)]
pub struct DockerOptions {
    pub daemon: DaemonChoice,
    /// `--docker-host`: an existing daemon's address (over `DOCKER_HOST`).
    pub host: Option<String>,
}

/// The daemon a run would use, decided without starting anything (`cvm doctor` shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonPlan {
    /// A daemon that answers: its address (the client's default when `None`) and version.
    Existing {
        host: Option<String>,
        version: String,
    },
    /// None answers (or one was asked for): cvm will start a private dockerd; why.
    Managed { why: String },
    /// Neither: why, and the fix.
    Unavailable { reason: String, hint: String },
}

impl DaemonPlan {
    /// One line for `cvm doctor` and the run's configuration.
    pub fn describe(&self) -> String {
        match self {
            DaemonPlan::Existing { host, version } => format!(
                "existing dockerd {version} at {}",
                host.as_deref().unwrap_or(DEFAULT_DOCKER_SOCKET)
            ),
            DaemonPlan::Managed { why } => {
                format!("a private dockerd cvm starts for the run and stops at its end ({why})")
            }
            DaemonPlan::Unavailable { reason, .. } => format!("none: {reason}"),
        }
    }
}

/// The daemon in use.
#[derive(Debug, Clone)]
enum Daemon {
    /// One cvm found running (`host` is the client's `DOCKER_HOST`, `None` for its default).
    Existing { host: Option<String> },
    /// cvm's own; stopped when the backend and every prepared run of it are gone.
    Managed(Arc<ManagedDaemon>),
}

impl Daemon {
    /// The cgroup its containers' cgroups are created in: a private daemon's own
    /// `--cgroup-parent`; an existing one's default, `docker` (its cgroupfs driver's; under
    /// the systemd driver containers sit in scopes the join trace does not follow).
    fn cgroup_parent(&self) -> String {
        match self {
            Daemon::Managed(d) => d.cgroup_parent(),
            Daemon::Existing { .. } => "docker".into(),
        }
    }

    fn client(&self) -> Client {
        Client {
            host: match self {
                Daemon::Existing { host } => host.clone(),
                Daemon::Managed(d) => Some(d.host()),
            },
        }
    }

    /// The host-wide daemons: a private daemon's known PIDs; an existing one's found through
    /// its sockets (dockerd listens on the client's, containerd on the one the shim names).
    fn pids(&self, shim: Option<u32>) -> Vec<u32> {
        let mut pids = match self {
            Daemon::Managed(d) => d.pids(),
            Daemon::Existing { .. } => {
                let socket = self
                    .client()
                    .socket()
                    .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.into());
                let mut pids = instance::socket_listeners(&socket);
                if let Some(address) = shim.and_then(instance::address_argument) {
                    pids.extend(instance::socket_listeners(&address));
                }
                pids
            }
        };
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

pub struct DockerBackend {
    options: DockerOptions,
    plan: OnceLock<DaemonPlan>,
    /// The daemon, once a prepare has needed it.
    daemon: Mutex<Option<Daemon>>,
}

impl DockerBackend {
    /// The daemon the options and `DOCKER_HOST` name, or cvm's own.
    pub fn new(options: &DockerOptions) -> Self {
        let mut options = options.clone();
        if options.host.is_none() && options.daemon != DaemonChoice::Managed {
            options.host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        }
        DockerBackend {
            options,
            plan: OnceLock::new(),
            daemon: Mutex::new(None),
        }
    }

    /// A specific existing daemon (`unix:///path/docker.sock`), as the tests use one of cvm's.
    pub fn with_host(host: Option<String>) -> Self {
        Self::new(&DockerOptions {
            daemon: DaemonChoice::Existing,
            host,
        })
    }

    /// Which daemon a run would use, probed once.
    pub fn plan(&self) -> DaemonPlan {
        self.plan.get_or_init(|| plan(&self.options)).clone()
    }

    /// The daemon, a private one started on first use.
    fn daemon(&self) -> Result<Daemon, DockerError> {
        let mut slot = self.daemon.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let daemon = match self.plan() {
            DaemonPlan::Existing { host, .. } => Daemon::Existing { host },
            DaemonPlan::Managed { .. } => Daemon::Managed(Arc::new(
                ManagedDaemon::start().map_err(DockerError::Daemon)?,
            )),
            DaemonPlan::Unavailable { reason, .. } => return Err(DockerError::NoDaemon(reason)),
        };
        Ok(slot.insert(daemon).clone())
    }
}

/// The decision behind [`DockerBackend::plan`].
fn plan(options: &DockerOptions) -> DaemonPlan {
    if options.daemon == DaemonChoice::Managed {
        return managed_plan("--docker-daemon managed".into());
    }
    let client = Client {
        host: options.host.clone(),
    };
    let at = options.host.as_deref().unwrap_or(DEFAULT_DOCKER_SOCKET);
    match client.server_version() {
        Ok(version) => DaemonPlan::Existing {
            host: options.host.clone(),
            version,
        },
        Err(DockerError::Client(e)) => DaemonPlan::Unavailable {
            reason: format!("the docker client cannot be run: {e}"),
            hint: "install the Debian package docker.io".into(),
        },
        Err(e) if options.host.is_some() || options.daemon == DaemonChoice::Existing => {
            DaemonPlan::Unavailable {
                reason: format!("no Docker daemon answers at {at}: {e}"),
                hint: "start that daemon, or leave out --docker-host, DOCKER_HOST and --docker-daemon existing to let cvm start a private one"
                    .into(),
            }
        }
        Err(_) => managed_plan(format!("no daemon answers at {at}")),
    }
}

/// A private daemon, if this host can run one.
fn managed_plan(why: String) -> DaemonPlan {
    let missing: Vec<&str> = ["dockerd", "containerd", "docker", "ip"]
        .into_iter()
        .filter(|b| super::find_binary(b).is_none())
        .collect();
    let unavailable = |reason: String, hint: &str| DaemonPlan::Unavailable {
        reason,
        hint: hint.into(),
    };
    if !missing.is_empty() {
        return unavailable(
            format!(
                "{why}, and cvm cannot start one: {} not found",
                missing.join(", ")
            ),
            "install the Debian packages docker.io and iproute2 (or scripts/setup.sh)",
        );
    }
    if !nix::unistd::geteuid().is_root() {
        return unavailable(
            format!("{why}, and only root can start a private dockerd"),
            "run cvm as root, or point DOCKER_HOST at a running daemon",
        );
    }
    match cvm_runtime::net::Subnet::from_env() {
        Ok(s) if s.bridge_networks().is_empty() => unavailable(
            format!("{why}, and the container subnet {s} is too small to keep a network for Docker's bridge"),
            "set CVM_CONTAINER_SUBNET to a /25 or larger",
        ),
        Err(e) => unavailable(format!("{why}, and {e}"), "fix CVM_CONTAINER_SUBNET"),
        Ok(_) => DaemonPlan::Managed { why },
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
        match self.plan() {
            DaemonPlan::Existing { .. } | DaemonPlan::Managed { .. } => Availability::Available,
            DaemonPlan::Unavailable { reason, hint } => Availability::unavailable(reason, hint),
        }
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let fail = |e| BackendError::prepare(BackendKind::Docker, e);
        let daemon = self.daemon().map_err(fail)?;
        let client = daemon.client();
        let version = client.server_version().map_err(fail)?;
        let tag = format!("cvm:{}", image.hash());
        if client
            .run("image inspect", &["image", "inspect", &tag])
            .is_err()
        {
            client.import(image.rootfs(), &tag).map_err(fail)?;
        }
        let argv = init_command(
            &watch_port_options(scenario.readiness.port()),
            &image.workload_argv(&scenario.workload),
        );
        let stored = storage::stored_image(&client, &tag).map_err(fail)?;
        let mut disk = storage::image_layers(image, &stored.dirs);
        disk.insert(Layer::Runtime, storage::runtime_files().map_err(fail)?);
        let io = match scenario.workload.io_target() {
            Some((inside, _)) => IoStore::for_scenario(scenario)
                .map_err(|e| fail(DockerError::IoDir(e)))?
                .map(|store| (inside, store)),
            None => None,
        };
        Ok(Box::new(DockerPrepared {
            stored,
            io,
            daemon,
            version,
            tag,
            argv,
            limits: super::limits(scenario),
            security: scenario.security.clone(),
            network: scenario.resources.network,
            disk,
            launches: AtomicU32::new(0),
        }))
    }
}

struct DockerPrepared {
    daemon: Daemon,
    version: String,
    tag: String,
    argv: Vec<String>,
    limits: Limits,
    /// What `[security]` loosens: `--cap-add`, `--security-opt seccomp=unconfined`.
    security: crate::scenario::SecuritySpec,
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
            crate::results::SUPERVISOR_KEY.into(),
            "containerd-shim-runc-v2, counted in memory_pss (memory_supervisor)".into(),
        );
        let bridge = match &self.daemon {
            Daemon::Managed(d) => d.bridge().map(|b| {
                format!(
                    "private (cvm's bridge {} on {}, reached directly: no NAT, no forwarding)",
                    b.name, b.network
                )
            }),
            Daemon::Existing { .. } => None,
        };
        c.insert(
            "network".into(),
            match self.network {
                NetworkMode::None => "none (--network none)".into(),
                NetworkMode::Private | NetworkMode::User => {
                    bridge.unwrap_or_else(|| "private (docker default bridge)".into())
                }
            },
        );
        c.insert(
            "daemon".into(),
            match &self.daemon {
                Daemon::Existing { host } => format!(
                    "existing: dockerd {} at {}",
                    self.version,
                    host.as_deref().unwrap_or(DEFAULT_DOCKER_SOCKET)
                ),
                Daemon::Managed(d) => format!(
                    "managed: a private dockerd {} cvm started for the run (data root {}, \
                     iptables, ip-forward and ip-masq off, containers under cgroup {})",
                    self.version,
                    d.data_root().display(),
                    d.cgroup_parent()
                ),
            },
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

    fn host_figures(&self) -> Vec<(Metric, f64)> {
        match &self.daemon {
            Daemon::Managed(d) => vec![(Metric::DockerDaemonStart, d.start_time().as_secs_f64())],
            Daemon::Existing { .. } => Vec::new(),
        }
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        Ok(Box::new(instance::launch(self, ctx)?))
    }
}
