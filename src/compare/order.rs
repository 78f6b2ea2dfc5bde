//! The order of a comparison's runs: every iteration runs each backend once, native first and
//! the others shuffled by a recorded seed (`--order interleaved`, the default), or all of one
//! backend's runs before the next (`--order sequential`); and when a backend is given up.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;

use super::runner::{RunEnd, Runner};
use crate::backend::{LaunchContext, Prepared};
use crate::results::{Phase, ResultsError, SampleRow, SampleWriter};
use crate::scenario::{BackendKind, Scenario};

/// A backend is given up after this many consecutive failed runs: the cause is almost never
/// transient, and a workload that never gets ready would otherwise cost runs × timeout.
const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// What every backend's runs share.
pub(super) struct Shared<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) timeout: Duration,
    pub(super) interrupted: &'a AtomicBool,
    pub(super) ctx: LaunchContext,
    pub(super) floor_program: PathBuf,
    /// The CPUs the load client's threads are pinned to (disjoint from the instances').
    pub(super) client_cpus: Vec<usize>,
    /// The cgroup migration lock's state at every launch.
    pub(super) cgroup_state: super::cgroup_state::CgroupState,
}

/// One prepared backend and its state across the run.
pub(super) struct Lane {
    /// Its place in `infos`.
    pub(super) index: usize,
    pub(super) kind: BackendKind,
    pub(super) prepared: Box<dyn Prepared>,
    pub(super) template: SampleRow,
    /// Its measured idle PSS values (native's are the base of the others' overhead).
    pub(super) idle_pss: Vec<f64>,
    /// Failed runs in a row (the backend is given up at [`MAX_CONSECUTIVE_FAILURES`]).
    pub(super) consecutive: u32,
    /// Its next launch is its first of an image built in this run.
    pub(super) first_launch: bool,
    /// Its disk layers, counted once at prepare (recorded before the first launch).
    pub(super) footprint: crate::measure::disk::Footprint,
    pub(super) end: BackendEnd,
}

impl Lane {
    pub(super) fn runner<'r>(
        &'r mut self,
        shared: &'r Shared,
        writer: &'r mut SampleWriter,
        native_pss: Option<f64>,
    ) -> Runner<'r> {
        Runner {
            scenario: shared.scenario,
            prepared: self.prepared.as_ref(),
            kind: self.kind,
            timeout: shared.timeout,
            interrupted: shared.interrupted,
            writer,
            template: self.template.clone(),
            ctx: shared.ctx.clone(),
            floor_program: shared.floor_program.clone(),
            native_pss,
            idle_pss: std::mem::take(&mut self.idle_pss),
            cold_caches_kept: false,
            first_launch: self.first_launch,
            client_cpus: shared.client_cpus.clone(),
            cgroup_state: shared.cgroup_state,
        }
    }

    fn given_up(&self) -> bool {
        matches!(self.end, BackendEnd::GaveUp(_))
    }
}

/// Every iteration runs each backend once, native first (its idle PSS so far is the base of
/// the others' `memory_overhead`), the others in an order drawn from `seed`: drift on the host
/// (thermal, other tenants, page cache) then spreads over every backend instead of falling on
/// whichever ran in a bad minute.
pub(super) fn run_interleaved(
    lanes: &mut [Lane],
    shared: &Shared,
    writer: &mut SampleWriter,
    plan: &Plan,
    seed: u64,
) -> Result<(), ResultsError> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = plan.warmup + plan.runs;
    let mut native_pss = None;
    for i in 0..total {
        let (phase, iteration, of) = if i < plan.warmup {
            (Phase::Warmup, i, plan.warmup)
        } else {
            (Phase::Measure, i - plan.warmup, plan.runs)
        };
        let kinds: Vec<BackendKind> = lanes.iter().map(|l| l.kind).collect();
        for l in iteration_order(&kinds, &mut rng) {
            if shared.interrupted.load(Ordering::SeqCst) {
                return Ok(());
            }
            let lane = &mut lanes[l];
            if lane.given_up() {
                continue;
            }
            let kind = lane.kind;
            plan.progress.set_message(format!(
                "{kind}: {} {}/{of}",
                phase_word(phase),
                iteration + 1
            ));
            let mut runner = lane.runner(shared, writer, native_pss);
            let outcome = runner.run_once(iteration, phase)?;
            let measured = std::mem::take(&mut runner.idle_pss);
            lane.idle_pss = measured;
            lane.first_launch = false;
            if kind == BackendKind::Native && !lane.idle_pss.is_empty() {
                native_pss = Some(crate::stats::median(&lane.idle_pss));
            }
            plan.progress.inc(1);
            match outcome {
                RunEnd::Measured => lane.consecutive = 0,
                RunEnd::Failed(msg) => {
                    lane.end = BackendEnd::SomeFailed;
                    lane.consecutive += 1;
                    plan.progress
                        .suspend(|| eprintln!("cvm: {kind} run {} failed: {msg}", i + 1));
                    if lane.consecutive >= MAX_CONSECUTIVE_FAILURES {
                        let note = format!(
                            "gave up after {} consecutive failed runs; last: {msg}",
                            lane.consecutive
                        );
                        plan.progress
                            .suspend(|| eprintln!("cvm: backend {kind}: {note}"));
                        plan.progress.inc(u64::from(total - i - 1));
                        lane.end = BackendEnd::GaveUp(note);
                    }
                }
            }
        }
    }
    Ok(())
}

/// All runs of one backend, then the next (`--order sequential`, and density, which keeps N
/// instances of one backend running at once).
pub(super) fn run_sequential(
    lanes: &mut [Lane],
    shared: &Shared,
    writer: &mut SampleWriter,
    plan: &Plan,
) -> Result<(), ResultsError> {
    let mut native_pss = None;
    for lane in lanes {
        if shared.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let mut runner = lane.runner(shared, writer, native_pss);
        let end = if shared.scenario.density.is_some() {
            super::density::run(&mut runner, plan)?
        } else {
            run_iterations(&mut runner, plan)?
        };
        let measured = std::mem::take(&mut runner.idle_pss);
        lane.end = end;
        lane.idle_pss = measured;
        if lane.kind == BackendKind::Native && !lane.idle_pss.is_empty() {
            native_pss = Some(crate::stats::median(&lane.idle_pss));
        }
    }
    Ok(())
}

/// One iteration's order of the backends (indices into `kinds`): native first, the rest
/// shuffled.
pub(super) fn iteration_order(kinds: &[BackendKind], rng: &mut fastrand::Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kinds.len()).collect();
    rng.shuffle(&mut order);
    order.sort_by_key(|&l| kinds[l] != BackendKind::Native);
    order
}

/// How many runs of each kind, and where progress goes.
pub(crate) struct Plan<'a> {
    pub warmup: u32,
    pub runs: u32,
    pub progress: &'a ProgressBar,
}

/// How the runs of one backend ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendEnd {
    /// Every run was measured.
    AllMeasured,
    /// Some runs failed; the others were measured.
    SomeFailed,
    /// The backend was given up, for this reason.
    GaveUp(String),
}

/// Warm-up then measured runs of one backend.
pub(super) fn run_iterations(runner: &mut Runner, plan: &Plan) -> Result<BackendEnd, ResultsError> {
    let (warmup, runs, progress) = (plan.warmup, plan.runs, plan.progress);
    let kind = runner.kind;
    let mut end = BackendEnd::AllMeasured;
    let mut consecutive = 0;
    for i in 0..warmup + runs {
        if runner.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let (phase, iteration, of) = if i < warmup {
            (Phase::Warmup, i, warmup)
        } else {
            (Phase::Measure, i - warmup, runs)
        };
        progress.set_message(format!(
            "{kind}: {} {}/{of}",
            phase_word(phase),
            iteration + 1
        ));
        match runner.run_once(iteration, phase)? {
            RunEnd::Measured => consecutive = 0,
            RunEnd::Failed(msg) => {
                end = BackendEnd::SomeFailed;
                consecutive += 1;
                progress.suspend(|| eprintln!("cvm: {kind} run {} failed: {msg}", i + 1));
                if consecutive >= MAX_CONSECUTIVE_FAILURES {
                    let note =
                        format!("gave up after {consecutive} consecutive failed runs; last: {msg}");
                    progress.suspend(|| eprintln!("cvm: backend {kind}: {note}"));
                    progress.inc(u64::from(warmup + runs - i - 1));
                    return Ok(BackendEnd::GaveUp(note));
                }
            }
        }
        progress.inc(1);
    }
    Ok(end)
}

pub(super) fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Warmup => "warm-up",
        Phase::Measure => "run",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_put_native_first_and_vary_the_rest_reproducibly() {
        let kinds = [
            BackendKind::Native,
            BackendKind::Container,
            BackendKind::Runc,
            BackendKind::Vm,
        ];
        let orders = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..20)
                .map(|_| iteration_order(&kinds, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = orders(42);
        assert_eq!(a, orders(42), "the same seed gives the same order");
        assert_ne!(a, orders(43));
        assert!(a.iter().all(|o| o[0] == 0 && o.len() == 4));
        let distinct: std::collections::BTreeSet<&Vec<usize>> = a.iter().collect();
        assert!(distinct.len() > 1, "{a:?}");
    }
}
