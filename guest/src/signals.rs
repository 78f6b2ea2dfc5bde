//! Waiting for SIGTERM/SIGINT without signal handlers (and so without `unsafe`).
//!
//! The signals are blocked in the main thread before any thread is spawned, so every thread
//! inherits the mask and the kernel leaves them pending for `sigwait`. Blocking also matters for
//! PID 1: the kernel drops signals that a namespace's init has left at their default action,
//! but never drops a blocked one. Children start with a clean mask because std resets it
//! between fork and exec.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

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
