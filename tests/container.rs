//! The container backends on the real host: cvm's own runtime (`container`) and runc.
//!
//! They need root, cgroups and a built `cvm-guest`; without them they skip (or fail under
//! `CVM_REQUIRE_HOST=1`). Every test uses a run token of its own and audits only resources
//! carrying it, so tests running side by side (or another cvm on the machine) cannot make
//! each other's audits fail.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cvm::audit;
use cvm::backend::{self, Availability, HostOptions, LaunchContext};
use cvm::image::Image;
use cvm::measure::startup;
use cvm::scenario::{BackendKind, Readiness};

use common::instances::*;
use common::{host_has, is_root};
use cvm::backend::docker::daemon::ManagedDaemon;

#[test]
fn a_hundred_launches_and_teardowns_leave_nothing_behind() {
    if !usable(BackendKind::Container) {
        return;
    }
    let token = token("h");
    let hello = prepare(
        BackendKind::Container,
        &scenario("applet = \"hello\"", "memory_mib = 64"),
    );
    // Some instances get a private network and are torn down while still running.
    let idle = prepare(
        BackendKind::Container,
        &scenario(
            "applet = \"idle\"",
            "memory_mib = 64\nnetwork = \"private\"",
        ),
    );
    let interrupted = AtomicBool::new(false);
    let before = audit::snapshot();
    for i in 0..100u32 {
        let prepared = if i % 10 == 9 { &idle } else { &hello };
        let ctx = LaunchContext {
            instance: i,
            run_id: token.clone(),
        };
        let mut instance = prepared.launch(&ctx).expect("launch failed");
        startup::wait_ready(instance.as_ref(), &Readiness::Marker, TIMEOUT, &interrupted)
            .unwrap_or_else(|e| panic!("launch {i} never got ready: {e}"));
        if i % 10 == 9 {
            assert!(
                instance.endpoint(80).is_some(),
                "a private network has an endpoint"
            );
            assert!(!instance.host_pids().is_empty());
        }
        instance.teardown().expect("teardown failed");
    }
    assert_no_leaks(&before, &token);
}

#[test]
fn crashed_and_never_ready_workloads_are_torn_down_completely() {
    if !usable(BackendKind::Container) {
        return;
    }
    let token = token("c");
    let before = audit::snapshot();
    for (i, workload) in ["applet = \"crash\"", "applet = \"never-ready\""]
        .iter()
        .enumerate()
    {
        let prepared = prepare(
            BackendKind::Container,
            &scenario(workload, "memory_mib = 64\nnetwork = \"private\""),
        );
        let ctx = LaunchContext {
            instance: u32::try_from(i).unwrap(),
            run_id: token.clone(),
        };
        let instance = prepared.launch(&ctx).expect("launch failed");
        let outcome = startup::wait_ready(
            instance.as_ref(),
            &Readiness::Marker,
            Duration::from_secs(2),
            &AtomicBool::new(false),
        );
        assert!(outcome.is_err(), "{workload} must not get ready");
        // Dropped without an explicit teardown: Drop must clean up as well.
        drop(instance);
    }
    assert_no_leaks(&before, &token);
}

/// Docker's default capability set as a CapEff mask (CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
/// KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE,
/// SETFCAP).

#[test]
fn the_workload_is_isolated_from_the_host() {
    if !usable(BackendKind::Container) {
        return;
    }
    let script = r#"{
        echo "hostname=$(busybox hostname)"
        echo "pids=$(ls /proc | busybox grep -E '^[0-9]+$' | busybox tr '\n' ' ')"
        echo "mounts=$(busybox awk '{print $5}' /proc/self/mountinfo | busybox tr '\n' ' ')"
        echo "links=$(ls /sys/class/net | busybox tr '\n' ' ')"
        if echo x > /cvm-probe 2>/dev/null; then echo rootfs=writable; else echo rootfs=readonly; fi
        if echo x > /tmp/probe; then echo tmp=writable; else echo tmp=readonly; fi
        echo "capeff=$(busybox awk '/^CapEff/ {print $2}' /proc/self/status)"
        echo "capbnd=$(busybox awk '/^CapBnd/ {print $2}' /proc/self/status)"
        echo "nnp=$(busybox awk '/^NoNewPrivs/ {print $2}' /proc/self/status)"
        echo "devnull=$(ls /dev/null)"
    } >&2"#;
    let workload = format!("command = [\"/bin/sh\", \"-c\", {script:?}]");
    let prepared = prepare(
        BackendKind::Container,
        &scenario(&workload, "memory_mib = 64"),
    );
    let token = token("i");
    let before = audit::snapshot();
    let mut instance = prepared
        .launch(&LaunchContext {
            instance: 7,
            run_id: token.clone(),
        })
        .expect("launch failed");
    let (lines, code) = run_to_exit(instance.as_ref());
    instance.teardown().expect("teardown failed");
    assert_eq!(code, Some(0), "{lines:#?}");

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(value(&lines, "hostname"), "cvm-7");
    assert_ne!(value(&lines, "hostname"), host.trim());
    // Only init (1), the shell and its pipeline's children: no host PID is visible.
    let pids: Vec<u32> = value(&lines, "pids")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.contains(&1), "{pids:?}");
    assert!(pids.iter().all(|&p| p < 20), "host PIDs visible: {pids:?}");
    assert!(!pids.contains(&std::process::id()) || std::process::id() < 20);
    let mounts: Vec<&str> = value(&lines, "mounts").split_whitespace().collect();
    // Its own, and those that mask or make read-only the host kernel's paths (runc's defaults).
    use cvm_proto::isolation::{MASKED_PATHS, READONLY_PATHS};
    for m in &mounts {
        assert!(
            ["/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/tmp"].contains(m)
                || MASKED_PATHS.contains(m)
                || READONLY_PATHS.contains(m),
            "a host mount is visible: {m} (all: {mounts:?})"
        );
    }
    assert!(
        mounts.contains(&"/proc/sys"),
        "/proc/sys is not read-only: {mounts:?}"
    );
    assert_eq!(value(&lines, "links").trim(), "lo");
    assert_eq!(value(&lines, "rootfs"), "readonly");
    assert_eq!(value(&lines, "tmp"), "writable");
    assert_eq!(value(&lines, "capeff"), DOCKER_DEFAULT_CAPS);
    assert_eq!(value(&lines, "capbnd"), DOCKER_DEFAULT_CAPS);
    assert_eq!(value(&lines, "nnp"), "1");
    assert_eq!(value(&lines, "devnull"), "/dev/null");
    assert_no_leaks(&before, &token);
}

#[test]
fn a_workload_over_its_memory_limit_is_oom_killed_and_reported() {
    if !usable(BackendKind::Container) {
        return;
    }
    let prepared = prepare(
        BackendKind::Container,
        &scenario(
            "applet = \"mem\"\nargs = [\"--mib\", \"96\"]",
            "memory_mib = 32",
        ),
    );
    let token = token("o");
    let before = audit::snapshot();
    let mut instance = prepared
        .launch(&LaunchContext {
            instance: 0,
            run_id: token.clone(),
        })
        .expect("launch failed");
    let outcome = startup::wait_ready(
        instance.as_ref(),
        &Readiness::Marker,
        TIMEOUT,
        &AtomicBool::new(false),
    );
    instance.teardown().expect("teardown failed");
    match outcome {
        Err(startup::StartupError::Reported { message }) => {
            assert!(message.contains("out of memory"), "{message}");
            assert!(message.contains("32 MiB"), "{message}");
        }
        other => panic!("expected an out-of-memory report, got {other:?}"),
    }
    assert_no_leaks(&before, &token);
}

#[test]
fn a_private_network_reaches_the_workload_through_its_veth() {
    if !usable(BackendKind::Container) {
        return;
    }
    private_network_reaches_the_workload(BackendKind::Container, "n");
}

/// gVisor's private network: runsc's host network inside the namespace cvm made, on the same
/// veth scheme; nothing of it (link, sandbox, gofer, state file) outlives the teardown.
#[test]
fn a_private_network_reaches_the_gvisor_workload_through_its_veth() {
    if !usable(BackendKind::Gvisor) {
        return;
    }
    private_network_reaches_the_workload(BackendKind::Gvisor, "gn");
}

fn private_network_reaches_the_workload(kind: BackendKind, tag: &str) {
    let text = "name = \"test\"\ndescription = \"web\"\n\
                [workload]\napplet = \"http\"\nargs = [\"--port\", \"8080\"]\n\
                [readiness]\nkind = \"http\"\nport = 8080\n\
                [resources]\nnetwork = \"private\"\n";
    let s = parse(text);
    let prepared = prepare(kind, &s);
    let token = token(tag);
    let before = audit::snapshot();
    let mut instance = prepared
        .launch(&LaunchContext {
            instance: 0,
            run_id: token.clone(),
        })
        .expect("launch failed");
    let endpoint = instance.endpoint(8080).expect("no endpoint");
    assert!(
        !endpoint.ip().is_loopback(),
        "served from the container's own namespace, not the host's loopback"
    );
    let timeline = startup::wait_ready(
        instance.as_ref(),
        &s.readiness,
        TIMEOUT,
        &AtomicBool::new(false),
    )
    .expect("the server never answered");
    assert!(timeline.ready_latency().is_some());
    // The audit sees a live instance (so an empty diff after teardown means something).
    let live: Vec<audit::ResourceKind> = audit::snapshot()
        .matching(&token)
        .leaked_since(&before)
        .iter()
        .map(|r| r.kind)
        .collect();
    for kind in [
        audit::ResourceKind::Process,
        audit::ResourceKind::Cgroup,
        audit::ResourceKind::Link,
    ] {
        assert!(live.contains(&kind), "{kind:?} not seen in {live:?}");
    }
    instance.teardown().expect("teardown failed");
    assert_no_leaks(&before, &token);
}

#[test]
fn runc_runs_the_same_image_and_leaves_nothing_behind() {
    if !host_has(common::which("runc"), "runc is not installed") || !usable(BackendKind::Runc) {
        return;
    }
    runs_hello_and_leaves_nothing_behind(BackendKind::Runc, "r");
}

#[test]
fn gvisor_runs_the_same_image_and_leaves_nothing_behind() {
    if !usable(BackendKind::Gvisor) {
        return;
    }
    runs_hello_and_leaves_nothing_behind(BackendKind::Gvisor, "gv");
}

/// Launches the `hello` applet under `kind`, checks its startup timeline has every phase, tears
/// it down and audits for leaks.
fn runs_hello_and_leaves_nothing_behind(kind: BackendKind, tag: &str) {
    let prepared = prepare(kind, &scenario("applet = \"hello\"", "memory_mib = 64"));
    let token = token(tag);
    let before = audit::snapshot();
    let mut instance = prepared
        .launch(&LaunchContext {
            instance: 0,
            run_id: token.clone(),
        })
        .expect("launch failed");
    let timeline = wait_marker_ready(instance.as_ref(), &format!("{kind}'s container"));
    // runc and crun join their cgroups themselves, unseen: their start is all `runtime`.
    let phases: Vec<&str> = timeline.points.iter().map(|(p, _)| p.name()).collect();
    assert_eq!(phases, ["runtime", "workload_start"], "{kind}");
    instance.teardown().expect("teardown failed");
    assert_no_leaks(&before, &token);
}

/// The container's init PID as runc itself reports it (`runc list`), found by the run token
/// in the container's id.
fn runc_init_pid(token: &str) -> Option<u32> {
    let out = std::process::Command::new("runc")
        .args(["--root", "/run/cvm-oci/runc", "list", "--format", "json"])
        .output()
        .ok()?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    list.as_array()?.iter().find_map(|c| {
        c["id"]
            .as_str()?
            .contains(token)
            .then(|| c["pid"].as_u64())
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
    })
}

#[test]
fn runc_memory_cgroup_is_the_one_that_holds_the_container() {
    if !host_has(common::which("runc"), "runc is not installed") || !usable(BackendKind::Runc) {
        return;
    }
    let prepared = prepare(
        BackendKind::Runc,
        &scenario("applet = \"idle\"", "memory_mib = 64"),
    );
    let token = token("g");
    let before = audit::snapshot();
    let mut instance = launch(prepared.as_ref(), &token);
    wait_marker_ready(instance.as_ref(), "runc's container");
    let init = runc_init_pid(&token).expect("runc does not list the container");
    let dir = instance
        .memory_cgroup()
        .expect("a runc instance has a memory cgroup");
    assert!(dir.is_dir(), "{dir:?} is not a directory");
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == init.to_string()),
        "init {init} is not in {dir:?}: {procs:?}"
    );
    assert!(instance.host_pids().contains(&init));
    instance.teardown().expect("teardown failed");
    assert_no_leaks(&before, &token);
}

/// Whether the host mounts cgroup v1 controllers with a v2 hierarchy beside them (crun refuses
/// to run there).
fn hybrid_cgroups() -> bool {
    std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
}

/// crun either runs the container, or (installed but refusing, as it does on hybrid cgroups)
/// is reported unavailable with crun's own reason.
#[test]
fn crun_runs_the_container_or_says_why_in_its_own_words() {
    if !host_has(is_root(), "needs root")
        || !host_has(common::which("crun"), "crun is not installed")
        || !host_has(
            cvm::image::find_guest().is_ok(),
            "cvm-guest is not built (run a plain `cargo build` first)",
        )
    {
        return;
    }
    match backend::create(BackendKind::Crun, &HostOptions::default()).availability() {
        Availability::Available => {
            assert!(
                !hybrid_cgroups(),
                "crun claims to work on hybrid cgroups, which it does not support"
            );
            runs_hello_and_leaves_nothing_behind(BackendKind::Crun, "u");
        }
        Availability::Unavailable { reason, hint } => {
            const PREFIX: &str = "crun refused to run a container: ";
            let words = reason
                .strip_prefix(PREFIX)
                .unwrap_or_else(|| panic!("not crun's refusal: {reason}"));
            assert!(!words.trim().is_empty(), "an empty reason: {reason}");
            assert!(!hint.is_empty());
            if hybrid_cgroups() {
                assert!(
                    words.contains("hybrid"),
                    "on hybrid cgroups crun's refusal names them: {reason}"
                );
            }
        }
    }
}

#[test]
fn docker_runs_the_same_image_through_a_private_daemon_and_leaves_nothing_behind() {
    if !host_has(is_root(), "docker tests need root")
        || !host_has(
            common::which("dockerd") && common::which("docker"),
            "Docker is not installed (Debian package docker.io)",
        )
        || !usable(BackendKind::Container)
    {
        return;
    }
    let token = token("d");
    let before = audit::snapshot();
    setup_env();
    let daemon_token;
    {
        let daemon = ManagedDaemon::start().expect("cannot start a private dockerd");
        daemon_token = daemon.token().to_string();
        let docker = backend::docker::DockerBackend::with_host(Some(daemon.host()));
        use cvm::backend::Backend;
        assert_eq!(docker.availability(), Availability::Available);
        let s = scenario("applet = \"hello\"", "memory_mib = 64");
        let image = Image::build(&s).expect("cannot build the image");
        let prepared = docker.prepare(&s, &image).expect("prepare failed");
        let mut instance = prepared
            .launch(&LaunchContext {
                instance: 0,
                run_id: token.clone(),
            })
            .expect("launch failed");
        let timeline = startup::wait_ready(
            instance.as_ref(),
            &Readiness::Marker,
            Duration::from_secs(60),
            &AtomicBool::new(false),
        )
        .expect("Docker's container never got ready");
        let phases: Vec<&str> = timeline.points.iter().map(|(p, _)| p.name()).collect();
        assert_eq!(phases, ["runtime", "workload_start"]);
        instance.teardown().expect("teardown failed");
        let left = std::process::Command::new("docker")
            .env("DOCKER_HOST", daemon.host())
            .args([
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &format!("name={token}"),
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&left.stdout).trim().is_empty(),
            "containers left in the daemon"
        );
    }
    // The daemon is stopped: neither its mounts, processes, bridge, cgroups nor its directory
    // may remain.
    assert_no_leaks(&before, &token);
    assert_no_leaks(&before, &format!("cvm-{daemon_token}"));
}

/// Docker's disk layers as `cvm compare` records them, against the test's own count: Docker's
/// six binaries found by the shell and their libraries by `ldd`, and the image where the daemon
/// says it stores it (`docker image inspect`'s `GraphDriver.Data`), all measured with `du`.
#[test]
fn docker_disk_layers_are_its_binaries_and_the_image_as_docker_stores_it() {
    use common::disk::{assert_layers, disk_figures, du_bytes, du_installed, which, with_ldd};
    if !host_has(is_root(), "docker tests need root")
        || !host_has(
            common::which("dockerd") && common::which("docker"),
            "Docker is not installed (Debian package docker.io)",
        )
        || !usable(BackendKind::Container)
    {
        return;
    }
    setup_env();
    let daemon = ManagedDaemon::start().expect("cannot start a private dockerd");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("disk.toml");
    std::fs::write(
        &scenario,
        "name = \"disk\"\nruns = 1\nwarmup = 0\n[workload]\napplet = \"hello\"\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = common::cvm_cmd()
        .args([
            "compare",
            "--no-progress",
            "--backends",
            "docker",
            "--docker-host",
            &daemon.host(),
            "--scenario",
        ])
        .arg(&scenario)
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let rows = cvm::results::read_samples(&out_dir.join("samples.csv")).unwrap();

    let docker = |args: &[&str]| -> String {
        let out = std::process::Command::new("docker")
            .env("DOCKER_HOST", daemon.host())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            common::stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The image cvm imported (the daemon's data root, in cvm's cache, may keep others).
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    let rootfs = meta["backends"][0]["config"]["rootfs"].as_str().unwrap();
    let tag = rootfs.strip_prefix("docker import ").expect(rootfs);
    let data: serde_json::Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .GraphDriver.Data}}",
        tag,
    ]))
    .unwrap();
    let stored: Vec<std::path::PathBuf> = ["UpperDir", "LowerDir"]
        .iter()
        .filter_map(|k| data[k].as_str())
        .flat_map(|v| v.split(':'))
        .map(std::path::PathBuf::from)
        .collect();
    assert!(!stored.is_empty(), "no layer directories in {data}");
    let app: Vec<_> = stored
        .iter()
        .map(|d| d.join(cvm::image::GUEST_PATH.trim_start_matches('/')))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(app.len(), 1, "cvm-guest in Docker's copy: {app:?}");
    let mut image = app.clone();
    image.extend(stored.iter().cloned());
    let mut runtime = Vec::new();
    for name in [
        "docker",
        "dockerd",
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "docker-init",
    ] {
        let bin = which(name).unwrap_or_else(|| panic!("{name} is part of docker.io"));
        runtime.extend(with_ldd(&bin));
    }
    assert_layers(
        "docker",
        &disk_figures(&rows, "docker"),
        &[
            // Binaries as installed: du of stripped copies (a hand-installed Docker CLI may
            // carry its debug info).
            ("app", du_installed(&app)),
            // The rest of the image as Docker stores it: its layer directories, less the app.
            ("libs", du_bytes(&image) - du_bytes(&app)),
            ("runtime", du_installed(&runtime)),
        ],
    );
}

/// gVisor's availability probe runs a throwaway sandbox: none of its cgroup directories may be
/// left, neither under a hierarchy's root nor under this process's own cgroup, where runsc puts
/// some v1 controllers' directories for a relative path (they were left there before).
#[test]
fn the_gvisor_probe_leaves_no_cgroup() {
    if !usable(BackendKind::Gvisor) {
        return;
    }
    // `usable` ran the probe; run one more in case it was cached elsewhere.
    let _ = cvm::backend::create(BackendKind::Gvisor, &Default::default()).availability();
    let prefix = format!("cvm-oci-probe-{}-", std::process::id());
    let mut left = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                left.push(path);
            } else if path.components().count() < 8 {
                stack.push(path);
            }
        }
    }
    assert!(left.is_empty(), "the probe left {left:?}");
}
