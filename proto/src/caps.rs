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
}
