//! The command line as a user meets it: bad input exits 2 with a precise message, and the
//! native end-to-end run writes samples, summary and a reproducible report.

mod common;

use cvm::results::{Phase, SampleRow};

use common::{cvm, cvm_cmd, free_port, stderr, stdout};

fn write_scenario(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("s.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn scenario_syntax_error_exits_2_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(dir.path(), "name = \"x\"\n[workload\napplet = \"hello\"\n");
    let out = cvm(&["compare", "--scenario", &path]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{path}:2:")),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn unknown_key_and_negative_runs_exit_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(
        dir.path(),
        "name = \"x\"\n[workload]\napplet = \"hello\"\nsurprise = 1\n",
    );
    let out = cvm(&["compare", "--scenario", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{path}:4:1:")) && stderr(&out).contains("surprise"),
        "{}",
        stderr(&out)
    );

    let path = write_scenario(
        dir.path(),
        "name = \"x\"\nruns = -1\n[workload]\napplet = \"hello\"\n",
    );
    let out = cvm(&["compare", "--scenario", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{path}:2:8:")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_port_readiness_without_a_network_exits_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(
        dir.path(),
        "name = \"x\"\n[workload]\napplet = \"http\"\n[readiness]\nkind = \"http\"\nport = 8080\n\
         [resources]\nnetwork = \"none\"\n",
    );
    let out = cvm(&["compare", "--scenario", &path, "--backends", "container"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{path}:8:11:")), "{err}");
    assert!(
        err.contains("network = \"private\"") && err.contains("\"marker\""),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_backend_exits_2_listing_the_valid_ones() {
    let out = cvm(&[
        "compare",
        "--scenario",
        "startup",
        "--backends",
        "native,lxd",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("lxd")
            && err.contains("container")
            && err.contains("vm-classic")
            && err.contains("vm-user"),
        "{err}"
    );
}

#[test]
fn missing_scenario_exits_2_listing_the_builtins() {
    let out = cvm(&["compare", "--scenario", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for name in [
        "startup",
        "startup-cold",
        "web",
        "cpu",
        "memory",
        "io",
        "density",
        "isolation",
    ] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn bad_flags_exit_2() {
    assert_eq!(
        cvm(&["compare", "--scenario", "startup", "--runs", "0"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        cvm(&["compare", "--scenario", "startup", "--timeout", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(cvm(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(cvm(&["report", "/nonexistent-dir"]).status.code(), Some(2));
    let help = cvm(&["compare", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("--export-markdown"));
}

#[test]
fn scenarios_lists_every_builtin_once() {
    let out = cvm(&["scenarios"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let names: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    // Every file in scenarios/ is a built-in, listed once under its own name.
    let files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), files.len(), "{text}");
    for name in &files {
        let listed = names
            .iter()
            .filter(|l| l.split(' ').next() == Some(name))
            .count();
        assert_eq!(listed, 1, "{name}: {text}");
    }
    // The sweep's default 3 runs cannot support a diff, and it says so under its name.
    let lines: Vec<&str> = text.lines().collect();
    let sweep = lines.iter().position(|l| l.starts_with("sweep ")).unwrap();
    assert!(
        lines[sweep + 1]
            .trim_start()
            .starts_with("note: its default 3 run(s) cannot support"),
        "{text}"
    );
    assert!(!text.contains("default 20 run(s)"), "{text}");
}

#[test]
fn doctor_reports_every_check() {
    let out = cvm(&["doctor"]);
    let text = stdout(&out);
    let last = text.lines().last().unwrap_or_default();
    match out.status.code() {
        Some(0) => assert_eq!(last, "every default backend can run here"),
        Some(1) => assert!(
            last.starts_with("default backends that cannot run here: "),
            "{text}"
        ),
        other => panic!("doctor exited {other:?}:\n{text}{}", stderr(&out)),
    }
    for what in [
        "root",
        "cgroups",
        "QEMU",
        "guest kernel",
        "io directory",
        "KVM",
        "runc",
        "crun",
        "backend native",
    ] {
        assert!(text.contains(what), "doctor output lacks {what}:\n{text}");
    }
}

#[test]
fn doctor_exits_1_naming_the_default_backends_that_cannot_run() {
    // An unreadable guest kernel makes both VM backends (defaults of the built-in scenarios)
    // unavailable on any host, with or without QEMU.
    let out = cvm(&["doctor", "--kernel", "/nonexistent/vmlinuz"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let last = text.lines().last().unwrap_or_default();
    let named: Vec<&str> = last
        .strip_prefix("default backends that cannot run here: ")
        .unwrap_or_else(|| panic!("last line names no backends: {last:?}"))
        .split(", ")
        .collect();
    assert!(
        named.contains(&"vm") && named.contains(&"vm-classic"),
        "{last}"
    );
    assert!(!named.contains(&"native"), "{last}");
}

fn rows(dir: &std::path::Path) -> Vec<SampleRow> {
    cvm::results::read_samples(&dir.join("samples.csv")).unwrap()
}

#[test]
fn native_startup_writes_samples_summary_and_a_reproducible_report() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = cvm_cmd()
        .args([
            "compare",
            "--scenario",
            "startup",
            "--backends",
            "native",
            "--runs",
            "20",
            "--warmup",
            "3",
        ])
        .arg("--output")
        .arg(&out_dir)
        .arg("--export-markdown")
        .arg(dir.path().join("s.md"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let rows = rows(&out_dir);
    let ready = |phase: Phase| {
        rows.iter()
            .filter(|r| r.metric == "ready_latency" && r.phase == phase)
            .count()
    };
    assert_eq!(ready(Phase::Measure), 20);
    assert_eq!(ready(Phase::Warmup), 3);
    for r in rows.iter().filter(|r| r.metric == "ready_latency") {
        let v = r.value;
        assert!(v > 0.0 && v < 5.0, "implausible ready_latency {v}");
        assert_eq!(r.unit, "s");
    }

    let summary = std::fs::read_to_string(out_dir.join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let native = &json["backends"][0];
    assert_eq!(native["backend"], "native");
    let rl = &native["metrics"]["ready_latency"];
    assert_eq!(rl["n"], 20);
    assert!(rl["median_ci"]["lower"].as_f64().unwrap() <= rl["median"].as_f64().unwrap());
    assert!(json["environment"]["git_sha"].is_string());
    assert!(std::fs::read_to_string(dir.path().join("s.md"))
        .unwrap()
        .contains("ready_latency"));

    // Re-rendering from the samples reproduces the summary byte for byte.
    std::fs::remove_file(out_dir.join("summary.json")).unwrap();
    let again = cvm_cmd().arg("report").arg(&out_dir).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("summary.json")).unwrap(),
        summary
    );
}

#[test]
fn a_second_run_into_the_same_output_is_refused_and_the_first_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let run = || {
        cvm_cmd()
            .args(["compare", "--scenario", "startup", "--backends", "native"])
            .args(["--runs", "1", "--warmup", "0", "--no-progress", "--output"])
            .arg(&out_dir)
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let samples = std::fs::read(out_dir.join("samples.csv")).unwrap();
    let meta = std::fs::read(out_dir.join("run.json")).unwrap();
    let second = run();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");
    assert!(err.contains("already holds files"), "{err}");
    assert_eq!(std::fs::read(out_dir.join("samples.csv")).unwrap(), samples);
    assert_eq!(std::fs::read(out_dir.join("run.json")).unwrap(), meta);
}

#[test]
fn native_web_is_ready_on_its_first_http_response() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    // The built-in web scenario on a port nothing listens on (native shares the host's network).
    let port = free_port();
    let web = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/web.toml"))
        .unwrap();
    assert_eq!(web.matches("8080").count(), 2, "web.toml changed: {web}");
    let path = write_scenario(dir.path(), &web.replace("8080", &port.to_string()));
    let out = cvm_cmd()
        .args([
            "compare",
            "--scenario",
            &path,
            "--backends",
            "native",
            "--runs",
            "2",
            "--warmup",
            "0",
        ])
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = rows(&out_dir);
    assert_eq!(
        rows.iter().filter(|r| r.metric == "ready_latency").count(),
        2
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["scenario"]["definition"]["readiness"]["kind"], "http");
    // How the load was generated and limited is part of the record.
    assert_eq!(meta["load"]["connections"], "4");
    assert_eq!(meta["load"]["client_threads"], "1");
    assert!(meta["load"]["client"]
        .as_str()
        .unwrap()
        .contains("1 thread(s)"));
    // Where the instance and the client ran, or why they were not placed.
    let placement = meta["load"]["placement"].as_str().unwrap();
    assert!(
        placement.starts_with("instance on CPU(s) ") || placement.starts_with("none ("),
        "{placement}"
    );
}

#[test]
fn a_workload_that_crashes_is_a_failed_run_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(
        dir.path(),
        "name = \"crashy\"\nruns = 2\nwarmup = 0\ntimeout_s = 10\n[workload]\napplet = \"crash\"\n",
    );
    let out_dir = dir.path().join("run");
    let out = cvm_cmd()
        .args([
            "compare",
            "--scenario",
            &path,
            "--backends",
            "native",
            "--output",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("exit code 3"), "{}", stderr(&out));
    let failed = rows(&out_dir)
        .iter()
        .filter(|r| r.metric == "run_failed")
        .count();
    assert_eq!(failed, 2);
}

/// A results directory with no backends, written through cvm's own writers.
fn empty_results(dir: &std::path::Path) {
    use cvm::results::{Environment, RunMeta, SampleWriter, ScenarioRecord};
    let meta = RunMeta {
        schema_version: cvm::results::SCHEMA_VERSION,
        run_id: "r".into(),
        started: "2026-01-01T00:00:00Z".into(),
        finished: None,
        status: cvm::results::RunStatus::Done,
        scenario: ScenarioRecord {
            name: "startup".into(),
            description: String::new(),
            definition: serde_json::Value::Null,
        },
        runs: 1,
        warmup: 0,
        timeout_s: 60.0,
        environment: Environment::default(),
        backends: Vec::new(),
        load: None,
        order: None,
        seed: None,
        cgroup_state: None,
    };
    meta.write(&dir.join(cvm::results::META_FILE)).unwrap();
    // Written again over a garbled file by the test below: a fixture, not a run's results.
    drop(SampleWriter::replace(&dir.join(cvm::results::SAMPLES_FILE)).unwrap());
}

#[test]
fn report_exits_2_for_bad_input_and_1_when_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(cvm(&["report", "/nonexistent"]).status.code(), Some(2));
    let not_results = cvm_cmd().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(
        not_results.status.code(),
        Some(2),
        "{}",
        stderr(&not_results)
    );

    empty_results(dir.path());
    let ok = cvm_cmd().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    std::fs::write(
        dir.path().join(cvm::results::SAMPLES_FILE),
        // Only a torn last row is forgiven (an interrupted write), so two bad rows.
        "not,samples\nx,y\nz,w\n",
    )
    .unwrap();
    let garbled = cvm_cmd().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(garbled.status.code(), Some(2), "{}", stderr(&garbled));

    // A file where the charts directory goes: root cannot create it either.
    empty_results(dir.path());
    let charts = dir.path().join("charts");
    std::fs::remove_dir_all(&charts).unwrap();
    std::fs::write(&charts, "").unwrap();
    let unwritable = cvm_cmd().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(unwritable.status.code(), Some(1), "{}", stderr(&unwritable));
}

#[test]
fn a_daemon_address_with_a_managed_daemon_is_bad_input() {
    let out = cvm(&[
        "compare",
        "--scenario",
        "startup",
        "--backends",
        "docker",
        "--docker-daemon",
        "managed",
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--docker-host") && stderr(&out).contains("--docker-daemon managed"),
        "{}",
        stderr(&out)
    );
    let out = cvm(&["doctor", "--docker-daemon", "sometimes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("auto"), "{}", stderr(&out));
}

/// With `--docker-daemon existing` and an address nothing answers on, docker is unavailable
/// for that reason (no private daemon is started instead), and `cvm doctor` says so.
#[test]
fn doctor_names_the_docker_daemon_a_run_would_use() {
    if !common::host_has(
        common::which("docker"),
        "the docker client is not installed (Debian package docker.io)",
    ) {
        return;
    }
    let out = cvm(&[
        "doctor",
        "--docker-daemon",
        "existing",
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("docker daemon"))
        .unwrap_or_else(|| panic!("no docker daemon line:\n{text}"));
    assert!(
        line.contains("none: ") && line.contains("unix:///nonexistent/docker.sock"),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("backend docker") && l.contains("unavailable")),
        "{text}"
    );
}

#[test]
fn kernel_build_without_its_source_exits_2_naming_the_package() {
    let cache = tempfile::tempdir().unwrap();
    let out = cvm_cmd()
        .env("CVM_CACHE_DIR", cache.path())
        .env("CVM_KERNEL_SOURCE", "/nonexistent/linux-source-6.1.tar.xz")
        .args(["kernel", "build"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/linux-source-6.1.tar.xz")
            && err.contains("install linux-source"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "a failed build left files in the cache"
    );
}

#[test]
fn the_minimal_kernel_runs_vm_as_vm_minimal_which_says_how_to_build_it() {
    let cache = tempfile::tempdir().unwrap();
    let out = cvm_cmd()
        .env("CVM_CACHE_DIR", cache.path())
        .arg("backends")
        .output()
        .unwrap();
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("vm-minimal "))
        .unwrap_or_else(|| panic!("no vm-minimal in:\n{text}"));
    assert!(
        line.contains("unavailable") && line.contains("cvm kernel build"),
        "{line}"
    );

    // The scenario setting selects it as --kernel does: `vm` is then labelled vm-minimal.
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        "name = \"k\"\nruns = 1\nwarmup = 0\nbackends = [\"vm\"]\n\n[workload]\napplet = \"hello\"\n\n\
         [vm]\nkernel = \"minimal\"\n",
    );
    let out = cvm_cmd()
        .env("CVM_CACHE_DIR", cache.path())
        .env_remove("CVM_KERNEL")
        .args([
            "compare",
            "--no-progress",
            "--scenario",
            &scenario,
            "--output",
        ])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("backend vm-minimal is unavailable"),
        "{}",
        stderr(&out)
    );
    let bad = write_scenario(
        dir.path(),
        "name = \"k\"\n[workload]\napplet = \"hello\"\n[vm]\nkernal = \"minimal\"\n",
    );
    let out = cvm(&["compare", "--scenario", &bad]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("kernal"), "{}", stderr(&out));
}
