//! container — `cvm-guest hello` from the `startup` scenario's image, from the call to the
//! backend's `launch` (which includes cvm's cgroup creation, or runc's bundle writing) to:
//! - `cvm_spawn_to_cgroup_join`: cvm's clone has joined the container's cgroup (the
//!   `cgroup_join` phase);
//! - `cvm_spawn_to_init`, `runc_spawn_to_init`: init's first marker arrived (the exec as seen
//!   from inside; comparable between the two runtimes);
//! - `cvm_spawn_to_exit`, `runc_spawn_to_exit`: the container's init (cvm) or `runc run`
//!   (runc) exited — the whole container life of a workload that exits at once;
//! - `native_floor_to_ready`: a bare fork+exec of `cvm-guest hello` on the host to its ready
//!   marker, for reference. Teardown is outside the timing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use cvm::backend::{Event, Instance, LaunchContext, Prepared};
use cvm::scenario::BackendKind;
use cvm_proto::Marker;

use crate::{error_chain, Env, EVENT_TIMEOUT, PREFIX};

/// Which instant of a launch a case stops at.
#[derive(Clone, Copy)]
enum Until {
    CgroupJoin,
    Init,
    Exit,
}

/// Launches one instance and returns the time from the `launch` call to `until`. The instance
/// is then left to exit by itself (`hello` exits at once; a teardown of a running init would
/// wait out its stop grace period) and torn down, untimed.
fn launch_until(prepared: &dyn Prepared, until: Until) -> Duration {
    static INSTANCE: AtomicU32 = AtomicU32::new(0);
    let ctx = LaunchContext {
        instance: INSTANCE.fetch_add(1, Ordering::Relaxed),
        run_id: format!("{PREFIX}{}", std::process::id()),
    };
    let start = Instant::now();
    let mut instance = prepared.launch(&ctx).expect("launch");
    let at = wait_for(instance.as_ref(), until);
    let took = at.duration_since(start);
    instance.teardown().expect("teardown");
    took
}

/// Waits for `until` and for the exit (the exit is watched on one thread and markers are read
/// on another, so it can arrive before the last markers); returns when `until` happened.
fn wait_for(instance: &dyn Instance, until: Until) -> Instant {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut output = Vec::new();
    let mut target = None;
    let mut exited = false;
    while target.is_none() || !exited {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match instance.events().recv_timeout(left) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no event in time (exited: {exited}); output: {output:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("events ended (exited: {exited}); output: {output:?}")
            }
        };
        match (until, event) {
            (Until::CgroupJoin, Event::Phase(cvm_proto::metric::Phase::CgroupJoin, at)) => {
                target = Some(at)
            }
            (Until::Init, Event::Marker(Marker::Init, at)) => target = Some(at),
            (_, Event::Exited(info, at)) => {
                assert!(info.success(), "{info}; output: {output:?}");
                exited = true;
                if matches!(until, Until::Exit) {
                    target = Some(at);
                }
            }
            (_, Event::Output(line)) => output.push(line.into_text()),
            (_, Event::Marker(Marker::Error(e), _)) => output.push(e),
            _ => {}
        }
    }
    target.expect("seen")
}

pub fn benches(c: &mut Criterion, env: &mut Env) {
    const GROUP: &str = "container";
    if !env.needs_root(GROUP) {
        return;
    }
    let mut cvm_prepared: Option<Box<dyn Prepared>> = None;
    let mut runc_prepared: Option<Box<dyn Prepared>> = None;
    let mut guest = None;
    if !env.listing {
        let (scenario, image) = match env.image() {
            Ok(x) => x,
            Err(e) => return env.skip(GROUP, e),
        };
        guest = cvm::image::find_guest().ok();
        let opts = cvm::backend::HostOptions::default();
        for (kind, slot) in [
            (BackendKind::Container, &mut cvm_prepared),
            (BackendKind::Runc, &mut runc_prepared),
        ] {
            let backend = cvm::backend::create(kind, &opts);
            match backend.availability() {
                cvm::backend::Availability::Available => match backend.prepare(&scenario, &image) {
                    Ok(p) => *slot = Some(p),
                    Err(e) => env.skip(
                        &format!("{GROUP}/{kind}"),
                        format!("{e}: {}", error_chain(&e)),
                    ),
                },
                cvm::backend::Availability::Unavailable { reason, hint } => {
                    env.skip(&format!("{GROUP}/{kind}"), format!("{reason} ({hint})"))
                }
            }
        }
    }
    // Each iteration also waits (untimed) for the exit and tears down: 1.5 s of timed
    // measurement is 3-5 s of wall time per case.
    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(15)
        .measurement_time(Duration::from_millis(1500));
    let cases = [
        ("cvm", "spawn_to_cgroup_join", Until::CgroupJoin),
        ("cvm", "spawn_to_init", Until::Init),
        ("cvm", "spawn_to_exit", Until::Exit),
        ("runc", "spawn_to_init", Until::Init),
        ("runc", "spawn_to_exit", Until::Exit),
    ];
    for (runtime, what, until) in cases {
        let prepared = if runtime == "cvm" {
            &cvm_prepared
        } else {
            &runc_prepared
        };
        if prepared.is_none() && !env.listing {
            continue;
        }
        g.bench_function(format!("{runtime}_{what}"), |b| {
            let p = prepared.as_deref().expect("prepared");
            b.iter_custom(|iters| (0..iters).map(|_| launch_until(p, until)).sum());
        });
    }
    if guest.is_some() || env.listing {
        g.bench_function("native_floor_to_ready", |b| {
            let guest = guest.as_deref().expect("guest");
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        cvm::backend::native::fork_exec_floor(guest, EVENT_TIMEOUT).expect("floor")
                    })
                    .sum()
            });
        });
    }
    g.finish();
}
