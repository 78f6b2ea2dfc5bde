//! Readiness seen from both sides, on every backend: a server that sleeps 2 s before it listens
//! is not ready before those 2 s, even on a VM, whose user network accepts the host's
//! connections before the guest listens. The inside observation (init's `CVM:listening`, or the
//! host reading native's own socket table) and the host's probe must both hold.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::instances::*;

use cvm::audit;
use cvm::backend::docker::{DaemonChoice, DockerOptions};
use cvm::backend::{self, HostOptions, LaunchContext};
use cvm::image::Image;
use cvm::measure::startup;
use cvm::scenario::BackendKind;
use cvm_proto::metric::Phase;

/// How long the server waits before `listen`.
const LISTEN_DELAY: Duration = Duration::from_secs(2);
/// How late a marker's host stamp may be relative to another's on a loaded host.
const MARKER_TRANSPORT_SLACK: Duration = Duration::from_millis(50);

fn slow_listener_is_ready_only_once_it_listens(kind: BackendKind, tag: &str) {
    if !usable(kind) {
        return;
    }
    // A port of its own: native shares the host's network with other tests.
    let port = fastrand::u16(20000..40000);
    let s = parse(&format!(
        "name = \"slow-listen\"\ndescription = \"listens after 2 s\"\n\
         [workload]\napplet = \"http\"\nargs = [\"--port\", \"{port}\", \"--listen-delay-ms\", \"{}\"]\n\
         [readiness]\nkind = \"tcp\"\nport = {port}\n\
         [resources]\nmemory_mib = 128\nnetwork = \"private\"\n",
        LISTEN_DELAY.as_millis()
    ));
    setup_env();
    let image = Image::build(&s).expect("cannot build the image");
    // VMs under TCG, as the other VM tests: the KVM probe is `cvm doctor`'s cost, not a test's.
    let options = HostOptions {
        accel: Some(cvm::backend::vm::accel::AccelChoice::Tcg),
        // `$CVM_KERNEL`, as `--kernel` reads it: CI reruns the VM tests with the minimal kernel.
        kernel: cvm::backend::vm::KernelChoice::parse(
            &std::env::var("CVM_KERNEL").unwrap_or_default(),
        ),
        // Docker on a private daemon started for this test and stopped when `prepared` goes:
        // never whatever daemon the host may run.
        docker: DockerOptions {
            daemon: DaemonChoice::Managed,
            host: None,
        },
    };
    let prepared = backend::create(kind, &options)
        .prepare(&s, &image)
        .expect("prepare failed");
    let token = token(tag);
    let before = audit::snapshot();
    let mut instance = prepared
        .launch(&LaunchContext {
            instance: 0,
            run_id: token.clone(),
        })
        .expect("launch failed");
    let timeline = startup::wait_ready(
        instance.as_ref(),
        &s.readiness,
        Duration::from_secs(120),
        &AtomicBool::new(false),
    )
    .unwrap_or_else(|e| panic!("{kind}: never ready: {e}"));
    let ready = timeline.ready_latency().unwrap();
    let workload = timeline
        .workload_started
        .or(timeline.points.first().map(|(_, at)| *at))
        .unwrap_or_default();
    assert!(
        ready >= LISTEN_DELAY,
        "{kind}: ready after {ready:?}, before the server listened ({timeline:?})"
    );
    // The inside observation itself came after the delay from the workload's start. Both are
    // host stamps of markers, and the workload's may reach the host late on a busy machine (its
    // transport, not the workload, is then what is measured): a little slack for that.
    let listening = timeline.listening.expect("no inside observation");
    assert!(
        listening + MARKER_TRANSPORT_SLACK >= workload + LISTEN_DELAY,
        "{kind}: LISTEN seen at {listening:?}, workload started at {workload:?}"
    );
    let phases = timeline.phase_durations();
    assert_eq!(
        phases.iter().map(|(_, d)| *d).sum::<Duration>(),
        ready,
        "{kind}: {phases:?}"
    );
    assert!(phases.iter().any(|(p, _)| *p == Phase::WorkloadStart));
    eprintln!(
        "{kind}: ready {:.3} s, ready_probe_skew {:+.4} s, phases {:?}",
        ready.as_secs_f64(),
        timeline.ready_probe_skew().unwrap(),
        phases
            .iter()
            .map(|(p, d)| format!("{p}={:.4}", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    instance.teardown().expect("teardown failed");
    assert_no_leaks(&before, &token);
}

/// On the host's network another process may hold the workload's port: native's readiness is
/// then a failed run naming that process, never a "ready" the other process answered.
#[test]
fn native_is_not_ready_on_a_port_another_process_holds() {
    if !usable(BackendKind::Native) {
        return;
    }
    // This test process holds the port; the workload never listens at all.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let s = parse(&format!(
        "name = \"held-port\"\n[workload]\ncommand = [\"/bin/sleep\", \"1000\"]\n\
         [readiness]\nkind = \"tcp\"\nport = {port}\n[resources]\nnetwork = \"private\"\n"
    ));
    setup_env();
    let prepared = prepare(BackendKind::Native, &s);
    let token = token("lh");
    let before = audit::snapshot();
    let mut instance = launch(prepared.as_ref(), &token);
    let outcome = startup::wait_ready(
        instance.as_ref(),
        &s.readiness,
        Duration::from_secs(30),
        &AtomicBool::new(false),
    );
    let err = match outcome {
        Ok(t) => panic!("ready on a port the workload never listened on: {t:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!(
            "port {port} is in LISTEN by a process outside the instance"
        )) && err.contains(&format!("PID {}", std::process::id())),
        "{err}"
    );
    instance.teardown().expect("teardown failed");
    drop(squatter);
    assert_no_leaks(&before, &token);
}

#[test]
fn native_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::Native, "ln");
}

#[test]
fn container_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::Container, "lc");
}

#[test]
fn runc_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::Runc, "lr");
}

#[test]
fn gvisor_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::Gvisor, "lg");
}

#[test]
fn docker_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::Docker, "ld");
}

#[test]
fn vm_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::Vm, "lv");
}

/// The case that started this: QEMU's user network accepts the host's connections before the
/// guest listens.
#[test]
fn vm_user_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::VmUser, "lu");
}

#[test]
fn vm_classic_waits_for_listen() {
    slow_listener_is_ready_only_once_it_listens(BackendKind::VmClassic, "lk");
}
