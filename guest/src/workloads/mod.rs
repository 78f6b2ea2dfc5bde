//! The built-in workloads: small, deterministic programs whose behaviour is identical on every
//! backend, so that differences in what the host measures come from the isolation layer and not
//! from the application.
//!
//! Each applet parses its own flags with [`crate::args`], writes `CVM:ready` once it can do its
//! job, reports figures it measured itself as `CVM:result` markers, and exits 0 on success or on
//! SIGTERM/SIGINT when it is a long-running one.

pub mod aggressor;
pub mod audit;
pub mod contain;
pub mod cpu;
pub mod faults;
pub mod hello;
pub mod http;
pub mod idle;
pub mod io;
pub mod mem;
