//! The vocabulary shared by the host (`cvm`) and the guest (`cvm-guest`): everything one side
//! writes and the other reads is defined here once, as types, so the two cannot drift apart.
//!
//! - [`marker`]: the lines the guest writes to tell the host where it is in its start-up;
//! - [`caps`]: the capability set a container workload keeps, on every container backend;
//! - [`vmconf`]: the VM configuration the host writes into the initramfs and init reads.
//!
//! The crate has no dependencies so that both the static guest binary and the host library can
//! share it.

pub mod caps;
pub mod marker;
pub mod vmconf;

pub use marker::{Marker, DEFAULT_MARKER_FD, MARKER_FD_ENV, PREFIX};
