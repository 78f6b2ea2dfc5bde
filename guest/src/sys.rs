//! The guest's syscall layer: the only `unsafe` of `cvm-guest`, each use with its reason.
//!
//! The guest needs what std and nix cannot give it safely: using descriptors the host passed
//! by number (the marker channel, the container's go-ahead pipe), forking the single-threaded
//! init to run an applet, and a no-op signal handler for init (see `catch_termination`). Each
//! is sound only under a condition about *when* it is called, stated on the function; the
//! callers keep it.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::ForkResult;

/// The descriptor `fd` inherited from the host, if it is open and writable.
///
/// Call this before the program opens any file: afterwards a file of its own could have taken
/// the number and be mistaken for the inherited descriptor. The caller never closes or replaces
/// it, so the `'static` borrow stays valid.
pub fn inherited_writable(fd: RawFd) -> Option<BorrowedFd<'static>> {
    // SAFETY: F_GETFL only reads the flags of whatever the number refers to and touches no
    // memory of ours; on a number that is not an open descriptor it fails with EBADF.
    let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFL) };
    if flags < 0 || flags & nix::libc::O_ACCMODE == nix::libc::O_RDONLY {
        return None;
    }
    // SAFETY: `fd` is open (F_GETFL succeeded) and was inherited, since this runs before the
    // program opens anything (see above); it stays open for the rest of the process.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Takes ownership of the descriptor `fd` the host passed for one purpose, if it is open.
///
/// Call this while parsing arguments, before the program opens files, and once per number.
pub fn take_inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; on a number that is not open it fails
    // with EBADF and touches nothing.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and was inherited from the host for this
    // one purpose: nothing else in this process knows its number, so owning (and eventually
    // closing) it cannot disturb another owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fork()`, for init while it is single-threaded: the child returns here and runs any code.
///
/// # Safety
///
/// The calling process must have one thread. A thread that exists at the fork is missing in
/// the child, and any lock it held (the allocator's, stdio's) stays locked there forever, so
/// the child, which goes on to allocate and run arbitrary code, could deadlock or see torn
/// state. The guest starts no threads before its forks; a caller that cannot promise this
/// must exec instead.
pub unsafe fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: the caller promises a single-threaded process (see `# Safety`), so the child is a
    // complete copy with no lock held by a vanished thread, and may allocate and run any code.
    unsafe { nix::unistd::fork() }
}

/// Catches SIGTERM and SIGINT with a handler that does nothing, for init, which keeps them
/// blocked and takes them with `sigwait`. Linux never drops a signal a namespace's init has
/// blocked, but gVisor's Sentry drops one whose action is the default, as for an init that
/// left it unhandled: a caught signal reaches init on both. Call it after forking any child
/// that runs on without exec (an exec resets the handler; a fork would inherit it).
pub fn catch_termination() -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn ignore(_: nix::libc::c_int) {}
    let action = SigAction::new(
        SigHandler::Handler(ignore),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler does nothing, so it is async-signal-safe and cannot observe
        // or break any state of the interrupted code.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Makes `cmd`'s child start with no blocked signals, set between its fork and exec. std
/// clears the mask itself, but through `posix_spawn`'s signal-mask attribute when it can, and
/// under gVisor's Sentry (runsc 2022-12) that attribute leaves init's blocked SIGTERM blocked
/// in the workload, which then never ends on a stop. A `pre_exec` hook makes std fork and exec.
pub fn unblock_signals_on_exec(cmd: &mut std::process::Command) {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook makes one async-signal-safe system call (sigprocmask) on a set built on
    // the stack; it allocates nothing and takes no lock, as a forked child of a possibly
    // multi-threaded process requires.
    unsafe {
        cmd.pre_exec(|| {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        });
    }
}

/// An address no process ever has mapped: the first page is never mappable
/// (`vm.mmap_min_addr` is at least 4096), so a system call given it as a pointer fails with
/// `EFAULT` at its first access and never reads or writes this process's memory.
pub const UNMAPPED: usize = 1;

/// One system call by number, for the audit's probes and the containment attempts: `Ok` with
/// its return value, or the errno it failed with.
///
/// The callers' tables document, per call, the arguments that make a kernel refuse it in its
/// own argument checks (an unknown flag, a descriptor of -1, one segment too many, an empty
/// module image) so that a call that reaches a kernel does nothing there; pointers are either
/// null or [`UNMAPPED`].
pub fn probe_syscall(nr: nix::libc::c_long, args: [usize; 6]) -> Result<usize, nix::errno::Errno> {
    // SAFETY: every pointer argument is null or UNMAPPED (the callers' tables only pass those,
    // integers, -1 descriptors and flags), so the kernel cannot read or write memory of this
    // process through them; the call takes no Rust-owned resource, and a descriptor it might
    // return is the caller's to close.
    let ret =
        unsafe { nix::libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if ret < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(ret as usize)
    }
}

/// Forks a child that does nothing but wait for a signal (the fork bomb's children, killed by
/// their parent afterwards). `Ok(pid)` in the parent.
pub fn fork_paused_child() -> nix::Result<nix::unistd::Pid> {
    // SAFETY: the child only calls pause(2) in a loop, which is async-signal-safe, so it runs no
    // code that could need a lock or allocation left in an inconsistent state by the fork.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => loop {
            nix::unistd::pause();
        },
    }
}

/// Forks a child that exits at once with status 0 (the fork aggressor's churn). `Ok(pid)` in
/// the parent.
pub fn fork_exiting_child() -> nix::Result<nix::unistd::Pid> {
    // SAFETY: the child only calls _exit(2), which is async-signal-safe and runs no atexit
    // handler or destructor that could touch state copied mid-operation by the fork.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child),
        // SAFETY: _exit ends the process at once; nothing after it runs.
        ForkResult::Child => unsafe { nix::libc::_exit(0) },
    }
}
