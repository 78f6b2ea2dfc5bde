//! cvm's own container runtime, as a library and as a small `runc run`-shaped binary.
//!
//! The pieces, in the order a container is made:
//! - [`cgroup`]: a cgroup per container with its limits, on v1, v2 and hybrid hosts;
//! - [`sys`]: the clone into new namespaces (the crate's `unsafe`);
//! - [`rootfs`]: what the container's first process does inside before the workload runs
//!   (mounts, `pivot_root`, hostname, `lo`, capabilities, `no_new_privs`);
//! - [`net`]: a veth pair for a container that has a network beyond `lo`;
//! - [`listen`]: whether a socket listens on a port (the inside half of a server's readiness);
//!
//! The binary (`main.rs`) adds the reader of an OCI bundle's `config.json` (the subset cvm
//! writes); it lives in the binary alone, so nothing that links the library carries serde.
//! Two users link it. cvm's `container` backend is multi-threaded, so its child may only
//! make async-signal-safe calls before exec: it execs `cvm-guest init --container`, which runs
//! the [`rootfs`] steps as PID 1. The `cvm-runtime` binary is single-threaded, so its child runs
//! the same steps itself and execs the bundle's process directly, as runc does.

pub mod cgroup;
pub mod listen;
pub mod net;
pub mod rootfs;
pub mod sys;
