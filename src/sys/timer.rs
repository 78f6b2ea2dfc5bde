//! A `timerfd` the tokio reactor polls: a sub-millisecond one-shot timer for async code (tokio's
//! own timers tick in whole milliseconds). Registering a raw descriptor with the reactor is
//! `unsafe` in tokio, because the reactor must not outlive the descriptor; here the timer owns
//! both, so it cannot.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// A one-shot `CLOCK_MONOTONIC` timer on the current tokio runtime.
pub struct AsyncTimer {
    fd: AsyncFd<Inner>,
}

/// The timerfd, owned by the registration that polls it.
struct Inner(TimerFd);

impl AsRawFd for Inner {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl AsyncTimer {
    /// A timer registered with the current tokio runtime's reactor (which must have I/O on).
    pub fn new() -> io::Result<AsyncTimer> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags).map_err(io::Error::from)?;
        // SAFETY: `Inner` owns the timerfd and returns that same descriptor from every
        // `as_raw_fd` call; the `AsyncFd` owns `Inner`, so the descriptor stays open for as long
        // as it is registered and is closed only after `AsyncFd`'s drop deregisters it.
        let fd = unsafe { AsyncFd::register(Inner(timer)) }.map_err(io::Error::from)?;
        Ok(AsyncTimer { fd })
    }

    /// Sleeps `left` (a hrtimer: nanosecond resolution, no tick rounding).
    pub async fn sleep(&self, left: Duration) -> io::Result<()> {
        let when = Expiration::OneShot(TimeSpec::from_duration(left));
        self.fd
            .get_ref()
            .0
            .set(when, TimerSetTimeFlags::empty())
            .map_err(io::Error::from)?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Reading the expiry count before it fired is EAGAIN, which clears the readiness.
            match ready.try_io(|t| t.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
