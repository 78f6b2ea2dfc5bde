//! Scheduling of cvm's own observer threads.

use std::io;

/// Puts the calling thread in the lowest real-time priority (`SCHED_FIFO` 1), so that it runs
/// the moment it wakes instead of waiting behind the host's ordinary work. For a thread that
/// only stamps what it is woken for and sleeps again, never for one that computes: a busy
/// real-time thread would starve the ordinary ones. Needs `CAP_SYS_NICE` (root).
pub fn realtime_observer() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `sched_setscheduler` only reads `param`, a valid local; pid 0 is the calling
    // thread, whose scheduling alone changes.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
