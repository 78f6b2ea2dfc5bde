//! The vocabulary shared by the host (`cvm`) and the guest (`cvm-guest`): everything one side
//! writes and the other reads is defined here once, as types, so the two cannot drift apart.
//!
//! - [`marker`]: the lines the guest writes to tell the host where it is in its start-up;
//! - [`applet`]: the guest's applets, their options and the arguments the host reads, parsed
//!   by one flag parser ([`args`]);
//! - [`caps`]: the capability set a container workload keeps, on every container backend;
//! - [`metric`]: what is measured (metric names and units), startup phase points and disk layers;
//! - [`vmconf`]: the VM configuration the host writes into the initramfs and init reads.
//!
//! The crate has no dependencies so that both the static guest binary and the host library can
//! share it.

pub mod applet;
pub mod args;
pub mod caps;
pub mod marker;
pub mod metric;
pub mod vmconf;

pub use marker::{Marker, DEFAULT_MARKER_FD, MARKER_FD_ENV, PREFIX};
