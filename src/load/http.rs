//! Closed-loop HTTP/1.1 load: a fixed number of keep-alive connections, each one tokio task that
//! sends a GET as soon as the previous response is complete, for a fixed duration. Latencies go
//! into an HDR histogram (microsecond resolution, 3 significant digits).
//!
//! On a 2-core host the client competes with the instance for CPU. The generator therefore runs
//! on a single-threaded runtime pinned to the host's last CPU (the instance is limited to its
//! scenario's vCPUs by its cgroup or VM), and the settings are recorded with the results so a
//! reader knows the client was one core. Numbers from such a host compare backends with each
//! other; they are not the backends' absolute capacity.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

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
}

/// What to send and for how long.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    pub addr: SocketAddr,
    pub path: String,
    pub connections: u32,
    pub duration: Duration,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct HttpLoadResult {
    /// Responses completed within the duration.
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_p50: Duration,
    pub latency_p90: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    /// The CPU the client was pinned to, if pinning worked.
    pub client_cpu: Option<usize>,
}

impl HttpLoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// How the load is generated and limited, for the run's record (`run.json`), so a reader knows
/// the client shared the host with the instance.
pub fn describe(spec: &crate::scenario::LoadSpec) -> std::collections::BTreeMap<String, String> {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let client = if ncpu >= 2 {
        format!(
            "one thread (tokio current-thread runtime) pinned to CPU {} of {ncpu}",
            ncpu - 1
        )
    } else {
        "one thread (tokio current-thread runtime), unpinned: the host has one CPU".to_string()
    };
    [
        ("kind", "http/1.1 keep-alive, closed loop (each connection sends when its previous response is complete)".to_string()),
        ("connections", spec.connections.get_ref().to_string()),
        ("duration_s", spec.duration_s.get_ref().to_string()),
        ("path", spec.path.clone()),
        ("client", client),
        ("latency_histogram", "HDR, 1 µs to 60 s, 3 significant digits".to_string()),
        ("instance_cpu_limit", "the scenario's vcpus (cgroup quota or VM vCPUs)".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs the load on its own pinned thread and returns when it is done (or `stop` is set).
pub fn run(load: &HttpLoad, stop: &AtomicBool) -> Result<HttpLoadResult, LoadError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let cpu = pin_to_last_cpu();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(LoadError::Runtime)?;
                let mut result = rt.block_on(drive(load, stop))?;
                result.client_cpu = cpu;
                Ok(result)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(LoadError::Runtime(std::io::Error::other(
                    "load thread panicked",
                )))
            })
    })
}

fn pin_to_last_cpu() -> Option<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        return None;
    }
    let mut set = nix::sched::CpuSet::new();
    set.set(n - 1).ok()?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).ok()?;
    Some(n - 1)
}

#[derive(Default)]
struct ConnStats {
    hist: Option<Histogram<u64>>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn drive(load: &HttpLoad, stop: &AtomicBool) -> Result<HttpLoadResult, LoadError> {
    // Fail fast, with the cause, if the target is not there at all.
    tokio::net::TcpStream::connect(load.addr)
        .await
        .map_err(|source| LoadError::Connect {
            addr: load.addr,
            source,
        })?;
    // The tasks need an owned flag; the caller's (set by SIGINT) is relayed into it below.
    let local_stop = Arc::new(AtomicBool::new(stop.load(Ordering::SeqCst)));
    let start = Instant::now();
    let deadline = start + load.duration;
    let mut tasks = Vec::new();
    for _ in 0..load.connections {
        tasks.push(tokio::spawn(connection(
            load.addr,
            load.path.clone(),
            deadline,
            Arc::clone(&local_stop),
        )));
    }
    while Instant::now() < deadline && !tasks.iter().all(|t| t.is_finished()) {
        if stop.load(Ordering::SeqCst) {
            local_stop.store(true, Ordering::SeqCst);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut hist = new_histogram();
    let (mut requests, mut errors, mut first) = (0, 0, None);
    for t in tasks {
        if let Ok(s) = t.await {
            requests += s.requests;
            errors += s.errors;
            if let Some(h) = s.hist {
                let _ = hist.add(h);
            }
            first = first.or(s.first_error);
        }
    }
    let elapsed = start
        .elapsed()
        .min(load.duration.max(Duration::from_millis(1)));
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
        elapsed,
        latency_p50: q(0.50),
        latency_p90: q(0.90),
        latency_p99: q(0.99),
        latency_max: Duration::from_micros(hist.max()),
        client_cpu: None,
    })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("valid sigfig"))
}

async fn connection(
    addr: SocketAddr,
    path: String,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> ConnStats {
    let mut stats = ConnStats {
        hist: Some(new_histogram()),
        ..Default::default()
    };
    let fail = |stats: &mut ConnStats, e: String| {
        stats.errors += 1;
        stats.first_error.get_or_insert(e);
    };
    'reconnect: while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                fail(&mut stats, e.to_string());
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(x) => x,
                Err(e) => {
                    fail(&mut stats, e.to_string());
                    continue;
                }
            };
        let driver = tokio::spawn(conn);
        loop {
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::Relaxed) {
                break 'reconnect;
            }
            let req = hyper::Request::get(path.as_str())
                .header(hyper::header::HOST, "cvm")
                .body(Empty::<Bytes>::new())
                .expect("static request parts are valid");
            let sent = Instant::now();
            let outcome = tokio::time::timeout_at(deadline.into(), async {
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let ok = resp.status().is_success();
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                if ok {
                    Ok(())
                } else {
                    Err("non-2xx status".to_string())
                }
            })
            .await;
            match outcome {
                // Responses that complete after the deadline are not counted: the rate is over
                // exactly `duration`.
                Err(_elapsed) => break 'reconnect,
                Ok(Ok(())) => {
                    stats.requests += 1;
                    let us = sent.elapsed().as_micros().max(1) as u64;
                    if let Some(h) = stats.hist.as_mut() {
                        let _ = h.record(us.min(60_000_000));
                    }
                }
                Ok(Err(e)) => {
                    fail(&mut stats, e);
                    driver.abort();
                    continue 'reconnect;
                }
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A tiny keep-alive server that counts what it answers, on an ephemeral loopback port.
    fn counting_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
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

    #[test]
    fn counts_agree_with_the_server_and_percentiles_are_ordered() {
        let (addr, served) = counting_server();
        let load = HttpLoad {
            addr,
            path: "/".into(),
            connections: 2,
            duration: Duration::from_millis(300),
        };
        let r = run(&load, &AtomicBool::new(false)).unwrap();
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
    }

    #[test]
    fn a_missing_server_is_a_clear_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let load = HttpLoad {
            addr,
            path: "/".into(),
            connections: 1,
            duration: Duration::from_millis(100),
        };
        let e = run(&load, &AtomicBool::new(false)).unwrap_err();
        assert!(matches!(e, LoadError::Connect { .. }), "{e}");
    }
}
