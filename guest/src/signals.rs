//! Waiting for SIGTERM/SIGINT without signal handlers (and so without `unsafe`).
//!
//! The signals are blocked in the main thread before any thread is spawned, so every thread
//! inherits the mask and the kernel leaves them pending for `sigwait`. Blocking also matters for
//! PID 1: the kernel drops signals that a namespace's init has left at their default action,
//! but never drops a blocked one (gVisor's Sentry does, so init also catches them with a no-op
//! handler, `sys::catch_termination`). Children start with a clean mask because std resets it
//! between fork and exec.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals that ask a workload to stop.
pub fn termination() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// Blocks `set` for this thread and every thread spawned after it.
pub fn block(set: &SigSet) -> Result<(), String> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(set), None)
        .map_err(|e| format!("blocking signals: {e}"))
}

/// Blocks SIGTERM/SIGINT; call first thing in an applet that waits for them.
pub fn block_termination() -> Result<SigSet, String> {
    let set = termination();
    block(&set)?;
    Ok(set)
}

/// Sleeps until one of the (blocked) signals in `set` arrives and returns it.
pub fn wait(set: &SigSet) -> Result<Signal, String> {
    loop {
        match set.wait() {
            Ok(signal) => return Ok(signal),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for signals: {e}")),
        }
    }
}

/// Like [`wait`], but gives up after `timeout` (`None`): for a PID 1 that also has periodic
/// work. A signalfd over the (blocked) set, polled with the timeout: no handler, no `unsafe`.
pub fn wait_timeout(set: &SigSet, timeout: Duration) -> Result<Option<Signal>, String> {
    let fd = SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("creating a signalfd: {e}"))?;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(format!("waiting for signals: {e}")),
    }
    match fd.read_signal() {
        Ok(Some(info)) => i32::try_from(info.ssi_signo)
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("unknown signal {}", info.ssi_signo)),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("reading the signalfd: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_wait_returns_pending_signals_and_times_out_without_one() {
        // A signal nothing else in the test binary uses, blocked so it stays pending.
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR2);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(wait_timeout(&set, Duration::from_millis(30)).unwrap(), None);
        assert!(started.elapsed() >= Duration::from_millis(25));
        // raise() signals the calling thread, which has it blocked: it stays pending.
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert_eq!(
            wait_timeout(&set, Duration::from_secs(5)).unwrap(),
            Some(Signal::SIGUSR2)
        );
    }
}
