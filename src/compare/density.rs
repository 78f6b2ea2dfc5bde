//! The density experiment (gVisor's method): N instances started one after another and kept
//! running; host `MemAvailable` read before the first and after the last, with caches dropped
//! before each reading, gives `memory_host_delta` = the drop divided by N. Along the way, the
//! PSS of all running instances divided by their count, at each N, shows how memory scales.
//!
//! Samples: `ready_latency`, `density_pss_per_instance` (the instances' PSS plus the shared
//! daemons' `memory_daemon`, divided by N) and `memory_daemon` with `iteration` = N (instances
//! running); `density_launch_all` (s) and `memory_host_delta` (B) once per run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cvm_proto::metric::Metric;

use super::order::{BackendEnd, Plan};
use super::runner::{RunEnd, Runner};
use crate::backend::Instance;
use crate::measure::startup;
use crate::results::{Phase, ResultsError};
use crate::usage::memory;

/// Lets the kernel settle after dropping caches, so MemAvailable is not read mid-reclaim.
const SETTLE: Duration = Duration::from_millis(300);

pub(super) fn run(runner: &mut Runner, plan: &Plan) -> Result<BackendEnd, ResultsError> {
    let n = runner
        .scenario
        .density
        .as_ref()
        .map_or(1, |d| *d.instances.get_ref());
    let mut end = BackendEnd::AllMeasured;
    for i in 0..plan.warmup + plan.runs {
        if runner.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let phase = if i < plan.warmup {
            Phase::Warmup
        } else {
            Phase::Measure
        };
        if let RunEnd::Failed(msg) = one_run(runner, plan, phase, n)? {
            plan.progress
                .suspend(|| eprintln!("cvm: {} density run failed: {msg}", runner.kind));
            runner.record_failure(n, phase, &msg)?;
            end = BackendEnd::SomeFailed;
        }
        plan.progress.inc(1);
    }
    Ok(end)
}

fn settled_mem_available() -> Option<u64> {
    // Without root the caches stay; the reading is still taken, and noisier.
    let _ = crate::sys::drop_caches();
    std::thread::sleep(SETTLE);
    memory::mem_available()
}

fn one_run(runner: &mut Runner, plan: &Plan, phase: Phase, n: u32) -> Result<RunEnd, ResultsError> {
    let before = settled_mem_available();
    // Declared first, so dropped after the instances (an early return tears them down).
    let mut tracked = Vec::with_capacity(n as usize);
    let mut instances: Vec<Box<dyn Instance>> = Vec::with_capacity(n as usize);
    let start = Instant::now();
    let mut outcome = RunEnd::Measured;
    for k in 1..=n {
        if runner.interrupted.load(Ordering::SeqCst) {
            outcome = RunEnd::Failed("interrupted".to_string());
            break;
        }
        plan.progress
            .set_message(format!("{}: density {k}/{n}", runner.kind));
        let mut ctx = runner.ctx.clone();
        ctx.instance = k;
        runner
            .cgroup_state
            .settle(Instant::now(), runner.interrupted);
        let instance = match runner.prepared.launch(&ctx) {
            Ok(i) => i,
            Err(e) => {
                outcome =
                    RunEnd::Failed(format!("instance {k} of {n}: {:#}", anyhow::Error::new(e)));
                break;
            }
        };
        let ready = startup::wait_ready(
            instance.as_ref(),
            &runner.scenario.readiness,
            runner.timeout,
            runner.interrupted,
        );
        instances.push(instance);
        tracked.push(super::interrupt::track(format!(
            "the {} density instance {k} of {n}",
            runner.kind
        )));
        match ready {
            Ok(t) => {
                let latency = t.ready_latency().unwrap_or_default();
                runner.sample(k, phase, Metric::ReadyLatency, latency.as_secs_f64())?;
            }
            Err(e) => {
                outcome = RunEnd::Failed(format!("instance {k} of {n}: {e}"));
                break;
            }
        }
        let pss: u64 = instances
            .iter()
            .map(|i| crate::backend::resident_pss(&**i))
            .sum();
        // The daemons every instance shares (Docker's) are counted once and divided by N.
        let mut daemons: Vec<u32> = instances.iter().flat_map(|i| i.daemon_pids()).collect();
        daemons.sort_unstable();
        daemons.dedup();
        let daemon_pss = memory::pss_total(&daemons);
        if !daemons.is_empty() {
            runner.sample(k, phase, Metric::MemoryDaemon, daemon_pss as f64)?;
        }
        runner.sample(
            k,
            phase,
            Metric::DensityPssPerInstance,
            (pss + daemon_pss) as f64 / f64::from(k),
        )?;
    }
    if outcome == RunEnd::Measured {
        runner.sample(
            n,
            phase,
            Metric::DensityLaunchAll,
            start.elapsed().as_secs_f64(),
        )?;
        if let (Some(b), Some(a)) = (before, settled_mem_available()) {
            let delta = (b as f64 - a as f64) / f64::from(n);
            runner.sample(n, phase, Metric::MemoryHostDelta, delta)?;
        }
    }
    plan.progress.set_message(format!(
        "{}: tearing down {} instances",
        runner.kind,
        instances.len()
    ));
    for (mut inst, tracked) in instances.into_iter().zip(tracked) {
        let torn_down = inst.teardown();
        drop(inst);
        drop(tracked);
        if let Err(e) = torn_down {
            if outcome == RunEnd::Measured {
                outcome = RunEnd::Failed(format!("teardown: {:#}", anyhow::Error::new(e)));
            }
        }
    }
    Ok(outcome)
}
