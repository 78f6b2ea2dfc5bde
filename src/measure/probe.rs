//! The host half of a server's readiness: short, overlapping connection attempts (or HTTP GETs)
//! against the instance's endpoint, the first success stamped on the host's clock. See
//! [`super::startup`] for how it meets the inside half.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The host half of a server's readiness: a scheduler thread starts short attempts, each on a
/// thread of its own, a few milliseconds apart and overlapping, so an attempt a proxy holds open
/// never delays the next one. The first success is sent with its stamp; dropping stops it and
/// waits for the attempts still in flight, so that none of their requests reaches the server
/// after readiness (it would be counted in the load phase's server count).
pub(super) struct Prober {
    pub(super) found: mpsc::Receiver<Instant>,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    /// Attempts whose request went out unanswered (see [`ProbeOutcome::Unanswered`]).
    pub(super) unanswered: Arc<AtomicUsize>,
    scheduler: Option<std::thread::JoinHandle<()>>,
}

/// Attempts in flight at most (each ends within its own timeouts).
const PROBE_MAX_IN_FLIGHT: usize = 32;
/// The spacing of attempts: 250 µs at first (containers are ready in milliseconds, and half the
/// spacing is the probe's average lag behind the server: at 1 ms the container's median
/// `ready_probe_delay` in `web` was 0.86 ms on the reference host, at 250 µs 0.23 ms), then a
/// fiftieth of the time already waited, so that the lag stays near 1 % of the startup, up to
/// 50 ms (reached after 2.5 s: a VM under emulation takes seconds, and every attempt costs the
/// guest CPU time).
const PROBE_SPACING_MIN: Duration = Duration::from_micros(250);
const PROBE_SPACING_MAX: Duration = Duration::from_millis(50);
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How long an attempt waits for its answer: 250 ms at first, then a tenth of the time already
/// waited, up to 1 s. A server that listens but answers slowly (a guest under emulation on a busy
/// host) must not see its answers abandoned and its requests resent: with a fixed 250 ms and
/// 5 ms spacing, such a guest took about 130 requests a second it could not answer in time,
/// kept every abandoned connection as an orphan (540 after 14 s), filled its 128 MiB and was
/// OOM-killed before the host saw it ready.
const PROBE_READ_TIMEOUT_MIN: Duration = Duration::from_millis(250);
const PROBE_READ_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// The spacing before the next attempt, and the read timeout of an attempt started now, after
/// `waited` since probing began.
fn pacing(waited: Duration) -> (Duration, Duration) {
    (
        (waited / 50).clamp(PROBE_SPACING_MIN, PROBE_SPACING_MAX),
        (waited / 10).clamp(PROBE_READ_TIMEOUT_MIN, PROBE_READ_TIMEOUT_MAX),
    )
}

impl Prober {
    pub(super) fn start(addr: SocketAddr, http_path: Option<String>) -> std::io::Result<Prober> {
        let (tx, found) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let attempts = Arc::clone(&in_flight);
        let unanswered = Arc::new(AtomicUsize::new(0));
        let unanswered_total = Arc::clone(&unanswered);
        let path: Arc<Option<String>> = Arc::new(http_path);
        let flag = Arc::clone(&stop);
        let scheduler = std::thread::Builder::new()
            .name("cvm-probe".into())
            .spawn(move || {
                let began = Instant::now();
                while !flag.load(Ordering::SeqCst) {
                    let (spacing, read_timeout) = pacing(began.elapsed());
                    if in_flight.load(Ordering::SeqCst) < PROBE_MAX_IN_FLIGHT {
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let counter = Arc::clone(&in_flight);
                        let (tx, flag, in_flight, path, unanswered) = (
                            tx.clone(),
                            Arc::clone(&flag),
                            Arc::clone(&in_flight),
                            Arc::clone(&path),
                            Arc::clone(&unanswered),
                        );
                        let attempt = std::thread::Builder::new()
                            .name("cvm-probe-try".into())
                            .spawn(move || {
                                let ok = match path.as_deref() {
                                    Some(path) => match http_probe(addr, path, read_timeout) {
                                        ProbeOutcome::Answered => true,
                                        ProbeOutcome::NotSent => false,
                                        ProbeOutcome::Unanswered => {
                                            unanswered.fetch_add(1, Ordering::SeqCst);
                                            false
                                        }
                                    },
                                    None => {
                                        TcpStream::connect_timeout(&addr, PROBE_CONNECT_TIMEOUT)
                                            .is_ok()
                                    }
                                };
                                if ok {
                                    let _ = tx.send(Instant::now());
                                    flag.store(true, Ordering::SeqCst);
                                }
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                            });
                        if attempt.is_err() {
                            counter.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(spacing);
                }
            })?;
        Ok(Prober {
            found,
            stop,
            in_flight: attempts,
            unanswered: unanswered_total,
            scheduler: Some(scheduler),
        })
    }
}

/// The longest an attempt can last (its own timeouts: 200 ms to connect, 1 s for the answer), and
/// some slack for a loaded host.
const PROBE_DRAIN_LIMIT: Duration = Duration::from_secs(2);

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Joined first, so no attempt starts after the count below reaches zero.
        if let Some(scheduler) = self.scheduler.take() {
            let _ = scheduler.join();
        }
        let deadline = Instant::now() + PROBE_DRAIN_LIMIT;
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// How one probe attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeOutcome {
    Answered,
    /// No request was sent (the connection was refused or timed out).
    NotSent,
    /// A request was sent but no answer came in time: the server may still serve (and count) it
    /// later, even during the load phase.
    Unanswered,
}

/// One HTTP/1.1 GET, answered by any complete status line. A forwarding proxy (QEMU's user-mode
/// network) may accept the connection before the guest listens, so a connect alone is not ready.
fn http_probe(addr: SocketAddr, path: &str, read_timeout: Duration) -> ProbeOutcome {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, PROBE_CONNECT_TIMEOUT) else {
        return ProbeOutcome::NotSent;
    };
    let _ = s.set_read_timeout(Some(read_timeout));
    let _ = s.set_nodelay(true);
    let req = format!("GET {path} HTTP/1.1\r\nHost: cvm\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return ProbeOutcome::NotSent;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return ProbeOutcome::Unanswered,
            Ok(n) => got += n,
        }
    }
    if buf.starts_with(b"HTTP/1.") {
        ProbeOutcome::Answered
    } else {
        ProbeOutcome::Unanswered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_slows_down_and_waits_longer_as_the_wait_grows() {
        let ms = Duration::from_millis;
        assert_eq!(pacing(ms(0)), (PROBE_SPACING_MIN, PROBE_READ_TIMEOUT_MIN));
        // A VM under emulation, seconds in: a fiftieth and a tenth of the wait.
        assert_eq!(pacing(ms(1000)), (ms(20), ms(250)));
        assert_eq!(pacing(ms(5000)), (ms(50), ms(500)));
        assert_eq!(pacing(ms(60_000)), (ms(50), ms(1000)));
        // Every attempt, with its longest timeouts, ends within the drain that waits for it.
        assert!(PROBE_CONNECT_TIMEOUT + PROBE_READ_TIMEOUT_MAX < PROBE_DRAIN_LIMIT);
    }

    #[test]
    fn a_slow_server_is_answered_within_the_longer_read_timeout() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 256];
                let _ = s.read(&mut req);
                std::thread::sleep(Duration::from_millis(400));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        // Answered in 400 ms: too late for the first attempts' timeout, in time for a later one's.
        assert_eq!(
            http_probe(addr, "/", PROBE_READ_TIMEOUT_MIN),
            ProbeOutcome::Unanswered
        );
        assert_eq!(
            http_probe(addr, "/", PROBE_READ_TIMEOUT_MAX),
            ProbeOutcome::Answered
        );
        server.join().unwrap();
    }
}
