//! The environment a run is recorded with: host, kernel, CPU, memory, cgroup layout, versions of
//! cvm and of every tool a backend uses. Probes map "absent" to an empty entry, never an error.

use std::collections::BTreeMap;

use sysinfo::System;

use crate::backend::cgroup;
use crate::results::Environment;
use crate::tools::tool_version;

pub const CVM_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_SHA: &str = env!("CVM_GIT_SHA");

/// The profile this cvm was compiled with: cargo's release profile turns debug assertions off.
pub const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

impl Environment {
    /// Reads the host. Cheap enough to run once per `cvm compare` (a few `--version` calls).
    pub fn collect() -> Environment {
        let mut sys = System::new();
        sys.refresh_memory();
        sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        let cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default();
        let mut tools = BTreeMap::new();
        for (name, cmd, args) in [
            ("qemu", "qemu-system-x86_64", &["--version"][..]),
            ("runc", "runc", &["--version"][..]),
            ("crun", "crun", &["--version"][..]),
            ("runsc", "runsc", &["--version"][..]),
            ("conmon", "conmon", &["--version"][..]),
            (
                "docker",
                "docker",
                &["version", "--format", "{{.Server.Version}}"][..],
            ),
        ] {
            if let Some(v) = tool_version(cmd, args) {
                tools.insert(name.to_string(), v);
            }
        }
        let cgroup = cgroup::detect().map_or("none", |v| v.as_str()).to_string();
        Environment {
            fingerprint: super::fingerprint::collect(&cpu_model, &cgroup),
            load: super::fingerprint::load_average()
                .map(|l| crate::results::HostLoad { start: l, end: l }),
            host: System::host_name().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            os: System::long_os_version().unwrap_or_default(),
            cpu_model,
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            mem_total: sys.total_memory(),
            cgroup,
            root: nix::unistd::geteuid().is_root(),
            cvm_version: CVM_VERSION.to_string(),
            git_sha: GIT_SHA.to_string(),
            build_profile: BUILD_PROFILE.to_string(),
            tools,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_this_host() {
        let env = Environment::collect();
        assert!(env.ncpu >= 1);
        assert!(env.mem_total > 0);
        assert!(!env.kernel.is_empty());
        assert_eq!(env.cvm_version, CVM_VERSION);
    }
}
