//! The `podman` backend on the real host: rootful Podman with conmon and runc, its storage
//! private to the run. Needs root and Debian's podman, conmon and runc; without them it skips
//! (or fails under `CVM_REQUIRE_HOST=1`). Rootless Podman, with the other rootless backends, is
//! tests/rootless.rs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cvm::audit;
use cvm::results::{read_samples, SampleRow};
use cvm::scenario::BackendKind;

use common::instances::usable;
use common::{cvm_cmd, host_has, is_root, stderr};

/// Every value of each metric podman recorded in measured runs.
fn podman_figures(rows: &[SampleRow]) -> BTreeMap<String, Vec<f64>> {
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.backend == "podman") {
        figures.entry(r.metric.clone()).or_default().push(r.value);
    }
    figures
}

fn compare(scenario: &str, out: &Path) -> BTreeMap<String, Vec<f64>> {
    let run = cvm_cmd()
        .args(["compare", "--no-progress", "--backends", "podman"])
        .args(["--scenario", scenario, "--runs", "2", "--warmup", "0"])
        .arg("--output")
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    podman_figures(&read_samples(&out.join("samples.csv")).unwrap())
}

fn assert_positive(figures: &BTreeMap<String, Vec<f64>>, metric: &str) {
    let values = figures
        .get(metric)
        .unwrap_or_else(|| panic!("podman recorded no {metric}: {figures:#?}"));
    assert!(
        values.iter().all(|v| *v > 0.0),
        "podman's {metric}: {values:?}"
    );
}

#[test]
fn podman_runs_hello_and_web_in_private_storage_and_leaves_nothing_behind() {
    if !host_has(is_root(), "podman tests need root")
        || !host_has(
            common::which("podman") && common::which("conmon") && common::which("runc"),
            "Podman is not installed (Debian packages podman, conmon, runc)",
        )
        || !usable(BackendKind::Container)
    {
        return;
    }
    let shm_lock = Path::new("/dev/shm/libpod_lock");
    let shm_lock_before = shm_lock.exists();
    let before = audit::snapshot();
    let dir = tempfile::tempdir().unwrap();

    let hello = compare("startup", &dir.path().join("startup"));
    for metric in [
        "ready_latency",
        "phase.runtime",
        "disk_footprint",
        "disk.runtime",
    ] {
        assert_positive(&hello, metric);
    }

    let web = compare("web", &dir.path().join("web"));
    for metric in [
        "ready_latency",
        "memory_pss",
        "memory_supervisor",
        "disk_footprint",
        "disk.runtime",
        "http_rps",
    ] {
        assert_positive(&web, metric);
    }
    // conmon is the supervisor, counted inside the instance's PSS.
    let (pss, conmon) = (web["memory_pss"][0], web["memory_supervisor"][0]);
    assert!(conmon < pss, "conmon {conmon} B within memory_pss {pss} B");

    // No container, storage directory, mount, cgroup or link of the run's Podman is left, and
    // the host-wide lock file Podman uses by default was never made.
    let leaked = audit::snapshot().matching("podman").leaked_since(&before);
    assert!(leaked.is_empty(), "left behind: {leaked:#?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains("-podman/")),
        "a mount of Podman's private storage is left"
    );
    assert_eq!(shm_lock.exists(), shm_lock_before, "{}", shm_lock.display());
    let conmons = std::process::Command::new("pgrep")
        .args(["-f", "conmon.*-podman/"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&conmons.stdout).trim().is_empty(),
        "a conmon of the run is still running"
    );
}
