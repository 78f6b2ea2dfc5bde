//! The `runc` and `crun` backends: the industry's OCI runtimes, run on the same image, with the
//! same limits, namespaces, capabilities and init as cvm's own `container` backend, so the
//! difference between them is the runtime and nothing else.
//!
//! Each launch writes an OCI bundle (a `config.json` made with the `oci-spec` crate whose
//! `root.path` is the shared image directory, read-only) into a temporary directory and runs
//! `<runtime> --root /run/cvm-oci/<runtime> run --detach --bundle B --preserve-fds 1 --pid-file F
//! <id>`: the runtime starts the container and exits, as it does under containerd or Podman, so
//! the instance's memory is the container's processes alone (one resident-process rule), and
//! cvm, a child subreaper like containerd's shim, supervises the container's init itself.
//! `--preserve-fds 1` hands the marker pipe on at descriptor 3. The container's process is
//! `cvm-guest init -- <workload>`, as PID 1, so its markers are observable exactly as in the
//! `container` backend. The runtime's cgroup join is its own business, unseen: its `runtime`
//! phase runs from the launch to init's `CVM:configured`. With a private network the veth is set
//! up once the runtime has created the container, so a server may listen before it is
//! reachable: the `probe` phase shows that.
//!
//! The cgroup is the runtime's: `linux.cgroupsPath` is relative (`cvm-<token>-<runtime>-<n>`),
//! and where a relative path lands is the runtime's choice (runc on v2 puts it beside its own
//! cgroup, on v1 under it), so cvm reads the container's cgroup from its init's
//! `/proc/<pid>/cgroup`, with the init PID from the pid file. A private network uses the same
//! veth setup as the `container` backend, on that same init PID.
//!
//! The parts: `bundle` writes the `config.json`, `runtime` drives the runtime binary,
//! `instance` launches and tears down one container.
//!
//! Availability is probed by actually running a trivial container once (cached): a runtime
//! that is installed can still refuse this host (crun 1.8 refuses hybrid cgroups), and the
//! user should see the runtime's own words.

mod bundle;
mod instance;
mod runtime;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;

use super::cgroup::Limits;
use super::container::net;
use super::{Availability, Backend, BackendError, Prepared, Stack};
use crate::backend::io_dir::IoStore;
use crate::backend::Layer;
use crate::image::{Image, GUEST_PATH};
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use bundle::SpecInput;
use cvm_proto::applet::init_command;
use cvm_proto::listen::watch_port_options;
use instance::OciPrepared;
use runtime::Runtime;

/// The runtimes' state directories: cvm's containers are kept apart from anyone else's.
pub const STATE_ROOT: &str = "/run/cvm-oci";

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{runtime} is not installed")]
    NotInstalled { runtime: &'static str },
    #[error("invalid network configuration")]
    Subnet(#[source] net::NetError),
    #[error("cannot list the runtime's shared libraries")]
    Libraries(#[source] crate::image::libs::LibsError),
    #[error("cannot use the io directory")]
    IoDir(#[source] crate::backend::io_dir::IoDirError),
}

/// An OCI runtime binary and how cvm talks to it.
pub struct OciBackend {
    kind: BackendKind,
    probe: OnceLock<Availability>,
}

impl OciBackend {
    /// `kind` must be [`BackendKind::Runc`] or [`BackendKind::Crun`].
    pub fn new(kind: BackendKind) -> Self {
        OciBackend {
            kind,
            probe: OnceLock::new(),
        }
    }

    fn binary(&self) -> &'static str {
        match self.kind {
            BackendKind::Crun => "crun",
            _ => "runc",
        }
    }

    fn runtime(&self) -> Option<Runtime> {
        let path = super::find_binary(self.binary())?;
        Some(Runtime {
            name: self.binary(),
            path,
            root: Path::new(STATE_ROOT).join(self.binary()),
        })
    }

    /// Runs `cvm-guest --version` in a throw-away container built from the guest binary alone.
    fn probe(&self) -> Availability {
        if !nix::unistd::geteuid().is_root() {
            return Availability::unavailable(
                format!("{} needs root here (no rootless setup)", self.binary()),
                "run cvm as root (sudo)",
            );
        }
        let Some(runtime) = self.runtime() else {
            return Availability::unavailable(
                format!("{} is not installed", self.binary()),
                format!("install the Debian package {}", self.binary()),
            );
        };
        let guest = match crate::image::find_guest() {
            Ok(g) => g,
            Err(e) => return Availability::unavailable(e.to_string(), "build cvm-guest"),
        };
        match probe_run(&runtime, &guest) {
            Ok(()) => Availability::Available,
            Err(message) => Availability::unavailable(
                format!("{} refused to run a container: {message}", runtime.name),
                format!(
                    "see `{} --version` and its documentation for this host's requirements",
                    runtime.name
                ),
            ),
        }
    }
}

/// Runs the guest binary alone in a container; the runtime's last line of stderr if it refuses.
fn probe_run(runtime: &Runtime, guest: &Path) -> Result<(), String> {
    let dir = bundle::temp_dir("probe").map_err(|e| e.to_string())?;
    // The directory's name is unique within the host, so probes running side by side (two
    // backends in one process) never share a container id or a cgroup.
    let id = dir.file_name().map_or_else(
        || "cvm-oci-probe".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let result = (|| {
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).map_err(|e| e.to_string())?;
        for d in ["proc", "sys", "dev", "tmp"] {
            fs::create_dir_all(rootfs.join(d)).map_err(|e| e.to_string())?;
        }
        let target = rootfs.join("bin/cvm-guest");
        fs::hard_link(guest, &target)
            .or_else(|_| fs::copy(guest, &target).map(|_| ()))
            .map_err(|e| e.to_string())?;
        bundle::write_config(
            &dir,
            &SpecInput {
                rootfs: &rootfs,
                args: vec![GUEST_PATH.into(), "--version".into()],
                hostname: "cvm-probe",
                cgroup: &format!("{id}-{}", runtime.name),
                limits: Limits {
                    memory_bytes: 64 << 20,
                    cpus: 1,
                    cpuset: None,
                },
                volume: None,
            },
        )
        .map_err(|e| e.to_string())?;
        let out = runtime
            .run(&dir, &id)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let _ = runtime.delete(&id);
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no message")
                .to_string();
            Err(message)
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

impl Backend for OciBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn stack(&self) -> Stack {
        Stack::Container
    }
    fn availability(&self) -> Availability {
        self.probe.get_or_init(|| self.probe()).clone()
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let fail = |e| BackendError::prepare(self.kind, e);
        let runtime = self.runtime().ok_or_else(|| {
            fail(PrepareError::NotInstalled {
                runtime: self.binary(),
            })
        })?;
        let subnet = net::Subnet::from_env().map_err(|e| fail(PrepareError::Subnet(e)))?;
        let args = init_command(
            &watch_port_options(scenario.readiness.port()),
            &image.workload_argv(&scenario.workload),
        );
        let mut disk = image.layer_files();
        // The runtime, plus `ip`, which sets up a private network's veth pair as it does for
        // cvm's own runtime (the part a CNI plugin plays beside runc in production).
        let mut executables = vec![runtime.path.clone()];
        if scenario.resources.network == NetworkMode::Private {
            executables.extend(super::find_binary("ip"));
        }
        let files = crate::backend::with_libraries(&executables)
            .map_err(|e| fail(PrepareError::Libraries(e)))?;
        disk.insert(Layer::Runtime, files);
        let io_dir = match scenario.workload.io_target() {
            Some((inside, _)) => IoStore::for_scenario(scenario)
                .map_err(|e| fail(PrepareError::IoDir(e)))?
                .map(|store| (inside, store)),
            None => None,
        };
        Ok(Box::new(OciPrepared {
            kind: self.kind,
            version: runtime.version(),
            runtime,
            rootfs: image.rootfs().to_path_buf(),
            args,
            limits: super::limits(scenario),
            network: scenario.resources.network,
            subnet,
            disk,
            launches: AtomicU32::new(0),
            io_dir,
        }))
    }
}
