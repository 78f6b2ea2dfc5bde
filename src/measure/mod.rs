//! Measurements taken from the host: the startup timeline of an instance, memory (PSS and cgroup
//! charge), and the environment every number is recorded with.

pub mod disk;
pub mod fingerprint;
pub mod host;
pub mod memory;
mod probe;
pub mod seccomp;
pub mod startup;
