//! Runs the built `cvm-guest` the way the host does: markers on an inherited pipe named by
//! `CVM_MARKER_FD`, workloads stopped with SIGTERM, exit codes checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cvm_proto::{Marker, MARKER_FD_ENV};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[path = "../../tests/common/host.rs"]
mod host;
use host::host_has;

const BIN: &str = env!("CARGO_BIN_EXE_cvm-guest");
const TIMEOUT: Duration = Duration::from_secs(60);

/// Tests run in parallel threads: while one test's marker pipe is inheritable, no other test may
/// spawn, or its child would hold the pipe open and the reader would never see end-of-file.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// A running guest and the marker lines it writes.
struct Guest {
    child: Child,
    markers: Receiver<String>,
}

fn guest(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn start(mut command: Command) -> Guest {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let child = {
        let _lock = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        fcntl(&write_end, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear CLOEXEC");
        command.env(MARKER_FD_ENV, write_end.as_raw_fd().to_string());
        let child = command.spawn().expect("spawn cvm-guest");
        drop(write_end);
        child
    };
    Guest {
        child,
        markers: read_lines(read_end),
    }
}

fn read_lines(read_end: OwnedFd) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(std::fs::File::from(read_end)).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Guest {
    /// The next marker line, failing the test after [`TIMEOUT`].
    fn next_marker(&self) -> Option<String> {
        match self.markers.recv_timeout(TIMEOUT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no marker within {TIMEOUT:?}"),
        }
    }

    /// Markers up to and including `CVM:ready`.
    fn until_ready(&self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.next_marker() {
            let ready = line == "CVM:ready";
            seen.push(line);
            if ready {
                return seen;
            }
        }
        panic!("channel closed before CVM:ready; saw {seen:?}");
    }

    fn terminate(&self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Waits until the guest has blocked SIGTERM, i.e. will wait for it rather than die of it:
    /// the only sign of life of an applet that writes no markers.
    fn wait_until_sigterm_is_blocked(&self) {
        wait_until_blocked(self.child.id());
    }

    /// Waits for the exit and returns it with every marker that was not read yet.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cvm-guest did not exit within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr).expect("read stderr");
        }
        let mut rest = Vec::new();
        while let Some(line) = self.next_marker() {
            rest.push(line);
        }
        (status, rest, stderr)
    }
}

/// True once `pid` has blocked SIGTERM or sits in `sigwait` (which unblocks the signals it
/// waits for while it sleeps, so the mask alone can miss it).
fn wait_until_blocked(pid: u32) {
    let deadline = Instant::now() + TIMEOUT;
    let sigterm_bit = 1u64 << (Signal::SIGTERM as u32 - 1);
    loop {
        let read =
            |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
        let blocked = read("status")
            .lines()
            .find_map(|line| line.strip_prefix("SigBlk:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & sigterm_bit != 0);
        // 128 is rt_sigtimedwait on x86_64.
        let waiting = read("wchan").contains("sigtimedwait") || read("syscall").starts_with("128 ");
        if blocked || waiting {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} never blocked SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn run(args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    start(guest(args)).finish()
}

fn result(markers: &[String], metric: &str) -> f64 {
    markers
        .iter()
        .find_map(|line| match Marker::parse(line) {
            Some(Marker::Result {
                metric: m, value, ..
            }) if m == metric => Some(value),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no result {metric} in {markers:?}"))
}

#[test]
fn hello_writes_ready_and_exits_zero() {
    let (status, markers, stderr) = run(&["hello"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(markers, ["CVM:ready"]);
}

#[test]
fn runs_without_a_marker_channel() {
    for fd in ["99", "not-a-number"] {
        let status = Command::new(BIN)
            .arg("hello")
            .env(MARKER_FD_ENV, fd)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(0), "CVM_MARKER_FD={fd}");
    }
}

#[test]
fn dispatches_on_the_name_it_was_called_by() {
    let mut hello = guest(&[]);
    hello.arg0("hello");
    let (status, markers, _) = start(hello).finish();
    assert_eq!(status.code(), Some(0));
    assert_eq!(markers, ["CVM:ready"]);

    let mut init = guest(&["hello"]);
    init.arg0("/sbin/init");
    let (status, markers, _) = start(init).finish();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        markers,
        [
            "CVM:init",
            "CVM:configured",
            "CVM:workload hello",
            "CVM:ready"
        ]
    );
}

#[test]
fn refuses_bad_command_lines_with_exit_two() {
    for args in [
        &["no-such-applet"][..],
        &[],
        &["http", "--port", "http"],
        &["hello", "--loud"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for applet in [
        "init",
        "hello",
        "idle",
        "http",
        "cpu",
        "mem",
        "io",
        "crash",
        "never-ready",
        "aggressor",
        "audit",
        "contain",
    ] {
        assert!(help.contains(applet), "{applet} missing from --help");
    }
}

/// Sends one request and reads one response; returns its headers and body.
fn exchange(stream: &mut TcpStream, request: &str) -> (String, Vec<u8>) {
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream)
}

fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("response body");
    (head, body)
}

#[test]
fn http_serves_fixed_bodies_and_counts_them() {
    let guest = start(guest(&[
        "http",
        "--port",
        "0",
        "--body",
        "1234",
        "--bind",
        "127.0.0.1",
    ]));
    let markers = guest.until_ready();
    let port = result(&markers, "http_port");
    assert!((1.0..=65535.0).contains(&port));
    let mut conn = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();

    let (head, body) = exchange(&mut conn, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body.len(), 1234);
    // Two pipelined requests in one segment, the second split from its end.
    conn.write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    conn.write_all(b"\r\n").unwrap();
    assert_eq!(read_response(&mut conn).1.len(), 1234);
    assert_eq!(read_response(&mut conn).1.len(), 1234);

    let (_, count) = exchange(&mut conn, "GET /cvm/count HTTP/1.1\r\n\r\n");
    assert_eq!(count, b"3");
    // The stats request itself is not counted, and another connection sees the same count.
    let mut other = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    let (head, count) = exchange(
        &mut other,
        "GET /cvm/count HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(count, b"3");
    assert!(head.contains("Connection: close\r\n"));
    let mut rest = Vec::new();
    other.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "server closes after Connection: close");

    let (_, _) = exchange(&mut conn, "GET / HTTP/1.1\r\n\r\n");
    conn.write_all(b"garbage\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut conn);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");

    guest.terminate();
    let (status, _, stderr) = guest.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn http_reports_a_taken_port_as_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, markers, stderr) = run(&["http", "--bind", "127.0.0.1", "--port", &port]);
    assert_eq!(status.code(), Some(1));
    assert!(
        markers.iter().any(|m| m.starts_with("CVM:error http: ")),
        "{markers:?}"
    );
    assert!(stderr.starts_with("cvm-guest http: "), "{stderr}");
}

#[test]
fn idle_and_mem_stop_cleanly_on_sigterm() {
    for args in [&["idle"][..], &["mem", "--mib", "4"]] {
        let guest = start(guest(args));
        assert_eq!(guest.until_ready(), ["CVM:ready"], "{args:?}");
        guest.terminate();
        let (status, _, stderr) = guest.finish();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn never_ready_never_writes_ready() {
    let guest = start(guest(&["never-ready"]));
    guest.wait_until_sigterm_is_blocked();
    guest.terminate();
    let (status, markers, _) = guest.finish();
    assert_eq!(status.code(), Some(0));
    assert!(markers.is_empty(), "{markers:?}");
}

#[test]
fn crash_exits_three() {
    let (status, markers, _) = run(&["crash", "--after-ms", "10", "--ready"]);
    assert_eq!(status.code(), Some(3));
    assert_eq!(markers, ["CVM:ready"]);
    let (status, markers, _) = run(&["crash"]);
    assert_eq!(status.code(), Some(3));
    assert!(markers.is_empty());
}

#[test]
fn cpu_and_mem_bandwidth_report_results() {
    let (status, markers, _) = run(&["cpu", "--iterations", "100_000"]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(markers[0], "CVM:ready");
    assert!(result(&markers, "cpu_score") > 0.0);
    assert!(result(&markers, "cpu_time") > 0.0);

    let (status, markers, _) = run(&["mem", "--mib", "3", "--bandwidth"]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(markers[0], "CVM:ready");
    assert!(result(&markers, "mem_bandwidth_copy") > 0.0);
    assert!(result(&markers, "mem_bandwidth_triad") > 0.0);
}

#[test]
fn io_measures_and_cleans_up() {
    let dir = std::env::temp_dir().join(format!("cvm-guest-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = dir.to_str().unwrap();
    let (status, markers, stderr) = run(&["io", "--dir", dir_arg, "--mib", "2", "--fsyncs", "5"]);
    let left = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(markers[0], "CVM:ready");
    assert!(result(&markers, "io_write_bandwidth") > 0.0);
    let p50 = result(&markers, "io_fsync_latency_p50");
    assert!(p50 > 0.0 && p50 <= result(&markers, "io_fsync_latency_p99"));
    assert_eq!(left, 0, "scratch file left behind");

    let (status, markers, stderr) = run(&["io", "--dir", "/nonexistent/cvm"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        markers.iter().any(|m| m.starts_with("CVM:error ")),
        "{markers:?}"
    );
    assert!(stderr.starts_with("cvm-guest io: "), "{stderr}");
}

#[test]
fn init_execs_its_workload_when_not_pid_one() {
    let (status, markers, _) = run(&["init", "hello"]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        markers,
        [
            "CVM:init",
            "CVM:configured",
            "CVM:workload hello",
            "CVM:ready"
        ]
    );

    let (status, markers, _) = run(&["init", "--", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(status.code(), Some(7));
    assert_eq!(
        markers,
        ["CVM:init", "CVM:configured", "CVM:workload /bin/sh"]
    );

    let (status, markers, _) = run(&["init", "/nonexistent/workload"]);
    assert_eq!(status.code(), Some(127));
    assert!(
        markers.last().is_some_and(|m| m.starts_with("CVM:error ")),
        "{markers:?}"
    );
}

/// `init --watch-port` reports the workload's socket in LISTEN, and not before it listens: the
/// http applet waits `--listen-delay-ms` before it binds, and its own `CVM:ready` comes after.
fn watches_for_listen(command: Command, pid_one: bool) {
    let started = Instant::now();
    let guest = start(command);
    let mut seen = Vec::new();
    let listening_at = loop {
        let line = guest
            .next_marker()
            .expect("channel closed before CVM:listening");
        let done = line.starts_with("CVM:listening ");
        seen.push(line);
        if done {
            break started.elapsed();
        }
    };
    assert!(
        listening_at >= Duration::from_millis(300),
        "LISTEN reported after {listening_at:?}, before the server listened: {seen:?}"
    );
    assert!(seen.contains(&"CVM:workload http".to_string()), "{seen:?}");
    if pid_one {
        // unshare's only child is init, PID 1 of the new namespace: its end ends the namespace.
        let children = format!("/proc/{0}/task/{0}/children", guest.child.id());
        let init: i32 = std::fs::read_to_string(children)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kill(Pid::from_raw(init), Signal::SIGTERM).unwrap();
    } else {
        guest.terminate();
    }
    let (status, _, stderr) = guest.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn init_reports_listening_once_the_workload_listens() {
    let port = free_port().to_string();
    let args = [
        "init",
        "--watch-port",
        &port,
        "--",
        "http",
        "--port",
        &port,
        "--listen-delay-ms",
        "300",
    ];
    watches_for_listen(guest(&args), false);
    if can_be_pid_one() {
        let port = free_port().to_string();
        let args = [
            "init",
            "--watch-port",
            &port,
            "--",
            "http",
            "--port",
            &port,
            "--listen-delay-ms",
            "300",
        ];
        watches_for_listen(as_pid_one(&args), true);
    }
}

/// Whether PID-1 behaviour can be tried here: `unshare --pid` needs root (CI has it).
fn can_be_pid_one() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    host_has(
        ok,
        "`unshare --pid --fork` (needs root), for init's PID 1 path",
    )
}

fn as_pid_one(args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", BIN])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command.stderr(Stdio::piped());
    command
}

#[test]
fn init_as_pid_one_supervises_and_reports_the_exit_code() {
    if !can_be_pid_one() {
        return;
    }
    // An orphan (the backgrounded sleep) must not confuse the reaping.
    let script = format!("sleep 0.05 & exec {BIN} crash --ready");
    let (status, markers, stderr) =
        start(as_pid_one(&["init", "--", "/bin/sh", "-c", &script])).finish();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert_eq!(
        markers,
        [
            "CVM:init",
            "CVM:configured",
            "CVM:workload /bin/sh",
            "CVM:ready",
            "CVM:exit 3"
        ]
    );

    let (status, markers, _) =
        start(as_pid_one(&["init", "--", "/bin/sh", "-c", "kill -9 $$"])).finish();
    assert_eq!(status.code(), Some(137));
    assert_eq!(markers.last().map(String::as_str), Some("CVM:exit 137"));
}

#[test]
fn init_as_pid_one_forwards_sigterm() {
    if !can_be_pid_one() {
        return;
    }
    let guest = start(as_pid_one(&["init", "idle"]));
    assert_eq!(
        guest.until_ready(),
        [
            "CVM:init",
            "CVM:configured",
            "CVM:workload idle",
            "CVM:ready"
        ]
    );
    // unshare's only child is init, PID 1 of the new namespace.
    let children = format!("/proc/{0}/task/{0}/children", guest.child.id());
    let init: u32 = std::fs::read_to_string(children)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(Pid::from_raw(i32::try_from(init).unwrap()), Signal::SIGTERM).unwrap();
    let (status, markers, stderr) = guest.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(markers, ["CVM:exit 0"]);
}
