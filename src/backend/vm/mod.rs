//! The VM backends: the same image and `cvm-guest` init, booted in QEMU guests.
//!
//! Two profiles (see [`qemu::Profile`]):
//! - `vm`: the fast path. A microvm, PVH direct boot of the uncompressed `vmlinux` extracted
//!   from the host's bzImage (no firmware boot menu, no in-guest decompressor), virtio-mmio
//!   devices only, and a tuned kernel command line. Measured on the reference host under TCG:
//!   microvm + PVH vmlinux 1.9 s to poweroff, against 4.2 s for microvm + bzImage, because the
//!   bzImage decompressor runs as emulated code.
//! - `vm-classic`: a conventional VM. The i440FX PC with its default devices, SeaBIOS, the
//!   bzImage through the Linux boot protocol, PCI virtio devices (4.7 s on the same host).
//! - `vm-user`: `vm` on QEMU's user network whatever the scenario's `network` (see [`net`]), so
//!   one run shows a VM over its tap device and over the user network side by side.
//!
//! Both get the scenario's vCPUs and memory, and both run the image's rootfs as an initramfs
//! (`image::initramfs`, uncompressed: see [`INITRAMFS_COMPRESSION_ENV`]) whose `/init` is
//! `cvm-guest`, configured by [`cvm_proto::vmconf::VmConfig`]: the kernel modules to load, in
//! `modules.dep` order, the network address, a data disk to mount, and the workload's argv.
//!
//! Phases: QEMU starts paused (`-S`); `vmm_start` ends when it answers on QMP and `cont` is
//! sent. Then, stamped by the host as console bytes arrive on QEMU's stdout (the guest's first
//! serial port): `firmware` ends at kernel entry (the `Linux version` banner, after SeaBIOS's
//! output on vm-classic), `kernel` at init's `CVM:init`, `guest_init` at its `CVM:configured`,
//! then the workload's readiness, written by the guest to the same console.
//!
//! Teardown: QMP `quit` (QEMU stops the guest and exits cleanly), SIGKILL after the common stop
//! grace period, then the per-instance temporary directory (QMP socket) and io directory (the
//! data disk image, in the io directory every backend writes to) are removed. QEMU is never signalled once reaped, so cvm cannot hit a reused PID. User-mode networking
//! means no host network objects exist to clean up (see [`net`]).
//!
//! One job per file: [`prepare`] (the backend, its availability, the guest plan and what is
//! built once per scenario), [`modules`] (the kernel modules the initramfs carries), [`console`]
//! (reading the guest's console into events), [`footprint`] (the hypervisor's files, as QEMU
//! reports loading them), [`disk`] (every layer's files: the image's app and libs, the guest OS
//! as installed, the hypervisor; the booted vmlinux as a cache), [`instance`] (launch,
//! supervision, teardown), [`kernel`], [`accel`] (the accelerator probe and decision),
//! [`kvm_host`] (what serves `/dev/kvm`, in words), [`qemu`] (the command line), [`qmp`] and
//! [`net`].

pub mod accel;
pub mod console;
pub mod disk;
pub mod footprint;
mod guest;
pub mod instance;
pub mod kernel;
pub mod kvm_host;
pub mod minimal;
pub mod modules;
pub mod net;
pub mod prepare;
pub mod qemu;
pub mod qmp;

pub use instance::InstanceError;
pub use kernel::KernelChoice;
pub use minimal::MinimalKernelError;
pub use modules::ModulesError;
pub use prepare::{kvm_verdict, PrepareError, VmBackend};

/// `qemu-system-x86_64` on the host.
pub fn find_qemu() -> Option<std::path::PathBuf> {
    crate::backend::find_binary(QEMU)
}

/// The QEMU binary, looked up in PATH.
pub const QEMU: &str = "qemu-system-x86_64";
/// Overrides the initramfs compression (`none`, `gzip`, `zstd`), to reproduce the measurement
/// behind the default: uncompressed boots faster under TCG, because the guest kernel's
/// decompressor is emulated code while QEMU copies an uncompressed archive natively.
pub const INITRAMFS_COMPRESSION_ENV: &str = "CVM_INITRAMFS_COMPRESSION";
