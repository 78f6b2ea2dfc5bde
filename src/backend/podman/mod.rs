//! The `podman` backend: the same image run by Podman, the daemonless engine many people use
//! instead of Docker, rootful as root and rootless as a normal user, with conmon as each container's supervisor and runc as its OCI
//! runtime (Debian's podman, conmon and runc).
//!
//! Storage is private ([`store`]): `--root`, `--runroot`, `--tmpdir` and a `containers.conf` in
//! one temporary directory cvm removes at the end of the run, never the host's
//! `/var/lib/containers/storage`. The image directory is imported once per content hash
//! (`podman import`, tagged `cvm:<hash>`). Each launch is a foreground `podman run --rm` of
//! `cvm-guest init -- <workload>` with the scenario's limits (`--memory`, `--cpus`,
//! `--cpuset-cpus`, `--pids-limit`), the default capabilities every container backend uses
//! (`--cap-drop all` and `--cap-add` each), `no-new-privileges`, a read-only root and a tmpfs
//! `/tmp`, as Docker's. Podman cannot hand a descriptor through either, so markers travel on the
//! container's stdout (`CVM_MARKER_FD=1`) through conmon's attach socket and the `podman` client:
//! its `runtime` phase runs from the client's start to init's `CVM:configured` (client, conmon
//! and runc together), as Docker's does.
//!
//! Network: `none` is `--network none`; `private` is a network namespace cvm makes with the same
//! veth as the `container` and `runc` backends, handed to Podman as `--network
//! ns:/proc/<cvm>/fd/<n>` (runc joins it), so throughput is compared on the same link.
//!
//! Memory by the resident-process rule: conmon stays for the container's life and is its
//! supervisor (`memory_supervisor`, as Docker's shim); the `podman` client is only cvm's marker
//! channel here (`podman run --detach` would not stay), so it is not counted. Podman has no
//! daemon. Disk by the layer rule: the image where Podman stores it, and podman, conmon and
//! runc with their libraries as the runtime layer.
//!
//! Rootless (cvm run by a normal user): the same private storage, Podman in a user namespace of
//! the user's subordinate ids; `private` is slirp4netns with the readiness port published on
//! the host's loopback; no limits, since no cgroup is delegated to the user (recorded as
//! `limits`, `network` and `rootless` with every sample); memory counts conmon's process tree
//! and slirp4netns. [`missing`] says what rootless lacks (uidmap, slirp4netns, subordinate ids).
//!
//! Podman lowers its own `RLIMIT_NPROC` to 32768 where it cannot raise it (no
//! `CAP_SYS_RESOURCE`, as here) and writes its default rlimits (1048576) into the spec, which
//! runc then cannot set: each container gets cvm's own `RLIMIT_NOFILE` and `RLIMIT_NPROC`
//! (the latter at most 32768), which the other backends' containers inherit too.

mod instance;
mod store;

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use nix::sys::resource::{getrlimit, Resource};

use super::cgroup::Limits;
use super::io_dir::{self, IoStore};
use super::{Availability, Backend, BackendConfig, BackendError, Prepared, Stack};
use super::{DiskLayers, Instance, LaunchContext, Layer};
use crate::image::Image;
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use cvm_proto::applet::init_command;
use cvm_proto::listen::watch_port_options;
use store::Store;

/// The programs a rootful Podman runs a container with: the client (which is the engine), the
/// supervisor and the OCI runtime.
pub const PODMAN_BINARIES: [&str; 3] = ["podman", "conmon", "runc"];
/// The `RLIMIT_NPROC` Podman keeps for itself where it cannot raise it, and so the most a
/// container can be given.
const PODMAN_NPROC: u64 = 32768;

#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    #[error("cannot set up Podman's private storage")]
    Store(#[source] store::StoreError),
    #[error("cannot import the image into Podman's private storage")]
    Import(#[source] store::StoreError),
    #[error("`podman image inspect` failed")]
    Inspect(#[source] store::StoreError),
    #[error("`podman image inspect` described the image's storage in a way cvm cannot read: {0}")]
    Storage(String),
    #[error("cannot list the shared libraries of Podman's binaries")]
    Libraries(#[source] crate::image::libs::LibsError),
    #[error("cannot use the io directory")]
    IoDir(#[source] io_dir::IoDirError),
    #[error("invalid network configuration")]
    Subnet(#[source] super::container::net::NetError),
}

pub struct PodmanBackend {
    /// The private storage, made on the first prepare and shared by every prepared run; removed
    /// when the backend and the last of them are gone.
    store: Mutex<Option<Arc<Store>>>,
}

impl PodmanBackend {
    pub fn new() -> Self {
        PodmanBackend {
            store: Mutex::new(None),
        }
    }

    fn store(&self) -> Result<Arc<Store>, PodmanError> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store = Arc::new(Store::create().map_err(PodmanError::Store)?);
        Ok(slot.insert(store).clone())
    }
}

impl Default for PodmanBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Why Podman cannot run here, with the fix, or `None`.
pub fn missing() -> Option<(String, String)> {
    let absent: Vec<&str> = PODMAN_BINARIES
        .into_iter()
        .filter(|b| super::find_binary(b).is_none())
        .collect();
    if !absent.is_empty() {
        return Some((
            format!("{} not found", absent.join(", ")),
            "install the Debian packages podman, conmon and runc (scripts/setup.sh)".into(),
        ));
    }
    if nix::unistd::geteuid().is_root() {
        return None;
    }
    rootless_missing()
}

/// What rootless Podman lacks for this user: newuidmap/newgidmap, slirp4netns, subordinate ids.
fn rootless_missing() -> Option<(String, String)> {
    super::rootless::missing("rootless podman", true)
}

/// The rlimits a container gets (`--ulimit`): cvm's own, `RLIMIT_NPROC` at most what Podman
/// keeps (see the module docs).
fn ulimits() -> Vec<String> {
    let mut flags = Vec::new();
    for (name, resource, cap) in [
        ("nofile", Resource::RLIMIT_NOFILE, u64::MAX),
        ("nproc", Resource::RLIMIT_NPROC, PODMAN_NPROC),
    ] {
        if let Ok((soft, hard)) = getrlimit(resource) {
            let hard = hard.min(cap);
            flags.push(format!("--ulimit={name}={}:{hard}", soft.min(hard)));
        }
    }
    flags
}

impl Backend for PodmanBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Podman
    }
    fn stack(&self) -> Stack {
        Stack::Container
    }
    fn availability(&self) -> Availability {
        match missing() {
            None => Availability::Available,
            Some((reason, hint)) => Availability::unavailable(reason, hint),
        }
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let fail = |e| BackendError::prepare(BackendKind::Podman, e);
        let store = self.store().map_err(fail)?;
        let tag = format!("cvm:{}", image.hash());
        store
            .import(image.rootfs(), &tag)
            .map_err(|e| fail(PodmanError::Import(e)))?;
        let json = store
            .run("image inspect", &["image", "inspect", &tag])
            .map_err(|e| fail(PodmanError::Inspect(e)))?;
        let stored = stored_image(&json).map_err(|e| fail(PodmanError::Storage(e)))?;
        let mut disk = super::docker::image_layers(image, &stored.dirs);
        disk.insert(Layer::Runtime, runtime_files().map_err(fail)?);
        let io = match scenario.workload.io_target() {
            Some((inside, _)) => IoStore::for_scenario(scenario)
                .map_err(|e| fail(PodmanError::IoDir(e)))?
                .map(|s| (inside, s)),
            None => None,
        };
        let subnet =
            super::container::net::Subnet::from_env().map_err(|e| fail(PodmanError::Subnet(e)))?;
        Ok(Box::new(PodmanPrepared {
            // Asked of the private store: a rootless `podman --version` alone makes
            // `podman-run-<uid>` and `containers-user-<uid>` in the host's /tmp.
            version: store
                .run("--version", &["--version"])
                .map_or_else(|_| "unknown".into(), |l| crate::tools::version_number(&l)),
            conmon: tool_number("conmon"),
            runc: tool_number("runc"),
            storage: stored.describe_for("podman", "Podman"),
            store,
            tag,
            argv: init_command(
                &watch_port_options(scenario.readiness.port()),
                &image.workload_argv(&scenario.workload),
            ),
            limits: super::limits(scenario),
            port: scenario.readiness.port(),
            ulimits: ulimits(),
            security: scenario.security.clone(),
            network: scenario.resources.network,
            subnet,
            disk,
            io,
            launches: AtomicU32::new(0),
        }))
    }
}

/// The image's storage from `podman image inspect`'s array of one, read as Docker's is.
fn stored_image(json: &str) -> Result<crate::backend::docker::StoredImage, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let first = v
        .get(0)
        .ok_or("`podman image inspect` described no image")?;
    super::docker::parse_stored_image(&first.to_string())
}

impl PodmanPrepared {
    /// What a rootless run changes, said beside every figure.
    fn rootless_config(&self, c: &mut BackendConfig) {
        c.insert(
            "rootless".into(),
            "yes: podman in a user namespace of the user's subordinate ids".into(),
        );
        c.insert(
            "limits".into(),
            "none: no cgroup is delegated to the user (podman ignores limits rootless on \
             cgroup v1)"
                .into(),
        );
        if self.network != NetworkMode::None {
            c.insert(
                "network".into(),
                "slirp4netns (user-mode network), the port published on 127.0.0.1".into(),
            );
        }
        c.insert(
            "storage".into(),
            format!(
                "private, rootless: --root under {} (removed at the end of the run)",
                self.store.root().display()
            ),
        );
        c.insert(
            crate::results::SUPERVISOR_KEY.into(),
            "conmon, counted in memory_pss (memory_supervisor); slirp4netns counted too".into(),
        );
    }
}

/// A tool's version number, from the first line of `--version`.
fn tool_number(tool: &str) -> String {
    crate::tools::tool_version(tool, &["--version"])
        .map_or_else(|| "unknown".into(), |l| crate::tools::version_number(&l))
}

/// Podman's binaries, found on the host's PATH, with their shared libraries.
fn runtime_files() -> Result<Vec<PathBuf>, PodmanError> {
    let found: Vec<PathBuf> = PODMAN_BINARIES
        .iter()
        .filter_map(|b| super::find_binary(b))
        .collect();
    super::with_libraries(&found).map_err(PodmanError::Libraries)
}

struct PodmanPrepared {
    store: Arc<Store>,
    version: String,
    conmon: String,
    runc: String,
    /// How Podman stores the imported image, in words.
    storage: String,
    tag: String,
    argv: Vec<String>,
    limits: Limits,
    /// The readiness port, published on the host's loopback when rootless.
    port: Option<u16>,
    /// `--ulimit` flags: cvm's own limits (see the module docs).
    ulimits: Vec<String>,
    security: crate::scenario::SecuritySpec,
    network: NetworkMode,
    subnet: super::container::net::Subnet,
    disk: DiskLayers,
    /// The io workload's directory inside, and the store its host directories come from.
    io: Option<(String, IoStore)>,
    launches: AtomicU32,
}

impl Prepared for PodmanPrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.insert(
            "runtime".into(),
            format!(
                "podman {} (conmon {}, runc {})",
                self.version, self.conmon, self.runc
            ),
        );
        c.insert(
            crate::results::SUPERVISOR_KEY.into(),
            "conmon, counted in memory_pss (memory_supervisor)".into(),
        );
        c.extend(super::container::isolation_config(
            self.network,
            &self.subnet,
        ));
        if self.network != NetworkMode::None {
            c.insert(
                "network".into(),
                format!(
                    "private (veth, /30 from {}, in a namespace cvm made: podman --network ns:)",
                    self.subnet
                ),
            );
        }
        c.insert(
            "daemon".into(),
            "none: podman runs each container itself and leaves conmon to supervise it".into(),
        );
        c.insert(
            "storage".into(),
            format!(
                "private: --root under {} (removed at the end of the run), cgroupfs, containers \
                 under cgroup {}",
                self.store.root().display(),
                self.store.cgroup_parent()
            ),
        );
        if self.store.rootless {
            self.rootless_config(&mut c);
        }
        c.insert("rootfs".into(), format!("podman import {}", self.tag));
        c.insert("image_storage".into(), self.storage.clone());
        c.insert("rlimits".into(), self.ulimits.join(" "));
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
        instance::launch(self, ctx)
            .map(|i| Box::new(i) as Box<dyn Instance>)
            .map_err(|e| BackendError::launch(BackendKind::Podman, e))
    }
}
