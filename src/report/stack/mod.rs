//! The report's centrepiece: the classic "virtual machine vs container" stack diagram, redrawn
//! with measured figures in every layer, beside the native stack.
//!
//! [`columns`] decides what goes in each box (pure, unit-tested); [`StackDiagram`] draws it.
//! Each layer box carries its disk bytes (`disk.<layer>`), memory where it can be attributed,
//! and its share of startup time. Box heights grow with disk bytes, so the VM's guest OS and
//! hypervisor visibly outweigh a container runtime at a glance.
//!
//! Attributing startup phases to layers. A `phase.<name>` sample is the time from the previous
//! phase point to `<name>`'s, i.e. the work done *to reach* that point:
//! - `spawn` (the runtime or QEMU process exists): the container runtime or hypervisor; on
//!   native, the host OS's fork and exec.
//! - `kernel` (a VM's first console output): the guest OS (firmware, decompression, early boot).
//! - `init` (cvm-guest init runs): in a VM the guest kernel booting, so the guest OS; in a
//!   container the runtime building namespaces and the rootfs; on native the host OS.
//! - `workload` (init execs the workload): init's own work, the binaries/libraries layer.
//! - `ready_marker`, `ready`: the application starting up.
//!
//! Attributing memory. `memory_pss` is the PSS of every host process of an instance and
//! `memory_overhead` the part above native's; the overhead goes to the isolation layer (the
//! container runtime), the rest (the workload as on native) to the application. A VM's memory
//! goes in its measured parts where the run has them: `memory_vmm` (QEMU without guest RAM) on
//! the hypervisor, the guest's own use (`memory_guest_used` less the workload) on the guest OS;
//! without them (older runs) the whole overhead sits on the hypervisor, guest OS included.

mod columns;
mod diagram;

pub use columns::{column, columns, Column, Layer, LayerBox};
pub use diagram::StackDiagram;
