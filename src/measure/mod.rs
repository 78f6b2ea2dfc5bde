//! Measurements taken from the host while an instance runs: its startup timeline and the host
//! half of readiness, and the environment every number is recorded with. What a set of
//! processes or files uses, by the one counting rule each, is [`crate::usage`].

pub mod fingerprint;
pub mod host;
mod probe;
pub mod seccomp;
pub mod startup;
