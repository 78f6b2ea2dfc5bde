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
//! `container` backend. Its `runtime` phase runs from the launch to init's `CVM:configured`;
//! the runtime's own cgroup join inside it is traced (`backend::cgroup_trace`) and recorded as
//! `cgroup_join`, charged to the host OS as native's and the container's are. With a private network the veth is set
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
//!
//! Rootless (cvm run by a normal user): `--rootless true`, a state root of the run's own
//! ([`StateDir`], removed when the backend and its prepared runs are gone), a bundle with a user
//! namespace mapping the user to root and its subordinate ids above (runc writes the maps with
//! `newuidmap`/`newgidmap`) and no cgroup or limits; a private network is slirp4netns on the
//! init's namespace ([`super::rootless`]). gVisor stays root only, and says so.
//!
//! `gvisor` is runsc on the same bundle. Its platform (how the Sentry, gVisor's user-space
//! kernel, traps the workload's system calls) is probed the same way, systrap, then kvm, then
//! ptrace, each with a time limit (kvm hangs on a nested hypervisor): the first that runs the
//! probe container is used and recorded with every sample (`platform`), with why the others
//! were not. runsc hands a container only stdio, so markers go to its stdout
//! (`CVM_MARKER_FD=1`, as for Docker). Networking: `none` is runsc's `--network=none`
//! (netstack with loopback only). `private` cannot be runsc's own netstack here: runsc of
//! 2022-12 refuses `--network=sandbox` ("cannot run with network enabled in root network
//! namespace"; it takes `/proc/sys/net/core/rmem_default`, present in every namespace on new
//! kernels, as the sign of the root namespace). So cvm makes the instance's network namespace
//! itself, puts the same veth in it as for the other runtimes, names it in the bundle
//! (`linux.namespaces` path), and runs runsc with `--network=host`: the Sentry's sockets are
//! host sockets in that namespace (recorded as `network_stack`). The Sentry is the
//! `user_space_kernel` disk layer (the runsc binary, which is also the CLI and the gofer).

mod instance;
mod runtime;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::cgroup::Limits;
use super::container::net;
use super::rootless;
use super::{Availability, Backend, BackendError, Prepared, Stack};
use crate::backend::bundle::{self, SpecInput};
use crate::backend::io_dir::IoStore;
use crate::backend::process::Supervised;
use crate::backend::Layer;
use crate::image::{Image, GUEST_PATH};
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use cvm_proto::applet::init_command;
use cvm_proto::listen::watch_port_options;
use instance::{GvisorConfig, OciPrepared};
use runtime::{Runtime, StateDir};

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
    #[error("no gVisor platform runs a container here")]
    NoPlatform,
}

/// How long any runtime gets to run the probe container.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Platforms runsc may run on, the fastest first.
const GVISOR_PLATFORMS: [&str; 3] = ["systrap", "kvm", "ptrace"];
/// How long a platform gets to run the probe container (ptrace takes about 0.5 s here).
const PLATFORM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of probing a runtime: available or not, and for runsc the platform that ran the
/// probe and why each faster one did not.
#[derive(Debug, Clone)]
struct Probe {
    availability: Availability,
    platform: Option<&'static str>,
    refused: Vec<String>,
}

/// An OCI runtime binary and how cvm talks to it.
pub struct OciBackend {
    kind: BackendKind,
    probe: OnceLock<Probe>,
    /// Rootless: the state root every runtime of this backend shares (see [`StateDir`]).
    state: OnceLock<Arc<StateDir>>,
}

impl OciBackend {
    /// `kind` must be [`BackendKind::Runc`], [`BackendKind::Crun`] or [`BackendKind::Gvisor`].
    pub fn new(kind: BackendKind) -> Self {
        OciBackend {
            kind,
            probe: OnceLock::new(),
            state: OnceLock::new(),
        }
    }

    fn binary(&self) -> &'static str {
        match self.kind {
            BackendKind::Crun => "crun",
            BackendKind::Gvisor => "runsc",
            _ => "runc",
        }
    }

    /// The runtime binary with cvm's state directory and `global` flags.
    /// Rootless (see the module docs): the state root is the run's own, the user namespace's
    /// maps are the user's subordinate ids.
    fn runtime(&self, mut global: Vec<String>) -> Option<Runtime> {
        let path = super::find_binary(self.binary())?;
        let (root, state, id_maps) = if rootless::active() {
            let state = self
                .state
                .get_or_init(|| Arc::new(StateDir::new(self.binary())))
                .clone();
            global.extend(["--rootless".to_string(), "true".to_string()]);
            (
                state.path.clone(),
                Some(state),
                rootless::IdMap::for_user().ok(),
            )
        } else {
            (Path::new(STATE_ROOT).join(self.binary()), None, None)
        };
        Some(Runtime {
            name: self.binary(),
            path,
            root,
            global,
            runsc: self.kind == BackendKind::Gvisor,
            id_maps,
            _state: state,
        })
    }

    fn unavailable(reason: String, hint: String) -> Probe {
        Probe {
            availability: Availability::unavailable(reason, hint),
            platform: None,
            refused: Vec::new(),
        }
    }

    /// Runs `cvm-guest --version` in a throw-away container built from the guest binary alone
    /// (for runsc, on each platform in turn until one runs it).
    fn probe(&self) -> Probe {
        if rootless::active() {
            if self.kind == BackendKind::Gvisor {
                return Self::unavailable(
                    "cvm runs runsc only as root: its rootless mode (runsc --rootless) is not \
                     set up by cvm"
                        .into(),
                    "run cvm as root (sudo)".into(),
                );
            }
            let who = format!("rootless {}", self.binary());
            if let Some((reason, hint)) = rootless::missing(&who, true) {
                return Self::unavailable(reason, hint);
            }
        }
        let Some(runtime) = self.runtime(Vec::new()) else {
            return Self::unavailable(
                format!("{} is not installed", self.binary()),
                format!("install the Debian package {}", self.binary()),
            );
        };
        let guest = match crate::image::find_guest() {
            Ok(g) => g,
            Err(e) => return Self::unavailable(e.to_string(), "build cvm-guest".into()),
        };
        let hint = format!(
            "see `{} --version` and its documentation for this host's requirements",
            runtime.name
        );
        if !runtime.runsc {
            return match probe_run(&runtime, &guest, None) {
                Ok(()) => Probe {
                    availability: Availability::Available,
                    platform: None,
                    refused: Vec::new(),
                },
                Err(message) => Self::unavailable(
                    format!("{} refused to run a container: {message}", runtime.name),
                    hint,
                ),
            };
        }
        let mut refused = Vec::new();
        for platform in GVISOR_PLATFORMS {
            let Some(runtime) = self.runtime(runsc_flags(platform, NetworkMode::None)) else {
                break;
            };
            match probe_run(&runtime, &guest, Some(PLATFORM_PROBE_TIMEOUT)) {
                Ok(()) => {
                    return Probe {
                        availability: Availability::Available,
                        platform: Some(platform),
                        refused,
                    }
                }
                Err(message) => refused.push(format!("{platform}: {message}")),
            }
        }
        Self::unavailable(
            format!(
                "runsc ran no container on any platform: {}",
                refused.join("; ")
            ),
            hint,
        )
    }
}

/// runsc's global flags for a platform and the scenario's network: `none` is its netstack
/// with loopback only; `private` its host network inside the namespace cvm made (see the
/// module docs for why not its own netstack).
fn runsc_flags(platform: &str, network: NetworkMode) -> Vec<String> {
    let network = if network == NetworkMode::Private {
        "host"
    } else {
        "none"
    };
    vec![
        format!("--platform={platform}"),
        format!("--network={network}"),
    ]
}

/// What a `gvisor` instance's network is, in the words recorded with every sample.
fn gvisor_network_stack(network: NetworkMode) -> &'static str {
    if network == NetworkMode::Private {
        "host sockets in the instance's own network namespace (runsc --network=host)"
    } else {
        "gVisor netstack, loopback only (runsc --network=none)"
    }
}

/// Runs the guest binary alone in a container; the runtime's last line of stderr if it refuses
/// (or that it did not finish within `timeout`).
fn probe_run(runtime: &Runtime, guest: &Path, timeout: Option<Duration>) -> Result<(), String> {
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
        // Suffixed with the runtime: cgroups are host-wide, container ids only per runtime root.
        let cgroup = format!("{id}-{}", runtime.name);
        bundle::write_config(
            &dir,
            &SpecInput {
                rootfs: &rootfs,
                args: vec![GUEST_PATH.into(), "--version".into()],
                hostname: "cvm-probe",
                cgroup: &cgroup,
                limits: Limits {
                    memory_bytes: 64 << 20,
                    cpus: 1,
                    cpuset: None,
                    pids: None,
                },
                volume: None,
                marker_fd: runtime.marker_fd(),
                netns: None,
                capabilities: &bundle::default_capabilities(),
                id_maps: runtime.id_maps(),
            },
        )
        .map_err(|e| e.to_string())?;
        let log = dir.join("probe.log");
        let log_file = fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = runtime
            .run(&dir, &id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut child = Supervised::from_child(child);
        let exit = child.wait_timeout(timeout.unwrap_or(PROBE_TIMEOUT));
        // A probe that hangs is killed (dropping it kills and reaps it) and its sandbox deleted.
        drop(child);
        let _ = runtime.delete(&id);
        let _ = runtime.remove_leftover_cgroup(&cgroup);
        let Some(exit) = exit else {
            return Err(format!(
                "no result within {:?}",
                timeout.unwrap_or(PROBE_TIMEOUT)
            ));
        };
        if exit.success() {
            Ok(())
        } else {
            let stderr = fs::read_to_string(&log).unwrap_or_default();
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
        self.probe.get_or_init(|| self.probe()).availability.clone()
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let fail = |e| BackendError::prepare(self.kind, e);
        let mut sandbox = None;
        let global = if self.kind == BackendKind::Gvisor {
            let probe = self.probe.get_or_init(|| self.probe());
            let platform = probe
                .platform
                .ok_or_else(|| fail(PrepareError::NoPlatform))?;
            sandbox = Some(GvisorConfig {
                platform,
                refused: probe.refused.join("; "),
                network_stack: gvisor_network_stack(scenario.resources.network),
            });
            runsc_flags(platform, scenario.resources.network)
        } else {
            Vec::new()
        };
        let runtime = self.runtime(global).ok_or_else(|| {
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
        // The runtime alone: a private network's veth pair (the part a CNI plugin plays beside
        // runc in production) is set up by cvm itself, with a few rtnetlink requests and no file
        // of its own on disk.
        let mut executables = vec![runtime.path.clone()];
        if sandbox.is_some() {
            // runsc is the Sentry (and the gofer and the CLI): one binary, the user-space
            // kernel's layer; no runtime layer is left.
            let sentry = crate::backend::with_libraries(&executables[..1])
                .map_err(|e| fail(PrepareError::Libraries(e)))?;
            disk.insert(Layer::UserSpaceKernel, sentry);
            executables.remove(0);
        }
        if !executables.is_empty() {
            let files = crate::backend::with_libraries(&executables)
                .map_err(|e| fail(PrepareError::Libraries(e)))?;
            disk.insert(Layer::Runtime, files);
        }
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
            capabilities: scenario.security.capabilities(),
            network: scenario.resources.network,
            subnet,
            disk,
            launches: AtomicU32::new(0),
            io_dir,
            sandbox,
            port: scenario.readiness.port(),
        }))
    }
}
