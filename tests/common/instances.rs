//! Driving backends through the library API in tests: scenarios from TOML text, prepared
//! backends, launches, collecting a workload's output, and the leak audit.

use std::sync::atomic::AtomicBool;
use std::sync::Once;
use std::time::{Duration, Instant};

use cvm::audit;
use cvm::backend::{self, Availability, Event, HostOptions, Instance, LaunchContext, Prepared};
use cvm::image::Image;
use cvm::measure::startup::{self, Timeline};
use cvm::scenario::{self, BackendKind, Readiness, Scenario};

use super::{host_has, is_root, which};

/// How long a test instance may take to get ready or to exit.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Docker's default capability set as a `CapEff` mask.
pub const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";
/// Docker's set less CAP_NET_RAW, which runsc drops unless run with `--net-raw`.
pub const GVISOR_DEFAULT_CAPS: &str = "00000000a80405fb";

/// Points image builds at the test cache (once, before any test thread builds an image).
pub fn setup_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("CVM_CACHE_DIR", super::cache_dir()));
}

/// A run token: short (it goes into 15-character link names) and unique per test.
pub fn token(tag: &str) -> String {
    format!("{tag}{:04x}", fastrand::u16(..))
}

/// Whether this host can run the backend; says why not otherwise (or fails under
/// CVM_REQUIRE_HOST=1).
pub fn usable(kind: BackendKind) -> bool {
    if !host_has(is_root(), "these tests need root")
        || !host_has(
            cvm::image::find_guest().is_ok(),
            "cvm-guest is not built (run a plain `cargo build` first)",
        )
    {
        return false;
    }
    if kind == BackendKind::Runc && !host_has(which("runc"), "runc is not installed") {
        return false;
    }
    if kind == BackendKind::Gvisor
        && !host_has(
            which("runsc"),
            "runsc is not installed (apt-get install runsc)",
        )
    {
        return false;
    }
    match backend::create(kind, &HostOptions::default()).availability() {
        Availability::Available => true,
        Availability::Unavailable { reason, .. } => {
            host_has(false, &format!("backend {kind} is unavailable: {reason}"))
        }
    }
}

/// A marker-ready scenario around a `[workload]` body and a `[resources]` body.
pub fn scenario(workload: &str, resources: &str) -> Scenario {
    parse(&format!(
        "name = \"test\"\ndescription = \"instance test\"\n\
         [workload]\n{workload}\n[readiness]\nkind = \"marker\"\n[resources]\n{resources}\n"
    ))
}

/// A `[workload]` body running `script` under the image's busybox shell.
pub fn shell(script: &str) -> String {
    format!("command = [\"/bin/sh\", \"-c\", {script:?}]")
}

/// Loads a scenario from TOML text (through a file, as a user's scenario is loaded).
pub fn parse(text: &str) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.toml");
    std::fs::write(&path, text).unwrap();
    scenario::load(path.to_str().unwrap())
        .unwrap_or_else(|e| panic!("bad test scenario: {e}\n{text}"))
}

pub fn prepare(kind: BackendKind, s: &Scenario) -> Box<dyn Prepared> {
    setup_env();
    let image = Image::build(s).expect("cannot build the image");
    backend::create(kind, &HostOptions::default())
        .prepare(s, &image)
        .expect("prepare failed")
}

pub fn launch(prepared: &dyn Prepared, token: &str) -> Box<dyn Instance> {
    prepared
        .launch(&LaunchContext {
            instance: 0,
            run_id: token.to_string(),
        })
        .expect("launch failed")
}

/// Waits (up to [`TIMEOUT`]) for the instance's ready marker; panics naming `what` otherwise.
pub fn wait_marker_ready(instance: &dyn Instance, what: &str) -> Timeline {
    startup::wait_ready(
        instance,
        &Readiness::Marker,
        TIMEOUT,
        &AtomicBool::new(false),
    )
    .unwrap_or_else(|e| panic!("{what} never got ready: {e}"))
}

/// Collects the workload's output lines (its stderr) until it exits; returns them with the
/// exit code init reported.
pub fn run_to_exit(instance: &dyn Instance) -> (Vec<String>, Option<i32>) {
    let deadline = Instant::now() + TIMEOUT;
    let mut lines = Vec::new();
    let mut code = None;
    let mut exited = false;
    while Instant::now() < deadline {
        match instance.events().recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Output(line)) => lines.push(line.into_text()),
            Ok(Event::Marker(cvm_proto::Marker::Exit(c), _)) => code = Some(c),
            Ok(Event::Exited(info, _)) => {
                code = code.or(info.code);
                exited = true;
            }
            Ok(_) => {}
            Err(_) if exited => break,
            Err(_) => {}
        }
    }
    assert!(exited, "the workload did not exit; output: {lines:#?}");
    (lines, code)
}

/// The value of a `key=value` line the workload printed.
pub fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line in {lines:#?}"))
}

/// Fails if anything named with `token` appeared since `before` and is still there.
pub fn assert_no_leaks(before: &audit::Snapshot, token: &str) {
    let leaked = audit::snapshot().matching(token).leaked_since(before);
    assert!(
        leaked.is_empty(),
        "left behind:\n{}",
        leaked
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
