//! The one lifecycle of a host process a backend started: spawn, exit watch, polite stop, one
//! grace period, force, reap. Every backend (the native workload, cvm's container init, the
//! container init a detached `runc`/`crun` left, the `docker` client, QEMU) owns its process through a [`Supervised`],
//! and only the polite request and the forced end differ ([`StopPolicy`]).
//!
//! The rule that keeps cvm from ever signalling a stranger: a child is watched with `waitid`
//! and `WNOWAIT`, which reports the exit *without reaping*, so its PID stays reserved as a
//! zombie until [`Supervised::reap`] (or `Drop`) has finished signalling and reaps it itself.
//! Nothing else may reap it: a `std::process::Child` handed to [`Supervised::from_child`] is
//! given up (its `Drop` neither waits nor kills), so no `try_wait` can release the PID early.
//! The exit watcher holds a pidfd opened while the PID was still ours, so it can never report
//! the exit of a later process that reused the number.
//!
//! A forced teardown ([`hurry`], after a second SIGINT/SIGTERM) ends every grace period at once:
//! the forced end and SIGKILL follow the request without waiting.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::cgroup;
use super::events::{Event, ExitInfo};

/// How long a workload gets to exit after the polite request before it is killed: the same
/// for every backend, so teardown latencies compare.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a backend's forced end ([`StopPolicy::force`]) gets before the process itself is
/// killed.
const FORCE_GRACE: Duration = Duration::from_millis(200);

/// The host processes of a container run by a foreground runtime (the `runc` or `docker`
/// client while it runs, and everything in the container's cgroup), sorted and unique.
pub fn runtime_and_container_pids(
    runtime: Option<&Supervised>,
    cgroup_dir: Option<&std::path::Path>,
) -> Vec<u32> {
    let mut pids: Vec<u32> = runtime
        .and_then(Supervised::running_pid)
        .into_iter()
        .collect();
    pids.extend(cgroup_dir.map(cgroup::procs).unwrap_or_default());
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// How a backend ends its process: what differs between backends in [`Supervised::stop`].
pub trait StopPolicy {
    /// Asks the process to end. The default is SIGTERM to it; a VMM is asked over its control
    /// socket, a container through its runtime. `false` when the request could not be made,
    /// which skips the grace period.
    fn request(&self, pid: Pid) -> bool {
        kill(pid, Signal::SIGTERM).is_ok()
    }
    /// Ends by force what the request did not, before the process itself gets SIGKILL (a
    /// runtime kills its container, which a SIGKILL to the runtime would leave behind). `true`
    /// when it did something worth waiting [`FORCE_GRACE`] for; the default does nothing.
    fn force(&self, _pid: Pid) -> bool {
        false
    }
    /// How long the process gets after the request: [`STOP_GRACE`] for a workload, longer for
    /// a daemon that stops what it started first.
    fn grace(&self) -> Duration {
        STOP_GRACE
    }
}

/// SIGTERM, then SIGKILL: for a process that forwards SIGTERM itself (cvm-guest init does).
pub struct Terminate;

impl StopPolicy for Terminate {}

/// A child process this backend owns until it is reaped.
#[derive(Debug)]
pub struct Supervised {
    /// `None` once reaped: the PID is no longer ours to signal.
    pid: Option<Pid>,
}

impl Supervised {
    /// Takes ownership of an unreaped child by its PID (from a raw `clone`).
    pub fn from_pid(pid: i32) -> Supervised {
        Supervised {
            pid: Some(Pid::from_raw(pid)),
        }
    }

    /// Takes ownership of a child `std` spawned; the caller takes its pipes first. The handle
    /// is given up without waiting, so only this type reaps the PID.
    pub fn from_child(child: Child) -> Supervised {
        let pid = i32::try_from(child.id()).expect("a PID fits in pid_t");
        drop(child);
        Supervised::from_pid(pid)
    }

    /// The PID while it is ours (unreaped).
    #[cfg(test)]
    fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// Waits up to `timeout` for the child to exit and reaps it: its exit status, or `None` if
    /// it is still running (then it is left as it was).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitInfo> {
        let waker = hurry_pipe().map(|(read, _)| read.as_fd());
        self.wait_reaping(timeout, waker)
    }

    /// [`Supervised::wait_timeout`] that a forced teardown does not cut short: for a command
    /// whose work must be done (`docker rm`), bounded by its own limit alone.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitInfo> {
        self.wait_reaping(limit, None)
    }

    fn wait_reaping(
        &mut self,
        timeout: Duration,
        waker: Option<BorrowedFd<'_>>,
    ) -> Option<ExitInfo> {
        let pid = self.pid?;
        if !wait_exit_or(pid, timeout, waker) {
            return None;
        }
        self.pid = None;
        Some(match waitpid(pid, None) {
            Ok(status) => exit_info(status),
            Err(_) => ExitInfo {
                code: None,
                signal: None,
            },
        })
    }

    /// The PID while the process is still running.
    pub fn running_pid(&self) -> Option<u32> {
        self.pid
            .filter(|&p| !exited(p))
            .and_then(|p| u32::try_from(p.as_raw()).ok())
    }

    /// Watches the process on a thread and sends [`Event::Exited`] when it ends, without
    /// reaping it. If the kernel's OOM killer fired in `memory_dir`'s cgroup, an
    /// [`Event::OutOfMemory`] comes first: the exit status alone (SIGKILL) does not tell an
    /// OOM kill from any other.
    ///
    /// The thread waits on a pidfd opened here, while the PID is ours and unreaped: however
    /// late the thread runs, and even after the process has been reaped and its number given
    /// to another child of cvm, it can only report this process's exit (or nothing, once it
    /// is reaped).
    pub fn watch_exit(
        &self,
        memory_dir: Option<PathBuf>,
        memory_limit: u64,
        tx: mpsc::Sender<Event>,
    ) -> io::Result<()> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        let pidfd = cvm_runtime::sys::pidfd_open(pid.as_raw())?;
        std::thread::Builder::new()
            .name("cvm-exit".into())
            .spawn(move || {
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
                let status = loop {
                    match waitid(Id::PIDFd(pidfd.as_fd()), flags) {
                        Err(nix::Error::EINTR) => continue,
                        other => break other,
                    }
                };
                // Reaped by its owner before the exit was seen here: nothing of ours to report.
                let Ok(status) = status else {
                    return;
                };
                let at = Instant::now();
                let kills = memory_dir.as_deref().map_or(0, cgroup::oom_kills);
                if kills > 0 {
                    let _ = tx.send(Event::OutOfMemory {
                        kills,
                        limit_bytes: memory_limit,
                    });
                }
                let _ = tx.send(Event::Exited(exit_info(status), at));
            })?;
        Ok(())
    }

    /// The one stop sequence: the policy's request, up to its grace period ([`STOP_GRACE`]) to
    /// exit, the policy's forced end, then SIGKILL; after [`hurry`], the forced end at once. The process stays unreaped (call [`Supervised::reap`]), so
    /// the caller may still clean up what it owned (a cgroup) while its PID is reserved.
    pub fn stop(&self, policy: &dyn StopPolicy) {
        let Some(pid) = self.pid else {
            return;
        };
        if exited(pid) {
            return;
        }
        // A forced teardown skips the request: its grace period would end at once anyway.
        if !hurried() && policy.request(pid) && wait_exit(pid, policy.grace()) {
            return;
        }
        if !(policy.force(pid) && wait_exit(pid, FORCE_GRACE)) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// Kills (if still needed) and reaps the process, releasing its PID. Idempotent.
    pub fn reap(&mut self) {
        if let Some(pid) = self.pid.take() {
            if !exited(pid) {
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = waitpid(pid, None);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.reap();
    }
}

/// What `waitid` says of a PID a [`Supervised`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildState {
    Running,
    /// Exited and not reaped: a zombie whose PID is still reserved for us.
    Exited,
    /// Not a child of ours (`ECHILD`): already reaped, so its number may be a stranger's.
    Gone,
}

fn state(pid: Pid) -> ChildState {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => return ChildState::Running,
            Ok(_) => return ChildState::Exited,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return ChildState::Gone,
        }
    }
}

/// True once `pid` must not be signalled: it has exited, or it is no longer ours.
fn exited(pid: Pid) -> bool {
    state(pid) != ChildState::Running
}

fn exit_info(status: WaitStatus) -> ExitInfo {
    match status {
        WaitStatus::Exited(_, code) => ExitInfo {
            code: Some(code),
            signal: None,
        },
        WaitStatus::Signaled(_, sig, _) => ExitInfo {
            code: None,
            signal: Some(sig as i32),
        },
        _ => ExitInfo {
            code: None,
            signal: None,
        },
    }
}

/// Set by [`hurry`]: every grace period ends at once.
static HURRY: AtomicBool = AtomicBool::new(false);

/// A pipe whose read end becomes readable (and stays so) at [`hurry`], so that a wait under
/// way wakes at once instead of sleeping out its grace period.
fn hurry_pipe() -> Option<&'static (OwnedFd, OwnedFd)> {
    static PIPE: OnceLock<Option<(OwnedFd, OwnedFd)>> = OnceLock::new();
    PIPE.get_or_init(|| {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).ok()
    })
    .as_ref()
}

/// Forces every teardown from now on (a second SIGINT/SIGTERM): no polite request, no grace
/// period, the forced end and SIGKILL at once; waits already under way end now. Safe to call
/// from any thread, more than once.
pub fn hurry() {
    HURRY.store(true, Ordering::SeqCst);
    if let Some((_, write)) = hurry_pipe() {
        let _ = nix::unistd::write(write, b"!");
    }
}

/// Whether [`hurry`] was called.
pub fn hurried() -> bool {
    HURRY.load(Ordering::SeqCst)
}

/// Waits up to `grace` for `pid` to exit, without reaping it; true if it did. Ends early, with
/// the answer of the moment, once teardown is forced ([`hurry`]).
fn wait_exit(pid: Pid, grace: Duration) -> bool {
    let waker = hurry_pipe().map(|(read, _)| read.as_fd());
    wait_exit_or(pid, grace, waker)
}

/// [`wait_exit`] that also ends when `waker` is readable. A pidfd wakes the wait the moment the
/// process exits, so a stop's duration (`teardown_latency`) carries no polling delay; where the
/// kernel has no pidfds, the exit is polled.
fn wait_exit_or(pid: Pid, grace: Duration, waker: Option<BorrowedFd<'_>>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + grace;
    if let Ok(pidfd) = cvm_runtime::sys::pidfd_open(pid.as_raw()) {
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        fds.extend(waker.map(|w| PollFd::new(w, PollFlags::POLLIN)));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Err(nix::Error::EINTR) => continue,
                Ok(_) => return exited(pid),
                Err(_) => break,
            }
        }
    }
    let mut pause = Duration::from_micros(100);
    while !exited(pid) {
        if Instant::now() >= deadline || waker.is_some_and(readable) {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    true
}

/// Waits up to `grace` for the process behind `pidfd` to exit; true if it did. For a process
/// cvm started that is not its child (the containerd of its private dockerd), which no
/// [`Supervised`] can own; ends early, as every grace period, once teardown is forced.
pub fn wait_pidfd(pidfd: BorrowedFd<'_>, grace: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + grace;
    let mut fds = vec![PollFd::new(pidfd, PollFlags::POLLIN)];
    fds.extend(hurry_pipe().map(|(read, _)| PollFd::new(read.as_fd(), PollFlags::POLLIN)));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => continue,
            Ok(0) | Err(_) => return false,
            Ok(_) => return readable(pidfd),
        }
    }
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// The descriptors every workload starts with, whatever the backend: stdin and stdout on
/// /dev/null, stderr and the marker channel on the host's pipes (their write ends).
pub fn workload_fds(stderr: OwnedFd, marker: OwnedFd) -> io::Result<Vec<(OwnedFd, RawFd)>> {
    let devnull = |write: bool| {
        std::fs::File::options()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .map(OwnedFd::from)
    };
    Ok(vec![
        (devnull(false)?, 0),
        (devnull(true)?, 1),
        (stderr, 2),
        (marker, cvm_proto::DEFAULT_MARKER_FD),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::process::{Command, Stdio};

    fn sleeper(script: &str) -> Supervised {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Supervised::from_child(child)
    }

    /// Records what the lifecycle asked of it, in order.
    struct Recorder<'a> {
        steps: &'a Cell<(bool, bool)>,
        request_works: bool,
    }

    impl StopPolicy for Recorder<'_> {
        fn request(&self, pid: Pid) -> bool {
            self.steps.set((true, self.steps.get().1));
            self.request_works && kill(pid, Signal::SIGTERM).is_ok()
        }
        fn force(&self, _pid: Pid) -> bool {
            self.steps.set((self.steps.get().0, true));
            false
        }
    }

    /// Stops `p` with a recorder; which of (request, force) the lifecycle called.
    fn stop_recorded(p: &Supervised, request_works: bool) -> (bool, bool) {
        let steps = Cell::new((false, false));
        p.stop(&Recorder {
            steps: &steps,
            request_works,
        });
        steps.get()
    }

    #[test]
    fn a_process_that_honours_the_request_is_never_forced() {
        let mut p = sleeper("exec sleep 30");
        assert_eq!(stop_recorded(&p, true), (true, false));
        // Stopped but not reaped: the PID is still reserved for us.
        assert!(p.pid().is_some());
        assert_eq!(p.running_pid(), None);
        p.reap();
        assert!(p.pid().is_none());
    }

    #[test]
    fn a_failed_request_goes_straight_to_force_and_sigkill() {
        // The shell ignores SIGTERM; the request "fails", so no grace period is waited.
        let mut p = sleeper("trap '' TERM; sleep 30");
        assert_eq!(stop_recorded(&p, false), (true, true));
        // SIGKILL was sent; its delivery is asynchronous, so wait for the exit it causes.
        assert!(wait_exit(p.pid().unwrap(), Duration::from_secs(10)));
        p.reap();
    }

    #[test]
    fn a_process_that_already_exited_is_never_signalled() {
        let mut p = sleeper("exit 0");
        let (tx, rx) = mpsc::channel();
        p.watch_exit(None, 0, tx).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // Neither the request nor the forced end ran: nothing signalled a PID that, once
        // reaped elsewhere, could have been a stranger's.
        assert_eq!(stop_recorded(&p, true), (false, false));
        p.reap();
    }

    #[test]
    fn a_child_is_waited_for_with_a_timeout() {
        let mut p = sleeper("exit 4");
        assert_eq!(
            p.wait_timeout(Duration::from_secs(10)).unwrap().code,
            Some(4)
        );
        assert!(p.pid().is_none(), "reaped");
        let mut p = sleeper("exec sleep 30");
        assert!(p.wait_timeout(Duration::from_millis(50)).is_none());
        assert!(p.running_pid().is_some(), "still ours and running");
        p.reap();
    }

    #[test]
    fn the_exit_watcher_reports_without_reaping() {
        let mut p = sleeper("exit 7");
        let (tx, rx) = mpsc::channel();
        p.watch_exit(None, 0, tx).unwrap();
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Event::Exited(info, _) => assert_eq!(info.code, Some(7)),
            other => panic!("{other:?}"),
        }
        // Still a zombie of ours, its PID reserved: not merely "no longer ours" (ECHILD), which
        // is what a watcher that reaped would leave.
        let pid = p.pid().unwrap();
        assert_eq!(state(pid), ChildState::Exited);
        p.reap();
        assert!(p.pid().is_none());
        assert_eq!(state(pid), ChildState::Gone);
        p.reap();
    }

    #[test]
    fn a_wait_ends_when_its_waker_fires() {
        let mut p = sleeper("exec sleep 30");
        let pid = p.pid().unwrap();
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            nix::unistd::write(&write, b"!").unwrap();
            write
        });
        // A grace period far longer than the test: only the waker can end it.
        assert!(!wait_exit_or(
            pid,
            Duration::from_secs(3600),
            Some(read.as_fd())
        ));
        drop(waker.join());
        assert_eq!(state(pid), ChildState::Running);
        p.reap();
    }

    #[test]
    fn the_exit_watcher_never_reports_a_reused_pid() {
        if !crate::host_has(
            nix::unistd::geteuid().is_root(),
            "giving a child a chosen PID (clone3 with set_tid) needs root",
        ) {
            return;
        }
        // This thread and the watchers it starts (threads inherit the mask) share one CPU, so a
        // watcher usually runs only once this thread blocks: after the process it was given
        // has been reaped and its PID handed to another child.
        let mut one = nix::sched::CpuSet::new();
        let here = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpu = (0..nix::sched::CpuSet::count())
            .find(|&c| here.is_set(c).unwrap_or(false))
            .unwrap();
        one.set(cpu).unwrap();
        nix::sched::sched_setaffinity(Pid::from_raw(0), &one).unwrap();
        let mut reused = 0;
        for _ in 0..50 {
            let mut first = sleeper("exec sleep 30");
            let pid = first.pid().unwrap();
            let (tx, rx) = mpsc::channel();
            first.watch_exit(None, 0, tx).unwrap();
            first.reap();
            // Another child of ours takes the number and exits with a code of its own.
            let Ok(second) = crate::sys::fork_exit_at(pid.as_raw(), 42) else {
                continue; // a stranger took the PID first
            };
            reused += 1;
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Event::Exited(info, _)) => assert_ne!(
                    info.code,
                    Some(42),
                    "the watcher reported the exit of the process that reused PID {pid}"
                ),
                Ok(other) => panic!("{other:?}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the watcher hung"),
            }
            let _ = waitpid(Pid::from_raw(second), None);
        }
        nix::sched::sched_setaffinity(Pid::from_raw(0), &here).unwrap();
        assert!(reused > 0, "no PID could be reused");
    }
}
