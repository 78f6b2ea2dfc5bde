//! `--order sequential`, density and isolation: every run of one backend before the next
//! backend's.

use std::sync::atomic::Ordering;

use super::order::{run_iterations, Lane, Plan, Shared};
use crate::backend::Backend;
use crate::image::Image;
use crate::results::{ResultsError, SampleWriter};

/// All runs of one backend, then the next (`--order sequential`; density, which keeps N
/// instances of one backend running at once; isolation, a victim beside its neighbours).
pub(super) fn run_sequential(
    lanes: &mut [Lane],
    shared: &Shared,
    writer: &mut SampleWriter,
    plan: &Plan,
    (backends, image): (&[Box<dyn Backend>], &Image),
) -> Result<(), ResultsError> {
    for lane in lanes {
        if shared.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let backend = backends[lane.index].as_ref();
        let mut runner = lane.runner(shared, writer);
        lane.end = if shared.scenario.density.is_some() {
            super::density::run(&mut runner, plan)?
        } else if shared.scenario.isolation.is_some() {
            super::isolation::run(&mut runner, plan, backend, image)?
        } else {
            run_iterations(&mut runner, plan)?
        };
    }
    Ok(())
}
