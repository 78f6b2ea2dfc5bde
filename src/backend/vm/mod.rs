//! The VM backends: the same image and `cvm-guest` init, booted in QEMU guests.
//!
//! Two profiles (see [`qemu::Profile`]):
//! - `vm`: the fast path. A microvm, PVH direct boot of the uncompressed `vmlinux` extracted
//!   from the host's bzImage (no firmware boot menu, no in-guest decompressor), virtio-mmio
//!   devices only, and a tuned kernel command line. Measured on the reference host under TCG
//!   (DESIGN.md): microvm + PVH vmlinux 1.9 s to poweroff, against 4.2 s for microvm + bzImage,
//!   because the bzImage decompressor runs as emulated code.
//! - `vm-classic`: a conventional VM. The i440FX PC with its default devices, SeaBIOS, the
//!   bzImage through the Linux boot protocol, PCI virtio devices; DESIGN.md's anchor is 4.7 s.
//!
//! Both get the scenario's vCPUs and memory, and both run the image's rootfs as an initramfs
//! (`image::initramfs`, uncompressed: see [`INITRAMFS_COMPRESSION_ENV`]) whose `/init` is
//! `cvm-guest`, configured by `/etc/cvm/vm.conf` (the format is documented in
//! `guest/src/vm_init.rs`): the kernel modules to load, in `modules.dep` order, the network
//! address, a data disk to mount, and the workload's argv.
//!
//! Phases, stamped by the host as console bytes arrive on QEMU's stdout (the guest's first
//! serial port): `spawn` when QEMU's exec returned; `firmware` (vm-classic only) at the first
//! byte, SeaBIOS's banner; `kernel` at the kernel's `Linux version` banner; then init's and the
//! workload's markers (`init`, `workload`, `ready`) written by the guest to the same console.
//!
//! Teardown: QMP `quit` (QEMU stops the guest and exits cleanly), SIGKILL after the common stop
//! grace period, then the per-instance temporary directory (QMP socket, data disk) is removed.
//! QEMU is never signalled once reaped, so cvm cannot hit a reused PID. User-mode networking
//! means no host network objects exist to clean up (see [`net`]).

pub mod accel;
pub mod kernel;
pub mod net;
pub mod qemu;
pub mod qmp;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use cvm_proto::Marker;

use self::accel::{AccelDecision, KvmProbe, ProbeGuest};
use self::kernel::{Kernel, KernelError};
use self::qemu::{Accel, PortForward, Profile, QemuSpec};
use super::events::Event;
use super::process::{StopPolicy, Supervised};
use super::{
    Availability, Backend, BackendConfig, BackendError, HostOptions, Instance, LaunchContext,
    Prepared, Stack,
};
use crate::image::initramfs::{self, Compression, InitramfsError, InitramfsSpec};
use crate::image::{self, ext4, Image, ImageError};
use crate::scenario::{BackendKind, NetworkMode, Readiness, Scenario};

/// The QEMU binary, looked up in PATH.
pub const QEMU: &str = "qemu-system-x86_64";
/// Where init finds its VM configuration inside the initramfs.
pub const GUEST_CONFIG: &str = "/etc/cvm/vm.conf";
/// Overrides the initramfs compression (`none`, `gzip`, `zstd`), to reproduce the measurement
/// behind the default: uncompressed boots faster under TCG, because the guest kernel's
/// decompressor is emulated code while QEMU copies an uncompressed archive natively.
pub const INITRAMFS_COMPRESSION_ENV: &str = "CVM_INITRAMFS_COMPRESSION";
/// Extra space on an io data disk beyond what the workload writes (ext4 metadata, journal).
const DISK_SLACK_MIB: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot use the guest kernel")]
    Kernel(#[source] KernelError),
    #[error("cannot build the image for the probe guest")]
    Image(#[source] ImageError),
    #[error("cannot read {path} (is the kernel's module tree installed?)")]
    ModulesDep {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the guest needs kernel module {name}, which /lib/modules/{release} does not have")]
    ModuleMissing { name: String, release: String },
    #[error("cannot build the initramfs")]
    Initramfs(#[source] InitramfsError),
    #[error("the workload argument {0:?} contains a newline, which the guest config cannot carry")]
    BadArgument(String),
    #[error("unknown {INITRAMFS_COMPRESSION_ENV} value {0:?} (none, gzip or zstd)")]
    BadCompression(String),
    #[error("cannot create the instance's temporary directory {path}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the instance's data disk")]
    Disk(#[source] ext4::Ext4Error),
    #[error("cannot find a free loopback port for the guest's network")]
    Port(#[source] io::Error),
    #[error("cannot start {program} (install qemu-system-x86)")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot remove the instance's temporary directory {path}")]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `vm` or `vm-classic`.
pub struct VmBackend {
    profile: Profile,
    opts: HostOptions,
}

impl VmBackend {
    pub fn new(profile: Profile, opts: &HostOptions) -> Self {
        VmBackend {
            profile,
            opts: opts.clone(),
        }
    }

    fn backend_kind(&self) -> BackendKind {
        match self.profile {
            Profile::Micro => BackendKind::Vm,
            Profile::Classic => BackendKind::VmClassic,
        }
    }
}

/// `qemu-system-x86_64` on the host.
pub fn find_qemu() -> Option<PathBuf> {
    super::find_binary(QEMU)
}

impl Backend for VmBackend {
    fn kind(&self) -> BackendKind {
        self.backend_kind()
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
        match kernel::find(self.opts.kernel.as_deref()) {
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
        let kind = self.backend_kind();
        let fail = |e| BackendError::prepare(kind, e);
        let assets = GuestAssets::load(self.opts.kernel.as_deref()).map_err(fail)?;
        let decision = assets.decide_accel(self.opts.accel, image).map_err(fail)?;
        if let Some(w) = &decision.warning {
            eprintln!("cvm: {kind}: {w}");
        }
        let compression = match std::env::var(INITRAMFS_COMPRESSION_ENV) {
            Ok(v) => {
                Compression::parse(&v).ok_or_else(|| fail(VmError::BadCompression(v.clone())))?
            }
            Err(_) => Compression::default(),
        };
        let guest = GuestPlan::for_scenario(scenario, self.profile);
        let release = assets.kernel.info.release().to_string();
        let modules = resolve_modules(
            Path::new("/lib/modules").join(&release).as_path(),
            &release,
            &guest.module_names(self.profile),
        )
        .map_err(fail)?;
        let argv = image.workload_argv(&scenario.workload);
        let config = guest.config_text(&argv, &modules).map_err(fail)?;
        let initrd = initramfs::build(
            &InitramfsSpec {
                rootfs: image.rootfs().to_path_buf(),
                modules: modules.clone(),
                files: vec![(GUEST_CONFIG.to_string(), config.into_bytes())],
                compression,
            },
            &image::cache_dir().join("initramfs"),
        )
        .map_err(|e| fail(VmError::Initramfs(e)))?;
        let boot_kernel = match self.profile {
            Profile::Micro => assets.vmlinux.clone(),
            Profile::Classic => assets.kernel.bzimage.clone(),
        };
        let cmdline = qemu::cmdline(self.profile, decision.accel, accel::host_tsc_khz());
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
        config.insert("kernel_image".into(), boot_kernel.display().to_string());
        config.insert("cmdline".into(), cmdline.clone());
        config.insert(
            "network".into(),
            if guest.forward_ports.is_empty() {
                "none (no NIC)".into()
            } else {
                net::MODE.into()
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

        let mut layers: BTreeMap<String, Vec<PathBuf>> = image
            .layer_files()
            .into_iter()
            .filter(|(layer, _)| matches!(layer.as_str(), "app" | "libs"))
            .collect();
        let mut guest_os = vec![boot_kernel.clone()];
        guest_os.extend(modules.iter().cloned());
        layers.insert("guest_os".into(), guest_os);
        layers.insert(
            "hypervisor".into(),
            hypervisor_files(&qemu_bin, self.profile),
        );

        Ok(Box::new(VmPrepared {
            kind,
            spec: QemuSpec {
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
            },
            guest,
            config,
            layers,
        }))
    }
}

/// The kernel, its extracted vmlinux and what the accelerator probe needs.
struct GuestAssets {
    kernel: Kernel,
    vmlinux: PathBuf,
}

impl GuestAssets {
    fn load(explicit: Option<&Path>) -> Result<GuestAssets, VmError> {
        let path = kernel::find(explicit).map_err(VmError::Kernel)?;
        let kernel = Kernel::load(&path).map_err(VmError::Kernel)?;
        // Extracted for both profiles: the accelerator probe boots the fast path.
        let vmlinux = kernel
            .vmlinux(&image::cache_dir())
            .map_err(VmError::Kernel)?;
        Ok(GuestAssets { kernel, vmlinux })
    }

    fn decide_accel(
        &self,
        choice: Option<crate::cli::AccelChoice>,
        image: &Image,
    ) -> Result<AccelDecision, VmError> {
        // A probe that cannot even be built counts as a failed probe: TCG, with the reason.
        Ok(accel::decide(choice, || match self.probe_initrd(image) {
            Ok(initrd) => self.probe(&initrd),
            Err(e) => KvmProbe::Failed {
                error: format!("{:#}", anyhow::Error::new(e)),
            },
        }))
    }

    fn probe_initrd(&self, image: &Image) -> Result<PathBuf, VmError> {
        let argv = [image::GUEST_PATH.to_string(), "hello".to_string()];
        let config = GuestPlan::default().config_text(&argv, &[])?;
        initramfs::build(
            &InitramfsSpec {
                rootfs: image.rootfs().to_path_buf(),
                modules: Vec::new(),
                files: vec![(GUEST_CONFIG.to_string(), config.into_bytes())],
                compression: Compression::None,
            },
            &image::cache_dir().join("initramfs"),
        )
        .map_err(VmError::Initramfs)
    }

    fn probe(&self, initrd: &Path) -> KvmProbe {
        let qemu = find_qemu().unwrap_or_else(|| PathBuf::from(QEMU));
        let version = crate::measure::host::tool_version(QEMU, &["--version"]).unwrap_or_default();
        accel::probe_cached(&ProbeGuest {
            qemu: &qemu,
            qemu_version: &version,
            vmlinux: &self.vmlinux,
            kernel_hash: &self.kernel.hash,
            initrd,
            cache: &image::cache_dir(),
        })
    }
}

/// The KVM verdict for `cvm doctor`: the probe the VM backends run, on the startup scenario's
/// image (cached, so doctor and the next compare share one probe).
pub fn kvm_verdict(opts: &HostOptions) -> Result<KvmProbe, VmError> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(KvmProbe::Absent);
    }
    let scenario = crate::scenario::load("startup").map_err(|e| {
        VmError::Image(ImageError::HostBinary {
            path: "startup".into(),
            reason: e.to_string(),
        })
    })?;
    let image = Image::build(&scenario).map_err(VmError::Image)?;
    let assets = GuestAssets::load(opts.kernel.as_deref())?;
    let initrd = assets.probe_initrd(&image)?;
    Ok(assets.probe(&initrd))
}

/// What the guest is given and does, derived from the scenario.
#[derive(Debug, Clone, PartialEq)]
struct GuestPlan {
    vcpus: u32,
    memory_mib: u64,
    /// Guest ports forwarded from host loopback ports (readiness and load need them).
    forward_ports: Vec<u16>,
    disk: Option<DataDisk>,
}

impl Default for GuestPlan {
    fn default() -> Self {
        GuestPlan {
            vcpus: 1,
            memory_mib: 128,
            forward_ports: Vec::new(),
            disk: None,
        }
    }
}

/// An ext4 data disk made per launch and mounted by init, for the io workload.
#[derive(Debug, Clone, PartialEq)]
struct DataDisk {
    size_mib: u64,
    mount: String,
}

impl GuestPlan {
    fn for_scenario(s: &Scenario, _profile: Profile) -> GuestPlan {
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
            disk,
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

    /// `/etc/cvm/vm.conf` (format: guest/src/vm_init.rs).
    fn config_text(&self, argv: &[String], modules: &[PathBuf]) -> Result<String, VmError> {
        let mut out = String::from("# written by cvm's VM backend; read by cvm-guest init\n");
        for m in modules {
            out.push_str(&format!("module {}\n", InitramfsSpec::module_path(m)));
        }
        if !self.forward_ports.is_empty() {
            out.push_str(&qemu::guest_net_line());
            out.push('\n');
        }
        if let Some(d) = &self.disk {
            out.push_str(&format!("disk /dev/vda {}\n", d.mount));
        }
        for a in argv {
            if a.contains('\n') {
                return Err(VmError::BadArgument(a.clone()));
            }
            out.push_str(&format!("arg {a}\n"));
        }
        Ok(out)
    }
}

/// The `.ko` files for `names` and everything they depend on, dependencies first, each once,
/// from `modules.dep` in `dir`. Modules built into the kernel (`modules.builtin`) need nothing.
fn resolve_modules(dir: &Path, release: &str, names: &[&str]) -> Result<Vec<PathBuf>, VmError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let dep_path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(|source| VmError::ModulesDep {
        path: dep_path,
        source,
    })?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let order =
        modules_in_load_order(&text, &builtin, names).map_err(|name| VmError::ModuleMissing {
            name,
            release: release.to_string(),
        })?;
    Ok(order.into_iter().map(|rel| dir.join(rel)).collect())
}

/// The pure part of [`resolve_modules`]: relative `.ko` paths in load order, or the name of a
/// module that is neither in `modules.dep` nor built in.
fn modules_in_load_order(dep: &str, builtin: &str, names: &[&str]) -> Result<Vec<String>, String> {
    let module_name = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.split(".ko").next().unwrap_or(file);
        stem.replace('-', "_")
    };
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let list = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(path), (path.to_string(), list));
    }
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let mut order: Vec<String> = Vec::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        builtin: &[String],
        order: &mut Vec<String>,
        module_name: &dyn Fn(&str) -> String,
    ) -> Result<(), String> {
        let Some((path, list)) = deps.get(name) else {
            return if builtin.iter().any(|b| b == name) {
                Ok(())
            } else {
                Err(name.to_string())
            };
        };
        if order.contains(path) {
            return Ok(());
        }
        for d in list {
            visit(&module_name(d), deps, builtin, order, module_name)?;
        }
        if !order.contains(path) {
            order.push(path.clone());
        }
        Ok(())
    }
    for n in names {
        visit(
            &n.replace('-', "_"),
            &deps,
            &builtin,
            &mut order,
            &module_name,
        )?;
    }
    Ok(order)
}

/// QEMU, its shared libraries and the firmware files the profile makes it load.
fn hypervisor_files(qemu: &Path, profile: Profile) -> Vec<PathBuf> {
    let mut files = vec![qemu.to_path_buf()];
    if let Ok(out) = Command::new("ldd").arg(qemu).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux... (0x...)"
            let target = line.split("=>").nth(1).unwrap_or(line).trim();
            if let Some(path) = target
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                files.push(PathBuf::from(path));
            }
        }
    }
    let firmware: &[&str] = match profile {
        Profile::Micro => &["bios-microvm.bin", "pvh.bin"],
        Profile::Classic => &["bios-256k.bin", "linuxboot_dma.bin", "vgabios-stdvga.bin"],
    };
    for f in firmware {
        let p = Path::new("/usr/share/qemu").join(f);
        if p.exists() {
            files.push(p);
        }
    }
    files
}

struct VmPrepared {
    kind: BackendKind,
    /// The launch template: per-instance parts (QMP socket, forwards, disk) are filled in.
    spec: QemuSpec,
    guest: GuestPlan,
    config: BackendConfig,
    layers: BTreeMap<String, Vec<PathBuf>>,
}

impl Prepared for VmPrepared {
    fn config(&self) -> BackendConfig {
        self.config.clone()
    }

    fn disk_layers(&self) -> BTreeMap<String, Vec<PathBuf>> {
        self.layers.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |e| BackendError::launch(self.kind, e);
        let tmp = std::env::temp_dir().join(format!(
            "cvm-{}-{}-{}-{:04x}",
            ctx.run_id,
            self.kind,
            ctx.instance,
            fastrand::u16(..)
        ));
        std::fs::create_dir(&tmp).map_err(|source| {
            fail(VmError::TempDir {
                path: tmp.clone(),
                source,
            })
        })?;
        // From here on the directory is owned by this guard until the instance takes it over.
        let mut cleanup = TempDir(Some(tmp.clone()));
        let mut spec = self.spec.clone();
        spec.qmp = Some(tmp.join("qmp.sock"));
        if !self.guest.forward_ports.is_empty() {
            let mut forwards = Vec::new();
            for &guest in &self.guest.forward_ports {
                let host = net::free_loopback_port().map_err(|e| fail(VmError::Port(e)))?;
                forwards.push(PortForward { host, guest });
            }
            spec.net = Some(forwards);
        }
        if let Some(d) = &self.guest.disk {
            let img = tmp.join("data.img");
            ext4::make_disk(&img, d.size_mib, None).map_err(|e| fail(VmError::Disk(e)))?;
            spec.disk = Some(img);
        }

        let mut cmd = Command::new(&spec.binary);
        cmd.args(spec.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches cvm, which tears down.
            .process_group(0);
        let started_at = Instant::now();
        let mut child = cmd.spawn().map_err(|source| {
            fail(VmError::Spawn {
                program: spec.binary.clone(),
                source,
            })
        })?;
        let spawned = Instant::now();
        let (tx, events) = mpsc::channel();
        let _ = tx.send(Event::Phase("spawn", spawned));
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // From here a failure drops `instance`, whose teardown kills QEMU and removes `tmp`.
        let instance = VmInstance {
            kind: self.kind,
            qemu: Supervised::from_child(child),
            started_at,
            events,
            qmp: spec.qmp.clone(),
            forwards: spec.net.clone().unwrap_or_default(),
            tmp: cleanup.0.take(),
        };
        if let Some(out) = stdout {
            spawn_console_reader(out, tx.clone()).map_err(|e| fail(VmError::Thread(e)))?;
        }
        if let Some(err) = stderr {
            spawn_stderr_reader(err, tx.clone()).map_err(|e| fail(VmError::Thread(e)))?;
        }
        instance
            .qemu
            .watch_exit(None, 0, tx)
            .map_err(|e| fail(VmError::Thread(e)))?;
        Ok(Box::new(instance))
    }
}

/// Removes a directory on drop unless taken.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Reads the guest's serial console (QEMU's stdout): phase points, markers, and other lines
/// kept for error messages. Lines are stamped when their newline arrives, as markers from a
/// pipe are; the `firmware` and `kernel` points are stamped at their first byte.
fn spawn_console_reader<R: Read + Send + 'static>(
    mut source: R,
    tx: Sender<Event>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("cvm-console".into())
        .spawn(move || {
            let mut parser = ConsoleParser::default();
            let mut buf = [0u8; 4096];
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let at = Instant::now();
                for event in parser.feed(&buf[..n], at) {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// The console's state machine, separate from the thread so it can be tested.
#[derive(Default)]
struct ConsoleParser {
    line: Vec<u8>,
    /// Where each read's bytes start in `line`, and when they arrived: a line can span reads
    /// that arrive seconds apart (vm-classic's loader prints `Probing EDD... ok`, then the
    /// kernel, decompressed much later, continues the same line with its banner).
    arrivals: Vec<(usize, Instant)>,
    /// When the very first byte arrived.
    first_byte: Option<Instant>,
    kernel_seen: bool,
    lines_before_kernel: usize,
}

/// The kernel's banner (`pr_notice`, printed at `loglevel=6`): the `kernel` phase point.
const KERNEL_BANNER: &str = "Linux version ";

impl ConsoleParser {
    fn feed(&mut self, bytes: &[u8], at: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if !bytes.is_empty() {
            self.first_byte.get_or_insert(at);
        }
        for &b in bytes {
            if self.arrivals.last().is_none_or(|(_, t)| *t != at) {
                self.arrivals.push((self.line.len(), at));
            }
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            self.finish_line(at, &mut events);
        }
        events
    }

    fn finish_line(&mut self, at: Instant, events: &mut Vec<Event>) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if !self.kernel_seen {
            if let Some(pos) = find_bytes(&self.line, KERNEL_BANNER.as_bytes()) {
                self.kernel_seen = true;
                let banner_at = self
                    .arrivals
                    .iter()
                    .rev()
                    .find(|(offset, _)| *offset <= pos)
                    .map_or(at, |(_, t)| *t);
                let first = self.first_byte.unwrap_or(banner_at);
                if self.lines_before_kernel > 0 {
                    // Whole lines before the kernel's: firmware (SeaBIOS) and the loader.
                    events.push(Event::Phase("firmware", first));
                    events.push(Event::Phase("kernel", banner_at));
                } else {
                    // The banner is the first thing printed: its first byte is kernel entry.
                    events.push(Event::Phase("kernel", first));
                }
            }
        }
        if !self.kernel_seen {
            self.lines_before_kernel += 1;
        }
        self.line.clear();
        self.arrivals.clear();
        match Marker::parse(&text) {
            Some(m) => events.push(Event::Marker(m, at)),
            None => {
                let clean: String = text.trim().chars().filter(|c| !c.is_control()).collect();
                if !clean.is_empty() {
                    events.push(Event::Output(clean));
                }
            }
        }
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn spawn_stderr_reader<R: Read + Send + 'static>(source: R, tx: Sender<Event>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("cvm-qemu-stderr".into())
        .spawn(move || {
            for line in BufReader::new(source).lines().map_while(Result::ok) {
                if tx.send(Event::Output(format!("qemu: {line}"))).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

struct VmInstance {
    kind: BackendKind,
    qemu: Supervised,
    started_at: Instant,
    events: Receiver<Event>,
    qmp: Option<PathBuf>,
    forwards: Vec<PortForward>,
    tmp: Option<PathBuf>,
}

/// QEMU is asked to quit over QMP (it ends at once, with no guest shutdown to wait for); the
/// guest's own power-off is not waited for, since a workload may have hung the guest.
struct QmpQuit<'a>(Option<&'a Path>);

impl StopPolicy for QmpQuit<'_> {
    fn request(&self, _qemu: nix::unistd::Pid) -> bool {
        self.0
            .and_then(|p| qmp::Qmp::connect(p, Duration::from_millis(500)).ok())
            .is_some_and(|mut q| q.quit().is_ok())
    }
}

impl Instance for VmInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        self.qemu.running_pid().into_iter().collect()
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        self.forwards
            .iter()
            .find(|f| f.guest == port)
            .map(|f| net::host_endpoint(f.host))
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        self.qemu.stop(&QmpQuit(self.qmp.as_deref()));
        self.qemu.reap();
        if let Some(dir) = self.tmp.take() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BackendError::teardown(
                        self.kind,
                        VmError::Cleanup { path: dir, source },
                    ))
                }
            }
        }
        Ok(())
    }
}

impl Drop for VmInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The accelerator VM samples will use, for `cvm doctor`'s KVM line.
pub fn accel_for(opts: &HostOptions) -> Result<(Accel, String), VmError> {
    let verdict = match opts.accel {
        Some(crate::cli::AccelChoice::Auto) | None => Some(kvm_verdict(opts)?),
        _ => None,
    };
    let d = accel::decide(opts.accel, || verdict.clone().unwrap_or(KvmProbe::Absent));
    Ok((d.accel, d.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

    #[test]
    fn modules_come_in_dependency_order_each_once() {
        let order = modules_in_load_order(DEP, "", &["virtio_mmio", "virtio_net"]).unwrap();
        let names: Vec<&str> = order
            .iter()
            .map(|p| p.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_mmio.ko",
                "failover.ko",
                "net_failover.ko",
                "virtio_net.ko"
            ]
        );
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko"));
        assert!(pos("virtio_ring.ko") < pos("virtio.ko"));
        assert!(pos("virtio.ko") < pos("virtio_mmio.ko"));
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn builtin_modules_need_nothing_and_unknown_ones_are_named() {
        let builtin = "kernel/drivers/virtio/virtio_blk.ko\n";
        assert_eq!(
            modules_in_load_order(DEP, builtin, &["virtio_blk"]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            modules_in_load_order(DEP, "", &["nope"]).unwrap_err(),
            "nope"
        );
    }

    #[test]
    fn console_parser_stamps_firmware_kernel_and_markers() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        let mut p = ConsoleParser::default();
        let mut ev = p.feed(b"\x1b[2JSeaBIOS (version 1.16)\r\nProbing EDD... ok", t(10));
        ev.extend(p.feed(b"\x1b[2J[    0.000000] Linux ", t(20)));
        ev.extend(p.feed(b"version 6.1.0\r\n", t(25)));
        ev.extend(p.feed(b"CVM:init\r\nCVM:ready\r\n", t(30)));
        let phases: Vec<(&str, Instant)> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Phase(n, at) => Some((*n, *at)),
                _ => None,
            })
            .collect();
        assert_eq!(phases, vec![("firmware", t(10)), ("kernel", t(20))]);
        let markers: Vec<&Marker> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Marker(m, _) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(markers, vec![&Marker::Init, &Marker::Ready]);
        assert!(ev
            .iter()
            .any(|e| matches!(e, Event::Output(l) if l.starts_with("[2JSeaBIOS") || l.contains("SeaBIOS"))));
    }

    #[test]
    fn a_kernel_banner_first_is_no_firmware_phase() {
        let t0 = Instant::now();
        let mut p = ConsoleParser::default();
        let ev = p.feed(b"[    0.000000] Linux version 6.1.0\r\n", t0);
        assert!(matches!(ev[0], Event::Phase("kernel", at) if at == t0));
        assert!(!ev.iter().any(|e| matches!(e, Event::Phase("firmware", _))));
    }

    #[test]
    fn guest_config_lists_modules_network_disk_and_argv() {
        let plan = GuestPlan {
            vcpus: 1,
            memory_mib: 256,
            forward_ports: vec![8080],
            disk: Some(DataDisk {
                size_mib: 192,
                mount: "/tmp".into(),
            }),
        };
        let text = plan
            .config_text(
                &[
                    "/bin/cvm-guest".into(),
                    "http".into(),
                    "--port".into(),
                    "8080".into(),
                ],
                &[PathBuf::from("/lib/modules/6.1/kernel/virtio.ko")],
            )
            .unwrap();
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "module /lib/modules/virtio.ko",
                "net eth0 10.0.2.15/24",
                "disk /dev/vda /tmp",
                "arg /bin/cvm-guest",
                "arg http",
                "arg --port",
                "arg 8080"
            ]
        );
        assert!(plan.config_text(&["a\nb".into()], &[]).is_err());
    }
}
