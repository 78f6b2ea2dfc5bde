//! Comparing runs and gating on them, as a user meets it: `cvm diff` and `cvm check` exit 2 on
//! input they cannot compare, naming what differs; on this host, the project's own goals
//! (`bounds/goals.toml`) hold on a short startup run, and `cvm compare --baseline` finds a real
//! added startup delay (the hello workload's `--delay-ms`) as a regression.

mod common;

use std::path::Path;

use common::{beside_measurements, cvm, cvm_cmd, is_root, measuring_alone, stderr, stdout};
use cvm::results::{
    Availability, BackendInfo, Environment, Phase, RunMeta, SampleRow, SampleWriter, Stack,
    META_FILE, SAMPLES_FILE,
};

/// A results directory with `ready_latency` samples per backend.
fn results(dir: &Path, scenario: &str, host: &str, series: &[(&str, &[f64])]) {
    std::fs::create_dir_all(dir).unwrap();
    // From JSON, so fields added later with serde defaults need no change here.
    let mut meta: RunMeta = serde_json::from_value(serde_json::json!({
        "schema_version": cvm::results::SCHEMA_VERSION,
        "run_id": format!("{host}-{scenario}"),
        "started": "",
        "status": "done",
        "scenario": { "name": scenario, "description": "", "definition": null },
        "runs": 5,
        "warmup": 0,
        "timeout_s": 10.0,
        "environment": serde_json::to_value(Environment::default()).unwrap(),
        "backends": [],
    }))
    .unwrap();
    meta.environment.host = host.into();
    meta.environment.ncpu = 2;
    meta.backends = series
        .iter()
        .map(|(b, _)| BackendInfo {
            backend: b.to_string(),
            stack: if *b == "native" {
                Stack::Native
            } else {
                Stack::Container
            },
            availability: Availability::Available,
            error: None,
            config: Default::default(),
        })
        .collect();
    meta.write(&dir.join(META_FILE)).unwrap();
    let mut w = SampleWriter::create(&dir.join(SAMPLES_FILE)).unwrap();
    for (backend, values) in series {
        for (i, v) in values.iter().enumerate() {
            w.write(&SampleRow {
                run_id: meta.run_id.clone(),
                scenario: scenario.into(),
                backend: backend.to_string(),
                iteration: i as u32,
                phase: Phase::Measure,
                metric: "ready_latency".into(),
                value: *v,
                unit: "s".into(),
                host: host.into(),
                kernel: String::new(),
                cpu_model: String::new(),
                ncpu: 2,
                mem_total: 0,
                accel: String::new(),
                qemu_version: String::new(),
                cvm_version: String::new(),
                git_sha: String::new(),
                config: String::new(),
                note: String::new(),
            })
            .unwrap();
        }
    }
}

// Six runs a side: with 5 the smallest p, 2/252, would not stand out among even two rows once
// they are corrected as a family (Benjamini–Hochberg).
const FAST: &[f64] = &[0.010, 0.0102, 0.0098, 0.0101, 0.0099, 0.0100];
const SLOW: &[f64] = &[0.030, 0.0302, 0.0298, 0.0301, 0.0299, 0.0300];

#[test]
fn diff_exits_1_on_a_regression_0_without_and_writes_its_pages() {
    let _cpu = beside_measurements();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    results(&a, "startup", "h", &[("native", FAST), ("container", FAST)]);
    results(&b, "startup", "h", &[("native", FAST), ("container", SLOW)]);
    let html = dir.path().join("d.html");
    let md = dir.path().join("d.md");
    let out = cvm_cmd()
        .arg("diff")
        .args([&a, &b])
        .arg("--html")
        .arg(&html)
        .arg("--markdown")
        .arg(&md)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("container") && l.contains("REGRESSION")),
        "{text}"
    );
    assert!(text.contains("1 regression(s)"), "{text}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("| container | ready_latency |"));
    // Reversed, it is an improvement: exit 0, unless any change should fail.
    let back = cvm_cmd().arg("diff").args([&b, &a]).output().unwrap();
    assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
    let change = cvm_cmd()
        .arg("diff")
        .args([&b, &a])
        .args(["--fail-on", "change"])
        .output()
        .unwrap();
    assert_eq!(change.status.code(), Some(1));
    let none = cvm_cmd()
        .arg("diff")
        .args([&a, &b])
        .args(["--fail-on", "none"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(0));
}

#[test]
fn diff_of_3_run_results_says_its_rows_are_untested_and_exits_0() {
    let _cpu = beside_measurements();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    results(
        &a,
        "startup",
        "h",
        &[("native", &FAST[..3]), ("container", &FAST[..3])],
    );
    results(
        &b,
        "startup",
        "h",
        &[("native", &FAST[..3]), ("container", &SLOW[..3])],
    );
    let out = cvm_cmd().arg("diff").args([&a, &b]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("container") && l.ends_with("untested (needs ≥ 5 runs a side)")),
        "{text}"
    );
    assert!(
        text.contains("0 regression(s)") && text.contains("2 untested"),
        "{text}"
    );
    assert!(
        text.contains("note: 2 of 2 rows untested for too few runs"),
        "{text}"
    );
}

#[test]
fn diff_of_runs_that_cannot_be_compared_exits_2_saying_what_differs() {
    let _cpu = beside_measurements();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
        dir.path().join("d"),
    );
    results(&a, "startup", "h", &[("native", FAST), ("container", FAST)]);
    results(&b, "web", "h", &[("native", FAST), ("container", FAST)]);
    results(&c, "startup", "h", &[("native", FAST), ("runc", FAST)]);
    results(
        &d,
        "startup",
        "other",
        &[("native", FAST), ("container", FAST)],
    );
    let scen = cvm_cmd().arg("diff").args([&a, &b]).output().unwrap();
    assert_eq!(scen.status.code(), Some(2));
    assert!(
        stderr(&scen).contains("different scenarios"),
        "{}",
        stderr(&scen)
    );
    let set = cvm_cmd().arg("diff").args([&a, &c]).output().unwrap();
    assert_eq!(set.status.code(), Some(2));
    let err = stderr(&set);
    assert!(
        err.contains("only in the base: container") && err.contains("only in the new run: runc"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Another host compares, with a warning.
    let host = cvm_cmd().arg("diff").args([&a, &d]).output().unwrap();
    assert_eq!(host.status.code(), Some(0), "{}", stderr(&host));
    assert!(
        stdout(&host).contains("warning: different hosts (h in the base, other in the new run)")
    );
    let missing = cvm(&["diff", "/nonexistent/a", "/nonexistent/b"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("not a cvm results directory"));
}

#[test]
fn check_exits_1_when_a_bound_fails_and_2_on_a_bad_bounds_file() {
    let _cpu = beside_measurements();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    results(
        &run,
        "startup",
        "h",
        &[("native", FAST), ("container", SLOW)],
    );
    let bounds = dir.path().join("b.toml");
    std::fs::write(
        &bounds,
        "[[bound]]\nbackend = \"container\"\nmetric = \"ready_latency\"\nratio_to = \"native\"\n\
         max = 2.0\n\n[[bound]]\nbackend = \"native\"\nmetric = \"ready_latency\"\nmax = 0.05\n",
    )
    .unwrap();
    let out = cvm_cmd()
        .arg("check")
        .arg(&run)
        .arg("--bounds")
        .arg(&bounds)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAILS    container / native ready_latency: 3.000× is not ≤ 2.000×"),
        "{text}"
    );
    assert!(text.contains("holds    native ready_latency"), "{text}");
    std::fs::write(
        &bounds,
        "[[bound]]\nbackend = \"native\"\nmetric = \"ready_latency\"\n",
    )
    .unwrap();
    let bad = cvm_cmd()
        .arg("check")
        .arg(&run)
        .arg("--bounds")
        .arg(&bounds)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("give min, max or both"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn report_merge_needs_several_directories_and_report_needs_merge_for_them() {
    let _cpu = beside_measurements();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    results(&a, "startup", "ha", &[("native", FAST)]);
    results(&b, "startup", "hb", &[("native", SLOW)]);
    let one = cvm_cmd()
        .args(["report", "--merge"])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(one.status.code(), Some(2));
    let unmerged = cvm_cmd().arg("report").args([&a, &b]).output().unwrap();
    assert_eq!(unmerged.status.code(), Some(2));
    assert!(
        stderr(&unmerged).contains("give --merge"),
        "{}",
        stderr(&unmerged)
    );
    let out = dir.path().join("m");
    let merged = cvm_cmd()
        .args(["report", "--merge"])
        .args([&a, &b])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    assert!(stdout(&merged).contains("native@hb"));
    assert!(out.join("index.html").is_file());
}

fn startup_run(dir: &Path, scenario: &str, extra: &[&str]) -> std::process::Output {
    cvm_cmd()
        .args(["compare", "--scenario", scenario])
        .args([
            "--backends",
            "native,container",
            "--runs",
            "9",
            "--warmup",
            "1",
        ])
        .arg("--no-progress")
        .arg("--output")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

/// CI's bounds check: a short startup run of native and cvm's container must meet the
/// project's goals; then a run whose hello waits 100 ms more, diffed against it by
/// `--baseline`, must be a regression of both backends' startup.
#[test]
fn goals_hold_on_a_short_startup_run_and_a_baseline_finds_an_added_delay() {
    if !common::host_has(is_root(), "root (the container backend)") {
        return;
    }
    let _cpu = measuring_alone();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let out = startup_run(&base, "startup", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let goals = Path::new(env!("CARGO_MANIFEST_DIR")).join("bounds/goals.toml");
    let check = cvm_cmd()
        .arg("check")
        .arg(&base)
        .arg("--bounds")
        .arg(&goals)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    assert!(stdout(&check).contains("holds    container / native ready_latency"));
    assert!(base.join("samples.ndjson").is_file());
    let meta = RunMeta::read(&base.join(META_FILE)).unwrap();
    assert!(meta.environment.fingerprint.cpu_count >= 1);
    assert!(!meta.environment.fingerprint.kernel_cmdline.is_empty());

    let scenario = dir.path().join("delay.toml");
    std::fs::write(
        &scenario,
        "name = \"startup\"\n[workload]\napplet = \"hello\"\nargs = [\"--delay-ms\", \"100\"]\n\
         [readiness]\nkind = \"marker\"\n",
    )
    .unwrap();
    let new = dir.path().join("new");
    let out = startup_run(
        &new,
        scenario.to_str().unwrap(),
        &["--baseline", base.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    for backend in ["native", "container"] {
        assert!(
            text.lines().any(|l| l.starts_with(backend)
                && l.contains("ready_latency")
                && l.contains("REGRESSION")),
            "{text}"
        );
    }
    assert!(new.join("diff.html").is_file() && new.join("diff.md").is_file());
}
