//! The order of a comparison's runs: every iteration runs each backend once in an order
//! shuffled by a recorded seed, native included (`--order interleaved`, the default), or all of
//! one backend's runs before the next (`--order sequential`); and when a backend is given up.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;

use super::runner::{phase_word, RunEnd, Runner};
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
    /// Failed runs in a row (the backend is given up at [`MAX_CONSECUTIVE_FAILURES`]).
    pub(super) consecutive: u32,
    /// Its next launch is its first of an image built in this run.
    pub(super) first_launch: bool,
    /// Its disk layers, counted once at prepare (recorded before the first launch).
    pub(super) footprint: crate::usage::disk::Footprint,
    pub(super) end: BackendEnd,
    /// Its entry in the teardown ledger; last, so it drops after `prepared`.
    pub(super) _tracked: super::interrupt::Tracked,
}

impl Lane {
    pub(super) fn runner<'r>(
        &'r mut self,
        shared: &'r Shared,
        writer: &'r mut SampleWriter,
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

/// Every iteration runs each backend once, in an order drawn from `seed` ([`iteration_order`]):
/// drift on the host (thermal, other tenants, page cache) then spreads over every backend
/// instead of falling on whichever ran in a bad minute, and no backend always follows the same
/// one (what ran before decides whether a launch's cgroup join is warm or cold).
pub(super) fn run_interleaved(
    lanes: &mut [Lane],
    shared: &Shared,
    writer: &mut SampleWriter,
    plan: &Plan,
    seed: u64,
) -> Result<(), ResultsError> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = plan.warmup + plan.runs;
    let mut previous = None;
    for i in 0..total {
        let (phase, iteration, of) = if i < plan.warmup {
            (Phase::Warmup, i, plan.warmup)
        } else {
            (Phase::Measure, i - plan.warmup, plan.runs)
        };
        let live: Vec<usize> = (0..lanes.len()).filter(|&l| !lanes[l].given_up()).collect();
        for l in iteration_order(&live, previous, &mut rng) {
            if shared.interrupted.load(Ordering::SeqCst) {
                return Ok(());
            }
            let lane = &mut lanes[l];
            let kind = lane.kind;
            plan.progress.set_message(format!(
                "{kind}: {} {}/{of}",
                phase_word(phase),
                iteration + 1
            ));
            let outcome = lane.runner(shared, writer).run_once(iteration, phase)?;
            lane.first_launch = false;
            previous = Some(l);
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

/// One iteration's order of the `live` lanes: a uniform shuffle, native no different from the
/// others, redrawn while it would start with `previous` (the lane that ran last, in the
/// previous iteration). So no backend runs twice in a row, and by symmetry every backend's
/// predecessor, the previous round's last included, is equally likely to be any other backend.
pub(super) fn iteration_order(
    live: &[usize],
    previous: Option<usize>,
    rng: &mut fastrand::Rng,
) -> Vec<usize> {
    let mut order = live.to_vec();
    loop {
        rng.shuffle(&mut order);
        if order.len() < 2 || order.first() != previous.as_ref() {
            return order;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `rounds` iterations of `k` backends from `seed`, as one sequence of lanes.
    fn sequence(k: usize, rounds: usize, seed: u64) -> Vec<Vec<usize>> {
        let live: Vec<usize> = (0..k).collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut previous = None;
        (0..rounds)
            .map(|_| {
                let o = iteration_order(&live, previous, &mut rng);
                previous = o.last().copied();
                o
            })
            .collect()
    }

    #[test]
    fn orders_are_reproducible_and_vary() {
        let a = sequence(4, 20, 42);
        assert_eq!(a, sequence(4, 20, 42), "the same seed gives the same order");
        assert_ne!(a, sequence(4, 20, 43));
        assert!(a.iter().all(|o| o.len() == 4));
        let firsts: std::collections::BTreeSet<usize> = a.iter().map(|o| o[0]).collect();
        assert!(firsts.len() > 1, "{a:?}");
        // A lane given up leaves the order; one lane left runs alone.
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(iteration_order(&[2], Some(2), &mut rng), vec![2]);
        assert_eq!(iteration_order(&[], None, &mut rng), Vec::<usize>::new());
    }

    /// Over 1,000 seeds of 10 rounds of 5 backends (lane 0 is native): no backend ever runs
    /// twice in a row; each backend's predecessor, the previous round's last included, is every
    /// other backend within 10 % of equally often; and each backend (native too) opens a round,
    /// following the previous round, within 10 % of 1 time in 5.
    #[test]
    fn every_backend_follows_every_other_equally_often_over_1000_seeds() {
        const K: usize = 5;
        const ROUNDS: usize = 10;
        let mut follows = [[0usize; K]; K]; // [backend][predecessor]
        let mut opens = [0usize; K];
        let mut opened_after = 0; // rounds with a previous round
        for seed in 0..1000 {
            let rounds = sequence(K, ROUNDS, seed);
            let flat: Vec<usize> = rounds.iter().flatten().copied().collect();
            for w in flat.windows(2) {
                follows[w[1]][w[0]] += 1;
            }
            for o in &rounds[1..] {
                opens[o[0]] += 1;
                opened_after += 1;
            }
        }
        let mut worst: f64 = 0.0;
        for (x, row) in follows.iter().enumerate() {
            assert_eq!(row[x], 0, "backend {x} followed itself");
            let total: usize = row.iter().sum();
            let uniform = total as f64 / (K - 1) as f64;
            for (y, &n) in row.iter().enumerate().filter(|(y, _)| *y != x) {
                let off = (n as f64 - uniform).abs() / uniform;
                worst = worst.max(off);
                assert!(
                    off <= 0.10,
                    "{x} after {y}: {n} of {total}, uniform {uniform}"
                );
            }
            let share = opens[x] as f64 / opened_after as f64;
            let off = (share * K as f64 - 1.0).abs();
            worst = worst.max(off);
            assert!(off <= 0.10, "{x} opens {share} of rounds");
        }
        println!("largest deviation from uniform: {:.1} %", worst * 100.0);
    }
}
