//! Validity of the measurements: a known memory ballast is reported as such, disk layers add up
//! to the total, and the load generator's request count agrees with the server's own.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{cvm_cmd, host_has, is_root, stderr};

fn run(dir: &Path, scenario_text: &str, backends: &str) -> Vec<csv::StringRecord> {
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
    let mut r = csv::Reader::from_path(out_dir.join("samples.csv")).unwrap();
    r.records().map(|r| r.unwrap()).collect()
}

/// Median of a metric per backend, measured runs only.
fn medians(rows: &[csv::StringRecord], metric: &str) -> HashMap<String, f64> {
    let mut by: HashMap<String, Vec<f64>> = HashMap::new();
    for r in rows
        .iter()
        .filter(|r| &r[4] == "measure" && &r[5] == metric)
    {
        by.entry(r[2].to_string())
            .or_default()
            .push(r[6].parse().unwrap());
    }
    by.into_iter()
        .map(|(b, v)| (b, cvm::stats::median(&v)))
        .collect()
}

fn mem_scenario(args: &str) -> String {
    format!("name = \"ballast\"\nruns = 5\nwarmup = 1\ntimeout_s = 30\n[workload]\napplet = \"mem\"\nargs = [{args}]\n[resources]\nmemory_mib = 512\n")
}

fn ballast_backends() -> &'static str {
    // The container backend joins this test when it exists in this build.
    if cvm::backend::create(cvm::scenario::BackendKind::Container, &Default::default())
        .availability()
        == cvm::backend::Availability::Available
    {
        "native,container"
    } else {
        "native"
    }
}

#[test]
fn a_64_mib_ballast_is_reported_within_5_percent() {
    if !host_has(is_root(), "needs root (cgroups, containers)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backends = ballast_backends();
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

#[test]
fn disk_layers_sum_to_the_total_and_the_load_count_matches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(
        dir.path(),
        "name = \"w\"\nruns = 2\nwarmup = 0\n[workload]\napplet = \"http\"\nargs = [\"--port\", \"18089\"]\n\
         [readiness]\nkind = \"http\"\nport = 18089\n[load]\nkind = \"http\"\nduration_s = 1\nconnections = 2\n",
        "native",
    );
    let total = medians(&rows, "disk_footprint")["native"];
    let layers: f64 = rows
        .iter()
        .filter(|r| r[5].starts_with("disk."))
        .map(|r| r[6].parse::<f64>().unwrap())
        .sum();
    assert!(total > 0.0);
    assert_eq!(layers, total);

    let client: Vec<f64> = rows
        .iter()
        .filter(|r| &r[5] == "http_requests")
        .map(|r| r[6].parse().unwrap())
        .collect();
    let server: Vec<f64> = rows
        .iter()
        .filter(|r| &r[5] == "http_server_requests")
        .map(|r| r[6].parse().unwrap())
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
