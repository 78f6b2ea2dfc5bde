//! A host process a backend started and still owns: watching its exit, stopping it, reaping it.
//!
//! The rule that keeps cvm from ever signalling a stranger: a child is watched with `waitid`
//! and `WNOWAIT`, which reports the exit *without reaping*, so its PID stays reserved as a
//! zombie until teardown has finished signalling and reaps it itself.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::cgroup;
use super::events::{Event, ExitInfo};

/// How long a workload gets to exit after SIGTERM before it is killed: the same for every
/// backend, so teardown latencies compare.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Watches `pid` on a thread and sends [`Event::Exited`] when it ends, without reaping it. If
/// the kernel's OOM killer fired in `memory_dir`'s cgroup, an error line says so first: the exit
/// status alone (SIGKILL) does not tell an OOM kill from any other.
pub fn spawn_exit_watcher(
    pid: i32,
    memory_dir: Option<PathBuf>,
    memory_limit: u64,
    tx: mpsc::Sender<Event>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("cvm-exit".into())
        .spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let status = loop {
                match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
                    Err(nix::Error::EINTR) => continue,
                    other => break other,
                }
            };
            let at = Instant::now();
            let kills = memory_dir.as_deref().map_or(0, cgroup::oom_kills);
            if kills > 0 {
                let _ = tx.send(Event::Output(format!(
                    "error: out of memory: the kernel's OOM killer fired {kills} time(s) in the \
                 instance's cgroup (memory limit {} MiB)",
                    memory_limit / (1024 * 1024)
                )));
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

/// True once `pid` (an unreaped child of ours) has exited.
pub fn exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(
        waitid(Id::Pid(pid), flags),
        Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR)
    )
}

/// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL. The child stays unreaped.
pub fn stop(pid: Pid) {
    if exited(pid) {
        return;
    }
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    let mut pause = Duration::from_micros(100);
    while !exited(pid) {
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Kills (if still needed) and reaps `pid`, releasing its PID.
pub fn reap(pid: Pid) {
    if !exited(pid) {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let _ = waitpid(pid, None);
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
