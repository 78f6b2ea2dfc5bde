//! The scenario data model, as written in TOML (serde, unknown keys rejected).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cvm_proto::applet::{Applet, IoArgs};
use cvm_proto::isolation::{Aggressor, AggressorArgs};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A validated scenario. Fields that later checks must point at keep their source span.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Measured runs per backend.
    #[serde(default = "default_runs")]
    pub runs: Spanned<u32>,
    /// Warm-up runs per backend, recorded but left out of the summary.
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Seconds one run may take to become ready, and again to finish.
    #[serde(default = "default_timeout")]
    pub timeout_s: Spanned<f64>,
    /// Backends used when `--backends` is not given.
    #[serde(default = "default_backends")]
    pub backends: Spanned<Vec<Spanned<String>>>,
    pub workload: Workload,
    #[serde(default)]
    pub readiness: Readiness,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub image: ImageSpec,
    /// A load phase run against the workload once it is ready.
    pub load: Option<LoadSpec>,
    /// Start N instances per backend and keep them all running (the density scenario).
    pub density: Option<DensitySpec>,
    /// Settings of the VM backends.
    #[serde(default)]
    pub vm: VmSettings,
    /// Warm (back to back, the default) or cold starts.
    #[serde(default)]
    pub start: StartSpec,
    /// The isolation experiment: noisy neighbour, containment and the attack-surface audit
    /// around the workload (the victim).
    pub isolation: Option<IsolationSpec>,
    /// What a container's workload may do beyond Docker's defaults.
    #[serde(default)]
    pub security: SecuritySpec,
    /// A real program's own standard client and the parser of its output (app scenarios).
    pub app: Option<AppSpec>,
}

impl Scenario {
    /// Whether a client runs on the host against the instance (an HTTP `[load]`, or an app's
    /// host-side client): then the instance and the client get CPUs of their own.
    pub fn has_host_client(&self) -> bool {
        self.load.is_some()
            || self
                .app
                .as_ref()
                .is_some_and(|a| a.client.side == ClientSide::Host)
    }
}

/// `[app]`: the standard client of the program the workload runs (`redis-benchmark` against
/// `redis-server`, `fio` inside), and the parser that turns its output into metrics. The
/// program's files come into the image by `[image]`'s `packages` and `files`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub client: AppClient,
    /// The server's own count, read before and after the client: the cross-check.
    pub server_count: Option<AppCommand>,
}

/// The client: where it runs, what it runs, how its output is read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppClient {
    /// `host`: a host command, run once the workload is ready, on the load client's CPUs.
    /// `inside`: the workload itself is the client; its output is parsed when it exits.
    pub side: ClientSide,
    /// The host command (`side = "host"` only), argv[0] first; `{host}` and `{port}` are
    /// replaced by the instance's address for the readiness port.
    pub command: Option<Spanned<Vec<String>>>,
    /// How the client's output is read (`cvm_proto`-named metrics): see [`AppClient::parser`].
    pub parser: Spanned<String>,
    /// The most requests the client keeps in flight (its connections): by how much the
    /// server's own count may differ from the client's.
    #[serde(default = "default_app_connections")]
    pub connections: Spanned<u64>,
}

/// A host command and the parser of its output (the server's own count).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppCommand {
    pub command: Spanned<Vec<String>>,
    pub parser: Spanned<String>,
}

fn default_app_connections() -> Spanned<u64> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientSide {
    Host,
    Inside,
}

/// `[security]`: loosening a container's confinement, to see what it costs in isolation (the
/// audit and the containment attempts show it). Container backends only: a VM's guest root
/// already holds every capability of its own kernel, and native has no confinement.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    /// Capabilities added to Docker's default set, by their kernel names (`CAP_SYS_ADMIN`).
    #[serde(default = "no_caps")]
    pub cap_add: Spanned<Vec<String>>,
    /// The seccomp filter: each runtime's default (Docker's profile; none in cvm's own runtime
    /// and the OCI bundles cvm writes), or none at all.
    #[serde(default)]
    pub seccomp: SeccompProfile,
}

impl Default for SecuritySpec {
    fn default() -> Self {
        SecuritySpec {
            cap_add: no_caps(),
            seccomp: SeccompProfile::Default,
        }
    }
}

fn no_caps() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

impl SecuritySpec {
    /// Whether anything is loosened.
    pub fn is_default(&self) -> bool {
        self.cap_add.get_ref().is_empty() && self.seccomp == SeccompProfile::Default
    }

    /// Docker's default set plus `cap_add`.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = cvm_proto::caps::DEFAULT
            .iter()
            .map(|c| c.to_string())
            .collect();
        for c in self.cap_add.get_ref() {
            if !caps.contains(c) {
                caps.push(c.clone());
            }
        }
        caps
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    #[default]
    Default,
    Unconfined,
}

/// `[vm]`: settings of the VM backends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VmSettings {
    /// The `vm` backend's guest kernel: `distro` (found under /boot, the default), `minimal`
    /// (cvm's own, `cvm kernel build`; `vm` then runs as `vm-minimal`) or a bzImage path.
    /// `--kernel` overrides it; `vm-classic` never boots the minimal kernel.
    pub kernel: Option<String>,
}

fn default_runs() -> Spanned<u32> {
    Spanned::new(0..0, 10)
}
fn default_warmup() -> u32 {
    2
}
fn default_timeout() -> Spanned<f64> {
    Spanned::new(0..0, 60.0)
}
fn default_backends() -> Spanned<Vec<Spanned<String>>> {
    Spanned::new(0..0, vec![Spanned::new(0..0, "native".to_string())])
}

/// The program each instance runs: a `cvm-guest` applet, or a command inside the image.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// A `cvm-guest` applet (hello, http, cpu, mem, io, idle, ...).
    pub applet: Option<Spanned<String>>,
    /// A command inside the image, argv[0] first (an absolute path or a name on /bin).
    pub command: Option<Spanned<Vec<String>>>,
    /// Arguments appended to the applet.
    #[serde(default)]
    pub args: Vec<String>,
    /// Whether the workload finishes by itself (cpu, io) rather than serving until stopped.
    /// Defaults from the applet; commands default to serving.
    pub exits: Option<bool>,
    /// A command's io directory: given the instance's io storage by the `io` applet's rule
    /// (a host directory for containers, a virtio-blk disk for VMs) of `io_mib` MiB written.
    pub io_dir: Option<Spanned<String>>,
    #[serde(default = "default_io_mib")]
    pub io_mib: Spanned<u64>,
}

fn default_io_mib() -> Spanned<u64> {
    Spanned::new(0..0, 256)
}

impl Workload {
    /// For the io applet: the directory it writes to (its `--dir`, default `/tmp`) and the MiB
    /// it writes (`--mib`, default 64). Backends give that directory a disk of the instance's
    /// own there: a host directory for containers, a virtio-blk disk for VMs.
    /// `None` for another workload (or io arguments that do not parse, which validation refuses).
    pub fn io_target(&self) -> Option<(String, u64)> {
        if let (None, Some(dir)) = (&self.applet, &self.io_dir) {
            return Some((dir.get_ref().clone(), *self.io_mib.get_ref()));
        }
        match self.applet()? {
            Applet::Io => {
                let io = IoArgs::parse(&self.os_args()).ok()?;
                Some((io.dir, io.mib))
            }
            // The io aggressor writes by the same storage rule; what it writes stays small (it
            // appends blocks and fsyncs each), so it gets the io applet's default size.
            Applet::Aggressor => {
                let a = AggressorArgs::parse(&self.os_args()).ok()?;
                (a.kind == Aggressor::Io).then_some((a.dir, AGGRESSOR_IO_MIB))
            }
            _ => None,
        }
    }

    /// The `cvm-guest` applet this workload runs, if it names a known one.
    pub fn applet(&self) -> Option<Applet> {
        Applet::from_name(self.applet.as_ref()?.get_ref())
    }

    fn os_args(&self) -> Vec<OsString> {
        self.args.iter().map(OsString::from).collect()
    }

    /// True when the run waits for the workload to exit (and collects its results) before
    /// teardown; false when it is torn down once measured.
    pub fn runs_to_completion(&self) -> bool {
        if let Some(exits) = self.exits {
            return exits;
        }
        self.applet()
            .and_then(|a| a.runs_to_completion(&self.os_args()))
            .unwrap_or(false)
    }

    /// A short name for markers and reports.
    pub fn display_name(&self) -> String {
        match (&self.applet, &self.command) {
            (Some(a), _) => a.get_ref().clone(),
            (None, Some(c)) => c.get_ref().first().cloned().unwrap_or_default(),
            (None, None) => String::new(),
        }
    }
}

/// The disk the io aggressor is given, in MiB written (its disk is twice that plus slack on a
/// VM): it appends small fsync'd blocks for a few seconds, far less than this.
pub const AGGRESSOR_IO_MIB: u64 = 64;

/// How the host decides the workload is ready.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Readiness {
    /// The workload writes `CVM:ready` on its marker channel.
    #[default]
    Marker,
    /// A TCP connect to the port succeeds.
    Tcp { port: u16 },
    /// An HTTP GET of the path returns any response (the first request served).
    Http {
        port: u16,
        #[serde(default = "default_http_path")]
        path: String,
    },
}

impl Readiness {
    /// The port a server workload listens on: the host probes it from outside, and init watches
    /// for it in LISTEN from inside. `None` for marker readiness.
    pub fn port(&self) -> Option<u16> {
        match self {
            Readiness::Marker => None,
            Readiness::Tcp { port } | Readiness::Http { port, .. } => Some(*port),
        }
    }
}

fn default_http_path() -> String {
    "/".to_string()
}

/// Resources every backend gives the instance, so the comparison is like for like.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_vcpus")]
    pub vcpus: Spanned<u32>,
    #[serde(default = "default_memory")]
    pub memory_mib: Spanned<u64>,
    #[serde(default)]
    pub network: NetworkMode,
    /// What the io workload's directory may be backed by (see [`IoStorage`]).
    #[serde(default = "default_io_storage")]
    pub io_storage: Spanned<IoStorage>,
    /// The most processes (threads included) the instance may have: its cgroup's `pids.max`
    /// (Docker's `--pids-limit`), a VM's guest kernel threads beyond what it runs already.
    /// Absent: no limit.
    #[serde(default)]
    pub pids: Option<Spanned<u64>>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            vcpus: default_vcpus(),
            memory_mib: default_memory(),
            network: NetworkMode::default(),
            io_storage: default_io_storage(),
            pids: None,
        }
    }
}

/// `[isolation]`: the isolation experiment around the workload, which is the victim (an HTTP
/// server under the scenario's `[load]`). Per backend: a closed-loop calibration, then the
/// victim at a fixed open-loop rate alone and beside one aggressor instance of each kind (same
/// backend, same limits, same CPUs); then the attack-surface audit and the containment attempts
/// (never on native), each in an instance of its own beside the victim.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationSpec {
    /// Seconds of the closed-loop calibration of the victim alone.
    #[serde(default = "default_calibration")]
    pub calibration_s: Spanned<f64>,
    /// The offered rate as a share of the calibrated one.
    #[serde(default = "default_offered_share")]
    pub offered_share: Spanned<f64>,
    /// The aggressor kinds, in the order they run.
    #[serde(default = "default_aggressors")]
    pub aggressors: Spanned<Vec<String>>,
    /// Run the attack-surface audit.
    #[serde(default = "default_true")]
    pub audit: bool,
    /// Run the containment attempts (skipped on native, always).
    #[serde(default = "default_true")]
    pub containment: bool,
}

impl IsolationSpec {
    /// The aggressor kinds (validated at load).
    pub fn aggressor_kinds(&self) -> Vec<Aggressor> {
        self.aggressors
            .get_ref()
            .iter()
            .filter_map(|a| Aggressor::from_name(a))
            .collect()
    }
}

fn default_calibration() -> Spanned<f64> {
    Spanned::new(0..0, 2.0)
}
fn default_offered_share() -> Spanned<f64> {
    Spanned::new(0..0, 0.5)
}
fn default_aggressors() -> Spanned<Vec<String>> {
    Spanned::new(
        0..0,
        Aggressor::ALL
            .iter()
            .map(|a| a.name().to_string())
            .collect(),
    )
}
fn default_true() -> bool {
    true
}

fn default_io_storage() -> Spanned<IoStorage> {
    Spanned::new(0..0, IoStorage::Disk)
}

/// What backs the io workload's directory: one host directory in cvm's cache directory on
/// every backend (bound into containers, holding a VM's disk image). A run whose directory
/// turns out to be on a memory filesystem when `disk` was asked for (or the reverse) is refused
/// rather than measured as something else.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IoStorage {
    /// A disk-backed filesystem (not tmpfs or ramfs).
    #[default]
    Disk,
    /// A memory filesystem (tmpfs, ramfs): put `CVM_CACHE_DIR` on one.
    Memory,
}

impl IoStorage {
    pub fn as_str(self) -> &'static str {
        match self {
            IoStorage::Disk => "disk",
            IoStorage::Memory => "memory",
        }
    }
}

fn default_vcpus() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_memory() -> Spanned<u64> {
    Spanned::new(0..0, 256)
}

/// Whether the instance gets a network of its own.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only (containers), no NIC (VMs).
    #[default]
    None,
    /// A private link to the host: veth for containers, a tap device for VMs (both a /30 the
    /// host reaches directly).
    Private,
    /// For VMs, QEMU's user-mode network (slirp) with the port forwarded from host loopback;
    /// containers, which have no such thing, get their private link.
    User,
}

impl NetworkMode {
    /// Whether the instance has a network link the host reaches (any mode but `none`).
    pub fn has_link(self) -> bool {
        self != NetworkMode::None
    }
}

/// What goes into the one rootfs besides `cvm-guest` and busybox.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Host binaries copied in with their shared libraries (bring your own workload).
    #[serde(default)]
    pub host_binaries: Vec<PathBuf>,
    /// Start from this rootfs directory or tarball instead of an empty one.
    pub rootfs: Option<PathBuf>,
    /// Installed Debian packages whose files (`dpkg -L`, documentation aside) go in by the
    /// same rule: executables with their libraries, the rest as data.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Further host files (absolute paths) by the same rule.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// A load phase run from the host against the ready workload. (A struct with a `kind` field
/// rather than a tagged enum: serde's tagged enums lose the source spans error messages need.)
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    pub kind: LoadKind,
    #[serde(default = "default_load_duration")]
    pub duration_s: Spanned<f64>,
    #[serde(default = "default_connections")]
    pub connections: Spanned<u32>,
    #[serde(default = "default_http_path")]
    pub path: String,
    /// Client threads, each on its own CPU where the client has CPUs enough.
    #[serde(default = "default_client_threads")]
    pub client_threads: Spanned<u32>,
    /// Requests per second in all: an open loop (latency from each intended send time). Absent:
    /// a closed loop.
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
    /// A rate sweep after the main load phase: one open-loop phase of `duration_s` per rate,
    /// drawn as a throughput–latency curve per backend.
    #[serde(default)]
    pub rates: Option<Spanned<Vec<f64>>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoadKind {
    Http,
}

fn default_load_duration() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}
fn default_connections() -> Spanned<u32> {
    Spanned::new(0..0, 4)
}
fn default_client_threads() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// How each launch is preceded. Warm: right after the previous run (what repeated launches of
/// one service see). Cold: after a fixed idle gap, with the page cache dropped, so the image,
/// runtime and kernel are read from disk again and the kernel's deferred work (an RCU grace
/// period before a cgroup join) has settled in between.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StartSpec {
    #[serde(default)]
    pub mode: StartMode,
    /// Seconds of idle before each cold launch.
    #[serde(default = "default_idle_gap")]
    pub idle_gap_s: Spanned<f64>,
}

impl Default for StartSpec {
    fn default() -> Self {
        StartSpec {
            mode: StartMode::Warm,
            idle_gap_s: default_idle_gap(),
        }
    }
}

fn default_idle_gap() -> Spanned<f64> {
    Spanned::new(0..0, 2.0)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    #[default]
    Warm,
    Cold,
}

impl StartMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StartMode::Warm => "warm",
            StartMode::Cold => "cold",
        }
    }
}

/// The density experiment: N instances kept running at once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DensitySpec {
    pub instances: Spanned<u32>,
}

/// Every backend cvm knows, whether or not it can run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Native,
    Container,
    Runc,
    Crun,
    Gvisor,
    Docker,
    /// Podman, rootful: conmon and runc, its storage private to the run.
    Podman,
    Vm,
    /// `vm` booting cvm's minimal guest kernel: its own label, so a report can set both
    /// kernels side by side.
    VmMinimal,
    VmClassic,
    /// `vm` on QEMU's user network whatever the scenario's `network`.
    VmUser,
}

impl BackendKind {
    pub const ALL: [BackendKind; 11] = [
        BackendKind::Native,
        BackendKind::Container,
        BackendKind::Runc,
        BackendKind::Crun,
        BackendKind::Gvisor,
        BackendKind::Docker,
        BackendKind::Podman,
        BackendKind::Vm,
        BackendKind::VmMinimal,
        BackendKind::VmClassic,
        BackendKind::VmUser,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Native => "native",
            BackendKind::Container => "container",
            BackendKind::Runc => "runc",
            BackendKind::Crun => "crun",
            BackendKind::Gvisor => "gvisor",
            BackendKind::Docker => "docker",
            BackendKind::Podman => "podman",
            BackendKind::Vm => "vm",
            BackendKind::VmMinimal => "vm-minimal",
            BackendKind::VmClassic => "vm-classic",
            BackendKind::VmUser => "vm-user",
        }
    }

    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown backend `{s}`; valid backends: {}",
                    Self::valid_names()
                )
            })
    }
}
