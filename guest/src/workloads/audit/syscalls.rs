//! The fixed list of system calls the audit probes, and what each answer means.
//!
//! Each call is given arguments that a kernel refuses in its own argument checks before it does
//! anything (an unknown flag, a descriptor of -1, a clock that does not exist, an unmapped
//! pointer), and before it checks privileges, so the answer says who answered: `EPERM` or
//! `ENOSYS` means something refused the call before a kernel's argument checks (a seccomp
//! filter, a user-space kernel that does not implement it, a kernel built without it); any other
//! answer (`EFAULT`, `EINVAL`, `EBADF`, `ESRCH`, ...) came from a kernel's own checks: the call
//! reached it. Calls whose kernel code checks privileges before arguments (`reboot`,
//! `init_module`, `pivot_root`, ...) are not in the list: their `EPERM` would be ambiguous; nor
//! are calls a kernel may be built without (`iopl`, `ioperm`: this host's kernel has neither),
//! whose `ENOSYS` would be.
//! Most are on Docker's default seccomp profile's deny list, so a filter shows.

use nix::errno::Errno;
use nix::libc::{self, c_long};

use crate::sys::{probe_syscall, UNMAPPED};

/// Any descriptor number that is not open.
const BAD_FD: usize = usize::MAX; // -1
/// A pid no kernel hands out (pid_max is at most 2^22).
const NO_PID: usize = 0x7fff_fff0;
/// A flag word with every bit set: no call accepts all of them.
const ALL_FLAGS: usize = 0xffff_ffff;

/// One probe: the call, and the arguments that make a kernel reject it harmlessly.
pub struct SyscallProbe {
    pub name: &'static str,
    pub nr: c_long,
    pub args: [usize; 6],
}

const fn probe(name: &'static str, nr: c_long, args: [usize; 6]) -> SyscallProbe {
    SyscallProbe { name, nr, args }
}

/// The list, with the check that stops each in a kernel.
pub const PROBES: &[SyscallProbe] = &[
    // The filesystem type is copied first: EFAULT.
    probe(
        "mount",
        libc::SYS_mount,
        [UNMAPPED, UNMAPPED, UNMAPPED, 0, 0, 0],
    ),
    // Unknown umount flags: EINVAL, before the privilege check.
    probe(
        "umount2",
        libc::SYS_umount2,
        [UNMAPPED, ALL_FLAGS, 0, 0, 0, 0],
    ),
    // CLONE_SETTLS is no unshare flag: EINVAL.
    probe("unshare", libc::SYS_unshare, [0x0008_0000, 0, 0, 0, 0, 0]),
    probe("setns", libc::SYS_setns, [BAD_FD, 0, 0, 0, 0, 0]),
    // Unknown flags: EINVAL.
    probe(
        "open_tree",
        libc::SYS_open_tree,
        [BAD_FD, UNMAPPED, ALL_FLAGS, 0, 0, 0],
    ),
    probe(
        "mount_setattr",
        libc::SYS_mount_setattr,
        [BAD_FD, UNMAPPED, ALL_FLAGS, 0, 0, 0],
    ),
    probe("chroot", libc::SYS_chroot, [UNMAPPED, 0, 0, 0, 0, 0]),
    // Unknown flags: EINVAL, before the attributes are read.
    probe(
        "perf_event_open",
        libc::SYS_perf_event_open,
        [UNMAPPED, 0, BAD_FD, BAD_FD, ALL_FLAGS, 0],
    ),
    // BPF_MAP_CREATE from an unmapped attribute block: EFAULT.
    probe("bpf", libc::SYS_bpf, [0, UNMAPPED, 8, 0, 0, 0]),
    // No such keyctl operation: EOPNOTSUPP.
    probe("keyctl", libc::SYS_keyctl, [0x7fff_ffff, 0, 0, 0, 0, 0]),
    probe(
        "add_key",
        libc::SYS_add_key,
        [UNMAPPED, UNMAPPED, 0, 0, 0, 0],
    ),
    probe(
        "request_key",
        libc::SYS_request_key,
        [UNMAPPED, UNMAPPED, 0, 0, 0, 0],
    ),
    // No such request, no such pid: ESRCH.
    probe("ptrace", libc::SYS_ptrace, [0x4242, NO_PID, 0, 0, 0, 0]),
    // Flags must be 0: EINVAL.
    probe(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        [NO_PID, UNMAPPED, 1, UNMAPPED, 1, 1],
    ),
    probe(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        [NO_PID, UNMAPPED, 1, UNMAPPED, 1, 1],
    ),
    probe("kcmp", libc::SYS_kcmp, [NO_PID, NO_PID, 0, 0, 0, 0]),
    probe(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        [BAD_FD, 0, 1, 0, 0, 0],
    ),
    probe(
        "name_to_handle_at",
        libc::SYS_name_to_handle_at,
        [BAD_FD, UNMAPPED, UNMAPPED, UNMAPPED, ALL_FLAGS, 0],
    ),
    // UFFD_USER_MODE_ONLY (allowed to anyone) with an unknown flag: EINVAL.
    probe(
        "userfaultfd",
        libc::SYS_userfaultfd,
        [0x4000_0001, 0, 0, 0, 0, 0],
    ),
    probe(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        [1, UNMAPPED, 0, 0, 0, 0],
    ),
    // Quota type 127 does not exist: EINVAL.
    probe("quotactl", libc::SYS_quotactl, [0x7f, UNMAPPED, 0, 0, 0, 0]),
    // Unknown swap flags: EINVAL, before the privilege check.
    probe(
        "swapon",
        libc::SYS_swapon,
        [UNMAPPED, ALL_FLAGS, 0, 0, 0, 0],
    ),
    probe(
        "settimeofday",
        libc::SYS_settimeofday,
        [UNMAPPED, 0, 0, 0, 0, 0],
    ),
    probe(
        "clock_settime",
        libc::SYS_clock_settime,
        [0x7fff_ffff, UNMAPPED, 0, 0, 0, 0],
    ),
    probe(
        "clock_adjtime",
        libc::SYS_clock_adjtime,
        [0x7fff_ffff, UNMAPPED, 0, 0, 0, 0],
    ),
    // An unaligned start: EINVAL.
    probe("mbind", libc::SYS_mbind, [1, 4096, 0, 0, 0, 0]),
    probe(
        "set_mempolicy",
        libc::SYS_set_mempolicy,
        [0x7fff, 0, 0, 0, 0, 0],
    ),
    probe(
        "get_mempolicy",
        libc::SYS_get_mempolicy,
        [0, 0, 0, 0, 0xffff, 0],
    ),
    probe("move_pages", libc::SYS_move_pages, [0, 0, 0, 0, 0, 0xffff]),
    // An argument block smaller than the first version's: EINVAL.
    probe("clone3", libc::SYS_clone3, [UNMAPPED, 8, 0, 0, 0, 0]),
    probe("ustat", libc::SYS_ustat, [0xf_ffff, UNMAPPED, 0, 0, 0, 0]),
    probe("mknodat", libc::SYS_mknodat, [BAD_FD, UNMAPPED, 0, 0, 0, 0]),
];

/// Whether an answer came from a kernel's own checks (the call reached it).
pub fn reached(answer: Result<usize, Errno>) -> bool {
    !matches!(answer, Err(Errno::EPERM | Errno::ENOSYS))
}

/// Calls that return a descriptor when they succeed (never with these arguments; closed if so).
const RETURNS_FD: &[&str] = &[
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "userfaultfd",
    "io_uring_setup",
];

/// Each probe's name and answer, in list order.
pub fn probe_all() -> Vec<(&'static str, Result<usize, Errno>)> {
    PROBES
        .iter()
        .map(|p| {
            let answer = probe_syscall(p.nr, p.args);
            if let (Ok(fd), true) = (answer, RETURNS_FD.contains(&p.name)) {
                if let Ok(fd) = i32::try_from(fd) {
                    let _ = nix::unistd::close(fd);
                }
            }
            (p.name, answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_each_call_once_and_its_classification_is_by_errno() {
        let mut names: Vec<&str> = PROBES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
        assert!(reached(Err(Errno::EFAULT)));
        assert!(reached(Err(Errno::EINVAL)));
        assert!(reached(Ok(0)));
        assert!(!reached(Err(Errno::EPERM)));
        assert!(!reached(Err(Errno::ENOSYS)));
    }

    /// The test process runs with no seccomp filter of its own (cargo starts it plainly), so
    /// every call of the list must reach this kernel: a probe whose arguments let a kernel
    /// answer EPERM first would be misread as filtered everywhere.
    #[test]
    fn without_a_filter_every_probe_reaches_the_kernel() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let unfiltered = status
            .lines()
            .any(|l| l.split_whitespace().eq(["Seccomp:", "0"]));
        if !crate::host_has(unfiltered, "a test process without a seccomp filter") {
            return;
        }
        let refused: Vec<_> = probe_all()
            .into_iter()
            .filter(|(_, a)| !reached(*a))
            .collect();
        assert!(refused.is_empty(), "refused without a filter: {refused:?}");
    }
}
