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

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc;
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
        let pid = self.pid?;
        if !wait_exit(pid, timeout) {
            return None;
        }
        self.pid = None;
        Some(match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => ExitInfo {
                code: Some(code),
                signal: None,
            },
            Ok(WaitStatus::Signaled(_, sig, _)) => ExitInfo {
                code: None,
                signal: Some(sig as i32),
            },
            _ => ExitInfo {
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
    pub fn watch_exit(
        &self,
        memory_dir: Option<PathBuf>,
        memory_limit: u64,
        tx: mpsc::Sender<Event>,
    ) -> io::Result<()> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        std::thread::Builder::new()
            .name("cvm-exit".into())
            .spawn(move || {
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
                let status = loop {
                    match waitid(Id::Pid(pid), flags) {
                        Err(nix::Error::EINTR) => continue,
                        other => break other,
                    }
                };
                let at = Instant::now();
                let kills = memory_dir.as_deref().map_or(0, cgroup::oom_kills);
                if kills > 0 {
                    let _ = tx.send(Event::OutOfMemory {
                        kills,
                        limit_bytes: memory_limit,
                    });
                }
                let info = match status {
                    Ok(WaitStatus::Exited(_, code)) => ExitInfo {
                        code: Some(code),
                        signal: None,
                    },
                    Ok(WaitStatus::Signaled(_, sig, _)) => ExitInfo {
                        code: None,
                        signal: Some(sig as i32),
                    },
                    _ => ExitInfo {
                        code: None,
                        signal: None,
                    },
                };
                let _ = tx.send(Event::Exited(info, at));
            })?;
        Ok(())
    }

    /// The one stop sequence: the policy's request, up to [`STOP_GRACE`] to exit, the policy's
    /// forced end, then SIGKILL. The process stays unreaped (call [`Supervised::reap`]), so
    /// the caller may still clean up what it owned (a cgroup) while its PID is reserved.
    pub fn stop(&self, policy: &dyn StopPolicy) {
        let Some(pid) = self.pid else {
            return;
        };
        if exited(pid) {
            return;
        }
        if policy.request(pid) && wait_exit(pid, STOP_GRACE) {
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

/// True once `pid` (an unreaped child of ours) has exited.
fn exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(
        waitid(Id::Pid(pid), flags),
        Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR)
    )
}

/// Waits up to `grace` for `pid` to exit, without reaping it; true if it did. A pidfd wakes
/// the wait the moment the process exits, so a stop's duration (`teardown_latency`) carries no
/// polling delay; where the kernel has no pidfds, the exit is polled.
fn wait_exit(pid: Pid, grace: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + grace;
    if let Ok(pidfd) = cvm_runtime::sys::pidfd_open(pid.as_raw()) {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Err(nix::Error::EINTR) => continue,
                Ok(0) => return exited(pid),
                Ok(_) => return true,
                Err(_) => break,
            }
        }
    }
    let mut pause = Duration::from_micros(100);
    while !exited(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    true
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
        // Still a zombie of ours: waitid with WNOWAIT sees it again.
        assert!(exited(p.pid().unwrap()));
        p.reap();
        assert!(p.pid().is_none());
        p.reap();
    }
}
