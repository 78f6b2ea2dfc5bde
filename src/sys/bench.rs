//! Benchmark children (`cargo bench`, `benches/primitives/`): the cost of the
//! isolation primitives themselves, with nothing of cvm's around them. Compiled only with the
//! `bench` feature: nothing else in cvm uses them.

use super::clone_vfork;

/// A process started by [`fork_and_exit`], [`clone_and_exit`] or [`clone_into_rootfs`] failed:
/// the clone itself, the wait, or a step in the child (with the step's number and errno).
#[derive(Debug, thiserror::Error)]
pub enum BenchChildError {
    #[error("clone failed")]
    Clone(#[source] std::io::Error),
    #[error("waiting for the child failed")]
    Wait(#[source] std::io::Error),
    #[error("the child failed at step {step} ({what})")]
    Step {
        step: usize,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the child ended with status {0:?}")]
    Status(nix::sys::wait::WaitStatus),
}

/// A plain `fork` whose child `_exit(0)`s at once; the parent waits for it. The baseline every
/// namespace is compared with: it copies the caller's page tables, as any `fork` does.
pub fn fork_and_exit() -> Result<(), BenchChildError> {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so forking a
    // multi-threaded process is sound; the parent only reads the returned PID.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` skips every atexit handler and destructor of the parent's image.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Err(BenchChildError::Clone(std::io::Error::last_os_error()));
    }
    wait_exited(pid, None)
}

/// Clones a child into the `flags` namespaces (`CLONE_NEW*`, or 0 for none), which `_exit(0)`s
/// at once; the parent waits for it. The clone is the container backend's
/// ([`spawn_namespaced`](super::spawn_namespaced)): `CLONE_VM | CLONE_VFORK`, so with
/// `flags == 0` it is a `vfork`, and the difference to that is what creating (and, at the
/// child's exit, destroying) the namespaces costs.
pub fn clone_and_exit(flags: libc::c_int) -> Result<(), BenchChildError> {
    let mut args = BenchChildArgs {
        rootfs: None,
        failure: None,
    };
    // SAFETY: `exit_child` reads nothing and calls only `_exit`; `args` outlives the child
    // (the parent is suspended until it exits, CLONE_VFORK).
    let pid =
        unsafe { clone_vfork(flags, exit_child, &mut args) }.map_err(BenchChildError::Clone)?;
    wait_exited(pid, args.failure)
}

extern "C" fn exit_child(_: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `_exit` is async-signal-safe and touches no memory shared with the parent.
    unsafe { libc::_exit(0) }
}

/// The paths a [`clone_into_rootfs`] child mounts, as C strings built before the clone (the
/// child may not allocate).
#[derive(Debug)]
pub struct RootfsMounts {
    rootfs: std::ffi::CString,
    proc: std::ffi::CString,
    sys: std::ffi::CString,
    dev: std::ffi::CString,
    pts: std::ffi::CString,
    tmp: std::ffi::CString,
}

impl RootfsMounts {
    /// The mounts of a container on `rootfs` (an image directory with `proc`, `sys`, `dev` and
    /// `tmp` in it).
    pub fn new(rootfs: &std::path::Path) -> std::io::Result<RootfsMounts> {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &std::path::Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        Ok(RootfsMounts {
            rootfs: c(rootfs)?,
            proc: c(&rootfs.join("proc"))?,
            sys: c(&rootfs.join("sys"))?,
            dev: c(&rootfs.join("dev"))?,
            pts: c(&rootfs.join("dev/pts"))?,
            tmp: c(&rootfs.join("tmp"))?,
        })
    }
}

/// Clones a plain child (no namespaces) that unshares a mount namespace and, with `mounts`,
/// sets up the container's root file system the way `cvm-guest init --container` does — `/`
/// made private, the image bound onto itself, `proc`, read-only `sysfs`, a tmpfs `/dev` with a
/// `devpts` instance, a tmpfs `/tmp`, the bind remounted read-only, `pivot_root(".", ".")` and
/// the old root detached — then `_exit(0)`s; the parent waits. Everything is mounted inside
/// the child's own mount namespace and vanishes with it. Without `mounts` the child only
/// unshares: the difference is the rootfs setup (including unmounting it all at exit).
/// The device nodes init creates in `/dev` (mknod) are left out: they are file creation, not
/// mounts.
pub fn clone_into_rootfs(mounts: Option<&RootfsMounts>) -> Result<(), BenchChildError> {
    let mut args = BenchChildArgs {
        rootfs: mounts.map(|m| m as *const RootfsMounts),
        failure: None,
    };
    // SAFETY: `rootfs_child` reads `args` and the `RootfsMounts` it points to (borrowed for
    // this whole call, unchanged) and makes only async-signal-safe syscalls; the parent is
    // suspended until the child exits (CLONE_VFORK), so both outlive it.
    let pid = unsafe { clone_vfork(0, rootfs_child, &mut args) }.map_err(BenchChildError::Clone)?;
    wait_exited(pid, args.failure)
}

/// What a benchmark child reads (prepared before the clone) and writes (its failure).
struct BenchChildArgs {
    rootfs: Option<*const RootfsMounts>,
    /// Set by the child when a step fails: (step number, step name, errno).
    failure: Option<(usize, &'static str, i32)>,
}

const ROOTFS_STEPS: [&str; 12] = [
    "unshare(CLONE_NEWNS)",
    "make / private",
    "bind the rootfs onto itself",
    "mount proc",
    "mount sysfs",
    "mount tmpfs on /dev",
    "mkdir /dev/pts",
    "mount devpts",
    "mount tmpfs on /tmp",
    "remount the rootfs read-only",
    "chdir + pivot_root",
    "detach the old root",
];

extern "C" fn rootfs_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's `BenchChildArgs`, alive and otherwise untouched
    // while the parent is suspended (CLONE_VFORK).
    let args = unsafe { &mut *arg.cast::<BenchChildArgs>() };
    let fail = |args: &mut BenchChildArgs, step: usize| -> libc::c_int {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        args.failure = Some((step, ROOTFS_STEPS[step], errno));
        // SAFETY: async-signal-safe, skips the parent's atexit handlers.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: plain syscalls on C strings prepared before the clone (NUL-terminated, alive for
    // the child's whole life) and on static literals; nothing is allocated.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail(args, 0);
        }
        let Some(m) = args.rootfs.map(|p| &*p) else {
            libc::_exit(0)
        };
        let none = std::ptr::null::<libc::c_char>();
        let data = std::ptr::null::<libc::c_void>();
        let secure = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            data,
        ) != 0
        {
            return fail(args, 1);
        }
        let r = m.rootfs.as_ptr();
        if libc::mount(r, r, none, libc::MS_BIND | libc::MS_REC, data) != 0 {
            return fail(args, 2);
        }
        let proc = c"proc".as_ptr();
        if libc::mount(proc, m.proc.as_ptr(), proc, secure, data) != 0 {
            return fail(args, 3);
        }
        let sysfs = c"sysfs".as_ptr();
        if libc::mount(sysfs, m.sys.as_ptr(), sysfs, secure | libc::MS_RDONLY, data) != 0 {
            return fail(args, 4);
        }
        let dev_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        let dev_data = c"mode=755,size=65536k".as_ptr().cast::<libc::c_void>();
        let tmpfs = c"tmpfs".as_ptr();
        if libc::mount(tmpfs, m.dev.as_ptr(), tmpfs, dev_flags, dev_data) != 0 {
            return fail(args, 5);
        }
        if libc::mkdir(m.pts.as_ptr(), 0o755) != 0 {
            return fail(args, 6);
        }
        let pts_data = c"newinstance,ptmxmode=0666,mode=0620"
            .as_ptr()
            .cast::<libc::c_void>();
        let devpts = c"devpts".as_ptr();
        if libc::mount(devpts, m.pts.as_ptr(), devpts, dev_flags, pts_data) != 0 {
            return fail(args, 7);
        }
        let tmp_flags = libc::MS_NOSUID | libc::MS_NODEV;
        let tmp_data = c"mode=1777".as_ptr().cast::<libc::c_void>();
        if libc::mount(tmpfs, m.tmp.as_ptr(), tmpfs, tmp_flags, tmp_data) != 0 {
            return fail(args, 8);
        }
        let ro = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        if libc::mount(none, r, none, ro, data) != 0 {
            return fail(args, 9);
        }
        let dot = c".".as_ptr();
        if libc::chdir(r) != 0 || libc::syscall(libc::SYS_pivot_root, dot, dot) != 0 {
            return fail(args, 10);
        }
        if libc::umount2(dot, libc::MNT_DETACH) != 0 {
            return fail(args, 11);
        }
        libc::_exit(0)
    }
}

/// Reaps `pid` and turns its end (and the step it reported failing, if any) into a result.
fn wait_exited(
    pid: libc::pid_t,
    failure: Option<(usize, &'static str, i32)>,
) -> Result<(), BenchChildError> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let status = loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(BenchChildError::Wait(e.into())),
            Ok(status) => break status,
        }
    };
    if let Some((step, what, errno)) = failure {
        return Err(BenchChildError::Step {
            step,
            what,
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(BenchChildError::Status(other)),
    }
}
