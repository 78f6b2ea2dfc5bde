//! Validity of the measurements: a known memory ballast is reported as such, disk layers add up
//! to the total, and the load generator's request count agrees with the server's own.

mod common;

use std::collections::HashMap;
use std::path::Path;

use cvm::results::{Phase, SampleRow};

use common::{cvm_cmd, free_port, host_has, is_root, stderr};

fn run(dir: &Path, scenario_text: &str, backends: &str) -> Vec<SampleRow> {
    let path = dir.join(format!("s-{}.toml", fastrand::u32(..)));
    std::fs::write(&path, scenario_text).unwrap();
    let out_dir = dir.join(format!("out-{}", fastrand::u32(..)));
    let out = cvm_cmd()
        .args([
            "compare",
            "--no-progress",
            "--backends",
            backends,
            "--scenario",
        ])
        .arg(&path)
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    cvm::results::read_samples(&out_dir.join("samples.csv")).unwrap()
}

/// Median of a metric per backend, measured runs only.
fn medians(rows: &[SampleRow], metric: &str) -> HashMap<String, f64> {
    let mut by: HashMap<String, Vec<f64>> = HashMap::new();
    for r in rows
        .iter()
        .filter(|r| r.phase == Phase::Measure && r.metric == metric)
    {
        by.entry(r.backend.clone()).or_default().push(r.value);
    }
    by.into_iter()
        .map(|(b, v)| (b, cvm::stats::median(&v)))
        .collect()
}

fn mem_scenario(args: &str) -> String {
    format!("name = \"ballast\"\nruns = 5\nwarmup = 1\ntimeout_s = 30\n[workload]\napplet = \"mem\"\nargs = [{args}]\n[resources]\nmemory_mib = 512\n")
}

/// The ballast is measured under native and under cvm's container backend, which needs root and
/// cgroups: without it the test skips (or fails under `CVM_REQUIRE_HOST=1`).
fn ballast_backends() -> Option<&'static str> {
    let availability =
        cvm::backend::create(cvm::scenario::BackendKind::Container, &Default::default())
            .availability();
    let why = match &availability {
        cvm::backend::Availability::Available => String::new(),
        cvm::backend::Availability::Unavailable { reason, .. } => reason.clone(),
    };
    host_has(
        availability == cvm::backend::Availability::Available,
        &format!("the container backend is unavailable: {why}"),
    )
    .then_some("native,container")
}

#[test]
fn a_64_mib_ballast_is_reported_within_5_percent() {
    if !host_has(is_root(), "needs root (cgroups, containers)") {
        return;
    }
    let Some(backends) = ballast_backends() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = medians(
        &run(dir.path(), &mem_scenario("\"--mib\", \"0\""), backends),
        "memory_pss",
    );
    let heavy = medians(
        &run(dir.path(), &mem_scenario("\"--mib\", \"64\""), backends),
        "memory_pss",
    );
    for backend in backends.split(',') {
        let delta = heavy[backend] - base[backend];
        let want = 64.0 * 1024.0 * 1024.0;
        assert!(
            (delta - want).abs() <= 0.05 * want,
            "{backend}: ballast measured as {:.2} MiB (base {:.2} MiB)",
            delta / 1048576.0,
            base[backend] / 1048576.0
        );
    }
}

/// Bytes allocated on disk for `paths` as `du` counts them: each inode once, a symlink named
/// directly followed, directories included.
fn du_bytes(paths: &[std::path::PathBuf]) -> f64 {
    let out = std::process::Command::new("du")
        .args(["-B1", "-s", "-c", "-D"])
        .args(paths)
        .output()
        .expect("cannot run du");
    assert!(out.status.success(), "du failed: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no total from du: {text}"));
    total.parse().unwrap()
}

#[test]
fn disk_layers_match_du_and_the_load_count_matches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        "name = \"w\"\nruns = 2\nwarmup = 0\n[workload]\napplet = \"http\"\nargs = [\"--port\", \"{port}\"]\n\
         [readiness]\nkind = \"http\"\nport = {port}\n[load]\nkind = \"http\"\nduration_s = 1\nconnections = 2\n\
         [resources]\nnetwork = \"private\"\n"
    );
    let rows = run(dir.path(), &text, "native");
    let metric = |name: &str| -> f64 {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.backend == "native" && r.metric == name)
            .map(|r| r.value)
            .collect();
        assert_eq!(values.len(), 1, "one {name} sample: {values:?}");
        values[0]
    };
    // The files the native backend lists for its layers (the same cached image cvm used), counted
    // by du rather than by cvm: `app` first (a file in both layers belongs to the first), then
    // everything.
    std::env::set_var("CVM_CACHE_DIR", common::cache_dir());
    let path = dir.path().join("layers.toml");
    std::fs::write(&path, &text).unwrap();
    let scenario = cvm::scenario::load(path.to_str().unwrap()).unwrap();
    let layers = cvm::image::Image::build(&scenario).unwrap().layer_files();
    let app = &layers[&cvm::backend::Layer::App];
    let all: Vec<_> = app
        .iter()
        .chain(&layers[&cvm::backend::Layer::Libs])
        .cloned()
        .collect();
    let total = metric("disk_footprint");
    assert!(total > 0.0);
    assert_eq!(metric("disk.app"), du_bytes(app), "app layer vs du");
    assert_eq!(
        total,
        du_bytes(&all),
        "disk_footprint vs du over app and libs"
    );

    let client: Vec<f64> = rows
        .iter()
        .filter(|r| r.metric == "http_requests")
        .map(|r| r.value)
        .collect();
    let server: Vec<f64> = rows
        .iter()
        .filter(|r| r.metric == "http_server_requests")
        .map(|r| r.value)
        .collect();
    assert_eq!(client.len(), 2);
    assert_eq!(server.len(), 2);
    for (c, s) in client.iter().zip(&server) {
        assert!(*c > 100.0, "too few requests for a meaningful check: {c}");
        assert!(
            (s - c).abs() <= 0.01 * c,
            "client counted {c}, server served {s}"
        );
    }
}
