//! Preparing a VM backend for a scenario: the guest kernel (and its extracted vmlinux), the
//! accelerator decision, the guest plan (vCPUs, memory, forwarded ports, data disk), init's
//! configuration and the initramfs that carries it, and the QEMU command template every launch
//! fills in.

use std::path::{Path, PathBuf};

use cvm_proto::vmconf::{self, VmConfigError};

use super::accel::{self, AccelDecision, KvmVerdict, ProbeKernel};
use super::find_qemu;
use super::guest::GuestPlan;
use super::kernel::{self, Kernel, KernelChoice, KernelError};
use super::minimal::{self, MinimalKernelError};
use super::modules::{resolve_modules, ModulesError};
use super::qemu::{self, Accel, Profile, QemuSpec};
use super::{disk, footprint, instance, net, INITRAMFS_COMPRESSION_ENV, QEMU};
use crate::backend::cgroup;
use crate::backend::io_dir::{IoDirError, IoStore};
use crate::backend::DiskLayers;
use crate::backend::{
    Availability, Backend, BackendConfig, BackendError, HostOptions, Instance, LaunchContext,
    Prepared, Stack,
};
use crate::image::initramfs::{self, Compression, InitramfsError, InitramfsSpec};
use crate::image::{self, Image, ImageError};
use crate::scenario::{BackendKind, NetworkMode, Scenario, ScenarioError};

/// The configuration key of why the backend runs under its accelerator (what the probe found).
pub const ACCEL_REASON_KEY: &str = "accel_reason";
/// The configuration key of what would make KVM usable, where the probe found it unusable.
pub const ACCEL_FIX_KEY: &str = "accel_fix";

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
        let decision = accel::choose(self.opts.accel, &assets.probe_kernel(), image);
        if let Some(w) = &decision.warning {
            eprintln!("cvm: {kind}: {w}");
        }
        let compression = initramfs_compression().map_err(fail)?;
        let mut guest = GuestPlan::for_scenario(scenario);
        let tap = self.tap(scenario, &mut guest).map_err(fail)?;
        let (initramfs_spec, initrd) = self
            .initramfs(&assets, &guest, scenario, image, compression)
            .map_err(fail)?;
        let boot_kernel = match (self.profile, &assets.bzimage) {
            (Profile::Micro, _) => assets.vmlinux.clone(),
            (Profile::Classic, Some(bzimage)) => bzimage.clone(),
            (Profile::Classic, None) => return Err(fail(PrepareError::NoBzImage)),
        };
        let tsc_khz = accel::host_tsc_khz();
        let guest_hz = kernel::config_hz(&assets.release);
        let qemu_bin = find_qemu().unwrap_or_else(|| PathBuf::from(QEMU));
        let sandbox = qemu::sandbox_supported(&qemu_bin);
        let spec = QemuSpec {
            binary: qemu_bin,
            profile: self.profile,
            accel: decision.accel,
            vcpus: guest.vcpus,
            memory_mib: guest.memory_mib,
            kernel: boot_kernel,
            initrd,
            cmdline: qemu::cmdline(self.profile, decision.accel, tsc_khz, guest_hz),
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
        let cgroup = qemu_cgroup(scenario);
        let io = IoStore::for_scenario(scenario).map_err(|e| fail(PrepareError::IoDir(e)))?;
        let mut config = self.config(&ConfigFacts {
            decision: &decision,
            assets: &assets,
            spec: &spec,
            guest: &guest,
            tap: tap.as_ref(),
            cgroup: cgroup.as_ref(),
            compression,
            tsc_khz,
            guest_hz,
        });
        if let Some(store) = &io {
            config.extend(store.config());
        }
        let disk = disk_layers(&spec, &guest, &assets, image, &initramfs_spec).map_err(fail)?;
        config.insert("initramfs".into(), spec.initrd.display().to_string());
        config.insert("disk_guest_os".into(), disk.guest_os.clone());

        Ok(Box::new(VmPrepared {
            kind,
            spec,
            guest,
            cgroup,
            tap: tap.map(|(link, _)| link),
            config,
            disk,
            io,
        }))
    }
}

/// `$CVM_INITRAMFS_COMPRESSION`, else the default (none).
fn initramfs_compression() -> Result<Compression, PrepareError> {
    match std::env::var(INITRAMFS_COMPRESSION_ENV) {
        Ok(v) => Compression::parse(&v).ok_or(PrepareError::BadCompression(v)),
        Err(_) => Ok(Compression::default()),
    }
}

/// What a VM backend's recorded configuration is made from.
struct ConfigFacts<'a> {
    decision: &'a AccelDecision,
    assets: &'a GuestAssets,
    spec: &'a QemuSpec,
    guest: &'a GuestPlan,
    tap: Option<&'a (cvm_runtime::net::Link, cvm_runtime::net::Subnet)>,
    cgroup: Option<&'a cgroup::Resources>,
    compression: Compression,
    tsc_khz: Option<u64>,
    guest_hz: Option<u64>,
}

/// Every layer's files by the container's rule: the image's app and libs as a container counts
/// them, the guest OS as installed (the kernel file a user installs, the initramfs's own bytes
/// beside the image's), the hypervisor as QEMU itself reports loading it; the vmlinux cvm boots
/// from, when it is not the installed file, as a cache.
fn disk_layers(
    spec: &QemuSpec,
    guest: &GuestPlan,
    assets: &GuestAssets,
    image: &Image,
    initramfs_spec: &InitramfsSpec,
) -> Result<disk::VmDisk, PrepareError> {
    let hypervisor =
        footprint::hypervisor_files(spec, !guest.forward_ports.is_empty(), guest.disk.is_some())
            .map_err(PrepareError::Footprint)?;
    let kernel_files = disk::KernelFiles {
        installed: assets.bzimage.as_deref().unwrap_or(&assets.vmlinux),
        booted: &spec.kernel,
    };
    disk::layers(
        image,
        kernel_files,
        (initramfs_spec, &spec.initrd),
        hypervisor,
    )
    .map_err(PrepareError::Initramfs)
}

impl VmBackend {
    /// `private`: a tap device on a /30 of its own, the container veth's addressing (the host
    /// reaches the guest directly). It lives as long as this prepared backend, so every launch
    /// attaches to the same device and the guest's address can be written into its initramfs.
    /// Concurrent instances (density) cannot share one tap: they stay on the user network.
    fn tap(
        &self,
        scenario: &Scenario,
        guest: &mut GuestPlan,
    ) -> Result<Option<(cvm_runtime::net::Link, cvm_runtime::net::Subnet)>, PrepareError> {
        let wanted = scenario.resources.network == NetworkMode::Private
            && !self.user_net
            && scenario.density.is_none()
            && !guest.forward_ports.is_empty()
            && nix::unistd::geteuid().is_root();
        if !wanted {
            return Ok(None);
        }
        let subnet = cvm_runtime::net::Subnet::from_env().map_err(PrepareError::Tap)?;
        let token = format!("{:04x}vm", std::process::id() & 0xffff);
        let link = cvm_runtime::net::setup_tap(subnet, &token).map_err(PrepareError::Tap)?;
        guest.tap_addr = Some(link.container_addr);
        Ok(Some((link, subnet)))
    }

    /// The initramfs every launch boots: the image, the kernel modules the guest needs (none
    /// with the minimal kernel's built-in drivers) and init's configuration.
    fn initramfs(
        &self,
        assets: &GuestAssets,
        guest: &GuestPlan,
        scenario: &Scenario,
        image: &Image,
        compression: Compression,
    ) -> Result<(InitramfsSpec, PathBuf), PrepareError> {
        let release = &assets.release;
        let modules = if assets.builtin_drivers {
            Vec::new()
        } else {
            resolve_modules(
                Path::new("/lib/modules").join(release).as_path(),
                release,
                &guest.module_names(self.profile),
            )
            .map_err(PrepareError::Modules)?
        };
        let argv = image.workload_argv(&scenario.workload);
        let config = guest
            .vm_config(argv, &modules)
            .to_text()
            .map_err(PrepareError::Config)?;
        let spec = InitramfsSpec {
            rootfs: image.rootfs().to_path_buf(),
            modules,
            files: vec![(vmconf::PATH.to_string(), config.into_bytes())],
            compression,
        };
        let path = initramfs::build(&spec, &image::cache_dir().join("initramfs"))
            .map_err(PrepareError::Initramfs)?;
        Ok((spec, path))
    }

    /// The configuration recorded with every sample: accelerator (and why), machine, kernel,
    /// command line, network, sandbox, initramfs, cgroup, guest size, data disk, QEMU version.
    fn config(&self, f: &ConfigFacts<'_>) -> BackendConfig {
        let mut config = BackendConfig::new();
        let accel = f.decision.accel;
        config.insert(crate::results::ACCEL_KEY.into(), accel.as_str().into());
        config.insert(ACCEL_REASON_KEY.into(), f.decision.reason.clone());
        if let Some(fix) = &f.decision.fix {
            config.insert(ACCEL_FIX_KEY.into(), fix.clone());
        }
        config.insert("machine".into(), self.profile.machine().into());
        config.insert("boot_path".into(), self.profile.boot_path().into());
        config.insert("kernel".into(), f.assets.release.clone());
        config.insert("kernel_profile".into(), self.kernel.profile().into());
        config.insert("kernel_config_hash".into(), f.assets.config_hash.clone());
        config.insert("kernel_image".into(), f.spec.kernel.display().to_string());
        config.insert("cmdline".into(), f.spec.cmdline.clone());
        if accel == Accel::Tcg {
            config.insert(
                "tsc_khz".into(),
                f.tsc_khz.map_or("unknown".into(), |k| {
                    format!("{k} (measured: TSC vs CLOCK_MONOTONIC)")
                }),
            );
            config.insert(
                "guest_hz".into(),
                f.guest_hz
                    .map_or("unknown (no lpj given)".into(), |hz| hz.to_string()),
            );
        }
        config.insert("network".into(), network_note(f.guest, f.tap));
        config.insert(
            "sandbox".into(),
            if f.spec.sandbox {
                format!("seccomp ({})", qemu::SANDBOX)
            } else {
                "none (this QEMU build has no seccomp)".into()
            },
        );
        let initrd_bytes = std::fs::metadata(&f.spec.initrd).map_or(0, |m| m.len());
        config.insert(
            "initramfs_compression".into(),
            f.compression.as_str().into(),
        );
        config.insert("initramfs_bytes".into(), initrd_bytes.to_string());
        config.insert("cgroup".into(), cgroup_note(f.guest, f.cgroup));
        config.insert("vcpus".into(), f.guest.vcpus.to_string());
        config.insert("memory_mib".into(), f.guest.memory_mib.to_string());
        config.insert(
            "data_disk".into(),
            match &f.guest.disk {
                Some(d) => format!("virtio-blk ext4 {} MiB at {}", d.size_mib, d.mount),
                None => "none".into(),
            },
        );
        if let Some(v) = crate::tools::tool_version(QEMU, &["--version"]) {
            config.insert("qemu".into(), crate::tools::version_number(&v));
        }
        config
    }
}

/// How the guest is reached: no NIC, its tap on a /30, or QEMU's user network.
fn network_note(
    guest: &GuestPlan,
    tap: Option<&(cvm_runtime::net::Link, cvm_runtime::net::Subnet)>,
) -> String {
    match tap {
        _ if guest.forward_ports.is_empty() => "none (no NIC)".into(),
        Some((link, subnet)) => format!(
            "private (tap {}, /30 from {subnet}; guest {})",
            link.host_name, link.container_addr
        ),
        None => net::MODE.into(),
    }
}

/// QEMU's cgroup, in words.
fn cgroup_note(guest: &GuestPlan, cgroup: Option<&cgroup::Resources>) -> String {
    match cgroup {
        Some(r) => format!(
            "QEMU in its own cgroup (CPU quota {} CPUs{}, no memory limit)",
            guest.vcpus,
            r.cpuset
                .as_deref()
                .map_or_else(String::new, |c| format!(", cpuset {c}"))
        ),
        None => "none (not root, or no cgroups)".into(),
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

    /// The kernel the accelerator probe boots.
    fn probe_kernel(&self) -> ProbeKernel<'_> {
        ProbeKernel {
            vmlinux: &self.vmlinux,
            hash: &self.hash,
        }
    }
}

/// The KVM verdict for `cvm doctor`: the probe the VM backends run, on the startup scenario's
/// image (cached, so doctor and the next compare share one probe), with the host's facts.
pub fn kvm_verdict(opts: &HostOptions) -> Result<KvmVerdict, PrepareError> {
    let scenario = crate::scenario::load("startup").map_err(PrepareError::Scenario)?;
    let image = Image::build(&scenario).map_err(PrepareError::Image)?;
    let assets = GuestAssets::load(&opts.kernel)?;
    Ok(accel::verdict(&assets.probe_kernel(), &image))
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
    disk: disk::VmDisk,
    /// For the io workload: where each instance's data disk image is made.
    io: Option<IoStore>,
}

impl Prepared for VmPrepared {
    fn config(&self) -> BackendConfig {
        self.config.clone()
    }

    fn disk_layers(&self) -> DiskLayers {
        self.disk.layers.clone()
    }

    fn disk_packed(&self) -> Vec<crate::usage::disk::Packed> {
        self.disk.packed.clone()
    }

    fn disk_cache(&self) -> Vec<PathBuf> {
        self.disk.cache.clone()
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
    use crate::backend::vm::guest::DataDisk;
    use cvm_proto::vmconf::{DiskConfig, NetConfig, VmConfig};

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
