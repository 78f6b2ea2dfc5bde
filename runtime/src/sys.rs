//! The syscall layer of cvm's container runtime: starting a process in new namespaces.
//!
//! What lives here is what safe wrappers cannot express: code that runs in a cloned child
//! before `exec`. Each `unsafe` block says why it is sound.
//!
//! Two ways in, for two kinds of caller:
//! - [`spawn_namespaced`] for a multi-threaded caller (cvm itself: event readers, progress bar).
//!   A child cloned from a multi-threaded process may only make async-signal-safe calls until it
//!   execs (no allocation, no locks another thread may hold), so the child only joins the
//!   cgroups, unshares the cgroup namespace, starts a session, places descriptors and execs
//!   `cvm-guest init --container`, which finishes the container from inside (see [`crate::rootfs`]).
//! - [`clone_process`] for a single-threaded caller (the `cvm-runtime` binary): its child is an
//!   ordinary copy of the process and may run any code, so it finishes the container itself
//!   before it execs the workload.
//!
//! Why a raw clone and not `unshare` in a `pre_exec` hook: `unshare(CLONE_NEWPID)` only moves the
//! caller's *children* into the new PID namespace, so the exec'd program would not be PID 1 and
//! would have to fork once more. The clone makes it PID 1 directly, one process and one exec
//! fewer on the hot path.
//!
//! Why the cgroup namespace is unshared after the cgroups are joined, not by the clone: a cgroup
//! namespace is rooted at the cgroup its creator is in at that moment, which must be the
//! instance's, not the caller's.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Writes a new user namespace's id maps for the child of the given host PID (run by
/// [`spawn_namespaced`] on a thread of its own while the child waits; see [`NamespacedExec`]).
pub type UserMapper = Box<dyn FnOnce(libc::pid_t) -> std::io::Result<()> + Send>;

/// A program started in new namespaces by a raw `clone`, straight into `execve`: the container
/// backend's spawn. Everything the child touches is prepared here, before the clone, because
/// the child of a multi-threaded process may only make async-signal-safe calls.
pub struct NamespacedExec {
    /// Path of the program on the host (the exec happens before any `pivot_root`).
    pub program: std::ffi::CString,
    pub argv: Vec<std::ffi::CString>,
    /// The complete environment: nothing of cvm's own leaks into the container.
    pub envp: Vec<std::ffi::CString>,
    /// `CLONE_NEW*` flags the clone itself applies (a new PID namespace makes the program PID 1).
    pub clone_flags: libc::c_int,
    /// Namespaces unshared after the cgroups are joined: a cgroup namespace is rooted at the
    /// cgroup its creator is in, which must be the instance's, not cvm's.
    pub unshare_after_join: libc::c_int,
    /// `cgroup.procs` files the child joins (writes "0" to) before anything else.
    pub cgroup_procs: Vec<File>,
    /// Descriptors placed at the given numbers in the child (stdio, marker pipe, sync pipe).
    pub fds: Vec<(OwnedFd, RawFd)>,
    /// With `CLONE_NEWUSER` in `clone_flags`: writes the new user namespace's uid and gid maps
    /// (an unprivileged caller runs the setuid `newuidmap` and `newgidmap`). The child waits for
    /// it before anything else: unmapped, its exec would drop every capability.
    pub map_user: Option<UserMapper>,
}

impl std::fmt::Debug for NamespacedExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespacedExec")
            .field("program", &self.program)
            .field("argv", &self.argv)
            .field("clone_flags", &self.clone_flags)
            .field("unshare_after_join", &self.unshare_after_join)
            .field("fds", &self.fds)
            .field("map_user", &self.map_user.is_some())
            .finish_non_exhaustive()
    }
}

/// The step of the child's setup that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStep {
    /// Waiting for its user namespace's id maps (which were not written).
    UserMap,
    JoinCgroup,
    Unshare,
    Setsid,
    Descriptors,
    Exec,
}

/// Why [`spawn_namespaced`] failed: either before the clone (in cvm) or in the child.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("too many descriptors to pass ({0}, at most {MAX_PASSED_FDS})")]
    TooManyFds(usize),
    #[error("clone failed")]
    Clone(#[source] std::io::Error),
    #[error("cannot make the pipe the child waits on for its id maps")]
    MapPipe(#[source] std::io::Error),
    #[error("cannot start the thread that writes the child's id maps")]
    MapThread(#[source] std::io::Error),
    #[error("cannot write the user namespace's id maps")]
    UserMap(#[source] std::io::Error),
    #[error("the child failed at step {step:?}")]
    Child {
        step: ChildStep,
        #[source]
        source: std::io::Error,
    },
}

/// Descriptors a child can be handed; a fixed bound lets the child work on a fixed array.
pub const MAX_PASSED_FDS: usize = 8;
/// The child's stack until it execs: it only makes a few syscalls.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// What the cloned child reads (prepared before the clone) and writes (its failure).
struct ChildArgs {
    /// The pipe the child reads its go-ahead from once its id maps are written, and the
    /// writing end (the child's copy, closed first so a failed mapper means end of file); -1
    /// when there is no user namespace to map.
    map_wait: (RawFd, RawFd),
    procs: *const RawFd,
    nprocs: usize,
    unshare_flags: libc::c_int,
    moves: [(RawFd, RawFd); MAX_PASSED_FDS],
    nmoves: usize,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Set by the child when a step fails: (step, errno).
    failure: Option<(ChildStep, i32)>,
    /// `CLOCK_MONOTONIC` when the child had joined every cgroup (set only if it joined any).
    joined: Option<libc::timespec>,
}

/// A child [`spawn_namespaced_timed`] started.
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    /// Its host PID.
    pub pid: libc::pid_t,
    /// When it was in its cgroups (after the `cgroup.procs` writes, before unshare and exec),
    /// on the clock of [`Instant`]; `None` when it joined none.
    pub cgroup_joined: Option<Instant>,
}

/// Clones a child into `spec.clone_flags` namespaces, which joins its cgroups, unshares
/// `spec.unshare_after_join`, starts a new session, places its descriptors and execs the
/// program. Returns the child's host PID once the exec has happened (or the child's error).
/// The child is not reaped here: the caller owns it and must wait for it.
///
/// The clone shares cvm's memory and suspends the calling thread until the exec
/// (`CLONE_VM | CLONE_VFORK`, what `posix_spawn` does): a plain fork would copy the page
/// tables of cvm's whole address space first, which on the reference host cost milliseconds
/// per launch with a debug build — more than the namespaces themselves.
pub fn spawn_namespaced(spec: NamespacedExec) -> Result<libc::pid_t, SpawnError> {
    spawn_namespaced_timed(spec).map(|s| s.pid)
}

/// [`spawn_namespaced`], also returning when the child had joined its cgroups: on cgroup v1
/// (and v2 without `CLONE_INTO_CGROUP`) the join is a write to `cgroup.procs` that can wait for
/// an RCU grace period, a cost of its own that callers report as its own phase.
pub fn spawn_namespaced_timed(mut spec: NamespacedExec) -> Result<Spawned, SpawnError> {
    if spec.fds.len() > MAX_PASSED_FDS {
        return Err(SpawnError::TooManyFds(spec.fds.len()));
    }
    let mapper = spec.map_user.take().map(Mapper::start).transpose()?;
    // Pointer arrays built before the clone: the child reads them, it allocates nothing.
    let mut argv: Vec<*const libc::c_char> = spec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = spec.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let procs: Vec<RawFd> = spec.cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
    let mut args = ChildArgs {
        map_wait: mapper
            .as_ref()
            .map_or((-1, -1), |m| (m.read.as_raw_fd(), m.write)),
        procs: procs.as_ptr(),
        nprocs: procs.len(),
        unshare_flags: spec.unshare_after_join,
        moves: [(-1, -1); MAX_PASSED_FDS],
        nmoves: spec.fds.len(),
        program: spec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        failure: None,
        joined: None,
    };
    for (slot, (fd, target)) in args.moves.iter_mut().zip(&spec.fds) {
        *slot = (fd.as_raw_fd(), *target);
    }
    let (flags, tid) = match &mapper {
        Some(m) => (spec.clone_flags | libc::CLONE_PARENT_SETTID, m.tid.as_ptr()),
        None => (spec.clone_flags, std::ptr::null_mut()),
    };
    // SAFETY: `child_main` makes only async-signal-safe calls (no allocator, no locks another
    // thread might hold) and ends in execve or `_exit`. With CLONE_VFORK this thread stays
    // suspended until then, so `args` and what it points into (`argv`, `envp`, `procs`, `spec`,
    // all owned by this frame) stay alive and unchanged for the child's whole life; the child
    // writes only `args.failure`. Other threads of cvm never see these locals, but the
    // mapper's, which reads the child's PID the kernel stores at `tid` (an atomic it owns a
    // share of, alive until it is joined below).
    let cloned = unsafe { clone_vfork_tid(flags, child_main, &mut args, tid) };
    // The child's copies matter now; the parent's are closed when `spec` goes.
    drop(spec);
    let mapped = mapper.map(|m| m.finish(cloned.is_ok()));
    let pid = cloned.map_err(SpawnError::Clone)?;
    match args.failure {
        None => Ok(Spawned {
            pid,
            cgroup_joined: args.joined.and_then(monotonic_instant),
        }),
        Some((step, errno)) => {
            // The child has exited; reap it so it leaves no zombie.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            if let Some(Err(e)) = mapped {
                return Err(SpawnError::UserMap(e));
            }
            Err(SpawnError::Child {
                step,
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
    }
}

/// The thread that writes a new user namespace's id maps while the cloned child waits: the
/// cloning thread cannot, since `CLONE_VFORK` suspends it until the child execs, and the child
/// must not exec unmapped.
struct Mapper {
    /// Where the kernel stores the child's host PID (`CLONE_PARENT_SETTID`); -1 if no clone.
    tid: std::sync::Arc<std::sync::atomic::AtomicI32>,
    /// The end the child reads its go-ahead from (its copy; this one closes with `self`).
    read: OwnedFd,
    /// The number of the writing end the thread holds, which the child closes in its copy.
    write: RawFd,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Mapper {
    fn start(map: UserMapper) -> Result<Mapper, SpawnError> {
        use std::sync::atomic::{AtomicI32, Ordering};
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SpawnError::MapPipe(std::io::Error::from(e)))?;
        let tid = std::sync::Arc::new(AtomicI32::new(0));
        let seen = tid.clone();
        let write_fd = write.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("cvm-idmap".into())
            .spawn(move || {
                let pid = loop {
                    match seen.load(Ordering::SeqCst) {
                        0 => std::thread::sleep(Duration::from_micros(20)),
                        pid => break pid,
                    }
                };
                if pid < 0 {
                    return Ok(());
                }
                map(pid)?;
                // A child that died meanwhile makes this fail; its own failure says why.
                let _ = std::io::Write::write_all(&mut File::from(write), b"m");
                Ok(())
            })
            .map_err(SpawnError::MapThread)?;
        Ok(Mapper {
            tid,
            read,
            write: write_fd,
            thread,
        })
    }

    /// Waits for the thread once the clone has returned (`cloned`: whether there was a child).
    fn finish(self, cloned: bool) -> std::io::Result<()> {
        if !cloned {
            self.tid.store(-1, std::sync::atomic::Ordering::SeqCst);
        }
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the id-map thread panicked")))
    }
}

/// A `CLOCK_MONOTONIC` reading as an [`Instant`] (which std takes from the same clock on Linux,
/// but offers no constructor for): now minus the reading's age. `None` for a future reading.
fn monotonic_instant(at: libc::timespec) -> Option<Instant> {
    let mut now: libc::timespec = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let instant_now = Instant::now();
    // SAFETY: clock_gettime writes one timespec into a local we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return None;
    }
    let nanos = |t: &libc::timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let age = u64::try_from(nanos(&now) - nanos(&at)).ok()?;
    instant_now.checked_sub(Duration::from_nanos(age))
}

/// The child side of [`spawn_namespaced`]: resets signals, joins cgroups, unshares, starts a
/// session, places descriptors, execs. Returns only through `_exit`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's `ChildArgs`, alive while the parent is suspended
    // (CLONE_VFORK); nothing else accesses it meanwhile.
    let args = unsafe { &mut *arg.cast::<ChildArgs>() };
    let fail = |args: &mut ChildArgs, step: ChildStep| -> libc::c_int {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        args.failure = Some((step, errno));
        // SAFETY: _exit is async-signal-safe and skips every atexit handler of the parent.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: plain syscalls on local sigsets, prepared descriptors and the parent's prepared,
    // null-terminated argv/envp arrays.
    unsafe {
        // A new user namespace: wait until its id maps are written (the writing end's only
        // other copy is the mapper's, so its failure is an end of file here).
        if args.map_wait.0 >= 0 {
            libc::close(args.map_wait.1);
            let mut byte = 0u8;
            if libc::read(args.map_wait.0, std::ptr::from_mut(&mut byte).cast(), 1) != 1 {
                return fail(args, ChildStep::UserMap);
            }
            libc::close(args.map_wait.0);
        }
        // Handlers are cvm's and would run on shared memory: back to the defaults before any
        // signal is unblocked. Ignored signals (Rust ignores SIGPIPE) would stay ignored across
        // exec: the container starts with defaults for those too.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction != libc::SIG_DFL
            {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        for i in 0..args.nprocs {
            if libc::write(*args.procs.add(i), b"0".as_ptr().cast(), 1) != 1 {
                return fail(args, ChildStep::JoinCgroup);
            }
        }
        if args.nprocs > 0 {
            let mut now: libc::timespec = std::mem::zeroed();
            if libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) == 0 {
                args.joined = Some(now);
            }
        }
        if args.unshare_flags != 0 && libc::unshare(args.unshare_flags) != 0 {
            return fail(args, ChildStep::Unshare);
        }
        // A session of its own: a Ctrl-C at cvm's terminal reaches cvm, which tears down.
        if libc::setsid() < 0 {
            return fail(args, ChildStep::Setsid);
        }
        // Two passes, so a source that happens to have a target's number is not clobbered.
        for i in 0..args.nmoves {
            let high = libc::fcntl(args.moves[i].0, libc::F_DUPFD_CLOEXEC, 64);
            if high < 0 {
                return fail(args, ChildStep::Descriptors);
            }
            args.moves[i].0 = high;
        }
        for i in 0..args.nmoves {
            // dup2 clears FD_CLOEXEC on the target, so it survives the exec.
            if libc::dup2(args.moves[i].0, args.moves[i].1) < 0 {
                return fail(args, ChildStep::Descriptors);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(args.program, args.argv, args.envp);
        fail(args, ChildStep::Exec)
    }
}

/// `clone(entry, flags | CLONE_VM | CLONE_VFORK | SIGCHLD)`, what `posix_spawn` does: the child
/// shares cvm's memory and this thread is suspended until the child execs or exits, so no page
/// tables are copied (a plain fork of cvm costs milliseconds). All signals are blocked around the
/// clone, so no handler of cvm's can run in the child on the shared memory before it has reset
/// them. Returns the child's PID; the caller owns (and eventually reaps) it.
///
/// # Safety
/// `entry` must only make async-signal-safe calls, must end in `execve` or `_exit`, and may only
/// touch `*args` and data that outlives this call.
pub unsafe fn clone_vfork<T>(
    flags: libc::c_int,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    args: &mut T,
) -> std::io::Result<libc::pid_t> {
    // SAFETY: the caller's guarantees, and no parent TID is asked for.
    unsafe { clone_vfork_tid(flags, entry, args, std::ptr::null_mut()) }
}

/// [`clone_vfork`] with the `parent_tid` argument `CLONE_PARENT_SETTID` writes the child's PID
/// to, before the child runs.
///
/// # Safety
/// As [`clone_vfork`]; `tid` is null or valid for a write of a `pid_t` during the call.
unsafe fn clone_vfork_tid<T>(
    flags: libc::c_int,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    args: &mut T,
    tid: *mut libc::pid_t,
) -> std::io::Result<libc::pid_t> {
    let mut stack = vec![0u8; CHILD_STACK_BYTES];
    // The stack grows down on x86_64: pass its (16-byte aligned) top.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK_BYTES) & !15;
    let flags = flags | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: only this thread's signal mask and the local sigsets are read and written.
    let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old_mask);
    }
    // SAFETY: the child runs `entry` on `stack` in our address space while this thread is
    // suspended until it execs or exits (CLONE_VFORK), so `stack` and `args` stay alive and
    // unchanged for its whole life; the caller guarantees what `entry` does.
    let pid = unsafe {
        libc::clone(
            entry,
            top as *mut libc::c_void,
            flags,
            std::ptr::from_mut(args).cast(),
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::pid_t>(),
        )
    };
    let clone_error = std::io::Error::last_os_error();
    // SAFETY: restores this thread's own mask, saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut());
    }
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    Ok(pid)
}

/// Clones a child into the `flags` namespaces (`CLONE_NEW*`) that runs `child` and `_exit`s with
/// its return value (it normally execs instead). Unlike [`spawn_namespaced`], the child is a
/// copy of the caller's memory (a fork), not a share of it. Returns the child's PID; the caller
/// owns (and eventually reaps) it.
///
/// # Safety
/// The calling process must be single-threaded: then the child may run any code (allocate,
/// lock), since no other thread can have held a lock at the moment of the copy.
pub unsafe fn clone_process(
    flags: libc::c_int,
    child: impl FnMut() -> isize,
) -> std::io::Result<libc::pid_t> {
    let mut stack = vec![0u8; 1024 * 1024];
    let flags = nix::sched::CloneFlags::from_bits_retain(flags);
    // SAFETY: without CLONE_VM the child runs on its own copy of `stack` and of everything else;
    // the caller guarantees the process is single-threaded, so the copy holds no lock another
    // thread was holding, and `child` may do anything an ordinary program does.
    let pid = unsafe { nix::sched::clone(Box::new(child), &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(std::io::Error::from)?;
    Ok(pid.as_raw())
}

/// The process signals are forwarded to (0 until there is one).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// A signal that arrived before there was a process to forward it to (0: none).
static PENDING: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    } else {
        PENDING.store(sig, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Catches `signals` from now on, to forward them to the process named by [`forward_to`] (a
/// foreground runtime passes SIGTERM on to its container, as `runc run` does). Installed before
/// the container exists, so a signal in between is held instead of killing the runtime and
/// orphaning the container. Handlers do not survive an exec: the container starts with the
/// default actions.
pub fn forward_signals(signals: &[libc::c_int]) -> std::io::Result<()> {
    for &sig in signals {
        // SAFETY: `forward` only reads an atomic and calls kill, both async-signal-safe.
        let old = unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
        if old == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Names the process caught signals go to, and passes on one that arrived before it existed.
pub fn forward_to(pid: libc::pid_t) {
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::SeqCst);
    let pending = PENDING.swap(0, std::sync::atomic::Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: kill takes plain integers; `pid` is our child, not yet reaped.
        unsafe {
            libc::kill(pid, pending);
        }
    }
}

/// Gives SIGPIPE its default action back before an exec. Rust's runtime ignores it, and an
/// ignored signal stays ignored across exec: a workload would get EPIPE where it expects to die,
/// unlike under runc or cvm's own spawn.
pub fn default_sigpipe() -> std::io::Result<()> {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if old == libc::SIG_ERR {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Moves `fd` to the lowest free number at or above `min`, close-on-exec, closing the original.
pub fn dup_cloexec_above(fd: OwnedFd, min: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor `fd` owns; the new number is owned by
    // nothing else, so wrapping it in an OwnedFd is sound.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` was just returned by fcntl and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Before an exec: the descriptors in `keep` are inherited (close-on-exec cleared), every
/// descriptor from `keep.end` up is closed by the exec.
pub fn inherit_only(keep: std::ops::Range<RawFd>) -> std::io::Result<()> {
    for fd in keep.clone() {
        // SAFETY: only the flags of an inherited descriptor number are changed; the borrow does
        // not outlive this call.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::fcntl::fcntl(
            borrowed,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
    }
    let first = libc::c_uint::try_from(keep.end).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptor numbers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // close_range with CLOSE_RANGE_CLOEXEC needs Linux 5.11: mark each open descriptor instead.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if fd >= keep.end {
            // SAFETY: F_SETFD only sets the close-on-exec flag on a descriptor number; on one
            // that closed meanwhile (the directory's own) it fails with EBADF, which is fine.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// A descriptor that becomes readable when process `pid` (a child of ours, or any process)
/// exits, whether or not it has been reaped: waiting on it costs no polling and sees the exit
/// the moment it happens.
pub fn pidfd_open(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| std::io::ErrorKind::InvalidData)?;
    // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
