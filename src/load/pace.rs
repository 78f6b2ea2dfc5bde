//! Sending on time, for the open loop. Its latency counts from each request's intended send
//! time, so a send that leaves late adds its lateness to the figure. tokio's timers tick in
//! whole milliseconds: a send waiting on `sleep_until` left up to a millisecond late (native's
//! open-loop p50 at 100 requests/s read 1.13 ms against 51 µs closed-loop in the same run).
//!
//! A [`Pacer`] waits on a `timerfd` instead (an hrtimer, nanosecond resolution, polled by the
//! same tokio reactor), set to wake the connection [`SPIN`] before its send time, then yields to
//! the thread's other connections until the time has come. The spin is what makes the send
//! punctual on a host where a wake-up takes tens of microseconds; it costs at most [`SPIN`] of
//! client CPU per send. Without a timerfd (never on Linux) the pacer falls back to tokio's timer.

use std::time::{Duration, Instant};

use crate::sys::timer::AsyncTimer;

/// How long before its send time a connection wakes and spins: longer than a wake-up's usual
/// lateness on a busy host, short against an open loop's intervals.
pub(super) const SPIN: Duration = Duration::from_micros(50);

/// One connection's send clock.
pub(super) struct Pacer {
    timer: Option<AsyncTimer>,
}

impl Pacer {
    /// A pacer for a connection on the current tokio runtime.
    pub(super) fn new() -> Pacer {
        Pacer {
            timer: AsyncTimer::new().ok(),
        }
    }

    /// Returns at `at`, or at once if `at` has passed.
    pub(super) async fn until(&self, at: Instant) {
        let wake = at.checked_sub(SPIN).unwrap_or(at);
        if let Some(left) = wake.checked_duration_since(Instant::now()) {
            let slept = match &self.timer {
                Some(timer) if !left.is_zero() => timer.sleep(left).await.is_ok(),
                _ => false,
            };
            if !slept {
                tokio::time::sleep_until(wake.into()).await;
            }
        }
        while Instant::now() < at {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_is_never_early_and_later_than_tokios_timer_less_often() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pacer = Pacer::new();
            assert!(pacer.timer.is_some(), "no timerfd on Linux");
            let (mut paced, mut ticked) = (Vec::new(), Vec::new());
            // Interleaved, so a busy moment of the shared host hits both clocks alike.
            for i in 0..40u32 {
                let at = Instant::now() + Duration::from_micros(1300 + u64::from(i) * 17);
                if i % 2 == 0 {
                    pacer.until(at).await;
                    let now = Instant::now();
                    assert!(now >= at, "returned {:?} early", at - now);
                    paced.push(now - at);
                } else {
                    tokio::time::sleep_until(at.into()).await;
                    ticked.push(Instant::now().saturating_duration_since(at));
                }
            }
            paced.sort();
            ticked.sort();
            // tokio rounds a deadline up to its next millisecond tick; the pacer does not.
            assert!(paced[10] < ticked[10], "pacer {paced:?}, tokio {ticked:?}");
            // A time already past returns at once.
            pacer.until(Instant::now() - Duration::from_millis(1)).await;
        });
    }
}
