//! A VM's disk layers by the one layer rule (`usage::disk`), the guest image attributed as a
//! container's root filesystem is:
//!
//! - `app` and `libs`: the image's own files, the very ones a container counts (`cvm-guest`,
//!   busybox, a bring-your-own binary and its shared libraries). The initramfs packs them byte
//!   for byte, so they are taken out of it rather than counted twice.
//! - `guest_os`: the kernel as installed, one rule for every VM: the distribution's bzImage (the
//!   file `vm-classic` boots, and the one `vm` was extracted from) or the minimal kernel's
//!   vmlinux (built as nothing else); and the initramfs's own bytes: the kernel modules, init's
//!   configuration, the device nodes, the image's links and small files, the archive's headers.
//!   init is the image's `cvm-guest`, the same file as the app: counted once, in `app`, as on a
//!   container, where it is PID 1 too.
//! - `hypervisor`: QEMU as it reports loading (`footprint`).
//!
//! The uncompressed vmlinux `vm` boots directly is cvm's own cache of the installed bzImage,
//! kept for speed: it is counted apart (`disk_cache`), never in the guest OS.

use std::path::{Path, PathBuf};

use crate::backend::{DiskLayers, Layer};
use crate::image::initramfs::{self, InitramfsError, InitramfsSpec};
use crate::image::Image;
use crate::usage::disk::Packed;
use crate::usage::installed;

/// The files of a VM's layers, as `Prepared` hands them to the one counting rule.
pub(super) struct VmDisk {
    pub(super) layers: DiskLayers,
    pub(super) packed: Vec<Packed>,
    pub(super) cache: Vec<PathBuf>,
    /// What the guest OS layer holds, in words, for the backend's configuration.
    pub(super) guest_os: String,
}

/// The kernel files of a VM: the one installed, and the one booted when that differs (`vm`'s
/// vmlinux extracted from the bzImage).
pub(super) struct KernelFiles<'a> {
    pub(super) installed: &'a Path,
    pub(super) booted: &'a Path,
}

/// A VM's layers: the image's, the guest OS's and the hypervisor's `files`.
pub(super) fn layers(
    image: &Image,
    kernel: KernelFiles<'_>,
    initramfs: (&InitramfsSpec, &Path),
    hypervisor: Vec<PathBuf>,
) -> Result<VmDisk, InitramfsError> {
    let (spec, initrd) = initramfs;
    let mut layers = image.layer_files();
    let image_files: Vec<PathBuf> = layers.values().flatten().cloned().collect();
    let copies = initramfs::packed_bytes(spec, initrd, &image_files)?;
    layers.insert(Layer::GuestOs, vec![kernel.installed.to_path_buf()]);
    layers.insert(Layer::Hypervisor, hypervisor);
    let cache: Vec<PathBuf> = (kernel.booted != kernel.installed)
        .then(|| kernel.booted.to_path_buf())
        .into_iter()
        .collect();
    let bytes = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| installed::counted_bytes(p, &m))
            .unwrap_or(0)
    };
    // Stored verbatim in the archive: their lengths are their share of it.
    let modules: u64 = spec
        .modules
        .iter()
        .filter_map(|m| std::fs::metadata(m).ok())
        .map(|m| m.len())
        .sum();
    let own = bytes(initrd).saturating_sub(copies);
    let mut guest_os = format!(
        "kernel {} ({} B); initramfs {} ({} B of its own: {} module(s) {} B, the rest init's \
         configuration, device nodes, links and headers; {} B of the image's app and libs \
         counted in their layers)",
        kernel.installed.display(),
        bytes(kernel.installed),
        initrd.display(),
        own,
        spec.modules.len(),
        modules,
        copies,
    );
    if let Some(c) = cache.first() {
        // As the cache is counted: as it lies on disk, not as an installed binary.
        let allocated = std::fs::metadata(c).map_or(0, |m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        });
        guest_os.push_str(&format!(
            "; booted from cvm's cache {} ({allocated} B, disk_cache, in no layer)",
            c.display(),
        ));
    }
    Ok(VmDisk {
        layers,
        packed: vec![Packed {
            layer: Layer::GuestOs,
            path: initrd.to_path_buf(),
            copies,
        }],
        cache,
        guest_os,
    })
}
