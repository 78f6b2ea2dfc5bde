//! One connection of the HTTP load for the whole phase: its send schedule (closed or open loop),
//! the request/response exchange with the response head parsed in place, and its own counts and
//! latency histogram, which [`super::http`] merges over every connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::pace::Pacer;

/// Longest response head accepted; a benchmark server's heads are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Response headers parsed at most.
const MAX_HEADERS: usize = 64;
/// Pause after a failed connect, so a refusing server is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// When a connection sends: closed loop (`interval` none) or on a fixed schedule.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub(super) first_send: Option<Instant>,
    pub(super) interval: Option<Duration>,
    pub(super) deadline: Instant,
}

pub(super) struct ConnStats {
    pub(super) hist: Histogram<u64>,
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// Open loop: requests scheduled before the deadline and unanswered by it.
    pub(super) unanswered: u64,
    pub(super) first_error: Option<String>,
}

impl ConnStats {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn latency(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let _ = self.hist.record(us.clamp(1, 60_000_000));
    }
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("valid sigfig"))
}

/// Where an open loop stands, kept outside the exchange so that what the deadline cuts off can
/// still be accounted for.
#[derive(Default)]
struct OpenLoop {
    /// The intended send time of the request awaiting its response.
    in_flight: Option<Instant>,
    /// The next send the schedule asks for.
    next_send: Option<Instant>,
}

/// One connection for the whole phase, reconnecting after errors. The phase ends at the
/// deadline or when `stop` changes. A closed loop's response still in flight at the deadline
/// is not counted (the rate is over exactly the duration). An open loop accounts for every
/// request its schedule set before the deadline: answered, failed, or unanswered at the
/// deadline (in flight, or not yet sent because the connection still waited on an earlier
/// one), each unanswered one counted and charged the deadline as its latency, so a server that
/// stops answering shows in the tail instead of vanishing from it.
pub(super) async fn connection(
    addr: SocketAddr,
    request: std::sync::Arc<[u8]>,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> ConnStats {
    let mut stats = ConnStats {
        hist: new_histogram(),
        requests: 0,
        errors: 0,
        unanswered: 0,
        first_error: None,
    };
    if *stop.borrow() {
        return stats;
    }
    let mut open = OpenLoop {
        in_flight: None,
        next_send: schedule.first_send,
    };
    let reached_deadline = tokio::select! {
        () = tokio::time::sleep_until(schedule.deadline.into()) => true,
        _ = stop.changed() => false,
        () = exchange_loop(addr, &request, schedule, &mut stats, &mut open) => true,
    };
    if reached_deadline {
        if let Some(interval) = schedule.interval {
            charge_unanswered(&mut stats, &open, interval, schedule.deadline);
        }
    }
    stats
}

/// Counts the open loop's requests left unanswered at `deadline`, each charged the deadline.
fn charge_unanswered(
    stats: &mut ConnStats,
    open: &OpenLoop,
    interval: Duration,
    deadline: Instant,
) {
    let unsent = std::iter::successors(open.next_send, |at| Some(*at + interval));
    for at in open.in_flight.into_iter().chain(unsent) {
        if at >= deadline {
            break;
        }
        stats.unanswered += 1;
        stats.latency(deadline - at);
    }
}

async fn exchange_loop(
    addr: SocketAddr,
    request: &[u8],
    schedule: Schedule,
    stats: &mut ConnStats,
    open: &mut OpenLoop,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let pacer = Pacer::new();
    loop {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                stats.fail(format!("connect: {e}"));
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        loop {
            let from = match (open.next_send, schedule.interval) {
                (Some(at), Some(interval)) => {
                    if at >= schedule.deadline {
                        // Nothing more is scheduled within the phase.
                        std::future::pending::<()>().await;
                    }
                    pacer.until(at).await;
                    open.next_send = Some(at + interval);
                    open.in_flight = Some(at);
                    at
                }
                _ => Instant::now(),
            };
            let wait = match schedule.interval {
                Some(i) if i >= SPARSE => Wait::Spin,
                _ => Wait::Block,
            };
            match exchange(&mut stream, request, &mut buf, wait).await {
                Ok(keep_alive) => {
                    let done = Instant::now();
                    if done >= schedule.deadline {
                        // Answered too late: still in flight at the deadline.
                        return;
                    }
                    open.in_flight = None;
                    stats.requests += 1;
                    stats.latency(done.duration_since(from));
                    if !keep_alive {
                        break;
                    }
                }
                Err(e) => {
                    open.in_flight = None;
                    stats.fail(e);
                    break;
                }
            }
        }
    }
}

/// Sends the request and reads one whole response. `Ok(keep_alive)` for a 2xx response; the
/// flag is false when the server said it will close the connection.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    wait: Wait,
) -> Result<bool, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    buf.clear();
    let (head, body, status, keep_alive) = loop {
        read_more(stream, buf, wait).await?;
        if let Some(parsed) = parse_head(buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("response head longer than {MAX_HEAD} bytes"));
        }
    };
    let total = head + body;
    while buf.len() < total {
        read_more(stream, buf, wait).await?;
    }
    if buf.len() > total {
        return Err("bytes after the response that no request asked for".into());
    }
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    Ok(keep_alive)
}

/// How a connection waits for its response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// In the reactor (a closed loop: the next request follows at once, the client is busy).
    Block,
    /// Polling for up to [`RESPONSE_SPIN`] first, yielding to the thread's other connections,
    /// then in the reactor (an open loop whose connections send at most every [`SPARSE`]:
    /// at most half its CPU, in practice a response's round trip per request). Between an open loop's sparse requests the client's
    /// CPU would otherwise go idle, and on a virtual machine an idle vCPU halts: waking it for
    /// the response added a wake-up to every request that a closed loop, never idle, does not
    /// pay (native's open-loop p50 at 100 requests/s read 3-4x its closed-loop p50).
    Spin,
}

/// How long an open loop's connection polls for its response before it sleeps.
const RESPONSE_SPIN: Duration = Duration::from_micros(500);
/// A connection's send interval from which its client CPU would idle between requests, so it
/// polls for its responses: at shorter intervals the client stays busy anyway, and polling
/// would only add to its CPU use.
const SPARSE: Duration = Duration::from_millis(1);

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Wait) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    if wait == Wait::Spin {
        let until = Instant::now() + RESPONSE_SPIN;
        while Instant::now() < until {
            match stream.try_read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
    }
    match stream.read(&mut chunk).await {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("receive: {e}")),
    }
}

/// A complete response head: (head length, body length, status, keep-alive). `None` while the
/// head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, usize, u16, bool)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let mut length = None;
    let mut keep_alive = resp.version == Some(1);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
            length = Some(v.ok_or("malformed Content-Length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(
                "chunked responses are not supported: the server must send Content-Length".into(),
            );
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep_alive = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    // 204 and 304 have no body by definition.
    let body = if matches!(status, 204 | 304) {
        0
    } else {
        length.ok_or("response without Content-Length")?
    };
    Ok(Some((head, body, status, keep_alive)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_parsed_with_their_length_and_connection() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_head(ok).unwrap(), Some((38, 5, 200, true)));
        assert_eq!(parse_head(&ok[..20]).unwrap(), None);
        let close = b"HTTP/1.1 503 No\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_head(close).unwrap(),
            Some((close.len(), 0, 503, false))
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).unwrap_err().contains("Content-Length"));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
