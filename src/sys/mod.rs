//! The syscall layer: the only module with `unsafe`. Each block says why it is sound.
//!
//! What lives here is what safe wrappers cannot express: code that runs in a forked child between
//! `fork` and `exec`, where only async-signal-safe calls are allowed (no allocation, no locks).

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

pub use cvm_runtime::sys::{
    clone_vfork, spawn_namespaced, spawn_namespaced_timed, ChildStep, NamespacedExec, SpawnError,
    Spawned, MAX_PASSED_FDS,
};

pub mod sched;
pub mod seccomp;
pub mod timer;

/// Benchmark children for `cargo bench`: nothing else in cvm uses them.
#[cfg(feature = "bench")]
pub mod bench;

/// What a child does to itself between fork and exec.
#[derive(Debug, Default)]
pub struct CommandSetup {
    /// Placed at this descriptor number in the child (and left open across exec).
    pub marker: Option<(OwnedFd, RawFd)>,
    /// `cgroup.procs` files the child joins by writing "0" (itself) to each.
    pub cgroup_procs: Vec<File>,
}

impl CommandSetup {
    /// Installs the setup as a `pre_exec` hook on `cmd`. The files stay owned by the returned
    /// guard, which the caller drops after spawning (closing the parent's copies).
    pub fn install(self, cmd: &mut Command) -> SpawnGuard {
        let marker = self
            .marker
            .as_ref()
            .map(|(fd, target)| (fd.as_raw_fd(), *target));
        let procs: Vec<RawFd> = self.cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the hook runs in the forked child before exec. It calls only async-signal-safe
        // functions (write, dup2, fcntl) on descriptors that stay open in the parent until the
        // guard is dropped after `spawn` returns, and it allocates nothing: `procs` was built
        // before the fork and is only read.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &procs {
                    // Joining first means everything after this line is accounted to the cgroup.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some((fd, target)) = marker {
                    if fd == target {
                        // dup2 onto itself is a no-op that leaves FD_CLOEXEC set; clear it.
                        if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, target) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        SpawnGuard { _setup: self }
    }
}

/// Keeps the descriptors a `pre_exec` hook uses open until the child has been spawned.
#[derive(Debug)]
pub struct SpawnGuard {
    _setup: CommandSetup,
}

/// `sync` then drop the page cache, dentries and inodes, so memory readings start from a known
/// state (the gVisor density method). Needs root; failure is reported, not fatal.
pub fn drop_caches() -> std::io::Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3")
}

/// The CPU's time-stamp counter, for measuring its rate against `CLOCK_MONOTONIC` (a TCG
/// guest's TSC counts at the host's rate, and the guest kernel must be told that rate).
#[cfg(target_arch = "x86_64")]
pub fn tsc() -> Option<u64> {
    // SAFETY: RDTSC exists on every x86_64 CPU, reads a counter and touches no memory.
    Some(unsafe { core::arch::x86_64::_rdtsc() })
}

/// No time-stamp counter to read on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn tsc() -> Option<u64> {
    None
}

/// Sends `signal` to the process `pidfd` refers to. Unlike `kill`, it cannot reach a stranger
/// that reused the PID: how cvm ends a process it started that is not its own child (the
/// containerd its private dockerd started).
pub fn pidfd_send_signal(
    pidfd: BorrowedFd<'_>,
    signal: nix::sys::signal::Signal,
) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor the borrow keeps open, a signal number, a
    // null siginfo (allowed: the kernel fills one in as kill does) and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Has the spawned child get `signal` if cvm dies before it (`PR_SET_PDEATHSIG`): a daemon cvm
/// started must not outlive a cvm killed by SIGKILL. The kernel sends it when the *thread* that
/// spawned the child ends, so spawn from a thread that lives as long as the child should.
pub fn signal_on_parent_death(cmd: &mut Command, signal: nix::sys::signal::Signal) {
    let parent = nix::unistd::getpid().as_raw();
    let sig = signal as libc::c_int;
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // system calls (prctl, getppid, kill) on integers captured before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::c_ulong::try_from(sig).unwrap_or(15),
            ) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between the fork and the prctl: then nothing would
            // ever send the signal, so the child sends it to itself.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), sig);
            }
            Ok(())
        });
    }
}

/// Starts a child with the chosen PID `pid` (`clone3` with `set_tid`, which needs root) that
/// exits at once with `code`; its PID, for the caller to reap. For tests of what a PID reused by
/// another child of cvm must not fool.
#[cfg(test)]
pub(crate) fn fork_exit_at(pid: libc::pid_t, code: libc::c_int) -> std::io::Result<libc::pid_t> {
    /// `struct clone_args` up to `set_tid_size` (`CLONE_ARGS_SIZE_VER1`).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
    }
    let tids = [pid];
    let args = CloneArgs {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
    };
    // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of the address space
    // and runs only `_exit`, which is async-signal-safe and touches nothing the other threads
    // of this process could have left locked. `args` and `tids` outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(&args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        0 => {
            // SAFETY: see above; the child ends here.
            unsafe { libc::_exit(code) }
        }
        -1 => Err(std::io::Error::last_os_error()),
        child => Ok(libc::pid_t::try_from(child).unwrap_or(-1)),
    }
}
