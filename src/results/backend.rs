//! What `run.json` records about each backend beyond its name: the stack it belongs to, whether
//! it could run, and the configuration keys reports read back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The configuration key under which a VM backend records its accelerator (`kvm`, `tcg`).
pub const ACCEL_KEY: &str = "accel";
/// The backend configuration key naming gVisor's platform (systrap, kvm, ptrace): how its
/// user-space kernel runs the workload, recorded with every sample as the accelerator is.
pub const PLATFORM_KEY: &str = "platform";
/// The backend configuration key naming a sandbox's network stack (gVisor's `--network` mode),
/// which its HTTP figures depend on as much as on its platform.
pub const NETWORK_STACK_KEY: &str = "network_stack";
/// The backend configuration key saying which process supervising the container its memory
/// counts (`containerd-shim-runc-v2`, `cvm-runtime waiter ...`, `none ...`).
pub const SUPERVISOR_KEY: &str = "supervisor";

/// Which of the report's stacks a backend belongs to (it decides the disk layers and the diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    Native,
    Container,
    Vm,
}

/// Whether a backend can run on this host, and if not, why and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Availability {
    Available,
    Unavailable { reason: String, hint: String },
}

impl Availability {
    pub fn unavailable(reason: impl Into<String>, hint: impl Into<String>) -> Self {
        Availability::Unavailable {
            reason: reason.into(),
            hint: hint.into(),
        }
    }
}

/// One backend as it took part in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub backend: String,
    pub stack: Stack,
    pub availability: Availability,
    /// Set when the backend was available but failed to prepare or every run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub config: BTreeMap<String, String>,
}

impl BackendInfo {
    /// The accelerator the backend ran under; `None` for backends without one (not a VM) and
    /// for VMs whose run recorded none.
    pub fn accelerator(&self) -> Option<&str> {
        self.config
            .get(ACCEL_KEY)
            .map(String::as_str)
            .filter(|a| !a.is_empty())
    }
}
