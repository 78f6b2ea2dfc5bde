//! `--order sequential`, and density: every run of one backend before the next backend's.

use std::sync::atomic::Ordering;

use super::order::{run_iterations, Lane, Plan, Shared};
use crate::results::{ResultsError, SampleWriter};

/// All runs of one backend, then the next (`--order sequential`, and density, which keeps N
/// instances of one backend running at once).
pub(super) fn run_sequential(
    lanes: &mut [Lane],
    shared: &Shared,
    writer: &mut SampleWriter,
    plan: &Plan,
) -> Result<(), ResultsError> {
    for lane in lanes {
        if shared.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let mut runner = lane.runner(shared, writer);
        lane.end = if shared.scenario.density.is_some() {
            super::density::run(&mut runner, plan)?
        } else {
            run_iterations(&mut runner, plan)?
        };
    }
    Ok(())
}
