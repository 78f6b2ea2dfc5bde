//! What the guest is given and does, derived from the scenario: its CPUs and memory, the ports
//! the host must reach, its data disk, the kernel modules that needs, and init's configuration.
//! Shared by preparation (which builds the initramfs from it) and every launch.

use std::path::PathBuf;

use cvm_proto::vmconf::{DiskConfig, NetConfig, VmConfig};

use super::net;
use super::qemu::Profile;
use crate::image::initramfs::InitramfsSpec;
use crate::scenario::{NetworkMode, Readiness, Scenario};

/// Extra space on an io data disk beyond what the workload writes (ext4 metadata, journal).
const DISK_SLACK_MIB: u64 = 64;
/// The data disk as the guest sees it: the first virtio block device.
const GUEST_DISK: &str = "/dev/vda";

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
    pub(super) fn for_scenario(s: &Scenario) -> GuestPlan {
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
    pub(super) fn module_names(&self, profile: Profile) -> Vec<&'static str> {
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
    pub(super) fn vm_config(&self, argv: Vec<String>, modules: &[PathBuf]) -> VmConfig {
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
