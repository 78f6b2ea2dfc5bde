//! HTTP/1.1 keep-alive load: a fixed number of connections for a fixed duration, spread over one
//! or more client threads, each thread a single-threaded tokio runtime pinned to one of the
//! client's CPUs. Latencies go into an HDR histogram (microsecond resolution, 3 significant
//! digits).
//!
//! Two loops:
//! - **closed** (no `rate`): each connection sends its next request as soon as the previous
//!   response is complete; latency is measured from the send.
//! - **open** (`rate` requests/s in all): each connection sends on a fixed schedule, and latency
//!   is measured from the request's *intended* send time, as wrk2 does. A server that stalls
//!   then shows the stall in every request that should have been sent during it, instead of
//!   hiding it by sending less (coordinated omission). Sends are timed by a sub-millisecond
//!   clock ([`super::pace`]); a connection that sends at most every millisecond polls for its
//!   response for up to 0.5 ms before it sleeps (so the client's CPU, idle between sparse
//!   requests, is not woken for each one: a cost a closed loop never pays); every request scheduled before the deadline is accounted for:
//!   answered, failed, or unanswered at the deadline (counted, and charged the deadline as its
//!   latency), so the tail near a server's capacity is never dropped.
//!
//! The client is a measuring instrument, so it does as little per request as it can: the request
//! is prebuilt bytes written with one call, the response head is parsed in place with `httparse`,
//! and the body is counted, not copied into a message. A general HTTP client (hyper) spent most
//! of a client core on its own machinery — a separate connection task woken for every request,
//! a timer per request, a request and body object — and reached about 0.76x of `wrk` against the
//! same server. The deadline is one timer per connection.
//!
//! The client's CPU time is measured per thread (`getrusage(RUSAGE_THREAD)`), so a run whose
//! client was the bottleneck can be labelled as such rather than presented as the server's
//! figure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::conn::{connection, new_histogram, ConnStats, Schedule};
use cvm_proto::metric::CLIENT_BOUND_SHARE;

/// How often the caller's stop flag (set by SIGINT) is looked at during the load.
const STOP_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot start the load generator's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("no connection to {addr} could be made")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no request completed during the load phase ({errors} errors; first: {first})")]
    NothingCompleted { errors: u64, first: String },
    #[error("a load client thread panicked")]
    Panicked,
}

/// What to send, how, and for how long.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    pub addr: SocketAddr,
    pub path: String,
    pub connections: u32,
    pub duration: Duration,
    /// Client threads (at least one); connections are dealt out to them in turn.
    pub threads: u32,
    /// Requests per second in all (open loop); `None` is a closed loop.
    pub rate: Option<f64>,
    /// CPUs the client threads are pinned to, thread `i` to `cpus[i % len]`; empty: unpinned.
    pub cpus: Vec<usize>,
}

impl HttpLoad {
    /// A closed loop of one client thread pinned to [`default_client_cpus`].
    pub fn closed(addr: SocketAddr, path: &str, connections: u32, duration: Duration) -> Self {
        HttpLoad {
            addr,
            path: path.to_string(),
            connections,
            duration,
            threads: 1,
            rate: None,
            cpus: default_client_cpus(),
        }
    }
}

/// The host's last CPU when it has two or more (the instance is placed on the others), else
/// none: a one-CPU host cannot separate client and server.
pub fn default_client_cpus() -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        Vec::new()
    } else {
        vec![n - 1]
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct HttpLoadResult {
    /// Responses completed within the duration.
    pub requests: u64,
    pub errors: u64,
    /// Open loop: requests scheduled before the deadline and unanswered by it (in the latency
    /// percentiles, charged the deadline); always 0 in a closed loop.
    pub unanswered: u64,
    pub elapsed: Duration,
    pub latency_p50: Duration,
    pub latency_p90: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    /// The CPUs the client threads were pinned to (empty if pinning did not happen).
    pub client_cpus: Vec<usize>,
    /// CPU time the client threads used (user + system), over the whole load phase.
    pub client_cpu_time: Duration,
    /// How many client threads ran.
    pub threads: u32,
}

impl HttpLoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The client's CPU use as a share of the CPUs it could use (1.0: every client CPU busy for
    /// the whole phase). Threads on one CPU share it, so the capacity is the smaller count.
    pub fn client_cpu_share(&self) -> f64 {
        let cpus = if self.client_cpus.is_empty() {
            self.threads as usize
        } else {
            let mut distinct = self.client_cpus.clone();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len().min(self.threads as usize)
        };
        let capacity = self.elapsed.as_secs_f64() * cpus.max(1) as f64;
        self.client_cpu_time.as_secs_f64() / capacity
    }

    /// True when the client used nearly all of its CPUs: the figure may be the client's limit.
    pub fn client_bound(&self) -> bool {
        self.client_cpu_share() > CLIENT_BOUND_SHARE
    }
}

/// How the load is generated and where it runs, for the run's record (`run.json`).
/// `client_cpus` are the CPUs the client threads are pinned to (empty: unpinned); `placement`
/// says where the instance runs, as the caller decided it.
pub fn describe(
    spec: &crate::scenario::LoadSpec,
    client_cpus: &[usize],
    placement: &str,
) -> std::collections::BTreeMap<String, String> {
    let threads = *spec.client_threads.get_ref();
    let client = if client_cpus.is_empty() {
        format!("{threads} thread(s), each a tokio current-thread runtime, unpinned")
    } else {
        format!("{threads} thread(s), each a tokio current-thread runtime, pinned to CPU(s) {client_cpus:?} in turn")
    };
    let kind = match spec.rate.as_ref().map(|r| *r.get_ref()) {
        None => "http/1.1 keep-alive, closed loop (each connection sends when its previous response is complete; latency from the send)".to_string(),
        Some(r) => format!("http/1.1 keep-alive, open loop at {r} requests/s in all (latency from each request's intended send time, as wrk2; sends timed by a timerfd and a 50 µs spin; a connection sending at most every 1 ms polls up to 0.5 ms for its response, which load_client_cpu includes; requests unanswered at the deadline counted and charged the deadline)"),
    };
    [
        ("kind", kind),
        ("connections", spec.connections.get_ref().to_string()),
        ("client_threads", threads.to_string()),
        ("duration_s", spec.duration_s.get_ref().to_string()),
        ("path", spec.path.clone()),
        ("client", client),
        ("placement", placement.to_string()),
        (
            "client_bound_rule",
            format!(
                "a run is labelled client-bound when load_client_cpu exceeds {CLIENT_BOUND_SHARE} of the client's CPUs"
            ),
        ),
        ("latency_histogram", "HDR, 1 µs to 60 s, 3 significant digits".to_string()),
        ("instance_cpu_limit", "the scenario's vcpus (cgroup quota or VM vCPUs)".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs the load on its own pinned threads and returns when it is done (or `stop` is set).
pub fn run(load: &HttpLoad, stop: &AtomicBool) -> Result<HttpLoadResult, LoadError> {
    // Fail fast, with the cause, if the target is not there at all.
    std::net::TcpStream::connect_timeout(&load.addr, Duration::from_secs(5)).map_err(|source| {
        LoadError::Connect {
            addr: load.addr,
            source,
        }
    })?;
    // An open loop's idle CPUs poll instead of halting (see `idle`); a closed loop never idles.
    let _idle = load.rate.is_some().then(super::idle::hold);
    let threads = load.threads.clamp(1, load.connections.max(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let deadline = start + load.duration;
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let plan = ThreadPlan {
                    load,
                    index: t,
                    threads,
                    start,
                    deadline,
                    cpu: (!load.cpus.is_empty()).then(|| load.cpus[t as usize % load.cpus.len()]),
                    stop: stop_rx.clone(),
                };
                scope.spawn(move || client_thread(plan))
            })
            .collect();
        // Relays the caller's flag (set by a signal handler) to the connections.
        while Instant::now() < deadline && !handles.iter().all(|h| h.is_finished()) {
            if stop.load(Ordering::SeqCst) {
                let _ = stop_tx.send(true);
                break;
            }
            std::thread::sleep(STOP_POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(LoadError::Panicked)))
            .collect::<Vec<_>>()
    });
    let elapsed = start
        .elapsed()
        .min(load.duration.max(Duration::from_millis(1)));
    let mut hist = new_histogram();
    let (mut requests, mut errors, mut unanswered, mut first) = (0, 0, 0, None);
    let (mut cpu_time, mut cpus) = (Duration::ZERO, Vec::new());
    for outcome in outcomes {
        let t = outcome?;
        cpu_time += t.cpu_time;
        cpus.extend(t.cpu);
        for s in t.connections {
            requests += s.requests;
            errors += s.errors;
            unanswered += s.unanswered;
            let _ = hist.add(&s.hist);
            first = first.or(s.first_error);
        }
    }
    if requests == 0 {
        return Err(LoadError::NothingCompleted {
            errors,
            first: first.unwrap_or_else(|| "none".into()),
        });
    }
    let q = |p: f64| Duration::from_micros(hist.value_at_quantile(p));
    Ok(HttpLoadResult {
        requests,
        errors,
        unanswered,
        elapsed,
        latency_p50: q(0.50),
        latency_p90: q(0.90),
        latency_p99: q(0.99),
        latency_max: Duration::from_micros(hist.max()),
        client_cpus: cpus,
        client_cpu_time: cpu_time,
        threads,
    })
}

/// One client thread's share of the load.
struct ThreadPlan<'a> {
    load: &'a HttpLoad,
    index: u32,
    threads: u32,
    start: Instant,
    deadline: Instant,
    cpu: Option<usize>,
    stop: watch::Receiver<bool>,
}

struct ThreadOutcome {
    connections: Vec<ConnStats>,
    cpu_time: Duration,
    cpu: Option<usize>,
}

fn client_thread(plan: ThreadPlan) -> Result<ThreadOutcome, LoadError> {
    let cpu = plan.cpu.filter(|&c| pin_to(c));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    let load = plan.load;
    let request: std::sync::Arc<[u8]> = request_bytes(&load.path, load.addr).into();
    // Connection `c` belongs to thread `c % threads`; each sends `rate / connections`.
    let mine: Vec<u32> = (0..load.connections)
        .filter(|c| c % plan.threads == plan.index)
        .collect();
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64(f64::from(load.connections) / r));
    let connections = rt.block_on(async {
        let tasks: Vec<_> = mine
            .iter()
            .map(|&c| {
                // Staggered, so the connections' sends are spread evenly over each interval.
                let first_send = interval
                    .map(|i| plan.start + i.mul_f64(f64::from(c) / f64::from(load.connections)));
                tokio::spawn(connection(
                    load.addr,
                    std::sync::Arc::clone(&request),
                    Schedule {
                        first_send,
                        interval,
                        deadline: plan.deadline,
                    },
                    plan.stop.clone(),
                ))
            })
            .collect();
        let mut stats = Vec::new();
        for t in tasks {
            if let Ok(s) = t.await {
                stats.push(s);
            }
        }
        stats
    });
    Ok(ThreadOutcome {
        connections,
        cpu_time: thread_cpu_time(),
        cpu,
    })
}

fn pin_to(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// User plus system CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_THREAD).map_or(Duration::ZERO, |u| {
        let d = |t: nix::sys::time::TimeVal| {
            Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64)
        };
        d(u.user_time()) + d(u.system_time())
    })
}

/// The one request every connection sends, as bytes.
fn request_bytes(path: &str, addr: SocketAddr) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// The `cvm-guest http` server's own count of requests served (`GET /cvm/count`; that
/// request is not counted itself).
pub fn server_count(addr: SocketAddr) -> Option<u64> {
    use cvm_proto::applet::HTTP_COUNT_PATH;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!("GET {HTTP_COUNT_PATH} HTTP/1.1\r\nHost: cvm\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then_some(())?;
    body.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    /// A tiny keep-alive server that counts what it answers, on an ephemeral loopback port.
    fn counting_server() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = [0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            c.fetch_add(1, Ordering::SeqCst);
                            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, count)
    }

    fn load(addr: SocketAddr, connections: u32, ms: u64) -> HttpLoad {
        HttpLoad::closed(addr, "/", connections, Duration::from_millis(ms))
    }

    #[test]
    fn counts_agree_with_the_server_and_percentiles_are_ordered() {
        let (addr, served) = counting_server();
        let r = run(&load(addr, 2, 300), &AtomicBool::new(false)).unwrap();
        assert!(r.requests > 10, "{r:?}");
        assert_eq!(r.errors, 0);
        let served = served.load(Ordering::SeqCst);
        // At most one request per connection can be in flight when the deadline cuts it off.
        assert!(
            served >= r.requests && served <= r.requests + 2,
            "served {served}, counted {}",
            r.requests
        );
        assert!(
            r.latency_p50 <= r.latency_p90
                && r.latency_p90 <= r.latency_p99
                && r.latency_p99 <= r.latency_max
        );
        assert!(r.client_cpu_time > Duration::ZERO, "{r:?}");
    }

    #[test]
    fn connections_are_dealt_to_every_client_thread() {
        let (addr, served) = counting_server();
        let mut l = load(addr, 3, 300);
        l.threads = 2;
        l.cpus = Vec::new();
        let r = run(&l, &AtomicBool::new(false)).unwrap();
        assert_eq!(r.threads, 2);
        assert_eq!(r.errors, 0);
        let served = served.load(Ordering::SeqCst);
        assert!(
            served >= r.requests && served <= r.requests + 3,
            "served {served}, counted {}",
            r.requests
        );
    }

    #[test]
    fn the_open_loop_sends_at_its_rate() {
        let (addr, _) = counting_server();
        let mut l = load(addr, 2, 1000);
        l.rate = Some(200.0);
        let r = run(&l, &AtomicBool::new(false)).unwrap();
        // 200/s for one second: the schedule allows 200 sends, a closed loop would do thousands.
        assert!((150..=202).contains(&r.requests), "{r:?}");
    }

    #[test]
    fn open_loop_latency_counts_from_the_intended_send_time() {
        // A server that answers one request per 50 ms, offered 100/s on one connection: the
        // queue grows, so late requests wait far longer than one service time.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = [0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            std::thread::sleep(Duration::from_millis(50));
                            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let mut l = load(addr, 1, 1000);
        l.rate = Some(100.0);
        let r = run(&l, &AtomicBool::new(false)).unwrap();
        // Served at 20/s against 100/s intended: by the end, requests are ~0.8 s late. A closed
        // loop (latency from the send) would report ~50 ms for every one.
        assert!(r.latency_max > Duration::from_millis(400), "{r:?}");
        assert!(r.latency_p50 > Duration::from_millis(150), "{r:?}");
    }

    #[test]
    fn an_open_loop_counts_what_a_server_that_stops_answering_left_at_the_deadline() {
        // Answers for 300 ms, then reads requests and never answers again.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut quiet_from = None;
            for stream in listener.incoming().flatten() {
                let quiet = *quiet_from.get_or_insert(Instant::now() + Duration::from_millis(300));
                std::thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if Instant::now() >= quiet => {}
                            Ok(_) => {
                                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                                if s.write_all(ok).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        let mut l = load(addr, 1, 1000);
        l.rate = Some(100.0);
        let r = run(&l, &AtomicBool::new(false)).unwrap();
        // One connection at 100/s for 1 s: sends at 0, 10, ..., 990 ms, 100 of them, each
        // answered, failed or counted unanswered at the deadline.
        assert_eq!(r.requests + r.errors + r.unanswered, 100, "{r:?}");
        assert!(r.requests >= 1 && r.unanswered >= 50, "{r:?}");
        assert_eq!(r.errors, 0, "{r:?}");
        // The first unanswered request waited from about 300 ms to the deadline.
        assert!(r.latency_max >= Duration::from_millis(600), "{r:?}");
        assert!(r.latency_p50 >= Duration::from_millis(100), "{r:?}");
    }

    #[test]
    fn a_missing_server_is_a_clear_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = run(&load(addr, 1, 100), &AtomicBool::new(false)).unwrap_err();
        assert!(matches!(e, LoadError::Connect { .. }), "{e}");
    }

    #[test]
    fn client_cpu_share_is_time_over_capacity() {
        let r = HttpLoadResult {
            requests: 1,
            errors: 0,
            unanswered: 0,
            elapsed: Duration::from_secs(2),
            latency_p50: Duration::ZERO,
            latency_p90: Duration::ZERO,
            latency_p99: Duration::ZERO,
            latency_max: Duration::ZERO,
            client_cpus: vec![1, 1],
            client_cpu_time: Duration::from_millis(1900),
            threads: 2,
        };
        // Two threads on one CPU have one CPU: 1.9 s of 2 s is 95 %, client-bound.
        assert!((r.client_cpu_share() - 0.95).abs() < 1e-9);
        assert!(r.client_bound());
        let spread = HttpLoadResult {
            client_cpus: vec![0, 1],
            ..r
        };
        assert!((spread.client_cpu_share() - 0.475).abs() < 1e-9);
        assert!(!spread.client_bound());
    }
}
