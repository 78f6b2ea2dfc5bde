//! The load generator checked against an independent one: the `http` workload served natively
//! (pinned to the first CPU) and loaded once by cvm's client and once by `wrk`, with the same
//! connections, duration and client CPU. If cvm's client were the bottleneck, or counted wrong,
//! its figure would fall away from wrk's.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::host_has;

const CONNECTIONS: u32 = 4;
const DURATION: Duration = Duration::from_secs(3);
/// Rounds of each client, interleaved so drift on a shared host affects both alike.
const ROUNDS: usize = 3;

/// The native `cvm-guest http` server, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn guest_bin() -> std::path::PathBuf {
    let cvm = common::cvm_bin();
    let dir = cvm.parent().unwrap();
    [
        dir.join("cvm-guest"),
        dir.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("x86_64-unknown-linux-gnu/debug/cvm-guest"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("cvm-guest is built with the workspace")
}

fn start_server(port: u16, cpu: usize) -> Server {
    let child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(guest_bin())
        .args(["http", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--body", "1024"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start cvm-guest http");
    let server = Server(child);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// wrk's requests per second, from its summary line `Requests/sec: N`.
fn wrk_rps(port: u16, cpu: usize) -> f64 {
    let out = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "wrk", "-t1"])
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{}s", DURATION.as_secs()))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("cannot run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output: {text}"))
}

#[test]
fn cvm_and_wrk_agree_on_a_native_server() {
    if !host_has(
        common::which("wrk"),
        "wrk (scripts/setup.sh --test installs it)",
    ) || !host_has(common::which("taskset"), "taskset (util-linux)")
    {
        return;
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !host_has(ncpu >= 2, "two CPUs (server and client each on its own)") {
        return;
    }
    let port = common::free_port();
    let _server = start_server(port, 0);
    // One client thread on the last CPU, as wrk's -t1 under taskset.
    let load = cvm::load::http::HttpLoad {
        cpus: vec![ncpu - 1],
        ..cvm::load::http::HttpLoad::closed(
            ([127, 0, 0, 1], port).into(),
            "/",
            CONNECTIONS,
            DURATION,
        )
    };
    let (mut cvm_best, mut wrk_best) = (0.0f64, 0.0f64);
    for _ in 0..ROUNDS {
        wrk_best = wrk_best.max(wrk_rps(port, ncpu - 1));
        let r = cvm::load::http::run(&load, &AtomicBool::new(false)).expect("cvm's load");
        assert_eq!(r.errors, 0, "{r:?}");
        eprintln!(
            "cvm round: {:.0}/s, client CPU {:.0} %",
            r.rps(),
            100.0 * r.client_cpu_share()
        );
        cvm_best = cvm_best.max(r.rps());
    }
    let ratio = cvm_best / wrk_best;
    eprintln!(
        "cross-check: cvm {cvm_best:.0} requests/s, wrk {wrk_best:.0} requests/s, ratio {ratio:.2}"
    );
    assert!(
        (0.75..=1.25).contains(&ratio),
        "cvm measured {cvm_best:.0}/s and wrk {wrk_best:.0}/s from the same server: they differ by more than 25 %"
    );
}
