//! The report's centrepiece: the classic "virtual machine vs container" stack diagram, redrawn
//! with measured figures in every layer: one column per backend that ran, grouped native |
//! containers | sandbox | virtual machines, each with its own layers (Docker's Engine, cvm's own
//! runtime, runc or crun; gVisor's Sentry; a VM's guest OS and hypervisor).
//!
//! [`layers`] says which group and layers a backend has and where each phase goes, [`columns`]
//! what goes in each box (both pure, unit-tested); [`StackDiagram`] draws it, in rows of at most
//! four columns so that eight or more backends stay legible.
//!
//! Each layer box carries its disk bytes (`disk.<layer>`), memory where it can be attributed,
//! and its share of startup time. Box heights grow with disk bytes, so the VM's guest OS and
//! hypervisor visibly outweigh a container runtime at a glance.
//!
//! Attributing startup phases to layers. Phases are named for the work done in them
//! (`cvm_proto::metric::Phase`), and each goes to the same layer on every stack:
//! - `cgroup_join` (the `cgroup.procs` writes; a runtime's own traced, see
//!   `backend::cgroup_trace`): the host OS, on every backend. Where some runtime's join was
//!   not measured (older results), every runtime box holds its backend's join instead, so all
//!   runtime boxes still cover the same span ([`JoinAttribution`]); the legend says which.
//! - `runtime` (namespaces, rootfs, capabilities, network, up to init's `CVM:configured`): the
//!   container runtime (Docker's Engine on docker), or the Sentry on a sandbox.
//! - `vmm_start` (QEMU's own start, up to `cont`): the hypervisor.
//! - `firmware`, `kernel`, `guest_init` (BIOS or PVH entry, the guest kernel's boot, init's
//!   mounts, modules and network): the guest OS.
//! - `workload_start`, `probe` (the workload starting up, and its first answer to the host's
//!   probe): the application.
//!
//! Attributing memory. `memory_pss` is the PSS of every host process of an instance and
//! `memory_overhead` the part above native's; the overhead goes to the isolation layer (the
//! container runtime or Sentry), the rest (the workload as on native) to the application. The
//! host-wide daemons a backend needs (`memory_daemon`: dockerd, containerd) are shown apart in
//! its runtime box, as a per-host cost, never inside the per-instance figure. A VM's memory
//! goes in its measured parts where the run has them, boxes that add up to its PSS:
//! `memory_vmm` (QEMU without guest RAM) on the hypervisor, listing what it is made of (QEMU's
//! own, TCG's translation cache, its copies of the kernel and initramfs); the guest's own use
//! (`memory_guest_used` less the workload) on the guest OS; the guest RAM the guest touched but
//! holds free (`memory_guest_ram` less `memory_guest_used`) in a box of its own; the workload as
//! on native in the app. Without them (older runs) the whole overhead sits on the hypervisor,
//! guest OS included.
//!
//! Where the run measured isolation, each column also draws its isolation boundary ([`boundary`]):
//! a red line above the layer the workload's system calls stop at, with the audit's figure.

mod boundary;
mod columns;
mod diagram;
mod layers;

pub use boundary::Boundary;
pub use columns::{
    column, columns, join_attribution, not_drawn, Column, JoinAttribution, LayerBox,
};
pub use diagram::StackDiagram;
pub use layers::{Group, Layer};

#[cfg(test)]
pub(crate) use columns::tests as tests_support;
