//! Validity of the measurements: a known memory hold is reported as such on every backend (and a
//! VM's memory splits into its parts), disk layers add up to the total, and the load
//! generator's request count agrees with the server's own.

mod common;

use std::collections::HashMap;
use std::path::Path;

use cvm::results::{Phase, SampleRow};

use common::{cvm_cmd, free_port, host_has, is_root, stderr};
use cvm::backend::docker::daemon::ManagedDaemon;

fn run(dir: &Path, scenario_text: &str, backends: &str) -> Vec<SampleRow> {
    run_with(dir, scenario_text, backends, None)
}

/// [`run`] against the Docker daemon at `docker_host`, when given.
fn run_with(
    dir: &Path,
    scenario_text: &str,
    backends: &str,
    docker_host: Option<&str>,
) -> Vec<SampleRow> {
    let path = dir.join(format!("s-{}.toml", fastrand::u32(..)));
    std::fs::write(&path, scenario_text).unwrap();
    let out_dir = dir.join(format!("out-{}", fastrand::u32(..)));
    let mut cmd = cvm_cmd();
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    let out = cmd
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

fn mem_scenario(args: &str, memory_mib: u32, runs: u32) -> String {
    format!("name = \"ballast\"\nruns = {runs}\nwarmup = 1\ntimeout_s = 60\n[workload]\napplet = \"mem\"\nargs = [{args}]\n[resources]\nmemory_mib = {memory_mib}\n")
}

/// The hold the memory tests use: not 64 MiB (the applet's default), so a figure that ignored
/// the option could not pass.
const HOLD_MIB: f64 = 96.0;

fn available(kind: cvm::scenario::BackendKind) -> bool {
    let availability = cvm::backend::create(kind, &Default::default()).availability();
    let why = match &availability {
        cvm::backend::Availability::Available => String::new(),
        cvm::backend::Availability::Unavailable { reason, .. } => reason.clone(),
    };
    host_has(
        availability == cvm::backend::Availability::Available,
        &format!("the {kind} backend is unavailable: {why}"),
    )
}

/// A workload holding 96 MiB raises `memory_pss` by 96 MiB ± 5 % over the same workload
/// holding nothing, on every backend whose resident processes run on the host: so what each
/// backend counts besides the workload (a shim, an init) is the same with and without it, and
/// no exited runtime or client is counted. Docker runs against a private daemon, whose own
/// memory is `memory_daemon`, apart from the instance's.
#[test]
fn a_96_mib_hold_raises_memory_pss_by_96_mib_on_every_host_backend() {
    let _shared = common::beside_measurements();
    use cvm::scenario::BackendKind;
    if !host_has(is_root(), "needs root (cgroups, containers)") {
        return;
    }
    let mut backends = vec!["native"];
    for (kind, name) in [
        (BackendKind::Container, "container"),
        (BackendKind::Runc, "runc"),
    ] {
        if available(kind) {
            backends.push(name);
        }
    }
    let daemon = host_has(
        common::which("dockerd") && common::which("docker"),
        "Docker is not installed (Debian package docker.io)",
    )
    .then(|| {
        common::instances::setup_env();
        ManagedDaemon::start().expect("cannot start a private dockerd")
    });
    if daemon.is_some() {
        backends.push("docker");
    }
    let host = daemon.as_ref().map(ManagedDaemon::host);
    let host = host.as_deref();
    let list = backends.join(",");
    let dir = tempfile::tempdir().unwrap();
    let base_rows = run_with(
        dir.path(),
        &mem_scenario("\"--mib\", \"0\"", 512, 3),
        &list,
        host,
    );
    let hold = format!("\"--mib\", \"{HOLD_MIB}\"");
    let held_rows = run_with(dir.path(), &mem_scenario(&hold, 512, 3), &list, host);
    let base = medians(&base_rows, "memory_pss");
    let held = medians(&held_rows, "memory_pss");
    for backend in &backends {
        let delta = held[*backend] - base[*backend];
        let want = HOLD_MIB * 1048576.0;
        assert!(
            (delta - want).abs() <= 0.05 * want,
            "{backend}: a {HOLD_MIB} MiB hold measured as {:.2} MiB (base {:.2} MiB)",
            delta / 1048576.0,
            base[*backend] / 1048576.0
        );
    }
    if daemon.is_some() {
        // The daemons are measured, and apart: they alone outweigh a container and its shim.
        let daemons = medians(&base_rows, "memory_daemon");
        assert!(daemons["docker"] > 0.0, "no memory_daemon for docker");
        assert!(
            base["docker"] < daemons["docker"],
            "docker's memory_pss ({:.1} MiB) must not contain the daemons ({:.1} MiB)",
            base["docker"] / 1048576.0,
            daemons["docker"] / 1048576.0
        );
    }
    drop(daemon);
}

fn vm_host() -> bool {
    let kernel = std::fs::read_dir("/boot").ok().is_some_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    host_has(
        common::which("qemu-system-x86_64"),
        "qemu-system-x86_64 (apt-get install qemu-system-x86)",
    ) && host_has(
        kernel,
        "a /boot/vmlinuz-* (apt-get install linux-image-amd64)",
    )
}

/// A VM's memory in three parts: QEMU's own (`memory_vmm`) does not follow the guest's memory
/// size (128 vs 512 MiB, within 10 %), and the guest's own view (`memory_guest_used`) sees a
/// 96 MiB hold as 96 MiB ± 10 %. The parts add up to `memory_pss`, and QEMU's own parts (what
/// it needs whatever the guest, the translation cache, its boot images) to `memory_vmm`.
#[test]
fn vm_memory_is_split_into_the_vmm_guest_ram_and_the_guests_own_use() {
    let _shared = common::beside_measurements();
    if !host_has(is_root(), "needs root") || !vm_host() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let none = "\"--mib\", \"0\"";
    let hold = format!("\"--mib\", \"{HOLD_MIB}\"");
    let small = run(dir.path(), &mem_scenario(none, 128, 2), "vm");
    let large = run(dir.path(), &mem_scenario(none, 512, 2), "vm");
    let held = run(dir.path(), &mem_scenario(&hold, 512, 2), "vm");

    let vmm = |rows: &[SampleRow]| medians(rows, "memory_vmm")[common::vm_label()];
    let (a, b) = (vmm(&small), vmm(&large));
    assert!(
        (a - b).abs() <= 0.10 * a.min(b),
        "memory_vmm follows the guest's size: {:.1} MiB at 128 MiB, {:.1} MiB at 512 MiB",
        a / 1048576.0,
        b / 1048576.0
    );

    let used = |rows: &[SampleRow]| medians(rows, "memory_guest_used")[common::vm_label()];
    let delta = used(&held) - used(&large);
    let want = HOLD_MIB * 1048576.0;
    assert!(
        (delta - want).abs() <= 0.10 * want,
        "the guest saw a {HOLD_MIB} MiB hold as {:.2} MiB",
        delta / 1048576.0
    );

    for rows in [&small, &large, &held] {
        for i in 0..2 {
            let get = |m: &str| {
                rows.iter()
                    .find(|r| r.phase == Phase::Measure && r.iteration == i && r.metric == m)
                    .map(|r| r.value)
                    .unwrap_or_else(|| panic!("no {m} in run {i}"))
            };
            assert_eq!(
                get("memory_vmm") + get("memory_guest_ram"),
                get("memory_pss"),
                "the parts add up to the whole"
            );
            assert_eq!(
                get("memory_vmm_base") + get("memory_vmm_tcg") + get("memory_vmm_boot"),
                get("memory_vmm"),
                "QEMU's parts add up to memory_vmm"
            );
            // Under TCG the translation cache holds the code the guest ran; QEMU maps the
            // vmlinux it boots and keeps the initramfs (whose image files alone are MiBs).
            let tcg = rows
                .iter()
                .any(|r| r.metric == "memory_vmm" && r.accel == "tcg");
            let cache = get("memory_vmm_tcg");
            assert!(
                if tcg { cache > 1048576.0 } else { cache == 0.0 },
                "translation cache {cache} B under {}",
                if tcg { "TCG" } else { "KVM" }
            );
            assert!(get("memory_vmm_boot") > 4.0 * 1048576.0, "no boot images");
        }
    }
}

#[test]
fn disk_layers_match_du_and_the_load_count_matches_the_server() {
    let _shared = common::beside_measurements();
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
    // Binaries as installed: du of stripped copies.
    let installed = |p: &[std::path::PathBuf]| common::disk::du_installed(p) as f64;
    assert_eq!(metric("disk.app"), installed(app), "app layer vs du");
    assert_eq!(
        total,
        installed(&all),
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

/// Every process the test's process tree holds, by PID: its descendants (cvm is a child
/// subreaper, so a runtime's detached container and a shim come back to it), with their names.
fn descendants() -> HashMap<u32, String> {
    let me = std::process::id();
    let mut parent: HashMap<u32, (u32, String)> = HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 2..].split_whitespace().nth(1);
        if let Some(ppid) = ppid.and_then(|p| p.parse().ok()) {
            parent.insert(pid, (ppid, stat[open + 1..close].to_string()));
        }
    }
    let is_mine = |mut pid: u32| {
        for _ in 0..64 {
            match parent.get(&pid) {
                Some((ppid, _)) if *ppid == me => return true,
                Some((ppid, _)) => pid = *ppid,
                None => return false,
            }
        }
        false
    };
    parent
        .iter()
        .filter(|(pid, _)| is_mine(**pid))
        .map(|(pid, (_, name))| (*pid, name.clone()))
        .collect()
}

/// The one resident-process rule: every process a launch leaves running on the host (a
/// container's init and workload, Docker's shim) is in the instance's resident set, or is a
/// daemon measured apart; the only exception is Docker's CLI, which cvm keeps attached as its
/// marker channel and a detached `docker run` would not leave. Each backend's memory says which
/// supervisor it counts: `container` a `cvm-runtime` waiter measured apart, `docker` its shim,
/// runc none.
#[test]
fn every_process_that_outlives_the_launch_is_counted() {
    // Alone in this binary: its siblings' launches would be descendants of this process too.
    let _alone = common::measuring_alone();
    use common::instances::{launch, prepare, scenario, token, usable, wait_marker_ready};
    use cvm::backend::{docker, HostOptions, Supervisor};
    use cvm::scenario::BackendKind;
    if !host_has(is_root(), "needs root") {
        return;
    }
    let mut kinds: Vec<BackendKind> = [BackendKind::Container, BackendKind::Runc]
        .into_iter()
        .filter(|k| usable(*k))
        .collect();
    if host_has(
        common::which("dockerd") && common::which("docker"),
        "Docker is not installed (Debian package docker.io)",
    ) {
        kinds.push(BackendKind::Docker);
    }
    let s = scenario("applet = \"idle\"", "");
    for kind in kinds {
        let prepared = if kind == BackendKind::Docker {
            common::instances::setup_env();
            let image = cvm::image::Image::build(&s).unwrap();
            let opts = HostOptions {
                docker: docker::DockerOptions {
                    daemon: docker::DaemonChoice::Managed,
                    host: None,
                },
                ..HostOptions::default()
            };
            cvm::backend::create(kind, &opts)
                .prepare(&s, &image)
                .expect("prepare docker")
        } else {
            prepare(kind, &s)
        };
        let supervisor = prepared
            .config()
            .get(cvm::results::SUPERVISOR_KEY)
            .cloned()
            .unwrap_or_default();
        let before = descendants();
        let mut instance = launch(&*prepared, &token("sup"));
        wait_marker_ready(&*instance, &kind.to_string());
        // Left running twice over 300 ms: not a runtime or client still on its way out.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let first = descendants();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let second = descendants();
        let counted: Vec<u32> = instance
            .host_pids()
            .into_iter()
            .chain(instance.daemon_pids())
            .collect();
        let left_out: Vec<(u32, &String)> = second
            .iter()
            .filter(|(pid, _)| !before.contains_key(pid) && first.contains_key(pid))
            .filter(|(pid, _)| !counted.contains(pid))
            // Docker's CLI: cvm's marker channel, not part of a deployment.
            .filter(|(_, name)| kind != BackendKind::Docker || *name != "docker")
            .map(|(pid, name)| (*pid, name))
            .collect();
        assert!(
            left_out.is_empty(),
            "{kind}: resident but not counted: {left_out:?} (counted {counted:?})"
        );
        match (kind, instance.supervisor()) {
            (BackendKind::Container, Supervisor::Apart(bytes)) => {
                assert!(bytes > 64 * 1024, "a cvm-runtime waiter of {bytes} B");
                assert!(
                    supervisor.starts_with("cvm-runtime's waiter"),
                    "{supervisor}"
                );
            }
            (BackendKind::Runc, Supervisor::None) => {
                assert!(supervisor.starts_with("none"), "{supervisor}");
            }
            (BackendKind::Docker, Supervisor::Pids(pids)) => {
                assert_eq!(pids.len(), 1, "one shim");
                assert!(instance.host_pids().contains(&pids[0]));
                assert!(supervisor.starts_with("containerd-shim"), "{supervisor}");
            }
            (kind, other) => panic!("{kind} counts supervisor {other:?}"),
        }
        instance.teardown().unwrap();
    }
}
