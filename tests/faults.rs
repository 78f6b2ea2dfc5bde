//! Faults on the native backend: a crash under load, SIGINT/SIGTERM while launching and while
//! measuring, an unwritable output directory. Each must end with the documented exit code, the
//! samples measured so far intact, and nothing of the run left on the host.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cvm::results::SampleRow;

use common::{cvm, cvm_cmd, free_port, stderr};

fn scenario(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("s.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn web(port: u16, duration: u32) -> String {
    format!(
        "name = \"faulty\"\nruns = 3\nwarmup = 0\ntimeout_s = 20\n[workload]\napplet = \"http\"\nargs = [\"--port\", \"{port}\"]\n\
         [readiness]\nkind = \"http\"\nport = {port}\n[load]\nkind = \"http\"\nduration_s = {duration}\nconnections = 2\n\
         [resources]\nnetwork = \"private\"\n"
    )
}

fn start(scenario: &Path, out: &Path) -> Child {
    cvm_cmd()
        .args([
            "compare",
            "--no-progress",
            "--backends",
            "native",
            "--scenario",
        ])
        .arg(scenario)
        .arg("--output")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// PIDs of processes whose command line contains `needle` (the unique port of the test).
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn samples(out: &Path) -> Vec<SampleRow> {
    cvm::results::read_samples(&out.join("samples.csv")).expect("samples.csv must stay parseable")
}

/// Whether a sample of `metric` is on disk yet.
fn has_sample(out: &Path, metric: &str) -> bool {
    cvm::results::read_samples(&out.join("samples.csv"))
        .is_ok_and(|rows| rows.iter().any(|r| r.metric == metric))
}

fn status(out: &Path) -> String {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    meta["status"].as_str().unwrap().to_string()
}

fn signal(child: &Child, sig: i32) {
    // The test started this cvm; it signals that PID only.
    assert_eq!(
        std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn sigint_during_load_keeps_samples_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = scenario(dir.path(), &web(port, 30));
    let out = dir.path().join("out");
    let before = cvm::audit::snapshot();
    let child = start(&s, &out);
    // Ready (the first run's ready_latency is on disk) and measuring: interrupted mid-run.
    wait_for("the first sample", || has_sample(&out, "ready_latency"));
    let placed = cvm::backend::placement::Placement::split(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        1,
    )
    .filter(|_| common::is_root() && cvm::backend::cgroup::cpuset_supported());
    if let Some(p) = &placed {
        // During the load, the server runs only on the instance's CPUs (its cgroup's cpuset).
        let server = pids_with(&format!("--port {port}"));
        assert_eq!(server.len(), 1, "{server:?}");
        let allowed = std::fs::read_to_string(format!("/proc/{}/status", server[0])).unwrap();
        let expected = format!(
            "Cpus_allowed_list:\t{}",
            cvm::backend::placement::cpu_list(&p.instance)
        );
        assert!(allowed.lines().any(|l| l == expected), "{allowed}");
    }
    signal(&child, 2);
    let child_pid = child.id();
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(130), "{}", stderr(&result));
    assert!(samples(&out).iter().any(|r| r.metric == "ready_latency"));
    assert_eq!(status(&out), "interrupted");
    assert!(
        pids_with(&format!("--port {port}")).is_empty(),
        "the workload outlived cvm"
    );
    // Nothing of the run stays: no cgroup in any hierarchy (cpuset included), no process.
    let token = format!("cvm-{:04x}", child_pid & 0xffff);
    let leaked = cvm::audit::snapshot()
        .matching(&token)
        .leaked_since(&before);
    assert!(leaked.is_empty(), "left behind: {leaked:?}");
}

#[test]
fn sigterm_while_waiting_for_readiness_exits_130_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        // The sleep's unusual length tags its process for this test.
        "name = \"stuck\"\nruns = 2\nwarmup = 0\ntimeout_s = 60\n[workload]\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 1017\"]\n",
    );
    let out = dir.path().join("out");
    let child = start(&s, &out);
    wait_for("the workload to start", || {
        !pids_with("sleep 1017").is_empty()
    });
    signal(&child, 15);
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(130), "{}", stderr(&result));
    assert_eq!(status(&out), "interrupted");
    wait_for("the workload to be gone", || {
        pids_with("sleep 1017").is_empty()
    });
}

#[test]
fn a_workload_killed_under_load_is_a_failed_run_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = scenario(dir.path(), &web(port, 2));
    let out = dir.path().join("out");
    let child = start(&s, &out);
    wait_for("the first sample", || has_sample(&out, "ready_latency"));
    // A crash of the workload cvm started for this test (SIGKILL, as the OOM killer would): the
    // first of its processes found is killed, whatever the run is doing by then.
    wait_for("a workload to kill", || {
        pids_with(&format!("http --port {port}"))
            .into_iter()
            .any(|pid| {
                std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            })
    });
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let rows = samples(&out);
    assert_eq!(
        rows.iter().filter(|r| r.metric == "run_failed").count(),
        1,
        "{}",
        stderr(&result)
    );
    // The other runs completed with their load figures.
    assert_eq!(rows.iter().filter(|r| r.metric == "http_rps").count(), 2);
    assert!(pids_with(&format!("--port {port}")).is_empty());
}

#[test]
fn an_unwritable_output_directory_is_bad_input() {
    let out = cvm(&[
        "compare",
        "--scenario",
        "startup",
        "--backends",
        "native",
        "--output",
        "/dev/null/results",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/dev/null/results"),
        "{}",
        stderr(&out)
    );
}

/// cvm's resident memory, in bytes (`VmRSS`), while process `pid` lives.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A server that logs a line for every request, and more (a shell loop beside it writes its
/// stderr as fast as it can: about 200 k lines/s on the reference host), must not grow cvm's
/// memory while nothing reads the instance's events: during the load phase.
#[test]
fn a_server_that_logs_every_request_does_not_grow_cvms_memory() {
    /// Growth beyond this fails the test; cvm is killed beyond the second (a test must not eat
    /// the host's memory).
    const ALLOWED: u64 = 48 << 20;
    const STOP_AT: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Native runs host paths: the cvm-guest this test run built.
    let guest = cvm::image::find_guest().expect("cvm-guest is not built");
    let guest = guest.display();
    let s = scenario(
        dir.path(),
        &format!(
            "name = \"chatty\"\nruns = 1\nwarmup = 0\ntimeout_s = 30\n[workload]\n\
             command = [\"/bin/sh\", \"-c\", \"{guest} http --port {port} & \
             while :; do echo 'GET / HTTP/1.1 200 served in 12 us'; done >&2\"]\n\
             [readiness]\nkind = \"http\"\nport = {port}\n\
             [load]\nkind = \"http\"\nduration_s = 8\nconnections = 2\n\
             [resources]\nnetwork = \"private\"\n"
        ),
    );
    let out = dir.path().join("out");
    let mut child = start(&s, &out);
    let pid = child.id();
    wait_for("the run to be ready", || has_sample(&out, "ready_latency"));
    let base = rss(pid).unwrap_or_default();
    let mut peak = base;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(rss(pid).unwrap_or_default());
        if peak > base + STOP_AT {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = child.wait_with_output().unwrap();
    let grew = peak.saturating_sub(base);
    eprintln!(
        "cvm RSS at ready {:.1} MiB, peak {:.1} MiB (+{:.1} MiB)",
        base as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        grew as f64 / 1048576.0
    );
    assert_eq!(result.status.code(), Some(0), "{}", stderr(&result));
    // The load phase ran, with the logger going throughout.
    assert!(samples(&out).iter().any(|r| r.metric == "http_rps"));
    assert!(
        grew < ALLOWED,
        "cvm's memory grew by {} MiB during the run",
        grew >> 20
    );
}
