//! Preparing a VM backend for a scenario: the guest kernel (and its extracted vmlinux), the
//! accelerator decision, the guest plan (vCPUs, memory, forwarded ports, data disk), init's
//! configuration and the initramfs that carries it, and the QEMU command template every launch
//! fills in.

use std::path::{Path, PathBuf};

use cvm_proto::vmconf::{self, DiskConfig, NetConfig, VmConfig, VmConfigError};

use super::accel::{self, AccelChoice, AccelDecision, KvmProbe, ProbeGuest};
use super::kernel::{self, Kernel, KernelChoice, KernelError};
use super::minimal::{self, MinimalKernelError};
use super::modules::{resolve_modules, ModulesError};
use super::qemu::{self, Accel, Profile, QemuSpec};
use super::{footprint, instance, net, INITRAMFS_COMPRESSION_ENV, QEMU};
use crate::backend::cgroup;
use crate::backend::io_dir::{IoDirError, IoStore};
use crate::backend::{
    Availability, Backend, BackendConfig, BackendError, HostOptions, Instance, LaunchContext,
    Prepared, Stack,
};
use crate::backend::{DiskLayers, Layer};
use crate::image::initramfs::{self, Compression, InitramfsError, InitramfsSpec};
use crate::image::{self, Image, ImageError};
use crate::scenario::{BackendKind, NetworkMode, Readiness, Scenario, ScenarioError};

/// Extra space on an io data disk beyond what the workload writes (ext4 metadata, journal).
const DISK_SLACK_MIB: u64 = 64;
/// The data disk as the guest sees it: the first virtio block device.
const GUEST_DISK: &str = "/dev/vda";

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot use the guest kernel")]
    Kernel(#[source] KernelError),
    #[error("cannot load the startup scenario for the probe guest")]
    Scenario(#[source] ScenarioError),
    #[error("cannot build the image for the probe guest")]
    Image(#[source] ImageError),
    #[error("cannot gather the guest's kernel modules")]
    Modules(#[source] ModulesError),
    #[error("cannot write the guest's configuration")]
    Config(#[source] VmConfigError),
    #[error(
        "cannot create the VM's tap device (network = \"private\"; network = \"user\" needs none)"
    )]
    Tap(#[source] cvm_runtime::net::NetError),
    #[error("cannot build the initramfs")]
    Initramfs(#[source] InitramfsError),
    #[error("cannot use the minimal guest kernel")]
    MinimalKernel(#[source] MinimalKernelError),
    #[error("a firmware boot needs a bzImage, and the minimal kernel is built as a vmlinux only")]
    NoBzImage,
    #[error("unknown {INITRAMFS_COMPRESSION_ENV} value {0:?} (none, gzip or zstd)")]
    BadCompression(String),
    #[error("cannot list the hypervisor's files")]
    Footprint(#[source] footprint::FootprintError),
    #[error("cannot use the io directory")]
    IoDir(#[source] IoDirError),
}

/// `vm`, `vm-minimal` or `vm-classic`.
pub struct VmBackend {
    kind: BackendKind,
    profile: Profile,
    /// The guest kernel this backend boots, resolved from the host options for its kind.
    kernel: KernelChoice,
    opts: HostOptions,
    /// Always QEMU's user network, whatever the scenario's `network` (`vm-user`), so a run can
    /// show a VM over its tap and over the user network side by side.
    user_net: bool,
}

impl VmBackend {
    pub fn new(kind: BackendKind, opts: &HostOptions) -> Self {
        let (profile, kernel) = match kind {
            BackendKind::VmMinimal => (Profile::Micro, KernelChoice::Minimal),
            // The conventional VM keeps the distribution's kernel: the minimal one has no
            // firmware boot path to measure and is not what such a VM runs.
            BackendKind::VmClassic => (
                Profile::Classic,
                match &opts.kernel {
                    KernelChoice::Minimal => KernelChoice::Distro,
                    other => other.clone(),
                },
            ),
            _ => (Profile::Micro, opts.kernel.clone()),
        };
        VmBackend {
            kind,
            profile,
            kernel,
            opts: opts.clone(),
            user_net: false,
        }
    }

    /// The microvm on QEMU's user network (`vm-user`).
    pub fn user_net(opts: &HostOptions) -> Self {
        VmBackend {
            kind: BackendKind::VmUser,
            user_net: true,
            ..VmBackend::new(BackendKind::Vm, opts)
        }
    }
}

/// `qemu-system-x86_64` on the host.
pub fn find_qemu() -> Option<PathBuf> {
    crate::backend::find_binary(QEMU)
}

impl Backend for VmBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn stack(&self) -> Stack {
        Stack::Vm
    }
    fn availability(&self) -> Availability {
        if find_qemu().is_none() {
            return Availability::unavailable(
                format!("{QEMU} not found"),
                "apt-get install qemu-system-x86 (or scripts/setup.sh)",
            );
        }
        if self.kernel == KernelChoice::Minimal {
            return match minimal::find_built(&image::cache_dir()) {
                Ok(_) => Availability::Available,
                Err(e) => Availability::unavailable(
                    e.to_string(),
                    "run `cvm kernel build` (scripts/setup.sh --kernel installs what it needs)",
                ),
            };
        }
        match kernel::find(self.kernel.path()) {
            Ok(k) if std::fs::File::open(&k).is_ok() => Availability::Available,
            Ok(k) => Availability::unavailable(
                format!("the guest kernel {} is not readable", k.display()),
                "run as root, or pass --kernel PATH to a readable bzImage",
            ),
            Err(e) => Availability::unavailable(
                e.to_string(),
                "apt-get install linux-image-amd64 (or scripts/setup.sh), or pass --kernel PATH",
            ),
        }
    }

    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let kind = self.kind;
        let fail = |e| BackendError::prepare(kind, e);
        let assets = GuestAssets::load(&self.kernel).map_err(fail)?;
        let decision = assets.decide_accel(self.opts.accel, image).map_err(fail)?;
        if let Some(w) = &decision.warning {
            eprintln!("cvm: {kind}: {w}");
        }
        let compression = match std::env::var(INITRAMFS_COMPRESSION_ENV) {
            Ok(v) => Compression::parse(&v)
                .ok_or_else(|| fail(PrepareError::BadCompression(v.clone())))?,
            Err(_) => Compression::default(),
        };
        let mut guest = GuestPlan::for_scenario(scenario);
        // `private`: a tap device on a /30 of its own, the container veth's addressing (the host
        // reaches the guest directly). It lives as long as this prepared backend, so every launch
        // attaches to the same device and the guest's address can be written into its initramfs.
        // Concurrent instances (density) cannot share one tap: they stay on the user network.
        let tap = if scenario.resources.network == NetworkMode::Private
            && !self.user_net
            && scenario.density.is_none()
            && !guest.forward_ports.is_empty()
            && nix::unistd::geteuid().is_root()
        {
            let subnet =
                cvm_runtime::net::Subnet::from_env().map_err(|e| fail(PrepareError::Tap(e)))?;
            let token = format!("{:04x}vm", std::process::id() & 0xffff);
            let link = cvm_runtime::net::setup_tap(subnet, &token)
                .map_err(|e| fail(PrepareError::Tap(e)))?;
            guest.tap_addr = Some(link.container_addr);
            Some((link, subnet))
        } else {
            None
        };
        let release = assets.release.clone();
        let modules = if assets.builtin_drivers {
            Vec::new()
        } else {
            resolve_modules(
                Path::new("/lib/modules").join(&release).as_path(),
                &release,
                &guest.module_names(self.profile),
            )
            .map_err(|e| fail(PrepareError::Modules(e)))?
        };
        let argv = image.workload_argv(&scenario.workload);
        let config = guest
            .vm_config(argv, &modules)
            .to_text()
            .map_err(|e| fail(PrepareError::Config(e)))?;
        let initrd = initramfs::build(
            &InitramfsSpec {
                rootfs: image.rootfs().to_path_buf(),
                modules: modules.clone(),
                files: vec![(vmconf::PATH.to_string(), config.into_bytes())],
                compression,
            },
            &image::cache_dir().join("initramfs"),
        )
        .map_err(|e| fail(PrepareError::Initramfs(e)))?;
        let boot_kernel = match (self.profile, &assets.bzimage) {
            (Profile::Micro, _) => assets.vmlinux.clone(),
            (Profile::Classic, Some(bzimage)) => bzimage.clone(),
            (Profile::Classic, None) => return Err(fail(PrepareError::NoBzImage)),
        };
        let tsc_khz = accel::host_tsc_khz();
        let guest_hz = kernel::config_hz(&release);
        let cmdline = qemu::cmdline(self.profile, decision.accel, tsc_khz, guest_hz);
        let qemu_bin = find_qemu().unwrap_or_else(|| PathBuf::from(QEMU));
        let sandbox = qemu::sandbox_supported(&qemu_bin);
        let initrd_bytes = std::fs::metadata(&initrd).map(|m| m.len()).unwrap_or(0);

        let mut config = BackendConfig::new();
        config.insert(
            crate::results::ACCEL_KEY.into(),
            decision.accel.as_str().into(),
        );
        config.insert("accel_reason".into(), decision.reason.clone());
        config.insert("machine".into(), self.profile.machine().into());
        config.insert("boot_path".into(), self.profile.boot_path().into());
        config.insert("kernel".into(), release);
        config.insert("kernel_profile".into(), self.kernel.profile().into());
        config.insert("kernel_config_hash".into(), assets.config_hash.clone());
        config.insert("kernel_image".into(), boot_kernel.display().to_string());
        config.insert("cmdline".into(), cmdline.clone());
        if decision.accel == Accel::Tcg {
            config.insert(
                "tsc_khz".into(),
                tsc_khz.map_or("unknown".into(), |k| {
                    format!("{k} (measured: TSC vs CLOCK_MONOTONIC)")
                }),
            );
            config.insert(
                "guest_hz".into(),
                guest_hz.map_or("unknown (no lpj given)".into(), |hz| hz.to_string()),
            );
        }
        config.insert(
            "network".into(),
            match &tap {
                _ if guest.forward_ports.is_empty() => "none (no NIC)".into(),
                Some((link, subnet)) => format!(
                    "private (tap {}, /30 from {subnet}; guest {})",
                    link.host_name, link.container_addr
                ),
                None => net::MODE.into(),
            },
        );
        config.insert(
            "sandbox".into(),
            if sandbox {
                format!("seccomp ({})", qemu::SANDBOX)
            } else {
                "none (this QEMU build has no seccomp)".into()
            },
        );
        config.insert("initramfs_compression".into(), compression.as_str().into());
        config.insert("initramfs_bytes".into(), initrd_bytes.to_string());
        let cgroup = qemu_cgroup(scenario);
        config.insert(
            "cgroup".into(),
            match &cgroup {
                Some(r) => format!(
                    "QEMU in its own cgroup (CPU quota {} CPUs{}, no memory limit)",
                    guest.vcpus,
                    r.cpuset
                        .as_deref()
                        .map_or_else(String::new, |c| format!(", cpuset {c}"))
                ),
                None => "none (not root, or no cgroups)".into(),
            },
        );
        config.insert("vcpus".into(), guest.vcpus.to_string());
        config.insert("memory_mib".into(), guest.memory_mib.to_string());
        config.insert(
            "data_disk".into(),
            match &guest.disk {
                Some(d) => format!("virtio-blk ext4 {} MiB at {}", d.size_mib, d.mount),
                None => "none".into(),
            },
        );
        if let Some(v) = crate::measure::host::tool_version(QEMU, &["--version"]) {
            config.insert("qemu".into(), crate::measure::host::version_number(&v));
        }

        let io = IoStore::for_scenario(scenario).map_err(|e| fail(PrepareError::IoDir(e)))?;
        if let Some(store) = &io {
            config.extend(store.config());
        }
        let spec = QemuSpec {
            binary: qemu_bin,
            profile: self.profile,
            accel: decision.accel,
            vcpus: guest.vcpus,
            memory_mib: guest.memory_mib,
            kernel: boot_kernel,
            initrd,
            cmdline,
            qmp: None,
            net: None,
            disk: None,
            sandbox,
            tap: tap.as_ref().map(|(link, _)| {
                (
                    link.host_name.clone(),
                    cvm_runtime::net::guest_mac(link.container_addr),
                )
            }),
        };
        // What QEMU reads, nothing else: the kernel as booted and the initramfs as handed over
        // (which carries the modules, busybox and the workload, so the image directory, which
        // QEMU never opens, is not counted and the app and libs layers have no files of their
        // own on a VM); the hypervisor as QEMU itself reports loading it.
        let mut layers = DiskLayers::new();
        layers.insert(
            Layer::GuestOs,
            vec![spec.kernel.clone(), spec.initrd.clone()],
        );
        let hypervisor = footprint::hypervisor_files(
            &spec,
            !guest.forward_ports.is_empty(),
            guest.disk.is_some(),
        )
        .map_err(|e| fail(PrepareError::Footprint(e)))?;
        layers.insert(Layer::Hypervisor, hypervisor);
        config.insert("initramfs".into(), spec.initrd.display().to_string());

        Ok(Box::new(VmPrepared {
            kind,
            spec,
            guest,
            cgroup,
            tap: tap.map(|(link, _)| link),
            config,
            layers,
            io,
        }))
    }
}

/// QEMU's cgroup, like every other backend's instance: all of its threads (vCPUs, main loop,
/// user networking, I/O) get the scenario's CPU quota and, with a load phase, its CPUs. No
/// memory limit: guest RAM is only part of what QEMU maps, and a limit at the guest's size would
/// kill QEMU rather than the workload. `None` where cvm cannot create cgroups (not root).
fn qemu_cgroup(scenario: &Scenario) -> Option<cgroup::Resources> {
    if !nix::unistd::geteuid().is_root() || cgroup::detect().is_none() {
        return None;
    }
    let limits = crate::backend::limits(scenario);
    Some(cgroup::Resources {
        memory_bytes: None,
        // The guest's processes are not QEMU's threads: its pids limit is applied inside, by
        // the guest's init (see `GuestPlan::pids`).
        pids: None,
        ..cgroup::Resources::from(limits)
    })
}

/// The kernel, its vmlinux for direct boot and what the accelerator probe needs.
struct GuestAssets {
    vmlinux: PathBuf,
    /// The bzImage a firmware boot loads (the minimal kernel has none).
    bzimage: Option<PathBuf>,
    /// The kernel's release (`6.1.0-56-amd64`, `6.1.192`).
    release: String,
    /// Content hash of the kernel (cache key of the accelerator probe).
    hash: String,
    /// Hash of the kernel's configuration, recorded with every sample.
    config_hash: String,
    /// The guest's drivers are built in: the initramfs carries no modules.
    builtin_drivers: bool,
}

impl GuestAssets {
    fn load(choice: &KernelChoice) -> Result<GuestAssets, PrepareError> {
        if *choice == KernelChoice::Minimal {
            let built =
                minimal::find_built(&image::cache_dir()).map_err(PrepareError::MinimalKernel)?;
            return Ok(GuestAssets {
                vmlinux: built.vmlinux,
                bzimage: None,
                release: built.release,
                hash: built.key,
                config_hash: built.config_hash,
                builtin_drivers: true,
            });
        }
        let path = kernel::find(choice.path()).map_err(PrepareError::Kernel)?;
        let kernel = Kernel::load(&path).map_err(PrepareError::Kernel)?;
        // Extracted for both profiles: the accelerator probe boots the fast path.
        let vmlinux = kernel
            .vmlinux(&image::cache_dir())
            .map_err(PrepareError::Kernel)?;
        let release = kernel.info.release().to_string();
        Ok(GuestAssets {
            vmlinux,
            config_hash: distro_config_hash(&release),
            release,
            hash: kernel.hash,
            bzimage: Some(path),
            builtin_drivers: false,
        })
    }

    fn decide_accel(
        &self,
        choice: Option<AccelChoice>,
        image: &Image,
    ) -> Result<AccelDecision, PrepareError> {
        // A probe that cannot even be built counts as a failed probe: TCG, with the reason.
        Ok(accel::decide(choice, || match self.probe_initrd(image) {
            Ok(initrd) => self.probe(&initrd),
            Err(e) => KvmProbe::Failed {
                error: format!("{:#}", anyhow::Error::new(e)),
            },
        }))
    }

    fn probe_initrd(&self, image: &Image) -> Result<PathBuf, PrepareError> {
        let argv = vec![
            image::GUEST_PATH.to_string(),
            cvm_proto::applet::Applet::Hello.name().to_string(),
        ];
        let config = GuestPlan::default()
            .vm_config(argv, &[])
            .to_text()
            .map_err(PrepareError::Config)?;
        initramfs::build(
            &InitramfsSpec {
                rootfs: image.rootfs().to_path_buf(),
                modules: Vec::new(),
                files: vec![(vmconf::PATH.to_string(), config.into_bytes())],
                compression: Compression::None,
            },
            &image::cache_dir().join("initramfs"),
        )
        .map_err(PrepareError::Initramfs)
    }

    fn probe(&self, initrd: &Path) -> KvmProbe {
        let qemu = find_qemu().unwrap_or_else(|| PathBuf::from(QEMU));
        let version = crate::measure::host::tool_version(QEMU, &["--version"]).unwrap_or_default();
        accel::probe_cached(&ProbeGuest {
            qemu: &qemu,
            qemu_version: &version,
            vmlinux: &self.vmlinux,
            kernel_hash: &self.hash,
            initrd,
            cache: &image::cache_dir(),
        })
    }
}

/// The KVM verdict for `cvm doctor`: the probe the VM backends run, on the startup scenario's
/// image (cached, so doctor and the next compare share one probe).
pub fn kvm_verdict(opts: &HostOptions) -> Result<KvmProbe, PrepareError> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(KvmProbe::Absent);
    }
    let scenario = crate::scenario::load("startup").map_err(PrepareError::Scenario)?;
    let image = Image::build(&scenario).map_err(PrepareError::Image)?;
    let assets = GuestAssets::load(&opts.kernel)?;
    let initrd = assets.probe_initrd(&image)?;
    Ok(assets.probe(&initrd))
}

/// What the guest is given and does, derived from the scenario.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GuestPlan {
    pub(super) vcpus: u32,
    pub(super) memory_mib: u64,
    /// Guest ports the host must reach (readiness and load need them): forwarded from host
    /// loopback ports on the user network, or reached directly over the tap.
    pub(super) forward_ports: Vec<u16>,
    /// The guest's address on its tap link, when it has one instead of the user network.
    pub(super) tap_addr: Option<std::net::Ipv4Addr>,
    pub(super) disk: Option<DataDisk>,
    /// The port init watches for LISTEN (the inside half of readiness).
    pub(super) watch_port: Option<u16>,
    /// The scenario's pids limit, applied by init inside the guest (its kernel's thread cap).
    pub(super) pids: Option<u64>,
}

impl Default for GuestPlan {
    fn default() -> Self {
        GuestPlan {
            vcpus: 1,
            memory_mib: 128,
            forward_ports: Vec::new(),
            tap_addr: None,
            disk: None,
            watch_port: None,
            pids: None,
        }
    }
}

/// An ext4 data disk made per launch and mounted by init, for the io workload.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DataDisk {
    pub(super) size_mib: u64,
    pub(super) mount: String,
}

impl GuestPlan {
    fn for_scenario(s: &Scenario) -> GuestPlan {
        let mut forward_ports = Vec::new();
        match s.readiness {
            Readiness::Tcp { port } | Readiness::Http { port, .. } => forward_ports.push(port),
            Readiness::Marker => {}
        }
        if s.resources.network == NetworkMode::None && forward_ports.is_empty() {
            forward_ports.clear();
        }
        let disk = s.workload.io_target().map(|(mount, mib)| DataDisk {
            size_mib: mib * 2 + DISK_SLACK_MIB,
            mount,
        });
        GuestPlan {
            vcpus: *s.resources.vcpus.get_ref(),
            memory_mib: *s.resources.memory_mib.get_ref(),
            forward_ports,
            tap_addr: None,
            disk,
            watch_port: s.readiness.port(),
            pids: s.resources.pids.as_ref().map(|p| *p.get_ref()),
        }
    }

    /// Kernel modules the guest needs, by name; dependencies are added by [`resolve_modules`].
    fn module_names(&self, profile: Profile) -> Vec<&'static str> {
        let transport = match profile {
            Profile::Micro => "virtio_mmio",
            Profile::Classic => "virtio_pci",
        };
        let mut names = Vec::new();
        if !self.forward_ports.is_empty() {
            names.extend([transport, "virtio_net"]);
        }
        if self.disk.is_some() {
            // ext4 asks the crypto API for crc32c at mount time; with no modprobe in the guest
            // the implementation must already be loaded.
            names.extend([transport, "virtio_blk", "crc32c_generic", "ext4"]);
        }
        names
    }

    /// Init's configuration: `modules` (host paths, in load order) as the initramfs places
    /// them, the network if ports are forwarded, the data disk, and the workload's argv.
    fn vm_config(&self, argv: Vec<String>, modules: &[PathBuf]) -> VmConfig {
        VmConfig {
            modules: modules
                .iter()
                .map(|m| InitramfsSpec::module_path(m))
                .collect(),
            net: (!self.forward_ports.is_empty()).then(|| NetConfig {
                device: net::GUEST_NET_DEVICE.into(),
                cidr: self
                    .tap_addr
                    .map_or_else(|| net::GUEST_CIDR.into(), |a| format!("{a}/30")),
            }),
            disk: self.disk.as_ref().map(|d| DiskConfig {
                device: GUEST_DISK.into(),
                mount: d.mount.clone(),
            }),
            watch_port: self.watch_port,
            pids: self.pids,
            argv,
        }
    }
}

/// The short hash of a distribution kernel's configuration (`/boot/config-RELEASE`), or
/// `unknown` where that file is not installed.
fn distro_config_hash(release: &str) -> String {
    use sha2::{Digest, Sha256};
    match std::fs::read(Path::new("/boot").join(format!("config-{release}"))) {
        Ok(bytes) => format!("{:x}", Sha256::digest(bytes))[..16].to_string(),
        Err(_) => "unknown".into(),
    }
}

/// QEMU, its shared libraries and the firmware files the profile makes it load.
struct VmPrepared {
    kind: BackendKind,
    /// The launch template: per-instance parts (QMP socket, forwards, disk) are filled in.
    spec: QemuSpec,
    guest: GuestPlan,
    /// The cgroup each instance's QEMU is started in, if any.
    cgroup: Option<cgroup::Resources>,
    /// The tap device every launch attaches to (`network = "private"`); removed on drop.
    #[allow(dead_code)]
    tap: Option<cvm_runtime::net::Link>,
    config: BackendConfig,
    layers: DiskLayers,
    /// For the io workload: where each instance's data disk image is made.
    io: Option<IoStore>,
}

impl Prepared for VmPrepared {
    fn config(&self) -> BackendConfig {
        self.config.clone()
    }

    fn disk_layers(&self) -> DiskLayers {
        self.layers.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        instance::launch(
            self.kind,
            &self.spec,
            &self.guest,
            self.io.as_ref(),
            self.cgroup.as_ref(),
            ctx,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_config_lists_modules_network_disk_and_argv() {
        let plan = GuestPlan {
            vcpus: 1,
            memory_mib: 256,
            forward_ports: vec![8080],
            tap_addr: None,
            disk: Some(DataDisk {
                size_mib: 192,
                mount: "/tmp".into(),
            }),
            watch_port: Some(8080),
            pids: Some(128),
        };
        let argv: Vec<String> = ["/bin/cvm-guest", "http", "--port", "8080"]
            .map(String::from)
            .into();
        let config = plan.vm_config(
            argv.clone(),
            &[PathBuf::from("/lib/modules/6.1/kernel/virtio.ko")],
        );
        assert_eq!(
            config,
            VmConfig {
                modules: vec!["/lib/modules/virtio.ko".into()],
                net: Some(NetConfig {
                    device: "eth0".into(),
                    cidr: "10.0.2.15/24".into()
                }),
                disk: Some(DiskConfig {
                    device: "/dev/vda".into(),
                    mount: "/tmp".into()
                }),
                watch_port: Some(8080),
                pids: Some(128),
                argv,
            }
        );
        // On a tap link the guest takes its end of the /30.
        let tapped = GuestPlan {
            tap_addr: Some(std::net::Ipv4Addr::new(10, 213, 0, 6)),
            ..plan
        };
        let net = tapped.vm_config(vec!["x".into()], &[]).net.unwrap();
        assert_eq!(net.cidr, "10.213.0.6/30");
        let bare = GuestPlan::default().vm_config(vec!["a\nb".into()], &[]);
        assert_eq!((&bare.net, &bare.disk), (&None, &None));
        assert!(bare.to_text().is_err());
    }
}
