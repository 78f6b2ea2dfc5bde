//! App scenarios end to end on native: a real Redis measured by `redis-benchmark` and a real
//! nginx by cvm's load and `wrk`, each with the server's own count agreeing, and broken clients
//! (one that exits non-zero, one whose output is cut short, an inside one that prints something
//! else) each making a failed run with its reason in the note, never a figure.

mod common;

use common::{cvm_cmd, free_port, host_has, is_root, stderr};
use cvm::results::{read_samples, SampleRow};

/// Runs `scenario` (TOML text) on native once and returns its samples.
fn run_native(scenario: &str) -> (Vec<SampleRow>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    std::fs::write(&path, scenario).unwrap();
    let out_dir = dir.path().join("out");
    let out = cvm_cmd()
        .args([
            "compare",
            "--no-progress",
            "--backends",
            "native",
            "--scenario",
        ])
        .arg(&path)
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    let rows = read_samples(&out_dir.join("samples.csv")).unwrap_or_default();
    (rows, stderr(&out))
}

fn failure_notes(rows: &[SampleRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.metric == "run_failed")
        .map(|r| r.note.clone())
        .collect()
}

/// A server (cvm-guest's http applet) and a host client given as a shell script.
fn host_client(port: u16, script: &str) -> String {
    format!(
        r#"name = "fake-client"
runs = 1
warmup = 0
timeout_s = 30
[workload]
applet = "http"
args = ["--port", "{port}"]
[readiness]
kind = "tcp"
port = {port}
[resources]
network = "private"
[app.client]
side = "host"
command = ["/bin/sh", "-c", "{script}"]
parser = "redis-benchmark"
"#
    )
}

#[test]
fn a_broken_client_makes_a_failed_run_with_its_reason_never_a_zero() {
    if !host_has(is_root(), "needs root (native's cgroup)") {
        return;
    }
    let cases = [
        (
            host_client(free_port(), "echo starting; exit 3"),
            "ended with exit code 3",
        ),
        (
            // A redis-benchmark that stopped after its SET row: no GET figures.
            host_client(
                free_port(),
                r#"echo '\"SET\",\"1000.0\",\"0.1\",\"0.1\",\"0.1\",\"0.1\",\"0.1\",\"0.1\"'"#,
            ),
            "has no GET row",
        ),
        (
            r#"name = "fake-inside"
runs = 1
warmup = 0
timeout_s = 30
[workload]
command = ["/bin/sh", "-c", "echo CVM:ready >&$CVM_MARKER_FD; echo 'not sysbench' >&2"]
exits = true
[app.client]
side = "inside"
parser = "sysbench"
"#
            .to_string(),
            "cannot be read by the `sysbench` parser",
        ),
    ];
    for (scenario, reason) in cases {
        let (rows, err) = run_native(&scenario);
        let notes = failure_notes(&rows);
        assert_eq!(notes.len(), 1, "{notes:?}\n{err}");
        assert!(notes[0].contains(reason), "{notes:?}");
        assert!(
            !rows
                .iter()
                .any(|r| r.metric.starts_with("redis_") || r.metric.starts_with("sysbench_")),
            "a broken client left figures behind:\n{err}"
        );
    }
}

#[test]
fn redis_is_measured_and_its_own_count_agrees_with_the_clients() {
    let have = common::disk::which("redis-server").is_some()
        && common::disk::which("redis-benchmark").is_some();
    if !host_has(
        is_root() && have,
        "needs root and `scripts/setup.sh --apps` (redis)",
    ) {
        return;
    }
    let port = free_port().to_string();
    let scenario = include_str!("../scenarios/redis.toml")
        .replace("6379", &port)
        .replace("runs = 3", "runs = 1")
        .replace("warmup = 1", "warmup = 0");
    let (rows, err) = run_native(&scenario);
    let value = |metric: &str| {
        rows.iter()
            .find(|r| r.metric == metric && r.backend == "native")
            .map(|r| r.value)
            .unwrap_or_else(|| panic!("no {metric}:\n{err}"))
    };
    assert!(failure_notes(&rows).is_empty(), "{err}");
    assert!(value("redis_get_rps") > 0.0 && value("redis_set_rps") > 0.0);
    assert!(value("redis_get_latency_p99") >= value("redis_get_latency_p50"));
    let (client, server) = (value("redis_requests"), value("redis_server_commands"));
    // redis-benchmark's -n 20000 per test, GET and SET; the server may count its set-up
    // commands too, within its 4 connections.
    assert_eq!(client, 40_000.0);
    assert!(
        (0.0..=4.0).contains(&(server - client)),
        "{server} vs {client}"
    );
    // The image counts the package's programs (app) and the libraries they load (libs).
    assert!(value("disk.app") > 1e6 && value("disk.libs") > 1e6);
}

#[test]
fn nginx_is_measured_by_cvms_load_and_wrk_each_agreeing_with_its_own_count() {
    let have = ["nginx", "wrk", "curl"]
        .iter()
        .all(|p| common::disk::which(p).is_some());
    if !host_has(
        is_root() && have,
        "needs root and `scripts/setup.sh --apps` (nginx, wrk, curl)",
    ) {
        return;
    }
    let port = free_port().to_string();
    let scenario = include_str!("../scenarios/nginx.toml")
        .replace("8080", &port)
        .replace("runs = 3", "runs = 1")
        .replace("warmup = 1", "warmup = 0");
    let (rows, err) = run_native(&scenario);
    let value = |metric: &str| {
        rows.iter()
            .find(|r| r.metric == metric && r.backend == "native")
            .map(|r| r.value)
            .unwrap_or_else(|| panic!("no {metric}:\n{err}"))
    };
    assert!(failure_notes(&rows).is_empty(), "{err}");
    assert!(value("http_rps") > 0.0 && value("wrk_rps") > 0.0);
    assert!(value("wrk_latency_p99") >= value("wrk_latency_p50"));
    // nginx's stub_status count over each phase: at most the 4 connections' last requests
    // (answered after the client's deadline) above the client's own count.
    for (client, server) in [
        ("http_requests", "http_server_requests"),
        ("wrk_requests", "nginx_server_requests"),
    ] {
        let (c, s) = (value(client), value(server));
        assert!(
            c > 0.0 && (0.0..=4.0).contains(&(s - c)),
            "{server} {s} vs {client} {c}"
        );
    }
    assert!(value("disk.app") > 1e6 && value("disk.libs") > 1e6);
}
