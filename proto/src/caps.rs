//! The capabilities a container workload keeps: Docker's default set, so cvm's containers are
//! exactly as privileged as the ones people run, whichever runtime starts them (cvm's own, runc,
//! crun, Docker). One list, by the kernel's names (`CAP_CHOWN`, as OCI bundles spell them), for
//! the guest's container init and the OCI bundle writer alike.

/// Docker's default capability set (bounding, permitted and effective; inheritable and ambient
/// stay empty).
pub const DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability's kernel name, by its bit number in `CapEff`/`CapBnd` (Linux 5.9 and later:
/// 41 capabilities). A bit beyond the list is named `CAP_<bit>`.
pub const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities set in a `/proc/PID/status` mask (`CapEff: 00000000a80425fb`).
pub fn names_in_mask(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match NAMES.get(bit) {
            Some(name) => (*name).to_string(),
            None => format!("CAP_{bit}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_dockers_without_admin_powers() {
        assert_eq!(DEFAULT.len(), 14);
        for admin in [
            "CAP_SYS_ADMIN",
            "CAP_NET_ADMIN",
            "CAP_SYS_PTRACE",
            "CAP_SYS_MODULE",
        ] {
            assert!(!DEFAULT.contains(&admin), "{admin}");
        }
        let mut unique = DEFAULT.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), DEFAULT.len());
    }

    #[test]
    fn dockers_mask_decodes_to_dockers_set() {
        // CapEff of a Docker container with the default set.
        let mut names = names_in_mask(0xa80425fb);
        names.sort();
        let mut expected: Vec<String> = DEFAULT.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(names_in_mask(1 << 21), ["CAP_SYS_ADMIN"]);
        assert_eq!(names_in_mask(1 << 50), ["CAP_50"]);
        assert_eq!(NAMES.len(), 41);
    }
}
