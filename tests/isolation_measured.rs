//! The isolation scenario's measurements on the real host: that the audit can fail, that a
//! containment attempt's errno is measured rather than assumed, and that nothing dangerous runs
//! on the bare host.
//!
//! - the same Docker container audited with its seccomp filter on and Docker's default
//!   capabilities, then with `[security] seccomp = "unconfined"` and `CAP_SYS_ADMIN` added: the
//!   second lets more of the probed system calls reach the kernel and holds the capability;
//! - the same mount attempt in cvm's container is refused with EPERM without `CAP_SYS_ADMIN`
//!   and with EACCES with it (the device node it can make only lives on a `nodev` tmpfs), and
//!   each refusal is recorded with its own errno;
//! - native never runs the containment attempts: `cvm compare` skips them and says so (no
//!   `contain_*` sample, the reason in the backend's configuration and on stderr), and the
//!   `contain` applet launched on the native backend anyway refuses to run and attempts nothing.
//!
//! They need root (and Docker for the first); without them they skip (or fail under
//! `CVM_REQUIRE_HOST=1`). Each audits only the resources carrying its own run token.

mod common;

use std::time::Duration;

use cvm::audit;
use cvm::backend::docker::daemon::ManagedDaemon;
use cvm::backend::{self, Backend, Prepared};
use cvm::image::Image;
use cvm::measure::startup::{self, Timeline};
use cvm::scenario::{BackendKind, Readiness};
use cvm_proto::metric::Metric;

use common::instances::*;
use common::{host_has, is_root};

/// A marker-ready scenario running `applet` with `args`, with `extra` TOML appended.
fn applet_scenario(applet: &str, args: &[String], extra: &str) -> cvm::scenario::Scenario {
    parse(&format!(
        "name = \"isolation-test\"\n[workload]\napplet = \"{applet}\"\nargs = {args:?}\n\
         [readiness]\nkind = \"marker\"\n[resources]\nmemory_mib = 128\npids = 64\n{extra}"
    ))
}

/// Launches `prepared`, waits for it to be ready (and, if it runs to completion, to end), and
/// tears it down; returns what it reported.
fn observe(prepared: &dyn Prepared, token: &str, completes: bool) -> Timeline {
    let mut instance = launch(prepared, token);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let timeout = Duration::from_secs(60);
    let mut timeline = startup::wait_ready(instance.as_ref(), &Readiness::Marker, timeout, &stop)
        .expect("the instance never got ready");
    if completes {
        let exit = startup::wait_exit(instance.as_ref(), &mut timeline, timeout, &stop)
            .expect("the instance never ended");
        assert!(exit.success(), "ended with {exit}: {:?}", timeline.output);
    }
    instance.teardown().expect("teardown failed");
    timeline
}

fn result(t: &Timeline, m: Metric) -> f64 {
    t.results
        .iter()
        .find(|(name, _, _)| name == m.name())
        .map(|(_, v, _)| *v)
        .unwrap_or_else(|| panic!("no {m} in {:?}", t.results))
}

fn note(t: &Timeline, m: Metric) -> String {
    t.notes
        .iter()
        .find(|(name, _)| name == m.name())
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| panic!("no note for {m} in {:?}", t.notes))
}

#[test]
fn the_audit_reports_more_syscalls_and_the_capability_once_the_filter_is_off_and_sys_admin_added() {
    if !host_has(is_root(), "docker tests need root")
        || !host_has(
            common::which("dockerd") && common::which("docker"),
            "Docker is not installed (Debian package docker.io)",
        )
        || !usable(BackendKind::Container)
    {
        return;
    }
    let token = token("ia");
    let before = audit::snapshot();
    setup_env();
    let daemon_token;
    let (confined, loosened) = {
        let daemon = ManagedDaemon::start().expect("cannot start a private dockerd");
        daemon_token = daemon.token().to_string();
        let docker = backend::docker::DockerBackend::with_host(Some(daemon.host()));
        let audit_of = |extra: &str, tag: &str| {
            let s = applet_scenario("audit", &[], extra);
            let image = Image::build(&s).expect("cannot build the image");
            let prepared = docker.prepare(&s, &image).expect("prepare failed");
            observe(prepared.as_ref(), &format!("{token}{tag}"), false)
        };
        (
            audit_of("", "a"),
            audit_of(
                "[security]\ncap_add = [\"CAP_SYS_ADMIN\"]\nseccomp = \"unconfined\"\n",
                "b",
            ),
        )
    };
    let reaching = Metric::AuditSyscallsReachingKernel;
    assert_eq!(result(&confined, Metric::AuditSeccompMode), 2.0);
    assert_eq!(result(&loosened, Metric::AuditSeccompMode), 0.0);
    assert!(
        result(&loosened, reaching) > result(&confined, reaching),
        "{} with the filter, {} without: {} / {}",
        result(&confined, reaching),
        result(&loosened, reaching),
        note(&confined, reaching),
        note(&loosened, reaching)
    );
    assert_eq!(result(&confined, Metric::AuditCapSysAdmin), 0.0);
    assert_eq!(result(&loosened, Metric::AuditCapSysAdmin), 1.0);
    assert!(note(&loosened, Metric::AuditCapEffective).contains("CAP_SYS_ADMIN"));
    assert_no_leaks(&before, &token);
    assert_no_leaks(&before, &format!("cvm-{daemon_token}"));
}

#[test]
fn a_containment_attempt_records_the_errno_it_met() {
    if !usable(BackendKind::Container) {
        return;
    }
    let token = token("ic");
    let before = audit::snapshot();
    let args: Vec<String> = [
        "--host-pid",
        &std::process::id().to_string(),
        "--host-disk",
        "254:0",
        "--memory-mib",
        "128",
        "--pids",
        "64",
        // From the mount attempt on (then ptrace, the fork bomb, memory): fewer to wait for.
        "--from",
        "mount_host_disk",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let attempt = |extra: &str, tag: &str| {
        let s = applet_scenario("contain", &args, extra);
        let prepared = prepare(BackendKind::Container, &s);
        observe(prepared.as_ref(), &format!("{token}{tag}"), true)
    };
    let plain = attempt("", "a");
    let admin = attempt("[security]\ncap_add = [\"CAP_SYS_ADMIN\"]\n", "b");
    let mount = Metric::ContainMountHostDisk;
    assert_eq!(result(&plain, mount), 1.0);
    assert_eq!(result(&admin, mount), 1.0);
    assert!(
        note(&plain, mount).contains("EPERM"),
        "{}",
        note(&plain, mount)
    );
    assert!(
        note(&admin, mount).contains("EACCES"),
        "{}",
        note(&admin, mount)
    );
    // The attempts before --from were not run.
    assert!(plain
        .results
        .iter()
        .all(|(m, _, _)| m != Metric::ContainSysrq.name()));
    assert_no_leaks(&before, &token);
}

#[test]
fn the_contain_applet_refuses_to_run_on_native() {
    if !usable(BackendKind::Native) {
        return;
    }
    let token = token("in");
    let before = audit::snapshot();
    let args: Vec<String> = ["--host-pid", "1", "--host-disk", "254:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = applet_scenario("contain", &args, "");
    let prepared = prepare(BackendKind::Native, &s);
    let instance = launch(prepared.as_ref(), &token);
    let mut timeline = Timeline::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let exit = startup::wait_exit(
        instance.as_ref(),
        &mut timeline,
        Duration::from_secs(20),
        &stop,
    )
    .expect("the applet never ended");
    drop(instance);
    assert_eq!(exit.code, Some(2), "{exit}: {:?}", timeline.output);
    assert!(
        timeline
            .errors
            .iter()
            .any(|e| e.contains("outside an instance")),
        "{:?}",
        timeline.errors
    );
    assert!(
        timeline.results.is_empty(),
        "it attempted: {:?}",
        timeline.results
    );
    assert_no_leaks(&before, &token);
}

#[test]
fn cvm_compare_skips_the_containment_attempts_on_native_and_says_so() {
    if !host_has(is_root(), "cvm compare on native needs root for its cgroup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("isolation.toml");
    let port = common::free_port();
    std::fs::write(
        &scenario,
        format!(
            "name = \"isolation\"\nruns = 1\nwarmup = 0\nbackends = [\"native\"]\n\
             [workload]\napplet = \"http\"\nargs = [\"--port\", \"{port}\"]\n\
             [readiness]\nkind = \"http\"\nport = {port}\n\
             [resources]\nnetwork = \"private\"\npids = 64\n\
             [load]\nkind = \"http\"\nduration_s = 0.5\n\
             [isolation]\ncalibration_s = 0.5\naggressors = []\n"
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = common::cvm_cmd()
        .args(["compare", "--no-progress", "--scenario"])
        .arg(&scenario)
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("native: containment attempts skipped: never run on the bare host"),
        "{stderr}"
    );
    let samples = std::fs::read_to_string(out_dir.join("samples.csv")).unwrap();
    assert!(!samples.contains("contain_"), "{samples}");
    // The audit did run: it is harmless, and native is its baseline.
    assert!(samples.contains("audit_kernel_shared"), "{samples}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("run.json")).unwrap()).unwrap();
    let config = &meta["backends"][0]["config"];
    assert!(
        config["isolation_containment"]
            .as_str()
            .is_some_and(|s| s.starts_with("skipped")),
        "{config}"
    );
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(html.contains("id=\"isolation\"") && html.contains(">skipped<"));
}
