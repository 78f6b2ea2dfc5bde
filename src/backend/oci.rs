//! The `runc` and `crun` backends: the industry's OCI runtimes, run on the same image, with the
//! same limits, namespaces, capabilities and init as cvm's own `container` backend, so the
//! difference between them is the runtime and nothing else.
//!
//! Each launch writes an OCI bundle (a `config.json` made with the `oci-spec` crate whose
//! `root.path` is the shared image directory, read-only) into a temporary directory and runs
//! `<runtime> --root /run/cvm-oci/<runtime> run --bundle B --preserve-fds 1 --pid-file F <id>`
//! in the foreground: the runtime process is cvm's child (so its exit is the container's, and
//! its memory is counted with the instance's), and `--preserve-fds 1` hands the marker pipe on
//! at descriptor 3. The container's process is `cvm-guest init -- <workload>`, as PID 1, so the
//! `init` and `workload` phases are observable exactly as in the `container` backend; `spawn` is
//! when the runtime's exec returned.
//!
//! The cgroup is the runtime's: `linux.cgroupsPath` is relative (`cvm-<token>-<runtime>-<n>`),
//! which runc and crun place under their own (that is cvm's) cgroup in every hierarchy, like
//! cvm's own instances. A private network uses the same veth setup as the `container` backend,
//! on the container's init PID from the pid file.
//!
//! Availability is probed by actually running a trivial container once (cached): a runtime
//! that is installed can still refuse this host (crun 1.8 refuses hybrid cgroups), and the
//! user should see the runtime's own words.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespaceType, Mount, Process, Root,
    Spec,
};

use super::cgroup::{self, Limits};
use super::container::net;
use super::events::{spawn_marker_reader, spawn_output_reader, Event};
use super::process::{self, StopPolicy, Supervised};
use super::{
    Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared, Stack,
};
use crate::image::{Image, GUEST_PATH};
use crate::scenario::{BackendKind, NetworkMode, Scenario};
use crate::sys::CommandSetup;

/// The runtimes' state directories: cvm's containers are kept apart from anyone else's.
pub const STATE_ROOT: &str = "/run/cvm-oci";
/// How long to wait for the runtime to write the pid file (private network only).
const PID_FILE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot create the bundle directory {path}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot build the OCI configuration")]
    Spec(#[source] oci_spec::OciSpecError),
    #[error("cannot write {path}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("invalid network configuration")]
    Subnet(#[source] net::NetError),
    #[error("cannot create the marker pipe")]
    Pipe(#[source] nix::Error),
    #[error("cannot start {runtime}")]
    Spawn {
        runtime: String,
        #[source]
        source: io::Error,
    },
    #[error("{runtime} never wrote the container's pid file {path}")]
    PidFile { runtime: String, path: PathBuf },
    #[error("cannot set up the container's network")]
    Network(#[source] net::NetError),
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("`{runtime} delete` failed: {stderr}")]
    Delete { runtime: String, stderr: String },
    #[error("cannot remove {path}")]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the instance's network link")]
    RemoveLink(#[source] net::NetError),
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

#[derive(Debug, Clone)]
struct Runtime {
    name: &'static str,
    path: PathBuf,
    root: PathBuf,
}

impl Runtime {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    fn version(&self) -> String {
        self.command()
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    /// Deletes container `id` if the runtime still knows it (it deletes it itself when a
    /// foreground `run` ends normally).
    fn delete(&self, id: &str) -> Result<(), OciError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        let out = self
            .command()
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| OciError::Spawn {
                runtime: self.name.into(),
                source,
            })?;
        if out.status.success() || !self.root.join(id).exists() {
            Ok(())
        } else {
            Err(OciError::Delete {
                runtime: self.name.into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// A unique temporary directory `cvm-oci-<what>-<pid>-<n>`.
fn temp_dir(what: &str) -> Result<PathBuf, OciError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cvm-oci-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(|source| OciError::Bundle {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn probe_run(runtime: &Runtime, guest: &Path) -> Result<(), String> {
    let dir = temp_dir("probe").map_err(|e| e.to_string())?;
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
        let spec = bundle_spec(&SpecInput {
            rootfs: &rootfs,
            args: vec![GUEST_PATH.into(), "--version".into()],
            hostname: "cvm-probe",
            cgroup: &format!("cvm-probe-{}-{}", runtime.name, std::process::id()),
            limits: Limits {
                memory_bytes: 64 << 20,
                cpus: 1,
            },
            volume: None,
        })
        .map_err(|e| e.to_string())?;
        spec.save(dir.join("config.json"))
            .map_err(|e| e.to_string())?;
        let id = format!("cvm-probe-{}", std::process::id());
        let out = runtime
            .command()
            .args(["run", "--bundle"])
            .arg(&dir)
            .arg(&id)
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
            fail(OciError::Spawn {
                runtime: self.binary().into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
        })?;
        let subnet = net::Subnet::from_env().map_err(|e| fail(OciError::Subnet(e)))?;
        let mut args = vec![GUEST_PATH.to_string(), "init".into(), "--".into()];
        args.extend(image.workload_argv(&scenario.workload));
        let mut disk = image.layer_files();
        disk.retain(|layer, _| matches!(layer.as_str(), "app" | "libs"));
        disk.insert("runtime".into(), vec![runtime.path.clone()]);
        Ok(Box::new(OciPrepared {
            kind: self.kind,
            version: runtime.version(),
            runtime,
            rootfs: image.rootfs().to_path_buf(),
            args,
            limits: process::limits(&scenario.resources),
            network: scenario.resources.network,
            subnet,
            disk,
            launches: AtomicU32::new(0),
            io_dir: scenario.workload.io_target().map(|(dir, _)| dir),
        }))
    }
}

struct SpecInput<'a> {
    rootfs: &'a Path,
    args: Vec<String>,
    hostname: &'a str,
    cgroup: &'a str,
    limits: Limits,
    /// A host directory bound writable at a path inside: the io workload's own disk.
    volume: Option<(PathBuf, String)>,
}

/// The bundle's `config.json`: the runtime's usual defaults (namespaces pid, net, ipc, uts,
/// mount, cgroup; /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, read-only /sys; masked paths)
/// with the image as a read-only root, a tmpfs /tmp, Docker's capability set, the scenario's
/// limits and the marker channel in the environment.
fn bundle_spec(input: &SpecInput<'_>) -> Result<Spec, oci_spec::OciSpecError> {
    let mut spec = Spec::default();
    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf())
        .set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_hostname(Some(input.hostname.to_string()));

    let caps: std::collections::HashSet<Capability> = cvm_proto::caps::DEFAULT
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String((*c).into())).ok())
        .collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);
    let mut process = Process::default();
    process
        .set_args(Some(input.args.clone()))
        .set_env(Some(vec![
            super::WORKLOAD_PATH.into(),
            "HOME=/root".into(),
            format!("HOSTNAME={}", input.hostname),
            format!(
                "{}={}",
                cvm_proto::MARKER_FD_ENV,
                cvm_proto::DEFAULT_MARKER_FD
            ),
        ]))
        .set_cwd("/".into())
        .set_terminal(Some(false))
        .set_no_new_privileges(Some(true))
        .set_capabilities(Some(capabilities));
    spec.set_process(Some(process));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let mut tmp = Mount::default();
    tmp.set_destination("/tmp".into())
        .set_typ(Some("tmpfs".into()))
        .set_source(Some("tmpfs".into()))
        .set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            "mode=1777".into(),
        ]));
    mounts.push(tmp);
    if let Some((host, inside)) = &input.volume {
        let mut bind = Mount::default();
        bind.set_destination(inside.into())
            .set_typ(Some("bind".into()))
            .set_source(Some(host.clone()))
            .set_options(Some(vec![
                "rbind".into(),
                "rw".into(),
                "nosuid".into(),
                "nodev".into(),
            ]));
        mounts.push(bind);
    }
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroup)));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut memory = LinuxMemory::default();
    memory.set_limit(i64::try_from(input.limits.memory_bytes).ok());
    resources.set_memory(Some(memory));
    let mut cpu = LinuxCpu::default();
    cpu.set_period(Some(100_000))
        .set_quota(Some(100_000 * i64::from(input.limits.cpus)));
    resources.set_cpu(Some(cpu));
    linux.set_resources(Some(resources));
    if let Some(namespaces) = linux.namespaces() {
        debug_assert!(namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

struct OciPrepared {
    kind: BackendKind,
    runtime: Runtime,
    version: String,
    rootfs: PathBuf,
    args: Vec<String>,
    limits: Limits,
    network: NetworkMode,
    subnet: net::Subnet,
    disk: BTreeMap<String, Vec<PathBuf>>,
    launches: AtomicU32,
    /// Where the io workload writes, given a host directory (in the bundle) of its own.
    io_dir: Option<String>,
}

impl Prepared for OciPrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.insert("runtime".into(), self.version.clone());
        c.extend(super::container::isolation_config(
            self.network,
            &self.subnet,
        ));
        c
    }

    fn disk_layers(&self) -> BTreeMap<String, Vec<PathBuf>> {
        self.disk.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |e| BackendError::launch(self.kind, e);
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "cvm-{}-{}-{}-{n}",
            ctx.run_id, self.runtime.name, ctx.instance
        );
        let bundle = temp_dir(&format!("{}-{}", ctx.run_id, ctx.instance)).map_err(fail)?;
        // From here on the instance owns the bundle: an error drops it, which cleans up.
        let mut instance = OciInstance {
            kind: self.kind,
            runtime: self.runtime.clone(),
            id: id.clone(),
            bundle: Some(bundle.clone()),
            process: None,
            started_at: Instant::now(),
            events: mpsc::channel().1,
            memory_dir: runtime_memory_dir(&id),
            link: None,
        };
        let spec = bundle_spec(&SpecInput {
            rootfs: &self.rootfs,
            args: self.args.clone(),
            hostname: &format!("cvm-{}", ctx.instance),
            cgroup: &id,
            limits: self.limits,
            volume: match &self.io_dir {
                Some(inside) => {
                    let host = bundle.join("volume");
                    fs::create_dir(&host).map_err(|source| {
                        fail(OciError::Bundle {
                            path: host.clone(),
                            source,
                        })
                    })?;
                    Some((host, inside.clone()))
                }
                None => None,
            },
        })
        .map_err(|e| fail(OciError::Spec(e)))?;
        let config = bundle.join("config.json");
        spec.save(&config).map_err(|source| {
            fail(OciError::WriteConfig {
                path: config.clone(),
                source,
            })
        })?;
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| fail(OciError::Pipe(e)))?;
        let pid_file = bundle.join("init.pid");
        let mut cmd = self.runtime.command();
        cmd.args(["run", "--bundle"])
            .arg(&bundle)
            .args(["--preserve-fds", "1"])
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&id)
            .current_dir("/")
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
        let mut child = cmd.spawn().map_err(|source| {
            fail(OciError::Spawn {
                runtime: self.runtime.name.into(),
                source,
            })
        })?;
        drop(guard);
        let spawned = Instant::now();
        let (tx, events) = mpsc::channel();
        instance.events = events;
        let _ = tx.send(Event::Phase("spawn", spawned));
        let stderr = child.stderr.take();
        let runtime_process = instance.process.insert(Supervised::from_child(child));
        spawn_marker_reader(fs::File::from(read_end), tx.clone())
            .map_err(|e| fail(OciError::Thread(e)))?;
        if let Some(stderr) = stderr {
            spawn_output_reader(stderr, tx.clone()).map_err(|e| fail(OciError::Thread(e)))?;
        }
        runtime_process
            .watch_exit(instance.memory_dir.clone(), self.limits.memory_bytes, tx)
            .map_err(|e| fail(OciError::Thread(e)))?;
        if self.network == NetworkMode::Private {
            let init = wait_pid_file(&pid_file).ok_or_else(|| {
                fail(OciError::PidFile {
                    runtime: self.runtime.name.into(),
                    path: pid_file.clone(),
                })
            })?;
            let link = net::setup(self.subnet, &ctx.run_id, init)
                .map_err(|e| fail(OciError::Network(e)))?;
            instance.link = Some(link);
        }
        Ok(Box::new(instance))
    }
}

fn wait_pid_file(path: &Path) -> Option<i32> {
    let deadline = Instant::now() + PID_FILE_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    None
}

/// Where the runtime puts the memory cgroup of a container whose `cgroupsPath` is the
/// relative `name`: under the runtime's own cgroup, which is cvm's.
fn runtime_memory_dir(name: &str) -> Option<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let version = cgroup::detect()?;
    let (mount, controller) = match version {
        cgroup::CgroupVersion::V2 => (PathBuf::from("/sys/fs/cgroup"), ""),
        _ => (PathBuf::from("/sys/fs/cgroup/memory"), "memory"),
    };
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })?;
    Some(mount.join(path.trim_start_matches('/')).join(name))
}

struct OciInstance {
    kind: BackendKind,
    runtime: Runtime,
    id: String,
    bundle: Option<PathBuf>,
    /// The foreground runtime process (its exit is the container's).
    process: Option<Supervised>,
    started_at: Instant,
    events: Receiver<Event>,
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
    fn force(&self, _runtime_pid: Pid) {
        let _ = self
            .runtime
            .command()
            .args(["kill", self.id, "KILL"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
        let mut pids: Vec<u32> = self
            .process
            .as_ref()
            .and_then(Supervised::running_pid)
            .into_iter()
            .collect();
        if let Some(dir) = &self.memory_dir {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
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
        let fail = |e| BackendError::teardown(self.kind, e);
        if let Some(mut runtime_process) = self.process.take() {
            runtime_process.stop(&OciStop {
                runtime: &self.runtime,
                id: &self.id,
            });
            runtime_process.reap();
        }
        let mut first_error = self.runtime.delete(&self.id).err();
        if let Some(link) = self.link.as_mut() {
            if let Err(e) = link.remove() {
                first_error.get_or_insert(OciError::RemoveLink(e));
            }
        }
        if let Some(bundle) = self.bundle.take() {
            if let Err(source) = fs::remove_dir_all(&bundle) {
                if source.kind() != io::ErrorKind::NotFound {
                    first_error.get_or_insert(OciError::Cleanup {
                        path: bundle,
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(fail(e)))
    }
}

impl Drop for OciInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_has_the_image_read_only_and_the_scenarios_limits() {
        let spec = bundle_spec(&SpecInput {
            rootfs: Path::new("/img"),
            args: vec![
                "/bin/cvm-guest".into(),
                "init".into(),
                "--".into(),
                "hello".into(),
            ],
            hostname: "cvm-0",
            cgroup: "cvm-x-runc-0-0",
            limits: Limits {
                memory_bytes: 256 << 20,
                cpus: 2,
            },
            volume: Some((PathBuf::from("/var/tmp/cvm-v"), "/data".into())),
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["path"], "/img");
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["args"][3], "hello");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert!(json["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&"CVM_MARKER_FD=3".into()));
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), cvm_proto::caps::DEFAULT.len());
        assert!(!bounding.contains(&"CAP_SYS_ADMIN".into()));
        assert_eq!(json["linux"]["cgroupsPath"], "cvm-x-runc-0-0");
        let volume = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(volume["source"], "/var/tmp/cvm-v");
        assert_eq!(volume["type"], "bind");
        assert_eq!(
            json["linux"]["resources"]["memory"]["limit"],
            256 * 1024 * 1024
        );
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 200_000);
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for ns in ["pid", "network", "ipc", "uts", "mount"] {
            assert!(namespaces.contains(&ns), "{namespaces:?}");
        }
        assert!(json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/tmp" && m["type"] == "tmpfs"));
    }
}
