//! Reading another process's seccomp filters, as the kernel holds them: the one way to see
//! which system calls a process (a container's workload, gVisor's Sentry, QEMU) may make, since
//! `/proc/PID/status` only counts its filters.
//!
//! `PTRACE_SECCOMP_GET_FILTER` needs the caller to trace the process and the process to be in a
//! ptrace-stop: the process is seized (which does not stop it), interrupted, waited for, read and
//! detached, so it is held for the time of a few system calls and otherwise untouched. It needs
//! `CAP_SYS_ADMIN` (cvm runs as root) and a kernel built with checkpoint/restore support.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h).
const PTRACE_SECCOMP_GET_FILTER: nix::libc::c_uint = 0x420c;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The filters of `pid`, most recently installed first (the order the kernel numbers them);
/// empty when it has none. The calling thread traces the process for the duration.
pub fn filters(pid: i32) -> Result<Vec<Vec<SockFilter>>, Errno> {
    let target = Pid::from_raw(pid);
    ptrace::seize(target, ptrace::Options::empty())?;
    let read = ptrace::interrupt(target)
        .and_then(|()| waitpid(target, Some(WaitPidFlag::__WALL)).map(drop))
        .and_then(|()| read_all(pid));
    // Detached whatever happened; a process that is gone meanwhile needs nothing more.
    let _ = ptrace::detach(target, None);
    read
}

fn read_all(pid: i32) -> Result<Vec<Vec<SockFilter>>, Errno> {
    let mut out = Vec::new();
    for index in 0.. {
        // SAFETY: with a null buffer the kernel only returns the filter's length and writes
        // nothing; the tracee is ours and stopped, as the request requires.
        let len = unsafe {
            nix::libc::ptrace(
                PTRACE_SECCOMP_GET_FILTER,
                pid,
                index as usize,
                std::ptr::null_mut::<SockFilter>(),
            )
        };
        if len < 0 {
            return match Errno::last() {
                // One past the last filter (or no filter at all).
                Errno::ENOENT => Ok(out),
                // No filter: the process runs without seccomp.
                Errno::EINVAL if index == 0 => Ok(out),
                e => Err(e),
            };
        }
        let mut prog = vec![SockFilter::default(); len as usize];
        // SAFETY: the buffer holds exactly the `len` instructions the kernel said the filter
        // has, and `SockFilter` has `struct sock_filter`'s layout; the filter cannot change
        // while the tracee is stopped.
        let got = unsafe {
            nix::libc::ptrace(
                PTRACE_SECCOMP_GET_FILTER,
                pid,
                index as usize,
                prog.as_mut_ptr(),
            )
        };
        if got < 0 {
            return Err(Errno::last());
        }
        prog.truncate(got as usize);
        out.push(prog);
    }
    Ok(out)
}
